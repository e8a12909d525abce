//! One event loop per thread: its own `Poll`, its own SO_REUSEPORT listener per address, its
//! connections in a slab, its timers. Nothing here is shared with other reactors; the only
//! way in from outside is the `Waker` (an eventfd in this Poll) plus a channel.
//!
//! Each iteration: `poll(timeout = nearest deadline)` -> accept until WouldBlock -> drive
//! the connections that had events -> drain the channel -> drive the next-tick list ->
//! expire timers. Tokens are `generation << 32 | slot`, so an event or a timer for a closed
//! connection can never reach the connection that reused its slot. Upstream connections
//! (`upstream::pool`) share the Poll with tokens of their own (bit 31 of the low half set,
//! 31-bit generations), and their events drive the client connection they serve.

use crate::config::{Config, MAX_LISTEN};
use crate::http::h1::DateCache;
use crate::net::conn::Spares;
use crate::net::conn::{ColdJobs, Cx, Next, Ready, Transport};
use crate::net::link::Link;
use crate::net::timer::{Class, Expired, Timers, CLASSES};
use crate::net::tls::{HandshakeDone, Handshakes};
use crate::offload::{Completion, Notifier, Offload};
use crate::ops::accesslog::{self, AccessLog};
use crate::ops::metrics::{ReactorStats, Registry};
use crate::site::hosts::Sites;
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

mod accept;

pub use accept::Sweep;
use accept::{listener_index, listener_token, Source};

pub const WAKER: Token = Token(usize::MAX);
pub const METRICS: Token = Token(usize::MAX - 1);

/// Everything a reactor is built from.
pub struct Setup {
    pub id: usize,
    pub config: Arc<Config>,
    /// One per address of `config.listen`, then one per address of `config.tls.listen`.
    pub listeners: Vec<TcpListener>,
    /// The TLS configuration of this generation (listeners from `config.listen.len()` on).
    pub tls: Option<Arc<crate::tls::Tls>>,
    /// The Prometheus endpoint's listener (first reactor only).
    pub metrics_listener: Option<TcpListener>,
    pub rx: Receiver<Msg>,
    pub offload: Option<Arc<Offload>>,
    pub registry: Arc<Registry>,
    pub access_log: Option<Sender<accesslog::Msg>>,
    /// Passive health and counters of the upstream servers, shared by the generation.
    pub upstream_health: Arc<crate::upstream::Health>,
}

/// Messages from other threads, delivered through the channel + Waker.
pub enum Msg {
    /// Stop accepting and finish in-flight responses (graceful), or stop now. `sweep`:
    /// the listeners on which to first accept what is queued, because this reactor's
    /// descriptor is the socket's last (shutdown, or a socket a reload retires); a socket
    /// that lives on keeps its queue for the new reactors. `ack` is told once this reactor
    /// accepts no more. `reload`: a newer generation took over; open tunnels (WebSocket)
    /// are not cut at the shutdown timeout but left to end on their own, as nginx's old
    /// workers do without `worker_shutdown_timeout` (their idle limit still applies).
    Stop {
        graceful: bool,
        sweep: Sweep,
        ack: Option<Ack>,
        reload: bool,
    },
}

/// Tells the server that a reactor has stopped accepting.
pub struct Ack {
    pub tx: Sender<()>,
    pub waker: Arc<Waker>,
}

struct Slot {
    generation: u32,
    conn: Link,
}

pub struct Reactor {
    id: usize,
    poll: Poll,
    /// Emptied when the reactor stops accepting for good.
    listeners: Vec<TcpListener>,
    metrics_listener: Option<TcpListener>,
    stats: Arc<ReactorStats>,
    log: Option<AccessLog>,
    accepting: bool,
    accept_resume: Option<Instant>,
    accept_error_logged: bool,
    conns: Slab<Slot>,
    next_generation: u32,
    timers: Timers,
    config: Arc<Config>,
    /// Lent to the connection being driven.
    site: Sites,
    date: DateCache,
    spares: Spares,
    rx: Receiver<Msg>,
    notifier: Notifier,
    completions: Receiver<Completion>,
    next_tick: Vec<Token>,
    /// Cold-window jobs on the I/O threads, and connections waiting for a place.
    cold: ColdJobs,
    drain_deadline: Option<Instant>,
    /// The drain deadline passed and only tunnels a reload leaves alone are left.
    drain_cut: bool,
    /// The drain is a reload's: tunnels outlive its deadline.
    keep_tunnels: bool,
    /// Taking what is queued on the listener before closing it: ignore max_connections.
    sweeping: bool,
    tls: Option<Arc<crate::tls::Tls>>,
    /// Listeners from this index on are TLS.
    tls_from: usize,
    handshakes: Option<Handshakes>,
    handshake_done: Receiver<HandshakeDone>,
    /// TLS accepts wait for handshake slots until then (`tls.max_pending_handshakes`).
    tls_retry: Option<Instant>,
    /// Upstream connections (their tokens have `pool::UPSTREAM_BIT` set).
    upstreams: crate::upstream::pool::Upstreams,
}

fn token(slot: usize, generation: u32) -> Token {
    Token(((generation as usize) << 32) | slot)
}

fn split(t: Token) -> (usize, u32) {
    (t.0 & 0xffff_ffff, (t.0 >> 32) as u32)
}

impl Reactor {
    /// Build a reactor around an already bound listener. Returns it with the Waker other
    /// threads use to reach it.
    pub fn new(setup: Setup) -> io::Result<(Reactor, Arc<Waker>)> {
        let Setup {
            id,
            config,
            mut listeners,
            mut metrics_listener,
            rx,
            offload,
            registry,
            access_log,
            tls,
            upstream_health,
        } = setup;
        let poll = Poll::new()?;
        if let Some(m) = metrics_listener.as_mut() {
            poll.registry().register(m, METRICS, Interest::READABLE)?;
        }
        let stats = registry.reactor(id);
        let log = access_log.map(|tx| AccessLog::new(config.log.format, id, tx, stats.clone()));
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, completions) = crossbeam_channel::unbounded();
        let notifier = Notifier {
            tx,
            waker: waker.clone(),
        };
        if listeners.len() > MAX_LISTEN {
            return Err(io::Error::other("too many listeners"));
        }
        for (j, l) in listeners.iter_mut().enumerate() {
            poll.registry()
                .register(l, listener_token(j), Interest::READABLE)?;
        }
        let (done_tx, handshake_done) = crossbeam_channel::unbounded();
        let handshakes = match (&tls, &offload) {
            (Some(_), Some(o)) => Some(Handshakes {
                offload: o.clone(),
                tx: done_tx,
                waker: waker.clone(),
            }),
            (Some(_), None) => return Err(io::Error::other("TLS needs the offload pool")),
            _ => None,
        };
        let tls_from = config.listen.len();
        let site = Sites::new(config.clone(), offload, Some(registry))?;
        let t = &config.timeouts;
        let durations: [Duration; CLASSES] = Class::ALL.map(|c| t.of(c));
        let upstreams = crate::upstream::pool::Upstreams::new(
            Some(poll.registry().try_clone()?),
            config.upstreams.clone(),
            upstream_health,
        );
        Ok((
            Reactor {
                id,
                poll,
                listeners,
                metrics_listener,
                stats,
                log,
                accepting: true,
                accept_resume: None,
                accept_error_logged: false,
                conns: Slab::with_capacity(1024),
                next_generation: 1,
                timers: Timers::new(durations),
                config,
                site,
                date: DateCache::new(),
                spares: Spares::default(),
                rx,
                notifier,
                completions,
                next_tick: Vec::new(),
                cold: ColdJobs::default(),
                drain_deadline: None,
                drain_cut: false,
                keep_tunnels: false,
                sweeping: false,
                tls,
                tls_from,
                handshakes,
                handshake_done,
                tls_retry: None,
                upstreams,
            },
            waker,
        ))
    }

    pub fn id(&self) -> usize {
        self.id
    }

    pub fn run(mut self) -> io::Result<()> {
        crate::ops::tls_metrics::mark_reactor_thread();
        let r = self.run_loop();
        // The counters outlive this reactor (its successor in the position shares them).
        let open = self
            .conns
            .iter()
            .filter(|(_, s)| !s.conn.is_metrics())
            .count();
        self.stats.active.fetch_sub(open as u64, Ordering::Relaxed);
        if let Some(log) = self.log.as_mut() {
            log.finish(self.drain_deadline.unwrap_or_else(Instant::now));
        }
        r
    }

    fn run_loop(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut expired = Vec::new();
        let mut ticks = Vec::new();
        loop {
            let now = Instant::now();
            let timeout = if self.next_tick.is_empty() {
                self.poll_timeout(now)
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            self.date.update(SystemTime::now());

            for event in events.iter() {
                if let Some(j) = listener_index(event.token()) {
                    self.accept(now, Source::Listener(j));
                    continue;
                }
                if let Some(k) = crate::upstream::pool::key_of(event.token()) {
                    // An upstream connection: drive the client connection it serves.
                    let owner = self.upstreams.event(
                        k,
                        event.is_readable(),
                        event.is_writable() || event.is_write_closed(),
                        event.is_read_closed(),
                        event.is_error(),
                    );
                    if let Some((owner, generation)) = owner {
                        // An HTTP/2 stream's exchange names its stream in the upper half
                        // (`net::h2::proxy`): the connection pumps its streams itself.
                        let slot = owner & (u32::MAX as usize);
                        if self
                            .conns
                            .get(slot)
                            .is_some_and(|s| s.generation == generation)
                        {
                            self.drive(slot, now);
                        }
                    }
                    continue;
                }
                match event.token() {
                    METRICS => self.accept(now, Source::Metrics),
                    WAKER => self.drain_channel(now),
                    t => {
                        let (slot, generation) = split(t);
                        let Some(s) = self.conns.get_mut(slot) else {
                            continue;
                        };
                        if s.generation != generation {
                            continue; // stale event for a reused slot
                        }
                        if event.is_error() {
                            // Reset or failed: nothing can reach the peer any more. Closing
                            // now also cancels a job the connection waits on (a client that
                            // asks for a cold file and resets costs no disk read).
                            self.close(slot);
                            continue;
                        }
                        // Hang-ups surface through the next read or write.
                        s.conn.ready(Ready {
                            readable: event.is_readable(),
                            writable: event.is_writable()
                                || event.is_write_closed()
                                || event.is_error(),
                            hup: event.is_read_closed() || event.is_error(),
                        });
                        self.drive(slot, now);
                    }
                }
            }

            std::mem::swap(&mut ticks, &mut self.next_tick);
            for t in ticks.drain(..) {
                let (slot, generation) = split(t);
                if self
                    .conns
                    .get(slot)
                    .is_some_and(|s| s.generation == generation)
                {
                    self.drive(slot, now);
                }
            }

            if self.tls_retry.is_some_and(|at| at <= now) {
                self.tls_retry = None;
                for j in self.tls_from..self.listeners.len() {
                    self.accept(now, Source::Listener(j));
                }
            }
            if self.accept_resume.is_some_and(|at| at <= now) {
                self.accept_resume = None;
                self.resume_accepting();
            }
            if self.upstreams.next_deadline().is_some_and(|d| d <= now) {
                self.upstreams.expire(now);
            }
            self.timers.expired(now, &mut expired);
            for e in expired.drain(..) {
                self.expire(e, now);
            }

            if let Some(log) = self.log.as_mut() {
                if log.deadline().is_some_and(|d| d <= now) {
                    log.flush();
                }
            }
            self.stats
                .timer_entries
                .store(self.timers.queued_len() as u64, Ordering::Relaxed);
            self.stats.loop_time.observe(now.elapsed());

            if let Some(deadline) = self.drain_deadline {
                if self.conns.is_empty() {
                    return Ok(());
                }
                if deadline <= now && !self.drain_cut {
                    let keep = self.keep_tunnels;
                    // Through `close`, so a request still waiting for its job is logged.
                    let slots: Vec<usize> = self
                        .conns
                        .iter()
                        .filter(|(_, s)| !(keep && s.conn.is_tunnel()))
                        .map(|(k, _)| k)
                        .collect();
                    if !slots.is_empty() {
                        log::warn!(
                            "reactor {}: shutdown timeout, cutting {} connection(s)",
                            self.id,
                            slots.len()
                        );
                    }
                    for slot in slots {
                        self.close(slot);
                    }
                    if self.conns.is_empty() {
                        return Ok(());
                    }
                    log::info!(
                        "reactor {}: {} tunnel(s) of the old configuration stay open",
                        self.id,
                        self.conns.len()
                    );
                    self.drain_cut = true;
                }
            }
        }
    }

    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        let mut t = self.timers.next_timeout(now);
        let log = self.log.as_ref().and_then(|l| l.deadline());
        let pool = self.upstreams.next_deadline();
        for at in [
            self.accept_resume,
            self.drain_deadline.filter(|_| !self.drain_cut),
            log,
            self.tls_retry,
            pool,
        ]
        .into_iter()
        .flatten()
        {
            let d = at.saturating_duration_since(now) + Duration::from_millis(1);
            t = Some(t.map_or(d, |t| t.min(d)));
        }
        t
    }

    fn drain_channel(&mut self, now: Instant) {
        // Wakes coalesce: one event may stand for many messages.
        loop {
            match self.rx.try_recv() {
                Ok(Msg::Stop {
                    graceful,
                    sweep,
                    ack,
                    reload,
                }) => {
                    if reload {
                        self.keep_tunnels |= self.drain_deadline.is_none();
                    } else {
                        // A shutdown: tunnels end at its deadline too.
                        self.keep_tunnels = false;
                        if self.drain_cut {
                            self.drain_cut = false;
                            self.drain_deadline = None;
                        }
                    }
                    self.begin_drain(now, graceful, &sweep);
                    if let Some(ack) = ack {
                        let _ = ack.tx.send(());
                        let _ = ack.waker.wake();
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    // Nobody can reach this reactor any more (the server dropped it): stop.
                    if self.drain_deadline.is_none() {
                        self.begin_drain(now, true, &Sweep::All);
                    }
                    break;
                }
            }
        }
        while let Ok(done) = self.handshake_done.try_recv() {
            let slot = done.slot;
            let Some(s) = self.conns.get_mut(slot) else {
                continue;
            };
            if s.generation != done.generation {
                continue;
            }
            match s.conn.stream().map(|st| st.resume_handshake(done)) {
                Some(Ok(())) => self.drive(slot, now),
                _ => self.close(slot),
            }
        }
        while let Ok(mut c) = self.completions.try_recv() {
            // An HTTP/2 stream's job names its stream in the slot's upper half.
            let stream = (c.slot >> 32) as u32;
            c.slot &= 0xffff_ffff;
            if c.sent.cold {
                // A place is free (whether or not its connection is still here): the
                // oldest waiting connection still open probes its window again.
                self.cold.inflight = self.cold.inflight.saturating_sub(1);
                while let Some((slot, generation)) = self.cold.waiting.pop_front() {
                    if self
                        .conns
                        .get(slot)
                        .is_some_and(|s| s.generation == generation)
                    {
                        self.next_tick.push(token(slot, generation));
                        break;
                    }
                }
            }
            let live = self
                .conns
                .get(c.slot)
                .is_some_and(|s| s.generation == c.generation);
            if !live {
                continue; // the connection went away; the cache kept the result
            }
            self.stats.offload_rtt.observe(c.started.elapsed());
            let next = self.with_cx(c.slot, now, |conn, site, cx| {
                conn.resume(stream, c.result, c.started, c.sent, site, cx)
            });
            self.apply(c.slot, next, now);
        }
    }

    fn begin_drain(&mut self, now: Instant, graceful: bool, sweep: &Sweep) {
        if graceful {
            self.sweep(now, sweep);
        }
        self.close_listeners();
        let deadline = if graceful {
            now + self.config.timeouts.shutdown
        } else {
            now
        };
        self.drain_deadline = Some(self.drain_deadline.map_or(deadline, |d| d.min(deadline)));
        // Closing an idle connection at once would reset a request already on the wire
        // (and every connection accepted but not yet read). Idle keep-alive connections
        // get a short grace instead; a request arriving meanwhile is answered with
        // `Connection: close`. Fresh connections keep their header deadline.
        let idle: Vec<usize> = self
            .conns
            .iter()
            .filter(|(k, s)| self.timers.wanted(*k, s.generation) == Some(Class::KeepAlive))
            .map(|(k, _)| k)
            .collect();
        for slot in idle {
            self.apply(slot, Next::Wait(Class::KeepAlive, now), now);
        }
        // HTTP/2 connections with open streams send their GOAWAY now, not at their next
        // event (a stream waiting for window may not have one before the deadline).
        let h2: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, s)| matches!(s.conn, Link::H2(_)))
            .map(|(k, s)| token(k, s.generation))
            .collect();
        self.next_tick.extend(h2);
    }

    /// Run `f` on a connection with the reactor's context lent to it.
    fn with_cx(
        &mut self,
        slot: usize,
        now: Instant,
        f: impl FnOnce(&mut Link, &mut Sites, &mut Cx) -> Next,
    ) -> Next {
        let Some(s) = self.conns.get_mut(slot) else {
            return Next::Close;
        };
        let mut cx = Cx {
            date: self.date.get(),
            now,
            spares: &mut self.spares,
            draining: self.drain_deadline.is_some(),
            turn_budget: self.config.limits.send_chunk,
            notifier: &self.notifier,
            slot,
            generation: s.generation,
            log: self.log.as_mut(),
            stats: &self.stats,
            handshakes: self.handshakes.as_ref(),
            tls: s.conn.stream().and_then(|st| st.tls_info()),
            cold: &mut self.cold,
            upstreams: &mut self.upstreams,
        };
        let site = &mut self.site;
        let conn = &mut s.conn;
        // A bug in one connection must not take down the reactor and every other connection
        // on it: close that connection, say what it was doing, count it, go on.
        let next =
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(conn, site, &mut cx)))
            {
                Ok(next) => next,
                Err(payload) => {
                    let msg = payload
                        .downcast_ref::<&str>()
                        .copied()
                        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                        .unwrap_or("(no message)");
                    let (peer, line) = s.conn.context();
                    log::error!(
                        "reactor {}: panic handling {peer} \"{}\": {msg}; connection closed",
                        self.id,
                        line.escape_ascii()
                    );
                    self.stats.panics.fetch_add(1, Ordering::Relaxed);
                    Next::Close
                }
            };
        #[cfg(feature = "fault-injection")]
        if crate::fault::take_reactor_fault() {
            panic!("injected fault: reactor");
        }
        next
    }

    fn drive(&mut self, slot: usize, now: Instant) {
        let next = self.with_cx(slot, now, |conn, site, cx| conn.drive(site, cx));
        self.apply(slot, next, now);
    }

    fn apply(&mut self, slot: usize, next: Next, now: Instant) {
        let draining = self.drain_deadline.is_some();
        let Some(s) = self.conns.get_mut(slot) else {
            return;
        };
        match next {
            Next::Close => self.close(slot),
            Next::Yield => {
                self.next_tick.push(token(slot, s.generation));
            }
            Next::Wait(mut class, mut since) => {
                if draining && class == Class::KeepAlive {
                    if self.timers.wanted(slot, s.generation) == Some(Class::Drain) {
                        return; // grace already running
                    }
                    class = Class::Drain;
                    since = now;
                }
                self.timers.arm(class, since, slot, s.generation);
            }
        }
    }

    fn expire(&mut self, e: Expired, now: Instant) {
        if self
            .conns
            .get(e.slot)
            .is_none_or(|s| s.generation != e.generation)
        {
            return;
        }
        log::debug!("reactor {}: {:?} timeout", self.id, e.class);
        if let Some(s) = self.conns.get_mut(e.slot) {
            if let Some(st) = s.conn.stream() {
                st.on_timeout();
            }
        }
        self.stats.timeouts[e.class as usize].fetch_add(1, Ordering::Relaxed);
        let next = self.with_cx(e.slot, now, |conn, site, cx| {
            conn.timeout(e.class, site, cx)
        });
        self.apply(e.slot, next, now);
    }

    fn close(&mut self, slot: usize) {
        let mut shared = false;
        if self
            .conns
            .get(slot)
            .is_some_and(|s| s.conn.is_parked() || s.conn.is_proxying())
        {
            // Its request is still being compressed: log it (499) before it goes; a cold
            // window's job is cancelled.
            self.with_cx(slot, Instant::now(), |conn, _, cx| {
                shared = conn.on_close(cx);
                Next::Close
            });
        }
        // Closing the descriptor (dropping the Conn) removes the socket from the epoll set,
        // one syscall less per connection, unless an I/O thread still holds a duplicate
        // of it: then it is deregistered, so no event of it reaches a reused slot's token.
        if let Some(mut s) = self.conns.try_remove(slot) {
            if shared {
                if let Some(st) = s.conn.stream() {
                    let _ = self.poll.registry().deregister(st);
                }
                self.stats
                    .cold_shared_closes
                    .fetch_add(1, Ordering::Relaxed);
            }
            if let Some(st) = s.conn.stream() {
                st.close_notify();
            }
            self.timers.cancel(slot);
            if !s.conn.is_metrics() {
                self.stats.active.fetch_sub(1, Ordering::Relaxed);
            }
        }
        if !self.accepting && self.accept_resume.is_none() {
            self.resume_accepting();
        }
    }
}
