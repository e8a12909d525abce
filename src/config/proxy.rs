//! `[[proxy]]` (and `[[site.proxy]]`): request paths answered by an `[[upstream]]` set
//! instead of files. Paths match like `[[auth]]` paths (prefix, or glob with `*`/`**`,
//! on the decoded, normalised path), the most specific rule first; redirects and auth
//! are judged before them, files after. `trusted_proxies` (top level, or per rule) lists
//! the peers whose `X-Forwarded-*` headers are believed.

use serde::Deserialize;
use std::net::IpAddr;
use std::sync::Arc;
use toml::Spanned;

use super::headers::PathPattern;
use super::parse::{Entries, Src};
use super::upstream::{parse_server_addr, Upstream};
use super::ConfigError;

/// Most `[[proxy]]` rules per site.
pub const MAX_PROXY_RULES: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProxy {
    path: Spanned<String>,
    upstream: Option<Spanned<String>>,
    pass: Option<Spanned<String>>,
    #[serde(default)]
    strip_prefix: bool,
    #[serde(default)]
    set_headers: Entries<Spanned<String>>,
    max_body_bytes: Option<Spanned<i64>>,
    #[serde(default)]
    websocket: bool,
    trusted_proxies: Option<Spanned<Vec<String>>>,
    compress: Option<bool>,
}

/// An address range (`10.0.0.0/8`, `::1/128`, or a single address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub net: IpAddr,
    pub bits: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (ip, bits) = match s.split_once('/') {
            Some((ip, b)) => (ip, Some(b)),
            None => (s, None),
        };
        let net: IpAddr = ip
            .parse()
            .map_err(|_| format!("{s:?} is not an address or CIDR"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => b
                .parse::<u8>()
                .ok()
                .filter(|&b| b <= max)
                .ok_or_else(|| format!("{s:?}: prefix length 0..={max}"))?,
        };
        Ok(Cidr { net, bits })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.bits))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProxyRule {
    pub pattern: PathPattern,
    pub path: Box<str>,
    /// Index into `Config::upstreams`.
    pub upstream: usize,
    /// Forward `/api/x` as `/x` (the rule's literal prefix, minus a trailing '/', is cut).
    pub strip_prefix: bool,
    /// `Name: value\r\n` lines added to every forwarded request.
    pub set_headers: Box<[u8]>,
    /// Request body limit for this route (413 over it).
    pub max_body_bytes: u64,
    /// `Upgrade` requests may become tunnels (`upstream::tunnel`).
    pub websocket: bool,
    /// Peers whose `X-Forwarded-*` are kept (appended to); default none.
    pub trusted_proxies: Arc<[Cidr]>,
    /// Compress responses as `[compression]` says (on the pool, streaming); default true.
    pub compress: bool,
}

/// Request headers a rule may not set: hop-by-hop ones and those the proxy writes.
const RESERVED: &[&str] = &[
    "connection",
    "content-length",
    "forwarded",
    "host",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "via",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
];

pub(super) fn trusted(
    raw: Option<&Spanned<Vec<String>>>,
    key: &'static str,
    src: &Src,
) -> Result<Arc<[Cidr]>, ConfigError> {
    let Some(list) = raw else {
        return Ok(Arc::from(Vec::new()));
    };
    let mut out = Vec::new();
    for (i, s) in list.get_ref().iter().enumerate() {
        out.push(
            Cidr::parse(s)
                .map_err(|m| src.invalid(list.span(), key, format!("entry {}: {m}", i + 1)))?,
        );
    }
    Ok(out.into())
}

/// Validate the rules of one site against the upstream sets (`pass` adds a one-server set
/// to `upstreams`), most specific first like `[[auth]]`.
pub(super) fn build_proxies(
    raw: Vec<RawProxy>,
    upstreams: &mut Vec<Upstream>,
    default_trusted: &Arc<[Cidr]>,
    default_max_body: u64,
    src: &Src,
) -> Result<Arc<[ProxyRule]>, ConfigError> {
    if let Some(r) = raw.get(MAX_PROXY_RULES) {
        let msg = format!("at most {MAX_PROXY_RULES} [[proxy]] rules");
        return Err(src.invalid(r.path.span(), "proxy", msg));
    }
    let mut rules = Vec::with_capacity(raw.len());
    for r in raw {
        let path = r.path.get_ref();
        let pattern = PathPattern::parse(path)
            .map_err(|msg| src.invalid(r.path.span(), "proxy.path", format!("{path:?}: {msg}")))?;
        let upstream = match (&r.upstream, &r.pass) {
            (Some(u), None) => upstreams
                .iter()
                .position(|x| *x.name == **u.get_ref())
                .ok_or_else(|| {
                    let msg = format!("{:?}: no [[upstream]] has this name", u.get_ref());
                    src.invalid(u.span(), "proxy.upstream", msg)
                })?,
            (None, Some(p)) => {
                let url = p.get_ref();
                let hostport = url
                    .strip_prefix("http://")
                    .map(|s| s.strip_suffix('/').unwrap_or(s));
                let addr = match hostport {
                    Some(h) if !h.contains('/') => parse_server_addr(h),
                    _ => Err(format!(
                        "{url:?}: http://HOST:PORT (no path; https is not supported)"
                    )),
                }
                .map_err(|m| src.invalid(p.span(), "proxy.pass", m))?;
                let name = format!("pass:{url}");
                match upstreams.iter().position(|x| *x.name == *name) {
                    Some(i) => i,
                    None => {
                        let text = hostport.unwrap_or_default().to_string();
                        upstreams.push(Upstream::single(name, addr, &text));
                        upstreams.len() - 1
                    }
                }
            }
            _ => {
                let msg = "needs exactly one of `upstream` and `pass`".to_string();
                return Err(src.invalid(r.path.span(), "proxy", msg));
            }
        };
        let mut set = Vec::new();
        for (name, value) in &r.set_headers.0 {
            let lower = name.to_ascii_lowercase();
            if !crate::http::token::is_token(name.as_bytes()) {
                return Err(src.invalid(
                    value.span(),
                    "proxy.set_headers",
                    format!("{name:?} is not a header name"),
                ));
            }
            if RESERVED.contains(&lower.as_str()) {
                return Err(src.invalid(
                    value.span(),
                    "proxy.set_headers",
                    format!("{name:?} is set by the proxy itself"),
                ));
            }
            let v = value.get_ref();
            if v.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                return Err(src.invalid(
                    value.span(),
                    "proxy.set_headers",
                    format!("{name}: value has a control character"),
                ));
            }
            set.extend_from_slice(name.as_bytes());
            set.extend_from_slice(b": ");
            set.extend_from_slice(v.trim().as_bytes());
            set.extend_from_slice(b"\r\n");
        }
        let max_body_bytes = match &r.max_body_bytes {
            None => default_max_body,
            Some(n) if *n.get_ref() as u64 > default_max_body && *n.get_ref() >= 0 => {
                // The head parser refuses larger bodies before any route is chosen.
                let msg = format!("at most limits.max_body_bytes ({default_max_body})");
                return Err(src.invalid(n.span(), "proxy.max_body_bytes", msg));
            }
            Some(n) if *n.get_ref() >= 0 => *n.get_ref() as u64,
            Some(n) => {
                return Err(src.invalid(
                    n.span(),
                    "proxy.max_body_bytes",
                    "must not be negative".into(),
                ))
            }
        };
        let trusted_proxies = match &r.trusted_proxies {
            Some(_) => trusted(r.trusted_proxies.as_ref(), "proxy.trusted_proxies", src)?,
            None => Arc::clone(default_trusted),
        };
        rules.push(ProxyRule {
            pattern,
            path: path.as_str().into(),
            upstream,
            strip_prefix: r.strip_prefix,
            set_headers: set.into(),
            max_body_bytes,
            websocket: r.websocket,
            trusted_proxies,
            compress: r.compress.unwrap_or(true),
        });
    }
    rules.sort_by_key(|r| std::cmp::Reverse((literal_prefix(&r.path).len(), r.path.len())));
    Ok(rules.into())
}

/// The part of a rule's path before its first `*`.
pub fn literal_prefix(path: &str) -> &str {
    path.find('*').map_or(path, |i| &path[..i])
}

impl ProxyRule {
    /// How many bytes of a raw path `strip_prefix` cuts (0 when off or it does not start
    /// with the prefix): `/api/` strips `/api`, so `/api/x` goes out as `/x`.
    pub fn strip_len(&self, raw_path: &[u8]) -> usize {
        if !self.strip_prefix {
            return 0;
        }
        let p = literal_prefix(&self.path);
        let p = p.strip_suffix('/').unwrap_or(p);
        if raw_path.starts_with(p.as_bytes()) {
            p.len()
        } else {
            0
        }
    }
}
