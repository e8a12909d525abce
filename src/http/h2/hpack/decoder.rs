//! The header-block decoder (RFC 7541 3, 6).

use super::huffman;
use super::table::{DynamicTable, STATIC};
use super::{read_int, FieldList, HpackError, ENTRY_OVERHEAD};

/// What one decoded header list may hold.
#[derive(Clone, Copy, Debug)]
pub struct DecoderLimits {
    /// Our SETTINGS_HEADER_TABLE_SIZE: the most a size update may ask for.
    pub max_table_size: usize,
    /// Our SETTINGS_MAX_HEADER_LIST_SIZE (name + value + 32 per field).
    pub max_list_size: usize,
    pub max_fields: usize,
}

impl Default for DecoderLimits {
    fn default() -> DecoderLimits {
        DecoderLimits {
            max_table_size: 4096,
            max_list_size: 64 * 1024,
            max_fields: 128,
        }
    }
}

/// One connection's decoder: its dynamic table lives as long as the connection.
#[derive(Debug)]
pub struct Decoder {
    table: DynamicTable,
    limits: DecoderLimits,
}

impl Decoder {
    pub fn new(limits: DecoderLimits) -> Decoder {
        Decoder {
            table: DynamicTable::new(limits.max_table_size),
            limits,
        }
    }

    /// Current dynamic table size in RFC bytes (for tests and metrics).
    pub fn table_size(&self) -> usize {
        self.table.size()
    }

    /// Dynamic entry `i` (0 = newest).
    pub fn table_entry(&self, i: usize) -> Option<(&[u8], &[u8])> {
        self.table.get(i)
    }

    /// Decodes a whole field block into `out` (cleared first). Every error but
    /// `ListTooLarge` leaves the table unusable: the connection must end.
    pub fn decode(&mut self, block: &[u8], out: &mut FieldList) -> Result<(), HpackError> {
        out.clear();
        let mut pos = 0;
        let mut at_start = true;
        let mut over = false;
        while let Some(&b) = block.get(pos) {
            if b & 0xe0 == 0x20 {
                // Dynamic table size update: only before the first field (4.2).
                if !at_start {
                    return Err(HpackError::SizeUpdate);
                }
                let size = read_int(block, &mut pos, 5)?;
                if size > self.limits.max_table_size {
                    return Err(HpackError::SizeUpdate);
                }
                self.table.set_max_size(size);
                continue;
            }
            at_start = false;
            let start = out.buf.len();
            let (mid, index) = if b & 0x80 != 0 {
                let i = read_int(block, &mut pos, 7)?;
                let (name, value) = self.lookup(i)?;
                out.buf.extend_from_slice(name);
                let mid = out.buf.len();
                out.buf.extend_from_slice(value);
                (mid, false)
            } else {
                // Literal: 01 incremental indexing (6-bit prefix), 0000 without and
                // 0001 never indexed (4-bit prefix).
                let index = b & 0x40 != 0;
                let i = read_int(block, &mut pos, if index { 6 } else { 4 })?;
                if i == 0 {
                    read_string(block, &mut pos, &mut out.buf)?;
                } else {
                    let (name, _) = self.lookup(i)?;
                    out.buf.extend_from_slice(name);
                }
                let mid = out.buf.len();
                read_string(block, &mut pos, &mut out.buf)?;
                (mid, index)
            };
            if index {
                self.table.insert(&out.buf[start..mid], &out.buf[mid..]);
            }
            let size = out.buf.len() - start + ENTRY_OVERHEAD;
            over = over
                || out.fields.len() >= self.limits.max_fields
                || out.size + size > self.limits.max_list_size;
            if over {
                // Keep decoding for the table's sake, but store nothing more.
                out.buf.truncate(start);
            } else {
                out.commit(start, mid);
            }
        }
        if over {
            out.clear();
            return Err(HpackError::ListTooLarge);
        }
        Ok(())
    }

    fn lookup(&self, i: usize) -> Result<(&[u8], &[u8]), HpackError> {
        match i {
            0 => Err(HpackError::Index),
            1..=61 => Ok(STATIC[i - 1]),
            _ => self.table.get(i - 62).ok_or(HpackError::Index),
        }
    }
}

/// Reads a string literal (5.2) at `*pos` and appends its bytes to `out`.
fn read_string(block: &[u8], pos: &mut usize, out: &mut Vec<u8>) -> Result<(), HpackError> {
    let huff = block.get(*pos).ok_or(HpackError::Truncated)? & 0x80 != 0;
    let len = read_int(block, pos, 7)?;
    let end = pos.checked_add(len).ok_or(HpackError::Truncated)?;
    let bytes = block.get(*pos..end).ok_or(HpackError::Truncated)?;
    *pos = end;
    if huff {
        huffman::decode(bytes, out)
    } else {
        out.extend_from_slice(bytes);
        Ok(())
    }
}
