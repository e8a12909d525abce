//! HPACK (RFC 7541): header compression for HTTP/2, in tree.
//!
//! Why not a crate (looked up 2026-12, ECOSYSTEM.md): `hpack` 0.3 is from 2015 and has no
//! Huffman encoder, `loona-hpack` (sozu's) has no Huffman encoder either, and the others
//! are dormant or canary releases; none bounds what it allocates while decoding the way a
//! server facing hostile peers must. Checked against every RFC 7541 Appendix C vector, a
//! property round trip, Python's `hpack` (when installed) and the `h2_hpack` fuzz target.
//!
//! Bounds, whatever the peer sends: the dynamic table never exceeds our
//! SETTINGS_HEADER_TABLE_SIZE (a size update above it is a COMPRESSION_ERROR); a decoded
//! list never exceeds [`DecoderLimits`] (bytes counted as the RFC does, name + value + 32,
//! and a field count); integers above 2^32-1 and strings longer than the bytes left in the
//! block are refused before anything is allocated, so a decode costs at most about the
//! block's length (bounded by the header-block assembler) times 8/5 (Huffman's best case).
//!
//! The encoder indexes what repeats from response to response (`server`, `content-type`,
//! `vary`, ...) so a second response's fixed fields cost a byte each, and leaves unique
//! values (`content-length`, `etag`, ...) out of the table so they do not evict them.

mod decoder;
mod encoder;
mod huffman;
mod table;
#[cfg(test)]
mod tests;

pub use decoder::{Decoder, DecoderLimits};
pub use encoder::{Encoder, Indexing};
pub use table::{entry_size, ENTRY_OVERHEAD, STATIC};

use super::{ErrorCode, H2Error};

/// A fault in a header block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HpackError {
    /// Index 0 or past the end of the tables.
    Index,
    /// An integer over 2^32-1 or with too many continuation bytes.
    Integer,
    /// The block ends inside a representation.
    Truncated,
    /// Invalid Huffman data: EOS, bad or overlong padding.
    Huffman,
    /// A dynamic table size update after a field, or above our setting.
    SizeUpdate,
    /// The decoded list is over the byte or field limit. The whole block was still
    /// decoded, so the table is in sync: only this request fails.
    ListTooLarge,
}

impl HpackError {
    /// The HTTP/2 answer: COMPRESSION_ERROR closes the connection (RFC 9113 4.3), since
    /// the table can no longer be trusted; an oversized list resets only its stream.
    pub fn to_h2(self, stream: u32) -> H2Error {
        match self {
            HpackError::ListTooLarge => H2Error::stream(
                stream,
                ErrorCode::ProtocolError,
                "header list over SETTINGS_MAX_HEADER_LIST_SIZE",
            ),
            HpackError::Index => H2Error::connection(ErrorCode::CompressionError, "bad index"),
            HpackError::Integer => {
                H2Error::connection(ErrorCode::CompressionError, "integer overflow")
            }
            HpackError::Truncated => {
                H2Error::connection(ErrorCode::CompressionError, "truncated block")
            }
            HpackError::Huffman => H2Error::connection(ErrorCode::CompressionError, "bad Huffman"),
            HpackError::SizeUpdate => {
                H2Error::connection(ErrorCode::CompressionError, "bad table size update")
            }
        }
    }
}

/// Decoded fields in one reused buffer: no allocation per field once warm.
#[derive(Clone, Debug, Default)]
pub struct FieldList {
    buf: Vec<u8>,
    /// (start, name end, value end) into `buf`.
    fields: Vec<(u32, u32, u32)>,
    /// RFC 7541 4.1 size of the list: name + value + 32 per field.
    size: usize,
}

impl FieldList {
    pub fn new() -> FieldList {
        FieldList::default()
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.fields.clear();
        self.size = 0;
    }

    /// Gives large buffers back (after an unusually big request).
    pub fn shrink(&mut self) {
        if self.buf.capacity() > 16 * 1024 {
            self.buf = Vec::new();
        }
        if self.fields.capacity() > 256 {
            self.fields = Vec::new();
        }
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The list's size as SETTINGS_MAX_HEADER_LIST_SIZE counts it.
    pub fn list_size(&self) -> usize {
        self.size
    }

    pub fn get(&self, i: usize) -> Option<(&[u8], &[u8])> {
        let &(s, n, e) = self.fields.get(i)?;
        Some((
            self.buf.get(s as usize..n as usize)?,
            self.buf.get(n as usize..e as usize)?,
        ))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        (0..self.fields.len()).filter_map(|i| self.get(i))
    }

    /// Appends a field (for building lists in tests and callers).
    pub fn push(&mut self, name: &[u8], value: &[u8]) {
        let start = self.buf.len();
        self.buf.extend_from_slice(name);
        let mid = self.buf.len();
        self.buf.extend_from_slice(value);
        self.commit(start, mid);
    }

    /// Records the field whose bytes were just appended at `start..`, name ending at `mid`.
    fn commit(&mut self, start: usize, mid: usize) {
        let end = self.buf.len();
        self.size += end - start + ENTRY_OVERHEAD;
        self.fields.push((start as u32, mid as u32, end as u32));
    }
}

/// Reads an integer with an `n`-bit prefix (RFC 7541 5.1) at `*pos`, which must be in
/// bounds. Values above u32::MAX are refused (no length or index can be that large).
fn read_int(block: &[u8], pos: &mut usize, n: u32) -> Result<usize, HpackError> {
    let mask = ((1u16 << n) - 1) as u8;
    let first = *block.get(*pos).ok_or(HpackError::Truncated)?;
    *pos += 1;
    let mut v = u64::from(first & mask);
    if v < u64::from(mask) {
        return Ok(v as usize);
    }
    let mut shift = 0;
    loop {
        let b = *block.get(*pos).ok_or(HpackError::Truncated)?;
        *pos += 1;
        v += u64::from(b & 0x7f) << shift;
        if v > u64::from(u32::MAX) {
            return Err(HpackError::Integer);
        }
        if b & 0x80 == 0 {
            return Ok(v as usize);
        }
        shift += 7;
        if shift > 28 {
            // Five continuation bytes hold 35 bits; more are padding zeros at best.
            return Err(HpackError::Integer);
        }
    }
}

/// Writes `v` with an `n`-bit prefix; `flags` fills the bits above the prefix.
fn write_int(out: &mut Vec<u8>, v: usize, n: u32, flags: u8) {
    let mask = (1usize << n) - 1;
    if v < mask {
        out.push(flags | v as u8);
        return;
    }
    out.push(flags | mask as u8);
    let mut rest = v - mask;
    while rest >= 0x80 {
        out.push((rest as u8 & 0x7f) | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}
