//! CPU and disk work off the event loop, on three sets of threads, results back to the
//! reactor that asked through its channel and its Waker (an eventfd in that reactor's Poll).
//!
//! nginx gzips inside its worker loop, so one large compressible file stalls every other
//! connection of that worker; its autoindex reads and sorts a whole directory there too.
//! Here a reactor that needs such work parks the connection and hands the job over. The
//! pool knows jobs by `Kind` only (what the work is for stays with whoever submits it, e.g.
//! password checks in `site::auth`), and each kind runs on the lane that fits its wait:
//! - **handshakes** (TLS key exchange and signatures) on their own threads, one per CPU at
//!   nice 5: never queued behind a job, so a flood of password checks or compressions
//!   cannot stall new HTTPS connections, and a handshake storm can use every core the
//!   reactors leave idle (a reactor at nice 0 still wins its core when it has work);
//! - **CPU jobs** (compression, bcrypt) on the rayon pool at nice 10 (`compression.threads`);
//! - **disk waits** (cold file windows, listings, reading a file to compress) on the I/O
//!   threads: they sleep on the disk, not the CPU, so there are many, and none of them
//!   holds a CPU thread while it waits.
//!
//! Every pool thread starts with the process's CPU set, whichever (pinned) thread made it.
//!
//! Three things keep the pool from becoming the bottleneck or a memory sink:
//! - a **shared LRU cache** bounded in bytes: compressed bodies keyed by file identity
//!   (device, inode, size, mtime) and coding, so a changed file can never be answered from a
//!   stale entry and a hit costs no CPU at all; other kinds' results under a key their
//!   submitter chose (listings: the directory's identity and what the page shows);
//! - **single flight**: concurrent misses for the same key wait on one job, not N;
//! - a **budget** per kind of jobs in flight per process: compression and listings
//!   `compression.max_pending` each, password checks `limits.max_password_checks`. Over it,
//!   gzip falls back to identity, and the submitter answers 503 for the others.
//!
//! Every job sends a completion, on success, error or panic, to every waiter, and wakes its
//! reactor. Wakes coalesce, so the reactor drains its channel until empty, and a completion
//! for a connection that went away (slot reused, generation moved on) is dropped there.

pub mod codec;

mod cold;
pub mod pagecache;
pub mod stream;
use cold::IO_THREADS;
pub use cold::{send_in, ColdTicket, Sent, SockSlot, MAX_COLD_JOBS, MAX_COLD_SOCKETS};

use crate::config::Config;
use crate::http::negotiate::Coding;
use crossbeam_channel::Sender;
use mio::Waker;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Files larger than this are sent identity: whole-body compression must stay bounded in
/// memory (nginx would stream with chunked encoding; we send Content-Length).
pub const MAX_INPUT: u64 = 64 << 20;

/// Nice value of the CPU pool: below handshakes, far below the reactors.
const CPU_NICE: i32 = 10;
/// Nice value of the handshake threads: above the CPU jobs, below the reactors.
const HANDSHAKE_NICE: i32 = 5;

/// What a job is, for its lane, its budget and its figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Compressing a file body (read on the I/O threads, encoded on the CPU pool).
    Compress,
    /// Rendering a directory listing (I/O threads: readdir and stat wait on the disk).
    Listing,
    /// A password check (CPU pool).
    Auth,
}

impl Kind {
    const COUNT: usize = 3;

    fn index(self) -> usize {
        self as usize
    }
}

/// Identity of one encoded representation: the file as it is now, and the coding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub dev: u64,
    pub ino: u64,
    pub len: u64,
    pub mtime: u64,
    pub mtime_nanos: u32,
    pub coding: Coding,
}

/// What the cache and the single-flight table are keyed by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum CacheKey {
    Encoded(Key),
    /// Another kind's job, under the key its submitter chose.
    Keyed(Kind, Box<[u8]>),
}

impl CacheKey {
    fn kind(&self) -> Kind {
        match self {
            CacheKey::Encoded(_) => Kind::Compress,
            CacheKey::Keyed(kind, _) => *kind,
        }
    }
}

/// Why a job produced no body, and the status to answer with.
#[derive(Clone, Debug)]
pub struct JobError {
    pub status: u16,
    pub message: String,
}

impl JobError {
    pub fn internal(message: String) -> JobError {
        JobError {
            status: 500,
            message,
        }
    }
}

/// A job's output: the body, and whether it may be cached.
pub type Output = Result<(Vec<u8>, bool), JobError>;

/// Work the pool runs for a submitter without knowing what it is for.
pub trait Job: Send + 'static {
    /// Runs on a pool thread.
    fn run(self) -> Output;
}

/// A finished job, delivered to the reactor that owns (slot, generation).
pub struct Completion {
    pub slot: usize,
    pub generation: u32,
    pub result: Result<Arc<[u8]>, JobError>,
    /// When the job was handed to the pool (offload round-trip time).
    pub started: Instant,
    /// A cold file window: what the I/O thread sent to the socket itself.
    pub sent: Sent,
}

/// How a job reaches back into one reactor.
#[derive(Clone)]
pub struct Notifier {
    pub tx: Sender<Completion>,
    pub waker: Arc<Waker>,
}

/// What `claim` found.
enum Claim {
    /// A job for the key is in flight: the waiter joined it.
    Joined,
    /// The caller starts the job (its place in the budget is taken).
    Start,
    /// Over budget: nothing to wait for.
    Full,
}

struct Waiter {
    notifier: Notifier,
    slot: usize,
    generation: u32,
    started: Instant,
}

/// What `submit` did.
pub enum Submitted {
    /// A new job runs, or the request joined one in flight: park and wait.
    Parked,
    /// Over budget: send identity. The file is handed back.
    Rejected(Arc<File>),
}

/// Counters of one kind of job.
#[derive(Default)]
pub struct Stats {
    pub jobs_started: AtomicU64,
    pub jobs_completed: AtomicU64,
    pub jobs_rejected: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
}

pub struct Offload {
    /// CPU jobs: compression and password checks.
    pool: rayon::ThreadPool,
    /// TLS handshake steps, never behind a job.
    handshakes: rayon::ThreadPool,
    /// Made on the first disk wait (`spawn_io`).
    io_pool: std::sync::OnceLock<Option<rayon::ThreadPool>>,
    /// The CPU set every pool thread starts with (the process's, not its creator's).
    cpus: Option<rustix::thread::CpuSet>,
    levels: codec::Levels,
    budgets: [usize; Kind::COUNT],
    pending: [AtomicUsize; Kind::COUNT],
    cache: Mutex<Lru>,
    inflight: Mutex<HashMap<CacheKey, Vec<Waiter>>>,
    /// Whether each kind is on, and its figures.
    enabled: [bool; Kind::COUNT],
    stats: [Stats; Kind::COUNT],
    /// Compressed streams open (proxied bodies, `stream`), capped like compression jobs.
    streams: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A pool's threads: named, started on `cpus`, at `nice` (None: the creator's priority).
fn threads(
    n: usize,
    name: &'static str,
    nice: Option<i32>,
    cpus: Option<rustix::thread::CpuSet>,
) -> io::Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n.max(1))
        .thread_name(move |i| format!("vireo-{name}-{i}"))
        .start_handler(move |_| {
            // A thread inherits its creator's affinity: a pinned reactor would pin it.
            if let Some(set) = &cpus {
                if let Err(e) = rustix::thread::sched_setaffinity(None, set) {
                    log::warn!("cannot reset the CPU set of a {name} thread: {e}");
                }
            }
            // Linux nice values are per thread: this lowers only this pool's threads.
            if let Some(nice) = nice {
                if let Err(e) = rustix::process::setpriority_process(None, nice) {
                    log::warn!("cannot lower the priority of a {name} thread: {e}");
                }
            }
        })
        .panic_handler(move |_| log::error!("a {name} job panicked"))
        .build()
        .map_err(io::Error::other)
}

impl Offload {
    /// A pool for compression only (tests and tools).
    pub fn new(
        threads: usize,
        levels: codec::Levels,
        max_pending: usize,
        cache_bytes: u64,
    ) -> io::Result<Arc<Offload>> {
        Self::build(
            threads,
            levels,
            [max_pending, max_pending, max_pending],
            cache_bytes,
        )
        .map(Arc::new)
    }

    /// The pool `config` needs, with `threads` CPU threads: for compression, listings
    /// (`autoindex`), password checks or TLS handshakes, or None.
    pub fn for_config(config: &Config, threads: usize) -> io::Result<Option<Arc<Offload>>> {
        let c = &config.compression;
        let (autoindex, auth) = (config.any_autoindex(), config.any_auth());
        if !c.enabled && !autoindex && !auth && config.tls.is_none() {
            return Ok(None);
        }
        let levels = codec::Levels {
            gzip: c.level,
            zstd: c.zstd_level,
            brotli: c.brotli_level,
        };
        let budgets = [
            c.max_pending,
            c.max_pending,
            config.limits.max_password_checks,
        ];
        let mut o = Self::build(threads, levels, budgets, c.cache_bytes)?;
        o.enabled = [c.enabled, autoindex, auth];
        Ok(Some(Arc::new(o)))
    }

    fn build(
        threads_n: usize,
        levels: codec::Levels,
        budgets: [usize; Kind::COUNT],
        cache_bytes: u64,
    ) -> io::Result<Offload> {
        // The process's set (its main thread's), whatever thread builds the pool.
        let cpus = rustix::thread::sched_getaffinity(Some(rustix::process::getpid())).ok();
        Ok(Offload {
            pool: threads(threads_n, "offload", Some(CPU_NICE), cpus)?,
            handshakes: threads(num_cpus::get(), "handshake", Some(HANDSHAKE_NICE), cpus)?,
            io_pool: std::sync::OnceLock::new(),
            cpus,
            levels,
            budgets,
            pending: Default::default(),
            cache: Mutex::new(Lru::new(cache_bytes)),
            inflight: Mutex::new(HashMap::new()),
            enabled: [true, false, false],
            stats: Default::default(),
            streams: AtomicUsize::new(0),
        })
    }

    /// Run a TLS handshake step on the handshake threads (it carries its own completion
    /// and is counted by `net::tls`).
    pub fn spawn_handshake(&self, job: impl FnOnce() + Send + 'static) {
        self.handshakes.spawn(job);
    }

    /// Run `job`, which waits on the disk, on the I/O threads (the CPU pool if they could
    /// not be started).
    pub fn spawn_io(&self, job: impl FnOnce() + Send + 'static) {
        match self.io() {
            Some(io) => io.spawn(job),
            None => self.pool.spawn(job),
        }
    }

    fn io(&self) -> Option<&rayon::ThreadPool> {
        self.io_pool
            .get_or_init(|| {
                threads(IO_THREADS, "io", None, self.cpus)
                    .map_err(|e| log::warn!("cannot start the I/O threads: {e}"))
                    .ok()
            })
            .as_ref()
    }

    /// A cached encoded body, if any.
    pub fn lookup(&self, key: &Key) -> Option<Arc<[u8]>> {
        let hit = lock(&self.cache).get(&CacheKey::Encoded(*key));
        self.counted(Kind::Compress, hit.map(|(data, _)| data))
    }

    /// A cached result of a `kind` job under `key`, if any and younger than `max_age`.
    pub fn lookup_keyed(&self, kind: Kind, key: &[u8], max_age: Duration) -> Option<Arc<[u8]>> {
        let hit = lock(&self.cache).get(&CacheKey::Keyed(kind, key.into()));
        let fresh = hit.filter(|(_, born)| born.elapsed() < max_age);
        self.counted(kind, fresh.map(|(data, _)| data))
    }

    /// Count a lookup of `kind` made outside this cache (password checks keep their own).
    pub fn count_lookup(&self, kind: Kind, hit: bool) {
        let s = &self.stats[kind.index()];
        let counter = if hit { &s.cache_hits } else { &s.cache_misses };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn counted(&self, kind: Kind, hit: Option<Arc<[u8]>>) -> Option<Arc<[u8]>> {
        self.count_lookup(kind, hit.is_some());
        hit
    }

    /// Jobs of `kind` in flight.
    pub fn pending(&self, kind: Kind) -> usize {
        self.pending[kind.index()].load(Ordering::Relaxed)
    }

    /// The in-flight budget of `kind`.
    pub fn budget(&self, kind: Kind) -> usize {
        self.budgets[kind.index()]
    }

    pub fn figures(&self) -> crate::ops::metrics::OffloadFigures {
        let bytes = lock(&self.cache).bytes_by;
        let figures = |kind: Kind| {
            let s = &self.stats[kind.index()];
            let started = s.jobs_started.load(Ordering::Relaxed);
            let completed = s.jobs_completed.load(Ordering::Relaxed);
            self.enabled[kind.index()].then(|| crate::ops::metrics::JobFigures {
                started,
                completed,
                rejected: s.jobs_rejected.load(Ordering::Relaxed),
                pending: started.saturating_sub(completed),
                cache_hits: s.cache_hits.load(Ordering::Relaxed),
                cache_misses: s.cache_misses.load(Ordering::Relaxed),
                cache_bytes: bytes[kind.index()],
            })
        };
        crate::ops::metrics::OffloadFigures {
            compression: figures(Kind::Compress),
            listing: figures(Kind::Listing),
            auth: figures(Kind::Auth),
        }
    }

    /// Encode `file` with `key.coding` for the connection (slot, generation) of the
    /// reactor behind `notifier`, joining a job already running for the same key. The
    /// file is read on the I/O threads, then encoded on the CPU pool.
    pub fn submit(
        self: &Arc<Self>,
        key: Key,
        file: Arc<File>,
        notifier: &Notifier,
        slot: usize,
        generation: u32,
    ) -> Submitted {
        let waiter = Waiter::new(notifier, slot, generation);
        match self.claim(CacheKey::Encoded(key), waiter) {
            Claim::Start => {}
            Claim::Joined => return Submitted::Parked,
            Claim::Full => return Submitted::Rejected(file),
        }
        let input = Arc::clone(&file);
        let this = Arc::clone(self);
        self.spawn_io(move || {
            let name = key.coding.as_str();
            let fail = move |e: String| Err(JobError::internal(format!("{name}: {e}")));
            let read = std::panic::catch_unwind(|| codec::read_input(&input, key.len));
            drop(input);
            let bytes = match read {
                Ok(Ok(bytes)) => bytes,
                Ok(Err(e)) => return this.finish(CacheKey::Encoded(key), fail(e.to_string())),
                Err(_) => return this.finish(CacheKey::Encoded(key), fail("panicked".into())),
            };
            let t = Arc::clone(&this);
            this.pool.spawn(move || {
                let work = || {
                    let mut out = Vec::new();
                    codec::encode(key.coding, &t.levels, &bytes, &mut out).map(|()| out)
                };
                let result = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
                    Ok(Ok(out)) => Ok((out, true)),
                    Ok(Err(e)) => fail(e.to_string()),
                    Err(_) => fail("panicked".into()),
                };
                t.finish(CacheKey::Encoded(key), result);
            });
        });
        Submitted::Parked
    }

    /// Run `job` of `kind` for the connection (slot, generation), joining one in flight
    /// under the same `key`; its result is cached under it if the job says it may be.
    /// False when over budget (nothing was started).
    pub fn submit_job(
        self: &Arc<Self>,
        kind: Kind,
        key: Box<[u8]>,
        job: impl Job,
        notifier: &Notifier,
        slot: usize,
        generation: u32,
    ) -> bool {
        let key = CacheKey::Keyed(kind, key);
        match self.claim(key.clone(), Waiter::new(notifier, slot, generation)) {
            Claim::Start => {}
            Claim::Joined => return true,
            Claim::Full => return false,
        }
        let this = Arc::clone(self);
        let work = move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run()))
                .unwrap_or_else(|_| Err(JobError::internal("offload job panicked".into())));
            this.finish(key, result);
        };
        match kind {
            Kind::Listing => self.spawn_io(work),
            Kind::Compress | Kind::Auth => self.pool.spawn(work),
        }
        true
    }

    /// Join the job in flight for `key`, or take a place in its kind's budget for a new
    /// one.
    fn claim(&self, key: CacheKey, waiter: Waiter) -> Claim {
        let kind = key.kind().index();
        {
            let mut inflight = lock(&self.inflight);
            if let Some(waiters) = inflight.get_mut(&key) {
                waiters.push(waiter);
                return Claim::Joined;
            }
            // Reserve a slot in the budget before committing to a job.
            if self.pending[kind].fetch_add(1, Ordering::AcqRel) >= self.budgets[kind] {
                self.pending[kind].fetch_sub(1, Ordering::AcqRel);
                self.stats[kind]
                    .jobs_rejected
                    .fetch_add(1, Ordering::Relaxed);
                return Claim::Full;
            }
            inflight.insert(key, vec![waiter]);
        }
        self.stats[kind]
            .jobs_started
            .fetch_add(1, Ordering::Relaxed);
        Claim::Start
    }

    /// Cache the result, then tell every waiter. Runs on a pool thread.
    fn finish(&self, key: CacheKey, result: Output) {
        let kind = key.kind().index();
        let result: Result<Arc<[u8]>, JobError> = result.map(|(body, cacheable)| {
            let data: Arc<[u8]> = Arc::from(body);
            if cacheable {
                lock(&self.cache).insert(key.clone(), Arc::clone(&data));
            }
            data
        });
        let waiters = lock(&self.inflight).remove(&key).unwrap_or_default();
        self.pending[kind].fetch_sub(1, Ordering::AcqRel);
        self.stats[kind]
            .jobs_completed
            .fetch_add(1, Ordering::Relaxed);
        for w in waiters {
            let c = Completion {
                slot: w.slot,
                generation: w.generation,
                result: result.clone(),
                started: w.started,
                sent: Sent::default(),
            };
            // A reactor that is gone has nobody to deliver to.
            if w.notifier.tx.send(c).is_ok() {
                let _ = w.notifier.waker.wake();
            }
        }
    }
}

impl Waiter {
    fn new(notifier: &Notifier, slot: usize, generation: u32) -> Waiter {
        Waiter {
            notifier: notifier.clone(),
            slot,
            generation,
            started: Instant::now(),
        }
    }
}

/// Least-recently-used map bounded by the total size of its values; each entry remembers
/// when it was stored (listings expire).
struct Lru {
    limit: u64,
    bytes: u64,
    /// `bytes` split by `CacheKey::kind`, for the metrics.
    bytes_by: [u64; 3],
    tick: u64,
    map: HashMap<CacheKey, (Arc<[u8]>, u64, Instant)>,
    order: BTreeMap<u64, CacheKey>,
}

impl Lru {
    fn new(limit: u64) -> Lru {
        Lru {
            limit,
            bytes: 0,
            bytes_by: [0; 3],
            tick: 0,
            map: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    fn get(&mut self, key: &CacheKey) -> Option<(Arc<[u8]>, Instant)> {
        self.tick += 1;
        let tick = self.tick;
        let (data, t, born) = self.map.get_mut(key)?;
        if let Some(k) = self.order.remove(t) {
            self.order.insert(tick, k);
        }
        *t = tick;
        Some((Arc::clone(data), *born))
    }

    fn insert(&mut self, key: CacheKey, data: Arc<[u8]>) {
        let size = data.len() as u64;
        if size > self.limit {
            return;
        }
        self.remove(&key);
        while self.bytes + size > self.limit {
            let Some((_, k)) = self.order.pop_first() else {
                break;
            };
            self.remove(&k);
        }
        self.tick += 1;
        self.bytes += size;
        self.bytes_by[key.kind().index()] += size;
        self.order.insert(self.tick, key.clone());
        self.map.insert(key, (data, self.tick, Instant::now()));
    }

    fn remove(&mut self, key: &CacheKey) {
        if let Some((old, t, _)) = self.map.remove(key) {
            self.order.remove(&t);
            self.bytes -= old.len() as u64;
            self.bytes_by[key.kind().index()] -= old.len() as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> CacheKey {
        CacheKey::Encoded(Key {
            dev: 1,
            ino: i,
            len: 10,
            mtime: 5,
            mtime_nanos: 0,
            coding: Coding::Gzip,
        })
    }

    #[test]
    fn lru_evicts_least_recently_used_within_budget() {
        let mut l = Lru::new(25);
        l.insert(key(1), Arc::from(vec![0u8; 10]));
        l.insert(key(2), Arc::from(vec![0u8; 10]));
        assert!(l.get(&key(1)).is_some()); // 1 is now the most recent
        l.insert(key(3), Arc::from(vec![0u8; 10]));
        assert!(l.get(&key(2)).is_none());
        assert!(l.get(&key(1)).is_some());
        assert!(l.get(&key(3)).is_some());
        assert_eq!(l.bytes, 20);
        l.insert(key(4), Arc::from(vec![0u8; 30])); // larger than the cache: not kept
        assert_eq!(l.bytes, 20);
    }

    #[test]
    fn a_zero_budget_caches_nothing() {
        let mut l = Lru::new(0);
        l.insert(key(1), Arc::from(vec![0u8; 1]));
        assert!(l.get(&key(1)).is_none());
    }
}
