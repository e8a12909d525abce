use crate::support::*;
use std::io::Read;
use std::time::{Duration, Instant};

/// User + system CPU time of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which is in parentheses): utime is 14th, stime 15th.
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
}

#[test]
fn emfile_pauses_accepting_without_spinning_and_recovers() {
    // 48 descriptors: the server's own ~20, the rest for connections.
    let s = TestServer::start_wrapped(
        &["prlimit", "--nofile=48:48", "--"],
        "[timeouts]\nheader = \"60s\"\n",
        default_files,
    );
    let pid = s.child.id();
    let mut clients: Vec<Client> = (0..80).map(|_| s.connect()).collect();
    // Wait until the server holds every descriptor it may: it is now at EMFILE.
    let start = Instant::now();
    while std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count()) < 47 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "never reached the limit"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let t0 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_millis(1500));
    let used = cpu_ticks(pid) - t0;
    // A spinning accept loop burns ~150 ticks in 1.5 s; pausing on a 100 ms timer, ~0.
    assert!(used < 20, "{used} ticks of CPU while out of descriptors");
    // The clients leave; the server recovers and serves a new one.
    clients.clear();
    let start = Instant::now();
    loop {
        let mut c = Client::connect(s.addr);
        c.stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        c.send(b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n");
        let mut b = [0u8; 64];
        if matches!(c.stream.read(&mut b), Ok(n) if n > 0) {
            assert!(b.starts_with(b"HTTP/1.1 200"));
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "never recovered");
    }
}

#[test]
fn max_connections_stops_accepting_until_one_closes() {
    let s = TestServer::start("workers = 1\n[limits]\nmax_connections = 2\n");
    let mut a = s.connect();
    let b = s.connect();
    assert_eq!(a.get("/small.txt").status, 200);
    // The third connection waits in the backlog: its request gets no answer yet.
    let mut c = s.connect();
    c.send(b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    c.stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut byte = [0u8; 1];
    assert!(c.stream.read(&mut byte).is_err(), "served over the limit");
    // Existing connections keep being served.
    assert_eq!(a.get("/small.txt").status, 200);
    drop(b);
    c.stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let r = c.read_response();
    assert_eq!(r.status, 200);
}
