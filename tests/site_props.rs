//! Property test over the site layer, through one connection in memory (the harness):
//! whatever `Host` (or absolute-form authority) and path a client sends, a 200 carries
//! the bytes of a file under the root of the site that name picks, never another
//! site's. Every root holds files with the same names but contents tagged with their
//! site, and symlinks into the other roots (which the resolver must refuse).

use proptest::prelude::*;
use std::cell::RefCell;
use std::collections::HashSet;
use std::path::Path;
use vireo::net::harness::{Harness, Step};
use vireo::Config;

const SITES: [&str; 4] = ["default", "a", "b", "c"];
/// Paths present in every root, plus a hidden file and a directory with an index.
const FILES: [&str; 6] = [
    "who.txt",
    "index.html",
    "sub/x.txt",
    "sub/index.html",
    ".hidden",
    "sub/.well-known/y.txt",
];

const CONFIG: &str = "root = \"default\"
hidden = \"allow\"
[[site]]
hosts = [\"a.test\", \"*.a.test\"]
root = \"a\"
hidden = \"deny\"
[[site]]
hosts = [\"b.test\", \"*.b.a.test\", \"[::1]\"]
root = \"b\"
[[site]]
hosts = [\"c.test\"]
root = \"c\"
fallback = \"/index.html\"
";

fn content(site: &str, file: &str) -> String {
    format!("site={site};file={file}\n")
}

struct World {
    harness: Harness,
    /// The contents of every file under each root, by site name.
    files: Vec<(&'static str, HashSet<Vec<u8>>)>,
    _dir: tempfile::TempDir,
}

fn build() -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut files = Vec::new();
    for site in SITES {
        let root = dir.path().join(site);
        let mut set = HashSet::new();
        for f in FILES {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, content(site, f)).expect("write");
            set.insert(content(site, f).into_bytes());
        }
        files.push((site, set));
    }
    // Ways into another site's root: relative and absolute symlinks, a linked directory.
    for (from, to) in [("a", "b"), ("b", "c"), ("c", "a"), ("default", "a")] {
        let root = dir.path().join(from);
        let other = dir.path().join(to);
        let link = |target: &Path, name: &str| {
            std::os::unix::fs::symlink(target, root.join(name)).expect("symlink")
        };
        link(&Path::new("..").join(to).join("who.txt"), "rel.txt");
        link(&other.join("who.txt"), "abs.txt");
        link(&other.join("sub"), "subdir");
        link(&Path::new("..").join(to), "up");
    }
    let config = Config::from_toml(CONFIG, dir.path(), "t.toml").expect("config");
    World {
        harness: Harness::new(config).expect("harness"),
        files,
        _dir: dir,
    }
}

/// The site a name picks, modelled independently of the matcher: exact names, then the
/// longest wildcard, else the default; case, port and one trailing dot ignored.
fn expected_site(host: &str) -> &'static str {
    let name = if host.starts_with('[') {
        &host[..host.find(']').map_or(host.len(), |i| i + 1)]
    } else {
        host.split(':').next().unwrap_or("")
    };
    let name = name.to_ascii_lowercase();
    let name = name.strip_suffix('.').unwrap_or(&name);
    match name {
        "a.test" => "a",
        "b.test" | "[::1]" => "b",
        "c.test" => "c",
        n if n.ends_with(".b.a.test") => "b",
        n if n.ends_with(".a.test") => "a",
        _ => "default",
    }
}

fn host() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        Just("a.test".to_string()),
        Just("A.Test.".to_string()),
        Just("www.a.test".to_string()),
        Just("b.test".to_string()),
        Just("x.b.a.test".to_string()),
        Just("X.Y.B.A.TEST".to_string()),
        Just("c.test".to_string()),
        Just("[::1]".to_string()),
        Just("[::2]".to_string()),
        Just("127.0.0.1".to_string()),
        Just("b.a.test".to_string()),
        Just("test".to_string()),
        "[a-cA-C.]{1,12}(\\.test)?",
    ];
    (name, prop::option::of(0u16..65535))
        .prop_map(|(n, port)| port.map_or(n.clone(), |p| format!("{n}:{p}")))
}

fn path() -> impl Strategy<Value = String> {
    let seg = prop_oneof![
        Just("who.txt"),
        Just("index.html"),
        Just("sub"),
        Just("x.txt"),
        Just(".hidden"),
        Just(".well-known"),
        Just("y.txt"),
        Just(".."),
        Just("."),
        Just("%2e%2e"),
        Just("%2f"),
        Just(""),
        Just("rel.txt"),
        Just("abs.txt"),
        Just("subdir"),
        Just("up"),
        Just("a"),
        Just("b"),
        Just("c"),
        Just("default"),
        Just("nope"),
    ];
    (prop::collection::vec(seg, 0..6), any::<bool>())
        .prop_map(|(segs, slash)| format!("/{}{}", segs.join("/"), if slash { "/" } else { "" }))
}

/// One response to a request sent with `Connection: close`: status and body.
fn parse(output: &[u8]) -> (u16, Vec<u8>) {
    let end = output
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head")
        + 4;
    let head = std::str::from_utf8(&output[..end]).expect("ascii head");
    let status = head[9..12].parse().expect("status");
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().expect("length"))
        })
        .unwrap_or(0);
    let body = output[end..].to_vec();
    assert_eq!(body.len(), len, "{head}");
    (status, body)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_200_serves_a_file_of_the_chosen_sites_root(
        host in host(),
        path in path(),
        absolute in any::<bool>(),
    ) {
        thread_local! {
            static W: RefCell<Option<World>> = const { RefCell::new(None) };
        }
        W.with(|w| {
            let mut w = w.borrow_mut();
            let w = w.get_or_insert_with(build);
            // An absolute-form target's authority wins over Host (which then names
            // another site on purpose).
            let (target, host_line) = if absolute {
                (format!("http://{host}{path}"), "c.test".to_string())
            } else {
                (path.clone(), host.clone())
            };
            let req = format!("GET {target} HTTP/1.1\r\nHost: {host_line}\r\nConnection: close\r\n\r\n");
            let t = w.harness.run(&[Step::Data(req.into_bytes())]).expect("run");
            let (status, body) = parse(&t.output);
            if status != 200 {
                return Ok(());
            }
            let site = expected_site(&host);
            let (_, files) = w.files.iter().find(|(s, _)| *s == site).expect("site");
            prop_assert!(
                files.contains(&body),
                "GET {} (Host {}) picked {}: served {:?}",
                target, host_line, site, String::from_utf8_lossy(&body)
            );
            Ok(())
        })?;
    }
}
