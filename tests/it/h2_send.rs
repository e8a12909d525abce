//! HTTP/2 sending (issue 22): cold file windows parked per stream and read in off the
//! reactor, h2c DATA payloads with sendfile, RFC 9218 priorities. The client is
//! tests/h2send_client.py (Python's `h2` package), which also reports the order of the
//! DATA frames it received.

use crate::support::*;
use std::path::Path;
use std::process::Command;

const METRICS: &str = "[metrics]\nlisten = \"127.0.0.1:0\"\n";
const COLD: usize = 8 << 20;
const SMALL: &[u8] = b"small and warm\n";

#[derive(Debug, Default)]
struct Run {
    /// (status, body length) per request.
    resps: Vec<(u16, usize)>,
    /// Request indices in the order their streams ended.
    order: Vec<usize>,
    /// DATA frames received, as (request index, frames in a row).
    runs: Vec<(usize, usize)>,
}

/// Every request of `reqs` (path, `priority` header) at once on one connection, over TLS
/// or h2c.
fn fetch(s: &TlsServer, tls: bool, out: Option<&Path>, reqs: &[(&str, &str)]) -> Run {
    fetch_updated(s, tls, out, reqs, &[])
}

/// `fetch`, after a PRIORITY_UPDATE (request index, field value) per `updates`.
fn fetch_updated(
    s: &TlsServer,
    tls: bool,
    out: Option<&Path>,
    reqs: &[(&str, &str)],
    updates: &[(usize, &str)],
) -> Run {
    let (addr, ca) = match tls {
        true => (s.tls_addr, Some(&s.ca)),
        false => (s.server.addr, None),
    };
    let spec: Vec<String> = reqs
        .iter()
        .map(|(path, prio)| match *prio {
            "" => format!("{{\"path\": \"{path}\"}}"),
            p => format!("{{\"path\": \"{path}\", \"headers\": [[\"priority\", \"{p}\"]]}}"),
        })
        .collect();
    let mut cmd = Command::new("python3");
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/h2send_client.py"
    ));
    let pem;
    if let Some(ca) = ca {
        pem = tempfile::NamedTempFile::new().expect("ca file");
        std::fs::write(pem.path(), &ca.cert_pem).expect("write ca");
        cmd.arg("--tls").arg(pem.path());
    }
    if let Some(o) = out {
        cmd.arg("--out").arg(o);
    }
    let o = cmd
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .arg(format!(
            "{{\"reqs\": [{}], \"updates\": [{}]}}",
            spec.join(", "),
            updates
                .iter()
                .map(|(i, f)| format!("[{i}, \"{f}\"]"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .output()
        .expect("run python3 tests/h2send_client.py (pip install h2)");
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "h2send_client failed: {}\n{stdout}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut r = Run::default();
    for line in stdout.lines() {
        let mut w = line.split(' ');
        match w.next() {
            Some("resp") => {
                let kv = |k: &str| {
                    line.split(' ')
                        .find_map(|x| x.strip_prefix(k))
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0)
                };
                r.resps.push((kv("status=") as u16, kv("len=")));
            }
            Some("order") => r.order = w.filter_map(|i| i.parse().ok()).collect(),
            Some("runs") => {
                r.runs = w
                    .filter_map(|x| x.split_once(':'))
                    .filter_map(|(i, n)| Some((i.parse().ok()?, n.parse().ok()?)))
                    .collect()
            }
            _ => {}
        }
    }
    r
}

/// Drop `path`'s pages (`COLD` bytes) from the page cache (`evict_file`); false, with a
/// note, where the filesystem keeps them (a failure where CI says eviction works).
fn evicted(path: &Path) -> bool {
    if evict_file(path, COLD) {
        return true;
    }
    if std::env::var_os("VIREO_REQUIRE_EVICTION").is_some() {
        panic!("VIREO_REQUIRE_EVICTION is set but this filesystem keeps evicted pages");
    }
    eprintln!("SKIPPED: this filesystem keeps evicted pages; cold h2 test not run");
    false
}

fn files(root: &Path) {
    std::fs::write(root.join("cold.bin"), pattern(COLD, 31)).expect("write");
    std::fs::write(root.join("small.txt"), SMALL).expect("write");
    std::fs::write(root.join("a.bin"), pattern(4 << 20, 32)).expect("write");
    std::fs::write(root.join("b.bin"), pattern(4 << 20, 33)).expect("write");
    std::fs::write(root.join("big.bin"), pattern(10 << 20, 34)).expect("write");
}

/// `start_tls` with environment variables: `[tls]` on 127.0.0.2:0, h2c on the plain
/// listener, metrics.
fn start(env: &[(&str, &str)], extra: &str) -> TlsServer {
    let ca = TestCa::new("vireo h2 send CA");
    let config = format!(
        "{extra}\n{METRICS}[http2]\ncleartext = true\n\
         [tls]\nlisten = \"127.0.0.2:0\"\ncert = \"tls.crt\"\nkey = \"tls.key\"\n"
    );
    let server = TestServer::start_logged("warn", env, &config, |root| {
        let dir = root.parent().expect("tempdir");
        ca.write_leaf(dir, "tls", &["localhost", "127.0.0.1", "127.0.0.2"]);
        files(root);
    });
    let tls_addr = server.tls_listening(1)[0];
    let client = ca.client_config(&TlsOpts::default());
    TlsServer {
        server,
        tls_addr,
        ca,
        client,
    }
}

/// A cold window parks only its stream: behind a slow disk (each read-in waits 300 ms)
/// the small sibling asked for after it ends first, and the cold file, read in by I/O
/// threads (never sent by them: DATA is framed on the reactor), arrives byte for byte.
#[test]
fn a_cold_file_over_h2_parks_only_its_stream_and_is_read_in_off_the_reactor() {
    let s = start(&[("VIREO_FAULT_COLD_DELAY_MS", "300")], "workers = 1");
    let cold = s.dir.path().join("root/cold.bin");
    let want = pattern(COLD, 31);
    let mut reads = 0;
    for tls in [false, true] {
        if !evicted(&cold) {
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let r = fetch(
            &s,
            tls,
            Some(dir.path()),
            &[("/cold.bin", ""), ("/small.txt", "")],
        );
        assert_eq!(r.resps, [(200, COLD), (200, SMALL.len())], "tls={tls}");
        let got = std::fs::read(dir.path().join("0")).expect("body");
        assert!(got == want, "the cold file came back different (tls={tls})");
        assert_eq!(
            r.order,
            [1, 0],
            "the sibling waited for the cold stream (tls={tls})"
        );
        let m = scrape(&s);
        let now = metric(&m, "vireo_cold_reads_total", "");
        assert!(now > reads, "no cold window was read in (tls={tls}): {m}");
        reads = now;
        assert!(metric(&m, "vireo_cold_read_seconds_count", "") >= 1);
        assert_eq!(metric(&m, "vireo_cold_sent_bytes_total", ""), 0);
    }
}

/// Over cleartext the DATA payloads leave with sendfile (counted by the server), over
/// TLS through the buffer rustls encrypts from; both byte for byte.
#[test]
fn h2c_file_data_goes_out_with_sendfile_and_tls_with_pread() {
    let s = start(&[], "");
    let want = pattern(10 << 20, 34);
    let sent = || metric(&scrape(&s), "vireo_h2_sendfile_bytes_total", "");
    for tls in [false, true] {
        let before = sent();
        let dir = tempfile::tempdir().expect("tempdir");
        let r = fetch(
            &s,
            tls,
            Some(dir.path()),
            &[("/big.bin", ""), ("/small.txt", "")],
        );
        assert_eq!(r.resps, [(200, 10 << 20), (200, SMALL.len())], "tls={tls}");
        let got = std::fs::read(dir.path().join("0")).expect("body");
        assert!(got == want, "10 MiB body differs (tls={tls})");
        assert_eq!(std::fs::read(dir.path().join("1")).expect("body"), SMALL);
        let by_sendfile = sent() - before;
        match tls {
            false => assert_eq!(by_sendfile, 10 << 20, "h2c payload not sent with sendfile"),
            true => assert_eq!(by_sendfile, 0, "sendfile on a TLS socket"),
        }
    }
}

/// RFC 9218: the stream with the lower urgency gets the connection first, even when asked
/// for second; streams of one urgency go whole, one after another, in stream-id order,
/// unless they are incremental: then their frames interleave.
#[test]
fn urgency_orders_streams_and_incremental_ones_interleave() {
    let s = start(&[], "");
    let r = fetch(&s, false, None, &[("/a.bin", "u=5"), ("/b.bin", "u=1")]);
    assert_eq!(r.resps, [(200, 4 << 20), (200, 4 << 20)]);
    assert_eq!(r.order, [1, 0], "urgency 1 ends first");
    // All of b (256 frames of 16 KiB) came before the last of a's frames.
    let last_a = r
        .runs
        .iter()
        .rposition(|&(i, _)| i == 0)
        .expect("a's frames");
    let b_after: usize = r.runs[last_a..]
        .iter()
        .filter(|r| r.0 == 1)
        .map(|r| r.1)
        .sum();
    assert_eq!(
        b_after, 0,
        "b still sending after a's last frame: {:?}",
        r.runs
    );

    // Default priority (u=3, not incremental): a whole, then b.
    let r = fetch(&s, false, None, &[("/a.bin", ""), ("/b.bin", "")]);
    assert_eq!(r.order, [0, 1]);
    let starts_of_b = r.runs.iter().filter(|r| r.0 == 1).count();
    assert_eq!(starts_of_b, 1, "b interleaved with a: {:?}", r.runs);

    // Incremental: round robin, a frame each.
    let r = fetch(&s, false, None, &[("/a.bin", "u=3, i"), ("/b.bin", "i")]);
    assert_eq!(r.resps, [(200, 4 << 20), (200, 4 << 20)]);
    assert!(
        r.runs.len() > 100,
        "incremental streams did not interleave: {:?}",
        &r.runs[..r.runs.len().min(20)]
    );
}

/// A PRIORITY_UPDATE that arrives before its stream's HEADERS is kept and applied (RFC
/// 9218 7.1), over the `priority` header: b, asked for second with u=7, is moved to u=0.
#[test]
fn a_priority_update_before_the_stream_reprioritises_it() {
    let s = start(&[], "");
    let r = fetch_updated(
        &s,
        true,
        None,
        &[("/a.bin", "u=1"), ("/b.bin", "u=7")],
        &[(1, "u=0")],
    );
    assert_eq!(r.resps, [(200, 4 << 20), (200, 4 << 20)]);
    assert_eq!(r.order, [1, 0], "the update was not applied");
}

/// Cold windows of HTTP/2 streams count against the reactor's cap of cold jobs like any
/// connection's (issue 21's `MAX_COLD_JOBS`, 32): behind a slow disk, 40 streams asking
/// for one evicted file hand over at most 32 read-ins, the rest wait their turn. Then
/// all 40 are reset: their jobs are cancelled or ignored, and a new stream on the same
/// connection is answered.
#[test]
fn cold_streams_share_the_reactors_cap_and_reset_ones_are_not_waited_for() {
    use std::io::{Read, Write};
    use vireo::http::h2::frame::{self, kind, peek_header};
    use vireo::http::h2::hpack::{Encoder, Indexing};
    use vireo::http::h2::{ErrorCode, PREFACE};
    let s = start(&[("VIREO_FAULT_COLD_DELAY_MS", "1500")], "workers = 1");
    if !evicted(&s.dir.path().join("root/cold.bin")) {
        return;
    }
    let mut sock = std::net::TcpStream::connect(s.server.addr).expect("connect");
    sock.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let mut hpack = Encoder::new();
    let mut headers = |out: &mut Vec<u8>, id: u32, path: &str| {
        let mut block = Vec::new();
        hpack.begin(&mut block);
        for (k, v) in [
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", "t"),
            (":path", path),
        ] {
            hpack.field(k.as_bytes(), v.as_bytes(), Indexing::Without, &mut block);
        }
        frame::write_headers(out, id, &block, true, 16_384);
    };
    let mut out = PREFACE.to_vec();
    frame::write_settings(&mut out, &[]);
    frame::write_settings_ack(&mut out);
    let ids: Vec<u32> = (0..40).map(|i| 2 * i + 1).collect();
    for &id in &ids {
        headers(&mut out, id, "/cold.bin");
    }
    sock.write_all(&out).expect("send");
    let start = std::time::Instant::now();
    let handed = loop {
        let n = metric(&scrape(&s), "vireo_cold_reads_total", "");
        if n > 0 {
            break n;
        }
        assert!(start.elapsed() < TIMEOUT, "no cold window was handed over");
        std::thread::yield_now();
    };
    assert!(handed <= 32, "{handed} cold jobs handed over at once");
    let mut out = Vec::new();
    for &id in &ids {
        frame::write_rst_stream(&mut out, id, ErrorCode::Cancel);
    }
    headers(&mut out, 81, "/small.txt");
    sock.write_all(&out).expect("send");
    // Frames until stream 81 ends: its body is the small file.
    let (mut buf, mut body) = (Vec::new(), Vec::new());
    loop {
        if let Some(h) = peek_header(&buf).filter(|h| buf.len() >= h.frame_len()) {
            let payload = buf[frame::HEADER_LEN..h.frame_len()].to_vec();
            buf.drain(..h.frame_len());
            if h.stream == 81 && h.kind == kind::DATA {
                body.extend_from_slice(&payload);
                if h.flags & 0x1 != 0 {
                    break;
                }
            }
            assert!(
                !(h.kind == kind::DATA && h.stream < 81 && !payload.is_empty()),
                "DATA for reset stream {}",
                h.stream
            );
            continue;
        }
        let mut b = [0u8; 65536];
        let n = sock.read(&mut b).expect("read");
        assert!(n > 0, "closed before stream 81 ended");
        buf.extend_from_slice(&b[..n]);
    }
    assert_eq!(body, SMALL);
}
