//! The loop never waits on a disk: a file whose pages are not in the page cache is read in
//! on the offload pool before sendfile touches it (`send::Cold`), and served byte for byte.

use crate::support::*;
use std::path::Path;

const METRICS: &str = "[metrics]\nlisten = \"127.0.0.1:0\"\n";
const SIZE: usize = 6 << 20;

/// Drop `path`'s pages from the page cache; false if they stay (a filesystem that keeps
/// them, like tmpfs: then there is nothing to test). Checked with a RWF_NOWAIT read of the
/// file's last byte only: that read starts readahead around the page it probes, so it must
/// not touch the first page of a window the server will probe (every 2 MiB from 0).
fn evict(path: &Path) -> bool {
    let f = std::fs::File::open(path).expect("open");
    f.sync_all().expect("fsync");
    for _ in 0..50 {
        rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).expect("fadvise");
        let mut b = [0u8; 1];
        let mut bufs = [std::io::IoSliceMut::new(&mut b)];
        let last = SIZE as u64 - 1;
        let r = rustix::io::preadv2(&f, &mut bufs, last, rustix::io::ReadWriteFlags::NOWAIT);
        if matches!(r, Err(rustix::io::Errno::AGAIN)) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    false
}

#[test]
fn an_evicted_file_is_read_in_on_the_pool_and_served_whole() {
    let body = pattern(SIZE, 5);
    let s = TestServer::start_with(METRICS, |root| {
        std::fs::write(root.join("cold.bin"), &body).expect("write");
    });
    let path = s.dir.path().join("root/cold.bin");
    if !evict(&path) {
        eprintln!("note: this filesystem keeps evicted pages; cold-read test skipped");
        return;
    }
    let r = get(s.addr, "/cold.bin");
    assert_eq!(r.status, 200);
    assert!(r.body == body, "the cold file came back different");
    let m = scrape(&s);
    // 6 MiB in 2 MiB windows: the first window at least was found cold.
    let reads = metric(&m, "vireo_cold_reads_total", "");
    assert!(reads >= 1, "no read was offloaded: {m}");
    assert!(metric(&m, "vireo_cold_read_seconds_count", "") >= 1);
    // Once resident, the same file is sent without the pool.
    let r = get(s.addr, "/cold.bin");
    assert!(r.status == 200 && r.body == body);
    assert_eq!(metric(&scrape(&s), "vireo_cold_reads_total", ""), reads);
}

#[test]
fn ranges_of_an_evicted_file_are_read_in_too() {
    let body = pattern(SIZE, 9);
    let s = TestServer::start_with(METRICS, |root| {
        std::fs::write(root.join("cold.bin"), &body).expect("write");
    });
    let path = s.dir.path().join("root/cold.bin");
    if !evict(&path) {
        eprintln!("note: this filesystem keeps evicted pages; cold-read test skipped");
        return;
    }
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
    assert!(metric(&scrape(&s), "vireo_cold_reads_total", "") >= 2);
}

#[test]
fn with_cold_reads_off_the_page_cache_is_trusted() {
    let body = pattern(SIZE, 3);
    let extra = format!("{METRICS}[open_file_cache]\ncold_reads = false\n");
    let s = TestServer::start_with(&extra, |root| {
        std::fs::write(root.join("cold.bin"), &body).expect("write");
    });
    let path = s.dir.path().join("root/cold.bin");
    if !evict(&path) {
        eprintln!("note: this filesystem keeps evicted pages; cold-read test skipped");
        return;
    }
    let r = get(s.addr, "/cold.bin");
    assert!(r.status == 200 && r.body == body);
    assert_eq!(metric(&scrape(&s), "vireo_cold_reads_total", ""), 0);
}
