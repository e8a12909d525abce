//! Directory listings (`autoindex = true`) are built on the offload pool, never on a
//! reactor: cached by the directory's identity and mtime, bounded by
//! `compression.max_pending`, and capped at 10,000 entries, dotfiles included.

use crate::support::*;
use std::path::Path;
use std::time::{Duration, SystemTime};

const METRICS: &str = "[metrics]\nlisten = \"127.0.0.1:0\"\n";

/// Set the directory's mtime: an hour ago and older is long settled, so a listing of it
/// may be cached (one changed in the last seconds is not).
fn set_mtime(dir: &Path, ago_secs: u64) {
    let t = SystemTime::now() - Duration::from_secs(ago_secs);
    std::fs::File::open(dir)
        .expect("open dir")
        .set_modified(t)
        .expect("set mtime");
}

fn listing_dir(root: &Path) {
    std::fs::create_dir(root.join("d")).expect("mkdir");
    std::fs::write(root.join("d/a.txt"), b"alpha").expect("write");
    std::fs::create_dir(root.join("d/sub")).expect("mkdir");
    set_mtime(&root.join("d"), 3600);
}

fn head(c: &mut Client, path: &str) -> Response {
    c.send(format!("HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    c.read_response_to(true)
}

fn page(r: &Response) -> String {
    String::from_utf8(r.body.clone()).expect("utf-8 page")
}

#[test]
fn a_listing_is_built_once_on_the_pool_then_served_from_the_cache() {
    let s = TestServer::start_with(
        &format!("autoindex = true\n[open_file_cache]\nvalid = \"1h\"\n{METRICS}"),
        listing_dir,
    );
    let first = get(s.addr, "/d/");
    assert_eq!(first.status, 200);
    assert_eq!(
        first.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let text = page(&first);
    assert!(
        text.contains("Index of /d/") && text.contains("href=\"a.txt\"") && text.contains("sub/"),
        "{text}"
    );
    // Another connection (maybe another reactor): the same page, from the shared cache.
    let mut c = s.connect();
    let second = c.get("/d/");
    assert_eq!(second.status, 200);
    assert_eq!(second.body, first.body);
    let h = head(&mut c, "/d/");
    assert_eq!(h.status, 200);
    assert_eq!(
        h.header("content-length"),
        Some(first.body.len().to_string().as_str())
    );
    assert_eq!(
        c.get("/d/a.txt").body,
        b"alpha",
        "the connection stays usable"
    );

    let m = scrape(&s);
    let jobs = |state: &str| {
        metric(
            &m,
            "vireo_listing_jobs_total",
            &format!("state=\"{state}\""),
        )
    };
    assert_eq!(jobs("started"), 1, "one render for three requests\n{m}");
    assert_eq!(jobs("completed"), 1, "{m}");
    assert_eq!(metric(&m, "vireo_listing_cache_hits_total", ""), 2, "{m}");
    assert!(metric(&m, "vireo_listing_cache_bytes", "") >= first.body.len() as u64);
}

#[test]
fn a_changed_directory_is_listed_anew() {
    let s = TestServer::start_with(
        &format!("autoindex = true\n[open_file_cache]\nvalid = \"1h\"\n{METRICS}"),
        listing_dir,
    );
    let d = s.root().join("d");
    let before = page(&get(s.addr, "/d/"));
    assert!(!before.contains("new.txt"), "{before}");
    assert_eq!(page(&get(s.addr, "/d/")), before, "cached");

    // The new entry moves the directory's mtime (here set explicitly, to a time long
    // enough ago that the new page is cached too).
    std::fs::write(d.join("new.txt"), b"n").expect("write");
    set_mtime(&d, 1800);
    let after = page(&get(s.addr, "/d/"));
    assert!(after.contains("href=\"new.txt\""), "{after}");
    assert_eq!(page(&get(s.addr, "/d/")), after);

    // Changed just now, mtime untouched: listed at once.
    std::fs::write(d.join("newer.txt"), b"n").expect("write");
    let now = page(&get(s.addr, "/d/"));
    assert!(now.contains("href=\"newer.txt\""), "{now}");

    let m = scrape(&s);
    assert_eq!(
        metric(&m, "vireo_listing_jobs_total", "state=\"started\""),
        3,
        "{m}"
    );
    assert_eq!(metric(&m, "vireo_listing_cache_hits_total", ""), 2, "{m}");
}

#[test]
fn dotfiles_count_toward_the_entry_cap() {
    let s = TestServer::start_with("autoindex = true\n", |root| {
        let d = root.join("many");
        std::fs::create_dir(&d).expect("mkdir");
        for i in 0..10_000 {
            std::fs::write(d.join(format!(".hidden{i}")), b"").expect("write");
        }
        for name in ["v1.txt", "v2.txt", "v3.txt"] {
            std::fs::write(d.join(name), b"v").expect("write");
        }
    });
    let r = get(s.addr, "/many/");
    assert_eq!(r.status, 200);
    let text = page(&r);
    assert!(
        text.contains("Listing truncated after 10000 entries"),
        "{} bytes, ends {:?}",
        text.len(),
        &text[text.len().saturating_sub(200)..]
    );
    assert!(!text.contains(".hidden"));
}

#[test]
fn a_full_pool_answers_a_listing_with_503_and_retry_after() {
    let s = TestServer::start_with(
        &format!("autoindex = true\n[compression]\nmax_pending = 0\n{METRICS}"),
        listing_dir,
    );
    let mut c = s.connect();
    let r = c.get("/d/");
    assert_eq!(r.status, 503, "{}", r.head);
    assert_eq!(r.header("retry-after"), Some("1"));
    let h = head(&mut c, "/d/");
    assert_eq!(h.status, 503);
    assert_eq!(h.header("retry-after"), Some("1"));
    // Framed like any response: the connection carries on.
    assert_eq!(c.get("/d/a.txt").body, b"alpha");
    let m = scrape(&s);
    assert_eq!(
        metric(&m, "vireo_listing_jobs_total", "state=\"rejected\""),
        2,
        "{m}"
    );
    assert_eq!(
        metric(&m, "vireo_listing_jobs_total", "state=\"started\""),
        0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "vireo_responses_total", "class=\"5xx\""),
        2,
        "{m}"
    );
}

#[test]
fn listings_need_no_compression() {
    let s = TestServer::start_with(
        &format!("autoindex = true\n[compression]\nenabled = false\n{METRICS}"),
        listing_dir,
    );
    let r = get(s.addr, "/d/");
    assert_eq!(r.status, 200);
    assert!(page(&r).contains("href=\"a.txt\""));
    let m = scrape(&s);
    assert_eq!(
        metric(&m, "vireo_listing_jobs_total", "state=\"completed\""),
        1,
        "{m}"
    );
    assert!(!m.contains("vireo_compression_jobs_total"), "{m}");
}
