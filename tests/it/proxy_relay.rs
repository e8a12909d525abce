//! The proxy's response relay (issue 23): streaming compression of proxied responses on
//! the pool, de-chunking for HTTP/1.0 clients, and the splice(2) relay on plain sockets.
//! Upstreams are the shared recording servers of `upstream_support`.

use crate::support::*;
use crate::upstream_support::{header, serve};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// An upstream answering every request with the bytes `answer` writes for its head,
/// keeping the connection.
fn upstream(answer: impl Fn(&str, &mut TcpStream) + Send + Sync + 'static) -> SocketAddr {
    serve(move |g, s| {
        answer(&g.head, s);
        true
    })
    .addr
}

fn proxy(addr: SocketAddr, extra: &str) -> TestServer {
    TestServer::start_with(
        &format!(
            "[metrics]\nlisten = \"127.0.0.1:0\"\n{extra}\n[[upstream]]\nname = \"app\"\nservers = [\"{addr}\"]\n[[proxy]]\npath = \"/api/\"\nupstream = \"app\"\n"
        ),
        |_| {},
    )
}

fn client(s: &TestServer) -> TcpStream {
    let c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c
}

/// One response: its head, and its body as the client gets it (de-chunked when chunked,
/// by Content-Length, else to the close). `buf` keeps what follows.
fn read_response(c: &mut TcpStream, buf: &mut Vec<u8>) -> (String, Vec<u8>) {
    let fill = |c: &mut TcpStream, buf: &mut Vec<u8>| {
        let mut b = [0u8; 65536];
        let n = c.read(&mut b).expect("read");
        buf.extend_from_slice(&b[..n]);
        n
    };
    let end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        assert!(fill(c, buf) > 0, "closed before the head");
    };
    let head = String::from_utf8(buf[..end].to_vec()).unwrap();
    buf.drain(..end);
    let h = |name: &str| header(&head, name);
    if h("transfer-encoding") == Some("chunked") {
        let mut body = Vec::new();
        loop {
            let line = loop {
                if let Some(i) = find(buf, b"\r\n") {
                    break i;
                }
                assert!(fill(c, buf) > 0, "closed mid-body");
            };
            let size = usize::from_str_radix(std::str::from_utf8(&buf[..line]).unwrap(), 16)
                .expect("chunk size");
            while buf.len() < line + 2 + size + 2 {
                assert!(fill(c, buf) > 0, "closed mid-chunk");
            }
            body.extend_from_slice(&buf[line + 2..line + 2 + size]);
            assert_eq!(&buf[line + 2 + size..line + 4 + size], b"\r\n");
            buf.drain(..line + 4 + size);
            if size == 0 {
                return (head, body);
            }
        }
    }
    if let Some(n) = h("content-length") {
        let n: usize = n.parse().unwrap();
        while buf.len() < n {
            assert!(fill(c, buf) > 0, "closed mid-body");
        }
        let body = buf.drain(..n).collect();
        return (head, body);
    }
    while fill(c, buf) > 0 {}
    (head, std::mem::take(buf))
}

pub(crate) fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .expect("gzip");
    out
}

pub(crate) fn text(len: usize) -> Vec<u8> {
    let words = b"proxied text compresses well when it repeats itself, ";
    words.iter().copied().cycle().take(len).collect()
}

#[test]
fn a_compressible_upstream_response_is_gzipped_on_the_pool_and_decodes_exactly() {
    let body = text(1 << 20);
    let b = body.clone();
    let up = upstream(move |_, s| {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nETag: \"v1\"\r\nAccept-Ranges: bytes\r\nVary: Cookie\r\n\r\n",
            b.len()
        );
        let _ = s.write_all(head.as_bytes());
        let _ = s.write_all(&b);
    });
    let s = proxy(up, "");
    let before = metric(
        &scrape(&s),
        "vireo_compression_jobs_total",
        "state=\"completed\"",
    );
    let mut c = client(&s);
    c.write_all(b"GET /api/page HTTP/1.1\r\nHost: h\r\nAccept-Encoding: gzip\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let (head, got) = read_response(&mut c, &mut buf);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(header(&head, "content-encoding"), Some("gzip"), "{head}");
    assert_eq!(header(&head, "content-length"), None, "{head}");
    assert_eq!(header(&head, "accept-ranges"), None, "{head}");
    assert_eq!(header(&head, "vary"), Some("Cookie, Accept-Encoding"));
    assert_eq!(header(&head, "etag"), Some("W/\"v1\""), "weakened");
    assert!(got.len() < body.len() / 10, "{} bytes", got.len());
    assert!(gunzip(&got) == body, "the decoded body differs");
    // Off the reactor: the pool's compression jobs ran it (one or more per chunk).
    let after = metric(
        &scrape(&s),
        "vireo_compression_jobs_total",
        "state=\"completed\"",
    );
    assert!(
        after > before,
        "no pool job compressed it ({before} -> {after})"
    );
    // The connection is still good for the next request.
    c.write_all(b"GET /api/again HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    let (head, again) = read_response(&mut c, &mut buf);
    assert_eq!(header(&head, "content-encoding"), None, "{head}");
    assert_eq!(header(&head, "vary"), Some("Cookie, Accept-Encoding"));
    assert!(again == body);
}

#[test]
fn a_compressed_event_stream_delivers_its_first_event_at_once() {
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let go_rx = std::sync::Mutex::new(go_rx);
    let up = upstream(move |_, s| {
        let _ = s.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        let _ = s.write_all(b"11\r\ndata: first one\n\n\r\n");
        // The second event only after the client saw the first.
        let _ = go_rx.lock().unwrap().recv_timeout(Duration::from_secs(10));
        let _ = s.write_all(b"12\r\ndata: second one\n\n\r\n0\r\n\r\n");
    });
    let s = proxy(up, "[compression]\ntypes = [\"text/*\"]\n");
    let mut c = client(&s);
    let t = Instant::now();
    c.write_all(b"GET /api/events HTTP/1.1\r\nHost: h\r\nAccept-Encoding: gzip\r\n\r\n")
        .unwrap();
    // Read until the gzip stream so far decodes to the first event.
    let mut raw = Vec::new();
    let mut dec = flate2::write::GzDecoder::new(Vec::new());
    let mut fed = 0;
    loop {
        let mut b = [0u8; 4096];
        let n = c.read(&mut b).expect("the first event never came");
        assert!(n > 0, "closed");
        raw.extend_from_slice(&b[..n]);
        let Some(end) = find(&raw, b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&raw[..end]).to_string();
        assert_eq!(header(&head, "content-encoding"), Some("gzip"), "{head}");
        // De-chunk what is complete and feed the decoder the new bytes.
        let mut at = end + 4;
        let mut data = Vec::new();
        while let Some(i) = find(&raw[at..], b"\r\n") {
            let size =
                usize::from_str_radix(std::str::from_utf8(&raw[at..at + i]).unwrap(), 16).unwrap();
            if raw.len() < at + i + 2 + size + 2 {
                break;
            }
            data.extend_from_slice(&raw[at + i + 2..at + i + 2 + size]);
            at += i + 4 + size;
        }
        dec.write_all(&data[fed..]).unwrap();
        fed = data.len();
        dec.flush().unwrap();
        if dec.get_ref().as_slice() == b"data: first one\n\n" {
            break;
        }
    }
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    go_tx.send(()).unwrap();
}

#[test]
fn encoded_and_incompressible_upstream_responses_pass_untouched() {
    let up = upstream(|head, s| {
        let r: &[u8] = if head.contains("/api/gz") {
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\nContent-Length: 10\r\n\r\n0123456789"
        } else if head.contains("/api/png") {
            b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n\r\n"
        } else {
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: no-transform\r\nContent-Length: 1000\r\n\r\n"
        };
        let _ = s.write_all(r);
        if !head.contains("/api/gz") {
            let _ = s.write_all(&[b'a'; 1000]);
        }
    });
    let s = proxy(up, "");
    let mut c = client(&s);
    let mut buf = Vec::new();
    for (path, len) in [("/api/gz", 10), ("/api/png", 1000), ("/api/raw", 1000)] {
        c.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: h\r\nAccept-Encoding: gzip, br\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
        let (head, body) = read_response(&mut c, &mut buf);
        assert_eq!(
            header(&head, "content-length"),
            Some(len.to_string().as_str()),
            "{path}: {head}"
        );
        assert_eq!(body.len(), len, "{path}");
        let enc = header(&head, "content-encoding");
        assert_eq!(enc, (path == "/api/gz").then_some("gzip"), "{path}: {head}");
    }
}

#[test]
fn a_route_with_compress_off_and_an_http10_client_get_identity() {
    let up = upstream(|_, s| {
        let _ = s.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n",
        );
        let _ = s.write_all(&[b'x'; 0x400]);
        let _ = s.write_all(b"\r\n0\r\n\r\n");
    });
    let s = TestServer::start_with(
        &format!("[[proxy]]\npath = \"/off/\"\npass = \"http://{up}\"\ncompress = false\n[[proxy]]\npath = \"/on/\"\npass = \"http://{up}\"\n"),
        |_| {},
    );
    let mut c = client(&s);
    let mut buf = Vec::new();
    c.write_all(b"GET /off/x HTTP/1.1\r\nHost: h\r\nAccept-Encoding: gzip\r\n\r\n")
        .unwrap();
    let (head, body) = read_response(&mut c, &mut buf);
    assert_eq!(header(&head, "content-encoding"), None, "{head}");
    assert_eq!(header(&head, "vary"), None, "{head}");
    assert_eq!(body, vec![b'x'; 0x400]);
    // HTTP/1.0 (no compression for it by default): a chunked upstream body is de-chunked
    // and delimited by the close.
    let mut old = client(&s);
    old.write_all(b"GET /on/x HTTP/1.0\r\nAccept-Encoding: gzip\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    old.read_to_end(&mut raw).unwrap();
    let end = find(&raw, b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(header(&head, "transfer-encoding"), None, "{head}");
    assert_eq!(header(&head, "connection"), Some("close"), "{head}");
    assert_eq!(&raw[end..], vec![b'x'; 0x400].as_slice());
}
