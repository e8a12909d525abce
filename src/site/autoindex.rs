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
use crate::site::files::{Resolved, Resolver};
use rustix::fs::{AtFlags, Dir, FileType};
use std::fs::File;
use std::io;
use std::os::fd::AsFd;

/// Most entries read from one directory, dotfiles included (each costs a `getdents` slot
/// even when hidden); the rest are left out and the page says so.
pub const MAX_ENTRIES: usize = 10_000;

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
