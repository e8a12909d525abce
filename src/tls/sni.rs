//! The certificate for a ClientHello: the SNI name matched like `Host` (exact, then the
//! longest `*.` wildcard, case and a trailing dot ignored); no name, an unknown one or a
//! site without its own certificate gets the default.

use crate::site::hosts::HostMatcher;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::sync::Arc;

#[derive(Debug)]
pub struct SniResolver {
    default: Arc<CertifiedKey>,
    /// `[i]` is `[[site]]` #i+1's certificate, if it has one.
    sites: Vec<Option<Arc<CertifiedKey>>>,
    hosts: HostMatcher,
}

impl SniResolver {
    pub fn new(
        default: Arc<CertifiedKey>,
        sites: Vec<Option<Arc<CertifiedKey>>>,
        hosts: HostMatcher,
    ) -> SniResolver {
        SniResolver {
            default,
            sites,
            hosts,
        }
    }

    /// The certificate for an SNI name (None = the client sent none).
    pub fn pick(&self, sni: Option<&str>) -> &Arc<CertifiedKey> {
        let site = sni.map_or(0, |n| self.hosts.pick(n.as_bytes()));
        site.checked_sub(1)
            .and_then(|i| self.sites.get(i))
            .and_then(Option::as_ref)
            .unwrap_or(&self.default)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(self.pick(hello.server_name())))
    }
}
