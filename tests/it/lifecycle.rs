use crate::support::*;
use std::io::Read;
use std::time::{Duration, Instant};

const SIGTERM: i32 = 15;
const SIGHUP: i32 = 1;

#[test]
fn sigterm_lets_a_download_in_progress_finish_then_exits_0() {
    let big = pattern(48 << 20, 11);
    let b2 = big.clone();
    let mut s = TestServer::start_with("", move |root| {
        std::fs::write(root.join("big.bin"), &b2).expect("write");
        std::fs::write(root.join("small.txt"), b"x").expect("write");
    });
    let mut c = s.connect();
    let mut idle = s.connect();
    assert_eq!(idle.get("/small.txt").status, 200);
    c.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    // Read the head and a first chunk so the response is in flight.
    let mut first = [0u8; 4096];
    let n = c.stream.read(&mut first).expect("read");
    assert!(n > 0);
    s.signal(SIGTERM);
    // The idle keep-alive connection is closed.
    assert!(idle.is_closed());
    let mut rest = first[..n].to_vec();
    c.stream.read_to_end(&mut rest).expect("read rest");
    let head_end = find(&rest, b"\r\n\r\n").expect("head") + 4;
    assert!(rest[head_end..] == big[..], "download cut or corrupted");
    let status = s.wait_exit(Duration::from_secs(10)).expect("server exited");
    assert!(status.success(), "{status:?}");
}

#[test]
fn sigterm_with_nothing_in_flight_exits_promptly() {
    let mut s = TestServer::start("");
    assert_eq!(get(s.addr, "/small.txt").status, 200);
    let start = Instant::now();
    s.signal(SIGTERM);
    let status = s.wait_exit(Duration::from_secs(5)).expect("exited");
    assert!(status.success());
    assert!(start.elapsed() < Duration::from_secs(3));
    assert!(
        std::net::TcpStream::connect(s.addr).is_err(),
        "still accepting"
    );
}

#[test]
fn sighup_switches_root_without_failing_a_request() {
    let s = TestServer::start_with("", |root| {
        std::fs::write(root.join("which.txt"), b"old").expect("write");
    });
    let root2 = s.dir.path().join("root2");
    std::fs::create_dir(&root2).expect("mkdir");
    std::fs::write(root2.join("which.txt"), b"new").expect("write");
    let cfg = s.dir.path().join("vireo.toml");
    let text = std::fs::read_to_string(&cfg).expect("read cfg");
    let addr = s.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut seen_new = false;
                let mut n = 0;
                let mut keep = Client::connect(addr);
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    // Alternate fresh connections and keep-alive reuse.
                    let r = if i % 2 == 0 {
                        get(addr, "/which.txt")
                    } else {
                        let mut c = Client::connect(addr);
                        std::mem::swap(&mut c, &mut keep);
                        let r = c.get("/which.txt");
                        if r.header("connection") != Some("close") {
                            keep = c;
                        } else {
                            keep = Client::connect(addr);
                        }
                        r
                    };
                    assert_eq!(r.status, 200);
                    assert!(r.body == b"old" || r.body == b"new", "{:?}", r.body);
                    seen_new |= r.body == b"new";
                    n += 1;
                }
                (n, seen_new)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&cfg, text.replace("root = \"root\"", "root = \"root2\"")).expect("write cfg");
    s.signal(SIGHUP);
    // Wait until the new root answers, then keep the load on a little longer.
    let start = Instant::now();
    while get(addr, "/which.txt").body != b"new" {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "reload never took effect"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for t in clients {
        let (n, seen_new) = t.join().expect("no client saw a failure");
        assert!(n > 0 && seen_new);
    }
}

#[test]
fn sighup_with_a_broken_config_keeps_serving() {
    let s = TestServer::start("");
    let cfg = s.dir.path().join("vireo.toml");
    std::fs::write(&cfg, "this is = not [toml").expect("write");
    s.signal(SIGHUP);
    // Still the old configuration, still serving.
    for _ in 0..20 {
        assert_eq!(get(s.addr, "/small.txt").status, 200);
    }
}

#[test]
fn requests_arriving_during_a_drain_get_connection_close() {
    let big = pattern(48 << 20, 12);
    let mut s = TestServer::start_with("", move |root| {
        std::fs::write(root.join("big.bin"), &big).expect("write");
        std::fs::write(root.join("small.txt"), b"x").expect("write");
    });
    // One response in flight keeps the server draining.
    let mut slow = s.connect();
    slow.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut first = [0u8; 1024];
    assert!(slow.stream.read(&mut first).expect("read") > 0);
    let mut c = s.connect();
    assert_eq!(c.get("/small.txt").status, 200);
    s.signal(SIGTERM);
    // The drain has begun everywhere once the listening socket is gone.
    let start = Instant::now();
    while std::net::TcpStream::connect(s.addr).is_ok() {
        assert!(start.elapsed() < Duration::from_secs(5), "still accepting");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Within the idle grace, a request on the keep-alive connection is still answered,
    // and told the connection ends.
    let r = c.get("/small.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.is_closed());
    let mut rest = Vec::new();
    slow.stream.read_to_end(&mut rest).expect("rest");
    assert!(s
        .wait_exit(Duration::from_secs(10))
        .expect("exit")
        .success());
}
