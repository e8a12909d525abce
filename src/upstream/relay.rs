//! The response half of an exchange as pure bytes: the upstream's head parsed strictly,
//! the client's head written, and the body relayed into the client's buffer: passed on
//! as it came (Content-Length, validated chunked, until close), de-chunked (an HTTP/1.0
//! client), or decoded into `zin` for the streaming compressor (`offload::stream`), whose
//! output comes back through `compressed` and goes out chunked. No socket here: the
//! exchange reads into the buffer `read_buf` names and calls `absorb`; the fuzz target
//! `upstream_response` does the same with arbitrary bytes.
//!
//! Bounds: at most `OUT_MAX` unsent bytes in `out` and `ZIN_MAX` bytes waiting for the
//! compressor; `read_buf` offers no room past them, so the upstream is read only as fast
//! as the client (and the compressor) take bytes.

use super::Failure;
use crate::http::negotiate::{self, Coding};
use crate::http::request::{ChunkedDecoder, Limits};
use crate::http::upstream_response::{self, RespFraming, RespHead};

/// Unsent response bytes held per exchange (the backpressure bound).
pub const OUT_MAX: usize = 64 * 1024;
/// Largest upstream response head.
pub const RESP_HEAD_MAX: usize = 32 * 1024;
/// Decoded body bytes held for the compressor (one pool job's input at most).
pub const ZIN_MAX: usize = 64 * 1024;

/// How the client is framed and what it asked.
#[derive(Clone, Copy, Debug)]
pub struct ClientSide {
    pub http10: bool,
    pub keep_alive: bool,
    pub head_request: bool,
    /// None: this route never compresses for this client. `Some(Identity)`: it would, but
    /// the client accepts no coding the server makes (the answer still says `Vary`).
    pub compress: Option<Coding>,
}

/// What the server's `[compression]` says about a response, at its head.
#[derive(Clone, Copy)]
pub struct Policy<'a> {
    pub min_bytes: u64,
    pub types: &'a [String],
    /// The pool takes another stream (under its budget); else identity.
    pub admit: bool,
}

/// Where body bytes go on their way to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sink {
    /// In place in `out`, framing and all (the client reads the upstream's framing).
    Pass,
    /// Chunk data only, into `out` (chunked upstream, HTTP/1.0 client: close-delimited).
    Raw,
    /// Chunk data (or the bytes) into `zin`, for the compressor.
    Compress,
}

enum Resp {
    Head(Vec<u8>),
    Body {
        framing: RespFraming,
        left: u64,
        dec: Option<Box<ChunkedDecoder>>,
    },
    /// The upstream's body is all in; the compressor still has to say its last word.
    Draining {
        reusable: bool,
    },
    Done {
        reusable: bool,
    },
    /// `101` to an upgrade request: the 101 head (and what followed it) is in `out`; the
    /// connection becomes a tunnel (`upstream::tunnel`).
    Upgraded,
}

pub struct Relay {
    client: ClientSide,
    resp: Resp,
    sink: Sink,
    /// Raw upstream bytes, when they are decoded rather than passed (`Sink::Raw`/`Compress`).
    raw: Vec<u8>,
    /// Decoded body bytes waiting for the compressor.
    pub zin: Vec<u8>,
    /// The coding the body is being compressed with.
    pub coding: Option<Coding>,
    pub status: u16,
    /// Response body bytes put into `out`, as the client gets them (for the log).
    pub body_bytes: u64,
    /// The client has been sent (queued) a response head: errors now close it.
    pub head_out: bool,
    /// The client connection may stay open after this response.
    pub client_keep: bool,
    pub upstream_ka: Option<u64>,
    /// The request asked for an upgrade the route allows: a `101` starts a tunnel.
    pub upgrade: bool,
    /// Another server would take the request (`retries`): a 502/503/504 head is
    /// dropped unsent and the exchange fails with `Failure::ErrorStatus`.
    pub retry_status: bool,
}

/// Chunked limits for response bodies: no body limit, head-sized trailers.
const BODY_LIMITS: Limits = Limits {
    max_request_line: RESP_HEAD_MAX,
    max_header_bytes: RESP_HEAD_MAX,
    max_body_bytes: u64::MAX,
};

type Bad = (Failure, String);

impl Relay {
    pub fn new(client: ClientSide) -> Relay {
        Relay {
            client,
            resp: Resp::Head(Vec::new()),
            sink: Sink::Pass,
            raw: Vec::new(),
            zin: Vec::new(),
            coding: None,
            status: 0,
            body_bytes: 0,
            head_out: false,
            client_keep: client.keep_alive,
            upstream_ka: None,
            upgrade: false,
            retry_status: false,
        }
    }

    /// Start over for a retry (nothing of the response went out).
    pub fn restart(&mut self) {
        let upgrade = self.upgrade;
        *self = Relay::new(self.client);
        self.upgrade = upgrade;
    }

    /// The upstream answered `101`: the connection goes to a tunnel.
    pub fn upgraded(&self) -> bool {
        matches!(self.resp, Resp::Upgraded)
    }

    /// Nothing of the response arrived yet.
    pub fn untouched(&self) -> bool {
        matches!(&self.resp, Resp::Head(b) if b.is_empty())
    }

    pub fn in_head(&self) -> bool {
        matches!(self.resp, Resp::Head(_))
    }

    /// The upstream's part is over (the compressor may still be finishing).
    pub fn input_done(&self) -> bool {
        matches!(
            self.resp,
            Resp::Draining { .. } | Resp::Done { .. } | Resp::Upgraded
        )
    }

    /// The response is complete in `out` (perhaps not yet sent to the client).
    pub fn done(&self) -> bool {
        matches!(self.resp, Resp::Done { .. } | Resp::Upgraded)
    }

    /// The upstream connection can be pooled: the response ended exactly at its end.
    pub fn reusable(&self) -> bool {
        matches!(self.resp, Resp::Done { reusable: true })
    }

    pub fn compressing(&self) -> bool {
        self.sink == Sink::Compress
    }

    /// Where the next upstream bytes go (read into its spare end), and how many at most
    /// now; 0 in the head means the head is over its limit, in the body that a buffer
    /// is full. `unsent`: bytes of `out` the client has not taken yet.
    pub fn read_buf<'a>(
        &'a mut self,
        out: &'a mut Vec<u8>,
        unsent: usize,
    ) -> (&'a mut Vec<u8>, usize) {
        let out_room = OUT_MAX.saturating_sub(unsent);
        match (&mut self.resp, self.sink) {
            (Resp::Head(b), _) => {
                let room = RESP_HEAD_MAX - b.len().min(RESP_HEAD_MAX);
                (b, room)
            }
            (_, Sink::Pass) => (out, out_room),
            (_, Sink::Raw) => {
                self.raw.clear();
                (&mut self.raw, out_room)
            }
            (_, Sink::Compress) => {
                self.raw.clear();
                (
                    &mut self.raw,
                    ZIN_MAX.saturating_sub(self.zin.len()).min(out_room),
                )
            }
        }
    }

    /// Bytes were read at `at..` of the buffer `read_buf` named (the head's, `out` or the
    /// scratch buffer): take them in.
    pub fn absorb(&mut self, out: &mut Vec<u8>, at: usize, policy: &Policy) -> Result<(), Bad> {
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
                        crate::upstream::tunnel::write_upgrade_head(buf, out);
                        out.extend_from_slice(&rest);
                        self.status = 101;
                        self.head_out = true;
                        self.resp = Resp::Upgraded;
                        return Ok(());
                    }
                    // An interim response (100 Continue, 103): not forwarded.
                    buf.drain(..h.head_len);
                    continue;
                }
                if self.retry_status && (502..=504).contains(&h.status) {
                    // Nothing of it reaches the client: the exchange starts over elsewhere.
                    buf.clear();
                    return Err((Failure::ErrorStatus, format!("answered {}", h.status)));
                }
                let rest = buf.split_off(h.head_len);
                let head = std::mem::take(buf);
                return self.begin_body(&head, &h, rest, out, policy);
            }
        }
        match self.sink {
            Sink::Pass => self.take(out, at, None),
            Sink::Raw => {
                let mut raw = std::mem::take(&mut self.raw);
                let r = self.take(&mut raw, at, Some(out));
                self.raw = raw;
                r
            }
            Sink::Compress => {
                let mut raw = std::mem::take(&mut self.raw);
                let mut zin = std::mem::take(&mut self.zin);
                let r = self.take(&mut raw, at, Some(&mut zin));
                self.zin = zin;
                self.raw = raw;
                r
            }
        }
    }

    /// Body bytes at `buf[at..]`: passed (kept in `buf`, cut at the body's end) or, with a
    /// `sink`, their payload appended there (and `buf` cut at `at`).
    fn take(
        &mut self,
        buf: &mut Vec<u8>,
        at: usize,
        sink: Option<&mut Vec<u8>>,
    ) -> Result<(), Bad> {
        let got = buf.len() - at;
        let compress = self.sink == Sink::Compress;
        let Resp::Body { framing, left, dec } = &mut self.resp else {
            buf.truncate(at);
            return Ok(());
        };
        let (ended, reusable) = match framing {
            RespFraming::Length(_) => {
                let n = (got as u64).min(*left) as usize;
                *left -= n as u64;
                match sink {
                    Some(s) => {
                        s.extend_from_slice(&buf[at..at + n]);
                        buf.truncate(at);
                    }
                    None => buf.truncate(at + n),
                }
                if !compress {
                    self.body_bytes += n as u64;
                }
                (*left == 0, got == n)
            }
            RespFraming::Chunked => {
                let Some(d) = dec.as_mut() else {
                    return Err((Failure::BadResponse, "no decoder".into()));
                };
                let input = &buf[at..];
                let fed = match sink {
                    Some(s) => {
                        let before = s.len();
                        let r =
                            d.feed_spans(input, &BODY_LIMITS, |r| s.extend_from_slice(&input[r]));
                        if !compress {
                            self.body_bytes += (s.len() - before) as u64;
                        }
                        r.map(|(n, done)| (n, done, true))
                    }
                    None => d
                        .feed(input, &BODY_LIMITS)
                        .map(|(n, done)| (n, done, false)),
                };
                let (n, done, decoded) = fed
                    .map_err(|e| (Failure::BadResponse, format!("bad chunked body: {}", e.why)))?;
                if decoded {
                    buf.truncate(at);
                } else {
                    buf.truncate(at + n);
                    self.body_bytes += n as u64;
                }
                (done, n == got)
            }
            RespFraming::Close => {
                if let Some(s) = sink {
                    s.extend_from_slice(&buf[at..]);
                    buf.truncate(at);
                }
                if !compress {
                    self.body_bytes += got as u64;
                }
                (false, false)
            }
            RespFraming::None => {
                buf.truncate(at);
                (true, false)
            }
        };
        if ended {
            self.end_input(reusable);
        }
        Ok(())
    }

    fn end_input(&mut self, reusable: bool) {
        self.resp = if self.sink == Sink::Compress {
            Resp::Draining { reusable }
        } else {
            Resp::Done { reusable }
        };
    }

    /// How many body bytes may move as they are, bypassing `out` (splice): the rest of a
    /// Content-Length body, or any number of a close-delimited one; None otherwise.
    pub fn spliceable(&self) -> Option<u64> {
        if self.sink != Sink::Pass {
            return None;
        }
        match self.resp {
            Resp::Body {
                framing: RespFraming::Length(_),
                left,
                ..
            } => Some(left),
            Resp::Body {
                framing: RespFraming::Close,
                ..
            } => Some(u64::MAX),
            _ => None,
        }
    }

    /// `n` body bytes moved past `out` (at most what `spliceable` allowed).
    pub fn spliced(&mut self, n: usize) {
        self.body_bytes += n as u64;
        if let Resp::Body {
            framing: RespFraming::Length(_),
            left,
            ..
        } = &mut self.resp
        {
            *left = left.saturating_sub(n as u64);
            if *left == 0 {
                self.resp = Resp::Done { reusable: true };
            }
        }
    }

    /// The upstream closed: the end of a close-delimited body, else a cut response.
    pub fn eof(&mut self) -> Result<(), Bad> {
        match self.resp {
            Resp::Body {
                framing: RespFraming::Close,
                ..
            } => {
                self.end_input(false);
                Ok(())
            }
            Resp::Head(_) => Err((Failure::Reset, "upstream closed".into())),
            Resp::Draining { .. } | Resp::Done { .. } => Ok(()),
            _ => Err((Failure::Truncated, "upstream closed".into())),
        }
    }

    /// A failed read: what it counts as.
    pub fn eof_failure(&self) -> Failure {
        match self.resp {
            Resp::Head(_) => Failure::Reset,
            _ => Failure::Truncated,
        }
    }

    /// What the compressor should be given now: `(input, last)`, or None when it has
    /// nothing to do (no input and the upstream's body is not over).
    pub fn next_job(&mut self, spare: Vec<u8>) -> Option<(Vec<u8>, bool)> {
        if self.sink != Sink::Compress || self.done() {
            return None;
        }
        let last = matches!(self.resp, Resp::Draining { .. });
        if self.zin.is_empty() && !last {
            return None;
        }
        let mut input = spare;
        input.clear();
        std::mem::swap(&mut input, &mut self.zin);
        Some((input, last))
    }

    /// The compressor's output for one job: framed into `out` (a chunk; after the `last`
    /// job the final one and the response is complete).
    pub fn compressed(&mut self, out: &mut Vec<u8>, bytes: &[u8], last: bool) {
        let chunked = !self.client.http10;
        if !bytes.is_empty() {
            if chunked {
                let mut hex = [0u8; 16];
                out.extend_from_slice(hex_len(bytes.len(), &mut hex));
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(bytes);
            if chunked {
                out.extend_from_slice(b"\r\n");
            }
            self.body_bytes += bytes.len() as u64;
        }
        if last {
            if chunked {
                out.extend_from_slice(b"0\r\n\r\n");
            }
            if let Resp::Draining { reusable } = self.resp {
                self.resp = Resp::Done { reusable };
            }
        }
    }

    /// The head is parsed: write the client's head into `out`, then treat `rest` as the
    /// first body bytes.
    fn begin_body(
        &mut self,
        head: &[u8],
        h: &RespHead,
        rest: Vec<u8>,
        out: &mut Vec<u8>,
        policy: &Policy,
    ) -> Result<(), Bad> {
        self.status = h.status;
        self.upstream_ka = h.keep_alive_timeout;
        let coding = self.choose_coding(head, h, policy);
        self.sink = if matches!(coding, Some(c) if c != Coding::Identity) {
            Sink::Compress
        } else if h.framing == RespFraming::Chunked && self.client.http10 {
            // HTTP/1.0 has no chunked: the data alone, delimited by the close.
            Sink::Raw
        } else {
            Sink::Pass
        };
        if self.sink == Sink::Compress {
            self.coding = coding;
        }
        if h.framing == RespFraming::Close
            || (self.client.http10 && self.sink != Sink::Pass && h.framing != RespFraming::None)
        {
            self.client_keep = false;
        }
        write_client_head(head, h, self, coding.is_some(), out);
        self.head_out = true;
        let left = match h.framing {
            RespFraming::Length(n) => n,
            _ => 0,
        };
        self.resp = match h.framing {
            RespFraming::None | RespFraming::Length(0) => Resp::Done {
                reusable: h.keep_alive && rest.is_empty(),
            },
            f => Resp::Body {
                framing: f,
                left,
                dec: (f == RespFraming::Chunked).then(Box::default),
            },
        };
        if let Resp::Done { .. } = self.resp {
            if self.sink == Sink::Compress {
                // An empty body still gets a (tiny) compressed stream.
                let reusable = self.reusable();
                self.resp = Resp::Draining { reusable };
            }
        }
        if !rest.is_empty() && matches!(self.resp, Resp::Body { .. }) {
            match self.sink {
                Sink::Pass => {
                    let at = out.len();
                    out.extend_from_slice(&rest);
                    self.take(out, at, None)?;
                }
                Sink::Raw => {
                    let mut r = rest;
                    self.take(&mut r, 0, Some(out))?;
                }
                Sink::Compress => {
                    let mut r = rest;
                    let mut zin = std::mem::take(&mut self.zin);
                    let res = self.take(&mut r, 0, Some(&mut zin));
                    self.zin = zin;
                    res?;
                }
            }
        }
        if !h.keep_alive {
            match &mut self.resp {
                Resp::Done { reusable } | Resp::Draining { reusable } => *reusable = false,
                _ => {}
            }
            self.upstream_ka = Some(0);
        }
        Ok(())
    }

    /// The coding to compress this response with: None when it is not a candidate at
    /// all, `Some(Identity)` when it is but this client gets it as it is (`Vary` still
    /// says it may differ), nginx's gzip rules otherwise: status 200, 403 or 404, a body,
    /// a compressible type, no Content-Encoding (an upstream's coding passes untouched),
    /// not `Cache-Control: no-transform` (RFC 9110 7.7), not shorter than `min_bytes`.
    fn choose_coding(&self, head: &[u8], h: &RespHead, policy: &Policy) -> Option<Coding> {
        let want = self.client.compress?;
        if !matches!(h.status, 200 | 403 | 404) || h.framing == RespFraming::None {
            return None;
        }
        let mut mime_ok = false;
        let mut encoded = false;
        let mut no_transform = false;
        let mut ranged = false;
        upstream_response::fields(head, |name, value, _| {
            if name.eq_ignore_ascii_case(b"content-type") {
                let essence = value.split(|&b| b == b';').next().unwrap_or_default();
                mime_ok = std::str::from_utf8(essence)
                    .is_ok_and(|m| negotiate::mime_matches(m.trim(), policy.types));
            } else if name.eq_ignore_ascii_case(b"content-encoding") {
                encoded |= !value.is_empty();
            } else if name.eq_ignore_ascii_case(b"cache-control") {
                no_transform |= value
                    .split(|&b| b == b',')
                    .any(|d| crate::http::token::trim(d).eq_ignore_ascii_case(b"no-transform"));
            } else if name.eq_ignore_ascii_case(b"content-range") {
                ranged = true;
            }
        });
        if !mime_ok || encoded || no_transform || ranged {
            return None;
        }
        if let RespFraming::Length(n) = h.framing {
            if n < policy.min_bytes.max(1) {
                return None;
            }
        }
        if want == Coding::Identity || !policy.admit {
            return Some(Coding::Identity);
        }
        Some(want)
    }
}

fn hex_len(n: usize, buf: &mut [u8; 16]) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = HEX[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// The response head the client gets: vireo's status line, the upstream's end-to-end
/// fields (hop-by-hop ones and those `Connection` names dropped), `Via`, the framing and
/// the client connection's fate. Compressed: Content-Length and Accept-Ranges dropped,
/// Content-Encoding added, a strong ETag weakened (nginx does the same: the bytes differ
/// from the upstream's representation). `vary`: the response's coding depends on
/// Accept-Encoding.
fn write_client_head(head: &[u8], h: &RespHead, r: &Relay, vary: bool, out: &mut Vec<u8>) {
    let client = r.client;
    let keep = r.client_keep;
    let compressed = r.sink == Sink::Compress;
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(h.status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(upstream_response::reason(h.status).as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut via: Option<Vec<u8>> = None;
    let mut varied = false;
    let mut length_seen = false;
    upstream_response::fields(head, |name, value, connection_named| {
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if upstream_response::is_hop_by_hop(name) || connection_named {
            return;
        }
        if is("content-length") {
            // Bodiless (HEAD, 304): the upstream's one length (repeats of an equal value
            // were accepted) goes on once; otherwise vireo writes the framing.
            if h.framing != RespFraming::None || compressed || length_seen {
                return;
            }
            length_seen = true;
        }
        if compressed && is("accept-ranges") {
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
        if compressed && is("etag") && !value.starts_with(b"W/") {
            out.extend_from_slice(b"W/");
        }
        out.extend_from_slice(value);
        if vary && is("vary") && !varied {
            varied = true;
            let listed = value.split(|&b| b == b',').any(|t| {
                let t = crate::http::token::trim(t);
                t == b"*" || t.eq_ignore_ascii_case(b"accept-encoding")
            });
            if !listed {
                out.extend_from_slice(b", Accept-Encoding");
            }
        }
        out.extend_from_slice(b"\r\n");
    });
    if vary && !varied {
        out.extend_from_slice(b"Vary: Accept-Encoding\r\n");
    }
    if let (true, Some(c)) = (compressed, r.coding) {
        out.extend_from_slice(b"Content-Encoding: ");
        out.extend_from_slice(c.as_str().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Via: ");
    if let Some(v) = via {
        out.extend_from_slice(&v);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(b"1.1 vireo\r\n");
    match h.framing {
        RespFraming::Length(n) if !compressed => {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        RespFraming::None => {}
        _ if !client.http10 && (h.framing == RespFraming::Chunked || compressed) => {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n")
        }
        _ => {}
    }
    if !keep {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if client.http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// What `ClientSide::compress` is for a request: None when the route or `[compression]`
/// rules compression out (off, no on-the-fly codings, HTTP/1.0 without
/// `compression.http10`, HEAD), else the best coding the client accepts among
/// `compression.codings` (`Identity`: none).
pub fn client_coding(
    c: &crate::config::Compression,
    route: bool,
    http10: bool,
    head_request: bool,
    accept_encoding: Option<&[u8]>,
) -> Option<Coding> {
    if !route || !c.enabled || c.codings.is_empty() || (http10 && !c.http10) || head_request {
        return None;
    }
    Some(negotiate::choose_encoding(accept_encoding, &c.codings).unwrap_or(Coding::Identity))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPES: &[&str] = &["text/*"];

    /// Feed `input` whole; the client's bytes (head and body) and whether it finished.
    fn relay(input: &[u8], client: ClientSide) -> (Vec<u8>, bool) {
        let types: Vec<String> = TYPES.iter().map(|t| t.to_string()).collect();
        let policy = Policy {
            min_bytes: 0,
            types: &types,
            admit: true,
        };
        let mut r = Relay::new(client);
        let mut out = Vec::new();
        let mut pos = 0;
        while !r.input_done() && pos < input.len() {
            let (buf, want) = r.read_buf(&mut out, 0);
            let at = buf.len();
            let n = want.min(input.len() - pos);
            buf.extend_from_slice(&input[pos..pos + n]);
            pos += n;
            r.absorb(&mut out, at, &policy).expect("absorb");
        }
        (out, r.done())
    }

    fn client(http10: bool, compress: Option<Coding>) -> ClientSide {
        ClientSide {
            http10,
            keep_alive: true,
            head_request: false,
            compress,
        }
    }

    #[test]
    fn an_error_status_is_dropped_unsent_only_when_armed_and_the_relay_starts_clean() {
        let types: Vec<String> = Vec::new();
        let policy = Policy {
            min_bytes: 0,
            types: &types,
            admit: false,
        };
        for (status, armed, dropped) in [
            (503, true, true),
            (502, true, true),
            (504, true, true),
            (500, true, false),
            (503, false, false),
            (200, true, false),
        ] {
            let mut r = Relay::new(client(false, None));
            r.retry_status = armed;
            let input = format!("HTTP/1.1 {status} X\r\nContent-Length: 2\r\n\r\nno");
            let mut out = Vec::new();
            let (buf, _) = r.read_buf(&mut out, 0);
            buf.extend_from_slice(input.as_bytes());
            let got = r.absorb(&mut out, 0, &policy);
            if dropped {
                assert!(matches!(got, Err((Failure::ErrorStatus, _))), "{status}");
                assert!(
                    out.is_empty() && !r.head_out,
                    "{status}: nothing for the client"
                );
                assert!(r.untouched(), "{status}: a retry may replay the request");
            } else {
                assert!(got.is_ok(), "{status} armed={armed}");
                assert!(out.starts_with(format!("HTTP/1.1 {status} ").as_bytes()));
            }
        }
    }

    #[test]
    fn a_bodiless_answer_forwards_one_content_length() {
        let (out, done) = relay(
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            client(false, None),
        );
        assert!(done);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("Content-Length").count(), 1, "{text}");
    }

    #[test]
    fn chunked_goes_to_an_http10_client_as_its_data() {
        let (out, done) = relay(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n",
            client(true, None),
        );
        assert!(done);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("Connection: close\r\n\r\nabcde"), "{text}");
        assert!(!text.contains("chunked"), "{text}");
    }

    #[test]
    fn only_candidates_are_compressed_and_vary_says_so() {
        let gz = Some(Coding::Gzip);
        for (resp, coding, vary) in [
            ("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 3\r\n\r\nabc", true, true),
            ("HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 3\r\n\r\nabc", false, false),
            ("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: br\r\nContent-Length: 3\r\n\r\nabc", false, false),
            ("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nCache-Control: public, no-transform\r\nContent-Length: 3\r\n\r\nabc", false, false),
            ("HTTP/1.1 206 Partial Content\r\nContent-Type: text/html\r\nContent-Range: bytes 0-2/9\r\nContent-Length: 3\r\n\r\nabc", false, false),
        ] {
            let (out, _) = relay(resp.as_bytes(), client(false, gz));
            let text = String::from_utf8_lossy(&out).to_string();
            assert_eq!(text.contains("Content-Encoding: gzip"), coding, "{resp}: {text}");
            assert_eq!(text.contains("Vary: Accept-Encoding"), vary, "{resp}: {text}");
        }
        // A client without the coding: identity, but the answer varies.
        let (out, done) = relay(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nabc",
            client(false, Some(Coding::Identity)),
        );
        let text = String::from_utf8(out).unwrap();
        assert!(
            done && text.ends_with("Content-Length: 3\r\n\r\nabc"),
            "{text}"
        );
        assert!(text.contains("Vary: Accept-Encoding"), "{text}");
    }
}
