//! Chunked request-body decoding (RFC 9112 7.1), incremental and strict: the verdict does
//! not depend on how the bytes were split across reads.

use super::request::{bad, Limits};
use super::token::{is_field_byte, is_ows, is_tchar};
use super::HttpError;

/// Longest chunk-size line (size + extensions, without CRLF) we accept.
pub(super) const MAX_CHUNK_SIZE_LINE: usize = 4096;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum ChunkState {
    /// Expecting the first hex digit of a chunk size.
    #[default]
    SizeStart,
    SizeDigits,
    /// Whitespace seen after the size or an extension; only ';' may follow.
    ExtBws,
    ExtNameStart,
    ExtName,
    ExtAfterName,
    ExtValueStart,
    ExtToken,
    ExtQuoted,
    ExtQuotedEscape,
    ExtAfterQuoted,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    FinalLf,
    Done,
    Failed(HttpError),
}

/// Decodes (and discards) a chunked request body incrementally.
///
/// Chunked framing requires CRLF everywhere (no bare LF), even though the head parser
/// tolerates bare LF: the body is where smuggling lives, and no real client sends
/// bare LF there.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    state: ChunkState,
    /// Size being parsed, then the bytes of chunk data still to skip.
    size: u64,
    /// Bytes of the current size line (without CR/LF).
    line_len: usize,
    /// Sum of all chunk sizes so far.
    total: u64,
    /// Bytes of the trailer section so far (including line endings).
    trailer_len: usize,
}

impl ChunkedDecoder {
    pub fn new() -> ChunkedDecoder {
        ChunkedDecoder::default()
    }

    /// Consume as much of `input` as possible. Returns (bytes consumed, finished).
    /// When finished, `consumed` ends exactly after the body's final CRLF, so
    /// pipelined bytes stay for the next parse. Once an error was returned, every
    /// later call returns it again.
    pub fn feed(&mut self, input: &[u8], limits: &Limits) -> Result<(usize, bool), HttpError> {
        self.feed_spans(input, limits, |_| {})
    }

    /// `feed`, also telling `data` where each run of chunk data lies in `input` (in order,
    /// never empty): what a proxy that re-frames or compresses the body passes on.
    pub fn feed_spans(
        &mut self,
        input: &[u8],
        limits: &Limits,
        mut data: impl FnMut(std::ops::Range<usize>),
    ) -> Result<(usize, bool), HttpError> {
        let mut i = 0;
        loop {
            match self.state {
                ChunkState::Failed(e) => return Err(e),
                ChunkState::Done => return Ok((i, true)),
                _ if i == input.len() => return Ok((i, false)),
                ChunkState::Data => {
                    // Skip data in bulk; `take` fits in usize since it is <= the input left.
                    let take = self.size.min((input.len() - i) as u64);
                    if take > 0 {
                        data(i..i + take as usize);
                    }
                    i += take as usize;
                    self.size -= take;
                    if self.size == 0 {
                        self.state = ChunkState::DataCr;
                    }
                }
                _ => {
                    let b = input[i];
                    i += 1;
                    if let Err(e) = self.step(b, limits) {
                        self.state = ChunkState::Failed(e);
                        return Err(e);
                    }
                }
            }
        }
    }

    fn step(&mut self, b: u8, limits: &Limits) -> Result<(), HttpError> {
        use ChunkState as S;
        const BAD_SIZE: HttpError = bad("malformed chunk size line");
        let ws = is_ows(b);
        let in_size_line = matches!(
            self.state,
            S::SizeStart
                | S::SizeDigits
                | S::ExtBws
                | S::ExtNameStart
                | S::ExtName
                | S::ExtAfterName
                | S::ExtValueStart
                | S::ExtToken
                | S::ExtQuoted
                | S::ExtQuotedEscape
                | S::ExtAfterQuoted
        );
        if in_size_line && b != b'\r' {
            self.line_len += 1;
            if self.line_len > MAX_CHUNK_SIZE_LINE {
                return Err(bad("chunk size line too long"));
            }
        }
        let in_trailer = matches!(
            self.state,
            S::TrailerStart | S::TrailerName | S::TrailerValue | S::TrailerLf | S::FinalLf
        );
        if in_trailer {
            self.trailer_len += 1;
            if self.trailer_len > limits.max_header_bytes {
                return Err(HttpError::new(431, "trailer section too large"));
            }
        }
        self.state = match self.state {
            S::SizeStart => match hex_value(b) {
                Some(d) => {
                    self.size = d;
                    S::SizeDigits
                }
                None => return Err(BAD_SIZE),
            },
            S::SizeDigits => match hex_value(b) {
                Some(d) => {
                    self.size = self
                        .size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(d))
                        .ok_or(bad("chunk size overflow"))?;
                    S::SizeDigits
                }
                None if b == b';' => S::ExtNameStart,
                None if ws => S::ExtBws,
                None if b == b'\r' => S::SizeLf,
                None => return Err(BAD_SIZE),
            },
            // BWS is allowed around ';' and '=' (RFC 9112 7.1.1), but not before CRLF.
            S::ExtBws if ws => S::ExtBws,
            S::ExtBws if b == b';' => S::ExtNameStart,
            S::ExtNameStart if ws => S::ExtNameStart,
            S::ExtNameStart if is_tchar(b) => S::ExtName,
            S::ExtName if is_tchar(b) => S::ExtName,
            S::ExtName if ws => S::ExtAfterName,
            S::ExtName | S::ExtAfterName if b == b'=' => S::ExtValueStart,
            S::ExtName | S::ExtAfterName if b == b';' => S::ExtNameStart,
            S::ExtName if b == b'\r' => S::SizeLf,
            S::ExtAfterName if ws => S::ExtAfterName,
            S::ExtValueStart if ws => S::ExtValueStart,
            S::ExtValueStart if b == b'"' => S::ExtQuoted,
            S::ExtValueStart if is_tchar(b) => S::ExtToken,
            S::ExtToken if is_tchar(b) => S::ExtToken,
            S::ExtToken | S::ExtAfterQuoted if ws => S::ExtBws,
            S::ExtToken | S::ExtAfterQuoted if b == b';' => S::ExtNameStart,
            S::ExtToken | S::ExtAfterQuoted if b == b'\r' => S::SizeLf,
            S::ExtQuoted if b == b'"' => S::ExtAfterQuoted,
            S::ExtQuoted if b == b'\\' => S::ExtQuotedEscape,
            S::ExtQuoted if is_field_byte(b) => S::ExtQuoted,
            S::ExtQuotedEscape if is_field_byte(b) => S::ExtQuoted,
            S::SizeLf if b == b'\n' => {
                self.line_len = 0;
                if self.size == 0 {
                    S::TrailerStart
                } else {
                    self.total = self
                        .total
                        .checked_add(self.size)
                        .filter(|&t| t <= limits.max_body_bytes)
                        .ok_or(HttpError::new(413, "chunked body too large"))?;
                    S::Data
                }
            }
            S::DataCr if b == b'\r' => S::DataLf,
            S::DataLf if b == b'\n' => S::SizeStart,
            S::DataCr | S::DataLf => return Err(bad("chunk data not followed by CRLF")),
            S::TrailerStart if b == b'\r' => S::FinalLf,
            S::TrailerStart if is_tchar(b) => S::TrailerName,
            S::TrailerName if is_tchar(b) => S::TrailerName,
            S::TrailerName if b == b':' => S::TrailerValue,
            S::TrailerValue if b == b'\r' => S::TrailerLf,
            S::TrailerValue if is_field_byte(b) => S::TrailerValue,
            S::TrailerLf if b == b'\n' => S::TrailerStart,
            S::FinalLf if b == b'\n' => S::Done,
            S::TrailerStart | S::TrailerName | S::TrailerValue | S::TrailerLf | S::FinalLf => {
                return Err(bad("malformed trailer section"))
            }
            // Data, Done and Failed are handled by `feed`; never reached with a byte.
            S::Data | S::Done | S::Failed(_) => return Err(bad("chunked decoder misuse")),
            _ => return Err(BAD_SIZE),
        };
        Ok(())
    }
}

fn hex_value(b: u8) -> Option<u64> {
    (b as char).to_digit(16).map(u64::from)
}
