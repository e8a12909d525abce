//! One client connection: its socket, its buffers, and where it is in the request cycle.
//!
//! ```text
//!            accept
//!              |
//!              v
//!   +-----> Reading ---- head parsed ----> body? --yes--> read and validate it in place
//!   |          |  ^                          |            (Body timer; bad -> 400/413)
//!   |    partial| |more bytes                 no               |
//!   |          v  |                          v                 v
//!   |      (Header timer)            respond (head into `out`, body as `Tail`)
//!   |                                        |
//!   |                                        v
//!   |                           Writing (writev out [+ bytes], sendfile tail)
//!   |                                        |  WouldBlock -> Send timer, resume on
//!   |                                        |  writable; budget spent -> next tick
//!   +-- pipelined bytes buffered <-----------+
//!              | none
//!              v
//!        Idle (KeepAlive timer, buffers returned) --- close/timeout/drain --> Closed
//!   error or `Connection: close` -> flush -> [Lingering: read and drop until FIN] -> Closed
//! ```
//!
//! Readiness is cached (`readable`, `writable`): the socket is registered once, edge
//! triggered, and a flag is cleared only when a syscall says WouldBlock (or a read comes
//! back short, which edge triggering lets us trust). The connection never touches the Poll,
//! the slab or the timers: `drive` returns a `Next` and the reactor applies it.

use crate::http::h1::{self, Framing};
use crate::http::request::{self, BodyFraming, ChunkedDecoder, Limits};
use crate::http::response::{Body, Reply};
use crate::http::HttpError;
use crate::net::timer::Class;
use crate::offload::{JobError, Notifier};
use crate::ops::accesslog::{AccessLog, Entry};
use crate::ops::metrics::ReactorStats;
use crate::site::route::Answer;
use crate::site::{Site, Started, Waiting};
use mio::net::TcpStream;
use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::time::Instant;

/// The byte stream under a connection: a TCP socket in the server, an in-memory stream in
/// the connection fuzzer and its tests (`harness`).
pub trait Transport: Read + Write {
    /// Copy up to `len` bytes of `file` from `*pos` into the stream, advancing `*pos`.
    fn send_file(&mut self, file: &File, pos: &mut u64, len: usize) -> io::Result<usize>;
    /// Half-close: no more bytes from us (lingering close).
    fn shutdown_write(&mut self) -> io::Result<()>;
    /// Turn Nagle off (TCP_NODELAY).
    fn set_nodelay(&mut self) -> io::Result<()>;
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
}

/// Bytes a connection may send in one turn before yielding to its neighbours (nginx's
/// sendfile_max_chunk idea): a fast client pulling a 10 GB file cannot starve the loop.
pub const TURN_BUDGET: u64 = 2 << 20;
/// Stop batching pipelined responses once this much is queued in `out`.
const OUT_HIGH_WATER: usize = 64 << 10;
/// Free space kept after a buffered head while its body is read.
const BODY_ROOM: usize = 4096;
/// Most bytes read and dropped while lingering before we give up and close.
const LINGER_MAX: usize = 1 << 20;

/// What the reactor should do with the connection after a `drive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Wait for readiness; the countdown of `Class` started at the given instant.
    Wait(Class, Instant),
    /// Work is left but the turn's budget is spent: drive again on the next tick.
    Yield,
    Close,
}

/// Reusable buffers of one reactor, so idle connections hold none.
#[derive(Default)]
pub struct BufPool {
    free: Vec<Vec<u8>>,
}

impl BufPool {
    const KEEP: usize = 256;

    fn take(&mut self, len: usize) -> Vec<u8> {
        match self.free.pop() {
            Some(mut b) => {
                b.resize(len, 0);
                b
            }
            None => vec![0; len],
        }
    }

    fn give(&mut self, b: Vec<u8>) {
        if b.capacity() > 0 && self.free.len() < Self::KEEP {
            self.free.push(b);
        }
    }
}

/// What the connection borrows from its reactor for one `drive`, besides the `Site`: I/O
/// only (clock, buffers, budget, where completions arrive, log and counters).
pub struct Cx<'a> {
    pub date: &'a [u8],
    pub now: Instant,
    pub buffers: &'a mut BufPool,
    pub output: &'a mut BufPool,
    /// Graceful shutdown in progress: answer with `Connection: close`.
    pub draining: bool,
    /// Bytes one connection may send per turn (`TURN_BUDGET`; smaller in the harness).
    pub turn_budget: u64,
    /// Where this reactor's completions arrive, and who this connection is there.
    pub notifier: &'a Notifier,
    pub slot: usize,
    pub generation: u32,
    pub log: Option<&'a mut AccessLog>,
    pub stats: &'a ReactorStats,
}

/// A body that follows the bytes in `out`.
enum Tail {
    None,
    File {
        file: Arc<File>,
        pos: u64,
        end: u64,
    },
    /// A body in memory shared with the compression cache, written with the head in one
    /// writev.
    Shared {
        data: Arc<[u8]>,
        pos: usize,
    },
    /// multipart/byteranges (boxed: rare, and it would double every connection's size).
    Parts(Box<Parts>),
}

/// Segments sent in order; `mem` ranges index `mem`, file ranges are sent with sendfile.
struct Parts {
    file: Arc<File>,
    mem: Vec<u8>,
    segs: Vec<Seg>,
    idx: usize,
}

enum Seg {
    Mem(usize, usize),
    File(u64, u64),
}

/// The body of the request at `rbuf[rpos..]` being read (and dropped) before it is answered:
/// a response must not go out for a request whose body may still turn out malformed. The
/// head stays in `rbuf` and is parsed again when the body is complete.
enum RequestBody {
    None,
    Length(u64),
    Chunked(ChunkedDecoder),
}

pub struct Conn<S = TcpStream> {
    stream: S,
    peer: std::net::SocketAddr,
    /// Accepted on the metrics listener: only `/metrics` is served.
    metrics: bool,
    /// Read buffer: valid bytes are `rbuf[rpos..rend]`; empty Vec while idle.
    rbuf: Vec<u8>,
    rpos: usize,
    rend: usize,
    /// Response bytes to send (heads and small bodies); `out[opos..]` is pending.
    out: Vec<u8>,
    opos: usize,
    tail: Tail,
    /// The body of the request at `rbuf[rpos..]`, when it is still being read.
    body: RequestBody,
    /// Waiting for an offload job: no further request is answered until it completes.
    parked: Option<Box<Parked>>,
    pub readable: bool,
    pub writable: bool,
    /// epoll said the peer hung up (RDHUP): a short read no longer proves the socket is
    /// drained, the FIN may be queued behind the data, so read on until EOF or WouldBlock.
    pub read_closed: bool,
    /// The peer sent FIN: answer what is buffered, then close.
    eof: bool,
    /// Close once everything queued is sent.
    close_after: bool,
    /// The close follows an error or leaves unread input: linger so our response is not
    /// destroyed by an RST.
    linger_needed: bool,
    lingering: bool,
    /// TCP_NODELAY is set: done once, when the first response keeps the connection open.
    nodelay: bool,
    lingered: usize,
    requests: u64,
    /// Start of the current wait: accept, first byte of a request, last progress.
    accepted: Instant,
    request_since: Option<Instant>,
    idle_since: Instant,
    progress_since: Instant,
}

struct Parked {
    waiting: Waiting,
    framing: Framing,
    since: Instant,
    /// The request line and headers the access log needs, copied only when logging.
    log: Option<Box<LoggedRequest>>,
}

struct LoggedRequest {
    method: Vec<u8>,
    target: Vec<u8>,
    protocol: &'static [u8],
    referer: Option<Vec<u8>>,
    user_agent: Option<Vec<u8>>,
    started: Instant,
}

#[derive(PartialEq, Eq)]
enum Flush {
    Done,
    Blocked,
    Budget,
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

fn interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}

impl<S: Transport> Conn<S> {
    pub fn new(stream: S, peer: std::net::SocketAddr, metrics: bool, now: Instant) -> Conn<S> {
        Conn {
            stream,
            peer,
            metrics,
            rbuf: Vec::new(),
            rpos: 0,
            rend: 0,
            out: Vec::new(),
            opos: 0,
            tail: Tail::None,
            body: RequestBody::None,
            parked: None,
            readable: false,
            writable: true,
            read_closed: false,
            eof: false,
            close_after: false,
            linger_needed: false,
            lingering: false,
            nodelay: false,
            lingered: 0,
            requests: 0,
            accepted: now,
            request_since: None,
            idle_since: now,
            progress_since: now,
        }
    }

    /// The peer and the first line of the request being handled (up to 200 bytes; empty
    /// between requests): what the reactor logs when handling this connection panicked.
    pub fn context(&self) -> (std::net::SocketAddr, &[u8]) {
        let pending = self.rbuf.get(self.rpos..self.rend).unwrap_or_default();
        let line = pending.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        (self.peer, &line[..line.len().min(200)])
    }

    pub fn is_metrics(&self) -> bool {
        self.metrics
    }

    /// Waiting for an offload job's completion.
    pub fn is_parked(&self) -> bool {
        self.parked.is_some()
    }

    pub fn stream(&mut self) -> &mut S {
        &mut self.stream
    }

    /// An offload job (compression or listing) finished for this connection: write the
    /// head and the body.
    pub fn resume(
        &mut self,
        result: Result<Arc<[u8]>, JobError>,
        site: &mut Site,
        cx: &mut Cx,
    ) -> Next {
        let Some(p) = self.parked.take() else {
            return self.drive(site, cx);
        };
        let reply = p.waiting.finish(result);
        let sent = self.send_reply(reply, p.framing, cx);
        self.log_deferred(p.log.as_deref(), sent.0, sent.1, cx);
        self.drive(site, cx)
    }

    /// Count and log a response whose status was known only once its job ran.
    fn log_deferred(&self, r: Option<&LoggedRequest>, status: u16, bytes: u64, cx: &mut Cx) {
        cx.stats.response(status, bytes);
        if let (Some(log), Some(r)) = (cx.log.as_deref_mut(), r) {
            log.log(
                &Entry {
                    peer: self.peer,
                    request: Some((&r.method, &r.target, r.protocol)),
                    status,
                    bytes,
                    referer: r.referer.as_deref(),
                    user_agent: r.user_agent.as_deref(),
                    started: r.started,
                },
                Instant::now(),
            );
        }
    }

    /// The reactor is closing the connection (peer gone, timeout, shutdown). A request
    /// still waiting for its offload job is counted and logged as 499 with no bytes,
    /// like nginx's "client closed request", so it does not vanish from the log.
    pub fn on_close(&mut self, cx: &mut Cx) {
        if let Some(p) = self.parked.take() {
            self.log_deferred(p.log.as_deref(), 499, 0, cx);
        }
    }

    /// Advance as far as the socket allows.
    pub fn drive(&mut self, site: &mut Site, cx: &mut Cx) -> Next {
        if self.lingering {
            return self.linger(cx);
        }
        if let Some(p) = &self.parked {
            // The job always completes; the send timeout bounds a stuck one. Meanwhile
            // read ahead, which notices a client that reset the connection (logged as 499
            // by `on_close`); a FIN still gets the answer, as a half-close may want it.
            let since = p.since;
            if self.readable && !self.eof && self.fill(site, cx).is_err() {
                return Next::Close;
            }
            return Next::Wait(Class::Send, since);
        }
        let mut budget = cx.turn_budget;
        loop {
            // A response still going out holds back the pipelined requests behind it; once
            // it is flushed they must be answered even if no new byte arrives.
            let backlogged =
                !matches!(self.tail, Tail::None) || self.out.len() - self.opos >= OUT_HIGH_WATER;
            let answered = self.process(site, cx);
            let before = budget;
            let flushed = self.flush(&mut budget);
            if budget < before {
                // Any byte written restarts the send countdown: slow is fine, stuck is not.
                self.progress_since = cx.now;
            }
            match flushed {
                Ok(Flush::Done) => {}
                Ok(Flush::Blocked) => return Next::Wait(Class::Send, self.progress_since),
                Ok(Flush::Budget) => return Next::Yield,
                Err(_) => return Next::Close,
            }
            self.progress_since = cx.now;
            if let Some(p) = &self.parked {
                // A response is still being compressed: it goes out before any close.
                return Next::Wait(Class::Send, p.since);
            }
            if self.close_after {
                return self.begin_close(cx);
            }
            if answered || (backlogged && self.rpos < self.rend) {
                // The output went out; more pipelined requests may be buffered.
                self.idle_since = cx.now;
                continue;
            }
            if self.rpos == self.rend {
                self.release_rbuf(cx);
                if self.eof {
                    return Next::Close;
                }
            }
            if self.eof {
                // Half a request and no more coming.
                return Next::Close;
            }
            if !self.readable {
                return self.wait_input(cx);
            }
            match self.fill(site, cx) {
                Ok(true) => {}
                Ok(false) => return self.wait_input(cx),
                Err(_) => return Next::Close,
            }
        }
    }

    /// The reactor's timer for `class` fired.
    pub fn timeout(&mut self, class: Class, site: &mut Site, cx: &mut Cx) -> Next {
        match class {
            Class::Header if self.rpos < self.rend && self.opos >= self.out.len() => {
                // Some of a request arrived but not its head: tell the client why.
                self.queue_error(408, cx);
                self.drive(site, cx)
            }
            Class::Body
                if !matches!(self.body, RequestBody::None) && self.opos >= self.out.len() =>
            {
                // The body stopped coming: its request has no answer yet (nginx: 408).
                self.body = RequestBody::None;
                self.queue_error(408, cx);
                self.drive(site, cx)
            }
            _ => Next::Close,
        }
    }

    fn wait_input(&mut self, cx: &mut Cx) -> Next {
        if !matches!(self.body, RequestBody::None) {
            Next::Wait(Class::Body, self.progress_since)
        } else if self.rpos < self.rend || self.requests == 0 {
            let since = if self.requests == 0 {
                self.accepted
            } else {
                *self.request_since.get_or_insert(cx.now)
            };
            Next::Wait(Class::Header, since)
        } else {
            Next::Wait(Class::KeepAlive, self.idle_since)
        }
    }

    /// Answer every complete request already buffered, appending to `out` (pipelined heads
    /// share one write). A request with a body is answered once the body is read and valid.
    /// Stops at a response that must be streamed, at the high-water mark, or when more
    /// input is needed. Returns whether anything was answered.
    fn process(&mut self, site: &mut Site, cx: &mut Cx) -> bool {
        let l = &site.config().limits;
        let limits = Limits {
            max_request_line: l.max_request_line,
            max_header_bytes: l.max_header_bytes,
            max_body_bytes: l.max_body_bytes,
        };
        let mut answered = false;
        loop {
            if self.close_after
                || self.parked.is_some()
                || !matches!(self.tail, Tail::None)
                || self.out.len() - self.opos >= OUT_HIGH_WATER
            {
                return answered;
            }
            if self.rpos == self.rend {
                return answered;
            }
            let buf = &self.rbuf[self.rpos..self.rend];
            let head = match request::parse(buf, &limits) {
                Ok(Some(h)) => h,
                Ok(None) => {
                    if self.requests > 0 {
                        self.request_since.get_or_insert(cx.now);
                    }
                    return answered;
                }
                Err(e) => {
                    log::debug!("bad request: {} ({})", e.status, e.why);
                    self.queue_error(e.status, cx);
                    return true;
                }
            };
            #[cfg(feature = "fault-injection")]
            crate::fault::on_request(&buf[..head.head_len]);
            if self.out.capacity() == 0 {
                self.out = cx.output.take(0);
            }
            if matches!(self.body, RequestBody::None) {
                // First sight of this head (a head waiting for its body is parsed again
                // on every read, with the same result).
                if head.expect_continue && head.framing != BodyFraming::None {
                    h1::write_continue(&mut self.out);
                }
                if self.requests > 0 {
                    // The request's time includes waiting for its body.
                    self.request_since.get_or_insert(cx.now);
                }
                self.body = match head.framing {
                    BodyFraming::None | BodyFraming::Length(0) => RequestBody::None,
                    BodyFraming::Length(n) => RequestBody::Length(n),
                    BodyFraming::Chunked => RequestBody::Chunked(ChunkedDecoder::new()),
                };
            }
            match self.read_body(head.head_len, &limits) {
                Ok(true) => {}
                Ok(false) => return answered,
                Err(e) => {
                    // Nothing after a broken body can be framed: answer the error, close.
                    log::debug!("bad request body: {} ({})", e.status, e.why);
                    self.body = RequestBody::None;
                    self.queue_error(e.status, cx);
                    return true;
                }
            }
            // The body is gone from the buffer: the next request follows the head.
            let buf = &self.rbuf[self.rpos..self.rend];
            let Answer { reply, job } = site.respond(&head, buf, cx.now, cx.date, self.metrics);
            let framing = Framing {
                keep_alive: head.keep_alive && !cx.draining,
                http10: head.version == crate::http::Version::Http10,
                head_only: head.method == crate::http::Method::Head,
            };
            // A compressed body or a listing is waited for on the pool (unless the pool
            // refuses it, then the fallback is answered now).
            let parked = match job {
                None => Err(reply),
                Some(job) => match site.start(job, reply, cx.notifier, cx.slot, cx.generation) {
                    Started::Parked(w) => Ok(w),
                    Started::Now(reply) => Err(reply),
                },
            };
            let started = match (self.requests, self.request_since) {
                (0, _) => self.accepted,
                (_, Some(t)) => t,
                _ => cx.now,
            };
            let protocol: &'static [u8] = match head.version {
                crate::http::Version::Http10 => b"HTTP/1.0",
                crate::http::Version::Http11 => b"HTTP/1.1",
            };
            let keep_alive = match parked {
                Err(reply) => {
                    let (status, bytes, keep_alive) = self.send_reply(reply, framing, cx);
                    let buf = &self.rbuf[self.rpos..self.rend];
                    // Scrapes of the metrics endpoint are not traffic: neither counted nor
                    // logged.
                    if !self.metrics {
                        cx.stats.response(status, bytes);
                        if let Some(log) = cx.log.as_deref_mut() {
                            log.log(
                                &Entry {
                                    peer: self.peer,
                                    request: Some((
                                        head.method_span.get(buf),
                                        head.target.get(buf),
                                        protocol,
                                    )),
                                    status,
                                    bytes,
                                    referer: head.referer.map(|s| s.get(buf)),
                                    user_agent: head.user_agent.map(|s| s.get(buf)),
                                    started,
                                },
                                cx.now,
                            );
                        }
                    }
                    keep_alive
                }
                Ok(waiting) => {
                    // Logged when the job completes, with its real status and length.
                    let log = cx.log.as_ref().map(|_| {
                        Box::new(LoggedRequest {
                            method: head.method_span.get(buf).to_vec(),
                            target: head.target.get(buf).to_vec(),
                            protocol,
                            referer: head.referer.map(|s| s.get(buf).to_vec()),
                            user_agent: head.user_agent.map(|s| s.get(buf).to_vec()),
                            started,
                        })
                    });
                    self.parked = Some(Box::new(Parked {
                        waiting,
                        framing,
                        since: cx.now,
                        log,
                    }));
                    framing.keep_alive
                }
            };
            self.requests += 1;
            self.request_since = None;
            self.rpos += head.head_len;
            if keep_alive && !self.nodelay {
                // Like nginx's tcp_nodelay, only for connections that stay open: a response
                // followed by close is pushed out by the close itself, so the syscall is
                // saved on every short-lived connection. Pipelined responses and a file's
                // last partial segment must not wait for the client's delayed ACK.
                self.nodelay = true;
                if let Err(e) = self.stream.set_nodelay() {
                    log::debug!("TCP_NODELAY: {e}");
                }
            }
            if !keep_alive && !self.close_after {
                self.close_after = true;
                // Unread pipelined bytes would turn our close into an RST.
                self.linger_needed = self.rpos < self.rend;
            }
            answered = true;
        }
    }

    /// Encode `reply` into `out` and queue its body. Returns the status, the body bytes
    /// sent and whether the connection stays open. A reply that closes on an error
    /// lingers, so the client reads it before our close.
    fn send_reply(&mut self, reply: Reply, framing: Framing, cx: &mut Cx) -> (u16, u64, bool) {
        if self.out.capacity() == 0 {
            self.out = cx.output.take(0);
        }
        let close = reply.close;
        let sent = h1::encode(reply, framing, cx.date, &mut self.out);
        if close {
            self.close_after = true;
            self.linger_needed = true;
        }
        match sent.body {
            Body::Empty | Body::Static(_) | Body::Pending => {}
            Body::Shared(data) => self.tail = Tail::Shared { data, pos: 0 },
            Body::File { file, start, end } => {
                self.tail = Tail::File {
                    file,
                    pos: start,
                    end,
                }
            }
            Body::Multipart {
                file,
                heads,
                parts,
                trailer,
            } => {
                let mut segs = Vec::with_capacity(parts.len() * 2 + 1);
                for (h, r) in parts {
                    segs.push(Seg::Mem(h.start, h.end));
                    segs.push(Seg::File(r.start, r.end + 1));
                }
                segs.push(Seg::Mem(trailer.start, trailer.end));
                self.tail = Tail::Parts(Box::new(Parts {
                    file,
                    mem: heads,
                    segs,
                    idx: 0,
                }));
            }
        }
        (sent.status, sent.bytes, sent.keep_alive)
    }

    /// A complete error response, then close: the framing of anything after it is in doubt.
    fn queue_error(&mut self, status: u16, cx: &mut Cx) {
        let framing = Framing {
            keep_alive: false,
            http10: false,
            head_only: false,
        };
        let reply = Reply {
            close: true,
            ..Reply::error(status)
        };
        let (status, bytes, _) = self.send_reply(reply, framing, cx);
        cx.stats.response(status, bytes);
        if let Some(log) = cx.log.as_deref_mut() {
            let started = self.request_since.unwrap_or(self.accepted);
            log.log(
                &Entry {
                    peer: self.peer,
                    request: None,
                    status,
                    bytes,
                    referer: None,
                    user_agent: None,
                    started,
                },
                cx.now,
            );
        }
    }

    /// Consume the buffered bytes of the pending request body, which follow its head at
    /// `rbuf[rpos + head_len..]`, in place (later bytes move down, the head stays). Returns
    /// whether the body is complete.
    fn read_body(&mut self, head_len: usize, limits: &Limits) -> Result<bool, HttpError> {
        let start = self.rpos + head_len;
        let avail = &self.rbuf[start..self.rend];
        let (n, done) = match &mut self.body {
            RequestBody::None => return Ok(true),
            RequestBody::Length(left) => {
                let n = (*left).min(avail.len() as u64);
                *left -= n;
                (n as usize, *left == 0)
            }
            RequestBody::Chunked(dec) => dec.feed(avail, limits)?,
        };
        self.rbuf.copy_within(start + n..self.rend, start);
        self.rend -= n;
        if done {
            self.body = RequestBody::None;
        }
        Ok(done)
    }

    /// Read until WouldBlock, a short read, EOF or a full buffer. Returns whether any
    /// input arrived (or EOF was seen), i.e. whether processing can continue.
    fn fill(&mut self, site: &Site, cx: &mut Cx) -> io::Result<bool> {
        let cap = site.config().limits.max_header_bytes + 1;
        if self.rbuf.is_empty() {
            self.rbuf = cx.buffers.take(cap.max(4096));
        }
        if self.rpos == self.rend {
            self.rpos = 0;
            self.rend = 0;
        } else if self.rpos > 0 && self.rend == self.rbuf.len() {
            // Roll the unparsed tail to the front (LineBuffer::roll).
            self.rbuf.copy_within(self.rpos..self.rend, 0);
            self.rend -= self.rpos;
            self.rpos = 0;
        }
        if !matches!(self.body, RequestBody::None) && self.rbuf.len() - self.rend < BODY_ROOM {
            // A head near the size limit leaves the body almost no room: read it in
            // blocks, not a few bytes per syscall.
            self.rbuf.resize(self.rend + BODY_ROOM, 0);
        }
        let mut got = false;
        while self.rend < self.rbuf.len() {
            let want = self.rbuf.len() - self.rend;
            match self.stream.read(&mut self.rbuf[self.rend..]) {
                Ok(0) => {
                    self.eof = true;
                    self.readable = false;
                    return Ok(true);
                }
                Ok(n) => {
                    self.rend += n;
                    got = true;
                    if n < want && !self.read_closed {
                        // Edge triggered: a short read means the socket is drained.
                        self.readable = false;
                        break;
                    }
                }
                Err(e) if would_block(&e) => {
                    self.readable = false;
                    break;
                }
                Err(e) if interrupted(&e) => {}
                Err(e) => return Err(e),
            }
        }
        if got {
            self.progress_since = cx.now;
        }
        Ok(got)
    }

    fn release_rbuf(&mut self, cx: &mut Cx) {
        if self.rpos == self.rend && !self.rbuf.is_empty() {
            cx.buffers.give(std::mem::take(&mut self.rbuf));
            self.rpos = 0;
            self.rend = 0;
        }
        if self.opos >= self.out.len() && matches!(self.tail, Tail::None) {
            self.opos = 0;
            self.out.clear();
            if self.out.capacity() > 0 {
                cx.output.give(std::mem::take(&mut self.out));
            }
        }
    }

    /// Send `out`, then the tail, until done, WouldBlock or the budget is spent.
    fn flush(&mut self, budget: &mut u64) -> io::Result<Flush> {
        loop {
            let pending = self.out.len() - self.opos;
            // Heads and an in-memory body leave together in one writev.
            let shared: &[u8] = match &self.tail {
                Tail::Shared { data, pos } => &data[*pos..],
                _ => &[],
            };
            if pending > 0 || !shared.is_empty() {
                if !self.writable {
                    return Ok(Flush::Blocked);
                }
                let bufs = [IoSlice::new(&self.out[self.opos..]), IoSlice::new(shared)];
                let n = match self.stream.write_vectored(&bufs) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => n,
                    Err(e) if would_block(&e) => {
                        self.writable = false;
                        return Ok(Flush::Blocked);
                    }
                    Err(e) if interrupted(&e) => continue,
                    Err(e) => return Err(e),
                };
                let from_out = n.min(pending);
                self.opos += from_out;
                if let Tail::Shared { pos, .. } = &mut self.tail {
                    *pos += n - from_out;
                }
                *budget = budget.saturating_sub(n as u64);
                if *budget == 0 {
                    return Ok(Flush::Budget);
                }
                continue;
            }
            if matches!(self.tail, Tail::Shared { .. }) {
                self.tail = Tail::None;
            }
            self.out.clear();
            self.opos = 0;
            if *budget == 0 {
                return Ok(Flush::Budget);
            }
            let done = match &mut self.tail {
                Tail::None => return Ok(Flush::Done),
                // Sent with the head above; nothing left of it here.
                Tail::Shared { .. } => true,
                Tail::File { file, pos, end } => {
                    if !self.writable {
                        return Ok(Flush::Blocked);
                    }
                    match send_file(&mut self.stream, file, pos, *end, budget) {
                        Ok(true) => true,
                        Ok(false) => continue,
                        Err(e) if would_block(&e) => {
                            self.writable = false;
                            return Ok(Flush::Blocked);
                        }
                        Err(e) if interrupted(&e) => continue,
                        Err(e) => return Err(e),
                    }
                }
                Tail::Parts(p) => {
                    let Parts {
                        file,
                        mem,
                        segs,
                        idx,
                    } = &mut **p;
                    if *idx >= segs.len() {
                        true
                    } else {
                        if !self.writable {
                            return Ok(Flush::Blocked);
                        }
                        let r = match &mut segs[*idx] {
                            Seg::Mem(s, e) => match self.stream.write(&mem[*s..*e]) {
                                Ok(n) => {
                                    *s += n;
                                    *budget = budget.saturating_sub(n as u64);
                                    Ok(s == e)
                                }
                                Err(err) => Err(err),
                            },
                            Seg::File(pos, end) => {
                                send_file(&mut self.stream, file, pos, *end, budget)
                            }
                        };
                        match r {
                            Ok(true) => {
                                *idx += 1;
                                continue;
                            }
                            Ok(false) => continue,
                            Err(e) if would_block(&e) => {
                                self.writable = false;
                                return Ok(Flush::Blocked);
                            }
                            Err(e) if interrupted(&e) => continue,
                            Err(e) => return Err(e),
                        }
                    }
                }
            };
            if done {
                self.tail = Tail::None;
            }
        }
    }

    /// After the last response: close at once, or half-close and read until the client's
    /// FIN when it may still be sending (nginx's lingering close).
    fn begin_close(&mut self, cx: &mut Cx) -> Next {
        if !self.linger_needed || self.eof {
            return Next::Close;
        }
        let _ = self.stream.shutdown_write();
        self.lingering = true;
        self.progress_since = cx.now;
        self.linger(cx)
    }

    fn linger(&mut self, cx: &mut Cx) -> Next {
        let mut sink = [0u8; 4096];
        loop {
            if !self.readable {
                return Next::Wait(Class::Linger, self.progress_since);
            }
            match self.stream.read(&mut sink) {
                Ok(0) => return Next::Close,
                Ok(n) => {
                    self.lingered += n;
                    if self.lingered > LINGER_MAX {
                        return Next::Close;
                    }
                }
                Err(e) if would_block(&e) => self.readable = false,
                Err(e) if interrupted(&e) => {}
                Err(_) => return Next::Close,
            }
            let _ = cx;
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
            Ok(*pos >= end)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_idle_connection_stays_small() {
        // What a keep-alive connection costs in user space while idle (its buffers are
        // returned to the reactor's pool): this struct plus the slab slot around it.
        let size = std::mem::size_of::<super::Conn>();
        println!("Conn is {size} bytes");
        assert!(size <= 320, "Conn grew to {size} bytes");
    }
}
