//! One HTTP/2 connection (RFC 9113) over the same `Transport` as HTTP/1.1: frames in,
//! the stream table, both levels of flow control, and each stream answered by the very
//! `Site::respond` an HTTP/1.1 request gets (its HEADERS become an HTTP/1.1 head through
//! `http::h2::request::Request::to_h1_head`, parsed by `http::request::parse`).
//!
//! ```text
//!  preface + SETTINGS (ours first, a large connection window for uploads)
//!    -> frames decoded from the read buffer (`http::h2::frame::Decoder`)
//!    -> HEADERS(+CONTINUATION) -> HPACK -> validate -> stream (Body: request DATA
//!       dropped, credited back) -> END_STREAM -> Site::respond
//!          -> "proxy to X" (routed at HEADERS when a body follows): the stream's own
//!             exchange (`proxy`), pumped on upstream events, its DATA in `sched` too
//!          -> reply now: HEADERS queued, DATA framed later within the windows
//!          -> a pool job: only this stream parks (Parked); the completion comes back
//!             under (slot | stream id << 32, generation) and finds it by its id
//!    -> output: control frames and HEADERS in `out`; DATA from the streams that have
//!       window, in RFC 9218 priority order (`sched`), into `out` while it is below
//!       `FILL_TARGET`; everything written within the reactor's per-turn budget
//! ```
//!
//! Memory is bounded whatever the peer sends: the read buffer is one frame plus 64 KiB,
//! a header block at most 64 KiB (the assembler), at most `max_concurrent_streams`
//! streams each holding its HTTP/1.1 head (at most `limits.max_header_bytes`), and the
//! output buffer stops taking input past `OUT_CAP` (a peer that does not read what it
//! asks for, PING or SETTINGS floods included, is stopped reading and then cut by the
//! send timeout). Request bodies are dropped as they arrive, except a proxied stream's:
//! relayed upstream, its window reopened only as the upstream takes them (`proxy`).
//!
//! Deadlines: one per slot in the reactor's timers, so `wait` returns the nearest of the
//! class the connection waits in (header, keep-alive, body, send) and the protocol's own:
//! the SETTINGS ACK (`Class::SettingsAck`, 5 s) and, while draining, the final GOAWAY
//! (`Class::Drain`, 1 s after the first). The send timer moves only on progress: bytes
//! the socket takes while it is the bottleneck, or 16 KiB of DATA, or a finished stream;
//! control frames never move any timer. Drain (shutdown, reload): GOAWAY(2^31-1) + PING,
//! then on the ACK (or the grace) GOAWAY(last stream); streams opened in between are
//! served. Rapid Reset: 100 RST_STREAM a second, 50 streams reset before their response,
//! 2 x `max_concurrent_streams` new streams a read; each trip is counted by name.
//!
//! File bodies: each stream's file window is probed first (`net::body::Probe`, one turn's
//! validity, as for HTTP/1.1); a cold one parks only that stream (`Phase::Cold`) while an
//! I/O thread reads it in, under the same per-reactor cap (`MAX_COLD_JOBS`); siblings go
//! on. Over TLS the bytes are `pread` into the buffer rustls encrypts from; over
//! cleartext h2c a DATA frame's 9-byte header goes out with the bytes before it in `out`
//! and its payload with `sendfile` straight from the file (`FileFrame`), as nginx does.

use crate::http::h2::encode::ReplyEncoder;
use crate::http::h2::frame::{self, BlockAssembler, BlockLimits, Frame, Step};
use crate::http::h2::hpack::{self, DecoderLimits, FieldList};
use crate::http::h2::priority::Priority;
use crate::http::h2::{self, ErrorCode, H2Error, Settings, DEFAULT_WINDOW, MAX_WINDOW};
use crate::http::request::{self, Limits};
use crate::http::response::Reply;
use crate::net::account;
use crate::net::body::{self as tail, Chunk, Handed, Tail};
use crate::net::conn::{Cx, Next, Ready};
use crate::net::recv::{Inbox, Readiness};
use crate::net::send::{interrupted, would_block, Transport};
use crate::net::timer::{Class, Stamp};
use crate::offload::{ColdTicket, JobError, Offload, Sent};
use crate::ops::metrics::H2Trip;
use crate::site::auth::Verdict;
use crate::site::hosts::Sites;
use crate::site::route::Answer;
use crate::site::{Started, Waiting};
use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Past this many queued output bytes no more input is read (backpressure on a peer
/// that sends requests or control frames faster than it reads the answers).
const OUT_CAP: usize = 256 << 10;
/// DATA is framed into the output buffer until it holds this much.
const FILL_TARGET: usize = 64 << 10;
/// Our connection receive window (raised from 65,535 by a WINDOW_UPDATE right after our
/// SETTINGS, as nginx does): uploads are not throttled by the connection level.
pub const CONN_WINDOW: u32 = 16 << 20;
/// Largest DATA payload we send.
const DATA_FRAME: usize = 16_384;
/// Our SETTINGS must be acknowledged within this (RFC 9113 6.5.3); also the reactor's
/// `Class::SettingsAck`.
const SETTINGS_ACK: Duration = crate::config::timeouts::SETTINGS_ACK;

/// Per-second budgets of what a peer may make us do (sozu's and nginx's defaults, the
/// WINDOW_UPDATE one raised: a client reading a large body sends many legitimately).
const MAX_RESETS: u32 = 100;
const MAX_PINGS: u32 = 100;
const MAX_SETTINGS: u32 = 50;
const MAX_EMPTY_DATA: u32 = 100;
const MAX_CONN_WINDOW_UPDATES: u32 = 1000;
/// Rapid Reset (CVE-2023-44487), beside the per-second RST_STREAM budget: at most this
/// many times `max_concurrent_streams` new streams per read, and at most this many
/// streams reset by the client before their response started, over the connection.
const NEW_STREAMS_PER_READ: u32 = 2;
const MAX_EARLY_RESETS: u32 = 50;
/// A connection whose streams wait for window counts as alive only after this much DATA
/// went out (or a stream finished) since the send timer last started: a peer that opens
/// its window a byte at a time is cut at `timeouts.send`.
const PROGRESS: u64 = 16 << 10;
/// Graceful shutdown (as h2o): a first GOAWAY that still admits every stream id, with a
/// PING; its ACK (or `timeouts::DRAIN_IDLE`) brings the real GOAWAY, so a stream the
/// client opened while the first was in flight is still served.
const ANNOUNCE_LAST: u32 = 0x7fff_ffff;
const DRAIN_PING: [u8; 8] = *b"vireo-gw";

mod proxy;
mod sched;

/// Where a stream's response is.
enum Phase {
    /// Request headers in; its DATA (if any) is being received and dropped.
    Body,
    /// Waiting for a pool job (compression, listing, password check).
    Parked(Box<Waiting>),
    /// HEADERS queued; DATA still to go.
    Sending(Tail),
    /// An I/O thread reads the next window of its file in; nothing of it is framed until
    /// then (a reset cancels the ticket).
    Cold(Tail, Arc<ColdTicket>),
    /// Relayed to an upstream (`proxy`): request DATA up, response HEADERS and DATA down.
    Proxy(Box<proxy::H2Proxy>),
}

/// A DATA frame whose header is in `out` (ending at `at`) and whose payload follows it
/// with sendfile (cleartext only): nothing after `at` is written before it.
struct FileFrame {
    at: usize,
    file: Arc<File>,
    pos: u64,
    left: usize,
}

struct H2Stream {
    phase: Phase,
    /// The request as an HTTP/1.1 head (kept for routing, again after a password check).
    head: Vec<u8>,
    head_only: bool,
    /// RFC 9218: the `priority` header, then PRIORITY_UPDATE frames.
    prio: Priority,
    /// END_STREAM received: half-closed (remote).
    remote_closed: bool,
    /// What we may still send (may go negative after a SETTINGS change, 6.9.2).
    send_window: i64,
    /// What the peer may still send before our next WINDOW_UPDATE.
    recv_window: i64,
    content_length: Option<u64>,
    received: u64,
    /// The body is over `limits.max_body_bytes`: answered 413.
    too_large: bool,
    started: Instant,
    verdict: Option<Verdict>,
    log: Option<Box<account::Owned>>,
    /// Request DATA held (not credited back, so at most the stream's receive window)
    /// while the password check of a proxied route runs: relayed once it passes.
    held: Option<Vec<u8>>,
}

/// Per-second counters of what the peer made us do.
#[derive(Default)]
struct Rates {
    since: Option<Instant>,
    resets: u32,
    pings: u32,
    settings: u32,
    empty_data: u32,
    window_updates: u32,
}

impl Rates {
    fn tick(&mut self, now: Instant) {
        if self
            .since
            .is_none_or(|s| now.saturating_duration_since(s) >= Duration::from_secs(1))
        {
            *self = Rates {
                since: Some(now),
                ..Rates::default()
            };
        }
    }
}

/// The wire type of a decoded frame (`vireo_h2_frames_received_total`).
fn type_of(f: &Frame) -> u8 {
    use crate::http::h2::frame::kind;
    match f {
        Frame::Data { .. } => kind::DATA,
        Frame::Headers { .. } => kind::HEADERS,
        Frame::Priority { .. } => kind::PRIORITY,
        Frame::RstStream { .. } => kind::RST_STREAM,
        Frame::Settings { .. } => kind::SETTINGS,
        Frame::Ping { .. } => kind::PING,
        Frame::GoAway { .. } => kind::GOAWAY,
        Frame::WindowUpdate { .. } => kind::WINDOW_UPDATE,
        Frame::Continuation { .. } => kind::CONTINUATION,
        Frame::PriorityUpdate { .. } => kind::PRIORITY_UPDATE,
        Frame::Unknown { kind, .. } => *kind,
    }
}

fn calm(why: &'static str) -> H2Error {
    H2Error::connection(ErrorCode::EnhanceYourCalm, why)
}

/// Everything but the socket and the read buffer (so frames can borrow the buffer while
/// the state changes).
struct State {
    peer: SocketAddr,
    tls: bool,
    io: Readiness,
    out: Vec<u8>,
    opos: usize,
    dec: frame::Decoder,
    asm: BlockAssembler,
    hpack: hpack::Decoder,
    fields: FieldList,
    enc: ReplyEncoder,
    block: Vec<u8>,
    ours: Settings,
    theirs: Settings,
    preface: bool,
    acked: bool,
    streams: BTreeMap<u32, H2Stream>,
    /// Highest client stream id seen (GOAWAY's last-stream-id).
    last_stream: u32,
    /// PRIORITY_UPDATEs for streams not yet opened (RFC 9218 7.1), a few at most.
    early_prio: EarlyPrio,
    /// Streams ever opened (0: still within the header timeout).
    opened: u64,
    send_window: i64,
    recv_window: i64,
    goaway_sent: bool,
    /// Graceful shutdown: when the first GOAWAY (last-stream-id 2^31-1) and its PING went.
    announced: Option<Stamp>,
    peer_goaway: bool,
    /// A connection error was answered with GOAWAY: flush it, then close.
    closing: bool,
    /// The incremental stream served last (round robin, `sched::pick`).
    rr: u32,
    /// Streams whose cold window found the reactor's cold jobs at their cap, this turn:
    /// not probed again before the next.
    ids: Vec<u32>,
    /// The payload of the DATA frame whose header ends `out` (cleartext sendfile).
    file_frame: Option<FileFrame>,
    /// Scratch list of the proxied streams (`proxy::pump_proxies`).
    proxy_ids: Vec<u32>,
    /// DATA of a proxied stream was framed since the last pump: its upstream may be
    /// read on.
    proxy_took: bool,
    /// The page cache is trusted (`open_file_cache.cold_reads = false`, or no pool).
    trust_cache: bool,
    rates: Rates,
    /// New streams since the last read (at most `NEW_STREAMS_PER_READ` x max).
    new_in_read: u32,
    /// Streams the client reset before their response started.
    early_resets: u32,
    accepted: Stamp,
    idle_since: Stamp,
    progress_since: Stamp,
    /// What counts as progress since `progress_since`: bytes written while the socket
    /// was the bottleneck, DATA sent (connection credit the peer granted, less what is
    /// left), streams finished.
    written: u64,
    progress_written: u64,
    socket_bound: bool,
    granted: u64,
    progress_data: u64,
    finished: u64,
    progress_finished: u64,
    /// Wanting to send with no window: counted once per stall.
    stalled: bool,
    limits: Limits,
}

/// The `priority` request header's lines (RFC 9218 5), if any.
fn priority_of(fields: &FieldList) -> Option<Priority> {
    let mut lines: [&[u8]; 4] = [b""; 4];
    let mut n = 0;
    for (name, value) in fields.iter() {
        if name == b"priority" {
            if n == lines.len() {
                return Some(Priority::default()); // absurdly split: ignored
            }
            lines[n] = value;
            n += 1;
        }
    }
    (n > 0).then(|| Priority::parse_lines(&lines[..n]))
}

/// PRIORITY_UPDATEs that came before their stream's HEADERS: the newest few are kept
/// (RFC 9218 7.1 lets a server bound them), older ones are forgotten.
#[derive(Default)]
struct EarlyPrio {
    v: Vec<(u32, Priority)>,
}

impl EarlyPrio {
    const MAX: usize = 8;

    fn put(&mut self, id: u32, p: Priority) {
        self.v.retain(|&(i, _)| i != id);
        if self.v.len() == Self::MAX {
            self.v.remove(0);
        }
        self.v.push((id, p));
    }

    fn take_for(&mut self, id: u32) -> Option<Priority> {
        let i = self.v.iter().position(|&(i, _)| i == id)?;
        Some(self.v.remove(i).1)
    }
}

pub struct H2Conn<S> {
    stream: S,
    rx: Inbox,
    st: State,
}

/// The reactor's metrics for HTTP/2 (`ops::metrics`).
fn count<T>(cx: &Cx, f: impl FnOnce(&crate::ops::metrics::H2Stats) -> T) {
    f(&cx.stats.h2);
}

impl<S: Transport> H2Conn<S> {
    /// Takes over a connection whose first bytes (already in `rx`, if any) are HTTP/2.
    pub fn new(
        mut stream: S,
        peer: SocketAddr,
        io: Readiness,
        rx: Inbox,
        config: &crate::config::Config,
        now: Instant,
    ) -> H2Conn<S> {
        let h = &config.http2;
        let l = &config.limits;
        let ours = Settings {
            max_concurrent_streams: Some(h.max_concurrent_streams),
            initial_window_size: h.initial_window,
            max_frame_size: h.max_frame_size,
            max_header_list_size: Some(l.max_header_bytes as u32),
            ..Settings::default()
        };
        let tls = stream.is_tls();
        // As nginx does for every HTTP/2 connection: a stream's last DATA frame (or a small
        // HEADERS-only answer) must not wait for the client's delayed ACK (Nagle).
        if let Err(e) = stream.set_nodelay() {
            log::debug!("{peer}: TCP_NODELAY: {e}");
        }
        let mut out = Vec::with_capacity(4096);
        ours.write(&mut out);
        frame::write_window_update(&mut out, 0, CONN_WINDOW - DEFAULT_WINDOW);
        let stamp = Stamp::of(now);
        H2Conn {
            stream,
            rx,
            st: State {
                peer,
                tls,
                io,
                out,
                opos: 0,
                dec: frame::Decoder::new(h.max_frame_size),
                asm: BlockAssembler::new(BlockLimits::default()),
                hpack: hpack::Decoder::new(DecoderLimits {
                    max_table_size: 4096,
                    max_list_size: l.max_header_bytes,
                    max_fields: 128,
                }),
                fields: FieldList::new(),
                enc: ReplyEncoder::new(),
                block: Vec::new(),
                ours,
                theirs: Settings::PEER_DEFAULT,
                preface: false,
                acked: false,
                streams: BTreeMap::new(),
                last_stream: 0,
                opened: 0,
                send_window: i64::from(DEFAULT_WINDOW),
                recv_window: i64::from(CONN_WINDOW),
                goaway_sent: false,
                announced: None,
                peer_goaway: false,
                closing: false,
                rr: 0,
                ids: Vec::new(),
                file_frame: None,
                proxy_ids: Vec::new(),
                proxy_took: false,
                early_prio: EarlyPrio::default(),
                trust_cache: !config.open_file_cache.cold_reads,
                rates: Rates::default(),
                new_in_read: 0,
                early_resets: 0,
                accepted: stamp,
                idle_since: stamp,
                progress_since: stamp,
                written: 0,
                progress_written: 0,
                socket_bound: false,
                granted: u64::from(DEFAULT_WINDOW),
                progress_data: 0,
                finished: 0,
                progress_finished: 0,
                stalled: false,
                limits: Limits {
                    max_request_line: l.max_request_line,
                    max_header_bytes: l.max_header_bytes,
                    max_body_bytes: l.max_body_bytes,
                },
            },
        }
    }

    pub fn ready(&mut self, r: Ready) {
        let io = &mut self.st.io;
        io.readable |= r.readable || r.hup;
        io.read_closed |= r.hup;
        io.writable |= r.writable;
    }

    pub fn stream(&mut self) -> &mut S {
        &mut self.stream
    }

    pub fn peer(&self) -> SocketAddr {
        self.st.peer
    }

    /// A stream waits for a pool job (or a cold file window).
    pub fn is_parked(&self) -> bool {
        self.st
            .streams
            .values()
            .any(|s| matches!(s.phase, Phase::Parked(_) | Phase::Cold(..)))
    }

    /// A stream is relayed to an upstream (its connection is closed with the stream).
    pub fn is_proxying(&self) -> bool {
        self.st
            .streams
            .values()
            .any(|s| matches!(s.phase, Phase::Proxy(_)))
    }

    /// Advance as far as the socket allows.
    pub fn drive(&mut self, sites: &mut Sites, cx: &mut Cx) -> Next {
        if cx.draining && self.st.announced.is_none() && !self.st.goaway_sent && !self.st.closing {
            // Graceful shutdown: no new streams after the real GOAWAY; the open ones finish.
            self.st.announce(cx);
        }
        if !self.st.acked
            && !self.st.closing
            && cx.now.saturating_duration_since(self.st.accepted.instant()) > SETTINGS_ACK
        {
            self.st.settings_timeout(cx);
        }
        // A turn begins: last turn's page-cache probes hold no more.
        self.st.trust_cache |= sites.offload().is_none();
        self.st.ids.clear();
        for s in self.st.streams.values_mut() {
            if let Phase::Sending(t) = &mut s.phase {
                t.probe.new_turn();
            }
        }
        let timeouts = sites.config().timeouts.clone();
        let mut budget = cx.turn_budget;
        loop {
            let consumed = self.process(sites, cx);
            self.st.proxy_took = false;
            let moved = self.st.pump_proxies(sites, cx);
            let pool = sites.offload().map(Arc::as_ref);
            let flushed = self.st.flush(&mut self.stream, &mut budget, pool, cx);
            self.st
                .progress(matches!(flushed, Ok(Flushed::Blocked)), cx);
            match flushed {
                Err(e) => {
                    log::debug!("{}: h2 send: {e}", self.st.peer);
                    return Next::Close;
                }
                Ok(Flushed::Blocked) => {
                    return self
                        .st
                        .wait_for(Class::Send, self.st.progress_since, &timeouts)
                }
                Ok(Flushed::Budget) => return Next::Yield,
                Ok(Flushed::Done) => {}
            }
            if self.st.closing || (self.st.goaway_sent && self.st.streams.is_empty()) {
                return Next::Close;
            }
            if self.st.peer_goaway && self.st.streams.is_empty() {
                return Next::Close;
            }
            if consumed || moved || self.st.proxy_took {
                continue;
            }
            if self.st.io.eof {
                return Next::Close;
            }
            if self.st.io.readable {
                let cap = (self.st.dec.max_frame_size() as usize + frame::HEADER_LEN).max(64 << 10);
                // The buffer may be the HTTP/1.1 one that read the preface (a head's size).
                self.rx.grow_to(cap);
                match self.rx.fill(
                    &mut self.stream,
                    &mut self.st.io,
                    cap,
                    false,
                    &mut cx.spares.rx,
                ) {
                    Ok(true) => {
                        self.st.new_in_read = 0;
                        continue;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        log::debug!("{}: h2 read: {e}", self.st.peer);
                        return Next::Close;
                    }
                }
            }
            if !self.rx.has_pending() {
                self.rx.release(&mut cx.spares.rx);
            }
            return self.st.wait(&timeouts);
        }
    }

    /// Decode and handle every complete frame buffered. Returns whether any was.
    fn process(&mut self, sites: &mut Sites, cx: &mut Cx) -> bool {
        let mut consumed = false;
        loop {
            if self.st.closing {
                return consumed;
            }
            if self.st.out.len() - self.st.opos > OUT_CAP {
                // Not read on until the peer takes what it asked for (or the send timeout).
                count(cx, |h| h.trip(H2Trip::OutCap));
                return consumed;
            }
            let buf = self.rx.pending();
            if buf.is_empty() {
                return consumed;
            }
            if !self.st.preface {
                match h2::check_preface(buf) {
                    Ok(None) => return consumed,
                    Ok(Some(n)) => {
                        self.st.preface = true;
                        self.rx.consume(n);
                        consumed = true;
                        continue;
                    }
                    Err(e) => {
                        self.st.fail(e, cx);
                        return true;
                    }
                }
            }
            match self.st.dec.decode(buf) {
                Ok(None) => return consumed,
                Ok(Some((f, n))) => {
                    let r = self.st.on_frame(f, sites, cx);
                    self.rx.consume(n);
                    consumed = true;
                    if let Err(e) = r {
                        self.st.fail(e, cx);
                    }
                }
                Err(fe) => {
                    consumed = true;
                    self.st.fail(fe.error, cx);
                    if fe.error.is_connection() || fe.consumed == 0 {
                        return true;
                    }
                    self.rx.consume(fe.consumed);
                }
            }
        }
    }

    /// A pool job finished for stream `id`; a stream reset meanwhile is gone and the
    /// result is dropped.
    pub fn resume(
        &mut self,
        id: u32,
        result: Result<Arc<[u8]>, JobError>,
        started: Instant,
        sent: Sent,
        sites: &mut Sites,
        cx: &mut Cx,
    ) -> Next {
        if sent.cold {
            self.st.cold_done(id, started, sent, cx);
        } else {
            self.st.resume(id, result, sites, cx);
        }
        self.drive(sites, cx)
    }

    /// The reactor's timer for `class` fired: say goodbye and close (the SETTINGS ACK
    /// deadline: GOAWAY SETTINGS_TIMEOUT; the drain grace: the real GOAWAY, then go on).
    pub fn timeout(&mut self, class: Class, sites: &mut Sites, cx: &mut Cx) -> Next {
        match class {
            Class::SettingsAck if self.st.acked => return self.drive(sites, cx),
            Class::SettingsAck => self.st.settings_timeout(cx),
            Class::Upstream => {
                // An exchange's deadline: that stream alone answers 504 (or is reset).
                self.st.proxy_timeouts(sites, cx);
                return self.drive(sites, cx);
            }
            Class::Drain if self.st.announced.is_some() && !self.st.goaway_sent => {
                // No PING ACK within the grace: the real GOAWAY now.
                self.st.goaway(ErrorCode::NoError, b"shutdown", cx);
                return self.drive(sites, cx);
            }
            _ if !self.st.goaway_sent => {
                log::debug!("{}: h2 {class:?} timeout", self.st.peer);
                self.st.goaway(ErrorCode::NoError, b"timeout", cx);
            }
            _ => {}
        }
        let mut budget = 64 << 10;
        let _ = self.st.flush(&mut self.stream, &mut budget, None, cx);
        Next::Close
    }

    /// The reactor closes the connection: streams still waiting for a job are logged 499.
    pub fn on_close(&mut self, cx: &mut Cx) {
        let peer = self.st.peer;
        for (_, s) in std::mem::take(&mut self.st.streams) {
            match s.phase {
                Phase::Proxy(p) => proxy::on_gone(p, &self.st, cx),
                Phase::Parked(w) => account::deferred(cx, peer, w.site(), s.log.as_deref(), 499, 0),
                // No socket was lent to a read-in: nothing outlives the connection.
                Phase::Cold(_, ticket) => {
                    ticket.cancel();
                }
                _ => {}
            }
        }
    }
}

enum Flushed {
    Done,
    Blocked,
    Budget,
}

impl State {
    fn queued(&self) -> usize {
        self.out.len() - self.opos
    }

    fn wait(&self, t: &crate::config::Timeouts) -> Next {
        let sending = self.streams.values().any(|s| match &s.phase {
            Phase::Body => false,
            Phase::Proxy(p) => p.to_client(),
            _ => true,
        });
        let body = self.streams.values().any(|s| match &s.phase {
            Phase::Body => true,
            Phase::Proxy(p) => p.wants_body(),
            _ => false,
        });
        let upstream = self.proxy_deadline();
        let (class, since) = if sending {
            // Waiting for window or for a job: no progress for `timeouts.send` ends it.
            (Class::Send, self.progress_since)
        } else if body {
            (Class::Body, self.progress_since)
        } else if let Some(d) = upstream {
            // Only upstreams are awaited: their deadlines (`wait_for`) alone.
            (Class::Upstream, Stamp::of(d))
        } else if !self.streams.is_empty() {
            (Class::Body, self.progress_since)
        } else if self.opened == 0 {
            (Class::Header, self.accepted)
        } else {
            // Only streams move this: control frames never keep an idle connection open.
            (Class::KeepAlive, self.idle_since)
        };
        self.wait_for(class, since, t)
    }

    /// Wait in `class` from `since`, or for a protocol deadline that comes first: the
    /// SETTINGS ACK, the final GOAWAY of a drain. A slot has one deadline at a time.
    fn wait_for(&self, class: Class, since: Stamp, t: &crate::config::Timeouts) -> Next {
        let at = |c: Class, s: Stamp| s.instant().checked_add(t.of(c));
        let mut best = (class, since, at(class, since));
        let mut consider = |c: Class, s: Stamp| {
            let d = at(c, s);
            if d.is_some_and(|d| best.2.is_none_or(|b| d < b)) {
                best = (c, s, d);
            }
        };
        if !self.acked && !self.closing {
            consider(Class::SettingsAck, self.accepted);
        }
        if let (Some(a), false) = (self.announced, self.goaway_sent) {
            consider(Class::Drain, a);
        }
        // Each proxied stream's exchange has its own deadline; the nearest counts.
        if let Some(d) = self.proxy_deadline() {
            consider(Class::Upstream, Stamp::of(d));
        }
        Next::Wait(best.0, best.1.instant())
    }

    fn goaway(&mut self, code: ErrorCode, debug: &[u8], cx: &Cx) {
        frame::write_goaway(&mut self.out, self.last_stream, code, debug);
        self.goaway_sent = true;
        count(cx, |h| h.goaway(code.to_u32()));
    }

    /// The first GOAWAY of a graceful shutdown, and the PING that times it.
    fn announce(&mut self, cx: &Cx) {
        frame::write_goaway(
            &mut self.out,
            ANNOUNCE_LAST,
            ErrorCode::NoError,
            b"shutdown",
        );
        frame::write_ping(&mut self.out, false, DRAIN_PING);
        self.announced = Some(Stamp::of(cx.now));
        count(cx, |h| h.goaway(ErrorCode::NoError.to_u32()));
    }

    fn settings_timeout(&mut self, cx: &mut Cx) {
        count(cx, |h| h.trip(H2Trip::SettingsTimeout));
        self.fail(
            H2Error::connection(ErrorCode::SettingsTimeout, "no SETTINGS ACK"),
            cx,
        );
    }

    /// A budget is spent: counted by name, answered GOAWAY ENHANCE_YOUR_CALM.
    fn trip(&self, t: H2Trip, why: &'static str, cx: &Cx) -> H2Error {
        count(cx, |h| h.trip(t));
        calm(why)
    }

    /// After a flush: move the send timer on if the connection made progress. Writes
    /// count while the socket is the bottleneck (a slow reader is alive, as in
    /// HTTP/1.1); otherwise only `PROGRESS` bytes of DATA or a finished stream do, so
    /// neither control frames nor a window opened a byte at a time keep it alive.
    fn progress(&mut self, blocked: bool, cx: &Cx) {
        let data = self.granted.saturating_sub(self.send_window.max(0) as u64);
        let moved = ((self.socket_bound || blocked) && self.written > self.progress_written)
            || data >= self.progress_data + PROGRESS
            || self.finished > self.progress_finished;
        if moved {
            self.progress_since = Stamp::of(cx.now);
            self.progress_written = self.written;
            self.progress_data = data;
            self.progress_finished = self.finished;
        }
        self.socket_bound = blocked;
        // Flow-control stalls: a stream, or the connection, with DATA to send and no
        // window; counted when one starts.
        let stall = self.streams.values().find_map(|s| match &s.phase {
            Phase::Sending(o) if o.left() > 0 && self.send_window <= 0 => Some(false),
            Phase::Sending(o) if o.left() > 0 && s.send_window <= 0 => Some(true),
            _ => None,
        });
        if let (Some(stream), false) = (stall, self.stalled) {
            count(cx, |h| h.stall(stream));
        }
        self.stalled = stall.is_some();
    }

    /// Answer an error: RST_STREAM for a stream error, GOAWAY and close for the rest.
    fn fail(&mut self, e: H2Error, cx: &mut Cx) {
        match e {
            H2Error::Stream { stream, code, why } => {
                log::debug!("{}: h2 stream {stream}: {why}", self.peer);
                self.reset(stream, code, cx);
            }
            H2Error::Connection { code, why } => {
                log::debug!("{}: h2: {why} ({})", self.peer, code.as_str());
                if !self.closing {
                    self.goaway(code, why.as_bytes(), cx);
                    self.closing = true;
                }
            }
        }
    }

    /// RST_STREAM from us.
    fn reset(&mut self, id: u32, code: ErrorCode, cx: &mut Cx) {
        frame::write_rst_stream(&mut self.out, id, code);
        count(cx, |h| h.resets_sent.fetch_add(1, Ordering::Relaxed));
        self.remove(id, cx);
    }

    fn remove(&mut self, id: u32, cx: &mut Cx) {
        if let Some(s) = self.streams.remove(&id) {
            match s.phase {
                Phase::Parked(w) => {
                    // Its job is not waited for: the completion finds no stream.
                    account::deferred(cx, self.peer, w.site(), s.log.as_deref(), 499, 0);
                }
                Phase::Cold(_, ticket) => {
                    // A queued read-in does nothing; a running one stops at its next chunk.
                    ticket.cancel();
                }
                // Its upstream connection closes (never pooled half read).
                Phase::Proxy(p) => proxy::on_gone(p, self, cx),
                _ => {}
            }
            if self.streams.is_empty() {
                self.idle_since = Stamp::of(cx.now);
            }
        }
    }

    /// DATA held for a password check is dropped (the route answered otherwise): the
    /// stream window it shut opens again, so the client can finish sending.
    fn reopen(&mut self, id: u32) {
        let initial = i64::from(self.ours.initial_window_size);
        if let Some(s) = self.streams.get_mut(&id) {
            if !s.remote_closed && s.recv_window < initial {
                frame::write_window_update(&mut self.out, id, (initial - s.recv_window) as u32);
                s.recv_window = initial;
            }
        }
    }

    /// RFC 9218 7.1: a new priority for an open stream, or one not opened yet.
    fn on_priority_update(&mut self, id: u32, field: &[u8]) {
        let p = Priority::parse(field);
        match self.streams.get_mut(&id) {
            Some(s) => s.prio = p,
            None if id > self.last_stream => self.early_prio.put(id, p),
            None => {} // closed: nothing to send any more
        }
    }

    /// The I/O thread is done with stream `id`'s cold window (read in: trusted for one
    /// turn); a stream reset meanwhile is gone and the completion is dropped.
    fn cold_done(&mut self, id: u32, started: Instant, sent: Sent, cx: &mut Cx) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        let (mut t, ticket) = match std::mem::replace(&mut s.phase, Phase::Body) {
            Phase::Cold(t, ticket) => (t, ticket),
            other => {
                s.phase = other;
                return;
            }
        };
        drop(ticket);
        cx.stats.cold_read_time.observe(started.elapsed());
        t.cold_done(sent.bytes, !sent.read_in);
        s.phase = Phase::Sending(t);
        if sent.failed {
            log::error!(
                "{}: h2 stream {id}: reading a cold window failed",
                self.peer
            );
            self.reset(id, ErrorCode::InternalError, cx);
        }
    }

    fn on_frame(&mut self, f: Frame, sites: &mut Sites, cx: &mut Cx) -> Result<(), H2Error> {
        self.rates.tick(cx.now);
        count(cx, |h| h.frame(type_of(&f)));
        let step = self.asm.push(&f).inspect_err(|e| {
            if e.code() == ErrorCode::EnhanceYourCalm {
                count(cx, |h| h.trip(H2Trip::HeaderBlock));
            }
        })?;
        match step {
            Step::Pending => return Ok(()),
            Step::Block(b) => {
                let (id, end_stream, err) = (b.stream, b.end_stream, b.error);
                let r = self.hpack.decode(b.block, &mut self.fields);
                let bad = match r {
                    Ok(()) => None,
                    Err(e) => {
                        if e == hpack::HpackError::ListTooLarge {
                            count(cx, |h| h.trip(H2Trip::HeaderList));
                        }
                        let e = e.to_h2(id);
                        if e.is_connection() {
                            return Err(e);
                        }
                        Some(e)
                    }
                };
                return self.on_headers(id, end_stream, bad.or(err), sites, cx);
            }
            Step::Other => {}
        }
        match f {
            Frame::Data {
                stream: id,
                data,
                end_stream,
                flow_len,
            } => self.on_data(id, data, end_stream, flow_len, sites, cx),
            Frame::RstStream { stream: id, .. } => {
                if id > self.last_stream {
                    return Err(H2Error::connection(
                        ErrorCode::ProtocolError,
                        "RST_STREAM on an idle stream",
                    ));
                }
                count(cx, |h| h.resets_received.fetch_add(1, Ordering::Relaxed));
                self.rates.resets += 1;
                if self.rates.resets > MAX_RESETS {
                    count(cx, |h| h.rapid_resets.fetch_add(1, Ordering::Relaxed));
                    return Err(self.trip(H2Trip::ResetRate, "rapid reset", cx));
                }
                let early = self.streams.get(&id).is_some_and(|s| match &s.phase {
                    Phase::Body | Phase::Parked(_) => true,
                    // A proxied stream whose upstream has not answered yet.
                    Phase::Proxy(p) => !p.ready(),
                    Phase::Sending(_) | Phase::Cold(..) => false,
                });
                if early {
                    self.early_resets += 1;
                    if self.early_resets > MAX_EARLY_RESETS {
                        count(cx, |h| h.rapid_resets.fetch_add(1, Ordering::Relaxed));
                        let why = "streams reset before their response";
                        return Err(self.trip(H2Trip::EarlyResets, why, cx));
                    }
                }
                // A stream parked on a pool job goes now: its result will find no stream.
                self.remove(id, cx);
                Ok(())
            }
            Frame::Settings { ack: true, .. } => {
                self.acked = true;
                Ok(())
            }
            Frame::Settings {
                ack: false,
                payload,
            } => {
                self.rates.settings += 1;
                if self.rates.settings > MAX_SETTINGS {
                    return Err(self.trip(H2Trip::SettingsFlood, "SETTINGS flood", cx));
                }
                let old = self.theirs;
                self.theirs.apply(payload)?;
                let delta =
                    i64::from(self.theirs.initial_window_size) - i64::from(old.initial_window_size);
                if delta != 0 {
                    for s in self.streams.values_mut() {
                        s.send_window += delta;
                        if s.send_window > i64::from(MAX_WINDOW) {
                            return Err(H2Error::connection(
                                ErrorCode::FlowControlError,
                                "INITIAL_WINDOW_SIZE change overflows a window",
                            ));
                        }
                    }
                }
                if self.theirs.header_table_size != old.header_table_size {
                    self.enc.hpack.set_peer_max(self.theirs.header_table_size);
                }
                frame::write_settings_ack(&mut self.out);
                Ok(())
            }
            Frame::Ping { ack: false, data } => {
                self.rates.pings += 1;
                if self.rates.pings > MAX_PINGS {
                    return Err(self.trip(H2Trip::PingFlood, "PING flood", cx));
                }
                frame::write_ping(&mut self.out, true, data);
                Ok(())
            }
            Frame::Ping { ack: true, data } => {
                if data == DRAIN_PING && self.announced.is_some() && !self.goaway_sent {
                    // The peer has seen our first GOAWAY: the real one.
                    self.goaway(ErrorCode::NoError, b"shutdown", cx);
                }
                Ok(())
            }
            Frame::GoAway { .. } => {
                self.peer_goaway = true;
                Ok(())
            }
            Frame::WindowUpdate {
                stream: 0,
                increment,
            } => {
                self.rates.window_updates += 1;
                if self.rates.window_updates > MAX_CONN_WINDOW_UPDATES {
                    let why = "WINDOW_UPDATE flood";
                    return Err(self.trip(H2Trip::WindowUpdateFlood, why, cx));
                }
                self.send_window += i64::from(increment);
                self.granted += u64::from(increment);
                if self.send_window > i64::from(MAX_WINDOW) {
                    return Err(H2Error::connection(
                        ErrorCode::FlowControlError,
                        "connection window over 2^31-1",
                    ));
                }
                Ok(())
            }
            Frame::WindowUpdate {
                stream: id,
                increment,
            } => {
                if id > self.last_stream {
                    return Err(H2Error::connection(
                        ErrorCode::ProtocolError,
                        "WINDOW_UPDATE on an idle stream",
                    ));
                }
                if let Some(s) = self.streams.get_mut(&id) {
                    s.send_window += i64::from(increment);
                    if s.send_window > i64::from(MAX_WINDOW) {
                        return Err(H2Error::stream(
                            id,
                            ErrorCode::FlowControlError,
                            "stream window over 2^31-1",
                        ));
                    }
                }
                Ok(())
            }
            Frame::Priority { stream: id } => {
                // Parsed and ignored (RFC 9113 5.3.2); it may name an idle stream.
                let _ = id;
                Ok(())
            }
            Frame::PriorityUpdate { prioritized, field } => {
                self.on_priority_update(prioritized, field);
                Ok(())
            }
            Frame::Unknown { .. } => Ok(()),
            Frame::Headers { .. } | Frame::Continuation { .. } => Ok(()),
        }
    }

    fn on_data(
        &mut self,
        id: u32,
        data: &[u8],
        end_stream: bool,
        flow_len: u32,
        sites: &mut Sites,
        cx: &mut Cx,
    ) -> Result<(), H2Error> {
        let len = data.len() as u64;
        let flow = i64::from(flow_len);
        if flow > self.recv_window {
            return Err(H2Error::connection(
                ErrorCode::FlowControlError,
                "DATA beyond the connection window",
            ));
        }
        self.recv_window -= flow;
        if self.recv_window < i64::from(CONN_WINDOW / 2) {
            let inc = i64::from(CONN_WINDOW) - self.recv_window;
            frame::write_window_update(&mut self.out, 0, inc as u32);
            self.recv_window = i64::from(CONN_WINDOW);
        }
        if len == 0 && !end_stream {
            self.rates.empty_data += 1;
            if self.rates.empty_data > MAX_EMPTY_DATA {
                return Err(self.trip(H2Trip::EmptyDataFlood, "empty DATA flood", cx));
            }
        }
        let max_body = self.limits.max_body_bytes;
        let initial = i64::from(self.ours.initial_window_size);
        let Some(s) = self.streams.get_mut(&id) else {
            if id > self.last_stream {
                return Err(H2Error::connection(
                    ErrorCode::ProtocolError,
                    "DATA on an idle stream",
                ));
            }
            // Closed (we reset or finished it): ignore (5.1).
            return Ok(());
        };
        if s.remote_closed {
            return Err(H2Error::stream(
                id,
                ErrorCode::StreamClosed,
                "DATA after END_STREAM",
            ));
        }
        if flow > s.recv_window {
            return Err(H2Error::stream(
                id,
                ErrorCode::FlowControlError,
                "DATA beyond the stream window",
            ));
        }
        s.recv_window -= flow;
        s.received += len;
        if s.content_length.is_some_and(|n| s.received > n)
            || (end_stream && s.content_length.is_some_and(|n| s.received != n))
        {
            return Err(H2Error::stream(
                id,
                ErrorCode::ProtocolError,
                "content-length disagrees with DATA",
            ));
        }
        if matches!(s.phase, Phase::Proxy(_)) {
            // Relayed as the upstream takes it; the window opens only then (`proxy`).
            if end_stream {
                s.remote_closed = true;
            }
            self.proxy_data(id, data, end_stream, cx);
            self.progress_since = Stamp::of(cx.now);
            return Ok(());
        }
        if let Some(held) = s.held.as_mut() {
            // A proxied route's password check runs: kept for the upstream, the window
            // shut meanwhile.
            held.extend_from_slice(data);
            s.remote_closed |= end_stream;
            self.progress_since = Stamp::of(cx.now);
            return Ok(());
        }
        if s.received > max_body {
            s.too_large = true;
        }
        if end_stream {
            s.remote_closed = true;
            if matches!(s.phase, Phase::Body) {
                self.dispatch(id, sites, cx);
            }
        } else if s.recv_window < initial / 2 {
            frame::write_window_update(&mut self.out, id, (initial - s.recv_window) as u32);
            s.recv_window = initial;
        }
        self.progress_since = Stamp::of(cx.now);
        Ok(())
    }

    fn on_headers(
        &mut self,
        id: u32,
        end_stream: bool,
        bad: Option<H2Error>,
        sites: &mut Sites,
        cx: &mut Cx,
    ) -> Result<(), H2Error> {
        if let Some(s) = self.streams.get_mut(&id) {
            // Trailers.
            if s.remote_closed {
                return Err(H2Error::stream(
                    id,
                    ErrorCode::StreamClosed,
                    "HEADERS after END_STREAM",
                ));
            }
            if !end_stream {
                return Err(H2Error::stream(
                    id,
                    ErrorCode::ProtocolError,
                    "trailers without END_STREAM",
                ));
            }
            if let Some(e) = bad {
                return Err(e);
            }
            h2::request::validate_trailers(&self.fields, id)?;
            if s.content_length.is_some_and(|n| n != s.received) {
                return Err(H2Error::stream(
                    id,
                    ErrorCode::ProtocolError,
                    "content-length disagrees with DATA",
                ));
            }
            s.remote_closed = true;
            if matches!(s.phase, Phase::Body) {
                self.dispatch(id, sites, cx);
            } else {
                // The body of a proxied stream ends with its trailers (not relayed).
                self.proxy_data(id, &[], true, cx);
            }
            return Ok(());
        }
        if id <= self.last_stream {
            return Err(H2Error::connection(
                ErrorCode::ProtocolError,
                "HEADERS stream id not above the last one",
            ));
        }
        self.last_stream = id;
        // Refused and ignored streams count too: each costs us a frame or a decode.
        self.new_in_read += 1;
        let per_read = NEW_STREAMS_PER_READ * self.ours.max_concurrent_streams.unwrap_or(128);
        if self.new_in_read > per_read {
            count(cx, |h| h.rapid_resets.fetch_add(1, Ordering::Relaxed));
            let why = "too many new streams in one read";
            return Err(self.trip(H2Trip::StreamsPerRead, why, cx));
        }
        if self.goaway_sent {
            // After our GOAWAY new streams are not served (the client retries them).
            return Ok(());
        }
        let max = self.ours.max_concurrent_streams.unwrap_or(128) as usize;
        if self.streams.len() >= max {
            count(cx, |h| h.refused.fetch_add(1, Ordering::Relaxed));
            return Err(H2Error::stream(
                id,
                ErrorCode::RefusedStream,
                "over max_concurrent_streams",
            ));
        }
        if let Some(e) = bad {
            return Err(e);
        }
        let req = h2::request::validate(&self.fields, id)?;
        if end_stream && req.content_length.is_some_and(|n| n > 0) {
            return Err(H2Error::stream(
                id,
                ErrorCode::ProtocolError,
                "content-length without DATA",
            ));
        }
        let mut head = Vec::with_capacity(256);
        req.to_h1_head(&self.fields, &mut head);
        self.opened += 1;
        count(cx, |h| h.streams.fetch_add(1, Ordering::Relaxed));
        if self.streams.is_empty() {
            // The first stream of a busy spell starts the body and send timers; more
            // streams beside a stalled one are no progress of its.
            self.progress_since = Stamp::of(cx.now);
        }
        // A PRIORITY_UPDATE that came first overrides the header (RFC 9218 7.1).
        let prio = self
            .early_prio
            .take_for(id)
            .or_else(|| priority_of(&self.fields));
        self.streams.insert(
            id,
            H2Stream {
                phase: Phase::Body,
                head,
                head_only: false,
                prio: prio.unwrap_or_default(),
                remote_closed: end_stream,
                send_window: i64::from(self.theirs.initial_window_size),
                recv_window: i64::from(self.ours.initial_window_size),
                content_length: req.content_length,
                received: 0,
                too_large: false,
                started: cx.now,
                verdict: None,
                log: None,
                held: None,
            },
        );
        if end_stream {
            self.dispatch(id, sites, cx);
        } else {
            // A body follows: a proxied route relays it as it arrives; any other route
            // is answered at END_STREAM, as before.
            self.route_early(id, sites, cx);
        }
        Ok(())
    }

    /// The request of stream `id` is complete: answer it as HTTP/1.1 would be answered.
    fn dispatch(&mut self, id: u32, sites: &mut Sites, cx: &mut Cx) {
        self.route(id, false, sites, cx);
    }

    /// Stream `id`'s HEADERS are in and its body is still to come: if its route is an
    /// upstream, the exchange starts now (the body is relayed as it arrives); otherwise
    /// nothing happens until END_STREAM.
    fn route_early(&mut self, id: u32, sites: &mut Sites, cx: &mut Cx) {
        self.route(id, true, sites, cx);
    }

    fn route(&mut self, id: u32, early: bool, sites: &mut Sites, cx: &mut Cx) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        let buf = std::mem::take(&mut s.head);
        let started = s.started;
        // A verdict may come before END_STREAM (a proxied route's early check).
        let verdict = s.verdict.take();
        let judged = verdict.is_some();
        let mut held = s.held.take();
        let too_large = s.too_large;
        let head = match request::parse(&buf, &self.limits) {
            Ok(Some(h)) => h,
            Ok(None) | Err(_) if early => {
                s.head = buf; // answered at END_STREAM
                s.held = held;
                return;
            }
            Ok(None) | Err(_) => {
                let status = match request::parse(&buf, &self.limits) {
                    Err(e) => e.status,
                    _ => 400,
                };
                let (status, bytes) = self.encode(id, Reply::error(status), false, cx);
                account::response(cx, self.peer, None, started, status, bytes, cx.now);
                return;
            }
        };
        #[cfg(feature = "fault-injection")]
        if !early {
            crate::fault::on_request(&buf[..head.head_len]);
        }
        let site_index = sites.index_of(&head, &buf);
        let site = sites.pick(&head, &buf, false);
        let slot = site.metrics_slot();
        if let Some(v) = verdict {
            site.set_verdict(v);
        }
        let Answer { reply, job } = if too_large {
            Answer {
                reply: Reply::error(413),
                job: None,
            }
        } else {
            let https = match self.tls {
                true => None,
                false => crate::site::https::redirect(site.config(), &head, &buf),
            };
            match https {
                Some(reply) => Answer { reply, job: None },
                None => site.respond(&head, &buf, cx.now, cx.date, false),
            }
        };
        if let Some(crate::site::route::Job::Proxy { rule }) = &job {
            // Relayed by this stream's own exchange (`proxy`); siblings go on.
            let req = account::Request {
                protocol: b"HTTP/2.0",
                ..account::Request::of(&head, &buf, started, slot)
            };
            let site_ids = (slot, site_index);
            let config = site.config();
            let r = self.start_proxy(id, &head, &buf, config, *rule, site_ids, req, held, cx);
            if let Err(status) = r {
                self.reopen(id);
                let head_only = head.method == crate::http::Method::Head;
                let reply = site.error_reply(status, cx.now, cx.date);
                let (status, bytes) = self.encode(id, reply, head_only, cx);
                account::response(cx, self.peer, Some(req), started, status, bytes, cx.now);
            }
            if let Some(s) = self.streams.get_mut(&id) {
                s.head = buf;
            }
            return;
        }
        let early_check = early
            && matches!(job, Some(crate::site::route::Job::Auth(_)))
            && site.would_proxy(&head, &buf);
        if early && !judged && !early_check {
            // Not an upstream: answered once the body is in.
            if let Some(s) = self.streams.get_mut(&id) {
                s.head = buf;
            }
            return;
        }
        // Else answered now: the whole request, a proxied route's password check (its
        // body held until the verdict says where it goes), or what that check decided
        // (a 401 need not wait for the body: the stream is reset NO_ERROR after it).
        let head_only = head.method == crate::http::Method::Head;
        // The completion names the stream in the slot's upper half (`net::link`).
        let tag = cx.slot | ((id as usize) << 32);
        let parked = match job {
            None => Err(reply),
            Some(job) => match site.start(job, reply, cx.notifier, tag, cx.generation) {
                Started::Parked(w) => Ok(w),
                Started::Now(r) => Err(r),
            },
        };
        let req = account::Request {
            protocol: b"HTTP/2.0",
            stream: id,
            ..account::Request::of(&head, &buf, started, slot)
        };
        match parked {
            Err(reply) => {
                if held.is_some() {
                    self.reopen(id);
                }
                let (status, bytes) = self.encode(id, reply, head_only, cx);
                account::response(cx, self.peer, Some(req), started, status, bytes, cx.now);
                if let Some(s) = self.streams.get_mut(&id) {
                    s.head = buf;
                }
            }
            Ok(w) => {
                let log = match (w.is_auth(), cx.log.is_some()) {
                    (false, true) => Some(req.to_owned()),
                    _ => None,
                };
                if let Some(s) = self.streams.get_mut(&id) {
                    s.head = buf;
                    s.head_only = head_only;
                    s.log = log;
                    s.phase = Phase::Parked(Box::new(w));
                    if early_check && !s.remote_closed {
                        s.held = Some(held.take().unwrap_or_default());
                    }
                }
            }
        }
    }

    fn resume(
        &mut self,
        id: u32,
        result: Result<Arc<[u8]>, JobError>,
        sites: &mut Sites,
        cx: &mut Cx,
    ) {
        let Some(s) = self.streams.get_mut(&id) else {
            return; // reset meanwhile: the result is dropped (the cache keeps it)
        };
        let w = match std::mem::replace(&mut s.phase, Phase::Body) {
            Phase::Parked(w) => w,
            other => {
                s.phase = other;
                return;
            }
        };
        if let Some(v) = w.verdict(&result) {
            s.verdict = Some(v);
            // A body still coming goes to the upstream as it arrives (`route` early).
            let early = !s.remote_closed;
            self.route(id, early, sites, cx);
            return;
        }
        let site = w.site();
        let head_only = s.head_only;
        let log = s.log.take();
        let reply = w.finish(result);
        let (status, bytes) = self.encode(id, reply, head_only, cx);
        account::deferred(cx, self.peer, site, log.as_deref(), status, bytes);
    }

    /// HEADERS for `reply` into `out`; its body is framed later. Returns status and bytes.
    fn encode(&mut self, id: u32, reply: Reply, head_only: bool, cx: &mut Cx) -> (u16, u64) {
        self.block.clear();
        let h = self.enc.encode(reply, head_only, cx.date, &mut self.block);
        frame::write_headers(
            &mut self.out,
            id,
            &self.block,
            h.end_stream,
            self.theirs.max_frame_size,
        );
        if h.end_stream {
            self.finish(id, cx);
        } else if let Some(s) = self.streams.get_mut(&id) {
            s.phase = Phase::Sending(Tail::new(h.body, self.trust_cache));
        }
        (h.status, h.bytes)
    }

    /// Our side of stream `id` ended; a client still sending is told to stop (8.1).
    fn finish(&mut self, id: u32, cx: &mut Cx) {
        self.finished += 1;
        if self.streams.get(&id).is_some_and(|s| !s.remote_closed) {
            frame::write_rst_stream(&mut self.out, id, ErrorCode::NoError);
        }
        self.remove(id, cx);
    }

    /// Frames DATA from the streams that have window, in priority order (`sched`), into
    /// `out`. Over cleartext a file frame ends the round: its payload goes with sendfile
    /// (`file_frame`) before anything framed after it.
    fn produce(&mut self, pool: Option<&Offload>, cx: &mut Cx) {
        // DATA frames of at most 16 KiB whatever the peer allows: the output buffer stays
        // near FILL_TARGET, and streams interleave finely.
        let max_frame = (self.theirs.max_frame_size as usize).min(DATA_FRAME);
        while self.queued() < FILL_TARGET && self.send_window > 0 && self.file_frame.is_none() {
            let skip = &self.ids;
            let ready = self
                .streams
                .iter()
                .filter(|(id, s)| {
                    let has = match &s.phase {
                        Phase::Sending(_) => true,
                        Phase::Proxy(p) => p.ready(),
                        _ => false,
                    };
                    has && s.send_window > 0 && !skip.contains(id)
                })
                .map(|(&id, s)| (id, s.prio));
            let Some(id) = sched::pick(ready, self.rr) else {
                return;
            };
            if let Err(e) = self.frame_one(id, max_frame, pool, cx) {
                log::error!("{}: h2 stream {id}: reading the body: {e}", self.peer);
                self.reset(id, ErrorCode::InternalError, cx);
            }
        }
    }

    /// One DATA frame of stream `id` (or its hand-off to an I/O thread).
    fn frame_one(
        &mut self,
        id: u32,
        max_frame: usize,
        pool: Option<&Offload>,
        cx: &mut Cx,
    ) -> io::Result<()> {
        let Some(s) = self.streams.get_mut(&id) else {
            return Ok(());
        };
        if s.prio.incremental {
            self.rr = id;
        }
        let room = (s.send_window.min(self.send_window) as usize).min(max_frame);
        if let Phase::Proxy(p) = &mut s.phase {
            let at = self.out.len();
            self.out.extend_from_slice(&[0; frame::HEADER_LEN]);
            let t = proxy::take(p, room, &mut self.out);
            let hdr = frame::data_header(id, t.n as u32, t.end);
            self.out[at..at + frame::HEADER_LEN].copy_from_slice(&hdr);
            s.send_window -= t.n as i64;
            self.send_window -= t.n as i64;
            self.proxy_took = true;
            if t.end {
                self.proxy_end(id, cx);
            }
            return Ok(());
        }
        let Phase::Sending(body) = &mut s.phase else {
            return Ok(());
        };
        let left = body.left();
        let at = self.out.len();
        let n = match body.chunk(room) {
            Chunk::Done => {
                self.out.extend_from_slice(&[0; frame::HEADER_LEN]);
                0
            }
            Chunk::Mem(b) => {
                self.out.extend_from_slice(&[0; frame::HEADER_LEN]);
                self.out.extend_from_slice(b);
                b.len()
            }
            Chunk::File { file, pos, len } if self.tls => {
                self.out.extend_from_slice(&[0; frame::HEADER_LEN]);
                match pread(&mut self.out, file, pos, len) {
                    Ok(n) => n,
                    Err(e) => {
                        self.out.truncate(at);
                        return Err(e);
                    }
                }
            }
            Chunk::File { file, pos, len } => {
                // The header now; the payload from the file once `out` up to here is out.
                self.file_frame = Some(FileFrame {
                    at: at + frame::HEADER_LEN,
                    file: Arc::clone(file),
                    pos,
                    left: len,
                });
                len
            }
            Chunk::Cold(c) => {
                let Some(pool) = pool else {
                    // Closing (a timeout): nothing more is read for this stream.
                    body.cold_done(0, true);
                    self.ids.push(id);
                    return Ok(());
                };
                let tag = cx.slot | ((id as usize) << 32);
                // No socket: DATA must be framed here, so the window is only read in.
                match tail::hand_off(c, pool, || None, tag, cx) {
                    Handed::Started(ticket) => {
                        if let Phase::Sending(t) = std::mem::replace(&mut s.phase, Phase::Body) {
                            s.phase = Phase::Cold(t, ticket);
                        }
                    }
                    Handed::Queued => {
                        body.cold_done(0, true);
                        self.ids.push(id);
                    }
                }
                return Ok(());
            }
        };
        body.advance(n);
        let end = n as u64 == left;
        let hdr = frame::data_header(id, n as u32, end);
        if self.file_frame.is_some() {
            self.out.extend_from_slice(&hdr);
        } else {
            self.out[at..at + frame::HEADER_LEN].copy_from_slice(&hdr);
        }
        s.send_window -= n as i64;
        self.send_window -= n as i64;
        if end {
            self.finish(id, cx);
        }
        Ok(())
    }

    /// Write `out` and what the streams can send, within `budget` (which the sendfile
    /// payloads count against too). `pool`: where cold windows are read in (None: none is).
    fn flush<S: Transport>(
        &mut self,
        stream: &mut S,
        budget: &mut u64,
        pool: Option<&Offload>,
        cx: &mut Cx,
    ) -> io::Result<Flushed> {
        // DATA framed behind the HEADERS already queued: a small answer leaves in one write
        // (two writes would also cost a segment each).
        if !self.closing {
            self.produce(pool, cx);
        }
        loop {
            // Bytes framed after a sendfile payload wait for it.
            let upto = self.file_frame.as_ref().map_or(self.out.len(), |f| f.at);
            let from_file = self.opos >= upto;
            if !from_file || self.file_frame.is_some() {
                if !self.io.writable {
                    return Ok(Flushed::Blocked);
                }
                let (r, want) = match self.file_frame.as_mut() {
                    Some(f) if from_file => {
                        let want = (f.left as u64).min((*budget).max(1)) as usize;
                        (stream.send_file(&f.file, &mut f.pos, want), want)
                    }
                    _ => (stream.write(&self.out[self.opos..upto]), upto - self.opos),
                };
                match r {
                    // A file frame's length is on the wire already: the connection is lost.
                    Ok(0) if from_file => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "file shrank while being sent",
                        ))
                    }
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        *budget = budget.saturating_sub(n as u64);
                        self.written += n as u64;
                        if n < want && stream.short_write_fills() {
                            self.io.writable = false;
                        }
                        match self.file_frame.as_mut() {
                            Some(f) if from_file => {
                                f.left -= n;
                                let h2 = &cx.stats.h2;
                                h2.sendfile_bytes.fetch_add(n as u64, Ordering::Relaxed);
                                if f.left == 0 {
                                    self.file_frame = None;
                                }
                            }
                            _ => self.opos += n,
                        }
                    }
                    Err(e) if would_block(&e) => {
                        self.io.writable = false;
                        return Ok(Flushed::Blocked);
                    }
                    Err(e) if interrupted(&e) => {}
                    Err(e) => return Err(e),
                }
                if *budget == 0 {
                    return Ok(Flushed::Budget);
                }
                continue;
            }
            self.out.clear();
            self.opos = 0;
            if self.closing {
                // After our GOAWAY for an error nothing more is framed.
            } else {
                self.produce(pool, cx);
            }
            if self.out.is_empty() {
                if self.out.capacity() > 256 << 10 {
                    self.out = Vec::with_capacity(4096);
                }
                return match stream.flush() {
                    Ok(()) => Ok(Flushed::Done),
                    Err(e) if would_block(&e) => {
                        self.io.writable = false;
                        Ok(Flushed::Blocked)
                    }
                    Err(e) => Err(e),
                };
            }
        }
    }
}

/// Appends `len` bytes of `file` from `pos` to `out` (a short read appends fewer); 0 bytes
/// is an error: the file shrank under a response whose length is announced.
fn pread(out: &mut Vec<u8>, file: &File, pos: u64, len: usize) -> io::Result<usize> {
    let at = out.len();
    out.resize(at + len, 0);
    let r = loop {
        match file.read_at(&mut out[at..], pos) {
            Err(e) if interrupted(&e) => continue,
            r => break r,
        }
    };
    let n = match r {
        Ok(n) => n,
        Err(e) => {
            out.truncate(at);
            return Err(e);
        }
    };
    out.truncate(at + n);
    if n == 0 && len > 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "file shrank while being sent",
        ));
    }
    Ok(n)
}
