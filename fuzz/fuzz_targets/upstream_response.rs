//! Arbitrary upstream responses through the proxy's relay (`vireo::upstream::relay`):
//! the strict head parser, the body state machine (Content-Length, chunked validation or
//! de-chunking, close-delimited) and, when byte 0 says so, the streaming compressor run
//! inline as the pool would run it. Bytes 0 and 1 choose the client (HTTP/1.0, keep-alive,
//! HEAD, the coding it gets, `min_bytes`) and the schedule (read sizes, how much the
//! client takes between reads); the rest is what the upstream sent.
//!
//! Checked: no panic; never more unsent bytes held than the bounds allow; on success
//! what the client got is one well-framed HTTP/1.1 response (one of Content-Length or
//! chunked, re-parsed with vireo's own chunked decoder, exactly the body length), whose
//! body (decompressed if the relay added a Content-Encoding) equals what the upstream's
//! body decodes to; never more body bytes than the upstream's Content-Length; and
//! without compression the client's bytes and the verdict do not depend on the schedule.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::Read;
use vireo::http::negotiate::Coding;
use vireo::http::request::{ChunkedDecoder, Limits};
use vireo::http::upstream_response::{self, RespFraming};
use vireo::offload::codec::Levels;
use vireo::offload::stream::StreamEncoder;
use vireo::upstream::relay::{ClientSide, Policy, Relay, OUT_MAX, RESP_HEAD_MAX};

const LIMITS: Limits = Limits {
    max_request_line: RESP_HEAD_MAX,
    max_header_bytes: RESP_HEAD_MAX,
    max_body_bytes: u64::MAX,
};

struct Run {
    ok: bool,
    client: Vec<u8>,
    coding: Option<Coding>,
    head_out: bool,
}

/// xorshift: the schedule from one seed byte.
struct Rng(u32);
impl Rng {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        (self.0 as usize) % n.max(1)
    }
}

fn run(input: &[u8], client: ClientSide, policy: &Policy, seed: Option<u8>) -> Run {
    let mut relay = Relay::new(client);
    let mut out = Vec::new();
    let mut out_pos = 0usize;
    let mut got = Vec::new();
    let mut enc: Option<StreamEncoder> = None;
    let mut rng = Rng(u32::from(seed.unwrap_or(1)).wrapping_mul(2_654_435_761) | 1);
    let mut pos = 0usize;
    let mut eof = false;
    let mut ok = true;
    let mut steps = 0u32;
    while !relay.done() {
        steps += 1;
        assert!(steps < 1_000_000, "no progress");
        if relay.compressing() {
            if let Some((inp, last)) = relay.next_job(Vec::new()) {
                assert!(inp.len() <= vireo::upstream::relay::ZIN_MAX);
                let coding = relay.coding.expect("compressing without a coding");
                let e = enc.get_or_insert_with(|| {
                    StreamEncoder::new(coding, &Levels::default()).expect("encoder")
                });
                let mut o = Vec::new();
                e.push(&inp, last, &mut o).expect("compress");
                relay.compressed(&mut out, &o, last);
                continue;
            }
        }
        // The client takes some of what is queued (all of it when unscheduled).
        let unsent = out.len() - out_pos;
        assert!(
            unsent <= 2 * OUT_MAX + 2 * RESP_HEAD_MAX + 64,
            "{unsent} bytes held"
        );
        let take = match seed {
            None => unsent,
            Some(_) => rng.next(unsent + 1),
        };
        got.extend_from_slice(&out[out_pos..out_pos + take]);
        out_pos += take;
        if eof {
            // Only the compressor can still finish (the upstream said its last).
            if !relay.compressing() {
                break;
            }
            continue;
        }
        let in_head = relay.in_head();
        let unsent = out.len() - out_pos;
        let (buf, want) = relay.read_buf(&mut out, unsent);
        if want == 0 {
            if in_head {
                ok = false;
                break;
            }
            // Full: the client takes everything before the next read.
            got.extend_from_slice(&out[out_pos..]);
            out_pos = out.len();
            continue;
        }
        if pos == input.len() {
            eof = true;
            if relay.eof().is_err() {
                ok = false;
                break;
            }
            continue;
        }
        let n = match seed {
            None => want.min(input.len() - pos),
            Some(_) => (1 + rng.next(want.min(4096))).min(input.len() - pos),
        };
        let at = buf.len();
        buf.extend_from_slice(&input[pos..pos + n]);
        pos += n;
        if relay.absorb(&mut out, at, policy).is_err() {
            ok = false;
            break;
        }
    }
    got.extend_from_slice(&out[out_pos..]);
    if ok && !relay.done() {
        ok = false;
    }
    Run {
        ok,
        client: got,
        coding: relay.coding.filter(|_| relay.compressing()),
        head_out: relay.head_out,
    }
}

/// The upstream's final head (after 1xx heads) and its body as it decodes, if complete.
fn reference(input: &[u8], head_request: bool) -> Option<(u16, RespFraming, Vec<u8>)> {
    let mut at = 0;
    loop {
        let h = upstream_response::parse(&input[at..], RESP_HEAD_MAX, head_request).ok()??;
        if (100..200).contains(&h.status) {
            at += h.head_len;
            continue;
        }
        let body = &input[at + h.head_len..];
        let data = match h.framing {
            RespFraming::None => Vec::new(),
            RespFraming::Length(n) => body.get(..usize::try_from(n).ok()?)?.to_vec(),
            RespFraming::Close => body.to_vec(),
            RespFraming::Chunked => dechunk(body)?.0,
        };
        return Some((h.status, h.framing, data));
    }
}

/// Chunk data and the bytes used, if the chunked body is complete and valid.
fn dechunk(b: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut d = ChunkedDecoder::new();
    let mut data = Vec::new();
    let (n, done) = d
        .feed_spans(b, &LIMITS, |r| data.extend_from_slice(&b[r]))
        .ok()?;
    done.then_some((data, n))
}

fn decode(coding: Coding, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        Coding::Gzip => flate2::read::GzDecoder::new(body)
            .read_to_end(&mut out)
            .map(drop),
        Coding::Zstd => zstd::stream::read::Decoder::new(body)
            .and_then(|mut d| d.read_to_end(&mut out))
            .map(drop),
        Coding::Br => brotli::Decompressor::new(body, 4096)
            .read_to_end(&mut out)
            .map(drop),
        Coding::Identity => {
            out.extend_from_slice(body);
            Ok(())
        }
    }
    .expect("the relay's compressed body decodes");
    out
}

fuzz_target!(|data: &[u8]| {
    let [sel, seed, input @ ..] = data else {
        return;
    };
    let compress = match (sel >> 4) & 7 {
        0 | 1 | 2 => None,
        3 => Some(Coding::Identity),
        4 | 5 => Some(Coding::Gzip),
        6 => Some(Coding::Zstd),
        _ => Some(Coding::Br),
    };
    let client = ClientSide {
        http10: sel & 1 != 0,
        keep_alive: sel & 2 != 0,
        head_request: sel & 4 != 0,
        compress,
    };
    let types = ["text/*".to_string(), "application/json".to_string()];
    let policy = Policy {
        min_bytes: if sel & 8 != 0 { 20 } else { 0 },
        types: &types,
        admit: seed & 1 == 0,
    };
    let r = run(input, client, &policy, Some(*seed));
    if r.coding.is_none() {
        // Without compression the schedule changes nothing.
        let whole = run(input, client, &policy, None);
        assert_eq!(r.ok, whole.ok, "verdict depends on the schedule");
        if r.ok {
            assert!(r.client == whole.client, "bytes depend on the schedule");
        }
    }
    let refr = reference(input, client.head_request);
    if !r.ok {
        if let (true, Some((_, RespFraming::Length(n), _))) = (r.head_out, &refr) {
            // Even cut short, never more than the length was forwarded.
            let end = r.client.windows(4).position(|w| w == b"\r\n\r\n").expect("head") + 4;
            assert!((r.client.len() - end) as u64 <= *n || r.coding.is_some());
        }
        return;
    }
    let (status, framing, want) = refr.expect("the relay finished an incomplete response");
    // The client's response: one head, then exactly its body.
    let mut fields = [httparse::EMPTY_HEADER; 160];
    let mut resp = httparse::Response::new(&mut fields);
    let head_len = match resp.parse(&r.client) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!("client head does not parse: {other:?}"),
    };
    assert_eq!(resp.code, Some(status));
    assert_eq!(resp.version, Some(1));
    let field = |name: &str| -> Vec<&[u8]> {
        resp.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
            .collect()
    };
    let cl = field("content-length");
    let te = field("transfer-encoding");
    assert!(cl.len() <= 1 && te.len() <= 1, "framing fields repeated");
    assert!(cl.is_empty() || te.is_empty(), "both Content-Length and Transfer-Encoding");
    let ce = field("content-encoding");
    let body = &r.client[head_len..];
    let bodiless = client.head_request || framing == RespFraming::None;
    let got = if bodiless {
        assert!(body.is_empty(), "a body after a bodiless head");
        Vec::new()
    } else if let Some(v) = te.first() {
        assert_eq!(*v, b"chunked");
        assert!(!client.http10, "chunked to an HTTP/1.0 client");
        let (data, n) = dechunk(body).expect("the client's chunked body is complete");
        assert_eq!(n, body.len(), "bytes after the chunked body");
        data
    } else if let Some(v) = cl.first() {
        let n: usize = std::str::from_utf8(v).unwrap().parse().unwrap();
        assert_eq!(n, body.len(), "Content-Length is not the body's length");
        body.to_vec()
    } else {
        // Close-delimited: the client connection must close after it.
        assert!(
            field("connection")
                .iter()
                .any(|v| v.eq_ignore_ascii_case(b"close"))
                || client.http10,
            "a close-delimited body on a kept connection"
        );
        body.to_vec()
    };
    let plain = match r.coding {
        Some(c) => {
            assert_eq!(ce.last().copied(), Some(c.as_str().as_bytes()));
            decode(c, &got)
        }
        None => got,
    };
    assert!(plain == want, "the body the client gets is not the upstream's");
});
