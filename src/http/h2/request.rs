//! An HTTP/2 request: the decoded field list checked against RFC 9113 8.2-8.3, then
//! rewritten as an HTTP/1.1 head so that `http::request::parse` and everything after it
//! (routing, conditionals, ranges, auth, negotiation) serve HTTP/2 unchanged.
//!
//! The checks here are the ones only HTTP/2 has (pseudo-headers, lowercase names,
//! connection-specific fields, `te`, `:authority` vs `host`); a failure is a malformed
//! request, a stream error PROTOCOL_ERROR (8.1.1). They also guarantee that the synthesised
//! head parses as exactly the request the client sent: no value holds CR or LF, the method
//! is a token and the path has no space, so no field can become two and the request line
//! cannot be split. What HTTP/1.1 already judges (Host syntax, Content-Length against
//! `max_body_bytes`, header size and count) is left to `parse`, which answers with a
//! status (400, 413, 431) like it does for HTTP/1.1.
//!
//! CONNECT: a well-formed one (`:method` and `:authority` only, 8.5) becomes
//! `CONNECT host:port HTTP/1.1` and gets the router's 405, like HTTP/1.1; `:protocol`
//! (RFC 8441 extended CONNECT, which we never enable) and a CONNECT with `:scheme` or
//! `:path` are malformed.

use super::hpack::FieldList;
use super::priority::Priority;
use super::{ErrorCode, H2Error};
use crate::http::request::parse_content_length;
use crate::http::token::{is_field_byte, is_ows, is_token};
use crate::http::Method;

/// A validated request's facts for the connection, and where its parts are in the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The declared length: the connection checks the DATA it receives against it.
    pub content_length: Option<u64>,
    /// From the `priority` header (RFC 9218), default when absent.
    pub priority: Priority,
    method_at: usize,
    path_at: Option<usize>,
    /// `:authority`, or without it the first `host`.
    authority_at: Option<usize>,
    /// Whether `host` fields are folded into `authority_at` (dropped from the head).
    host_from_authority: bool,
}

/// Fields that only make sense on one HTTP/1.1 hop (8.2.2).
const CONNECTION_SPECIFIC: [&[u8]; 5] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"transfer-encoding",
    b"upgrade",
];

fn malformed(stream: u32, why: &'static str) -> H2Error {
    H2Error::stream(stream, ErrorCode::ProtocolError, why)
}

/// A regular field's name and value rules shared by requests and trailers (8.2.1, 8.2.2).
fn check_field(stream: u32, name: &[u8], value: &[u8]) -> Result<(), H2Error> {
    if !is_token(name) || name.iter().any(u8::is_ascii_uppercase) {
        return Err(malformed(stream, "field name not a lowercase token"));
    }
    // RFC 9113 requires no NUL, CR or LF; we refuse every control character, as the
    // HTTP/1.1 parser would.
    if !value.iter().all(|&b| is_field_byte(b)) {
        return Err(malformed(stream, "control character in field value"));
    }
    if value.first().is_some_and(|&b| is_ows(b)) || value.last().is_some_and(|&b| is_ows(b)) {
        return Err(malformed(stream, "whitespace around field value"));
    }
    if CONNECTION_SPECIFIC.contains(&name) {
        return Err(malformed(stream, "connection-specific field"));
    }
    if name == b"te" && !value.eq_ignore_ascii_case(b"trailers") {
        return Err(malformed(stream, "te other than trailers"));
    }
    Ok(())
}

/// Checks a request's field list (RFC 9113 8.2, 8.3.1) for `stream`.
pub fn validate(fields: &FieldList, stream: u32) -> Result<Request, H2Error> {
    let (mut method, mut scheme, mut path, mut authority) = (None, None, None, None);
    let mut regular = false;
    let mut content_length = None;
    let mut first_host = None;
    let mut priority_lines: Vec<&[u8]> = Vec::new();
    for (i, (name, value)) in fields.iter().enumerate() {
        if let Some(pseudo) = name.strip_prefix(b":") {
            if regular {
                return Err(malformed(stream, "pseudo-header after a regular field"));
            }
            let slot = match pseudo {
                b"method" => &mut method,
                b"scheme" => &mut scheme,
                b"path" => &mut path,
                b"authority" => &mut authority,
                _ => return Err(malformed(stream, "unknown pseudo-header")),
            };
            if slot.replace(i).is_some() {
                return Err(malformed(stream, "duplicate pseudo-header"));
            }
            if value.iter().any(|&b| matches!(b, 0 | b'\r' | b'\n')) {
                return Err(malformed(stream, "control character in pseudo-header"));
            }
            continue;
        }
        regular = true;
        check_field(stream, name, value)?;
        match name {
            b"content-length" => {
                let n = parse_content_length(value)
                    .ok_or(malformed(stream, "invalid content-length"))?;
                if content_length.is_some_and(|c| c != n) {
                    return Err(malformed(stream, "conflicting content-length"));
                }
                content_length = Some(n);
            }
            b"host" => {
                first_host.get_or_insert(i);
            }
            b"priority" => priority_lines.push(value),
            _ => {}
        }
    }
    let value = |i: usize| fields.get(i).map_or(&b""[..], |(_, v)| v);
    let Some(method_at) = method else {
        return Err(malformed(stream, "no :method"));
    };
    let m = value(method_at);
    if !is_token(m) {
        return Err(malformed(stream, ":method not a token"));
    }
    let method = Method::from_bytes(m);
    if method == Method::Connect {
        if scheme.is_some() || path.is_some() {
            return Err(malformed(stream, "CONNECT with :scheme or :path"));
        }
        if authority.is_none() {
            return Err(malformed(stream, "CONNECT without :authority"));
        }
    } else {
        let (Some(s), Some(p)) = (scheme, path) else {
            return Err(malformed(stream, "no :scheme or :path"));
        };
        let s = value(s);
        let scheme_ok = s.first().is_some_and(u8::is_ascii_alphabetic)
            && s.iter()
                .all(|&b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
        if !scheme_ok {
            return Err(malformed(stream, "invalid :scheme"));
        }
        let p = value(p);
        if !p.iter().all(|&b| (0x21..0x7f).contains(&b)) {
            return Err(malformed(stream, "invalid byte in :path"));
        }
        match p.first() {
            Some(b'/') => {}
            Some(b'*') if p.len() == 1 && method == Method::Options => {}
            _ => return Err(malformed(stream, ":path empty or not origin-form")),
        }
    }
    if let Some(a) = authority {
        let a = value(a);
        if a.contains(&b'@') {
            return Err(malformed(stream, "userinfo in :authority"));
        }
        if a.iter().any(|&b| !(0x21..0x7f).contains(&b)) {
            return Err(malformed(stream, "invalid byte in :authority"));
        }
        // Both present: they must name the same origin (8.3.1).
        let disagrees = fields
            .iter()
            .any(|(n, v)| n == b"host" && !v.eq_ignore_ascii_case(a));
        if disagrees {
            return Err(malformed(stream, "host differs from :authority"));
        }
    }
    Ok(Request {
        method,
        content_length,
        priority: if priority_lines.is_empty() {
            Priority::default()
        } else {
            Priority::parse_lines(&priority_lines)
        },
        method_at,
        path_at: path,
        authority_at: authority.or(first_host),
        host_from_authority: authority.is_some(),
    })
}

/// Checks a trailer section (8.1): regular fields only, with the request's field rules.
pub fn validate_trailers(fields: &FieldList, stream: u32) -> Result<(), H2Error> {
    for (name, value) in fields.iter() {
        if name.starts_with(b":") {
            return Err(malformed(stream, "pseudo-header in trailers"));
        }
        check_field(stream, name, value)?;
    }
    Ok(())
}

impl Request {
    /// Appends the equivalent HTTP/1.1 head to `out`: request line, `host` first (from
    /// `:authority`), the regular fields in order (minus `te`), all `cookie` fields joined
    /// with "; " (8.2.3) into one, then the blank line. `fields` must be the list
    /// `validate` accepted.
    pub fn to_h1_head(&self, fields: &FieldList, out: &mut Vec<u8>) {
        let value = |i: usize| fields.get(i).map_or(&b""[..], |(_, v)| v);
        out.extend_from_slice(value(self.method_at));
        out.push(b' ');
        match self.path_at {
            Some(p) => out.extend_from_slice(value(p)),
            // CONNECT: authority-form.
            None => out.extend_from_slice(self.authority_at.map_or(&b""[..], value)),
        }
        out.extend_from_slice(b" HTTP/1.1\r\n");
        if self.host_from_authority {
            if let Some(a) = self.authority_at {
                out.extend_from_slice(b"host: ");
                out.extend_from_slice(value(a));
                out.extend_from_slice(b"\r\n");
            }
        }
        let mut cookies = 0;
        for (name, value) in fields.iter() {
            let skip = name.starts_with(b":")
                || name == b"te"
                || (name == b"host" && self.host_from_authority);
            if skip {
                continue;
            }
            if name == b"cookie" {
                cookies += 1;
                continue;
            }
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        if cookies > 0 {
            out.extend_from_slice(b"cookie: ");
            let mut first = true;
            for (_, v) in fields.iter().filter(|(n, _)| *n == b"cookie") {
                if !first {
                    out.extend_from_slice(b"; ");
                }
                first = false;
                out.extend_from_slice(v);
            }
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{parse, BodyFraming, Limits};

    fn list(fields: &[(&str, &str)]) -> FieldList {
        let mut l = FieldList::new();
        for (n, v) in fields {
            l.push(n.as_bytes(), v.as_bytes());
        }
        l
    }

    const GET: [(&str, &str); 4] = [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "example.com"),
        (":path", "/a/b.txt?x=1"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut v = GET.to_vec();
        v.extend_from_slice(extra);
        v
    }

    fn why(fields: &[(&str, &str)]) -> &'static str {
        match validate(&list(fields), 3) {
            Err(H2Error::Stream {
                stream: 3,
                code: ErrorCode::ProtocolError,
                why,
            }) => why,
            other => panic!("{fields:?}: {other:?}"),
        }
    }

    fn head(fields: &[(&str, &str)]) -> String {
        let l = list(fields);
        let r = validate(&l, 1).expect("valid");
        let mut out = Vec::new();
        r.to_h1_head(&l, &mut out);
        String::from_utf8(out).expect("ascii")
    }

    const LIMITS: Limits = Limits {
        max_request_line: 8192,
        max_header_bytes: 16384,
        max_body_bytes: 1 << 20,
    };

    #[test]
    fn a_valid_request_becomes_an_h1_head_that_parse_accepts() {
        let f = with(&[
            ("range", "bytes=0-9"),
            ("cookie", "a=1"),
            ("accept-encoding", "gzip, br"),
            ("cookie", "b=2"),
            ("if-none-match", "\"x\""),
            ("te", "trailers"),
            ("user-agent", "curl/8"),
            ("content-length", "5"),
        ]);
        let h = head(&f);
        assert_eq!(
            h,
            "GET /a/b.txt?x=1 HTTP/1.1\r\nhost: example.com\r\nrange: bytes=0-9\r\n\
             accept-encoding: gzip, br\r\nif-none-match: \"x\"\r\nuser-agent: curl/8\r\n\
             content-length: 5\r\ncookie: a=1; b=2\r\n\r\n"
        );
        let buf = h.as_bytes();
        let p = parse(buf, &LIMITS).expect("parses").expect("complete");
        assert_eq!(p.method, Method::Get);
        assert_eq!(p.head_len, buf.len());
        assert_eq!(p.path.get(buf), b"/a/b.txt");
        assert_eq!(p.query.map(|q| q.get(buf)), Some(&b"x=1"[..]));
        assert_eq!(p.host.map(|s| s.get(buf)), Some(&b"example.com"[..]));
        assert_eq!(p.range.map(|s| s.get(buf)), Some(&b"bytes=0-9"[..]));
        assert_eq!(
            p.accept_encoding.map(|s| s.get(buf)),
            Some(&b"gzip, br"[..])
        );
        assert_eq!(p.if_none_match.map(|s| s.get(buf)), Some(&b"\"x\""[..]));
        assert_eq!(p.user_agent.map(|s| s.get(buf)), Some(&b"curl/8"[..]));
        assert_eq!(p.framing, BodyFraming::Length(5));
        assert!(p.keep_alive);
        let r = validate(&list(&f), 1).unwrap();
        assert_eq!(r.content_length, Some(5));
    }

    #[test]
    fn host_is_used_without_authority_and_must_agree_with_it() {
        let f = [
            (":method", "HEAD"),
            (":scheme", "http"),
            (":path", "/"),
            ("host", "Example.com:8080"),
        ];
        let h = head(&f);
        assert_eq!(h, "HEAD / HTTP/1.1\r\nhost: Example.com:8080\r\n\r\n");
        let p = parse(h.as_bytes(), &LIMITS).unwrap().unwrap();
        assert_eq!(p.method, Method::Head);
        // Same origin, other case: one host line.
        assert_eq!(
            head(&with(&[("host", "EXAMPLE.com")])),
            "GET /a/b.txt?x=1 HTTP/1.1\r\nhost: example.com\r\n\r\n"
        );
        assert_eq!(
            why(&with(&[("host", "other.example")])),
            "host differs from :authority"
        );
        // Neither: HTTP/1.1's parse answers 400 (missing Host), as for HTTP/1.1.
        let h = head(&[(":method", "GET"), (":scheme", "http"), (":path", "/")]);
        assert_eq!(parse(h.as_bytes(), &LIMITS).unwrap_err().status, 400);
    }

    #[test]
    fn pseudo_header_rules() {
        assert_eq!(why(&[(":scheme", "https"), (":path", "/")]), "no :method");
        assert_eq!(
            why(&[(":method", "GET"), (":path", "/")]),
            "no :scheme or :path"
        );
        assert_eq!(
            why(&[(":method", "GET"), (":scheme", "https")]),
            "no :scheme or :path"
        );
        assert_eq!(
            why(&with(&[(":path", "/again")])),
            "duplicate pseudo-header"
        );
        assert_eq!(why(&with(&[(":status", "200")])), "unknown pseudo-header");
        assert_eq!(
            why(&with(&[(":protocol", "websocket")])),
            "unknown pseudo-header"
        );
        let late = [
            ("accept", "*/*"),
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/"),
        ];
        assert_eq!(why(&late), "pseudo-header after a regular field");
        let mut f = GET;
        f[3] = (":path", "");
        assert_eq!(why(&f), ":path empty or not origin-form");
        f[3] = (":path", "http://example.com/");
        assert_eq!(why(&f), ":path empty or not origin-form");
        f[3] = (":path", "*");
        assert_eq!(why(&f), ":path empty or not origin-form");
        f[3] = (":path", "/a b");
        assert_eq!(why(&f), "invalid byte in :path");
        f[0] = (":method", "OPTIONS");
        f[3] = (":path", "*");
        let h = head(&f);
        assert!(h.starts_with("OPTIONS * HTTP/1.1\r\n"), "{h}");
        assert_eq!(
            parse(h.as_bytes(), &LIMITS).unwrap().unwrap().method,
            Method::Options
        );
        let mut f = GET;
        f[0] = (":method", "G T");
        assert_eq!(why(&f), ":method not a token");
        f[0] = (":method", "GET");
        f[1] = (":scheme", "1http");
        assert_eq!(why(&f), "invalid :scheme");
        let mut f = GET;
        f[2] = (":authority", "user@example.com");
        assert_eq!(why(&f), "userinfo in :authority");
        f[2] = (":authority", "a\r\nb");
        assert_eq!(why(&f), "control character in pseudo-header");
    }

    #[test]
    fn regular_field_rules() {
        assert_eq!(
            why(&with(&[("Accept", "*/*")])),
            "field name not a lowercase token"
        );
        assert_eq!(
            why(&with(&[("a b", "x")])),
            "field name not a lowercase token"
        );
        assert_eq!(why(&with(&[("", "x")])), "field name not a lowercase token");
        for bad in ["a\0b", "a\rb", "a\nb", "a\x01"] {
            assert_eq!(
                why(&with(&[("x-a", bad)])),
                "control character in field value"
            );
        }
        assert_eq!(
            why(&with(&[("x-a", " v")])),
            "whitespace around field value"
        );
        assert_eq!(
            why(&with(&[("x-a", "v\t")])),
            "whitespace around field value"
        );
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "transfer-encoding",
            "upgrade",
        ] {
            assert_eq!(
                why(&with(&[(name, "x")])),
                "connection-specific field",
                "{name}"
            );
        }
        assert_eq!(why(&with(&[("te", "gzip")])), "te other than trailers");
        assert!(validate(&list(&with(&[("te", "Trailers")])), 1).is_ok());
        assert_eq!(
            why(&with(&[("content-length", "x")])),
            "invalid content-length"
        );
        assert_eq!(
            why(&with(&[("content-length", "1"), ("content-length", "2")])),
            "conflicting content-length"
        );
        assert!(validate(
            &list(&with(&[("content-length", "2"), ("content-length", "2")])),
            1
        )
        .is_ok());
        // Empty values and obs-text are fine.
        assert!(validate(&list(&with(&[("x-a", ""), ("x-b", "caf\u{e9}")])), 1).is_ok());
    }

    #[test]
    fn connect_is_handed_to_routing_or_refused_when_malformed() {
        let f = [(":method", "CONNECT"), (":authority", "example.com:443")];
        let h = head(&f);
        assert_eq!(
            h,
            "CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n"
        );
        let p = parse(h.as_bytes(), &LIMITS).unwrap().unwrap();
        assert_eq!(p.method, Method::Connect);
        assert_eq!(why(&[(":method", "CONNECT")]), "CONNECT without :authority");
        let f = [
            (":method", "CONNECT"),
            (":authority", "a:1"),
            (":path", "/"),
        ];
        assert_eq!(why(&f), "CONNECT with :scheme or :path");
    }

    #[test]
    fn priority_header_is_parsed() {
        let l = list(&with(&[("priority", "u=1"), ("priority", "i")]));
        let r = validate(&l, 1).unwrap();
        assert_eq!(
            r.priority,
            Priority {
                urgency: 1,
                incremental: true
            }
        );
        assert_eq!(
            validate(&list(&GET), 1).unwrap().priority,
            Priority::default()
        );
    }

    #[test]
    fn trailers_take_no_pseudo_headers() {
        assert!(validate_trailers(&list(&[("x-checksum", "abc")]), 1).is_ok());
        let e = validate_trailers(&list(&[(":path", "/")]), 5).unwrap_err();
        assert_eq!(e, malformed(5, "pseudo-header in trailers"));
        assert!(validate_trailers(&list(&[("X-A", "b")]), 5).is_err());
    }
}
