//! The HTTP/1.1 encoder: the one place a `Reply` becomes wire bytes.
//!
//! It alone decides the framing: `Content-Length` from the body source (none for 1xx, 204
//! and 304), `Connection: close` or HTTP/1.0's `Connection: keep-alive`, and whether a body
//! follows at all (HEAD). The head is appended to the connection's reused `out` buffer, so
//! a reply costs no allocation; a small static body is appended after it, and whatever is
//! left (`Body::Shared` for the same writev, a file range or multipart parts for sendfile)
//! is handed back for the send path. Numbers go through itoa, and the Date value is
//! formatted at most once a second per reactor (`DateCache`), never in shared state.

use super::negotiate::{self, Coding};
use super::response::{http_date, Body, ContentRange, Reply, ALLOW};
use std::time::{SystemTime, UNIX_EPOCH};

/// What the request and the connection say about framing a reply.
#[derive(Clone, Copy, Debug)]
pub struct Framing {
    /// The client allows keep-alive and the server is not draining.
    pub keep_alive: bool,
    /// HTTP/1.0: keep-alive must be announced.
    pub http10: bool,
    /// HEAD: the head as for GET, no body.
    pub head_only: bool,
}

/// An encoded reply: the head (and a static body) are in `out`; `body` is what remains to
/// send after them.
pub struct Encoded {
    pub status: u16,
    pub keep_alive: bool,
    pub body: Body,
    /// Body bytes this reply puts on the wire (for the log and the counters).
    pub bytes: u64,
}

/// Append `reply`'s head to `out` and return the body left to send.
pub fn encode(reply: Reply, f: Framing, date: &[u8], out: &mut Vec<u8>) -> Encoded {
    let Reply {
        status,
        headers: h,
        body,
        close,
    } = reply;
    debug_assert!(
        !matches!(body, Body::Pending),
        "a pending reply is encoded once its job completes"
    );
    let keep_alive = f.keep_alive && !close;
    start(out, status, date);
    if h.allow {
        header(out, b"Allow", ALLOW);
    }
    if let Some(loc) = &h.location {
        header(out, b"Location", loc);
    }
    if let Some(secs) = h.retry_after {
        header_u64(out, b"Retry-After", u64::from(secs));
    }
    if let Some(ContentRange::Unsatisfied(len)) = h.content_range {
        out.extend_from_slice(b"Content-Range: ");
        negotiate::push_unsatisfied_content_range(out, len);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(ct) = &h.content_type {
        header(out, b"Content-Type", ct.as_bytes());
    }
    if let Some(ContentRange::Part(r, len)) = h.content_range {
        out.extend_from_slice(b"Content-Range: ");
        negotiate::push_content_range(out, r, len);
        out.extend_from_slice(b"\r\n");
    }
    let len = body.len();
    if !(status < 200 || status == 204 || status == 304) {
        header_u64(out, b"Content-Length", len);
    }
    if h.coding != Coding::Identity {
        header(out, b"Content-Encoding", h.coding.as_str().as_bytes());
    }
    if h.vary {
        out.extend_from_slice(b"Vary: Accept-Encoding\r\n");
    }
    if let Some(lm) = h.last_modified {
        header(out, b"Last-Modified", &http_date(lm));
    }
    if let Some(etag) = &h.etag {
        header(out, b"ETag", etag.as_str().as_bytes());
    }
    if h.accept_ranges {
        out.extend_from_slice(b"Accept-Ranges: bytes\r\n");
    }
    h.extra.write(out);
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if f.http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    // A HEAD reply never has content (RFC 9110 9.3.2), closing or not: bytes after its
    // head would be read as the next response by a client that keeps reading.
    let body = if f.head_only { Body::Empty } else { body };
    let bytes = body.len();
    let body = match body {
        Body::Static(b) => {
            out.extend_from_slice(b);
            Body::Empty
        }
        other => other,
    };
    Encoded {
        status,
        keep_alive,
        body,
        bytes,
    }
}

/// The interim answer to `Expect: 100-continue`.
pub fn write_continue(out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
}

/// Status line plus the headers every response carries.
fn start(out: &mut Vec<u8>, status: u16, date: &[u8]) {
    out.extend_from_slice(b"HTTP/1.1 ");
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(b.format(status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(super::reason(status).as_bytes());
    out.extend_from_slice(b"\r\nServer: vireo\r\nDate: ");
    out.extend_from_slice(date);
    out.extend_from_slice(b"\r\n");
}

fn header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn header_u64(out: &mut Vec<u8>, name: &[u8], value: u64) {
    let mut b = itoa::Buffer::new();
    header(out, name, b.format(value).as_bytes());
}

/// The `Date` header value, reformatted only when the second changes.
pub struct DateCache {
    secs: u64,
    text: [u8; 29],
}

impl Default for DateCache {
    fn default() -> Self {
        DateCache::new()
    }
}

impl DateCache {
    pub fn new() -> DateCache {
        let mut d = DateCache {
            secs: u64::MAX,
            text: [b' '; 29],
        };
        d.update(SystemTime::now());
        d
    }

    /// Call once per loop iteration; formats only when the second changed.
    pub fn update(&mut self, now: SystemTime) {
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if secs != self.secs {
            self.secs = secs;
            self.text = http_date(secs);
        }
    }

    pub fn get(&self) -> &[u8] {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::response::{error_body, Reply};

    fn framing(keep_alive: bool, head_only: bool) -> Framing {
        Framing {
            keep_alive,
            http10: false,
            head_only,
        }
    }

    #[test]
    fn head_is_well_formed() {
        let d = DateCache::new();
        let mut out = Vec::new();
        let e = encode(Reply::error(404), framing(false, true), d.get(), &mut out);
        let s = String::from_utf8(out).expect("ascii");
        assert!(s.starts_with("HTTP/1.1 404 Not Found\r\nServer: vireo\r\nDate: "));
        let cl = format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            error_body(404).len()
        );
        assert!(s.ends_with(&cl), "{s}");
        assert!(s.contains(" GMT\r\n"));
        assert_eq!((e.bytes, e.keep_alive), (0, false));
    }

    #[test]
    fn a_closing_error_to_head_has_no_body() {
        let mut out = Vec::new();
        let mut r = Reply::error(500);
        r.close = true;
        let e = encode(r, framing(true, true), b"d", &mut out);
        assert!(!e.keep_alive);
        assert_eq!(e.bytes, 0);
        assert!(matches!(e.body, Body::Empty));
        let s = String::from_utf8(out).expect("ascii");
        let cl = format!("Content-Length: {}\r\n", error_body(500).len());
        assert!(s.contains(&cl), "the head is as for GET: {s}");
        assert!(s.ends_with("Connection: close\r\n\r\n"), "{s}");
        // The same reply to a GET keeps its body.
        let mut out = Vec::new();
        let mut r = Reply::error(500);
        r.close = true;
        encode(r, framing(true, false), b"d", &mut out);
        assert!(out.ends_with(error_body(500)));
    }

    #[test]
    fn no_content_length_on_204_and_304() {
        for status in [204, 304] {
            let mut out = Vec::new();
            let mut r = Reply::error(status);
            r.body = Body::Empty;
            r.headers.content_type = None;
            encode(r, framing(true, false), b"d", &mut out);
            let s = String::from_utf8(out).expect("ascii");
            assert!(!s.contains("Content-Length"), "{s}");
        }
    }

    #[test]
    fn date_cache_is_total() {
        let mut d = DateCache::new();
        d.update(UNIX_EPOCH + std::time::Duration::from_secs(253_402_300_900));
        assert_eq!(d.get(), b"Fri, 31 Dec 9999 23:59:59 GMT");
    }
}
