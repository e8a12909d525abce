//! The request sent upstream, re-serialised from the parsed client head (never copied
//! raw): the request line with the target byte-exact (or its prefix stripped), the
//! client's `Host`, the end-to-end fields in their order, the forwarding fields
//! (`X-Forwarded-For`/`-Proto`/`-Host`, `Forwarded`, `Via`) and the body framing vireo
//! chose. Hop-by-hop fields (`Connection` and what it names, `Keep-Alive`, `TE`,
//! `Trailer`, `Transfer-Encoding`, `Upgrade`, `Proxy-Connection`) are dropped, as is
//! `Expect` (vireo answers `100 Continue` itself).

use crate::config::ProxyRule;
use crate::http::request::{BodyFraming, RequestHead};
use crate::http::token::trim;
use crate::http::upstream_response::{is_hop_by_hop, named_by_connection};
use crate::http::Version;
use std::net::IpAddr;

/// Most header fields re-parsed from a client head (the request parser's own bound).
const MAX_FIELDS: usize = 128;

/// What the forwarding fields say about the client.
pub struct Client {
    pub ip: IpAddr,
    pub https: bool,
}

/// Write the upstream request head for `head` (parsed from `buf`) into `out`. `fallback_host`:
/// the `Host` sent when the client sent none (HTTP/1.0). Returns false if the head could not
/// be re-parsed (it was parsed once already, so this does not happen).
pub fn write_head(
    head: &RequestHead,
    buf: &[u8],
    rule: &ProxyRule,
    client: &Client,
    fallback_host: &str,
    close: bool,
    out: &mut Vec<u8>,
) -> bool {
    let raw = &buf[..head.head_len];
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut req = httparse::Request::new(&mut fields);
    if !matches!(req.parse(raw), Ok(httparse::Status::Complete(_))) {
        return false;
    }
    let connection = || {
        req.headers
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case("connection"))
            .map(|f| f.value)
    };
    // Request line: origin-form, from the path on (an absolute-form target's authority
    // went to Host).
    out.extend_from_slice(head.method_span.get(buf));
    out.push(b' ');
    let (ts, te) = (head.target.start as usize, head.target.end as usize);
    let path_start = (head.path.start as usize).clamp(ts, te);
    let target = &buf[path_start..te];
    let target = if target.is_empty() { &b"/"[..] } else { target };
    let strip = rule.strip_len(head.path.get(buf));
    let sent = &target[strip.min(target.len())..];
    if !sent.starts_with(b"/") {
        out.push(b'/');
    }
    out.extend_from_slice(sent);
    out.extend_from_slice(match head.version {
        Version::Http10 => b" HTTP/1.0\r\n",
        _ => b" HTTP/1.1\r\n",
    });
    let host = head
        .host
        .map(|h| h.get(buf))
        .unwrap_or(fallback_host.as_bytes());
    out.extend_from_slice(b"Host: ");
    out.extend_from_slice(host);
    out.extend_from_slice(b"\r\n");

    let trusted = rule.trusted_proxies.iter().any(|c| c.contains(client.ip));
    let mut xff: Option<Vec<u8>> = None;
    let mut xfp: Option<&[u8]> = None;
    let mut xfh: Option<&[u8]> = None;
    let mut fwd: Option<Vec<u8>> = None;
    let mut via: Option<Vec<u8>> = None;
    for f in req.headers.iter() {
        let name = f.name.as_bytes();
        let value = trim(f.value);
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if is_hop_by_hop(name)
            || named_by_connection(connection(), name)
            || is("host")
            || is("content-length")
            || is("expect")
        {
            continue;
        }
        // Several lines of a list field are one list (RFC 9110 5.3).
        let join = |acc: &mut Option<Vec<u8>>| {
            let v = acc.get_or_insert_with(Vec::new);
            if !v.is_empty() {
                v.extend_from_slice(b", ");
            }
            v.extend_from_slice(value);
        };
        if is("x-forwarded-for") {
            if trusted {
                join(&mut xff);
            }
        } else if is("forwarded") {
            if trusted {
                join(&mut fwd);
            }
        } else if is("x-forwarded-proto") {
            if trusted {
                xfp = Some(value);
            }
        } else if is("x-forwarded-host") {
            if trusted {
                xfh = Some(value);
            }
        } else if is("via") {
            join(&mut via);
        } else {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(&rule.set_headers);
    let ip = client.ip.to_string();
    let proto: &[u8] = if client.https { b"https" } else { b"http" };
    out.extend_from_slice(b"X-Forwarded-For: ");
    if let Some(x) = &xff {
        out.extend_from_slice(x);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(ip.as_bytes());
    out.extend_from_slice(b"\r\nX-Forwarded-Proto: ");
    out.extend_from_slice(xfp.unwrap_or(proto));
    out.extend_from_slice(b"\r\nX-Forwarded-Host: ");
    out.extend_from_slice(xfh.unwrap_or(host));
    out.extend_from_slice(b"\r\nForwarded: ");
    if let Some(x) = &fwd {
        out.extend_from_slice(x);
        out.extend_from_slice(b", ");
    }
    // RFC 7239: an IPv6 node and a host with a port are quoted.
    match client.ip {
        IpAddr::V4(_) => out.extend_from_slice(format!("for={ip}").as_bytes()),
        IpAddr::V6(_) => out.extend_from_slice(format!("for=\"[{ip}]\"").as_bytes()),
    }
    out.extend_from_slice(b";proto=");
    out.extend_from_slice(proto);
    if host
        .iter()
        .all(|&b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    {
        out.extend_from_slice(b";host=\"");
        out.extend_from_slice(host);
        out.push(b'"');
    }
    out.extend_from_slice(b"\r\nVia: ");
    if let Some(v) = &via {
        out.extend_from_slice(v);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(match head.version {
        Version::Http10 => b"1.0 vireo\r\n",
        _ => b"1.1 vireo\r\n",
    });
    match head.framing {
        BodyFraming::None => {}
        BodyFraming::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        BodyFraming::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
    }
    if close && head.version != Version::Http10 {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    true
}
