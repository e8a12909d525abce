//! Extreme file times over real TCP: an mtime past year 9999 or in the future is sent as
//! the response's `Date` (RFC 9110 8.8.2.1), one before 1970 is not sent at all, and
//! neither may take a reactor down.

use crate::support::*;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

/// Year 10000: httpdate panics formatting it.
const YEAR_10000: u64 = 253_402_300_900;
/// Late in year 9999: formattable, but still far in the future.
const YEAR_9999: u64 = 253_402_200_000;

fn dated_files(root: &Path) {
    default_files(root);
    let text = "far future\n".repeat(100);
    for (name, t) in [
        ("y10000.txt", UNIX_EPOCH + Duration::from_secs(YEAR_10000)),
        ("y9999.txt", UNIX_EPOCH + Duration::from_secs(YEAR_9999)),
        ("y1969.txt", UNIX_EPOCH - Duration::from_secs(86_400 * 100)),
    ] {
        std::fs::write(root.join(name), &text).expect("write");
        set_mtime(&root.join(name), t);
    }
    std::fs::create_dir(root.join("list")).expect("mkdir");
    std::fs::write(root.join("list/f.txt"), b"x").expect("write");
    set_mtime(
        &root.join("list/f.txt"),
        UNIX_EPOCH + Duration::from_secs(YEAR_10000),
    );
}

fn get_with(c: &mut Client, path: &str, headers: &str) -> Response {
    c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n{headers}\r\n").as_bytes());
    c.read_response()
}

#[test]
fn a_future_mtime_is_sent_as_the_date_and_the_server_keeps_serving() {
    // One reactor: a panic there would leave nothing to answer the last request.
    let s = TestServer::start_with("workers = 1\nautoindex = true\n", dated_files);
    let mut c = s.connect();
    for path in ["/y10000.txt", "/y9999.txt"] {
        let r = c.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.body, "far future\n".repeat(100).as_bytes(), "{path}");
        assert_eq!(r.header("last-modified"), r.header("date"), "{path}");
        assert!(r.header("etag").is_some(), "{path}");

        // 206 and the compressed 200 (head written after the job) carry it too.
        let r = get_with(&mut c, path, "Range: bytes=0-3\r\n");
        assert_eq!(r.status, 206, "{path}");
        assert_eq!(r.header("last-modified"), r.header("date"), "{path}");
        let r = get_with(&mut c, path, "Accept-Encoding: gzip\r\n");
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-encoding"), Some("gzip"), "{path}");
        let (lm, date) = (r.header("last-modified"), r.header("date"));
        let secs =
            |v: Option<&str>| httpdate::parse_http_date(v.expect("header")).expect("http-date");
        assert!(secs(lm) <= secs(date), "{path}: {lm:?} > {date:?}");

        // Conditionals stay sane: the file counts as modified "now".
        let r = get_with(
            &mut c,
            path,
            "If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT\r\n",
        );
        assert_eq!(r.status, 200, "{path}");
        let r = get_with(
            &mut c,
            path,
            "If-Modified-Since: Fri, 31 Dec 9999 23:59:59 GMT\r\n",
        );
        assert_eq!(r.status, 304, "{path}");
        let r = get_with(
            &mut c,
            path,
            "If-Unmodified-Since: Sat, 01 Jan 2000 00:00:00 GMT\r\n",
        );
        assert_eq!(r.status, 412, "{path}");
        // A Last-Modified replaced by the Date is not a strong validator: If-Range with
        // it (or any date) sends the whole file.
        let lm = c.get(path).header("last-modified").expect("lm").to_string();
        let r = get_with(
            &mut c,
            path,
            &format!("Range: bytes=0-3\r\nIf-Range: {lm}\r\n"),
        );
        assert_eq!(r.status, 200, "{path}");
        let etag = c.get(path).header("etag").expect("etag").to_string();
        let r = get_with(&mut c, path, &format!("If-None-Match: {etag}\r\n"));
        assert_eq!(r.status, 304, "{path}");
    }
    // A listing shows such a file without taking the reactor down.
    let r = c.get("/list/");
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).contains("f.txt"));

    assert_eq!(get(s.addr, "/small.txt").body, b"hello, vireo\n");
}

#[test]
fn an_mtime_before_1970_sends_no_last_modified() {
    let s = TestServer::start_with("workers = 1\n", dated_files);
    let mut c = s.connect();
    let r = c.get("/y1969.txt");
    assert_eq!(r.status, 200);
    assert!(r.header("last-modified").is_none(), "{}", r.head);
    let etag = r.header("etag").expect("etag").to_string();
    // Without a Last-Modified, date conditions are ignored; the ETag still works.
    let r = get_with(
        &mut c,
        "/y1969.txt",
        "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n",
    );
    assert_eq!(r.status, 200);
    let r = get_with(
        &mut c,
        "/y1969.txt",
        "Range: bytes=0-3\r\nIf-Range: Thu, 01 Jan 1970 00:00:00 GMT\r\n",
    );
    assert_eq!(r.status, 200);
    let r = get_with(&mut c, "/y1969.txt", &format!("If-None-Match: {etag}\r\n"));
    assert_eq!(r.status, 304);
    assert!(r.header("last-modified").is_none());
    assert_eq!(c.get("/small.txt").status, 200);
}
