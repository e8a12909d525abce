use crate::support::*;

#[test]
fn small_file_bytes_and_headers() {
    let s = TestServer::start("");
    let r = get(s.addr, "/small.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello, vireo\n");
    assert_eq!(r.header("content-length"), Some("13"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.header("server"), Some("vireo"));
    assert!(r.header("date").is_some_and(|d| d.ends_with(" GMT")));
    assert!(r
        .header("last-modified")
        .is_some_and(|d| d.ends_with(" GMT")));
    assert!(r.header("etag").is_some_and(|e| e.starts_with('"')));
}

#[test]
fn multi_mib_file_is_byte_exact() {
    let data = pattern(5 * 1024 * 1024 + 7, 42);
    let d2 = data.clone();
    let s = TestServer::start_with("", move |root| {
        std::fs::write(root.join("big.bin"), &d2).expect("write");
    });
    let r = get(s.addr, "/big.bin");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.body.len(), data.len());
    assert!(r.body == data, "body differs");
}

#[test]
fn head_sends_get_headers_without_body() {
    let s = TestServer::start("");
    let mut c = s.connect();
    c.send(b"HEAD /small.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    let h = c.read_response_to(true);
    assert_eq!(h.status, 200);
    assert_eq!(h.header("content-length"), Some("13"));
    // The next response on the connection starts right after the head: no body was sent.
    let g = c.get("/small.txt");
    assert_eq!(g.body, b"hello, vireo\n");
}

#[test]
fn index_and_directory_redirect() {
    let s = TestServer::start("");
    assert_eq!(get(s.addr, "/").body, b"<h1>home</h1>\n");
    assert_eq!(get(s.addr, "/dir/").body, b"dir index\n");
    let r = get(s.addr, "/dir?x=1");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/dir/?x=1"));
    assert_eq!(get(s.addr, "/empty/").status, 403);
}

#[test]
fn percent_decoding_and_query() {
    let s = TestServer::start("");
    assert_eq!(get(s.addr, "/with%20space.txt").body, b"spaced\n");
    assert_eq!(get(s.addr, "/small.txt?v=3").status, 200);
    assert_eq!(get(s.addr, "/sm%61ll.txt").status, 200);
    assert_eq!(get(s.addr, "/nope.txt").status, 404);
}

#[test]
fn traversal_never_escapes_the_root() {
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::write(outside.path().join("secret.txt"), b"SECRET").expect("write");
    let target = outside.path().join("secret.txt");
    let target_dir = outside.path().to_path_buf();
    let s = TestServer::start_with("", move |root| {
        default_files(root);
        std::os::unix::fs::symlink(&target, root.join("link.txt")).expect("symlink");
        std::os::unix::fs::symlink(&target_dir, root.join("linkdir")).expect("symlink");
        std::os::unix::fs::symlink(root.join("small.txt"), root.join("inside.txt"))
            .expect("symlink");
    });
    // The config file sits one level above the root: try to reach it.
    for path in [
        "/../vireo.toml",
        "/%2e%2e/vireo.toml",
        "/%2E%2E/vireo.toml",
        "/dir/../../vireo.toml",
        "/dir/%2e%2e/%2e%2e/vireo.toml",
        "/..%2fvireo.toml",
        "/dir%2f..%2f..%2fvireo.toml",
        "/link.txt",
        "/linkdir/secret.txt",
        "/small.txt%00.html",
        "/../../../../etc/passwd",
    ] {
        let mut c = s.connect();
        c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let r = c.read_response();
        assert!(
            matches!(r.status, 400 | 403 | 404),
            "{path}: status {}",
            r.status
        );
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            !body.contains("SECRET") && !body.contains("listen"),
            "{path} leaked"
        );
    }
    // A symlink that stays inside the root is fine.
    assert_eq!(get(s.addr, "/inside.txt").body, b"hello, vireo\n");
}

#[test]
fn options_and_method_errors() {
    let s = TestServer::start("");
    let mut c = s.connect();
    c.send(b"OPTIONS /small.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 204);
    assert!(r
        .header("allow")
        .is_some_and(|a| a.contains("GET") && a.contains("HEAD")));
    c.send(b"DELETE /small.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 405);
    assert!(r.header("allow").is_some_and(|a| a.contains("GET")));
    c.send(b"BREW /small.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response().status, 501);
    // Still usable: none of these was a framing error.
    assert_eq!(c.get("/small.txt").status, 200);
}

#[test]
fn open_file_cache_check_trusts_a_hit_without_fstat_for_its_interval() {
    // check = "1h": hits within the hour skip the fstat, so an in-place edit (same inode,
    // new size) is not seen; with the default ("0s") the next test sees it at once.
    let s = TestServer::start("[open_file_cache]\nvalid = \"1h\"\ncheck = \"1h\"\n");
    let mut c = s.connect();
    assert_eq!(c.get("/small.txt").body, b"hello, vireo\n");
    std::fs::write(s.root().join("small.txt"), b"edited in place\n").expect("write");
    let r = c.get("/small.txt");
    assert_eq!(r.body, b"hello, vireo\n");
    assert_eq!(r.header("content-length"), Some("13"));
}

#[test]
fn open_file_cache_sees_in_place_edits_at_once_and_renames_after_valid() {
    let s = TestServer::start("[open_file_cache]\nvalid = \"300ms\"\n");
    let mut c = s.connect();
    assert_eq!(c.get("/small.txt").body, b"hello, vireo\n");
    // In place (same inode, new size): the cached fd's fstat shows it immediately.
    std::fs::write(s.root().join("small.txt"), b"edited in place\n").expect("write");
    assert_eq!(c.get("/small.txt").body, b"edited in place\n");
    // Replaced by rename (a new inode): seen once the entry is re-resolved.
    let tmp = s.root().join(".tmp");
    std::fs::write(&tmp, b"renamed over\n").expect("write");
    std::fs::rename(&tmp, s.root().join("small.txt")).expect("rename");
    let start = std::time::Instant::now();
    loop {
        let r = c.get("/small.txt");
        if r.body == b"renamed over\n" {
            break;
        }
        assert_eq!(r.body, b"edited in place\n");
        assert!(
            start.elapsed() < std::time::Duration::from_secs(3),
            "stale too long"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::fs::remove_file(s.root().join("small.txt")).expect("rm");
    let start = std::time::Instant::now();
    while c.get("/small.txt").status != 404 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(3),
            "deleted file still served"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn large_files_and_cached_small_files_agree_on_headers() {
    let big = pattern(100_000, 5);
    let s = TestServer::start_with("", move |root| {
        default_files(root);
        std::fs::write(root.join("big.bin"), &big).expect("write");
    });
    let mut c = s.connect();
    for _ in 0..3 {
        let r = c.get("/small.txt");
        assert_eq!(r.header("content-length"), Some("13"));
        assert_eq!(r.body, b"hello, vireo\n");
        let r = c.get("/big.bin");
        assert_eq!(r.body.len(), 100_000);
    }
}

#[test]
fn not_found_is_cached_only_when_asked_and_only_for_valid() {
    // Default: a file created after a 404 is served at once.
    let s = TestServer::start("");
    let mut c = s.connect();
    assert_eq!(c.get("/late.txt").status, 404);
    std::fs::write(s.root().join("late.txt"), b"late\n").expect("write");
    assert_eq!(c.get("/late.txt").body, b"late\n");

    // errors = true: the 404 is remembered, then re-checked after `valid`.
    let s = TestServer::start("[open_file_cache]\nerrors = true\nvalid = \"2s\"\n");
    let mut c = s.connect();
    assert_eq!(c.get("/late.txt").status, 404);
    std::fs::write(s.root().join("late.txt"), b"late\n").expect("write");
    assert_eq!(c.get("/late.txt").status, 404, "not found was not cached");
    let start = std::time::Instant::now();
    while c.get("/late.txt").status != 200 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(6),
            "cached 404 never expired"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
