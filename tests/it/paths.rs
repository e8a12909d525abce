//! The path a request names, over real TCP: decisions on the normalised path (index,
//! `[[headers]]`, `.gz` sidecar, directory redirect), safe redirects, hidden files.

use crate::support::*;
use std::path::Path;

const RULES: &str = r#"
[[headers]]
path = "/assets/"
set = { "Cache-Control" = "immutable" }
"#;

const INDEX: &str = "<h1>assets</h1>\n";

/// A gzip stream of `data` that on-the-fly compression would never produce (it names a
/// file), so a test can tell a sidecar from a compressed response.
fn gz_named(data: &[u8], name: &str) -> Vec<u8> {
    let mut enc = flate2::GzBuilder::new()
        .filename(name)
        .write(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut enc, data).expect("gz");
    enc.finish().expect("gz")
}

fn index_text() -> String {
    INDEX.repeat(40)
}

fn asset_tree(root: &Path) {
    default_files(root);
    std::fs::create_dir(root.join("assets")).expect("mkdir");
    std::fs::write(root.join("assets/index.html"), index_text()).expect("write");
    std::fs::write(
        root.join("assets/index.html.gz"),
        gz_named(index_text().as_bytes(), "index.html"),
    )
    .expect("write");
    // The directory's sibling: never the index's representation.
    std::fs::write(root.join("assets.gz"), gz_named(b"WRONG FILE\n", "assets")).expect("write");
}

fn get_with(c: &mut Client, path: &str, headers: &str) -> Response {
    c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n{headers}\r\n").as_bytes());
    c.read_response()
}

#[test]
fn dot_segment_forms_of_a_directory_are_that_directory() {
    let s = TestServer::start_with(RULES, asset_tree);
    let mut c = s.connect();
    for path in [
        "/assets/",
        "/assets/.",
        "/assets/x/..",
        "/x/../assets/",
        "//assets/./",
    ] {
        let r = c.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.body, index_text().as_bytes(), "{path}");
        assert_eq!(r.header("cache-control"), Some("immutable"), "{path}");
    }
}

#[test]
fn the_sidecar_of_an_index_is_index_html_gz() {
    let s = TestServer::start_with(RULES, asset_tree);
    let sidecar = gz_named(index_text().as_bytes(), "index.html");
    let mut c = s.connect();
    for path in ["/assets/", "/assets/.", "/assets/x/.."] {
        let r = get_with(&mut c, path, "Accept-Encoding: gzip\r\n");
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-encoding"), Some("gzip"), "{path}");
        assert!(r.body == sidecar, "{path}: not assets/index.html.gz");
        assert_eq!(r.header("cache-control"), Some("immutable"), "{path}");
    }
}

#[test]
fn the_directory_redirect_uses_the_normalised_path() {
    let s = TestServer::start_with(RULES, |root| {
        asset_tree(root);
        for d in ["a b%", "été", "q?#x", "back\\slash"] {
            std::fs::create_dir(root.join(d)).expect("mkdir");
        }
    });
    let mut c = s.connect();
    for (path, location) in [
        ("/assets", "/assets/"),
        ("/x/../assets?q=1", "/assets/?q=1"),
        ("/assets/x/../../assets", "/assets/"),
        ("/%61ssets", "/assets/"),
        ("/a%20b%25", "/a%20b%25/"),
        ("/%C3%A9t%C3%A9?x=%2F", "/%C3%A9t%C3%A9/?x=%2F"),
        ("/q%3F%23x", "/q%3F%23x/"),
        ("/back%5Cslash", "/back%5Cslash/"),
    ] {
        let r = c.get(path);
        assert_eq!(r.status, 301, "{path}");
        assert_eq!(r.header("location"), Some(location), "{path}");
        // The redirect is no file response: no `[[headers]]`.
        assert!(r.header("cache-control").is_none(), "{path}");
    }
}

#[test]
fn a_redirect_never_points_at_another_host() {
    let s = TestServer::start_with("", asset_tree);
    let mut c = s.connect();
    for (path, location) in [
        ("//evil.example/%2e%2e/assets", "/assets/"),
        ("//evil.example/%2e%2e/assets?next=1", "/assets/?next=1"),
        ("//evil.example/../assets", "/assets/"),
        ("///evil.example/..//assets", "/assets/"),
    ] {
        let r = c.get(path);
        assert_eq!(r.status, 301, "{path}");
        let loc = r.header("location").expect("location");
        assert_eq!(loc, location, "{path}");
        assert!(!loc.starts_with("//"), "{path}: {loc}");
    }
}

fn hidden_tree(root: &Path) {
    default_files(root);
    std::fs::write(root.join(".env"), b"SECRET=1\n").expect("write");
    std::fs::create_dir(root.join(".git")).expect("mkdir");
    std::fs::write(root.join(".git/config"), b"[core]\n").expect("write");
    std::fs::create_dir_all(root.join("a/.hidden")).expect("mkdir");
    std::fs::write(root.join("a/.hidden/x"), b"x\n").expect("write");
    std::fs::create_dir(root.join(".well-known")).expect("mkdir");
    std::fs::write(root.join(".well-known/x"), b"well known\n").expect("write");
}

const HIDDEN: [&str; 6] = [
    "/.env",
    "/.git/config",
    "/%2egit/config",
    "/%2Eenv",
    "/a/.hidden/x",
    "/a/%2ehidden/x",
];

#[test]
fn hidden_files_are_not_found_by_default() {
    let s = TestServer::start_with("", hidden_tree);
    let mut c = s.connect();
    for path in HIDDEN {
        let r = c.get(path);
        assert_eq!(r.status, 404, "{path}");
        assert!(!String::from_utf8_lossy(&r.body).contains("SECRET"));
    }
    // Directories too, and no redirect reveals them.
    assert_eq!(c.get("/.git").status, 404);
    assert_eq!(c.get("/.git/").status, 404);
    let r = c.get("/.well-known/x");
    assert_eq!((r.status, &r.body[..]), (200, &b"well known\n"[..]));
    // Dot segments are not names: they still resolve.
    assert_eq!(c.get("/a/../small.txt").status, 200);
}

#[test]
fn hidden_allow_serves_them() {
    let s = TestServer::start_with("hidden = \"allow\"\n", hidden_tree);
    let mut c = s.connect();
    for path in HIDDEN {
        assert_eq!(c.get(path).status, 200, "{path}");
    }
    assert_eq!(c.get("/.env").body, b"SECRET=1\n");
    assert_eq!(c.get("/.well-known/x").status, 200);
}
