//! One `Conn` driven over an in-memory stream the way a reactor drives it, without sockets:
//! for the connection fuzzer (`fuzz/fuzz_targets/connection.rs`) and the tests that replay
//! its seeds. Input arrives in chunks split wherever the script says, the client's receive
//! window opens and closes, timers fire, and `check` verifies the bytes that came back.
//! `h2` does the same for an HTTP/2 connection (the fuzzer's mode with bit 7 of byte 0).

mod check;
pub mod h2;
pub mod tls;

use crate::config::Config;
use crate::net::conn::Spares;
use crate::net::conn::{Conn, Cx, Next, Ready, Transport};
use crate::net::timer::Class;
use crate::offload::{Completion, Notifier, Offload};
use crate::ops::metrics::{ReactorStats, Registry};
use crate::site::hosts::Sites;
pub use check::Response;
use crossbeam_channel::Receiver;
use mio::{Poll, Token, Waker};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A fixed Date header value, so two runs of the same requests compare byte for byte.
const DATE: &[u8] = b"Sun, 06 Nov 1994 08:49:37 GMT";
/// The per-turn send budget here: small, so that a response spanning turns needs no
/// multi-megabyte file (which would slow the fuzzer down).
const TURN_BUDGET: u64 = 48 << 10;
/// Drives without progress before the harness calls the connection stuck.
const MAX_SPINS: usize = 100_000;

/// The client side of a connection, in memory.
#[derive(Default)]
pub struct MemStream {
    /// Delivered to the server but not yet read.
    inbox: Vec<u8>,
    inpos: usize,
    fin: bool,
    /// Everything the server wrote.
    pub output: Vec<u8>,
    /// Bytes the client will accept before the server's writes would block.
    window: usize,
    shut: bool,
    /// Writes attempted after the server half-closed: always a bug.
    pub writes_after_shutdown: usize,
    /// The next read, write and send_file each fail once with EINTR (`Step::Interrupt`).
    eintr_read: bool,
    eintr_write: bool,
    eintr_send_file: bool,
}

fn eintr(flag: &mut bool) -> io::Result<()> {
    if std::mem::take(flag) {
        return Err(io::ErrorKind::Interrupted.into());
    }
    Ok(())
}

impl MemStream {
    fn take(&mut self, want: usize) -> io::Result<usize> {
        if self.shut {
            self.writes_after_shutdown += 1;
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if want > 0 && self.window == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = want.min(self.window);
        self.window -= n;
        Ok(n)
    }
}

impl Read for MemStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        eintr(&mut self.eintr_read)?;
        let avail = &self.inbox[self.inpos..];
        if avail.is_empty() {
            return if self.fin {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.inpos += n;
        if self.inpos == self.inbox.len() {
            self.inbox.clear();
            self.inpos = 0;
        }
        Ok(n)
    }
}

impl Write for MemStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        eintr(&mut self.eintr_write)?;
        let n = self.take(buf.len())?;
        self.output.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        eintr(&mut self.eintr_write)?;
        let total = bufs.iter().map(|b| b.len()).sum();
        let mut n = self.take(total)?;
        let written = n;
        for b in bufs {
            let k = n.min(b.len());
            self.output.extend_from_slice(&b[..k]);
            n -= k;
        }
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for MemStream {
    fn send_file(&mut self, file: &File, pos: &mut u64, len: usize) -> io::Result<usize> {
        eintr(&mut self.eintr_send_file)?;
        let n = self.take(len.min(1 << 20))?;
        let start = self.output.len();
        self.output.resize(start + n, 0);
        let got = file.read_at(&mut self.output[start..], *pos)?;
        // Give back what the file did not have (it shrank): sendfile returns short.
        self.output.truncate(start + got);
        self.window += n - got;
        *pos += got as u64;
        Ok(got)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shut = true;
        Ok(())
    }

    fn set_nodelay(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What happens next on the wire.
#[derive(Clone, Debug)]
pub enum Step {
    /// These bytes arrive (one readable edge).
    Data(Vec<u8>),
    /// The client reads: this many more bytes may be written (one writable edge).
    Window(usize),
    /// The timer the connection is waiting on fires.
    Timeout,
    /// A graceful shutdown begins: later responses say `Connection: close`.
    Drain,
    /// The client half-closes (FIN).
    Fin,
    /// A signal lands: the next read, write and send_file each fail once with EINTR,
    /// which must change nothing the client sees.
    Interrupt,
}

/// The result of one scripted connection.
#[derive(Debug, Default)]
pub struct Transcript {
    pub output: Vec<u8>,
    /// The connection closed (it always must, once the client sent FIN and reads all).
    pub closed: bool,
    /// A timer fired and closed the connection, which may cut a response short.
    pub timed_out: bool,
    pub writes_after_shutdown: usize,
}

/// A reactor's context for one connection at a time.
pub struct Harness {
    config: Arc<Config>,
    site: Sites,
    spares: Spares,
    cold: crate::net::conn::ColdJobs,
    /// No upstream sockets in the harness: a proxied request fails like a dead server.
    upstreams: crate::upstream::pool::Upstreams,
    notifier: Notifier,
    completions: Receiver<Completion>,
    stats: Arc<ReactorStats>,
    /// Runs so far: each is a new connection generation, so a completion of a job a closed
    /// run left behind is dropped as the reactor drops it.
    runs: u32,
    _poll: Poll,
}

impl Harness {
    pub fn new(config: Config) -> io::Result<Harness> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), Token(0))?);
        let (tx, completions) = crossbeam_channel::unbounded();
        let offload = Offload::for_config(&config, 1)?;
        let registry = Arc::new(Registry::default());
        let config = Arc::new(config);
        Ok(Harness {
            site: Sites::new(config.clone(), offload, Some(registry.clone()))?,
            spares: Spares::default(),
            cold: Default::default(),
            upstreams: crate::upstream::pool::Upstreams::new(
                None,
                config.upstreams.clone(),
                Arc::new(crate::upstream::Health::new(&config.upstreams)),
            ),
            notifier: Notifier { tx, waker },
            completions,
            stats: registry.reactor(0),
            runs: 0,
            config,
            _poll: poll,
        })
    }

    /// Play `steps`, then FIN with an unlimited window, and return what the client got.
    pub fn run(&mut self, steps: &[Step]) -> Result<Transcript, String> {
        self.play(steps, true)
    }

    /// Play `steps` only: the connection is left as the last step left it (no FIN).
    pub fn run_open(&mut self, steps: &[Step]) -> Result<Transcript, String> {
        self.play(steps, false)
    }

    fn play(&mut self, steps: &[Step], fin: bool) -> Result<Transcript, String> {
        let stream = MemStream {
            window: 0,
            ..MemStream::default()
        };
        let peer = ([127, 0, 0, 1], 9).into();
        let mut conn = Conn::new(stream, peer, false, Instant::now());
        self.runs = self.runs.wrapping_add(1);
        let mut draining = false;
        let mut waiting: Option<Class> = None;
        let mut t = Transcript::default();
        let finale = [Step::Window(usize::MAX / 2), Step::Fin];
        let finale = if fin { &finale[..] } else { &[] };
        for step in steps.iter().chain(finale) {
            let s = conn.stream();
            match step {
                Step::Data(d) => {
                    if s.fin {
                        continue; // nothing follows a FIN
                    }
                    s.inbox.extend_from_slice(d);
                    conn.ready(Ready {
                        readable: true,
                        ..Ready::default()
                    });
                }
                Step::Window(n) => {
                    s.window = s.window.saturating_add(*n);
                    conn.ready(Ready {
                        writable: true,
                        ..Ready::default()
                    });
                }
                Step::Fin => {
                    s.fin = true;
                    conn.ready(Ready {
                        readable: true,
                        writable: false,
                        hup: true,
                    });
                }
                Step::Drain => draining = true,
                Step::Interrupt => {
                    s.eintr_read = true;
                    s.eintr_write = true;
                    s.eintr_send_file = true;
                    continue; // nothing to drive until the next event
                }
                Step::Timeout => {}
            }
            let timer = match (step, waiting) {
                (Step::Timeout, Some(class)) => Some(class),
                (Step::Timeout, None) => continue, // nothing armed: a timer cannot fire
                _ => None,
            };
            let next = self.settle(&mut conn, draining, timer)?;
            match next {
                Next::Close => {
                    t.closed = true;
                    t.timed_out = timer.is_some();
                    break;
                }
                Next::Wait(class, _) => waiting = Some(class),
                Next::Yield => unreachable!("settle drives until the connection waits"),
            }
        }
        let s = conn.stream();
        t.output = std::mem::take(&mut s.output);
        t.writes_after_shutdown = s.writes_after_shutdown;
        Ok(t)
    }

    /// Drive (or fire `timer` on) the connection until it waits or closes, completing any
    /// offload job (compression, listing) it parks on as the reactor would.
    fn settle(
        &mut self,
        conn: &mut Conn<MemStream>,
        draining: bool,
        mut timer: Option<Class>,
    ) -> Result<Next, String> {
        let mut completion: Option<Completion> = None;
        for _ in 0..MAX_SPINS {
            let mut cx = Cx {
                date: DATE,
                now: Instant::now(),
                spares: &mut self.spares,
                draining,
                turn_budget: TURN_BUDGET,
                notifier: &self.notifier,
                slot: 0,
                generation: self.runs,
                log: None,
                stats: &self.stats,
                handshakes: None,
                tls: None,
                cold: &mut self.cold,
                upstreams: &mut self.upstreams,
            };
            let site = &mut self.site;
            let next = if let Some(c) = completion.take() {
                if c.sent.cold {
                    cx.cold.inflight = cx.cold.inflight.saturating_sub(1);
                }
                conn.resume(c.result, c.started, c.sent, site, &mut cx)
            } else if let Some(class) = timer.take() {
                conn.timeout(class, site, &mut cx)
            } else {
                conn.drive(site, &mut cx)
            };
            match next {
                Next::Yield => continue,
                Next::Wait(Class::KeepAlive, _) if !conn.is_bare() => {
                    return Err("an idle keep-alive connection kept its buffers".into());
                }
                Next::Wait(..) if conn.is_parked() => loop {
                    let c = self
                        .completions
                        .recv_timeout(Duration::from_secs(30))
                        .map_err(|_| "a parked connection never got its completion")?;
                    if c.generation == self.runs {
                        completion = Some(c);
                        break;
                    }
                    if c.sent.cold {
                        // Its place is free, as the reactor counts it.
                        self.cold.inflight = self.cold.inflight.saturating_sub(1);
                    }
                },
                other => return Ok(other),
            }
        }
        Err("the connection neither waits nor closes (spinning)".into())
    }
}

/// Lay out a docroot under `dir` (and a secret beside it) and return a harness for each
/// configuration the fuzzer picks from: defaults; tight limits; autoindex, error pages,
/// header rules and negative caching; compression of everything with no cache (every gzip
/// runs a job).
pub fn world(dir: &std::path::Path) -> io::Result<Vec<Harness>> {
    use std::fs;
    let root = dir.join("root");
    fs::create_dir_all(root.join("dir/sub"))?;
    fs::create_dir_all(root.join("list/inner"))?;
    fs::create_dir_all(root.join("assets"))?;
    fs::write(dir.join("secret"), b"SECRET outside the root\n")?;
    fs::write(
        root.join("index.html"),
        b"<!doctype html><title>vireo</title>home\n",
    )?;
    fs::write(root.join("a.txt"), b"alpha\n")?;
    fs::write(root.join("with space.txt"), b"spaced\n")?;
    fs::write(
        root.join("404.html"),
        b"<!doctype html><title>404</title>custom\n",
    )?;
    fs::write(root.join("dir/index.html"), b"<p>dir index</p>\n")?;
    fs::write(root.join("dir/sub/b.txt"), b"bravo\n")?;
    fs::write(root.join("list/<b>&.txt"), b"escaped\n")?;
    fs::write(root.join("list/x.json"), b"{\"x\":1}\n")?;
    let css: Vec<u8> = (0..64)
        .flat_map(|i| format!(".c{i} {{ color: #{i:06x}; margin: {i}px }}\n").into_bytes())
        .collect();
    fs::write(root.join("assets/style.css"), &css)?;
    // Over inline_bytes (sent with sendfile), small enough to gzip quickly.
    let js: Vec<u8> = (0..480)
        .flat_map(|i| format!("function f{i}(a) {{ return a * {i} + {}; }}\n", i % 7).into_bytes())
        .collect();
    fs::write(root.join("app.js"), &js)?;
    // Over the per-turn send budget (2 MiB), so a response spans several turns.
    let big: Vec<u8> = (0..(2usize << 20) + 4099)
        .map(|i| (i % 251) as u8 + 1)
        .collect();
    fs::write(root.join("big.bin"), &big)?;
    fs::write(
        root.join("pre.txt"),
        b"precompressed sidecar identity text\n".repeat(20),
    )?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&b"precompressed sidecar identity text\n".repeat(20))?;
    fs::write(root.join("pre.txt.gz"), gz.finish()?)?;
    std::os::unix::fs::symlink("../secret", root.join("out"))?;
    std::os::unix::fs::symlink("a.txt", root.join("link"))?;

    let base = format!(
        "root = {:?}\nlisten = \"127.0.0.1:0\"\n",
        root.display().to_string()
    );
    let variants = [
        String::new(),
        "[limits]\nmax_request_line = 64\nmax_header_bytes = 300\nmax_body_bytes = 40\n"
            .to_string(),
        "autoindex = true\n[error_pages]\n404 = \"/404.html\"\n\
         [open_file_cache]\nerrors = true\ninline_bytes = 0\n\
         [[headers]]\npath = \"/assets/\"\nset = { \"Cache-Control\" = \"max-age=60\" }\n\
         [[headers]]\npath = \"/**/*.txt\"\nset = { \"X-Kind\" = \"text\" }\n"
            .to_string(),
        "[compression]\nlevel = 1\nmin_bytes = 1\ncache_bytes = 0\nhttp10 = true\nprecompressed = false\n\
         types = [\"text/*\", \"image/svg+xml\"]\n"
            .to_string(),
    ];
    variants
        .iter()
        .map(|v| {
            let config = Config::from_toml(&format!("{base}{v}"), dir, "harness.toml")
                .map_err(|e| io::Error::other(e.to_string()))?;
            Harness::new(config)
        })
        .collect()
}

/// A fuzz input's layout: byte 0 (flags), bytes 1..9 seeding the schedule (an xorshift64*
/// generator), the rest the payload. None for an empty input.
fn layout(data: &[u8]) -> Option<(u8, impl FnMut() -> u64, &[u8])> {
    let (&flags, rest) = data.split_first()?;
    let (seed, payload) = rest.split_at(rest.len().min(8));
    let mut s = [0u8; 8];
    s[..seed.len()].copy_from_slice(seed);
    let mut rng = u64::from_le_bytes(s) | 1;
    let next = move || {
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    Some((flags, next, payload))
}

/// One fuzz input: byte 0 picks the configuration (bits 0-1) and allows timers (bit 2) and a
/// drain (bit 3); bytes 1..9 seed the schedule (where the input splits, how much the client
/// reads between writes, where a signal interrupts a syscall); the rest is what the client
/// sends. Checks that the connection closes after the client's FIN, never writes after its
/// half-close, answers with responses that pass `Harness::check`, and, when no timer or
/// drain interfered, sends exactly what it sends for the same bytes arriving in one piece.
pub fn exercise(harnesses: &mut [Harness], data: &[u8]) -> Result<(), String> {
    let Some((flags, mut next, payload)) = layout(data) else {
        return Ok(());
    };
    let h = &mut harnesses[flags as usize % harnesses.len()];
    let mut steps = Vec::new();
    let mut interfered = false;
    let mut at = 0;
    while at < payload.len() {
        let r = next();
        let max = [1, 3, 16, 64, 512, 4096, usize::MAX, usize::MAX][(r & 7) as usize];
        let n = (1 + (r >> 3) as usize % max.min(payload.len())).min(payload.len() - at);
        steps.push(Step::Data(payload[at..at + n].to_vec()));
        at += n;
        let r = next();
        if (r >> 24) % 8 == 0 {
            // Not interference: EINTR must be invisible on the wire.
            steps.push(Step::Interrupt);
        }
        if r & 1 == 1 {
            let w = [0, 1, 7, 100, 1500, 65536, 1 << 22, 3][((r >> 1) & 7) as usize];
            steps.push(Step::Window(w));
        }
        if flags & 4 != 0 && (r >> 8) % 16 == 0 {
            steps.push(Step::Timeout);
            interfered = true;
        }
        if flags & 8 != 0 && (r >> 16) % 32 == 0 {
            steps.push(Step::Drain);
            interfered = true;
        }
    }
    let t = h.run(&steps)?;
    if t.writes_after_shutdown > 0 {
        return Err("wrote after the half-close".into());
    }
    if !t.closed {
        return Err("still open after the client's FIN with everything read".into());
    }
    h.check(payload, &t.output, t.timed_out)?;
    if !interfered {
        let whole = h.run(&[Step::Data(payload.to_vec())])?;
        if whole.output != t.output {
            let at = whole
                .output
                .iter()
                .zip(&t.output)
                .position(|(a, b)| a != b)
                .unwrap_or(whole.output.len().min(t.output.len()));
            return Err(format!(
                "split delivery changed the response bytes at offset {at} ({} vs {} bytes)",
                t.output.len(),
                whole.output.len()
            ));
        }
    }
    Ok(())
}
