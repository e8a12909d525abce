//! Request-head parsing (RFC 9112, RFC 9110); chunked bodies are in `chunked`.
//!
//! Strict on purpose: anything that could make two parsers disagree about where a
//! request ends (the root of request smuggling) is refused with a `close` error.
//! Both the head parser and the chunked decoder give the same verdict however the
//! bytes were split across reads: every decision depends only on a prefix of the
//! input whose length does not depend on how it arrived.

use super::target::{split_target, valid_authority};
use super::token::{is_field_byte, is_ows, is_token, trim};
use super::{HttpError, Method, Span, Version};

/// httparse needs a fixed header array; one more header is a 431.
const MAX_HEADERS: usize = 100;
pub use super::chunked::ChunkedDecoder;

pub(super) const fn bad(why: &'static str) -> HttpError {
    HttpError::new(400, why)
}

const URI_TOO_LONG: HttpError = HttpError::new(414, "request line too long");
const HEAD_TOO_LARGE: HttpError = HttpError::new(431, "request head too large");

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_request_line: usize,
    pub max_header_bytes: usize,
    pub max_body_bytes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body. Note that an explicit `Content-Length: 0` is reported as `Length(0)`.
    None,
    Length(u64),
    Chunked,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Method,
    pub method_span: Span,
    pub version: Version,
    pub target: Span,
    pub path: Span,
    pub query: Option<Span>,
    pub head_len: usize,
    pub framing: BodyFraming,
    pub keep_alive: bool,
    pub expect_continue: bool,
    pub host: Option<Span>,
    pub accept_encoding: Option<Span>,
    pub if_none_match: Option<Span>,
    pub if_match: Option<Span>,
    pub if_modified_since: Option<Span>,
    pub if_unmodified_since: Option<Span>,
    pub range: Option<Span>,
    pub if_range: Option<Span>,
    pub user_agent: Option<Span>,
    pub referer: Option<Span>,
    pub authorization: Option<Span>,
}

impl RequestHead {
    /// The optional fields kept as spans besides Host, each with its name, in a fixed
    /// order: for checks that must cover every span (property tests, fuzzing).
    pub fn field_spans(&self) -> [(&'static str, Option<Span>); 9] {
        [
            ("Accept-Encoding", self.accept_encoding),
            ("If-None-Match", self.if_none_match),
            ("If-Match", self.if_match),
            ("If-Modified-Since", self.if_modified_since),
            ("If-Unmodified-Since", self.if_unmodified_since),
            ("Range", self.range),
            ("If-Range", self.if_range),
            ("User-Agent", self.user_agent),
            ("Referer", self.referer),
        ]
    }
}

/// Parses a request head at the start of `buf`.
///
/// `Ok(None)` means the head is not complete yet (read more and call again with the
/// grown buffer). Every error has `close == true`.
pub fn parse(buf: &[u8], limits: &Limits) -> Result<Option<RequestHead>, HttpError> {
    let start = skip_empty_lines(buf);
    if start >= limits.max_header_bytes {
        // Empty lines alone fill the head's budget: no request can follow within it,
        // whatever comes next (checked first so the verdict cannot depend on the bytes
        // after them, which a later read might bring).
        return Err(HEAD_TOO_LARGE);
    }
    let rest = &buf[start..];
    let newline = memchr::memchr(b'\n', rest);
    let line_len = match newline {
        Some(i) => i - usize::from(i > 0 && rest[i - 1] == b'\r'),
        None => rest.len() - usize::from(rest.last() == Some(&b'\r')),
    };
    if line_len > limits.max_request_line {
        // Judge only the bytes a request line may occupy: a syntax error inside them is
        // a 400, otherwise 414. Looking at more would make the verdict depend on how
        // much arrived in one read.
        // The byte just past the limit counts when it is a CR: a read that ended on it
        // saw it as a (still unconfirmed) line ending and judged it already.
        let mut end = start + limits.max_request_line;
        if buf.get(end) == Some(&b'\r') {
            end += 1;
        }
        let cut = &buf[..end.min(buf.len())];
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        return match req.parse(cut) {
            Err(e) => Err(syntax_error(e, cut).unwrap_or(URI_TOO_LONG)),
            Ok(_) => Err(URI_TOO_LONG),
        };
    }

    // Same idea for the whole head: httparse never sees more than the limit, so a head
    // that does not complete within it is a 431 whatever the read sizes were.
    let view = &buf[..buf.len().min(limits.max_header_bytes)];
    // While the request line is still arriving (and within its own limit) it may yet
    // turn out too long: wait, so that it gets 414 rather than 431 whatever the
    // limits. Leading empty lines alone are bounded by max_header_bytes.
    let line_pending = newline.is_none() && start < limits.max_header_bytes;
    let need_more = || {
        if buf.len() > limits.max_header_bytes && !line_pending {
            Err(HEAD_TOO_LARGE)
        } else {
            Ok(None)
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(view) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return need_more(),
        Err(e) => {
            // HTTP/1.2 .. HTTP/1.9: RFC 9112 2.3 says to process it as the highest minor
            // version we implement, as nginx does. httparse knows only 1.0 and 1.1, so a
            // copy with the digit rewritten is parsed; its offsets are the original's.
            // Only the head is copied, not the pipelined requests or body behind it.
            let minor = match e {
                httparse::Error::Version => later_minor(view),
                _ => None,
            };
            if let Some(at) = minor {
                let mut copy = view[..head_end(view)].to_vec();
                copy[at] = b'1';
                return match parse(&copy, limits)? {
                    Some(head) => Ok(Some(head)),
                    // The copy is cut at the limit: let the whole buffer decide on 431.
                    None => need_more(),
                };
            }
            match syntax_error(e, view) {
                Some(err) => return Err(err),
                None => return need_more(),
            }
        }
    };
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(bad("incomplete request line"));
    };
    let version = match minor {
        0 => Version::Http10,
        1 => Version::Http11,
        _ => return Err(HttpError::new(505, "unsupported HTTP version")),
    };
    let method_span = span_of(buf, method.as_bytes());
    let method = Method::from_bytes(method.as_bytes());
    let target_span = span_of(buf, target.as_bytes());

    let mut h = Fields::default();
    for header in req.headers.iter() {
        h.add(buf, header)?;
    }
    head_from(
        buf,
        h,
        method,
        method_span,
        version,
        target_span,
        head_len,
        limits,
    )
    .map(Some)
}

/// Headers collected during the scan, before the cross-header rules are applied.
#[derive(Default)]
struct Fields {
    host: Option<Span>,
    host_count: usize,
    content_length: Option<u64>,
    content_length_error: bool,
    te_seen: bool,
    te_error: bool,
    te_chunked_count: usize,
    te_last_chunked: bool,
    te_other: bool,
    conn_close: bool,
    conn_keep_alive: bool,
    expect_continue: bool,
    expect_other: bool,
    accept_encoding: Option<Span>,
    if_none_match: Option<Span>,
    if_match: Option<Span>,
    if_modified_since: Option<Span>,
    if_unmodified_since: Option<Span>,
    range: Option<Span>,
    if_range: Option<Span>,
    user_agent: Option<Span>,
    referer: Option<Span>,
    authorization: Option<Span>,
}

impl Fields {
    fn add(&mut self, buf: &[u8], header: &httparse::Header<'_>) -> Result<(), HttpError> {
        let name = header.name.as_bytes();
        // httparse already enforces both of these; re-checked so that a change in the
        // dependency cannot silently open a smuggling hole.
        if !is_token(name) {
            return Err(bad("invalid field name"));
        }
        if !header.value.iter().all(|&b| is_field_byte(b)) {
            return Err(bad("control character in field value"));
        }
        let raw = span_of(buf, header.value);
        let span = trim_span(buf, raw);
        let value = span.get(buf);

        let first = |slot: &mut Option<Span>| {
            if slot.is_none() {
                *slot = Some(span);
            }
        };
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if is("host") {
            self.host_count += 1;
            first(&mut self.host);
        } else if is("content-length") {
            match parse_content_length(value) {
                Some(n) if self.content_length.is_none_or(|c| c == n) => {
                    self.content_length = Some(n)
                }
                _ => self.content_length_error = true,
            }
        } else if is("transfer-encoding") {
            self.te_seen = true;
            for elem in value.split(|&b| b == b',') {
                let elem = trim(elem);
                let coding = trim(elem.split(|&b| b == b';').next().unwrap_or(elem));
                if !is_token(coding) {
                    self.te_error = true;
                } else if coding.eq_ignore_ascii_case(b"chunked") {
                    // chunked takes no parameters
                    if coding.len() != elem.len() {
                        self.te_error = true;
                    }
                    self.te_chunked_count += 1;
                    self.te_last_chunked = true;
                } else {
                    self.te_other = true;
                    self.te_last_chunked = false;
                }
            }
        } else if is("connection") {
            for token in value.split(|&b| b == b',').map(trim) {
                if token.eq_ignore_ascii_case(b"close") {
                    self.conn_close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    self.conn_keep_alive = true;
                }
            }
        } else if is("expect") {
            if value.eq_ignore_ascii_case(b"100-continue") {
                self.expect_continue = true;
            } else {
                self.expect_other = true;
            }
        } else if is("accept-encoding") {
            first(&mut self.accept_encoding);
        } else if is("if-none-match") {
            first(&mut self.if_none_match);
        } else if is("if-match") {
            first(&mut self.if_match);
        } else if is("if-modified-since") {
            first(&mut self.if_modified_since);
        } else if is("if-unmodified-since") {
            first(&mut self.if_unmodified_since);
        } else if is("range") {
            first(&mut self.range);
        } else if is("if-range") {
            first(&mut self.if_range);
        } else if is("user-agent") {
            first(&mut self.user_agent);
        } else if is("referer") {
            first(&mut self.referer);
        } else if is("authorization") {
            first(&mut self.authorization);
        }
        Ok(())
    }
}

/// Applies the cross-header rules. Order: every 400 first, then 501, 413, 417, so the
/// most fundamental problem is the one reported.
#[allow(clippy::too_many_arguments)]
fn head_from(
    buf: &[u8],
    h: Fields,
    method: Method,
    method_span: Span,
    version: Version,
    target: Span,
    head_len: usize,
    limits: &Limits,
) -> Result<RequestHead, HttpError> {
    let form = split_target(buf, target, method)?;

    // RFC 9112 3.2: exactly one Host in HTTP/1.1; never more than one.
    if h.host_count > 1 {
        return Err(bad("duplicate Host"));
    }
    if version == Version::Http11 && h.host_count == 0 {
        return Err(bad("missing Host"));
    }
    if let Some(host) = h.host {
        // Empty is what a client sends when the target has no authority.
        if !valid_authority(host.get(buf), true) {
            return Err(bad("invalid Host"));
        }
    }

    if h.content_length_error {
        return Err(bad("invalid Content-Length"));
    }
    let framing = if h.te_seen {
        // RFC 9112 6.1: TE + CL is a smuggling shape; TE in 1.0 cannot be trusted.
        if h.content_length.is_some() {
            return Err(bad("Transfer-Encoding with Content-Length"));
        }
        if version == Version::Http10 {
            return Err(bad("Transfer-Encoding in HTTP/1.0"));
        }
        if h.te_error || h.te_chunked_count != 1 || !h.te_last_chunked {
            return Err(bad("invalid Transfer-Encoding"));
        }
        if h.te_other {
            return Err(HttpError::new(501, "unsupported transfer coding"));
        }
        BodyFraming::Chunked
    } else {
        match h.content_length {
            Some(n) => BodyFraming::Length(n),
            None => BodyFraming::None,
        }
    };
    if let BodyFraming::Length(n) = framing {
        if n > limits.max_body_bytes {
            return Err(HttpError::new(413, "body too large"));
        }
    }

    // Expect is an HTTP/1.1 feature; a 1.0 client cannot wait for 100.
    let expect_continue = version == Version::Http11 && h.expect_continue;
    if version == Version::Http11 && h.expect_other {
        return Err(HttpError::new(417, "unsupported expectation"));
    }

    let keep_alive = match version {
        Version::Http11 => !h.conn_close,
        Version::Http10 => h.conn_keep_alive && !h.conn_close,
    };

    Ok(RequestHead {
        method,
        method_span,
        version,
        target,
        path: form.path,
        query: form.query,
        head_len,
        framing,
        keep_alive,
        expect_continue,
        host: form.authority.or(h.host),
        accept_encoding: h.accept_encoding,
        if_none_match: h.if_none_match,
        if_match: h.if_match,
        if_modified_since: h.if_modified_since,
        if_unmodified_since: h.if_unmodified_since,
        range: h.range,
        if_range: h.if_range,
        user_agent: h.user_agent,
        referer: h.referer,
        authorization: h.authorization,
    })
}

/// Maps an httparse error to our status. `None` means the request line is a valid
/// prefix of a (possibly unsupported) version and more bytes are needed to decide.
fn syntax_error(e: httparse::Error, bytes: &[u8]) -> Option<HttpError> {
    match e {
        httparse::Error::TooManyHeaders => Some(HttpError::new(431, "too many header fields")),
        httparse::Error::Version => version_error(bytes),
        _ => Some(bad("malformed request head")),
    }
}

/// The length of the head at the start of `bytes`: up to and including the empty line
/// (CRLF or bare LF) that ends it, or all of `bytes` if none has arrived.
fn head_end(bytes: &[u8]) -> usize {
    let start = skip_empty_lines(bytes);
    for nl in memchr::memchr_iter(b'\n', &bytes[start..]) {
        let after = start + nl + 1;
        match bytes.get(after..) {
            Some([b'\n', ..]) => return after + 1,
            Some([b'\r', b'\n', ..]) => return after + 2,
            _ => {}
        }
    }
    bytes.len()
}

/// Where the minor digit of a complete request line's `HTTP/1.d` is, when d is 2..=9.
fn later_minor(bytes: &[u8]) -> Option<usize> {
    let start = skip_empty_lines(bytes);
    let rest = &bytes[start..];
    let nl = memchr::memchr(b'\n', rest)?;
    let line = &rest[..nl];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let sp = memchr::memrchr(b' ', line)?;
    match &line[sp + 1..] {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', d] if (b'2'..=b'9').contains(d) => {
            Some(start + line.len() - 1)
        }
        _ => None,
    }
}

/// httparse rejects every version other than 1.0/1.1 the same way; a well-formed
/// `HTTP/d.d` deserves 505, anything else 400.
fn version_error(bytes: &[u8]) -> Option<HttpError> {
    let rest = &bytes[skip_empty_lines(bytes)..];
    let (line, complete) = match memchr::memchr(b'\n', rest) {
        Some(i) => (&rest[..i], true),
        None => (rest, false),
    };
    // httparse only reaches the version after "method SP target SP".
    let Some(version) = line.splitn(3, |&b| b == b' ').nth(2) else {
        return Some(bad("malformed request line"));
    };
    // Template "HTTP/d.d" optionally followed by the CR of the line ending.
    let fits = |i: usize, b: u8| match i {
        0..=4 => b == b"HTTP/"[i],
        5 | 7 => b.is_ascii_digit(),
        6 => b == b'.',
        8 => b == b'\r',
        _ => false,
    };
    let shaped = version.iter().enumerate().all(|(i, &b)| fits(i, b));
    if !complete {
        return if shaped {
            None
        } else {
            Some(bad("malformed HTTP version"))
        };
    }
    let full = version.len() == 8 || (version.len() == 9 && version[8] == b'\r');
    if shaped && full {
        Some(HttpError::new(505, "unsupported HTTP version"))
    } else {
        Some(bad("malformed HTTP version"))
    }
}

/// `1*DIGIT`, or a list of identical such values ("5, 5", RFC 9110 8.6). None = invalid.
pub(super) fn parse_content_length(v: &[u8]) -> Option<u64> {
    let mut result = None;
    for part in v.split(|&b| b == b',').map(trim) {
        if part.is_empty() {
            return None;
        }
        let mut n: u64 = 0;
        for &b in part {
            if !b.is_ascii_digit() {
                return None;
            }
            n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        }
        match result {
            Some(r) if r != n => return None,
            _ => result = Some(n),
        }
    }
    result
}

/// Mirrors httparse's skipping of empty lines before the request line (CRLF or LF).
fn skip_empty_lines(buf: &[u8]) -> usize {
    let mut i = 0;
    loop {
        match buf.get(i..) {
            Some([b'\r', b'\n', ..]) => i += 2,
            Some([b'\n', ..]) => i += 1,
            _ => return i,
        }
    }
}

/// Offset span of `part`, which httparse handed out as a sub-slice of `buf`.
fn span_of(buf: &[u8], part: &[u8]) -> Span {
    let start = (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
    debug_assert!(start + part.len() <= buf.len());
    Span::new(start, start + part.len())
}

fn trim_span(buf: &[u8], span: Span) -> Span {
    let s = span.get(buf);
    let lead = s.iter().position(|&b| !is_ows(b)).unwrap_or(s.len());
    let len = trim(s).len();
    let start = span.start as usize + lead;
    Span::new(start, start + len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::chunked::MAX_CHUNK_SIZE_LINE;

    fn lim() -> Limits {
        Limits {
            max_request_line: 200,
            max_header_bytes: 1000,
            max_body_bytes: 1000,
        }
    }

    fn ok(req: &[u8]) -> RequestHead {
        match parse(req, &lim()) {
            Ok(Some(h)) => h,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(req)),
        }
    }

    /// Parses a request expected to fail; also checks every prefix either needs more
    /// bytes or fails identically (split independence).
    fn status_with(req: &[u8], limits: &Limits) -> u16 {
        let e = match parse(req, limits) {
            Err(e) => e,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(req)),
        };
        assert!(e.close);
        for i in 0..req.len() {
            match parse(&req[..i], limits) {
                Ok(None) => {}
                Err(p) => assert_eq!(p, e, "prefix {i} of {:?}", String::from_utf8_lossy(req)),
                Ok(Some(_)) => panic!("prefix {i} complete"),
            }
        }
        e.status
    }

    fn status(req: &[u8]) -> u16 {
        status_with(req, &lim())
    }

    fn text(buf: &[u8], s: Span) -> &str {
        std::str::from_utf8(s.get(buf)).unwrap()
    }

    fn get(host_and_headers: &str) -> Vec<u8> {
        format!("GET / HTTP/1.1\r\n{host_and_headers}\r\n").into_bytes()
    }

    #[test]
    fn simple_get() {
        let r = b"GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n";
        let h = ok(r);
        assert_eq!(h.method, Method::Get);
        assert_eq!(text(r, h.method_span), "GET");
        assert_eq!(h.version, Version::Http11);
        assert_eq!(text(r, h.target), "/index.html");
        assert_eq!(text(r, h.path), "/index.html");
        assert_eq!(h.query, None);
        assert_eq!(h.head_len, r.len());
        assert_eq!(h.framing, BodyFraming::None);
        assert!(h.keep_alive);
        assert!(!h.expect_continue);
        assert_eq!(text(r, h.host.unwrap()), "example.com");
    }

    #[test]
    fn head_and_other_methods() {
        let r = b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(ok(r).method, Method::Head);
        let r = b"BREW /x HTTP/1.1\r\nHost: a\r\n\r\n";
        let h = ok(r);
        assert_eq!(h.method, Method::Other);
        assert_eq!(text(r, h.method_span), "BREW");
    }

    #[test]
    fn keep_alive_matrix() {
        let cases: &[(&str, &str, bool)] = &[
            ("1.1", "", true),
            ("1.1", "Connection: close\r\n", false),
            ("1.1", "Connection: keep-alive\r\n", true),
            ("1.1", "Connection: Upgrade, CLOSE\r\n", false),
            ("1.1", "Connection: foo\r\nConnection: close\r\n", false),
            ("1.0", "", false),
            ("1.0", "Connection: keep-alive\r\n", true),
            ("1.0", "Connection: Keep-Alive\r\n", true),
            ("1.0", "Connection: keep-alive, close\r\n", false),
            ("1.0", "Connection: keep-alivex\r\n", false),
        ];
        for (v, hdrs, ka) in cases {
            let r = format!("GET / HTTP/{v}\r\nHost: a\r\n{hdrs}\r\n");
            assert_eq!(ok(r.as_bytes()).keep_alive, *ka, "{r:?}");
        }
    }

    #[test]
    fn http10_without_host() {
        let h = ok(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(h.version, Version::Http10);
        assert_eq!(h.host, None);
    }

    #[test]
    fn query_split() {
        let r = b"GET /a/b?x=1&y=?z HTTP/1.1\r\nHost: a\r\n\r\n";
        let h = ok(r);
        assert_eq!(text(r, h.path), "/a/b");
        assert_eq!(text(r, h.query.unwrap()), "x=1&y=?z");
        let r = b"GET /a? HTTP/1.1\r\nHost: a\r\n\r\n";
        let h = ok(r);
        assert_eq!(text(r, h.path), "/a");
        assert_eq!(text(r, h.query.unwrap()), "");
    }

    #[test]
    fn absolute_form() {
        let r = b"GET HTTP://Other.example:8080/a/b?x HTTP/1.1\r\nHost: a\r\n\r\n";
        let h = ok(r);
        assert_eq!(text(r, h.target), "HTTP://Other.example:8080/a/b?x");
        assert_eq!(text(r, h.path), "/a/b");
        assert_eq!(text(r, h.query.unwrap()), "x");
        assert_eq!(text(r, h.host.unwrap()), "Other.example:8080");

        let r = b"GET https://h HTTP/1.1\r\nHost: h\r\n\r\n";
        let h = ok(r);
        assert_eq!(text(r, h.path), "");
        assert_eq!(h.query, None);
        assert_eq!(text(r, h.host.unwrap()), "h");

        let r = b"GET http://h?q HTTP/1.0\r\n\r\n";
        let h = ok(r);
        assert_eq!(text(r, h.path), "");
        assert_eq!(text(r, h.query.unwrap()), "q");
        assert_eq!(text(r, h.host.unwrap()), "h");
    }

    #[test]
    fn options_asterisk() {
        let r = b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n";
        let h = ok(r);
        assert_eq!(h.method, Method::Options);
        assert_eq!(text(r, h.path), "*");
        assert_eq!(status(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    }

    #[test]
    fn bad_targets() {
        for t in [
            "foo",
            "a/b",
            "example.com:80",
            "ftp://h/x",
            "http:///x",
            "http://u@h/x",
            "http://h h/",
            "/a#frag",
            "/a\x7f",
            "/caf\u{e9}",
        ] {
            let r = format!("GET {t} HTTP/1.1\r\nHost: a\r\n\r\n");
            assert_eq!(status(r.as_bytes()), 400, "{t:?}");
        }
    }

    #[test]
    fn connect_authority_form() {
        let r = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
        let h = ok(r);
        assert_eq!(h.method, Method::Connect);
        assert_eq!(text(r, h.path), "example.com:443");
        assert_eq!(status(b"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(
            status(b"CONNECT example.com HTTP/1.1\r\nHost: a\r\n\r\n"),
            400
        );
    }

    #[test]
    fn header_spans_are_trimmed() {
        let r = b"GET / HTTP/1.1\r\nHost: \t a.b \r\nAccept-Encoding:  gzip, br  \r\n\
                  If-None-Match: \"x\"\r\nIf-Match: *\r\nIf-Modified-Since: Sat, 1 Jan 2000\r\n\
                  If-Unmodified-Since: Sun\r\nRANGE: bytes=0-1\r\nif-range: \"e\"\r\n\
                  User-Agent: ua/1\t\r\nReferer: http://r/\r\nAccept-Encoding: second\r\n\
                  X-Other: \x80\xff ok\r\n\r\n";
        let h = ok(r);
        assert_eq!(text(r, h.host.unwrap()), "a.b");
        assert_eq!(text(r, h.accept_encoding.unwrap()), "gzip, br");
        assert_eq!(text(r, h.if_none_match.unwrap()), "\"x\"");
        assert_eq!(text(r, h.if_match.unwrap()), "*");
        assert_eq!(text(r, h.if_modified_since.unwrap()), "Sat, 1 Jan 2000");
        assert_eq!(text(r, h.if_unmodified_since.unwrap()), "Sun");
        assert_eq!(text(r, h.range.unwrap()), "bytes=0-1");
        assert_eq!(text(r, h.if_range.unwrap()), "\"e\"");
        assert_eq!(text(r, h.user_agent.unwrap()), "ua/1");
        assert_eq!(text(r, h.referer.unwrap()), "http://r/");
    }

    #[test]
    fn empty_header_value() {
        let r = b"GET / HTTP/1.1\r\nHost: a\r\nRange:\r\nAccept-Encoding:   \r\n\r\n";
        let h = ok(r);
        assert!(h.range.unwrap().is_empty());
        assert!(h.accept_encoding.unwrap().is_empty());
    }

    #[test]
    fn pipelined_and_leading_empty_lines() {
        let first = b"\r\n\nGET /1 HTTP/1.1\r\nHost: a\r\n\r\n";
        let mut r = first.to_vec();
        r.extend_from_slice(b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n");
        let h = ok(&r);
        assert_eq!(h.head_len, first.len());
        assert_eq!(text(&r, h.path), "/1");
        let h2 = ok(&r[h.head_len..]);
        assert_eq!(text(&r[h.head_len..], h2.path), "/2");
    }

    #[test]
    fn bare_lf_accepted() {
        let r = b"GET /x HTTP/1.1\nHost: a\n\nrest";
        let h = ok(r);
        assert_eq!(h.head_len, r.len() - 4);
    }

    #[test]
    fn every_prefix_needs_more() {
        let reqs: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"\r\nPOST /up?x HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\nExpect: 100-continue\r\n\r\n",
            b"PUT http://h/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"OPTIONS * HTTP/1.0\nConnection: keep-alive\n\n",
        ];
        for r in reqs {
            for i in 0..r.len() {
                assert_eq!(parse(&r[..i], &lim()), Ok(None), "prefix {i} of {r:?}");
            }
            assert!(ok(r).head_len == r.len());
        }
    }

    #[test]
    fn versions() {
        assert_eq!(status(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505);
        // A later 1.x minor is processed as 1.1 (RFC 9112 2.3), the rest of the head intact.
        let h = ok(b"GET /x HTTP/1.2\r\nHost: a\r\n\r\n");
        assert_eq!(h.version, Version::Http11);
        assert!(h.keep_alive);
        assert_eq!(
            ok(b"\r\nGET / HTTP/1.9\nHost: a\n\n").version,
            Version::Http11
        );
        assert_eq!(status(b"GET / HTTP/1.2\r\n\r\n"), 400); // 1.1 rules: Host required
                                                            // Only the head is copied; what follows it is left alone and the offsets hold.
        let first = b"\r\nGET /1 HTTP/1.2\r\nHost: a\r\nContent-Length: 3\r\n\r\n";
        let mut r = first.to_vec();
        r.extend_from_slice(b"abcGET /2 HTTP/1.2\nHost: a\n\n");
        let h = ok(&r);
        assert_eq!((h.head_len, text(&r, h.path)), (first.len(), "/1"));
        assert_eq!(h.framing, BodyFraming::Length(3));
        let h2 = ok(&r[h.head_len + 3..]);
        assert_eq!(text(&r[h.head_len + 3..], h2.path), "/2");
        for (head, end) in [
            (&b"A\r\n\r\nB"[..], 5),
            (b"\r\nA\nB\n\nC", 7),
            (b"A\n\rB", 4),
            (b"\n\n", 2),
        ] {
            assert_eq!(head_end(head), end, "{head:?}");
        }
        // A 1.2 head that never ends within the limit is still a 431, not "need more".
        let mut long = b"GET / HTTP/1.2\r\nHost: a\r\n".to_vec();
        while long.len() <= 1000 {
            long.extend_from_slice(b"X-Pad: 0123456789\r\n");
        }
        assert_eq!(status(&long), 431);
        assert_eq!(status(b"GET / HTTP/1.10\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/0.9\r\n\r\n"), 505);
        assert_eq!(status(b"GET / HTTP/3.0\n\n"), 505);
        assert_eq!(status(b"GET / http/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/2\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.10\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/2.0 \r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/2.0\rX\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / FTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET /\r\n\r\n"), 400); // HTTP/0.9 request
                                                   // A 505 is reported as soon as the request line is complete.
        assert_eq!(parse(b"GET / HTTP/2.0\r", &lim()), Ok(None));
        assert_eq!(
            parse(b"GET / HTTP/2.0\r\n", &lim()).unwrap_err().status,
            505
        );
    }

    #[test]
    fn request_line_syntax() {
        assert_eq!(status(b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET /  HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b" GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\rHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"\rGET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    }

    #[test]
    fn uri_too_long() {
        let l = lim();
        let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(300));
        assert_eq!(status(long.as_bytes()), 414);
        // Incomplete line already over the limit.
        let partial = format!("GET /{}", "a".repeat(250));
        assert_eq!(parse(partial.as_bytes(), &l).unwrap_err().status, 414);
        // Exactly at the limit is fine.
        let path = "a".repeat(l.max_request_line - "GET / HTTP/1.1".len());
        let exact = format!("GET /{path} HTTP/1.1\r\nHost: a\r\n\r\n");
        ok(exact.as_bytes());
        // 414 wins over 431 even when the head limit is smaller.
        let tight = Limits {
            max_header_bytes: 100,
            ..l
        };
        assert_eq!(status_with(long.as_bytes(), &tight), 414);
        // A syntax error inside the allowed line length is still a 400.
        let junk = format!("G\x01T /{} HTTP/1.1\r\n\r\n", "a".repeat(300));
        assert_eq!(status(junk.as_bytes()), 400);
    }

    #[test]
    fn header_too_large() {
        let big = get(&format!("Host: a\r\nX: {}\r\n", "b".repeat(1000)));
        assert_eq!(status(&big), 431);
        // Complete but over the limit.
        let l = Limits {
            max_header_bytes: 30,
            ..lim()
        };
        assert_eq!(
            status_with(b"GET / HTTP/1.1\r\nHost: abcdefgh\r\n\r\n", &l),
            431
        );
        // Endless empty lines are bounded too.
        assert_eq!(status(&b"\r\n".repeat(600)), 431);
    }

    #[test]
    fn too_many_headers() {
        // Host + 99 = 100 fields is the maximum.
        let many: String = (0..99).map(|i| format!("X-{i}: v\r\n")).collect();
        ok(&get(&format!("Host: a\r\n{many}")));
        let many = format!("{many}X-99: v\r\n");
        let l = Limits {
            max_header_bytes: 10_000,
            ..lim()
        };
        let r = get(&format!("Host: a\r\n{many}"));
        assert_eq!(status_with(&r, &l), 431);
    }

    #[test]
    fn host_rules() {
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(&get("Host: a\r\nHost: a\r\n")), 400);
        assert_eq!(status(b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n"), 400);
        for bad_host in [
            "a b", "a/b", "u@a", "a\\b", "a:b", "a:80:1", "[::1", "\x01", ":80",
        ] {
            let r = get(&format!("Host: {bad_host}\r\n"));
            assert_eq!(status(&r), 400, "{bad_host:?}");
        }
        for good in ["", "a.example", "a.example:8080", "[::1]:80", "127.0.0.1"] {
            let r = get(&format!("Host: {good}\r\n"));
            ok(&r);
        }
    }

    #[test]
    fn content_length() {
        let r = get("Host: a\r\nContent-Length: 42\r\n");
        assert_eq!(ok(&r).framing, BodyFraming::Length(42));
        let r = get("Host: a\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n");
        assert_eq!(ok(&r).framing, BodyFraming::Length(5));
        let r = get("Host: a\r\nContent-Length: 0\r\n");
        assert_eq!(ok(&r).framing, BodyFraming::Length(0));
        let r = get("Host: a\r\nContent-Length: 1000\r\n");
        assert_eq!(ok(&r).framing, BodyFraming::Length(1000));
        for v in [
            "+5",
            "-5",
            "0x5",
            "5 5",
            "5,6",
            "5,",
            ",5",
            "",
            "a",
            "5.0",
            "1e3",
            "99999999999999999999",
        ] {
            let r = get(&format!("Host: a\r\nContent-Length: {v}\r\n"));
            assert_eq!(status(&r), 400, "{v:?}");
        }
        assert_eq!(
            status(&get(
                "Host: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n"
            )),
            400
        );
        let r = get("Host: a\r\nContent-Length: 1001\r\n");
        assert_eq!(status(&r), 413);
    }

    #[test]
    fn transfer_encoding() {
        let chunked = |te: &str| ok(&get(&format!("Host: a\r\n{te}"))).framing;
        assert_eq!(
            chunked("Transfer-Encoding: chunked\r\n"),
            BodyFraming::Chunked
        );
        assert_eq!(
            chunked("Transfer-Encoding: CHUNKED \r\n"),
            BodyFraming::Chunked
        );
        let st = |te: &str| status(&get(&format!("Host: a\r\n{te}")));
        assert_eq!(
            st("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"),
            400
        );
        assert_eq!(
            st("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"),
            400
        );
        assert_eq!(st("Transfer-Encoding: chunked, identity\r\n"), 400);
        assert_eq!(st("Transfer-Encoding: identity\r\n"), 400);
        assert_eq!(st("Transfer-Encoding: chunkedx\r\n"), 400);
        assert_eq!(st("Transfer-Encoding: chunked, chunked\r\n"), 400);
        assert_eq!(
            st("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"),
            400
        );
        assert_eq!(
            st("Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n"),
            400
        );
        assert_eq!(st("Transfer-Encoding: chunked,\r\n"), 400);
        assert_eq!(st("Transfer-Encoding:\r\n"), 400);
        assert_eq!(st("Transfer-Encoding: chunked;a=b\r\n"), 400);
        assert_eq!(st("Transfer-Encoding: \"chunked\"\r\n"), 400);
        assert_eq!(st("Transfer-Encoding: gzip, chunked\r\n"), 501);
        assert_eq!(
            st("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"),
            501
        );
        assert_eq!(st("Transfer-Encoding: x-foo , Chunked\r\n"), 501);
        let r = b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(status(r), 400);
    }

    #[test]
    fn expect() {
        let h = ok(&get("Host: a\r\nExpect: 100-Continue\r\n"));
        assert!(h.expect_continue);
        assert_eq!(status(&get("Host: a\r\nExpect: 200-ok\r\n")), 417);
        assert_eq!(status(&get("Host: a\r\nExpect:\r\n")), 417);
        let h = ok(b"GET / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n");
        assert!(!h.expect_continue);
        ok(b"GET / HTTP/1.0\r\nExpect: bogus\r\n\r\n");
    }

    #[test]
    fn field_syntax_smuggling() {
        for hdrs in [
            "Host: a\r\n folded: x\r\n",          // obs-fold
            "Host: a\r\nX: a\r\n\tb\r\n",         // obs-fold continuation
            "Host: a\r\nContent-Length : 5\r\n",  // space before colon
            "Host: a\r\nContent-Length\t: 5\r\n", // tab before colon
            "Host: a\r\nX: a\rb\r\n",             // bare CR in value
            "Host: a\r\nX: a\0b\r\n",             // NUL in value
            "Host: a\r\nX: a\x7fb\r\n",           // DEL in value
            "Host: a\r\nX: a\x01b\r\n",           // other CTL
            "Host: a\r\nX(y): 1\r\n",             // invalid name char
            "Host: a\r\nX\x7fy: 1\r\n",           // DEL in name
            "Host: a\r\n: empty-name\r\n",        // empty name
            "Host: a\r\nno-colon\r\n",            // no colon
            "Host: a\r\nX: 1\r\r\n",              // CR CR LF
        ] {
            assert_eq!(status(&get(hdrs)), 400, "{hdrs:?}");
        }
        // obs-text is allowed in values.
        ok(&get("Host: a\r\nX: caf\u{e9}\r\n"));
        // A tab inside a value is allowed.
        ok(&get("Host: a\r\nX: a\tb\r\n"));
    }

    fn feed_all(input: &[u8], limits: &Limits) -> Result<(usize, bool), HttpError> {
        ChunkedDecoder::new().feed(input, limits)
    }

    /// Feeds `input` split at `at`, continuing until finished or an error.
    fn feed_split(input: &[u8], at: usize) -> Result<(usize, bool), HttpError> {
        let mut d = ChunkedDecoder::new();
        let (a, done) = d.feed(&input[..at], &lim())?;
        if done {
            return Ok((a, true));
        }
        assert_eq!(a, at, "decoder must consume everything until finished");
        let (b, done) = d.feed(&input[at..], &lim())?;
        Ok((a + b, done))
    }

    fn feed_bytewise(input: &[u8], limits: &Limits) -> Result<(usize, bool), HttpError> {
        let mut d = ChunkedDecoder::new();
        for (i, b) in input.iter().enumerate() {
            let (n, done) = d.feed(std::slice::from_ref(b), limits)?;
            if done {
                return Ok((i + n, true));
            }
            assert_eq!(n, 1);
        }
        Ok((input.len(), false))
    }

    const BODY: &[u8] = b"5;ext;name=val ; q=\"a\\\"b;c\"\r\nhello\r\n\
                          A\r\n0123456789\r\n\
                          000 ; last\r\n\
                          Trailer-One: x\r\nT2:\r\n\r\n";

    #[test]
    fn chunked_whole_bytewise_and_split() {
        let mut input = BODY.to_vec();
        input.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(feed_all(&input, &lim()), Ok((BODY.len(), true)));
        assert_eq!(feed_bytewise(&input, &lim()), Ok((BODY.len(), true)));
        for at in 0..=input.len() {
            assert_eq!(feed_split(&input, at), Ok((BODY.len(), true)), "split {at}");
        }
        // Without the final CRLF it is not finished.
        assert_eq!(
            feed_all(&BODY[..BODY.len() - 2], &lim()),
            Ok((BODY.len() - 2, false))
        );
    }

    #[test]
    fn chunked_minimal_and_done_is_sticky() {
        let mut d = ChunkedDecoder::new();
        assert_eq!(d.feed(b"0\r\n\r\nXYZ", &lim()), Ok((5, true)));
        assert_eq!(d.feed(b"XYZ", &lim()), Ok((0, true)));
        assert_eq!(d.feed(b"", &lim()), Ok((0, true)));
        assert_eq!(ChunkedDecoder::new().feed(b"", &lim()), Ok((0, false)));
    }

    fn chunk_status(input: &[u8], limits: &Limits) -> u16 {
        let e = match feed_all(input, limits) {
            Err(e) => e,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        };
        assert!(e.close);
        assert_eq!(feed_bytewise(input, limits), Err(e));
        // The error is sticky.
        let mut d = ChunkedDecoder::new();
        let _ = d.feed(input, limits);
        assert_eq!(d.feed(b"0\r\n\r\n", limits), Err(e));
        e.status
    }

    #[test]
    fn chunked_errors() {
        let l = lim();
        for bad_input in [
            &b"g\r\n"[..],
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"\r\n",
            b"-1\r\n",
            b"5\nhello\r\n0\r\n\r\n",    // bare LF after size
            b"5 \r\nhello\r\n0\r\n\r\n", // trailing whitespace
            b"5\rhello\r\n",             // CR without LF
            b"5\r\nhelloX\r\n",          // data too long / no CRLF
            b"5\r\nhello\n0\r\n\r\n",    // bare LF after data
            b"5\r\nhello\r0\r\n\r\n",    // CR without LF after data
            b"5;\r\nhello\r\n",          // empty ext name
            b"5;a=\r\nhello\r\n",        // empty ext value
            b"5;a=\"x\r\n",              // unterminated quote (CR inside)
            b"5;a b\r\n",                // junk after ext name
            b"5;a=\"x\"y\r\n",           // junk after quoted value
            b"5;a\x01\r\n",              // CTL in ext
            b"10000000000000000\r\n",    // u64 overflow
            b"0\r\n folded: x\r\n\r\n",  // trailer obs-fold
            b"0\r\nX : y\r\n\r\n",       // space before colon
            b"0\r\nno-colon\r\n\r\n",
            b"0\r\nX: a\0\r\n\r\n",
            b"0\r\nX: a\n\r\n",
            b"0\r\n\n", // bare LF final line
            b"0\r\n\rX",
        ] {
            assert_eq!(
                chunk_status(bad_input, &l),
                400,
                "{:?}",
                String::from_utf8_lossy(bad_input)
            );
        }
        // Leading zeros are not an overflow.
        let z = b"00000000000000000000005\r\nhello\r\n0\r\n\r\n";
        assert_eq!(feed_all(z, &l), Ok((z.len(), true)));
    }

    #[test]
    fn chunked_limits() {
        let l = lim();
        // Total body over max_body_bytes, also when spread over chunks.
        assert_eq!(chunk_status(b"3e9\r\n", &l), 413);
        let mut two = b"1f4\r\n".to_vec();
        two.extend_from_slice(&[b'x'; 500]);
        two.extend_from_slice(b"\r\n1f5\r\n");
        assert_eq!(chunk_status(&two, &l), 413);
        // Exactly max_body_bytes is fine.
        let mut exact = b"3e8\r\n".to_vec();
        exact.extend_from_slice(&[b'x'; 1000]);
        exact.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(feed_all(&exact, &l), Ok((exact.len(), true)));
        // Size line of more than 4096 bytes.
        let mut long = b"1;a=".to_vec();
        long.extend_from_slice(&[b'v'; MAX_CHUNK_SIZE_LINE]);
        assert_eq!(chunk_status(&long, &l), 400);
        let mut fits = b"1;a=".to_vec();
        fits.extend_from_slice(&[b'v'; MAX_CHUNK_SIZE_LINE - 4]);
        fits.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert_eq!(feed_all(&fits, &l), Ok((fits.len(), true)));
        // Trailer section larger than max_header_bytes.
        let mut trailers = b"0\r\n".to_vec();
        for _ in 0..100 {
            trailers.extend_from_slice(b"X-Trailer: 0123456789\r\n");
        }
        trailers.extend_from_slice(b"\r\n");
        assert_eq!(chunk_status(&trailers, &l), 431);
    }

    /// Tiny deterministic generator so the mutation tests need no extra crate.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) as usize) % n
        }
    }

    fn mutate(rng: &mut Lcg, base: &[u8]) -> Vec<u8> {
        const ALPHABET: &[u8] = b"\r\n \t:;,=\"\\0aA/?#@\x00\x7f\x80Ff9-";
        let mut v = base.to_vec();
        for _ in 0..1 + rng.next(3) {
            let at = rng.next(v.len() + 1);
            let b = ALPHABET[rng.next(ALPHABET.len())];
            match rng.next(3) {
                0 if at < v.len() => v[at] = b,
                1 if at < v.len() => {
                    v.remove(at);
                }
                _ => v.insert(at, b),
            }
        }
        v
    }

    /// Mutated heads never panic, and the verdict is monotone in the prefix: once a
    /// prefix yields a head or an error, every longer prefix yields the same.
    #[test]
    fn mutated_heads_are_prefix_stable() {
        let bases: &[&[u8]] = &[
            b"GET /a?b HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nGET",
            b"POST http://h:1/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"\r\nOPTIONS * HTTP/1.0\r\nConnection: keep-alive\r\nExpect: 100-continue\r\n\r\n",
        ];
        let l = Limits {
            max_request_line: 40,
            max_header_bytes: 90,
            max_body_bytes: 10,
        };
        let mut rng = Lcg(7);
        for round in 0..3000 {
            let input = mutate(&mut rng, bases[round % bases.len()]);
            let mut settled = None;
            for i in 0..=input.len() {
                let r = parse(&input[..i], &l);
                if let Err(e) = &r {
                    assert!(e.close);
                }
                match (&settled, r) {
                    (None, Ok(None)) => {}
                    (None, r) => settled = Some(r),
                    (Some(s), r) => assert_eq!(*s, r, "prefix {i} of {input:?}"),
                }
            }
        }
    }

    /// Mutated chunked bodies give the same verdict for every two-way split.
    #[test]
    fn mutated_chunked_is_split_independent() {
        let l = Limits {
            max_request_line: 40,
            max_header_bytes: 30,
            max_body_bytes: 20,
        };
        let mut rng = Lcg(11);
        for _ in 0..3000 {
            let input = mutate(
                &mut rng,
                b"5;a=\"b\"\r\nhello\r\nA\r\n0123456789\r\n0\r\nT: v\r\n\r\nGET",
            );
            let whole = feed_all(&input, &l);
            assert_eq!(feed_bytewise(&input, &l), whole, "{input:?}");
            for at in 0..=input.len() {
                let mut d = ChunkedDecoder::new();
                let split = d.feed(&input[..at], &l).and_then(|(a, done)| {
                    if done {
                        return Ok((a, true));
                    }
                    let (b, done) = d.feed(&input[at..], &l)?;
                    Ok((a + b, done))
                });
                assert_eq!(split, whole, "split {at} of {input:?}");
            }
        }
    }
}
