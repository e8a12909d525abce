//! HTTP/2 clients through the reverse proxy (issues 22 and 23): each stream relayed to an
//! HTTP/1.1 upstream by its own exchange, siblings never waiting for it. The client is
//! tests/h2proxy_client.py (Python `h2`); upstreams are small std servers started here,
//! recording what they received.

use crate::proxy_relay::{gunzip, text};
use crate::support::*;
use crate::upstream_support::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The upstream every test uses: `/api/small`, `/api/big` (10 MiB), `/api/chunked`,
/// `/api/slow` (300 ms), `/api/echo` (the body's length), `/api/die` (cut mid-body),
/// `/api/stall` (head and a part of a long body, then nothing), `/api/hang` (nothing).
fn app() -> Upstream {
    serve(|g, s| {
        let len = |b: &[u8]| {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/x-test\r\nContent-Length: {}\r\n\r\n",
                b.len()
            )
        };
        match g.path() {
            "/api/small" => s
                .write_all(format!("{}small", len(b"small")).as_bytes())
                .is_ok(),
            "/api/big" => {
                let b = pattern(10 << 20, 7);
                s.write_all(len(&b).as_bytes()).is_ok() && s.write_all(&b).is_ok()
            }
            "/api/chunked" => {
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\nKeep-Alive: timeout=30\r\n\r\n5;x=y\r\nhello\r\n",
                );
                let _ = s.flush();
                std::thread::sleep(Duration::from_millis(20));
                let big = pattern(100_000, 3);
                let _ = s.write_all(format!("{:x}\r\n", big.len()).as_bytes());
                let _ = s.write_all(&big);
                s.write_all(b"\r\n0\r\nX-Trailer: t\r\n\r\n").is_ok()
            }
            "/api/slow" => {
                std::thread::sleep(Duration::from_millis(300));
                s.write_all(format!("{}slow!", len(b"slow!")).as_bytes())
                    .is_ok()
            }
            "/api/echo" => {
                let n = g.body.len().to_string();
                s.write_all(format!("{}{n}", len(n.as_bytes())).as_bytes())
                    .is_ok()
            }
            "/api/die" => {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n");
                let _ = s.write_all(&pattern(1000, 1));
                false
            }
            "/api/stall" => {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n");
                let _ = s.write_all(&pattern(1000, 1));
                // Held until the proxy closes it (counted as an EOF by the caller).
                let mut b = [0u8; 64];
                while matches!(s.read(&mut b), Ok(n) if n > 0) {}
                true // the loop's next read sees the EOF
            }
            "/api/hang" => {
                let mut b = [0u8; 64];
                while matches!(s.read(&mut b), Ok(n) if n > 0) {}
                true
            }
            _ => s
                .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                .is_ok(),
        }
    })
}

const STATIC: &[u8] = b"a static file beside the proxy\n";

/// TLS (h2 by ALPN) and plain h2c, `/api/` proxied to `u`, `/dead/` to a refused port.
fn start(u: &Upstream, extra: &str) -> TlsServer {
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    TestServer::start_tls(
        &format!(
            "[[upstream]]\nname = \"app\"\nservers = [\"{}\"]\n{extra}\n\
             [[upstream]]\nname = \"dead\"\nservers = [\"{dead}\"]\nretries = 0\n\
             [[proxy]]\npath = \"/api/\"\nupstream = \"app\"\n\
             [[proxy]]\npath = \"/dead/\"\nupstream = \"dead\"\n\
             [http2]\ncleartext = true\n",
            u.addr
        ),
        "",
        |root| {
            std::fs::write(root.join("static.txt"), STATIC).unwrap();
            for i in 0..20 {
                std::fs::write(
                    root.join(format!("s{i}.bin")),
                    pattern(50_000 + i, i as u64),
                )
                .unwrap();
            }
        },
    )
}

/// Runs tests/h2proxy_client.py against `addr` (TLS when `tls`).
fn client(addr: SocketAddr, tls: Option<&TlsServer>, out: Option<&Path>, spec: &str) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/h2proxy_client.py");
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
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .arg(spec)
        .output()
        .expect("run python3 tests/h2proxy_client.py (pip install h2)");
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "h2proxy_client failed: {}\n{stdout}",
        String::from_utf8_lossy(&o.stderr)
    );
    stdout
}

/// `resp I status=S len=N ms=T` lines: index -> (status, len, ms).
fn responses(out: &str) -> std::collections::BTreeMap<usize, (String, usize, u64)> {
    out.lines()
        .filter_map(|l| l.strip_prefix("resp "))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let v = |k: &str| {
                f.iter()
                    .find_map(|x| x.strip_prefix(k))
                    .unwrap_or("")
                    .to_string()
            };
            (
                f[0].parse().unwrap(),
                (
                    v("status="),
                    v("len=").parse().unwrap_or(0),
                    v("ms=").parse().unwrap_or(0),
                ),
            )
        })
        .collect()
}

fn order(out: &str) -> Vec<usize> {
    out.lines()
        .find_map(|l| l.strip_prefix("order "))
        .map(|l| l.split(' ').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_default()
}

fn get(path: &str) -> String {
    format!("{{\"path\": \"{path}\"}}")
}

fn spec(streams: &[String]) -> String {
    format!("{{\"streams\": [{}]}}", streams.join(","))
}

#[test]
fn small_10_mib_and_chunked_upstream_bodies_arrive_exact_over_h2_and_h2c() {
    let u = app();
    let s = start(&u, "");
    for tls in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let (addr, t) = match tls {
            true => (s.tls_addr, Some(&s)),
            false => (s.server.addr, None),
        };
        let paths = ["/api/small", "/api/big", "/api/chunked", "/static.txt"];
        let streams: Vec<String> = paths.iter().map(|p| get(p)).collect();
        let out = client(addr, t, Some(dir.path()), &spec(&streams));
        let r = responses(&out);
        for i in 0..4 {
            assert_eq!(r[&i].0, "200", "{}: {out}", paths[i]);
        }
        let body = |i: usize| std::fs::read(dir.path().join(i.to_string())).unwrap();
        assert_eq!(body(0), b"small");
        assert!(
            body(1) == pattern(10 << 20, 7),
            "10 MiB body differs (tls {tls})"
        );
        let mut chunked = b"hello".to_vec();
        chunked.extend_from_slice(&pattern(100_000, 3));
        assert!(body(2) == chunked, "chunked body differs (tls {tls})");
        assert_eq!(body(3), STATIC);
        // No HTTP/1.1 framing or hop-by-hop fields reach an HTTP/2 client.
        for l in out.lines().filter(|l| l.starts_with("hdr ")) {
            let name = l.split(' ').nth(2).unwrap_or("");
            for bad in ["connection:", "keep-alive:", "transfer-encoding:"] {
                assert_ne!(name, bad, "{out}");
            }
        }
        assert!(out.contains("hdr 0 content-length: 5"), "{out}");
        assert!(out.contains("hdr 0 via: 1.1 vireo"), "{out}");
        assert!(
            out.contains("hdr 0 content-type: application/x-test"),
            "{out}"
        );
        assert!(out.contains("alive"), "{out}");
    }
    // The request as the upstream saw it: re-serialised, Host from :authority.
    let g = u.got();
    let small = g.iter().find(|g| g.path() == "/api/small").unwrap();
    assert!(
        small.head.starts_with("GET /api/small HTTP/1.1\r\n"),
        "{}",
        small.head
    );
    assert_eq!(small.header("host"), ["localhost"]);
    assert_eq!(small.header("x-forwarded-for").len(), 1);
}

#[test]
fn a_1_mib_post_arrives_exact_at_the_upstream_with_and_without_content_length() {
    let u = app();
    let s = start(&u, "");
    let n = 1 << 20;
    let streams = [
        format!("{{\"path\": \"/api/echo\", \"method\": \"POST\", \"body_len\": {n}}}"),
        format!("{{\"path\": \"/api/echo\", \"method\": \"POST\", \"body_len\": {n}, \"content_length\": false}}"),
        get("/static.txt"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let out = client(s.tls_addr, Some(&s), Some(dir.path()), &spec(&streams));
    let r = responses(&out);
    for i in 0..3 {
        assert_eq!(r[&i].0, "200", "{out}");
    }
    let want: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
    let g = u.got();
    assert_eq!(g.len(), 2, "{g:?}");
    let with = g
        .iter()
        .find(|g| !g.header("content-length").is_empty())
        .unwrap();
    assert_eq!(with.header("content-length"), [n.to_string()]);
    assert!(with.body == want, "body with content-length differs");
    let without = g
        .iter()
        .find(|g| g.header("content-length").is_empty())
        .unwrap();
    assert_eq!(without.header("transfer-encoding"), ["chunked"]);
    assert!(dechunk(&without.body).0 == want, "chunked body differs");
    // The upstream's answer (the length it read) came back.
    let echoed = std::fs::read(dir.path().join("0")).unwrap();
    assert_eq!(echoed, n.to_string().as_bytes());
}

#[test]
fn a_proxied_body_over_max_body_bytes_is_413() {
    let u = app();
    let s = TestServer::start_with(
        &format!(
            "[[proxy]]\npath = \"/api/\"\npass = \"http://{}\"\nmax_body_bytes = 1000\n[http2]\ncleartext = true\n",
            u.addr
        ),
        |_| {},
    );
    let streams = [
        "{\"path\": \"/api/echo\", \"method\": \"POST\", \"body_len\": 5000, \"content_length\": false}".to_string(),
        "{\"path\": \"/api/echo\", \"method\": \"POST\", \"body_len\": 5000}".to_string(),
        "{\"path\": \"/api/echo\", \"method\": \"POST\", \"body_len\": 500, \"content_length\": false}".to_string(),
    ];
    let out = client(s.addr, None, None, &spec(&streams));
    let r = responses(&out);
    assert_eq!(r[&0].0, "413", "{out}");
    assert_eq!(r[&1].0, "413", "{out}");
    assert_eq!(r[&2].0, "200", "{out}");
}

#[test]
fn twenty_slow_proxied_streams_never_delay_static_siblings() {
    let u = app();
    let s = start(&u, "");
    let mut streams: Vec<String> = (0..20).map(|_| get("/api/slow")).collect();
    streams.extend((0..20).map(|i| get(&format!("/s{i}.bin"))));
    let t = Instant::now();
    let out = client(s.server.addr, None, None, &spec(&streams));
    let took = t.elapsed();
    let r = responses(&out);
    assert_eq!(r.len(), 40, "{out}");
    for (i, (status, len, _)) in &r {
        assert_eq!(status, "200", "{i}: {out}");
        if *i < 20 {
            assert_eq!(*len, 5);
        } else {
            assert_eq!(*len, 50_000 + i - 20);
        }
    }
    // Every static stream ended before any slow one.
    let o = order(&out);
    let first_slow = o.iter().position(|&i| i < 20).unwrap();
    assert!(o[..first_slow].len() == 20, "order {o:?}");
    // The slow ones waited side by side, each on its own upstream connection.
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert!(u.conns.load(Ordering::SeqCst) >= 20);
}

#[test]
fn a_refused_upstream_is_a_502_for_that_stream_only() {
    let u = app();
    let s = start(&u, "");
    let streams = [get("/dead/x"), get("/api/small"), get("/static.txt")];
    let out = client(s.tls_addr, Some(&s), None, &spec(&streams));
    let r = responses(&out);
    assert_eq!(r[&0].0, "502", "{out}");
    assert_eq!(r[&1].0, "200", "{out}");
    assert_eq!(r[&2].0, "200", "{out}");
    assert!(out.contains("alive"), "{out}");
}

#[test]
fn an_upstream_that_never_answers_is_a_504_at_read_timeout() {
    let u = app();
    let s = start(&u, "read_timeout = \"300ms\"\nretries = 0\nmax_fails = 0");
    let streams = [get("/api/hang"), get("/api/small")];
    let out = client(s.server.addr, None, None, &spec(&streams));
    let r = responses(&out);
    assert_eq!(r[&0].0, "504", "{out}");
    assert_eq!(r[&1].0, "200", "{out}");
    assert!(r[&0].2 >= 250, "504 too early: {out}");
    assert_eq!(order(&out), [1, 0], "{out}");
}

#[test]
fn an_upstream_dying_mid_body_resets_that_stream_and_a_sibling_completes() {
    let u = app();
    let s = start(&u, "max_fails = 0");
    let streams = [get("/api/die"), get("/api/slow"), get("/static.txt")];
    let out = client(s.server.addr, None, None, &spec(&streams));
    assert!(
        out.contains("reset 0 code=2"),
        "INTERNAL_ERROR expected: {out}"
    );
    let r = responses(&out);
    assert!(!r.contains_key(&0), "{out}");
    assert_eq!(r[&1].0, "200", "{out}");
    assert_eq!(r[&2].0, "200", "{out}");
    assert!(out.contains("alive"), "{out}");
}

#[test]
fn a_client_reset_closes_its_upstream_connection() {
    let u = app();
    let s = start(&u, "");
    let streams = [
        "{\"path\": \"/api/stall\", \"reset\": \"headers\"}".to_string(),
        get("/api/slow"),
    ];
    let out = client(s.server.addr, None, None, &spec(&streams));
    assert!(out.contains("cancelled 0"), "{out}");
    assert_eq!(responses(&out)[&1].0, "200", "{out}");
    // The stalled exchange's connection was closed, not kept (nor pooled dirty).
    assert!(
        eventually(Duration::from_secs(5), || u.eofs.load(Ordering::SeqCst)
            >= 1),
        "the upstream never saw its connection close"
    );
}

#[test]
fn upstream_connections_are_reused_across_streams() {
    let u = app();
    let s = start(&u, "");
    let streams: Vec<String> = (0..10).map(|_| get("/api/small")).collect();
    let out = client(
        s.server.addr,
        None,
        None,
        &format!(
            "{{\"streams\": [{}], \"sequential\": true}}",
            streams.join(",")
        ),
    );
    let r = responses(&out);
    assert_eq!(r.len(), 10, "{out}");
    assert!(r.values().all(|v| v.0 == "200"), "{out}");
    assert_eq!(u.got().len(), 10);
    assert_eq!(
        u.conns.load(Ordering::SeqCst),
        1,
        "one upstream connection for all"
    );
}

#[test]
fn each_proxied_stream_is_logged_and_counted_with_its_upstream() {
    let u = app();
    let log = tempfile::NamedTempFile::new().unwrap();
    let s = TestServer::start_with(
        &format!(
            "[metrics]\nlisten = \"127.0.0.1:0\"\n[log]\naccess = \"{}\"\nformat = \"json\"\n\
             [[upstream]]\nname = \"app\"\nservers = [\"{}\"]\n[[proxy]]\npath = \"/api/\"\n\
             upstream = \"app\"\n[http2]\ncleartext = true\n",
            log.path().display(),
            u.addr
        ),
        |_| {},
    );
    let streams: Vec<String> = (0..3).map(|_| get("/api/small")).collect();
    let out = client(s.addr, None, None, &spec(&streams));
    assert_eq!(responses(&out).len(), 3, "{out}");
    let m = scrape(&s);
    let label = format!("server=\"{}\"", u.addr);
    assert_eq!(
        metric(&m, "vireo_upstream_requests_total", &label),
        3,
        "{m}"
    );
    assert_eq!(
        metric(&m, "vireo_upstream_responses_total", "class=\"2xx\""),
        3
    );
    let ok = eventually(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(log.path()).unwrap();
        text.lines()
            .filter(|l| l.contains("\"upstream_status\":200") && l.contains("HTTP/2.0"))
            .filter(|l| l.contains(&format!("\"upstream_addr\":\"{}\"", u.addr)))
            .count()
            == 3
    });
    assert!(ok, "log: {}", std::fs::read_to_string(log.path()).unwrap());
}

#[test]
fn an_h2_upload_is_held_by_flow_control_while_the_upstream_reads_nothing() {
    // The upstream takes the head, then reads nothing for 2 s: the client's window must
    // open only as far as the upstream (and the buffers on the way) take bytes.
    const LEN: usize = 32 << 20;
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(128 * 1024).unwrap();
    sock.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    sock.listen(16).unwrap();
    let listener: TcpListener = sock.into();
    let up = listener.local_addr().unwrap();
    let queued = std::sync::Arc::new(std::sync::Mutex::new(None));
    let q = queued.clone();
    accept_each(listener, move |mut s| {
        let mut buf = Vec::new();
        let Some(head) = read_head(&mut s, &mut buf) else {
            return;
        };
        std::thread::sleep(Duration::from_secs(2));
        // What went past vireo while nothing is read: queued in the kernel between it
        // and here, and what the head's read took along.
        let (mine, theirs) = (up.port(), s.peer_addr().unwrap().port());
        *q.lock().unwrap() =
            Some(tcp_queues(theirs, mine).0 + tcp_queues(mine, theirs).1 + buf.len() as u64);
        let len: usize = header(&head, "content-length").unwrap().parse().unwrap();
        let want: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        while buf.len() < len && fill(&mut s, &mut buf) {}
        let answer = match buf[..] == want[..] {
            true => format!("ok {}", buf.len()),
            false => format!("bad, {} bytes", buf.len()),
        };
        let _ = s.write_all(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{answer}",
                answer.len()
            )
            .as_bytes(),
        );
    });
    let s = TestServer::start_with(
        &format!(
            "workers = 1\n[limits]\nmax_body_bytes = {}\n[[proxy]]\npath = \"/api/\"\npass = \"http://{up}\"\nmax_body_bytes = {}\n[http2]\ncleartext = true\n",
            LEN * 2,
            LEN * 2
        ),
        |_| {},
    );
    let hwm_before = vm_hwm_kib(s.child.id());
    let dir = tempfile::tempdir().unwrap();
    let spec = format!(
        "{{\"streams\": [{{\"path\": \"/api/up\", \"method\": \"PUT\", \"body_len\": {LEN}}}], \"stall_ms\": 500}}"
    );
    let out = client(s.addr, None, Some(dir.path()), &spec);
    let r = responses(&out);
    assert_eq!(r[&0].0, "200", "{out}");
    assert_eq!(
        std::fs::read(dir.path().join("0")).unwrap(),
        format!("ok {LEN}").as_bytes(),
        "the upstream got other bytes"
    );
    let sent: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("stalled 0 sent="))
        .unwrap_or_else(|| panic!("the upload never waited for its window: {out}"))
        .parse()
        .unwrap();
    let kernel = queued.lock().unwrap().expect("queues measured");
    // The client may have sent: the stream's window (64 KiB; a WINDOW_UPDATE only once
    // less than half of it is left and less than half of it waits unfed, so at most
    // 1.5 windows wait in vireo) plus what the exchange took (its 64 KiB) and passed on.
    let bound = 65_535 * 3 / 2 + 64 * 1024 + kernel;
    eprintln!(
        "h2 upload: {sent} bytes sent while the upstream read nothing; {kernel} past vireo; \
         {} in vireo; bound {bound}",
        sent.saturating_sub(kernel)
    );
    assert!(sent <= bound, "{sent} bytes sent, bound {bound}");
    let hwm_after = vm_hwm_kib(s.child.id());
    assert!(
        hwm_after < hwm_before + 16 * 1024,
        "peak RSS grew from {hwm_before} KiB to {hwm_after} KiB"
    );
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// The value of response header `name` of stream `i` (the client prints `hdr I name: v`).
fn hdr(out: &str, i: usize, name: &str) -> Option<String> {
    let prefix = format!("hdr {i} {name}: ");
    out.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(str::to_string)
}

/// A GET that accepts `coding`.
fn get_accepting(path: &str, coding: &str) -> String {
    format!("{{\"path\": \"{path}\", \"headers\": [[\"accept-encoding\", \"{coding}\"]]}}")
}

/// An upstream of compressible answers: `/api/text/N` (text/html, N bytes, a strong
/// ETag), `/api/textc/N` (the same chunked, in 16 KiB chunks), `/api/gz` (text already
/// gzipped by the upstream), `/api/slowtext` (1 MiB, a 500 ms pause, 1 MiB, chunked).
fn text_app() -> Upstream {
    serve(|g, s| {
        let path = g.path().to_string();
        if let Some(n) = path.strip_prefix("/api/text/") {
            let b = text(n.parse().unwrap());
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nETag: \"v1\"\r\nContent-Length: {}\r\n\r\n",
                b.len()
            );
            s.write_all(head.as_bytes()).is_ok() && s.write_all(&b).is_ok()
        } else if let Some(n) = path.strip_prefix("/api/textc/") {
            let b = text(n.parse().unwrap());
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n",
            );
            for c in b.chunks(16 << 10) {
                let _ = s.write_all(format!("{:x}\r\n", c.len()).as_bytes());
                let _ = s.write_all(c);
                let _ = s.write_all(b"\r\n");
            }
            s.write_all(b"0\r\n\r\n").is_ok()
        } else if path == "/api/gz" {
            let b = gzip(&text(20_000));
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
                b.len()
            );
            s.write_all(head.as_bytes()).is_ok() && s.write_all(&b).is_ok()
        } else if path == "/api/slowtext" {
            let b = text(1 << 20);
            let chunk = |s: &mut std::net::TcpStream| {
                let _ = s.write_all(format!("{:x}\r\n", b.len()).as_bytes());
                let _ = s.write_all(&b);
                s.write_all(b"\r\n").is_ok()
            };
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n",
            );
            chunk(s);
            let _ = s.flush();
            std::thread::sleep(Duration::from_millis(500));
            chunk(s);
            s.write_all(b"0\r\n\r\n").is_ok()
        } else {
            s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                .is_ok()
        }
    })
}

const METRICS: &str = "[metrics]\nlisten = \"127.0.0.1:0\"\n";

#[test]
fn compressible_upstream_responses_are_gzipped_on_the_pool_over_h2_and_decode_exactly() {
    let u = text_app();
    let s = start(&u, METRICS);
    let jobs = || {
        metric(
            &scrape(&s),
            "vireo_compression_jobs_total",
            "state=\"completed\"",
        )
    };
    let paths = [
        "/api/text/300".to_string(),
        "/api/text/5000".to_string(),
        "/api/text/100000".to_string(),
        format!("/api/text/{}", 3 << 20),
        "/api/textc/200000".to_string(),
    ];
    let want = |i: usize| {
        let n = paths[i].rsplit('/').next().unwrap().parse().unwrap();
        text(n)
    };
    for tls in [true, false] {
        let before = jobs();
        let dir = tempfile::tempdir().unwrap();
        let (addr, t) = match tls {
            true => (s.tls_addr, Some(&s)),
            false => (s.server.addr, None),
        };
        let mut streams: Vec<String> = paths.iter().map(|p| get_accepting(p, "gzip")).collect();
        streams.push(get_accepting("/static.txt", "identity"));
        let out = client(addr, t, Some(dir.path()), &spec(&streams));
        let r = responses(&out);
        for i in 0..paths.len() {
            let p = &paths[i];
            assert_eq!(r[&i].0, "200", "{p}: {out}");
            assert_eq!(
                hdr(&out, i, "content-encoding").as_deref(),
                Some("gzip"),
                "{p}: {out}"
            );
            assert_eq!(hdr(&out, i, "content-length"), None, "{p}: {out}");
            assert_eq!(
                hdr(&out, i, "vary").as_deref(),
                Some("Accept-Encoding"),
                "{p}: {out}"
            );
            let body = std::fs::read(dir.path().join(i.to_string())).unwrap();
            let plain = want(i);
            assert!(
                gunzip(&body) == plain,
                "{p}: the decoded body differs (tls {tls})"
            );
            if plain.len() >= 100_000 {
                assert!(body.len() < plain.len() / 10, "{p}: {} bytes", body.len());
            }
        }
        assert_eq!(hdr(&out, 0, "etag").as_deref(), Some("W/\"v1\""), "{out}");
        let last = paths.len();
        assert_eq!(r[&last].0, "200", "{out}");
        assert_eq!(
            std::fs::read(dir.path().join(last.to_string())).unwrap(),
            STATIC
        );
        assert!(out.contains("alive"), "{out}");
        // On the pool: its compression jobs (one per chunk at least) ran them.
        let after = jobs();
        assert!(
            after >= before + paths.len() as u64,
            "pool jobs {before} -> {after}"
        );
    }
}

#[test]
fn an_encoded_upstream_response_passes_untouched_over_h2_beside_a_compressed_one() {
    let u = text_app();
    let s = start(&u, "");
    let dir = tempfile::tempdir().unwrap();
    let streams = [
        get_accepting("/api/gz", "gzip"),
        get_accepting("/api/text/5000", "gzip"),
        get("/api/text/5000"),
    ];
    let out = client(s.server.addr, None, Some(dir.path()), &spec(&streams));
    let r = responses(&out);
    let body = |i: usize| std::fs::read(dir.path().join(i.to_string())).unwrap();
    for i in 0..3 {
        assert_eq!(r[&i].0, "200", "{out}");
    }
    // The upstream's own coding: its bytes and length exactly, no second coding.
    let upstream_gz = gzip(&text(20_000));
    assert!(body(0) == upstream_gz, "the encoded body was touched");
    assert_eq!(
        hdr(&out, 0, "content-length"),
        Some(upstream_gz.len().to_string()),
        "{out}"
    );
    assert_eq!(out.matches("hdr 0 content-encoding:").count(), 1, "{out}");
    assert_eq!(hdr(&out, 0, "vary"), None, "{out}");
    // The plain sibling is compressed by vireo for the client that accepts it...
    assert_eq!(
        hdr(&out, 1, "content-encoding").as_deref(),
        Some("gzip"),
        "{out}"
    );
    assert!(gunzip(&body(1)) == text(5000));
    // ...and sent as it is, with its length, to one that does not.
    assert_eq!(hdr(&out, 2, "content-encoding"), None, "{out}");
    assert_eq!(
        hdr(&out, 2, "content-length").as_deref(),
        Some("5000"),
        "{out}"
    );
    assert_eq!(
        hdr(&out, 2, "vary").as_deref(),
        Some("Accept-Encoding"),
        "{out}"
    );
    assert!(body(2) == text(5000));
}

#[test]
fn a_compressed_event_stream_over_h2_delivers_its_first_event_at_once() {
    // The second event waits until the client, having decoded the first, asks `/api/go`.
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let go_tx = Mutex::new(go_tx);
    let go_rx = Mutex::new(go_rx);
    let waited = Arc::new(Mutex::new(None::<bool>));
    let w = waited.clone();
    let u = serve(move |g, s| {
        if g.path() == "/api/go" {
            let _ = go_tx.lock().unwrap().send(());
            return s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\ngo")
                .is_ok();
        }
        let _ = s.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n11\r\ndata: first one\n\n\r\n",
        );
        let _ = s.flush();
        let go = go_rx.lock().unwrap().recv_timeout(Duration::from_secs(10));
        *w.lock().unwrap() = Some(go.is_ok());
        s.write_all(b"12\r\ndata: second one\n\n\r\n0\r\n\r\n")
            .is_ok()
    });
    let s = start(&u, "");
    let dir = tempfile::tempdir().unwrap();
    let stream = "{\"path\": \"/api/events\", \"headers\": [[\"accept-encoding\", \"gzip\"]], \
                  \"until\": \"data: first one\\n\\n\", \"then\": {\"path\": \"/api/go\"}}";
    let out = client(
        s.tls_addr,
        Some(&s),
        Some(dir.path()),
        &spec(&[stream.to_string()]),
    );
    assert_eq!(
        hdr(&out, 0, "content-encoding").as_deref(),
        Some("gzip"),
        "{out}"
    );
    assert!(
        out.contains("seen 0 "),
        "the first event was never decoded: {out}"
    );
    let r = responses(&out);
    assert_eq!(r[&0].0, "200", "{out}");
    assert_eq!(r[&1].0, "200", "{out}");
    // The client decoded the first event while the upstream still held the second.
    assert_eq!(*waited.lock().unwrap(), Some(true), "{out}");
    let body = std::fs::read(dir.path().join("0")).unwrap();
    assert_eq!(gunzip(&body), b"data: first one\n\ndata: second one\n\n");
}

#[test]
fn a_slow_compressed_stream_does_not_delay_its_static_siblings() {
    let u = text_app();
    let s = start(&u, "");
    let dir = tempfile::tempdir().unwrap();
    let mut streams = vec![get_accepting("/api/slowtext", "gzip")];
    streams.extend((0..10).map(|i| get(&format!("/s{i}.bin"))));
    let out = client(s.server.addr, None, Some(dir.path()), &spec(&streams));
    let r = responses(&out);
    assert_eq!(r.len(), 11, "{out}");
    for i in 1..=10 {
        assert_eq!(r[&i].0, "200", "{out}");
        assert_eq!(r[&i].1, 50_000 + i - 1, "{out}");
    }
    assert_eq!(r[&0].0, "200", "{out}");
    assert_eq!(
        hdr(&out, 0, "content-encoding").as_deref(),
        Some("gzip"),
        "{out}"
    );
    let mut want = text(1 << 20);
    want.extend_from_slice(&text(1 << 20));
    let body = std::fs::read(dir.path().join("0")).unwrap();
    assert!(gunzip(&body) == want, "the decoded body differs");
    // Every static sibling ended while the compressed stream was still going.
    assert_eq!(order(&out).last(), Some(&0), "{out}");
    let slow = r[&0].2;
    assert!((1..=10).all(|i| r[&i].2 < slow), "{out}");
}

#[test]
fn a_proxied_post_behind_auth_is_relayed_over_h2_after_the_password_check() {
    use crate::auth::{basic, proxy_behind_auth};
    let u = app();
    let s = proxy_behind_auth(u.addr, "[http2]\ncleartext = true\n");
    let post = |n: usize, cl: bool, auth: Option<String>| {
        let h = auth.map_or(String::new(), |a| format!("[\"authorization\", \"{a}\"]"));
        format!(
            "{{\"path\": \"/api/echo\", \"method\": \"POST\", \"body_len\": {n}, \
             \"content_length\": {cl}, \"headers\": [{h}]}}"
        )
    };
    let big = 1 << 20;
    // Each user once: every check is a miss, so each stream parks for its bcrypt job.
    let streams = [
        post(big, true, Some(basic("alice", "a1"))),
        post(100_000, false, Some(basic("bob", "b2"))),
        post(1000, true, None),
        post(1000, true, Some(basic("carol", "wrong"))),
        format!(
            "{{\"path\": \"/api/small\", \"headers\": [[\"authorization\", \"{}\"]]}}",
            basic("dave", "d4")
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let out = client(s.addr, None, Some(dir.path()), &spec(&streams));
    let r = responses(&out);
    let body = |i: usize| std::fs::read(dir.path().join(i.to_string())).unwrap();
    assert_eq!(r[&0].0, "200", "{out}");
    assert_eq!(body(0), big.to_string().as_bytes(), "{out}");
    assert_eq!(r[&1].0, "200", "{out}");
    assert_eq!(r[&2].0, "401", "{out}");
    assert_eq!(r[&3].0, "401", "{out}");
    assert_eq!(r[&4].0, "200", "{out}");
    assert_eq!(body(4), b"small");
    assert!(out.contains("alive"), "{out}");
    // Only the authorised requests reached the upstream, their bodies whole.
    let g = u.got();
    assert_eq!(g.len(), 3, "{g:?}");
    let sent = |n: usize| (0..n).map(|i| (i % 251) as u8).collect::<Vec<u8>>();
    let with = g
        .iter()
        .find(|g| g.body.len() == big)
        .expect("the 1 MiB body");
    assert!(with.body == sent(big), "the 1 MiB body differs");
    let chunked = g
        .iter()
        .find(|g| g.header("transfer-encoding") == ["chunked"])
        .expect("the chunked body");
    assert!(
        dechunk(&chunked.body).0 == sent(100_000),
        "the chunked body differs"
    );
    // Again with the verdicts cached (no pool job): the same answers.
    let out = client(s.addr, None, None, &spec(&streams[..3]));
    let r = responses(&out);
    assert_eq!(
        (&r[&0].0[..], &r[&1].0[..], &r[&2].0[..]),
        ("200", "200", "401"),
        "{out}"
    );
    assert_eq!(u.got().len(), 5);
}
