//! `autoindex = true`: an HTML listing for a directory without an index file.
//!
//! Reading a directory is disk work (a `statat` per entry) and rendering it CPU work, so
//! `render` runs on the offload pool, never on a reactor: the router hands over the
//! directory fd (`Job`), the connection parks, and the page comes back through the pool's
//! cache (`offload`). The read is bounded: at most `MAX_ENTRIES` entries, hidden or not.
//! The directory is read through the fd the resolver opened (beneath the root); a symlink
//! is listed only if the resolver can open it (so one leading outside the root never shows
//! up), and dotfiles are hidden.

use crate::http::response::{self, Body, ContentType, Headers, Reply, HTML};
use crate::offload::{Job, JobError, Kind, Notifier, Offload, Output};
use crate::site::files::{Resolved, Resolver};
use rustix::fs::{AtFlags, Dir, FileType};
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Most entries read from one directory, dotfiles included (each costs a `getdents` slot
/// even when hidden); the rest are left out and the page says so.
pub const MAX_ENTRIES: usize = 10_000;

/// A directory modified this recently is not cached: its mtime may not have ticked yet for
/// a change made just before or during the read (coarse timestamps: a jiffy on ext4, 2 s on
/// FAT), so the next change could keep the same key (git's "racy clean" problem).
const RACY: Duration = Duration::from_secs(2);

/// Identity of one rendered listing: the directory as it is now (adding, removing or
/// renaming an entry moves its mtime) and everything else the page depends on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ListingKey {
    /// The root the listing was resolved under (`Resolver::root_id`): a directory shared
    /// by two sites' roots may list differently in each (symlinks leaving one of them).
    pub root: (u64, u64),
    pub dev: u64,
    pub ino: u64,
    pub mtime: i64,
    pub mtime_nanos: u32,
    pub show_hidden: bool,
    /// The directory's normalised path, shown in the page (one directory can be reached
    /// under several paths through symlinks).
    pub rel: Box<[u8]>,
}

impl ListingKey {
    /// Key the directory `dir`, whose normalised path below `resolver`'s root is `rel`.
    pub fn of(
        resolver: &Resolver,
        dir: &File,
        rel: &[u8],
        show_hidden: bool,
    ) -> io::Result<ListingKey> {
        use std::os::unix::fs::MetadataExt;
        let md = dir.metadata()?;
        Ok(ListingKey {
            root: resolver.root_id(),
            dev: md.dev(),
            ino: md.ino(),
            mtime: md.mtime(),
            mtime_nanos: u32::try_from(md.mtime_nsec()).unwrap_or(0),
            show_hidden,
            rel: rel.into(),
        })
    }

    /// Changed too recently for its mtime to be trusted as a cache key (`RACY`).
    fn racy(&self, now: SystemTime) -> bool {
        let Ok(secs) = u64::try_from(self.mtime) else {
            return false; // before 1970: long settled
        };
        let mtime = SystemTime::UNIX_EPOCH + Duration::new(secs, self.mtime_nanos.min(999_999_999));
        now.duration_since(mtime).map_or(true, |age| age < RACY)
    }

    /// The pool's cache and single-flight key for this listing: every field, exactly.
    fn id(&self) -> Box<[u8]> {
        let mut id = Vec::with_capacity(45 + self.rel.len());
        for n in [self.root.0, self.root.1, self.dev, self.ino] {
            id.extend_from_slice(&n.to_le_bytes());
        }
        id.extend_from_slice(&self.mtime.to_le_bytes());
        id.extend_from_slice(&self.mtime_nanos.to_le_bytes());
        id.push(u8::from(self.show_hidden));
        id.extend_from_slice(&self.rel);
        id.into()
    }
}

/// A cached page for `key`, if one is younger than `ttl` (file sizes and dates in it can
/// change without the directory's mtime moving: `open_file_cache.valid`).
pub fn lookup(offload: &Offload, key: &ListingKey, ttl: Duration) -> Option<Arc<[u8]>> {
    offload.lookup_keyed(Kind::Listing, &key.id(), ttl)
}

/// Render the listing of `dir` on the pool for the connection (slot, generation), joining
/// a job already running for the same key. Entries are followed only through `resolver`,
/// the one of the site's root (so a symlink leaving it is not listed). False when over
/// budget (nothing was started).
pub fn submit(
    offload: &Arc<Offload>,
    key: ListingKey,
    dir: File,
    resolver: &Arc<Resolver>,
    notifier: &Notifier,
    slot: usize,
    generation: u32,
) -> bool {
    let id = key.id();
    let job = ListingJob {
        key,
        dir,
        resolver: Arc::clone(resolver),
    };
    offload.submit_job(Kind::Listing, id, job, notifier, slot, generation)
}

struct ListingJob {
    key: ListingKey,
    dir: File,
    resolver: Arc<Resolver>,
}

impl Job for ListingJob {
    fn run(self) -> Output {
        let key = &self.key;
        let page =
            render(&self.resolver, self.dir, &key.rel, key.show_hidden).map_err(|e| JobError {
                status: error_status(&e),
                message: format!("autoindex {:?}: {e}", String::from_utf8_lossy(&key.rel)),
            })?;
        Ok((page, !key.racy(SystemTime::now())))
    }
}

/// The reply carrying a listing page. Listings change whenever the directory does, so
/// they carry no validators (as before they were built off the loop).
pub fn page_reply(body: Body) -> Reply {
    Reply {
        status: 200,
        headers: Headers {
            content_type: Some(ContentType::Static(HTML)),
            ..Headers::default()
        },
        body,
        close: false,
    }
}

/// A built-in error page in place of the listing, framed so the connection can stay open.
/// 503 (the pool is full) asks the client to come back.
pub fn error_reply(status: u16) -> Reply {
    let mut r = Reply::error(status);
    if status == 503 {
        r.headers.retry_after = Some(1);
    }
    r
}

/// The status answering a listing that could not be read.
pub fn error_status(e: &io::Error) -> u16 {
    match e.kind() {
        io::ErrorKind::PermissionDenied => 403,
        io::ErrorKind::NotFound => 404,
        _ => 500,
    }
}

struct Entry {
    name: Vec<u8>,
    dir: bool,
    size: u64,
    mtime: u64,
}

/// The listing page of `dir`, whose path relative to the root is `rel` (no leading or
/// trailing '/'; empty for the root). Dotfiles are listed only with `show_hidden`.
pub fn render(
    resolver: &Resolver,
    dir: File,
    rel: &[u8],
    show_hidden: bool,
) -> io::Result<Vec<u8>> {
    let (mut entries, truncated) = read_entries(resolver, dir, rel, show_hidden)?;
    // Directories first, then by name (bytewise, which is code point order for UTF-8).
    entries.sort_unstable_by(|a, b| b.dir.cmp(&a.dir).then_with(|| a.name.cmp(&b.name)));

    let mut out = Vec::with_capacity(512 + entries.len() * 160);
    let mut title = Vec::with_capacity(rel.len() + 2);
    title.push(b'/');
    title.extend_from_slice(rel);
    if !rel.is_empty() {
        title.push(b'/');
    }
    out.extend_from_slice(
        b"<!DOCTYPE html>\n<html>\n<head><meta charset=\"utf-8\"><title>Index of ",
    );
    push_html(&mut out, &title);
    out.extend_from_slice(b"</title></head>\n<body>\n<h1>Index of ");
    push_html(&mut out, &title);
    out.extend_from_slice(
        b"</h1>\n<table>\n<tr><th>Name</th><th>Last modified</th><th>Size</th></tr>\n",
    );
    if !rel.is_empty() {
        out.extend_from_slice(b"<tr><td><a href=\"../\">../</a></td><td></td><td></td></tr>\n");
    }
    let mut num = itoa::Buffer::new();
    for e in &entries {
        out.extend_from_slice(b"<tr><td><a href=\"");
        push_href(&mut out, &e.name);
        if e.dir {
            out.push(b'/');
        }
        out.extend_from_slice(b"\">");
        push_html(&mut out, &e.name);
        if e.dir {
            out.push(b'/');
        }
        out.extend_from_slice(b"</a></td><td>");
        out.extend_from_slice(&response::http_date(e.mtime));
        out.extend_from_slice(b"</td><td>");
        if e.dir {
            out.push(b'-');
        } else {
            out.extend_from_slice(num.format(e.size).as_bytes());
        }
        out.extend_from_slice(b"</td></tr>\n");
    }
    out.extend_from_slice(b"</table>\n");
    if truncated {
        out.extend_from_slice(b"<p>Listing truncated after ");
        out.extend_from_slice(num.format(MAX_ENTRIES).as_bytes());
        out.extend_from_slice(b" entries.</p>\n");
    }
    out.extend_from_slice(b"<hr>vireo\n</body>\n</html>\n");
    Ok(out)
}

fn read_entries(
    resolver: &Resolver,
    dir: File,
    rel: &[u8],
    show_hidden: bool,
) -> io::Result<(Vec<Entry>, bool)> {
    let fd = dir.as_fd();
    let mut reader = Dir::read_from(fd)?;
    let mut entries = Vec::new();
    let mut path = Vec::with_capacity(rel.len() + 64);
    let mut seen = 0usize;
    while let Some(ent) = reader.read() {
        let ent = ent?;
        let name = ent.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        // Counted before the hidden check: a directory of a million dotfiles must not
        // make one request read them all.
        seen += 1;
        if seen > MAX_ENTRIES {
            return Ok((entries, true));
        }
        if name.first() == Some(&b'.') && !show_hidden {
            continue;
        }
        let Ok(st) = rustix::fs::statat(fd, ent.file_name(), AtFlags::SYMLINK_NOFOLLOW) else {
            continue; // vanished meanwhile
        };
        let ft = FileType::from_raw_mode(st.st_mode);
        let entry = if ft == FileType::Symlink {
            // Follow it only through the resolver: a link leaving the root is not listed.
            path.clear();
            path.extend_from_slice(rel);
            if !rel.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(name);
            match resolver.open_relative(&path) {
                Ok(Resolved::File(m)) => Entry {
                    name: name.to_vec(),
                    dir: false,
                    size: m.len,
                    mtime: m.mtime,
                },
                Ok(Resolved::AddSlash) => {
                    let Ok(st) = rustix::fs::statat(fd, ent.file_name(), AtFlags::empty()) else {
                        continue;
                    };
                    Entry {
                        name: name.to_vec(),
                        dir: true,
                        size: 0,
                        mtime: u64::try_from(st.st_mtime).unwrap_or(0),
                    }
                }
                _ => continue,
            }
        } else if ft == FileType::Directory || ft == FileType::RegularFile {
            Entry {
                name: name.to_vec(),
                dir: ft == FileType::Directory,
                size: u64::try_from(st.st_size).unwrap_or(0),
                mtime: u64::try_from(st.st_mtime).unwrap_or(0),
            }
        } else {
            continue; // FIFOs, sockets, devices are never served
        };
        entries.push(entry);
    }
    Ok((entries, false))
}

/// HTML-escape (text and attribute values); invalid UTF-8 shows as U+FFFD.
fn push_html(out: &mut Vec<u8>, s: &[u8]) {
    for ch in String::from_utf8_lossy(s).chars() {
        match ch {
            '&' => out.extend_from_slice(b"&amp;"),
            '<' => out.extend_from_slice(b"&lt;"),
            '>' => out.extend_from_slice(b"&gt;"),
            '"' => out.extend_from_slice(b"&quot;"),
            '\'' => out.extend_from_slice(b"&#39;"),
            c => {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
}

/// Percent-encode everything but RFC 3986 unreserved bytes, so a name can never be read
/// as a scheme (`a:b`), a query, a fragment or markup.
fn push_href(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    const HOUR: Duration = Duration::from_secs(3600);

    /// A listing pool over a fresh root holding directory `d`, and a notifier to it.
    fn listing_pool(
        extra: &str,
    ) -> (
        tempfile::TempDir,
        Arc<Offload>,
        Notifier,
        crossbeam_channel::Receiver<crate::offload::Completion>,
        mio::Poll,
    ) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::write(root.join("d/f.txt"), b"x").unwrap();
        let toml = format!(
            "root = {:?}\nautoindex = true\n{extra}",
            root.display().to_string()
        );
        let config = Config::from_toml(&toml, t.path(), "t.toml").unwrap();
        let offload = Offload::for_config(&config, 1).unwrap().unwrap();
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let (tx, rx) = crossbeam_channel::unbounded();
        (t, offload, Notifier { tx, waker }, rx, poll)
    }

    fn resolver(t: &tempfile::TempDir) -> Arc<Resolver> {
        Arc::new(Resolver::new(&t.path().join("root"), &[]).unwrap())
    }

    fn dir_key(t: &tempfile::TempDir) -> (File, ListingKey) {
        let dir = File::open(t.path().join("root/d")).unwrap();
        let key = ListingKey::of(&resolver(t), &dir, b"d", false).unwrap();
        (dir, key)
    }

    fn age(t: &tempfile::TempDir) {
        let old = SystemTime::now() - Duration::from_secs(3600);
        File::open(t.path().join("root/d"))
            .unwrap()
            .set_modified(old)
            .unwrap();
    }

    #[test]
    fn a_listing_over_budget_is_refused_not_built() {
        let (t, o, n, rx, _poll) = listing_pool("[compression]\nmax_pending = 0\n");
        let (dir, key) = dir_key(&t);
        assert!(!submit(&o, key, dir, &resolver(&t), &n, 1, 1));
        let f = o.figures().listing.unwrap();
        assert_eq!((f.started, f.rejected), (0, 1));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn listings_are_cached_by_directory_state_for_a_while() {
        let (t, o, n, rx, _poll) = listing_pool("[open_file_cache]\nvalid = \"1h\"\n");
        age(&t);
        let (dir, key) = dir_key(&t);
        assert!(lookup(&o, &key, HOUR).is_none());
        assert!(submit(&o, key.clone(), dir, &resolver(&t), &n, 7, 3));
        let c = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!((c.slot, c.generation), (7, 3));
        let page = c.result.unwrap();
        assert!(find(&page, b"f.txt"));
        assert_eq!(lookup(&o, &key, HOUR).as_deref(), Some(&page[..]));
        // Another path to the same directory is another page.
        let mut other = key.clone();
        other.rel = b"e".as_slice().into();
        assert!(lookup(&o, &other, HOUR).is_none());
        // A new entry moves the directory's mtime: a miss, and the new page shows it.
        std::fs::write(t.path().join("root/d/g.txt"), b"y").unwrap();
        let (dir, key2) = dir_key(&t);
        assert_ne!(key, key2);
        assert!(lookup(&o, &key2, HOUR).is_none());
        assert!(submit(&o, key2.clone(), dir, &resolver(&t), &n, 7, 3));
        let page = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap()
            .result
            .unwrap();
        assert!(find(&page, b"g.txt"));
        // Changed just now: its mtime may not tick for the next change, so not cached.
        assert!(lookup(&o, &key2, HOUR).is_none());
        let f = o.figures().listing.unwrap();
        assert_eq!((f.started, f.completed, f.cache_hits), (2, 2, 1));
        assert!(f.cache_bytes > 0);
        assert!(
            o.figures().compression.is_some(),
            "compression is on by default"
        );
    }

    #[test]
    fn cached_listings_expire() {
        let (t, o, n, rx, _poll) = listing_pool("[open_file_cache]\nvalid = \"0s\"\n");
        age(&t);
        let (dir, key) = dir_key(&t);
        assert!(submit(&o, key.clone(), dir, &resolver(&t), &n, 0, 0));
        rx.recv_timeout(Duration::from_secs(30))
            .unwrap()
            .result
            .unwrap();
        assert!(lookup(&o, &key, Duration::ZERO).is_none());
    }

    #[test]
    fn an_unreadable_directory_answers_its_status() {
        let (t, o, n, rx, _poll) = listing_pool("[compression]\nenabled = false\n");
        assert!(o.figures().compression.is_none());
        // An O_PATH fd cannot be read: EBADF, an internal error.
        let dir = File::from(
            rustix::fs::open(
                t.path().join("root/d"),
                rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY,
                rustix::fs::Mode::empty(),
            )
            .unwrap(),
        );
        let key = ListingKey::of(&resolver(&t), &dir, b"d", false).unwrap();
        assert!(submit(&o, key, dir, &resolver(&t), &n, 0, 0));
        let e = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap()
            .result
            .unwrap_err();
        assert_eq!(e.status, 500, "{}", e.message);
    }

    fn find(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn escaping() {
        let mut o = Vec::new();
        push_html(&mut o, b"<a href='x'>&\"");
        assert_eq!(o, b"&lt;a href=&#39;x&#39;&gt;&amp;&quot;");
        o.clear();
        push_href(&mut o, "a b:c?#/é.txt".as_bytes());
        assert_eq!(o, b"a%20b%3Ac%3F%23%2F%C3%A9.txt");
    }

    #[test]
    fn lists_sorted_hides_dotfiles_and_escaping_links() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir(r.join("d")).unwrap();
        std::fs::create_dir(r.join("d/zdir")).unwrap();
        std::fs::write(r.join("d/a<b>.txt"), b"12345").unwrap();
        std::fs::write(r.join("d/.hidden"), b"x").unwrap();
        std::fs::write(outside.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), r.join("d/out")).unwrap();
        std::os::unix::fs::symlink("a<b>.txt", r.join("d/in")).unwrap();
        let res = Resolver::new(r, &[]).unwrap();
        let dir = File::open(r.join("d")).unwrap();
        let page = String::from_utf8(render(&res, dir, b"d", false).unwrap()).unwrap();
        assert!(page.contains("Index of /d/"), "{page}");
        assert!(page.contains("<a href=\"../\">"), "{page}");
        let zdir = page.find("zdir/").unwrap();
        let file = page.find("a%3Cb%3E.txt").unwrap();
        assert!(zdir < file, "{page}");
        assert!(page.contains(">a&lt;b&gt;.txt</a>"), "{page}");
        assert!(page.contains("href=\"in\""), "{page}");
        assert!(
            !page.contains("hidden") && !page.contains("\"out\""),
            "{page}"
        );
        let dir = File::open(r).unwrap();
        let page = String::from_utf8(render(&res, dir, b"", false).unwrap()).unwrap();
        assert!(!page.contains("../"), "{page}");
        assert!(page.contains("href=\"d/\""), "{page}");
    }

    #[test]
    fn dotfiles_count_toward_the_cap() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for i in 0..MAX_ENTRIES {
            std::fs::write(r.join(format!(".h{i}")), b"").unwrap();
        }
        std::fs::write(r.join("visible"), b"").unwrap();
        let res = Resolver::new(r, &[]).unwrap();
        let page =
            String::from_utf8(render(&res, File::open(r).unwrap(), b"", false).unwrap()).unwrap();
        assert!(
            page.contains("Listing truncated after 10000 entries"),
            "{page}"
        );
        let page =
            String::from_utf8(render(&res, File::open(r).unwrap(), b"", true).unwrap()).unwrap();
        let rows = page.matches("<tr><td>").count();
        assert_eq!(rows, MAX_ENTRIES, "shown entries stop at the cap");
    }
}
