//! Virtual hosts: which `Site` answers a request, from its `Host` (or the authority of an
//! absolute-form target, which the parser already put in its place, RFC 9112 3.2.2).
//!
//! An exact name first, then the longest `*.` wildcard that matches, else the default
//! site. The port is ignored (a Host naming another port is still matched by name), and so
//! are case and one trailing dot.

use crate::config::Config;
use crate::http::request::RequestHead;
use crate::offload::Offload;
use crate::ops::metrics::{Registry, SITE_SLOTS};
use crate::site::Site;
use std::collections::HashMap;
use std::io;
use std::sync::Arc;

/// Longest host looked up (a DNS name is at most 253 bytes; an IPv6 literal far less):
/// longer ones go to the default site without being copied.
const MAX_HOST: usize = 256;

/// Names to site numbers (0 is the default site, `[[site]]` #n is n).
#[derive(Debug, Default)]
pub struct HostMatcher {
    exact: HashMap<Box<[u8]>, usize>,
    /// Keyed by what follows `*.`: `example.org` for `*.example.org`.
    wild: HashMap<Box<[u8]>, usize>,
}

impl HostMatcher {
    /// `hosts[i]` are the names of site `i + 1`, as the configuration validated them
    /// (lower case, no trailing dot, each claimed once).
    pub fn new<'a>(hosts: impl IntoIterator<Item = &'a [String]>) -> HostMatcher {
        let mut m = HostMatcher::default();
        for (i, names) in hosts.into_iter().enumerate() {
            for n in names {
                match n.strip_prefix("*.") {
                    Some(suffix) => m.wild.insert(suffix.as_bytes().into(), i + 1),
                    None => m.exact.insert(n.as_bytes().into(), i + 1),
                };
            }
        }
        m
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wild.is_empty()
    }

    /// The site for a `Host` value (`name[:port]`, `[v6]:port`); 0 = the default site.
    pub fn pick(&self, host: &[u8]) -> usize {
        if self.is_empty() {
            return 0;
        }
        let name = strip_port(host);
        let name = name.strip_suffix(b".").unwrap_or(name);
        if name.is_empty() || name.len() > MAX_HOST {
            return 0;
        }
        let mut buf = [0u8; MAX_HOST];
        let lower = &mut buf[..name.len()];
        lower.copy_from_slice(name);
        lower.make_ascii_lowercase();
        let name = &*lower;
        if let Some(&i) = self.exact.get(name) {
            return i;
        }
        // Suffixes after each dot, longest first: the longest wildcard wins.
        for (at, _) in name.iter().enumerate().filter(|(_, &b)| b == b'.') {
            if let Some(&i) = self.wild.get(&name[at + 1..]) {
                return i;
            }
        }
        0
    }
}

/// `host[:port]` -> `host`; an IPv6 literal keeps its brackets.
pub fn strip_port(host: &[u8]) -> &[u8] {
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

/// A reactor's sites: the default one and one per `[[site]]`, lent to the connection
/// that asks for the site of a request.
pub struct Sites {
    /// `[0]` is the default site.
    sites: Vec<Site>,
    hosts: HostMatcher,
}

impl Sites {
    pub fn new(
        config: Arc<Config>,
        offload: Option<Arc<Offload>>,
        registry: Option<Arc<Registry>>,
    ) -> io::Result<Sites> {
        let mut sites = Vec::with_capacity(config.sites.len() + 1);
        for (i, s) in config.sites.iter().enumerate() {
            let c = Arc::new(config.for_site(s));
            // Labelled by its first name; without a registry nobody reads the counters.
            let slot = match (&registry, s.hosts.first()) {
                (Some(r), Some(name)) => r.site_slot(name),
                _ => (i + 1).min(SITE_SLOTS - 1),
            };
            sites.push(Site::new(c, offload.clone(), None)?.with_metrics_slot(slot));
        }
        let hosts = HostMatcher::new(config.sites.iter().map(|s| &s.hosts[..]));
        sites.insert(0, Site::new(config, offload, registry)?);
        Ok(Sites { sites, hosts })
    }

    /// The offload pool (one per process, shared by every site), if any.
    pub fn offload(&self) -> Option<&Arc<Offload>> {
        self.sites[0].offload()
    }

    /// The default site's configuration: the server-wide sections (limits, timeouts).
    pub fn config(&self) -> &Config {
        self.sites[0].config()
    }

    /// The site answering `head` (`buf` is what its spans point into). The metrics
    /// listener's connections always get the default site, which holds the registry.
    pub fn pick(&mut self, head: &RequestHead, buf: &[u8], metrics: bool) -> &mut Site {
        let i = match head.host {
            Some(h) if !metrics => self.hosts.pick(h.get(buf)),
            _ => 0,
        };
        &mut self.sites[i]
    }

    /// Which site `pick` chooses (0 = the default site), to find it again with `get`.
    pub fn index_of(&self, head: &RequestHead, buf: &[u8]) -> usize {
        head.host.map_or(0, |h| self.hosts.pick(h.get(buf)))
    }

    /// Site number `i` (see `index_of`); the default site if there is none such.
    pub fn get(&mut self, i: usize) -> &mut Site {
        let i = if i < self.sites.len() { i } else { 0 };
        &mut self.sites[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher() -> HostMatcher {
        let sites = [
            vec!["example.org".to_string(), "*.example.org".to_string()],
            vec!["*.docs.example.org".to_string()],
            vec!["api.docs.example.org".to_string()],
            vec!["[::1]".to_string(), "127.0.0.1".to_string()],
        ];
        HostMatcher::new(sites.iter().map(|s| &s[..]))
    }

    #[test]
    fn exact_then_longest_wildcard_then_default() {
        let m = matcher();
        for (host, site) in [
            ("example.org", 1),
            ("www.example.org", 1),
            ("a.b.example.org", 1),
            ("docs.example.org", 1),
            ("v1.docs.example.org", 2),
            ("x.v1.docs.example.org", 2),
            ("api.docs.example.org", 3),
            ("other.org", 0),
            ("org", 0),
            ("xexample.org", 0),
            (".example.org", 1),
            ("", 0),
        ] {
            assert_eq!(m.pick(host.as_bytes()), site, "{host:?}");
        }
    }

    #[test]
    fn case_trailing_dot_and_port_are_ignored() {
        let m = matcher();
        for host in [
            "EXAMPLE.org",
            "example.org.",
            "example.org:8080",
            "Example.Org.:1",
        ] {
            assert_eq!(m.pick(host.as_bytes()), 1, "{host:?}");
        }
        assert_eq!(m.pick(b"API.docs.example.org.:443"), 3);
        assert_eq!(m.pick(b"example.org.."), 0);
    }

    #[test]
    fn ip_literals() {
        let m = matcher();
        assert_eq!(m.pick(b"[::1]:8080"), 4);
        assert_eq!(m.pick(b"[::1]"), 4);
        assert_eq!(m.pick(b"127.0.0.1:80"), 4);
        assert_eq!(m.pick(b"[::2]:8080"), 0);
        assert_eq!(m.pick(b"[::1"), 0);
    }

    #[test]
    fn no_sites_means_default_and_long_hosts_are_not_copied() {
        assert_eq!(HostMatcher::default().pick(b"example.org"), 0);
        let long = format!("{}.example.org", "a".repeat(300));
        assert_eq!(matcher().pick(long.as_bytes()), 0);
    }
}
