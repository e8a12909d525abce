//! Request path -> open file under the document root.
//!
//! Safety model: the path is normalised lexically first (so `..` above the
//! root is refused before any syscall), then opened with
//! `openat2(RESOLVE_BENEATH)` relative to a root directory fd, so the kernel
//! refuses any resolution (symlinks included) that leaves the root. On kernels
//! without `openat2` a canonicalize + prefix check fallback is used.

use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

pub use crate::http::path::is_hidden;
use crate::http::path::{self, PathError};

/// Why a path could not be served. The router maps this to a status.
#[derive(Debug)]
pub enum FileError {
    /// Invalid percent-escape, `%00` / NUL, path not starting with '/'.
    BadRequest,
    /// ENOENT, ENOTDIR, ENAMETOOLONG, not a regular file/dir, dir without index.
    NotFound,
    /// EACCES, EPERM, escape attempt, ELOOP, encoded slash.
    Forbidden,
    /// EMFILE, ENFILE, ENOMEM, EAGAIN: out of resources, try later.
    Unavailable,
    /// Anything else.
    Io(io::Error),
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::BadRequest => f.write_str("bad request path"),
            FileError::NotFound => f.write_str("not found"),
            FileError::Forbidden => f.write_str("forbidden"),
            FileError::Unavailable => f.write_str("resources temporarily unavailable"),
            FileError::Io(e) => write!(f, "i/o error: {e}"),
        }
    }
}

impl std::error::Error for FileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FileError::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// The one errno -> FileError mapping.
fn from_errno(e: Errno) -> FileError {
    match e {
        // NXIO: open() of a unix socket; NODEV: device node without a driver.
        // Neither is something a static server can serve.
        Errno::NOENT | Errno::NOTDIR | Errno::NAMETOOLONG | Errno::NXIO | Errno::NODEV => {
            FileError::NotFound
        }
        // XDEV is what RESOLVE_BENEATH returns for an escape attempt.
        Errno::ACCESS | Errno::PERM | Errno::XDEV | Errno::LOOP => FileError::Forbidden,
        // AGAIN: O_NONBLOCK open of a file holding a conflicting lease.
        Errno::MFILE | Errno::NFILE | Errno::NOMEM | Errno::AGAIN => FileError::Unavailable,
        other => FileError::Io(other.into()),
    }
}

impl From<PathError> for FileError {
    fn from(e: PathError) -> FileError {
        match e {
            PathError::BadRequest => FileError::BadRequest,
            PathError::Forbidden => FileError::Forbidden,
        }
    }
}

fn from_io(e: io::Error) -> FileError {
    match e.raw_os_error() {
        Some(raw) => from_errno(Errno::from_raw_os_error(raw)),
        None => FileError::Io(e),
    }
}

pub use crate::http::response::EtagBuf;

/// An opened regular file plus what the response headers need.
#[derive(Debug, Clone)]
pub struct FileMeta {
    /// Shared with the open-file cache; read only with explicit offsets (sendfile, pread)
    /// so sharers never disturb each other.
    pub file: Arc<File>,
    /// The whole file, for small files held by the open-file cache: sent from memory in
    /// the same writev as the head.
    pub content: Option<Arc<[u8]>>,
    pub len: u64,
    /// Seconds since the epoch (clamped to 0 for pre-1970 mtimes).
    pub mtime: u64,
    pub mtime_nanos: u32,
    /// The real mtime is before 1970: no `Last-Modified` can be sent for it.
    pub before_epoch: bool,
    /// Which `index` name this is, when the request named its directory (the resolver
    /// then leaves the directory's path, not the file's, in `scratch`).
    pub index: Option<usize>,
    pub etag: EtagBuf,
    pub mime: &'static str,
    pub ino: u64,
    pub dev: u64,
}

impl FileMeta {
    /// The modification time as a `Last-Modified` candidate; None before 1970.
    pub fn modified(&self) -> Option<u64> {
        (!self.before_epoch).then_some(self.mtime)
    }
}

#[derive(Debug)]
pub enum Resolved {
    File(FileMeta),
    /// The path names a directory but lacks the trailing slash: caller answers 301 to path + "/".
    AddSlash,
    /// A directory (path ends with '/') with none of the index files: caller answers 403/404, or a listing later.
    Directory(File),
}

pub struct Resolver {
    /// O_PATH fd of the document root; every open is relative to it.
    root: OwnedFd,
    /// Canonical root path, only used by the no-openat2 fallback.
    canonical_root: PathBuf,
    index: Vec<Box<[u8]>>,
    /// The root directory's (device, inode): what listings of this root are keyed by.
    root_id: (u64, u64),
    /// False on kernels (or seccomp profiles) without openat2.
    use_openat2: bool,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("root", &self.canonical_root)
            .field("use_openat2", &self.use_openat2)
            .finish()
    }
}

/// Flags for every served open: O_NONBLOCK so a FIFO never blocks the event
/// loop, O_NOCTTY so a tty device can't become our controlling terminal.
const OPEN_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::CLOEXEC)
    .union(OFlags::NONBLOCK)
    .union(OFlags::NOCTTY);

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_MAGICLINKS);

/// Outcome of opening the path itself, before index lookup.
enum Step {
    Done(Resolved),
    /// Directory requested with a trailing slash: look for an index.
    NeedIndex(File),
}

impl Resolver {
    pub fn new(root: &Path, index: &[String]) -> io::Result<Resolver> {
        Self::with_mode(root, index, false)
    }

    fn with_mode(root: &Path, index: &[String], force_fallback: bool) -> io::Result<Resolver> {
        let mut names = Vec::with_capacity(index.len());
        for name in index {
            let b = name.as_bytes();
            // An index name is a single path component; anything else would let
            // config smuggle in traversal or produce a broken join.
            if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("invalid index file name {name:?}"),
                ));
            }
            names.push(b.to_vec().into_boxed_slice());
        }
        let fd = rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let canonical_root = std::fs::canonicalize(root)?;
        let st = rustix::fs::fstat(&fd)?;
        let root_id = (st.st_dev as u64, st.st_ino as u64);
        let use_openat2 = !force_fallback && probe_openat2(&fd)?;
        if !use_openat2 && !force_fallback {
            // Every reactor builds a resolver; the operator needs to hear it once.
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                log::warn!(
                    "openat2(RESOLVE_BENEATH) is unavailable: falling back to \
                     canonicalize-then-open, which races against renames inside the root"
                );
            });
        }
        Ok(Resolver {
            root: fd,
            canonical_root,
            index: names,
            root_id,
            use_openat2,
        })
    }

    /// The root directory's (device, inode).
    pub fn root_id(&self) -> (u64, u64) {
        self.root_id
    }

    /// `raw_path` is the request path, percent-encoded, starting with '/'.
    /// `scratch` is a reusable buffer (to avoid per-request allocation).
    pub fn open(&self, raw_path: &[u8], scratch: &mut Vec<u8>) -> Result<Resolved, FileError> {
        let trailing = normalize(raw_path, scratch)?;
        self.open_normalized(scratch, trailing)
    }

    /// `open` for a path `normalize` already wrote into `scratch`.
    pub fn open_normalized(
        &self,
        scratch: &mut Vec<u8>,
        trailing: bool,
    ) -> Result<Resolved, FileError> {
        match self.open_path(scratch, trailing)? {
            Step::Done(r) => Ok(r),
            Step::NeedIndex(dir) => self.find_index(scratch, dir),
        }
    }

    /// Same as `open` but for a path already decoded/normalised (error pages,
    /// precompressed siblings). `rel` has no leading '/'; a trailing '/' means
    /// "directory, look for an index". Containment is still enforced by the
    /// kernel (or the fallback check), so a stray ".." cannot escape.
    pub fn open_relative(&self, rel: &[u8]) -> Result<Resolved, FileError> {
        if rel.contains(&0) {
            return Err(FileError::BadRequest);
        }
        let (rel, trailing) = match rel.strip_suffix(b"/") {
            Some(r) => (r, true),
            None => (rel, false),
        };
        match self.open_path(rel, trailing)? {
            Step::Done(r) => Ok(r),
            // Only this rare case allocates; `rel` is borrowed, not a scratch.
            Step::NeedIndex(dir) => self.find_index(&mut rel.to_vec(), dir),
        }
    }

    fn open_path(&self, rel: &[u8], trailing: bool) -> Result<Step, FileError> {
        let file = self.open_file(rel)?;
        let md = file.metadata().map_err(from_io)?;
        let ft = md.file_type();
        if ft.is_file() {
            if trailing {
                // "/file.txt/" names a directory that isn't one (POSIX ENOTDIR).
                return Err(FileError::NotFound);
            }
            Ok(Step::Done(Resolved::File(file_meta(file, &md, rel))))
        } else if ft.is_dir() {
            if trailing {
                Ok(Step::NeedIndex(file))
            } else {
                Ok(Step::Done(Resolved::AddSlash))
            }
        } else {
            // FIFO, socket, device: never served.
            Err(FileError::NotFound)
        }
    }

    /// The `index` name a `FileMeta::index` refers to.
    pub fn index_name(&self, i: usize) -> Option<&[u8]> {
        self.index.get(i).map(|n| &n[..])
    }

    /// `buf` holds the directory's relative path; it is restored on return.
    fn find_index(&self, buf: &mut Vec<u8>, dir: File) -> Result<Resolved, FileError> {
        let base = buf.len();
        for (i, name) in self.index.iter().enumerate() {
            buf.truncate(base);
            if base != 0 {
                buf.push(b'/');
            }
            buf.extend_from_slice(name);
            let res = self.open_file(buf);
            let file = match res {
                Ok(f) => f,
                Err(FileError::NotFound) => continue,
                // An index that exists but is unreadable or escapes is a real
                // answer (403/503/500), not a reason to try the next name.
                Err(e) => {
                    buf.truncate(base);
                    return Err(e);
                }
            };
            let md = match file.metadata() {
                Ok(md) => md,
                Err(e) => {
                    buf.truncate(base);
                    return Err(from_io(e));
                }
            };
            // A directory or FIFO called index.html is skipped like nginx does.
            if md.file_type().is_file() {
                let mut meta = file_meta(file, &md, name);
                meta.index = Some(i);
                buf.truncate(base);
                return Ok(Resolved::File(meta));
            }
        }
        buf.truncate(base);
        Ok(Resolved::Directory(dir))
    }

    fn open_file(&self, rel: &[u8]) -> Result<File, FileError> {
        // The root itself: openat2 needs a non-empty path.
        let rel = if rel.is_empty() { b".".as_slice() } else { rel };
        if self.use_openat2 {
            match rustix::fs::openat2(&self.root, rel, OPEN_FLAGS, Mode::empty(), RESOLVE) {
                Ok(fd) => return Ok(File::from(fd)),
                // Probe succeeded at startup, so this shouldn't happen; if it
                // does (e.g. seccomp change), degrade rather than fail.
                Err(Errno::NOSYS) => {}
                // RESOLVE_BENEATH refuses every absolute symlink, even one that points
                // back inside the root (a common way to lay out a docroot).
                Err(Errno::XDEV) => return self.open_absolute_link(rel),
                Err(e) => return Err(from_errno(e)),
            }
        }
        open_fallback(&self.canonical_root, rel)
    }
}

impl Resolver {
    /// Slow path for a path crossing an absolute symlink: resolve it in user space, keep it
    /// only if it lands under the root, then open the resolved path with no symlink
    /// allowed at all, so a link swapped in between cannot lead elsewhere.
    fn open_absolute_link(&self, rel: &[u8]) -> Result<File, FileError> {
        let joined = self.canonical_root.join(OsStr::from_bytes(rel));
        let canon = std::fs::canonicalize(&joined).map_err(from_io)?;
        let inside = canon
            .strip_prefix(&self.canonical_root)
            .map_err(|_| FileError::Forbidden)?;
        let inside = if inside.as_os_str().is_empty() {
            Path::new(".")
        } else {
            inside
        };
        rustix::fs::openat2(
            &self.root,
            inside,
            OPEN_FLAGS,
            Mode::empty(),
            RESOLVE | ResolveFlags::NO_SYMLINKS,
        )
        .map(File::from)
        .map_err(from_errno)
    }
}

/// Does this kernel (and seccomp profile) support openat2?
fn probe_openat2(root: &OwnedFd) -> io::Result<bool> {
    // Tests reach the fallback (and its warning) on kernels that have openat2.
    #[cfg(feature = "fault-injection")]
    if std::env::var_os("VIREO_FAULT_NO_OPENAT2").is_some() {
        return Ok(false);
    }
    match rustix::fs::openat2(
        root,
        ".",
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH,
    ) {
        Ok(_) => Ok(true),
        // Container seccomp profiles answer unknown syscalls with ENOSYS or
        // EPERM; an O_PATH open of "." can't otherwise fail with EPERM.
        Err(Errno::NOSYS) | Err(Errno::PERM) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Fallback without openat2: resolve symlinks in userspace and check the
/// result is still under the canonical root. Racy against concurrent renames
/// inside the root (a TOCTOU window openat2 doesn't have), hence fallback only.
fn open_fallback(canonical_root: &Path, rel: &[u8]) -> Result<File, FileError> {
    let joined = canonical_root.join(OsStr::from_bytes(rel));
    let canon = std::fs::canonicalize(&joined).map_err(from_io)?;
    if !canon.starts_with(canonical_root) {
        return Err(FileError::Forbidden);
    }
    rustix::fs::open(&canon, OPEN_FLAGS, Mode::empty())
        .map(File::from)
        .map_err(from_errno)
}

fn file_meta(file: File, md: &std::fs::Metadata, name: &[u8]) -> FileMeta {
    let len = md.size();
    let mtime = u64::try_from(md.mtime()).unwrap_or(0);
    let mtime_nanos = u32::try_from(md.mtime_nsec()).unwrap_or(0);
    FileMeta {
        file: Arc::new(file),
        content: None,
        len,
        mtime,
        mtime_nanos,
        before_epoch: md.mtime() < 0,
        index: None,
        etag: EtagBuf::new(mtime, len),
        mime: mime_for(name),
        ino: md.ino(),
        dev: md.dev(),
    }
}

/// `http::path::normalize`, its error as the `FileError` the router maps to a status.
pub fn normalize(raw_path: &[u8], out: &mut Vec<u8>) -> Result<bool, FileError> {
    Ok(path::normalize(raw_path, out)?)
}

/// Content-Type for a file name's extension (case-insensitive).
pub fn mime_for(name: &[u8]) -> &'static str {
    const OCTET: &str = "application/octet-stream";
    let file = match name.iter().rposition(|&b| b == b'/') {
        Some(i) => &name[i + 1..],
        None => name,
    };
    let ext = match file.iter().rposition(|&b| b == b'.') {
        // A leading dot (".bashrc") is a hidden file, not an extension.
        Some(i) if i > 0 => &file[i + 1..],
        _ => return OCTET,
    };
    // Lowercase into a stack buffer; no known extension is longer than 11.
    let mut buf = [0u8; 12];
    if ext.is_empty() || ext.len() > buf.len() {
        return OCTET;
    }
    let lower = &mut buf[..ext.len()];
    lower.copy_from_slice(ext);
    lower.make_ascii_lowercase();
    match &*lower {
        b"html" | b"htm" => "text/html; charset=utf-8",
        b"xhtml" => "application/xhtml+xml; charset=utf-8",
        b"css" => "text/css; charset=utf-8",
        b"js" | b"mjs" => "text/javascript; charset=utf-8",
        b"json" | b"map" => "application/json; charset=utf-8",
        b"jsonld" => "application/ld+json; charset=utf-8",
        b"webmanifest" => "application/manifest+json; charset=utf-8",
        b"txt" => "text/plain; charset=utf-8",
        b"md" | b"markdown" => "text/markdown; charset=utf-8",
        b"csv" => "text/csv; charset=utf-8",
        b"xml" => "application/xml; charset=utf-8",
        b"rss" => "application/rss+xml; charset=utf-8",
        b"atom" => "application/atom+xml; charset=utf-8",
        b"svg" => "image/svg+xml; charset=utf-8",
        b"png" => "image/png",
        b"jpg" | b"jpeg" => "image/jpeg",
        b"gif" => "image/gif",
        b"webp" => "image/webp",
        b"avif" => "image/avif",
        b"ico" => "image/x-icon",
        b"bmp" => "image/bmp",
        b"tif" | b"tiff" => "image/tiff",
        b"woff" => "font/woff",
        b"woff2" => "font/woff2",
        b"ttf" => "font/ttf",
        b"otf" => "font/otf",
        b"eot" => "application/vnd.ms-fontobject",
        b"pdf" => "application/pdf",
        b"zip" => "application/zip",
        b"gz" => "application/gzip",
        b"tar" => "application/x-tar",
        b"bz2" => "application/x-bzip2",
        b"xz" => "application/x-xz",
        b"zst" => "application/zstd",
        b"7z" => "application/x-7z-compressed",
        b"wasm" => "application/wasm",
        b"mp4" | b"m4v" => "video/mp4",
        b"webm" => "video/webm",
        b"ogv" => "video/ogg",
        b"mov" => "video/quicktime",
        b"mp3" => "audio/mpeg",
        b"ogg" | b"oga" | b"opus" => "audio/ogg",
        b"wav" => "audio/wav",
        b"flac" => "audio/flac",
        b"m4a" => "audio/mp4",
        _ => OCTET,
    }
}

pub use super::cache::OpenCache;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::time::{Duration, Instant};

    #[test]
    fn etag_format() {
        assert_eq!(EtagBuf::new(0, 0).as_str(), "\"0-0\"");
        assert_eq!(EtagBuf::new(0x5f3e_2a10, 1234).as_str(), "\"5f3e2a10-4d2\"");
        let max = EtagBuf::new(u64::MAX, u64::MAX);
        assert_eq!(max.as_str(), "\"ffffffffffffffff-ffffffffffffffff\"");
    }

    #[test]
    fn mime_types() {
        assert_eq!(mime_for(b"index.html"), "text/html; charset=utf-8");
        assert_eq!(mime_for(b"A.JS"), "text/javascript; charset=utf-8");
        assert_eq!(mime_for(b"dir.v2/x.MJS"), "text/javascript; charset=utf-8");
        assert_eq!(mime_for(b"f.woff2"), "font/woff2");
        assert_eq!(mime_for(b"a.unknownext"), "application/octet-stream");
        assert_eq!(mime_for(b"Makefile"), "application/octet-stream");
        assert_eq!(mime_for(b"dir.d/README"), "application/octet-stream");
        assert_eq!(mime_for(b".html"), "application/octet-stream");
        assert_eq!(mime_for(b"trailingdot."), "application/octet-stream");
        assert_eq!(mime_for(b"a.verylongextension"), "application/octet-stream");
    }

    #[test]
    fn errno_mapping() {
        assert!(matches!(from_errno(Errno::NOENT), FileError::NotFound));
        assert!(matches!(from_errno(Errno::ACCESS), FileError::Forbidden));
        assert!(matches!(from_errno(Errno::XDEV), FileError::Forbidden));
        assert!(matches!(from_errno(Errno::MFILE), FileError::Unavailable));
        assert!(matches!(from_errno(Errno::IO), FileError::Io(_)));
        let e = io::Error::from_raw_os_error(Errno::LOOP.raw_os_error());
        assert!(matches!(from_io(e), FileError::Forbidden));
        assert!(matches!(from_io(io::Error::other("x")), FileError::Io(_)));
    }

    /// Root with a file, a dir with index, a dir without, and an outside dir.
    struct Fixture {
        root: tempfile::TempDir,
        outside: tempfile::TempDir,
    }

    fn fixture() -> Fixture {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::write(r.join("hello.txt"), b"hello world").unwrap();
        std::fs::write(r.join("with space.txt"), b"sp").unwrap();
        std::fs::create_dir(r.join("site")).unwrap();
        std::fs::write(r.join("site/index.html"), b"<h1>hi</h1>").unwrap();
        std::fs::create_dir(r.join("empty")).unwrap();
        std::fs::write(outside.path().join("secret"), b"secret").unwrap();
        std::fs::create_dir(outside.path().join("sub")).unwrap();
        std::fs::write(outside.path().join("sub/index.html"), b"out").unwrap();
        symlink("hello.txt", r.join("link.txt")).unwrap();
        symlink("/etc/passwd", r.join("passwd")).unwrap();
        symlink(outside.path().join("secret"), r.join("sibling")).unwrap();
        symlink(outside.path().join("sub"), r.join("outdir")).unwrap();
        symlink("../hello.txt", r.join("site/up.txt")).unwrap();
        Fixture { root, outside }
    }

    fn resolvers(f: &Fixture) -> [Resolver; 2] {
        let idx = ["index.htm".to_string(), "index.html".to_string()];
        [
            Resolver::new(f.root.path(), &idx).unwrap(),
            Resolver::with_mode(f.root.path(), &idx, true).unwrap(),
        ]
    }

    fn open(r: &Resolver, p: &str) -> Result<Resolved, FileError> {
        let mut scratch = Vec::new();
        r.open(p.as_bytes(), &mut scratch)
    }

    fn expect_file(r: &Resolver, p: &str) -> FileMeta {
        match open(r, p) {
            Ok(Resolved::File(m)) => m,
            Ok(Resolved::AddSlash) => panic!("{p}: AddSlash"),
            Ok(Resolved::Directory(_)) => panic!("{p}: Directory"),
            Err(e) => panic!("{p}: {e:?} (openat2={})", r.use_openat2),
        }
    }

    #[test]
    fn serves_regular_file_with_metadata() {
        let f = fixture();
        for r in &resolvers(&f) {
            let mut m = expect_file(r, "/hello.txt");
            assert_eq!(m.len, 11);
            assert_eq!(m.mime, "text/plain; charset=utf-8");
            let md = std::fs::metadata(f.root.path().join("hello.txt")).unwrap();
            let expected = format!("\"{:x}-{:x}\"", md.mtime(), md.size());
            assert_eq!(m.etag.as_str(), expected);
            assert_eq!(m.mtime, md.mtime() as u64);
            assert_eq!(m.ino, md.ino());
            assert_eq!(m.dev, md.dev());
            let mut s = String::new();
            m.file.read_to_string(&mut s).unwrap();
            assert_eq!(s, "hello world");

            assert_eq!(expect_file(r, "/with%20space.txt").len, 2);
            // A file named as a directory is not found.
            assert!(matches!(open(r, "/hello.txt/"), Err(FileError::NotFound)));
        }
    }

    #[test]
    fn directories_and_index() {
        let f = fixture();
        for r in &resolvers(&f) {
            assert!(matches!(open(r, "/site"), Ok(Resolved::AddSlash)));
            let m = expect_file(r, "/site/");
            assert_eq!(m.len, 11);
            assert_eq!(m.mime, "text/html; charset=utf-8");
            assert!(matches!(open(r, "/empty/"), Ok(Resolved::Directory(_))));
            // No index at the root: the root directory itself.
            assert!(matches!(open(r, "/"), Ok(Resolved::Directory(_))));
            assert!(matches!(open(r, "/missing"), Err(FileError::NotFound)));
            assert!(matches!(
                open(r, "/missing/deeper.txt"),
                Err(FileError::NotFound)
            ));
        }
    }

    #[test]
    fn index_scratch_is_reused_and_restored() {
        let f = fixture();
        let r = Resolver::new(f.root.path(), &["index.html".into()]).unwrap();
        let mut scratch = Vec::with_capacity(64);
        assert!(matches!(
            r.open(b"/site/", &mut scratch),
            Ok(Resolved::File(_))
        ));
        assert_eq!(scratch, b"site");
    }

    #[test]
    fn index_that_is_a_directory_is_skipped() {
        let f = fixture();
        std::fs::create_dir(f.root.path().join("empty/index.html")).unwrap();
        for r in &resolvers(&f) {
            assert!(matches!(open(r, "/empty/"), Ok(Resolved::Directory(_))));
        }
    }

    #[test]
    fn symlinks_inside_are_followed() {
        let f = fixture();
        for r in &resolvers(&f) {
            assert_eq!(expect_file(r, "/link.txt").len, 11);
            assert_eq!(expect_file(r, "/site/up.txt").len, 11);
        }
    }

    #[test]
    fn symlinks_outside_are_forbidden() {
        let f = fixture();
        assert!(f.outside.path().join("secret").exists());
        for r in &resolvers(&f) {
            for p in ["/passwd", "/sibling", "/outdir/", "/outdir/index.html"] {
                let res = open(r, p);
                assert!(
                    matches!(res, Err(FileError::Forbidden)),
                    "{p}: {res:?} (openat2={})",
                    r.use_openat2
                );
            }
        }
    }

    #[test]
    fn index_symlink_escaping_is_forbidden() {
        let f = fixture();
        symlink("/etc/passwd", f.root.path().join("empty/index.html")).unwrap();
        for r in &resolvers(&f) {
            assert!(matches!(open(r, "/empty/"), Err(FileError::Forbidden)));
        }
    }

    #[test]
    fn open_relative_paths() {
        let f = fixture();
        for r in &resolvers(&f) {
            assert!(matches!(
                r.open_relative(b"hello.txt"),
                Ok(Resolved::File(m)) if m.len == 11
            ));
            assert!(matches!(
                r.open_relative(b"site/"),
                Ok(Resolved::File(m)) if m.mime.starts_with("text/html")
            ));
            assert!(matches!(r.open_relative(b"site"), Ok(Resolved::AddSlash)));
            // Not normalised on purpose: containment must still hold.
            assert!(matches!(
                r.open_relative(b"../x"),
                Err(FileError::Forbidden | FileError::NotFound)
            ));
            assert!(matches!(
                r.open_relative(b"/etc/passwd"),
                Err(FileError::Forbidden)
            ));
            assert!(matches!(
                r.open_relative(b"a\0b"),
                Err(FileError::BadRequest)
            ));
        }
    }

    #[test]
    fn fifo_and_socket_are_not_found_without_blocking() {
        let f = fixture();
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            f.root.path().join("fifo"),
            Mode::from_raw_mode(0o644),
        )
        .unwrap();
        let _sock = std::os::unix::net::UnixListener::bind(f.root.path().join("sock")).unwrap();
        for r in &resolvers(&f) {
            let start = Instant::now();
            assert!(matches!(open(r, "/fifo"), Err(FileError::NotFound)));
            assert!(start.elapsed() < Duration::from_secs(2));
            assert!(matches!(open(r, "/sock"), Err(FileError::NotFound)));
        }
    }

    #[test]
    fn unreadable_file_is_forbidden() {
        let f = fixture();
        let p = f.root.path().join("private.txt");
        std::fs::write(&p, b"x").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
        if rustix::process::geteuid().is_root() {
            // Root bypasses permission bits; the errno mapping is covered above.
            return;
        }
        for r in &resolvers(&f) {
            assert!(matches!(open(r, "/private.txt"), Err(FileError::Forbidden)));
        }
    }

    #[test]
    fn fallback_function_directly() {
        let f = fixture();
        let root = std::fs::canonicalize(f.root.path()).unwrap();
        assert!(open_fallback(&root, b"hello.txt").is_ok());
        assert!(matches!(
            open_fallback(&root, b"passwd"),
            Err(FileError::Forbidden)
        ));
        assert!(matches!(
            open_fallback(&root, b"../"),
            Err(FileError::Forbidden)
        ));
        assert!(matches!(
            open_fallback(&root, b"nope"),
            Err(FileError::NotFound)
        ));
    }

    #[test]
    fn invalid_index_names_rejected() {
        let f = fixture();
        for bad in ["", "..", "a/b", "x\0"] {
            assert!(Resolver::new(f.root.path(), &[bad.to_string()]).is_err());
        }
        assert!(Resolver::new(&f.root.path().join("hello.txt"), &[]).is_err());
        assert!(Resolver::new(&f.root.path().join("nope"), &[]).is_err());
    }

    #[test]
    fn openat2_is_used_on_this_kernel() {
        // Guards against silently testing only the fallback.
        let f = fixture();
        let r = Resolver::new(f.root.path(), &[]).unwrap();
        assert!(r.use_openat2);
    }

    #[test]
    fn open_file_cache_evicts_the_least_recently_used() {
        let root = tempfile::tempdir().unwrap();
        for n in ["a", "b", "c"] {
            std::fs::write(root.path().join(n), n).unwrap();
        }
        let r = Resolver::new(root.path(), &[]).unwrap();
        let mut cache = OpenCache::new(&crate::config::OpenFileCache {
            entries: 2,
            valid: Duration::from_secs(60),
            check: Duration::ZERO,
            inline_bytes: 0,
            errors: false,
            cold_reads: true,
        });
        let now = Instant::now();
        let mut scratch = Vec::new();
        for p in ["/a", "/b", "/a", "/c"] {
            assert!(cache.open(&r, p.as_bytes(), &mut scratch, now).is_ok());
        }
        // "a" was used after "b", so "b" made room for "c".
        let keys: Vec<&[u8]> = cache.map.iter().map(|(k, _)| &k[..]).collect();
        assert_eq!(keys, [&b"a"[..], b"c"]);
    }
}
