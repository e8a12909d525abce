//! What a connection reports for each response: the per-reactor counters and the access
//! log line. A request that waits for an offload job keeps a copy of what its log line
//! needs (only when logging), since its head leaves the read buffer before it is answered.

use crate::http::request::RequestHead;
use crate::http::Version;
use crate::net::conn::Cx;
use crate::ops::accesslog::Entry;
use std::net::SocketAddr;
use std::time::Instant;

/// The request line and headers the access log needs, borrowed from the read buffer.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a [u8],
    pub target: &'a [u8],
    pub protocol: &'static [u8],
    pub referer: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
    pub started: Instant,
}

impl<'a> Request<'a> {
    /// `buf` is the slice `head`'s spans point into.
    pub fn of(head: &RequestHead, buf: &'a [u8], started: Instant) -> Request<'a> {
        Request {
            method: head.method_span.get(buf),
            target: head.target.get(buf),
            protocol: match head.version {
                Version::Http10 => b"HTTP/1.0",
                Version::Http11 => b"HTTP/1.1",
            },
            referer: head.referer.map(|s| s.get(buf)),
            user_agent: head.user_agent.map(|s| s.get(buf)),
            started,
        }
    }

    /// An owned copy, for a request answered later.
    pub fn to_owned(self) -> Box<Owned> {
        Box::new(Owned {
            method: self.method.to_vec(),
            target: self.target.to_vec(),
            protocol: self.protocol,
            referer: self.referer.map(<[u8]>::to_vec),
            user_agent: self.user_agent.map(<[u8]>::to_vec),
            started: self.started,
        })
    }
}

pub struct Owned {
    method: Vec<u8>,
    target: Vec<u8>,
    protocol: &'static [u8],
    referer: Option<Vec<u8>>,
    user_agent: Option<Vec<u8>>,
    started: Instant,
}

impl Owned {
    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn get(&self) -> Request<'_> {
        Request {
            method: &self.method,
            target: &self.target,
            protocol: self.protocol,
            referer: self.referer.as_deref(),
            user_agent: self.user_agent.as_deref(),
            started: self.started,
        }
    }
}

/// Count a response and log it. `request` is None when no request could be parsed (the
/// line then starts at `started`); the log line is stamped `at`.
pub fn response(
    cx: &mut Cx,
    peer: SocketAddr,
    request: Option<Request>,
    started: Instant,
    status: u16,
    bytes: u64,
    at: Instant,
) {
    cx.stats.response(status, bytes);
    if let Some(log) = cx.log.as_deref_mut() {
        let entry = Entry {
            peer,
            request: request.map(|r| (r.method, r.target, r.protocol)),
            status,
            bytes,
            referer: request.and_then(|r| r.referer),
            user_agent: request.and_then(|r| r.user_agent),
            started: request.map_or(started, |r| r.started),
        };
        log.log(&entry, at);
    }
}
