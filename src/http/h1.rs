//! The HTTP/1.1 encoder: the one place a `Reply` becomes HTTP/1.1 wire bytes. Which
//! fields a reply carries, and in what order, is decided once in [`fields`], which the
//! HTTP/2 encoder (`h2::encode`) shares.
//!
//! It alone decides the framing: `Content-Length` from the body source (none for 1xx, 204
//! and 304), `Connection: close` or HTTP/1.0's `Connection: keep-alive`, and whether a body
//! follows at all (HEAD). The head is appended to the connection's reused `out` buffer, so
//! a reply costs no allocation; a small static body is appended after it, and whatever is
//! left (`Body::Shared` for the same writev, a file range or multipart parts for sendfile)
//! is handed back for the send path. Numbers go through itoa, and the Date value is
//! formatted at most once a second per reactor (`DateCache`), never in shared state.

use super::negotiate::{self, Coding};
use super::response::{http_date, Body, ContentRange, EtagBuf, Headers, Reply, ALLOW};
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
    let (status, h, body, close) = reply.into_parts();
    let keep_alive = f.keep_alive && !close;
    start(out, status, date);
    fields(status, &h, body.len(), |f| {
        out.extend_from_slice(f.name().as_bytes());
        out.extend_from_slice(b": ");
        f.write_value(out);
        out.extend_from_slice(b"\r\n");
    });
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

/// A response field after `Server` and `Date`, in the order every encoder writes them
/// (the configured extras, `Headers::extra`, follow the last one). HTTP/1.1 and HTTP/2
/// share this list, so both protocols always send the same fields.
#[derive(Clone, Copy, Debug)]
pub enum Field<'a> {
    Allow,
    Location(&'a [u8]),
    RetryAfter(u32),
    ContentRange(ContentRange),
    ContentType(&'a [u8]),
    ContentLength(u64),
    ContentEncoding(Coding),
    Vary,
    LastModified(u64),
    ETag(&'a EtagBuf),
    AcceptRanges,
}

impl Field<'_> {
    /// The name as HTTP/1.1 writes it.
    pub fn name(&self) -> &'static str {
        match self {
            Field::Allow => "Allow",
            Field::Location(_) => "Location",
            Field::RetryAfter(_) => "Retry-After",
            Field::ContentRange(_) => "Content-Range",
            Field::ContentType(_) => "Content-Type",
            Field::ContentLength(_) => "Content-Length",
            Field::ContentEncoding(_) => "Content-Encoding",
            Field::Vary => "Vary",
            Field::LastModified(_) => "Last-Modified",
            Field::ETag(_) => "ETag",
            Field::AcceptRanges => "Accept-Ranges",
        }
    }

    /// The name in lowercase, as HTTP/2 requires.
    pub fn lowercase_name(&self) -> &'static str {
        match self {
            Field::Allow => "allow",
            Field::Location(_) => "location",
            Field::RetryAfter(_) => "retry-after",
            Field::ContentRange(_) => "content-range",
            Field::ContentType(_) => "content-type",
            Field::ContentLength(_) => "content-length",
            Field::ContentEncoding(_) => "content-encoding",
            Field::Vary => "vary",
            Field::LastModified(_) => "last-modified",
            Field::ETag(_) => "etag",
            Field::AcceptRanges => "accept-ranges",
        }
    }

    /// Appends the value.
    pub fn write_value(&self, out: &mut Vec<u8>) {
        let mut b = itoa::Buffer::new();
        match *self {
            Field::Allow => out.extend_from_slice(ALLOW),
            Field::Location(l) => out.extend_from_slice(l),
            Field::RetryAfter(s) => out.extend_from_slice(b.format(s).as_bytes()),
            Field::ContentRange(ContentRange::Unsatisfied(len)) => {
                negotiate::push_unsatisfied_content_range(out, len)
            }
            Field::ContentRange(ContentRange::Part(r, len)) => {
                negotiate::push_content_range(out, r, len)
            }
            Field::ContentType(t) => out.extend_from_slice(t),
            Field::ContentLength(n) => out.extend_from_slice(b.format(n).as_bytes()),
            Field::ContentEncoding(c) => out.extend_from_slice(c.as_str().as_bytes()),
            Field::Vary => out.extend_from_slice(b"Accept-Encoding"),
            Field::LastModified(t) => out.extend_from_slice(&http_date(t)),
            Field::ETag(e) => out.extend_from_slice(e.as_str().as_bytes()),
            Field::AcceptRanges => out.extend_from_slice(b"bytes"),
        }
    }
}

/// Calls `each` with the fields a reply of `status` with these headers and a body of
/// `body_len` bytes carries, in wire order: status-specific ones first (Allow, Location,
/// Retry-After, an unsatisfied Content-Range), then the representation (Content-Type,
/// Content-Range, Content-Length: none for 1xx, 204 and 304, Content-Encoding), then
/// validators and caching (Vary, Last-Modified, ETag, Accept-Ranges).
pub fn fields(status: u16, h: &Headers, body_len: u64, mut each: impl FnMut(Field<'_>)) {
    if h.allow {
        each(Field::Allow);
    }
    if let Some(loc) = &h.location {
        each(Field::Location(loc));
    }
    if let Some(secs) = h.retry_after {
        each(Field::RetryAfter(secs));
    }
    if let Some(cr @ ContentRange::Unsatisfied(_)) = h.content_range {
        each(Field::ContentRange(cr));
    }
    if let Some(ct) = &h.content_type {
        each(Field::ContentType(ct.as_bytes()));
    }
    if let Some(cr @ ContentRange::Part(..)) = h.content_range {
        each(Field::ContentRange(cr));
    }
    if !(status < 200 || status == 204 || status == 304) {
        each(Field::ContentLength(body_len));
    }
    if h.coding != Coding::Identity {
        each(Field::ContentEncoding(h.coding));
    }
    if h.vary {
        each(Field::Vary);
    }
    if let Some(lm) = h.last_modified {
        each(Field::LastModified(lm));
    }
    if let Some(etag) = &h.etag {
        each(Field::ETag(etag));
    }
    if h.accept_ranges {
        each(Field::AcceptRanges);
    }
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

#[cfg(test)]
mod golden_tests {
    use super::*;
    use crate::http::negotiate::ByteRange;
    use crate::http::response::{ContentType, EtagBuf, Extra, Headers};
    use std::sync::Arc;

    /// Every typed header at once, for every status class: the exact bytes HTTP/1.1 sends
    /// (the field order is shared with HTTP/2 and must not drift).
    #[test]
    fn every_field_in_its_fixed_order() {
        let blocks: Arc<[Box<[u8]>]> = vec![
            b"Cache-Control: max-age=60\r\n".to_vec().into_boxed_slice(),
            b"X-Skip: 1\r\n".to_vec().into_boxed_slice(),
            b"X-Frame-Options: DENY\r\n".to_vec().into_boxed_slice(),
        ]
        .into();
        let mut got = String::new();
        for (status, unsatisfied) in [
            (200, false),
            (206, false),
            (416, true),
            (304, false),
            (204, false),
        ] {
            let headers = Headers {
                allow: true,
                location: Some(b"/next".to_vec().into_boxed_slice()),
                retry_after: Some(120),
                content_range: Some(if unsatisfied {
                    ContentRange::Unsatisfied(1000)
                } else {
                    ContentRange::Part(ByteRange { start: 0, end: 9 }, 1000)
                }),
                content_type: Some(ContentType::Static("text/plain")),
                coding: Coding::Gzip,
                vary: true,
                last_modified: Some(784_111_777),
                etag: Some(EtagBuf::new(0x5f, 0x3e8)),
                accept_ranges: true,
                extra: Extra::new(&blocks, 0b101),
            };
            let reply = Reply {
                status,
                headers,
                body: Body::Static(b"0123456789"),
                close: status == 204,
            };
            let mut out = Vec::new();
            let f = Framing {
                keep_alive: true,
                http10: status == 304,
                head_only: false,
            };
            encode(reply, f, b"DATE", &mut out);
            got.push_str(&String::from_utf8(out).expect("ascii"));
        }
        let want = "\
HTTP/1.1 200 OK\r\nServer: vireo\r\nDate: DATE\r\nAllow: GET, HEAD, OPTIONS\r\nLocation: /next\r\n\
Retry-After: 120\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-9/1000\r\n\
Content-Length: 10\r\nContent-Encoding: gzip\r\nVary: Accept-Encoding\r\n\
Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nETag: \"5f-3e8\"\r\nAccept-Ranges: bytes\r\n\
Cache-Control: max-age=60\r\nX-Frame-Options: DENY\r\n\r\n0123456789\
HTTP/1.1 206 Partial Content\r\nServer: vireo\r\nDate: DATE\r\nAllow: GET, HEAD, OPTIONS\r\nLocation: /next\r\n\
Retry-After: 120\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-9/1000\r\n\
Content-Length: 10\r\nContent-Encoding: gzip\r\nVary: Accept-Encoding\r\n\
Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nETag: \"5f-3e8\"\r\nAccept-Ranges: bytes\r\n\
Cache-Control: max-age=60\r\nX-Frame-Options: DENY\r\n\r\n0123456789\
HTTP/1.1 416 Range Not Satisfiable\r\nServer: vireo\r\nDate: DATE\r\nAllow: GET, HEAD, OPTIONS\r\nLocation: /next\r\n\
Retry-After: 120\r\nContent-Range: bytes */1000\r\nContent-Type: text/plain\r\n\
Content-Length: 10\r\nContent-Encoding: gzip\r\nVary: Accept-Encoding\r\n\
Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nETag: \"5f-3e8\"\r\nAccept-Ranges: bytes\r\n\
Cache-Control: max-age=60\r\nX-Frame-Options: DENY\r\n\r\n0123456789\
HTTP/1.1 304 Not Modified\r\nServer: vireo\r\nDate: DATE\r\nAllow: GET, HEAD, OPTIONS\r\nLocation: /next\r\n\
Retry-After: 120\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-9/1000\r\n\
Content-Encoding: gzip\r\nVary: Accept-Encoding\r\n\
Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nETag: \"5f-3e8\"\r\nAccept-Ranges: bytes\r\n\
Cache-Control: max-age=60\r\nX-Frame-Options: DENY\r\nConnection: keep-alive\r\n\r\n0123456789\
HTTP/1.1 204 No Content\r\nServer: vireo\r\nDate: DATE\r\nAllow: GET, HEAD, OPTIONS\r\nLocation: /next\r\n\
Retry-After: 120\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-9/1000\r\n\
Content-Encoding: gzip\r\nVary: Accept-Encoding\r\n\
Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nETag: \"5f-3e8\"\r\nAccept-Ranges: bytes\r\n\
Cache-Control: max-age=60\r\nX-Frame-Options: DENY\r\nConnection: close\r\n\r\n0123456789";
        assert_eq!(got, want);
    }
}
