//! HTTP semantics over real TCP: conditional requests, ranges, If-Range, OPTIONS and
//! refused methods, Expect: 100-continue, percent-encoding, and the configurable parts
//! (error pages, per-path headers, directory listings).

use crate::support::*;
use std::path::Path;
use std::time::{Duration, SystemTime};

const LEN: usize = 1000;

/// A 1000-byte file last modified in 2020 (so Last-Modified is a strong validator), a
/// UTF-8 name, and the default files.
fn files(root: &Path) {
    default_files(root);
    let data = pattern(LEN, 7);
    std::fs::write(root.join("data.bin"), &data).expect("write");
    set_mtime(
        &root.join("data.bin"),
        SystemTime::UNIX_EPOCH + secs(1_600_000_000),
    );
    std::fs::write(root.join("été.txt"), b"summer\n").expect("write");
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn data() -> Vec<u8> {
    pattern(LEN, 7)
}

/// One request with extra header lines on this connection.
fn req(c: &mut Client, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: t\r\n");
    for (n, v) in headers {
        r.push_str(&format!("{n}: {v}\r\n"));
    }
    r.push_str("\r\n");
    c.send(r.as_bytes());
    c.read_response_to(method == "HEAD")
}

fn get_with(c: &mut Client, path: &str, headers: &[(&str, &str)]) -> Response {
    req(c, "GET", path, headers)
}

fn hdr<'a>(r: &'a Response, name: &str) -> &'a str {
    r.header(name)
        .unwrap_or_else(|| panic!("no {name} in {}", r.head))
}

fn http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

// ---------------------------------------------------------------------------------------
// Conditional requests
// ---------------------------------------------------------------------------------------

#[test]
fn if_none_match_gives_304_with_validators_and_no_body() {
    let s = TestServer::start_with("", files);
    let mut c = s.connect();
    let full = c.get("/data.bin");
    assert_eq!(full.status, 200);
    let etag = hdr(&full, "etag").to_string();
    let lm = hdr(&full, "last-modified").to_string();
    assert!(etag.starts_with('"') && !etag.starts_with("W/"), "{etag}");

    let weak = format!("W/{etag}");
    let list = format!("\"nope\", {etag}, \"other\"");
    for inm in [etag.as_str(), "*", weak.as_str(), list.as_str()] {
        let r = get_with(&mut c, "/data.bin", &[("If-None-Match", inm)]);
        assert_eq!(r.status, 304, "If-None-Match: {inm}");
        assert_eq!(hdr(&r, "etag"), etag);
        assert_eq!(hdr(&r, "last-modified"), lm);
        assert!(hdr(&r, "date").ends_with(" GMT"));
        assert!(r.body.is_empty());
        assert!(r.header("content-range").is_none());
    }
    // No body was sent after any 304: the connection is still in sync.
    let r = get_with(
        &mut c,
        "/data.bin",
        &[("If-None-Match", "\"nope\", W/\"x\"")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, data());
    // HEAD is conditional too.
    let r = req(&mut c, "HEAD", "/data.bin", &[("If-None-Match", &etag)]);
    assert_eq!(r.status, 304);
    assert_eq!(c.get("/small.txt").body, b"hello, vireo\n");
}

#[test]
fn if_modified_since() {
    let s = TestServer::start_with("", files);
    let mut c = s.connect();
    let lm = hdr(&c.get("/data.bin"), "last-modified").to_string();
    let later = http_date(SystemTime::UNIX_EPOCH + secs(1_600_000_000 + 86_400));
    let earlier = http_date(SystemTime::UNIX_EPOCH + secs(1_600_000_000 - 1));
    assert_eq!(
        get_with(&mut c, "/data.bin", &[("If-Modified-Since", &lm)]).status,
        304
    );
    assert_eq!(
        get_with(&mut c, "/data.bin", &[("If-Modified-Since", &later)]).status,
        304
    );
    let r = get_with(&mut c, "/data.bin", &[("If-Modified-Since", &earlier)]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, data());
    // Not a date: ignored.
    assert_eq!(
        get_with(&mut c, "/data.bin", &[("If-Modified-Since", "yesterday")]).status,
        200
    );
    // If-None-Match present (and not matching): If-Modified-Since is ignored.
    let r = get_with(
        &mut c,
        "/data.bin",
        &[("If-None-Match", "\"other\""), ("If-Modified-Since", &lm)],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), LEN);
}

#[test]
fn if_match_and_if_unmodified_since_fail_with_412() {
    let s = TestServer::start_with("", files);
    let mut c = s.connect();
    let full = c.get("/data.bin");
    let etag = hdr(&full, "etag").to_string();
    let lm = hdr(&full, "last-modified").to_string();
    let weak = format!("W/{etag}");
    for im in ["\"nope\"", weak.as_str()] {
        let r = get_with(&mut c, "/data.bin", &[("If-Match", im)]);
        assert_eq!(r.status, 412, "If-Match: {im} (strong comparison)");
        assert!(r.header("content-length").is_some());
    }
    let list = format!("\"a\", {etag}");
    for im in [etag.as_str(), "*", list.as_str()] {
        assert_eq!(
            get_with(&mut c, "/data.bin", &[("If-Match", im)]).status,
            200,
            "If-Match: {im}"
        );
    }
    let earlier = http_date(SystemTime::UNIX_EPOCH + secs(1_600_000_000 - 60));
    assert_eq!(
        get_with(&mut c, "/data.bin", &[("If-Unmodified-Since", &earlier)]).status,
        412
    );
    assert_eq!(
        get_with(&mut c, "/data.bin", &[("If-Unmodified-Since", &lm)]).status,
        200
    );
    // If-Match wins over If-Unmodified-Since.
    assert_eq!(
        get_with(
            &mut c,
            "/data.bin",
            &[("If-Match", &etag), ("If-Unmodified-Since", &earlier)]
        )
        .status,
        200
    );
    // 412 is evaluated before Range.
    assert_eq!(
        get_with(
            &mut c,
            "/data.bin",
            &[("If-Match", "\"nope\""), ("Range", "bytes=0-1")]
        )
        .status,
        412
    );
}

// ---------------------------------------------------------------------------------------
// Ranges
// ---------------------------------------------------------------------------------------

#[test]
fn single_ranges() {
    let s = TestServer::start_with("", files);
    let d = data();
    let mut c = s.connect();
    for (spec, start, end) in [
        ("bytes=0-99", 0, 99),
        ("bytes=990-", 990, 999),
        ("bytes=-10", 990, 999),
        ("bytes=500-500", 500, 500),
        ("bytes=900-5000", 900, 999),
        ("bytes=-5000", 0, 999),
        ("BYTES = 3-4", 3, 4),
    ] {
        let r = get_with(&mut c, "/data.bin", &[("Range", spec)]);
        assert_eq!(r.status, 206, "{spec}");
        assert_eq!(
            hdr(&r, "content-range"),
            format!("bytes {start}-{end}/{LEN}"),
            "{spec}"
        );
        assert_eq!(
            hdr(&r, "content-length"),
            (end - start + 1).to_string(),
            "{spec}"
        );
        assert_eq!(hdr(&r, "content-type"), "application/octet-stream");
        assert!(r.header("etag").is_some() && r.header("last-modified").is_some());
        assert_eq!(r.body, &d[start..=end], "{spec}");
    }
    // A small (inline-cached) file too.
    let r = get_with(&mut c, "/small.txt", &[("Range", "bytes=7-")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, b"vireo\n");
}

#[test]
fn unsatisfiable_range_is_416_with_star_content_range() {
    let s = TestServer::start_with("", files);
    let mut c = s.connect();
    for spec in [
        "bytes=1000-",
        "bytes=5000-6000",
        "bytes=-0",
        "bytes=1000-1001, 2000-",
    ] {
        let r = get_with(&mut c, "/data.bin", &[("Range", spec)]);
        assert_eq!(r.status, 416, "{spec}");
        assert_eq!(hdr(&r, "content-range"), format!("bytes */{LEN}"));
        assert_eq!(
            hdr(&r, "content-length").parse::<usize>().unwrap(),
            r.body.len()
        );
    }
    // One satisfiable range among unsatisfiable ones is enough.
    let r = get_with(&mut c, "/data.bin", &[("Range", "bytes=5000-, 0-1")]);
    assert_eq!(r.status, 206);
    assert_eq!(hdr(&r, "content-range"), format!("bytes 0-1/{LEN}"));
    assert_eq!(c.get("/small.txt").status, 200);
}

/// Parse a multipart/byteranges body into (content-type, start, end, bytes) parts,
/// asserting the framing is exact (nothing before the first boundary or after the last).
fn parse_multipart(body: &[u8], boundary: &str) -> Vec<(String, usize, usize, Vec<u8>)> {
    let delim = format!("--{boundary}");
    let mut rest = body
        .strip_prefix(delim.as_bytes())
        .expect("body starts with the boundary");
    let mut parts = Vec::new();
    loop {
        if let Some(r) = rest.strip_prefix(b"--\r\n") {
            assert!(r.is_empty(), "bytes after the close delimiter");
            return parts;
        }
        rest = rest.strip_prefix(b"\r\n").expect("CRLF after boundary");
        let end = find(rest, b"\r\n\r\n").expect("part head");
        let head = std::str::from_utf8(&rest[..end]).expect("ascii");
        rest = &rest[end + 4..];
        let mut ctype = String::new();
        let mut range = None;
        for line in head.split("\r\n") {
            let (n, v) = line.split_once(':').expect("part header");
            let v = v.trim();
            if n.eq_ignore_ascii_case("content-type") {
                ctype = v.to_string();
            } else if n.eq_ignore_ascii_case("content-range") {
                let v = v.strip_prefix("bytes ").expect("bytes unit");
                let (se, total) = v.split_once('/').expect("slash");
                assert_eq!(total, LEN.to_string());
                let (s, e) = se.split_once('-').expect("dash");
                range = Some((s.parse::<usize>().unwrap(), e.parse::<usize>().unwrap()));
            }
        }
        let (s, e) = range.expect("part Content-Range");
        let n = e - s + 1;
        parts.push((ctype, s, e, rest[..n].to_vec()));
        rest = rest[n..]
            .strip_prefix(b"\r\n")
            .and_then(|r| r.strip_prefix(delim.as_bytes()))
            .expect("CRLF and boundary after part data");
    }
}

fn boundary_of(r: &Response) -> String {
    let ct = hdr(r, "content-type");
    let b = ct
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap_or_else(|| panic!("content-type {ct}"));
    b.trim_matches('"').to_string()
}

#[test]
fn multiple_ranges_are_multipart_byteranges() {
    let s = TestServer::start_with("", files);
    let d = data();
    let mut c = s.connect();
    let r = get_with(&mut c, "/data.bin", &[("Range", "bytes=0-9, 20-29, -5")]);
    assert_eq!(r.status, 206);
    assert!(r.header("content-range").is_none());
    // read_response read exactly Content-Length bytes; the next response must parse.
    assert_eq!(
        hdr(&r, "content-length").parse::<usize>().unwrap(),
        r.body.len()
    );
    let parts = parse_multipart(&r.body, &boundary_of(&r));
    let want = [(0, 9), (20, 29), (995, 999)];
    assert_eq!(parts.len(), want.len());
    for ((ct, s, e, bytes), (ws, we)) in parts.iter().zip(want) {
        assert_eq!((*s, *e), (ws, we));
        assert_eq!(ct, "application/octet-stream");
        assert_eq!(bytes, &d[ws..=we]);
    }
    assert_eq!(c.get("/small.txt").body, b"hello, vireo\n");

    // Overlapping ranges are coalesced: here into one part, which is a plain 206.
    let r = get_with(
        &mut c,
        "/data.bin",
        &[("Range", "bytes=0-50, 20-80, 81-90")],
    );
    assert_eq!(r.status, 206);
    assert_eq!(hdr(&r, "content-range"), format!("bytes 0-90/{LEN}"));
    assert_eq!(r.body, &d[..=90]);
    // ... and here into two parts, in ascending order.
    let r = get_with(
        &mut c,
        "/data.bin",
        &[("Range", "bytes=500-510, 0-10, 5-20")],
    );
    assert_eq!(r.status, 206);
    let parts = parse_multipart(&r.body, &boundary_of(&r));
    let got: Vec<(usize, usize)> = parts.iter().map(|p| (p.1, p.2)).collect();
    assert_eq!(got, [(0, 20), (500, 510)]);
    assert_eq!(parts[1].3, &d[500..=510]);

    // HEAD: the same head (exact Content-Length), no body.
    let g = get_with(&mut c, "/data.bin", &[("Range", "bytes=0-1,3-4")]);
    let h = req(&mut c, "HEAD", "/data.bin", &[("Range", "bytes=0-1,3-4")]);
    assert_eq!(h.status, 206);
    assert_eq!(hdr(&h, "content-length"), hdr(&g, "content-length"));
    assert_eq!(hdr(&h, "content-type"), hdr(&g, "content-type"));
    assert_eq!(c.get("/small.txt").body, b"hello, vireo\n");
}

#[test]
fn ignored_ranges_give_200() {
    let s = TestServer::start_with("", files);
    let mut c = s.connect();
    let many: Vec<String> = (0..17)
        .map(|i| format!("{}-{}", i * 10, i * 10 + 1))
        .collect();
    let many = format!("bytes={}", many.join(","));
    for spec in [
        many.as_str(),
        "items=0-5",
        "bytes=abc",
        "bytes=10-5",
        "bytes=",
        "bytes=1-2-3",
        "0-5",
        "bytes=--5",
    ] {
        let r = get_with(&mut c, "/data.bin", &[("Range", spec)]);
        assert_eq!(r.status, 200, "{spec}");
        assert_eq!(r.body.len(), LEN, "{spec}");
        assert!(r.header("content-range").is_none());
    }
    // Sixteen ranges are still honoured.
    let sixteen: Vec<String> = (0..16)
        .map(|i| format!("{}-{}", i * 10, i * 10 + 1))
        .collect();
    let r = get_with(
        &mut c,
        "/data.bin",
        &[("Range", &format!("bytes={}", sixteen.join(",")))],
    );
    assert_eq!(r.status, 206);
    assert_eq!(parse_multipart(&r.body, &boundary_of(&r)).len(), 16);
}

#[test]
fn head_with_range() {
    let s = TestServer::start_with("", files);
    let mut c = s.connect();
    let r = req(&mut c, "HEAD", "/data.bin", &[("Range", "bytes=10-19")]);
    assert_eq!(r.status, 206);
    assert_eq!(hdr(&r, "content-range"), format!("bytes 10-19/{LEN}"));
    assert_eq!(hdr(&r, "content-length"), "10");
    let r = req(&mut c, "HEAD", "/data.bin", &[("Range", "bytes=5000-")]);
    assert_eq!(r.status, 416);
    assert_eq!(hdr(&r, "content-range"), format!("bytes */{LEN}"));
    // Nothing followed either head.
    assert_eq!(c.get("/small.txt").body, b"hello, vireo\n");
}

#[test]
fn if_range_with_entity_tags() {
    let s = TestServer::start_with("", files);
    let d = data();
    let mut c = s.connect();
    let etag = hdr(&c.get("/data.bin"), "etag").to_string();
    let r = get_with(
        &mut c,
        "/data.bin",
        &[("Range", "bytes=0-9"), ("If-Range", &etag)],
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &d[..10]);
    let weak = format!("W/{etag}");
    for ir in ["\"other\"", weak.as_str()] {
        let r = get_with(
            &mut c,
            "/data.bin",
            &[("Range", "bytes=0-9"), ("If-Range", ir)],
        );
        assert_eq!(r.status, 200, "If-Range: {ir}");
        assert_eq!(r.body, d);
    }
}

#[test]
fn if_range_with_a_date_needs_a_strong_last_modified() {
    let s = TestServer::start_with("", |root| {
        files(root);
        // Modified "now" (in the future, to be independent of test timing): Last-Modified
        // is within a second of Date or after it, so it is a weak validator.
        std::fs::write(root.join("fresh.bin"), pattern(LEN, 7)).expect("write");
        set_mtime(
            &root.join("fresh.bin"),
            SystemTime::now() + Duration::from_secs(3600),
        );
    });
    let d = data();
    let mut c = s.connect();
    let lm = hdr(&c.get("/data.bin"), "last-modified").to_string();
    let r = get_with(
        &mut c,
        "/data.bin",
        &[("Range", "bytes=0-9"), ("If-Range", &lm)],
    );
    assert_eq!(r.status, 206, "old file, exact date");
    assert_eq!(r.body, &d[..10]);
    let other = http_date(SystemTime::UNIX_EPOCH + secs(1_600_000_000 + 1));
    let r = get_with(
        &mut c,
        "/data.bin",
        &[("Range", "bytes=0-9"), ("If-Range", &other)],
    );
    assert_eq!(r.status, 200, "date differs");
    assert_eq!(r.body, d);
    let r = get_with(
        &mut c,
        "/data.bin",
        &[("Range", "bytes=0-9"), ("If-Range", "junk")],
    );
    assert_eq!(r.status, 200, "unparseable If-Range");

    let fresh_lm = hdr(&c.get("/fresh.bin"), "last-modified").to_string();
    let r = get_with(
        &mut c,
        "/fresh.bin",
        &[("Range", "bytes=0-9"), ("If-Range", &fresh_lm)],
    );
    assert_eq!(
        r.status, 200,
        "weak Last-Modified must not satisfy If-Range"
    );
    assert_eq!(r.body, d);
    // The entity-tag form still works for that file.
    let etag = hdr(&c.get("/fresh.bin"), "etag").to_string();
    let r = get_with(
        &mut c,
        "/fresh.bin",
        &[("Range", "bytes=0-9"), ("If-Range", &etag)],
    );
    assert_eq!(r.status, 206);
}

// ---------------------------------------------------------------------------------------
// Methods and Expect
// ---------------------------------------------------------------------------------------

#[test]
fn options_and_refused_methods() {
    let s = TestServer::start_with("", files);
    let mut c = s.connect();
    for target in ["/data.bin", "*", "/nope"] {
        let r = req(&mut c, "OPTIONS", target, &[]);
        assert_eq!(r.status, 204, "OPTIONS {target}");
        assert_eq!(hdr(&r, "allow"), "GET, HEAD, OPTIONS");
        assert!(r.body.is_empty());
    }
    for (method, target) in [
        ("TRACE", "/data.bin"),
        ("CONNECT", "example.com:443"),
        ("POST", "/data.bin"),
        ("PUT", "/x"),
    ] {
        let r = req(&mut c, method, target, &[]);
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(hdr(&r, "allow"), "GET, HEAD, OPTIONS");
        // TRACE must never echo the request back.
        assert!(!String::from_utf8_lossy(&r.body).contains("Host: t"));
    }
    assert_eq!(c.get("/small.txt").status, 200);
    // `*` is only for OPTIONS.
    let mut c = s.connect();
    assert_eq!(req(&mut c, "GET", "*", &[]).status, 400);
}

#[test]
fn expect_100_continue() {
    let s = TestServer::start_with("", files);
    let mut c = s.connect();
    c.send(
        b"POST /data.bin HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    );
    let interim = c.read_response();
    assert_eq!(interim.status, 100);
    assert!(interim.head.starts_with("HTTP/1.1 100 Continue\r\n"));
    c.send(b"hello");
    let r = c.read_response();
    assert_eq!(r.status, 405);
    assert_eq!(c.get("/small.txt").status, 200);

    // No body: no 100.
    let r = get_with(&mut c, "/small.txt", &[("Expect", "100-continue")]);
    assert_eq!(r.status, 200);

    // HTTP/1.0 clients never get a 100.
    let mut c = s.connect();
    c.send(b"POST /data.bin HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello");
    let r = c.read_response();
    assert_eq!(r.status, 405);

    // An expectation we don't know: 417.
    let mut c = s.connect();
    c.send(b"GET /small.txt HTTP/1.1\r\nHost: t\r\nExpect: 200-ok\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 417);
}

// ---------------------------------------------------------------------------------------
// Percent-encoding
// ---------------------------------------------------------------------------------------

#[test]
fn percent_encoding() {
    let s = TestServer::start_with("", files);
    for path in ["/%zz", "/%4", "/small%2", "/%g0.txt", "/small.txt%"] {
        assert_eq!(get(s.addr, path).status, 400, "{path}");
    }
    for path in ["/%00", "/small.txt%00", "/a%00b"] {
        let st = get(s.addr, path).status;
        assert!(matches!(st, 400 | 404), "{path}: {st}");
    }
    let r = get(s.addr, "/%C3%A9t%C3%A9.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"summer\n");
    assert_eq!(get(s.addr, "/%c3%a9t%c3%a9.txt").body, b"summer\n");
    // Encoded unreserved characters are the same path.
    assert_eq!(get(s.addr, "/%73mall.txt").body, b"hello, vireo\n");
}

// ---------------------------------------------------------------------------------------
// [error_pages]
// ---------------------------------------------------------------------------------------

#[test]
fn error_pages_keep_the_status_and_fall_back_when_missing() {
    let cfg = "[error_pages]\n404 = \"/errors/404.html\"\n405 = \"/errors/405.txt\"\n\
               416 = \"/errors/404.html\"\n403 = \"/errors/missing.html\"\n";
    let s = TestServer::start_with(cfg, |root| {
        files(root);
        std::fs::create_dir(root.join("errors")).expect("mkdir");
        std::fs::write(root.join("errors/404.html"), b"<h1>lost</h1>\n").expect("write");
        std::fs::write(root.join("errors/405.txt"), b"no\n").expect("write");
    });
    let mut c = s.connect();
    let r = c.get("/nope/deeper.html");
    assert_eq!(r.status, 404);
    assert_eq!(r.body, b"<h1>lost</h1>\n");
    assert_eq!(hdr(&r, "content-type"), "text/html; charset=utf-8");
    assert_eq!(hdr(&r, "content-length"), "14");
    assert!(r.header("etag").is_none());

    let h = req(&mut c, "HEAD", "/nope", &[]);
    assert_eq!(h.status, 404);
    assert_eq!(hdr(&h, "content-length"), "14");

    let r = req(&mut c, "DELETE", "/small.txt", &[]);
    assert_eq!(r.status, 405);
    assert_eq!(hdr(&r, "allow"), "GET, HEAD, OPTIONS");
    assert_eq!(hdr(&r, "content-type"), "text/plain; charset=utf-8");
    assert_eq!(r.body, b"no\n");

    let r = get_with(&mut c, "/data.bin", &[("Range", "bytes=9999-")]);
    assert_eq!(r.status, 416);
    assert_eq!(hdr(&r, "content-range"), format!("bytes */{LEN}"));
    assert_eq!(r.body, b"<h1>lost</h1>\n");

    // The configured page is missing: the built-in body.
    let r = c.get("/empty/");
    assert_eq!(r.status, 403);
    assert!(String::from_utf8_lossy(&r.body).contains("403 Forbidden"));
    // Statuses without a page are untouched; the connection is still in sync.
    let r = get_with(&mut c, "/data.bin", &[("If-Match", "\"x\"")]);
    assert_eq!(r.status, 412);
    assert!(String::from_utf8_lossy(&r.body).contains("412"));
    assert_eq!(c.get("/small.txt").body, b"hello, vireo\n");
}

#[test]
fn bad_error_pages_are_config_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("public")).expect("mkdir");
    let path = dir.path().join("bad.toml");
    for (text, needle) in [
        (
            "root = \"public\"\n[error_pages]\n302 = \"/x.html\"\n",
            "302",
        ),
        (
            "root = \"public\"\n[error_pages]\n404 = \"x.html\"\n",
            "404",
        ),
    ] {
        std::fs::write(&path, text).expect("write");
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_vireo"))
            .args(["--check", "--config", path.to_str().expect("utf8")])
            .output()
            .expect("run");
        assert_eq!(o.status.code(), Some(1));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("line 3") && err.contains("error_pages") && err.contains(needle),
            "{err}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// [[headers]]
// ---------------------------------------------------------------------------------------

const HEADERS: &str = r#"
[[headers]]
path = "/assets/"
set = { "Cache-Control" = "public, max-age=31536000, immutable" }

[[headers]]
path = "/**/*.js"
set = { "X-Script" = "yes", "Access-Control-Allow-Origin" = "*" }
"#;

fn asset_files(root: &Path) {
    files(root);
    std::fs::create_dir(root.join("assets")).expect("mkdir");
    std::fs::write(root.join("assets/app.js"), "console.log(1);\n".repeat(100)).expect("write");
    std::fs::write(root.join("assets/logo.png"), pattern(300, 3)).expect("write");
    std::fs::write(root.join("main.js"), b"x\n").expect("write");
}

#[test]
fn per_path_headers_on_200_206_304() {
    let s = TestServer::start_with(HEADERS, asset_files);
    let mut c = s.connect();
    let cc = "public, max-age=31536000, immutable";
    let r = c.get("/assets/logo.png");
    assert_eq!(r.status, 200);
    assert_eq!(hdr(&r, "cache-control"), cc);
    assert!(r.header("x-script").is_none());
    let etag = hdr(&r, "etag").to_string();

    // Both rules, in order.
    let r = c.get("/assets/app.js");
    assert_eq!(hdr(&r, "cache-control"), cc);
    assert_eq!(hdr(&r, "x-script"), "yes");
    assert_eq!(hdr(&r, "access-control-allow-origin"), "*");
    let cc_at = r.head.find("Cache-Control").unwrap();
    assert!(cc_at < r.head.find("X-Script").unwrap());

    let r = c.get("/main.js");
    assert_eq!(hdr(&r, "x-script"), "yes");
    assert!(r.header("cache-control").is_none());

    let r = get_with(&mut c, "/assets/logo.png", &[("If-None-Match", &etag)]);
    assert_eq!(r.status, 304);
    assert_eq!(hdr(&r, "cache-control"), cc);

    let r = get_with(&mut c, "/assets/logo.png", &[("Range", "bytes=0-9")]);
    assert_eq!(r.status, 206);
    assert_eq!(hdr(&r, "cache-control"), cc);
    let r = get_with(&mut c, "/assets/logo.png", &[("Range", "bytes=0-9,20-29")]);
    assert_eq!(r.status, 206);
    assert_eq!(hdr(&r, "cache-control"), cc);

    let r = req(&mut c, "HEAD", "/assets/logo.png", &[]);
    assert_eq!(hdr(&r, "cache-control"), cc);

    // Rules match the decoded, normalised path: encodings and dot segments don't dodge them.
    for p in [
        "/%61ssets/logo.png",
        "//assets/./logo.png",
        "/main/../assets/logo.png",
    ] {
        let r = c.get(p);
        assert_eq!((r.status, hdr(&r, "cache-control")), (200, cc), "{p}");
    }
    assert_eq!(hdr(&c.get("/main%2Ejs"), "x-script"), "yes");

    // Not a file response, or not matching: nothing added.
    let r = c.get("/assets/missing.png");
    assert_eq!(r.status, 404);
    assert!(r.header("cache-control").is_none());
    assert!(c.get("/small.txt").header("cache-control").is_none());
    let r = c.get("/assets");
    assert_eq!(r.status, 301);
    assert!(r.header("cache-control").is_none());
}

#[test]
fn per_path_headers_on_compressed_responses() {
    let s = TestServer::start_with(HEADERS, asset_files);
    let mut c = s.connect();
    // Twice: compressed off the loop the first time, from the cache the second.
    for _ in 0..2 {
        let r = get_with(&mut c, "/assets/app.js", &[("Accept-Encoding", "gzip")]);
        assert_eq!(r.status, 200);
        assert_eq!(hdr(&r, "content-encoding"), "gzip");
        assert_eq!(
            hdr(&r, "cache-control"),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(hdr(&r, "x-script"), "yes");
    }
}

// ---------------------------------------------------------------------------------------
// autoindex
// ---------------------------------------------------------------------------------------

fn listing_files(root: &Path) {
    std::fs::create_dir(root.join("pub")).expect("mkdir");
    std::fs::create_dir(root.join("pub/zsub")).expect("mkdir");
    std::fs::write(root.join("pub/b.txt"), b"12345").expect("write");
    std::fs::write(root.join("pub/a <&> \"q\".txt"), b"x").expect("write");
    std::fs::write(root.join("pub/été.txt"), b"x").expect("write");
    std::fs::write(root.join("pub/.secret"), b"x").expect("write");
    std::os::unix::fs::symlink("/etc/passwd", root.join("pub/escape")).expect("symlink");
    std::os::unix::fs::symlink("b.txt", root.join("pub/inside")).expect("symlink");
    std::fs::create_dir(root.join("site")).expect("mkdir");
    std::fs::write(root.join("site/index.html"), b"site\n").expect("write");
}

#[test]
fn autoindex_lists_directories_without_an_index() {
    let s = TestServer::start_with("autoindex = true\n", listing_files);
    let mut c = s.connect();
    let r = c.get("/pub/");
    assert_eq!(r.status, 200);
    assert_eq!(hdr(&r, "content-type"), "text/html; charset=utf-8");
    let page = String::from_utf8(r.body.clone()).expect("utf-8 page");
    assert!(page.contains("Index of /pub/"), "{page}");
    assert!(page.contains("<a href=\"../\">../</a>"), "{page}");
    assert!(page.contains("<a href=\"zsub/\">zsub/</a>"), "{page}");
    assert!(
        page.contains("href=\"a%20%3C%26%3E%20%22q%22.txt\">a &lt;&amp;&gt; &quot;q&quot;.txt</a>"),
        "{page}"
    );
    assert!(
        page.contains("href=\"%C3%A9t%C3%A9.txt\">été.txt</a>"),
        "{page}"
    );
    assert!(page.contains("href=\"inside\""), "{page}");
    assert!(
        !page.contains("secret") && !page.contains("escape"),
        "{page}"
    );
    // Directories first, then names in order; sizes and dates shown.
    let pos = |n: &str| page.find(n).unwrap_or_else(|| panic!("{n} in {page}"));
    assert!(
        pos("zsub/") < pos("a%20") && pos("a%20") < pos("b.txt") && pos("b.txt") < pos("inside")
    );
    assert!(page.contains("<td>5</td>"), "{page}");
    assert!(page.contains(" GMT</td>"), "{page}");

    // The listing's links work.
    assert_eq!(c.get("/pub/%C3%A9t%C3%A9.txt").status, 200);
    let h = req(&mut c, "HEAD", "/pub/", &[]);
    assert_eq!(h.status, 200);
    assert_eq!(hdr(&h, "content-length"), r.body.len().to_string());

    // The root has no "../"; an index file still wins.
    let root = c.get("/");
    assert_eq!(root.status, 200);
    let page = String::from_utf8(root.body).expect("utf-8");
    assert!(
        page.contains("Index of /<") && !page.contains("../"),
        "{page}"
    );
    assert_eq!(c.get("/site/").body, b"site\n");
    assert_eq!(c.get("/pub").status, 301);
}

#[test]
fn autoindex_is_off_by_default() {
    let s = TestServer::start_with("", listing_files);
    assert_eq!(get(s.addr, "/pub/").status, 403);
}

/// Found while testing: a response that must be compressed off the loop (Body::Compress)
/// on a connection that closes after it (`Connection: close`, or HTTP/1.0 with
/// `compression.http10`) was never sent, because `close_after` was checked before `parked`.
#[test]
fn compressed_response_with_connection_close() {
    let s = TestServer::start_with("", asset_files);
    let mut c = s.connect();
    c.send(
        b"GET /assets/app.js HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
    );
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(hdr(&r, "content-encoding"), "gzip");
    assert!(c.is_closed());
}
