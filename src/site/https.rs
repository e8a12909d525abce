//! `[tls] redirect_http`: plain listeners send every request to its `https://` twin with
//! a 308 (method and body kept), except ACME HTTP-01 challenges, which certbot's webroot
//! mode must be able to fetch over plain HTTP from the root.

use crate::config::Config;
use crate::http::request::RequestHead;
use crate::http::response::Reply;
use std::sync::atomic::{AtomicU16, Ordering};

/// The port of the first TLS listener as bound (a configured port 0 becomes a real one
/// only at bind time); 443 is left out of the `Location`.
static HTTPS_PORT: AtomicU16 = AtomicU16::new(443);

pub fn set_https_port(port: u16) {
    HTTPS_PORT.store(port, Ordering::Relaxed);
}

/// The challenge directory, as a normalised path relative to the root.
const ACME: &[u8] = b".well-known/acme-challenge";

/// The 308 a request on a plain listener gets, if `redirect_http` is on.
pub fn redirect(config: &Config, head: &RequestHead, buf: &[u8]) -> Option<Reply> {
    if !config.tls.as_ref().is_some_and(|t| t.redirect_http) {
        return None;
    }
    let path = head.path.get(buf);
    if is_acme(path) {
        return None;
    }
    // Without a Host (HTTP/1.0) there is no name to send the client to: serve it.
    let host = head.host.map(|h| h.get(buf)).filter(|h| !h.is_empty())?;
    let name = strip_port(host);
    let mut loc = Vec::with_capacity(16 + host.len() + path.len());
    loc.extend_from_slice(b"https://");
    loc.extend_from_slice(name);
    let port = HTTPS_PORT.load(Ordering::Relaxed);
    if port != 443 {
        loc.push(b':');
        loc.extend_from_slice(itoa::Buffer::new().format(port).as_bytes());
    }
    loc.extend_from_slice(if path.is_empty() { b"/" } else { path });
    if let Some(q) = head.query {
        loc.push(b'?');
        loc.extend_from_slice(q.get(buf));
    }
    let mut reply = Reply::error(308);
    reply.headers.location = Some(loc.into_boxed_slice());
    Some(reply)
}

/// Does the request path name the challenge directory or something in it, once decoded and
/// without dot segments (as the router will resolve it)? The raw prefix is not enough:
/// `/.well-known/acme-challenge/../../private/x` is `/private/x`, which must be redirected.
fn is_acme(path: &[u8]) -> bool {
    // Without '%' or a segment starting with '.', no segment can be `.well-known`: the
    // common case costs one scan and no allocation.
    if memchr::memchr(b'%', path).is_none() && memchr::memmem::find(path, b"/.").is_none() {
        return false;
    }
    let mut rel = Vec::with_capacity(path.len());
    match crate::http::path::normalize(path, &mut rel) {
        Ok(trailing) => rel
            .strip_prefix(ACME)
            .is_some_and(|rest| rest.starts_with(b"/") || (rest.is_empty() && trailing)),
        // A path the router refuses (400, 403) is redirected: the TLS side answers it.
        Err(_) => false,
    }
}

/// `host[:port]` -> `host`; an IPv6 literal keeps its brackets.
fn strip_port(host: &[u8]) -> &[u8] {
    if host.first() == Some(&b'[') {
        return match memchr::memchr(b']', host) {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match memchr::memchr(b':', host) {
        Some(colon) => &host[..colon],
        None => host,
    }
}

#[cfg(test)]
mod tests {
    use super::is_acme;

    #[test]
    fn the_acme_exemption_matches_the_normalised_path() {
        for p in [
            "/.well-known/acme-challenge/tok",
            "/.well-known/acme-challenge/",
            "/.well-known/acme-challenge/a/../tok",
            "/%2ewell-known/acme%2Dchallenge/tok",
            "//.well-known/./acme-challenge/tok",
        ] {
            assert!(is_acme(p.as_bytes()), "{p}");
        }
        for p in [
            "/.well-known/acme-challenge/../../private/x",
            "/.well-known/acme-challenge/%2e%2e/%2E%2E/private/x",
            "/.well-known/acme-challenge/..",
            "/.well-known/acme-challenge",
            "/.well-known/acme-challengex/tok",
            "/.well-known/acme-challenge%2ftok",
            "/.well-known/acme-challenge/../../../etc/passwd",
            "/private/x",
            "/",
            "",
        ] {
            assert!(!is_acme(p.as_bytes()), "{p}");
        }
    }
}
