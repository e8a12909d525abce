//! A response body after its head, the one representation both protocols send from:
//! HTTP/1.1 (`send::Outbox`: writev + sendfile) and HTTP/2 (`h2`: DATA frames). It says
//! where the body is (`Src`: memory, a file range, multipart segments) and what is known
//! of the file's pages (`Probe`): a file window is probed with `pagecache::resident`
//! once per `COLD_WINDOW` before the reactor sends or `pread`s it, and a cold one goes to
//! an I/O thread (`hand_off`), which reads it in (or, HTTP/1.1 over plain TCP, sends it).
//! A probe holds for one turn only: between two turns the kernel may evict the pages.

use crate::http::response::Body;
use crate::net::conn::Cx;
use crate::offload::{ColdTicket, Offload};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Instant;

/// Bytes of a file probed at once (`pagecache::resident`: one cachestat per window keeps
/// the probe's cost at one syscall per 2 MiB on hot files) and handed to an I/O thread
/// when cold.
pub const COLD_WINDOW: u64 = 2 << 20;

/// A file range not in the page cache: an I/O thread sends what the socket takes of it
/// (the bytes it read from the disk are then already out, and cannot be evicted again
/// before the reactor's sendfile), or reads it in (no socket given).
pub struct Cold {
    pub file: Arc<File>,
    pub pos: u64,
    pub len: u64,
}

/// Where the body bytes are.
pub enum Src {
    None,
    /// In the binary (HTTP/2 frames it; the HTTP/1.1 encoder writes it with the head).
    Static(&'static [u8], usize),
    /// In memory shared with the compression cache.
    Shared(Arc<[u8]>, usize),
    File {
        file: Arc<File>,
        pos: u64,
        end: u64,
    },
    /// multipart/byteranges (boxed: rare, and it would double every connection's size).
    Parts(Box<Parts>),
}

/// Segments sent in order; `mem` ranges index `mem`, file ranges are read from `file`.
pub struct Parts {
    pub file: Arc<File>,
    pub mem: Vec<u8>,
    pub segs: Vec<Seg>,
    pub idx: usize,
}

pub enum Seg {
    Mem(usize, usize),
    File(u64, u64),
}

impl Src {
    /// The one mapping from a reply's body to what is sent after the head.
    pub fn of(body: Body) -> Src {
        match body {
            Body::Empty | Body::Pending => Src::None,
            Body::Static(b) => Src::Static(b, 0),
            Body::Shared(d) => Src::Shared(d, 0),
            Body::File { file, start, end } => Src::File {
                file,
                pos: start,
                end,
            },
            Body::Multipart {
                file,
                heads,
                parts,
                trailer,
            } => {
                let mut segs = Vec::with_capacity(parts.len() * 2 + 1);
                for (h, r) in parts {
                    segs.push(Seg::Mem(h.start, h.end));
                    segs.push(Seg::File(r.start, r.end + 1));
                }
                segs.push(Seg::Mem(trailer.start, trailer.end));
                Src::Parts(Box::new(Parts {
                    file,
                    mem: heads,
                    segs,
                    idx: 0,
                }))
            }
        }
    }

    /// Bytes still to send.
    pub fn left(&self) -> u64 {
        match self {
            Src::None => 0,
            Src::Static(b, p) => (b.len() - p) as u64,
            Src::Shared(b, p) => (b.len() - p) as u64,
            Src::File { pos, end, .. } => end - pos,
            Src::Parts(p) => p.segs[p.idx.min(p.segs.len())..]
                .iter()
                .map(|s| match s {
                    Seg::Mem(a, b) => (b - a) as u64,
                    Seg::File(a, b) => b - a,
                })
                .sum(),
        }
    }

    /// Bytes still to send from the file.
    pub fn file_bytes(&self) -> u64 {
        match self {
            Src::File { pos, end, .. } => end - pos,
            Src::Parts(p) => p.segs[p.idx.min(p.segs.len())..]
                .iter()
                .map(|s| match s {
                    Seg::File(a, b) => b - a,
                    Seg::Mem(..) => 0,
                })
                .sum(),
            _ => 0,
        }
    }

    /// The file range being sent now: its position and end.
    fn file_at(&mut self) -> Option<(&mut u64, u64)> {
        match self {
            Src::File { pos, end, .. } => Some((pos, *end)),
            Src::Parts(p) => match p.segs.get_mut(p.idx) {
                Some(Seg::File(pos, end)) => Some((pos, *end)),
                _ => None,
            },
            _ => None,
        }
    }
}

/// What is known of the page cache for the file bytes about to be sent.
pub struct Probe {
    /// File bytes before this offset were found (or made) resident in this turn; 0 = probe
    /// first. `u64::MAX`: do not probe (no pool to read on, or `cold_reads = false`).
    warm_until: u64,
    /// The pool has just read the window before `warm_until` in: trust it for the next
    /// turn without a probe, so a window evicted again at once still makes progress.
    fresh: bool,
    /// The pool is reading (or sending) the window before `warm_until`: nothing is sent
    /// until it is done.
    wait: bool,
}

impl Default for Probe {
    fn default() -> Probe {
        Probe::new()
    }
}

impl Probe {
    pub const fn new() -> Probe {
        Probe {
            warm_until: 0,
            fresh: false,
            wait: false,
        }
    }

    /// Never probe the page cache.
    pub fn trust(&mut self) {
        self.warm_until = u64::MAX;
    }

    /// A cold window is being read (or sent) by the pool.
    pub fn waiting(&self) -> bool {
        self.wait
    }

    /// A new body, or the next range of one (ranges may go backwards): probe afresh.
    pub fn restart(&mut self) {
        if self.warm_until != u64::MAX {
            self.warm_until = 0;
        }
    }

    /// A turn begins: what was probed in the last one holds no more, unless the pool has
    /// just read it in.
    pub fn new_turn(&mut self) {
        if !std::mem::take(&mut self.fresh) {
            self.restart();
        }
    }

    /// Bytes at `pos` of the file range ending at `end` are about to be sent: Some when
    /// they must go through an I/O thread first (probed once per `COLD_WINDOW`); then
    /// `waiting` until `done`.
    pub fn check(&mut self, file: &Arc<File>, pos: u64, end: u64) -> Option<Cold> {
        if pos < self.warm_until || pos >= end {
            return None;
        }
        let len = (end - pos).min(COLD_WINDOW);
        // Resident, or about to be made so by the pool.
        self.warm_until = pos + len;
        if crate::offload::pagecache::resident(file, pos, len) {
            return None;
        }
        self.wait = true;
        Some(Cold {
            file: Arc::clone(file),
            pos,
            len,
        })
    }

    /// File bytes known resident from `pos` on, in this turn (`check` first).
    pub fn warm_from(&self, pos: u64) -> u64 {
        self.warm_until.saturating_sub(pos)
    }

    /// The I/O thread is done with the window of `src`: `sent` bytes of it went out from
    /// its start; `probe_again`: the rest was not read in, probe it before sending. False
    /// if nothing was waited for.
    pub fn done(&mut self, src: &mut Src, sent: u64, probe_again: bool) -> bool {
        if !std::mem::take(&mut self.wait) {
            return false;
        }
        if let Some((pos, end)) = src.file_at() {
            *pos = pos.saturating_add(sent).min(end);
            if probe_again && self.warm_until != u64::MAX {
                self.warm_until = *pos;
            }
            self.fresh = !probe_again;
        }
        true
    }
}

/// The next piece of a body to frame (`Tail::chunk`).
pub enum Chunk<'a> {
    /// Bytes in memory (at most the `max` asked for).
    Mem(&'a [u8]),
    /// `len` bytes of `file` from `pos`, resident as far as this turn knows.
    File {
        file: &'a Arc<File>,
        pos: u64,
        len: usize,
    },
    /// The next file bytes are not in the page cache: have the pool read them in first.
    Cold(Cold),
    Done,
}

/// A body and its probe, sent piece by piece (HTTP/2 DATA frames).
pub struct Tail {
    pub src: Src,
    pub probe: Probe,
}

impl Tail {
    pub fn new(body: Body, trust: bool) -> Tail {
        let mut probe = Probe::new();
        if trust {
            probe.trust();
        }
        Tail {
            src: Src::of(body),
            probe,
        }
    }

    pub fn left(&self) -> u64 {
        self.src.left()
    }

    /// See `Probe::done`.
    pub fn cold_done(&mut self, sent: u64, probe_again: bool) -> bool {
        self.probe.done(&mut self.src, sent, probe_again)
    }

    /// The next at most `max` bytes (of one segment), probing a file window first.
    /// `advance` by what was sent of it.
    pub fn chunk(&mut self, max: usize) -> Chunk<'_> {
        let Tail { src, probe } = self;
        if probe.wait {
            // Still waiting (a caller bug to ask): send nothing.
            return Chunk::Done;
        }
        let (file, pos, end) = match src {
            Src::None => return Chunk::Done,
            Src::Static(b, p) => {
                let n = (b.len() - *p).min(max);
                return mem(&b[*p..*p + n]);
            }
            Src::Shared(b, p) => {
                let n = (b.len() - *p).min(max);
                return mem(&b[*p..*p + n]);
            }
            Src::File { file, pos, end } => (&*file, *pos, *end),
            Src::Parts(p) => {
                // Empty segments (a trailer-less part) are stepped over.
                loop {
                    match p.segs.get(p.idx) {
                        None => return Chunk::Done,
                        Some(Seg::Mem(a, b)) if a == b => p.idx += 1,
                        Some(Seg::File(a, b)) if a >= b => {
                            p.idx += 1;
                            probe.restart();
                        }
                        _ => break,
                    }
                }
                match p.segs[p.idx] {
                    Seg::Mem(a, b) => {
                        let n = (b - a).min(max);
                        return mem(&p.mem[a..a + n]);
                    }
                    Seg::File(a, b) => (&p.file, a, b),
                }
            }
        };
        if pos >= end {
            return Chunk::Done;
        }
        if let Some(c) = probe.check(file, pos, end) {
            return Chunk::Cold(c);
        }
        let len = (end - pos).min(probe.warm_from(pos)).min(max as u64) as usize;
        Chunk::File { file, pos, len }
    }

    /// `n` bytes of the last chunk went out.
    pub fn advance(&mut self, n: usize) {
        match &mut self.src {
            Src::None => {}
            Src::Static(_, p) | Src::Shared(_, p) => *p += n,
            Src::File { pos, .. } => *pos += n as u64,
            Src::Parts(p) => {
                let done = match p.segs.get_mut(p.idx) {
                    Some(Seg::Mem(a, b)) => {
                        *a += n;
                        a >= b
                    }
                    Some(Seg::File(a, b)) => {
                        *a += n as u64;
                        a >= b
                    }
                    None => false,
                };
                if done {
                    p.idx += 1;
                    self.probe.restart();
                }
            }
        }
    }
}

fn mem(b: &[u8]) -> Chunk<'_> {
    if b.is_empty() {
        Chunk::Done
    } else {
        Chunk::Mem(b)
    }
}

/// What became of a cold window (`hand_off`).
pub enum Handed {
    /// On an I/O thread: wait for its completion (cancel the ticket to drop it).
    Started(Arc<ColdTicket>),
    /// The reactor's jobs are at their cap (`MAX_COLD_JOBS`): the connection is queued
    /// in `ColdJobs::waiting` and probes the window again when a place frees up.
    Queued,
}

/// Hand a cold file window to an I/O thread of `pool`: it sends it into the socket that
/// `sock` duplicates (plain HTTP/1.1), or, with no socket, reads it into the page cache.
/// The completion comes back under (`tag`, this connection's generation) with
/// `Sent::cold` set. Counted against the reactor's `MAX_COLD_JOBS`.
pub fn hand_off(
    c: Cold,
    pool: &Offload,
    sock: impl FnOnce() -> Option<OwnedFd>,
    tag: usize,
    cx: &mut Cx,
) -> Handed {
    if cx.cold.inflight >= crate::offload::MAX_COLD_JOBS {
        let me = (cx.slot, cx.generation);
        // Once per connection: an HTTP/2 one may meet the cap for several streams.
        if !cx.cold.waiting.contains(&me) {
            cx.cold.waiting.push_back(me);
        }
        return Handed::Queued;
    }
    cx.cold.inflight += 1;
    cx.stats
        .cold_reads
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let notifier = cx.notifier.clone();
    let generation = cx.generation;
    let started = Instant::now();
    let ticket = ColdTicket::new(crate::offload::SockSlot::take(sock));
    let job = Arc::clone(&ticket);
    pool.spawn_io(move || {
        let sent = crate::offload::Sent {
            cold: true,
            ..job.run(&c.file, c.pos, c.len)
        };
        drop(job);
        let done = crate::offload::Completion {
            slot: tag,
            generation,
            result: Ok(Arc::from(&[][..])),
            started,
            sent,
        };
        if notifier.tx.send(done).is_ok() {
            let _ = notifier.waker.wake();
        }
    });
    Handed::Started(ticket)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(t: &mut Tail, max: usize) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let n = match t.chunk(max) {
                Chunk::Mem(b) => {
                    out.extend_from_slice(b);
                    b.len()
                }
                Chunk::File { file, pos, len } => {
                    let mut b = vec![0; len];
                    std::os::unix::fs::FileExt::read_exact_at(&**file, &mut b, pos).expect("read");
                    out.extend_from_slice(&b);
                    len
                }
                Chunk::Cold(_) => panic!("trusted: no probe"),
                Chunk::Done => return out,
            };
            t.advance(n);
        }
    }

    #[test]
    fn multipart_bodies_come_out_in_order_in_pieces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").expect("write");
        let file = Arc::new(File::open(&path).expect("open"));
        let mut t = Tail {
            src: Src::Parts(Box::new(Parts {
                file,
                mem: b"[a][b]".to_vec(),
                segs: vec![
                    Seg::Mem(0, 3),
                    Seg::File(2, 5),
                    Seg::Mem(3, 3),
                    Seg::Mem(3, 6),
                    Seg::File(8, 10),
                ],
                idx: 0,
            })),
            probe: Probe::new(),
        };
        t.probe.trust();
        assert_eq!(t.left(), 11);
        assert_eq!(t.src.file_bytes(), 5);
        assert_eq!(drain(&mut t, 2), b"[a]234[b]89");
        assert_eq!(t.left(), 0);
    }

    #[test]
    fn a_probed_window_bounds_the_file_chunk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 3 << 20]).expect("write");
        let file = Arc::new(File::open(&path).expect("open"));
        let mut t = Tail::new(
            Body::File {
                file,
                start: 0,
                end: 3 << 20,
            },
            false,
        );
        // Just written: resident. One window at a time, however much is asked for.
        match t.chunk(usize::MAX) {
            Chunk::File { pos, len, .. } => assert_eq!((pos, len as u64), (0, COLD_WINDOW)),
            _ => panic!("expected a resident file chunk"),
        }
        t.advance(COLD_WINDOW as usize);
        match t.chunk(usize::MAX) {
            Chunk::File { pos, len, .. } => assert_eq!((pos, len), (COLD_WINDOW, 1 << 20)),
            _ => panic!("expected a resident file chunk"),
        }
    }
}
