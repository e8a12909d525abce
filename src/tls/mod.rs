//! TLS termination with rustls: the server configuration (certificates per site chosen by
//! SNI, ALPN `http/1.1`, tickets shared by every reactor) built once per configuration
//! generation. Established connections keep the `ServerConfig` they were made with, so a
//! reload swaps certificates for new handshakes only.

use crate::config::{CertPair, Config};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use std::sync::Arc;

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
}

impl Tls {
    /// None when the configuration has no `[tls]`.
    pub fn new(config: &Config) -> Result<Option<Arc<Tls>>, TlsError> {
        let Some(t) = config.tls.as_ref() else {
            return Ok(None);
        };
        let (chain, key) = load_pair(&t.default)?;
        let mut server = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        server.max_early_data_size = 0;
        Ok(Some(Arc::new(Tls {
            server: Arc::new(server),
            max_pending: t.max_pending_handshakes,
        })))
    }

    pub fn server_config(&self) -> &Arc<ServerConfig> {
        &self.server
    }

    /// `tls.max_pending_handshakes`.
    pub fn max_pending(&self) -> usize {
        self.max_pending
    }
}

fn load_pair(
    pair: &CertPair,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let err = |p: &std::path::Path, msg: String| TlsError::File {
        file: p.display().to_string(),
        msg,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pair.cert)
        .map_err(|e| err(&pair.cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(&pair.cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(err(&pair.cert, "no certificate in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&pair.key).map_err(|e| err(&pair.key, e.to_string()))?;
    Ok((chain, key))
}
