//! HTTPS: the real binary with a `[tls]` listener, a rustls client with a CA made at test
//! time (support.rs), exact bytes over TLS, bad input on the TLS port, resumption,
//! close_notify, byte-split TLS records and a handshake storm beside established
//! connections.

use crate::compression::{gunzip, text};
use crate::support::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const SMALL: &[u8] = b"hello over TLS\n";
const METRICS: &str = "[metrics]\nlisten = \"127.0.0.1:0\"\n";

fn files(root: &std::path::Path) {
    default_files(root);
    std::fs::write(root.join("tls.txt"), SMALL).expect("write");
    std::fs::write(root.join("big.bin"), pattern(10 << 20, 7)).expect("write");
    std::fs::write(root.join("text.txt"), text(64 * 1024, 3)).expect("write");
    std::fs::write(root.join("range.bin"), pattern(4096, 11)).expect("write");
}

fn start(extra: &str) -> TlsServer {
    TestServer::start_tls(extra, "", files)
}

/// A response without its Date header, the one part that may differ between two answers.
fn undated(r: &Response) -> String {
    r.head
        .split_inclusive("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("date:"))
        .collect()
}

/// The server still answers on both its TLS and its plain listener.
fn assert_serving(s: &TlsServer) {
    let r = s.connect_tls().get("/tls.txt");
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, SMALL),
        "TLS after: {r:?}"
    );
    let r = get(s.addr, "/tls.txt");
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, SMALL),
        "plain after: {r:?}"
    );
}

/// The rustls error an io::Error from a TLS stream carries, if any.
fn rustls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>())
}

/// Read until the peer closes; a reset counts as a close. Fails on a read timeout.
fn read_until_closed(sock: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match sock.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("no close: {e} after {} bytes", out.len()),
        }
    }
}

#[test]
fn small_file_same_bytes_as_plain() {
    let s = start("");
    let tls = s.connect_tls().get("/tls.txt");
    assert_eq!(tls.status, 200);
    assert_eq!(tls.body, SMALL);
    let plain = get(s.addr, "/tls.txt");
    assert_eq!(undated(&tls), undated(&plain));
}

#[test]
fn ten_mib_file_byte_for_byte() {
    let s = start("");
    let mut c = s.connect_tls();
    let r = c.get("/big.bin");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("10485760"));
    assert!(r.body == pattern(10 << 20, 7), "10 MiB body differs");
    // The connection is still usable after a large body.
    assert_eq!(c.get("/tls.txt").body, SMALL);
}

#[test]
fn gzip_response_over_tls() {
    let s = start("");
    let mut c = s.connect_tls();
    c.send(b"GET /text.txt HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), Some("gzip"), "{r:?}");
    assert_eq!(gunzip(&r.body), text(64 * 1024, 3));
}

#[test]
fn range_request_over_tls() {
    let s = start("");
    let mut c = s.connect_tls();
    c.send(b"GET /range.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=100-1099\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 100-1099/4096"));
    assert_eq!(r.body, &pattern(4096, 11)[100..1100]);
}

#[test]
fn client_without_sni_gets_the_default_certificate() {
    let s = start("");
    // An IP address as the server name: rustls sends no SNI and checks the IP SAN.
    let stream = tls_handshake(s.tls_addr, &s.client, "127.0.0.2").expect("handshake");
    assert_eq!(Client::over(stream).get("/tls.txt").body, SMALL);
}

#[test]
fn keep_alive_many_requests_one_connection() {
    let s = start("");
    let mut c = s.connect_tls();
    for i in 0..10 {
        let path = if i % 2 == 0 { "/tls.txt" } else { "/small.txt" };
        let r = c.get(path);
        assert_eq!(r.status, 200, "request {i}");
        let want: &[u8] = if i % 2 == 0 { SMALL } else { b"hello, vireo\n" };
        assert_eq!(r.body, want, "request {i}");
    }
}

#[test]
fn pipelined_requests_answered_in_order() {
    let s = start("");
    let mut c = s.connect_tls();
    c.send(
        b"GET /tls.txt HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /range.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=0-9\r\n\r\n\
          GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let a = c.read_response();
    let b = c.read_response();
    let d = c.read_response();
    assert_eq!((a.status, a.body.as_slice()), (200, SMALL));
    assert_eq!(
        (b.status, b.body.as_slice()),
        (206, &pattern(4096, 11)[..10])
    );
    assert_eq!((d.status, d.body.as_slice()), (200, &b"hello, vireo\n"[..]));
}

#[test]
fn application_data_sent_with_the_clients_finished_does_not_overflow_the_handshake() {
    // Queued before the handshake, rustls sends ~270 KB of pipelined requests right behind
    // the client's Finished (TLS 1.3): the server must not read more into rustls than the
    // handshake step can take ("message buffer full" closed the connection).
    let s = start("");
    let pad = "x".repeat(400);
    let n = 600;
    let req = format!("GET /tls.txt HTTP/1.1\r\nHost: t\r\nX-Pad: {pad}\r\n\r\n");
    let mut stream = tls_stream(s.tls_addr, &s.client, "localhost");
    stream.conn.set_buffer_limit(None);
    stream
        .conn
        .writer()
        .write_all(req.repeat(n).as_bytes())
        .expect("queue");
    let mut c = Client::over(stream);
    for i in 0..n {
        let r = c.read_response();
        assert_eq!((r.status, r.body.as_slice()), (200, SMALL), "response {i}");
    }
}

#[test]
fn alpn_picks_http11() {
    // HTTP/2 off: h2 is not offered (with it on, tests/it/h2.rs).
    let s = start("[http2]\nenabled = false\n");
    let cfg = s.ca.client_config(&TlsOpts {
        alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        ..TlsOpts::default()
    });
    let stream = tls_handshake(s.tls_addr, &cfg, "localhost").expect("handshake");
    assert_eq!(stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut c = Client::over(stream);
    assert_eq!(c.get("/tls.txt").body, SMALL);
}

#[test]
fn alpn_without_http11_gets_no_application_protocol() {
    let s = start("[http2]\nenabled = false\n");
    let cfg = s.ca.client_config(&TlsOpts {
        alpn: vec![b"h2".to_vec()],
        ..TlsOpts::default()
    });
    let err = match tls_handshake(s.tls_addr, &cfg, "localhost") {
        Ok(_) => panic!("handshake offering only h2 succeeded"),
        Err(e) => e,
    };
    assert!(
        matches!(
            rustls_error(&err),
            Some(rustls::Error::AlertReceived(
                rustls::AlertDescription::NoApplicationProtocol
            ))
        ),
        "{err:?}"
    );
    assert_serving(&s);
}

#[test]
fn plain_http_to_tls_port_gets_400_and_close() {
    let s = start("");
    let mut c = Client::connect(s.tls_addr);
    c.send(b"GET /tls.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 400);
    let body = String::from_utf8_lossy(&r.body);
    assert!(
        body.contains("plain HTTP sent to an HTTPS port"),
        "{body:?}"
    );
    assert!(c.is_closed(), "connection left open after the 400");
    assert_serving(&s);
}

#[test]
fn garbage_is_closed_without_a_response() {
    let s = start("");
    let mut sock = TcpStream::connect(s.tls_addr).expect("connect");
    sock.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    sock.write_all(&[0x00, 0xff, 0x13, 0x37, b'x', b'y', 0x80, 0x01])
        .expect("write");
    let got = read_until_closed(&mut sock);
    assert!(got.is_empty(), "answered garbage with {got:?}");
    assert_serving(&s);
}

#[test]
fn bad_handshake_record_gets_at_most_an_alert() {
    let s = start("");
    let mut sock = TcpStream::connect(s.tls_addr).expect("connect");
    sock.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    // A handshake record header, then a body that is no ClientHello.
    let mut rec = vec![0x16, 0x03, 0x01, 0x00, 0x20];
    rec.extend_from_slice(&[0xee; 0x20]);
    sock.write_all(&rec).expect("write");
    let got = read_until_closed(&mut sock);
    // Nothing, or TLS alert records (content type 21), never an HTTP answer.
    assert!(got.is_empty() || got[0] == 0x15, "answered with {got:?}");
    assert_serving(&s);
}

/// The first flight of a client: its ClientHello records.
fn client_hello(cfg: &Arc<rustls::ClientConfig>) -> Vec<u8> {
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut conn = rustls::ClientConnection::new(cfg.clone(), name).expect("client");
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).expect("write_tls");
    }
    out
}

#[test]
fn stalled_half_client_hello_is_cut_at_header_timeout() {
    let s = start("[timeouts]\nheader = \"1s\"\n");
    let hello = client_hello(&s.client);
    let mut sock = TcpStream::connect(s.tls_addr).expect("connect");
    sock.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let t = Instant::now();
    sock.write_all(&hello[..hello.len() / 2]).expect("write");
    let got = read_until_closed(&mut sock);
    let took = t.elapsed();
    assert!(got.is_empty() || got[0] == 0x15, "answered with {got:?}");
    // Generous bounds: not at once (the timeout cut it), well before the client gave up.
    assert!(took >= Duration::from_millis(500), "closed after {took:?}");
    assert!(took < Duration::from_secs(10), "closed after {took:?}");
    assert_serving(&s);
}

#[test]
fn tls13_session_resumes() {
    let s = start("");
    let cfg = s.ca.client_config(&TlsOpts {
        sessions: Some(session_store()),
        ..TlsOpts::default()
    });
    let first = tls_handshake(s.tls_addr, &cfg, "localhost").expect("first");
    assert_eq!(
        first.conn.handshake_kind(),
        Some(rustls::HandshakeKind::Full)
    );
    assert_eq!(
        first.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    // TLS 1.3 tickets come after the handshake: a full exchange reads them.
    let mut c = Client::over(first);
    assert_eq!(c.get("/tls.txt").body, SMALL);
    let second = tls_handshake(s.tls_addr, &cfg, "localhost").expect("second");
    assert_eq!(
        second.conn.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    assert_eq!(Client::over(second).get("/tls.txt").body, SMALL);
}

#[test]
fn tls12_session_resumes() {
    let s = start("");
    let cfg = s.ca.client_config(&TlsOpts {
        sessions: Some(session_store()),
        tls12_only: true,
        ..TlsOpts::default()
    });
    let first = tls_handshake(s.tls_addr, &cfg, "localhost").expect("first");
    assert_eq!(
        first.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert_eq!(Client::over(first).get("/tls.txt").body, SMALL);
    let second = tls_handshake(s.tls_addr, &cfg, "localhost").expect("second");
    assert_eq!(
        second.conn.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
}

#[test]
fn connection_close_sends_close_notify() {
    let s = start("");
    let mut c = s.connect_tls();
    c.send(b"GET /tls.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let r = c.read_response();
    assert_eq!((r.status, r.body.as_slice()), (200, SMALL));
    // rustls reports a close without close_notify as UnexpectedEof.
    let mut rest = Vec::new();
    match c.stream.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "bytes after the response: {rest:?}"),
        Err(e) => panic!("no clean TLS close: {e:?}"),
    }
}

/// Writes one byte per call (each its own small TCP segment with TCP_NODELAY), so the
/// server sees every TLS record split at every byte.
struct Trickle(TcpStream);

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Trickle {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match buf.first() {
            Some(b) => {
                self.0.write_all(std::slice::from_ref(b))?;
                self.0.flush()?;
                Ok(1)
            }
            None => Ok(0),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

fn trickle_exchange(addr: SocketAddr, cfg: &Arc<rustls::ClientConfig>, req: &[u8]) -> Vec<u8> {
    let sock = TcpStream::connect(addr).expect("connect");
    sock.set_nodelay(true).expect("nodelay");
    sock.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(cfg.clone(), name).expect("client");
    let mut s = rustls::StreamOwned::new(conn, Trickle(sock));
    s.write_all(req).expect("request");
    s.flush().expect("flush");
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read until close_notify");
    out
}

fn undated_raw(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .split_inclusive("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("date:"))
        .collect()
}

#[test]
fn tls_records_split_at_every_byte_get_the_same_responses() {
    let s = start("");
    let req = b"GET /tls.txt HTTP/1.1\r\nHost: t\r\n\r\n\
                GET /range.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=5-9\r\nConnection: close\r\n\r\n";
    // The same request as one write per flight, then trickled byte by byte (ClientHello,
    // Finished and the application data records alike).
    let mut whole = s.connect_tls();
    whole.send(req);
    let whole = whole.read_to_close();
    let split = trickle_exchange(s.tls_addr, &s.client, req);
    assert!(
        undated_raw(&whole).contains("HTTP/1.1 206"),
        "{}",
        undated_raw(&whole)
    );
    assert_eq!(undated_raw(&split), undated_raw(&whole));
}

#[test]
fn established_connections_answered_during_handshake_storm() {
    handshake_storm("");
}

/// Few handshake slots: most of the storm waits in the kernel backlog while TLS accepts
/// are paused, and every handshake still completes.
#[test]
fn handshake_storm_with_few_slots() {
    handshake_storm("max_pending_handshakes = 4\n");
}

fn handshake_storm(tls_extra: &str) {
    const STORM: usize = 200;
    const KEEPERS: usize = 4;
    // The storm's handshakes queue for the handshake threads: on a loaded machine (the
    // parallel suite) the last of 200 RSA-4096 signatures can come later than the default
    // 10 s header timeout, which would then cut it, rightly. The test checks that every
    // handshake completes and the keepers are answered meanwhile, not how fast this
    // machine signs: the timeout is the client's own (`TIMEOUT`) and more.
    let s = TestServer::start_tls(
        &format!("{METRICS}[timeouts]\nheader = \"120s\"\nkeepalive = \"120s\"\n"),
        tls_extra,
        files,
    );
    // The storm signs with RSA-4096 (the worst case): swap the certificate in.
    let dir = s.dir.path().to_path_buf();
    let (chain, key) = s.ca.leaf_rsa4096(&["localhost", "127.0.0.1", "127.0.0.2"]);
    std::fs::write(dir.join("tls.crt"), chain).expect("write");
    std::fs::write(dir.join("tls.key"), key).expect("write");
    s.signal(1);
    s.wait_reloads("ok", 1);
    let mut keepers: Vec<TlsClient> = (0..KEEPERS).map(|_| s.connect_tls()).collect();
    for k in &mut keepers {
        assert_eq!(k.get("/tls.txt").status, 200);
    }
    let storming = Arc::new(AtomicBool::new(true));
    let started = Arc::new(Barrier::new(STORM + KEEPERS));
    let during = Arc::new(AtomicUsize::new(0));
    let keeper_threads: Vec<_> = keepers
        .into_iter()
        .map(|mut c| {
            let (storming, started, during) = (storming.clone(), started.clone(), during.clone());
            std::thread::spawn(move || {
                started.wait();
                let mut n = 0;
                // At least one request after the storm began, then until it ends.
                loop {
                    let r = c.get("/tls.txt");
                    assert_eq!((r.status, r.body.as_slice()), (200, SMALL), "{r:?}");
                    n += 1;
                    if !storming.load(Ordering::Acquire) {
                        break;
                    }
                    during.fetch_add(1, Ordering::Relaxed);
                }
                n
            })
        })
        .collect();
    let (addr, cfg) = (s.tls_addr, s.client.clone());
    let storm: Vec<_> = (0..STORM)
        .map(|_| {
            let (started, cfg) = (started.clone(), cfg.clone());
            std::thread::spawn(move || {
                started.wait();
                // A full handshake each: the client config never resumes.
                let c = tls_handshake(addr, &cfg, "localhost");
                c.map(|c| c.conn.handshake_kind())
            })
        })
        .collect();
    let mut full = 0;
    for t in storm {
        match t.join().expect("storm thread") {
            Ok(Some(rustls::HandshakeKind::Full)) => full += 1,
            other => panic!("storm handshake: {other:?}"),
        }
    }
    storming.store(false, Ordering::Release);
    for t in keeper_threads {
        assert!(t.join().expect("keeper thread") >= 1);
    }
    assert_eq!(full, STORM);
    let m = scrape(&s);
    assert!(metric(&m, "vireo_tls_signatures_total", "thread=\"pool\"") >= STORM as u64);
    assert_eq!(
        metric(&m, "vireo_tls_signatures_total", "thread=\"reactor\""),
        0
    );
    eprintln!(
        "{} small requests answered during {STORM} handshakes",
        during.load(Ordering::Relaxed)
    );
    assert_serving(&s);
}
