//! One proxied request's exchange with its upstream connection, as a state machine the
//! client connection pumps: request head (re-serialised) and body out, response head
//! parsed strictly, body relayed into a bounded buffer the client connection drains.
//!
//! ```text
//!  Connecting --connected--> Sending head [+ body as it arrives] ----------+
//!                                 | response bytes (read while sending)     |
//!                                 v                                         v
//!                            Head (parse; 1xx skipped; bad -> 502) --> Body --> Done
//! ```
//!
//! Backpressure: the response is read only into the room `relay::Relay::read_buf` offers,
//! at most `OUT_MAX` (64 KiB) unsent bytes per exchange (plus `ZIN_MAX` waiting for the
//! compressor), so the upstream is read exactly as fast as the client takes bytes;
//! request bodies wait in at most `BODY_MAX` (64 KiB) bytes on the way up (plus, while
//! the body so far fits in it, a copy of up to `BODY_MAX` for a replay). How the body
//! is framed for the client (passed, de-chunked, compressed) is the relay's business;
//! a compressed body's chunks go to the pool one job at a time (`compress_step`).

use crate::http::request::{ChunkedDecoder, Limits};
use crate::http::HttpError;
use crate::offload::stream::{Stream, Took};
use crate::offload::{Notifier, Offload};
use crate::upstream::pool::{UpKey, Upstreams};
use crate::upstream::relay::Relay;
pub use crate::upstream::relay::{ClientSide, Policy, OUT_MAX, RESP_HEAD_MAX};
use crate::upstream::splice::{Filled, Pipe, SPLICE_MIN};
use crate::upstream::Failure;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Instant;

/// Request body bytes held per exchange on their way up.
pub const BODY_MAX: usize = 64 * 1024;

/// What `[compression]` says of proxied responses, for HTTP/1.1 and HTTP/2 alike; a
/// coding is admitted only while the pool has room for another stream (else identity).
pub fn policy<'a>(c: &'a crate::config::Compression, pool: Option<&Arc<Offload>>) -> Policy<'a> {
    Policy {
        min_bytes: c.min_bytes,
        types: &c.types,
        admit: pool.is_some_and(|o| o.stream_room()),
    }
}

enum ReqBody {
    Done,
    Length(u64),
    Chunked(Box<ChunkedDecoder>),
}

/// What the upstream deadline is counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waiting {
    Connect,
    Send,
    Read,
}

impl Waiting {
    /// What passing this wait's deadline counts as.
    pub fn timed_out(self) -> Failure {
        match self {
            Waiting::Connect => Failure::ConnectTimeout,
            Waiting::Send => Failure::SendTimeout,
            Waiting::Read => Failure::ReadTimeout,
        }
    }
}

/// What a `pump` came to.
#[derive(Debug)]
pub enum Step {
    /// Waiting for upstream readiness (or for the client to take bytes / send body).
    Blocked,
    /// The response is complete in `out` (perhaps not yet sent to the client).
    Done,
    Failed(Failure, String),
}

pub struct Exchange {
    pub upstream: usize,
    pub server: usize,
    pub conn: Option<UpKey>,
    /// The connection came from the pool (a failure before any response byte is then
    /// retried once on a fresh one).
    pub reused: bool,
    pub tried: Vec<usize>,
    /// The serialised head, kept for a retry while no body byte went up.
    head: Vec<u8>,
    req: Vec<u8>,
    req_pos: usize,
    /// Bytes written upstream on this connection.
    written: u64,
    body: ReqBody,
    body_limits: Limits,
    /// Some body byte went to the upstream.
    pub body_sent: bool,
    /// Every body byte taken from the client so far, while they fit in `BODY_MAX`
    /// (`replay_ok`): a retry sends them again after the head, so a request whose pooled
    /// connection turned out dead is replayed whole even after its body went up.
    replay: Vec<u8>,
    replay_ok: bool,
    /// The response side: head parsing, framing, compression input (pure bytes).
    pub relay: Relay,
    pub out: Vec<u8>,
    pub out_pos: usize,
    /// The body's compressor on the pool, and whether a job of it is out.
    stream: Option<Arc<Stream>>,
    job_out: bool,
    /// The client's socket is plain (the caller says so before each `pump`): a large
    /// passed body may be spliced to it.
    pub splice_to: bool,
    /// The body goes through `pipe` (decided once, at its first bytes: never both ways).
    splicing: bool,
    pipe: Option<Pipe>,
    pub waiting: Waiting,
    /// Start of the current upstream countdown.
    pub since: Instant,
    pub started: Instant,
}

impl Exchange {
    pub fn new(
        upstream: usize,
        head: Vec<u8>,
        body_len: Option<u64>,
        chunked: bool,
        body_limit: u64,
        client: ClientSide,
        now: Instant,
    ) -> Exchange {
        let body = if chunked {
            ReqBody::Chunked(Box::default())
        } else {
            match body_len {
                Some(n) if n > 0 => ReqBody::Length(n),
                _ => ReqBody::Done,
            }
        };
        Exchange {
            upstream,
            server: 0,
            conn: None,
            reused: false,
            tried: Vec::new(),
            req: head.clone(),
            head,
            req_pos: 0,
            written: 0,
            body,
            body_limits: Limits {
                max_request_line: RESP_HEAD_MAX,
                max_header_bytes: RESP_HEAD_MAX,
                max_body_bytes: body_limit,
            },
            body_sent: false,
            replay: Vec::new(),
            replay_ok: true,
            relay: Relay::new(client),
            out: Vec::new(),
            out_pos: 0,
            stream: None,
            job_out: false,
            splice_to: false,
            splicing: false,
            pipe: None,
            waiting: Waiting::Connect,
            since: now,
            started: now,
        }
    }

    /// The pool gave connection `k` to `server` (`reused`: from the pool, connected):
    /// the exchange goes on it, counted in the server's metrics.
    pub fn attach(
        &mut self,
        k: UpKey,
        server: usize,
        reused: bool,
        ups: &mut Upstreams,
        now: Instant,
    ) {
        use std::sync::atomic::Ordering::Relaxed;
        self.conn = Some(k);
        self.server = server;
        self.reused = reused;
        self.since = now;
        self.waiting = if reused {
            Waiting::Send
        } else {
            Waiting::Connect
        };
        if let Some(st) = ups.health().server(self.upstream, server) {
            st.requests.fetch_add(1, Relaxed);
            if !reused {
                st.opened.fetch_add(1, Relaxed);
            }
        }
        if reused {
            if let Some(c) = ups.get(k) {
                // Pooled connections are connected; their readiness is what the last
                // exchange left (writable unless it filled up).
                c.writable = true;
            }
        }
    }

    /// When the current upstream countdown ends (`since` plus the set's limit for what
    /// is awaited).
    pub fn deadline(&self, ups: &Upstreams) -> Instant {
        let up = &ups.conf()[self.upstream];
        let limit = match self.waiting {
            Waiting::Connect => up.connect_timeout,
            Waiting::Send => up.send_timeout,
            Waiting::Read => up.read_timeout,
        };
        self.since + limit
    }

    /// The upstream answered `101`: hand the connection to a tunnel.
    pub fn upgraded(&self) -> bool {
        self.relay.upgraded()
    }

    /// The request body is all read from the client.
    pub fn body_done(&self) -> bool {
        matches!(self.body, ReqBody::Done)
    }

    /// The response is complete (its bytes may still be in `out`).
    pub fn response_done(&self) -> bool {
        self.relay.done()
    }

    /// Whether a failure now can be retried on another connection: nothing of the
    /// response arrived and the request can be sent again whole.
    pub fn replayable(&self) -> bool {
        (!self.body_sent || self.replay_ok) && self.relay.untouched()
    }

    /// Body bytes the exchange can take now.
    pub fn body_room(&self) -> usize {
        BODY_MAX.saturating_sub(self.req.len() - self.req_pos)
    }

    /// Take request body bytes from the client's buffer; returns how many were used.
    /// Chunked bodies are validated as they pass (413 over `max_body_bytes`).
    pub fn feed_body(&mut self, avail: &[u8]) -> Result<usize, HttpError> {
        let room = self.body_room();
        let (n, done) = match &mut self.body {
            ReqBody::Done => return Ok(0),
            ReqBody::Length(left) => {
                let n = (*left).min(avail.len().min(room) as u64) as usize;
                *left -= n as u64;
                (n, *left == 0)
            }
            ReqBody::Chunked(dec) => {
                dec.feed(&avail[..avail.len().min(room)], &self.body_limits)?
            }
        };
        if self.req_pos == self.req.len() {
            self.req.clear();
            self.req_pos = 0;
        }
        self.req.extend_from_slice(&avail[..n]);
        if self.replay_ok {
            if self.replay.len() + n <= BODY_MAX {
                self.replay.extend_from_slice(&avail[..n]);
            } else {
                self.replay_ok = false;
                self.replay = Vec::new();
            }
        }
        if done {
            self.body = ReqBody::Done;
        }
        Ok(n)
    }

    /// Start over on another connection (a retry): the head goes out again, and the
    /// body bytes taken so far (`replayable` says they are all in `replay`).
    pub fn restart(&mut self, now: Instant) {
        self.conn = None;
        self.req = self.head.clone();
        self.req.extend_from_slice(&self.replay);
        self.body_sent = false;
        self.req_pos = 0;
        self.written = 0;
        self.relay.restart();
        self.splicing = false;
        self.pipe = None;
        self.waiting = Waiting::Connect;
        self.since = now;
    }

    /// Unsent response bytes.
    pub fn pending_out(&self) -> &[u8] {
        &self.out[self.out_pos..]
    }

    pub fn took_out(&mut self, n: usize) {
        self.out_pos += n;
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
    }

    /// Is the upstream connection fit for the pool now that the response is complete?
    pub fn reusable(&self) -> (bool, Option<u64>) {
        let whole = self.req_pos == self.req.len() && self.body_done();
        if self.relay.done() {
            (self.relay.reusable() && whole, self.relay.upstream_ka)
        } else {
            (false, None)
        }
    }

    /// Move bytes: request out while the upstream takes them, response in while `out`
    /// has room.
    pub fn pump(&mut self, ups: &mut Upstreams, now: Instant, policy: &Policy) -> Step {
        let Some(k) = self.conn else {
            return Step::Failed(Failure::NoServer, "no connection".into());
        };
        let Some((c, scratch)) = ups.get_with_scratch(k) else {
            return Step::Failed(Failure::Reset, "connection gone".into());
        };
        if !c.connected {
            if !(c.writable || c.error || c.hup) {
                return Step::Blocked;
            }
            match c.sock.take_error() {
                Ok(Some(e)) | Err(e) => return Step::Failed(Failure::Refused, e.to_string()),
                Ok(None) if c.error => {
                    return Step::Failed(Failure::Refused, "connect failed".into())
                }
                Ok(None) => {}
            }
            c.connected = true;
            c.sock.set_nodelay();
            self.waiting = Waiting::Send;
            self.since = now;
        }
        loop {
            // Request bytes up.
            while self.req_pos < self.req.len() && c.writable {
                match c.sock.write(&self.req[self.req_pos..]) {
                    Ok(0) => return Step::Failed(Failure::Reset, "write returned 0".into()),
                    Ok(n) => {
                        self.written += n as u64;
                        self.body_sent |= self.written > self.head.len() as u64;
                        self.req_pos += n;
                        self.since = now;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.writable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        // The upstream may have answered and closed (a 413 of its own):
                        // read what it said before giving up.
                        if c.readable {
                            break;
                        }
                        return Step::Failed(Failure::Reset, format!("send: {e}"));
                    }
                }
            }
            if self.req_pos == self.req.len() && self.body_done() && self.waiting == Waiting::Send {
                self.waiting = Waiting::Read;
                self.since = now;
            }
            if self.relay.done() {
                return Step::Done;
            }
            if self.relay.input_done() {
                // The compressor still has the last word; the upstream is not read.
                return Step::Blocked;
            }
            if !c.readable {
                return Step::Blocked;
            }
            let unsent = self.out.len() - self.out_pos;
            if !self.splicing
                && self.splice_to
                && self.relay.spliceable().is_some_and(|n| n >= SPLICE_MIN)
            {
                match Pipe::new() {
                    Ok(p) => {
                        self.pipe = Some(p);
                        self.splicing = true;
                    }
                    Err(e) => {
                        log::warn!("no pipe for splice ({e}): copying");
                        self.splice_to = false;
                    }
                }
            }
            if self.splicing {
                // Upstream -> pipe, behind what `out` still holds (the head).
                let (Some(pipe), Some(left)) = (self.pipe.as_mut(), self.relay.spliceable()) else {
                    return Step::Blocked;
                };
                let room = OUT_MAX.saturating_sub(pipe.held);
                if unsent > 0 || room == 0 {
                    return Step::Blocked;
                }
                let max = room.min(usize::try_from(left).unwrap_or(usize::MAX));
                match pipe.fill(c.sock.fd(), max) {
                    Ok(Filled::Moved(n)) => {
                        self.since = now;
                        self.relay.spliced(n);
                    }
                    Ok(Filled::Eof) => {
                        c.readable = false;
                        c.hup = true;
                        if let Err((f, why)) = self.relay.eof() {
                            return Step::Failed(f, why);
                        }
                    }
                    Ok(Filled::WouldBlock { drained }) => {
                        if drained {
                            c.readable = false;
                        }
                        return Step::Blocked;
                    }
                    Err(e) => return Step::Failed(Failure::Truncated, format!("splice: {e}")),
                }
                continue;
            }
            // Response bytes in, only into the room `out` (and the compressor) have.
            let in_head = self.relay.in_head();
            let (buf, want) = self.relay.read_buf(&mut self.out, unsent);
            if want == 0 {
                if in_head {
                    return Step::Failed(
                        Failure::BadResponse,
                        "response head over the limit".into(),
                    );
                }
                return Step::Blocked;
            }
            let at = buf.len();
            let want = want.min(scratch.len());
            let got = match c.sock.read(&mut scratch[..want]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    c.readable = false;
                    return Step::Blocked;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Step::Failed(self.relay.eof_failure(), format!("read: {e}")),
            };
            buf.extend_from_slice(&scratch[..got]);
            if got < want {
                c.readable = c.hup; // a short read drains an edge-triggered socket
            }
            self.since = now;
            if got == 0 {
                c.readable = false;
                c.hup = true;
                if let Err((f, why)) = self.relay.eof() {
                    return Step::Failed(f, why);
                }
                continue;
            }
            if in_head && !self.body_done() {
                // An answer before the whole request body came (an upstream's early 413,
                // nginx's `return`): the rest of the body is drained and the connection
                // closed after it, so the head must not promise keep-alive.
                self.relay.client_keep = false;
            }
            if let Err((f, why)) = self.relay.absorb(&mut self.out, at, policy) {
                return Step::Failed(f, why);
            }
        }
    }

    /// The response's coding, once its head chose one: the stream to compress it with is
    /// opened on `pool` (None: no room, and the head already promised a coding, so this
    /// is checked before the head with `Policy::admit`).
    fn open_stream(&mut self, pool: &Arc<Offload>) -> Result<Arc<Stream>, (Failure, String)> {
        if let Some(s) = &self.stream {
            return Ok(Arc::clone(s));
        }
        let coding = self.relay.coding.unwrap_or_default();
        let s = pool.open_stream(coding).ok_or((
            Failure::BadResponse,
            "no room for a compressed stream".to_string(),
        ))?;
        self.stream = Some(Arc::clone(&s));
        Ok(s)
    }

    /// Move compressed bytes along: the finished job's output into `out`, the next input
    /// to the pool (one job at a time, in order, only while `out` has room). Returns
    /// whether anything moved. Errors close the client connection (its head is out).
    pub fn compress_step(
        &mut self,
        pool: Option<&Arc<Offload>>,
        notifier: &Notifier,
        slot: usize,
        generation: u32,
    ) -> Result<bool, (Failure, String)> {
        if !self.relay.compressing() || self.relay.done() {
            return Ok(false);
        }
        let Some(pool) = pool else {
            return Err((Failure::BadResponse, "no pool to compress on".into()));
        };
        let s = self.open_stream(pool)?;
        let mut moved = false;
        if self.job_out {
            match s.take() {
                Took::Busy => return Ok(false),
                Took::Failed(why) => return Err((Failure::BadResponse, why)),
                Took::Ready(bytes, last) => {
                    self.job_out = false;
                    moved = true;
                    self.relay.compressed(&mut self.out, &bytes, last);
                }
            }
        }
        if self.relay.done() || self.out.len() - self.out_pos >= OUT_MAX {
            return Ok(moved);
        }
        if let Some((input, last)) = self.relay.next_job(Vec::new()) {
            pool.stream_job(&s, input, last, notifier, slot, generation);
            self.job_out = true;
            moved = true;
        }
        Ok(moved)
    }

    /// Body bytes in the pipe, not yet at the client.
    pub fn pipe_held(&self) -> usize {
        self.pipe.as_ref().map_or(0, |p| p.held)
    }

    /// Pipe -> client (after `out` is empty): bytes moved, 0 when the socket is full.
    pub fn splice_out(&mut self, to: std::os::fd::BorrowedFd<'_>, max: usize) -> io::Result<usize> {
        match self.pipe.as_mut() {
            Some(p) if self.out_pos == self.out.len() => p.drain(to, max),
            _ => Ok(0),
        }
    }

    /// A compression job is out (the connection waits for its completion).
    pub fn compress_waiting(&self) -> bool {
        self.job_out
    }
}

/// The retry state of one proxied request, kept beside its exchange by the HTTP/1.1
/// connection and the HTTP/2 stream alike.
pub struct Attempts {
    pub idempotent: bool,
    /// Retries left (`[[upstream]] retries`).
    pub retries: u32,
    /// A reused connection that died was retried on a fresh one already.
    pub fresh_retry: bool,
    /// Why the last try failed (a retry that finds no server answers with it).
    pub last: Option<Failure>,
    /// The balance key (`hash` balance).
    pub hash: u64,
}

impl Attempts {
    pub fn new(method: crate::http::Method, retries: u32, hash: u64) -> Attempts {
        use crate::http::Method;
        Attempts {
            idempotent: matches!(method, Method::Get | Method::Head | Method::Options),
            retries,
            fresh_retry: false,
            last: None,
            hash,
        }
    }

    /// After `ex.attach`: a 502/503/504 from this server is retried elsewhere only when
    /// a retry is allowed and another server could take it; else it is the answer.
    pub fn arm(&self, ex: &mut Exchange, ups: &Upstreams, now: Instant) {
        ex.relay.retry_status = self.idempotent
            && self.retries > 0
            && ups.another_server(ex.upstream, &ex.tried, ex.server, now);
    }

    /// `ex` failed with `f`: its connection is discarded, the failure counted against its
    /// server (and logged, `who` naming the request, e.g. "h2 stream 3: "), and the
    /// exchange restarted where the rules allow it, only while nothing of the response
    /// arrived or went out (`replayable`): once on a fresh connection when a pooled one
    /// turned out dead (the pool's fault, not the server's: whatever the method, as nginx
    /// does), else on the next server for an idempotent request while retries are left.
    /// Returns whether it was restarted (the caller drives it again).
    #[allow(clippy::too_many_arguments)]
    pub fn failed(
        &mut self,
        ex: &mut Exchange,
        f: Failure,
        why: &str,
        replayable: bool,
        ups: &mut Upstreams,
        who: &str,
        now: Instant,
    ) -> bool {
        let conf = Arc::clone(ups.conf());
        let up = &conf[ex.upstream];
        let addr = up.servers.get(ex.server).map_or("-", |s| &*s.text);
        if let Some(k) = ex.conn.take() {
            ups.discard(k);
        }
        self.last = Some(f);
        if ex.reused && replayable && !self.fresh_retry && matches!(f, Failure::Reset) {
            log::debug!(
                "upstream {addr}: {who}reused connection failed ({why}); retrying on a fresh one"
            );
            self.fresh_retry = true;
            ex.restart(now);
            return true;
        }
        if f != Failure::NoServer {
            let down = ups.health().failed(ex.upstream, ex.server, f, now);
            log::warn!(
                "upstream {} {addr}: {who}{why} ({}){}",
                up.name,
                f.name(),
                if down { "; marked down" } else { "" }
            );
        }
        let retry = matches!(
            f,
            Failure::Refused
                | Failure::ConnectTimeout
                | Failure::Reset
                | Failure::ReadTimeout
                | Failure::ErrorStatus
        );
        if replayable && retry && self.idempotent && self.retries > 0 {
            self.retries -= 1;
            ex.tried.push(ex.server);
            self.fresh_retry = false;
            ex.restart(now);
            return true;
        }
        false
    }
}
