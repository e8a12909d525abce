//! The upstream servers of the proxy tests (issue 23): small HTTP/1.1 servers on std
//! threads (127.0.0.1:0 or a Unix socket), one thread per connection, recording exactly
//! what they received (raw heads, raw bodies with their chunk framing).

use crate::support::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as the upstream read it: the raw head and the raw body bytes (chunked
/// bodies with their framing).
#[derive(Clone, Debug)]
pub struct Got {
    pub head: String,
    pub body: Vec<u8>,
}

impl Got {
    pub fn header(&self, name: &str) -> Vec<String> {
        self.head
            .split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }

    pub fn path(&self) -> &str {
        self.head.split(' ').nth(1).unwrap_or("")
    }
}

/// A started upstream: its address, what it received, connections accepted, and
/// connections that ended with the proxy's EOF (or a read error) between requests.
pub struct Upstream {
    pub addr: SocketAddr,
    pub got: Arc<Mutex<Vec<Got>>>,
    pub conns: Arc<AtomicUsize>,
    pub eofs: Arc<AtomicUsize>,
}

impl Upstream {
    pub fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

/// One more read into `buf`; false at EOF or on an error (a read timeout included).
pub fn fill(s: &mut impl Read, buf: &mut Vec<u8>) -> bool {
    let mut b = [0u8; 65536];
    match s.read(&mut b) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&b[..n]);
            true
        }
    }
}

/// Reads up to the blank line: the raw head, drained from `buf` (what follows it stays).
pub fn read_head(s: &mut impl Read, buf: &mut Vec<u8>) -> Option<String> {
    let end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        if !fill(s, buf) {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    buf.drain(..end);
    Some(head)
}

/// One whole request: the head, then a Content-Length or chunked body (raw).
pub fn read_request(s: &mut impl Read, buf: &mut Vec<u8>) -> Option<Got> {
    let head = read_head(s, buf)?;
    let g = Got {
        head,
        body: Vec::new(),
    };
    let len: Option<usize> = g
        .header("content-length")
        .first()
        .and_then(|v| v.parse().ok());
    let chunked = g
        .header("transfer-encoding")
        .iter()
        .any(|v| v.contains("chunked"));
    let mut body = Vec::new();
    if let Some(n) = len {
        while buf.len() < n {
            if !fill(s, buf) {
                return None;
            }
        }
        body = buf.drain(..n).collect();
    } else if chunked {
        loop {
            if let Some(i) = find(buf, b"\r\n0\r\n\r\n")
                .map(|i| i + 7)
                .or_else(|| buf.starts_with(b"0\r\n\r\n").then_some(5))
            {
                body = buf.drain(..i).collect();
                break;
            }
            if !fill(s, buf) {
                return None;
            }
        }
    }
    Some(Got { body, ..g })
}

/// Accepts on `listener`, one thread per connection running `conn`; returns the count of
/// connections accepted.
pub fn accept_each(
    listener: TcpListener,
    conn: impl Fn(TcpStream) + Send + Sync + 'static,
) -> Arc<AtomicUsize> {
    let conns = Arc::new(AtomicUsize::new(0));
    let c = conns.clone();
    let conn = Arc::new(conn);
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(s) = s else { continue };
            c.fetch_add(1, Ordering::SeqCst);
            let conn = conn.clone();
            std::thread::spawn(move || conn(s));
        }
    });
    conns
}

/// Request after request on one connection: each recorded, then given to `handler`, which
/// writes the answer and says whether to read another. Returns at EOF (counted) or when
/// the handler says stop.
fn serve_conn<S: Read>(
    mut s: S,
    got: &Mutex<Vec<Got>>,
    eofs: &AtomicUsize,
    handler: impl Fn(&Got, &mut S) -> bool,
) {
    let mut buf = Vec::new();
    loop {
        let Some(req) = read_request(&mut s, &mut buf) else {
            eofs.fetch_add(1, Ordering::SeqCst);
            return;
        };
        got.lock().unwrap().push(req.clone());
        if !handler(&req, &mut s) {
            return;
        }
    }
}

/// An upstream on `listener` whose handler writes each answer to the socket itself.
pub fn serve_on(
    listener: TcpListener,
    handler: impl Fn(&Got, &mut TcpStream) -> bool + Send + Sync + 'static,
) -> Upstream {
    let addr = listener.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let eofs = Arc::new(AtomicUsize::new(0));
    let (g, e) = (got.clone(), eofs.clone());
    let conns = accept_each(listener, move |s| serve_conn(s, &g, &e, &handler));
    Upstream {
        addr,
        got,
        conns,
        eofs,
    }
}

/// An upstream on 127.0.0.1:0 whose handler writes each answer to the socket itself.
pub fn serve(handler: impl Fn(&Got, &mut TcpStream) -> bool + Send + Sync + 'static) -> Upstream {
    serve_on(TcpListener::bind("127.0.0.1:0").unwrap(), handler)
}

/// An upstream answering with canned bytes: the handler returns (bytes to write, whether
/// to keep the connection).
pub fn upstream(handler: impl Fn(&Got) -> (Vec<u8>, bool) + Send + Sync + 'static) -> Upstream {
    serve(move |g, s| {
        let (resp, keep) = handler(g);
        s.write_all(&resp).is_ok() && keep
    })
}

/// The same on a Unix socket at `path`: returns what it received.
pub fn upstream_unix(
    path: &std::path::Path,
    handler: impl Fn(&Got) -> (Vec<u8>, bool) + Send + Sync + 'static,
) -> Arc<Mutex<Vec<Got>>> {
    let l = std::os::unix::net::UnixListener::bind(path).unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let handler = Arc::new(handler);
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let (g, h) = (g.clone(), handler.clone());
            std::thread::spawn(move || {
                serve_conn(s, &g, &AtomicUsize::new(0), |req, s| {
                    let (resp, keep) = h(req);
                    s.write_all(&resp).is_ok() && keep
                })
            });
        }
    });
    got
}

/// A 200 with `body` and Content-Length, keeping the connection.
pub fn ok(body: &str) -> (Vec<u8>, bool) {
    (
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
        true,
    )
}

/// Decode a chunked body at the front of `raw`; returns (data, bytes used). Panics on
/// bad or incomplete framing.
pub fn dechunk(raw: &[u8]) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let line_end = find(&raw[at..], b"\r\n").expect("chunk size line") + at;
        let size = usize::from_str_radix(
            std::str::from_utf8(&raw[at..line_end])
                .unwrap()
                .split(';')
                .next()
                .unwrap(),
            16,
        )
        .unwrap();
        at = line_end + 2;
        if size == 0 {
            let end = find(&raw[at..], b"\r\n").expect("trailer end") + at + 2;
            return (out, end);
        }
        out.extend_from_slice(&raw[at..at + size]);
        assert_eq!(&raw[at + size..at + size + 2], b"\r\n", "chunk end");
        at += size + 2;
    }
}

/// A header's value in a raw head.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// Peak resident memory of a process.
pub fn vm_hwm_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Waits (bounded) for `f` to hold; its last answer.
pub fn eventually(within: Duration, f: impl Fn() -> bool) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

/// Bytes queued in the kernel for the TCP socket `local` -> `remote` (loopback ports):
/// (send queue, receive queue), from /proc/net/tcp.
pub fn tcp_queues(local: u16, remote: u16) -> (u64, u64) {
    let t = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let port = |f: &str| u16::from_str_radix(f.rsplit(':').next().unwrap(), 16).unwrap();
    for l in t.lines().skip(1) {
        let f: Vec<&str> = l.split_whitespace().collect();
        if port(f[1]) == local && port(f[2]) == remote {
            let (tx, rx) = f[4].split_once(':').unwrap();
            return (
                u64::from_str_radix(tx, 16).unwrap(),
                u64::from_str_radix(rx, 16).unwrap(),
            );
        }
    }
    panic!("no socket {local} -> {remote} in /proc/net/tcp");
}
