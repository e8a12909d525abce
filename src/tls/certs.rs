//! Loading and checking one certificate chain and its key: what `--check`, start and
//! reload all report. Errors name the file; an expired or soon-expiring certificate is a
//! warning, not an error (serving it still beats serving nothing).

use super::TlsError;
use crate::config::CertPair;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::SignatureScheme;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use x509_parser::prelude::{FromDer, X509Certificate};

/// A certificate closer than this to its end gets a warning.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

fn file_err(p: &Path, msg: impl Into<String>) -> TlsError {
    TlsError::File {
        file: p.display().to_string(),
        msg: msg.into(),
    }
}

/// Read, parse and check `pair`; warnings (expiry) are appended to `warnings`.
pub fn load(
    pair: &CertPair,
    provider: &CryptoProvider,
    now: SystemTime,
    warnings: &mut Vec<String>,
) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pair.cert)
        .map_err(|e| file_err(&pair.cert, format!("cannot read certificates: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(&pair.cert, format!("cannot read certificates: {e}")))?;
    if chain.is_empty() {
        return Err(file_err(&pair.cert, "no PEM certificate in the file"));
    }
    check_chain(&chain, &pair.cert, now, warnings)?;
    let key = PrivateKeyDer::from_pem_file(&pair.key)
        .map_err(|e| file_err(&pair.key, format!("cannot read the private key: {e}")))?;
    let key = provider.key_provider.load_private_key(key).map_err(|e| {
        file_err(
            &pair.key,
            format!("unusable private key (RSA, ECDSA P-256/P-384 or Ed25519 expected): {e}"),
        )
    })?;
    let certified = CertifiedKey::new(chain, Arc::new(Watched(key)));
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        // The provider cannot derive the public key: nothing to compare, as rustls does.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
        Err(_) => Err(file_err(
            &pair.key,
            format!("does not match the certificate in {}", pair.cert.display()),
        )),
    }
}

/// Each certificate parses, each is issued by the next one (leaf first), and none is
/// expired or about to be (a warning).
fn check_chain(
    chain: &[CertificateDer<'_>],
    file: &Path,
    now: SystemTime,
    warnings: &mut Vec<String>,
) -> Result<(), TlsError> {
    let mut parsed = Vec::with_capacity(chain.len());
    for (i, der) in chain.iter().enumerate() {
        let (_, c) = X509Certificate::from_der(der.as_ref())
            .map_err(|e| file_err(file, format!("certificate #{}: not X.509: {e}", i + 1)))?;
        parsed.push(c);
    }
    for (i, pair) in parsed.windows(2).enumerate() {
        if pair[0].issuer().as_raw() != pair[1].subject().as_raw() {
            return Err(file_err(
                file,
                format!(
                    "certificate #{} ({}) is not the issuer of #{} (issued by {}): the chain \
                     must be in order, the site's certificate first, then each issuer",
                    i + 2,
                    pair[1].subject(),
                    i + 1,
                    pair[0].issuer()
                ),
            ));
        }
    }
    let now_secs = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let soon = now_secs.saturating_add(EXPIRY_WARNING.as_secs() as i64);
    for (i, c) in parsed.iter().enumerate() {
        let end = c.validity().not_after;
        let which = format!("certificate #{} ({})", i + 1, c.subject());
        if end.timestamp() <= now_secs {
            warnings.push(format!(
                "{}: {which} EXPIRED on {end}: clients will refuse it",
                file.display()
            ));
        } else if end.timestamp() <= soon {
            let days = (end.timestamp() - now_secs) / 86_400;
            warnings.push(format!(
                "{}: {which} expires on {end} (in {days} days)",
                file.display()
            ));
        }
    }
    Ok(())
}

/// A private key whose every signature is reported to `ops::tls_metrics::note_signature`,
/// which counts those made on a reactor thread: the proof, read by a test through
/// `/metrics`, that handshakes never sign on the loop.
#[derive(Debug)]
struct Watched(Arc<dyn SigningKey>);

impl SigningKey for Watched {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        let inner = self.0.choose_scheme(offered)?;
        Some(Box::new(WatchedSigner(inner)))
    }

    fn public_key(&self) -> Option<rustls::pki_types::SubjectPublicKeyInfoDer<'_>> {
        self.0.public_key()
    }

    fn algorithm(&self) -> rustls::SignatureAlgorithm {
        self.0.algorithm()
    }
}

#[derive(Debug)]
struct WatchedSigner(Box<dyn Signer>);

impl Signer for WatchedSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        crate::ops::tls_metrics::note_signature();
        self.0.sign(message)
    }

    fn scheme(&self) -> SignatureScheme {
        self.0.scheme()
    }
}
