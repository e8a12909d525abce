//! One reactor's upstream connections: a slab of sockets registered in the reactor's own
//! Poll (tokens `generation << 32 | UPSTREAM_BIT | slot`, see `token`), each either lent
//! to one client exchange or idle in its server's keep-alive pool. Idle connections stay
//! registered, so an upstream that closes one is seen (EOF) and it leaves the pool at
//! once; each leaves anyway at its deadline: `keepalive_timeout`, or earlier when the
//! upstream announced a shorter `Keep-Alive: timeout=N` (closed before the upstream
//! would). Nothing here is shared with other reactors.

use crate::config::{Balance, Upstream, UpstreamAddr};
use mio::{Interest, Registry, Token};
use slab::Slab;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Set in the low half of every upstream token: client slots never reach 2^31.
pub const UPSTREAM_BIT: usize = 1 << 31;

/// An upstream connection as the exchange holds it: slot and generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpKey {
    pub slot: usize,
    pub generation: u32,
}

pub fn token(k: UpKey) -> Token {
    Token(((k.generation as usize) << 32) | UPSTREAM_BIT | k.slot)
}

/// The upstream connection a token names, if it is one (generations are 31 bits, so no
/// upstream token reaches the listener, waker and metrics tokens at the top of the range).
pub fn key_of(t: Token) -> Option<UpKey> {
    let low = t.0 & 0xffff_ffff;
    if low & UPSTREAM_BIT == 0 || t.0 >> 63 != 0 {
        return None;
    }
    Some(UpKey {
        slot: low & !UPSTREAM_BIT,
        generation: (t.0 >> 32) as u32,
    })
}

pub enum UpSock {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
}

impl UpSock {
    fn connect(addr: &UpstreamAddr) -> io::Result<UpSock> {
        Ok(match addr {
            UpstreamAddr::Tcp(a) => {
                let s = mio::net::TcpStream::connect(*a)?;
                UpSock::Tcp(s)
            }
            UpstreamAddr::Unix(p) => UpSock::Unix(mio::net::UnixStream::connect(p)?),
        })
    }

    fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            UpSock::Tcp(s) => s,
            UpSock::Unix(s) => s,
        }
    }

    /// The outcome of a non-blocking connect, once the socket reported an event.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            UpSock::Tcp(s) => s.take_error(),
            UpSock::Unix(s) => s.take_error(),
        }
    }

    /// The descriptor, for splice(2).
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        match self {
            UpSock::Tcp(s) => s.as_fd(),
            UpSock::Unix(s) => s.as_fd(),
        }
    }

    pub fn set_nodelay(&self) {
        if let UpSock::Tcp(s) = self {
            let _ = s.set_nodelay(true);
        }
    }
}

impl Read for UpSock {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            UpSock::Tcp(s) => s.read(b),
            UpSock::Unix(s) => s.read(b),
        }
    }
}

impl Write for UpSock {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            UpSock::Tcp(s) => s.write(b),
            UpSock::Unix(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub struct UpConn {
    pub sock: UpSock,
    generation: u32,
    pub upstream: usize,
    pub server: usize,
    /// The client connection (slot, generation) it serves; None while idle.
    owner: Option<(usize, u32)>,
    pub readable: bool,
    pub writable: bool,
    /// The peer hung up or the socket failed (read on to see which).
    pub hup: bool,
    pub error: bool,
    /// The non-blocking connect is known to have succeeded.
    pub connected: bool,
    /// Requests sent on it so far.
    pub requests: u32,
    /// Idle until then (in the pool).
    expires: Instant,
}

/// Why no connection could be had.
#[derive(Debug)]
pub enum AcquireError {
    /// Every server is at its `max_conns` or marked down.
    NoServer,
    Connect(String, io::Error),
}

/// Per-reactor state of one upstream set: idle connections and balancing state.
struct Set {
    /// Idle connections per server, oldest first.
    idle: Vec<VecDeque<UpKey>>,
    /// Smooth weighted round robin's current weights (nginx `ngx_http_upstream_round_robin`).
    current: Vec<i64>,
    /// Connections per server (lent and idle): `max_conns`, least_conn.
    open: Vec<u32>,
    lent: Vec<u32>,
    /// Each server's hash seed, from its address as written: a server keeps its keys
    /// whatever else is added or removed (rendezvous hashing).
    seeds: Vec<u64>,
    /// Each server's addresses as `resolve` last found them (`Health::addr_for`).
    addrs: Vec<crate::upstream::AddrCache>,
}

pub struct Upstreams {
    registry: Option<Registry>,
    conf: Arc<[Upstream]>,
    sets: Vec<Set>,
    conns: Slab<UpConn>,
    next_generation: u32,
    /// Shared across reactors: passive health (`max_fails` within `fail_timeout`).
    health: Arc<crate::upstream::Health>,
    /// Responses are read here and copied out, so a read costs what it got, not a
    /// zero-fill of the whole room the destination offers (32 KiB for every head).
    scratch: Box<[u8]>,
}

impl Upstreams {
    pub fn new(
        registry: Option<Registry>,
        conf: Arc<[Upstream]>,
        health: Arc<crate::upstream::Health>,
    ) -> Upstreams {
        let sets = conf
            .iter()
            .map(|u| {
                let n = u.servers.len();
                Set {
                    idle: (0..n).map(|_| VecDeque::new()).collect(),
                    current: vec![0; n],
                    open: vec![0; n],
                    lent: vec![0; n],
                    seeds: u
                        .servers
                        .iter()
                        .map(|s| {
                            s.text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
                            })
                        })
                        .collect(),
                    addrs: (0..n).map(|_| Default::default()).collect(),
                }
            })
            .collect();
        Upstreams {
            registry,
            conf,
            sets,
            conns: Slab::new(),
            next_generation: 1,
            health,
            scratch: vec![0; crate::upstream::relay::OUT_MAX].into_boxed_slice(),
        }
    }

    pub fn conf(&self) -> &Arc<[Upstream]> {
        &self.conf
    }

    pub fn health(&self) -> &crate::upstream::Health {
        &self.health
    }

    pub fn get(&mut self, k: UpKey) -> Option<&mut UpConn> {
        self.conns
            .get_mut(k.slot)
            .filter(|c| c.generation == k.generation)
    }

    /// The connection and the reactor's read scratch buffer.
    pub fn get_with_scratch(&mut self, k: UpKey) -> Option<(&mut UpConn, &mut [u8])> {
        let c = self
            .conns
            .get_mut(k.slot)
            .filter(|c| c.generation == k.generation)?;
        Some((c, &mut self.scratch))
    }

    /// (lent, idle) connections of this reactor, for the metrics.
    pub fn counts(&self) -> (usize, usize) {
        let idle = self.conns.iter().filter(|(_, c)| c.owner.is_none()).count();
        (self.conns.len() - idle, idle)
    }

    /// Whether a server of set `u` other than `current` and those `tried` is usable now
    /// (up, under `max_conns`; a backup counts).
    pub fn another_server(&self, u: usize, tried: &[usize], current: usize, now: Instant) -> bool {
        let (Some(conf), Some(set)) = (self.conf.get(u), self.sets.get(u)) else {
            return false;
        };
        conf.servers.iter().enumerate().any(|(i, s)| {
            i != current
                && !tried.contains(&i)
                && (s.max_conns == 0 || set.open[i] < s.max_conns)
                && self.health.up(u, i, now)
        })
    }

    /// Pick a server of set `u` (balance, health, `max_conns`), skipping `tried`.
    fn pick(&mut self, u: usize, tried: &[usize], hash: u64, now: Instant) -> Option<usize> {
        let conf = &self.conf[u];
        let set = &mut self.sets[u];
        let health = &self.health;
        let usable = |i: usize, backup: bool| {
            let s = &conf.servers[i];
            s.backup == backup
                && !tried.contains(&i)
                && (s.max_conns == 0 || set.open[i] < s.max_conns)
                && health.up(u, i, now)
        };
        for backup in [false, true] {
            let cands: Vec<usize> = (0..conf.servers.len())
                .filter(|&i| usable(i, backup))
                .collect();
            if cands.is_empty() {
                continue;
            }
            let pick = match conf.balance {
                Balance::RoundRobin => {
                    let total: i64 = cands
                        .iter()
                        .map(|&i| i64::from(conf.servers[i].weight))
                        .sum();
                    let mut best = cands[0];
                    for &i in &cands {
                        set.current[i] += i64::from(conf.servers[i].weight);
                        if set.current[i] > set.current[best] {
                            best = i;
                        }
                    }
                    set.current[best] -= total;
                    best
                }
                Balance::LeastConn => *cands
                    .iter()
                    .min_by_key(|&&i| {
                        (u64::from(set.lent[i]) << 16) / u64::from(conf.servers[i].weight)
                    })
                    .unwrap_or(&cands[0]),
                Balance::Hash => {
                    // Rendezvous hashing: adding a server moves ~1/N of the keys.
                    *cands
                        .iter()
                        .max_by_key(|&&i| mix(hash ^ mix(set.seeds[i])))
                        .unwrap_or(&cands[0])
                }
            };
            return Some(pick);
        }
        None
    }

    /// A connection of set `u` for the client (slot, generation): an idle one of the
    /// picked server if it has one (`true`: reused), else a new non-blocking connect.
    pub fn acquire(
        &mut self,
        u: usize,
        owner: (usize, u32),
        tried: &[usize],
        fresh: bool,
        hash: u64,
        now: Instant,
    ) -> Result<(UpKey, usize, bool), AcquireError> {
        let server = self
            .pick(u, tried, hash, now)
            .ok_or(AcquireError::NoServer)?;
        if !fresh {
            while let Some(k) = self.sets[u].idle[server].pop_back() {
                let live = self
                    .conns
                    .get(k.slot)
                    .is_some_and(|c| c.generation == k.generation && c.expires > now);
                if !live {
                    self.discard(k);
                    continue;
                }
                if let Some(c) = self.conns.get_mut(k.slot) {
                    c.owner = Some(owner);
                    c.requests += 1;
                    self.sets[u].lent[server] += 1;
                    self.health.gauge(u, server, 2, 1);
                    return Ok((k, server, true));
                }
            }
        }
        let addr = self.health.addr_for(
            u,
            server,
            &self.conf[u].servers[server].addr,
            &mut self.sets[u].addrs[server],
        );
        let mut sock = UpSock::connect(&addr)
            .map_err(|e| AcquireError::Connect(self.conf[u].servers[server].text.to_string(), e))?;
        let generation = self.next_generation;
        self.next_generation = if generation >= (u32::MAX >> 1) {
            1
        } else {
            generation + 1
        };
        let entry = self.conns.vacant_entry();
        let k = UpKey {
            slot: entry.key(),
            generation,
        };
        if k.slot >= UPSTREAM_BIT {
            return Err(AcquireError::NoServer);
        }
        if let Some(r) = &self.registry {
            r.register(
                sock.source(),
                token(k),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| AcquireError::Connect(self.conf[u].servers[server].text.to_string(), e))?;
        }
        entry.insert(UpConn {
            sock,
            generation,
            upstream: u,
            server,
            owner: Some(owner),
            readable: false,
            writable: false,
            hup: false,
            error: false,
            connected: false,
            requests: 1,
            expires: now,
        });
        self.sets[u].open[server] += 1;
        self.sets[u].lent[server] += 1;
        self.health.gauge(u, server, 0, 1);
        Ok((k, server, false))
    }

    /// The exchange is done with `k`: back to its server's pool when `reusable` (within
    /// `keepalive`, `keepalive_requests`, the upstream's announced timeout), else closed.
    pub fn release(
        &mut self,
        k: UpKey,
        reusable: bool,
        upstream_timeout: Option<u64>,
        now: Instant,
    ) {
        let Some(c) = self
            .conns
            .get_mut(k.slot)
            .filter(|c| c.generation == k.generation)
        else {
            return;
        };
        let (u, s) = (c.upstream, c.server);
        let conf = &self.conf[u];
        self.sets[u].lent[s] = self.sets[u].lent[s].saturating_sub(1);
        let mut keep = conf.keepalive_timeout;
        if let Some(t) = upstream_timeout {
            // Close it before the upstream would: half a second of margin for the
            // request already on its way when the upstream's timer fires.
            keep = keep.min(Duration::from_secs(t).saturating_sub(Duration::from_millis(500)));
        }
        let ok = reusable
            && !c.hup
            && c.requests < conf.keepalive_requests
            && !keep.is_zero()
            && self.sets[u].idle[s].len() < conf.keepalive;
        if !ok {
            self.discard(k);
            return;
        }
        c.owner = None;
        c.expires = now + keep;
        self.sets[u].idle[s].push_back(k);
        self.health.gauge(u, s, 1, 2);
    }

    /// Close `k` (lent or idle).
    pub fn discard(&mut self, k: UpKey) {
        let Some(c) = self
            .conns
            .get(k.slot)
            .filter(|c| c.generation == k.generation)
        else {
            return;
        };
        let (u, s, lent) = (c.upstream, c.server, c.owner.is_some());
        if let Some(mut c) = self.conns.try_remove(k.slot) {
            if let Some(r) = &self.registry {
                let _ = r.deregister(c.sock.source());
            }
        }
        self.health.gauge(u, s, if lent { 1 } else { 2 }, 0);
        let set = &mut self.sets[u];
        set.open[s] = set.open[s].saturating_sub(1);
        if lent {
            set.lent[s] = set.lent[s].saturating_sub(1);
        }
        set.idle[s].retain(|x| *x != k);
    }

    /// An event for an upstream token. Returns the client connection to drive, or None
    /// (stale, or an idle connection: then it is checked here and closed if the upstream
    /// closed it or sent bytes nobody asked for).
    pub fn event(
        &mut self,
        k: UpKey,
        readable: bool,
        writable: bool,
        hup: bool,
        error: bool,
    ) -> Option<(usize, u32)> {
        let c = self.get(k)?;
        c.readable |= readable || hup || error;
        c.writable |= writable || error;
        c.hup |= hup;
        c.error |= error;
        if let Some(owner) = c.owner {
            return Some(owner);
        }
        let mut b = [0u8; 64];
        let dead = loop {
            match c.sock.read(&mut b) {
                Ok(_) => break true, // EOF, or bytes outside any exchange: unusable
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break c.hup || c.error,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break true,
            }
        };
        if dead {
            self.discard(k);
        }
        None
    }

    /// Close the idle connections whose deadline passed.
    pub fn expire(&mut self, now: Instant) {
        let old: Vec<UpKey> = self
            .conns
            .iter()
            .filter(|(_, c)| c.owner.is_none() && c.expires <= now)
            .map(|(slot, c)| UpKey {
                slot,
                generation: c.generation,
            })
            .collect();
        for k in old {
            self.discard(k);
        }
    }

    /// The nearest idle deadline (the reactor's poll timeout includes it).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.sets
            .iter()
            .flat_map(|s| s.idle.iter().flat_map(|q| q.iter()))
            .filter_map(|k| self.conns.get(k.slot).map(|c| c.expires))
            .min()
    }
}

/// A 64-bit finaliser (splitmix64).
pub fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_tokens_cannot_collide_with_client_or_reserved_tokens() {
        let k = UpKey {
            slot: 7,
            generation: u32::MAX >> 1,
        };
        assert_eq!(key_of(token(k)), Some(k));
        for t in [
            Token(usize::MAX),
            Token(usize::MAX - 1),
            Token(usize::MAX - 70),
            Token((5 << 32) | 3),
        ] {
            assert_eq!(key_of(t), None, "{t:?}");
        }
    }
}
