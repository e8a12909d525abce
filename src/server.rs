//! The process: binds one listener per reactor, starts the reactor threads, and turns
//! signals into messages for them. The main thread sleeps in its own `Poll` on a
//! signal-hook self-pipe and a Waker that reactors ring when they exit: no polling loop.
//!
//! **Reload (SIGHUP)** starts a new generation of reactors with the new configuration and
//! then drains the old one. Closing an SO_REUSEPORT socket drops the connections still
//! queued in its backlog, so while the address is unchanged the listening sockets
//! themselves survive: the server keeps one descriptor of each, and every generation gets
//! a duplicate (same socket, same accept queue). Only the old reactors' duplicates close.

use crate::accesslog;
use crate::config::Config;
use crate::listener;
use crate::metrics::Registry;
use crate::offload::Offload;
use crate::reactor::{Msg, Reactor, Setup};
use crossbeam_channel::Sender;
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

const SIGNALS: Token = Token(0);
const EXITED: Token = Token(1);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {err}")]
    Bind { addr: SocketAddr, err: io::Error },
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("a reactor thread failed: {0}")]
    Reactor(String),
}

/// One set of reactors started from one configuration.
struct Generation {
    reactors: Vec<(Sender<Msg>, Arc<Waker>)>,
    threads: Vec<JoinHandle<Result<(), String>>>,
}

impl Generation {
    fn stop(&self, graceful: bool) {
        for (tx, waker) in &self.reactors {
            let _ = tx.send(Msg::Stop { graceful });
            let _ = waker.wake();
        }
    }
}

/// Running reactors and the way to reach them.
pub struct Server {
    addr: SocketAddr,
    config: Arc<Config>,
    /// The listening sockets, kept open across reloads; reactors own duplicates.
    sockets: Vec<std::net::TcpListener>,
    metrics_socket: Option<std::net::TcpListener>,
    registry: Arc<Registry>,
    /// The access log writer of the current configuration (target, sender).
    access_log: Option<(accesslog::Target, Sender<accesslog::Msg>)>,
    log_writers: Vec<JoinHandle<()>>,
    current: Generation,
    draining: Vec<Generation>,
    poll: Poll,
    signals: Signals,
    exited: Arc<Waker>,
    running: Arc<AtomicUsize>,
    next_id: usize,
}

impl Server {
    /// Bind and start every reactor. Returns once all listeners are bound.
    pub fn start(config: Config) -> Result<Server, ServerError> {
        raise_nofile_limit(&config);
        let sockets = bind(&config)?;
        let addr = sockets[0].local_addr()?;
        let metrics_socket = match config.metrics {
            Some(a) => {
                Some(listener::bind(a, 128).map_err(|err| ServerError::Bind { addr: a, err })?)
            }
            None => None,
        };
        let poll = Poll::new()?;
        let exited = Arc::new(Waker::new(poll.registry(), EXITED)?);
        // Handlers go in before anyone can learn our address: a SIGHUP that arrives
        // before them would kill the process (its default action).
        let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1])?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let mut server = Server {
            addr,
            config: Arc::new(config),
            sockets,
            metrics_socket,
            registry: Arc::new(Registry::default()),
            access_log: None,
            log_writers: Vec::new(),
            current: Generation {
                reactors: Vec::new(),
                threads: Vec::new(),
            },
            draining: Vec::new(),
            poll,
            signals,
            exited,
            running: Arc::new(AtomicUsize::new(0)),
            next_id: 0,
        };
        server.current = server.spawn(server.config.clone())?;
        if let Some(m) = &server.metrics_socket {
            println!("metrics on http://{}/metrics", m.local_addr()?);
        }
        println!("listening on {addr}");
        Ok(server)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Start a generation of reactors on duplicates of the kept sockets.
    fn spawn(&mut self, config: Arc<Config>) -> Result<Generation, ServerError> {
        // Compression and directory listings share one pool, sized by compression.threads.
        let offload = Offload::for_config(&config, config.compression.threads)?;
        if let Some(o) = &offload {
            let o = o.clone();
            self.registry.set_offload(Arc::new(move || o.figures()));
        }
        // One writer per log target; a reload to the same target keeps the writer.
        let log_tx = match &config.log.access {
            None => None,
            Some(target) => match &self.access_log {
                Some((t, tx)) if t == target => Some(tx.clone()),
                _ => {
                    let (tx, handle) = accesslog::spawn_writer(target.clone())?;
                    self.log_writers.push(handle);
                    self.access_log = Some((target.clone(), tx.clone()));
                    Some(tx)
                }
            },
        };
        if config.log.access.is_none() {
            self.access_log = None;
        }
        let mut generation = Generation {
            reactors: Vec::new(),
            threads: Vec::new(),
        };
        for (i, socket) in self.sockets.iter().enumerate() {
            let id = self.next_id;
            self.next_id += 1;
            let l = mio::net::TcpListener::from_std(socket.try_clone()?);
            let metrics_listener = match (&self.metrics_socket, i) {
                (Some(m), 0) => Some(mio::net::TcpListener::from_std(m.try_clone()?)),
                _ => None,
            };
            let (tx, rx) = crossbeam_channel::unbounded();
            let (reactor, waker) = Reactor::new(Setup {
                id,
                config: config.clone(),
                listener: l,
                metrics_listener,
                rx,
                offload: offload.clone(),
                registry: self.registry.clone(),
                access_log: log_tx.clone(),
            })?;
            generation.reactors.push((tx, waker));
            let exited = self.exited.clone();
            let running = self.running.clone();
            running.fetch_add(1, Ordering::SeqCst);
            let t = std::thread::Builder::new()
                .name(format!("vireo-reactor-{id}"))
                .spawn(move || {
                    let r =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reactor.run()));
                    running.fetch_sub(1, Ordering::SeqCst);
                    let _ = exited.wake();
                    match r {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(e)) => Err(format!("reactor {id}: {e}")),
                        Err(_) => Err(format!("reactor {id} panicked")),
                    }
                })?;
            println!("reactor {id} started");
            generation.threads.push(t);
        }
        Ok(generation)
    }

    /// SIGHUP: validate the file again; if it is good, start new reactors with it and
    /// drain the old ones. A bad file changes nothing.
    fn reload(&mut self) {
        let Some(path) = self.config.source.clone() else {
            log::warn!("reload: running on built-in defaults, nothing to reload");
            return;
        };
        let config = match Config::load(&path) {
            Ok(c) => c,
            Err(e) => {
                log::error!("reload refused, keeping the running configuration: {e}");
                return;
            }
        };
        let mut sockets = None;
        if config.listen != self.config.listen || config.workers != self.sockets.len() {
            match bind(&config) {
                Ok(s) => sockets = Some(s),
                Err(e) => {
                    log::error!("reload refused: {e}");
                    return;
                }
            }
        }
        let old_sockets = sockets.map(|s| std::mem::replace(&mut self.sockets, s));
        let config = Arc::new(config);
        match self.spawn(config.clone()) {
            Ok(generation) => {
                let old = std::mem::replace(&mut self.current, generation);
                old.stop(true);
                self.draining.push(old);
                self.config = config;
                if let Ok(a) = self.sockets[0].local_addr() {
                    self.addr = a;
                }
                log::info!("reloaded {}", path.display());
            }
            Err(e) => {
                if let Some(s) = old_sockets {
                    self.sockets = s;
                }
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
    /// has finished. SIGHUP reloads.
    pub fn run(mut self) -> Result<(), ServerError> {
        let mut events = Events::with_capacity(8);
        let mut stopping = false;
        let mut failure = None;
        while self.running.load(Ordering::SeqCst) > 0 {
            if let Err(e) = self.poll.poll(&mut events, None) {
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
                            if let Some((_, tx)) = &self.access_log {
                                let _ = tx.send(accesslog::Msg::Reopen);
                            }
                        }
                        SIGHUP if !stopping => self.reload(),
                        SIGHUP => {}
                        _ if stopping => {
                            log::warn!("second signal {sig}: exiting now");
                            std::process::exit(1);
                        }
                        _ => {
                            log::info!("signal {sig}: graceful shutdown");
                            stopping = true;
                            self.sockets.clear();
                            self.metrics_socket = None;
                            self.stop(true);
                        }
                    }
                }
            }
            // Reap finished generations; a reactor of the current one that dies takes the
            // others down with it: a half-served address is worse than a supervisor restart.
            for g in &mut self.draining {
                reap(&mut g.threads, &mut failure);
            }
            self.draining.retain(|g| !g.threads.is_empty());
            let before = self.current.threads.len();
            reap(&mut self.current.threads, &mut failure);
            if self.current.threads.len() != before && !stopping {
                log::error!("a reactor stopped unexpectedly; shutting down");
                stopping = true;
                self.stop(true);
            }
        }
        reap(&mut self.current.threads, &mut failure);
        // Reactors are gone and so are their senders: the writer drains and exits. A
        // writer stuck on a log nobody reads (a full FIFO) must not hold the exit forever.
        self.access_log = None;
        let deadline = std::time::Instant::now() + self.config.timeouts.shutdown;
        for w in self.log_writers.drain(..) {
            while !w.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(10));
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

/// Join the threads that have finished, keeping the first failure.
fn reap(threads: &mut Vec<JoinHandle<Result<(), String>>>, failure: &mut Option<String>) {
    let mut i = 0;
    while i < threads.len() {
        if !threads[i].is_finished() {
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

fn bind(config: &Config) -> Result<Vec<std::net::TcpListener>, ServerError> {
    let listeners = listener::bind_all(config.listen, config.limits.backlog, config.workers)
        .map_err(|err| ServerError::Bind {
            addr: config.listen,
            err,
        })?;
    Ok(listeners)
}

/// Raise the soft descriptor limit to the hard one; every connection costs one.
fn raise_nofile_limit(config: &Config) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        lim.current = lim.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, lim) {
            log::warn!("cannot raise RLIMIT_NOFILE: {e}");
        }
    }
    let lim = getrlimit(Resource::Nofile);
    let need = (config.limits.max_connections * config.workers) as u64 + 64;
    if let Some(cur) = lim.current {
        if cur < need {
            log::warn!(
                "RLIMIT_NOFILE is {cur}, below the {need} that max_connections x workers needs"
            );
        }
    }
}
