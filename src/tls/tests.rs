//! Certificates made at test time (rcgen) in a tempdir; handshakes over in-memory buffers.

use super::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SignatureAlgorithm,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, ServerConnection};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

/// 2030-01-01T00:00:00Z, the leaves' `not_after`.
const END: u64 = 1_893_456_000;

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, name.to_string());
        let key = KeyPair::generate().expect("key");
        Ca {
            issuer: CertifiedIssuer::self_signed(p, key).expect("ca"),
        }
    }

    /// A leaf for `names` and its key, both PEM.
    fn leaf(&self, names: &[&str], alg: &'static SignatureAlgorithm) -> (String, String) {
        self.leaf_with(names, KeyPair::generate_for(alg).expect("key"))
    }

    fn leaf_with(&self, names: &[&str], key: KeyPair) -> (String, String) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut p = CertificateParams::new(names).expect("params");
        p.not_after = rcgen::date_time_ymd(2030, 1, 1);
        let cert = p.signed_by(&key, &self.issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    }
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write");
}

/// A tempdir with `public/`, a CA and the default pair `default.pem`/`default.key`.
fn setup() -> (tempfile::TempDir, Ca) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("public")).expect("mkdir");
    let ca = Ca::new("Test CA");
    let (c, k) = ca.leaf(&["default.test"], &rcgen::PKCS_ECDSA_P256_SHA256);
    write(dir.path(), "default.pem", &(c + &ca.issuer.pem()));
    write(dir.path(), "default.key", &k);
    (dir, ca)
}

const TLS: &str =
    "[tls]\nlisten = \"127.0.0.1:0\"\ncert = \"default.pem\"\nkey = \"default.key\"\n";

fn config(dir: &Path, extra: &str) -> Config {
    Config::from_toml(&format!("{TLS}{extra}"), dir, "t.toml").expect("config")
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn build(dir: &Path, extra: &str) -> Result<Arc<Tls>, TlsError> {
    Tls::new_at(&config(dir, extra), at(END - 365 * 86_400)).map(|t| t.expect("[tls]"))
}

fn err(dir: &Path, extra: &str) -> String {
    match build(dir, extra) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[derive(Debug)]
struct AnyCert;
impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Handshake in memory; the client's view of the result (its error, or the server's leaf).
fn handshake(
    tls: &Tls,
    sni: &str,
    alpn: &[&[u8]],
) -> (Result<Vec<u8>, rustls::Error>, Option<Vec<u8>>) {
    let mut cc = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
        .with_no_client_auth();
    cc.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // An IP address as the name: the client sends no SNI.
    let name = ServerName::try_from(sni.to_string()).expect("name");
    let mut c = ClientConnection::new(Arc::new(cc), name).expect("client");
    let mut s = ServerConnection::new(Arc::clone(tls.server_config())).expect("server");
    let mut buf = Vec::new();
    for _ in 0..10 {
        buf.clear();
        while c.wants_write() {
            c.write_tls(&mut buf).expect("write");
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).expect("read");
            if s.process_new_packets().is_err() {
                break;
            }
        }
        buf.clear();
        while s.wants_write() {
            s.write_tls(&mut buf).expect("write");
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).expect("read");
            if let Err(e) = c.process_new_packets() {
                return (Err(e), None);
            }
        }
        if !c.is_handshaking() && !s.is_handshaking() {
            break;
        }
    }
    let leaf = c
        .peer_certificates()
        .and_then(|p| p.first())
        .map(|d| d.to_vec());
    (Ok(c.alpn_protocol().unwrap_or_default().to_vec()), leaf)
}

fn leaf_der(pem: &str) -> Vec<u8> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .expect("one")
        .expect("pem")
        .to_vec()
}

#[test]
fn sni_picks_the_site_certificate_exact_then_wildcard_else_the_default() {
    let (dir, ca) = setup();
    let d = dir.path();
    let (a, ak) = ca.leaf(&["a.test"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let (w, wk) = ca.leaf(&["*.b.test"], &rcgen::PKCS_ED25519);
    let (x, xk) = ca.leaf(&["x.b.test"], &rcgen::PKCS_ECDSA_P384_SHA384);
    for (n, t) in [("a.pem", &a), ("a.key", &ak), ("w.pem", &w), ("w.key", &wk)] {
        write(d, n, t);
    }
    write(d, "x.pem", &x);
    write(d, "x.key", &xk);
    let sites = "[[site]]\nhosts = [\"a.test\", \"a2.test\"]\nroot = \"public\"\n\
                 tls = { cert = \"a.pem\", key = \"a.key\" }\n\
                 [[site]]\nhosts = [\"*.b.test\"]\nroot = \"public\"\n\
                 tls = { cert = \"w.pem\", key = \"w.key\" }\n\
                 [[site]]\nhosts = [\"x.b.test\"]\nroot = \"public\"\n\
                 tls = { cert = \"x.pem\", key = \"x.key\" }\n\
                 [[site]]\nhosts = [\"plain.test\"]\nroot = \"public\"\n\
                 [[site]]\nhosts = [\"a3.test\"]\nroot = \"public\"\n\
                 tls = { cert = \"a.pem\", key = \"a.key\" }\n";
    let tls = build(d, sites).expect("tls");
    let default = std::fs::read_to_string(d.join("default.pem")).expect("read");
    let cases = [
        ("a.test", &a),
        ("A.Test", &a),
        ("a2.test", &a),
        ("y.b.test", &w),
        ("deep.y.b.test", &w),
        ("x.b.test", &x),
        ("b.test", &default),
        ("plain.test", &default),
        ("unknown.test", &default),
        ("127.0.0.1", &default),
    ];
    for (sni, want) in cases {
        let (res, leaf) = handshake(&tls, sni, &[b"http/1.1"]);
        assert_eq!(res.expect(sni), b"http/1.1", "{sni}");
        assert_eq!(leaf.expect("leaf"), leaf_der(want), "{sni}");
    }
}

/// An RSA key pair, made by aws-lc-rs and used by rcgen to sign.
fn rsa(bits: aws_lc_rs::rsa::KeySize) -> KeyPair {
    use aws_lc_rs::encoding::AsDer;
    let k = aws_lc_rs::rsa::KeyPair::generate(bits).expect("rsa");
    let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&k).expect("der");
    let der = rustls::pki_types::PrivatePkcs8KeyDer::from(der.as_ref().to_vec());
    KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_RSA_SHA256).expect("rcgen")
}

#[test]
fn rsa_ecdsa_and_ed25519_keys_are_accepted() {
    let (dir, ca) = setup();
    let d = dir.path();
    let keys = [
        (
            "rsa",
            ca.leaf_with(&["rsa.test"], rsa(aws_lc_rs::rsa::KeySize::Rsa2048)),
        ),
        (
            "p384",
            ca.leaf(&["p384.test"], &rcgen::PKCS_ECDSA_P384_SHA384),
        ),
        ("ed", ca.leaf(&["ed.test"], &rcgen::PKCS_ED25519)),
    ];
    let mut sites = String::new();
    for (n, (c, k)) in &keys {
        write(d, &format!("{n}.pem"), c);
        write(d, &format!("{n}.key"), k);
        sites += &format!(
            "[[site]]\nhosts = [\"{n}.test\"]\nroot = \"public\"\n\
             tls = {{ cert = \"{n}.pem\", key = \"{n}.key\" }}\n"
        );
    }
    let tls = build(d, &sites).expect("tls");
    for (n, (c, _)) in &keys {
        let (res, leaf) = handshake(&tls, &format!("{n}.test"), &[]);
        res.expect(n);
        assert_eq!(leaf.expect("leaf"), leaf_der(c), "{n}");
    }
}

#[test]
fn the_resolver_ignores_case_and_a_trailing_dot_and_shares_loaded_pairs() {
    let (dir, ca) = setup();
    let (a, ak) = ca.leaf(&["a.test"], &rcgen::PKCS_ECDSA_P256_SHA256);
    write(dir.path(), "a.pem", &a);
    write(dir.path(), "a.key", &ak);
    let c = config(
        dir.path(),
        "[[site]]\nhosts = [\"a.test\"]\nroot = \"public\"\n\
         tls = { cert = \"a.pem\", key = \"a.key\" }\n\
         [[site]]\nhosts = [\"*.c.test\"]\nroot = \"public\"\n\
         tls = { cert = \"a.pem\", key = \"a.key\" }\n",
    );
    let p = provider();
    let load =
        |pair| Arc::new(certs::load(pair, &p, SystemTime::now(), &mut Vec::new()).expect("load"));
    let site = load(c.sites[0].tls.as_ref().expect("tls"));
    let r = SniResolver::new(
        load(&c.tls.as_ref().expect("tls").default),
        vec![Some(Arc::clone(&site)), Some(Arc::clone(&site))],
        HostMatcher::new(c.sites.iter().map(|s| &s.hosts[..])),
    );
    assert!(Arc::ptr_eq(r.pick(Some("A.TEST.")), &site));
    assert!(Arc::ptr_eq(r.pick(Some("q.C.test")), &site));
    assert!(!Arc::ptr_eq(r.pick(None), &site));
    assert!(!Arc::ptr_eq(r.pick(Some("c.test")), &site));
}

#[test]
fn a_client_offering_other_protocols_only_gets_no_application_protocol() {
    let (dir, _ca) = setup();
    let on = build(dir.path(), "").expect("tls");
    let (res, _) = handshake(&on, "default.test", &[b"h2", b"http/1.1"]);
    assert_eq!(res.expect("ok"), b"h2");
    let (res, _) = handshake(&on, "default.test", &[b"http/1.1"]);
    assert_eq!(res.expect("ok"), b"http/1.1");
    // With HTTP/2 off, h2 is not offered.
    let tls = build(dir.path(), "[http2]\nenabled = false\n").expect("tls");
    let (res, _) = handshake(&tls, "default.test", &[b"h2", b"spdy/3"]);
    assert_eq!(
        res.expect_err("refused"),
        rustls::Error::AlertReceived(rustls::AlertDescription::NoApplicationProtocol)
    );
    let (res, _) = handshake(&tls, "default.test", &[b"h2", b"http/1.1"]);
    assert_eq!(res.expect("ok"), b"http/1.1");
    // No ALPN at all is fine (curl --no-alpn, old clients).
    let (res, _) = handshake(&tls, "default.test", &[]);
    assert_eq!(res.expect("ok"), b"");
}

#[test]
fn a_key_that_does_not_match_is_named() {
    let (dir, ca) = setup();
    let (_, other) = ca.leaf(&["default.test"], &rcgen::PKCS_ECDSA_P256_SHA256);
    write(dir.path(), "default.key", &other);
    let e = err(dir.path(), "");
    assert!(
        e.contains("default.key") && e.contains("does not match"),
        "{e}"
    );
    assert!(e.contains("default.pem"), "{e}");
}

#[test]
fn a_chain_out_of_order_is_refused() {
    let (dir, ca) = setup();
    let (c, k) = ca.leaf(&["default.test"], &rcgen::PKCS_ECDSA_P256_SHA256);
    write(dir.path(), "default.pem", &(ca.issuer.pem() + &c));
    write(dir.path(), "default.key", &k);
    let e = err(dir.path(), "");
    assert!(e.contains("default.pem") && e.contains("in order"), "{e}");
    // A chain with an unrelated second certificate is out of order too.
    let stranger = Ca::new("Other CA");
    write(dir.path(), "default.pem", &(c + &stranger.issuer.pem()));
    let e = err(dir.path(), "");
    assert!(e.contains("#2") && e.contains("Other CA"), "{e}");
}

#[test]
fn expired_and_expiring_certificates_are_warnings_naming_the_file() {
    let (dir, _ca) = setup();
    let c = config(dir.path(), "");
    let ok = Tls::new_at(&c, at(END - 15 * 86_400))
        .expect("ok")
        .expect("tls");
    assert!(ok.warnings().is_empty(), "{:?}", ok.warnings());
    let soon = Tls::new_at(&c, at(END - 3 * 86_400))
        .expect("ok")
        .expect("tls");
    assert_eq!(soon.warnings().len(), 1, "{:?}", soon.warnings());
    let w = &soon.warnings()[0];
    assert!(w.contains("default.pem") && w.contains("in 3 days"), "{w}");
    let gone = Tls::new_at(&c, at(END + 1)).expect("ok").expect("tls");
    let w = &gone.warnings()[0];
    assert!(w.contains("default.pem") && w.contains("EXPIRED"), "{w}");
}

#[test]
fn unreadable_or_unparseable_files_are_named() {
    let (dir, _ca) = setup();
    let d = dir.path();
    std::fs::remove_file(d.join("default.key")).expect("rm");
    let e = err(d, "");
    assert!(
        e.contains("default.key") && e.contains("cannot read"),
        "{e}"
    );
    write(d, "default.key", "not a key\n");
    let e = err(d, "");
    assert!(e.contains("default.key"), "{e}");
    write(
        d,
        "default.pem",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    let e = err(d, "");
    assert!(e.contains("default.pem") && e.contains("X.509"), "{e}");
    write(d, "default.pem", "");
    let e = err(d, "");
    assert!(
        e.contains("default.pem") && e.contains("no PEM certificate"),
        "{e}"
    );
    // A site's file is named the same way.
    let (dir, _ca) = setup();
    let e = err(
        dir.path(),
        "[[site]]\nhosts = [\"a.test\"]\nroot = \"public\"\n\
         tls = { cert = \"missing.pem\", key = \"default.key\" }\n",
    );
    assert!(e.contains("missing.pem"), "{e}");
}

#[test]
fn resumption_state_is_one_per_process() {
    let (dir, _ca) = setup();
    let a = build(dir.path(), "").expect("a");
    let b = build(dir.path(), "").expect("b");
    let (a, b) = (a.server_config(), b.server_config());
    assert!(Arc::ptr_eq(&a.ticketer, &b.ticketer));
    assert!(Arc::ptr_eq(&a.session_storage, &b.session_storage));
    assert!(a.ticketer.enabled());
    assert_eq!(a.max_early_data_size, 0);
    assert_eq!(a.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
}

#[test]
fn no_tls_section_is_none() {
    let c = crate::config::tests::load("").expect("config");
    assert!(Tls::new(&c).expect("ok").is_none());
}
