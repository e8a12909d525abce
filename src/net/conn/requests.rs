//! Answering the requests buffered on a connection: parse, route, encode, queue; and the
//! request body read and dropped in place before its answer.

use super::*;

impl<S: Transport> Conn<S> {
    /// Answer every complete request already buffered, appending to `out` (pipelined heads
    /// share one write). A request with a body is answered once the body is read and valid.
    /// Stops at a response that must be streamed, at the high-water mark, or when more
    /// input is needed. Returns whether anything was answered.
    pub(super) fn process(&mut self, sites: &mut Sites, cx: &mut Cx) -> bool {
        let c = sites.config();
        let cleartext = c.http2.cleartext;
        if !c.open_file_cache.cold_reads || sites.offload().is_none() {
            // Off, or no pool to read on: sendfile may wait on the disk (nginx's default).
            busy(&mut self.busy, cx.spares).tx.trust_page_cache();
        }
        let l = &sites.config().limits;
        let limits = Limits {
            max_request_line: l.max_request_line,
            max_header_bytes: l.max_header_bytes,
            max_body_bytes: l.max_body_bytes,
        };
        let mut answered = false;
        loop {
            if !matches!(self.phase, Phase::Requests | Phase::Body(_)) || self.backlogged() {
                return answered;
            }
            if !self.has_pending() {
                return answered;
            }
            let buf = pending(&self.busy);
            if self.requests == 0
                && matches!(self.phase, Phase::Requests)
                && cleartext
                && !self.metrics
                && !self.stream.is_tls()
            {
                // HTTP/2 with prior knowledge: the client preface instead of a request.
                let n = buf.len().min(crate::http::h2::PREFACE.len());
                if buf[..n] == crate::http::h2::PREFACE[..n] {
                    if n == crate::http::h2::PREFACE.len() {
                        self.phase = Phase::H2;
                    }
                    return answered;
                }
            }
            let head = match request::parse(buf, &limits) {
                Ok(Some(h)) => h,
                Ok(None) => {
                    if self.requests > 0 {
                        self.request_since.get_or_insert(Stamp::of(cx.now));
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
            // A request for a `[[proxy]]` path has its body relayed as it arrives, not
            // read first (and a reply other than the relay closes the connection, since
            // its body is still unread).
            let relay = head.framing != BodyFraming::None
                && !self.metrics
                && matches!(self.phase, Phase::Requests)
                && sites.pick(&head, buf, false).would_proxy(&head, buf);
            if matches!(self.phase, Phase::Requests) && self.verdict.is_none() {
                // First sight of this head (a head waiting for its body is parsed again
                // on every read, with the same result).
                if head.expect_continue && head.framing != BodyFraming::None {
                    h1::write_continue(
                        busy(&mut self.busy, cx.spares)
                            .tx
                            .head_buf(&mut cx.spares.tx),
                    );
                }
                if self.requests > 0 {
                    // The request's time includes waiting for its body.
                    self.request_since.get_or_insert(Stamp::of(cx.now));
                }
                match head.framing {
                    _ if relay => {}
                    BodyFraming::None | BodyFraming::Length(0) => {}
                    BodyFraming::Length(n) => self.phase = Phase::Body(RequestBody::Length(n)),
                    BodyFraming::Chunked => {
                        self.phase = Phase::Body(RequestBody::Chunked(Box::default()))
                    }
                }
            }
            match self.read_body(head.head_len, &limits) {
                Ok(true) => {}
                Ok(false) => return answered,
                Err(e) => {
                    // Nothing after a broken body can be framed: answer the error, close.
                    log::debug!("bad request body: {} ({})", e.status, e.why);
                    self.phase = Phase::Requests;
                    self.queue_error(e.status, cx);
                    return true;
                }
            }
            // The body is gone from the buffer: the next request follows the head.
            let buf = pending(&self.busy);
            // The same head picks the same site again after its password check.
            let site_index = sites.index_of(&head, buf);
            let site = sites.pick(&head, buf, self.metrics);
            let slot = site.metrics_slot();
            if let Some(v) = self.verdict.take() {
                site.set_verdict(*v);
            }
            let https = match self.metrics || self.stream.is_tls() {
                true => None,
                false => crate::site::https::redirect(site.config(), &head, buf),
            };
            let Answer { reply, job } = match https {
                Some(reply) => Answer { reply, job: None },
                None => site.respond(&head, buf, cx.now, cx.date, self.metrics),
            };
            let mut framing = Framing {
                keep_alive: head.keep_alive && !cx.draining,
                http10: head.version == crate::http::Version::Http10,
                head_only: head.method == crate::http::Method::Head,
            };
            let started = match (self.requests, self.request_since) {
                (0, _) => self.accepted.instant(),
                (_, Some(t)) => t.instant(),
                _ => cx.now,
            };
            let (reply, job) = match job {
                Some(crate::site::route::Job::Proxy { rule }) => {
                    let config = site.config();
                    let r = &config.proxy[rule];
                    let https = self.stream.is_tls();
                    match proxy::begin(&head, buf, config, r, self.peer.addr(), https, cx.now) {
                        Ok(ex) => {
                            let log = cx.log.as_ref().map(|_| {
                                account::Request::of(&head, buf, started, slot).to_owned()
                            });
                            let retries = config.upstreams.get(r.upstream).map_or(0, |u| u.retries);
                            let hash = proxy_hash(&head, buf, config, r.upstream, self.peer.addr());
                            self.requests = self.requests.saturating_add(1);
                            self.request_since = None;
                            busy(&mut self.busy, cx.spares).rx.consume(head.head_len);
                            self.set_nodelay(framing.keep_alive);
                            self.start_proxy(
                                ex,
                                framing,
                                log,
                                slot,
                                site_index,
                                head.method,
                                hash,
                                retries,
                            );
                            return true;
                        }
                        Err(status) => {
                            framing.keep_alive = false;
                            (
                                Reply {
                                    close: true,
                                    ..Reply::error(status)
                                },
                                None,
                            )
                        }
                    }
                }
                j => (reply, j),
            };
            let reply = if relay && job.is_none() && !reply.close {
                // Its body was not read: nothing after it can be framed.
                framing.keep_alive = false;
                Reply {
                    close: true,
                    ..reply
                }
            } else {
                reply
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
            if let Ok(waiting) = parked.as_ref() {
                if waiting.is_auth() {
                    // A password check: the head stays in the inbox and is answered (counted,
                    // logged) again with the verdict; a client gone meanwhile logs 499.
                    let log = cx
                        .log
                        .as_ref()
                        .map(|_| account::Request::of(&head, buf, started, slot));
                    let log = log.map(|r| r.to_owned());
                    if let Ok(waiting) = parked {
                        let since = cx.now;
                        self.phase = Phase::Parked(Box::new(Parked {
                            waiting,
                            framing,
                            since,
                            log,
                        }));
                    }
                    return answered;
                }
            }
            self.requests = self.requests.saturating_add(1);
            self.request_since = None;
            match parked {
                Err(reply) => {
                    busy(&mut self.busy, cx.spares).rx.consume(head.head_len);
                    let (status, bytes) = self.send_reply(reply, framing, cx);
                    let r = account::Request::of(
                        &head,
                        busy(&mut self.busy, cx.spares)
                            .rx
                            .before_consume(head.head_len),
                        started,
                        slot,
                    );
                    // Scrapes of the metrics endpoint are not traffic: neither counted nor
                    // logged.
                    if !self.metrics {
                        account::response(
                            cx,
                            self.peer.addr(),
                            Some(r),
                            started,
                            status,
                            bytes,
                            cx.now,
                        );
                    }
                }
                Ok(waiting) => {
                    // Logged when the job completes, with its real status and length.
                    let log = cx
                        .log
                        .as_ref()
                        .map(|_| account::Request::of(&head, buf, started, slot).to_owned());
                    busy(&mut self.busy, cx.spares).rx.consume(head.head_len);
                    self.set_nodelay(framing.keep_alive);
                    self.phase = Phase::Parked(Box::new(Parked {
                        waiting,
                        framing,
                        since: cx.now,
                        log,
                    }));
                }
            }
            answered = true;
        }
    }
}

/// The key `balance = "hash"` picks a server by (`[[upstream]] hash`).
pub(crate) fn proxy_hash(
    head: &request::RequestHead,
    buf: &[u8],
    config: &crate::config::Config,
    upstream: usize,
    peer: std::net::SocketAddr,
) -> u64 {
    use crate::config::{Balance, HashKey};
    use std::hash::{Hash, Hasher};
    let Some(u) = config
        .upstreams
        .get(upstream)
        .filter(|u| u.balance == Balance::Hash)
    else {
        return 0;
    };
    // A fixed-key hasher: the same key picks the same server on every reactor.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match &u.hash {
        HashKey::ClientIp => peer.ip().hash(&mut h),
        HashKey::Uri => head.target.get(buf).hash(&mut h),
        HashKey::Header(name) => {
            let mut fields = [httparse::EMPTY_HEADER; 128];
            let mut req = httparse::Request::new(&mut fields);
            if req.parse(&buf[..head.head_len]).is_ok() {
                for f in req
                    .headers
                    .iter()
                    .filter(|f| f.name.eq_ignore_ascii_case(name))
                {
                    f.value.hash(&mut h);
                }
            }
        }
    }
    h.finish()
}

impl<S: Transport> Conn<S> {
    /// Encode `reply` into `out`, queue its body and decide what follows it. Returns the
    /// status and the body bytes sent.
    pub(super) fn send_reply(&mut self, reply: Reply, framing: Framing, cx: &mut Cx) -> (u16, u64) {
        let error = reply.close;
        let b = busy(&mut self.busy, cx.spares);
        let sent = h1::encode(reply, framing, cx.date, b.tx.head_buf(&mut cx.spares.tx));
        b.tx.queue(sent.body);
        if !self.corked && b.tx.file_bytes() >= CORK_MIN {
            // Head and file body leave in full segments (nginx's tcp_nopush).
            self.corked = self.stream.set_cork(true).is_ok();
        }
        self.set_nodelay(sent.keep_alive);
        self.after_reply(sent.keep_alive, error);
        (sent.status, sent.bytes)
    }

    /// The one place that decides what follows a reply: the next request on this
    /// connection, or a close once the reply is out. `keep_alive` is what the encoder
    /// announced; `error`: the reply ends the connection because the input's framing is in
    /// doubt, so the client may still be sending.
    fn after_reply(&mut self, keep_alive: bool, error: bool) {
        debug_assert!(
            matches!(self.phase, Phase::Requests),
            "a reply is sent only between requests"
        );
        debug_assert!(!(keep_alive && error), "an error reply announces its close");
        debug_assert!(!self.head_sent(), "the reply announcing it is still queued");
        if !keep_alive {
            // Unread pipelined bytes (or a body after an error) would turn our close into
            // an RST that destroys the reply: linger.
            self.phase = Phase::Closing {
                linger: error || self.has_pending(),
            };
        }
    }

    /// Like nginx's tcp_nodelay, only for connections that stay open: a response followed
    /// by close is pushed out by the close itself, so the syscall is saved on every
    /// short-lived connection. Pipelined responses and a file's last partial segment must
    /// not wait for the client's delayed ACK.
    fn set_nodelay(&mut self, keep_alive: bool) {
        if keep_alive && !self.nodelay {
            self.nodelay = true;
            if let Err(e) = self.stream.set_nodelay() {
                log::debug!("TCP_NODELAY: {e}");
            }
        }
    }

    /// A complete error response, then close: the framing of anything after it is in doubt.
    pub(super) fn queue_error(&mut self, status: u16, cx: &mut Cx) {
        let framing = Framing {
            keep_alive: false,
            http10: false,
            head_only: false,
        };
        let reply = Reply {
            close: true,
            ..Reply::error(status)
        };
        let (status, bytes) = self.send_reply(reply, framing, cx);
        let started = self.request_since.unwrap_or(self.accepted).instant();
        account::response(cx, self.peer.addr(), None, started, status, bytes, cx.now);
    }

    /// Consume the buffered bytes of the pending request body, which follow its head at
    /// `after_head(head_len)`, in place (later bytes move down, the head stays). Returns
    /// whether the body is complete.
    fn read_body(&mut self, head_len: usize, limits: &Limits) -> Result<bool, HttpError> {
        let Some(b) = self.busy.as_mut() else {
            return Ok(false); // no input: its head would be in it
        };
        let avail = b.rx.after_head(head_len);
        let (n, done) = match &mut self.phase {
            Phase::Body(RequestBody::Length(left)) => {
                let n = (*left).min(avail.len() as u64);
                *left -= n;
                (n as usize, *left == 0)
            }
            Phase::Body(RequestBody::Chunked(dec)) => dec.feed(avail, limits)?,
            _ => return Ok(true),
        };
        b.rx.drop_body(head_len, n);
        if done {
            self.phase = Phase::Requests;
        }
        Ok(done)
    }
}
