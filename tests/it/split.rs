//! Segmentation independence: every request is sent split in two at every byte position
//! (TCP_NODELAY, two write calls) and must get the same responses as when sent whole.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::*;

/// Each case ends with a request carrying `Connection: close` (or an error that closes),
/// so the full answer is everything up to EOF.
const CASES: &[(&str, &[u8], &[u16])] = &[
    (
        "single GET",
        b"GET /small.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        &[200],
    ),
    (
        "HEAD",
        b"HEAD /index.html HTTP/1.1\r\nHost: t\r\nUser-Agent: split/1\r\nConnection: close\r\n\r\n",
        &[200],
    ),
    (
        "pipelined pair",
        b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /dir/ HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        &[200, 200],
    ),
    (
        "Content-Length body",
        b"GET /small.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world\
          GET /with%20space.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        &[200, 200],
    ),
    (
        "chunked body",
        b"GET /small.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
          5;ext=\"a b\"\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n\
          GET /missing HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        &[200, 404],
    ),
    (
        "100-continue, then the answer after the body",
        b"GET /small.txt HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello\
          GET /dir/ HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        &[100, 200, 200],
    ),
    (
        "400 bad chunk size after a good chunk, never a 200 first",
        b"GET /small.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\nz\r\n\
          GET /missing HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        &[400],
    ),
    (
        "400 duplicate Content-Length",
        b"GET /small.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        &[400],
    ),
    (
        "400 obs-fold after a good request",
        b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /small.txt HTTP/1.1\r\nHost: t\r\nX: a\r\n b\r\n\r\n",
        &[200, 400],
    ),
];

/// Send `a` then `b` as separate writes and read until the server closes.
fn exchange(addr: SocketAddr, a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    s.set_write_timeout(Some(TIMEOUT)).expect("timeout");
    s.write_all(a).expect("first half");
    if !b.is_empty() {
        // Not needed for correctness; makes it likely the server reads the halves apart.
        std::thread::sleep(Duration::from_micros(300));
        // The server may already have answered and closed (an early 400); the write
        // then fails or is drained by the lingering close. Either way read on.
        let _ = s.write_all(b);
    }
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read until close");
    out
}

/// Responses without their Date header (the only part that may differ between runs).
fn normalized(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .split_inclusive("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("date:"))
        .collect()
}

fn statuses(text: &str) -> Vec<u16> {
    text.split("HTTP/1.1 ")
        .skip(1)
        .map(|s| s[..3].parse().expect("status code"))
        .collect()
}

#[test]
fn any_segmentation_gives_the_same_responses() {
    let s = TestServer::start("");
    let addr = s.addr;
    let expected: Vec<String> = CASES
        .iter()
        .map(|(name, req, want)| {
            let whole = normalized(&exchange(addr, req, b""));
            assert_eq!(&statuses(&whole), want, "{name}: {whole}");
            whole
        })
        .collect();

    // Every (case, split point) pair, handed out to a few worker threads.
    let jobs: Vec<(usize, usize)> = CASES
        .iter()
        .enumerate()
        .flat_map(|(c, (_, req, _))| (1..req.len()).map(move |at| (c, at)))
        .collect();
    let next = AtomicUsize::new(0);
    let failures: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..6)
            .map(|_| {
                scope.spawn(|| {
                    let mut bad = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&(c, at)) = jobs.get(i) else { break };
                        let (name, req, _) = CASES[c];
                        let got = normalized(&exchange(addr, &req[..at], &req[at..]));
                        if got != expected[c] {
                            bad.push(format!(
                                "{name}, split at {at}:\n--- whole\n{}\n--- split\n{got}",
                                expected[c]
                            ));
                        }
                    }
                    bad
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("worker"))
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} splits differ; first:\n{}",
        failures.len(),
        jobs.len(),
        failures[0]
    );
}
