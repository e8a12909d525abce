use crate::support::*;

#[test]
fn keep_alive_reuses_the_connection() {
    let s = TestServer::start("");
    let mut c = s.connect();
    for _ in 0..20 {
        let r = c.get("/small.txt");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("connection"), None);
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let big = pattern(300_000, 7);
    let b2 = big.clone();
    let s = TestServer::start_with("", move |root| {
        default_files(root);
        std::fs::write(root.join("big.bin"), &b2).expect("write");
    });
    let mut c = s.connect();
    c.send(
        b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n\
          HEAD /small.txt HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /nope HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /dir/ HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(c.read_response().body, b"hello, vireo\n");
    assert!(c.read_response().body == big);
    let h = c.read_response_to(true);
    assert_eq!((h.status, h.header("content-length")), (200, Some("13")));
    assert_eq!(c.read_response().status, 404);
    assert_eq!(c.read_response().body, b"dir index\n");
}

#[test]
fn a_request_pipelined_behind_a_long_response_is_answered_without_more_input() {
    // The first response outlasts one turn (2 MiB budget) and fills the socket; the second
    // request is already buffered and must be answered when the first is done, not when
    // the client sends something else (connection fuzzer finding).
    let big = pattern(5 << 20, 3);
    let b2 = big.clone();
    let s = TestServer::start_with("[timeouts]\nheader = \"60s\"\n", move |root| {
        default_files(root);
        std::fs::write(root.join("big.bin"), &b2).expect("write");
    });
    let mut c = s.connect();
    c.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(c.read_response().body == big);
    assert_eq!(c.read_response().body, b"hello, vireo\n");
}

#[test]
fn connection_close_is_honoured() {
    let s = TestServer::start("");
    let mut c = s.connect();
    c.send(b"GET /small.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.is_closed());
}

#[test]
fn http10_closes_unless_keep_alive_is_asked() {
    let s = TestServer::start("");
    let mut c = s.connect();
    c.send(b"GET /small.txt HTTP/1.0\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert!(c.is_closed());

    let mut c = s.connect();
    c.send(b"GET /small.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.header("connection"), Some("keep-alive"));
    c.send(b"GET /small.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(c.read_response().status, 200);
}

#[test]
fn half_closed_client_still_gets_its_answers() {
    let s = TestServer::start("");
    let mut c = s.connect();
    c.send(b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\nGET /dir/ HTTP/1.1\r\nHost: t\r\n\r\n");
    c.stream
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    let all = c.read_to_close();
    let text = String::from_utf8_lossy(&all);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
    assert!(text.ends_with("dir index\n"));
}

#[test]
fn request_bodies_are_discarded_so_the_next_request_parses() {
    let s = TestServer::start("");
    let mut c = s.connect();
    c.send(
        b"GET /small.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello\
          GET /small.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
          3\r\nabc\r\n0\r\n\r\n\
          GET /dir/ HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(c.read_response().status, 200);
    assert_eq!(c.read_response().status, 200);
    assert_eq!(c.read_response().body, b"dir index\n");
}

#[test]
fn many_concurrent_clients_are_all_served() {
    let s = TestServer::start("");
    let addr = s.addr;
    let threads: Vec<_> = (0..16)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                for _ in 0..50 {
                    assert_eq!(c.get("/small.txt").body, b"hello, vireo\n");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
}
