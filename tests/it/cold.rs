//! The loop never waits on a disk: a file whose pages are not in the page cache is read in
//! on an I/O thread before sendfile touches it (`send::Cold`), and served byte for byte.
//! Over plain TCP the I/O thread also sends what the socket takes of the window itself.

use crate::support::*;
use std::io::Write;
use std::path::Path;

const METRICS: &str = "[metrics]\nlisten = \"127.0.0.1:0\"\n";
const SIZE: usize = 6 << 20;

/// Put `cold.bin` (`SIZE` bytes of `pattern(.., seed)`) in a server's root.
fn write_cold(root: &Path, seed: u64) {
    std::fs::write(root.join("cold.bin"), pattern(SIZE, seed)).expect("write");
}

/// Evict the server's `cold.bin`; false, with a note, where the filesystem keeps pages.
fn evicted(s: &TestServer) -> bool {
    let ok = evict_file(&s.dir.path().join("root/cold.bin"), SIZE);
    // CI runs where eviction works (ext4) and says so: there a skip is a failure.
    if !ok && std::env::var_os("VIREO_REQUIRE_EVICTION").is_some() {
        panic!("VIREO_REQUIRE_EVICTION is set but this filesystem keeps evicted pages");
    }
    if !ok {
        eprintln!("SKIPPED: this filesystem keeps evicted pages; cold-read test not run");
    }
    ok
}

#[test]
fn an_evicted_file_is_read_in_and_sent_on_an_io_thread_and_served_whole() {
    let s = TestServer::start_with(METRICS, |root| write_cold(root, 5));
    if !evicted(&s) {
        return;
    }
    let body = pattern(SIZE, 5);
    let r = get(s.addr, "/cold.bin");
    assert_eq!(r.status, 200);
    assert!(r.body == body, "the cold file came back different");
    let m = scrape(&s);
    // 6 MiB in 2 MiB windows: the first window at least was found cold, and the I/O
    // thread put the start of it into the socket itself.
    let reads = metric(&m, "vireo_cold_reads_total", "");
    assert!(reads >= 1, "no read was offloaded: {m}");
    assert!(metric(&m, "vireo_cold_read_seconds_count", "") >= 1);
    let sent = metric(&m, "vireo_cold_sent_bytes_total", "");
    assert!(
        sent > 0 && sent <= SIZE as u64,
        "sent by I/O threads: {sent}"
    );
    // Once resident, the same file is sent without the pool.
    let r = get(s.addr, "/cold.bin");
    assert!(r.status == 200 && r.body == body);
    let m = scrape(&s);
    assert_eq!(metric(&m, "vireo_cold_reads_total", ""), reads);
    assert_eq!(metric(&m, "vireo_cold_sent_bytes_total", ""), sent);
}

#[test]
fn ranges_of_an_evicted_file_are_read_in_too() {
    let s = TestServer::start_with(METRICS, |root| write_cold(root, 9));
    if !evicted(&s) {
        return;
    }
    let body = pattern(SIZE, 9);
    let mut c = Client::connect(s.addr);
    c.send(b"GET /cold.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=5000000-5000099\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &body[5_000_000..5_000_100]);
    // Two ranges, the second before the first: each is probed.
    c.send(b"GET /cold.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=3000000-3000009,10-19\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 206);
    let has = |part: &[u8]| r.body.windows(part.len()).any(|w| w == part);
    assert!(
        has(&body[3_000_000..3_000_010]) && has(&body[10..20]),
        "{}",
        r.head
    );
    let m = scrape(&s);
    assert!(metric(&m, "vireo_cold_reads_total", "") >= 2);
    // Both ranges were small enough for the I/O thread to send whole.
    assert!(metric(&m, "vireo_cold_sent_bytes_total", "") >= 100);
}

#[test]
fn with_cold_reads_off_the_page_cache_is_trusted() {
    let extra = format!("{METRICS}[open_file_cache]\ncold_reads = false\n");
    let s = TestServer::start_with(&extra, |root| write_cold(root, 3));
    if !evicted(&s) {
        return;
    }
    let r = get(s.addr, "/cold.bin");
    assert!(r.status == 200 && r.body == pattern(SIZE, 3));
    assert_eq!(metric(&scrape(&s), "vireo_cold_reads_total", ""), 0);
}

#[test]
fn over_tls_an_evicted_file_is_read_in_and_the_reactor_encrypts_it() {
    let s = TestServer::start_tls(METRICS, "", |root| write_cold(root, 11));
    if !evicted(&s) {
        return;
    }
    let r = s.connect_tls().get("/cold.bin");
    assert_eq!(r.status, 200);
    assert!(
        r.body == pattern(SIZE, 11),
        "the cold file came back different"
    );
    let m = scrape(&s);
    assert!(metric(&m, "vireo_cold_reads_total", "") >= 1, "{m}");
    // Records are made on the reactor: no I/O thread may write to a TLS socket.
    assert_eq!(metric(&m, "vireo_cold_sent_bytes_total", ""), 0);
}

#[test]
fn a_slow_reader_of_a_file_evicted_all_the_time_gets_every_byte_in_order() {
    let s = TestServer::start_with(METRICS, |root| write_cold(root, 13));
    if !evicted(&s) {
        return;
    }
    // A small receive window, so the socket fills again and again.
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    sock.set_recv_buffer_size(16 << 10).expect("rcvbuf");
    sock.connect(&s.addr.into()).expect("connect");
    let mut stream: std::net::TcpStream = sock.into();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    // Pages evicted all the time (as under memory pressure), so windows are cold when the
    // I/O thread meets the full socket.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let evictor = {
        let stop = stop.clone();
        let f = std::fs::File::open(s.dir.path().join("root/cold.bin")).expect("open");
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).expect("fadvise");
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        })
    };
    stream
        .write_all(b"GET /cold.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("send");
    // Read slowly: the socket is full most of the time. A connection handed back from its
    // I/O thread on a full socket must wait for room, not send the window straight back.
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = std::io::Read::read(&mut stream, &mut buf).expect("read");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    evictor.join().expect("evictor");
    let m = scrape(&s);
    let reads = metric(&m, "vireo_cold_reads_total", "");
    let sent = metric(&m, "vireo_cold_sent_bytes_total", "");
    let start = find(&got, b"\r\n\r\n").expect("head") + 4;
    assert!(
        got[start..] == pattern(SIZE, 13)[..],
        "the cold file came back different"
    );
    // The I/O threads' bytes and the reactor's interleaved in order (above), and the
    // windows were not handed back and forth without progress.
    assert!(sent > 0, "no window went out from an I/O thread");
    // And on average a hand-off moves at least 256 bytes: how many it takes depends on how
    // the reader and the evictor are scheduled (about 1,000 on an idle machine, 14,665 seen
    // with builds running beside the test, over the 2,000 this bound once was).
    let empty = metric(&m, "vireo_cold_empty_handoffs_total", "");
    assert!(
        reads < SIZE as u64 / 256,
        "{reads} cold windows handed out for {SIZE} bytes ({empty} found the socket full)"
    );
}

/// Socket descriptors the process holds now.
fn sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fds")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l.to_string_lossy().starts_with("socket:"))
        .count()
}

/// Issue 21: cold-window jobs are bounded per reactor and cancelled with their connection.
/// Behind a hung disk (every job waits 3 s), 48 clients ask for an evicted file and
/// reset at once: at most `MAX_COLD_JOBS` (32) jobs are ever handed over, and once the
/// connections are closed no socket duplicate is left with a job (the kernel would keep
/// those sockets open, without a FIN, until each job ran).
#[test]
fn cold_jobs_are_bounded_and_cancelled_with_their_connection() {
    let s = TestServer::start_logged(
        "warn",
        &[("VIREO_FAULT_COLD_DELAY_MS", "3000")],
        &format!("workers = 1\n{METRICS}"),
        |root| write_cold(root, 9),
    );
    if !evicted(&s) {
        return;
    }
    let pid = s.child.id();
    let idle = sockets(pid);
    let active = || metric(&scrape(&s), "vireo_connections_active", "");
    let mut clients = Vec::new();
    for _ in 0..48 {
        let mut c = std::net::TcpStream::connect(s.addr).expect("connect");
        c.write_all(b"GET /cold.bin HTTP/1.1\r\nHost: t\r\n\r\n")
            .expect("send");
        clients.push(c);
    }
    // Every request is in: its connection waits on a job or for a place.
    let start = std::time::Instant::now();
    while metric(&scrape(&s), "vireo_connections_accepted_total", "") < 48 {
        assert!(start.elapsed() < TIMEOUT, "requests never arrived");
        std::thread::yield_now();
    }
    let handed = metric(&scrape(&s), "vireo_cold_reads_total", "");
    assert!(
        (1..=32).contains(&handed),
        "{handed} cold jobs handed over at once"
    );
    for c in clients.drain(..) {
        socket2::SockRef::from(&c)
            .set_linger(Some(std::time::Duration::ZERO))
            .expect("linger");
        drop(c); // RST
    }
    let start = std::time::Instant::now();
    while active() > 0 {
        assert!(start.elapsed() < TIMEOUT, "connections never closed");
        std::thread::yield_now();
    }
    // Closed, and no duplicate left: the jobs still queued hold no socket.
    let left = sockets(pid);
    assert!(
        left <= idle + 1,
        "{left} sockets open after close, {idle} before"
    );
    // The waiting connections never got a job.
    assert_eq!(metric(&scrape(&s), "vireo_cold_reads_total", ""), handed);
    assert_eq!(get(s.addr, "/").status, 403, "still serving");
}

/// Issue 21: a small file (held in memory once read) that is not in the page cache is not
/// read on the reactor: it is sent from the file, its window read in on an I/O thread.
#[test]
fn a_cold_small_file_is_not_read_on_the_reactor() {
    const SMALL: usize = 8 << 10;
    let s = TestServer::start_with(METRICS, |root| {
        std::fs::write(root.join("thumb.bin"), pattern(SMALL, 3)).expect("write");
        write_cold(root, 1);
    });
    // Evict the small file, checked with the server's own probe (cachestat starts no
    // readahead, unlike a RWF_NOWAIT read, which could bring the file back meanwhile).
    let path = s.dir.path().join("root/thumb.bin");
    let f = std::fs::File::open(&path).expect("open");
    f.sync_all().expect("fsync");
    let mut cold = false;
    for _ in 0..50 {
        rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).expect("fadvise");
        if !vireo::offload::pagecache::resident(&f, 0, SMALL as u64) {
            cold = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    if !cold && !evicted(&s) {
        return; // the filesystem keeps pages (said by `evicted`)
    }
    let r = get(s.addr, "/thumb.bin");
    assert_eq!(r.status, 200);
    assert!(
        r.body == pattern(SMALL, 3),
        "the cold small file came back different"
    );
    let m = scrape(&s);
    assert!(
        metric(&m, "vireo_cold_reads_total", "") >= 1,
        "the cold small file was read on the reactor: {m}"
    );
}
