//! The I/O threads' work on cold file windows (`net::send::Cold`): the disk waits here, never
//! in a reactor.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Most socket duplicates that cold-window jobs hold at once, queued or running, in the
/// whole process: each is a descriptor beyond the configured connections (counted in
/// `server::descriptors_needed`). A window past it is read in instead of sent.
pub const MAX_COLD_SOCKETS: usize = 64;

static HELD: AtomicUsize = AtomicUsize::new(0);

/// A socket duplicate counted against `MAX_COLD_SOCKETS` until dropped.
pub struct SockSlot {
    fd: OwnedFd,
    held: &'static AtomicUsize,
}

impl SockSlot {
    /// A descriptor made by `dup` if a slot is free (`dup` is not called otherwise).
    pub fn take(dup: impl FnOnce() -> Option<OwnedFd>) -> Option<SockSlot> {
        Self::take_in(&HELD, MAX_COLD_SOCKETS, dup)
    }

    /// `take` against the counter `held` and its cap (tests use their own).
    fn take_in(
        held: &'static AtomicUsize,
        cap: usize,
        dup: impl FnOnce() -> Option<OwnedFd>,
    ) -> Option<SockSlot> {
        if held.fetch_add(1, Ordering::AcqRel) >= cap {
            held.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        // Built before `dup` runs, so a failed dup gives the slot back through Drop.
        let slot = SockSlotGuard(held);
        dup().map(|fd| {
            std::mem::forget(slot);
            SockSlot { fd, held }
        })
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }
}

impl Drop for SockSlot {
    fn drop(&mut self) {
        self.held.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A slot counted but not yet holding a descriptor.
struct SockSlotGuard(&'static AtomicUsize);

impl Drop for SockSlotGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One cold-window job, shared by its connection and the I/O thread. A connection that
/// closes cancels it: a job still queued then does nothing, a running one stops reading at
/// its next chunk, and a socket duplicate not yet taken by the thread is closed at once
/// (so a closed connection is not kept open by a job waiting behind a slow disk).
pub struct ColdTicket {
    cancelled: AtomicBool,
    had_sock: bool,
    sock: Mutex<Option<SockSlot>>,
}

impl ColdTicket {
    pub fn new(sock: Option<SockSlot>) -> Arc<ColdTicket> {
        Arc::new(ColdTicket {
            cancelled: AtomicBool::new(false),
            had_sock: sock.is_some(),
            sock: Mutex::new(sock),
        })
    }

    /// The connection is closing. True when the I/O thread holds the socket duplicate
    /// (it is sending now): the socket outlives the connection's own descriptor until the
    /// thread is done.
    pub fn cancel(&self) -> bool {
        self.cancelled.store(true, Ordering::Release);
        let taken = self.sock.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.had_sock && taken.is_none()
    }

    fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// Run the job on an I/O thread (`send_in`); a cancelled one does nothing.
    pub fn run(&self, file: &File, pos: u64, len: u64) -> Sent {
        #[cfg(feature = "fault-injection")]
        if let Some(d) = crate::fault::cold_delay() {
            std::thread::sleep(d);
        }
        if self.cancelled() {
            return Sent {
                failed: true,
                ..Sent::default()
            };
        }
        let sock = self.sock.lock().unwrap_or_else(|e| e.into_inner()).take();
        send_in(sock.as_ref().map(SockSlot::fd), file, pos, len, Some(self))
    }
}

/// Threads that read cold file windows in: they sleep on the disk, not the CPU, so there
/// are many (nginx's `aio threads` pool has 32) at normal priority, apart from the CPU
/// pool, where a read would queue behind compression and handshakes.
pub(super) const IO_THREADS: usize = 16;

/// Most cold-window jobs one reactor has queued or running; a connection past it waits
/// its turn (a hung disk piles up no more than this per reactor, whatever clients ask).
pub const MAX_COLD_JOBS: usize = 32;

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
    /// This was a cold-window job (counted against its reactor's `MAX_COLD_JOBS`).
    pub cold: bool,
}

/// A cold window of `file` (`len` bytes from `pos`) on an I/O thread. With `sock` (the
/// parked connection's socket, non-blocking): sendfile into it until the window is sent or
/// the socket is full, and no more: the rest is not read in, since a page read now could
/// be evicted again before the client makes room for it (the reactor probes it afresh).
/// Without (TLS: the reactor encrypts): bring the whole window into the page cache.
/// Errors are left for the reactor's next send to meet.
pub fn send_in(
    sock: Option<&std::os::fd::OwnedFd>,
    file: &File,
    pos: u64,
    len: u64,
    ticket: Option<&ColdTicket>,
) -> Sent {
    let end = pos.saturating_add(len);
    let Some(sock) = sock else {
        read_in(file, pos, len, ticket);
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
fn read_in(file: &File, pos: u64, len: u64, ticket: Option<&ColdTicket>) {
    thread_local! {
        static SINK: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SINK.with(|b| {
        let mut b = b.borrow_mut();
        b.resize(256 << 10, 0);
        let mut at = pos;
        let end = pos.saturating_add(len);
        while at < end && !ticket.is_some_and(ColdTicket::cancelled) {
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
        // A counter of its own: parallel tests take process slots meanwhile.
        static MINE: AtomicUsize = AtomicUsize::new(0);
        let take = |dup: &dyn Fn() -> Option<OwnedFd>| SockSlot::take_in(&MINE, 4, dup);
        let dup = || rustix::io::dup(std::io::stdin()).ok();
        let held: Vec<SockSlot> = (0..9).filter_map(|_| take(&dup)).collect();
        assert_eq!(held.len(), 4);
        assert!(take(&|| panic!("no slot: dup must not run")).is_none());
        drop(held);
        assert_eq!(MINE.load(Ordering::Relaxed), 0);
        // A failed dup gives its slot back.
        for _ in 0..5 {
            assert!(take(&|| None).is_none());
        }
        assert_eq!(MINE.load(Ordering::Relaxed), 0);
        assert!(take(&dup).is_some());
    }
}
