//! The harness's HTTP/2 mode: one `H2Conn` over the same in-memory `MemStream`, the client's
//! bytes delivered in the chunks a script says, and the server's output decoded back into
//! responses (HPACK included) so that two deliveries of the same bytes can be compared
//! stream by stream: frame interleaving may differ with the reads, responses may not.

use super::{Harness, MemStream, DATE, MAX_SPINS, TURN_BUDGET};
use crate::http::h2::frame::{self, kind, peek_header};
use crate::http::h2::hpack::{Decoder, DecoderLimits, FieldList};
use crate::net::conn::{Cx, Next, Ready};
use crate::net::h2::H2Conn;
use crate::net::recv::{Inbox, Readiness};
use crate::offload::Completion;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// One stream's answer as the client decodes it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct H2Response {
    /// Every header field of every HEADERS block, in order.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
    pub ended: bool,
    /// The RST_STREAM error code, if the server reset it.
    pub reset: Option<u32>,
}

/// What the server sent, decoded.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct H2Transcript {
    pub streams: BTreeMap<u32, H2Response>,
    /// Error codes of the GOAWAY frames, in order.
    pub goaways: Vec<u32>,
    /// The connection closed.
    pub closed: bool,
}

impl Harness {
    /// Play `chunks` (each one readable edge) into an HTTP/2 connection whose client
    /// reads everything at once, then FIN; decode what the server wrote.
    pub fn run_h2(&mut self, chunks: &[&[u8]]) -> Result<H2Transcript, String> {
        let stream = MemStream {
            window: usize::MAX / 2,
            ..MemStream::default()
        };
        let io = Readiness {
            readable: false,
            writable: true,
            read_closed: false,
            eof: false,
        };
        let peer = ([127, 0, 0, 1], 9).into();
        let config = self.config.clone();
        self.runs = self.runs.wrapping_add(1);
        let mut conn = H2Conn::new(stream, peer, io, Inbox::default(), &config, Instant::now());
        let mut closed = false;
        for c in chunks {
            conn.stream().inbox.extend_from_slice(c);
            conn.ready(Ready {
                readable: true,
                ..Ready::default()
            });
            if let Next::Close = self.settle_h2(&mut conn)? {
                closed = true;
                break;
            }
        }
        if !closed {
            conn.stream().fin = true;
            conn.ready(Ready {
                readable: true,
                writable: false,
                hup: true,
            });
            closed = matches!(self.settle_h2(&mut conn)?, Next::Close);
        }
        let s = conn.stream();
        if s.writes_after_shutdown > 0 {
            return Err("wrote after the half-close".into());
        }
        let mut t = decode(&s.output)?;
        t.closed = closed;
        Ok(t)
    }

    /// Drive until the connection waits (with no stream parked) or closes, completing
    /// the pool jobs its streams park on as the reactor would.
    fn settle_h2(&mut self, conn: &mut H2Conn<MemStream>) -> Result<Next, String> {
        let mut completion: Option<Completion> = None;
        for _ in 0..MAX_SPINS {
            let mut cx = Cx {
                date: DATE,
                now: Instant::now(),
                spares: &mut self.spares,
                draining: false,
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
            let next = match completion.take() {
                // The stream id rides in the slot's upper half (`net::link`).
                Some(c) => conn.resume(
                    (c.slot >> 32) as u32,
                    c.result,
                    c.started,
                    c.sent,
                    site,
                    &mut cx,
                ),
                None => conn.drive(site, &mut cx),
            };
            match next {
                Next::Yield => continue,
                Next::Wait(..) if conn.is_parked() => loop {
                    let c = self
                        .completions
                        .recv_timeout(Duration::from_secs(30))
                        .map_err(|_| "a parked stream never got its completion")?;
                    if c.generation == self.runs {
                        completion = Some(c);
                        break;
                    }
                },
                other => return Ok(other),
            }
        }
        Err("the h2 connection neither waits nor closes (spinning)".into())
    }
}

/// Decode the server's side of a connection: frames, header blocks (HPACK, in wire
/// order, so the dynamic table follows), DATA per stream.
pub fn decode(out: &[u8]) -> Result<H2Transcript, String> {
    let mut t = H2Transcript::default();
    let mut hpack = Decoder::new(DecoderLimits {
        max_table_size: 4096,
        max_list_size: 1 << 20,
        max_fields: 1024,
    });
    let mut fields = FieldList::new();
    let mut block: Option<(u32, Vec<u8>, bool)> = None;
    let mut at = 0;
    while at < out.len() {
        let h = peek_header(&out[at..]).ok_or("a truncated frame header")?;
        let end = at + h.frame_len();
        if end > out.len() {
            return Err(format!("a truncated frame at {at}"));
        }
        let p = &out[at + frame::HEADER_LEN..end];
        at = end;
        let end_stream = h.flags & frame::flag::END_STREAM != 0;
        let end_headers = h.flags & frame::flag::END_HEADERS != 0;
        if block.is_some() != (h.kind == kind::CONTINUATION) {
            return Err("a header block interrupted, or a stray CONTINUATION".into());
        }
        match h.kind {
            kind::HEADERS | kind::CONTINUATION => {
                let (id, mut b, es) = block.take().unwrap_or((h.stream, Vec::new(), end_stream));
                b.extend_from_slice(p);
                if !end_headers {
                    block = Some((id, b, es));
                    continue;
                }
                fields.clear();
                hpack
                    .decode(&b, &mut fields)
                    .map_err(|e| format!("HPACK: {e:?}"))?;
                let r = t.streams.entry(id).or_default();
                r.fields
                    .extend(fields.iter().map(|(n, v)| (n.to_vec(), v.to_vec())));
                r.ended |= es;
            }
            kind::DATA => {
                let r = t.streams.entry(h.stream).or_default();
                if r.ended {
                    return Err(format!("DATA after END_STREAM on {}", h.stream));
                }
                r.body.extend_from_slice(p);
                r.ended |= end_stream;
            }
            kind::RST_STREAM if p.len() == 4 => {
                let r = t.streams.entry(h.stream).or_default();
                r.reset = Some(u32::from_be_bytes([p[0], p[1], p[2], p[3]]));
            }
            kind::GOAWAY if p.len() >= 8 => {
                t.goaways.push(u32::from_be_bytes([p[4], p[5], p[6], p[7]]));
            }
            _ => {}
        }
    }
    Ok(t)
}

/// One HTTP/2 fuzz input (the connection fuzzer with bit 7 of byte 0 set): byte 0 picks
/// the configuration (bits 0-1), bytes 1..9 seed where the
/// input splits, the rest are frames after a fixed preface and SETTINGS exchange. The
/// connection must not panic, must close after the client's FIN, never write after its
/// half-close, send frames the client decodes (HPACK included), and, unless a budget
/// that depends on how the bytes were read (streams per read, refused streams, a
/// connection error) came into it, every response complete in both runs the same as for
/// the bytes in one piece.
pub fn exercise_h2(harnesses: &mut [Harness], data: &[u8]) -> Result<(), String> {
    let Some((flags, mut next, payload)) = super::layout(data) else {
        return Ok(());
    };
    let mut bytes = crate::http::h2::PREFACE.to_vec();
    frame::write_settings(&mut bytes, &[]);
    frame::write_settings_ack(&mut bytes);
    bytes.extend_from_slice(payload);
    let mut chunks = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let max = [1, 9, 64, 4096, usize::MAX][(next() % 5) as usize];
        let n = (1 + next() as usize % max.min(bytes.len())).min(bytes.len() - at);
        chunks.push(&bytes[at..at + n]);
        at += n;
    }
    let h = &mut harnesses[flags as usize % harnesses.len()];
    let split = h.run_h2(&chunks)?;
    if !split.closed {
        return Err("still open after the client's FIN".into());
    }
    let whole = h.run_h2(&[&bytes])?;
    let read_dependent = |t: &H2Transcript| {
        t.goaways.iter().any(|&c| c != 0) || t.streams.values().any(|r| r.reset == Some(0x7))
    };
    if read_dependent(&split) || read_dependent(&whole) {
        return Ok(());
    }
    // How the shared connection window is spread over the streams, and whether a window
    // shrinks before or after DATA went, depends on the reads; a response that is complete
    // in both runs may not differ.
    for (id, a) in &split.streams {
        match whole.streams.get(id) {
            Some(b) if a.ended && b.ended && (a.fields != b.fields || a.body != b.body) => {
                return Err(format!(
                    "split delivery changed stream {id}'s response:\n{a:?}\nvs\n{b:?}"
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::h2::hpack::{Encoder, Indexing};
    use crate::http::h2::{setting, PREFACE};

    /// Preface, SETTINGS (a 100-byte stream window), requests on several streams (one a
    /// 404, one HEAD, one of 2.5 KiB that needs the WINDOW_UPDATEs that follow), a PING.
    fn client_bytes() -> Vec<u8> {
        let mut b = PREFACE.to_vec();
        frame::write_settings(&mut b, &[(setting::INITIAL_WINDOW_SIZE, 100)]);
        frame::write_settings_ack(&mut b);
        let mut enc = Encoder::new();
        let reqs = [
            (1, "GET", "/a.txt"),
            (3, "GET", "/assets/style.css"),
            (5, "GET", "/nope"),
            (7, "HEAD", "/index.html"),
            (9, "GET", "/dir/sub/b.txt"),
        ];
        for (id, method, path) in reqs {
            let mut block = Vec::new();
            enc.begin(&mut block);
            for (k, v) in [
                (":method", method),
                (":scheme", "http"),
                (":authority", "t"),
                (":path", path),
            ] {
                enc.field(
                    k.as_bytes(),
                    v.as_bytes(),
                    Indexing::Incremental,
                    &mut block,
                );
            }
            frame::write_headers(&mut b, id, &block, true, 16_384);
        }
        frame::write_window_update(&mut b, 3, 1000);
        frame::write_ping(&mut b, false, *b"harness!");
        frame::write_window_update(&mut b, 3, 2000);
        frame::write_window_update(&mut b, 0, 10_000);
        b
    }

    #[test]
    fn h2_responses_are_the_same_however_the_input_is_split() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut hs = super::super::world(dir.path()).expect("world");
        let h = &mut hs[0];
        let bytes = client_bytes();
        let whole = h.run_h2(&[&bytes]).expect("whole");
        // Sanity: what the whole delivery got.
        assert!(whole.closed, "closed after FIN");
        let status = |r: &H2Response| {
            r.fields
                .iter()
                .find(|(n, _)| n == b":status")
                .map(|(_, v)| v.clone())
        };
        let s = &whole.streams;
        assert_eq!(s.len(), 5, "{s:?}");
        assert_eq!(s[&1].body, b"alpha\n");
        assert_eq!(status(&s[&3]).as_deref(), Some(&b"200"[..]));
        assert!(s[&3].body.len() > 2000 && s[&3].ended, "css whole");
        assert_eq!(status(&s[&5]).as_deref(), Some(&b"404"[..]));
        assert!(s[&7].body.is_empty() && s[&7].ended, "HEAD: no DATA");
        assert_eq!(s[&9].body, b"bravo\n");
        for i in 1..bytes.len() {
            let split = h
                .run_h2(&[&bytes[..i], &bytes[i..]])
                .unwrap_or_else(|e| panic!("split at {i}: {e}"));
            assert_eq!(split, whole, "split at {i}");
        }
        // And a byte at a time.
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(h.run_h2(&bytewise).expect("bytewise"), whole);
    }

    #[test]
    fn the_h2_fuzz_check_passes_on_a_request_and_on_garbage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut hs = super::super::world(dir.path()).expect("world");
        let reqs = client_bytes();
        let mut input = vec![0u8, 1, 2, 3, 4, 5, 6, 7, 8];
        // The fuzz input's frames follow our own preface and SETTINGS.
        input.extend_from_slice(&reqs[PREFACE.len() + 9 + 9 + 6..]);
        exercise_h2(&mut hs, &input).expect("requests");
        // The corpus seed is two real requests.
        let seed = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fuzz/corpus/connection/h2-two-requests"
        );
        let seed = std::fs::read(seed).expect("seed");
        let mut bytes = PREFACE.to_vec();
        frame::write_settings(&mut bytes, &[]);
        frame::write_settings_ack(&mut bytes);
        bytes.extend_from_slice(&seed[9..]);
        let t = hs[0].run_h2(&[&bytes]).expect("seed");
        assert_eq!(t.streams[&3].body, b"alpha\n", "{t:?}");
        assert!(
            t.streams[&1].ended && t.goaways.iter().all(|&c| c == 0),
            "{t:?}"
        );
        let garbage: Vec<u8> = (0..300u32).map(|i| (i * 37 % 251) as u8).collect();
        exercise_h2(&mut hs, &garbage).expect("garbage");
    }

    /// Plausible frames (requests for small, big, missing and gzipped files; updates,
    /// PINGs, resets, SETTINGS, DATA, PRIORITY) in random order and pieces. (This found
    /// the harness handing a closed run's completion to the next run.)
    #[test]
    fn random_plausible_frames_pass_the_h2_fuzz_check() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut hs = super::super::world(dir.path()).expect("world");
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let paths: [&[u8]; 4] = [b"/a.txt", b"/assets/style.css", b"/nope", b"/big.bin"];
        for round in 0..2000 {
            let mut input = vec![(next() % 4) as u8 | 0x80];
            input.extend_from_slice(&next().to_le_bytes());
            let mut id = 1u32;
            let last = |id: u32| id.saturating_sub(2).max(1);
            for _ in 0..next() % 16 {
                let (kind, flags, stream, payload): (u8, u8, u32, Vec<u8>) = match next() % 10 {
                    0..=3 => {
                        let p = paths[(next() % 4) as usize];
                        let mut b = vec![0x82, 0x86, 0x44, p.len() as u8];
                        b.extend_from_slice(p);
                        b.extend_from_slice(&[0x41, 1, b't']);
                        if next() % 3 == 0 {
                            b.extend_from_slice(&[0x50, 4]);
                            b.extend_from_slice(b"gzip");
                        }
                        id += 2;
                        (
                            kind::HEADERS,
                            if next() % 4 == 0 { 4 } else { 5 },
                            id - 2,
                            b,
                        )
                    }
                    4 => {
                        let inc = (next() % 70_000) as u32 + 1;
                        let s = [0, last(id)][(next() % 2) as usize];
                        (kind::WINDOW_UPDATE, 0, s, inc.to_be_bytes().to_vec())
                    }
                    5 => (kind::PING, 0, 0, next().to_be_bytes().to_vec()),
                    6 => (kind::RST_STREAM, 0, last(id), 8u32.to_be_bytes().to_vec()),
                    7 => {
                        let mut b = vec![0, 4];
                        b.extend_from_slice(&((next() % 100_000) as u32).to_be_bytes());
                        (kind::SETTINGS, 0, 0, b)
                    }
                    8 => {
                        let body = vec![b'x'; (next() % 300) as usize];
                        (kind::DATA, (next() % 2) as u8, last(id), body)
                    }
                    _ => (kind::PRIORITY, 0, id, vec![0, 0, 0, 0, 16]),
                };
                input.extend_from_slice(&frame::header(payload.len() as u32, kind, flags, stream));
                input.extend_from_slice(&payload);
            }
            if let Err(e) = exercise_h2(&mut hs, &input) {
                panic!("round {round}: {e}");
            }
        }
    }
}
