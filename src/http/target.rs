//! The request-target (RFC 9112 3.2): its form (origin, absolute, authority, asterisk), path
//! and query, and the authority grammar Host must follow too.

use super::request::bad;
use super::{HttpError, Method, Span};

pub(super) struct TargetForm {
    pub(super) path: Span,
    pub(super) query: Option<Span>,
    /// Authority of an absolute-form target; overrides Host (RFC 9112 3.2.2).
    pub(super) authority: Option<Span>,
}

/// Classifies the request-target (RFC 9112 3.2) and splits path and query.
pub(super) fn split_target(
    buf: &[u8],
    target: Span,
    method: Method,
) -> Result<TargetForm, HttpError> {
    let t = target.get(buf);
    let base = target.start as usize;
    let end = target.end as usize;
    // httparse already refuses SP and CTLs; '#' (fragment) and raw non-ASCII are not
    // part of the request-target grammar.
    if t.is_empty() || !t.iter().all(|&b| (0x21..0x7f).contains(&b) && b != b'#') {
        return Err(bad("invalid request-target"));
    }
    let path_and_query = |from: usize| {
        let q = memchr::memchr(b'?', &buf[from..end]).map(|i| from + i);
        let path_end = q.unwrap_or(end);
        (Span::new(from, path_end), q.map(|q| Span::new(q + 1, end)))
    };
    if method == Method::Connect {
        // authority-form only (host:port); the router refuses CONNECT itself.
        let port_ok = t
            .iter()
            .rposition(|&b| b == b':')
            .is_some_and(|i| i + 1 < t.len() && t[i + 1..].iter().all(u8::is_ascii_digit));
        if !port_ok || !valid_authority(t, false) {
            return Err(bad("CONNECT needs authority-form"));
        }
        return Ok(TargetForm {
            path: target,
            query: None,
            authority: None,
        });
    }
    if t[0] == b'/' {
        let (path, query) = path_and_query(base);
        return Ok(TargetForm {
            path,
            query,
            authority: None,
        });
    }
    if t == b"*" {
        if method != Method::Options {
            return Err(bad("asterisk-form only for OPTIONS"));
        }
        return Ok(TargetForm {
            path: target,
            query: None,
            authority: None,
        });
    }
    let scheme_len = if starts_with_ignore_case(t, b"http://") {
        7
    } else if starts_with_ignore_case(t, b"https://") {
        8
    } else {
        return Err(bad("invalid request-target form"));
    };
    let auth_start = base + scheme_len;
    let auth_end = buf[auth_start..end]
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .map_or(end, |i| auth_start + i);
    // http(s) URIs need a non-empty host; userinfo ('@') is refused outright.
    if !valid_authority(&buf[auth_start..auth_end], false) {
        return Err(bad("invalid authority in request-target"));
    }
    let (path, query) = if auth_end < end && buf[auth_end] == b'/' {
        path_and_query(auth_end)
    } else {
        // "http://h?x": empty path, caller treats it as "/".
        let query = (auth_end < end).then(|| Span::new(auth_end + 1, end));
        (Span::new(auth_end, auth_end), query)
    };
    Ok(TargetForm {
        path,
        query,
        authority: Some(Span::new(auth_start, auth_end)),
    })
}

/// `uri-host [ ":" port ]` (RFC 3986 3.2.2). Rejects whitespace, '/', '@', '\\', CTLs
/// and anything else outside the grammar, so Host cannot smuggle a path or userinfo.
pub(super) fn valid_authority(a: &[u8], allow_empty: bool) -> bool {
    if a.is_empty() {
        return allow_empty;
    }
    let (host_ok, port) = if a[0] == b'[' {
        // IP-literal: checked loosely (allowed characters only).
        let Some(close) = memchr::memchr(b']', a) else {
            return false;
        };
        let lit = &a[1..close];
        let lit_ok = !lit.is_empty() && lit.iter().all(|&b| is_reg_name_byte(b) || b == b':');
        let after = &a[close + 1..];
        match after.split_first() {
            None => (lit_ok, &after[..0]),
            Some((b':', port)) => (lit_ok, port),
            Some(_) => return false,
        }
    } else {
        let (host, port) = match memchr::memchr(b':', a) {
            Some(i) => (&a[..i], &a[i + 1..]),
            None => (a, &a[a.len()..]),
        };
        (
            !host.is_empty() && host.iter().all(|&b| is_reg_name_byte(b)),
            port,
        )
    };
    host_ok && port.iter().all(u8::is_ascii_digit)
}

/// unreserved / sub-delims / '%' (pct-encoded).
fn is_reg_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b)
}

fn starts_with_ignore_case(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}
