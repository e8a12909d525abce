//! The receive side of a connection: a read buffer with cursors (`Inbox`) and the cached
//! readiness that edge-triggered reads keep up to date.
//!
//! Valid bytes are `buf[pos..end]`; parsed heads keep offsets into them, never borrows. A
//! full buffer rolls its unparsed tail to the front (ripgrep's `LineBuffer::roll`), and an
//! idle connection gives the buffer back to the reactor's pool.

use crate::net::send::{interrupted, would_block, BufPool, Transport};
use std::io;

/// Free space kept after a buffered head while its body is read.
const BODY_ROOM: usize = 4096;

/// Cached readiness and what the input side has seen.
pub struct Readiness {
    pub readable: bool,
    pub writable: bool,
    /// epoll said the peer hung up (RDHUP): a short read no longer proves the socket is
    /// drained, the FIN may be queued behind the data, so read on until EOF or WouldBlock.
    pub read_closed: bool,
    /// The peer sent FIN: answer what is buffered, then close.
    pub eof: bool,
}

#[derive(Default)]
pub struct Inbox {
    buf: Vec<u8>,
    pos: usize,
    end: usize,
}

impl Inbox {
    /// The bytes received and not yet consumed.
    pub fn pending(&self) -> &[u8] {
        self.buf.get(self.pos..self.end).unwrap_or_default()
    }

    pub fn has_pending(&self) -> bool {
        self.pos < self.end
    }

    /// The request head of `n` bytes at the front is answered.
    pub fn consume(&mut self, n: usize) {
        self.pos += n;
    }

    /// `pending()` as it was before the last `consume(n)`.
    pub fn before_consume(&self, n: usize) -> &[u8] {
        &self.buf[self.pos - n..self.end]
    }

    /// The bytes after the head of `head_len` bytes at the front (its body, and more).
    pub fn after_head(&self, head_len: usize) -> &[u8] {
        &self.buf[self.pos + head_len..self.end]
    }

    /// Drop `n` body bytes that follow the head in place: later bytes move down, the head
    /// stays.
    pub fn drop_body(&mut self, head_len: usize, n: usize) {
        let start = self.pos + head_len;
        self.buf.copy_within(start + n..self.end, start);
        self.end -= n;
    }

    /// Read until WouldBlock, a short read, EOF or a full buffer of `cap` bytes (`body`: a
    /// body is being read, keep room for it beyond the head). Returns whether any input
    /// arrived (or EOF was seen), i.e. whether processing can continue.
    pub fn fill(
        &mut self,
        stream: &mut impl Transport,
        io: &mut Readiness,
        cap: usize,
        body: bool,
        pool: &mut BufPool,
    ) -> io::Result<bool> {
        if self.buf.is_empty() {
            self.buf = pool.take(cap.max(4096));
        }
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        } else if self.pos > 0 && self.end == self.buf.len() {
            // Roll the unparsed tail to the front (LineBuffer::roll).
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        if body && self.buf.len() - self.end < BODY_ROOM {
            // A head near the size limit leaves the body almost no room: read it in
            // blocks, not a few bytes per syscall.
            self.buf.resize(self.end + BODY_ROOM, 0);
        }
        let mut got = false;
        let trust_short = stream.short_read_drains();
        // Once the peer's FIN is seen, read on to the EOF it brings.
        stream.read_pass(!io.read_closed);
        let r = self.fill_pass(stream, io, trust_short, &mut got);
        stream.read_pass(false);
        r.map(|()| got)
    }

    fn fill_pass(
        &mut self,
        stream: &mut impl Transport,
        io: &mut Readiness,
        trust_short: bool,
        got: &mut bool,
    ) -> io::Result<()> {
        while self.end < self.buf.len() {
            let want = self.buf.len() - self.end;
            match stream.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    io.eof = true;
                    io.readable = false;
                    *got = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.end += n;
                    *got = true;
                    if n < want && trust_short && !io.read_closed {
                        // Edge triggered: a short read means the socket is drained.
                        io.readable = false;
                        break;
                    }
                }
                Err(e) if would_block(&e) => {
                    io.readable = false;
                    break;
                }
                Err(e) if interrupted(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Grow a buffer taken for a smaller cap (an HTTP/1.1 head's) to `cap` bytes, so a
    /// whole HTTP/2 frame fits.
    pub fn grow_to(&mut self, cap: usize) {
        if !self.buf.is_empty() && self.buf.len() < cap {
            self.buf.resize(cap, 0);
        }
    }

    /// Holds no buffer (given back, or never taken).
    pub fn is_released(&self) -> bool {
        self.buf.capacity() == 0
    }

    /// Give the buffer back to `pool` once everything in it is consumed.
    pub fn release(&mut self, pool: &mut BufPool) {
        if self.pos == self.end && !self.buf.is_empty() {
            pool.give(std::mem::take(&mut self.buf));
            self.pos = 0;
            self.end = 0;
        }
    }
}
