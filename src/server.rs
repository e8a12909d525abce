//! The process: binds one listener per reactor, starts the reactor threads, and turns
//! signals into messages for them. The main thread sleeps in its own `Poll` on a
//! signal-hook self-pipe and a Waker that reactors ring when they exit: no polling loop.

use crate::config::Config;
use crate::listener;
use crate::offload::Offload;
use crate::reactor::{Msg, Reactor};
use crossbeam_channel::Sender;
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGINT, SIGTERM};
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

/// Running reactors and the way to reach them.
pub struct Server {
    addr: SocketAddr,
    reactors: Vec<(Sender<Msg>, Arc<Waker>)>,
    threads: Vec<JoinHandle<Result<(), String>>>,
    poll: Poll,
    running: Arc<AtomicUsize>,
}

impl Server {
    /// Bind and start every reactor. Returns once all listeners are bound.
    pub fn start(config: Config) -> Result<Server, ServerError> {
        raise_nofile_limit(&config);
        let config = Arc::new(config);
        let listeners = listener::bind_all(config.listen, config.limits.backlog, config.workers)
            .map_err(|err| ServerError::Bind {
                addr: config.listen,
                err,
            })?;
        let addr = listeners[0].local_addr()?;
        let c = &config.compression;
        let offload = if c.enabled {
            Some(Offload::new(
                c.threads,
                c.level,
                c.max_pending,
                c.cache_bytes,
            )?)
        } else {
            None
        };
        let poll = Poll::new()?;
        let exited = Arc::new(Waker::new(poll.registry(), EXITED)?);
        let running = Arc::new(AtomicUsize::new(listeners.len()));
        let mut reactors = Vec::new();
        let mut threads = Vec::new();
        for (id, l) in listeners.into_iter().enumerate() {
            let (tx, rx) = crossbeam_channel::unbounded();
            let (reactor, waker) = Reactor::new(id, config.clone(), l, rx, offload.clone())?;
            reactors.push((tx, waker));
            let exited = exited.clone();
            let running = running.clone();
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
            threads.push(t);
        }
        println!("listening on {addr}");
        Ok(Server {
            addr,
            reactors,
            threads,
            poll,
            running,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Ask every reactor to stop; graceful lets in-flight responses finish.
    pub fn stop(&self, graceful: bool) {
        for (tx, waker) in &self.reactors {
            let _ = tx.send(Msg::Stop { graceful });
            let _ = waker.wake();
        }
    }

    /// Serve until SIGTERM/SIGINT (graceful; a second one exits at once) and every reactor
    /// has finished.
    pub fn run(mut self) -> Result<(), ServerError> {
        let mut signals = Signals::new([SIGTERM, SIGINT])?;
        self.poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let mut events = Events::with_capacity(8);
        let mut stopping = false;
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
                for sig in signals.pending() {
                    if stopping {
                        log::warn!("second signal {sig}: exiting now");
                        std::process::exit(1);
                    }
                    log::info!("signal {sig}: graceful shutdown");
                    stopping = true;
                    self.stop(true);
                }
            }
            // A reactor that dies takes the others down with it: a half-served address
            // is worse than a restart by the supervisor.
            if !stopping && self.threads.iter().any(|t| t.is_finished()) {
                stopping = true;
                self.stop(true);
            }
        }
        let mut failure = None;
        for t in self.threads.drain(..) {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failure = Some(e),
                Err(_) => failure = Some("reactor thread panicked".to_string()),
            }
        }
        match failure {
            Some(e) => Err(ServerError::Reactor(e)),
            None => Ok(()),
        }
    }
}

/// Raise the soft descriptor limit to the hard one; every connection costs one.
fn raise_nofile_limit(config: &Config) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        lim.current = lim.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, lim.clone()) {
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
