//! Zero-copy relay of large response bodies on plain sockets (HAProxy's way; nginx copies
//! through user space): upstream socket -> pipe -> client socket with splice(2), one pipe
//! per exchange, made when its first body is spliced and closed with the exchange. The
//! bytes in the pipe count as the exchange's unsent output, so the bound (`OUT_MAX`) and
//! the backpressure are those of the copy loop: the upstream is spliced from only while
//! the pipe holds less than that.
//!
//! Only for bodies passed as they are (Content-Length or close-delimited), from the head
//! on, both sockets plain; TLS clients, chunked bodies (validated on the way), de-chunked
//! and compressed ones take the copy loop.
//!
//! A pipe holds 16 buffers, not 64 KiB: splicing small socket segments can fill it
//! early, and EAGAIN then means "pipe full", not "socket drained". So EAGAIN clears the
//! upstream's readiness only when the pipe was empty (an empty pipe always takes a
//! buffer); otherwise the pipe is drained to the client and the splice tried again.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::pipe::{pipe_with, splice, PipeFlags, SpliceFlags};

/// Bodies at least this long (or close-delimited) are spliced: below it the pipe's two
/// syscalls per step win nothing over read + write.
pub const SPLICE_MIN: u64 = 32 * 1024;

/// Splice at all? On unless `VIREO_PROXY_SPLICE=0` (read once): the switch behind the
/// splice-vs-copy measurement in README.
pub fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("VIREO_PROXY_SPLICE").is_none_or(|v| v != "0"))
}

pub struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    /// Bytes in the pipe (spliced in, not yet out).
    pub held: usize,
}

/// What a splice into the pipe came to.
pub enum Filled {
    Moved(usize),
    /// The upstream closed.
    Eof,
    /// Nothing moved; `drained`: the socket has nothing (not the pipe that is full).
    WouldBlock {
        drained: bool,
    },
}

impl Pipe {
    pub fn new() -> io::Result<Pipe> {
        let (r, w) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        Ok(Pipe { r, w, held: 0 })
    }

    /// Move up to `max` bytes from the socket `from` into the pipe.
    pub fn fill(&mut self, from: BorrowedFd<'_>, max: usize) -> io::Result<Filled> {
        loop {
            match splice(
                from,
                None,
                &self.w,
                None,
                max,
                SpliceFlags::NONBLOCK | SpliceFlags::MOVE,
            ) {
                Ok(0) => return Ok(Filled::Eof),
                Ok(n) => {
                    self.held += n;
                    return Ok(Filled::Moved(n));
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) => {
                    return Ok(Filled::WouldBlock {
                        drained: self.held == 0,
                    })
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Move up to `max` bytes of the pipe to the socket `to`; Ok(0) when it takes none
    /// now (EAGAIN).
    pub fn drain(&mut self, to: BorrowedFd<'_>, max: usize) -> io::Result<usize> {
        let max = max.min(self.held);
        if max == 0 {
            return Ok(0);
        }
        loop {
            match splice(
                &self.r,
                None,
                to,
                None,
                max,
                SpliceFlags::NONBLOCK | SpliceFlags::MOVE,
            ) {
                Ok(n) => {
                    self.held -= n;
                    return Ok(n);
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) => return Ok(0),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    #[test]
    fn bytes_pass_socket_to_socket_through_the_pipe() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut up_peer = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (up, _) = l.accept().unwrap();
        up.set_nonblocking(true).unwrap();
        let mut client_peer = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (client, _) = l.accept().unwrap();
        let mut p = Pipe::new().unwrap();
        assert!(matches!(
            p.fill(up.as_fd(), 1000).unwrap(),
            Filled::WouldBlock { drained: true }
        ));
        up_peer.write_all(b"hello splice").unwrap();
        let mut moved = 0;
        while moved < 12 {
            if let Filled::Moved(n) = p.fill(up.as_fd(), 1000).unwrap() {
                moved += n;
            }
        }
        assert_eq!(p.held, 12);
        assert_eq!(p.drain(client.as_fd(), 5).unwrap(), 5);
        assert_eq!(p.drain(client.as_fd(), 100).unwrap(), 7);
        let mut b = [0u8; 12];
        client_peer.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"hello splice");
        drop(up_peer);
        loop {
            match p.fill(up.as_fd(), 1000).unwrap() {
                Filled::Eof => break,
                Filled::WouldBlock { .. } => continue,
                Filled::Moved(_) => panic!("bytes after the close"),
            }
        }
    }
}
