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
//! Backpressure: the response is read only into `out`, at most `OUT_MAX` (64 KiB) unsent
//! bytes per exchange, so the upstream is read exactly as fast as the client takes bytes;
//! request bodies wait in at most `BODY_MAX` (64 KiB) bytes on the way up. Chunked
//! response bodies are validated chunk by chunk and passed on as they are (an HTTP/1.1
//! client reads the same framing); Content-Length bodies pass with their length.

use crate::http::request::{ChunkedDecoder, Limits};
use crate::http::upstream_response::{self, RespFraming, RespHead};
use crate::http::HttpError;
use crate::upstream::pool::{UpKey, Upstreams};
use crate::upstream::Failure;
use std::io::{self, Read, Write};
use std::time::Instant;

/// Unsent response bytes held per exchange (the backpressure bound).
pub const OUT_MAX: usize = 64 * 1024;
/// Request body bytes held per exchange on their way up.
pub const BODY_MAX: usize = 64 * 1024;
/// Largest upstream response head.
pub const RESP_HEAD_MAX: usize = 32 * 1024;

enum ReqBody {
    Done,
    Length(u64),
    Chunked(Box<ChunkedDecoder>),
}

enum Resp {
    Head(Vec<u8>),
    Body {
        framing: RespFraming,
        left: u64,
        dec: Option<Box<ChunkedDecoder>>,
    },
    Done {
        reusable: bool,
    },
    /// `101` to an upgrade request: the 101 head (and what followed it) is in `out`; the
    /// connection becomes a tunnel (`upstream::tunnel`).
    Upgraded,
}

/// What the upstream deadline is counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waiting {
    Connect,
    Send,
    Read,
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

/// How the client is framed and what it asked.
#[derive(Clone, Copy)]
pub struct ClientSide {
    pub http10: bool,
    pub keep_alive: bool,
    pub head_request: bool,
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
    /// Some body byte went to the upstream: the request cannot be replayed.
    pub body_sent: bool,
    resp: Resp,
    pub out: Vec<u8>,
    pub out_pos: usize,
    pub status: u16,
    /// Response body bytes put into `out` (for the log).
    pub body_bytes: u64,
    /// The client has been sent (queued) a response head: errors now close it.
    pub head_out: bool,
    /// The client connection may stay open after this response.
    pub client_keep: bool,
    client: ClientSide,
    upstream_ka: Option<u64>,
    pub waiting: Waiting,
    /// Start of the current upstream countdown.
    pub since: Instant,
    pub started: Instant,
    /// The request asked for an upgrade the route allows: a `101` starts a tunnel.
    pub upgrade: bool,
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
            resp: Resp::Head(Vec::new()),
            out: Vec::new(),
            out_pos: 0,
            status: 0,
            body_bytes: 0,
            head_out: false,
            client_keep: client.keep_alive,
            client,
            upstream_ka: None,
            waiting: Waiting::Connect,
            since: now,
            started: now,
            upgrade: false,
        }
    }

    /// The upstream answered `101`: hand the connection to a tunnel.
    pub fn upgraded(&self) -> bool {
        matches!(self.resp, Resp::Upgraded)
    }

    /// The request body is all read from the client.
    pub fn body_done(&self) -> bool {
        matches!(self.body, ReqBody::Done)
    }

    /// The response is complete (its bytes may still be in `out`).
    pub fn response_done(&self) -> bool {
        matches!(self.resp, Resp::Done { .. })
    }

    /// Whether a failure now can be retried on another connection: nothing of the
    /// response arrived and the request can be sent again whole.
    pub fn replayable(&self) -> bool {
        !self.body_sent && matches!(&self.resp, Resp::Head(b) if b.is_empty())
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
        if done {
            self.body = ReqBody::Done;
        }
        Ok(n)
    }

    /// Start over on another connection (a retry): the head goes out again.
    pub fn restart(&mut self, now: Instant) {
        self.conn = None;
        self.req = self.head.clone();
        self.req_pos = 0;
        self.written = 0;
        self.resp = Resp::Head(Vec::new());
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
        match self.resp {
            Resp::Done { reusable } => (reusable && whole, self.upstream_ka),
            _ => (false, None),
        }
    }

    /// Move bytes: request out while the upstream takes them, response in while `out`
    /// has room.
    pub fn pump(&mut self, ups: &mut Upstreams, now: Instant) -> Step {
        let Some(k) = self.conn else {
            return Step::Failed(Failure::NoServer, "no connection".into());
        };
        let Some(c) = ups.get(k) else {
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
            if matches!(self.resp, Resp::Done { .. } | Resp::Upgraded) {
                return Step::Done;
            }
            if !c.readable {
                return Step::Blocked;
            }
            // Response bytes in, only into the room `out` has.
            if self.out.len() - self.out_pos >= OUT_MAX {
                return Step::Blocked;
            }
            let in_head = matches!(self.resp, Resp::Head(_));
            let buf = match &mut self.resp {
                Resp::Head(b) => b,
                _ => &mut self.out,
            };
            let at = buf.len();
            let want = if in_head {
                RESP_HEAD_MAX - at
            } else {
                OUT_MAX - (at - self.out_pos)
            };
            if want == 0 {
                return Step::Failed(Failure::BadResponse, "response head over the limit".into());
            }
            buf.resize(at + want, 0);
            let r = c.sock.read(&mut buf[at..]);
            let got = match r {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    buf.truncate(at);
                    c.readable = false;
                    return Step::Blocked;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    buf.truncate(at);
                    continue;
                }
                Err(e) => {
                    buf.truncate(at);
                    return Step::Failed(self.eof_failure(), format!("read: {e}"));
                }
            };
            buf.truncate(at + got);
            if got < want {
                c.readable = c.hup; // a short read drains an edge-triggered socket
            }
            self.since = now;
            if got == 0 {
                c.readable = false;
                c.hup = true;
                if let Resp::Body {
                    framing: RespFraming::Close,
                    ..
                } = self.resp
                {
                    self.resp = Resp::Done { reusable: false };
                    return Step::Done;
                }
                return Step::Failed(self.eof_failure(), "upstream closed".into());
            }
            if let Err((f, why)) = self.absorb(at, got) {
                return Step::Failed(f, why);
            }
        }
    }

    fn eof_failure(&self) -> Failure {
        match self.resp {
            Resp::Head(_) => Failure::Reset,
            _ => Failure::Truncated,
        }
    }

    /// New bytes arrived at `at..at+got` of the head buffer or of `out`.
    fn absorb(&mut self, at: usize, got: usize) -> Result<(), (Failure, String)> {
        if let Resp::Head(buf) = &mut self.resp {
            loop {
                let h = match upstream_response::parse(buf, RESP_HEAD_MAX, self.client.head_request)
                {
                    Ok(None) => return Ok(()),
                    Ok(Some(h)) => h,
                    Err(why) => return Err((Failure::BadResponse, why.into())),
                };
                if (100..200).contains(&h.status) {
                    if h.status == 101 {
                        if !self.upgrade {
                            return Err((Failure::BadResponse, "101 without a tunnel".into()));
                        }
                        let rest = buf.split_off(h.head_len);
                        crate::upstream::tunnel::write_upgrade_head(buf, &mut self.out);
                        self.out.extend_from_slice(&rest);
                        self.status = 101;
                        self.head_out = true;
                        self.resp = Resp::Upgraded;
                        return Ok(());
                    }
                    // An interim response (100 Continue, 103): not forwarded.
                    buf.drain(..h.head_len);
                    continue;
                }
                let rest = buf.split_off(h.head_len);
                let head = std::mem::take(buf);
                return self.begin_body(&head, &h, rest);
            }
        }
        let Resp::Body { framing, left, dec } = &mut self.resp else {
            self.out.truncate(at);
            return Ok(());
        };
        match framing {
            RespFraming::Length(_) => {
                let n = (got as u64).min(*left);
                *left -= n;
                let extra = got as u64 > n;
                self.out.truncate(at + n as usize);
                self.body_bytes += n;
                if *left == 0 {
                    self.resp = Resp::Done { reusable: !extra };
                }
            }
            RespFraming::Chunked => {
                let limits = Limits {
                    max_request_line: RESP_HEAD_MAX,
                    max_header_bytes: RESP_HEAD_MAX,
                    max_body_bytes: u64::MAX,
                };
                let Some(d) = dec.as_mut() else {
                    return Err((Failure::BadResponse, "no decoder".into()));
                };
                let (n, done) = d
                    .feed(&self.out[at..at + got], &limits)
                    .map_err(|e| (Failure::BadResponse, format!("bad chunked body: {}", e.why)))?;
                self.out.truncate(at + n);
                self.body_bytes += n as u64;
                if done {
                    self.resp = Resp::Done { reusable: n == got };
                }
            }
            RespFraming::Close => self.body_bytes += got as u64,
            RespFraming::None => {
                self.out.truncate(at);
                self.resp = Resp::Done { reusable: false };
            }
        }
        Ok(())
    }

    /// The head is parsed: write the client's head into `out`, then treat `rest` as the
    /// first body bytes.
    fn begin_body(
        &mut self,
        head: &[u8],
        h: &RespHead,
        rest: Vec<u8>,
    ) -> Result<(), (Failure, String)> {
        if h.framing == RespFraming::Chunked && self.client.http10 {
            return Err((
                Failure::BadResponse,
                "chunked response to an HTTP/1.0 request".into(),
            ));
        }
        self.status = h.status;
        self.upstream_ka = h.keep_alive_timeout;
        if h.framing == RespFraming::Close {
            self.client_keep = false;
        }
        write_client_head(head, h, self.client, self.client_keep, &mut self.out);
        self.head_out = true;
        let left = match h.framing {
            RespFraming::Length(n) => n,
            _ => 0,
        };
        self.resp = match h.framing {
            RespFraming::None => Resp::Done {
                reusable: h.keep_alive && rest.is_empty(),
            },
            RespFraming::Length(0) => Resp::Done {
                reusable: h.keep_alive && rest.is_empty(),
            },
            f => Resp::Body {
                framing: f,
                left,
                dec: (f == RespFraming::Chunked).then(Box::default),
            },
        };
        if !h.keep_alive {
            if let Resp::Done { reusable } = &mut self.resp {
                *reusable = false;
            }
        }
        let keep = h.keep_alive;
        if !rest.is_empty() && matches!(self.resp, Resp::Body { .. }) {
            let at = self.out.len();
            self.out.extend_from_slice(&rest);
            self.absorb(at, rest.len())?;
        }
        if !keep {
            if let Resp::Done { reusable } = &mut self.resp {
                *reusable = false;
            }
            self.upstream_ka = Some(0);
        }
        Ok(())
    }
}

/// The response head the client gets: vireo's status line, the upstream's end-to-end
/// fields (hop-by-hop ones and those `Connection` names dropped), `Via`, the framing and
/// the client connection's fate.
fn write_client_head(head: &[u8], h: &RespHead, client: ClientSide, keep: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(h.status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(upstream_response::reason(h.status).as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut via: Option<Vec<u8>> = None;
    upstream_response::fields(head, |name, value, connection_named| {
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if upstream_response::is_hop_by_hop(name) || connection_named {
            return;
        }
        if is("content-length") && h.framing != RespFraming::None {
            return;
        }
        if is("via") {
            let v = via.get_or_insert_with(Vec::new);
            if !v.is_empty() {
                v.extend_from_slice(b", ");
            }
            v.extend_from_slice(value);
            return;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    });
    out.extend_from_slice(b"Via: ");
    if let Some(v) = via {
        out.extend_from_slice(&v);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(b"1.1 vireo\r\n");
    match h.framing {
        RespFraming::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        RespFraming::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        _ => {}
    }
    if !keep {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if client.http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}
