//! HTTP/2 (issue 22): a real client (Python's `h2` package, driven by tests/h2client.py,
//! and curl with nghttp2) over TLS (ALPN h2) and cleartext prior knowledge; raw frames
//! written with the codec's own writers where exact bytes matter (floods, bad ids).

use crate::compression::{gunzip, text};
use crate::support::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use vireo::http::h2::frame::{self, kind, peek_header};
use vireo::http::h2::hpack::{Encoder, Indexing};
use vireo::http::h2::{ErrorCode, PREFACE};

const SMALL: &[u8] = b"hello over h2\n";

fn files(root: &Path) {
    std::fs::write(root.join("small.txt"), SMALL).expect("write");
    std::fs::write(root.join("big.bin"), pattern(10 << 20, 22)).expect("write");
    std::fs::write(root.join("mid.bin"), pattern(100 << 10, 23)).expect("write");
    std::fs::write(root.join("page.txt"), text(1 << 20, 24)).expect("write");
    for i in 0..100 {
        std::fs::write(
            root.join(format!("f{i}.bin")),
            pattern(1000 + i * 37, i as u64),
        )
        .expect("write");
    }
}

/// TLS (h2 by ALPN) and a plain listener taking h2c with prior knowledge.
/// `top`: top-level TOML (and other sections); `h2`: more `[http2]` keys.
fn start(top: &str, h2: &str) -> TlsServer {
    TestServer::start_tls(
        &format!("{top}\n[http2]\ncleartext = true\n{h2}"),
        "",
        files,
    )
}

/// Runs tests/h2client.py; `tls`: the CA to trust (None: cleartext).
fn client(scenario: &str, addr: SocketAddr, tls: Option<&TlsServer>, spec: &str) -> String {
    client_out(scenario, addr, tls, None, spec)
}

fn client_out(
    scenario: &str,
    addr: SocketAddr,
    tls: Option<&TlsServer>,
    out: Option<&Path>,
    spec: &str,
) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/h2client.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script);
    let ca;
    if let Some(s) = tls {
        ca = tempfile::NamedTempFile::new().expect("ca file");
        std::fs::write(ca.path(), &s.ca.cert_pem).expect("write ca");
        cmd.arg("--tls").arg(ca.path());
    }
    if let Some(o) = out {
        cmd.arg("--out").arg(o);
    }
    let o = cmd
        .arg(scenario)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .arg(spec)
        .output()
        .expect("run python3 tests/h2client.py (pip install h2)");
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "h2client {scenario} failed: {}\n{stdout}",
        String::from_utf8_lossy(&o.stderr)
    );
    stdout
}

#[derive(Debug, Default)]
struct H2Resp {
    status: u16,
    len: usize,
    reset: String,
    headers: Vec<(String, String)>,
}

impl H2Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The `resp`/`hdr` lines of a `get` run, and the order the streams ended in.
fn parse(out: &str) -> (Vec<H2Resp>, Vec<usize>) {
    let mut rs: Vec<H2Resp> = Vec::new();
    let mut order = Vec::new();
    for line in out.lines() {
        let mut w = line.splitn(3, ' ');
        match w.next() {
            Some("resp") => {
                let mut r = H2Resp::default();
                for kv in w.nth(1).unwrap_or("").split(' ') {
                    match kv.split_once('=') {
                        Some(("status", v)) => r.status = v.parse().unwrap_or(0),
                        Some(("len", v)) => r.len = v.parse().unwrap_or(0),
                        Some(("reset", v)) => r.reset = v.to_string(),
                        _ => {}
                    }
                }
                rs.push(r);
            }
            Some("hdr") => {
                let i: usize = w.next().and_then(|i| i.parse().ok()).expect("index");
                let (k, v) = w.next().and_then(|h| h.split_once(": ")).expect("header");
                rs[i].headers.push((k.to_string(), v.to_string()));
            }
            Some("order") => {
                order = line[5..]
                    .split_whitespace()
                    .filter_map(|i| i.parse().ok())
                    .collect();
            }
            _ => {}
        }
    }
    (rs, order)
}

fn req(path: &str, scheme: &str, headers: &[(&str, &str)]) -> String {
    let h: Vec<String> = headers
        .iter()
        .map(|(k, v)| format!("[\"{k}\", \"{v}\"]"))
        .collect();
    format!(
        "{{\"path\": \"{path}\", \"scheme\": \"{scheme}\", \"headers\": [{}]}}",
        h.join(", ")
    )
}

fn get_all(
    s: &TlsServer,
    tls: bool,
    out: Option<&Path>,
    reqs: &[String],
) -> (Vec<H2Resp>, Vec<usize>) {
    let spec = format!("[{}]", reqs.join(", "));
    let (addr, t) = if tls {
        (s.tls_addr, Some(s))
    } else {
        (s.server.addr, None)
    };
    parse(&client_out("get", addr, t, out, &spec))
}

#[test]
fn small_and_10_mib_files_arrive_exact_over_h2_and_h2c() {
    let s = start("", "");
    for tls in [true, false] {
        let scheme = if tls { "https" } else { "http" };
        let dir = tempfile::tempdir().expect("tempdir");
        let (rs, _) = get_all(
            &s,
            tls,
            Some(dir.path()),
            &[req("/small.txt", scheme, &[]), req("/big.bin", scheme, &[])],
        );
        assert_eq!(rs[0].status, 200, "tls={tls}");
        assert_eq!(std::fs::read(dir.path().join("0")).expect("body"), SMALL);
        assert_eq!(rs[1].status, 200);
        assert_eq!(rs[1].header("content-length"), Some("10485760"));
        let big = std::fs::read(dir.path().join("1")).expect("body");
        assert!(
            big == pattern(10 << 20, 22),
            "10 MiB body differs (tls={tls})"
        );
        for r in &rs {
            assert!(r.header("connection").is_none() && r.header("keep-alive").is_none());
        }
    }
}

#[test]
fn curl_speaks_h2_over_tls_and_prior_knowledge() {
    let s = start("", "");
    let ca = tempfile::NamedTempFile::new().expect("ca");
    std::fs::write(ca.path(), &s.ca.cert_pem).expect("write ca");
    let port = s.tls_addr.port();
    let tls = Command::new("curl")
        .args(["-sS", "--http2", "-w", "\\n%{http_version}", "--cacert"])
        .arg(ca.path())
        .arg("--resolve")
        .arg(format!("localhost:{port}:{}", s.tls_addr.ip()))
        .arg(format!("https://localhost:{port}/small.txt"))
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&tls.stdout),
        "hello over h2\n\n2",
        "{}",
        String::from_utf8_lossy(&tls.stderr)
    );
    let plain = Command::new("curl")
        .args(["-sS", "--http2-prior-knowledge", "-w", "\\n%{http_version}"])
        .arg(format!("http://{}/small.txt", s.server.addr))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&plain.stdout), "hello over h2\n\n2");
}

#[test]
fn a_hundred_concurrent_streams_on_one_connection() {
    let s = start("", "");
    let reqs: Vec<String> = (0..100)
        .map(|i| req(&format!("/f{i}.bin"), "https", &[]))
        .collect();
    let (rs, order) = get_all(&s, true, None, &reqs);
    assert_eq!(order.len(), 100);
    for (i, r) in rs.iter().enumerate() {
        assert_eq!((r.status, r.len), (200, 1000 + i * 37), "stream #{i}");
    }
}

#[test]
fn a_small_client_window_is_respected_and_resumes() {
    let s = start("", "");
    let out = client("window", s.tls_addr, Some(&s), "{\"path\": \"/mid.bin\"}");
    // 1 KiB window: exactly 1 KiB arrives; window 0 (then -1024 +1024): nothing more;
    // opened: the rest, all of it.
    assert!(out.contains("first 1024\n"), "{out}");
    assert!(out.contains("at_zero 1024\n"), "{out}");
    assert!(out.contains(&format!("total {}\n", 100 << 10)), "{out}");
}

#[test]
fn a_stream_parked_on_gzip_does_not_hold_its_siblings() {
    let s = start(
        "workers = 1\n[compression]\ncache_bytes = 0\nlevel = 9\n",
        "",
    );
    let mut reqs = vec![req("/page.txt", "https", &[("accept-encoding", "gzip")])];
    reqs.extend((0..50).map(|i| req(&format!("/f{i}.bin"), "https", &[])));
    let dir = tempfile::tempdir().expect("tempdir");
    let (rs, order) = get_all(&s, true, Some(dir.path()), &reqs);
    assert_eq!(rs[0].header("content-encoding"), Some("gzip"));
    let gz = std::fs::read(dir.path().join("0")).expect("body");
    assert!(gunzip(&gz) == text(1 << 20, 24), "gzip body differs");
    for r in &rs[1..] {
        assert_eq!(r.status, 200);
    }
    // Every sibling ended before the stream that waited for the pool.
    assert_eq!(order.last(), Some(&0), "order: {order:?}");
}

#[test]
fn conditionals_errors_ranges_and_head_over_h2() {
    let s = start("", "");
    let (rs, _) = get_all(&s, true, None, &[req("/small.txt", "https", &[])]);
    let etag = rs[0].header("etag").expect("etag").replace('"', "\\\"");
    let reqs = [
        req("/small.txt", "https", &[("if-none-match", &etag)]),
        req("/nope.txt", "https", &[]),
        req("/mid.bin", "https", &[("range", "bytes=10-19")]),
        "{\"path\": \"/small.txt\", \"method\": \"HEAD\"}".to_string(),
    ];
    let (rs, _) = get_all(&s, true, None, &reqs);
    assert_eq!((rs[0].status, rs[0].len), (304, 0));
    assert_eq!(rs[1].status, 404);
    assert!(rs[1].len > 0, "404 has its error page");
    assert_eq!((rs[2].status, rs[2].len), (206, 10));
    assert_eq!(
        rs[2].header("content-range"),
        Some(format!("bytes 10-19/{}", 100 << 10).as_str())
    );
    assert_eq!((rs[3].status, rs[3].len), (200, 0));
    assert_eq!(rs[3].header("content-length"), Some("14"));
}

#[test]
fn alpn_offers_h2_and_falls_back_to_http11() {
    let s = start("", "");
    let h2 = s.ca.client_config(&TlsOpts {
        alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        ..TlsOpts::default()
    });
    let stream = tls_handshake(s.tls_addr, &h2, "localhost").expect("handshake");
    assert_eq!(stream.conn.alpn_protocol(), Some(&b"h2"[..]));
    let only_h2 = s.ca.client_config(&TlsOpts {
        alpn: vec![b"h2".to_vec()],
        ..TlsOpts::default()
    });
    let stream = tls_handshake(s.tls_addr, &only_h2, "localhost").expect("handshake");
    assert_eq!(stream.conn.alpn_protocol(), Some(&b"h2"[..]));
    let only_h1 = s.ca.client_config(&TlsOpts {
        alpn: vec![b"http/1.1".to_vec()],
        ..TlsOpts::default()
    });
    let stream = tls_handshake(s.tls_addr, &only_h1, "localhost").expect("handshake");
    assert_eq!(stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut c = Client::over(stream);
    let r = c.get("/small.txt");
    assert_eq!((r.status, r.body.as_slice()), (200, SMALL));
    assert!(r.head.starts_with("HTTP/1.1 200"));
}

#[test]
fn upgrade_h2c_is_served_as_http11() {
    let s = start("", "");
    let mut c = Client::connect(s.server.addr);
    c.send(b"GET /small.txt HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n");
    let r = c.read_response();
    assert!(r.head.starts_with("HTTP/1.1 200"), "{}", r.head);
    assert_eq!(r.body, SMALL);
}

// ---- raw frames ----

struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
    hpack: Encoder,
}

impl Raw {
    fn connect(addr: SocketAddr) -> Raw {
        Raw::connect_acking(addr, true)
    }

    /// `ack`: acknowledge the server's SETTINGS (sent ahead: they are the first frame).
    fn connect_acking(addr: SocketAddr, ack: bool) -> Raw {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let mut r = Raw {
            s,
            buf: Vec::new(),
            hpack: Encoder::new(),
        };
        let mut hello = PREFACE.to_vec();
        frame::write_settings(&mut hello, &[]);
        if ack {
            frame::write_settings_ack(&mut hello);
        }
        r.send(&hello);
        r
    }

    fn send(&mut self, b: &[u8]) {
        // The server may have closed already (that is what some tests wait for).
        let _ = self.s.write_all(b);
    }

    fn headers(&mut self, stream: u32, end_stream: bool) -> Vec<u8> {
        self.request(stream, end_stream, "/small.txt", &[])
    }

    fn request(
        &mut self,
        stream: u32,
        end_stream: bool,
        path: &str,
        extra: &[(&str, &str)],
    ) -> Vec<u8> {
        request_frame(&mut self.hpack, stream, end_stream, path, extra)
    }

    /// The next frame: (kind, flags, stream, payload); None once the server closed.
    fn frame(&mut self) -> Option<(u8, u8, u32, Vec<u8>)> {
        loop {
            if let Some(h) = peek_header(&self.buf) {
                if self.buf.len() >= h.frame_len() {
                    let payload = self.buf[frame::HEADER_LEN..h.frame_len()].to_vec();
                    self.buf.drain(..h.frame_len());
                    return Some((h.kind, h.flags, h.stream, payload));
                }
            }
            let mut b = [0u8; 65536];
            match self.s.read(&mut b) {
                // A signal to the test process is not the server closing.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&b[..n]),
            }
        }
    }

    /// Frames until a GOAWAY: its error code (None: closed without one).
    fn goaway(&mut self) -> Option<ErrorCode> {
        while let Some((k, _, _, p)) = self.frame() {
            if k == kind::GOAWAY && p.len() >= 8 {
                return Some(ErrorCode::from_u32(u32::from_be_bytes([
                    p[4], p[5], p[6], p[7],
                ])));
            }
        }
        None
    }
}

#[test]
fn streams_past_max_concurrent_streams_are_refused() {
    let s = start("", "max_concurrent_streams = 2\n");
    let mut r = Raw::connect(s.server.addr);
    // Three requests whose bodies never end: the third is one too many.
    let mut b = Vec::new();
    for id in [1, 3, 5] {
        b.extend(r.headers(id, false));
    }
    r.send(&b);
    let refused = loop {
        match r.frame() {
            Some((k, _, id, p)) if k == kind::RST_STREAM => {
                break (id, u32::from_be_bytes([p[0], p[1], p[2], p[3]]))
            }
            Some(_) => continue,
            None => panic!("closed without RST_STREAM"),
        }
    };
    assert_eq!(refused, (5, ErrorCode::RefusedStream.to_u32()));
    // The connection goes on: a complete request on a new stream is answered... once a
    // slot is free (stream 1 reset by us frees one).
    let mut b = Vec::new();
    frame::write_rst_stream(&mut b, 1, ErrorCode::Cancel);
    b.extend(r.headers(7, true));
    r.send(&b);
    let got = loop {
        match r.frame() {
            Some((k, _, 7, _)) if k == kind::HEADERS => break true,
            Some(_) => continue,
            None => break false,
        }
    };
    assert!(got, "stream 7 not answered");
}

#[test]
fn rapid_reset_gets_goaway_enhance_your_calm() {
    let s = start("", "");
    let out = client(
        "reset",
        s.server.addr,
        None,
        "{\"n\": 1000, \"path\": \"/small.txt\"}",
    );
    assert!(
        out.contains(&format!("goaway {}\n", ErrorCode::EnhanceYourCalm.to_u32())),
        "{out}"
    );
    // The server is fine.
    let r = get(s.server.addr, "/small.txt");
    assert_eq!(r.body, SMALL);
}

#[test]
fn a_ping_flood_is_cut_with_enhance_your_calm() {
    let s = start("", "");
    let mut r = Raw::connect(s.server.addr);
    let mut b = Vec::new();
    for i in 0..300u64 {
        frame::write_ping(&mut b, false, i.to_be_bytes());
    }
    r.send(&b);
    assert_eq!(r.goaway(), Some(ErrorCode::EnhanceYourCalm));
}

#[test]
fn stream_id_misuse_is_a_protocol_error() {
    let s = start("", "");
    // An even (server) stream id.
    let mut r = Raw::connect(s.server.addr);
    let h = r.headers(2, true);
    r.send(&h);
    assert_eq!(r.goaway(), Some(ErrorCode::ProtocolError));
    // Backwards: 5 then 3.
    let mut r = Raw::connect(s.server.addr);
    let mut h = r.headers(5, true);
    h.extend(r.headers(3, true));
    r.send(&h);
    assert_eq!(r.goaway(), Some(ErrorCode::ProtocolError));
    // DATA on an idle stream.
    let mut r = Raw::connect(s.server.addr);
    let mut b = Vec::new();
    frame::write_data(&mut b, 9, b"x", true);
    r.send(&b);
    assert_eq!(r.goaway(), Some(ErrorCode::ProtocolError));
}

#[test]
fn a_frame_over_the_size_is_a_frame_size_error() {
    let s = start("", "");
    let mut r = Raw::connect(s.server.addr);
    let h = r.headers(1, false);
    r.send(&h);
    r.send(&frame::data_header(1, 20_000, true));
    assert_eq!(r.goaway(), Some(ErrorCode::FrameSizeError));
}

/// Appends a flood of frames.
type Flood = fn(&mut Vec<u8>);

#[test]
fn control_frame_floods_are_cut_with_enhance_your_calm() {
    let s = start("", "");
    let floods: [(&str, Flood); 3] = [
        ("SETTINGS", |b| {
            for _ in 0..60 {
                frame::write_settings(b, &[]);
            }
        }),
        ("empty DATA", |b| {
            for _ in 0..150 {
                frame::write_data(b, 1, b"", false);
            }
        }),
        ("WINDOW_UPDATE", |b| {
            for _ in 0..1100 {
                frame::write_window_update(b, 0, 1);
            }
        }),
    ];
    for (what, flood) in floods {
        let mut r = Raw::connect(s.server.addr);
        // A request whose body never ends, for the DATA frames to go to.
        let mut b = r.headers(1, false);
        flood(&mut b);
        r.send(&b);
        assert_eq!(r.goaway(), Some(ErrorCode::EnhanceYourCalm), "{what}");
    }
}

#[test]
fn shutdown_sends_goaway_and_an_open_stream_still_completes() {
    let mut s = start("[timeouts]\nshutdown = \"20s\"\n", "");
    let mut r = Raw::connect(s.server.addr);
    // Window 0: the response's HEADERS come, its DATA waits.
    let mut b = Vec::new();
    frame::write_settings(
        &mut b,
        &[(vireo::http::h2::setting::INITIAL_WINDOW_SIZE, 0)],
    );
    b.extend(r.headers(1, true));
    r.send(&b);
    let mut b = Vec::new();
    loop {
        match r.frame() {
            Some((k, _, 1, _)) if k == kind::HEADERS => break,
            Some(_) => {}
            None => panic!("closed before the response's HEADERS"),
        }
    }
    s.server.signal(15);
    // Two GOAWAYs: every id first; the PING is not acked, so after a grace the real one.
    assert_eq!(r.goaway_frame(), Some((0x7fff_ffff, 0)));
    let t = std::time::Instant::now();
    assert_eq!(r.goaway_frame(), Some((1, 0)), "GOAWAY(last 1, NO_ERROR)");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    frame::write_window_update(&mut b, 1, 1 << 30);
    frame::write_window_update(&mut b, 0, 1 << 30);
    r.send(&b);
    let mut got = 0;
    loop {
        match r.frame() {
            Some((k, f, 1, p)) if k == kind::DATA => {
                got += p.len();
                if f & frame::flag::END_STREAM != 0 {
                    break;
                }
            }
            Some(_) => {}
            None => panic!("closed after {got} bytes"),
        }
    }
    assert_eq!(got, SMALL.len());
    // Then the connection closes and the server exits.
    while r.frame().is_some() {}
    assert!(s.server.wait_exit(Duration::from_secs(20)).is_some());
}

#[test]
fn each_stream_gets_an_access_log_line_and_the_metrics_count_h2() {
    let mut s = start(
        "[log]\naccess = \"access.log\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
        "",
    );
    let (rs, _) = get_all(
        &s,
        true,
        None,
        &[req("/small.txt", "https", &[]), req("/nope", "https", &[])],
    );
    assert_eq!((rs[0].status, rs[1].status), (200, 404));
    let m = scrape(&s.server);
    assert!(metric(&m, "vireo_h2_connections_total", "") >= 1, "{m}");
    assert!(metric(&m, "vireo_h2_streams_total", "") >= 2, "{m}");
    s.server.signal(15);
    assert!(s.server.wait_exit(Duration::from_secs(20)).is_some());
    let log = std::fs::read_to_string(s.server.dir.path().join("access.log")).expect("log");
    assert!(log.contains("\"GET /small.txt HTTP/2.0\" 200 14"), "{log}");
    assert!(log.contains("\"GET /nope HTTP/2.0\" 404"), "{log}");
}

#[test]
fn a_reset_stream_is_not_waited_for_and_its_siblings_go_on() {
    let mut s = start(
        "workers = 1\n[log]\naccess = \"access.log\"\n\
         [compression]\ncache_bytes = 0\nlevel = 9\n",
        "",
    );
    std::fs::write(s.server.root().join("huge.txt"), text(8 << 20, 25)).expect("write");
    let mut r = Raw::connect(s.server.addr);
    let mut b = r.request(1, true, "/huge.txt", &[("accept-encoding", "gzip")]);
    frame::write_rst_stream(&mut b, 1, ErrorCode::Cancel);
    b.extend(r.headers(3, true));
    r.send(&b);
    // Stream 3 is answered while stream 1's gzip may still run; stream 1 never is.
    loop {
        match r.frame() {
            Some((k, f, 3, _)) if k == kind::DATA && f & frame::flag::END_STREAM != 0 => break,
            Some((k, _, 1, _)) => panic!("frame {k} on the reset stream"),
            Some(_) => {}
            None => panic!("closed before stream 3 was answered"),
        }
    }
    drop(r);
    s.server.signal(15);
    assert!(s.server.wait_exit(Duration::from_secs(60)).is_some());
    let log = std::fs::read_to_string(s.server.dir.path().join("access.log")).expect("log");
    assert!(log.contains("\"GET /huge.txt HTTP/2.0\" 499 0"), "{log}");
    assert!(log.contains("\"GET /small.txt HTTP/2.0\" 200 14"), "{log}");
}

#[test]
fn random_frames_never_panic_the_server() {
    let s = start("[metrics]\nlisten = \"127.0.0.1:0\"\n", "");
    // A small deterministic generator (xorshift): frames of every type with random
    // flags, stream ids and payloads, after a valid preface and a valid request.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..60 {
        let mut r = Raw::connect(s.server.addr);
        let mut b = r.headers(1, next() % 2 == 0);
        for _ in 0..40 {
            let kind = (next() % 12) as u8;
            let flags = (next() % 256) as u8;
            let stream = match next() % 4 {
                0 => 0,
                1 => 1,
                2 => (next() % 16) as u32,
                _ => (next() % 0x7fff_ffff) as u32,
            };
            let len = match next() % 4 {
                0 => 0,
                1 => 4,
                2 => 8,
                _ => (next() % 64) as usize,
            };
            b.extend_from_slice(&frame::header(len as u32, kind, flags, stream));
            b.extend((0..len).map(|_| next() as u8));
        }
        r.send(&b);
        while r.frame().is_some() {}
    }
    let m = scrape(&s.server);
    assert_eq!(metric(&m, "vireo_panics_total", ""), 0, "{m}");
    assert_eq!(get(s.server.addr, "/small.txt").body, SMALL);
}

impl Raw {
    /// Frames until one of `kind` on `stream`: its flags and payload.
    fn until(&mut self, want: u8, stream: u32) -> Option<(u8, Vec<u8>)> {
        while let Some((k, f, id, p)) = self.frame() {
            if k == want && id == stream {
                return Some((f, p));
            }
        }
        None
    }
}

#[test]
fn a_continuation_flood_is_cut() {
    let s = start("", "");
    let mut r = Raw::connect(s.server.addr);
    let mut b = Vec::new();
    b.extend_from_slice(&frame::header(1, kind::HEADERS, 0, 1));
    b.push(0x82); // :method GET, the block never ends
    for _ in 0..30 {
        b.extend_from_slice(&frame::header(1, kind::CONTINUATION, 0, 1));
        b.push(0x84);
    }
    r.send(&b);
    assert_eq!(r.goaway(), Some(ErrorCode::EnhanceYourCalm));
}

#[test]
fn a_header_list_over_the_limit_resets_only_its_stream() {
    let s = start("", "");
    let mut r = Raw::connect(s.server.addr);
    let big = "x".repeat(20_000);
    let mut b = r.request(1, true, "/small.txt", &[("x-big", &big)]);
    b.extend(r.headers(3, true));
    r.send(&b);
    let mut seen = Vec::new();
    let p = loop {
        match r.frame() {
            Some((k, _, 1, p)) if k == kind::RST_STREAM => break p,
            Some((k, _, id, p)) => seen.push((k, id, p)),
            None => panic!("no RST_STREAM on 1: {seen:?}"),
        }
    };
    assert_eq!(
        u32::from_be_bytes([p[0], p[1], p[2], p[3]]),
        ErrorCode::ProtocolError.to_u32()
    );
    assert!(r.until(kind::HEADERS, 3).is_some(), "stream 3 answered");
}

#[test]
fn an_upload_is_credited_with_window_updates() {
    let s = start("", "");
    let mut r = Raw::connect(s.server.addr);
    let total = 150_000;
    let mut b = r.request(
        1,
        false,
        "/small.txt",
        &[("content-length", &total.to_string())],
    );
    // The method: POST (the request helper sends GET; a body on GET is just as framed).
    let chunk = vec![b'u'; 15_000];
    for _ in 0..4 {
        frame::write_data(&mut b, 1, &chunk, false);
    }
    r.send(&b);
    // 60,000 of the 65,535-byte stream window used: the server credits it back.
    assert!(r.until(kind::WINDOW_UPDATE, 1).is_some(), "no credit");
    let mut b = Vec::new();
    for _ in 0..4 {
        frame::write_data(&mut b, 1, &chunk, false);
    }
    r.send(&b);
    assert!(
        r.until(kind::WINDOW_UPDATE, 1).is_some(),
        "no second credit"
    );
    let mut b = Vec::new();
    frame::write_data(&mut b, 1, &chunk, false);
    frame::write_data(&mut b, 1, &chunk, true);
    r.send(&b);
    let (f, _) = r.until(kind::HEADERS, 1).expect("answered");
    let _ = f;
}

#[test]
fn a_content_length_that_disagrees_with_data_resets_the_stream() {
    let s = start("", "");
    let mut r = Raw::connect(s.server.addr);
    let mut b = r.request(1, false, "/small.txt", &[("content-length", "10")]);
    frame::write_data(&mut b, 1, b"12345", true);
    r.send(&b);
    let (_, p) = r.until(kind::RST_STREAM, 1).expect("RST_STREAM");
    assert_eq!(
        u32::from_be_bytes([p[0], p[1], p[2], p[3]]),
        ErrorCode::ProtocolError.to_u32()
    );
}

#[test]
fn a_client_that_never_opens_its_window_is_closed_at_the_send_timeout() {
    let s = start("[timeouts]\nsend = \"1s\"\n", "");
    let mut r = Raw::connect(s.server.addr);
    let mut b = Vec::new();
    frame::write_settings(
        &mut b,
        &[(vireo::http::h2::setting::INITIAL_WINDOW_SIZE, 0)],
    );
    b.extend(r.headers(1, true));
    r.send(&b);
    let t = std::time::Instant::now();
    assert_eq!(r.goaway(), Some(ErrorCode::NoError));
    assert!(r.until(kind::DATA, 1).is_none(), "DATA past a zero window");
    let took = t.elapsed();
    assert!(took < Duration::from_secs(10), "closed after {took:?}");
}

#[test]
fn an_idle_connection_gets_goaway_at_the_keepalive_timeout() {
    let s = start("[timeouts]\nkeepalive = \"1s\"\n", "");
    let mut r = Raw::connect(s.server.addr);
    let h = r.headers(1, true);
    r.send(&h);
    assert!(r.until(kind::DATA, 1).is_some(), "answered");
    assert_eq!(r.goaway(), Some(ErrorCode::NoError));
    assert!(r.frame().is_none(), "closed after the GOAWAY");
}

/// A GET request's HEADERS frame (`:authority` t, fields not indexed).
fn request_frame(
    hpack: &mut Encoder,
    stream: u32,
    end_stream: bool,
    path: &str,
    extra: &[(&str, &str)],
) -> Vec<u8> {
    let mut block = Vec::new();
    hpack.begin(&mut block);
    let fields = [
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", "t"),
        (":path", path),
    ];
    for &(k, v) in fields.iter().chain(extra) {
        hpack.field(k.as_bytes(), v.as_bytes(), Indexing::Without, &mut block);
    }
    let mut out = Vec::new();
    frame::write_headers(&mut out, stream, &block, end_stream, 16_384);
    out
}

/// What one read of a raw connection gave.
enum Got {
    /// Its type and payload.
    Frame(u8, Vec<u8>),
    /// Nothing within the read timeout.
    Quiet,
    Closed,
}

impl Raw {
    /// The next frame, or nothing within `within`.
    fn next(&mut self, within: Duration) -> Got {
        self.s.set_read_timeout(Some(within)).expect("timeout");
        loop {
            if let Some(h) = peek_header(&self.buf) {
                if self.buf.len() >= h.frame_len() {
                    let payload = self.buf[frame::HEADER_LEN..h.frame_len()].to_vec();
                    self.buf.drain(..h.frame_len());
                    return Got::Frame(h.kind, payload);
                }
            }
            let mut b = [0u8; 65536];
            match self.s.read(&mut b) {
                Ok(0) => return Got::Closed,
                Ok(n) => self.buf.extend_from_slice(&b[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Got::Quiet
                }
                Err(_) => return Got::Closed,
            }
        }
    }

    /// Frames until a GOAWAY: (last-stream-id, code); None once closed without one.
    fn goaway_frame(&mut self) -> Option<(u32, u32)> {
        let (_, p) = self.until(kind::GOAWAY, 0)?;
        Some((be32(&p[0..4]), be32(&p[4..8])))
    }

    /// Frames until stream `id` ends (DATA or HEADERS with END_STREAM): DATA bytes seen.
    fn body(&mut self, id: u32) -> usize {
        let mut got = 0;
        loop {
            match self.frame() {
                Some((k, f, i, p)) if i == id && (k == kind::DATA || k == kind::HEADERS) => {
                    if k == kind::DATA {
                        got += p.len();
                    }
                    if f & frame::flag::END_STREAM != 0 {
                        return got;
                    }
                }
                Some(_) => {}
                None => panic!("closed before stream {id} ended ({got} bytes)"),
            }
        }
    }
}

impl Raw {
    /// Requests on streams 1, 3, 5, ... (`n` of them), each reset at once if `reset`.
    fn burst(&mut self, n: u32, end_stream: bool, reset: bool) -> Vec<u8> {
        let mut b = Vec::new();
        for id in (0..n).map(|i| 1 + 2 * i) {
            b.extend(self.headers(id, end_stream));
            if reset {
                frame::write_rst_stream(&mut b, id, ErrorCode::Cancel);
            }
        }
        b
    }

    /// Every `pace` send what `tick` writes (given the round), reading meanwhile, until a
    /// GOAWAY (its code) or the close (None); fails past 12 s. Also returns how long it
    /// took and the DATA bytes seen.
    fn paced_until_goaway(
        &mut self,
        pace: Duration,
        mut tick: impl FnMut(&mut Vec<u8>, u64),
    ) -> (Option<u32>, Duration, usize) {
        let t = std::time::Instant::now();
        let mut data = 0;
        for n in 0u64.. {
            assert!(
                t.elapsed() < Duration::from_secs(12),
                "still open after {:?} ({data} bytes of DATA)",
                t.elapsed()
            );
            let mut b = Vec::new();
            tick(&mut b, n);
            self.send(&b);
            let round = std::time::Instant::now();
            while round.elapsed() < pace {
                match self.next(pace / 4) {
                    Got::Frame(k, p) if k == kind::GOAWAY => {
                        return (Some(be32(&p[4..8])), t.elapsed(), data)
                    }
                    Got::Frame(k, p) if k == kind::DATA => data += p.len(),
                    Got::Frame(..) | Got::Quiet => {}
                    Got::Closed => return (None, t.elapsed(), data),
                }
            }
        }
        unreachable!()
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[test]
fn a_peer_that_never_acks_our_settings_gets_settings_timeout() {
    // The header timeout is longer: only the SETTINGS ACK deadline (5 s) can cut it.
    let s = start("[timeouts]\nheader = \"30s\"\n", "");
    let mut r = Raw::connect_acking(s.server.addr, false);
    let t = std::time::Instant::now();
    assert_eq!(r.goaway(), Some(ErrorCode::SettingsTimeout));
    let took = t.elapsed();
    assert!(
        took > Duration::from_millis(4500) && took < Duration::from_secs(8),
        "GOAWAY after {took:?}"
    );
    assert!(r.frame().is_none(), "closed after the GOAWAY");
}

#[test]
fn more_new_streams_in_one_read_than_twice_max_concurrent_streams_is_calm() {
    let s = start(
        "[metrics]\nlisten = \"127.0.0.1:0\"\n",
        "max_concurrent_streams = 4\n",
    );
    // 8 = 2 x 4 requests in one write: four answered, four refused (the first four are
    // still open while the read is handled), the connection goes on.
    let mut r = Raw::connect(s.server.addr);
    let b = r.burst(8, true, false);
    r.send(&b);
    let (mut answered, mut refused) = (0, 0);
    while answered + refused < 8 {
        match r.frame() {
            Some((k, f, _, _)) if k == kind::DATA && f & frame::flag::END_STREAM != 0 => {
                answered += 1
            }
            Some((k, _, _, p)) if k == kind::RST_STREAM => {
                assert_eq!(be32(&p), ErrorCode::RefusedStream.to_u32());
                refused += 1;
            }
            Some((k, ..)) => assert_ne!(k, kind::GOAWAY, "GOAWAY for 8 streams"),
            None => panic!("closed: {answered} answered, {refused} refused"),
        }
    }
    assert_eq!((answered, refused), (4, 4));
    let b = r.headers(17, true);
    r.send(&b);
    assert_eq!(r.body(17), SMALL.len(), "served on");
    // 9 in one write: one too many.
    let mut r = Raw::connect(s.server.addr);
    let b = r.burst(9, false, false);
    r.send(&b);
    assert_eq!(r.goaway(), Some(ErrorCode::EnhanceYourCalm));
    let m = scrape(&s.server);
    let trips = metric(
        &m,
        "vireo_h2_defence_trips_total",
        "defence=\"streams_per_read\"",
    );
    assert_eq!(trips, 1, "{m}");
    assert!(
        metric(&m, "vireo_h2_frames_received_total", "type=\"HEADERS\"") >= 17,
        "{m}"
    );
}

#[test]
fn streams_reset_before_their_response_are_bounded_per_connection() {
    let s = start(
        "[timeouts]\nkeepalive = \"2s\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
        "",
    );
    // 60 streams answered, then reset: their responses had started, so only the
    // per-second RST_STREAM budget (100) counts them.
    let mut r = Raw::connect(s.server.addr);
    let b = r.burst(60, true, true);
    r.send(&b);
    let t = std::time::Instant::now();
    let code = r.goaway();
    let took = t.elapsed();
    assert_eq!(
        code,
        Some(ErrorCode::NoError),
        "keepalive, not calm ({took:?})"
    );
    // 51 streams reset while their request was still open: one too many.
    let mut r = Raw::connect(s.server.addr);
    let b = r.burst(51, false, true);
    r.send(&b);
    assert_eq!(r.goaway(), Some(ErrorCode::EnhanceYourCalm));
    let m = scrape(&s.server);
    assert_eq!(
        metric(
            &m,
            "vireo_h2_defence_trips_total",
            "defence=\"early_resets\""
        ),
        1,
        "{m}"
    );
    assert!(metric(&m, "vireo_h2_rapid_reset_total", "") >= 1, "{m}");
}

#[test]
fn resets_past_100_a_second_are_calm() {
    let s = start("", "");
    let mut r = Raw::connect(s.server.addr);
    let mut b = r.headers(1, true);
    r.send(&b);
    assert_eq!(r.body(1), SMALL.len());
    // Resets of a stream long answered: only the rate counts them.
    b.clear();
    for _ in 0..150 {
        frame::write_rst_stream(&mut b, 1, ErrorCode::Cancel);
    }
    r.send(&b);
    assert_eq!(r.goaway(), Some(ErrorCode::EnhanceYourCalm));
}

/// A connection with stream 1 waiting for window (INITIAL_WINDOW_SIZE 0): its HEADERS
/// have arrived, its DATA waits.
fn stalled_stream(addr: SocketAddr) -> Raw {
    let mut r = Raw::connect(addr);
    let mut b = Vec::new();
    frame::write_settings(
        &mut b,
        &[(vireo::http::h2::setting::INITIAL_WINDOW_SIZE, 0)],
    );
    b.extend(r.headers(1, true));
    r.send(&b);
    assert!(r.until(kind::HEADERS, 1).is_some(), "HEADERS of stream 1");
    r
}

#[test]
fn graceful_shutdown_goaway_is_two_step_and_a_stream_opened_between_is_served() {
    let mut s = start("[timeouts]\nshutdown = \"20s\"\n", "");
    let mut r = stalled_stream(s.server.addr);
    s.server.signal(15);
    // First: every stream id may still come, with a PING to time it.
    assert_eq!(r.goaway_frame(), Some((0x7fff_ffff, 0)));
    let (_, ping) = r.until(kind::PING, 0).expect("PING after the first GOAWAY");
    // A stream the client opened before it saw the GOAWAY: served. Then the PING ACK.
    let mut b = r.headers(3, true);
    frame::write_ping(&mut b, true, ping[..8].try_into().expect("8 bytes"));
    r.send(&b);
    assert!(r.until(kind::HEADERS, 3).is_some(), "stream 3 answered");
    // The real GOAWAY names stream 3; a stream after it is not served.
    assert_eq!(r.goaway_frame(), Some((3, 0)));
    let b = r.headers(5, true);
    r.send(&b);
    let mut b = Vec::new();
    frame::write_window_update(&mut b, 1, 1 << 20);
    frame::write_window_update(&mut b, 3, 1 << 20);
    r.send(&b);
    let mut got = [0usize; 2];
    let mut ended = 0;
    while ended < 2 {
        match r.frame() {
            Some((k, f, id, p)) if k == kind::DATA && (id == 1 || id == 3) => {
                got[(id / 2) as usize] += p.len();
                if f & frame::flag::END_STREAM != 0 {
                    ended += 1;
                }
            }
            Some((_, _, 5, _)) => panic!("stream 5 came after the real GOAWAY"),
            Some(_) => {}
            None => panic!("closed early: {got:?}"),
        }
    }
    assert_eq!(got, [SMALL.len(), SMALL.len()]);
    assert!(r.frame().is_none(), "closed once its streams ended");
    assert!(s.server.wait_exit(Duration::from_secs(20)).is_some());
}

#[test]
fn a_reload_keeps_an_open_h2_connection_serving() {
    let mut s = start(
        "[timeouts]\nshutdown = \"20s\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
        "",
    );
    let mut r = stalled_stream(s.server.addr);
    s.server.signal(1);
    // The old reactor drains this connection as a shutdown does: the first GOAWAY and a
    // PING; the client, not yet acking, opens stream 3 and is served.
    assert_eq!(r.goaway_frame(), Some((0x7fff_ffff, 0)));
    let (_, ping) = r.until(kind::PING, 0).expect("PING");
    let mut b = r.headers(3, true);
    frame::write_window_update(&mut b, 3, 1 << 20);
    r.send(&b);
    assert_eq!(r.body(3), SMALL.len(), "stream 3 served after the reload");
    let mut b = Vec::new();
    frame::write_ping(&mut b, true, ping[..8].try_into().expect("8 bytes"));
    frame::write_window_update(&mut b, 1, 1 << 20);
    r.send(&b);
    assert_eq!(r.goaway_frame(), Some((3, 0)));
    assert_eq!(r.body(1), SMALL.len(), "stream 1 finished after the reload");
    assert!(r.frame().is_none(), "closed once its streams ended");
    s.server.wait_reloads("ok", 1);
    // The new generation serves h2 as before.
    let mut r = Raw::connect(s.server.addr);
    let b = r.headers(1, true);
    r.send(&b);
    assert_eq!(r.body(1), SMALL.len());
    assert!(s.server.child.try_wait().expect("try_wait").is_none());
}

#[test]
fn a_window_opened_a_byte_at_a_time_is_cut_at_the_send_timeout() {
    let s = start(
        "[timeouts]\nsend = \"1s\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
        "",
    );
    let mut r = Raw::connect(s.server.addr);
    let mut b = Vec::new();
    frame::write_settings(
        &mut b,
        &[(vireo::http::h2::setting::INITIAL_WINDOW_SIZE, 0)],
    );
    b.extend(r.request(1, true, "/mid.bin", &[]));
    r.send(&b);
    // Every ~200 ms the window opens by one byte, and a new stream (stalled too: the
    // initial window is 0) opens: neither is progress of stream 1.
    let mut hpack = Encoder::new();
    let (code, took, data) = r.paced_until_goaway(Duration::from_millis(200), |b, n| {
        frame::write_window_update(b, 1, 1);
        b.extend(request_frame(
            &mut hpack,
            3 + 2 * n as u32,
            true,
            "/mid.bin",
            &[],
        ));
    });
    assert_eq!(code, Some(0), "GOAWAY NO_ERROR");
    assert!(took < Duration::from_secs(6), "cut after {took:?}");
    assert!(data > 0 && data < 100, "{data} bytes of DATA");
    let m = scrape(&s.server);
    assert!(
        metric(
            &m,
            "vireo_h2_flow_control_stalls_total",
            "window=\"stream\""
        ) >= 1,
        "{m}"
    );
    assert!(
        metric(&m, "vireo_timeouts_total", "kind=\"send\"") >= 1,
        "{m}"
    );
}

#[test]
fn control_frames_do_not_keep_an_idle_connection_open() {
    let s = start("[timeouts]\nkeepalive = \"1s\"\n", "");
    let mut r = Raw::connect(s.server.addr);
    let b = r.headers(1, true);
    r.send(&b);
    assert_eq!(r.body(1), SMALL.len());
    // Idle now: a PING and an empty SETTINGS every 100 ms (within their budgets).
    let (code, took, _) = r.paced_until_goaway(Duration::from_millis(100), |b, n| {
        frame::write_ping(b, false, n.to_be_bytes());
        frame::write_settings(b, &[]);
    });
    assert_eq!(code, Some(0), "GOAWAY NO_ERROR");
    assert!(took < Duration::from_secs(4), "closed after {took:?}");
}

#[test]
fn a_peer_that_never_reads_is_stopped_and_cut_at_the_send_timeout() {
    let s = start(
        "[timeouts]\nsend = \"4s\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
        "",
    );
    let rss_before = rss_kib(s.server.child.id());
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    // A tiny receive window: the server's output backs up at once.
    sock.set_recv_buffer_size(4096).expect("rcvbuf");
    sock.connect(&s.server.addr.into()).expect("connect");
    let mut c: TcpStream = sock.into();
    // Shorter than the send timeout: a write that blocks this long means the server
    // stopped reading while the connection was still open.
    c.set_write_timeout(Some(Duration::from_secs(1)))
        .expect("write timeout");
    let mut hpack = Encoder::new();
    let mut hello = PREFACE.to_vec();
    frame::write_settings(
        &mut hello,
        &[(vireo::http::h2::setting::INITIAL_WINDOW_SIZE, 0x7fff_ffff)],
    );
    frame::write_settings_ack(&mut hello);
    frame::write_window_update(&mut hello, 0, 0x7fff_ffff - 65_535);
    for i in 0..50u64 {
        frame::write_ping(&mut hello, false, i.to_be_bytes());
    }
    c.write_all(&hello).expect("hello");
    // Requests for 10 MiB, ~400 bytes each (so one read holds fewer than 256 of them),
    // never reading an answer.
    let pad = "p".repeat(380);
    let mut sent = 0usize;
    let mut id = 1u32;
    let mut blocked = None;
    let t = std::time::Instant::now();
    while sent < 64 << 20 && t.elapsed() < Duration::from_secs(20) {
        let mut b = Vec::new();
        for _ in 0..100 {
            let mut block = Vec::new();
            hpack.begin(&mut block);
            for (k, v) in [
                (":method", "GET"),
                (":scheme", "http"),
                (":authority", "t"),
                (":path", "/big.bin"),
                ("x-pad", pad.as_str()),
            ] {
                hpack.field(k.as_bytes(), v.as_bytes(), Indexing::Without, &mut block);
            }
            frame::write_headers(&mut b, id, &block, true, 16_384);
            id += 2;
        }
        match c.write_all(&b) {
            Ok(()) => sent += b.len(),
            Err(e) => {
                blocked = Some(e.kind());
                break;
            }
        }
    }
    // The writes blocked (the server stopped reading), or, on a slow machine where the
    // client took longer than the send timeout to fill the buffers, the server cut it;
    // either way after little more than the kernel's buffers (a server that reads on
    // takes all 64 MiB, or 20 s of it).
    use std::io::ErrorKind as K;
    assert!(
        matches!(
            blocked,
            Some(K::WouldBlock | K::TimedOut | K::ConnectionReset | K::BrokenPipe)
        ),
        "writes did not block: {blocked:?} after {sent} bytes"
    );
    assert!(
        sent < 16 << 20,
        "the server kept reading: {sent} bytes taken"
    );
    eprintln!("never-reader: {sent} bytes taken before the writes blocked");
    // Cut by the send timeout, not by any budget.
    let start_wait = std::time::Instant::now();
    loop {
        let m = scrape(&s.server);
        if metric(&m, "vireo_connections_active", "") == 0 {
            assert!(
                metric(&m, "vireo_timeouts_total", "kind=\"send\"") >= 1,
                "{m}"
            );
            assert_eq!(
                metric(&m, "vireo_h2_goaway_total", "code=\"ENHANCE_YOUR_CALM\""),
                0,
                "{m}"
            );
            break;
        }
        assert!(
            start_wait.elapsed() < Duration::from_secs(15),
            "still connected: {m}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let grown = rss_kib(s.server.child.id()).saturating_sub(rss_before);
    assert!(grown < 32 << 10, "RSS grew by {grown} KiB");
    drop(c);
}

#[test]
fn the_json_access_log_names_each_streams_id() {
    let mut s = start("[log]\naccess = \"access.json\"\nformat = \"json\"\n", "");
    let (rs, _) = get_all(
        &s,
        true,
        None,
        &[
            req("/small.txt", "https", &[]),
            req("/mid.bin", "https", &[]),
        ],
    );
    assert_eq!((rs[0].status, rs[1].status), (200, 200));
    s.server.signal(15);
    assert!(s.server.wait_exit(Duration::from_secs(20)).is_some());
    let log = std::fs::read_to_string(s.server.dir.path().join("access.json")).expect("log");
    // The client opens streams 1 and 3, in request order.
    let line = |uri: &str| {
        log.lines()
            .find(|l| l.contains(&format!("\"uri\":\"{uri}\"")))
            .unwrap_or_else(|| panic!("no line for {uri}: {log}"))
            .to_string()
    };
    assert!(line("/small.txt").contains("\"stream\":1,"), "{log}");
    assert!(line("/mid.bin").contains("\"stream\":3,"), "{log}");
    assert!(
        line("/mid.bin").contains("\"protocol\":\"HTTP/2.0\""),
        "{log}"
    );
}

/// Redirects, auth, the site chosen by `:authority` and a refused method, over h2: the
/// same `Site::respond` as HTTP/1.1.
#[test]
fn redirects_auth_sites_and_methods_over_h2() {
    let top = "[[redirects]]\nfrom = \"/old.txt\"\nto = \"/small.txt\"\n\
               [[auth]]\npath = \"/private/\"\nrealm = \"p\"\nhtpasswd = \"p.htpasswd\"\n\
               [[site]]\nhosts = [\"other.test\"]\nroot = \"other\"\n";
    let s = TestServer::start_tls(&format!("{top}\n[http2]\ncleartext = true\n"), "", |root| {
        files(root);
        let dir = root.parent().expect("parent");
        std::fs::create_dir_all(root.join("private")).expect("mkdir");
        std::fs::write(root.join("private/x.txt"), b"secret\n").expect("write");
        let line = format!("u:{}\n", bcrypt::hash("pw", 4).expect("hash"));
        std::fs::write(dir.join("p.htpasswd"), line).expect("write htpasswd");
        std::fs::create_dir_all(dir.join("other")).expect("mkdir");
        std::fs::write(dir.join("other/small.txt"), b"the other site\n").expect("write");
    });
    // "u:pw"
    let basic = "Basic dTpwdw==";
    let reqs = [
        req("/old.txt", "https", &[]),
        req("/private/x.txt", "https", &[]),
        req("/private/x.txt", "https", &[("authorization", basic)]),
        "{\"path\": \"/small.txt\", \"authority\": \"other.test\"}".to_string(),
        "{\"path\": \"/small.txt\", \"method\": \"DELETE\"}".to_string(),
        req("/small.txt", "https", &[]),
    ];
    let (rs, _) = get_all(&s, true, None, &reqs);
    assert_eq!(rs[0].status, 301);
    assert_eq!(rs[0].header("location"), Some("/small.txt"));
    assert_eq!(rs[1].status, 401);
    assert!(rs[1]
        .header("www-authenticate")
        .is_some_and(|v| v.contains("realm=\"p\"")));
    assert_eq!((rs[2].status, rs[2].len), (200, 7));
    assert_eq!(
        (rs[3].status, rs[3].len),
        (200, 15),
        "other.test's own file"
    );
    assert_eq!(rs[4].status, 405);
    assert!(rs[4].header("allow").is_some_and(|v| v.contains("GET")));
    assert_eq!((rs[5].status, rs[5].len), (200, SMALL.len()));
}
