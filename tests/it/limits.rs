use crate::support::*;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

/// Per thread of `pid`: nanoseconds it has been runnable, on a CPU or waiting in a run
/// queue for one (`/proc/PID/task/TID/schedstat`: run time, run-queue wait, timeslices).
fn runnable_ns(pid: u32) -> Vec<(String, u64)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| {
            let path = t.ok()?.path();
            let stat = std::fs::read_to_string(path.join("schedstat")).ok()?;
            let mut f = stat.split_whitespace().map(|v| v.parse::<u64>().ok());
            let ns = f.next()?? + f.next()??;
            let name = std::fs::read_to_string(path.join("comm")).ok()?;
            Some((format!("{} {}", path.display(), name.trim_end()), ns))
        })
        .collect()
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
    // Over a window, how much of it each thread spent runnable. A thread spinning on
    // accept is runnable all the time, on a CPU or queued for one, whatever else the
    // machine runs: a fraction near 1. A reactor paused on its 100 ms timer sleeps in
    // epoll_wait but for ten short turns a second: near 0, and far below 1/2 even if
    // each turn waited tens of milliseconds for a CPU.
    let (t0, before) = (Instant::now(), runnable_ns(pid));
    assert!(!before.is_empty(), "no schedstat for {pid}");
    std::thread::sleep(Duration::from_secs(1)); // the measurement window, not a wait
    let (after, wall) = (runnable_ns(pid), t0.elapsed().as_nanos() as f64);
    for (task, ns) in &after {
        let Some((_, was)) = before.iter().find(|(t, _)| t == task) else {
            continue;
        };
        let share = ns.saturating_sub(*was) as f64 / wall;
        assert!(
            share < 0.5,
            "{task} runnable {:.0}% of {wall:.0} ns while out of descriptors",
            share * 100.0
        );
    }
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

/// Connections waiting in the accept queue of the listening socket on `port` (Linux shows
/// a listener's queue length as its rx_queue in /proc/net/tcp).
fn accept_queue(port: u16) -> u64 {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f[1].ends_with(&local) && f[3] == "0A")
        .map(|f| u64::from_str_radix(f[4].split(':').nth(1).expect("rx_queue"), 16).expect("hex"))
        .sum()
}

#[test]
fn max_connections_stops_accepting_until_one_closes() {
    let s = TestServer::start("workers = 1\n[limits]\nmax_connections = 2\n");
    let port = s.addr.port();
    let mut a = s.connect();
    // A first byte, so the kernel hands b over (TCP_DEFER_ACCEPT holds silent connections).
    let mut b = s.connect();
    b.send(b"G");
    assert_eq!(a.get("/small.txt").status, 200);
    let start = Instant::now();
    while accept_queue(port) != 0 {
        assert!(start.elapsed() < TIMEOUT, "b never accepted");
        std::thread::sleep(Duration::from_millis(5));
    }
    // The third connection waits in the backlog: its request gets no answer yet.
    let mut c = s.connect();
    c.send(b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    let start = Instant::now();
    while accept_queue(port) != 1 {
        assert!(start.elapsed() < TIMEOUT, "c never queued");
        std::thread::sleep(Duration::from_millis(5));
    }
    // A round trip through the reactor after c was queued: a reactor still accepting would
    // have taken c in this same turn (the listener was already readable), and answered it.
    assert_eq!(a.get("/small.txt").status, 200);
    assert_eq!(accept_queue(port), 1, "accepted over the limit");
    c.stream.set_nonblocking(true).expect("nonblocking");
    let mut byte = [0u8; 1];
    let r = c.stream.read(&mut byte);
    assert!(
        matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "served over the limit: {r:?}"
    );
    c.stream.set_nonblocking(false).expect("blocking");
    drop(b);
    c.stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let r = c.read_response();
    assert_eq!(r.status, 200);
}

/// Start vireo on `config` under `prlimit --nofile=N`, stop it, and return its stderr
/// (RUST_LOG=warn).
fn startup_warnings(config: &str, nofile: u32) -> String {
    startup_warnings_with(config, nofile, |_| {})
}

/// `startup_warnings`, with `setup` run on the config's directory first.
fn startup_warnings_with(config: &str, nofile: u32, setup: impl FnOnce(&Path)) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("root")).expect("mkdir");
    setup(dir.path());
    let cfg = dir.path().join("vireo.toml");
    std::fs::write(&cfg, config).expect("write");
    let mut child = std::process::Command::new("prlimit")
        .arg(format!("--nofile={nofile}:{nofile}"))
        .args(["--", env!("CARGO_BIN_EXE_vireo"), "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    assert!(
        lines.any(|l| l.is_ok_and(|l| l.starts_with("listening on "))),
        "never listened"
    );
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("kill");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    let st = child.wait().expect("wait");
    assert!(st.success(), "{st:?}: {stderr}");
    stderr
}

#[test]
fn the_default_config_starts_without_a_descriptor_warning_under_20000() {
    // config/vireo.toml as shipped (workers = "auto"), on an ephemeral port.
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/vireo.toml"))
            .expect("config/vireo.toml");
    let text = shipped
        .replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"")
        .replace("root = \"../public\"", "root = \"root\"");
    assert_ne!(text, shipped);
    let stderr = startup_warnings(&text, 20_000);
    assert!(!stderr.contains("RLIMIT_NOFILE"), "{stderr}");
}

#[test]
fn the_descriptor_check_counts_the_open_file_cache() {
    // 2 x 100 connections fit in 1000 descriptors; 2 x 1000 cached files do not. Each
    // reactor also counts 2 per listening address: 2 x (100 + 1000 + 2) + 64 socket
    // duplicates of cold-window jobs + 64.
    let config = "listen = \"127.0.0.1:0\"\nroot = \"root\"\nworkers = 2\n\
                  [limits]\nmax_connections = 100\n[open_file_cache]\nentries = 1000\n";
    let stderr = startup_warnings(config, 1000);
    assert!(
        stderr.contains("RLIMIT_NOFILE is 1000, below the 2332"),
        "{stderr}"
    );
}

#[test]
fn the_descriptor_check_counts_tls_and_metrics_listeners() {
    // 2 x (100 + 100 + 2 x 2 addresses) + 2 for the metrics listener + 128 = 538; with
    // the plain address alone it would be 532.
    let config = "listen = \"127.0.0.1:0\"\nroot = \"root\"\nworkers = 2\n\
                  [limits]\nmax_connections = 100\n[open_file_cache]\nentries = 100\n\
                  [metrics]\nlisten = \"127.0.0.1:0\"\n\
                  [tls]\nlisten = \"127.0.0.2:0\"\ncert = \"tls.crt\"\nkey = \"tls.key\"\n";
    let ca = TestCa::new("vireo test CA");
    let stderr = startup_warnings_with(config, 535, |dir| {
        ca.write_leaf(dir, "tls", &["localhost"]);
    });
    assert!(
        stderr.contains("RLIMIT_NOFILE is 535, below the 538 "),
        "{stderr}"
    );
    // The warning says a reload holds two generations for a while.
    assert!(stderr.contains("a reload"), "{stderr}");
}
