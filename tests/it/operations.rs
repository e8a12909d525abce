use crate::support::*;
use std::time::{Duration, Instant};

const SIGTERM: i32 = 15;
const SIGUSR1: i32 = 10;
const SIGHUP: i32 = 1;

#[test]
fn metrics_counters_move_by_the_expected_amounts() {
    let s = TestServer::start("[metrics]\nlisten = \"127.0.0.1:0\"\n");
    let before = scrape(&s);
    let mut c = s.connect();
    for _ in 0..5 {
        assert_eq!(c.get("/small.txt").status, 200);
    }
    for _ in 0..3 {
        assert_eq!(c.get("/missing").status, 404);
    }
    let after = scrape(&s);
    let d = |name, label| metric(&after, name, label) - metric(&before, name, label);
    assert_eq!(d("vireo_responses_total", "class=\"2xx\""), 5);
    assert_eq!(d("vireo_responses_total", "class=\"4xx\""), 3);
    assert!(d("vireo_response_body_bytes_total", "") >= 5 * 13);
    assert_eq!(d("vireo_connections_accepted_total", ""), 1);
    assert!(metric(&after, "vireo_connections_active", "") >= 1);
    assert!(metric(&after, "vireo_loop_iteration_seconds_count", "") > 0);
    // Every sample line is `name{labels} value` or `name value`.
    for l in after.lines().filter(|l| !l.starts_with('#')) {
        let v = l.rsplit(' ').next().expect("value");
        assert!(v.parse::<f64>().is_ok(), "bad sample line {l:?}");
    }
}

#[test]
fn concurrent_requests_for_one_cold_file_start_one_job() {
    let text = crate::compression::text(8 << 20, 21);
    let s = TestServer::start_with(
        "[metrics]\nlisten = \"127.0.0.1:0\"\n[compression]\nlevel = 9\n",
        move |root| std::fs::write(root.join("cold.txt"), &text).expect("write"),
    );
    let addr = s.addr;
    let clients: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                c.send(b"GET /cold.txt HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n");
                let r = c.read_response();
                assert_eq!(r.header("content-encoding"), Some("gzip"));
                r.body.len()
            })
        })
        .collect();
    let lens: Vec<usize> = clients
        .into_iter()
        .map(|t| t.join().expect("client"))
        .collect();
    assert!(lens.windows(2).all(|w| w[0] == w[1]));
    let m = scrape(&s);
    let started = metric(&m, "vireo_compression_jobs_total", "state=\"started\"");
    let hits = metric(&m, "vireo_compression_cache_hits_total", "");
    let misses = metric(&m, "vireo_compression_cache_misses_total", "");
    // Eight requests: one job, the rest joined it or hit the cache it filled. Each request
    // looks the cache up exactly once: a miss for the first and those that joined.
    assert_eq!(started, 1, "{m}");
    assert_eq!(
        metric(&m, "vireo_compression_jobs_total", "state=\"completed\""),
        1
    );
    assert_eq!(
        metric(&m, "vireo_compression_jobs_total", "state=\"rejected\""),
        0
    );
    assert!(misses >= 1, "{m}");
    assert_eq!(hits + misses, 8, "{m}");
}

#[test]
fn one_eventfd_per_reactor() {
    let s = TestServer::start("workers = 3\n");
    let pid = s.child.id();
    let eventfds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("proc fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|t| t.to_string_lossy().contains("eventfd"))
        .count();
    // Three reactor wakers, plus the main thread's (reactors ring it when they exit).
    assert_eq!(eventfds, 3 + 1);
}

fn parse_combined(line: &str) -> (String, u16, u64) {
    // 127.0.0.1 - - [29/Nov/2026:02:49:48 +0000] "GET /small.txt HTTP/1.1" 200 13 "-" "ua"
    let q1 = line.find('"').expect("request quote");
    let rest = &line[q1 + 1..];
    let q2 = rest.find('"').expect("end quote");
    let request = rest[..q2].to_string();
    let mut nums = rest[q2 + 1..].split_whitespace();
    let status = nums.next().and_then(|v| v.parse().ok()).expect("status");
    let bytes = nums.next().and_then(|v| v.parse().ok()).expect("bytes");
    (request, status, bytes)
}

fn wait_exit(s: &mut TestServer) {
    s.signal(SIGTERM);
    let st = s.wait_exit(Duration::from_secs(10)).expect("exit");
    assert!(st.success());
}

#[test]
fn combined_access_log_lines_parse_back() {
    let mut s = TestServer::start("[log]\naccess = \"access.log\"\n");
    let mut c = s.connect();
    c.send(b"GET /small.txt HTTP/1.1\r\nHost: t\r\nUser-Agent: test \"agent\"\r\nReferer: http://r/\r\n\r\n");
    c.read_response();
    assert_eq!(c.get("/missing").status, 404);
    c.send(b"HEAD /small.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    c.read_response_to(true);
    let mut bad = s.connect();
    bad.send(b"BROKEN\r\n\r\n");
    bad.read_response();
    wait_exit(&mut s);
    let log = std::fs::read_to_string(s.dir.path().join("access.log")).expect("log");
    let lines: Vec<_> = log.lines().collect();
    assert_eq!(lines.len(), 4, "{log}");
    let mut parsed: Vec<_> = lines.iter().map(|l| parse_combined(l)).collect();
    parsed.sort_by_key(|p| p.1);
    assert!(parsed.contains(&("GET /small.txt HTTP/1.1".into(), 200, 13)));
    assert!(parsed.contains(&("HEAD /small.txt HTTP/1.1".into(), 200, 0)));
    assert!(parsed
        .iter()
        .any(|p| p.0 == "GET /missing HTTP/1.1" && p.1 == 404));
    assert!(parsed.iter().any(|p| p.0 == "-" && p.1 == 400));
    let first = lines
        .iter()
        .find(|l| l.contains("/small.txt HTTP/1.1\" 200 13"))
        .expect("line");
    assert!(first.starts_with("127.0.0.1 - - ["), "{first}");
    assert!(
        first.ends_with("\"http://r/\" \"test \\x22agent\\x22\""),
        "{first}"
    );
}

#[test]
fn json_access_log_has_the_same_fields_and_timing() {
    let mut s = TestServer::start("[log]\naccess = \"access.json\"\nformat = \"json\"\n");
    let mut c = s.connect();
    for _ in 0..3 {
        assert_eq!(c.get("/small.txt").status, 200);
    }
    wait_exit(&mut s);
    let log = std::fs::read_to_string(s.dir.path().join("access.json")).expect("log");
    assert_eq!(log.lines().count(), 3);
    for l in log.lines() {
        assert!(l.starts_with('{') && l.ends_with('}'), "{l}");
        for field in [
            "\"method\":\"GET\"",
            "\"uri\":\"/small.txt\"",
            "\"status\":200",
            "\"bytes\":13",
            "\"remote_addr\":\"127.0.0.1\"",
            "\"request_time_us\":",
            "\"reactor\":",
        ] {
            assert!(l.contains(field), "{field} missing in {l}");
        }
    }
}

#[test]
fn sigusr1_reopens_the_log_after_a_rename() {
    let mut s = TestServer::start("[log]\naccess = \"access.log\"\n");
    let path = s.dir.path().join("access.log");
    let rotated = s.dir.path().join("access.log.1");
    assert_eq!(get(s.addr, "/small.txt").status, 200);
    // Wait for the first line to reach the file (batches are flushed within a second).
    let start = Instant::now();
    while std::fs::metadata(&path).map_or(0, |m| m.len()) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "first line never written"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::rename(&path, &rotated).expect("rename");
    s.signal(SIGUSR1);
    let start = Instant::now();
    while !path.exists() {
        assert!(start.elapsed() < Duration::from_secs(5), "log not reopened");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(get(s.addr, "/dir/").status, 200);
    wait_exit(&mut s);
    let old = std::fs::read_to_string(&rotated).expect("rotated");
    let new = std::fs::read_to_string(&path).expect("new");
    assert!(
        old.contains("/small.txt") && !old.contains("/dir/"),
        "{old}"
    );
    assert!(
        new.contains("/dir/") && !new.contains("/small.txt"),
        "{new}"
    );
}

/// `fifo` in a fresh directory, its read end held open and never read: a writer's writes
/// block once the pipe (64 KiB) is full.
fn stuck_fifo() -> (tempfile::TempDir, std::fs::File) {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("fifo");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(st.success());
    let reader = std::fs::File::options()
        .read(true)
        .write(true) // O_RDWR on a FIFO never blocks in open
        .open(&fifo)
        .expect("open fifo");
    (dir, reader)
}

#[test]
fn a_log_nobody_reads_never_stalls_requests() {
    let (dir, _reader) = stuck_fifo();
    let s = TestServer::start(&format!(
        "[log]\naccess = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n[timeouts]\nshutdown = \"1s\"\n",
        dir.path().join("fifo").display()
    ));
    let mut c = s.connect();
    let long = format!("/small.txt?{}", "q".repeat(2000));
    let start = Instant::now();
    for _ in 0..3000 {
        assert_eq!(c.get(&long).status, 200);
    }
    // 3000 lines of 2 KB is ~6 MB against a 64 KiB pipe: the writer is stuck, yet every
    // request was answered.
    assert!(start.elapsed() < Duration::from_secs(30));
    let start = Instant::now();
    loop {
        let m = scrape(&s);
        if metric(&m, "vireo_access_log_dropped_lines_total", "") > 0 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "no drops counted");
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(c.get(&long).status, 200);
    }
}

#[test]
fn sigusr1_and_sigterm_are_never_blocked_by_a_stuck_log_writer() {
    let (dir, _reader) = stuck_fifo();
    let mut s = TestServer::start(&format!(
        "[log]\naccess = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n[timeouts]\nshutdown = \"1s\"\n",
        dir.path().join("fifo").display()
    ));
    let mut c = s.connect();
    let path = format!("/small.txt?{}", "q".repeat(300));
    for _ in 0..20_000 {
        assert_eq!(c.get(&path).status, 200);
    }
    // ~7 MB of lines: the pipe (64 KiB) and the writer's queue (64 x 64 KiB) are full.
    let start = Instant::now();
    while metric(&scrape(&s), "vireo_access_log_dropped_lines_total", "") == 0 {
        assert!(start.elapsed() < TIMEOUT, "no drops counted");
        assert_eq!(c.get(&path).status, 200);
    }
    drop(c);
    s.signal(SIGUSR1);
    s.signal(SIGTERM);
    let start = Instant::now();
    // timeouts.shutdown + 1 s.
    let st = s
        .wait_exit(Duration::from_secs(2))
        .expect("no exit within shutdown + 1 s");
    assert!(st.success(), "{st:?}");
    assert!(start.elapsed() < Duration::from_secs(2));
}

fn offload_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
                .filter(|c| c.starts_with("vireo-offload"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn reload_with_compression_off_drops_the_pool_and_its_cache() {
    let text = crate::compression::text(64 << 10, 3);
    let s = TestServer::start_with("[metrics]\nlisten = \"127.0.0.1:0\"\n", move |root| {
        std::fs::write(root.join("t.txt"), &text).expect("write")
    });
    let mut c = s.connect();
    c.send(b"GET /t.txt HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n");
    assert_eq!(c.read_response().header("content-encoding"), Some("gzip"));
    drop(c);
    assert!(metric(&scrape(&s), "vireo_compression_cache_bytes", "") > 0);
    let pid = s.child.id();
    assert!(offload_threads(pid) > 0);
    let cfg = s.dir.path().join("vireo.toml");
    let text = std::fs::read_to_string(&cfg).expect("read cfg");
    std::fs::write(&cfg, format!("{text}[compression]\nenabled = false\n")).expect("write");
    s.signal(SIGHUP);
    s.wait_reloads("ok", 1);
    // The pool threads end once the last holder (the retired reactors) lets go.
    let start = Instant::now();
    while offload_threads(pid) > 0 {
        assert!(start.elapsed() < TIMEOUT, "compression pool still running");
        std::thread::sleep(Duration::from_millis(10));
    }
    let m = scrape(&s);
    assert!(!m.contains("vireo_compression"), "{m}");
    let mut c = s.connect();
    c.send(b"GET /t.txt HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n");
    assert_eq!(c.read_response().header("content-encoding"), None);
}

#[test]
fn reload_rebinds_the_metrics_listener() {
    let s = TestServer::start("[metrics]\nlisten = \"127.0.0.1:0\"\n");
    let old = metrics_addr(&s);
    let cfg = s.dir.path().join("vireo.toml");
    // Another loopback address, so the new port is surely a new socket.
    let text = std::fs::read_to_string(&cfg).expect("read cfg");
    let moved = text.replace(
        "[metrics]\nlisten = \"127.0.0.1:0\"",
        "[metrics]\nlisten = \"127.0.0.2:0\"",
    );
    assert_ne!(moved, text);
    std::fs::write(&cfg, moved).expect("write");
    s.signal(SIGHUP);
    let line = s.wait_output(TIMEOUT, |l| l.starts_with("metrics on http://127.0.0.2:"));
    let new: std::net::SocketAddr = line["metrics on http://".len()..]
        .trim_end_matches("/metrics")
        .parse()
        .expect("addr");
    // Counted once the old reactors stop accepting; scraped on the new listener.
    let start = Instant::now();
    loop {
        let r = get(new, "/metrics");
        assert_eq!(r.status, 200);
        let ok = metric(
            &String::from_utf8_lossy(&r.body),
            "vireo_reloads_total",
            "ok",
        );
        assert!(ok <= 1);
        if ok == 1 {
            break;
        }
        assert!(start.elapsed() < TIMEOUT, "reload never counted");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The old listener closes once the retired reactor has let go of it.
    let start = Instant::now();
    while std::net::TcpStream::connect(old).is_ok() {
        assert!(start.elapsed() < TIMEOUT, "old metrics listener still open");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Removing the section closes it.
    let text = std::fs::read_to_string(&cfg).expect("read cfg");
    std::fs::write(&cfg, text.replace("listen = \"127.0.0.2:0\"", "")).expect("write");
    s.signal(SIGHUP);
    let start = Instant::now();
    while std::net::TcpStream::connect(new).is_ok() {
        assert!(start.elapsed() < TIMEOUT, "metrics listener still open");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(get(s.addr, "/small.txt").status, 200);
}

#[test]
fn metrics_do_not_grow_with_reloads() {
    let s = TestServer::start("[metrics]\nlisten = \"127.0.0.1:0\"\n");
    let series = |m: &str| m.lines().filter(|l| !l.starts_with('#')).count();
    let first = scrape(&s);
    for i in 1..=5 {
        s.signal(SIGHUP);
        s.wait_reloads("ok", i);
        assert_eq!(get(s.addr, "/small.txt").status, 200);
    }
    let m = scrape(&s);
    assert_eq!(series(&m), series(&first), "{m}");
    // Counters carry over: the requests made between reloads are all still counted.
    assert_eq!(metric(&m, "vireo_responses_total", "2xx"), 5, "{m}");
}

/// The CPUs a thread of `pid` may run on, by thread name (`/proc/PID/task/*/`).
fn thread_cpus(pid: u32) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks") {
        let dir = t.expect("task").path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let cpus = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap_or_default();
        out.push((name.trim().to_string(), cpus.trim().to_string()));
    }
    out
}

#[test]
fn pin_workers_puts_each_reactor_on_its_own_cpu_and_still_serves() {
    let allowed = vireo::net::affinity::allowed();
    let s = TestServer::start_with("pin_workers = true\n", default_files);
    for _ in 0..20 {
        assert_eq!(get(s.addr, "/index.html").status, 200);
    }
    let threads = thread_cpus(s.child.id());
    for i in 0..2 {
        let want = allowed[i % allowed.len()].to_string();
        let name = format!("vireo-reactor-{i}");
        let got = threads.iter().find(|(n, _)| *n == name);
        assert_eq!(
            got.map(|(_, c)| c.as_str()),
            Some(want.as_str()),
            "{threads:?}"
        );
    }
    // Without it, reactors may run anywhere the process may.
    let s = TestServer::start_with("", default_files);
    assert_eq!(get(s.addr, "/index.html").status, 200);
    let pid = s.child.id();
    let process = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let process = process
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|c| c.trim().to_string());
    let threads = thread_cpus(pid);
    let r0 = threads.iter().find(|(n, _)| n == "vireo-reactor-0");
    assert_eq!(r0.map(|(_, c)| c.clone()), process, "{threads:?}");
}

/// Issue 21: pool threads made by a pinned reactor (the I/O threads start on the first
/// compression job) run wherever the process may, not on that reactor's CPU.
#[test]
fn pool_threads_are_not_pinned_with_the_reactor_that_made_them() {
    let s = TestServer::start_with("pin_workers = true\n", |root| {
        let text = "vireo compresses text like this line. ".repeat(2000);
        std::fs::write(root.join("big.txt"), text).expect("write");
    });
    let mut c = s.connect();
    c.send(b"GET /big.txt HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), Some("gzip"), "{}", r.head);
    let pid = s.child.id();
    let process = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let process = process
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|c| c.trim().to_string())
        .expect("Cpus_allowed_list");
    // A new thread inherits its creator's set until its start handler runs: wait for
    // every pool thread to have run it (one that never resets stays pinned).
    let start = Instant::now();
    loop {
        let threads = thread_cpus(pid);
        let pool: Vec<_> = threads
            .iter()
            .filter(|(n, _)| {
                ["vireo-io-", "vireo-offload", "vireo-handshak"]
                    .iter()
                    .any(|p| n.starts_with(p))
            })
            .collect();
        let started = pool.iter().any(|(n, _)| n.starts_with("vireo-io-"));
        let pinned = pool.iter().find(|(_, cpus)| *cpus != process);
        match pinned {
            None if started => break,
            _ => assert!(
                start.elapsed() < TIMEOUT,
                "I/O threads started: {started}; pinned: {pinned:?}; {threads:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Names of the process's threads (`/proc/PID/task/*/comm`).
fn thread_names(pid: u32) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .map(|n| n.trim_end().to_string())
        .collect()
}

/// Mapped memory of a process (`VmSize`, KiB): a thread's stack stays mapped until the
/// thread is joined, even after it has ended.
fn vm_size_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmSize")
}

#[test]
fn reloads_changing_the_access_log_leave_no_writer_thread_behind() {
    // One malloc arena: a thread that happens to get a new one maps 64 MiB more, which
    // would hide (or fake) the 2 MiB stacks this test looks for.
    let s = TestServer::start_logged(
        "error",
        &[("MALLOC_ARENA_MAX", "1")],
        "[log]\naccess = \"a.log\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
        default_files,
    );
    let pid = s.child.id();
    let cfg = s.dir.path().join("vireo.toml");
    let mut reloads = 0;
    // Reload to the other log file; return once the old reactors and the old writer ended.
    let mut flip = || {
        let text = std::fs::read_to_string(&cfg).expect("read cfg");
        let next = if text.contains("a.log") {
            text.replace("a.log", "b.log")
        } else {
            text.replace("b.log", "a.log")
        };
        std::fs::write(&cfg, next).expect("write cfg");
        s.signal(SIGHUP);
        reloads += 1;
        s.wait_reloads("ok", reloads);
        let start = Instant::now();
        loop {
            let names = thread_names(pid);
            let count = |p: &str| names.iter().filter(|n| n.starts_with(p)).count();
            if count("vireo-reactor") == 2 && count("vireo-log") == 1 {
                break;
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "old generation still there: {names:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    // Two first, so stacks freed by joined reactors are in the allocator's cache.
    flip();
    flip();
    let before = vm_size_kib(pid);
    for _ in 0..10 {
        flip();
    }
    let grown = vm_size_kib(pid).saturating_sub(before);
    // An unjoined writer keeps its 2 MiB stack: 10 of them would be 20 MiB.
    assert!(grown < 8 << 10, "{grown} KiB more mapped after 10 reloads");
    assert_eq!(get(s.addr, "/small.txt").status, 200);
}
