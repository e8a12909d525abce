//! An HTTP/1.1 request the route sent to an upstream (`Job::Proxy`): the connection owns
//! the exchange (`upstream::exchange`) and moves bytes between its own socket and the
//! exchange's bounded buffers; the upstream socket lives in the reactor's `Upstreams`
//! (same Poll, its own tokens), whose events drive this connection.
//!
//! Responses go out in request order: earlier pipelined responses are flushed before the
//! exchange writes, and the next pipelined request is parsed only after it. The client is
//! read only for the request body; what follows waits in the inbox.

use super::*;
use crate::config::ProxyRule;
use crate::upstream::exchange::{Attempts, ClientSide, Exchange, Step, Waiting};
use crate::upstream::pool::AcquireError;
use crate::upstream::tunnel::{Tunnel, TunnelStep};
use crate::upstream::Failure;

pub(super) struct Proxying {
    ex: Exchange,
    framing: Framing,
    /// The request line and headers for the access log, copied only when logging.
    log: Option<Box<account::Owned>>,
    site: usize,
    /// Which site answered (`Sites::index_of`): its error pages answer a failure.
    site_index: usize,
    tries: Attempts,
    /// The upstream answered `101`: bytes now pass both ways untouched.
    tunnel: Option<Box<Tunnel>>,
}

/// Build the exchange for `rule`: the re-serialised head, the body framing. Err: the
/// status to answer instead.
pub(crate) fn begin(
    head: &request::RequestHead,
    buf: &[u8],
    config: &crate::config::Config,
    rule: &ProxyRule,
    peer: std::net::SocketAddr,
    https: bool,
    now: Instant,
) -> Result<Exchange, u16> {
    let Some(up) = config.upstreams.get(rule.upstream) else {
        return Err(502);
    };
    if let BodyFraming::Length(n) = head.framing {
        if n > rule.max_body_bytes {
            return Err(413);
        }
    }
    let client = crate::upstream::request::Client {
        ip: peer.ip(),
        https,
    };
    let mut out = Vec::with_capacity(head.head_len + 256);
    let fallback = up.servers.first().map_or("localhost", |s| &*s.text);
    // An upgrade (`websocket = true` only; without it the request goes as a plain one,
    // as through nginx without the upgrade headers): `Upgrade` and `Connection: upgrade`
    // go up, and a `101` turns the connection into a tunnel.
    let upgrade = match rule.websocket && head.framing == BodyFraming::None {
        true => crate::upstream::tunnel::upgrade_of(&buf[..head.head_len]),
        false => None,
    };
    if !crate::upstream::request::write_head(
        head,
        buf,
        rule,
        &client,
        fallback,
        up.keepalive == 0 && upgrade.is_none(),
        &mut out,
    ) {
        return Err(400);
    }
    if let Some(u) = &upgrade {
        // Before the blank line that ends the head.
        out.truncate(out.len() - 2);
        out.extend_from_slice(b"Upgrade: ");
        out.extend_from_slice(u);
        out.extend_from_slice(b"\r\nConnection: upgrade\r\n\r\n");
    }
    let (len, chunked) = match head.framing {
        BodyFraming::None => (None, false),
        BodyFraming::Length(n) => (Some(n), false),
        BodyFraming::Chunked => (None, true),
    };
    let mut ex = Exchange::new(
        rule.upstream,
        out,
        len,
        chunked,
        rule.max_body_bytes,
        ClientSide {
            http10: head.version == crate::http::Version::Http10,
            keep_alive: head.keep_alive,
            head_request: head.method == crate::http::Method::Head,
            compress: crate::upstream::relay::client_coding(
                &config.compression,
                rule.compress,
                head.version == crate::http::Version::Http10,
                head.method == crate::http::Method::Head,
                head.accept_encoding.map(|s| s.get(buf)),
            ),
        },
        now,
    );
    ex.relay.upgrade = upgrade.is_some();
    Ok(ex)
}

/// The client connection as the tunnel sees it.
struct TunnelClient<'a, S> {
    stream: &'a mut S,
    io: &'a mut crate::net::recv::Readiness,
}

impl<S: Transport> crate::upstream::tunnel::ClientSide for TunnelClient<'_, S> {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        let r = self.stream.read(b);
        if let Ok(0) = r {
            self.io.eof = true;
        }
        r
    }
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.stream.write(b)
    }
    fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown_write();
    }
    fn short_read_drains(&self) -> bool {
        self.stream.short_read_drains()
    }
    fn readable(&mut self) -> &mut bool {
        &mut self.io.readable
    }
    fn writable(&mut self) -> &mut bool {
        &mut self.io.writable
    }
    fn read_closed(&self) -> bool {
        self.io.read_closed
    }
}

impl<S: Transport> Conn<S> {
    pub fn is_proxying(&self) -> bool {
        matches!(self.phase, Phase::Proxy(_))
    }

    /// The route said "proxy": the head is consumed, the exchange starts.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start_proxy(
        &mut self,
        ex: Exchange,
        framing: Framing,
        log: Option<Box<account::Owned>>,
        site: usize,
        site_index: usize,
        method: crate::http::Method,
        hash: u64,
        retries: u32,
    ) {
        self.phase = Phase::Proxy(Box::new(Proxying {
            ex,
            framing,
            log,
            site,
            site_index,
            tries: Attempts::new(method, retries, hash),
            tunnel: None,
        }));
    }

    /// An upgraded connection: bytes both ways until either side ends it or it idles
    /// past the upstream set's `read_timeout`.
    pub fn is_tunnel(&self) -> bool {
        matches!(&self.phase, Phase::Proxy(p) if p.tunnel.is_some())
    }

    /// The upstream said `101`: the exchange's connection, its `out` (the 101 head and
    /// what followed) and what the client sent after its request become a tunnel.
    fn start_tunnel(&mut self, cx: &mut Cx) -> Next {
        let Phase::Proxy(p) = &mut self.phase else {
            return Next::Close;
        };
        let Some(k) = p.ex.conn else {
            return Next::Close;
        };
        cx.upstreams
            .health()
            .succeeded(p.ex.upstream, p.ex.server, 101);
        let early_up = self
            .busy
            .as_mut()
            .map(|b| {
                let v = b.rx.pending().to_vec();
                b.rx.consume(v.len());
                v
            })
            .unwrap_or_default();
        let t = Tunnel::new(k, &early_up, p.ex.pending_out(), cx.now);
        p.ex.took_out(p.ex.pending_out().len());
        p.tunnel = Some(Box::new(t));
        // The inbox and outbox are empty now: give them back for the tunnel's life.
        self.release_buffers(cx);
        self.drive_tunnel(cx)
    }

    fn drive_tunnel(&mut self, cx: &mut Cx) -> Next {
        let Phase::Proxy(p) = &mut self.phase else {
            return Next::Close;
        };
        let Some(t) = p.tunnel.as_mut() else {
            return Next::Close;
        };
        let mut client = TunnelClient {
            stream: &mut self.stream,
            io: &mut self.io,
        };
        let sent = t.bytes_down;
        let step = t.pump(&mut client, cx.upstreams, cx.turn_budget, cx.now);
        p.ex.relay.body_bytes += t.bytes_down - sent;
        match step {
            TunnelStep::Blocked => {
                let idle = cx.upstreams.conf()[p.ex.upstream].read_timeout;
                Next::Wait(Class::Upstream, t.last + idle)
            }
            TunnelStep::Yield => Next::Yield,
            TunnelStep::Closed => Next::Close,
            TunnelStep::Failed(why) => {
                log::debug!("{}: tunnel ended: {why}", self.peer.addr());
                Next::Close
            }
        }
    }

    /// Relay as far as both sockets allow.
    pub(super) fn drive_proxy(&mut self, sites: &mut Sites, cx: &mut Cx) -> Next {
        if self.is_tunnel() {
            return self.drive_tunnel(cx);
        }
        // Anything queued before (an interim 100 Continue) goes first.
        let mut budget = cx.turn_budget;
        let mut cold = None;
        match busy(&mut self.busy, cx.spares).tx.flush(
            &mut self.stream,
            &mut self.io.writable,
            &mut budget,
            &mut cold,
        ) {
            Ok(Flush::Done) => {}
            Ok(Flush::Blocked) => return Next::Wait(Class::Send, self.progress_since.instant()),
            Ok(_) => return Next::Yield,
            Err(_) => return Next::Close,
        }
        let mut sent: u64 = 0;
        loop {
            let Phase::Proxy(p) = &mut self.phase else {
                return Next::Yield;
            };
            if p.ex.conn.is_none() {
                let fresh = p.tries.fresh_retry;
                let tried = p.ex.tried.clone();
                match cx.upstreams.acquire(
                    p.ex.upstream,
                    (cx.slot, cx.generation),
                    &tried,
                    fresh,
                    p.tries.hash,
                    cx.now,
                ) {
                    Ok((k, server, reused)) => {
                        p.ex.attach(k, server, reused, cx.upstreams, cx.now);
                        p.tries.arm(&mut p.ex, cx.upstreams, cx.now);
                    }
                    Err(AcquireError::NoServer) => {
                        if cx.upstreams.health().all_checked_down(p.ex.upstream) {
                            // Every server failed its active check: unavailable, not
                            // broken (nginx Plus answers 502 here; 503 says "retry later").
                            log::warn!(
                                "upstream {}: every server is down by its health check",
                                cx.upstreams.conf()[p.ex.upstream].name
                            );
                            return self.proxy_answer(503, sites, cx);
                        }
                        if let Some(f) = p.tries.last {
                            // Every server was tried: the last failure (already logged
                            // and counted) is the answer.
                            return self.proxy_answer(f.status(), sites, cx);
                        }
                        return self.proxy_failed(
                            Failure::NoServer,
                            "no server available".into(),
                            sites,
                            cx,
                        );
                    }
                    Err(AcquireError::Connect(addr, e)) => {
                        p.ex.server = cx.upstreams.conf()[p.ex.upstream]
                            .servers
                            .iter()
                            .position(|s| *s.text == *addr)
                            .unwrap_or(0);
                        let f = if e.kind() == io::ErrorKind::TimedOut {
                            Failure::ConnectTimeout
                        } else {
                            Failure::Refused
                        };
                        return self.proxy_failed(f, format!("connect: {e}"), sites, cx);
                    }
                }
            }
            // The request body, as it arrives.
            let mut fed = 0;
            if !p.ex.body_done() {
                let b = busy(&mut self.busy, cx.spares);
                match p.ex.feed_body(b.rx.pending()) {
                    Ok(n) => {
                        b.rx.consume(n);
                        fed = n;
                    }
                    Err(e) => {
                        log::debug!("bad proxied request body: {} ({})", e.status, e.why);
                        return self.proxy_client_error(e.status, cx);
                    }
                }
                if !p.ex.body_done() && !b.rx.has_pending() && p.ex.body_room() > 0 {
                    if self.io.eof {
                        return Next::Close; // the client gave up mid-body
                    }
                    if self.io.readable {
                        match self.fill(sites, cx) {
                            Ok(true) => continue,
                            Ok(false) => {}
                            Err(_) => return Next::Close,
                        }
                    }
                }
            }
            let Phase::Proxy(p) = &mut self.phase else {
                return Next::Yield;
            };
            let pool = sites.offload();
            let policy = crate::upstream::exchange::policy(&sites.config().compression, pool);
            p.ex.splice_to =
                crate::upstream::splice::enabled() && self.stream.splice_fd().is_some();
            let room = p.ex.body_room();
            let mut step = p.ex.pump(cx.upstreams, cx.now, &policy);
            // Body bytes went up: room for what the inbox still holds (no event will say
            // so if the upstream took them all).
            let freed = p.ex.body_room() > room;
            // A compressed body: its chunks to the pool and back, in order.
            let squeezed = match p
                .ex
                .compress_step(pool, cx.notifier, cx.slot, cx.generation)
            {
                Ok(moved) => moved,
                Err((f, why)) => {
                    step = Step::Failed(f, why);
                    false
                }
            };
            // The response, as the client takes it.
            let mut wrote = 0;
            while !p.ex.pending_out().is_empty() && self.io.writable {
                match self.stream.write(p.ex.pending_out()) {
                    Ok(0) => return Next::Close,
                    Ok(n) => {
                        p.ex.took_out(n);
                        wrote += n;
                    }
                    Err(e) if would_block(&e) => self.io.writable = false,
                    Err(e) if interrupted(&e) => {}
                    Err(_) => return Next::Close,
                }
            }
            // A spliced body: pipe -> client, behind `out`.
            if p.ex.pipe_held() > 0 && p.ex.pending_out().is_empty() && self.io.writable {
                if let Some(fd) = self.stream.splice_fd() {
                    match p.ex.splice_out(fd, usize::MAX) {
                        Ok(0) => self.io.writable = false,
                        Ok(n) => wrote += n,
                        Err(_) => return Next::Close,
                    }
                }
            }
            if wrote > 0 {
                self.progress_since = Stamp::of(cx.now);
                sent += wrote as u64;
            }
            let out_left = !p.ex.pending_out().is_empty() || p.ex.pipe_held() > 0;
            match step {
                Step::Failed(f, why) => return self.proxy_failed(f, why, sites, cx),
                Step::Done if p.ex.upgraded() => return self.start_tunnel(cx),
                Step::Done if !out_left => return self.proxy_done(cx),
                _ => {}
            }
            if sent >= cx.turn_budget {
                return Next::Yield;
            }
            if wrote > 0 || fed > 0 || squeezed || freed {
                continue;
            }
            if out_left && !self.io.writable {
                return Next::Wait(Class::Send, self.progress_since.instant());
            }
            let pending = self.busy.as_ref().is_some_and(|b| b.rx.has_pending());
            if !p.ex.body_done() && !pending && p.ex.body_room() > 0 && !self.io.readable {
                // The client's body is what is awaited (an early upstream answer still
                // drives this connection through the upstream's events).
                if p.ex.waiting != Waiting::Connect {
                    return Next::Wait(Class::Body, self.progress_since.instant());
                }
            }
            return Next::Wait(Class::Upstream, p.ex.deadline(cx.upstreams));
        }
    }

    /// The upstream's deadline passed.
    pub(super) fn proxy_timeout(&mut self, sites: &mut Sites, cx: &mut Cx) -> Next {
        let Phase::Proxy(p) = &self.phase else {
            return Next::Close;
        };
        if let Some(t) = &p.tunnel {
            // Idle past `read_timeout` (no byte either way): the lazy timer may fire
            // early, then the tunnel waits on.
            let idle = cx.upstreams.conf()[p.ex.upstream].read_timeout;
            if t.last + idle > cx.now {
                return Next::Wait(Class::Upstream, t.last + idle);
            }
            log::debug!("{}: tunnel idle for {idle:?}: closed", self.peer.addr());
            return Next::Close;
        }
        let f = p.ex.waiting.timed_out();
        self.proxy_failed(f, format!("{} timed out", f.name()), sites, cx)
    }

    /// The response is complete and sent: the upstream connection goes back to its
    /// pool (or closes), the request is counted and logged, the next one may follow.
    fn proxy_done(&mut self, cx: &mut Cx) -> Next {
        let Phase::Proxy(p) = std::mem::replace(&mut self.phase, Phase::Requests) else {
            return Next::Close;
        };
        let ex = &p.ex;
        if let Some(k) = ex.conn {
            let (reusable, ka) = ex.reusable();
            cx.upstreams.release(k, reusable, ka, cx.now);
        }
        cx.upstreams
            .health()
            .succeeded(ex.upstream, ex.server, ex.relay.status);
        self.log_proxied(&p, ex.relay.status, ex.relay.body_bytes, cx);
        let keep = ex.relay.client_keep && p.framing.keep_alive && !cx.draining && ex.body_done();
        self.idle_since = Stamp::of(cx.now);
        if !keep {
            self.phase = Phase::Closing {
                linger: self.has_pending() || !ex.body_done(),
            };
        }
        Next::Yield
    }

    fn log_proxied(&self, p: &Proxying, status: u16, bytes: u64, cx: &mut Cx) {
        let server = cx.upstreams.conf()[p.ex.upstream]
            .servers
            .get(p.ex.server)
            .map(|s| s.text.clone());
        if let Some(log) = cx.log.as_deref_mut() {
            log.set_upstream(server.as_deref(), p.ex.relay.status, p.ex.started.elapsed());
        }
        account::deferred(
            cx,
            self.peer.addr(),
            p.site,
            p.log.as_deref(),
            status,
            bytes,
        );
        if let Some(log) = cx.log.as_deref_mut() {
            log.set_upstream(None, 0, std::time::Duration::ZERO);
        }
    }

    /// The exchange failed: retry where the rules allow, else answer 502/504 when
    /// nothing of the response went out yet, or cut the client connection.
    fn proxy_failed(&mut self, f: Failure, why: String, sites: &mut Sites, cx: &mut Cx) -> Next {
        let Phase::Proxy(p) = &mut self.phase else {
            return Next::Close;
        };
        let replayable = p.ex.replayable() && !p.ex.relay.head_out;
        if p.tries
            .failed(&mut p.ex, f, &why, replayable, cx.upstreams, "", cx.now)
        {
            return self.drive_proxy(sites, cx);
        }
        if p.ex.relay.head_out {
            // Part of the response went out: only a cut connection tells the client.
            let (status, bytes) = (p.ex.relay.status, p.ex.relay.body_bytes);
            if let Phase::Proxy(p) =
                std::mem::replace(&mut self.phase, Phase::Closing { linger: false })
            {
                self.log_proxied(&p, status, bytes, cx);
            }
            return Next::Close;
        }
        self.proxy_answer(f.status(), sites, cx)
    }

    /// Nothing of the response went out: answer `status` (502/504) instead.
    fn proxy_answer(&mut self, status: u16, sites: &mut Sites, cx: &mut Cx) -> Next {
        let Phase::Proxy(p) = &self.phase else {
            return Next::Close;
        };
        let body_done = p.ex.body_done();
        let Phase::Proxy(p) = std::mem::replace(&mut self.phase, Phase::Requests) else {
            return Next::Close;
        };
        let framing = Framing {
            keep_alive: p.framing.keep_alive && body_done && !cx.draining,
            ..p.framing
        };
        let reply = sites.get(p.site_index).error_reply(status, cx.now, cx.date);
        let (status, bytes) = self.send_reply(reply, framing, cx);
        self.log_proxied(&p, status, bytes, cx);
        Next::Yield
    }

    /// The client stopped sending its body for `timeouts.body`: the upstream connection
    /// closes (half a request can never be pooled), and the client gets 408 while
    /// nothing of the response went out (nginx: `client_body_timeout`), else the cut.
    pub(super) fn proxy_body_timeout(&mut self, sites: &Sites, cx: &mut Cx) -> Next {
        let Phase::Proxy(p) = &self.phase else {
            return Next::Close;
        };
        if p.tunnel.is_some() {
            return Next::Close;
        }
        let server = cx.upstreams.conf()[p.ex.upstream]
            .servers
            .get(p.ex.server)
            .map_or("-".into(), |s| s.text.clone());
        log::info!(
            "{}: request body stalled for {:?} (upstream {server}): 408, upstream connection closed",
            self.peer.addr(),
            sites.config().timeouts.body
        );
        self.proxy_client_error(408, cx)
    }

    /// The client's body was malformed or too large: answer and close (nothing after it
    /// can be framed).
    fn proxy_client_error(&mut self, status: u16, cx: &mut Cx) -> Next {
        let Phase::Proxy(mut p) = std::mem::replace(&mut self.phase, Phase::Requests) else {
            return Next::Close;
        };
        if let Some(k) = p.ex.conn.take() {
            cx.upstreams.discard(k);
        }
        if p.ex.relay.head_out {
            // Part of the response went out: only the cut tells the client.
            let (status, bytes) = (p.ex.relay.status, p.ex.relay.body_bytes);
            self.log_proxied(&p, status, bytes, cx);
            self.phase = Phase::Closing { linger: false };
            return Next::Close;
        }
        let reply = Reply {
            close: true,
            ..Reply::error(status)
        };
        let framing = Framing {
            keep_alive: false,
            ..p.framing
        };
        let (status, bytes) = self.send_reply(reply, framing, cx);
        self.log_proxied(&p, status, bytes, cx);
        Next::Yield
    }

    /// The reactor closes the client connection mid-exchange: the upstream connection is
    /// closed (never pooled with a response half read), the request logged as 499.
    pub(super) fn proxy_on_close(&mut self, cx: &mut Cx) {
        if !self.is_proxying() {
            return; // a parked request is logged by `on_close` itself
        }
        if let Phase::Proxy(mut p) =
            std::mem::replace(&mut self.phase, Phase::Closing { linger: false })
        {
            if let Some(k) = p.ex.conn.take() {
                cx.upstreams.discard(k);
            }
            let status = if p.ex.relay.head_out {
                p.ex.relay.status
            } else {
                499
            };
            self.log_proxied(&p, status, p.ex.relay.body_bytes, cx);
        }
    }
}
