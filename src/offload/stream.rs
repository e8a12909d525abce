//! Streaming compression of relayed bodies (proxied responses): one encoder per response,
//! fed a chunk at a time by jobs on the CPU pool, never on a reactor (nginx gzips proxied
//! responses inside its worker loop).
//!
//! The exchange holds a `Stream` and gives it at most one job at a time, so chunks are
//! compressed in order and the lock is never contended (it only hands the encoder and
//! its output between the pool thread and the reactor). Every job flushes (gzip sync
//! flush, a zstd block end, a brotli flush): what arrived so far can be decoded by the
//! client at once, so a Server-Sent Events stream stays live compressed; it costs a few
//! bytes per chunk, and chunks are up to 64 KiB (`relay::ZIN_MAX`) when the upstream is
//! fast. The finished job's completion only wakes the connection: the output waits in
//! the `Stream`, so a completion that arrives late for another exchange carries nothing.
//!
//! Windows are smaller than the whole-file codec's (brotli 256 KiB, zstd 512 KiB) since
//! each open stream holds its encoder for as long as the response lasts; the number of
//! open streams is capped at `compression.max_pending` (`Offload::open_stream`).

use super::codec::Levels;
use super::{Completion, Notifier, Offload, Sent};
use crate::http::negotiate::Coding;
use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Brotli window of a streamed body: 2^18.
const STREAM_BROTLI_LGWIN: u32 = 18;
/// zstd window of a streamed body: 2^19.
const STREAM_ZSTD_WINDOW_LOG: u32 = 19;

/// One body's encoder, fed in order.
pub enum StreamEncoder {
    Gzip(Box<flate2::write::GzEncoder<Vec<u8>>>),
    Zstd(Box<zstd::stream::write::Encoder<'static, Vec<u8>>>),
    Br(Option<Box<brotli::CompressorWriter<Vec<u8>>>>),
}

impl StreamEncoder {
    pub fn new(coding: Coding, levels: &Levels) -> io::Result<StreamEncoder> {
        Ok(match coding {
            Coding::Gzip => StreamEncoder::Gzip(Box::new(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(levels.gzip.min(9)),
            ))),
            Coding::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(
                    Vec::new(),
                    levels.zstd.min(super::codec::ZSTD_MAX),
                )?;
                e.window_log(STREAM_ZSTD_WINDOW_LOG)?;
                StreamEncoder::Zstd(Box::new(e))
            }
            Coding::Br => StreamEncoder::Br(Some(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                4096,
                levels.brotli.min(11),
                STREAM_BROTLI_LGWIN,
            )))),
            Coding::Identity => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "identity is not an encoding",
                ))
            }
        })
    }

    /// Compress `input` and flush (or, `last`, end the stream); the output so far is
    /// appended to `out`.
    pub fn push(&mut self, input: &[u8], last: bool, out: &mut Vec<u8>) -> io::Result<()> {
        match self {
            StreamEncoder::Gzip(e) => {
                e.write_all(input)?;
                if last {
                    e.try_finish()?;
                } else {
                    e.flush()?;
                }
                out.append(e.get_mut());
            }
            StreamEncoder::Zstd(e) => {
                e.write_all(input)?;
                if last {
                    e.do_finish()?;
                } else {
                    e.flush()?;
                }
                out.append(e.get_mut());
            }
            StreamEncoder::Br(slot) => {
                let Some(e) = slot.as_mut() else {
                    return Err(io::Error::other("brotli stream already finished"));
                };
                e.write_all(input)?;
                if last {
                    if let Some(e) = slot.take() {
                        out.append(&mut e.into_inner());
                    }
                } else {
                    e.flush()?;
                    out.append(e.get_mut());
                }
            }
        }
        Ok(())
    }
}

/// What a stream job leaves for the exchange.
#[derive(Default)]
struct State {
    enc: Option<StreamEncoder>,
    /// Compressed output not yet taken, and whether it ends the stream.
    ready: Vec<u8>,
    last: bool,
    /// A job is queued or running.
    busy: bool,
    failed: Option<String>,
}

/// One proxied body's compression: the encoder and what its last job produced. Holding
/// it holds a place among the pool's open streams.
pub struct Stream {
    state: Mutex<State>,
    pool: Arc<Offload>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.pool.streams.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What `Stream::take` found.
pub enum Took {
    /// A job is still running.
    Busy,
    /// Compressed bytes (maybe none) and whether the stream is over.
    Ready(Vec<u8>, bool),
    Failed(String),
}

impl Offload {
    /// A new compressed stream in `coding` (None: the encoder could not be made). The
    /// cap is checked before a response head promises a coding (`stream_room`), so
    /// reactors racing for the last place may pass it by one each.
    pub fn open_stream(self: &Arc<Self>, coding: Coding) -> Option<Arc<Stream>> {
        self.streams.fetch_add(1, Ordering::AcqRel);
        let s = Arc::new(Stream {
            state: Mutex::new(State::default()),
            pool: Arc::clone(self),
        });
        match StreamEncoder::new(coding, &self.levels) {
            Ok(e) => super::lock(&s.state).enc = Some(e),
            Err(e) => {
                log::error!("cannot start a {} stream: {e}", coding.as_str());
                return None;
            }
        }
        Some(s)
    }

    /// Is there room for another open stream?
    pub fn stream_room(&self) -> bool {
        self.streams.load(Ordering::Acquire) < self.budget(super::Kind::Compress)
    }

    /// Compress `input` (then end the stream if `last`) on the CPU pool; the connection
    /// (slot, generation) is woken when it is done. The caller gives a stream one job at
    /// a time (`Stream::take` says when it may give the next).
    pub fn stream_job(
        &self,
        s: &Arc<Stream>,
        input: Vec<u8>,
        last: bool,
        notifier: &Notifier,
        slot: usize,
        generation: u32,
    ) {
        super::lock(&s.state).busy = true;
        let stats = &self.stats[super::Kind::Compress.index()];
        stats.jobs_started.fetch_add(1, Ordering::Relaxed);
        let s = Arc::clone(s);
        let notifier = notifier.clone();
        let started = Instant::now();
        self.pool.spawn(move || {
            let work = || {
                let mut st = super::lock(&s.state);
                let st = &mut *st;
                let r = match st.enc.as_mut() {
                    Some(e) => e.push(&input, last, &mut st.ready),
                    None => Err(io::Error::other("no encoder")),
                };
                if let Err(e) = r {
                    st.failed = Some(e.to_string());
                }
                if last {
                    st.last = true;
                    st.enc = None; // its memory goes now, not with the exchange
                }
            };
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).is_err() {
                super::lock(&s.state).failed = Some("compression panicked".into());
            }
            super::lock(&s.state).busy = false;
            s.pool.stats[super::Kind::Compress.index()]
                .jobs_completed
                .fetch_add(1, Ordering::Relaxed);
            let c = Completion {
                slot,
                generation,
                result: Ok(Arc::from(Vec::new())),
                started,
                sent: Sent::default(),
            };
            if notifier.tx.send(c).is_ok() {
                let _ = notifier.waker.wake();
            }
        });
    }
}

impl Stream {
    /// The last job's output, unless it is still running.
    pub fn take(&self) -> Took {
        let mut st = super::lock(&self.state);
        if st.busy {
            return Took::Busy;
        }
        if let Some(why) = st.failed.take() {
            return Took::Failed(why);
        }
        Took::Ready(std::mem::take(&mut st.ready), st.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn decode(coding: Coding, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match coding {
            Coding::Gzip => flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .unwrap(),
            Coding::Zstd => zstd::stream::read::Decoder::new(body)
                .unwrap()
                .read_to_end(&mut out)
                .unwrap(),
            Coding::Br => brotli::Decompressor::new(body, 4096)
                .read_to_end(&mut out)
                .unwrap(),
            Coding::Identity => unreachable!(),
        };
        out
    }

    #[test]
    fn every_chunk_is_decodable_at_once_and_the_whole_round_trips() {
        let text = crate::testkit::text(300 << 10);
        for coding in [Coding::Gzip, Coding::Zstd, Coding::Br] {
            let mut e = StreamEncoder::new(coding, &Levels::default()).unwrap();
            let mut out = Vec::new();
            e.push(b"data: first event\n\n", false, &mut out).unwrap();
            // A flushed prefix decodes to what went in (a streaming decoder sees it all).
            let mut partial = Vec::new();
            match coding {
                Coding::Gzip => {
                    let mut d = flate2::write::GzDecoder::new(Vec::new());
                    d.write_all(&out).unwrap();
                    d.flush().unwrap();
                    partial = d.get_ref().clone();
                }
                Coding::Zstd => {
                    let mut d = zstd::stream::write::Decoder::new(Vec::new()).unwrap();
                    d.write_all(&out).unwrap();
                    d.flush().unwrap();
                    partial = d.get_ref().clone();
                }
                Coding::Br => {
                    let mut d = brotli::DecompressorWriter::new(Vec::new(), 4096);
                    d.write_all(&out).unwrap();
                    d.flush().unwrap();
                    partial.extend_from_slice(d.get_ref());
                }
                Coding::Identity => {}
            }
            assert_eq!(partial, b"data: first event\n\n", "{coding:?}");
            for piece in text.chunks(7000) {
                e.push(piece, false, &mut out).unwrap();
            }
            e.push(b"", true, &mut out).unwrap();
            let mut want = b"data: first event\n\n".to_vec();
            want.extend_from_slice(&text);
            assert_eq!(decode(coding, &out), want, "{coding:?}");
            assert!(out.len() < want.len() / 2, "{coding:?}: {}", out.len());
        }
    }
}
