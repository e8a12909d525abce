use crate::support::*;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// Read until EOF or error; returns the bytes and when the close was seen.
fn read_until_closed(c: &mut Client) -> (Vec<u8>, Instant) {
    let mut all = Vec::new();
    let mut b = [0u8; 65536];
    loop {
        match c.stream.read(&mut b) {
            Ok(0) | Err(_) => return (all, Instant::now()),
            Ok(n) => all.extend_from_slice(&b[..n]),
        }
    }
}

#[test]
fn slowloris_is_cut_at_the_header_deadline_with_408() {
    let s = TestServer::start("[timeouts]\nheader = \"1s\"\n");
    let mut c = s.connect();
    let start = Instant::now();
    c.send(b"GET /small.txt HTTP/1.1\r\n");
    // Trickle a header line every 300 ms: each byte must not reset the deadline.
    let mut closed_early = false;
    for i in 0..10 {
        std::thread::sleep(Duration::from_millis(300));
        if c.stream
            .write_all(format!("X-{i}: y\r\n").as_bytes())
            .is_err()
        {
            closed_early = true;
            break;
        }
    }
    let (bytes, at) = read_until_closed(&mut c);
    let text = String::from_utf8_lossy(&bytes);
    let elapsed = at - start;
    assert!(
        text.starts_with("HTTP/1.1 408 "),
        "{text} (write failed: {closed_early})"
    );
    assert!(
        elapsed >= Duration::from_millis(900),
        "cut too early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(3500),
        "cut too late: {elapsed:?}"
    );
}

#[test]
fn a_silent_connection_is_closed_quietly_at_the_header_deadline() {
    let s = TestServer::start("[timeouts]\nheader = \"500ms\"\n");
    let mut c = s.connect();
    let start = Instant::now();
    let (bytes, at) = read_until_closed(&mut c);
    assert!(bytes.is_empty(), "{:?}", String::from_utf8_lossy(&bytes));
    assert!(at - start >= Duration::from_millis(400));
    assert!(at - start < Duration::from_secs(3));
}

#[test]
fn idle_keep_alive_connections_are_closed() {
    let s = TestServer::start("[timeouts]\nkeepalive = \"700ms\"\nheader = \"30s\"\n");
    let mut c = s.connect();
    assert_eq!(c.get("/small.txt").status, 200);
    let start = Instant::now();
    let (bytes, at) = read_until_closed(&mut c);
    assert!(bytes.is_empty());
    let idle = at - start;
    assert!(idle >= Duration::from_millis(600), "closed after {idle:?}");
    assert!(idle < Duration::from_secs(4), "closed after {idle:?}");
}

#[test]
fn a_client_that_does_not_read_is_closed_at_the_send_deadline() {
    let big = pattern(64 << 20, 3);
    let s = TestServer::start_with(
        "[timeouts]\nsend = \"1s\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
        move |root| {
            std::fs::write(root.join("big.bin"), &big).expect("write");
        },
    );
    let mut c = s.connect();
    c.stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    c.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    // Read nothing until the server reports the send timeout.
    let start = Instant::now();
    while metric(&scrape(&s), "vireo_timeouts_total", "kind=\"send\"") == 0 {
        assert!(start.elapsed() < Duration::from_secs(20), "no send timeout");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "cut too early"
    );
    let (bytes, _) = read_until_closed(&mut c);
    assert!(
        bytes.len() < (64 << 20),
        "a stalled reader got the whole body ({} bytes)",
        bytes.len()
    );
}

#[test]
fn a_normal_client_is_served_while_500_connections_stall() {
    let s = TestServer::start("");
    let mut stalled = Vec::new();
    for i in 0..500 {
        let mut c = s.connect();
        if i % 2 == 0 {
            c.send(b"GET /small.txt HTTP/1.1\r\nHost: t\r\n"); // never finished
        }
        stalled.push(c);
    }
    let start = Instant::now();
    let r = get(s.addr, "/small.txt");
    assert_eq!(r.status, 200);
    assert!(start.elapsed() < Duration::from_secs(2));
    drop(stalled);
}

#[test]
fn a_slow_but_steady_reader_is_not_cut_by_the_send_timeout() {
    let big = pattern(8 << 20, 4);
    let b2 = big.clone();
    let s = TestServer::start_with("[timeouts]\nsend = \"1s\"\n", move |root| {
        std::fs::write(root.join("big.bin"), &b2).expect("write");
    });
    let mut c = s.connect();
    c.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    // Drain in small sips with pauses: the whole transfer takes well over `send`, but no
    // single stall lasts that long.
    let mut got = Vec::new();
    let mut buf = vec![0u8; 32 << 10];
    let start = Instant::now();
    loop {
        let n = c.stream.read(&mut buf).expect("read");
        assert!(n > 0, "closed after {} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
        if got.len() >= big.len() + 100 {
            if let Some(i) = find(&got, b"\r\n\r\n") {
                if got.len() - i - 4 == big.len() {
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(8));
        assert!(start.elapsed() < Duration::from_secs(60));
    }
    assert!(
        start.elapsed() > Duration::from_millis(1200),
        "test did not outlast the timeout"
    );
    let i = find(&got, b"\r\n\r\n").expect("head") + 4;
    assert!(got[i..] == big[..]);
}

#[test]
fn a_request_body_that_stops_is_cut_at_the_body_deadline() {
    let s = TestServer::start("[timeouts]\nbody = \"600ms\"\nheader = \"30s\"\n");
    let mut c = s.connect();
    let start = Instant::now();
    c.send(b"GET /small.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789");
    // No answer before the body is complete; the stalled body gets 408 at the deadline.
    let (bytes, at) = read_until_closed(&mut c);
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{text}");
    let waited = at - start;
    assert!(waited >= Duration::from_millis(450), "cut after {waited:?}");
    assert!(waited < Duration::from_secs(4), "cut after {waited:?}");
}

#[test]
fn a_keep_alive_request_gets_a_full_header_timeout_from_its_first_byte() {
    let s = TestServer::start("[timeouts]\nheader = \"800ms\"\nkeepalive = \"30s\"\n");
    let mut c = s.connect();
    assert_eq!(c.get("/small.txt").status, 200);
    // Idle longer than the header timeout: only keep-alive applies while idle.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(c.get("/small.txt").status, 200);
}
