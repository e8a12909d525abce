//! Fixtures shared by `tests/props.rs`, the fuzz targets, unit tests and benches (one copy,
//! so they all attack the same tree and compress the same text). Not part of vireo's API.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::site::files::{Resolved, Resolver};

/// A document root full of ways out: `..` symlinks to a secret next to the root, absolute
/// symlinks to it, to another directory and to `/`, next to ordinary files, directories,
/// an index and symlinks that stay inside. Removed on drop.
pub struct EscapeRoot {
    pub resolver: Resolver,
    /// (dev, ino) of every file and directory under the root.
    inside: HashSet<(u64, u64)>,
    dir: PathBuf,
}

impl EscapeRoot {
    /// Builds the tree in a fresh directory under the system's temporary directory.
    pub fn new() -> io::Result<EscapeRoot> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        sweep_stale(&std::env::temp_dir());
        let dir = std::env::temp_dir().join(format!(
            "vireo-escape-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir)?;
        let (base, outside) = (dir.join("base"), dir.join("outside"));
        let r = base.join("root");
        std::fs::create_dir_all(r.join("dir/sub"))?;
        std::fs::create_dir(r.join("empty"))?;
        std::fs::write(r.join("a.txt"), b"a")?;
        std::fs::write(r.join("dir/index.html"), b"i")?;
        std::fs::write(r.join("dir/sub/b.txt"), b"b")?;
        std::fs::write(r.join("%41"), b"literal percent")?;
        // A secret next to the root, and one in an unrelated directory.
        std::fs::write(base.join("secret"), b"s")?;
        std::fs::create_dir_all(outside.join("d"))?;
        std::fs::write(outside.join("d/index.html"), b"o")?;
        symlink("a.txt", r.join("link"))?;
        symlink("../secret", r.join("up"))?;
        symlink("../../secret", r.join("dir/up2"))?;
        symlink(base.join("secret"), r.join("abs"))?;
        symlink(outside.join("d"), r.join("outdir"))?;
        symlink(r.join("dir"), r.join("absin"))?; // absolute but inside
        symlink("/", r.join("slash"))?;
        let mut inside = HashSet::new();
        collect(&r, &mut inside)?;
        Ok(EscapeRoot {
            resolver: Resolver::new(&r, &["index.html".to_string()])?,
            inside,
            dir,
        })
    }

    /// Panics unless what `r` opened lies under the root (and a file's metadata is its own).
    pub fn assert_inside(&self, r: &Resolved) {
        let id = match r {
            Resolved::File(m) => {
                let md = m.file.metadata().expect("fstat an opened file");
                assert_eq!(
                    (md.dev(), md.ino()),
                    (m.dev, m.ino),
                    "metadata of another file"
                );
                (m.dev, m.ino)
            }
            Resolved::Directory(f) => {
                let md = f.metadata().expect("fstat an opened directory");
                (md.dev(), md.ino())
            }
            Resolved::AddSlash => return,
        };
        assert!(
            self.inside.contains(&id),
            "opened something outside the root: {r:?}"
        );
    }
}

impl Drop for EscapeRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn collect(dir: &Path, out: &mut HashSet<(u64, u64)>) -> io::Result<()> {
    let md = std::fs::symlink_metadata(dir)?;
    out.insert((md.dev(), md.ino()));
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let md = std::fs::symlink_metadata(&p)?;
        if md.is_dir() {
            collect(&p, out)?;
        } else if md.is_file() {
            out.insert((md.dev(), md.ino()));
        }
    }
    Ok(())
}

/// Deterministic text with repetition, like HTML or JSON.
pub fn text(len: usize) -> Vec<u8> {
    const WORDS: [&str; 12] = [
        "<div class=\"card\">",
        "</div>\n",
        "vireo ",
        "serves ",
        "static ",
        "files ",
        "{\"id\": ",
        "\"name\": \"",
        "compressed ",
        "on the pool, ",
        "never on the loop; ",
        "\n",
    ];
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut out = Vec::with_capacity(len + 32);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(WORDS[(x % 12) as usize].as_bytes());
        if x % 7 == 0 {
            out.extend_from_slice(itoa::Buffer::new().format(x % 100_000).as_bytes());
        }
    }
    out.truncate(len);
    out
}

/// Trees kept in a `static` are never dropped: remove those of processes that are gone.
fn sweep_stale(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("vireo-escape-")) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}
