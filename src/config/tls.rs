//! `[tls]`: HTTPS listeners and the default certificate. Per-site certificates live in
//! `[[site]] tls = { cert, key }` (`config/site.rs`). Only paths are resolved here; the
//! files are read and checked by `tls::` (so `--check` and reload report them).

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use toml::Spanned;

use super::parse::{OneOrMany, Src};
use super::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    listen: Spanned<OneOrMany>,
    cert: Spanned<String>,
    key: Spanned<String>,
    #[serde(default)]
    redirect_http: bool,
    #[serde(default = "default_max_pending")]
    max_pending_handshakes: usize,
}

/// `[[site]] tls = { cert = "...", key = "..." }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCertPair {
    cert: String,
    key: String,
}

impl RawCertPair {
    /// Paths relative to the configuration file's directory.
    pub(super) fn resolve(&self, base: &Path) -> CertPair {
        CertPair {
            cert: base.join(&self.cert),
            key: base.join(&self.key),
        }
    }
}

fn default_max_pending() -> usize {
    1024
}

/// A certificate chain (PEM, leaf first) and its private key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// Distinct, in file order, none also in the plain `listen`.
    pub listen: Vec<SocketAddr>,
    /// The certificate for clients without SNI or with a name no site claims.
    pub default: CertPair,
    /// Plain listeners answer 308 to `https://` (except ACME HTTP-01 challenges).
    pub redirect_http: bool,
    /// Handshakes in flight on the pool per process; over it, TLS accepts pause.
    pub max_pending_handshakes: usize,
}

impl RawTls {
    pub(super) fn build(
        self,
        plain: &[SocketAddr],
        base: &Path,
        src: &Src,
    ) -> Result<TlsConfig, ConfigError> {
        let listen = src.listen(&self.listen)?;
        if let Some(a) = listen.iter().find(|a| plain.contains(a)) {
            let msg = format!("{a} is both a plain and a TLS listener");
            return Err(src.invalid(self.listen.span(), "tls.listen", msg));
        }
        if self.max_pending_handshakes == 0 {
            return Err(src.invalid(
                0..0,
                "tls.max_pending_handshakes",
                "must be positive".into(),
            ));
        }
        Ok(TlsConfig {
            listen,
            default: CertPair {
                cert: base.join(self.cert.get_ref()),
                key: base.join(self.key.get_ref()),
            },
            redirect_http: self.redirect_http,
            max_pending_handshakes: self.max_pending_handshakes,
        })
    }
}
