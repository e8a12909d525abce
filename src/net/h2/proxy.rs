//! HTTP/2 streams the route sends to an upstream (`Job::Proxy`): each such stream owns its
//! `upstream::exchange::Exchange` (and its own upstream connection from the reactor's
//! pool), exactly as an HTTP/1.1 connection does, so siblings never wait for it.
//!
//! ```text
//!  HEADERS (to_h1_head) -> route -> Job::Proxy -> Exchange (head re-serialised as for h1)
//!    request DATA -> `body_in` (chunk-framed when the client sent no content-length)
//!       -> Exchange::feed_body as the upstream takes it -> WINDOW_UPDATE only then
//!    upstream head (parsed strictly by the exchange) -> HEADERS, hop-by-hop fields gone
//!    upstream body -> de-chunked -> `data` -> DATA frames in the RFC 9218 scheduler
//!       (`produce`), within both windows -> END_STREAM; the connection goes back to
//!       the pool as soon as the response is in
//! ```
//!
//! Routing: the pool's owner of an upstream connection is `(slot | stream id << 32,
//! generation)`, the same naming completions use; the reactor drives the client slot and
//! the connection pumps its proxied streams (a stream reset or closed discards its
//! upstream connection, so a later event of that token finds no connection and is
//! dropped). Deadlines: each exchange's connect/send/read deadline; `wait` returns the
//! nearest of them as `Class::Upstream` when no client-side timer comes first.
//!
//! Memory per proxied stream: the exchange's 64 KiB response buffer and 64 KiB request
//! buffer, plus `DATA_MAX` of de-chunked DATA waiting for window and at most the stream's
//! receive window (`http2.initial_window`) of request DATA waiting for the upstream.

use super::{H2Stream, Phase, State};
use crate::http::h2::frame;
use crate::http::h2::hpack::Indexing;
use crate::http::h2::ErrorCode;
use crate::http::request::{BodyFraming, RequestHead};
use crate::http::upstream_response::{self, RespFraming};
use crate::net::account;
use crate::net::conn::Cx;
use crate::site::hosts::Sites;
use crate::upstream::exchange::{Attempts, Exchange, Step, Waiting, RESP_HEAD_MAX};
use crate::upstream::pool::AcquireError;
use crate::upstream::Failure;
use std::time::Instant;

/// De-chunked response bytes held per stream while the client's window is shut.
const DATA_MAX: usize = 64 << 10;

pub(super) struct H2Proxy {
    ex: Exchange,
    log: Option<Box<account::Owned>>,
    /// The answering site's metrics slot, and its index (its error pages).
    site: usize,
    site_index: usize,
    tries: Attempts,
    /// The route's `max_body_bytes`.
    limit: u64,
    /// Client DATA on its way to the exchange (chunk-framed when `chunked`).
    body_in: Vec<u8>,
    chunked: bool,
    /// END_STREAM from the client was seen (and, if chunked, the last chunk framed).
    body_end: bool,
    /// The response head went out as HEADERS.
    headers_sent: bool,
    /// The upstream body is chunked: de-chunked here.
    unchunk: Option<Unchunk>,
    /// DATA payload waiting for window.
    data: Vec<u8>,
    data_pos: usize,
    /// The response is all in `data` (the upstream connection is released).
    end: bool,
    /// DATA bytes sent.
    bytes: u64,
    /// The nearest upstream deadline (None: waiting on the client, or done upstream).
    pub(super) deadline: Option<Instant>,
}

impl H2Proxy {
    /// DATA to frame, or the END_STREAM still to send.
    pub(super) fn ready(&self) -> bool {
        self.headers_sent && (self.data_pos < self.data.len() || self.end)
    }

    /// Waiting for the client to open its window.
    pub(super) fn to_client(&self) -> bool {
        self.headers_sent && self.data_pos < self.data.len()
    }

    /// Waiting for the client's request body.
    pub(super) fn wants_body(&self) -> bool {
        !self.body_end && self.body_in.is_empty() && self.ex.body_room() > 0
    }
}

/// What a proxied stream's DATA frame took (`frame_one`).
pub(super) struct Taken {
    pub n: usize,
    pub end: bool,
}

/// Take up to `room` bytes of `p`'s DATA into `out` (after a 9-byte header the caller
/// fills in).
pub(super) fn take(p: &mut H2Proxy, room: usize, out: &mut Vec<u8>) -> Taken {
    let avail = p.data.len() - p.data_pos;
    let n = avail.min(room);
    out.extend_from_slice(&p.data[p.data_pos..p.data_pos + n]);
    p.data_pos += n;
    if p.data_pos == p.data.len() {
        p.data.clear();
        p.data_pos = 0;
    }
    p.bytes += n as u64;
    Taken {
        n,
        end: p.end && p.data.is_empty(),
    }
}

/// Decodes a chunked body the exchange has already validated (`ChunkedDecoder`): only
/// the chunk payloads come out; extensions and trailers are dropped.
#[derive(Default)]
struct Unchunk {
    st: Un,
    size: u64,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Un {
    #[default]
    Size,
    /// Extension or CR after the size: up to the LF.
    Ext,
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer section: at the start of a line / inside one.
    LineStart,
    Line,
    Done,
}

impl Unchunk {
    /// Appends the payload in `input` to `out`.
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.st {
                Un::Size => {
                    match (b as char).to_digit(16) {
                        Some(d) => {
                            self.size = self.size.saturating_mul(16).saturating_add(d.into())
                        }
                        None if b == b'\n' => self.after_size(),
                        None => self.st = Un::Ext,
                    }
                    i += 1;
                }
                Un::Ext => {
                    if b == b'\n' {
                        self.after_size();
                    }
                    i += 1;
                }
                Un::Data(left) => {
                    let n = ((input.len() - i) as u64).min(left) as usize;
                    out.extend_from_slice(&input[i..i + n]);
                    i += n;
                    self.st = match left - n as u64 {
                        0 => Un::DataEnd,
                        l => Un::Data(l),
                    };
                }
                Un::DataEnd => {
                    if b == b'\n' {
                        self.st = Un::Size;
                        self.size = 0;
                    }
                    i += 1;
                }
                Un::LineStart => {
                    self.st = match b {
                        b'\n' => Un::Done,
                        b'\r' => Un::LineStart,
                        _ => Un::Line,
                    };
                    i += 1;
                }
                Un::Line => {
                    if b == b'\n' {
                        self.st = Un::LineStart;
                    }
                    i += 1;
                }
                Un::Done => return,
            }
        }
    }

    fn after_size(&mut self) {
        self.st = match self.size {
            0 => Un::LineStart,
            n => Un::Data(n),
        };
    }
}

impl State {
    /// The route said "proxy" for stream `id`: build its exchange. `held`: the request
    /// DATA that arrived during its password check (relayed first). Err: the status to
    /// answer instead.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start_proxy(
        &mut self,
        id: u32,
        head: &RequestHead,
        buf: &[u8],
        config: &crate::config::Config,
        rule: usize,
        site: (usize, usize),
        req: account::Request,
        held: Option<Vec<u8>>,
        cx: &mut Cx,
    ) -> Result<(), u16> {
        let r = config.proxy.get(rule).ok_or(502u16)?;
        let Some(s) = self.streams.get(&id) else {
            return Ok(());
        };
        let held = held.filter(|h| !h.is_empty());
        let body_coming = !s.remote_closed || held.is_some();
        if !body_coming && s.received > 0 {
            // Routed to the upstream only at END_STREAM with its body dropped (never so
            // for a password check, whose body is held): it cannot be relayed.
            log::warn!(
                "{}: h2 stream {id}: proxied body arrived before its route",
                self.peer
            );
            return Err(503);
        }
        let mut h = *head;
        let chunked = body_coming && h.framing == BodyFraming::None;
        if chunked {
            // No content-length from the client: the upstream gets the body chunked.
            h.framing = BodyFraming::Chunked;
        }
        let ex = crate::net::conn::begin_proxy(&h, buf, config, r, self.peer, self.tls, cx.now)?;
        let retries = config.upstreams.get(r.upstream).map_or(0, |u| u.retries);
        let hash = crate::net::conn::proxy_hash(&h, buf, config, r.upstream, self.peer);
        use crate::http::Method;
        let log = cx.log.as_ref().map(|_| req.to_owned());
        let Some(s) = self.streams.get_mut(&id) else {
            return Ok(());
        };
        s.head_only = h.method == Method::Head;
        s.phase = Phase::Proxy(Box::new(H2Proxy {
            ex,
            log,
            site: site.0,
            site_index: site.1,
            tries: Attempts::new(h.method, retries, hash),
            limit: r.max_body_bytes,
            body_in: Vec::new(),
            chunked,
            body_end: !body_coming,
            headers_sent: false,
            unchunk: None,
            data: Vec::new(),
            data_pos: 0,
            end: false,
            bytes: 0,
            deadline: None,
        }));
        if let Some(h) = held {
            let end = s.remote_closed;
            self.proxy_data(id, &h, end, cx);
        }
        Ok(())
    }

    /// Request DATA for proxied stream `id` (already checked against the windows).
    /// Returns false if the stream is not proxied.
    pub(super) fn proxy_data(&mut self, id: u32, data: &[u8], end: bool, cx: &mut Cx) -> bool {
        let Some(s) = self.streams.get_mut(&id) else {
            return false;
        };
        let Phase::Proxy(p) = &mut s.phase else {
            return false;
        };
        let limit = p.limit;
        if p.body_end {
            return true;
        }
        if s.received > limit {
            self.proxy_fail(id, 413, cx);
            return true;
        }
        if p.chunked && !data.is_empty() {
            p.body_in
                .extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            p.body_in.extend_from_slice(data);
            p.body_in.extend_from_slice(b"\r\n");
        } else {
            p.body_in.extend_from_slice(data);
        }
        if end {
            if p.chunked {
                p.body_in.extend_from_slice(b"0\r\n\r\n");
            }
            p.body_end = true;
        }
        true
    }

    /// Move bytes for every proxied stream. Returns whether anything moved.
    pub(super) fn pump_proxies(&mut self, sites: &mut Sites, cx: &mut Cx) -> bool {
        let mut ids = std::mem::take(&mut self.proxy_ids);
        ids.clear();
        ids.extend(
            self.streams
                .iter()
                .filter(|(_, s)| matches!(s.phase, Phase::Proxy(_)))
                .map(|(&id, _)| id),
        );
        let mut moved = false;
        for &id in &ids {
            moved |= self.pump_one(id, sites, cx);
        }
        self.proxy_ids = ids;
        moved
    }

    fn pump_one(&mut self, id: u32, sites: &mut Sites, cx: &mut Cx) -> bool {
        let initial = i64::from(self.ours.initial_window_size);
        let Some(s) = self.streams.get_mut(&id) else {
            return false;
        };
        let Phase::Proxy(p) = &mut s.phase else {
            return false;
        };
        if p.end {
            return false;
        }
        let mut moved = false;
        if p.ex.conn.is_none() {
            let owner = (cx.slot | ((id as usize) << 32), cx.generation);
            let tried = p.ex.tried.clone();
            let (fresh, hash) = (p.tries.fresh_retry, p.tries.hash);
            match cx
                .upstreams
                .acquire(p.ex.upstream, owner, &tried, fresh, hash, cx.now)
            {
                Ok((k, server, reused)) => {
                    p.ex.attach(k, server, reused, cx.upstreams, cx.now);
                    p.tries.arm(&mut p.ex, cx.upstreams, cx.now);
                }
                Err(AcquireError::NoServer) => {
                    let (f, why) = match p.tries.last {
                        Some(f) => (f, "every server tried"),
                        None => (Failure::NoServer, "no server available"),
                    };
                    let status = f.status();
                    let quiet = p.tries.last.is_some();
                    self.proxy_answer(id, status, why, !quiet, f, sites, cx);
                    return true;
                }
                Err(AcquireError::Connect(addr, e)) => {
                    p.ex.server = cx.upstreams.conf()[p.ex.upstream]
                        .servers
                        .iter()
                        .position(|s| *s.text == *addr)
                        .unwrap_or(0);
                    let f = if e.kind() == std::io::ErrorKind::TimedOut {
                        Failure::ConnectTimeout
                    } else {
                        Failure::Refused
                    };
                    return self.proxy_failed(id, f, format!("connect: {e}"), sites, cx);
                }
            }
        }
        // The request body, as far as the exchange takes it; the client's window opens
        // only as it does.
        if !p.body_in.is_empty() {
            match p.ex.feed_body(&p.body_in) {
                Ok(n) => {
                    p.body_in.drain(..n);
                    moved |= n > 0;
                }
                Err(e) => {
                    let why = format!("request body: {}", e.why);
                    return self.proxy_answer_client(id, e.status, &why, cx);
                }
            }
        }
        if !p.body_end && s.recv_window < initial / 2 && (p.body_in.len() as i64) < initial / 2 {
            frame::write_window_update(&mut self.out, id, (initial - s.recv_window) as u32);
            s.recv_window = initial;
        }
        // Compressed exactly as for HTTP/1.1: the same decision at the head, the same
        // streaming jobs on the pool (the completion names this stream, so only it waits
        // for its chunk). Never spliced (`splice_to` stays false): the bytes must pass
        // through here to be framed as DATA.
        let pool = sites.offload();
        let policy = crate::upstream::exchange::policy(&sites.config().compression, pool);
        let room = p.ex.body_room();
        let mut step = p.ex.pump(cx.upstreams, cx.now, &policy);
        // Body bytes went up: room for `body_in` (no event will say so if the upstream
        // took them all).
        moved |= p.ex.body_room() > room;
        let tag = cx.slot | ((id as usize) << 32);
        match p.ex.compress_step(pool, cx.notifier, tag, cx.generation) {
            Ok(m) => moved |= m,
            Err((f, why)) => step = Step::Failed(f, why),
        }
        if p.ex.relay.head_out && !p.headers_sent {
            let pending = p.ex.pending_out();
            let Ok(Some(h)) = upstream_response::parse(pending, RESP_HEAD_MAX, s.head_only) else {
                return self.proxy_failed(
                    id,
                    Failure::BadResponse,
                    "response head not re-parsable".into(),
                    sites,
                    cx,
                );
            };
            let head_len = h.head_len;
            self.block.clear();
            response_block(
                &mut self.enc,
                &pending[..head_len],
                h.status,
                &mut self.block,
            );
            p.ex.took_out(head_len);
            p.headers_sent = true;
            p.unchunk = (h.framing == RespFraming::Chunked).then(Unchunk::default);
            let no_body = s.head_only || h.framing == RespFraming::None;
            let done = no_body && p.ex.response_done();
            frame::write_headers(
                &mut self.out,
                id,
                &self.block,
                done,
                self.theirs.max_frame_size,
            );
            moved = true;
            if done {
                p.end = true;
                self.proxy_release(id, cx);
                self.proxy_end(id, cx);
                return true;
            }
        }
        if p.headers_sent {
            // Upstream bytes into DATA, as far as the stream's buffer has room.
            while p.data.len() - p.data_pos < DATA_MAX && !p.ex.pending_out().is_empty() {
                let room = DATA_MAX - (p.data.len() - p.data_pos);
                let pending = p.ex.pending_out();
                let n = pending.len().min(room);
                match p.unchunk.as_mut() {
                    Some(u) => u.feed(&pending[..n], &mut p.data),
                    None => p.data.extend_from_slice(&pending[..n]),
                }
                p.ex.took_out(n);
                // Room again: the read countdown starts over.
                p.ex.since = cx.now;
                moved = true;
            }
            if p.ex.response_done() && p.ex.pending_out().is_empty() {
                p.end = true;
                let empty = p.data_pos == p.data.len();
                self.proxy_release(id, cx);
                if empty {
                    // Everything was framed already: END_STREAM alone.
                    self.out.extend_from_slice(&frame::data_header(id, 0, true));
                    self.proxy_end(id, cx);
                }
                return true;
            }
        }
        if let Step::Failed(f, why) = step {
            return self.proxy_failed(id, f, why, sites, cx);
        }
        // The deadline counting now: none while the client is the one awaited.
        let Some(s) = self.streams.get_mut(&id) else {
            return moved;
        };
        let Phase::Proxy(p) = &mut s.phase else {
            return moved;
        };
        let waits_client = p.to_client()
            || (p.wants_body() && p.ex.waiting != Waiting::Connect && !p.ex.body_done());
        p.deadline = match waits_client {
            true => None,
            false => Some(p.ex.deadline(cx.upstreams)),
        };
        moved
    }

    /// The response is all in: the upstream connection goes back to its pool (or closes).
    fn proxy_release(&mut self, id: u32, cx: &mut Cx) {
        let Some(H2Stream {
            phase: Phase::Proxy(p),
            ..
        }) = self.streams.get_mut(&id)
        else {
            return;
        };
        p.deadline = None;
        if let Some(k) = p.ex.conn.take() {
            let (reusable, ka) = p.ex.reusable();
            cx.upstreams.release(k, reusable, ka, cx.now);
        }
        cx.upstreams
            .health()
            .succeeded(p.ex.upstream, p.ex.server, p.ex.relay.status);
    }

    /// The last DATA (END_STREAM) of proxied stream `id` is queued: log it, end it.
    pub(super) fn proxy_end(&mut self, id: u32, cx: &mut Cx) {
        if let Some(s) = self.streams.get_mut(&id) {
            if let Phase::Proxy(p) = std::mem::replace(&mut s.phase, Phase::Body) {
                let (status, bytes) = (p.ex.relay.status, p.bytes);
                self.log_proxied(&p, status, bytes, cx);
            }
        }
        self.finish(id, cx);
    }

    fn log_proxied(&self, p: &H2Proxy, status: u16, bytes: u64, cx: &mut Cx) {
        let server = cx.upstreams.conf()[p.ex.upstream]
            .servers
            .get(p.ex.server)
            .map(|s| s.text.clone());
        if let Some(log) = cx.log.as_deref_mut() {
            log.set_upstream(server.as_deref(), p.ex.relay.status, p.ex.started.elapsed());
        }
        account::deferred(cx, self.peer, p.site, p.log.as_deref(), status, bytes);
        if let Some(log) = cx.log.as_deref_mut() {
            log.set_upstream(None, 0, std::time::Duration::ZERO);
        }
    }

    /// The exchange of stream `id` failed: retry where the rules allow (as for
    /// HTTP/1.1), else 502/504 as HEADERS when nothing went out yet, or reset the
    /// stream alone. Returns true (something changed).
    fn proxy_failed(
        &mut self,
        id: u32,
        f: Failure,
        why: String,
        sites: &mut Sites,
        cx: &mut Cx,
    ) -> bool {
        let Some(H2Stream {
            phase: Phase::Proxy(p),
            ..
        }) = self.streams.get_mut(&id)
        else {
            return true;
        };
        let replayable = p.ex.replayable() && !p.headers_sent && !p.ex.relay.head_out;
        let who = format!("h2 stream {id}: ");
        if p.tries
            .failed(&mut p.ex, f, &why, replayable, cx.upstreams, &who, cx.now)
        {
            return true;
        }
        if p.headers_sent || p.ex.relay.head_out {
            // Part of the response went out: only a reset tells the client it was cut;
            // the connection and the other streams go on.
            let status = p.ex.relay.status;
            let bytes = p.bytes;
            if let Some(s) = self.streams.get_mut(&id) {
                if let Phase::Proxy(p) = std::mem::replace(&mut s.phase, Phase::Body) {
                    self.log_proxied(&p, status, bytes, cx);
                }
            }
            self.reset(id, ErrorCode::InternalError, cx);
            return true;
        }
        self.proxy_answer(id, f.status(), "", false, f, sites, cx);
        true
    }

    /// Nothing of the response went out: answer `status` (502/504, the site's error
    /// page) as this stream's HEADERS instead.
    #[allow(clippy::too_many_arguments)]
    fn proxy_answer(
        &mut self,
        id: u32,
        status: u16,
        why: &str,
        warn: bool,
        f: Failure,
        sites: &mut Sites,
        cx: &mut Cx,
    ) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        let Phase::Proxy(p) = std::mem::replace(&mut s.phase, Phase::Body) else {
            return;
        };
        if warn {
            let name = &cx.upstreams.conf()[p.ex.upstream].name;
            log::warn!("upstream {name}: h2 stream {id}: {why} ({})", f.name());
        }
        if let Some(k) = p.ex.conn {
            cx.upstreams.discard(k);
        }
        let head_only = s.head_only;
        let reply = sites.get(p.site_index).error_reply(status, cx.now, cx.date);
        let (status, bytes) = self.encode(id, reply, head_only, cx);
        self.log_proxied(&p, status, bytes, cx);
    }

    /// The client's request body was refused (too large, malformed): its status as
    /// HEADERS if nothing went out, else a reset.
    fn proxy_answer_client(&mut self, id: u32, status: u16, why: &str, cx: &mut Cx) -> bool {
        log::debug!("{}: h2 stream {id}: {why}", self.peer);
        self.proxy_fail(id, status, cx);
        true
    }

    fn proxy_fail(&mut self, id: u32, status: u16, cx: &mut Cx) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        let Phase::Proxy(p) = std::mem::replace(&mut s.phase, Phase::Body) else {
            return;
        };
        if let Some(k) = p.ex.conn {
            cx.upstreams.discard(k);
        }
        if p.headers_sent {
            self.log_proxied(&p, p.ex.relay.status, p.bytes, cx);
            self.reset(id, ErrorCode::InternalError, cx);
            return;
        }
        let head_only = s.head_only;
        let (status, bytes) = self.encode(
            id,
            crate::http::response::Reply::error(status),
            head_only,
            cx,
        );
        self.log_proxied(&p, status, bytes, cx);
    }

    /// The reactor's `Class::Upstream` timer fired: every exchange past its deadline
    /// fails (504 for timeouts, or a reset once its response started).
    pub(super) fn proxy_timeouts(&mut self, sites: &mut Sites, cx: &mut Cx) {
        let late: Vec<(u32, Waiting)> = self
            .streams
            .iter()
            .filter_map(|(&id, s)| match &s.phase {
                Phase::Proxy(p) if p.deadline.is_some_and(|d| d <= cx.now) => {
                    Some((id, p.ex.waiting))
                }
                _ => None,
            })
            .collect();
        for (id, w) in late {
            let f = w.timed_out();
            self.proxy_failed(id, f, format!("{} timed out", f.name()), sites, cx);
        }
    }

    /// The nearest deadline of the proxied streams' exchanges.
    pub(super) fn proxy_deadline(&self) -> Option<Instant> {
        self.streams
            .values()
            .filter_map(|s| match &s.phase {
                Phase::Proxy(p) => p.deadline,
                _ => None,
            })
            .min()
    }
}

/// A proxied stream goes (client reset, connection closed): its upstream connection is
/// closed, never pooled with a response half read; logged 499 (or its status once the
/// response started).
pub(super) fn on_gone(p: Box<H2Proxy>, st: &State, cx: &mut Cx) {
    if let Some(k) = p.ex.conn {
        cx.upstreams.discard(k);
    }
    let status = if p.headers_sent {
        p.ex.relay.status
    } else {
        499
    };
    st.log_proxied(&p, status, p.bytes, cx);
}

/// The HEADERS block for the client head the exchange wrote (`HTTP/1.1 ...`, hop-by-hop
/// fields already gone): `:status`, then its fields lowercased, minus what HTTP/2 forbids
/// (`connection`, `keep-alive`, `transfer-encoding`, ...).
fn response_block(
    enc: &mut crate::http::h2::encode::ReplyEncoder,
    head: &[u8],
    status: u16,
    block: &mut Vec<u8>,
) {
    let hp = &mut enc.hpack;
    hp.begin(block);
    hp.field(
        b":status",
        itoa::Buffer::new().format(status).as_bytes(),
        Indexing::Incremental,
        block,
    );
    let mut name_lc = Vec::with_capacity(32);
    upstream_response::fields(head, |name, value, named| {
        if named || upstream_response::is_hop_by_hop(name) {
            return;
        }
        name_lc.clear();
        name_lc.extend(name.iter().map(u8::to_ascii_lowercase));
        let how = match &name_lc[..] {
            b"content-length" | b"etag" | b"last-modified" | b"location" | b"set-cookie"
            | b"content-range" => Indexing::Without,
            b"authorization" | b"cookie" => Indexing::Never,
            _ => Indexing::Incremental,
        };
        hp.field(&name_lc, value, how, block);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unchunk(input: &[u8], split: usize) -> (Vec<u8>, bool) {
        let mut u = Unchunk::default();
        let mut out = Vec::new();
        u.feed(&input[..split], &mut out);
        u.feed(&input[split..], &mut out);
        (out, u.st == Un::Done)
    }

    #[test]
    fn unchunk_gives_the_payload_at_every_split() {
        let body = b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n000 ; last\r\nT: x\r\n\r\n";
        for at in 0..=body.len() {
            assert_eq!(
                unchunk(body, at),
                (b"hello0123456789".to_vec(), true),
                "split {at}"
            );
        }
        assert_eq!(unchunk(b"0\r\n\r\n", 2), (Vec::new(), true));
        assert_eq!(unchunk(b"3\r\nabc\r\n", 4), (b"abc".to_vec(), false));
    }
}
