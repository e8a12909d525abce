//! The process: binds one listener per reactor and address, starts the reactor threads,
//! and turns signals into messages for them. The main thread sleeps in its own `Poll` on a
//! signal-hook self-pipe and a Waker that reactors ring when they exit: no polling loop.
//!
//! **Reload (SIGHUP)** is all or nothing: every piece of the new generation (sockets,
//! metrics listener, compression pool, log writer, every reactor) is built first, and the
//! reactors start only once all of them exist; any error drops the lot and the running
//! generation carries on. Then the old generation drains. Closing an SO_REUSEPORT socket
//! drops the connections still queued in its backlog, so the listening sockets themselves
//! survive a reload: the server keeps one descriptor of each and every generation gets a
//! duplicate (same socket, same accept queue). Reactor `i` owns socket `i` of every
//! address. With fewer `workers`, or an address no longer listed, the retired sockets'
//! last descriptors are the old reactors', which take what is queued before closing them;
//! with more workers the extra sockets join the same address, and a new address gets a
//! fresh set.
//!
//! **A reactor that dies** (a panic outside a connection's containment, a poll error) ends
//! the process with exit status 1 at once: its listening socket would stay open with
//! nobody accepting, and the kernel would keep handing it a share of new connections.

mod nofile;

pub use nofile::descriptors_needed;

use crate::config::{AccessTarget, Config};
use crate::net::listener::{self, Address, BindError};
use crate::net::reactor::{Ack, Msg, Reactor, Setup, Sweep};
use crate::offload::Offload;
use crate::ops::accesslog;
use crate::ops::metrics::Registry;
use crossbeam_channel::Sender;
use mio::{Events, Interest, Poll, Token, Waker};
use nofile::{check_nofile_limit, raise_nofile_limit};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const SIGNALS: Token = Token(0);
const EXITED: Token = Token(1);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {err}")]
    Bind { addr: SocketAddr, err: io::Error },
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("a reactor thread failed: {0}")]
    Reactor(String),
}

impl From<BindError> for ServerError {
    fn from(BindError { addr, err }: BindError) -> ServerError {
        ServerError::Bind { addr, err }
    }
}

/// One set of reactors started from one configuration.
struct Generation {
    reactors: Vec<(Sender<Msg>, Arc<Waker>)>,
    threads: Vec<JoinHandle<Result<(), String>>>,
    /// The configured addresses, in the order of every reactor's listeners.
    listen: Vec<SocketAddr>,
}

impl Generation {
    fn empty(listen: Vec<SocketAddr>) -> Generation {
        Generation {
            reactors: Vec::new(),
            threads: Vec::new(),
            listen,
        }
    }

    fn stop(&self, graceful: bool) {
        for (tx, waker) in &self.reactors {
            let _ = tx.send(Msg::Stop {
                graceful,
                sweep: Sweep::All,
                ack: None,
                reload: false,
            });
            let _ = waker.wake();
        }
    }

    /// Retire this generation after a reload to `next` addresses and `workers`: reactor
    /// `i` sweeps the queue of each of its sockets that is not handed on (a socket is when
    /// its address stays and `i < workers`). Returns how many acknowledgements (stopped
    /// accepting) will arrive on `ack`.
    fn retire(
        &self,
        next: &[SocketAddr],
        workers: usize,
        ack: &Sender<()>,
        waker: &Arc<Waker>,
    ) -> usize {
        for (i, (tx, w)) in self.reactors.iter().enumerate() {
            let sweep = self
                .listen
                .iter()
                .map(|a| i >= workers || !next.contains(a))
                .collect();
            let _ = tx.send(Msg::Stop {
                graceful: true,
                sweep: Sweep::Only(sweep),
                ack: Some(Ack {
                    tx: ack.clone(),
                    waker: waker.clone(),
                }),
                reload: true,
            });
            let _ = w.wake();
        }
        self.reactors.len()
    }
}

impl Drop for Generation {
    /// A reactor whose channel is disconnected stops: drop each sender, then wake.
    fn drop(&mut self) {
        for (tx, waker) in self.reactors.drain(..) {
            drop(tx);
            let _ = waker.wake();
        }
    }
}

/// What the offload pool was built from; the pool survives a reload that keeps all of it.
#[derive(PartialEq)]
struct PoolKey {
    threads: usize,
    /// Every coding's level: the pool's encoders are built with them.
    level: u32,
    zstd_level: i32,
    brotli_level: u32,
    max_pending: usize,
    cache_bytes: u64,
    compression: bool,
    autoindex: bool,
    auth: bool,
    /// Cached listings expire after `valid` (each job brings its site's resolver).
    listing_ttl: std::time::Duration,
    /// TLS handshakes run on the pool.
    tls: bool,
}

impl PoolKey {
    fn of(config: &Config) -> PoolKey {
        let c = &config.compression;
        PoolKey {
            threads: c.threads,
            level: c.level,
            zstd_level: c.zstd_level,
            brotli_level: c.brotli_level,
            max_pending: c.max_pending,
            cache_bytes: c.cache_bytes,
            compression: c.enabled,
            autoindex: config.any_autoindex(),
            auth: config.any_auth(),
            listing_ttl: config.open_file_cache.valid,
            tls: config.tls.is_some(),
        }
    }
}

/// A generation built but not started: dropping it undoes everything.
struct Plan {
    config: Arc<Config>,
    /// The upstream servers' health and counters of this generation.
    upstream_health: Arc<crate::upstream::Health>,
    /// One per address of `config.listen`, in that order.
    listeners: Vec<Address>,
    metrics_socket: Option<std::net::TcpListener>,
    offload: Option<(PoolKey, Arc<Offload>)>,
    access_log: Option<(AccessTarget, accesslog::Writer)>,
    new_log_thread: Option<JoinHandle<()>>,
    reactors: Vec<(Reactor, Sender<Msg>, Arc<Waker>)>,
}

/// Running reactors and the way to reach them.
/// A reload whose old reactors have not all stopped accepting yet.
struct PendingReload {
    rx: crossbeam_channel::Receiver<()>,
    left: usize,
}

pub struct Server {
    pending_reload: Option<PendingReload>,
    config: Arc<Config>,
    /// The listening sockets, kept open across reloads; reactors own duplicates.
    listeners: Vec<Address>,
    metrics_socket: Option<std::net::TcpListener>,
    registry: Arc<Registry>,
    offload: Option<(PoolKey, Arc<Offload>)>,
    /// The access log writer of the current configuration.
    access_log: Option<(AccessTarget, accesslog::Writer)>,
    log_writers: Vec<JoinHandle<()>>,
    current: Generation,
    draining: Vec<Generation>,
    poll: Poll,
    signals: Signals,
    exited: Arc<Waker>,
    running: Arc<AtomicUsize>,
    /// The current generation's active health checks and re-resolution (one thread);
    /// replaced on reload, dropped (stopped) at shutdown.
    checker: Option<crate::upstream::checker::Checker>,
}

impl Server {
    /// Bind and start every reactor. Returns once all listeners are bound.
    pub fn start(config: Config) -> Result<Server, ServerError> {
        raise_nofile_limit();
        check_nofile_limit(&config);
        let poll = Poll::new()?;
        let exited = Arc::new(Waker::new(poll.registry(), EXITED)?);
        // Handlers go in before anyone can learn our address: a SIGHUP that arrives
        // before them would kill the process (its default action).
        let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1])?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let config = Arc::new(config);
        let mut server = Server {
            config: config.clone(),
            listeners: Vec::new(),
            metrics_socket: None,
            registry: Arc::new(Registry::default()),
            offload: None,
            access_log: None,
            log_writers: Vec::new(),
            current: Generation::empty(Vec::new()),
            draining: Vec::new(),
            pending_reload: None,
            poll,
            signals,
            exited,
            running: Arc::new(AtomicUsize::new(0)),
            checker: None,
        };
        let plan = server.prepare(config)?;
        server.commit(plan)?;
        Ok(server)
    }

    /// The first listening address, as bound.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.listeners.first().map(|l| l.addr)
    }

    /// Every listening address, as bound, in configuration order.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|l| l.addr).collect()
    }

    /// Build everything a generation on `config` needs without starting or changing
    /// anything: an error here leaves the running generation exactly as it was.
    fn prepare(&self, config: Arc<Config>) -> Result<Plan, ServerError> {
        let (backlog, workers) = (config.limits.backlog, config.workers);
        let all = config.all_listen();
        // Carried-over sockets are the running generation's too: they are steered to
        // their CPUs (`pin_workers`) only in `commit`, once nothing can fail.
        let listeners = listener::carry_over(&self.listeners, &all, backlog, workers)?;
        // Certificates are read and checked here: a reload with a bad one changes nothing.
        let tls = crate::tls::Tls::new(&config)?;
        for w in tls.iter().flat_map(|t| t.warnings()) {
            log::warn!("{w}");
        }
        for w in config.warnings() {
            log::warn!("{w}");
        }
        let metrics_socket = match (config.metrics, &self.metrics_socket) {
            (None, _) => None,
            (Some(a), Some(m)) if Some(a) == self.config.metrics => Some(m.try_clone()?),
            (Some(a), _) => {
                Some(listener::bind(a, 128).map_err(|err| ServerError::Bind { addr: a, err })?)
            }
        };
        // Compression and directory listings share one pool; it survives a reload that
        // keeps everything it was built from.
        let key = PoolKey::of(&config);
        let offload = match &self.offload {
            Some((k, o)) if *k == key => Some((key, o.clone())),
            _ => Offload::for_config(&config, config.compression.threads)?.map(|o| (key, o)),
        };
        // One writer per log target; a reload to the same target keeps the writer.
        let mut new_log_thread = None;
        let access_log = match (&config.log.access, &self.access_log) {
            (None, _) => None,
            (Some(t), Some((cur, w))) if t == cur => Some((t.clone(), w.clone())),
            (Some(t), _) => {
                let (w, thread) = accesslog::spawn_writer(t.clone())?;
                new_log_thread = Some(thread);
                Some((t.clone(), w))
            }
        };
        let upstream_health = Arc::new(crate::upstream::Health::new(&config.upstreams));
        let mut reactors = Vec::with_capacity(config.workers);
        for i in 0..config.workers {
            #[cfg(feature = "fault-injection")]
            if crate::fault::fail_build() {
                return Err(
                    io::Error::other(format!("injected fault: building reactor {i}")).into(),
                );
            }
            let metrics_listener = match (&metrics_socket, i) {
                (Some(m), 0) => Some(mio::net::TcpListener::from_std(m.try_clone()?)),
                _ => None,
            };
            let mut sockets = Vec::with_capacity(listeners.len());
            for l in &listeners {
                sockets.push(mio::net::TcpListener::from_std(l.sockets[i].try_clone()?));
            }
            let (tx, rx) = crossbeam_channel::unbounded();
            let (reactor, waker) = Reactor::new(Setup {
                // A position, not a thread: the next generation's reactor i counts on.
                id: i,
                config: config.clone(),
                listeners: sockets,
                metrics_listener,
                rx,
                offload: offload.as_ref().map(|(_, o)| o.clone()),
                registry: self.registry.clone(),
                access_log: access_log.as_ref().map(|(_, w)| w.tx.clone()),
                tls: tls.clone(),
                upstream_health: upstream_health.clone(),
            })?;
            reactors.push((reactor, tx, waker));
        }
        Ok(Plan {
            upstream_health,
            config,
            listeners,
            metrics_socket,
            offload,
            access_log,
            new_log_thread,
            reactors,
        })
    }

    /// Start a prepared generation and make it the current one; the previous one drains.
    /// If a thread cannot be started, the ones that did are stopped and nothing changes.
    fn commit(&mut self, mut plan: Plan) -> Result<(), ServerError> {
        let mut generation = Generation::empty(plan.config.all_listen());
        let cpus = plan
            .config
            .pin_workers
            .then(crate::net::affinity::allowed)
            .unwrap_or_default();
        for (reactor, tx, waker) in plan.reactors.drain(..) {
            let id = reactor.id();
            let pin = crate::net::affinity::cpu_for(id, &cpus);
            let exited = self.exited.clone();
            let running = self.running.clone();
            running.fetch_add(1, Ordering::SeqCst);
            let spawned = std::thread::Builder::new()
                .name(format!("vireo-reactor-{id}"))
                .spawn(move || {
                    if let Some(cpu) = pin {
                        if let Err(e) = crate::net::affinity::pin_current_thread(cpu) {
                            log::warn!("reactor {id}: cannot pin to CPU {cpu}: {e}");
                        }
                    }
                    let r =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reactor.run()));
                    running.fetch_sub(1, Ordering::SeqCst);
                    let _ = exited.wake();
                    match r {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(e)) => Err(format!("reactor {id}: {e}")),
                        Err(p) => Err(format!("reactor {id} panicked: {}", panic_message(&*p))),
                    }
                });
            match spawned {
                Ok(t) => {
                    generation.reactors.push((tx, waker));
                    generation.threads.push(t);
                }
                Err(e) => {
                    self.running.fetch_sub(1, Ordering::SeqCst);
                    generation.stop(false);
                    self.draining.push(generation);
                    return Err(e.into());
                }
            }
        }
        // Every thread runs: from here on nothing fails, so the sockets shared with the
        // running generation may change.
        for (i, s) in plan
            .listeners
            .iter()
            .flat_map(|l| l.sockets.iter().enumerate())
        {
            if let Some(cpu) = crate::net::affinity::cpu_for(i, &cpus) {
                if let Err(e) = crate::net::affinity::steer(s, cpu) {
                    log::warn!("SO_INCOMING_CPU {cpu}: {e}");
                }
            }
        }
        for t in &generation.threads {
            if let Some(name) = t.thread().name() {
                println!(
                    "{} started",
                    name.trim_start_matches("vireo-").replace('-', " ")
                );
            }
        }
        // The server's descriptors change before the old reactors are told to stop: for a
        // retired socket theirs is then the last one, closed after taking its queue.
        if plan.config.limits.backlog != self.config.limits.backlog {
            for s in plan.listeners.iter().filter(|l| !l.fresh) {
                for s in &s.sockets {
                    let r = socket2::SockRef::from(s).listen(listen_backlog(&plan.config));
                    if let Err(e) = r {
                        log::warn!("cannot change the backlog: {e}");
                    }
                }
            }
        }
        let all = plan.config.all_listen();
        for old in &self.listeners {
            if !all.contains(&old.want) {
                log::info!("no longer listening on {}", old.addr);
            }
        }
        self.listeners = std::mem::take(&mut plan.listeners);
        let metrics_changed =
            plan.config.metrics != self.config.metrics || self.current.threads.is_empty();
        self.metrics_socket = plan.metrics_socket.take();
        if metrics_changed {
            if let Some(a) = self
                .metrics_socket
                .as_ref()
                .and_then(|m| m.local_addr().ok())
            {
                println!("metrics on http://{a}/metrics");
            }
        }
        self.offload = plan.offload.take();
        self.registry
            .set_offload(self.offload.as_ref().map(|(_, o)| {
                let o = o.clone();
                Arc::new(move || o.figures()) as Arc<dyn Fn() -> _ + Send + Sync>
            }));
        let health = plan.upstream_health.clone();
        // The old generation's checker stops: its Health is no longer what new requests see.
        self.checker =
            crate::upstream::checker::Checker::start(plan.config.upstreams.clone(), health.clone());
        self.registry.set_extra(
            (!plan.config.upstreams.is_empty())
                .then(|| Arc::new(move |out: &mut String| health.render(out)) as _),
        );
        self.access_log = plan.access_log.take();
        self.log_writers.extend(plan.new_log_thread.take());
        // After the metrics line: scripts read up to the first of these.
        if let Some(l) = self
            .listeners
            .iter()
            .find(|l| plan.config.is_tls_listener(l.want))
        {
            crate::site::https::set_https_port(l.addr.port());
            let was = crate::ops::tls_metrics::TLS
                .enabled
                .swap(true, Ordering::Relaxed);
            if !was {
                let ktls = if crate::net::tls::ktls_available() {
                    "the kernel offers kTLS (TCP_ULP tls), not used yet"
                } else {
                    "no kTLS in this kernel"
                };
                log::info!("TLS: file bodies are encrypted in user space ({ktls})");
            }
        }
        for l in self.listeners.iter().filter(|l| l.fresh) {
            if plan.config.is_tls_listener(l.want) {
                println!("listening for TLS on {}", l.addr);
            } else {
                println!("listening on {}", l.addr);
            }
        }
        for l in &mut self.listeners {
            l.fresh = false;
        }
        self.config = plan.config.clone();
        let old = std::mem::replace(&mut self.current, generation);
        let (tx, rx) = crossbeam_channel::unbounded();
        let left = old.retire(&all, self.config.workers, &tx, &self.exited);
        if !old.threads.is_empty() {
            self.draining.push(old);
            self.settle_reload();
            self.pending_reload = Some(PendingReload { rx, left });
        }
        Ok(())
    }

    /// A reload counts (metric, log line) once every old reactor has stopped accepting:
    /// from then on every new connection is served by the new configuration.
    fn settle_reload(&mut self) {
        let Some(p) = self.pending_reload.as_mut() else {
            return;
        };
        loop {
            match p.rx.try_recv() {
                Ok(()) => p.left = p.left.saturating_sub(1),
                // Every sender is gone: the reactors that did not answer have ended.
                Err(crossbeam_channel::TryRecvError::Disconnected) => p.left = 0,
                Err(crossbeam_channel::TryRecvError::Empty) => break,
            }
            if p.left == 0 {
                break;
            }
        }
        if p.left == 0 {
            self.pending_reload = None;
            self.registry.reloaded(true);
            match &self.config.source {
                Some(path) => log::info!("reloaded {}", path.display()),
                None => log::info!("reloaded"),
            }
        }
    }

    /// SIGHUP: validate the file again; if it is good, start new reactors with it and
    /// drain the old ones. A bad file, or any failure building the new set, changes nothing.
    fn reload(&mut self) {
        let Some(path) = self.config.source.clone() else {
            log::warn!("reload: running on built-in defaults, nothing to reload");
            return;
        };
        let config = match Config::load(&path) {
            Ok(c) => c,
            Err(e) => {
                log::error!("reload refused, keeping the running configuration: {e}");
                self.registry.reloaded(false);
                return;
            }
        };
        check_nofile_limit(&config);
        match self
            .prepare(Arc::new(config))
            .and_then(|plan| self.commit(plan))
        {
            // Counted by `settle_reload` once the old reactors stop accepting.
            Ok(()) => self.settle_reload(),
            Err(e) => {
                self.registry.reloaded(false);
                log::error!("reload failed, keeping the running configuration: {e}");
            }
        }
    }

    /// Ask every reactor to stop; graceful lets in-flight responses finish.
    pub fn stop(&self, graceful: bool) {
        self.current.stop(graceful);
        for g in &self.draining {
            g.stop(graceful);
        }
    }

    /// Serve until SIGTERM/SIGINT (graceful; a second one exits at once) and every reactor
    /// has finished. SIGHUP reloads; SIGUSR1 reopens the access log.
    pub fn run(mut self) -> Result<(), ServerError> {
        let mut events = Events::with_capacity(8);
        let mut stopped_at: Option<Instant> = None;
        let mut failure = None;
        while self.running.load(Ordering::SeqCst) > 0 {
            // A reactor rings `exited` just before its thread ends: until the join handle
            // says finished, look again shortly instead of sleeping until the next signal.
            let threads = self.current.threads.len()
                + self.draining.iter().map(|g| g.threads.len()).sum::<usize>();
            let timeout =
                (self.running.load(Ordering::SeqCst) < threads).then_some(Duration::from_millis(5));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e.into());
            }
            for event in events.iter() {
                if event.token() != SIGNALS {
                    continue;
                }
                let pending: Vec<i32> = self.signals.pending().collect();
                for sig in pending {
                    match sig {
                        SIGUSR1 => {
                            // Never blocks, whatever state the writer is in.
                            if let Some((_, w)) = &self.access_log {
                                w.request_reopen();
                            }
                        }
                        SIGHUP if stopped_at.is_none() => self.reload(),
                        SIGHUP => {}
                        _ if stopped_at.is_some() => {
                            log::warn!("second signal {sig}: exiting now");
                            std::process::exit(1);
                        }
                        _ => {
                            log::info!("signal {sig}: graceful shutdown");
                            stopped_at = Some(Instant::now());
                            self.checker = None;
                            self.listeners.clear();
                            self.metrics_socket = None;
                            self.stop(true);
                        }
                    }
                }
            }
            self.settle_reload();
            for g in &mut self.draining {
                reap(&mut g.threads, &mut failure, false);
            }
            self.draining.retain(|g| !g.threads.is_empty());
            // A replaced log writer ends once the last reactor holding its sender has;
            // join it then (its stack stays mapped until joined). One that ends after this
            // wake is joined at the next one, or at exit.
            let mut i = 0;
            while i < self.log_writers.len() {
                if self.log_writers[i].is_finished() {
                    if self.log_writers.swap_remove(i).join().is_err() {
                        log::error!("an access log writer panicked");
                    }
                } else {
                    i += 1;
                }
            }
            let before = self.current.threads.len();
            reap(&mut self.current.threads, &mut failure, false);
            if self.current.threads.len() != before && stopped_at.is_none() {
                // Its socket would stay open with nobody accepting: clients would hang.
                log::error!("a reactor stopped unexpectedly; exiting");
                std::process::exit(1);
            }
        }
        // Every reactor has rung `exited`; their threads are ending now.
        reap(&mut self.current.threads, &mut failure, true);
        for g in &mut self.draining {
            reap(&mut g.threads, &mut failure, true);
        }
        // Reactors are gone and so are their senders: the writer drains and exits. A
        // writer stuck on a log nobody reads (a full FIFO) must not hold the exit past the
        // shutdown timeout.
        self.access_log = None;
        let deadline = stopped_at.unwrap_or_else(Instant::now) + self.config.timeouts.shutdown;
        for w in self.log_writers.drain(..) {
            while !w.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if w.is_finished() {
                let _ = w.join();
            } else {
                log::warn!("access log writer still blocked at exit; lines may be lost");
            }
        }
        match failure {
            Some(e) => Err(ServerError::Reactor(e)),
            None => Ok(()),
        }
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> &str {
    p.downcast_ref::<&str>()
        .copied()
        .or_else(|| p.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

fn listen_backlog(config: &Config) -> i32 {
    config.limits.backlog.min(i32::MAX as u32) as i32
}

/// Join the threads that have finished (all of them with `wait`), keeping the first failure.
fn reap(
    threads: &mut Vec<JoinHandle<Result<(), String>>>,
    failure: &mut Option<String>,
    wait: bool,
) {
    let mut i = 0;
    while i < threads.len() {
        if !wait && !threads[i].is_finished() {
            i += 1;
            continue;
        }
        let r = threads.swap_remove(i).join();
        let err = match r {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(_) => "reactor thread panicked".to_string(),
        };
        log::error!("{err}");
        failure.get_or_insert(err);
    }
}
