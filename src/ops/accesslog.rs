//! The access log, off the hot path. Each reactor formats lines into its own buffer (itoa,
//! a timestamp cached per second, no allocation per line) and hands the buffer to one
//! writer thread every 64 KiB or every second, over a bounded channel. The reactor never
//! blocks on the disk: when the writer falls behind and the channel is full, the batch is
//! dropped and its lines counted (`vireo_access_log_dropped_lines_total`). On a graceful
//! exit the last batch is handed over with a send bounded by the shutdown deadline.
//!
//! Reopening (SIGUSR1) is a flag the writer checks before each write, plus a non-blocking
//! nudge through the channel: the signal thread never waits on a writer stuck on a full
//! pipe or a slow disk.
//!
//! Formats: `combined` (Apache/nginx combined, so goaccess and awk scripts read it) and
//! `json` (the same fields plus the request's host, the request time in microseconds and
//! the reactor id).

use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::{AccessFormat, AccessTarget};
use crate::ops::metrics::ReactorStats;

const BATCH: usize = 64 << 10;
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Batches waiting for the writer; beyond this, lines are dropped.
const QUEUE: usize = 64;

pub enum Msg {
    Batch(Vec<u8>),
    /// Wake an idle writer to look at its reopen flag.
    Reopen,
}

/// The main thread's handle on a writer (reactors get clones of `tx`).
#[derive(Clone)]
pub struct Writer {
    pub tx: Sender<Msg>,
    reopen: Arc<AtomicBool>,
}

impl Writer {
    /// Reopen the file (SIGUSR1, after logrotate renamed it) before the next write. Never
    /// blocks: a full channel means the writer is busy and sees the flag after this batch.
    pub fn request_reopen(&self) {
        self.reopen.store(true, Ordering::SeqCst);
        let _ = self.tx.try_send(Msg::Reopen);
    }
}

/// The writer thread: owns the file, writes batches in order, reopens on request, exits
/// when every sender is gone (after writing everything queued).
pub fn spawn_writer(target: AccessTarget) -> io::Result<(Writer, JoinHandle<()>)> {
    let (tx, rx) = crossbeam_channel::bounded(QUEUE);
    let mut out = open(&target)?;
    let reopen = Arc::new(AtomicBool::new(false));
    let flag = reopen.clone();
    let thread = std::thread::Builder::new()
        .name("vireo-log".into())
        .spawn(move || writer(&target, &mut out, rx, &flag))?;
    Ok((Writer { tx, reopen }, thread))
}

fn open(target: &AccessTarget) -> io::Result<Box<dyn Write + Send>> {
    Ok(match target {
        AccessTarget::Stdout => Box::new(io::stdout()),
        AccessTarget::File(p) => Box::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?,
        ) as Box<dyn Write + Send>,
    })
}

fn writer(
    target: &AccessTarget,
    out: &mut Box<dyn Write + Send>,
    rx: Receiver<Msg>,
    reopen: &AtomicBool,
) {
    for msg in rx {
        if reopen.swap(false, Ordering::SeqCst) {
            match open(target) {
                Ok(f) => {
                    let _ = out.flush();
                    *out = f;
                    log::info!("access log reopened");
                }
                Err(e) => log::error!("access log reopen: {e}"),
            }
        }
        if let Msg::Batch(b) = msg {
            if let Err(e) = out.write_all(&b).and_then(|_| out.flush()) {
                log::error!("access log: {e}");
            }
        }
    }
    let _ = out.flush();
}

/// One request, as the connection saw it.
pub struct Entry<'a> {
    pub peer: SocketAddr,
    /// Method, target, protocol; None when the request could not be parsed.
    pub request: Option<(&'a [u8], &'a [u8], &'a [u8])>,
    /// The name that picked the site, port stripped (written lower case); None without one.
    pub host: Option<&'a [u8]>,
    pub status: u16,
    pub bytes: u64,
    pub referer: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
    pub started: Instant,
    /// TLS version and cipher suite on a TLS connection.
    pub tls: Option<(&'static str, &'static str)>,
    /// The HTTP/2 stream id (JSON `stream`, written for HTTP/2 only); 0 for HTTP/1.x.
    pub stream: u32,
}

/// A reactor's side of the log.
pub struct AccessLog {
    format: AccessFormat,
    reactor: usize,
    buf: Vec<u8>,
    lines: u64,
    first_at: Option<Instant>,
    tx: Sender<Msg>,
    stats: Arc<ReactorStats>,
    secs: u64,
    /// `10/Oct/2000:13:55:36 +0000` and `2000-10-10T13:55:36Z`.
    clf: [u8; 26],
    iso: [u8; 20],
    /// The next line's upstream (address, status, time): proxied requests only.
    upstream: Option<(Box<str>, u16, u64)>,
}

impl AccessLog {
    pub fn new(
        format: AccessFormat,
        reactor: usize,
        tx: Sender<Msg>,
        stats: Arc<ReactorStats>,
    ) -> Self {
        AccessLog {
            format,
            reactor,
            buf: Vec::with_capacity(BATCH + 1024),
            lines: 0,
            first_at: None,
            tx,
            stats,
            secs: u64::MAX,
            clf: [b' '; 26],
            iso: [b' '; 20],
            upstream: None,
        }
    }

    /// The upstream fields of the next line (JSON: `upstream_addr`, `upstream_status`,
    /// `upstream_time_us`); None clears them.
    pub fn set_upstream(&mut self, addr: Option<&str>, status: u16, time: std::time::Duration) {
        self.upstream = addr.map(|a| (a.into(), status, time.as_micros() as u64));
    }

    /// When the buffered lines must be handed over at the latest.
    pub fn deadline(&self) -> Option<Instant> {
        self.first_at.map(|t| t + FLUSH_EVERY)
    }

    pub fn log(&mut self, e: &Entry, now: Instant) {
        self.update_time();
        if self.first_at.is_none() {
            self.first_at = Some(now);
        }
        let micros = now.saturating_duration_since(e.started).as_micros() as u64;
        let mut n = itoa::Buffer::new();
        let b = &mut self.buf;
        match self.format {
            AccessFormat::Combined => {
                push_ip(b, e.peer);
                b.extend_from_slice(b" - - [");
                b.extend_from_slice(&self.clf);
                b.extend_from_slice(b"] \"");
                match e.request {
                    Some((method, target, protocol)) => {
                        escape_clf(b, method);
                        b.push(b' ');
                        escape_clf(b, target);
                        b.push(b' ');
                        escape_clf(b, protocol);
                    }
                    None => b.push(b'-'),
                }
                b.extend_from_slice(b"\" ");
                b.extend_from_slice(n.format(e.status).as_bytes());
                b.push(b' ');
                b.extend_from_slice(n.format(e.bytes).as_bytes());
                b.extend_from_slice(b" \"");
                escape_clf(b, e.referer.unwrap_or(b"-"));
                b.extend_from_slice(b"\" \"");
                escape_clf(b, e.user_agent.unwrap_or(b"-"));
                b.extend_from_slice(b"\"\n");
            }
            AccessFormat::Json => {
                b.extend_from_slice(b"{\"time\":\"");
                b.extend_from_slice(&self.iso);
                b.extend_from_slice(b"\",\"remote_addr\":\"");
                push_ip(b, e.peer);
                b.extend_from_slice(b"\",\"host\":\"");
                escape_json_lower(b, e.host.unwrap_or(b""));
                let (method, target, protocol) = e.request.unwrap_or((b"", b"", b""));
                b.extend_from_slice(b"\",\"method\":\"");
                escape_json(b, method);
                b.extend_from_slice(b"\",\"uri\":\"");
                escape_json(b, target);
                b.extend_from_slice(b"\",\"protocol\":\"");
                escape_json(b, protocol);
                b.extend_from_slice(b"\",\"status\":");
                b.extend_from_slice(n.format(e.status).as_bytes());
                b.extend_from_slice(b",\"bytes\":");
                b.extend_from_slice(n.format(e.bytes).as_bytes());
                b.extend_from_slice(b",\"referer\":\"");
                escape_json(b, e.referer.unwrap_or(b""));
                b.extend_from_slice(b"\",\"user_agent\":\"");
                escape_json(b, e.user_agent.unwrap_or(b""));
                b.extend_from_slice(b"\",\"request_time_us\":");
                b.extend_from_slice(n.format(micros).as_bytes());
                if let Some((addr, status, us)) = &self.upstream {
                    b.extend_from_slice(b",\"upstream_addr\":\"");
                    escape_json(b, addr.as_bytes());
                    b.extend_from_slice(b"\",\"upstream_status\":");
                    b.extend_from_slice(n.format(*status).as_bytes());
                    b.extend_from_slice(b",\"upstream_time_us\":");
                    b.extend_from_slice(n.format(*us).as_bytes());
                }
                if e.stream != 0 {
                    b.extend_from_slice(b",\"stream\":");
                    b.extend_from_slice(n.format(e.stream).as_bytes());
                }
                b.extend_from_slice(b",\"reactor\":");
                b.extend_from_slice(n.format(self.reactor).as_bytes());
                let (version, cipher) = e.tls.unwrap_or(("", ""));
                b.extend_from_slice(b",\"tls_version\":\"");
                b.extend_from_slice(version.as_bytes());
                b.extend_from_slice(b"\",\"tls_cipher\":\"");
                b.extend_from_slice(cipher.as_bytes());
                b.extend_from_slice(b"\"}\n");
            }
        }
        self.lines += 1;
        if self.buf.len() >= BATCH {
            self.flush();
        }
    }

    /// Hand the buffer to the writer without ever blocking; drop it if the writer is behind.
    pub fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.buf, Vec::with_capacity(BATCH + 1024));
        match self.tx.try_send(Msg::Batch(batch)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats
                    .log_dropped
                    .fetch_add(self.lines, Ordering::Relaxed);
            }
        }
        self.lines = 0;
        self.first_at = None;
    }

    /// At exit: wait for room until `deadline` so the last lines are not lost, but never
    /// longer (a writer stuck on a full pipe must not hold the exit).
    pub fn finish(&mut self, deadline: Instant) {
        if self.buf.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.buf);
        if self.tx.send_deadline(Msg::Batch(batch), deadline).is_err() {
            self.stats
                .log_dropped
                .fetch_add(self.lines, Ordering::Relaxed);
        }
        self.lines = 0;
        self.first_at = None;
    }

    fn update_time(&mut self) {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if secs == self.secs {
            return;
        }
        self.secs = secs;
        // "Sun, 06 Nov 1994 08:49:37 GMT" -> "06/Nov/1994:08:49:37 +0000"
        let d = crate::http::response::http_date(secs);
        let (day, mon, year, time) = (&d[5..7], &d[8..11], &d[12..16], &d[17..25]);
        let mut clf = Vec::with_capacity(26);
        for part in [day, b"/", mon, b"/", year, b":", time, b" +0000"] {
            clf.extend_from_slice(part);
        }
        self.clf.copy_from_slice(&clf[..26]);
        let m = match mon {
            b"Jan" => b"01",
            b"Feb" => b"02",
            b"Mar" => b"03",
            b"Apr" => b"04",
            b"May" => b"05",
            b"Jun" => b"06",
            b"Jul" => b"07",
            b"Aug" => b"08",
            b"Sep" => b"09",
            b"Oct" => b"10",
            b"Nov" => b"11",
            _ => b"12",
        };
        let mut iso = Vec::with_capacity(20);
        for part in [year, b"-", m, b"-", day, b"T", time, b"Z"] {
            iso.extend_from_slice(part);
        }
        self.iso.copy_from_slice(&iso[..20]);
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        // After a normal exit `finish` has emptied the buffer; otherwise never block here.
        self.flush();
    }
}

fn push_ip(b: &mut Vec<u8>, peer: SocketAddr) {
    // Formatting an IpAddr does not allocate when written into a Vec via io::Write.
    let _ = write!(b, "{}", peer.ip());
}

/// nginx-style escaping: `"`, `\` and bytes outside printable ASCII as `\xHH`.
fn escape_clf(b: &mut Vec<u8>, s: &[u8]) {
    for &c in s {
        if c == b'"' || c == b'\\' || !(0x20..0x7f).contains(&c) {
            b.extend_from_slice(&[b'\\', b'x', hex(c >> 4), hex(c & 15)]);
        } else {
            b.push(c);
        }
    }
}

fn escape_json(b: &mut Vec<u8>, s: &[u8]) {
    for &c in s {
        match c {
            b'"' => b.extend_from_slice(b"\\\""),
            b'\\' => b.extend_from_slice(b"\\\\"),
            0x20..0x7f => b.push(c),
            // Control and non-ASCII bytes as \u00XX (bytes read as Latin-1: always valid JSON).
            _ => b.extend_from_slice(&[b'\\', b'u', b'0', b'0', hex(c >> 4), hex(c & 15)]),
        }
    }
}

/// A host name is case-insensitive: one spelling per name in the log.
fn escape_json_lower(b: &mut Vec<u8>, s: &[u8]) {
    let at = b.len();
    escape_json(b, s);
    b[at..].make_ascii_lowercase();
}

fn hex(n: u8) -> u8 {
    b"0123456789abcdef"[n as usize & 15]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry<'static> {
        Entry {
            peer: "127.0.0.1:5000".parse().expect("addr"),
            request: Some((b"GET", b"/a\"b", b"HTTP/1.1")),
            host: Some(b"Docs.Example.ORG"),
            status: 200,
            bytes: 13,
            referer: None,
            user_agent: Some(b"curl/8 \xff"),
            started: Instant::now(),
            tls: None,
            stream: 0,
        }
    }

    #[test]
    fn combined_line_has_the_standard_shape() {
        let (tx, rx) = crossbeam_channel::bounded(4);
        let mut l = AccessLog::new(AccessFormat::Combined, 0, tx, Arc::default());
        l.log(&entry(), Instant::now());
        l.flush();
        let Ok(Msg::Batch(b)) = rx.try_recv() else {
            panic!("no batch")
        };
        let line = String::from_utf8(b).expect("ascii");
        assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
        assert!(
            line.contains("+0000] \"GET /a\\x22b HTTP/1.1\" 200 13 \"-\" \"curl/8 \\xff\"\n"),
            "{line}"
        );
        // nginx's combined format has no host: the line is unchanged by it.
        assert!(!line.to_ascii_lowercase().contains("example"), "{line}");
    }

    #[test]
    fn json_line_escapes_and_counts_drops_when_full() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let stats: Arc<ReactorStats> = Arc::default();
        let mut l = AccessLog::new(AccessFormat::Json, 3, tx, stats.clone());
        l.log(&entry(), Instant::now());
        l.flush();
        l.log(&entry(), Instant::now());
        l.log(&entry(), Instant::now());
        l.flush(); // channel full: two lines dropped
        assert_eq!(stats.log_dropped.load(Ordering::Relaxed), 2);
        let Ok(Msg::Batch(b)) = rx.try_recv() else {
            panic!("no batch")
        };
        let line = String::from_utf8(b).expect("ascii");
        assert!(line.contains("\"uri\":\"/a\\\"b\""), "{line}");
        assert!(line.contains("\"user_agent\":\"curl/8 \\u00ff\""), "{line}");
        assert!(
            line.contains("\"reactor\":3,\"tls_version\":\"\",\"tls_cipher\":\"\"}"),
            "{line}"
        );
        assert!(
            line.contains("\"host\":\"docs.example.org\",\"method\""),
            "{line}"
        );
        let (tx, rx) = crossbeam_channel::bounded(1);
        let mut l = AccessLog::new(AccessFormat::Json, 0, tx, Arc::default());
        let no_host = Entry {
            host: None,
            ..entry()
        };
        l.log(&no_host, Instant::now());
        l.flush();
        let Ok(Msg::Batch(b)) = rx.try_recv() else {
            panic!("no batch")
        };
        let line = String::from_utf8(b).expect("ascii");
        assert!(line.contains("\"host\":\"\",\"method\""), "{line}");
    }

    #[test]
    fn finish_gives_up_at_the_deadline_and_counts_the_lines() {
        let (tx, _rx) = crossbeam_channel::bounded(1);
        let stats: Arc<ReactorStats> = Arc::default();
        let mut l = AccessLog::new(AccessFormat::Combined, 0, tx, stats.clone());
        l.log(&entry(), Instant::now());
        l.flush();
        l.log(&entry(), Instant::now());
        let start = Instant::now();
        l.finish(start + Duration::from_millis(50));
        assert!(start.elapsed() < Duration::from_secs(2));
        assert_eq!(stats.log_dropped.load(Ordering::Relaxed), 1);
    }
}
