//! A reply, protocol-neutral: status, a small typed set of headers plus the configured
//! extras, and where the body comes from. The router builds one; an encoder per protocol
//! (`h1` today) decides how it goes on the wire: framing, `Connection`, HEAD.
//!
//! No header map and no per-reply allocation on the hot path: the typed headers are plain
//! fields, an entity-tag is a fixed-size buffer, the extras are a bitmask over the site's
//! rule blocks, and a small cached file is an `Arc` shared with the open-file cache.

use super::negotiate::{ByteRange, Coding};
use std::fmt;
use std::fs::File;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

/// Methods a static resource allows; sent with every 405 and OPTIONS (nginx omits it on 405).
pub const ALLOW: &[u8] = b"GET, HEAD, OPTIONS";

pub struct Reply {
    pub status: u16,
    pub headers: Headers,
    pub body: Body,
    /// Close the connection after this reply, whatever the client asked: an error after
    /// which the framing of the input is in doubt. Such a reply is sent whole, even to HEAD
    /// (as when no request could be parsed).
    pub close: bool,
}

/// The typed headers a reply may carry. The encoder writes them in one fixed order:
/// status-specific lines first (Allow, Location, Retry-After, an unsatisfied
/// Content-Range), then the representation (Content-Type, Content-Range, Content-Length,
/// Content-Encoding), then validators and caching (Vary, Last-Modified, ETag,
/// Accept-Ranges), then the configured extras.
#[derive(Clone, Debug, Default)]
pub struct Headers {
    /// `Allow: GET, HEAD, OPTIONS` (405, OPTIONS).
    pub allow: bool,
    /// A redirect's target, already percent-encoded.
    pub location: Option<Box<[u8]>>,
    /// Seconds, for 503.
    pub retry_after: Option<u32>,
    pub content_range: Option<ContentRange>,
    pub content_type: Option<ContentType>,
    /// The body's coding (`Content-Encoding` unless identity).
    pub coding: Coding,
    /// `Vary: Accept-Encoding`: the resource has encoded variants.
    pub vary: bool,
    /// Unix seconds, already no later than the reply's `Date`.
    pub last_modified: Option<u64>,
    pub etag: Option<EtagBuf>,
    /// `Accept-Ranges: bytes`.
    pub accept_ranges: bool,
    pub extra: Extra,
}

#[derive(Clone, Debug)]
pub enum ContentType {
    Static(&'static str),
    /// multipart/byteranges with its boundary.
    Owned(Box<str>),
}

impl ContentType {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            ContentType::Static(s) => s.as_bytes(),
            ContentType::Owned(s) => s.as_bytes(),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub enum ContentRange {
    /// `bytes first-last/len` (206).
    Part(ByteRange, u64),
    /// `bytes */len` (416).
    Unsatisfied(u64),
}

/// The configured `[[headers]]` lines a request matched: the site's rule blocks (an Arc
/// clone, only when something matched) and a bitmask over them. Never allocates.
#[derive(Clone, Debug, Default)]
pub struct Extra {
    blocks: Option<Arc<[Box<[u8]>]>>,
    mask: u64,
}

impl Extra {
    /// Blocks `i` with bit `i` set in `mask` (at most the first 64), in order.
    pub fn new(blocks: &Arc<[Box<[u8]>]>, mask: u64) -> Extra {
        Extra {
            blocks: (mask != 0).then(|| Arc::clone(blocks)),
            mask,
        }
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        let Some(blocks) = &self.blocks else {
            return;
        };
        for (i, b) in blocks.iter().enumerate().take(64) {
            if self.mask & (1 << i) != 0 {
                out.extend_from_slice(b);
            }
        }
    }
}

/// Where the body comes from.
pub enum Body {
    Empty,
    Static(&'static [u8]),
    /// In memory, shared with a cache (small files, compressed variants, listings): sent in
    /// the same writev as the head.
    Shared(Arc<[u8]>),
    /// `start..end` of an open file, sent with sendfile.
    File {
        file: Arc<File>,
        start: u64,
        end: u64,
    },
    /// multipart/byteranges: `heads` holds every part preamble and the trailer; parts are
    /// sent in order, each preamble followed by its slice of the file.
    Multipart {
        file: Arc<File>,
        heads: Vec<u8>,
        parts: Vec<(std::ops::Range<usize>, ByteRange)>,
        trailer: std::ops::Range<usize>,
    },
    /// Not known yet: an offload job (compression, a listing) produces it. The connection
    /// parks and encodes the reply when the job completes.
    Pending,
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Body::Empty | Body::Pending => 0,
            Body::Static(b) => b.len() as u64,
            Body::File { start, end, .. } => end - start,
            Body::Shared(b) => b.len() as u64,
            Body::Multipart { parts, trailer, .. } => {
                parts
                    .iter()
                    .map(|(h, r)| (h.len() as u64) + r.end - r.start + 1)
                    .sum::<u64>()
                    + trailer.len() as u64
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Reply {
    /// Taken apart by an encoder (status, headers, body, close); a pending body is
    /// encoded only once its job has completed.
    pub fn into_parts(self) -> (u16, Headers, Body, bool) {
        debug_assert!(
            !matches!(self.body, Body::Pending),
            "a pending reply is encoded once its job completes"
        );
        (self.status, self.headers, self.body, self.close)
    }

    /// The built-in HTML page for an error status.
    pub fn error(status: u16) -> Reply {
        Reply {
            status,
            headers: Headers {
                content_type: Some(ContentType::Static(HTML)),
                ..Headers::default()
            },
            body: Body::Static(error_body(status)),
            close: false,
        }
    }
}

/// The Content-Type of built-in pages and listings.
pub const HTML: &str = "text/html; charset=utf-8";

/// Per-coding facts, so that adding a coding touches only `Coding`, the codec and config.
impl Coding {
    /// The suffix that tells this coding's entity-tag from the identity one.
    pub fn etag_suffix(self) -> &'static [u8] {
        match self {
            Coding::Identity => b"",
            Coding::Gzip => b"-gz",
            Coding::Zstd => b"-zst",
            Coding::Br => b"-br",
        }
    }

    /// The extension of a precompressed file beside the original (nginx's gzip_static).
    pub fn sidecar_ext(self) -> &'static [u8] {
        match self {
            Coding::Identity => b"",
            Coding::Gzip => b".gz",
            Coding::Zstd => b".zst",
            Coding::Br => b".br",
        }
    }
}

/// Strong ETag `"<mtime hex>-<size hex>"` (nginx format), quotes included.
/// Fixed-size so building one never allocates.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct EtagBuf {
    // 2 quotes + 16 + '-' + 16 hex digits = 35 bytes max, plus room for a coding suffix.
    buf: [u8; 40],
    len: u8,
}

impl EtagBuf {
    pub fn new(mtime: u64, size: u64) -> EtagBuf {
        let mut e = EtagBuf {
            buf: [0; 40],
            len: 0,
        };
        e.push(b'"');
        e.push_hex(mtime);
        e.push(b'-');
        e.push_hex(size);
        e.push(b'"');
        e
    }

    fn push(&mut self, b: u8) {
        self.buf[usize::from(self.len)] = b;
        self.len += 1;
    }

    fn push_hex(&mut self, v: u64) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        // Number of significant nibbles; at least one so 0 prints "0".
        let digits = ((64 - v.leading_zeros()).div_ceil(4)).max(1);
        for i in (0..digits).rev() {
            self.push(HEX[((v >> (i * 4)) & 0xf) as usize]);
        }
    }

    /// The tag of an encoded variant: `"x-y"` becomes `"x-y-gz"` for gzip, distinct from
    /// the identity tag so caches and If-None-Match never confuse the two.
    pub fn for_coding(&self, coding: Coding) -> EtagBuf {
        let mut e = *self;
        let suffix = coding.etag_suffix();
        if suffix.is_empty() {
            return e;
        }
        e.len -= 1; // drop the closing quote
        for &b in suffix {
            e.push(b);
        }
        e.push(b'"');
        e
    }

    pub fn as_str(&self) -> &str {
        // Always ASCII by construction; the fallback can't be hit.
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or("")
    }
}

impl fmt::Debug for EtagBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for EtagBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
    302 "Found",
    303 "See Other",
    307 "Temporary Redirect",
    308 "Permanent Redirect",
    400 "Bad Request",
    401 "Unauthorized",
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
    502 "Bad Gateway",
    503 "Service Unavailable",
    504 "Gateway Timeout",
    505 "HTTP Version Not Supported",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_coding_has_its_own_etag_and_sidecar() {
        let e = EtagBuf::new(u64::MAX, u64::MAX);
        assert_eq!(e.for_coding(Coding::Identity), e);
        for (c, tag, ext) in [
            (Coding::Gzip, "-gz\"", ".gz"),
            (Coding::Zstd, "-zst\"", ".zst"),
            (Coding::Br, "-br\"", ".br"),
        ] {
            let v = e.for_coding(c);
            assert!(v.as_str().ends_with(tag), "{v}");
            assert!(v.as_str().starts_with(&e.as_str()[..e.as_str().len() - 1]));
            assert_eq!(c.sidecar_ext(), ext.as_bytes());
        }
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
        assert_eq!(parse_date(&http_date(253_402_300_900)), Some(MAX_HTTP_DATE));
    }

    #[test]
    fn last_modified_is_never_after_date() {
        assert_eq!(last_modified(Some(5), 10), Some(5));
        assert_eq!(last_modified(Some(253_402_300_900), 10), Some(10));
        assert_eq!(last_modified(None, 10), None);
    }
}
