use crate::support::*;

/// Send raw bytes on a fresh connection; return the response and whether the server closed.
fn raw(s: &TestServer, bytes: &[u8]) -> (Response, bool) {
    let mut c = s.connect();
    c.send(bytes);
    let r = c.read_response();
    let closed = c.is_closed();
    (r, closed)
}

#[test]
fn malformed_requests_get_400_and_close() {
    let s = TestServer::start("");
    for req in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /small.txt HTTP/1.1\r\n\r\n", // no Host
        b"GET /small.txt HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET /small.txt HTTP/1.1\r\nHost : t\r\n\r\n",
        b"GET /small.txt HTTP/1.1\r\nHost: t\r\nX: a\r\n b\r\n\r\n",
        b"GET /small.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"GET /small.txt HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
        b"POST /small.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ] {
        let (r, closed) = raw(&s, req);
        assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(req));
        assert_eq!(r.header("connection"), Some("close"));
        assert!(closed, "not closed after {:?}", String::from_utf8_lossy(req));
        assert_eq!(r.body.len().to_string(), r.header("content-length").unwrap_or(""));
    }
}

#[test]
fn limits_give_414_431_413() {
    let s = TestServer::start(
        "[limits]\nmax_request_line = 1024\nmax_header_bytes = 4096\nmax_body_bytes = 100\n",
    );
    let long = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(2000));
    assert_eq!(raw(&s, long.as_bytes()).0.status, 414);
    let big = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "b".repeat(5000)
    );
    assert_eq!(raw(&s, big.as_bytes()).0.status, 431);
    let (r, closed) = raw(
        &s,
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 101\r\n\r\n",
    );
    assert_eq!(r.status, 413);
    assert!(closed);
}

#[test]
fn unknown_transfer_coding_is_501_and_bad_version_505() {
    let s = TestServer::start("");
    let (r, closed) = raw(
        &s,
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    );
    assert_eq!(r.status, 501);
    assert!(closed);
    let (r, _) = raw(&s, b"GET / HTTP/2.0\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 505);
}

#[test]
fn a_later_http_1_minor_is_served_as_1_1() {
    // RFC 9112 2.3: HTTP/1.2 is processed as the highest 1.x we implement, keep-alive included.
    let s = TestServer::start("");
    let mut c = s.connect();
    c.send(b"GET /small.txt HTTP/1.2\r\nHost: t\r\n\r\nGET /small.txt HTTP/1.9\r\nHost: t\r\n\r\n");
    for _ in 0..2 {
        let r = c.read_response();
        assert_eq!((r.status, &r.body[..]), (200, &b"hello, vireo\n"[..]));
        assert_eq!(r.header("connection"), None);
    }
}

/// Bodies that must be refused, with the status that says why.
const BROKEN_CHUNKED: &[(&str, &str, u16)] = &[
    ("bad size line", "z\r\nx\r\n0\r\n\r\n", 400),
    ("size overflow", "fffffffffffffffff1\r\nx\r\n0\r\n\r\n", 400),
    ("data overrun", "3\r\nabcdef\r\n0\r\n\r\n", 400),
    ("over max_body_bytes", "65\r\n", 413),
];

/// Everything the server sends on a fresh connection for `parts` sent as separate
/// writes (no delay: how they are read is up to the kernel), until it closes.
fn exchange(s: &TestServer, parts: &[Vec<u8>]) -> String {
    let mut c = s.connect();
    c.stream.set_nodelay(true).expect("nodelay");
    for p in parts {
        // The server may already have answered the error and closed its side.
        let _ = std::io::Write::write_all(&mut c.stream, p);
    }
    String::from_utf8_lossy(&c.read_to_close()).into_owned()
}

#[test]
fn a_malformed_chunked_body_gets_one_error_and_a_close_never_a_200_first() {
    let s = TestServer::start("[limits]\nmax_body_bytes = 100\n");
    for method in ["GET", "POST"] {
        for (what, body, status) in BROKEN_CHUNKED {
            let head = format!(
                "{method} /small.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            );
            let next = "GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n";
            let whole = format!("{head}{body}{next}");
            // One write; then the body split across two writes after a valid first chunk.
            let one = vec![whole.into_bytes()];
            let two = vec![
                format!("{head}5\r\nhello\r\n").into_bytes(),
                format!("{body}{next}").into_bytes(),
            ];
            for (how, parts) in [("one write", one), ("two writes", two)] {
                let text = exchange(&s, &parts);
                assert!(
                    text.starts_with(&format!("HTTP/1.1 {status} ")),
                    "{method}, {what}, {how}: {text}"
                );
                assert_eq!(
                    text.matches("HTTP/1.1 ").count(),
                    1,
                    "{method}, {what}, {how}: {text}"
                );
                assert!(text.contains("Connection: close\r\n"), "{text}");
            }
        }
    }
}

#[test]
fn a_valid_chunked_body_then_a_pipelined_get_are_both_answered_in_order() {
    let s = TestServer::start("");
    let req = b"GET /index.html HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
                5;x=y\r\nhello\r\n0\r\nTrailer: 1\r\n\r\n\
                GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n";
    for at in [req.len(), 70, 80, 95] {
        let mut c = s.connect();
        c.stream.set_nodelay(true).expect("nodelay");
        c.send(&req[..at]);
        c.send(&req[at..]);
        assert_eq!(c.read_response().body, b"<h1>home</h1>\n", "split at {at}");
        assert_eq!(c.read_response().body, b"hello, vireo\n", "split at {at}");
    }
}

#[test]
fn expect_100_continue_answers_only_after_the_body() {
    use std::io::{ErrorKind, Read, Write};
    let s = TestServer::start("");
    let mut c = s.connect();
    c.send(
        b"GET /small.txt HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    );
    let mut got = Vec::new();
    while find(&got, b"\r\n\r\n").is_none() {
        let mut b = [0u8; 1024];
        let n = c.stream.read(&mut b).expect("read");
        assert!(n > 0, "closed");
        got.extend_from_slice(&b[..n]);
    }
    // Only the interim response: the final one waits for the body.
    assert_eq!(got, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.stream.set_nonblocking(true).expect("nonblocking");
    let mut b = [0u8; 1];
    assert!(matches!(c.stream.peek(&mut b), Err(e) if e.kind() == ErrorKind::WouldBlock));
    c.stream.set_nonblocking(false).expect("blocking");
    c.stream.write_all(b"hello").expect("body");
    let r = c.read_response();
    assert_eq!((r.status, &r.body[..]), (200, &b"hello, vireo\n"[..]));
    // A Content-Length over the limit is refused on the head alone, without a 100.
    let s = TestServer::start("[limits]\nmax_body_bytes = 10\n");
    let mut c = s.connect();
    c.send(b"POST /small.txt HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 413);
    assert!(c.is_closed());
}
