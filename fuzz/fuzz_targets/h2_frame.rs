//! HTTP/2 frame decoder + header-block assembler (+ HPACK, request validation and the
//! synthesised HTTP/1.1 head) on arbitrary bytes: never panics, never consumes more than
//! it was given, a verdict on a prefix is "need more" or the same verdict, and the
//! assembler's buffer stays within its budget.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vireo::http::h2::frame::{BlockAssembler, BlockLimits, Decoder, Frame, Step, HEADER_LEN};
use vireo::http::h2::hpack::{self, DecoderLimits, FieldList};
use vireo::http::h2::priority::Priority;
use vireo::http::h2::{request, Settings};
use vireo::http::request::{parse, Limits};

const HPACK: DecoderLimits = DecoderLimits {
    max_table_size: 4096,
    max_list_size: 4096,
    max_fields: 32,
};

const LIMITS: Limits = Limits {
    max_request_line: 8192,
    max_header_bytes: 16384,
    max_body_bytes: 1 << 20,
};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    // Mode bit 0: start with an empty SETTINGS so the rest is past the first-frame rule.
    let mut buf = Vec::new();
    if mode & 1 == 1 {
        buf.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    }
    buf.extend_from_slice(rest);
    let max_frame = if mode & 2 == 0 { 16_384 } else { 64 };
    let block_limits = if mode & 4 == 0 {
        BlockLimits::default()
    } else {
        BlockLimits {
            max_bytes: 100,
            max_continuations: 3,
        }
    };
    run(&buf, max_frame, block_limits);
});

fn run(buf: &[u8], max_frame: u32, block_limits: BlockLimits) {
    let mut dec = Decoder::new(max_frame);
    let mut asm = BlockAssembler::new(block_limits);
    let mut hp = hpack::Decoder::new(HPACK);
    let mut list = FieldList::new();
    let mut peer = Settings::PEER_DEFAULT;
    let mut pos = 0;
    while pos < buf.len() {
        let input = &buf[pos..];
        let verdict = dec.clone().decode(input);
        // Every prefix says "need more" or the same thing.
        for cut in [
            HEADER_LEN - 1,
            HEADER_LEN,
            input.len() / 2,
            input.len().saturating_sub(1),
        ] {
            if cut < input.len() {
                let v = dec.clone().decode(&input[..cut]);
                assert!(
                    v == Ok(None) || v == verdict,
                    "prefix {cut}: {v:?} vs {verdict:?}"
                );
            }
        }
        match dec.decode(input) {
            Ok(None) => {
                if let Some(n) = dec.needed(input) {
                    assert!(n > input.len() && n >= HEADER_LEN);
                    assert!(n <= HEADER_LEN + max_frame as usize);
                }
                return;
            }
            Ok(Some((frame, n))) => {
                assert!(
                    n >= HEADER_LEN && n <= input.len(),
                    "consumed {n} of {}",
                    input.len()
                );
                assert!(n <= HEADER_LEN + max_frame as usize);
                pos += n;
                handle(&frame, &mut asm, &mut hp, &mut list, &mut peer);
            }
            Err(e) => {
                if e.error.is_connection() {
                    return;
                }
                assert!(e.consumed >= HEADER_LEN && e.consumed <= input.len());
                pos += e.consumed;
            }
        }
    }
}

fn handle(
    frame: &Frame<'_>,
    asm: &mut BlockAssembler,
    hp: &mut hpack::Decoder,
    list: &mut FieldList,
    peer: &mut Settings,
) {
    match frame {
        Frame::Settings {
            ack: false,
            payload,
        } => {
            let before = *peer;
            if peer.apply(payload).is_err() {
                *peer = before;
            }
            assert!(peer.initial_window_size <= vireo::http::h2::MAX_WINDOW);
            assert!((16_384..=16_777_215).contains(&peer.max_frame_size));
        }
        Frame::PriorityUpdate { field, .. } => {
            let p = Priority::parse(field);
            assert!(p.urgency <= 7);
        }
        _ => {}
    }
    let step = match asm.push(frame) {
        Ok(s) => s,
        Err(e) => {
            assert!(e.is_connection());
            // The connection would close; start over so the rest is still exercised.
            asm.release();
            return;
        }
    };
    if let Step::Block(b) = step {
        match hp.decode(b.block, list) {
            Ok(()) => {
                assert!(list.list_size() <= 4096 && list.len() <= 32);
                if let Ok(req) = request::validate(list, b.stream) {
                    let mut head = Vec::new();
                    req.to_h1_head(list, &mut head);
                    // The synthesised head must be a complete HTTP/1.1 head (or be refused
                    // with a status): never "need more", never a panic.
                    match parse(&head, &LIMITS) {
                        Ok(Some(h)) => assert_eq!(h.head_len, head.len(), "{head:?}"),
                        Ok(None) => panic!("incomplete synthesised head {head:?}"),
                        Err(e) => assert!(e.status >= 400, "{e:?}"),
                    }
                }
            }
            Err(hpack::HpackError::ListTooLarge) => assert!(list.is_empty()),
            // A compression error closes the connection: start a fresh one.
            Err(_) => *hp = hpack::Decoder::new(HPACK),
        }
    }
}
