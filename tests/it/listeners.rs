//! Several `listen` addresses: every reactor accepts on every address, IPv6 sockets are
//! v6only, and a reload opens and closes the difference without resetting queued clients.

use crate::support::*;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

const SIGHUP: i32 = 1;

/// Whether this machine has IPv6 loopback (a container may not).
fn has_ipv6() -> bool {
    TcpListener::bind("[::1]:0").is_ok()
}

/// A second loopback address for the tests that need two: `[::1]`, or `127.0.0.2` (all of
/// 127/8 is loopback on Linux) on a machine without IPv6.
fn other_loopback() -> &'static str {
    if has_ipv6() {
        "[::1]:0"
    } else {
        eprintln!("no ::1 here: using 127.0.0.2 as the second address");
        "127.0.0.2:0"
    }
}

/// `vireo_connections_accepted_total` of reactors 0 and 1.
fn accepted(s: &TestServer) -> [u64; 2] {
    let text = scrape(s);
    [0, 1].map(|r| {
        metric(
            &text,
            "vireo_connections_accepted_total",
            &format!("reactor=\"{r}\""),
        )
    })
}

#[test]
fn every_address_is_served_by_every_reactor() {
    let other = other_loopback();
    let s = TestServer::start(&format!(
        "listen = [\"127.0.0.1:0\", \"{other}\"]\nworkers = 2\n[metrics]\nlisten = \"127.0.0.1:0\"\n"
    ));
    let addrs = s.listening(2);
    assert_eq!(addrs.len(), 2, "{addrs:?}");
    assert!(addrs[0].ip().is_loopback() && addrs[1].ip().is_loopback());
    assert_ne!(addrs[0], addrs[1]);
    for &addr in &addrs {
        let r = get(addr, "/small.txt");
        assert_eq!((r.status, &r.body[..]), (200, &b"hello, vireo\n"[..]));
        // Fresh connections (new source ports) are hashed over the address's two
        // SO_REUSEPORT sockets, one per reactor. All 200 landing on one socket has
        // probability 2^-199: a miss here means a reactor does not listen on `addr`.
        let before = accepted(&s);
        for _ in 0..200 {
            assert_eq!(get(addr, "/small.txt").status, 200);
        }
        let after = accepted(&s);
        for r in 0..2 {
            assert!(
                after[r] > before[r],
                "reactor {r} accepted nothing on {addr}: {before:?} -> {after:?}"
            );
        }
    }
}

#[test]
fn ipv6_sockets_are_v6only() {
    if !has_ipv6() {
        eprintln!("no ::1 here: skipping the v6only check");
        return;
    }
    let s = TestServer::start("listen = \"[::]:0\"\n");
    let port = s.addr.port();
    assert!(s.addr.is_ipv6(), "{}", s.addr);
    let v6: SocketAddr = (std::net::Ipv6Addr::LOCALHOST, port).into();
    assert_eq!(get(v6, "/small.txt").status, 200);
    // A dual-stack [::]:port would hold the IPv4 port too, and this bind would fail with
    // EADDRINUSE. (It could only fail otherwise if another process happened to listen on
    // that port on an IPv4 loopback address.)
    let v4 = TcpListener::bind(("0.0.0.0", port)).expect("IPv4 port free: the socket is v6only");
    // And IPv4 clients reach this socket, not vireo.
    let c = TcpStream::connect(("127.0.0.1", port)).expect("connect v4");
    let (accepted, _) = v4.accept().expect("accept on the test's IPv4 socket");
    assert_eq!(accepted.peer_addr().ok(), c.local_addr().ok());
}

fn check(listen: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("public")).expect("mkdir");
    let path = dir.path().join("v.toml");
    std::fs::write(&path, format!("root = \"public\"\nlisten = {listen}\n")).expect("write");
    let o = Command::new(env!("CARGO_BIN_EXE_vireo"))
        .args(["--check", "--config"])
        .arg(&path)
        .output()
        .expect("run vireo");
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn duplicate_or_no_address_is_a_check_error() {
    let (code, err) = check("[\"127.0.0.1:8080\", \"[::1]:8080\", \"127.0.0.1:8080\"]");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("v.toml: line 2") && err.contains("`listen`") && err.contains("twice"),
        "{err}"
    );
    let (code, err) = check("[]");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("at least one address"), "{err}");
    let (code, err) = check("[\"127.0.0.1:8080\", \"[::1]:8080\"]");
    assert_eq!(code, Some(0), "{err}");
}

/// Open `n` connections to `addr` and send a request on each.
fn queue_requests(addr: SocketAddr, n: usize) -> Vec<Client> {
    (0..n)
        .map(|_| {
            let mut c = Client::connect(addr);
            c.send(b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n");
            c
        })
        .collect()
}

#[test]
fn reload_opens_added_and_closes_removed_addresses() {
    let other = other_loopback();
    let s = TestServer::start_logged(
        "info",
        &[],
        "listen = [\"127.0.0.1:0\"]\nworkers = 2\n[limits]\nmax_connections = 1\n\
         [timeouts]\nheader = \"60s\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
        default_files,
    );
    let cfg = s.dir.path().join("vireo.toml");
    let text = std::fs::read_to_string(&cfg).expect("read cfg");
    let a = s.addr;
    // Counted from the log, not the metrics: with one connection per reactor a held slot
    // also pauses reactor 0's metrics listener.
    let reloads = |n: usize| {
        let start = Instant::now();
        while s
            .output
            .lock()
            .expect("lock")
            .iter()
            .filter(|l| l.contains("reloaded"))
            .count()
            < n
        {
            assert!(start.elapsed() < TIMEOUT, "reload {n} never happened");
            std::thread::sleep(Duration::from_millis(10));
        }
    };

    // Adding an address opens it; the kept one keeps its port.
    let two = format!("listen = [\"127.0.0.1:0\", \"{other}\"]");
    std::fs::write(&cfg, text.replace("listen = [\"127.0.0.1:0\"]", &two)).expect("write");
    s.signal(SIGHUP);
    reloads(1);
    let addrs = s.listening(2);
    assert_eq!(addrs[0], a);
    let b = addrs[1];
    assert_ne!(a, b);
    assert_eq!(get(b, "/small.txt").status, 200);
    assert_eq!(get(a, "/small.txt").status, 200);

    // Removing it, with clients queued on both: the ones on the removed address are
    // taken by the old reactors before its sockets close, the ones on the kept address
    // wait for the new reactors. None is reset.
    let mut queued = queue_requests(a, 6);
    queued.extend(queue_requests(b, 6));
    std::fs::write(
        &cfg,
        text.replace("max_connections = 1", "max_connections = 100"),
    )
    .expect("write");
    s.signal(SIGHUP);
    reloads(2);
    s.wait_reloads("ok", 2);
    for c in &mut queued {
        assert_eq!(c.read_response().status, 200);
    }
    let e = TcpStream::connect(b).expect_err("the removed address still accepts");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    for _ in 0..30 {
        assert_eq!(get(a, "/small.txt").status, 200);
    }
    assert_eq!(s.listening(2).len(), 2, "no address opened by the removal");
}
