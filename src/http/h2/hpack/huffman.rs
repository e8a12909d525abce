//! The HPACK Huffman code (RFC 7541 5.2, Appendix B).
//!
//! Decoding looks each symbol up by binary search over the codes sorted as left-aligned
//! 32-bit numbers: the code is complete (every bit string starts with some code), so the
//! code whose interval holds the next 32 input bits is the symbol, found in 9 comparisons
//! with one 257-entry table built at compile time. That is slower than nghttp2's 4-bit
//! state machine but needs no generated 4 KiB table, and request headers are short.

use super::HpackError;

/// Sorted left-aligned codes, their symbols and lengths.
struct Sorted {
    code: [u32; 257],
    sym: [u16; 257],
    len: [u8; 257],
}

const fn sorted() -> Sorted {
    let mut s = Sorted {
        code: [0; 257],
        sym: [0; 257],
        len: [0; 257],
    };
    let mut i = 0;
    while i < 257 {
        let (c, l) = CODES[i];
        s.code[i] = c << (32 - l as u32);
        s.sym[i] = i as u16;
        s.len[i] = l;
        i += 1;
    }
    // Insertion sort: 257 entries, compile time only.
    let mut i = 1;
    while i < 257 {
        let mut j = i;
        while j > 0 && s.code[j - 1] > s.code[j] {
            let (c, y, l) = (s.code[j], s.sym[j], s.len[j]);
            s.code[j] = s.code[j - 1];
            s.sym[j] = s.sym[j - 1];
            s.len[j] = s.len[j - 1];
            s.code[j - 1] = c;
            s.sym[j - 1] = y;
            s.len[j - 1] = l;
            j -= 1;
        }
        i += 1;
    }
    s
}

static SORTED: Sorted = sorted();

/// Length of `s` once Huffman-encoded.
pub fn encoded_len(s: &[u8]) -> usize {
    let bits: usize = s
        .iter()
        .map(|&b| usize::from(CODES[usize::from(b)].1))
        .sum();
    bits.div_ceil(8)
}

/// Appends the Huffman encoding of `s`, padded with the EOS prefix (1 bits).
pub fn encode(s: &[u8], out: &mut Vec<u8>) {
    let mut acc: u64 = 0;
    let mut bits: u32 = 0;
    for &b in s {
        let (code, len) = CODES[usize::from(b)];
        acc = (acc << len) | u64::from(code);
        bits += u32::from(len);
        while bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    if bits > 0 {
        let pad = 8 - bits;
        out.push(((acc << pad) | ((1 << pad) - 1)) as u8);
    }
}

/// Appends the decoding of `src` to `out`, refusing an EOS symbol, padding longer than
/// 7 bits, and padding that is not all 1 bits (RFC 7541 5.2). `out` grows by at most
/// `src.len() * 8 / 5` bytes (the shortest code has 5 bits).
pub fn decode(src: &[u8], out: &mut Vec<u8>) -> Result<(), HpackError> {
    let mut acc: u64 = 0;
    let mut bits: u32 = 0;
    let mut input = src.iter();
    loop {
        while bits <= 56 {
            match input.next() {
                Some(&b) => {
                    acc |= u64::from(b) << (56 - bits);
                    bits += 8;
                }
                None => break,
            }
        }
        if bits == 0 {
            return Ok(());
        }
        if bits < 8 {
            // The rest may be padding: all ones, fewer than 8 bits. No code of 7 bits or
            // fewer is all ones, so it cannot be a symbol instead.
            let mask = !0u64 << (64 - bits);
            if acc & mask == mask {
                return Ok(());
            }
        }
        let window = (acc >> 32) as u32;
        let i = SORTED.code.partition_point(|&c| c <= window) - 1;
        let len = u32::from(SORTED.len[i]);
        if len > bits {
            return Err(HpackError::Huffman);
        }
        let sym = SORTED.sym[i];
        if sym == 256 {
            return Err(HpackError::Huffman);
        }
        out.push(sym as u8);
        acc <<= len;
        bits -= len;
    }
}

/// RFC 7541 Appendix B: (code, bit length) per symbol 0..=255, then EOS (256).
pub(super) const CODES: [(u32, u8); 257] = [
    (0x1ff8, 13),
    (0x7fffd8, 23),
    (0xfffffe2, 28),
    (0xfffffe3, 28),
    (0xfffffe4, 28),
    (0xfffffe5, 28),
    (0xfffffe6, 28),
    (0xfffffe7, 28),
    (0xfffffe8, 28),
    (0xffffea, 24),
    (0x3ffffffc, 30),
    (0xfffffe9, 28),
    (0xfffffea, 28),
    (0x3ffffffd, 30),
    (0xfffffeb, 28),
    (0xfffffec, 28),
    (0xfffffed, 28),
    (0xfffffee, 28),
    (0xfffffef, 28),
    (0xffffff0, 28),
    (0xffffff1, 28),
    (0xffffff2, 28),
    (0x3ffffffe, 30),
    (0xffffff3, 28),
    (0xffffff4, 28),
    (0xffffff5, 28),
    (0xffffff6, 28),
    (0xffffff7, 28),
    (0xffffff8, 28),
    (0xffffff9, 28),
    (0xffffffa, 28),
    (0xffffffb, 28),
    (0x14, 6),
    (0x3f8, 10),
    (0x3f9, 10),
    (0xffa, 12),
    (0x1ff9, 13),
    (0x15, 6),
    (0xf8, 8),
    (0x7fa, 11),
    (0x3fa, 10),
    (0x3fb, 10),
    (0xf9, 8),
    (0x7fb, 11),
    (0xfa, 8),
    (0x16, 6),
    (0x17, 6),
    (0x18, 6),
    (0x0, 5),
    (0x1, 5),
    (0x2, 5),
    (0x19, 6),
    (0x1a, 6),
    (0x1b, 6),
    (0x1c, 6),
    (0x1d, 6),
    (0x1e, 6),
    (0x1f, 6),
    (0x5c, 7),
    (0xfb, 8),
    (0x7ffc, 15),
    (0x20, 6),
    (0xffb, 12),
    (0x3fc, 10),
    (0x1ffa, 13),
    (0x21, 6),
    (0x5d, 7),
    (0x5e, 7),
    (0x5f, 7),
    (0x60, 7),
    (0x61, 7),
    (0x62, 7),
    (0x63, 7),
    (0x64, 7),
    (0x65, 7),
    (0x66, 7),
    (0x67, 7),
    (0x68, 7),
    (0x69, 7),
    (0x6a, 7),
    (0x6b, 7),
    (0x6c, 7),
    (0x6d, 7),
    (0x6e, 7),
    (0x6f, 7),
    (0x70, 7),
    (0x71, 7),
    (0x72, 7),
    (0xfc, 8),
    (0x73, 7),
    (0xfd, 8),
    (0x1ffb, 13),
    (0x7fff0, 19),
    (0x1ffc, 13),
    (0x3ffc, 14),
    (0x22, 6),
    (0x7ffd, 15),
    (0x3, 5),
    (0x23, 6),
    (0x4, 5),
    (0x24, 6),
    (0x5, 5),
    (0x25, 6),
    (0x26, 6),
    (0x27, 6),
    (0x6, 5),
    (0x74, 7),
    (0x75, 7),
    (0x28, 6),
    (0x29, 6),
    (0x2a, 6),
    (0x7, 5),
    (0x2b, 6),
    (0x76, 7),
    (0x2c, 6),
    (0x8, 5),
    (0x9, 5),
    (0x2d, 6),
    (0x77, 7),
    (0x78, 7),
    (0x79, 7),
    (0x7a, 7),
    (0x7b, 7),
    (0x7ffe, 15),
    (0x7fc, 11),
    (0x3ffd, 14),
    (0x1ffd, 13),
    (0xffffffc, 28),
    (0xfffe6, 20),
    (0x3fffd2, 22),
    (0xfffe7, 20),
    (0xfffe8, 20),
    (0x3fffd3, 22),
    (0x3fffd4, 22),
    (0x3fffd5, 22),
    (0x7fffd9, 23),
    (0x3fffd6, 22),
    (0x7fffda, 23),
    (0x7fffdb, 23),
    (0x7fffdc, 23),
    (0x7fffdd, 23),
    (0x7fffde, 23),
    (0xffffeb, 24),
    (0x7fffdf, 23),
    (0xffffec, 24),
    (0xffffed, 24),
    (0x3fffd7, 22),
    (0x7fffe0, 23),
    (0xffffee, 24),
    (0x7fffe1, 23),
    (0x7fffe2, 23),
    (0x7fffe3, 23),
    (0x7fffe4, 23),
    (0x1fffdc, 21),
    (0x3fffd8, 22),
    (0x7fffe5, 23),
    (0x3fffd9, 22),
    (0x7fffe6, 23),
    (0x7fffe7, 23),
    (0xffffef, 24),
    (0x3fffda, 22),
    (0x1fffdd, 21),
    (0xfffe9, 20),
    (0x3fffdb, 22),
    (0x3fffdc, 22),
    (0x7fffe8, 23),
    (0x7fffe9, 23),
    (0x1fffde, 21),
    (0x7fffea, 23),
    (0x3fffdd, 22),
    (0x3fffde, 22),
    (0xfffff0, 24),
    (0x1fffdf, 21),
    (0x3fffdf, 22),
    (0x7fffeb, 23),
    (0x7fffec, 23),
    (0x1fffe0, 21),
    (0x1fffe1, 21),
    (0x3fffe0, 22),
    (0x1fffe2, 21),
    (0x7fffed, 23),
    (0x3fffe1, 22),
    (0x7fffee, 23),
    (0x7fffef, 23),
    (0xfffea, 20),
    (0x3fffe2, 22),
    (0x3fffe3, 22),
    (0x3fffe4, 22),
    (0x7ffff0, 23),
    (0x3fffe5, 22),
    (0x3fffe6, 22),
    (0x7ffff1, 23),
    (0x3ffffe0, 26),
    (0x3ffffe1, 26),
    (0xfffeb, 20),
    (0x7fff1, 19),
    (0x3fffe7, 22),
    (0x7ffff2, 23),
    (0x3fffe8, 22),
    (0x1ffffec, 25),
    (0x3ffffe2, 26),
    (0x3ffffe3, 26),
    (0x3ffffe4, 26),
    (0x7ffffde, 27),
    (0x7ffffdf, 27),
    (0x3ffffe5, 26),
    (0xfffff1, 24),
    (0x1ffffed, 25),
    (0x7fff2, 19),
    (0x1fffe3, 21),
    (0x3ffffe6, 26),
    (0x7ffffe0, 27),
    (0x7ffffe1, 27),
    (0x3ffffe7, 26),
    (0x7ffffe2, 27),
    (0xfffff2, 24),
    (0x1fffe4, 21),
    (0x1fffe5, 21),
    (0x3ffffe8, 26),
    (0x3ffffe9, 26),
    (0xffffffd, 28),
    (0x7ffffe3, 27),
    (0x7ffffe4, 27),
    (0x7ffffe5, 27),
    (0xfffec, 20),
    (0xfffff3, 24),
    (0xfffed, 20),
    (0x1fffe6, 21),
    (0x3fffe9, 22),
    (0x1fffe7, 21),
    (0x1fffe8, 21),
    (0x7ffff3, 23),
    (0x3fffea, 22),
    (0x3fffeb, 22),
    (0x1ffffee, 25),
    (0x1ffffef, 25),
    (0xfffff4, 24),
    (0xfffff5, 24),
    (0x3ffffea, 26),
    (0x7ffff4, 23),
    (0x3ffffeb, 26),
    (0x7ffffe6, 27),
    (0x3ffffec, 26),
    (0x3ffffed, 26),
    (0x7ffffe7, 27),
    (0x7ffffe8, 27),
    (0x7ffffe9, 27),
    (0x7ffffea, 27),
    (0x7ffffeb, 27),
    (0xffffffe, 28),
    (0x7ffffec, 27),
    (0x7ffffed, 27),
    (0x7ffffee, 27),
    (0x7ffffef, 27),
    (0x7fffff0, 27),
    (0x3ffffee, 26),
    (0x3fffffff, 30),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(b: &[u8]) -> Result<Vec<u8>, HpackError> {
        let mut v = Vec::new();
        decode(b, &mut v).map(|()| v)
    }

    #[test]
    fn table_is_the_rfcs() {
        // Spot checks against RFC 7541 Appendix B, and the code is prefix-free and complete.
        assert_eq!(CODES[usize::from(b' ')], (0x14, 6));
        assert_eq!(CODES[usize::from(b'a')], (0x3, 5));
        assert_eq!(CODES[usize::from(b'~')], (0x1ffd, 13));
        assert_eq!(CODES[255], (0x3ffffee, 26));
        assert_eq!(CODES[256], (0x3fffffff, 30));
        let kraft: u64 = CODES.iter().map(|&(_, l)| 1u64 << (30 - l)).sum();
        assert_eq!(kraft, 1 << 30);
        assert_eq!(SORTED.code[0], 0);
        assert!(SORTED.code.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn round_trip_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        let mut e = Vec::new();
        encode(&all, &mut e);
        assert_eq!(e.len(), encoded_len(&all));
        assert_eq!(dec(&e).unwrap(), all);
        for b in 0..=255u8 {
            let mut e = Vec::new();
            encode(&[b, b, b], &mut e);
            assert_eq!(dec(&e).unwrap(), [b, b, b]);
        }
    }

    #[test]
    fn rfc_example_strings() {
        let mut e = Vec::new();
        encode(b"www.example.com", &mut e);
        assert_eq!(
            e,
            [0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff]
        );
        assert_eq!(dec(&e).unwrap(), b"www.example.com");
    }

    #[test]
    fn bad_padding_and_eos_are_refused() {
        // 'a' = 00011, padded with 111: fine; padded with 0s: not.
        assert_eq!(dec(&[0b0001_1111]).unwrap(), b"a");
        assert_eq!(dec(&[0b0001_1000]), Err(HpackError::Huffman));
        // A whole byte of padding (more than 7 bits).
        assert_eq!(dec(&[0b0001_1111, 0xff]), Err(HpackError::Huffman));
        // EOS itself (30 ones), padded.
        assert_eq!(dec(&[0xff, 0xff, 0xff, 0xff]), Err(HpackError::Huffman));
        assert_eq!(dec(&[]).unwrap(), b"");
        // Padding of 7 ones alone is fine (an empty string can be encoded as nothing,
        // and a byte of seven ones plus a zero is not padding).
        assert_eq!(dec(&[0xfe]), Err(HpackError::Huffman));
    }
}
