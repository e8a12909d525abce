//! What a connection reports for each response: the per-reactor counters and the access
//! log line. A request that waits for an offload job keeps a copy of what its log line
//! needs (only when logging), since its head leaves the read buffer before it is answered.

use crate::http::request::RequestHead;
use crate::http::Version;
use crate::net::conn::Cx;
use crate::ops::accesslog::Entry;
use crate::site::hosts::strip_port;
use std::net::SocketAddr;
use std::time::Instant;

/// The request line and headers the access log needs, borrowed from the read buffer, and
/// the site that answered.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a [u8],
    pub target: &'a [u8],
    pub protocol: &'static [u8],
    /// The name that picked the site, as sent (an absolute-form target's authority or
    /// `Host`), without its port.
    pub host: Option<&'a [u8]>,
    /// The answering site's metrics slot (`Site::metrics_slot`).
    pub site: usize,
    pub referer: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
    pub started: Instant,
    /// The HTTP/2 stream id (0: HTTP/1.x).
    pub stream: u32,
}

impl<'a> Request<'a> {
    /// `buf` is the slice `head`'s spans point into; `site` the metrics slot of the site
    /// answering.
    pub fn of(head: &RequestHead, buf: &'a [u8], started: Instant, site: usize) -> Request<'a> {
        Request {
            host: head.host.map(|s| strip_port(s.get(buf))),
            site,
            method: head.method_span.get(buf),
            target: head.target.get(buf),
            protocol: match head.version {
                Version::Http10 => b"HTTP/1.0",
                Version::Http11 => b"HTTP/1.1",
            },
            referer: head.referer.map(|s| s.get(buf)),
            user_agent: head.user_agent.map(|s| s.get(buf)),
            started,
            stream: 0,
        }
    }

    /// An owned copy, for a request answered later.
    pub fn to_owned(self) -> Box<Owned> {
        Box::new(Owned {
            method: self.method.to_vec(),
            target: self.target.to_vec(),
            protocol: self.protocol,
            host: self.host.map(<[u8]>::to_vec),
            site: self.site,
            referer: self.referer.map(<[u8]>::to_vec),
            user_agent: self.user_agent.map(<[u8]>::to_vec),
            started: self.started,
            stream: self.stream,
        })
    }
}

pub struct Owned {
    method: Vec<u8>,
    target: Vec<u8>,
    protocol: &'static [u8],
    host: Option<Vec<u8>>,
    site: usize,
    referer: Option<Vec<u8>>,
    user_agent: Option<Vec<u8>>,
    started: Instant,
    stream: u32,
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
            host: self.host.as_deref(),
            site: self.site,
            referer: self.referer.as_deref(),
            user_agent: self.user_agent.as_deref(),
            started: self.started,
            stream: self.stream,
        }
    }
}

/// Count a response and log it. `request` is None when no request could be parsed (the
/// line then starts at `started`, counted for the default site); the log line is stamped
/// `at`.
pub fn response(
    cx: &mut Cx,
    peer: SocketAddr,
    request: Option<Request>,
    started: Instant,
    status: u16,
    bytes: u64,
    at: Instant,
) {
    cx.stats
        .response(request.map_or(0, |r| r.site), status, bytes);
    if let Some(log) = cx.log.as_deref_mut() {
        let entry = Entry {
            peer,
            request: request.map(|r| (r.method, r.target, r.protocol)),
            host: request.and_then(|r| r.host),
            status,
            bytes,
            referer: request.and_then(|r| r.referer),
            user_agent: request.and_then(|r| r.user_agent),
            started: request.map_or(started, |r| r.started),
            tls: cx.tls,
            stream: request.map_or(0, |r| r.stream),
        };
        log.log(&entry, at);
    }
}

/// Count and log a response whose status was known only once its job ran. `site` is the
/// answering site's metrics slot; the request's copy exists only when logging.
pub fn deferred(
    cx: &mut Cx,
    peer: SocketAddr,
    site: usize,
    r: Option<&Owned>,
    status: u16,
    bytes: u64,
) {
    match r {
        Some(r) => response(
            cx,
            peer,
            Some(r.get()),
            r.started(),
            status,
            bytes,
            Instant::now(),
        ),
        None => cx.stats.response(site, status, bytes),
    }
}
