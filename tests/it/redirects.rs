//! `[[redirects]]` and `fallback` over TCP: Location built from the normalised path, the
//! query kept or replaced, rule order, statuses; the SPA fallback's bytes, validators and
//! coding, and where it never applies. `--check` refuses what can be seen statically.

use crate::compression::{gunzip, request, text};
use crate::support::*;
use std::process::Command;

fn rule(from: &str, to: &str) -> String {
    format!("[[redirects]]\nfrom = {from:?}\nto = {to:?}\n")
}

fn location(r: &Response) -> &str {
    r.header("location").expect("a Location header")
}

fn redirected(c: &mut Client, path: &str) -> (u16, String) {
    let r = c.get(path);
    assert!((300..400).contains(&r.status), "{path}: {}", r.head);
    (r.status, location(&r).to_string())
}

#[test]
fn prefix_rules_keep_the_rest_and_the_query() {
    let s = TestServer::start(&rule("/blog/", "/posts/"));
    let mut c = s.connect();
    let cases = [
        ("/blog/2024/x", "/posts/2024/x"),
        ("/blog/2024/x?a=1&b=2", "/posts/2024/x?a=1&b=2"),
        ("/blog/", "/posts/"),
        ("/blog/a/", "/posts/a/"),
        // Matched and rebuilt on the normalised path.
        ("//blog/./2024/../x", "/posts/x"),
        ("/%62log/x", "/posts/x"),
    ];
    for (path, want) in cases {
        assert_eq!(redirected(&mut c, path), (301, want.into()), "{path}");
    }
    // Not under the prefix: files as usual.
    assert_eq!(c.get("/blog").status, 404);
    assert_eq!(c.get("/blogx/y").status, 404);
    assert_eq!(c.get("/small.txt").body, b"hello, vireo\n");
    // HEAD: the same answer, no body; the connection stays usable.
    c.send(b"HEAD /blog/x HTTP/1.1\r\nHost: t\r\n\r\n");
    let h = c.read_response_to(true);
    assert_eq!((h.status, location(&h)), (301, "/posts/x"));
    assert_eq!(c.get("/small.txt").status, 200);
}

#[test]
fn exact_and_glob_rules_go_to_to_as_written() {
    let rules = rule("/old.html", "/new.html") + &rule("/**/*.php", "/index.html");
    let s = TestServer::start(&rules);
    let mut c = s.connect();
    assert_eq!(redirected(&mut c, "/old.html"), (301, "/new.html".into()));
    assert_eq!(
        redirected(&mut c, "/old.html?q=1"),
        (301, "/new.html?q=1".into())
    );
    assert_eq!(
        redirected(&mut c, "/a/b/c.php"),
        (301, "/index.html".into())
    );
    assert_eq!(
        redirected(&mut c, "/x.php?id=3"),
        (301, "/index.html?id=3".into())
    );
    // Exact means exact.
    assert_eq!(c.get("/old.html/").status, 404);
    assert_eq!(c.get("/old.htmlx").status, 404);
    assert_eq!(c.get("/a/b/c.phpx").status, 404);
}

#[test]
fn a_query_in_to_replaces_the_requests() {
    let rules = rule("/a", "/b?x=1") + &rule("/p/", "/q/?from=p");
    let s = TestServer::start(&rules);
    let mut c = s.connect();
    assert_eq!(redirected(&mut c, "/a?y=2"), (301, "/b?x=1".into()));
    assert_eq!(redirected(&mut c, "/a"), (301, "/b?x=1".into()));
    assert_eq!(
        redirected(&mut c, "/p/r/s?y=2"),
        (301, "/q/r/s?from=p".into())
    );
}

#[test]
fn absolute_url_targets() {
    let rules = rule("/ext/", "https://example.org/new/")
        + &rule("/home", "https://example.org")
        + &rule("/", "http://other.example/");
    let s = TestServer::start_with(&rules, |_| {});
    let mut c = s.connect();
    let cases = [
        ("/ext/a%20b?z", "https://example.org/new/a%20b?z"),
        ("/home", "https://example.org"),
        ("/home?x", "https://example.org?x"),
        // The catch-all: the rest of any path goes along, never as `//host`.
        ("//evil.example/x", "http://other.example/evil.example/x"),
        ("/", "http://other.example/"),
    ];
    for (path, want) in cases {
        assert_eq!(redirected(&mut c, path), (301, want.into()), "{path}");
    }
}

#[test]
fn every_status_code_with_its_reason() {
    let mut rules = String::new();
    for s in [301, 302, 303, 307, 308] {
        rules += &format!("{}status = {s}\n", rule(&format!("/s{s}"), "/small.txt"));
    }
    let s = TestServer::start(&rules);
    let mut c = s.connect();
    for (code, reason) in [
        (301, "Moved Permanently"),
        (302, "Found"),
        (303, "See Other"),
        (307, "Temporary Redirect"),
        (308, "Permanent Redirect"),
    ] {
        let r = c.get(&format!("/s{code}"));
        assert!(
            r.head.starts_with(&format!("HTTP/1.1 {code} {reason}\r\n")),
            "{}",
            r.head
        );
        assert_eq!(location(&r), "/small.txt");
        let body = String::from_utf8(r.body).expect("utf8");
        assert!(body.contains(&format!("{code} {reason}")), "{body}");
    }
}

#[test]
fn rules_apply_in_order_and_before_the_file_lookup() {
    let rules = rule("/docs/api/", "/v2/api/")
        + &rule("/docs/", "/manual/")
        + &rule("/docs/api/old/", "/never/")
        + &rule("/small.txt", "/dir/");
    let s = TestServer::start_with(&rules, |root| {
        default_files(root);
        std::fs::create_dir_all(root.join("docs/api/old")).expect("mkdir");
        std::fs::write(root.join("docs/api/old/x.html"), b"exists").expect("write");
    });
    let mut c = s.connect();
    assert_eq!(redirected(&mut c, "/docs/api/x"), (301, "/v2/api/x".into()));
    assert_eq!(redirected(&mut c, "/docs/y"), (301, "/manual/y".into()));
    // The first match wins, and an existing file does not stop a redirect.
    assert_eq!(
        redirected(&mut c, "/docs/api/old/x.html"),
        (301, "/v2/api/old/x.html".into())
    );
    assert_eq!(redirected(&mut c, "/small.txt"), (301, "/dir/".into()));
    assert_eq!(c.get("/dir/").body, b"dir index\n");
}

#[test]
fn location_is_percent_encoded_and_never_another_host() {
    let s = TestServer::start(&(rule("/old/", "/") + &rule("/enc/", "/n e/ü/")));
    let mut c = s.connect();
    let cases = [
        ("/old/a%20b/%C3%A9/%3F%23%25x", "/a%20b/%C3%A9/%3F%23%25x"),
        (
            "/old/%22%3C%3E%5C%5E%60%7B%7C%7D",
            "/%22%3C%3E%5C%5E%60%7B%7C%7D",
        ),
        ("/old//evil.example/x", "/evil.example/x"),
        ("//old//evil.example/x", "/evil.example/x"),
        ("/old/x/..//evil.example", "/evil.example"),
        ("/enc/x y", "/n%20e/%C3%BC/x%20y"),
    ];
    for (path, want) in cases {
        let (status, loc) = redirected(&mut c, &path.replace(' ', "%20"));
        assert_eq!((status, loc.as_str()), (301, want), "{path}");
        assert!(
            !loc.starts_with("//") && !loc.contains(['\\', ' ']),
            "{loc}"
        );
    }
    // `//evil.example/...` is the path /evil.example/..., not a host: not under /old/.
    assert_eq!(c.get("//evil.example/old/x").status, 404);
}

fn check(extra: &str, setup: impl FnOnce(&std::path::Path)) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("public")).expect("mkdir");
    setup(&dir.path().join("public"));
    let path = dir.path().join("v.toml");
    std::fs::write(&path, format!("root = \"public\"\n{extra}")).expect("write");
    let o = Command::new(env!("CARGO_BIN_EXE_vireo"))
        .args(["--check", "--config", path.to_str().expect("utf8")])
        .output()
        .expect("run vireo");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn check_refuses_what_can_be_seen_statically() {
    let many: String = (0..1001).map(|i| rule(&format!("/r{i}"), "/x")).collect();
    for (extra, needle) in [
        // A redirect to itself (also through `..`, or under its own prefix).
        (rule("/a", "/a"), "redirects to itself"),
        (rule("/a", "/x/../a"), "redirects to itself"),
        (rule("/a/", "/a/b/"), "redirects to itself"),
        (rule("/**/*.php", "/index.php"), "redirects to itself"),
        (rule("/a", "/b") + &rule("/b", "/a"), "redirect loop"),
        (
            format!("{}status = 304\n", rule("/a", "/b")),
            "redirects.status",
        ),
        (
            format!("{}status = 200\n", rule("/a", "/b")),
            "redirects.status",
        ),
        // A glob that can never match a normalised path.
        (rule("/a//*.js", "/b"), "can never match"),
        (rule("/**/../*.js", "/b"), "can never match"),
        (rule("/a/./x", "/b"), "can never match"),
        (rule("/a", "b.html"), "starting with one '/'"),
        (rule("/a", "//evil.example/"), "starting with one '/'"),
        (rule("/a/", "/b"), "ending in '/'"),
        (many, "at most 1000"),
        ("fallback = \"/index.html\"\n".into(), "fallback"),
    ] {
        let (ok, err) = check(&extra, |_| {});
        assert!(
            !ok && err.contains(needle) && err.contains("line"),
            "{extra:.80}: {err}"
        );
    }
    let (ok, err) = check(
        &("fallback = \"/index.html\"\n".to_string() + &rule("/blog/", "/posts/")),
        |root| std::fs::write(root.join("index.html"), b"app").expect("write"),
    );
    assert!(ok, "{err}");
}

fn spa_files(root: &std::path::Path) {
    default_files(root);
    std::fs::create_dir(root.join("app")).expect("mkdir");
    std::fs::write(root.join("app/index.html"), text(4000, 7)).expect("write");
    std::fs::write(root.join(".env"), b"SECRET=1").expect("write");
}

#[test]
fn fallback_answers_unknown_paths_with_its_own_representation() {
    let s = TestServer::start_with("fallback = \"/app/index.html\"\n", spa_files);
    let mut c = s.connect();
    let direct = c.get("/app/index.html");
    assert_eq!(direct.status, 200);
    for path in ["/route", "/deep/route/x?y=1", "/missing/", "/app/nope.js"] {
        let r = c.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.body, direct.body, "{path}");
        for h in ["etag", "last-modified", "content-type", "content-length"] {
            assert_eq!(r.header(h), direct.header(h), "{path}: {h}");
        }
        assert!(r.header("location").is_none());
    }
    let h = request(&mut c, "HEAD", "/route", "");
    assert_eq!(h.status, 200);
    assert!(h.body.is_empty());
    for n in ["etag", "last-modified", "content-length", "content-type"] {
        assert_eq!(h.header(n), direct.header(n), "HEAD {n}");
    }
    // Its own validators: a 304 for the fallback's ETag.
    let etag = direct.header("etag").expect("etag");
    let r = request(
        &mut c,
        "GET",
        "/route",
        &format!("If-None-Match: {etag}\r\n"),
    );
    assert_eq!(r.status, 304);
    // And its own coding.
    let gz = request(&mut c, "GET", "/some/route", "Accept-Encoding: gzip\r\n");
    assert_eq!(gz.status, 200);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gunzip(&gz.body), direct.body);
    // Existing files are served as usual.
    assert_eq!(c.get("/small.txt").body, b"hello, vireo\n");
    assert_eq!(c.get("/dir/").body, b"dir index\n");
    assert_eq!(c.get("/dir").status, 301);
}

#[test]
fn fallback_never_answers_hidden_paths_or_403s() {
    let s = TestServer::start_with("fallback = \"/app/index.html\"\n", spa_files);
    let mut c = s.connect();
    for path in ["/.env", "/.git/config", "/x/.hidden", "/%2eenv"] {
        assert_eq!(c.get(path).status, 404, "{path}");
    }
    // A directory without an index (autoindex off) is a 403, not a miss.
    assert_eq!(c.get("/empty/").status, 403);
    // A bad path is still a 400.
    assert_eq!(c.get("/%zz").status, 400);
    assert_eq!(c.get("/nothing").status, 200);
}

#[test]
fn a_fallback_deleted_at_run_time_gives_404_not_a_loop() {
    let s = TestServer::start_with(
        "fallback = \"/app/index.html\"\n[open_file_cache]\nentries = 0\n",
        spa_files,
    );
    let mut c = s.connect();
    assert_eq!(c.get("/route").status, 200);
    std::fs::remove_file(s.root().join("app/index.html")).expect("rm");
    let r = c.get("/route");
    assert_eq!(r.status, 404);
    assert!(r.header("location").is_none());
    // Replaced by a directory: still a plain 404.
    std::fs::create_dir(s.root().join("app/index.html")).expect("mkdir");
    assert_eq!(c.get("/route").status, 404);
    assert_eq!(c.get("/small.txt").status, 200);
}
