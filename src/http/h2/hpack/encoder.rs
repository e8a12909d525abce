//! The header-block encoder (RFC 7541 6), with the indexing choices left to the caller
//! field by field ([`Indexing`]), since only the caller knows which values repeat.

use super::huffman;
use super::table::{entry_size, DynamicTable, STATIC};
use super::write_int;

/// How a literal field is represented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Indexing {
    /// Values that repeat across responses: added to the dynamic table, so the next
    /// time the field costs one byte.
    Incremental,
    /// Values unique to a response (`content-length`, `etag`): kept out of the table.
    Without,
    /// Sensitive values intermediaries must never index either (7.1.3).
    Never,
}

/// Our own cap on the table the peer lets us keep: a peer that allows 1 MiB does not get
/// 1 MiB of our memory per connection.
pub const MAX_TABLE: usize = 4096;

/// One connection's encoder.
#[derive(Debug)]
pub struct Encoder {
    table: DynamicTable,
    /// Size updates still to signal: the smallest size since the last block, then the
    /// final one (4.2).
    pending: Option<(usize, usize)>,
    /// Huffman-encode a string when that is not longer (true by default).
    pub huffman: bool,
}

impl Default for Encoder {
    fn default() -> Encoder {
        Encoder::new()
    }
}

impl Encoder {
    /// The RFC's initial table size (4096) until the peer's SETTINGS say otherwise.
    pub fn new() -> Encoder {
        Encoder::with_table_size(4096)
    }

    /// A table already at `size`, nothing to signal (as in RFC 7541 Appendix C.5).
    pub fn with_table_size(size: usize) -> Encoder {
        Encoder {
            table: DynamicTable::new(size),
            pending: None,
            huffman: true,
        }
    }

    /// The peer's SETTINGS_HEADER_TABLE_SIZE arrived: the table becomes the smaller of it
    /// and `MAX_TABLE`, signalled at the start of the next block.
    pub fn set_peer_max(&mut self, peer: u32) {
        let size = (peer as usize).min(MAX_TABLE);
        let current = match self.pending {
            Some((_, last)) => last,
            None => self.table.max_size(),
        };
        if size == current {
            return;
        }
        let min = self.pending.map_or(size, |(m, _)| m.min(size));
        self.pending = Some((min, size));
    }

    pub fn table_size(&self) -> usize {
        self.table.size()
    }

    /// Starts a header block: emits pending size updates. Call once per block.
    pub fn begin(&mut self, out: &mut Vec<u8>) {
        if let Some((min, last)) = self.pending.take() {
            if min < last {
                write_int(out, min, 5, 0x20);
                self.table.set_max_size(min);
            }
            write_int(out, last, 5, 0x20);
            self.table.set_max_size(last);
        }
    }

    /// Appends one field. Names must be lowercase (HTTP/2 requires it; not checked).
    pub fn field(&mut self, name: &[u8], value: &[u8], how: Indexing, out: &mut Vec<u8>) {
        let (exact, by_name) = self.find(name, value);
        if let (Some(i), false) = (exact, how == Indexing::Never) {
            write_int(out, i, 7, 0x80);
            return;
        }
        // An entry larger than the whole table would only empty it.
        let how = match how {
            Indexing::Incremental if entry_size(name, value) > self.table.max_size() => {
                Indexing::Without
            }
            h => h,
        };
        let (prefix, flags) = match how {
            Indexing::Incremental => (6, 0x40),
            Indexing::Without => (4, 0x00),
            Indexing::Never => (4, 0x10),
        };
        write_int(out, by_name.unwrap_or(0), prefix, flags);
        if by_name.is_none() {
            self.string(name, out);
        }
        self.string(value, out);
        if how == Indexing::Incremental {
            self.table.insert(name, value);
        }
    }

    /// The index of an exact match, and of the first entry with this name (static first).
    fn find(&self, name: &[u8], value: &[u8]) -> (Option<usize>, Option<usize>) {
        let mut by_name = None;
        for (i, &(n, v)) in STATIC.iter().enumerate() {
            if n == name {
                if v == value {
                    return (Some(i + 1), Some(i + 1));
                }
                by_name.get_or_insert(i + 1);
            }
        }
        for (i, n, v) in self.table.iter() {
            if n == name {
                if v == value {
                    return (Some(i + 62), by_name.or(Some(i + 62)));
                }
                by_name.get_or_insert(i + 62);
            }
        }
        (None, by_name)
    }

    fn string(&self, s: &[u8], out: &mut Vec<u8>) {
        let hlen = if self.huffman {
            huffman::encoded_len(s)
        } else {
            usize::MAX
        };
        if hlen <= s.len() {
            write_int(out, hlen, 7, 0x80);
            huffman::encode(s, out);
        } else {
            write_int(out, s.len(), 7, 0);
            out.extend_from_slice(s);
        }
    }
}
