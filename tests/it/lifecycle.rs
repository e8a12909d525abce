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
    let s = TestServer::start_with("[metrics]\nlisten = \"127.0.0.1:0\"\n", |root| {
        std::fs::write(root.join("which.txt"), b"old").expect("write");
    });
    let root2 = s.dir.path().join("root2");
    std::fs::create_dir(&root2).expect("mkdir");
    std::fs::write(root2.join("which.txt"), b"new").expect("write");
    let cfg = s.dir.path().join("vireo.toml");
    let text = std::fs::read_to_string(&cfg).expect("read cfg");
    let addr = s.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let stop = stop.clone();
            let done = done.clone();
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
                    done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                (n, seen_new)
            })
        })
        .collect();
    // Requests are flowing on all four clients' loops before the reload...
    let wait_done = |n: usize| {
        let start = Instant::now();
        while done.load(std::sync::atomic::Ordering::SeqCst) < n {
            assert!(start.elapsed() < TIMEOUT, "clients stalled");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait_done(40);
    std::fs::write(&cfg, text.replace("root = \"root\"", "root = \"root2\"")).expect("write cfg");
    s.signal(SIGHUP);
    s.wait_reloads("ok", 1);
    assert_eq!(get(addr, "/which.txt").body, b"new");
    // ...and go on through the old generation's drain.
    wait_done(done.load(std::sync::atomic::Ordering::SeqCst) + 200);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for t in clients {
        let (n, seen_new) = t.join().expect("no client saw a failure");
        assert!(n > 0 && seen_new);
    }
}

#[test]
fn sighup_with_a_broken_config_keeps_serving() {
    let s = TestServer::start("[metrics]\nlisten = \"127.0.0.1:0\"\n");
    let cfg = s.dir.path().join("vireo.toml");
    std::fs::write(&cfg, "this is = not [toml").expect("write");
    s.signal(SIGHUP);
    s.wait_reloads("failed", 1);
    assert_eq!(metric(&scrape(&s), "vireo_reloads_total", "ok"), 0);
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

/// Open `n` connections and send a request on each; with `max_connections = 1` per reactor
/// all but one per reactor wait in the accept queues.
fn queue_requests(addr: std::net::SocketAddr, n: usize) -> Vec<Client> {
    (0..n)
        .map(|_| {
            let mut c = Client::connect(addr);
            c.send(b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n");
            c
        })
        .collect()
}

#[test]
fn changing_workers_on_reload_resets_no_queued_connection() {
    let s = TestServer::start_logged(
        "info",
        &[],
        "workers = 2\n[limits]\nmax_connections = 1\n[timeouts]\nheader = \"60s\"\n",
        default_files,
    );
    let cfg = s.dir.path().join("vireo.toml");
    let text = std::fs::read_to_string(&cfg).expect("read cfg");
    let set = |workers: usize, max: usize| {
        let t = text
            .replace("workers = 2", &format!("workers = {workers}"))
            .replace("max_connections = 1", &format!("max_connections = {max}"));
        std::fs::write(&cfg, t).expect("write cfg");
    };
    let reloads = |n: usize| {
        let start = Instant::now();
        loop {
            let done = s
                .output
                .lock()
                .expect("lock")
                .iter()
                .filter(|l| l.contains("reloaded"))
                .count();
            if done >= n {
                break;
            }
            assert!(start.elapsed() < TIMEOUT, "reload {n} never happened");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    // 2 -> 1: one socket is surplus; what waits in its queue must still be answered.
    let mut queued = queue_requests(s.addr, 12);
    set(1, 100);
    s.signal(SIGHUP);
    reloads(1);
    for c in &mut queued {
        assert_eq!(c.read_response().status, 200);
    }
    drop(queued);
    // Back to one connection per reactor, then 1 -> 3: the kept socket's queue is served.
    set(1, 1);
    s.signal(SIGHUP);
    reloads(2);
    let mut queued = queue_requests(s.addr, 12);
    set(3, 100);
    s.signal(SIGHUP);
    reloads(3);
    for c in &mut queued {
        assert_eq!(c.read_response().status, 200);
    }
    for _ in 0..30 {
        assert_eq!(get(s.addr, "/small.txt").status, 200);
    }
}
