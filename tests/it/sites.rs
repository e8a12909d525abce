//! `[[site]]`: virtual hosts over TCP. The request's Host (or an absolute-form target's
//! authority) picks the site; each site serves its own root with its own rules; a
//! redirect site sends the whole host elsewhere. `--check` refuses bad or doubled names.

use crate::support::*;
use std::path::Path;
use std::process::Command;

/// Three roots beside the default one: `a` (a.test and *.a.test), `b` (*.b.a.test, a
/// longer wildcard inside a's) and the default (`root`). Every root has `who.txt`
/// naming it.
const SITES: &str = "\
[[site]]
hosts = [\"a.test\", \"*.a.test\"]
root = \"a\"
autoindex = true
[[site.headers]]
path = \"/\"
set = { \"X-Site\" = \"a\" }
[[site.redirects]]
from = \"/old/\"
to = \"/new/\"

[[site]]
hosts = [\"*.b.a.test\", \"[::1]\"]
root = \"b\"
fallback = \"/app.html\"

[[site]]
hosts = [\"www.a.test\"]
redirect = \"https://a.test\"
";

fn setup(root: &Path) {
    let dir = root.parent().expect("parent");
    for (name, path) in [
        ("default", root.to_path_buf()),
        ("a", dir.join("a")),
        ("b", dir.join("b")),
    ] {
        std::fs::create_dir_all(path.join("sub")).expect("mkdir");
        std::fs::write(path.join("who.txt"), name).expect("write");
        std::fs::write(path.join("sub/x.txt"), b"x").expect("write");
    }
    std::fs::write(dir.join("b/app.html"), b"spa").expect("write");
}

fn start() -> TestServer {
    TestServer::start_with(SITES, setup)
}

/// GET `target` with `Host: host` (no Host line when None) on a fresh connection.
fn get_as(s: &TestServer, target: &str, host: Option<&str>) -> Response {
    let mut c = s.connect();
    let host = host.map(|h| format!("Host: {h}\r\n")).unwrap_or_default();
    c.send(format!("GET {target} HTTP/1.1\r\n{host}Connection: close\r\n\r\n").as_bytes());
    c.read_response()
}

fn who(s: &TestServer, host: &str) -> String {
    let r = get_as(s, "/who.txt", Some(host));
    assert_eq!(r.status, 200, "{host}: {}", r.head);
    String::from_utf8(r.body).expect("utf8")
}

#[test]
fn the_host_picks_the_site() {
    let s = start();
    for (host, site) in [
        ("a.test", "a"),
        ("x.a.test", "a"),
        ("deep.x.a.test", "a"),
        // The longest wildcard wins.
        ("y.b.a.test", "b"),
        ("b.a.test", "a"),
        // Case, one trailing dot and the port are ignored, even a port not ours.
        ("A.TEST", "a"),
        ("a.test.", "a"),
        ("a.test:1", "a"),
        ("Z.B.A.Test.:65535", "b"),
        ("[::1]:8080", "b"),
        // Names no site claims, and IP literals: the default site.
        ("other.test", "default"),
        ("test", "default"),
        ("127.0.0.1", "default"),
        ("[::2]", "default"),
    ] {
        assert_eq!(who(&s, host), site, "{host}");
    }
    // The same path, different bytes per site; the rules are the site's own.
    let a = get_as(&s, "/who.txt", Some("a.test"));
    assert_eq!(a.header("x-site"), Some("a"));
    let d = get_as(&s, "/who.txt", Some("other.test"));
    assert_eq!(d.header("x-site"), None);
}

#[test]
fn an_absolute_form_target_wins_over_host() {
    let s = start();
    let r = get_as(&s, "http://x.a.test/who.txt", Some("other.test"));
    assert_eq!((r.status, &r.body[..]), (200, &b"a"[..]));
    let r = get_as(&s, "http://other.test:81/who.txt", Some("a.test"));
    assert_eq!((r.status, &r.body[..]), (200, &b"default"[..]));
    // HTTP/1.1 without Host stays a 400; HTTP/1.0 without Host is the default site.
    assert_eq!(get_as(&s, "/who.txt", None).status, 400);
    let mut c = s.connect();
    c.send(b"GET /who.txt HTTP/1.0\r\n\r\n");
    assert_eq!(c.read_response().body, b"default");
    assert_eq!(get_as(&s, "/who.txt", Some("a test")).status, 400);
}

#[test]
fn one_connection_may_ask_several_sites() {
    let s = start();
    let mut c = s.connect();
    for (host, site) in [("a.test", "a"), ("other", "default"), ("q.b.a.test", "b")] {
        c.send(format!("GET /who.txt HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
        assert_eq!(c.read_response().body, site.as_bytes(), "{host}");
    }
}

#[test]
fn a_redirect_site_keeps_path_and_query() {
    let s = start();
    for (target, want) in [
        ("/", "https://a.test/"),
        ("/p/q.html?x=1&y", "https://a.test/p/q.html?x=1&y"),
        ("/a%20b/../c", "https://a.test/c"),
        ("/dir/", "https://a.test/dir/"),
    ] {
        let r = get_as(&s, target, Some("WWW.a.test:8080"));
        assert_eq!(r.status, 301, "{target}: {}", r.head);
        assert_eq!(r.header("location"), Some(want), "{target}");
    }
}

#[test]
fn a_redirect_site_answers_every_method_with_its_301() {
    let s = start();
    for method in [
        "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "BREW",
    ] {
        let mut c = s.connect();
        c.send(
            format!(
                "{method} /p?q=1 HTTP/1.1\r\nHost: www.a.test\r\nContent-Length: 2\r\n\
                 Connection: close\r\n\r\nhi"
            )
            .as_bytes(),
        );
        let r = c.read_response_to(method == "HEAD");
        assert_eq!(r.status, 301, "{method}: {}", r.head);
        assert_eq!(
            r.header("location"),
            Some("https://a.test/p?q=1"),
            "{method}"
        );
    }
    // A site serving files still refuses what it does not serve.
    let mut c = s.connect();
    c.send(
        b"POST /who.txt HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(c.read_response().status, 405);
}

#[test]
fn rules_are_per_site() {
    let s = start();
    // [[site.redirects]] only on a.
    let r = get_as(&s, "/old/x?q", Some("a.test"));
    assert_eq!((r.status, r.header("location")), (301, Some("/new/x?q")));
    assert_eq!(get_as(&s, "/old/x", Some("other")).status, 404);
    // autoindex only on a.
    let r = get_as(&s, "/sub/", Some("a.test"));
    assert_eq!(r.status, 200);
    assert!(find(&r.body, b"x.txt").is_some());
    assert_eq!(get_as(&s, "/sub/", Some("other")).status, 403);
    // fallback only on b.
    let r = get_as(&s, "/no/such/page", Some("z.b.a.test"));
    assert_eq!((r.status, &r.body[..]), (200, &b"spa"[..]));
    assert_eq!(get_as(&s, "/no/such/page", Some("a.test")).status, 404);
    // Hidden files stay hidden per site (default deny).
    std::fs::write(s.dir.path().join("b/.secret"), b"s").expect("write");
    assert_eq!(get_as(&s, "/.secret", Some("z.b.a.test")).status, 404);
}

#[test]
fn auth_is_per_site() {
    let extra = "[[site]]\nhosts = [\"private.test\"]\nroot = \"root\"\n\
                 [[site.auth]]\npath = \"/\"\nrealm = \"p\"\nhtpasswd = \"p.htpasswd\"\n";
    let s = TestServer::start_with(extra, |root| {
        setup(root);
        let line = format!("u:{}\n", bcrypt::hash("pw", 4).expect("hash"));
        std::fs::write(root.parent().expect("parent").join("p.htpasswd"), line).expect("write");
    });
    assert_eq!(get_as(&s, "/who.txt", Some("public.test")).status, 200);
    let r = get_as(&s, "/who.txt", Some("private.test"));
    assert_eq!(r.status, 401);
    assert!(r
        .header("www-authenticate")
        .is_some_and(|v| v.contains("realm=\"p\"")));
    let mut c = s.connect();
    // "u:pw"
    c.send(b"GET /who.txt HTTP/1.1\r\nHost: private.test\r\nAuthorization: Basic dTpwdw==\r\n\r\n");
    assert_eq!(c.read_response().body, b"default");
}

/// `vireo --check` on `text` after the default root; (success, stderr).
fn check(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("public")).expect("mkdir");
    let path = dir.path().join("v.toml");
    std::fs::write(&path, format!("root = \"public\"\n{text}")).expect("write");
    let o = Command::new(env!("CARGO_BIN_EXE_vireo"))
        .args(["--check", "--config", path.to_str().expect("utf8")])
        .output()
        .expect("run vireo");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn site(hosts: &str) -> String {
    format!("[[site]]\nhosts = [{hosts}]\nroot = \"public\"\n")
}

#[test]
fn check_refuses_doubled_and_malformed_names() {
    let (ok, err) = check(&(site("\"a.test\"") + &site("\"b.test\", \"A.Test.\"")));
    assert!(!ok, "{err}");
    assert!(
        err.contains("\"a.test\" is claimed twice")
            && err.contains("[[site]] #1 (line 3)")
            && err.contains("[[site]] #2")
            && err.contains("line 6"),
        "{err}"
    );
    for bad in [
        "\"*.\"",
        "\"a.*.b\"",
        "\"**.x\"",
        "\"*\"",
        "\"a.test:80\"",
        "\"a b\"",
    ] {
        let (ok, err) = check(&site(bad));
        assert!(
            !ok && err.contains("site.hosts") && err.contains("line 3"),
            "{bad}: {err}"
        );
    }
    let many: String = (0..1001).map(|i| site(&format!("\"s{i}.test\""))).collect();
    let (ok, err) = check(&many);
    assert!(!ok && err.contains("at most 1000"), "{err}");
    let fine: String = (0..1000).map(|i| site(&format!("\"s{i}.test\""))).collect();
    let (ok, err) = check(&fine);
    assert!(ok, "{err}");
    let (ok, err) = check("[[site]]\nhosts = [\"w.test\"]\nredirect = \"https://a.test/x?y\"\n");
    assert!(!ok && err.contains("site.redirect"), "{err}");
}

#[test]
fn sites_are_picked_on_an_ipv6_listener() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no ::1 here: skipping site selection over IPv6");
        return;
    }
    let s = TestServer::start_with(&format!("listen = \"[::1]:0\"\n{SITES}"), setup);
    assert!(s.addr.is_ipv6(), "{}", s.addr);
    let port = s.addr.port();
    for (host, site) in [
        (format!("[::1]:{port}"), "b"),
        ("[::1]".to_string(), "b"),
        (format!("A.test:{port}"), "a"),
        ("q.b.a.test".to_string(), "b"),
        (format!("[::2]:{port}"), "default"),
        ("other.test".to_string(), "default"),
    ] {
        assert_eq!(who(&s, &host), site, "{host}");
    }
    let r = get_as(&s, "/x?y", Some(&format!("www.a.test:{port}")));
    assert_eq!(
        (r.status, r.header("location")),
        (301, Some("https://a.test/x?y"))
    );
    let r = get_as(&s, &format!("http://[::1]:{port}/who.txt"), Some("a.test"));
    assert_eq!((r.status, &r.body[..]), (200, &b"b"[..]));
}

#[test]
fn the_json_log_names_the_host_and_metrics_count_per_site() {
    let extra = format!(
        "{SITES}\n[log]\naccess = \"access.json\"\nformat = \"json\"\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n"
    );
    let mut s = TestServer::start_with(&extra, setup);
    assert_eq!(who(&s, "A.Test:8080"), "a");
    assert_eq!(who(&s, "Z.B.A.test."), "b");
    assert_eq!(who(&s, "not-a-site.test"), "default");
    assert_eq!(get_as(&s, "/p", Some("WWW.a.test")).status, 301);
    assert_eq!(get_as(&s, "/missing", Some("a.test")).status, 404);
    let mut c = s.connect();
    c.send(b"GET /who.txt HTTP/1.0\r\n\r\n");
    assert_eq!(c.read_response().body, b"default");

    let m = scrape(&s);
    let count = |site: &str, class: &str| {
        metric(
            &m,
            "vireo_responses_total",
            &format!("site=\"{site}\",class=\"{class}\""),
        )
    };
    // Labelled by the site's first name, whatever name the client used.
    assert_eq!(count("a.test", "2xx"), 1, "{m}");
    assert_eq!(count("a.test", "4xx"), 1, "{m}");
    assert_eq!(count("*.b.a.test", "2xx"), 1, "{m}");
    assert_eq!(count("www.a.test", "3xx"), 1, "{m}");
    assert_eq!(count("default", "2xx"), 2, "{m}");
    // No label value comes from a request.
    assert!(
        !m.contains("not-a-site") && !m.contains("z.b.a.test"),
        "{m}"
    );

    s.signal(15);
    let st = s
        .wait_exit(std::time::Duration::from_secs(10))
        .expect("exit");
    assert!(st.success());
    let log = std::fs::read_to_string(s.dir.path().join("access.json")).expect("log");
    let mut hosts: Vec<&str> = log
        .lines()
        .map(|l| {
            let at = l.find("\"host\":\"").expect("host field") + 8;
            &l[at..at + l[at..].find('"').expect("end")]
        })
        .collect();
    hosts.sort_unstable();
    // As sent, lower case, without the port; empty without a Host.
    assert_eq!(
        hosts,
        [
            "",
            "a.test",
            "a.test",
            "not-a-site.test",
            "www.a.test",
            "z.b.a.test."
        ],
        "{log}"
    );
}
