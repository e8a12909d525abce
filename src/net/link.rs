//! What a reactor slot holds: an HTTP/1.1 connection (every connection starts as one:
//! the TLS handshake and the first bytes are read there) or the HTTP/2 connection it
//! turned into (ALPN `h2`, or the client preface on a cleartext listener). The reactor
//! talks to this enum only; each protocol keeps its own room (`conn`, `h2`).

use crate::net::conn::{Conn, Cx, Next, Ready};
use crate::net::h2::H2Conn;
use crate::net::timer::Class;
use crate::net::tls::Stream;
use crate::offload::{JobError, Sent};
use crate::site::hosts::Sites;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

pub enum Link {
    H1(Conn),
    H2(Box<H2Conn<Stream>>),
    /// Only between taking the HTTP/1.1 connection apart and storing its successor.
    Gone,
}

impl Link {
    pub fn ready(&mut self, r: Ready) {
        match self {
            Link::H1(c) => c.ready(r),
            Link::H2(h) => h.ready(r),
            Link::Gone => {}
        }
    }

    pub fn drive(&mut self, sites: &mut Sites, cx: &mut Cx) -> Next {
        match self {
            Link::H1(c) => {
                let next = c.drive(sites, cx);
                if c.wants_h2() {
                    return self.upgrade(sites, cx);
                }
                next
            }
            Link::H2(h) => h.drive(sites, cx),
            Link::Gone => Next::Close,
        }
    }

    fn upgrade(&mut self, sites: &mut Sites, cx: &mut Cx) -> Next {
        let Link::H1(c) = std::mem::replace(self, Link::Gone) else {
            return Next::Close;
        };
        let (stream, peer, io, rx) = c.into_h2();
        let h = H2Conn::new(stream, peer, io, rx, sites.config(), cx.now);
        cx.stats.h2.connections.fetch_add(1, Ordering::Relaxed);
        *self = Link::H2(Box::new(h));
        self.drive(sites, cx)
    }

    /// A job finished; `stream` is the HTTP/2 stream it is for (0 for HTTP/1.1).
    pub fn resume(
        &mut self,
        stream: u32,
        result: Result<Arc<[u8]>, JobError>,
        started: Instant,
        sent: Sent,
        sites: &mut Sites,
        cx: &mut Cx,
    ) -> Next {
        match self {
            Link::H1(c) => c.resume(result, started, sent, sites, cx),
            Link::H2(h) => h.resume(stream, result, started, sent, sites, cx),
            Link::Gone => Next::Close,
        }
    }

    pub fn timeout(&mut self, class: Class, sites: &mut Sites, cx: &mut Cx) -> Next {
        match self {
            Link::H1(c) => c.timeout(class, sites, cx),
            Link::H2(h) => h.timeout(class, sites, cx),
            Link::Gone => Next::Close,
        }
    }

    /// See `Conn::on_close`: true when an I/O thread still holds the socket.
    pub fn on_close(&mut self, cx: &mut Cx) -> bool {
        match self {
            Link::H1(c) => c.on_close(cx),
            Link::H2(h) => {
                h.on_close(cx);
                false
            }
            Link::Gone => false,
        }
    }

    pub fn is_parked(&self) -> bool {
        match self {
            Link::H1(c) => c.is_parked(),
            Link::H2(h) => h.is_parked(),
            Link::Gone => false,
        }
    }

    /// A request (or an HTTP/2 stream) is being relayed to an upstream (`on_close` frees
    /// its upstream connection).
    pub fn is_proxying(&self) -> bool {
        match self {
            Link::H1(c) => c.is_proxying(),
            Link::H2(h) => h.is_proxying(),
            _ => false,
        }
    }

    /// An upgraded (WebSocket) tunnel: a reload's drain leaves it alone.
    pub fn is_tunnel(&self) -> bool {
        matches!(self, Link::H1(c) if c.is_tunnel())
    }

    pub fn is_metrics(&self) -> bool {
        matches!(self, Link::H1(c) if c.is_metrics())
    }

    pub fn stream(&mut self) -> Option<&mut Stream> {
        match self {
            Link::H1(c) => Some(c.stream()),
            Link::H2(h) => Some(h.stream()),
            Link::Gone => None,
        }
    }

    pub fn context(&self) -> (std::net::SocketAddr, &[u8]) {
        match self {
            Link::H1(c) => c.context(),
            Link::H2(h) => (h.peer(), b"(HTTP/2)"),
            Link::Gone => (std::net::SocketAddr::from(([0, 0, 0, 0], 0)), b""),
        }
    }
}
