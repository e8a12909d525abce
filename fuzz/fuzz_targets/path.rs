//! Path normaliser and resolver: the normalised path never climbs (no "." / ".." /
//! empty segment, no leading '/', no NUL), normalising is idempotent, and a Resolver on
//! a temporary root never hands out a file or directory that lies outside it.
#![no_main]

use std::collections::HashSet;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vireo::http::path::normalize;
use vireo::site::files::{FileError, Resolved, Resolver};

struct World {
    resolver: Resolver,
    /// (dev, ino) of every file and directory under the root.
    inside: HashSet<(u64, u64)>,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let base = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = base.path().join("root");
        let r = root.as_path();
        std::fs::create_dir_all(r.join("dir/sub")).unwrap();
        std::fs::create_dir(r.join("empty")).unwrap();
        std::fs::write(r.join("a.txt"), b"a").unwrap();
        std::fs::write(r.join("dir/index.html"), b"i").unwrap();
        std::fs::write(r.join("dir/sub/b.txt"), b"b").unwrap();
        std::fs::write(r.join("%41"), b"literal percent").unwrap();
        // A secret next to the root, and one in an unrelated directory.
        std::fs::write(base.path().join("secret"), b"s").unwrap();
        std::fs::create_dir(outside.path().join("d")).unwrap();
        std::fs::write(outside.path().join("d/index.html"), b"o").unwrap();
        symlink("a.txt", r.join("link")).unwrap();
        symlink("../secret", r.join("up")).unwrap();
        symlink("../../secret", r.join("dir/up2")).unwrap();
        symlink(base.path().join("secret"), r.join("abs")).unwrap();
        symlink(outside.path().join("d"), r.join("outdir")).unwrap();
        symlink(r.join("dir"), r.join("absin")).unwrap(); // absolute but inside
        symlink("/", r.join("slash")).unwrap();
        let mut inside = HashSet::new();
        collect(r, &mut inside);
        let resolver = Resolver::new(r, &["index.html".to_string()]).unwrap();
        World {
            resolver,
            inside,
            _dirs: (base, outside),
        }
    })
}

fn collect(dir: &Path, out: &mut HashSet<(u64, u64)>) {
    let md = std::fs::symlink_metadata(dir).unwrap();
    out.insert((md.dev(), md.ino()));
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let md = std::fs::symlink_metadata(e.path()).unwrap();
        if md.is_dir() {
            collect(&e.path(), out);
        } else if md.is_file() {
            out.insert((md.dev(), md.ino()));
        }
    }
}

fn encode(normalized: &[u8]) -> Vec<u8> {
    let mut v = b"/".to_vec();
    for &b in normalized {
        if b == b'/' || b.is_ascii_alphanumeric() || b"-_~".contains(&b) {
            v.push(b);
        } else {
            v.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    v
}

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    match normalize(data, &mut out) {
        Ok(trailing) => {
            assert!(!out.starts_with(b"/") && !out.ends_with(b"/"), "{out:?}");
            assert!(!out.contains(&0));
            if out.is_empty() {
                assert!(trailing, "the root is a directory");
            }
            for seg in out.split(|&b| b == b'/') {
                if out.is_empty() {
                    break;
                }
                assert!(!seg.is_empty() && seg != b"." && seg != b"..", "{out:?}");
            }
            // Idempotent: re-encoding the result normalises to itself.
            let mut again = Vec::new();
            let t = normalize(&encode(&out), &mut again);
            assert!(t.is_ok(), "{t:?}");
            assert_eq!(again, out);
        }
        Err(_) => {}
    }

    let w = world();
    let mut scratch = Vec::new();
    let opened = w.resolver.open(data, &mut scratch);
    check(w, opened);
    check(w, w.resolver.open_relative(data));
});

fn check(w: &World, r: Result<Resolved, FileError>) {
    let md = match r {
        Ok(Resolved::File(m)) => {
            assert!(w.inside.contains(&(m.dev, m.ino)), "file outside the root");
            m.file.metadata().unwrap()
        }
        Ok(Resolved::Directory(f)) => f.metadata().unwrap(),
        Ok(Resolved::AddSlash) | Err(_) => return,
    };
    assert!(
        w.inside.contains(&(md.dev(), md.ino())),
        "opened something outside the root"
    );
}
