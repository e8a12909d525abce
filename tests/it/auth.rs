//! `[[auth]]`: Basic authentication with bcrypt checks on the offload pool, over TCP.

use crate::support::{metric, scrape, Client, Response, TestServer};
use std::io::Read;
use std::path::Path;
use std::process::Command;

const METRICS: &str = "[metrics]\nlisten = \"127.0.0.1:0\"\n";
const CHALLENGE: &str = "Basic realm=\"staging\", charset=\"UTF-8\"";

fn b64(s: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in s.as_bytes().chunks(3) {
        let n = c
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn htpasswd(dir: &Path, name: &str, users: &[(&str, &str)], cost: u32) {
    let text: String = users
        .iter()
        .map(|(u, p)| format!("{u}:{}\n", bcrypt::hash(p, cost).expect("hash")))
        .collect();
    std::fs::write(dir.join(name), text).expect("write htpasswd");
}

fn files(root: &Path) {
    for d in ["staging", "staging/inner", "open"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    std::fs::write(root.join("staging/a.txt"), b"secret a\n").expect("write");
    std::fs::write(root.join("staging/inner/b.txt"), b"secret b\n").expect("write");
    std::fs::write(root.join("open/c.txt"), b"public c\n").expect("write");
    std::fs::write(root.join("small.txt"), b"hello, vireo\n").expect("write");
}

fn get_as(c: &mut Client, path: &str, auth: Option<&str>) -> Response {
    let h = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n{h}\r\n").as_bytes());
    c.read_response()
}

/// A server proxying `/api/` to `upstream` behind `[[auth]]` (alice/a1, bob/b2, carol/c3,
/// dave/d4), with `extra` config and `static.txt` in its root. The hashes are slower than
/// elsewhere (cost 8), so a request body is at the server before its check's verdict.
pub(crate) fn proxy_behind_auth(upstream: std::net::SocketAddr, extra: &str) -> TestServer {
    TestServer::start_with(
        &format!(
            "[[auth]]\npath = \"/api/\"\nrealm = \"app\"\nhtpasswd = \"app.htpasswd\"\n\
             [[proxy]]\npath = \"/api/\"\npass = \"http://{upstream}\"\n{extra}"
        ),
        |root| {
            let users = [
                ("alice", "a1"),
                ("bob", "b2"),
                ("carol", "c3"),
                ("dave", "d4"),
            ];
            htpasswd(root.parent().expect("parent"), "app.htpasswd", &users, 8);
            std::fs::write(root.join("static.txt"), "static").expect("write");
        },
    )
}

pub(crate) fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", b64(&format!("{user}:{password}")))
}

const RULES: &str = "[[auth]]\npath = \"/staging/\"\nrealm = \"staging\"\nhtpasswd = \"staging.htpasswd\"\n\
                     [[auth]]\npath = \"/staging/inner/\"\nrealm = \"inner\"\nhtpasswd = \"inner.htpasswd\"\n";

fn server(extra: &str) -> TestServer {
    TestServer::start_with(&format!("{RULES}{METRICS}{extra}"), |root| {
        files(root);
        let dir = root.parent().expect("parent");
        htpasswd(dir, "staging.htpasswd", &[("alice", "wonder land")], 4);
        htpasswd(dir, "inner.htpasswd", &[("bob", "b0b")], 4);
    })
}

fn jobs(s: &TestServer, state: &str) -> u64 {
    metric(
        &scrape(s),
        "vireo_auth_jobs_total",
        &format!("state=\"{state}\""),
    )
}

#[test]
fn basic_auth_challenges_checks_and_caches() {
    let s = server("");
    let mut c = s.connect();
    // No credentials, or unusable ones: 401 with the challenge, no job.
    for auth in [
        None,
        Some("Bearer abc"),
        Some("Basic !!!"),
        Some("Basic"),
        Some(&*format!("Basic {}", b64("no colon"))),
    ] {
        let r = get_as(&mut c, "/staging/a.txt", auth);
        assert_eq!(r.status, 401, "{auth:?}: {}", r.head);
        assert_eq!(r.header("www-authenticate"), Some(CHALLENGE), "{auth:?}");
        assert!(String::from_utf8_lossy(&r.body).contains("401 Unauthorized"));
    }
    assert_eq!(jobs(&s, "started"), 0);
    // A user not in the file is checked against another user's hash (here alice's, with
    // alice's right password) so it takes as long as a wrong password, and still refused.
    let r = get_as(
        &mut c,
        "/staging/a.txt",
        Some(&basic("mallory", "wonder land")),
    );
    assert_eq!(r.status, 401, "{}", r.head);
    assert_eq!(r.header("www-authenticate"), Some(CHALLENGE));
    assert_eq!(
        jobs(&s, "started"),
        1,
        "an unknown user costs a check like a wrong password"
    );
    let r = get_as(
        &mut c,
        "/staging/a.txt",
        Some(&basic("mallory", "wonder land")),
    );
    assert_eq!(r.status, 401, "never cached as a success");
    let base = jobs(&s, "started");
    // A wrong password is checked on the pool, then refused; so is the right password
    // for another user's rule... after one check each.
    let r = get_as(
        &mut c,
        "/staging/a.txt",
        Some(&basic("alice", "wonderland")),
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some(CHALLENGE));
    let r = get_as(
        &mut c,
        "/staging/a.txt",
        Some(&basic("alice", "wonder land")),
    );
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.body, b"secret a\n");
    assert_eq!(jobs(&s, "completed"), base + 2);
    // Logged in: served from the cache, on this connection and on a new one.
    for _ in 0..3 {
        let r = get_as(
            &mut c,
            "/staging/a.txt",
            Some(&basic("alice", "wonder land")),
        );
        assert_eq!((r.status, &r.body[..]), (200, &b"secret a\n"[..]));
    }
    let r = get_as(
        &mut s.connect(),
        "/staging/",
        Some(&basic("alice", "wonder land")),
    );
    assert_ne!(
        r.status, 401,
        "the directory itself is covered by the cache too"
    );
    let text = scrape(&s);
    assert_eq!(
        metric(&text, "vireo_auth_jobs_total", "state=\"started\""),
        base + 2
    );
    assert!(
        metric(&text, "vireo_auth_cache_hits_total", "") >= 4,
        "{text}"
    );
    // Outside every rule: open, whatever the credentials.
    for auth in [None, Some("Basic !!!")] {
        let r = get_as(&mut c, "/open/c.txt", auth);
        assert_eq!((r.status, &r.body[..]), (200, &b"public c\n"[..]));
    }
    // `/staging` (no slash) is only a redirect to the protected directory.
    assert_eq!(get_as(&mut c, "/staging", None).status, 301);
    // The encoded or dotted path cannot dodge the rule.
    for p in [
        "/%73taging/a.txt",
        "/open/../staging/a.txt",
        "//staging/a.txt",
    ] {
        assert_eq!(get_as(&mut c, p, None).status, 401, "{p}");
    }
    // Longest rule wins: /staging/inner/ takes bob only, with its own realm.
    let r = get_as(
        &mut c,
        "/staging/inner/b.txt",
        Some(&basic("alice", "wonder land")),
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"inner\", charset=\"UTF-8\"")
    );
    let r = get_as(&mut c, "/staging/inner/b.txt", Some(&basic("bob", "b0b")));
    assert_eq!((r.status, &r.body[..]), (200, &b"secret b\n"[..]));
    let r = get_as(&mut c, "/staging/a.txt", Some(&basic("bob", "b0b")));
    assert_eq!(r.status, 401, "bob is not a user of /staging/");
}

#[test]
fn a_checked_request_keeps_its_pipelined_followers_in_order() {
    let s = server("");
    let mut c = s.connect();
    let a = basic("alice", "wonder land");
    c.send(
        format!(
            "GET /staging/a.txt HTTP/1.1\r\nHost: t\r\nAuthorization: {a}\r\n\r\n\
             HEAD /small.txt HTTP/1.1\r\nHost: t\r\n\r\n\
             GET /staging/a.txt HTTP/1.1\r\nHost: t\r\nAuthorization: Basic eDp5\r\n\r\n\
             GET /open/c.txt HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        .as_bytes(),
    );
    let r = c.read_response();
    assert_eq!((r.status, &r.body[..]), (200, &b"secret a\n"[..]));
    let r = c.read_response_to(true);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("13"));
    assert_eq!(c.read_response().status, 401);
    assert_eq!(c.read_response().body, b"public c\n");
}

#[test]
fn reload_rereads_the_htpasswd_file() {
    let s = server("");
    let dir = s.dir.path().to_path_buf();
    let mut c = s.connect();
    let old = basic("alice", "wonder land");
    assert_eq!(get_as(&mut c, "/staging/a.txt", Some(&old)).status, 200);
    htpasswd(&dir, "staging.htpasswd", &[("alice", "new pass")], 4);
    s.signal(1);
    s.wait_reloads("ok", 1);
    let mut c = s.connect();
    assert_eq!(
        get_as(&mut c, "/staging/a.txt", Some(&old)).status,
        401,
        "the cached old password is not trusted after the file changed"
    );
    let r = get_as(&mut c, "/staging/a.txt", Some(&basic("alice", "new pass")));
    assert_eq!((r.status, &r.body[..]), (200, &b"secret a\n"[..]));
    // A broken file is refused at reload, and the running rules stay.
    std::fs::write(dir.join("staging.htpasswd"), "alice:$apr1$x$y\n").expect("write");
    s.signal(1);
    s.wait_reloads("failed", 1);
    let r = get_as(&mut c, "/staging/a.txt", Some(&basic("alice", "new pass")));
    assert_eq!(r.status, 200);
}

/// Issue 21: a user removed from the file is logged out by the reload, even when its line
/// was a copy of another user's (same hash string, so the decoy an unknown user is checked
/// against is the very hash its cached success was for); and a reload that changes the file
/// drops every cached success of it, while one that keeps the file keeps them.
#[test]
fn a_removed_user_is_logged_out_by_the_reload() {
    let h = bcrypt::hash("pw", 4).expect("hash");
    let s = TestServer::start_with(
        &format!(
            "[[auth]]\npath = \"/staging/\"\nrealm = \"staging\"\nhtpasswd = \"staging.htpasswd\"\n{METRICS}"
        ),
        |root| {
            files(root);
            let dir = root.parent().expect("parent");
            std::fs::write(dir.join("staging.htpasswd"), format!("alice:{h}\nbob:{h}\n"))
                .expect("write");
        },
    );
    let dir = s.dir.path().to_path_buf();
    let (alice, bob) = (basic("alice", "pw"), basic("bob", "pw"));
    let mut c = s.connect();
    for a in [&alice, &bob] {
        assert_eq!(get_as(&mut c, "/staging/a.txt", Some(a)).status, 200);
    }
    std::fs::write(dir.join("staging.htpasswd"), format!("alice:{h}\n")).expect("write");
    s.signal(1);
    s.wait_reloads("ok", 1);
    let mut c = s.connect();
    let r = get_as(&mut c, "/staging/a.txt", Some(&bob));
    assert_eq!(r.status, 401, "bob was removed: {}", r.head);
    let before = jobs(&s, "started");
    assert_eq!(get_as(&mut c, "/staging/a.txt", Some(&alice)).status, 200);
    assert_eq!(
        jobs(&s, "started"),
        before + 1,
        "a cached success of the old file is checked again after it changed"
    );
    // The same file again: its cached successes stay.
    s.signal(1);
    s.wait_reloads("ok", 2);
    let mut c = s.connect();
    let before = jobs(&s, "started");
    assert_eq!(get_as(&mut c, "/staging/a.txt", Some(&alice)).status, 200);
    assert_eq!(get_as(&mut c, "/staging/a.txt", Some(&bob)).status, 401);
    assert_eq!(
        jobs(&s, "started"),
        before + 1,
        "alice from the cache, bob's decoy check on the pool"
    );
}

#[test]
fn over_the_budget_a_check_is_refused_with_503() {
    // Password checks have their own budget: a full compression budget is not theirs.
    let s = server("[limits]\nmax_password_checks = 0\n");
    let mut c = s.connect();
    let r = get_as(
        &mut c,
        "/staging/a.txt",
        Some(&basic("alice", "wonder land")),
    );
    assert_eq!(r.status, 503, "{}", r.head);
    assert!(r.header("retry-after").is_some(), "{}", r.head);
    // No credentials needs no check: still the plain 401.
    assert_eq!(get_as(&mut c, "/staging/a.txt", None).status, 401);
    assert_eq!(jobs(&s, "rejected"), 1);
    assert_eq!(jobs(&s, "started"), 0);
}

/// Several cost-12 checks run on the one pool thread while the one reactor keeps
/// answering: every small-file request is answered before any check's answer arrives.
#[test]
fn the_reactor_keeps_serving_while_bcrypt_runs() {
    let s = TestServer::start_with(
        &format!("workers = 1\n[compression]\nthreads = 1\n{RULES}{METRICS}"),
        |root| {
            files(root);
            let dir = root.parent().expect("parent");
            htpasswd(dir, "staging.htpasswd", &[("alice", "wonder land")], 12);
            htpasswd(dir, "inner.htpasswd", &[("bob", "b0b")], 4);
        },
    );
    let mut checks: Vec<Client> = (0..4).map(|_| s.connect()).collect();
    for (i, c) in checks.iter_mut().enumerate() {
        let a = basic("alice", &format!("wrong {i}"));
        c.send(
            format!("GET /staging/a.txt HTTP/1.1\r\nHost: t\r\nAuthorization: {a}\r\n\r\n")
                .as_bytes(),
        );
    }
    // The checks are all on the pool (or queued for it) before the small requests go.
    let start = std::time::Instant::now();
    while jobs(&s, "started") < 4 {
        assert!(
            start.elapsed() < crate::support::TIMEOUT,
            "checks never started"
        );
        std::thread::yield_now();
    }
    let mut small = s.connect();
    for _ in 0..20 {
        let r = small.get("/small.txt");
        assert_eq!((r.status, &r.body[..]), (200, &b"hello, vireo\n"[..]));
    }
    let done = jobs(&s, "completed");
    assert!(
        done < 4,
        "all four cost-12 checks finished during 20 small requests"
    );
    // The checks still running have not answered: their sockets have nothing to read.
    let mut unanswered = 0;
    for c in &mut checks {
        c.stream.set_nonblocking(true).expect("nonblocking");
        let mut b = [0u8; 1];
        if matches!(c.stream.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock) {
            unanswered += 1;
        }
        c.stream.set_nonblocking(false).expect("blocking");
    }
    assert!(unanswered >= 1, "no check was still pending");
    for c in &mut checks {
        assert_eq!(c.read_response().status, 401);
    }
    assert_eq!(jobs(&s, "completed"), 4);
}

fn check(setup: impl FnOnce(&Path)) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("public")).expect("mkdir");
    setup(dir.path());
    let path = dir.path().join("v.toml");
    std::fs::write(
        &path,
        "root = \"public\"\n[[auth]]\npath = \"/s/\"\nrealm = \"s\"\nhtpasswd = \"s.htpasswd\"\n",
    )
    .expect("write");
    let o = Command::new(env!("CARGO_BIN_EXE_vireo"))
        .args(["--check", "--config", path.to_str().expect("utf8")])
        .output()
        .expect("run vireo");
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn check_refuses_htpasswd_files_vireo_cannot_verify() {
    let good = bcrypt::hash("pw", 4).expect("hash");
    let (code, err) = check(|d| {
        std::fs::write(d.join("s.htpasswd"), format!("# users\na:{good}\n")).expect("write")
    });
    assert_eq!(code, Some(0), "{err}");
    for (text, needle) in [
        (
            format!("a:{good}\nb:$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/\n"),
            "line 2: user \"b\": MD5 ($apr1$)",
        ),
        (
            format!("\n\nc:{{SHA}}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\na:{good}\n"),
            "line 3: user \"c\": SHA-1 ({SHA})",
        ),
        ("d:rqXexS6ZhobKA\n".into(), "line 1: user \"d\": crypt"),
        (
            format!("a:{good}\nb:{good}\na:{good}\n"),
            "line 3: user \"a\" is already defined on line 1",
        ),
        (
            format!("a:{good}\n{}", "#".repeat(1 << 20)),
            "larger than 1048576 bytes",
        ),
    ] {
        let (code, err) = check(|d| std::fs::write(d.join("s.htpasswd"), &text).expect("write"));
        assert_eq!(code, Some(1), "{err}");
        assert!(
            err.contains(needle) && err.contains("s.htpasswd") && err.contains("auth.htpasswd"),
            "{needle}: {err}"
        );
    }
    let (code, err) = check(|_| {});
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot open"), "{err}");
}

/// Issue 21: an unknown user is checked against the file's costliest hash, so with mixed
/// bcrypt costs a known user's cheaper hash would answer faster than the decoy: `--check`
/// (and start, and reload) warns about such a file, and still accepts it.
#[test]
fn check_warns_about_mixed_bcrypt_costs() {
    let (code, err) = check(|d| {
        let text = format!(
            "a:{}\nb:{}\n",
            bcrypt::hash("pw", 4).expect("hash"),
            bcrypt::hash("pw", 5).expect("hash")
        );
        std::fs::write(d.join("s.htpasswd"), text).expect("write")
    });
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("warning") && err.contains("s.htpasswd") && err.contains("costs 4 to 5"),
        "no mixed-cost warning: {err:?}"
    );
    let (code, err) = check(|d| htpasswd(d, "s.htpasswd", &[("a", "x"), ("b", "y")], 4));
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("warning"), "one cost, no warning: {err}");
}

/// Issue 21: password checks and TLS handshakes never share a queue. Eight cost-12 checks
/// with distinct bogus credentials (unknown users check against the decoy) fill the one CPU
/// thread for seconds; a new HTTPS connection is still answered while most of them are
/// pending. Before, its ClientHello queued behind all eight.
#[test]
fn a_flood_of_password_checks_does_not_stall_tls_handshakes() {
    let s = TestServer::start_tls(
        &format!(
            "workers = 1\n[compression]\nthreads = 1\n[limits]\nmax_password_checks = 64\n{RULES}{METRICS}"
        ),
        "",
        |root| {
            files(root);
            let dir = root.parent().expect("parent");
            htpasswd(dir, "staging.htpasswd", &[("alice", "wonder land")], 12);
            htpasswd(dir, "inner.htpasswd", &[("bob", "b0b")], 4);
        },
    );
    const FLOOD: usize = 8;
    let mut checks: Vec<Client> = (0..FLOOD).map(|_| s.connect()).collect();
    for (i, c) in checks.iter_mut().enumerate() {
        let a = basic(&format!("nobody{i}"), "guess");
        c.send(
            format!("GET /staging/a.txt HTTP/1.1\r\nHost: t\r\nAuthorization: {a}\r\n\r\n")
                .as_bytes(),
        );
    }
    let start = std::time::Instant::now();
    while jobs(&s, "started") < FLOOD as u64 {
        assert!(
            start.elapsed() < crate::support::TIMEOUT,
            "checks never started"
        );
        std::thread::yield_now();
    }
    let mut tls = s.connect_tls();
    let r = tls.get("/small.txt");
    assert_eq!((r.status, &r.body[..]), (200, &b"hello, vireo\n"[..]));
    let done = jobs(&s, "completed");
    assert!(
        done < FLOOD as u64 / 2,
        "{done} of {FLOOD} cost-12 checks finished before one TLS handshake"
    );
    for c in &mut checks {
        assert_eq!(c.read_response().status, 401);
    }
}

/// Issue 21: a precompressed sidecar asked for by its own name (`data.json.gz`) is judged
/// by the rules of the file it stands for (`data.json`) too: `[[auth]]`, `[[redirects]]`,
/// `[[headers]]` and hidden files. Before, `/**/*.json` protected `data.json` but served
/// `data.json.gz` (its content, compressed) to anyone.
#[test]
fn sidecars_asked_for_directly_are_judged_as_the_file_they_stand_for() {
    let s = TestServer::start_with(
        &format!(
            "[[auth]]\npath = \"/**/*.json\"\nrealm = \"staging\"\nhtpasswd = \"staging.htpasswd\"\n\
             [[redirects]]\nfrom = \"/old.css\"\nto = \"/new.css\"\n\
             [[redirects]]\nfrom = \"/moved/**/*.txt\"\nto = \"/gone.txt\"\n\
             [[headers]]\npath = \"/**/*.txt\"\nset = {{ \"X-Txt\" = \"1\" }}\n{METRICS}"
        ),
        |root| {
            for (name, body) in [
                ("data.json", &b"{\"secret\": 1}\n"[..]),
                ("data.json.gz", b"gz of the secret"),
                ("data.json.br", b"br of the secret"),
                ("data.json.zst", b"zst of the secret"),
                ("data.json.gz.br", b"br of the gz"),
                ("old.css.gz", b"old gz"),
                ("moved/a/b.txt.br", b"moved br"),
                ("notes.txt.gz", b"notes gz"),
                (".env.gz", b"hidden gz"),
            ] {
                let p = root.join(name);
                std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
                std::fs::write(p, body).expect("write");
            }
            let dir = root.parent().expect("parent");
            htpasswd(dir, "staging.htpasswd", &[("alice", "wonder land")], 4);
        },
    );
    let mut c = s.connect();
    for p in [
        "/data.json",
        "/data.json.gz",
        "/data.json.br",
        "/data.json.zst",
        "/data.json.gz.br",
        "/x/../data.json.gz",
    ] {
        let r = get_as(&mut c, p, None);
        assert_eq!(r.status, 401, "{p}: {}", r.head);
        assert_eq!(r.header("www-authenticate"), Some(CHALLENGE), "{p}");
    }
    let r = get_as(
        &mut c,
        "/data.json.gz",
        Some(&basic("alice", "wonder land")),
    );
    assert_eq!((r.status, &r.body[..]), (200, &b"gz of the secret"[..]));
    for (p, to) in [
        ("/old.css.gz", "/new.css"),
        ("/moved/a/b.txt.br", "/gone.txt"),
    ] {
        let r = get_as(&mut c, p, None);
        assert_eq!(r.status, 301, "{p}: {}", r.head);
        assert_eq!(r.header("location"), Some(to), "{p}");
    }
    let r = get_as(&mut c, "/notes.txt.gz", None);
    assert_eq!((r.status, &r.body[..]), (200, &b"notes gz"[..]));
    assert_eq!(r.header("x-txt"), Some("1"), "{}", r.head);
    assert_eq!(get_as(&mut c, "/.env.gz", None).status, 404);
}

/// Issue 21: the most specific rule is the one with the longest literal prefix (the part
/// before the first `*`), not the longest pattern: `/admin/` beats `/**/*.pdf` for
/// `/admin/x.pdf`, where the longer glob used to let staff in. And a rule covers its path
/// ASCII case-insensitively, as a case-folding docroot would serve it.
#[test]
fn the_rule_with_the_longest_literal_prefix_wins_whatever_the_case() {
    let s = TestServer::start_with(
        &format!(
            "[[auth]]\npath = \"/**/*.pdf\"\nrealm = \"staff\"\nhtpasswd = \"staff.htpasswd\"\n\
             [[auth]]\npath = \"/admin/\"\nrealm = \"admins\"\nhtpasswd = \"admins.htpasswd\"\n{METRICS}"
        ),
        |root| {
            for d in ["admin", "docs"] {
                std::fs::create_dir_all(root.join(d)).expect("mkdir");
            }
            std::fs::write(root.join("admin/x.pdf"), b"admin pdf").expect("write");
            std::fs::write(root.join("admin/a.txt"), b"admin txt").expect("write");
            std::fs::write(root.join("docs/y.pdf"), b"docs pdf").expect("write");
            let dir = root.parent().expect("parent");
            htpasswd(dir, "staff.htpasswd", &[("sam", "s4m")], 4);
            htpasswd(dir, "admins.htpasswd", &[("ada", "4da")], 4);
        },
    );
    let realm = |r: &str| format!("Basic realm=\"{r}\", charset=\"UTF-8\"");
    let mut c = s.connect();
    let r = get_as(&mut c, "/admin/x.pdf", Some(&basic("sam", "s4m")));
    assert_eq!(r.status, 401, "staff let into /admin/: {}", r.head);
    assert_eq!(r.header("www-authenticate"), Some(&*realm("admins")));
    let r = get_as(&mut c, "/admin/x.pdf", Some(&basic("ada", "4da")));
    assert_eq!((r.status, &r.body[..]), (200, &b"admin pdf"[..]));
    let r = get_as(&mut c, "/docs/y.pdf", Some(&basic("sam", "s4m")));
    assert_eq!((r.status, &r.body[..]), (200, &b"docs pdf"[..]));
    for (p, want) in [
        ("/docs/y.pdf", "staff"),
        ("/ADMIN/a.txt", "admins"),
        ("/Admin/x.pdf", "admins"),
        ("/docs/Y.PDF", "staff"),
    ] {
        let r = get_as(&mut c, p, None);
        assert_eq!(r.status, 401, "{p}: {}", r.head);
        assert_eq!(r.header("www-authenticate"), Some(&*realm(want)), "{p}");
    }
}

#[test]
fn a_rule_for_index_files_protects_the_directory_that_serves_one() {
    // nginx's index is an internal redirect, judged again by `location ~ \.html$`.
    let s = TestServer::start_with(
        &format!(
            "[[auth]]\npath = \"/**/*.html\"\nrealm = \"staging\"\nhtpasswd = \"staging.htpasswd\"\n{METRICS}"
        ),
        |root| {
            std::fs::create_dir_all(root.join("dir")).expect("mkdir");
            std::fs::write(root.join("dir/index.html"), b"secret index\n").expect("write");
            std::fs::write(root.join("index.html"), b"secret home\n").expect("write");
            std::fs::write(root.join("open.txt"), b"public\n").expect("write");
            let dir = root.parent().expect("parent");
            htpasswd(dir, "staging.htpasswd", &[("alice", "wonder land")], 4);
        },
    );
    let mut c = s.connect();
    for p in ["/dir/", "/", "/dir/index.html", "/dir/./"] {
        let r = get_as(&mut c, p, None);
        assert_eq!(r.status, 401, "{p}: {}", r.head);
        assert!(!r.body.windows(6).any(|w| w == b"secret"), "{p} leaked");
    }
    let ok = basic("alice", "wonder land");
    let r = get_as(&mut c, "/dir/", Some(&ok));
    assert_eq!((r.status, &r.body[..]), (200, &b"secret index\n"[..]));
    let r = get_as(&mut c, "/", Some(&ok));
    assert_eq!((r.status, &r.body[..]), (200, &b"secret home\n"[..]));
    assert_eq!(get_as(&mut c, "/open.txt", None).status, 200);
    assert_eq!(
        get_as(&mut c, "/dir/", Some(&basic("alice", "no"))).status,
        401
    );
}
