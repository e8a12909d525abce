//! Response heads written straight into a reused byte buffer.
//!
//! No header map, no per-response allocation: the router appends lines to the
//! connection's head buffer in the order they go on the wire. Numbers go through itoa and
//! the Date value is formatted at most once a second per reactor (`DateCache`), never in
//! shared state.

use std::time::{SystemTime, UNIX_EPOCH};

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

/// The last second an IMF-fixdate can name: Fri, 31 Dec 9999 23:59:59 GMT. httpdate
/// panics on anything later (a file's mtime can be, and so can a wrong clock).
pub const MAX_HTTP_DATE: u64 = 253_402_300_799;

/// Format a unix time as an IMF-fixdate into a stack buffer. Total: times past year 9999
/// are written as its last second (callers that must not show such a date check first).
pub fn http_date(secs: u64) -> [u8; 29] {
    let mut out = [b' '; 29];
    let t = UNIX_EPOCH + std::time::Duration::from_secs(secs.min(MAX_HTTP_DATE));
    let s = httpdate::fmt_http_date(t);
    let n = s.len().min(29);
    out[..n].copy_from_slice(&s.as_bytes()[..n]);
    out
}

/// Unix seconds of a `Date` value this module formatted (`DateCache::get`).
pub fn parse_date(date: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(date).ok()?;
    let t = httpdate::parse_http_date(s.trim()).ok()?;
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// The `Last-Modified` to send for a file modified at `mtime` (None: before 1970) in a
/// response dated `date` (unix seconds). RFC 9110 8.8.2.1: never later than `Date`; a
/// modification time in the future is replaced by the `Date` value itself.
pub fn last_modified(mtime: Option<u64>, date: u64) -> Option<u64> {
    Some(mtime?.min(date).min(MAX_HTTP_DATE))
}

/// Status line plus the headers every response carries.
pub fn start(out: &mut Vec<u8>, status: u16, date: &[u8]) {
    out.extend_from_slice(b"HTTP/1.1 ");
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(b.format(status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(super::reason(status).as_bytes());
    out.extend_from_slice(b"\r\nServer: vireo\r\nDate: ");
    out.extend_from_slice(date);
    out.extend_from_slice(b"\r\n");
}

pub fn header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

pub fn header_u64(out: &mut Vec<u8>, name: &[u8], value: u64) {
    let mut b = itoa::Buffer::new();
    header(out, name, b.format(value).as_bytes());
}

/// Connection handling and the blank line. HTTP/1.0 keep-alive must be announced; for
/// HTTP/1.1 it is the default, so only `close` is written.
pub fn finish(out: &mut Vec<u8>, keep_alive: bool, http10: bool) {
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

macro_rules! error_pages {
    ($($code:literal $text:literal),* $(,)?) => {
        /// A short HTML body for an error status, nginx style.
        pub fn error_body(status: u16) -> &'static [u8] {
            match status {
                $($code => concat!(
                    "<html>\r\n<head><title>", $code, " ", $text,
                    "</title></head>\r\n<body>\r\n<center><h1>", $code, " ", $text,
                    "</h1></center>\r\n<hr><center>vireo</center>\r\n</body>\r\n</html>\r\n"
                ).as_bytes(),)*
                _ => b"<html><body><h1>Error</h1></body></html>\r\n",
            }
        }
    };
}

error_pages! {
    301 "Moved Permanently",
    400 "Bad Request",
    403 "Forbidden",
    404 "Not Found",
    405 "Method Not Allowed",
    408 "Request Timeout",
    412 "Precondition Failed",
    413 "Content Too Large",
    414 "URI Too Long",
    416 "Range Not Satisfiable",
    417 "Expectation Failed",
    431 "Request Header Fields Too Large",
    500 "Internal Server Error",
    501 "Not Implemented",
    503 "Service Unavailable",
    505 "HTTP Version Not Supported",
}

/// A complete error response (head and body) with its own Content-Length; used where no
/// request could be parsed (and by the router for its errors).
pub fn error(out: &mut Vec<u8>, status: u16, date: &[u8], keep_alive: bool, head_only: bool) {
    let body = error_body(status);
    start(out, status, date);
    header(out, b"Content-Type", b"text/html; charset=utf-8");
    header_u64(out, b"Content-Length", body.len() as u64);
    finish(out, keep_alive, false);
    if !head_only {
        out.extend_from_slice(body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_is_well_formed() {
        let d = DateCache::new();
        let mut out = Vec::new();
        start(&mut out, 404, d.get());
        header_u64(&mut out, b"Content-Length", 12);
        finish(&mut out, false, false);
        let s = String::from_utf8(out).expect("ascii");
        assert!(s.starts_with("HTTP/1.1 404 Not Found\r\nServer: vireo\r\nDate: "));
        assert!(s.ends_with("Content-Length: 12\r\nConnection: close\r\n\r\n"));
        assert!(s.contains(" GMT\r\n"));
    }

    #[test]
    fn error_bodies_name_their_status() {
        let b = std::str::from_utf8(error_body(431)).expect("utf8");
        assert!(b.contains("431 Request Header Fields Too Large"));
    }

    #[test]
    fn http_date_formats_epoch() {
        assert_eq!(&http_date(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
    }

    #[test]
    fn http_date_is_total() {
        assert_eq!(&http_date(MAX_HTTP_DATE), b"Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(
            &http_date(253_402_300_900),
            b"Fri, 31 Dec 9999 23:59:59 GMT"
        );
        assert_eq!(&http_date(u64::MAX), b"Fri, 31 Dec 9999 23:59:59 GMT");
        let mut d = DateCache::new();
        d.update(UNIX_EPOCH + std::time::Duration::from_secs(253_402_300_900));
        assert_eq!(d.get(), b"Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(parse_date(d.get()), Some(MAX_HTTP_DATE));
    }

    #[test]
    fn last_modified_is_never_after_date() {
        assert_eq!(last_modified(Some(5), 10), Some(5));
        assert_eq!(last_modified(Some(253_402_300_900), 10), Some(10));
        assert_eq!(last_modified(None, 10), None);
    }
}
