//! CPU and disk work off the event loop: gzip and directory listings on a dedicated rayon
//! pool, results back to the reactor that asked through its channel and its Waker (an
//! eventfd in that reactor's Poll).
//!
//! nginx gzips inside its worker loop, so one large compressible file stalls every other
//! connection of that worker; its autoindex reads and sorts a whole directory there too.
//! Here a reactor that needs a compressed body or a listing parks the connection and hands
//! the job to the pool; pool threads run at nice +10 so on a busy box the kernel preempts
//! them, never the loops.
//!
//! Three things keep the pool from becoming the bottleneck or a memory sink:
//! - a **shared LRU cache** bounded in bytes: compressed bodies keyed by file identity
//!   (device, inode, size, mtime) and coding, so a changed file can never be answered from a
//!   stale entry and a hit costs no CPU at all; rendered listings keyed by the directory's
//!   identity and mtime plus everything else the page shows (`ListingKey`);
//! - **single flight**: concurrent misses for the same key wait on one job, not N;
//! - a **budget** (`max_pending` jobs of either kind in flight per process): over it, gzip
//!   falls back to identity and a listing is answered 503.
//!
//! Every job sends a completion, on success, error or panic, to every waiter, and wakes its
//! reactor. Wakes coalesce, so the reactor drains its channel until empty, and a completion
//! for a connection that went away (slot reused, generation moved on) is dropped there.

pub mod codec;

mod cold;
use cold::IO_THREADS;
pub use cold::{send_in, Sent, SockSlot, MAX_COLD_SOCKETS};

use crate::config::Config;
use crate::http::negotiate::Coding;
use crate::site::auth::{AuthJob, CredKey, Verified};
use crate::site::files::Resolver;
use crossbeam_channel::Sender;
use mio::Waker;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

/// Files larger than this are sent identity: whole-body compression must stay bounded in
/// memory (nginx would stream with chunked encoding; we send Content-Length).
pub const MAX_INPUT: u64 = 64 << 20;

/// A directory modified this recently is not cached: its mtime may not have ticked yet for
/// a change made just before or during the read (coarse timestamps: a jiffy on ext4, 2 s on
/// FAT), so the next change could keep the same key (git's "racy clean" problem).
const RACY: Duration = Duration::from_secs(2);

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

/// Identity of one rendered listing: the directory as it is now (adding, removing or
/// renaming an entry moves its mtime) and everything else the page depends on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ListingKey {
    /// The root the listing was resolved under (`Resolver::root_id`): a directory shared
    /// by two sites' roots may list differently in each (symlinks leaving one of them).
    pub root: (u64, u64),
    pub dev: u64,
    pub ino: u64,
    pub mtime: i64,
    pub mtime_nanos: u32,
    pub show_hidden: bool,
    /// The directory's normalised path, shown in the page (one directory can be reached
    /// under several paths through symlinks).
    pub rel: Box<[u8]>,
}

impl ListingKey {
    /// Key the directory `dir`, whose normalised path below `resolver`'s root is `rel`.
    pub fn of(
        resolver: &Resolver,
        dir: &File,
        rel: &[u8],
        show_hidden: bool,
    ) -> io::Result<ListingKey> {
        use std::os::unix::fs::MetadataExt;
        let md = dir.metadata()?;
        Ok(ListingKey {
            root: resolver.root_id(),
            dev: md.dev(),
            ino: md.ino(),
            mtime: md.mtime(),
            mtime_nanos: u32::try_from(md.mtime_nsec()).unwrap_or(0),
            show_hidden,
            rel: rel.into(),
        })
    }

    /// Changed too recently for its mtime to be trusted as a cache key (`RACY`).
    fn racy(&self, now: SystemTime) -> bool {
        let Ok(secs) = u64::try_from(self.mtime) else {
            return false; // before 1970: long settled
        };
        let mtime = SystemTime::UNIX_EPOCH + Duration::new(secs, self.mtime_nanos.min(999_999_999));
        now.duration_since(mtime).map_or(true, |age| age < RACY)
    }
}

/// What the cache and the single-flight table are keyed by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum CacheKey {
    Encoded(Key),
    Listing(ListingKey),
    /// A password check (never stored in the byte cache: its result goes to `Verified`).
    Auth(CredKey),
}

impl CacheKey {
    /// Index into per-kind figures.
    fn kind(&self) -> usize {
        match self {
            CacheKey::Encoded(_) => 0,
            CacheKey::Listing(_) => 1,
            CacheKey::Auth(_) => 2,
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
    fn internal(message: String) -> JobError {
        JobError {
            status: 500,
            message,
        }
    }
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

/// A job's output: the body, and whether it may be cached.
type Output = Result<(Vec<u8>, bool), JobError>;

pub struct Offload {
    pool: rayon::ThreadPool,
    /// Made on the first cold read (`spawn_io`).
    io_pool: std::sync::OnceLock<Option<rayon::ThreadPool>>,
    levels: codec::Levels,
    max_pending: usize,
    pending: AtomicUsize,
    cache: Mutex<Lru>,
    inflight: Mutex<HashMap<CacheKey, Vec<Waiter>>>,
    /// Compression (index 0), listings (1) and password checks (2): whether each is on,
    /// and its figures.
    enabled: [bool; 3],
    stats: [Stats; 3],
    /// Successful password checks, shared by every reactor.
    verified: Verified,
    /// How long a cached listing may be served (file sizes and dates in it can change
    /// without the directory's mtime moving): `open_file_cache.valid`.
    listing_ttl: Duration,
}

/// Runs on a pool thread.
fn render_listing(resolver: &Resolver, key: &ListingKey, dir: File) -> Output {
    let page =
        crate::site::autoindex::render(resolver, dir, &key.rel, key.show_hidden).map_err(|e| {
            JobError {
                status: crate::site::autoindex::error_status(&e),
                message: format!("autoindex {:?}: {e}", String::from_utf8_lossy(&key.rel)),
            }
        })?;
    Ok((page, !key.racy(SystemTime::now())))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Offload {
    /// A pool for compression only (tests and tools).
    pub fn new(
        threads: usize,
        levels: codec::Levels,
        max_pending: usize,
        cache_bytes: u64,
    ) -> io::Result<Arc<Offload>> {
        Self::build(threads, levels, max_pending, cache_bytes).map(Arc::new)
    }

    /// The pool `config` needs, with `threads` threads: for compression, for listings
    /// (`autoindex`; its size and budget are still the `compression` ones), or None.
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
        let mut o = Self::build(threads, levels, c.max_pending, c.cache_bytes)?;
        o.enabled = [c.enabled, autoindex, auth];
        if autoindex {
            o.listing_ttl = config.open_file_cache.valid;
        }
        Ok(Some(Arc::new(o)))
    }

    fn build(
        threads: usize,
        levels: codec::Levels,
        max_pending: usize,
        cache_bytes: u64,
    ) -> io::Result<Offload> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("vireo-offload-{i}"))
            .start_handler(|_| {
                // Linux nice values are per thread: this lowers only the pool threads.
                if let Err(e) = rustix::process::setpriority_process(None, 10) {
                    log::warn!("cannot lower offload thread priority: {e}");
                }
            })
            .panic_handler(|_| log::error!("an offload job panicked"))
            .build()
            .map_err(io::Error::other)?;
        Ok(Offload {
            pool,
            io_pool: std::sync::OnceLock::new(),
            levels,
            max_pending,
            pending: AtomicUsize::new(0),
            cache: Mutex::new(Lru::new(cache_bytes)),
            inflight: Mutex::new(HashMap::new()),
            enabled: [true, false, false],
            stats: Default::default(),
            verified: Verified::default(),
            listing_ttl: Duration::ZERO,
        })
    }

    /// Run `job` on the pool (TLS handshake steps: they carry their own completion).
    pub fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        self.pool.spawn(job);
    }

    /// Run `job`, which waits on the disk, on the I/O threads (the CPU pool if they could
    /// not be started).
    pub fn spawn_io(&self, job: impl FnOnce() + Send + 'static) {
        let io = self.io_pool.get_or_init(|| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(IO_THREADS)
                .thread_name(|i| format!("vireo-io-{i}"))
                .build()
                .map_err(|e| log::warn!("cannot start the I/O threads: {e}"))
                .ok()
        });
        match io {
            Some(io) => io.spawn(job),
            None => self.pool.spawn(job),
        }
    }

    /// A cached encoded body, if any.
    pub fn lookup(&self, key: &Key) -> Option<Arc<[u8]>> {
        let hit = lock(&self.cache).get(&CacheKey::Encoded(*key));
        self.count_lookup(0, hit.map(|(data, _)| data))
    }

    /// A cached listing page, if any and still fresh.
    pub fn lookup_listing(&self, key: &ListingKey) -> Option<Arc<[u8]>> {
        let hit = lock(&self.cache).get(&CacheKey::Listing(key.clone()));
        let fresh = hit.filter(|(_, born)| born.elapsed() < self.listing_ttl);
        self.count_lookup(1, fresh.map(|(data, _)| data))
    }

    fn count_lookup(&self, kind: usize, hit: Option<Arc<[u8]>>) -> Option<Arc<[u8]>> {
        let s = &self.stats[kind];
        let counter = if hit.is_some() {
            &s.cache_hits
        } else {
            &s.cache_misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        hit
    }

    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    pub fn figures(&self) -> crate::ops::metrics::OffloadFigures {
        let bytes = lock(&self.cache).bytes_by;
        let figures = |kind: usize| {
            let s = &self.stats[kind];
            let started = s.jobs_started.load(Ordering::Relaxed);
            let completed = s.jobs_completed.load(Ordering::Relaxed);
            self.enabled[kind].then(|| crate::ops::metrics::JobFigures {
                started,
                completed,
                rejected: s.jobs_rejected.load(Ordering::Relaxed),
                pending: started.saturating_sub(completed),
                cache_hits: s.cache_hits.load(Ordering::Relaxed),
                cache_misses: s.cache_misses.load(Ordering::Relaxed),
                cache_bytes: bytes[kind],
            })
        };
        crate::ops::metrics::OffloadFigures {
            compression: figures(0),
            listing: figures(1),
            auth: figures(2),
        }
    }

    /// Encode `file` with `key.coding` for the connection (slot, generation) of the
    /// reactor behind `notifier`, joining a job already running for the same key.
    pub fn submit(
        self: &Arc<Self>,
        key: Key,
        file: Arc<File>,
        notifier: &Notifier,
        slot: usize,
        generation: u32,
    ) -> Submitted {
        let waiter = Waiter::new(notifier, slot, generation);
        let input = Arc::clone(&file);
        // Reading happens here, on the pool, so a slow disk never stalls a reactor either.
        let work = move |o: &Offload| {
            codec::encode_file(key.coding, &o.levels, &input, key.len)
                .map(|b| (b, true))
                .map_err(|e| JobError::internal(format!("{}: {e}", key.coding.as_str())))
        };
        if self.start(CacheKey::Encoded(key), waiter, work) {
            Submitted::Parked
        } else {
            Submitted::Rejected(file)
        }
    }

    /// Render the listing of `dir` for the connection (slot, generation), joining a job
    /// already running for the same key. Entries are followed only through `resolver`,
    /// the one of the site's root (so a symlink leaving it is not listed). False when over
    /// budget (nothing was started).
    pub fn submit_listing(
        self: &Arc<Self>,
        key: ListingKey,
        dir: File,
        resolver: &Arc<Resolver>,
        notifier: &Notifier,
        slot: usize,
        generation: u32,
    ) -> bool {
        let waiter = Waiter::new(notifier, slot, generation);
        let k = key.clone();
        let resolver = Arc::clone(resolver);
        self.start(CacheKey::Listing(key), waiter, move |_: &Offload| {
            render_listing(&resolver, &k, dir)
        })
    }

    /// Is this password check cached (counted as a hit or a miss)?
    pub fn auth_cached(&self, key: &CredKey, now: Instant) -> bool {
        let hit = self.verified.hit(key, now);
        let s = &self.stats[2];
        let c = if hit { &s.cache_hits } else { &s.cache_misses };
        c.fetch_add(1, Ordering::Relaxed);
        hit
    }

    /// Run a bcrypt check for the connection (slot, generation), joining one in flight for
    /// the same credentials. The body of the result is `[1]` for a match, `[0]` otherwise.
    /// False when over budget (nothing was started).
    pub fn submit_auth(
        self: &Arc<Self>,
        job: AuthJob,
        notifier: &Notifier,
        slot: usize,
        generation: u32,
    ) -> bool {
        let waiter = Waiter::new(notifier, slot, generation);
        self.start(CacheKey::Auth(job.key), waiter, move |o: &Offload| {
            Ok((vec![u8::from(job.run(&o.verified))], false))
        })
    }

    /// Join the job in flight for `key`, or start `work` if the budget allows. False when
    /// over budget.
    fn start(
        self: &Arc<Self>,
        key: CacheKey,
        waiter: Waiter,
        work: impl FnOnce(&Offload) -> Output + Send + 'static,
    ) -> bool {
        let kind = key.kind();
        {
            let mut inflight = lock(&self.inflight);
            if let Some(waiters) = inflight.get_mut(&key) {
                waiters.push(waiter);
                return true;
            }
            // Reserve a slot in the budget before committing to a job.
            if self.pending.fetch_add(1, Ordering::AcqRel) >= self.max_pending {
                self.pending.fetch_sub(1, Ordering::AcqRel);
                self.stats[kind]
                    .jobs_rejected
                    .fetch_add(1, Ordering::Relaxed);
                return false;
            }
            inflight.insert(key.clone(), vec![waiter]);
        }
        self.stats[kind]
            .jobs_started
            .fetch_add(1, Ordering::Relaxed);
        let this = Arc::clone(self);
        self.pool.spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&this)))
                .unwrap_or_else(|_| Err(JobError::internal("offload job panicked".into())));
            this.finish(key, result);
        });
        true
    }

    /// Cache the result, then tell every waiter. Runs on a pool thread.
    fn finish(&self, key: CacheKey, result: Output) {
        let kind = key.kind();
        let result: Result<Arc<[u8]>, JobError> = result.map(|(body, cacheable)| {
            let data: Arc<[u8]> = Arc::from(body);
            if cacheable {
                lock(&self.cache).insert(key.clone(), Arc::clone(&data));
            }
            data
        });
        let waiters = lock(&self.inflight).remove(&key).unwrap_or_default();
        self.pending.fetch_sub(1, Ordering::AcqRel);
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
        self.bytes_by[key.kind()] += size;
        self.order.insert(self.tick, key.clone());
        self.map.insert(key, (data, self.tick, Instant::now()));
    }

    fn remove(&mut self, key: &CacheKey) {
        if let Some((old, t, _)) = self.map.remove(key) {
            self.order.remove(&t);
            self.bytes -= old.len() as u64;
            self.bytes_by[key.kind()] -= old.len() as u64;
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

    /// A listing pool over a fresh root holding directory `d`, and a notifier to it.
    fn listing_pool(
        extra: &str,
    ) -> (
        tempfile::TempDir,
        Arc<Offload>,
        Notifier,
        crossbeam_channel::Receiver<Completion>,
        mio::Poll,
    ) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::write(root.join("d/f.txt"), b"x").unwrap();
        let toml = format!(
            "root = {:?}\nautoindex = true\n{extra}",
            root.display().to_string()
        );
        let config = Config::from_toml(&toml, t.path(), "t.toml").unwrap();
        let offload = Offload::for_config(&config, 1).unwrap().unwrap();
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let (tx, rx) = crossbeam_channel::unbounded();
        (t, offload, Notifier { tx, waker }, rx, poll)
    }

    fn resolver(t: &tempfile::TempDir) -> Arc<Resolver> {
        Arc::new(Resolver::new(&t.path().join("root"), &[]).unwrap())
    }

    fn dir_key(t: &tempfile::TempDir) -> (File, ListingKey) {
        let dir = File::open(t.path().join("root/d")).unwrap();
        let key = ListingKey::of(&resolver(t), &dir, b"d", false).unwrap();
        (dir, key)
    }

    fn age(t: &tempfile::TempDir) {
        let old = SystemTime::now() - Duration::from_secs(3600);
        File::open(t.path().join("root/d"))
            .unwrap()
            .set_modified(old)
            .unwrap();
    }

    #[test]
    fn a_listing_over_budget_is_refused_not_built() {
        let (t, o, n, rx, _poll) = listing_pool("[compression]\nmax_pending = 0\n");
        let (dir, key) = dir_key(&t);
        assert!(!o.submit_listing(key, dir, &resolver(&t), &n, 1, 1));
        let f = o.figures().listing.unwrap();
        assert_eq!((f.started, f.rejected), (0, 1));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn listings_are_cached_by_directory_state_for_a_while() {
        let (t, o, n, rx, _poll) = listing_pool("[open_file_cache]\nvalid = \"1h\"\n");
        age(&t);
        let (dir, key) = dir_key(&t);
        assert!(o.lookup_listing(&key).is_none());
        assert!(o.submit_listing(key.clone(), dir, &resolver(&t), &n, 7, 3));
        let c = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!((c.slot, c.generation), (7, 3));
        let page = c.result.unwrap();
        assert!(find(&page, b"f.txt"));
        assert_eq!(o.lookup_listing(&key).as_deref(), Some(&page[..]));
        // Another path to the same directory is another page.
        let mut other = key.clone();
        other.rel = b"e".as_slice().into();
        assert!(o.lookup_listing(&other).is_none());
        // A new entry moves the directory's mtime: a miss, and the new page shows it.
        std::fs::write(t.path().join("root/d/g.txt"), b"y").unwrap();
        let (dir, key2) = dir_key(&t);
        assert_ne!(key, key2);
        assert!(o.lookup_listing(&key2).is_none());
        assert!(o.submit_listing(key2.clone(), dir, &resolver(&t), &n, 7, 3));
        let page = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap()
            .result
            .unwrap();
        assert!(find(&page, b"g.txt"));
        // Changed just now: its mtime may not tick for the next change, so not cached.
        assert!(o.lookup_listing(&key2).is_none());
        let f = o.figures().listing.unwrap();
        assert_eq!((f.started, f.completed, f.cache_hits), (2, 2, 1));
        assert!(f.cache_bytes > 0);
        assert!(
            o.figures().compression.is_some(),
            "compression is on by default"
        );
    }

    #[test]
    fn cached_listings_expire() {
        let (t, o, n, rx, _poll) = listing_pool("[open_file_cache]\nvalid = \"0s\"\n");
        age(&t);
        let (dir, key) = dir_key(&t);
        assert!(o.submit_listing(key.clone(), dir, &resolver(&t), &n, 0, 0));
        rx.recv_timeout(Duration::from_secs(30))
            .unwrap()
            .result
            .unwrap();
        assert!(o.lookup_listing(&key).is_none());
    }

    #[test]
    fn an_unreadable_directory_answers_its_status() {
        let (t, o, n, rx, _poll) = listing_pool("[compression]\nenabled = false\n");
        assert!(o.figures().compression.is_none());
        // An O_PATH fd cannot be read: EBADF, an internal error.
        let dir = File::from(
            rustix::fs::open(
                t.path().join("root/d"),
                rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY,
                rustix::fs::Mode::empty(),
            )
            .unwrap(),
        );
        let key = ListingKey::of(&resolver(&t), &dir, b"d", false).unwrap();
        assert!(o.submit_listing(key, dir, &resolver(&t), &n, 0, 0));
        let e = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap()
            .result
            .unwrap_err();
        assert_eq!(e.status, 500, "{}", e.message);
    }

    fn find(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }
}
