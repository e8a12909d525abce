//! Active health checks (`health = { path, interval, timeout, expect }`) and periodic
//! re-resolution of host names (`resolve = "30s"`), off the reactors: one thread per
//! configuration generation, started by the server and stopped when a reload replaces
//! it (or at shutdown). Blocking sockets with timeouts are fine here; nothing on a
//! reactor ever waits for this thread, which only writes the generation's shared
//! `Health` atomics (and, for a new address set, one short-held lock the reactors take
//! only when its version moved).
//!
//! A check is `GET path HTTP/1.1` with `Connection: close` on a fresh connection; the
//! server is healthy when the status is `expect`. One failure marks it down for every
//! reactor (nginx Plus's `fails=1`), one pass puts it back (`passes=1`); a server counts
//! as up until its first check says otherwise. Servers are checked one after another, so
//! a round takes at most (servers x timeout): with many slow servers keep
//! `interval` above that. Re-resolution blocks this thread in `getaddrinfo` (no timeout
//! of its own), delaying checks meanwhile, never requests; a failed lookup keeps the
//! last good set.

use crate::config::{Upstream, UpstreamAddr};
use crate::upstream::{AddrCache, Health};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The running checker of one generation; dropping it stops the thread (after the check
/// in progress, at most its `timeout`; the thread is not waited for).
pub struct Checker {
    _stop: Sender<()>,
}

enum Kind {
    Check,
    Resolve,
}

struct Job {
    u: usize,
    s: usize,
    kind: Kind,
    every: Duration,
    next: Instant,
}

impl Checker {
    /// Start the thread if any set has `health` or a non-zero `resolve` on a host name.
    pub fn start(sets: Arc<[Upstream]>, health: Arc<Health>) -> Option<Checker> {
        let now = Instant::now();
        let mut jobs = Vec::new();
        for (u, set) in sets.iter().enumerate() {
            for (s, server) in set.servers.iter().enumerate() {
                if let Some(h) = &set.health {
                    jobs.push(Job {
                        u,
                        s,
                        kind: Kind::Check,
                        every: h.interval.max(Duration::from_millis(10)),
                        next: now,
                    });
                }
                let named = matches!(server.addr, UpstreamAddr::Tcp(_))
                    && server.text.parse::<SocketAddr>().is_err();
                if !set.resolve.is_zero() && named {
                    // At once: the load kept only the name's first address.
                    jobs.push(Job {
                        u,
                        s,
                        kind: Kind::Resolve,
                        every: set.resolve,
                        next: now,
                    });
                }
            }
        }
        if jobs.is_empty() {
            return None;
        }
        let (tx, rx) = mpsc::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("vireo-health".into())
            .spawn(move || {
                let mut caches: Vec<Vec<AddrCache>> = sets
                    .iter()
                    .map(|u| u.servers.iter().map(|_| AddrCache::default()).collect())
                    .collect();
                loop {
                    let now = Instant::now();
                    let due = jobs.iter().map(|j| j.next).min().unwrap_or(now);
                    match rx.recv_timeout(due.saturating_duration_since(now)) {
                        Err(RecvTimeoutError::Timeout) => {}
                        _ => return, // stopped: a reload replaced us, or shutdown
                    }
                    for j in jobs.iter_mut() {
                        let now = Instant::now();
                        if j.next > now {
                            continue;
                        }
                        let set = &sets[j.u];
                        let server = &set.servers[j.s];
                        match j.kind {
                            Kind::Resolve => resolve(&health, j.u, j.s, &server.text),
                            Kind::Check => {
                                let Some(h) = &set.health else { continue };
                                let addr =
                                    health.addr_for(j.u, j.s, &server.addr, &mut caches[j.u][j.s]);
                                let r = check(&addr, &server.text, &h.path, h.timeout);
                                let ok = matches!(r, Ok(status) if status == h.expect);
                                if health.set_checked(j.u, j.s, ok) {
                                    if ok {
                                        log::info!(
                                            "upstream {} {}: health check passed; back up",
                                            set.name,
                                            server.text
                                        );
                                    } else {
                                        let why = match r {
                                            Ok(status) => format!("status {status}"),
                                            Err(e) => e,
                                        };
                                        log::warn!(
                                            "upstream {} {}: health check failed ({why}); \
                                             marked down",
                                            set.name,
                                            server.text
                                        );
                                    }
                                }
                            }
                        }
                        j.next = Instant::now() + j.every;
                    }
                }
            });
        match spawned {
            Ok(_) => Some(Checker { _stop: tx }),
            Err(e) => {
                log::error!("cannot start the upstream health thread: {e}; no active checks");
                None
            }
        }
    }
}

fn resolve(health: &Health, u: usize, s: usize, text: &str) {
    match text.to_socket_addrs() {
        Ok(it) => {
            let mut v: Vec<SocketAddr> = it.collect();
            v.sort();
            v.dedup();
            if v.is_empty() {
                log::warn!("upstream {text}: resolves to no address; keeping the last ones");
            } else {
                let list = v
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                if health.set_addrs(u, s, v) {
                    log::info!("upstream {text}: resolved to {list}");
                }
            }
        }
        Err(e) => log::warn!("upstream {text}: cannot resolve ({e}); keeping the last ones"),
    }
}

/// One check: the status the server answered, or why there was none.
fn check(addr: &UpstreamAddr, text: &str, path: &str, timeout: Duration) -> Result<u16, String> {
    let host = match addr {
        UpstreamAddr::Tcp(_) => text,
        UpstreamAddr::Unix(_) => "localhost",
    };
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: vireo-health-check\r\n\
         Connection: close\r\n\r\n"
    );
    let deadline = Instant::now() + timeout;
    let mut head = Vec::with_capacity(256);
    let mut exchange = |s: &mut dyn ReadWrite| -> Result<u16, String> {
        s.write_all(req.as_bytes())
            .map_err(|e| format!("send: {e}"))?;
        let mut b = [0u8; 512];
        loop {
            if let Some(line_end) = head.windows(2).position(|w| w == b"\r\n") {
                let line = &head[..line_end];
                // "HTTP/1.x NNN reason"
                let status = line
                    .strip_prefix(b"HTTP/1.")
                    .and_then(|r| r.get(2..5))
                    .and_then(|d| std::str::from_utf8(d).ok())
                    .and_then(|d| d.parse::<u16>().ok())
                    .ok_or_else(|| "malformed status line".to_string())?;
                return Ok(status);
            }
            if head.len() > 4096 || Instant::now() >= deadline {
                return Err("no status line".into());
            }
            match s.read(&mut b) {
                Ok(0) => return Err("closed before a status line".into()),
                Ok(n) => head.extend_from_slice(&b[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    };
    let t = Some(timeout.max(Duration::from_millis(1)));
    match addr {
        UpstreamAddr::Tcp(a) => {
            let mut s = TcpStream::connect_timeout(a, timeout.max(Duration::from_millis(1)))
                .map_err(|e| format!("connect: {e}"))?;
            let _ = s.set_read_timeout(t);
            let _ = s.set_write_timeout(t);
            exchange(&mut s)
        }
        UpstreamAddr::Unix(p) => {
            let mut s = UnixStream::connect(p).map_err(|e| format!("connect: {e}"))?;
            let _ = s.set_read_timeout(t);
            let _ = s.set_write_timeout(t);
            exchange(&mut s)
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn answering(resp: &'static [u8]) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let a = l.local_addr().expect("addr");
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                let mut b = [0u8; 1024];
                let _ = s.read(&mut b);
                let _ = s.write_all(resp);
            }
        });
        a
    }

    #[test]
    fn a_check_reads_the_status_or_says_why_not() {
        let t = Duration::from_secs(5);
        let a = answering(b"HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(check(&UpstreamAddr::Tcp(a), "x", "/h", t), Ok(204));
        let a = answering(b"garbage\r\n\r\n");
        assert!(check(&UpstreamAddr::Tcp(a), "x", "/h", t).is_err());
        let a = answering(b"");
        assert!(check(&UpstreamAddr::Tcp(a), "x", "/h", t).is_err());
    }

    #[test]
    fn health_marks_and_clears_and_swaps_addresses() {
        let conf = crate::config::tests::load(
            "[[upstream]]\nname = \"a\"\nservers = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n",
        )
        .expect("config");
        let h = Health::new(&conf.upstreams);
        let now = Instant::now();
        assert!(h.up(0, 0, now) && !h.all_checked_down(0));
        assert!(h.set_checked(0, 0, false));
        assert!(!h.set_checked(0, 0, false), "no change the second time");
        assert!(!h.up(0, 0, now) && !h.all_checked_down(0));
        h.set_checked(0, 1, false);
        assert!(h.all_checked_down(0));
        assert!(h.set_checked(0, 0, true) && h.up(0, 0, now));
        let mut cache = AddrCache::default();
        let loaded = conf.upstreams[0].servers[0].addr.clone();
        assert_eq!(h.addr_for(0, 0, &loaded, &mut cache), loaded);
        let new: Vec<SocketAddr> = vec![
            "127.0.0.2:1".parse().expect("a"),
            "127.0.0.3:1".parse().expect("a"),
        ];
        assert!(h.set_addrs(0, 0, new.clone()));
        assert!(!h.set_addrs(0, 0, new.clone()));
        let picked: Vec<UpstreamAddr> = (0..2)
            .map(|_| h.addr_for(0, 0, &loaded, &mut cache))
            .collect();
        assert!(
            new.iter().all(|a| picked.contains(&UpstreamAddr::Tcp(*a))),
            "{picked:?}"
        );
    }
}
