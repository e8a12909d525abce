//! The other side of a proxied request: upstream sets and their passive health (atomics
//! shared by every reactor of a generation), each reactor's pool of upstream connections
//! (`pool`), the request re-serialised for the upstream (`request`), one exchange's
//! state machine (`exchange`), its response side as pure bytes (`relay`), the byte tunnel an
//! upgrade becomes (`tunnel`) and the thread of active health checks and re-resolution
//! (`checker`). The route says "proxy to upstream X"; the client
//! connection (`net::conn`) owns the exchange and moves bytes between its socket and the
//! exchange's buffers; nothing here touches a client socket.

pub mod checker;
pub mod exchange;
pub mod pool;
pub mod relay;
pub mod request;
pub mod splice;
pub mod tunnel;

use crate::config::{Upstream, UpstreamAddr};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Why an exchange failed, for the log and the failures metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    Refused,
    ConnectTimeout,
    ReadTimeout,
    SendTimeout,
    /// The connection reset or closed before a complete response head.
    Reset,
    /// The response head or its framing was invalid.
    BadResponse,
    /// The body ended before its length.
    Truncated,
    NoServer,
    /// A 502/503/504 answer while another server could be tried (`retries`): not
    /// forwarded, the request goes to the next server.
    ErrorStatus,
}

impl Failure {
    pub const ALL: [Failure; 9] = [
        Failure::Refused,
        Failure::ConnectTimeout,
        Failure::ReadTimeout,
        Failure::SendTimeout,
        Failure::Reset,
        Failure::BadResponse,
        Failure::Truncated,
        Failure::NoServer,
        Failure::ErrorStatus,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Failure::Refused => "connect_refused",
            Failure::ConnectTimeout => "connect_timeout",
            Failure::ReadTimeout => "read_timeout",
            Failure::SendTimeout => "send_timeout",
            Failure::Reset => "reset",
            Failure::BadResponse => "bad_response",
            Failure::Truncated => "truncated",
            Failure::NoServer => "no_server",
            Failure::ErrorStatus => "error_status",
        }
    }

    /// What the client is answered when nothing of the response went out yet.
    pub fn status(self) -> u16 {
        match self {
            Failure::ConnectTimeout | Failure::ReadTimeout | Failure::SendTimeout => 504,
            _ => 502,
        }
    }

    /// Counts against the server's health (a bad response is the application's fault,
    /// but a dead or unreachable server is the server's).
    fn counts(self) -> bool {
        !matches!(self, Failure::NoServer)
    }
}

/// One server's shared state: passive health and its counters.
#[derive(Debug, Default)]
pub struct ServerState {
    /// Failures in the current window, and when it started (ms since the origin).
    fails: AtomicU32,
    window: AtomicU64,
    /// Marked down until then (ms since the origin; 0 = up).
    down_until: AtomicU64,
    pub requests: AtomicU64,
    /// Responses by class: 1xx .. 5xx.
    pub responses: [AtomicU64; 5],
    pub failures: [AtomicU64; Failure::ALL.len()],
    /// Upstream connections opened (requests / opened = the reuse ratio).
    pub opened: AtomicU64,
    /// Connections lent to an exchange, and idle in a pool, over all reactors.
    pub active: AtomicU64,
    pub idle: AtomicU64,
    /// The active check (`health`) failed its last time: no traffic until one passes.
    checked_down: AtomicBool,
    /// Addresses of a host name as last resolved (`resolve`), and a version that changes
    /// with them: a reactor takes the lock only when the version moved past its copy's.
    addrs: Mutex<Option<Arc<[SocketAddr]>>>,
    addrs_version: AtomicU64,
}

/// A reactor's copy of one server's resolved addresses (`Health::addr_for`).
#[derive(Debug, Default)]
pub struct AddrCache {
    version: u64,
    addrs: Option<Arc<[SocketAddr]>>,
    next: usize,
}

/// Every upstream set's servers' state, shared by the reactors of one generation.
#[derive(Debug)]
pub struct Health {
    origin: Instant,
    /// `[set][server]`, with each set's (max_fails, fail_timeout ms).
    servers: Vec<(u32, u64, Vec<ServerState>)>,
    /// Names for the metrics: (set name, server text).
    pub names: Vec<(Box<str>, Vec<Box<str>>)>,
}

impl Health {
    pub fn new(sets: &[Upstream]) -> Health {
        Health {
            origin: Instant::now(),
            servers: sets
                .iter()
                .map(|u| {
                    let ms = u64::try_from(u.fail_timeout.as_millis()).unwrap_or(u64::MAX);
                    (
                        u.max_fails,
                        ms,
                        u.servers.iter().map(|_| ServerState::default()).collect(),
                    )
                })
                .collect(),
            names: sets
                .iter()
                .map(|u| {
                    (
                        u.name.clone(),
                        u.servers.iter().map(|s| s.text.clone()).collect(),
                    )
                })
                .collect(),
        }
    }

    fn ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX)
            + 1
    }

    pub fn server(&self, u: usize, s: usize) -> Option<&ServerState> {
        self.servers.get(u).and_then(|(_, _, v)| v.get(s))
    }

    /// Not marked down, by the active check or passively (or its time is up: it gets
    /// traffic again).
    pub fn up(&self, u: usize, s: usize, now: Instant) -> bool {
        self.server(u, s).is_none_or(|st| {
            !st.checked_down.load(Ordering::Relaxed)
                && st.down_until.load(Ordering::Relaxed) <= self.ms(now)
        })
    }

    /// Record an active check's outcome; true when the state changed.
    pub fn set_checked(&self, u: usize, s: usize, healthy: bool) -> bool {
        self.server(u, s)
            .is_some_and(|st| st.checked_down.swap(!healthy, Ordering::Relaxed) == healthy)
    }

    /// Every server of set `u` failed its active check (the answer is then 503, not 502).
    pub fn all_checked_down(&self, u: usize) -> bool {
        self.servers.get(u).is_some_and(|(_, _, v)| {
            !v.is_empty() && v.iter().all(|st| st.checked_down.load(Ordering::Relaxed))
        })
    }

    /// A new address set for server (u, s), from the resolver thread; true if it changed.
    pub fn set_addrs(&self, u: usize, s: usize, addrs: Vec<SocketAddr>) -> bool {
        let Some(st) = self.server(u, s) else {
            return false;
        };
        let mut cur = st.addrs.lock().unwrap_or_else(|e| e.into_inner());
        if cur.as_deref() == Some(&addrs[..]) || addrs.is_empty() {
            return false;
        }
        *cur = Some(addrs.into());
        st.addrs_version.fetch_add(1, Ordering::Release);
        true
    }

    /// Where to connect to server (u, s): `conf` as loaded, or the resolver's latest set
    /// (`cache`: the reactor's copy, refreshed only when the version moved; the n-th
    /// connection takes address n of the set).
    pub fn addr_for(
        &self,
        u: usize,
        s: usize,
        conf: &UpstreamAddr,
        cache: &mut AddrCache,
    ) -> UpstreamAddr {
        let Some(st) = self.server(u, s) else {
            return conf.clone();
        };
        let v = st.addrs_version.load(Ordering::Acquire);
        if v != cache.version {
            cache.version = v;
            cache.addrs = st.addrs.lock().unwrap_or_else(|e| e.into_inner()).clone();
        }
        match cache.addrs.as_deref() {
            Some(list) if !list.is_empty() => {
                cache.next = cache.next.wrapping_add(1);
                UpstreamAddr::Tcp(list[cache.next % list.len()])
            }
            _ => conf.clone(),
        }
    }

    /// A failure: `max_fails` of them within `fail_timeout` mark the server down for
    /// `fail_timeout` (nginx's passive rule; `max_fails = 0` never marks it).
    pub fn failed(&self, u: usize, s: usize, why: Failure, now: Instant) -> bool {
        let Some((max, window_ms, v)) = self.servers.get(u) else {
            return false;
        };
        let Some(st) = v.get(s) else {
            return false;
        };
        st.failures[why as usize].fetch_add(1, Ordering::Relaxed);
        if *max == 0 || !why.counts() {
            return false;
        }
        let now = self.ms(now);
        let start = st.window.load(Ordering::Relaxed);
        if now.saturating_sub(start) > *window_ms {
            st.window.store(now, Ordering::Relaxed);
            st.fails.store(0, Ordering::Relaxed);
        }
        if st.fails.fetch_add(1, Ordering::Relaxed) + 1 >= *max {
            st.fails.store(0, Ordering::Relaxed);
            st.down_until.store(now + window_ms, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// A response came: the failure count starts over.
    /// Move one connection of server (u, s) between the gauges: `from`/`to` are
    /// 0 = none, 1 = active, 2 = idle.
    pub fn gauge(&self, u: usize, s: usize, from: u8, to: u8) {
        if let Some(st) = self.server(u, s) {
            let g = |k: u8| match k {
                1 => Some(&st.active),
                2 => Some(&st.idle),
                _ => None,
            };
            if let Some(a) = g(from) {
                let _ = a.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                    Some(v.saturating_sub(1))
                });
            }
            if let Some(a) = g(to) {
                a.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn succeeded(&self, u: usize, s: usize, status: u16) {
        if let Some(st) = self.server(u, s) {
            st.fails.store(0, Ordering::Relaxed);
            let class = usize::from(status / 100).clamp(1, 5) - 1;
            st.responses[class].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The Prometheus lines of every upstream server (`vireo_upstream_*`).
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = writeln!(out, "# TYPE vireo_upstream_tunnels gauge");
        let _ = writeln!(
            out,
            "vireo_upstream_tunnels {}",
            tunnel::OPEN.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# TYPE vireo_upstream_tunnels_total counter");
        let _ = writeln!(
            out,
            "vireo_upstream_tunnels_total {}",
            tunnel::TOTAL.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# TYPE vireo_upstream_up gauge");
        let _ = writeln!(out, "# TYPE vireo_upstream_requests_total counter");
        let _ = writeln!(out, "# TYPE vireo_upstream_responses_total counter");
        let _ = writeln!(out, "# TYPE vireo_upstream_failures_total counter");
        let _ = writeln!(
            out,
            "# TYPE vireo_upstream_connections_opened_total counter"
        );
        let _ = writeln!(out, "# TYPE vireo_upstream_connections gauge");
        for (u, (name, servers)) in self.names.iter().enumerate() {
            for (s, text) in servers.iter().enumerate() {
                let Some(st) = self.server(u, s) else {
                    continue;
                };
                let l = format!("upstream=\"{name}\",server=\"{text}\"");
                let _ = writeln!(
                    out,
                    "vireo_upstream_requests_total{{{l}}} {}",
                    st.requests.load(Ordering::Relaxed)
                );
                for (i, c) in st.responses.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "vireo_upstream_responses_total{{{l},class=\"{}xx\"}} {}",
                        i + 1,
                        c.load(Ordering::Relaxed)
                    );
                }
                for f in Failure::ALL {
                    let _ = writeln!(
                        out,
                        "vireo_upstream_failures_total{{{l},reason=\"{}\"}} {}",
                        f.name(),
                        st.failures[f as usize].load(Ordering::Relaxed)
                    );
                }
                let _ = writeln!(
                    out,
                    "vireo_upstream_connections_opened_total{{{l}}} {}",
                    st.opened.load(Ordering::Relaxed)
                );
                let active = st.active.load(Ordering::Relaxed);
                let idle = st.idle.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "vireo_upstream_connections{{{l},state=\"active\"}} {active}"
                );
                let _ = writeln!(
                    out,
                    "vireo_upstream_connections{{{l},state=\"idle\"}} {idle}"
                );
                // 1 = gets traffic; 0 = down (`checked`: by the active check, else passive).
                let checked = st.checked_down.load(Ordering::Relaxed);
                let passive = st.down_until.load(Ordering::Relaxed) > self.ms(Instant::now());
                let _ = writeln!(
                    out,
                    "vireo_upstream_up{{{l},by=\"check\"}} {}",
                    u8::from(!checked)
                );
                let _ = writeln!(
                    out,
                    "vireo_upstream_up{{{l},by=\"passive\"}} {}",
                    u8::from(!passive)
                );
            }
        }
    }
}
