//! The I/O threads' work on cold file windows (`net::send::Cold`): the disk waits here, never
//! in a reactor.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Most socket duplicates that cold-window jobs hold at once, queued or running, in the
/// whole process: each is a descriptor beyond the configured connections (counted in
/// `server::descriptors_needed`). A window past it is read in instead of sent.
pub const MAX_COLD_SOCKETS: usize = 64;

static HELD: AtomicUsize = AtomicUsize::new(0);

/// A socket duplicate counted against `MAX_COLD_SOCKETS` until dropped.
pub struct SockSlot(OwnedFd);

impl SockSlot {
    /// A descriptor made by `dup` if a slot is free (`dup` is not called otherwise).
    pub fn take(dup: impl FnOnce() -> Option<OwnedFd>) -> Option<SockSlot> {
        if HELD.fetch_add(1, Ordering::AcqRel) >= MAX_COLD_SOCKETS {
            HELD.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        // Built before `dup` runs, so a failed dup gives the slot back through Drop.
        let slot = SockSlotGuard;
        dup().map(|fd| {
            std::mem::forget(slot);
            SockSlot(fd)
        })
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.0
    }
}

impl Drop for SockSlot {
    fn drop(&mut self) {
        HELD.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A slot counted but not yet holding a descriptor.
struct SockSlotGuard;

impl Drop for SockSlotGuard {
    fn drop(&mut self) {
        HELD.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Threads that read cold file windows in: they sleep on the disk, not the CPU, so there
/// are many (nginx's `aio threads` pool has 32) at normal priority, apart from the CPU
/// pool, where a read would queue behind compression and handshakes.
pub(super) const IO_THREADS: usize = 16;

/// What an I/O thread did with a cold window (`send_in`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    pub bytes: u64,
    /// It stopped because the socket was full.
    pub socket_full: bool,
    /// The socket or the file failed (a file that shrank): the connection cannot go on.
    pub failed: bool,
    /// The whole window was read into the page cache (no socket to send to).
    pub read_in: bool,
}

/// A cold window of `file` (`len` bytes from `pos`) on an I/O thread. With `sock` (the
/// parked connection's socket, non-blocking): sendfile into it until the window is sent or
/// the socket is full, and no more: the rest is not read in, since a page read now could
/// be evicted again before the client makes room for it (the reactor probes it afresh).
/// Without (TLS: the reactor encrypts): bring the whole window into the page cache.
/// Errors are left for the reactor's next send to meet.
pub fn send_in(sock: Option<&std::os::fd::OwnedFd>, file: &File, pos: u64, len: u64) -> Sent {
    let end = pos.saturating_add(len);
    let Some(sock) = sock else {
        read_in(file, pos, len);
        return Sent {
            read_in: true,
            ..Sent::default()
        };
    };
    let mut sent = Sent::default();
    let mut at = pos;
    while at < end {
        let want = ((end - at) as usize).min(1 << 30);
        match rustix::fs::sendfile(sock, file, Some(&mut at), want) {
            Ok(0) => sent.failed = true,
            Ok(_) => continue,
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) => sent.socket_full = true,
            Err(_) => sent.failed = true,
        }
        break;
    }
    sent.bytes = at - pos;
    sent
}

/// Bring `len` bytes of `file` from `pos` into the page cache (a pool thread blocks on
/// the disk so that the reactor's sendfile or pread afterwards does not). Errors are left
/// for the send itself to meet.
fn read_in(file: &File, pos: u64, len: u64) {
    thread_local! {
        static SINK: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SINK.with(|b| {
        let mut b = b.borrow_mut();
        b.resize(256 << 10, 0);
        let mut at = pos;
        let end = pos.saturating_add(len);
        while at < end {
            let want = ((end - at) as usize).min(b.len());
            match rustix::io::pread(file, &mut b[..want], at) {
                Ok(0) | Err(_) => return,
                Ok(n) => at += n as u64,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_slots_are_capped_and_given_back() {
        let held: Vec<SockSlot> = (0..MAX_COLD_SOCKETS + 5)
            .filter_map(|_| SockSlot::take(|| rustix::io::dup(std::io::stdin()).ok()))
            .collect();
        // Other tests in this process may hold a few at the same moment.
        assert!(held.len() <= MAX_COLD_SOCKETS);
        assert!(SockSlot::take(|| panic!("no slot: dup must not run")).is_none());
        drop(held);
        // A failed dup gives its slot back.
        for _ in 0..MAX_COLD_SOCKETS + 1 {
            assert!(SockSlot::take(|| None).is_none());
        }
        assert!(SockSlot::take(|| rustix::io::dup(std::io::stdin()).ok()).is_some());
    }
}
