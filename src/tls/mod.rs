//! TLS termination with rustls: the server configuration (certificates per site chosen by
//! SNI, ALPN `http/1.1`, tickets shared by every reactor) built once per configuration
//! generation. Established connections keep the `ServerConfig` they were made with, so a
//! reload swaps certificates for new handshakes only.
//!
//! The crypto provider is chosen here and nowhere else (`provider()`).

mod certs;
mod sni;

pub use certs::EXPIRY_WARNING;
pub use sni::SniResolver;

use crate::config::{CertPair, Config};
use crate::site::hosts::HostMatcher;
use rustls::crypto::CryptoProvider;
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

/// TLS 1.2 sessions remembered for resumption (per process).
pub const SESSION_CACHE_ENTRIES: usize = 20_000;

/// Why the TLS configuration cannot be built; names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{file}: {msg}")]
    File { file: String, msg: String },
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// What every reactor of one configuration generation shares.
pub struct Tls {
    server: Arc<ServerConfig>,
    max_pending: usize,
    warnings: Vec<String>,
}

impl Tls {
    /// None when the configuration has no `[tls]`. Reads and checks every certificate
    /// and key (each distinct pair once).
    pub fn new(config: &Config) -> Result<Option<Arc<Tls>>, TlsError> {
        Tls::new_at(config, SystemTime::now())
    }

    /// As `new`, with expiry judged at `now`.
    fn new_at(config: &Config, now: SystemTime) -> Result<Option<Arc<Tls>>, TlsError> {
        let Some(t) = config.tls.as_ref() else {
            return Ok(None);
        };
        let provider = provider();
        let mut warnings = Vec::new();
        let mut loaded: HashMap<CertPair, Arc<CertifiedKey>> = HashMap::new();
        let mut load = |pair: &CertPair, warnings: &mut Vec<String>| -> Result<_, TlsError> {
            if let Some(k) = loaded.get(pair) {
                return Ok(Arc::clone(k));
            }
            let k = Arc::new(certs::load(pair, &provider, now, warnings)?);
            loaded.insert(pair.clone(), Arc::clone(&k));
            Ok(k)
        };
        let default = load(&t.default, &mut warnings)?;
        let mut sites = Vec::with_capacity(config.sites.len());
        for s in &config.sites {
            sites.push(match &s.tls {
                Some(pair) => Some(load(pair, &mut warnings)?),
                None => None,
            });
        }
        let hosts = HostMatcher::new(config.sites.iter().map(|s| &s.hosts[..]));
        let resolver = SniResolver::new(default, sites, hosts);

        let mut server = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
        // `h2` first when HTTP/2 is on (a client offering both gets it); a client that
        // offers neither gets no_application_protocol.
        server.alpn_protocols = if config.http2.enabled {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        server.max_early_data_size = 0;
        let shared = resumption()?;
        server.ticketer = Arc::clone(&shared.ticketer);
        server.session_storage = Arc::clone(&shared.sessions);
        Ok(Some(Arc::new(Tls {
            server: Arc::new(server),
            max_pending: t.max_pending_handshakes,
            warnings,
        })))
    }

    pub fn server_config(&self) -> &Arc<ServerConfig> {
        &self.server
    }

    /// `tls.max_pending_handshakes`.
    pub fn max_pending(&self) -> usize {
        self.max_pending
    }

    /// Certificates expired or expiring within `EXPIRY_WARNING`, one line each naming the
    /// file: `--check` prints them, the server logs them at start and reload.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

/// The crypto provider (aws-lc-rs; see the README for the measurement behind the choice).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Resumption state, one per process: every reactor and every configuration generation
/// (reload) shares it, so a client resumes whichever reactor accepts it and its tickets
/// outlive a SIGHUP.
struct Resumption {
    /// TLS 1.2 and 1.3 tickets: AES-256 + HMAC-SHA256, a new key every 6 hours, the
    /// previous one still accepted (a ticket lives up to 12 hours; rustls' `TicketRotator`).
    ticketer: Arc<dyn ProducesTickets>,
    /// TLS 1.2 session ids (clients without ticket support), bounded.
    sessions: Arc<dyn StoresServerSessions>,
}

fn resumption() -> Result<&'static Resumption, TlsError> {
    static SHARED: OnceLock<Resumption> = OnceLock::new();
    if let Some(r) = SHARED.get() {
        return Ok(r);
    }
    let made = Resumption {
        ticketer: rustls::crypto::aws_lc_rs::Ticketer::new()?,
        sessions: ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES),
    };
    // A racing first caller may win: both are equivalent, the loser's is dropped.
    Ok(SHARED.get_or_init(|| made))
}

#[cfg(test)]
mod tests;
