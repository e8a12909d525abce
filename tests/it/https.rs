//! HTTPS operations: `redirect_http` and the ACME exception, certificates per site by SNI,
//! certificate reload by SIGHUP (and a bad key refused at reload), `--check` on
//! certificates, the TLS metrics (no signature ever on a reactor) and the JSON log's TLS
//! fields.

use crate::support::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::io::Write;
use std::path::Path;
use std::process::Command;

/// Send `raw` and read one response.
fn ask<S: std::io::Read + std::io::Write>(c: &mut Client<S>, raw: &str) -> Response {
    c.send(raw.as_bytes());
    c.read_response()
}

const METRICS: &str = "[metrics]\nlisten = \"127.0.0.1:0\"\n";

fn files(root: &Path) {
    default_files(root);
    std::fs::write(root.join("page.txt"), b"page\n").expect("write");
    let acme = root.join(".well-known/acme-challenge");
    std::fs::create_dir_all(&acme).expect("mkdir");
    std::fs::write(acme.join("tok123"), b"tok123.key-authz\n").expect("write");
}

/// The leaf certificate the server presented on `s`.
fn leaf(s: &TlsStream) -> Vec<u8> {
    s.conn.peer_certificates().expect("peer certificates")[0].to_vec()
}

/// The first certificate of the PEM file at `path`.
fn leaf_of(path: &Path) -> Vec<u8> {
    CertificateDer::pem_file_iter(path)
        .expect("pem")
        .next()
        .expect("one cert")
        .expect("cert")
        .to_vec()
}

#[test]
fn redirect_http_sends_plain_requests_to_https_but_serves_acme_challenges() {
    let s = TestServer::start_tls("", "redirect_http = true", files);
    let port = s.tls_addr.port();
    let mut c = s.connect();
    let r = ask(
        &mut c,
        &format!(
            "GET /a/b%20c?x=1&y=2 HTTP/1.1\r\nHost: Example.org:{}\r\n\r\n",
            s.addr.port()
        ),
    );
    assert_eq!(r.status, 308, "{}", r.head);
    assert_eq!(
        r.header("location"),
        Some(format!("https://Example.org:{port}/a/b%20c?x=1&y=2").as_str())
    );
    // Another method keeps its method and body on a 308: still redirected, same connection.
    let r = ask(
        &mut c,
        "POST /form HTTP/1.1\r\nHost: example.org\r\nContent-Length: 3\r\n\r\nabc",
    );
    assert_eq!(r.status, 308, "{}", r.head);
    assert_eq!(
        r.header("location"),
        Some(format!("https://example.org:{port}/form").as_str())
    );
    // certbot's webroot challenge is served over plain HTTP from the root.
    let r = ask(
        &mut c,
        "GET /.well-known/acme-challenge/tok123 HTTP/1.1\r\nHost: example.org\r\n\r\n",
    );
    assert_eq!((r.status, &r.body[..]), (200, &b"tok123.key-authz\n"[..]));
    // The TLS listener itself serves, never redirects.
    let r = s.connect_tls().get("/page.txt");
    assert_eq!((r.status, &r.body[..]), (200, &b"page\n"[..]));
}

/// The ACME exemption is decided on the normalised path: a path that only starts like the
/// challenge directory but resolves outside it is redirected, an encoded spelling of a
/// challenge is still served.
#[test]
fn redirect_http_exempts_only_paths_that_resolve_into_the_challenge_directory() {
    let s = TestServer::start_tls("", "redirect_http = true", |root| {
        files(root);
        std::fs::create_dir(root.join("private")).expect("mkdir");
        std::fs::write(root.join("private/x"), b"private\n").expect("write");
    });
    let mut c = s.connect();
    for p in [
        "/.well-known/acme-challenge/../../private/x",
        "/.well-known/acme-challenge/%2e%2e/%2E%2E/private/x",
        "/.well-known/acme-challenge/./../../private/x",
    ] {
        let r = ask(
            &mut c,
            &format!("GET {p} HTTP/1.1\r\nHost: example.org\r\n\r\n"),
        );
        assert_eq!(r.status, 308, "{p}: {}", r.head);
        assert_ne!(r.body, b"private\n", "{p}");
    }
    for p in [
        "/%2ewell-known/acme%2Dchallenge/tok123",
        "/.well-known/acme-challenge/x/../tok123",
    ] {
        let r = ask(
            &mut c,
            &format!("GET {p} HTTP/1.1\r\nHost: example.org\r\n\r\n"),
        );
        assert_eq!(
            (r.status, &r.body[..]),
            (200, &b"tok123.key-authz\n"[..]),
            "{p}"
        );
    }
}

#[test]
fn without_redirect_http_plain_listeners_serve() {
    let s = TestServer::start_tls("", "", files);
    let r = get(s.addr, "/page.txt");
    assert_eq!((r.status, &r.body[..]), (200, &b"page\n"[..]));
}

#[test]
fn sni_picks_the_sites_certificate_and_unknown_names_get_the_default() {
    let extra = "[[site]]\nhosts = [\"a.test\", \"*.b.test\"]\nroot = \"root\"\n\
                 tls = { cert = \"site.crt\", key = \"site.key\" }\n";
    // The site's certificate comes from a CA of its own.
    let site_ca = TestCa::new("site CA");
    let s = TestServer::start_tls(extra, "", |root| {
        files(root);
        site_ca.write_leaf(root.parent().expect("dir"), "site", &["a.test", "*.b.test"]);
    });
    let dir = s.dir.path().to_path_buf();
    let site_client = site_ca.client_config(&TlsOpts::default());
    let t = tls_handshake(s.tls_addr, &site_client, "a.test").expect("exact name");
    assert_eq!(leaf(&t), leaf_of(&dir.join("site.crt")));
    let t = tls_handshake(s.tls_addr, &site_client, "x.b.test").expect("wildcard");
    assert_eq!(leaf(&t), leaf_of(&dir.join("site.crt")), "wildcard name");
    let mut c = Client::over(t);
    let r = ask(&mut c, "GET /page.txt HTTP/1.1\r\nHost: x.b.test\r\n\r\n");
    assert_eq!(r.status, 200);
    let t = tls_handshake(s.tls_addr, &s.client, "localhost").expect("default");
    assert_eq!(leaf(&t), leaf_of(&dir.join("tls.crt")), "an unclaimed name");
    // The site's CA does not vouch for the default certificate: the client refuses it.
    assert!(tls_handshake(s.tls_addr, &site_client, "other.test").is_err());
}

#[test]
fn sighup_swaps_the_certificate_for_new_handshakes_and_a_bad_key_keeps_the_old_one() {
    let s = TestServer::start_tls(METRICS, "", files);
    let dir = s.dir.path().to_path_buf();
    let before = leaf_of(&dir.join("tls.crt"));
    let mut old = s.connect_tls();
    assert_eq!(old.get("/page.txt").status, 200);
    // certbot renews: new files, then `systemctl reload vireo`.
    s.ca.write_leaf(&dir, "tls", &["localhost", "127.0.0.1", "127.0.0.2"]);
    let renewed = leaf_of(&dir.join("tls.crt"));
    assert_ne!(before, renewed);
    s.signal(1);
    s.wait_reloads("ok", 1);
    let t = tls_handshake(s.tls_addr, &s.client, "localhost").expect("handshake");
    assert_eq!(
        leaf(&t),
        renewed,
        "a new handshake sees the new certificate"
    );
    // The connection made before the reload keeps its session and keeps serving.
    let r = old.get("/page.txt");
    assert_eq!((r.status, &r.body[..]), (200, &b"page\n"[..]));
    // A key that does not match: the reload fails and the renewed pair stays in use.
    let (_, other_key) = s.ca.leaf(&["localhost"]);
    std::fs::write(dir.join("tls.key"), other_key).expect("write");
    s.signal(1);
    s.wait_reloads("failed", 1);
    let t = tls_handshake(s.tls_addr, &s.client, "localhost").expect("handshake");
    assert_eq!(leaf(&t), renewed);
    // An unreadable key too.
    std::fs::write(dir.join("tls.key"), "not a key").expect("write");
    s.signal(1);
    s.wait_reloads("failed", 2);
    let mut c = s.connect_tls();
    assert_eq!(c.get("/page.txt").status, 200);
}

/// `vireo --check` on `text` in a directory where `setup` wrote files; (code, stderr).
fn check_in(text: &str, setup: impl FnOnce(&Path)) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("public")).expect("mkdir");
    setup(dir.path());
    let path = dir.path().join("v.toml");
    std::fs::write(&path, text).expect("write");
    let o = Command::new(env!("CARGO_BIN_EXE_vireo"))
        .args(["--check", "--config", path.to_str().expect("utf8")])
        .output()
        .expect("run");
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn check_validates_certificates_and_keys_and_names_the_file() {
    let ca = TestCa::new("check CA");
    let cfg = "root = \"public\"\nlisten = \"127.0.0.1:0\"\n[tls]\nlisten = \"127.0.0.1:1\"\n\
               cert = \"c.crt\"\nkey = \"c.key\"\n";
    let (code, err) = check_in(cfg, |d| ca.write_leaf(d, "c", &["localhost"]));
    assert_eq!(code, Some(0), "{err}");
    // A key of another certificate.
    let (code, err) = check_in(cfg, |d| {
        ca.write_leaf(d, "c", &["localhost"]);
        std::fs::write(d.join("c.key"), ca.leaf(&["other"]).1).expect("write");
    });
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("c.key") && err.contains("does not match"),
        "{err}"
    );
    // A missing certificate file.
    let (code, err) = check_in(cfg, |_| {});
    assert_eq!(code, Some(1));
    assert!(err.contains("c.crt"), "{err}");
    // The chain in the wrong order (CA first).
    let (code, err) = check_in(cfg, |d| {
        let (chain, key) = ca.leaf(&["localhost"]);
        let certs: Vec<&str> = chain
            .split_inclusive("-----END CERTIFICATE-----\n")
            .collect();
        std::fs::write(d.join("c.crt"), format!("{}{}", certs[1], certs[0])).expect("write");
        std::fs::write(d.join("c.key"), key).expect("write");
    });
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("c.crt"), "{err}");
    // A site certificate needs [tls].
    let (code, err) = check_in(
        "root = \"public\"\n[[site]]\nhosts = [\"a.test\"]\nroot = \"public\"\n\
         tls = { cert = \"c.crt\", key = \"c.key\" }\n",
        |d| ca.write_leaf(d, "c", &["a.test"]),
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("[tls]"), "{err}");
}

#[test]
fn handshakes_are_counted_and_never_sign_on_a_reactor() {
    let s = TestServer::start_tls(METRICS, "", files);
    for _ in 0..5 {
        assert_eq!(s.connect_tls().get("/page.txt").status, 200);
    }
    // Plain HTTP on the TLS port.
    let mut raw = std::net::TcpStream::connect(s.tls_addr).expect("connect");
    raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut sink = Vec::new();
    let _ = std::io::Read::read_to_end(&mut raw, &mut sink);
    assert!(sink.starts_with(b"HTTP/1.1 400"));
    let m = scrape(&s);
    assert!(
        metric(&m, "vireo_tls_handshakes_total", "result=\"full\"") >= 5,
        "{m}"
    );
    assert_eq!(
        metric(&m, "vireo_tls_handshakes_total", "plain_http"),
        1,
        "{m}"
    );
    assert!(metric(&m, "vireo_tls_versions_total", "1.3") >= 5, "{m}");
    assert!(metric(&m, "vireo_tls_handshake_steps_offloaded_total", "") >= 5);
    assert!(
        metric(&m, "vireo_tls_signatures_total", "thread=\"pool\"") >= 5,
        "every full handshake signs, on the pool: {m}"
    );
    assert_eq!(
        metric(&m, "vireo_tls_signatures_total", "thread=\"reactor\""),
        0,
        "a signature ran on a reactor thread"
    );
    assert_eq!(metric(&m, "vireo_tls_handshakes_in_flight", ""), 0);
}

#[test]
fn the_json_log_names_the_tls_version_and_cipher() {
    let extra = "[log]\naccess = \"access.log\"\nformat = \"json\"\n";
    let s = TestServer::start_tls(extra, "", files);
    let mut c = s.connect_tls();
    assert_eq!(c.get("/page.txt").status, 200);
    assert_eq!(get(s.addr, "/page.txt").status, 200);
    drop(c);
    let path = s.dir.path().join("access.log");
    let mut lines = Vec::new();
    for _ in 0..500 {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        lines = text.lines().map(str::to_string).collect();
        if lines.len() >= 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(lines.len(), 2, "{lines:?}");
    let tls = lines
        .iter()
        .find(|l| l.contains("\"tls_version\":\"TLSv1.3\""));
    let tls = tls.expect("a TLS line");
    assert!(tls.contains("\"tls_cipher\":\"TLS13_"), "{tls}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"tls_version\":\"\",\"tls_cipher\":\"\"")),
        "{lines:?}"
    );
}
