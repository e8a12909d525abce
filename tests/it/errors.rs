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
fn a_broken_body_after_the_answer_closes_without_a_second_response() {
    // The 405 answers the POST; its chunked body then turns out malformed (or too large).
    // One request, one response: the connection just closes.
    let s = TestServer::start("[limits]\nmax_body_bytes = 100\n");
    for body in ["z\r\nx\r\n0\r\n\r\n", "65\r\n"] {
        let mut c = s.connect();
        c.send(
            format!(
                "POST /small.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{body}\
                 GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n"
            )
            .as_bytes(),
        );
        let all = c.read_to_close();
        let text = String::from_utf8_lossy(&all);
        assert!(text.starts_with("HTTP/1.1 405 "), "{text}");
        assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{body:?}: {text}");
    }
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
