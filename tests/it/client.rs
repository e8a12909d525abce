//! The same server through a real HTTP client (ureq): keep-alive reuse across many
//! requests, revalidation, ranges and errors as a library user sees them.

use crate::support::*;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(TIMEOUT))
        .build()
        .new_agent()
}

#[test]
fn a_real_client_reuses_one_connection_for_many_requests() {
    let s = TestServer::start("[metrics]\nlisten = \"127.0.0.1:0\"\n");
    let a = agent();
    let base = format!("http://{}", s.addr);
    for _ in 0..50 {
        let mut r = a.get(format!("{base}/small.txt")).call().expect("get");
        assert_eq!(r.status(), 200);
        assert_eq!(r.body_mut().read_to_vec().expect("body"), b"hello, vireo\n");
    }
    let m = scrape(&s);
    assert_eq!(
        metric(&m, "vireo_connections_accepted_total", ""),
        1,
        "keep-alive not reused"
    );
    assert_eq!(metric(&m, "vireo_responses_total", "class=\"2xx\""), 50);
}

#[test]
fn a_real_client_revalidates_and_gets_ranges_and_errors() {
    let data = pattern(50_000, 9);
    let d2 = data.clone();
    let s = TestServer::start_with("", move |root| {
        default_files(root);
        std::fs::write(root.join("blob.bin"), &d2).expect("write");
    });
    let a = agent();
    let base = format!("http://{}", s.addr);
    let mut r = a.get(format!("{base}/blob.bin")).call().expect("get");
    let etag = r
        .headers()
        .get("etag")
        .expect("etag")
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(r.body_mut().read_to_vec().expect("body") == data);

    let r = a
        .get(format!("{base}/blob.bin"))
        .header("If-None-Match", &etag)
        .call()
        .expect("conditional");
    assert_eq!(r.status(), 304);

    let mut r = a
        .get(format!("{base}/blob.bin"))
        .header("Range", "bytes=1000-1999")
        .call()
        .expect("range");
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok()),
        Some("bytes 1000-1999/50000")
    );
    assert_eq!(r.body_mut().read_to_vec().expect("body"), &data[1000..2000]);

    let mut r = a
        .get(format!("{base}/nope"))
        .call()
        .expect("404 is a response");
    assert_eq!(r.status(), 404);
    assert!(String::from_utf8(r.body_mut().read_to_vec().expect("body"))
        .expect("utf8")
        .contains("404 Not Found"));

    let r = a.head(format!("{base}/blob.bin")).call().expect("head");
    assert_eq!(
        r.headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok()),
        Some("50000")
    );
}
