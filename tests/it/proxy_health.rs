//! Active health checks and periodic re-resolution of upstream servers (issue 23): small
//! upstream servers (`upstream_support`) whose `/healthz` answer the test switches.

use crate::support::*;
use crate::upstream_support::serve;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An upstream answering every request with its `name`, and `/healthz` with 200 while
/// `healthy`, else 500. Counts the checks it saw. While not `alive`, it closes every
/// connection on its first request without answering (a passive failure).
struct Named {
    addr: SocketAddr,
    healthy: Arc<AtomicBool>,
    alive: Arc<AtomicBool>,
    checks: Arc<AtomicUsize>,
}

fn named(name: &'static str) -> Named {
    let healthy = Arc::new(AtomicBool::new(true));
    let alive = Arc::new(AtomicBool::new(true));
    let checks = Arc::new(AtomicUsize::new(0));
    let (h, al, n) = (healthy.clone(), alive.clone(), checks.clone());
    let addr = serve(move |g, s| {
        if !al.load(Ordering::SeqCst) {
            return false;
        }
        let resp = if g.head.starts_with("GET /healthz ") {
            n.fetch_add(1, Ordering::SeqCst);
            if h.load(Ordering::SeqCst) {
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_string()
            } else {
                "HTTP/1.1 500 Oops\r\nContent-Length: 4\r\n\r\nsick".to_string()
            }
        } else {
            format!("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n{name}")
        };
        s.write_all(resp.as_bytes()).is_ok()
    })
    .addr;
    Named {
        addr,
        healthy,
        alive,
        checks,
    }
}

/// Who answered `n` GETs, each on a fresh connection: the servers' names (a status
/// where it was not a 200), counted.
fn answers(s: &TestServer, n: usize) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for _ in 0..n {
        let r = get(s.addr, "/x");
        let k = match r.status {
            200 => String::from_utf8_lossy(&r.body).to_string(),
            st => st.to_string(),
        };
        *m.entry(k).or_insert(0) += 1;
    }
    m
}

fn counted(pairs: &[(&str, usize)]) -> std::collections::BTreeMap<String, usize> {
    pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

fn checked(servers: &str) -> TestServer {
    TestServer::start_with(
        &format!(
            "[metrics]\nlisten = \"127.0.0.1:0\"\n[[upstream]]\nname = \"app\"\nservers = [{servers}]\n\
             health = {{ path = \"/healthz\", interval = \"200ms\", timeout = \"200ms\", expect = 200 }}\n\
             [[proxy]]\npath = \"/\"\nupstream = \"app\"\n"
        ),
        |_| {},
    )
}

/// Who answered `n` requests, each on a fresh connection: (a's, b's, other statuses).
fn spread(s: &TestServer, n: usize) -> (usize, usize, Vec<u16>) {
    let (mut a, mut b, mut other) = (0, 0, Vec::new());
    for _ in 0..n {
        let r = get(s.addr, "/x");
        match (r.status, &r.body[..]) {
            (200, b"a") => a += 1,
            (200, b"b") => b += 1,
            (st, _) => other.push(st),
        }
    }
    (a, b, other)
}

fn wait_checks(u: &Named, more: usize) {
    let want = u.checks.load(Ordering::SeqCst) + more;
    let start = Instant::now();
    while u.checks.load(Ordering::SeqCst) < want {
        assert!(start.elapsed() < TIMEOUT, "no health checks arrive");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_server_failing_its_check_is_skipped_within_two_intervals_and_put_back() {
    let (a, b) = (named("a"), named("b"));
    let s = checked(&format!("\"{}\", \"{}\"", a.addr, b.addr));
    wait_checks(&a, 1);
    let (na, nb, other) = spread(&s, 10);
    assert!(na > 0 && nb > 0 && other.is_empty(), "{na} {nb} {other:?}");
    a.healthy.store(false, Ordering::SeqCst);
    // Two intervals: the next check sees it (marking is immediate).
    std::thread::sleep(Duration::from_millis(450));
    let (na, nb, other) = spread(&s, 20);
    assert_eq!(
        (na, nb, other),
        (0, 20, vec![]),
        "a failing server got traffic"
    );
    let m = scrape(&s);
    let la = format!("server=\"{}\",by=\"check\"", a.addr);
    assert_eq!(metric(&m, "vireo_upstream_up", &la), 0, "{m}");
    a.healthy.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(450));
    let (na, nb, other) = spread(&s, 10);
    assert!(
        na > 0 && nb > 0 && other.is_empty(),
        "not put back: {na} {nb} {other:?}"
    );
    assert_eq!(metric(&scrape(&s), "vireo_upstream_up", &la), 1);
}

#[test]
fn every_server_down_by_its_check_is_503() {
    let (a, b) = (named("a"), named("b"));
    let s = checked(&format!(
        "\"{}\", {{ addr = \"{}\", backup = true }}",
        a.addr, b.addr
    ));
    wait_checks(&a, 1);
    // The backup gets traffic only once the primary is down.
    let (na, nb, _) = spread(&s, 6);
    assert_eq!((na, nb), (6, 0));
    a.healthy.store(false, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(450));
    let (na, nb, _) = spread(&s, 6);
    assert_eq!((na, nb), (0, 6), "the backup did not take over");
    b.healthy.store(false, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(450));
    let (_, _, other) = spread(&s, 3);
    assert_eq!(other, vec![503, 503, 503]);
}

#[test]
fn a_host_name_is_re_resolved_and_served() {
    let a = named("a");
    let s = TestServer::start_logged(
        "info",
        &[],
        &format!(
            "[[upstream]]\nname = \"app\"\nservers = [\"localhost:{}\"]\nresolve = \"100ms\"\n\
             [[proxy]]\npath = \"/\"\nupstream = \"app\"\n",
            a.addr.port()
        ),
        |_| {},
    );
    s.wait_output(TIMEOUT, |l| {
        l.contains(&format!("localhost:{}", a.addr.port())) && l.contains("resolved to")
    });
    for _ in 0..5 {
        let r = get(s.addr, "/x");
        assert_eq!((r.status, &r.body[..]), (200, &b"a"[..]));
    }
}

#[test]
fn a_backup_takes_traffic_only_while_every_primary_fails_its_check_and_hands_it_back() {
    let (a, c, b) = (named("a"), named("c"), named("b"));
    let s = checked(&format!(
        "\"{}\", \"{}\", {{ addr = \"{}\", backup = true }}",
        a.addr, c.addr, b.addr
    ));
    wait_checks(&a, 1);
    wait_checks(&c, 1);
    let m = answers(&s, 10);
    assert!(
        m.len() == 2 && m.contains_key("a") && m.contains_key("c"),
        "before any failure: {m:?}"
    );
    // One primary down: the other takes everything, the backup nothing.
    a.healthy.store(false, Ordering::SeqCst);
    wait_checks(&a, 3);
    assert_eq!(answers(&s, 10), counted(&[("c", 10)]), "one primary down");
    // Every primary down: the backup.
    c.healthy.store(false, Ordering::SeqCst);
    wait_checks(&c, 3);
    assert_eq!(answers(&s, 10), counted(&[("b", 10)]), "every primary down");
    // One primary back: the backup is left again.
    a.healthy.store(true, Ordering::SeqCst);
    wait_checks(&a, 3);
    assert_eq!(answers(&s, 10), counted(&[("a", 10)]), "a primary back");
    assert!(
        b.checks.load(Ordering::SeqCst) > 0,
        "the backup is checked too"
    );
}

#[test]
fn a_backup_takes_traffic_only_while_every_primary_failed_passively_and_hands_it_back() {
    // No active checks: a server that drops requests is marked down by its failure
    // (`max_fails = 1`) for `fail_timeout`, the request retried on the next one.
    let (a, c, b) = (named("a"), named("c"), named("b"));
    let s = TestServer::start_with(
        &format!(
            "[[upstream]]\nname = \"app\"\nservers = [\"{}\", \"{}\", {{ addr = \"{}\", backup = true }}]\n\
             max_fails = 1\nfail_timeout = \"1s\"\nretries = 2\n\
             [[proxy]]\npath = \"/\"\nupstream = \"app\"\n",
            a.addr, c.addr, b.addr
        ),
        |_| {},
    );
    let m = answers(&s, 10);
    assert!(
        m.len() == 2 && m.contains_key("a") && m.contains_key("c"),
        "before any failure: {m:?}"
    );
    // One primary failing: every request still answered, by the other primary.
    a.alive.store(false, Ordering::SeqCst);
    assert_eq!(
        answers(&s, 10),
        counted(&[("c", 10)]),
        "one primary failing"
    );
    // Every primary failing: the backup answers.
    c.alive.store(false, Ordering::SeqCst);
    assert_eq!(
        answers(&s, 10),
        counted(&[("b", 10)]),
        "every primary failing"
    );
    // A primary recovers: once its fail_timeout is over it is tried again and keeps the
    // traffic (c, still failing, is retried past), the backup gets nothing.
    a.alive.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(answers(&s, 10), counted(&[("a", 10)]), "a primary back");
}
