//! CPU work off the event loop: gzip on a dedicated rayon pool, results back to the
//! reactor that asked through its channel and its Waker (an eventfd in that reactor's Poll).
//!
//! nginx gzips inside its worker loop, so one large compressible file stalls every other
//! connection of that worker. Here a reactor that needs a compressed body parks the
//! connection and hands the job to the pool; pool threads run at nice +10 so on a busy box
//! the kernel preempts compression, never the loops.
//!
//! Three things keep the pool from becoming the bottleneck or a memory sink:
//! - a **shared LRU cache** of compressed bodies keyed by file identity (device, inode, size,
//!   mtime) and coding, so a changed file can never be answered from a stale entry and a hit
//!   costs no CPU at all;
//! - **single flight**: concurrent misses for the same key wait on one job, not N;
//! - a **budget** (`max_pending` jobs in flight per process): over it, identity is sent.
//!
//! Every job sends a completion, on success, error or panic, to every waiter, and wakes its
//! reactor. Wakes coalesce, so the reactor drains its channel until empty, and a completion
//! for a connection that went away (slot reused, generation moved on) is dropped there.

use crossbeam_channel::Sender;
use mio::Waker;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// Files larger than this are sent identity: whole-body compression must stay bounded in
/// memory (nginx would stream with chunked encoding; we send Content-Length).
pub const MAX_INPUT: u64 = 64 << 20;

/// Identity of one compressed representation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub dev: u64,
    pub ino: u64,
    pub len: u64,
    pub mtime: u64,
    pub mtime_nanos: u32,
}

/// A finished job, delivered to the reactor that owns (slot, generation).
pub struct Completion {
    pub slot: usize,
    pub generation: u32,
    pub result: Result<Arc<[u8]>, String>,
    /// When the job was handed to the pool (offload round-trip time).
    pub started: Instant,
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

#[derive(Default)]
pub struct Stats {
    pub jobs_started: AtomicU64,
    pub jobs_completed: AtomicU64,
    pub jobs_rejected: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
}

pub struct Offload {
    pool: rayon::ThreadPool,
    level: u32,
    max_pending: usize,
    pending: AtomicUsize,
    cache: Mutex<Lru>,
    inflight: Mutex<HashMap<Key, Vec<Waiter>>>,
    pub stats: Stats,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Offload {
    pub fn new(
        threads: usize,
        level: u32,
        max_pending: usize,
        cache_bytes: u64,
    ) -> io::Result<Arc<Offload>> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("vireo-gzip-{i}"))
            .start_handler(|_| {
                // Linux nice values are per thread: this lowers only the pool threads.
                if let Err(e) = rustix::process::setpriority_process(None, 10) {
                    log::warn!("cannot lower compression thread priority: {e}");
                }
            })
            .panic_handler(|_| log::error!("a compression job panicked"))
            .build()
            .map_err(io::Error::other)?;
        Ok(Arc::new(Offload {
            pool,
            level,
            max_pending,
            pending: AtomicUsize::new(0),
            cache: Mutex::new(Lru::new(cache_bytes)),
            inflight: Mutex::new(HashMap::new()),
            stats: Stats::default(),
        }))
    }

    /// A cached compressed body, if any.
    pub fn lookup(&self, key: &Key) -> Option<Arc<[u8]>> {
        let hit = lock(&self.cache).get(key);
        let counter = if hit.is_some() {
            &self.stats.cache_hits
        } else {
            &self.stats.cache_misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        hit
    }

    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    pub fn figures(&self) -> crate::metrics::OffloadFigures {
        let s = &self.stats;
        crate::metrics::OffloadFigures {
            started: s.jobs_started.load(Ordering::Relaxed),
            completed: s.jobs_completed.load(Ordering::Relaxed),
            rejected: s.jobs_rejected.load(Ordering::Relaxed),
            pending: self.pending.load(Ordering::Relaxed) as u64,
            cache_hits: s.cache_hits.load(Ordering::Relaxed),
            cache_misses: s.cache_misses.load(Ordering::Relaxed),
            cache_bytes: lock(&self.cache).bytes,
        }
    }

    /// Compress `file` for the connection (slot, generation) of the reactor behind
    /// `notifier`, joining a job already running for the same key.
    pub fn submit(
        self: &Arc<Self>,
        key: Key,
        file: Arc<File>,
        notifier: &Notifier,
        slot: usize,
        generation: u32,
    ) -> Submitted {
        let waiter = Waiter {
            notifier: notifier.clone(),
            slot,
            generation,
            started: Instant::now(),
        };
        {
            let mut inflight = lock(&self.inflight);
            if let Some(waiters) = inflight.get_mut(&key) {
                waiters.push(waiter);
                return Submitted::Parked;
            }
            // Reserve a slot in the budget before committing to a job.
            if self.pending.fetch_add(1, Ordering::AcqRel) >= self.max_pending {
                self.pending.fetch_sub(1, Ordering::AcqRel);
                self.stats.jobs_rejected.fetch_add(1, Ordering::Relaxed);
                return Submitted::Rejected(file);
            }
            inflight.insert(key, vec![waiter]);
        }
        self.stats.jobs_started.fetch_add(1, Ordering::Relaxed);
        let this = Arc::clone(self);
        self.pool.spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                gzip(&file, key.len, this.level)
            }))
            .unwrap_or_else(|_| Err("compression panicked".to_string()));
            this.finish(key, result);
        });
        Submitted::Parked
    }

    /// Cache the result, then tell every waiter. Runs on a pool thread.
    fn finish(&self, key: Key, result: Result<Vec<u8>, String>) {
        let result: Result<Arc<[u8]>, String> = result.map(Arc::from);
        if let Ok(data) = &result {
            lock(&self.cache).insert(key, Arc::clone(data));
        }
        let waiters = lock(&self.inflight).remove(&key).unwrap_or_default();
        self.pending.fetch_sub(1, Ordering::AcqRel);
        self.stats.jobs_completed.fetch_add(1, Ordering::Relaxed);
        for w in waiters {
            let c = Completion {
                slot: w.slot,
                generation: w.generation,
                result: result.clone(),
                started: w.started,
            };
            // A reactor that is gone has nobody to deliver to.
            if w.notifier.tx.send(c).is_ok() {
                let _ = w.notifier.waker.wake();
            }
        }
    }
}

/// Read the whole file and gzip it. Reading happens here, on the pool, so a slow disk
/// never stalls a reactor either.
fn gzip(file: &File, len: u64, level: u32) -> Result<Vec<u8>, String> {
    // pread: the fd is shared with the open-file cache, its offset is nobody's.
    let mut input = vec![0u8; len as usize];
    file.read_exact_at(&mut input, 0)
        .map_err(|e| format!("read: {e}"))?;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(input.len() / 3 + 64),
        flate2::Compression::new(level),
    );
    enc.write_all(&input).map_err(|e| format!("gzip: {e}"))?;
    enc.finish().map_err(|e| format!("gzip: {e}"))
}

/// Least-recently-used map bounded by the total size of its values.
struct Lru {
    limit: u64,
    bytes: u64,
    tick: u64,
    map: HashMap<Key, (Arc<[u8]>, u64)>,
    order: BTreeMap<u64, Key>,
}

impl Lru {
    fn new(limit: u64) -> Lru {
        Lru {
            limit,
            bytes: 0,
            tick: 0,
            map: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    fn get(&mut self, key: &Key) -> Option<Arc<[u8]>> {
        self.tick += 1;
        let tick = self.tick;
        let (data, t) = self.map.get_mut(key)?;
        self.order.remove(t);
        *t = tick;
        self.order.insert(tick, *key);
        Some(Arc::clone(data))
    }

    fn insert(&mut self, key: Key, data: Arc<[u8]>) {
        let size = data.len() as u64;
        if size > self.limit {
            return;
        }
        if let Some((old, t)) = self.map.remove(&key) {
            self.order.remove(&t);
            self.bytes -= old.len() as u64;
        }
        while self.bytes + size > self.limit {
            let Some((_, k)) = self.order.pop_first() else {
                break;
            };
            if let Some((old, _)) = self.map.remove(&k) {
                self.bytes -= old.len() as u64;
            }
        }
        self.tick += 1;
        self.order.insert(self.tick, key);
        self.map.insert(key, (data, self.tick));
        self.bytes += size;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> Key {
        Key {
            dev: 1,
            ino: i,
            len: 10,
            mtime: 5,
            mtime_nanos: 0,
        }
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
