//! The send path of a connection: response bytes queued in a reused buffer, then the body
//! that follows them, and the one loop that pushes both into the socket.
//!
//! Heads (and small static bodies) sit in `out`; a body in memory shared with a cache
//! leaves with them in one writev; a file range or multipart parts follow with sendfile.
//! Every write counts against the turn's budget (nginx's sendfile_max_chunk idea), and a
//! WouldBlock clears the cached `writable` readiness until the next edge.

use crate::http::response::Body;
use crate::net::body::{Parts, Probe, Seg, Src};
use mio::net::TcpStream;
use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::os::fd::OwnedFd;

/// The byte stream under a connection: a TCP socket in the server, an in-memory stream in
/// the connection fuzzer and its tests (`harness`).
pub trait Transport: Read + Write {
    /// Copy up to `len` bytes of `file` from `*pos` into the stream, advancing `*pos`.
    fn send_file(&mut self, file: &File, pos: &mut u64, len: usize) -> io::Result<usize>;
    /// Half-close: no more bytes from us (lingering close).
    fn shutdown_write(&mut self) -> io::Result<()>;
    /// Turn Nagle off (TCP_NODELAY).
    fn set_nodelay(&mut self) -> io::Result<()>;
    /// TCP_CORK: hold partial segments while a head and its file body go out (nginx's
    /// `tcp_nopush`); off pushes the last one.
    fn set_cork(&mut self, _on: bool) -> io::Result<()> {
        Ok(())
    }
    /// A read shorter than the buffer means the socket is drained (edge triggering lets
    /// a plain socket's reader trust that; TLS yields a record at a time).
    fn short_read_drains(&self) -> bool {
        true
    }
    /// A pass of reads until WouldBlock begins (`on`) or ends: a transport may skip a
    /// socket read it knows would block, within one pass only (an event that arrives
    /// during the pass starts another).
    fn read_pass(&mut self, _on: bool) {}
    /// Work before the first HTTP byte (the TLS handshake): `Ready` when there is none.
    fn handshake(
        &mut self,
        _io: &mut crate::net::recv::Readiness,
        _back: Option<&crate::net::tls::Handshakes>,
        _who: (usize, u32),
    ) -> io::Result<crate::net::tls::Shake> {
        Ok(crate::net::tls::Shake::Ready)
    }
    /// Tell the peer we are closing on purpose (TLS close_notify), best effort.
    fn close_notify(&mut self) {}
    /// The bytes are encrypted (TLS listener).
    fn is_tls(&self) -> bool {
        false
    }
    /// ALPN chose `h2` (TLS only): the connection speaks HTTP/2 from its first byte.
    fn alpn_h2(&self) -> bool {
        false
    }
    /// A write that took less than offered means the socket buffer is full (a plain TCP
    /// socket: the kernel then owes us an EPOLLOUT edge, so the next write, which would
    /// say EAGAIN, is saved, as nginx does). TLS counts plaintext taken, not bytes sent.
    fn short_write_fills(&self) -> bool {
        true
    }
    /// Is there room in the socket's send buffer right now (poll, no wait)?
    fn writable_now(&self) -> bool {
        true
    }
    /// A second descriptor of the socket, for an I/O thread to sendfile a cold file window
    /// while the connection is parked (nginx's `aio threads` with sendfile). None when the
    /// bytes must pass through us (TLS, in-memory streams).
    fn send_handle(&self) -> Option<OwnedFd> {
        None
    }
    /// The plain socket itself, for splice(2) of proxied bodies (None: TLS, in memory).
    fn splice_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        None
    }
}

impl Transport for TcpStream {
    fn send_file(&mut self, file: &File, pos: &mut u64, len: usize) -> io::Result<usize> {
        Ok(rustix::fs::sendfile(&*self, file, Some(pos), len)?)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }

    fn set_nodelay(&mut self) -> io::Result<()> {
        TcpStream::set_nodelay(self, true)
    }

    fn set_cork(&mut self, on: bool) -> io::Result<()> {
        Ok(rustix::net::sockopt::set_tcp_cork(&*self, on)?)
    }

    fn writable_now(&self) -> bool {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let mut fds = [PollFd::new(self, PollFlags::OUT)];
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // An error says nothing: let the next write find out.
        poll(&mut fds, Some(&zero)).map_or(true, |_| fds[0].revents().contains(PollFlags::OUT))
    }

    fn send_handle(&self) -> Option<OwnedFd> {
        // A dup, not the raw number: should the reactor close the connection meanwhile,
        // the number could name another connection's socket by the time the thread sends.
        rustix::io::fcntl_dupfd_cloexec(self, 0).ok()
    }

    fn splice_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        Some(std::os::fd::AsFd::as_fd(self))
    }
}

/// Bytes a connection may send in one turn before yielding to its neighbours (nginx's
/// sendfile_max_chunk idea): a fast client pulling a 10 GB file cannot starve the loop.
/// The default of `limits.send_chunk`.
pub const TURN_BUDGET: u64 = 512 << 10;
/// Stop batching pipelined responses once this much is queued in `out`.
const OUT_HIGH_WATER: usize = 64 << 10;

/// Reusable buffers of one reactor, so idle connections hold none.
#[derive(Default)]
pub struct BufPool {
    free: Vec<Vec<u8>>,
}

impl BufPool {
    const KEEP: usize = 256;

    pub fn take(&mut self, len: usize) -> Vec<u8> {
        match self.free.pop() {
            Some(mut b) => {
                b.resize(len, 0);
                b
            }
            None => vec![0; len],
        }
    }

    pub fn give(&mut self, b: Vec<u8>) {
        if b.capacity() > 0 && self.free.len() < Self::KEEP {
            self.free.push(b);
        }
    }
}

pub use crate::net::body::{Cold, COLD_WINDOW};

#[derive(PartialEq, Eq)]
pub enum Flush {
    Done,
    Blocked,
    Budget,
    /// The next file bytes are not in the page cache: sending them now would block the
    /// loop on the disk. Have the pool read `Cold` in, then flush again.
    Cold,
}

pub fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

pub fn interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}

/// Response bytes on their way out: `out[opos..]` pending, then `tail`.
pub struct Outbox {
    out: Vec<u8>,
    opos: usize,
    /// Never `Src::Static`: the encoder writes a static body into `out`.
    tail: Src,
    /// The page cache as known for the tail's file bytes (kept across bodies: whether to
    /// probe at all).
    probe: Probe,
}

impl Default for Outbox {
    fn default() -> Outbox {
        Outbox::new()
    }
}

impl Outbox {
    pub fn new() -> Outbox {
        Outbox {
            out: Vec::new(),
            opos: 0,
            tail: Src::None,
            probe: Probe::new(),
        }
    }

    /// The pool is reading a cold file window in for this connection.
    pub fn cold_waiting(&self) -> bool {
        self.probe.waiting()
    }

    /// Never probe the page cache (no pool to read cold files on).
    pub fn trust_page_cache(&mut self) {
        self.probe.trust();
    }

    /// See `Probe::done`.
    pub fn cold_done(&mut self, sent: u64, probe_again: bool) -> bool {
        self.probe.done(&mut self.tail, sent, probe_again)
    }

    /// The buffer heads are encoded into, taken from `pool` if the connection had none.
    pub fn head_buf(&mut self, pool: &mut BufPool) -> &mut Vec<u8> {
        if self.out.capacity() == 0 {
            self.out = pool.take(0);
        }
        &mut self.out
    }

    /// Queue what follows the bytes in `out` (the encoder already appended a static body).
    pub fn queue(&mut self, body: Body) {
        debug_assert!(matches!(self.tail, Src::None), "one body at a time");
        self.probe.restart();
        self.tail = match body {
            Body::Static(_) => Src::None,
            body => Src::of(body),
        };
    }

    /// Bytes of the queued body to be sent from a file (sendfile); 0 if none.
    pub fn file_bytes(&self) -> u64 {
        self.tail.file_bytes()
    }

    /// No byte of `out` is waiting (a body may still be).
    pub fn head_sent(&self) -> bool {
        self.opos >= self.out.len()
    }

    /// A response still going out holds back the pipelined requests behind it: a body is
    /// streaming, or enough heads are queued for one write.
    pub fn backlogged(&self) -> bool {
        !matches!(self.tail, Src::None) || self.out.len() - self.opos >= OUT_HIGH_WATER
    }

    /// Nothing queued, no buffer held, no cold read waited for.
    pub fn is_released(&self) -> bool {
        self.out.capacity() == 0 && matches!(self.tail, Src::None) && !self.probe.waiting()
    }

    /// Give the head buffer back to `pool` once everything is sent.
    pub fn release(&mut self, pool: &mut BufPool) {
        if self.opos >= self.out.len() && matches!(self.tail, Src::None) {
            self.opos = 0;
            self.out.clear();
            if self.out.capacity() > 0 {
                pool.give(std::mem::take(&mut self.out));
            }
        }
    }

    /// Send `out`, then the tail, until done, WouldBlock or the budget is spent.
    pub fn flush<S: Transport>(
        &mut self,
        stream: &mut S,
        writable: &mut bool,
        budget: &mut u64,
        cold: &mut Option<Cold>,
    ) -> io::Result<Flush> {
        if self.probe.waiting() {
            return Ok(Flush::Cold);
        }
        // A probe holds for one turn only: between two turns (the socket was full, the
        // budget spent) the kernel may have evicted the pages, and a sendfile on them would
        // wait for the disk on this reactor.
        self.probe.new_turn();
        loop {
            let pending = self.out.len() - self.opos;
            // Heads and an in-memory body leave together in one writev.
            let shared: &[u8] = match &self.tail {
                Src::Shared(data, pos) => &data[*pos..],
                _ => &[],
            };
            if pending > 0 || !shared.is_empty() {
                if !*writable {
                    return Ok(Flush::Blocked);
                }
                let bufs = [IoSlice::new(&self.out[self.opos..]), IoSlice::new(shared)];
                let n = match stream.write_vectored(&bufs) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => n,
                    Err(e) if would_block(&e) => {
                        *writable = false;
                        return Ok(Flush::Blocked);
                    }
                    Err(e) if interrupted(&e) => continue,
                    Err(e) => return Err(e),
                };
                if n < pending + shared.len() && stream.short_write_fills() {
                    *writable = false;
                }
                let from_out = n.min(pending);
                self.opos += from_out;
                if let Src::Shared(_, pos) = &mut self.tail {
                    *pos += n - from_out;
                }
                *budget = budget.saturating_sub(n as u64);
                if *budget == 0 {
                    return Ok(Flush::Budget);
                }
                continue;
            }
            if matches!(self.tail, Src::Shared(..)) {
                self.tail = Src::None;
            }
            self.out.clear();
            self.opos = 0;
            if *budget == 0 {
                return Ok(Flush::Budget);
            }
            let done = match &mut self.tail {
                // Whatever the transport still holds (TLS records) goes out too.
                Src::None => {
                    return match stream.flush() {
                        Ok(()) => Ok(Flush::Done),
                        Err(e) if would_block(&e) => {
                            *writable = false;
                            Ok(Flush::Blocked)
                        }
                        Err(e) => Err(e),
                    }
                }
                // Sent with the head above; nothing left of it here (and a static body
                // is in `out`).
                Src::Shared(..) | Src::Static(..) => true,
                Src::File { file, pos, end } => {
                    if !*writable {
                        return Ok(Flush::Blocked);
                    }
                    if self.probe.warm_from(*pos) == 0 && *pos < *end {
                        if let Some(c) = self.probe.check(file, *pos, *end) {
                            *cold = Some(c);
                            return Ok(Flush::Cold);
                        }
                        continue;
                    }
                    match send_file(stream, file, pos, *end, budget, writable) {
                        Ok(true) => true,
                        Ok(false) => continue,
                        Err(e) if would_block(&e) => {
                            *writable = false;
                            return Ok(Flush::Blocked);
                        }
                        Err(e) if interrupted(&e) => continue,
                        Err(e) => return Err(e),
                    }
                }
                Src::Parts(p) => {
                    let Parts {
                        file,
                        mem,
                        segs,
                        idx,
                    } = &mut **p;
                    if *idx >= segs.len() {
                        true
                    } else {
                        if !*writable {
                            return Ok(Flush::Blocked);
                        }
                        let r = match &mut segs[*idx] {
                            Seg::Mem(s, e) => match stream.write(&mem[*s..*e]) {
                                Ok(n) => {
                                    *s += n;
                                    *budget = budget.saturating_sub(n as u64);
                                    Ok(s == e)
                                }
                                Err(err) => Err(err),
                            },
                            Seg::File(pos, end) => {
                                if self.probe.warm_from(*pos) == 0 && *pos < *end {
                                    if let Some(c) = self.probe.check(file, *pos, *end) {
                                        *cold = Some(c);
                                        return Ok(Flush::Cold);
                                    }
                                    continue;
                                }
                                send_file(stream, file, pos, *end, budget, writable)
                            }
                        };
                        match r {
                            Ok(true) => {
                                *idx += 1;
                                // Ranges may go backwards: probe the next one afresh.
                                self.probe.restart();
                                continue;
                            }
                            Ok(false) => continue,
                            Err(e) if would_block(&e) => {
                                *writable = false;
                                return Ok(Flush::Blocked);
                            }
                            Err(e) if interrupted(&e) => continue,
                            Err(e) => return Err(e),
                        }
                    }
                }
            };
            if done {
                self.tail = Src::None;
            }
        }
    }
}

/// One sendfile from `*pos` towards `end`, at most the remaining budget. Ok(true) when the
/// range is complete. A file that shrank under us cannot be framed any more: error.
fn send_file(
    sock: &mut impl Transport,
    file: &File,
    pos: &mut u64,
    end: u64,
    budget: &mut u64,
    writable: &mut bool,
) -> io::Result<bool> {
    if *pos >= end {
        return Ok(true);
    }
    let want = (end - *pos).min(*budget).min(1 << 30) as usize;
    match sock.send_file(file, pos, want) {
        Ok(0) => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "file shrank while being sent",
        )),
        Ok(n) => {
            *budget = budget.saturating_sub(n as u64);
            if n < want && sock.short_write_fills() {
                *writable = false;
            }
            Ok(*pos >= end)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A socket that takes `room` more bytes, then says WouldBlock.
    struct Sink {
        room: usize,
        got: usize,
    }

    impl Read for Sink {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::ErrorKind::WouldBlock.into())
        }
    }

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let n = b.len().min(self.room);
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.room -= n;
            self.got += n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Transport for Sink {
        fn send_file(&mut self, _: &File, pos: &mut u64, len: usize) -> io::Result<usize> {
            let n = self.write(&vec![0; len.min(self.room)])?;
            *pos += n as u64;
            Ok(n)
        }
        fn shutdown_write(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn set_nodelay(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn evict(f: &File) -> bool {
        f.sync_all().expect("fsync");
        rustix::fs::fadvise(f, 0, None, rustix::fs::Advice::DontNeed).expect("fadvise");
        !crate::offload::pagecache::resident(f, 0, 4 << 20)
    }

    #[test]
    fn a_resident_verdict_holds_for_one_turn_only() {
        // On the disk (not tmpfs), so that its pages can be evicted.
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, vec![1u8; 4 << 20]).expect("write");
        let file = Arc::new(File::open(&path).expect("open"));
        let mut out = Outbox::new();
        out.queue(Body::File {
            file: Arc::clone(&file),
            start: 0,
            end: 4 << 20,
        });
        let mut sink = Sink {
            room: 64 << 10,
            got: 0,
        };
        let (mut writable, mut cold, mut budget) = (true, None, u64::MAX);
        let r = out.flush(&mut sink, &mut writable, &mut budget, &mut cold);
        assert!(matches!(r, Ok(Flush::Blocked)) && cold.is_none());
        assert_eq!(sink.got, 64 << 10);
        // The kernel drops the pages while the socket is full.
        if !evict(&file) {
            if std::env::var_os("VIREO_REQUIRE_EVICTION").is_some() {
                panic!("VIREO_REQUIRE_EVICTION is set but this filesystem keeps evicted pages");
            }
            eprintln!("SKIPPED: this filesystem keeps evicted pages");
            return;
        }
        sink.room = usize::MAX;
        writable = true;
        let r = out.flush(&mut sink, &mut writable, &mut budget, &mut cold);
        // Probed afresh: the rest of the window goes to an I/O thread, not to a sendfile
        // that would wait for the disk on the reactor.
        assert!(matches!(r, Ok(Flush::Cold)), "sent from the reactor");
        let c = cold.expect("a cold window");
        assert_eq!((c.pos, sink.got), (64 << 10, 64 << 10));
    }
}
