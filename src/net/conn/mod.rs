//! One client connection: its socket, its buffers, and where it is in the request cycle.
//!
//! ```text
//!            accept
//!              |
//!              v
//!   +-----> Requests ---- head parsed ----> body? --yes--> Body: read and drop it in place
//!   |          |  ^                           |            (Body timer; bad -> 400/413)
//!   |    partial| |more bytes                  no               |
//!   |          v  |                           v                 v
//!   |      (Header timer)        Site::respond -> Reply --- job? --> Parked (Send timer)
//!   |                                         |                        | completion
//!   |                                         v                        v
//!   |                     h1::encode into `out`; send: writev out [+ bytes], sendfile tail
//!   |                                         |  WouldBlock -> Send timer, resume on
//!   |                                         |  writable; budget spent -> next tick
//!   +-- keep-alive, pipelined bytes buffered -+
//!              | none
//!              v
//!        idle (KeepAlive timer, buffers returned) --- close/timeout/drain --> closed
//!   not keep-alive -> Closing -> flush -> [Lingering: read and drop until FIN] -> closed
//! ```
//!
//! Where the connection is lives in one enum, `Phase`; writing overlaps reading (pipelined
//! responses go out while the next head arrives), so it is the send queue (`send::Outbox`),
//! not a phase. Whether the connection stays open after a reply is decided in one place,
//! `after_reply`, from what the encoder announced.
//!
//! Readiness is cached (`Readiness`): the socket is registered once, edge triggered; an
//! event sets bits (`ready`), and a bit is cleared only when a syscall says WouldBlock (or a
//! read comes back short, which edge triggering lets us trust). The connection never
//! touches the Poll, the slab or the timers: `drive` returns a `Next` and the reactor
//! applies it.

use crate::http::h1::{self, Framing};
use crate::http::request::{self, BodyFraming, ChunkedDecoder, Limits};
use crate::http::response::Reply;
use crate::http::HttpError;
use crate::net::account;
use crate::net::recv::Readiness;
use crate::net::send::{interrupted, would_block, Flush};
use crate::net::timer::Class;
use crate::net::timer::Stamp;
use crate::net::tls::{Handshakes, Shake, Stream};
use crate::offload::{JobError, Notifier};
use crate::ops::accesslog::AccessLog;
use crate::ops::metrics::ReactorStats;
use crate::site::auth::Verdict;
use crate::site::hosts::Sites;
use crate::site::route::Answer;
use crate::site::{Started, Waiting};
use std::io;
use std::sync::Arc;
use std::time::Instant;

pub use crate::net::send::{Transport, TURN_BUDGET};

mod busy;
mod proxy;
mod requests;

// HTTP/2 streams build their exchanges the same way (`net::h2::proxy`).
pub(crate) use proxy::begin as begin_proxy;
pub(crate) use requests::proxy_hash;

use busy::{busy, pending, Peer};
pub use busy::{Busy, Spares};

/// File bodies from this size go out corked (TCP_CORK, nginx's `tcp_nopush`) until their
/// last byte. Measured here (loopback, wrk, vireo/nginx-like counts in req/s): a 10 MiB
/// body to one wrk thread on 8 connections 180 -> 280 (nginx 270), 4 MiB 470 -> 710; a
/// 1 MiB body 2.9k -> 3.7k with one wrk thread but 4.4k -> 3.6k with two; a 128 KiB body
/// loses 45% corked (nginx's own 128k rate), so smaller bodies are never corked.
const CORK_MIN: u64 = 1 << 20;

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

/// What the connection borrows from its reactor for one `drive`, besides the `Site`: I/O
/// only (clock, buffers, budget, where completions arrive, log and counters).
pub struct Cx<'a> {
    pub date: &'a [u8],
    pub now: Instant,
    pub spares: &'a mut Spares,
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
    /// Where TLS handshake steps go (None: no TLS listener, or the harness).
    pub handshakes: Option<&'a Handshakes>,
    /// This connection's TLS version and cipher suite, for the access log.
    pub tls: Option<(&'static str, &'static str)>,
    /// The reactor's cold-window jobs (`MAX_COLD_JOBS`).
    pub cold: &'a mut ColdJobs,
    /// The reactor's upstream connections (`[[proxy]]`).
    pub upstreams: &'a mut crate::upstream::pool::Upstreams,
}

/// One reactor's cold-window jobs on the I/O threads: at most `MAX_COLD_JOBS` queued or
/// running; connections past it wait here, and each finished job lets the next one go.
#[derive(Default)]
pub struct ColdJobs {
    pub inflight: usize,
    /// (slot, generation) of connections waiting for a place, oldest first.
    pub waiting: std::collections::VecDeque<(usize, u32)>,
}

/// What became of a cold window (`hand_to_io_thread`).
enum Handed {
    /// On an I/O thread: wait for its completion.
    Started,
    /// The reactor's jobs are at their cap: wait for a place (`ColdJobs::waiting`).
    Queued,
    /// No pool: the page cache is trusted, send on.
    NoPool,
}

/// One readiness event, as the poller reported it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ready {
    pub readable: bool,
    /// Writable, or the write side closed or failed (the next write reports it).
    pub writable: bool,
    /// The peer hung up or the socket has an error (RDHUP, ERR): readable until EOF.
    pub hup: bool,
}

/// Where the connection is in the request cycle.
enum Phase {
    /// Before any HTTP byte: the TLS handshake (a plain stream leaves at once).
    Handshake,
    /// Reading request heads and answering them.
    Requests,
    /// The head at the front of the inbox is parsed and its body is being read and dropped: a
    /// response must not go out for a request whose body may still turn out malformed. The
    /// head stays in the inbox and is parsed again when the body is complete.
    Body(RequestBody),
    /// Waiting for an offload job: no further request is answered until it completes.
    Parked(Box<Parked>),
    /// The last reply is queued: flush it, then close (`linger`: half-close and drain the
    /// input first, so the reply is not destroyed by an RST).
    Closing { linger: bool },
    /// Half-closed: reading and dropping until the client's FIN.
    Lingering { dropped: usize },
    /// The connection speaks HTTP/2 (ALPN `h2`, or the client preface on a cleartext
    /// listener): the reactor hands it to `net::h2` (`into_h2`).
    H2,
    /// The request at the front went to an upstream (`proxy`): its body is relayed up,
    /// its response relayed down; the next pipelined request waits.
    Proxy(Box<proxy::Proxying>),
}

enum RequestBody {
    Length(u64),
    /// Boxed: rare, and inline it would make every connection 40 bytes larger.
    Chunked(Box<ChunkedDecoder>),
}

pub struct Conn<S = Stream> {
    stream: S,
    peer: Peer,
    /// Accepted on the metrics listener: only `/metrics` is served.
    metrics: bool,
    phase: Phase,
    io: Readiness,
    /// Input and output in flight; none while idle.
    busy: Option<Box<Busy>>,
    /// TCP_NODELAY is set: done once, when the first response keeps the connection open.
    nodelay: bool,
    /// TCP_CORK is on while a file body goes out.
    corked: bool,
    requests: u32,
    /// Start of the current wait: accept, first byte of a request, last progress.
    accepted: Stamp,
    request_since: Option<Stamp>,
    idle_since: Stamp,
    progress_since: Stamp,
    /// The password check of the head at the front of the inbox finished: answer it again
    /// with this verdict (its body, if any, is already gone).
    verdict: Option<Box<Verdict>>,
}

struct Parked {
    waiting: Waiting,
    framing: Framing,
    since: Instant,
    /// The request line and headers the access log needs, copied only when logging.
    log: Option<Box<account::Owned>>,
}

impl<S: Transport> Conn<S> {
    pub fn new(stream: S, peer: std::net::SocketAddr, metrics: bool, now: Instant) -> Conn<S> {
        Conn {
            stream,
            peer: Peer::of(peer),
            metrics,
            phase: Phase::Handshake,
            io: Readiness {
                readable: false,
                writable: true,
                read_closed: false,
                eof: false,
            },
            busy: None,
            nodelay: false,
            corked: false,
            requests: 0,
            accepted: Stamp::of(now),
            request_since: None,
            idle_since: Stamp::of(now),
            progress_since: Stamp::of(now),
            verdict: None,
        }
    }

    /// Record a readiness event (edge triggered: the bits stay set until a syscall says
    /// WouldBlock).
    pub fn ready(&mut self, r: Ready) {
        self.io.readable |= r.readable || r.hup;
        self.io.read_closed |= r.hup;
        self.io.writable |= r.writable;
    }

    /// Bytes received and not yet answered.
    fn pending(&self) -> &[u8] {
        pending(&self.busy)
    }

    fn has_pending(&self) -> bool {
        self.busy.as_ref().is_some_and(|b| b.rx.has_pending())
    }

    fn backlogged(&self) -> bool {
        self.busy.as_ref().is_some_and(|b| b.tx.backlogged())
    }

    fn head_sent(&self) -> bool {
        self.busy.as_ref().is_none_or(|b| b.tx.head_sent())
    }

    /// The peer and the first line of the request being handled (up to 200 bytes; empty
    /// between requests): what the reactor logs when handling this connection panicked.
    pub fn context(&self) -> (std::net::SocketAddr, &[u8]) {
        let pending = self.pending();
        let line = pending.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        (self.peer.addr(), &line[..line.len().min(200)])
    }

    pub fn is_metrics(&self) -> bool {
        self.metrics
    }

    /// Waiting for an offload job's completion (a reply's job, or a cold file read).
    pub fn is_parked(&self) -> bool {
        matches!(self.phase, Phase::Parked(_))
            || self.busy.as_ref().is_some_and(|b| b.tx.cold_waiting())
    }

    /// Holds no input or output state, nor buffers (what an idle connection must be).
    pub fn is_bare(&self) -> bool {
        self.busy.is_none()
    }

    /// Still in the TLS handshake.
    pub fn is_handshaking(&self) -> bool {
        matches!(self.phase, Phase::Handshake)
    }

    pub fn stream(&mut self) -> &mut S {
        &mut self.stream
    }

    /// The connection turned out to speak HTTP/2 (`into_h2` next).
    pub fn wants_h2(&self) -> bool {
        matches!(self.phase, Phase::H2)
    }

    /// What an HTTP/2 connection takes over: the stream, the peer, the cached readiness
    /// and the bytes read so far (the client preface, on a cleartext listener).
    pub fn into_h2(self) -> (S, std::net::SocketAddr, Readiness, crate::net::recv::Inbox) {
        let Conn {
            stream,
            peer,
            io,
            busy,
            ..
        } = self;
        let rx = busy
            .map(|mut b| std::mem::take(&mut b.rx))
            .unwrap_or_default();
        (stream, peer.addr(), io, rx)
    }

    /// An offload job (compression or listing) finished for this connection: encode the
    /// reply that waited for it.
    pub fn resume(
        &mut self,
        result: Result<Arc<[u8]>, JobError>,
        started: Instant,
        sent: crate::offload::Sent,
        site: &mut Sites,
        cx: &mut Cx,
    ) -> Next {
        let probe_again = !sent.read_in;
        if let Some(b) = self.busy.as_mut().filter(|_| sent.cold) {
            b.cold = None;
        }
        if self
            .busy
            .as_mut()
            .is_some_and(|b| b.tx.cold_done(sent.bytes, probe_again))
        {
            // The window is in the page cache now, or (some of) it went out: send on.
            cx.stats.cold_read_time.observe(started.elapsed());
            if sent.bytes > 0 {
                self.progress_since = Stamp::of(cx.now);
                cx.stats
                    .cold_sent
                    .fetch_add(sent.bytes, std::sync::atomic::Ordering::Relaxed);
            }
            if sent.failed {
                return Next::Close;
            }
            if sent.socket_full && sent.bytes == 0 {
                // A hand-off for nothing: the connection should have waited for room.
                cx.stats
                    .cold_empty
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            if sent.socket_full && !self.stream.writable_now() {
                // The I/O thread met EAGAIN, so an EPOLLOUT edge is owed; were it already
                // consumed while parked, the socket would be writable now.
                self.io.writable = false;
            }
            return self.drive(site, cx);
        }
        let p = match std::mem::replace(&mut self.phase, Phase::Requests) {
            Phase::Parked(p) => p,
            other => {
                self.phase = other;
                return self.drive(site, cx);
            }
        };
        if let Some(v) = p.waiting.verdict(&result) {
            self.verdict = Some(Box::new(v));
            return self.drive(site, cx);
        }
        let slot = p.waiting.site();
        let reply = p.waiting.finish(result);
        let (status, bytes) = self.send_reply(reply, p.framing, cx);
        account::deferred(cx, self.peer.addr(), slot, p.log.as_deref(), status, bytes);
        self.drive(site, cx)
    }

    /// Hand a cold file window (`send::Cold`) to an I/O thread, which sends it (plain TCP)
    /// or reads it in (TLS): the reactor must not wait on the disk. Returns false when
    /// there is no pool (the page cache is then trusted).
    fn hand_to_io_thread(
        &mut self,
        c: crate::net::send::Cold,
        site: &Sites,
        cx: &mut Cx,
    ) -> Handed {
        let Some(pool) = site.offload() else {
            if let Some(b) = self.busy.as_mut() {
                b.tx.trust_page_cache();
                b.tx.cold_done(0, false);
            }
            return Handed::NoPool;
        };
        let sock = || self.stream.send_handle();
        match crate::net::body::hand_off(c, pool, sock, cx.slot, cx) {
            crate::net::body::Handed::Started(ticket) => {
                if let Some(b) = self.busy.as_mut() {
                    b.cold = Some(ticket);
                }
                Handed::Started
            }
            crate::net::body::Handed::Queued => {
                // Probed again when a place frees up (the window may be resident by then).
                if let Some(b) = self.busy.as_mut() {
                    b.tx.cold_done(0, true);
                }
                Handed::Queued
            }
        }
    }

    /// The reactor is closing the connection (peer gone, timeout, shutdown). A request
    /// still waiting for its offload job is counted and logged as 499 with no bytes,
    /// like nginx's "client closed request", so it does not vanish from the log.
    /// Returns true when an I/O thread still holds a duplicate of the socket: then it
    /// outlives this descriptor (and stays in the epoll set) until the thread is done.
    pub fn on_close(&mut self, cx: &mut Cx) -> bool {
        self.proxy_on_close(cx);
        let shared = self
            .busy
            .as_mut()
            .and_then(|b| b.cold.take())
            .is_some_and(|t| t.cancel());
        if let Phase::Parked(p) =
            std::mem::replace(&mut self.phase, Phase::Closing { linger: false })
        {
            account::deferred(
                cx,
                self.peer.addr(),
                p.waiting.site(),
                p.log.as_deref(),
                499,
                0,
            );
        }
        if shared {
            // The peer sees the end now, not when the I/O thread lets go of its duplicate.
            let _ = self.stream.shutdown_write();
        }
        shared
    }

    /// Advance as far as the socket allows.
    pub fn drive(&mut self, site: &mut Sites, cx: &mut Cx) -> Next {
        if let Phase::Handshake = self.phase {
            let who = (cx.slot, cx.generation);
            match self.stream.handshake(&mut self.io, cx.handshakes, who) {
                Ok(Shake::Ready) if self.stream.alpn_h2() && !self.metrics => {
                    self.phase = Phase::H2;
                    return Next::Yield;
                }
                Ok(Shake::Ready) => self.phase = Phase::Requests,
                // The header countdown started at accept covers the handshake.
                Ok(Shake::Wait) => return Next::Wait(Class::Header, self.accepted.instant()),
                Err(e) => {
                    log::debug!("{}: handshake: {e}", self.peer.addr());
                    return Next::Close;
                }
            }
        }
        match &self.phase {
            Phase::H2 => return Next::Yield,
            Phase::Proxy(_) => return self.drive_proxy(site, cx),
            Phase::Lingering { .. } => return self.linger(),
            Phase::Parked(p) => {
                // The job always completes; the send timeout bounds a stuck one. Meanwhile
                // read ahead, which notices a client that reset the connection (logged as
                // 499 by `on_close`); a FIN still gets the answer, as a half-close may want it.
                let since = p.since;
                if self.io.readable && !self.io.eof && self.fill(site, cx).is_err() {
                    return Next::Close;
                }
                return Next::Wait(Class::Send, since);
            }
            _ => {}
        }
        let mut budget = cx.turn_budget;
        loop {
            // A response still going out holds back the pipelined requests behind it; once
            // it is flushed they must be answered even if no new byte arrives.
            let backlogged = self.backlogged();
            let answered = self.process(site, cx);
            if let Phase::H2 = self.phase {
                return Next::Yield;
            }
            let before = budget;
            let mut cold = None;
            let flushed = busy(&mut self.busy, cx.spares).tx.flush(
                &mut self.stream,
                &mut self.io.writable,
                &mut budget,
                &mut cold,
            );
            if budget < before {
                // Any byte written restarts the send countdown: slow is fine, stuck is not.
                self.progress_since = Stamp::of(cx.now);
            }
            match flushed {
                Ok(Flush::Done) => {
                    if self.corked {
                        // The body is out: push its last partial segment now.
                        self.corked = false;
                        let _ = self.stream.set_cork(false);
                    }
                }
                Ok(Flush::Blocked) => {
                    return Next::Wait(Class::Send, self.progress_since.instant())
                }
                Ok(Flush::Budget) => return Next::Yield,
                Ok(Flush::Cold) => {
                    // A new read for the pool (none: still waiting for the last one).
                    if let Some(c) = cold {
                        if let Handed::NoPool = self.hand_to_io_thread(c, site, cx) {
                            continue;
                        }
                    }
                    return Next::Wait(Class::Send, self.progress_since.instant());
                }
                Err(_) => return Next::Close,
            }
            self.progress_since = Stamp::of(cx.now);
            match self.phase {
                // A response is still being made: it goes out before any close.
                Phase::Parked(ref p) => return Next::Wait(Class::Send, p.since),
                // Earlier responses are out: the proxied one follows.
                Phase::Proxy(_) => return self.drive_proxy(site, cx),
                Phase::Closing { linger } => return self.begin_close(linger, cx),
                _ => {}
            }
            if answered || (backlogged && self.has_pending()) {
                // The output went out; more pipelined requests may be buffered.
                self.idle_since = Stamp::of(cx.now);
                continue;
            }
            if !self.has_pending() {
                self.release_buffers(cx);
            }
            if self.io.eof {
                // Nothing or half a request buffered, and no more coming.
                return Next::Close;
            }
            if !self.io.readable {
                return self.wait_input(cx);
            }
            match self.fill(site, cx) {
                Ok(true) => {}
                Ok(false) => {
                    // Nothing came (the last read filled the buffer exactly): idle again.
                    if !self.has_pending() {
                        self.release_buffers(cx);
                    }
                    return self.wait_input(cx);
                }
                Err(_) => return Next::Close,
            }
        }
    }

    /// The reactor's timer for `class` fired.
    pub fn timeout(&mut self, class: Class, site: &mut Sites, cx: &mut Cx) -> Next {
        let quiet = self.head_sent();
        match class {
            Class::Upstream if self.is_proxying() => self.proxy_timeout(site, cx),
            Class::Body if self.is_proxying() => self.proxy_body_timeout(site, cx),
            Class::Header if self.has_pending() && quiet => {
                // Some of a request arrived but not its head: tell the client why.
                self.queue_error(408, cx);
                self.drive(site, cx)
            }
            Class::Body if matches!(self.phase, Phase::Body(_)) && quiet => {
                // The body stopped coming: its request has no answer yet (nginx: 408).
                self.phase = Phase::Requests;
                self.queue_error(408, cx);
                self.drive(site, cx)
            }
            _ => Next::Close,
        }
    }

    fn wait_input(&mut self, cx: &mut Cx) -> Next {
        if matches!(self.phase, Phase::Body(_)) {
            Next::Wait(Class::Body, self.progress_since.instant())
        } else if self.has_pending() || self.requests == 0 {
            let since = if self.requests == 0 {
                self.accepted
            } else {
                *self.request_since.get_or_insert(Stamp::of(cx.now))
            };
            Next::Wait(Class::Header, since.instant())
        } else {
            Next::Wait(Class::KeepAlive, self.idle_since.instant())
        }
    }

    /// Read what the socket has (`Inbox::fill`).
    fn fill(&mut self, site: &Sites, cx: &mut Cx) -> io::Result<bool> {
        let cap = site.config().limits.max_header_bytes + 1;
        let body = matches!(self.phase, Phase::Body(_));
        let b = busy(&mut self.busy, cx.spares);
        let got =
            b.rx.fill(&mut self.stream, &mut self.io, cap, body, &mut cx.spares.rx)?;
        if got {
            self.progress_since = Stamp::of(cx.now);
        }
        Ok(got)
    }

    /// Give the buffers back to the reactor's pools once nothing is in them.
    fn release_buffers(&mut self, cx: &mut Cx) {
        let Some(b) = self.busy.as_mut() else {
            return;
        };
        b.rx.release(&mut cx.spares.rx);
        b.tx.release(&mut cx.spares.tx);
        if b.rx.is_released() && b.tx.is_released() {
            if let Some(mut b) = self.busy.take() {
                if cx.spares.shells.len() < Spares::KEEP {
                    *b = Busy::default();
                    cx.spares.shells.push(b);
                }
            }
        }
    }

    /// After the last response: close at once, or half-close and read until the client's
    /// FIN when it may still be sending (nginx's lingering close).
    fn begin_close(&mut self, linger: bool, cx: &mut Cx) -> Next {
        if !linger || self.io.eof {
            return Next::Close;
        }
        let _ = self.stream.shutdown_write();
        self.phase = Phase::Lingering { dropped: 0 };
        self.progress_since = Stamp::of(cx.now);
        self.linger()
    }

    fn linger(&mut self) -> Next {
        let mut sink = [0u8; 4096];
        loop {
            if !self.io.readable {
                return Next::Wait(Class::Linger, self.progress_since.instant());
            }
            match self.stream.read(&mut sink) {
                Ok(0) => return Next::Close,
                Ok(n) => {
                    if let Phase::Lingering { dropped } = &mut self.phase {
                        *dropped += n;
                        if *dropped > LINGER_MAX {
                            return Next::Close;
                        }
                    }
                }
                Err(e) if would_block(&e) => self.io.readable = false,
                Err(e) if interrupted(&e) => {}
                Err(_) => return Next::Close,
            }
        }
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
        assert!(size <= 112, "Conn grew to {size} bytes");
    }
}
