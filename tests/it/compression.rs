use crate::support::*;
use std::io::Read;

pub fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

/// Compressible text: words from a small vocabulary, deterministic.
pub fn text(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "vireo ",
        "reactor ",
        "epoll ",
        "sendfile ",
        "keep-alive ",
        "{\"id\": ",
        "42, ",
        "\"name\": \"",
        "\"}, ",
        "\n",
        "gzip ",
        "nginx ",
        "the ",
        "of ",
        "and ",
    ];
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(WORDS[(x % WORDS.len() as u64) as usize].as_bytes());
        if x % 7 == 0 {
            out.extend_from_slice(format!("{:x} ", x >> 40).as_bytes());
        }
    }
    out.truncate(len);
    out
}

pub fn request(c: &mut Client, method: &str, path: &str, extra: &str) -> Response {
    c.send(format!("{method} {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n").as_bytes());
    c.read_response_to(method == "HEAD")
}

pub fn server_with(extra: &str, files: Vec<(&'static str, Vec<u8>)>) -> TestServer {
    TestServer::start_with(extra, move |root| {
        default_files(root);
        for (name, data) in &files {
            std::fs::write(root.join(name), data).expect("write");
        }
    })
}

#[test]
fn gzip_body_decompresses_to_the_file_with_the_right_headers() {
    let data = text(200_000, 1);
    let s = server_with("", vec![("data.json", data.clone())]);
    let mut c = s.connect();
    let r = request(
        &mut c,
        "GET",
        "/data.json",
        "Accept-Encoding: gzip, deflate\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str())
    );
    assert!(r.body.len() < data.len() / 2);
    assert!(gunzip(&r.body) == data);
    let gz_etag = r.header("etag").expect("etag").to_string();

    // Identity for the same resource: Vary too, and a different ETag.
    let r = request(&mut c, "GET", "/data.json", "");
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    assert!(r.body == data);
    assert_ne!(r.header("etag"), Some(gz_etag.as_str()));

    // The cached variant answers a conditional request with its own tag.
    let r = request(
        &mut c,
        "GET",
        "/data.json",
        &format!("Accept-Encoding: gzip\r\nIf-None-Match: {gz_etag}\r\n"),
    );
    assert_eq!(r.status, 304);
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
}

#[test]
fn q_zero_and_identity_are_honoured() {
    let data = text(50_000, 2);
    let s = server_with("", vec![("a.txt", data.clone())]);
    let mut c = s.connect();
    for ae in [
        "gzip;q=0",
        "identity",
        "deflate",
        "*;q=0, identity",
        "gzip;q=0, zstd;q=0, br;q=0, *;q=0.5",
    ] {
        let r = request(
            &mut c,
            "GET",
            "/a.txt",
            &format!("Accept-Encoding: {ae}\r\n"),
        );
        assert_eq!(r.header("content-encoding"), None, "{ae}");
        assert!(r.body == data, "{ae}");
    }
    // `*` takes the server's first choice (compression.codings: zstd, br, gzip).
    let r = request(&mut c, "GET", "/a.txt", "Accept-Encoding: *\r\n");
    assert_eq!(r.header("content-encoding"), Some("zstd"));
}

#[test]
fn head_announces_exactly_what_get_sends() {
    let data = text(100_000, 3);
    let s = server_with("", vec![("a.js", data)]);
    let mut c = s.connect();
    let h = request(&mut c, "HEAD", "/a.js", "Accept-Encoding: gzip\r\n");
    let g = request(&mut c, "GET", "/a.js", "Accept-Encoding: gzip\r\n");
    for name in [
        "content-length",
        "content-encoding",
        "etag",
        "vary",
        "content-type",
    ] {
        assert_eq!(h.header(name), g.header(name), "{name}");
    }
    assert!(h.body.is_empty());
}

#[test]
fn small_or_binary_files_are_not_compressed() {
    let s = server_with(
        "",
        vec![("tiny.txt", b"tiny".to_vec()), ("bin.bin", text(10_000, 4))],
    );
    let mut c = s.connect();
    let r = request(&mut c, "GET", "/tiny.txt", "Accept-Encoding: gzip\r\n");
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.header("vary"), None);
    let r = request(&mut c, "GET", "/bin.bin", "Accept-Encoding: gzip\r\n");
    assert_eq!(r.header("content-encoding"), None);
}

#[test]
fn a_modified_file_is_never_served_stale_from_the_cache() {
    let s = server_with("", vec![("c.txt", text(30_000, 5))]);
    let mut c = s.connect();
    let r = request(&mut c, "GET", "/c.txt", "Accept-Encoding: gzip\r\n");
    assert!(gunzip(&r.body) == text(30_000, 5));
    // Same size, new content and mtime: the key (inode, size, mtime) changes.
    let newer = text(30_000, 6);
    let path = s.root().join("c.txt");
    std::fs::write(&path, &newer).expect("rewrite");
    let f = std::fs::File::options()
        .write(true)
        .open(&path)
        .expect("open");
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .expect("mtime");
    let r = request(&mut c, "GET", "/c.txt", "Accept-Encoding: gzip\r\n");
    assert!(gunzip(&r.body) == newer);
}

#[test]
fn precompressed_sidecar_is_served_as_is() {
    let data = text(20_000, 7);
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut enc, &data).expect("gz");
    let gz = enc.finish().expect("gz");
    let gz2 = gz.clone();
    let s = TestServer::start_with("", move |root| {
        std::fs::write(root.join("p.css"), &data).expect("write");
        std::fs::write(root.join("p.css.gz"), &gz2).expect("write");
    });
    let mut c = s.connect();
    let r = request(&mut c, "GET", "/p.css", "Accept-Encoding: gzip\r\n");
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert!(r.body == gz, "sidecar bytes expected");
}

#[test]
fn range_requests_get_identity_bytes() {
    let data = text(40_000, 8);
    let s = server_with("", vec![("r.txt", data.clone())]);
    let mut c = s.connect();
    let r = request(
        &mut c,
        "GET",
        "/r.txt",
        "Accept-Encoding: gzip\r\nRange: bytes=100-199\r\n",
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.body, &data[100..200]);
}

#[test]
fn the_loop_answers_others_while_a_big_file_is_compressed() {
    // One reactor, no cache: the gzip of a large file runs on the pool while the same
    // reactor answers another connection.
    let big = text(12 << 20, 9);
    let s = server_with(
        "workers = 1\n[compression]\ncache_bytes = 0\nlevel = 9\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
        vec![("big.txt", big.clone())],
    );
    let mut slow = s.connect();
    // Compression runs at nice +10 on one thread: on a loaded CI box it may take a while.
    slow.stream
        .set_read_timeout(Some(std::time::Duration::from_secs(120)))
        .expect("timeout");
    slow.send(b"GET /big.txt HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n");
    // Wait until the job is running on the pool.
    let start = std::time::Instant::now();
    while metric(&scrape(&s), "vireo_compression_jobs_pending", "") != 1 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "job never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let mut fast = s.connect();
    let r = fast.get("/small.txt");
    assert_eq!(r.body, b"hello, vireo\n");
    // The compressed response has not started yet: nothing readable on `slow`.
    slow.stream.set_nonblocking(true).expect("nonblocking");
    let mut b = [0u8; 1];
    let pending =
        matches!(slow.stream.peek(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    slow.stream.set_nonblocking(false).expect("blocking");
    assert!(
        pending,
        "the gzip response arrived before the small file was answered"
    );
    let r = slow.read_response();
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert!(gunzip(&r.body) == big);
}

#[test]
fn a_client_gone_while_its_gzip_is_made_is_logged_as_499() {
    // One reactor, no cache, level 9: the job runs long enough for the client to leave.
    let big = text(12 << 20, 10);
    let s = server_with(
        "workers = 1\n[log]\naccess = \"access.log\"\n\
         [compression]\ncache_bytes = 0\nlevel = 9\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
        vec![("big.txt", big)],
    );
    let log = s.dir.path().join("access.log");
    let mut c = s.connect();
    c.send(b"GET /big.txt HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n");
    let wait = |what: &str, done: &mut dyn FnMut() -> bool| {
        let start = std::time::Instant::now();
        while !done() {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(60),
                "{what}"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    };
    wait("job never started", &mut || {
        metric(&scrape(&s), "vireo_compression_jobs_pending", "") == 1
    });
    // Reset, not FIN: a half-closed client may still want the answer.
    socket2::SockRef::from(&c.stream)
        .set_linger(Some(std::time::Duration::ZERO))
        .expect("linger");
    drop(c);
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    wait("no 499 line", &mut || {
        read().contains("\"GET /big.txt HTTP/1.1\" 499 0 ")
    });
    assert!(
        metric(&scrape(&s), "vireo_responses_total", "class=\"4xx\"") >= 1,
        "499 not counted"
    );
    // The job still completes (its result is dropped): no second line for the request.
    wait("job never finished", &mut || {
        metric(&scrape(&s), "vireo_compression_jobs_pending", "") == 0
    });
    assert_eq!(get(s.addr, "/small.txt").status, 200);
    wait("later request not logged", &mut || {
        read().contains("/small.txt")
    });
    assert_eq!(read().matches("/big.txt").count(), 1, "{}", read());
}

/// A compression job that fails (the file shrank after the open-file cache trusted its
/// size: the job's read ends early) answers 500 with a close; to a HEAD that is the head
/// only, never the error page after it.
#[test]
fn a_failed_job_answers_head_with_a_head_only() {
    let body = text(100_000, 12);
    let s = server_with(
        "workers = 1\n[open_file_cache]\nvalid = \"60s\"\ncheck = \"60s\"\n",
        vec![("shrinks.txt", body.clone())],
    );
    let mut c = s.connect();
    // Identity first: the one reactor's cache now trusts the 100,000 bytes for a minute.
    let r = c.get("/shrinks.txt");
    assert_eq!((r.status, r.body.len()), (200, body.len()));
    std::fs::OpenOptions::new()
        .write(true)
        .open(s.root().join("shrinks.txt"))
        .and_then(|f| f.set_len(10))
        .expect("truncate in place");
    let r = request(&mut c, "HEAD", "/shrinks.txt", "Accept-Encoding: gzip\r\n");
    assert_eq!(r.status, 500, "{}", r.head);
    assert_eq!(r.header("connection"), Some("close"), "{}", r.head);
    let rest = c.read_to_close();
    assert!(
        rest.is_empty(),
        "a HEAD got a body: {:?}",
        String::from_utf8_lossy(&rest)
    );
}
