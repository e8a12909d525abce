//! An upstream's response head, parsed strictly (httparse plus the cross-header rules a
//! proxy must enforce): both Content-Length and Transfer-Encoding, two different lengths,
//! a coding other than a final `chunked`, or a head over the limit is an error (the
//! proxy answers 502), never a message forwarded with ambiguous framing. Pure bytes.

use super::token::{is_field_byte, is_token, trim};

/// Most header fields in an upstream response head.
const MAX_FIELDS: usize = 128;

/// How the response body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RespFraming {
    /// No body (HEAD request, 1xx, 204, 304).
    None,
    Length(u64),
    Chunked,
    /// Until the upstream closes.
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RespHead {
    pub status: u16,
    pub head_len: usize,
    pub framing: RespFraming,
    /// HTTP/1.1 without `Connection: close`: the connection may be reused.
    pub keep_alive: bool,
    /// `Keep-Alive: timeout=N`, seconds.
    pub keep_alive_timeout: Option<u64>,
}

/// `Ok(None)`: incomplete. `head_request`: the request was HEAD (no body whatever the
/// headers say). Errors are a short reason for the log.
pub fn parse(buf: &[u8], max: usize, head_request: bool) -> Result<Option<RespHead>, &'static str> {
    let view = &buf[..buf.len().min(max)];
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut resp = httparse::Response::new(&mut fields);
    let head_len = match resp.parse(view) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= max => {
            return Err("response head over the limit")
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err("too many response header fields"),
        Err(_) => return Err("malformed response head"),
    };
    let (Some(status), Some(minor)) = (resp.code, resp.version) else {
        return Err("malformed status line");
    };
    if !(100..=999).contains(&status) {
        return Err("bad status code");
    }
    let mut length: Option<u64> = None;
    let mut te = false;
    let mut te_chunked_last = false;
    let mut close = minor == 0;
    let mut ka_timeout = None;
    for f in resp.headers.iter() {
        let name = f.name.as_bytes();
        if !is_token(name) || !f.value.iter().all(|&b| is_field_byte(b)) {
            return Err("bad header field");
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let v = trim(f.value);
            // A list of equal values is one length (RFC 9110 8.6); different ones are not.
            for part in v.split(|&b| b == b',') {
                let p = trim(part);
                if p.is_empty() || p.len() > 19 || !p.iter().all(u8::is_ascii_digit) {
                    return Err("bad Content-Length");
                }
                let n: u64 = std::str::from_utf8(p)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or("bad Content-Length")?;
                if length.is_some_and(|l| l != n) {
                    return Err("two different Content-Length values");
                }
                length = Some(n);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            for part in f.value.split(|&b| b == b',') {
                let p = trim(part);
                if p.is_empty() {
                    continue;
                }
                if te_chunked_last {
                    return Err("a coding after chunked");
                }
                te = true;
                te_chunked_last = p.eq_ignore_ascii_case(b"chunked");
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for part in f.value.split(|&b| b == b',') {
                let p = trim(part);
                if p.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if p.eq_ignore_ascii_case(b"keep-alive") && minor == 0 {
                    close = false;
                }
            }
        } else if name.eq_ignore_ascii_case(b"keep-alive") {
            for part in f.value.split(|&b| b == b',') {
                let p = trim(part);
                if p.len() > 8 && p[..8].eq_ignore_ascii_case(b"timeout=") {
                    ka_timeout = std::str::from_utf8(&p[8..])
                        .ok()
                        .and_then(|s| s.trim().parse().ok());
                }
            }
        }
    }
    if te && length.is_some() {
        return Err("both Content-Length and Transfer-Encoding");
    }
    if te && minor == 0 {
        return Err("Transfer-Encoding in an HTTP/1.0 response");
    }
    let framing = if head_request || (100..200).contains(&status) || status == 204 || status == 304
    {
        RespFraming::None
    } else if te {
        if te_chunked_last {
            RespFraming::Chunked
        } else {
            // Delimited by close (RFC 9112 6.3): never reusable.
            close = true;
            RespFraming::Close
        }
    } else if let Some(n) = length {
        RespFraming::Length(n)
    } else {
        close = true;
        RespFraming::Close
    };
    Ok(Some(RespHead {
        status,
        head_len,
        framing,
        keep_alive: !close,
        keep_alive_timeout: ka_timeout,
    }))
}

/// Is `name` hop-by-hop (never forwarded either way), besides those `Connection` names?
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    const HOP: &[&[u8]] = &[
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    ];
    HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Does a `Connection` value in `fields` name `name` (so it is hop-by-hop too)?
pub fn named_by_connection<'a>(
    mut connection: impl Iterator<Item = &'a [u8]>,
    name: &[u8],
) -> bool {
    connection.any(|v| {
        v.split(|&b| b == b',')
            .any(|t| trim(t).eq_ignore_ascii_case(name))
    })
}

/// Call `f(name, value, named_by_connection)` for every field of a head `parse` accepted.
pub fn fields(head: &[u8], mut f: impl FnMut(&[u8], &[u8], bool)) {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut resp = httparse::Response::new(&mut fields);
    if resp.parse(head).is_err() {
        return;
    }
    let connection = || {
        resp.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"))
            .map(|h| h.value)
    };
    for h in resp.headers.iter() {
        let named = named_by_connection(connection(), h.name.as_bytes());
        f(h.name.as_bytes(), trim(h.value), named);
    }
}

/// The reason phrase vireo writes for a status (the upstream's own is not forwarded:
/// it is free text).
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Option<RespHead>, &'static str> {
        parse(s.as_bytes(), 8192, false)
    }

    #[test]
    fn framing_is_read_strictly() {
        let h = p("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, RespFraming::Length(5));
        assert!(h.keep_alive);
        assert_eq!(h.head_len, 38);
        let h = p("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, RespFraming::Chunked);
        let h = p("HTTP/1.1 200 OK\r\n\r\n").unwrap().unwrap();
        assert_eq!(h.framing, RespFraming::Close);
        assert!(!h.keep_alive);
        assert_eq!(p("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"), Ok(None));
    }

    #[test]
    fn ambiguous_framing_is_an_error() {
        assert!(
            p("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")
                .is_err()
        );
        assert!(p("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n").is_err());
        assert!(p("HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n").is_err());
        assert!(p("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n").is_err());
        assert!(p("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n").is_err());
        assert!(p("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n").is_err());
        let h = p("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, RespFraming::Length(5));
        assert!(parse(&[b'a'; 100], 50, false).is_err());
        let mut long = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        long.extend(std::iter::repeat_n(b'a', 100));
        assert_eq!(parse(&long, 80, false), Err("response head over the limit"));
    }

    #[test]
    fn keep_alive_and_its_timeout() {
        let h = p("HTTP/1.1 204 No Content\r\nKeep-Alive: timeout=5, max=100\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.keep_alive_timeout, Some(5));
        assert_eq!(h.framing, RespFraming::None);
        let h = p("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
        let h = p("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
    }
}
