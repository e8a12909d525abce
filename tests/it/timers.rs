//! Timer memory is O(connections), not O(requests): a connection changing its wait class on
//! every request (head in two segments: Header, then KeepAlive) keeps one entry per class.

use crate::support::*;
use std::io::Write;
use std::time::Duration;

/// `per_conn` keep-alive requests on each of 16 connections, every head in two segments.
fn split_head_load(s: &TestServer, per_conn: usize) {
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let addr = s.addr;
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                c.stream.set_nodelay(true).expect("nodelay");
                for _ in 0..per_conn {
                    c.stream
                        .write_all(b"GET /small.txt HTTP/1.1\r\nHo")
                        .expect("send");
                    // Load shape, not synchronisation: the server sees the halves apart.
                    std::thread::sleep(Duration::from_micros(500));
                    c.send(b"st: t\r\n\r\n");
                    let r = c.read_response();
                    assert_eq!(r.status, 200);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
}

#[test]
fn timer_entries_and_rss_stay_flat_under_split_heads() {
    let s = TestServer::start("[metrics]\nlisten = \"127.0.0.1:0\"\n");
    split_head_load(&s, 125);
    let before = rss_kib(s.child.id());
    split_head_load(&s, 2000);
    let after = rss_kib(s.child.id());
    let text = scrape(&s);
    assert!(
        text.contains("\nvireo_timer_entries{"),
        "no timer gauge in {text}"
    );
    // 17 connections (16 + the scrape), at most one entry per class each, plus the
    // compaction slack of two reactors.
    let entries = metric(&text, "vireo_timer_entries", "");
    assert!(
        entries <= 400,
        "{entries} timer entries after 32,000 requests"
    );
    assert!(
        after <= before + 1024,
        "RSS grew from {before} KiB to {after} KiB over 32,000 requests"
    );
}
