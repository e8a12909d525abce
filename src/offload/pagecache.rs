//! Is a file range in the page cache? Asked before each window of a file body is sent, so
//! that the reactor never sends bytes that must first come from the disk (`send::Cold`).

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

/// Are all pages of `file` in `pos..pos + len` in the page cache, and readable now?
/// `cachestat(2)` (Linux 6.5) counts them, and `preadv2(.., RWF_NOWAIT)` of its first and
/// last bytes checks that their pages are not still being read in. Without it, `preadv2(.., RWF_NOWAIT)` of the first byte says EAGAIN
/// when its page is not, and the rest of the range is taken on trust. A filesystem that
/// supports neither counts as resident (nginx's default: sendfile may wait).
pub fn resident(file: &File, pos: u64, len: u64) -> bool {
    static NO_CACHESTAT: AtomicBool = AtomicBool::new(false);
    if len > 0 && !NO_CACHESTAT.load(Ordering::Relaxed) {
        match cachestat(file, pos, len) {
            Ok(cached) => {
                let page = rustix::param::page_size() as u64;
                let pages = pos.saturating_add(len).div_ceil(page) - pos / page;
                // cachestat counts a page that readahead has added but not yet filled
                // (its read is in flight), and sendfile would wait on it: ask the ends of
                // the range too, whose pages a read in flight leaves locked.
                return cached >= pages
                    && first_byte_resident(file, pos)
                    && first_byte_resident(file, pos.saturating_add(len - 1));
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => {
                // An older kernel, or a seccomp filter: never ask again.
                NO_CACHESTAT.store(true, Ordering::Relaxed);
            }
            Err(_) => {}
        }
    }
    first_byte_resident(file, pos)
}

fn first_byte_resident(file: &File, pos: u64) -> bool {
    let mut b = [0u8; 1];
    let mut bufs = [io::IoSliceMut::new(&mut b)];
    !matches!(
        rustix::io::preadv2(file, &mut bufs, pos, rustix::io::ReadWriteFlags::NOWAIT),
        Err(rustix::io::Errno::AGAIN)
    )
}

#[repr(C)]
struct CachestatRange {
    off: u64,
    len: u64,
}

#[repr(C)]
#[derive(Default)]
struct Cachestat {
    nr_cache: u64,
    nr_dirty: u64,
    nr_writeback: u64,
    nr_evicted: u64,
    nr_recently_evicted: u64,
}

/// Pages of the range in the page cache. Neither libc nor rustix wraps cachestat yet.
#[cfg(target_os = "linux")]
fn cachestat(file: &File, off: u64, len: u64) -> io::Result<u64> {
    use std::os::fd::AsRawFd;
    // The same number on every architecture (the unified table from 424 on).
    const SYS_CACHESTAT: libc::c_long = 451;
    let range = CachestatRange { off, len };
    let mut st = Cachestat::default();
    // SAFETY: cachestat(2) reads `range` and writes `st`, both live locals in the kernel's
    // layout; the descriptor is borrowed from a live File; flags must be 0.
    let r = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            file.as_raw_fd(),
            &range as *const CachestatRange,
            &mut st as *mut Cachestat,
            0 as libc::c_uint,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.nr_cache)
}

#[cfg(not(target_os = "linux"))]
fn cachestat(_: &File, _: u64, _: u64) -> io::Result<u64> {
    Err(io::Error::from_raw_os_error(libc::ENOSYS))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: u64 = 8 << 20;

    #[test]
    fn a_file_just_written_is_resident_and_an_evicted_one_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; SIZE as usize]).expect("write");
        let f = File::open(&path).expect("open");
        assert!(resident(&f, 0, SIZE));
        assert!(resident(&f, 4095, 2));
        f.sync_all().expect("fsync");
        rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).expect("fadvise");
        if first_byte_resident(&f, SIZE - 1) {
            return; // a filesystem that keeps pages (tmpfs): nothing to see
        }
        assert!(!resident(&f, SIZE / 2, 2 << 20));
        if cachestat(&f, 0, 1).is_err() {
            return; // before Linux 6.5 only the first byte is probed
        }
        // Its first page read back in (readahead brings some more): the whole range is
        // still not there, and the window is cold even though its first byte is not.
        let mut b = [0u8; 1];
        rustix::io::pread(&f, &mut b, 0).expect("pread");
        assert!(first_byte_resident(&f, 0));
        assert!(!resident(&f, 0, SIZE));
    }
}
