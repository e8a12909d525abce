//! The per-reactor open-file cache: `files::Resolver` lookups remembered by normalised
//! path, with the bytes of small files.

use super::files::{normalize, EtagBuf, FileError, FileMeta, Resolved, Resolver};
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A per-reactor open-file cache (nginx's `open_file_cache`): path -> open fd and metadata,
/// and the bytes of small files. A hit costs one `fstat` of the cached fd (at most once per
/// `check`; by default on every hit), which catches in-place modification; the path is
/// resolved again after `valid`, which catches renames and deletions. No locks: each
/// reactor has its own.
pub struct OpenCache {
    /// Least recently used first: a hit moves its entry to the back, a full cache drops the
    /// front (nginx keeps its cache in LRU order too).
    pub(super) map: hashlink::LruCache<Box<[u8]>, Cached>,
    entries: usize,
    valid: Duration,
    check: Duration,
    inline_bytes: u64,
    /// Also remember "not found" for `valid` (nginx's open_file_cache_errors).
    errors: bool,
}

pub(super) struct Cached {
    /// None: the path did not exist when last resolved.
    meta: Option<FileMeta>,
    resolved_at: Instant,
    checked_at: Instant,
}

impl OpenCache {
    pub fn new(c: &crate::config::OpenFileCache) -> OpenCache {
        OpenCache {
            map: hashlink::LruCache::new(c.entries.max(1)),
            entries: c.entries,
            valid: c.valid,
            check: c.check,
            inline_bytes: c.inline_bytes,
            errors: c.errors,
        }
    }

    /// `Resolver::open` through the cache. Leaves the normalised path in `scratch`.
    pub fn open(
        &mut self,
        resolver: &Resolver,
        raw_path: &[u8],
        scratch: &mut Vec<u8>,
        now: Instant,
    ) -> Result<Resolved, FileError> {
        let trailing = normalize(raw_path, scratch)?;
        self.open_normalized(resolver, scratch, trailing, now)
    }

    /// `open` for a path `normalize` already wrote into `scratch` (it stays there).
    pub fn open_normalized(
        &mut self,
        resolver: &Resolver,
        scratch: &mut Vec<u8>,
        trailing: bool,
        now: Instant,
    ) -> Result<Resolved, FileError> {
        if self.entries == 0 {
            return resolver.open_normalized(scratch, trailing);
        }
        // The key is the normalised path, with its trailing slash (an index lookup).
        if trailing {
            scratch.push(b'/');
        }
        let hit = self.lookup(scratch, now);
        if trailing {
            scratch.pop();
        }
        match hit {
            Some(Some(meta)) => return Ok(Resolved::File(meta)),
            Some(None) => return Err(FileError::NotFound),
            None => {}
        }
        let resolved = match resolver.open_normalized(scratch, trailing) {
            Err(FileError::NotFound) if self.errors => {
                self.insert(scratch, trailing, None, now);
                return Err(FileError::NotFound);
            }
            r => r?,
        };
        let Resolved::File(mut meta) = resolved else {
            return Ok(resolved);
        };
        if meta.len <= self.inline_bytes {
            meta.content = read_all(&meta.file, meta.len);
        }
        self.insert(scratch, trailing, Some(meta.clone()), now);
        Ok(Resolved::File(meta))
    }

    fn insert(&mut self, path: &[u8], trailing: bool, meta: Option<FileMeta>, now: Instant) {
        let mut key = Vec::with_capacity(path.len() + 1);
        key.extend_from_slice(path);
        if trailing {
            key.push(b'/');
        }
        self.map.insert(
            key.into_boxed_slice(),
            Cached {
                meta,
                resolved_at: now,
                checked_at: now,
            },
        );
    }

    /// None: not cached (or expired). Some(None): cached as not found.
    fn lookup(&mut self, key: &[u8], now: Instant) -> Option<Option<FileMeta>> {
        let c = self.map.get_mut(key)?;
        if now.duration_since(c.resolved_at) >= self.valid {
            self.map.remove(key);
            return None;
        }
        let Some(m) = c.meta.as_mut() else {
            return Some(None);
        };
        if now.duration_since(c.checked_at) < self.check {
            return Some(Some(m.clone()));
        }
        c.checked_at = now;
        let Ok(md) = m.file.metadata() else {
            self.map.remove(key);
            return None;
        };
        let mtime = u64::try_from(md.mtime()).unwrap_or(0);
        let mtime_nanos = u32::try_from(md.mtime_nsec()).unwrap_or(0);
        let before_epoch = md.mtime() < 0;
        if md.size() != m.len
            || mtime != m.mtime
            || mtime_nanos != m.mtime_nanos
            || before_epoch != m.before_epoch
        {
            // Changed in place: same fd, new validators and bytes.
            m.len = md.size();
            m.mtime = mtime;
            m.mtime_nanos = mtime_nanos;
            m.before_epoch = before_epoch;
            m.etag = EtagBuf::new(mtime, m.len);
            m.content = if m.len <= self.inline_bytes {
                read_all(&m.file, m.len)
            } else {
                None
            };
        } else if m.content.is_none() && m.len <= self.inline_bytes {
            // It was cold when opened (sent from the file since); resident now, maybe.
            m.content = read_all(&m.file, m.len);
        }
        Some(Some(m.clone()))
    }
}

/// The whole file with pread, or None if it changed size under us or is not all in the
/// page cache: a reactor must not wait on the disk, so a cold small file is sent from the
/// file instead, whose cold windows go to the I/O threads (`net::send::Cold`).
fn read_all(file: &File, len: u64) -> Option<Arc<[u8]>> {
    if len > 0 && !crate::offload::pagecache::resident(file, 0, len) {
        return None;
    }
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, 0).ok()?;
    Some(Arc::from(buf))
}
