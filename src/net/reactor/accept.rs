//! Accepting: one token per listening address, accept until WouldBlock, pause at the
//! connection limit or when out of descriptors, and the sweep of a socket's queue before
//! its last descriptor closes.

use super::{token, Next, Reactor, Ready, Slot, METRICS};
use crate::config::MAX_LISTEN;
use crate::net::conn::Conn;
use crate::net::link::Link;
use crate::net::tls::Stream;
use crate::ops::tls_metrics::TLS;
use mio::{Interest, Token};
use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How long accepting pauses after EMFILE and friends.
pub(super) const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How long TLS accepts wait when every handshake slot is taken.
const TLS_RETRY: Duration = Duration::from_millis(5);

/// Listener `j` is `LISTENERS - j`, `j < MAX_LISTEN`: far above any connection token, whose
/// low 32 bits are a slab slot (a reactor never holds four billion connections).
const LISTENERS: usize = usize::MAX - 2;

pub(super) fn listener_token(j: usize) -> Token {
    Token(LISTENERS - j)
}

pub(super) fn listener_index(t: Token) -> Option<usize> {
    let j = LISTENERS.checked_sub(t.0)?;
    (j < MAX_LISTEN).then_some(j)
}

/// What a reactor accepts on.
#[derive(Clone, Copy)]
pub(super) enum Source {
    Listener(usize),
    Metrics,
}

/// Which of a reactor's listeners to sweep before closing them.
pub enum Sweep {
    All,
    /// `[j]`: listener `j` (the reactor's `listeners[j]`); missing entries are not swept.
    Only(Vec<bool>),
}

impl Sweep {
    fn covers(&self, j: usize) -> bool {
        match self {
            Sweep::All => true,
            Sweep::Only(v) => v.get(j).copied().unwrap_or(false),
        }
    }
}

impl Reactor {
    pub(super) fn accept(&mut self, now: Instant, source: Source) {
        let metrics = matches!(source, Source::Metrics);
        while self.accepting {
            if self.conns.len() >= self.config.limits.max_connections && !self.sweeping {
                // At the limit: stop accepting until a connection closes. Queued clients
                // wait in the backlog (or go to another reactor's socket).
                self.pause_accepting();
                return;
            }
            let listener = match source {
                Source::Metrics => self.metrics_listener.as_ref(),
                Source::Listener(j) => self.listeners.get(j),
            };
            let Some(listener) = listener else {
                return;
            };
            let tls = match (source, &self.tls) {
                (Source::Listener(j), Some(t)) if j >= self.tls_from => Some(t),
                _ => None,
            };
            if let Some(t) = tls {
                // Every handshake slot taken: leave the rest in the kernel backlog and look
                // again shortly (handshakes finish on the pool, not here).
                if TLS.in_flight.load(Ordering::Relaxed) >= t.max_pending() && !self.sweeping {
                    if self.tls_retry.is_none() {
                        self.stats.tls_accept_pauses.fetch_add(1, Ordering::Relaxed);
                    }
                    self.tls_retry = Some(now + TLS_RETRY);
                    return;
                }
            }
            match listener.accept() {
                Ok((stream, peer)) => {
                    let stream = match tls {
                        None => Stream::Plain(stream),
                        Some(t) => match Stream::tls(stream, t.server_config().clone()) {
                            Ok(s) => s,
                            Err(e) => {
                                log::warn!("TLS connection: {e}");
                                continue;
                            }
                        },
                    };
                    if !metrics {
                        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
                        self.stats.active.fetch_add(1, Ordering::Relaxed);
                    }
                    self.accept_error_logged = false;
                    let generation = self.next_generation;
                    self.next_generation = self.next_generation.wrapping_add(1).max(1);
                    let mut conn = Conn::new(stream, peer, metrics, now);
                    // The request usually came with the connection (TCP_DEFER_ACCEPT makes
                    // that certain): read and answer it at once, and register the socket
                    // only if the connection must wait. A `Connection: close` exchange then
                    // costs no epoll_ctl and no trip through epoll_wait. Registering after
                    // the reads loses nothing: EPOLL_CTL_ADD reports what is ready by then.
                    conn.ready(Ready {
                        readable: true,
                        writable: true,
                        hup: false,
                    });
                    let conn = Link::H1(conn);
                    let slot = self.conns.insert(Slot { generation, conn });
                    let next = self.with_cx(slot, now, |c, site, cx| c.drive(site, cx));
                    if next == Next::Close {
                        self.close(slot);
                        continue;
                    }
                    let Some(s) = self.conns.get_mut(slot) else {
                        continue;
                    };
                    let Some(st) = s.conn.stream() else {
                        self.close(slot);
                        continue;
                    };
                    if let Err(e) = self.poll.registry().register(
                        st,
                        token(slot, generation),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        log::warn!("register: {e}");
                        self.close(slot);
                        continue;
                    }
                    self.apply(slot, next, now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => match e.raw_os_error() {
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                        // Out of descriptors or memory: spinning on accept would burn a
                        // core. Pause, keep serving, retry on a timer (nginx does the same).
                        if !self.accept_error_logged {
                            log::error!("reactor {}: accept: {e}; pausing accepts", self.id);
                            self.accept_error_logged = true;
                        }
                        self.pause_accepting();
                        self.accept_resume = Some(now + ACCEPT_BACKOFF);
                        return;
                    }
                    // ECONNABORTED and friends concern one client only.
                    _ => log::debug!("accept: {e}"),
                },
            }
        }
    }

    pub(super) fn pause_accepting(&mut self) {
        if self.accepting {
            self.accepting = false;
            for l in self
                .listeners
                .iter_mut()
                .chain(self.metrics_listener.as_mut())
            {
                let _ = self.poll.registry().deregister(l);
            }
        }
    }

    pub(super) fn resume_accepting(&mut self) {
        if self.accepting || self.drain_deadline.is_some() || self.accept_resume.is_some() {
            return;
        }
        // Registering reports readiness at once if clients are already queued.
        for (j, l) in self.listeners.iter_mut().enumerate() {
            if self
                .poll
                .registry()
                .register(l, listener_token(j), Interest::READABLE)
                .is_ok()
            {
                self.accepting = true;
            }
        }
        if let Some(l) = self.metrics_listener.as_mut() {
            let _ = self
                .poll
                .registry()
                .register(l, METRICS, Interest::READABLE);
        }
    }

    /// Take the connections already queued on the listeners `sweep` names: if ours is the
    /// socket's last descriptor (fewer workers or an address gone after a reload, or
    /// shutdown), closing it would reset them. They are answered with `Connection: close`.
    pub(super) fn sweep(&mut self, now: Instant, sweep: &Sweep) {
        self.sweeping = true;
        for j in (0..self.listeners.len()).filter(|&j| sweep.covers(j)) {
            self.accepting = true;
            self.accept(now, Source::Listener(j));
        }
        self.sweeping = false;
    }

    /// Stop accepting for good: this reactor's descriptors of its sockets close.
    pub(super) fn close_listeners(&mut self) {
        for mut l in std::mem::take(&mut self.listeners)
            .into_iter()
            .chain(self.metrics_listener.take())
        {
            let _ = self.poll.registry().deregister(&mut l);
        }
        self.accepting = false;
    }
}

#[cfg(test)]
mod tests {
    use super::super::WAKER;
    use super::*;

    #[test]
    fn listener_tokens_are_their_own_range() {
        for j in 0..MAX_LISTEN {
            assert_eq!(listener_index(listener_token(j)), Some(j));
        }
        for t in [WAKER, METRICS, token(0, 1), token(1 << 20, u32::MAX)] {
            assert_eq!(listener_index(t), None, "{t:?}");
        }
        assert_eq!(listener_index(Token(LISTENERS - MAX_LISTEN)), None);
    }
}
