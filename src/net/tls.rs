//! A connection's byte stream when it came in on a TLS listener: rustls over the socket.
//!
//! The handshake's CPU work (key exchange, signature) never runs on the reactor: the
//! reactor only moves records between the socket and rustls' buffers, and every
//! `process_new_packets` while the handshake is in progress runs on the offload pool. The
//! `ServerConnection` travels there in a `Box` and comes back in a `HandshakeDone` through
//! the reactor's channel and eventfd; meanwhile the stream holds no TLS state and the
//! connection waits (its header countdown keeps running, so a stalled client is cut).
//!
//! Once established, records are decrypted and encrypted inline (symmetric crypto is a few
//! hundred ns per KiB). There is no sendfile: a file range is `pread` into one scratch
//! buffer per reactor thread, handed to rustls and written with its `writev`; rustls'
//! output is bounded by only taking more plaintext once the previous output left.

use crate::net::recv::Readiness;
use crate::net::send::{interrupted, would_block, Transport};
use crate::offload::Offload;
use crate::ops::tls_metrics::{fail, Failure, TLS};
use crossbeam_channel::Sender;
use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token, Waker};
use rustls::ServerConnection;
use std::cell::RefCell;
use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Plaintext handed to rustls per write: four full records.
const CHUNK: usize = 64 << 10;

/// What a plain HTTP request on a TLS port gets (nginx answers the same way).
const PLAIN_HTTP_400: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\
Content-Length: 34\r\nConnection: close\r\n\r\nplain HTTP sent to an HTTPS port.\n";

/// A handshake step done on the pool, on its way back to the reactor that owns the
/// connection (slot, generation).
pub struct HandshakeDone {
    pub slot: usize,
    pub generation: u32,
    /// None: the job panicked and the state is gone.
    tls: Option<Box<ServerConnection>>,
    result: Result<(), rustls::Error>,
}

/// How a reactor's connections reach the pool and how the pool reaches back.
pub struct Handshakes {
    pub offload: Arc<Offload>,
    pub tx: Sender<HandshakeDone>,
    pub waker: Arc<Waker>,
}

/// What the handshake needs to go on.
pub enum Shake {
    /// Established (or no TLS at all): HTTP bytes flow.
    Ready,
    /// Waiting for the socket or for the pool.
    Wait,
}

/// The byte stream of a connection: plain TCP or TLS over TCP.
///
/// Generic over the socket so the connection harness (an in-memory stream) can drive the
/// very same TLS code.
pub enum Stream<T = TcpStream> {
    Plain(T),
    Tls(Box<TlsStream<T>>),
}

pub struct TlsStream<T = TcpStream> {
    sock: T,
    /// None while a handshake step runs on the pool.
    tls: Option<Box<ServerConnection>>,
    handshaking: bool,
    /// The peer sent its FIN (read_tls returned 0).
    eof: bool,
    /// No byte has arrived yet: the first one tells TLS from plain HTTP.
    first: bool,
    /// close_notify is queued (sent once).
    notified: bool,
    /// Inside one `recv::Buffer::fill` pass (`Transport::read_pass`).
    in_pass: bool,
    /// In this pass, a socket read returned less than rustls asked for: the socket was
    /// drained then, so once rustls has no plaintext left the next recv would only say
    /// EAGAIN (edge triggering brings a new event for bytes that arrive later).
    drained: bool,
    /// A handshake read stopped at `HANDSHAKE_READ_MAX` before the socket said
    /// WouldBlock: more may be waiting (no new edge will say so).
    capped: bool,
}

/// Bytes read into rustls per handshake step. A client may send application data right
/// after its Finished (TLS 1.3); rustls buffers only so much unprocessed input ("message
/// buffer full"), so the rest waits in the socket until the handshake is done.
const HANDSHAKE_READ_MAX: usize = 16 * 1024;

impl<T: Transport> Stream<T> {
    /// A TLS stream for a connection accepted on a TLS listener.
    pub fn tls(sock: T, config: Arc<rustls::ServerConfig>) -> io::Result<Stream<T>> {
        let tls = ServerConnection::new(config).map_err(io::Error::other)?;
        Ok(Stream::Tls(Box::new(TlsStream {
            sock,
            tls: Some(Box::new(tls)),
            handshaking: true,
            eof: false,
            first: true,
            notified: false,
            in_pass: false,
            drained: false,
            capped: false,
        })))
    }

    /// A handshake step of this connection is on the pool.
    pub fn on_pool(&self) -> bool {
        matches!(self, Stream::Tls(t) if t.tls.is_none())
    }

    fn sock(&mut self) -> &mut T {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &mut t.sock,
        }
    }

    /// A handshake step came back from the pool. Err: the connection is over.
    pub fn resume_handshake(&mut self, done: HandshakeDone) -> io::Result<()> {
        let Stream::Tls(t) = self else {
            return Err(io::Error::other("handshake completion for a plain stream"));
        };
        let Some(mut tls) = done.tls else {
            fail(Failure::Internal);
            return Err(io::Error::other("handshake job failed"));
        };
        if let Err(e) = done.result {
            log::debug!("TLS handshake failed: {e}");
            fail(Failure::Protocol);
            // The alert rustls queued, if the socket takes it.
            let _ = tls.write_tls(&mut t.sock);
            return Err(io::Error::other(e));
        }
        t.tls = Some(tls);
        Ok(())
    }

    /// The TLS version and cipher suite, once established (for the access log).
    pub fn tls_info(&self) -> Option<(&'static str, &'static str)> {
        let Stream::Tls(t) = self else {
            return None;
        };
        let tls = t.tls.as_ref()?;
        let version = match tls.protocol_version()? {
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
            _ => "TLS",
        };
        let suite = tls
            .negotiated_cipher_suite()?
            .suite()
            .as_str()
            .unwrap_or("unknown");
        Some((version, suite))
    }

    /// The client stopped mid-handshake (header timeout): count it.
    pub fn on_timeout(&self) {
        if let Stream::Tls(t) = self {
            if t.handshaking {
                fail(Failure::Timeout);
            }
        }
    }
}

impl<T: Transport> TlsStream<T> {
    /// The socket under the records (the harness inspects its in-memory stream).
    pub(crate) fn sock_mut(&mut self) -> &mut T {
        &mut self.sock
    }

    fn conn(&mut self) -> io::Result<&mut ServerConnection> {
        self.tls
            .as_deref_mut()
            .ok_or_else(|| io::Error::other("TLS state is on the pool"))
    }

    /// Write rustls' pending output. Err(WouldBlock) while some is left.
    fn flush_tls(&mut self) -> io::Result<()> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return Ok(());
        };
        while tls.wants_write() {
            match tls.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if interrupted(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Move records from the socket into rustls until it would block. Returns the bytes
    /// read; sets `eof` on the peer's FIN.
    fn read_records(&mut self) -> io::Result<usize> {
        let mut total = 0;
        let Some(tls) = self.tls.as_deref_mut() else {
            return Ok(0);
        };
        loop {
            let mut tap = Tap {
                sock: &mut self.sock,
                first: if self.first { Some(0) } else { None },
                short: false,
            };
            let r = tls.read_tls(&mut tap);
            let first_byte = tap.first;
            self.drained = self.in_pass && tap.short;
            match r {
                Ok(0) => {
                    self.eof = true;
                    return Ok(total);
                }
                Ok(n) => {
                    if self.first {
                        self.first = false;
                        if first_byte != Some(0x16) {
                            return Err(not_tls(&mut self.sock, first_byte));
                        }
                    }
                    total += n;
                    if !self.handshaking {
                        // One batch of records at a time: their plaintext must be taken
                        // before rustls buffers more.
                        return Ok(total);
                    }
                    if total >= HANDSHAKE_READ_MAX {
                        self.capped = true;
                        return Ok(total);
                    }
                }
                Err(e) if would_block(&e) => {
                    if total == 0 {
                        return Err(e);
                    }
                    return Ok(total);
                }
                Err(e) if interrupted(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Advance the handshake: write what rustls has for the client, read what the client
    /// sent, and hand any new records to the pool.
    fn handshake(
        &mut self,
        io: &mut Readiness,
        back: Option<&Handshakes>,
        who: (usize, u32),
    ) -> io::Result<Shake> {
        if self.tls.is_none() {
            return Ok(Shake::Wait); // on the pool
        }
        match self.flush_tls() {
            Ok(()) => {}
            Err(e) if would_block(&e) => {
                io.writable = false;
                return Ok(Shake::Wait);
            }
            Err(e) => return Err(e),
        }
        if !self.conn()?.is_handshaking() {
            self.handshaking = false;
            let tls = self.conn()?;
            match tls.handshake_kind() {
                Some(rustls::HandshakeKind::Resumed) => &TLS.resumed,
                _ => &TLS.full,
            }
            .fetch_add(1, Ordering::Relaxed);
            match tls.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => &TLS.tls13,
                _ => &TLS.tls12,
            }
            .fetch_add(1, Ordering::Relaxed);
            // Application data may have come with the client's Finished: look.
            io.readable = true;
            return Ok(Shake::Ready);
        }
        if !io.readable {
            return Ok(Shake::Wait);
        }
        let got = match self.read_records() {
            Ok(n) => n,
            Err(e) if would_block(&e) => {
                io.readable = false;
                0
            }
            Err(e) => return Err(e),
        };
        if self.eof {
            fail(Failure::Eof);
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        io.readable = std::mem::take(&mut self.capped);
        if got == 0 {
            return Ok(Shake::Wait);
        }
        let Some(back) = back else {
            return Err(io::Error::other("no pool for TLS handshakes"));
        };
        let Some(mut tls) = self.tls.take() else {
            return Ok(Shake::Wait);
        };
        let tx = back.tx.clone();
        let waker = back.waker.clone();
        let (slot, generation) = who;
        // Counted until the step is done: TLS accepts pause while the pool holds
        // `max_pending_handshakes` of them (a client idling mid-handshake holds no slot).
        TLS.in_flight.fetch_add(1, Ordering::Relaxed);
        back.offload.spawn_handshake(move || {
            let start = Instant::now();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                tls.process_new_packets().map(|_| ())
            }));
            TLS.offloaded_steps.fetch_add(1, Ordering::Relaxed);
            TLS.step_time.observe(start.elapsed());
            TLS.in_flight.fetch_sub(1, Ordering::Relaxed);
            let done = match r {
                Ok(result) => HandshakeDone {
                    slot,
                    generation,
                    tls: Some(tls),
                    result,
                },
                Err(_) => HandshakeDone {
                    slot,
                    generation,
                    tls: None,
                    result: Ok(()),
                },
            };
            if tx.send(done).is_ok() {
                let _ = waker.wake();
            }
        });
        Ok(Shake::Wait)
    }
}

/// The first bytes on a TLS port were no TLS record: a plain HTTP request gets a plain
/// 400 (best effort, one write), anything else just the close.
fn not_tls(sock: &mut impl Transport, first: Option<u8>) -> io::Error {
    if first.is_some_and(|b| b.is_ascii_uppercase()) {
        fail(Failure::PlainHttp);
        let _ = sock.write(PLAIN_HTTP_400);
        let _ = sock.shutdown_write();
        io::Error::other("plain HTTP sent to an HTTPS port")
    } else {
        fail(Failure::NotTls);
        io::Error::other("not a TLS record")
    }
}

/// The socket as rustls reads it, noting the first byte of the first read and whether a
/// read came back short.
struct Tap<'a, T> {
    sock: &'a mut T,
    first: Option<u8>,
    short: bool,
}

impl<T: Read> Read for Tap<'_, T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.sock.read(buf)?;
        if let (Some(f), true) = (self.first.as_mut(), n > 0) {
            *f = buf[0];
        }
        self.short = n > 0 && n < buf.len();
        Ok(n)
    }
}

impl<T: Transport> Read for Stream<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let t = match self {
            Stream::Plain(s) => return s.read(buf),
            Stream::Tls(t) => t,
        };
        if t.handshaking {
            // Never process handshake records here: that is the pool's work.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        loop {
            let tls = t.conn()?;
            match tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if would_block(&e) => {}
                // FIN without close_notify: an end all the same (HTTP frames itself).
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if t.eof {
                return Ok(0);
            }
            if std::mem::take(&mut t.drained) {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            t.read_records()?;
            let state = t.conn()?.process_new_packets();
            // Alerts or a KeyUpdate answer rustls queued; the next flush sends any rest.
            let flushed = t.flush_tls();
            if let Err(e) = state {
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            match flushed {
                Ok(()) => {}
                Err(e) if would_block(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl<T: Transport> Write for Stream<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let t = match self {
            Stream::Plain(s) => return s.write_vectored(bufs),
            Stream::Tls(t) => t,
        };
        // Take more plaintext only once the previous records left: rustls' output stays
        // within one chunk per connection.
        t.flush_tls()?;
        let mut taken = 0;
        let mut w = t.conn()?.writer();
        for b in bufs {
            let room = CHUNK - taken;
            if room == 0 {
                break;
            }
            let n = w.write(&b[..b.len().min(room)])?;
            taken += n;
            if n < b.len().min(room) {
                break;
            }
        }
        if taken == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        match t.flush_tls() {
            Ok(()) => Ok(taken),
            Err(e) if would_block(&e) => Ok(taken),
            Err(e) => Err(e),
        }
    }

    /// Push out rustls' pending records (TCP: nothing is buffered).
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(_) => Ok(()),
            Stream::Tls(t) => t.flush_tls(),
        }
    }
}

thread_local! {
    /// The reactor thread's buffer for file bytes on their way into rustls.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl<T: Transport> Transport for Stream<T> {
    fn send_file(&mut self, file: &File, pos: &mut u64, len: usize) -> io::Result<usize> {
        let t = match self {
            Stream::Plain(s) => return s.send_file(file, pos, len),
            Stream::Tls(t) => t,
        };
        t.flush_tls()?;
        let want = len.min(CHUNK);
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < CHUNK {
                s.resize(CHUNK, 0);
            }
            let n = rustix::io::pread(file, &mut s[..want], *pos)?;
            if n == 0 {
                return Ok(0);
            }
            let mut w = t.conn()?.writer();
            w.write_all(&s[..n])?;
            *pos += n as u64;
            match t.flush_tls() {
                Ok(()) => Ok(n),
                Err(e) if would_block(&e) => Ok(n),
                Err(e) => Err(e),
            }
        })
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.close_notify();
        self.sock().shutdown_write()
    }

    fn set_nodelay(&mut self) -> io::Result<()> {
        self.sock().set_nodelay()
    }

    fn set_cork(&mut self, on: bool) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.set_cork(on),
            // rustls' records already leave in large writes.
            Stream::Tls(_) => Ok(()),
        }
    }

    fn read_pass(&mut self, on: bool) {
        match self {
            Stream::Plain(s) => s.read_pass(on),
            Stream::Tls(t) => {
                t.in_pass = on;
                t.drained = false;
            }
        }
    }

    fn short_read_drains(&self) -> bool {
        // Plaintext comes out of rustls a record at a time: a short read says nothing
        // about what is left on the socket.
        match self {
            Stream::Plain(s) => s.short_read_drains(),
            Stream::Tls(_) => false,
        }
    }

    fn handshake(
        &mut self,
        io: &mut Readiness,
        back: Option<&Handshakes>,
        who: (usize, u32),
    ) -> io::Result<Shake> {
        match self {
            Stream::Plain(_) => Ok(Shake::Ready),
            Stream::Tls(t) if !t.handshaking => Ok(Shake::Ready),
            Stream::Tls(t) => t.handshake(io, back, who),
        }
    }

    fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    fn alpn_h2(&self) -> bool {
        match self {
            Stream::Plain(_) => false,
            Stream::Tls(t) => t
                .tls
                .as_ref()
                .is_some_and(|c| c.alpn_protocol() == Some(&b"h2"[..])),
        }
    }

    fn send_handle(&self) -> Option<std::os::fd::OwnedFd> {
        // TLS records are made here: no other thread may write to the socket.
        match self {
            Stream::Plain(s) => s.send_handle(),
            Stream::Tls(_) => None,
        }
    }

    fn splice_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        match self {
            Stream::Plain(s) => s.splice_fd(),
            Stream::Tls(_) => None,
        }
    }

    fn short_write_fills(&self) -> bool {
        match self {
            Stream::Plain(s) => s.short_write_fills(),
            Stream::Tls(_) => false,
        }
    }

    fn close_notify(&mut self) {
        if let Stream::Tls(t) = self {
            if t.handshaking || t.notified {
                return;
            }
            t.notified = true;
            if let Some(tls) = t.tls.as_deref_mut() {
                tls.send_close_notify();
            }
            let _ = t.flush_tls();
        }
    }
}

impl Source for Stream<TcpStream> {
    fn register(&mut self, r: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        self.sock().register(r, token, interests)
    }

    fn reregister(&mut self, r: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        self.sock().reregister(r, token, interests)
    }

    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        self.sock().deregister(r)
    }
}

/// Does the kernel offer kTLS (`TCP_ULP "tls"`)? With it, a connection could hand its
/// session keys to the kernel after the handshake and use sendfile again; vireo does not
/// (yet): it only says at start whether that path would be open here.
pub fn ktls_available() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_ulp")
        .is_ok_and(|s| s.split_whitespace().any(|u| u == "tls"))
}
