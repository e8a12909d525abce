//! Frames (RFC 9113 sections 4 and 6): a decoder over the connection's read buffer, the
//! header-block assembler, and writers that append to the output buffer.
//!
//! [`Decoder::decode`] never copies and never allocates: a [`Frame`] borrows its payload
//! from the caller's buffer, so the caller handles it before it consumes the bytes. The
//! 9-byte header alone decides whether the frame is acceptable in size, so a frame longer
//! than our SETTINGS_MAX_FRAME_SIZE is refused before a single payload byte is waited for
//! (and [`peek_header`] tells a caller how many bytes it needs to grow its buffer to).
//! Every rule that needs only the frame itself (stream 0 or not, lengths, padding, flags)
//! is checked here; rules that need stream state are `net/h2`'s (see the table in `h2`).
//!
//! [`BlockAssembler`] turns HEADERS + CONTINUATION into one field block with a byte and a
//! frame budget, checked as each fragment arrives: a CONTINUATION flood (CVE-2024-27316,
//! endless small fragments that never end the block) is cut at the 21st frame or at 64 KiB,
//! not when memory runs out. A HEADERS with END_HEADERS, the usual case, is passed through
//! without a copy.

use super::{ErrorCode, H2Error};

/// Length of every frame header.
pub const HEADER_LEN: usize = 9;

/// Frame types.
pub mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
    /// RFC 9218 7.1.
    pub const PRIORITY_UPDATE: u8 = 0x10;
}

/// Frame flags.
pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// The 9-byte frame header (RFC 9113 4.1). The reserved bit of the stream id is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub length: u32,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl FrameHeader {
    /// Header plus payload: the bytes the whole frame occupies.
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + self.length as usize
    }
}

/// The header at the start of `buf`, once its 9 bytes are there.
pub fn peek_header(buf: &[u8]) -> Option<FrameHeader> {
    let h: &[u8; HEADER_LEN] = buf.get(..HEADER_LEN)?.try_into().ok()?;
    Some(FrameHeader {
        length: u32::from_be_bytes([0, h[0], h[1], h[2]]),
        kind: h[3],
        flags: h[4],
        stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
    })
}

/// A decoded frame; slices borrow the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Padding removed. `flow_len` is what counts against flow control: the whole payload,
    /// padding and pad-length byte included (6.9.1); an empty DATA frame counts 0.
    Data {
        stream: u32,
        data: &'a [u8],
        end_stream: bool,
        flow_len: u32,
    },
    /// Padding and the RFC 7540 priority fields removed. Feed to [`BlockAssembler`].
    Headers {
        stream: u32,
        fragment: &'a [u8],
        end_stream: bool,
        end_headers: bool,
        /// The priority fields name the stream itself (5.3.1): decode the block anyway
        /// (HPACK state), then reset the stream with PROTOCOL_ERROR.
        self_dependent: bool,
    },
    /// RFC 7540 priority: parsed for its checks, otherwise ignored (RFC 9113 5.3.2).
    Priority {
        stream: u32,
    },
    RstStream {
        stream: u32,
        code: ErrorCode,
    },
    /// `payload` is a whole number of 6-byte entries: hand it to `Settings::apply`.
    Settings {
        ack: bool,
        payload: &'a [u8],
    },
    Ping {
        ack: bool,
        data: [u8; 8],
    },
    GoAway {
        last_stream: u32,
        code: ErrorCode,
        debug: &'a [u8],
    },
    /// `increment` is 1..=2^31-1; stream 0 is the connection window.
    WindowUpdate {
        stream: u32,
        increment: u32,
    },
    Continuation {
        stream: u32,
        fragment: &'a [u8],
        end_headers: bool,
    },
    /// RFC 9218 7.1: `field` is a Priority Field Value (see `priority::Priority::parse`).
    PriorityUpdate {
        prioritized: u32,
        field: &'a [u8],
    },
    /// An unknown (extension) type: ignore it (RFC 9113 5.5), but not inside a header block.
    Unknown {
        kind: u8,
        stream: u32,
    },
}

impl Frame<'_> {
    /// The stream the frame is on (0 for connection-level frames).
    pub fn stream(&self) -> u32 {
        match *self {
            Frame::Data { stream, .. }
            | Frame::Headers { stream, .. }
            | Frame::Priority { stream }
            | Frame::RstStream { stream, .. }
            | Frame::WindowUpdate { stream, .. }
            | Frame::Continuation { stream, .. }
            | Frame::Unknown { stream, .. } => stream,
            Frame::Settings { .. }
            | Frame::Ping { .. }
            | Frame::GoAway { .. }
            | Frame::PriorityUpdate { .. } => 0,
        }
    }
}

/// A fault in a frame. After a stream error the whole frame is buffered and `consumed`
/// says how many bytes to skip before decoding on; after a connection error stop reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameError {
    pub error: H2Error,
    pub consumed: usize,
}

fn conn(code: ErrorCode, why: &'static str) -> FrameError {
    FrameError {
        error: H2Error::connection(code, why),
        consumed: 0,
    }
}

/// Frame decoder for one connection (server side). It remembers only whether the first
/// frame, which must be SETTINGS (3.4), has been seen.
#[derive(Clone, Debug)]
pub struct Decoder {
    max_frame_size: u32,
    seen_first: bool,
}

impl Decoder {
    /// `max_frame_size` is our advertised SETTINGS_MAX_FRAME_SIZE.
    pub fn new(max_frame_size: u32) -> Decoder {
        Decoder {
            max_frame_size,
            seen_first: false,
        }
    }

    pub fn max_frame_size(&self) -> u32 {
        self.max_frame_size
    }

    /// Bytes the frame at the start of `buf` needs in all (header and payload), once its
    /// header is in: a caller can size its read buffer, or refuse early, from this.
    pub fn needed(&self, buf: &[u8]) -> Option<usize> {
        peek_header(buf).map(|h| h.frame_len())
    }

    /// Decodes the frame at the start of `buf` (the connection preface already consumed).
    /// `Ok(None)`: read more. `Ok(Some((frame, n)))`: consume `n` bytes after handling it.
    pub fn decode<'a>(&mut self, buf: &'a [u8]) -> Result<Option<(Frame<'a>, usize)>, FrameError> {
        let Some(h) = peek_header(buf) else {
            return Ok(None);
        };
        if h.length > self.max_frame_size {
            return Err(conn(
                ErrorCode::FrameSizeError,
                "frame over SETTINGS_MAX_FRAME_SIZE",
            ));
        }
        if !self.seen_first && (h.kind != kind::SETTINGS || h.flags & flag::ACK != 0) {
            return Err(conn(
                ErrorCode::ProtocolError,
                "first frame is not SETTINGS",
            ));
        }
        // Frames the RFC refuses from the header alone, before waiting for the payload.
        check_header(&h)?;
        let total = h.frame_len();
        let Some(payload) = buf.get(HEADER_LEN..total) else {
            return Ok(None);
        };
        let frame = parse(&h, payload).map_err(|error| FrameError {
            consumed: if error.is_connection() { 0 } else { total },
            error,
        })?;
        self.seen_first = true;
        Ok(Some((frame, total)))
    }
}

/// Stream-id and length rules that need only the header.
fn check_header(h: &FrameHeader) -> Result<(), FrameError> {
    let proto = |why| Err(conn(ErrorCode::ProtocolError, why));
    let size = |why| Err(conn(ErrorCode::FrameSizeError, why));
    let on_stream = matches!(
        h.kind,
        kind::DATA | kind::HEADERS | kind::PRIORITY | kind::RST_STREAM | kind::CONTINUATION
    );
    let on_zero = matches!(
        h.kind,
        kind::SETTINGS | kind::PING | kind::GOAWAY | kind::PRIORITY_UPDATE
    );
    if on_stream && h.stream == 0 {
        return proto("stream frame on stream 0");
    }
    if on_zero && h.stream != 0 {
        return proto("connection frame on a stream");
    }
    // We never push, so an even stream can only be idle: only PRIORITY may name one (5.1).
    let known = on_stream || on_zero || matches!(h.kind, kind::WINDOW_UPDATE | kind::PUSH_PROMISE);
    if known && h.kind != kind::PRIORITY && h.stream != 0 && h.stream % 2 == 0 {
        return proto("frame on a server-initiated stream");
    }
    match h.kind {
        kind::PUSH_PROMISE => return proto("PUSH_PROMISE from a client"),
        kind::RST_STREAM if h.length != 4 => return size("RST_STREAM length is not 4"),
        kind::SETTINGS if h.flags & flag::ACK != 0 && h.length != 0 => {
            return size("SETTINGS ACK with a payload")
        }
        kind::SETTINGS if h.length % 6 != 0 => return size("SETTINGS length not a multiple of 6"),
        kind::PING if h.length != 8 => return size("PING length is not 8"),
        kind::GOAWAY if h.length < 8 => return size("GOAWAY shorter than 8"),
        kind::WINDOW_UPDATE if h.length != 4 => return size("WINDOW_UPDATE length is not 4"),
        kind::PRIORITY_UPDATE if h.length < 4 => return size("PRIORITY_UPDATE shorter than 4"),
        _ => {}
    }
    Ok(())
}

fn be32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
        _ => 0,
    }
}

/// Removes padding (6.1, 6.2): the payload after the pad-length byte, minus the padding.
fn unpad<'a>(h: &FrameHeader, payload: &'a [u8]) -> Result<&'a [u8], H2Error> {
    if h.flags & flag::PADDED == 0 {
        return Ok(payload);
    }
    let Some((&pad, rest)) = payload.split_first() else {
        return Err(H2Error::connection(
            ErrorCode::FrameSizeError,
            "padded frame without a pad length",
        ));
    };
    let pad = usize::from(pad);
    if pad >= payload.len() {
        return Err(H2Error::connection(
            ErrorCode::ProtocolError,
            "padding fills the frame",
        ));
    }
    Ok(&rest[..rest.len() - pad])
}

fn parse<'a>(h: &FrameHeader, p: &'a [u8]) -> Result<Frame<'a>, H2Error> {
    let stream = h.stream;
    let ack = h.flags & flag::ACK != 0;
    Ok(match h.kind {
        kind::DATA => Frame::Data {
            stream,
            data: unpad(h, p)?,
            end_stream: h.flags & flag::END_STREAM != 0,
            flow_len: h.length,
        },
        kind::HEADERS => {
            let mut fragment = unpad(h, p)?;
            let mut self_dependent = false;
            if h.flags & flag::PRIORITY != 0 {
                let Some((prio, rest)) = fragment.split_at_checked(5) else {
                    return Err(H2Error::connection(
                        ErrorCode::FrameSizeError,
                        "HEADERS too short for its priority fields",
                    ));
                };
                self_dependent = be32(prio, 0) & 0x7fff_ffff == stream;
                fragment = rest;
            }
            Frame::Headers {
                stream,
                fragment,
                end_stream: h.flags & flag::END_STREAM != 0,
                end_headers: h.flags & flag::END_HEADERS != 0,
                self_dependent,
            }
        }
        kind::PRIORITY => {
            if p.len() != 5 {
                return Err(H2Error::stream(
                    stream,
                    ErrorCode::FrameSizeError,
                    "PRIORITY length is not 5",
                ));
            }
            if be32(p, 0) & 0x7fff_ffff == stream {
                return Err(H2Error::stream(
                    stream,
                    ErrorCode::ProtocolError,
                    "stream depends on itself",
                ));
            }
            Frame::Priority { stream }
        }
        kind::RST_STREAM => Frame::RstStream {
            stream,
            code: ErrorCode::from_u32(be32(p, 0)),
        },
        kind::SETTINGS => Frame::Settings { ack, payload: p },
        kind::PING => {
            let mut data = [0; 8];
            data.copy_from_slice(p.get(..8).unwrap_or(&[0; 8]));
            Frame::Ping { ack, data }
        }
        kind::GOAWAY => Frame::GoAway {
            last_stream: be32(p, 0) & 0x7fff_ffff,
            code: ErrorCode::from_u32(be32(p, 4)),
            debug: p.get(8..).unwrap_or_default(),
        },
        kind::WINDOW_UPDATE => {
            let increment = be32(p, 0) & 0x7fff_ffff;
            if increment == 0 {
                return Err(if stream == 0 {
                    H2Error::connection(ErrorCode::ProtocolError, "WINDOW_UPDATE of 0")
                } else {
                    H2Error::stream(stream, ErrorCode::ProtocolError, "WINDOW_UPDATE of 0")
                });
            }
            Frame::WindowUpdate { stream, increment }
        }
        kind::CONTINUATION => Frame::Continuation {
            stream,
            fragment: p,
            end_headers: h.flags & flag::END_HEADERS != 0,
        },
        kind::PRIORITY_UPDATE => {
            let prioritized = be32(p, 0) & 0x7fff_ffff;
            if prioritized == 0 || prioritized % 2 == 0 {
                return Err(H2Error::connection(
                    ErrorCode::ProtocolError,
                    "PRIORITY_UPDATE for stream 0 or a push stream",
                ));
            }
            Frame::PriorityUpdate {
                prioritized,
                field: p.get(4..).unwrap_or_default(),
            }
        }
        other => Frame::Unknown {
            kind: other,
            stream,
        },
    })
}

/// Budget for one header block across HEADERS and its CONTINUATIONs.
#[derive(Clone, Copy, Debug)]
pub struct BlockLimits {
    /// Encoded bytes of the whole block.
    pub max_bytes: usize,
    /// CONTINUATION frames after the HEADERS.
    pub max_continuations: u32,
}

impl Default for BlockLimits {
    fn default() -> BlockLimits {
        BlockLimits {
            max_bytes: 64 * 1024,
            max_continuations: 20,
        }
    }
}

/// A complete field block, ready for `hpack::Decoder::decode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderBlock<'a> {
    pub stream: u32,
    pub block: &'a [u8],
    pub end_stream: bool,
    /// Decode the block (the HPACK table must stay in sync), then answer with this stream
    /// error instead of serving the request.
    pub error: Option<H2Error>,
}

/// What [`BlockAssembler::push`] made of a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// Not part of a header block: handle the frame as usual.
    Other,
    /// A fragment was buffered; CONTINUATION frames must follow.
    Pending,
    Block(HeaderBlock<'a>),
}

/// Joins HEADERS and CONTINUATION fragments (RFC 9113 4.3, 6.10). Pass it every decoded
/// frame, in order, before acting on the frame.
#[derive(Debug, Default)]
pub struct BlockAssembler {
    limits: BlockLimits,
    buf: Vec<u8>,
    /// The stream whose block is open, 0 when none.
    stream: u32,
    end_stream: bool,
    self_dependent: bool,
    continuations: u32,
}

/// A buffer kept between blocks only up to this size; a larger one goes back to the heap
/// so an idle connection does not hold a 64 KiB block buffer.
const KEEP_CAPACITY: usize = 4096;

impl BlockAssembler {
    pub fn new(limits: BlockLimits) -> BlockAssembler {
        BlockAssembler {
            limits,
            ..BlockAssembler::default()
        }
    }

    /// The stream whose header block is waiting for CONTINUATION, if any. While it is, no
    /// other frame may arrive (and a deadline for the rest is the caller's to keep).
    pub fn open_stream(&self) -> Option<u32> {
        (self.stream != 0).then_some(self.stream)
    }

    /// Takes the next frame. Errors are connection errors (6.10, and the budget).
    pub fn push<'s>(&'s mut self, frame: &Frame<'s>) -> Result<Step<'s>, H2Error> {
        if self.stream == 0 && !self.buf.is_empty() {
            self.release();
        }
        match *frame {
            Frame::Headers {
                stream,
                fragment,
                end_stream,
                end_headers,
                self_dependent,
            } if self.stream == 0 => {
                if fragment.len() > self.limits.max_bytes {
                    return Err(too_big());
                }
                if end_headers {
                    return Ok(Step::Block(HeaderBlock {
                        stream,
                        block: fragment,
                        end_stream,
                        error: self_dependent.then_some(self_dependency(stream)),
                    }));
                }
                self.buf.extend_from_slice(fragment);
                self.stream = stream;
                self.end_stream = end_stream;
                self.self_dependent = self_dependent;
                self.continuations = 0;
                Ok(Step::Pending)
            }
            Frame::Continuation {
                stream,
                fragment,
                end_headers,
            } if self.stream != 0 && stream == self.stream => {
                self.continuations += 1;
                if self.continuations > self.limits.max_continuations
                    || fragment.len() > self.limits.max_bytes - self.buf.len()
                {
                    return Err(too_big());
                }
                self.buf.extend_from_slice(fragment);
                if !end_headers {
                    return Ok(Step::Pending);
                }
                self.stream = 0;
                Ok(Step::Block(HeaderBlock {
                    stream,
                    block: &self.buf,
                    end_stream: self.end_stream,
                    error: self.self_dependent.then_some(self_dependency(stream)),
                }))
            }
            Frame::Continuation { .. } => Err(H2Error::connection(
                ErrorCode::ProtocolError,
                "CONTINUATION outside its header block",
            )),
            _ if self.stream != 0 => Err(H2Error::connection(
                ErrorCode::ProtocolError,
                "frame inside a header block",
            )),
            _ => Ok(Step::Other),
        }
    }

    /// Drops the buffered block; gives a large buffer back to the heap.
    pub fn release(&mut self) {
        self.stream = 0;
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
    }
}

fn too_big() -> H2Error {
    H2Error::connection(ErrorCode::EnhanceYourCalm, "header block over budget")
}

fn self_dependency(stream: u32) -> H2Error {
    H2Error::stream(stream, ErrorCode::ProtocolError, "stream depends on itself")
}

// ---- writers ----

/// The 9-byte header of a frame.
pub fn header(length: u32, kind: u8, flags: u8, stream: u32) -> [u8; HEADER_LEN] {
    debug_assert!(length < 1 << 24);
    let l = length.to_be_bytes();
    let s = (stream & 0x7fff_ffff).to_be_bytes();
    [l[1], l[2], l[3], kind, flags, s[0], s[1], s[2], s[3]]
}

fn put(out: &mut Vec<u8>, length: usize, kind: u8, flags: u8, stream: u32) {
    out.extend_from_slice(&header(length as u32, kind, flags, stream));
}

/// SETTINGS with the given `(id, value)` entries.
pub fn write_settings(out: &mut Vec<u8>, entries: &[(u16, u32)]) {
    put(out, entries.len() * 6, kind::SETTINGS, 0, 0);
    for &(id, v) in entries {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&v.to_be_bytes());
    }
}

pub fn write_settings_ack(out: &mut Vec<u8>) {
    put(out, 0, kind::SETTINGS, flag::ACK, 0);
}

/// A PING (`ack` false, ours) or the answer to the peer's (`ack` true, same data).
pub fn write_ping(out: &mut Vec<u8>, ack: bool, data: [u8; 8]) {
    put(out, 8, kind::PING, if ack { flag::ACK } else { 0 }, 0);
    out.extend_from_slice(&data);
}

pub fn write_goaway(out: &mut Vec<u8>, last_stream: u32, code: ErrorCode, debug: &[u8]) {
    // Debug data is ours and short; cap it so the frame fits the smallest frame size.
    let debug = &debug[..debug.len().min(256)];
    put(out, 8 + debug.len(), kind::GOAWAY, 0, 0);
    out.extend_from_slice(&(last_stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(&code.to_u32().to_be_bytes());
    out.extend_from_slice(debug);
}

pub fn write_rst_stream(out: &mut Vec<u8>, stream: u32, code: ErrorCode) {
    put(out, 4, kind::RST_STREAM, 0, stream);
    out.extend_from_slice(&code.to_u32().to_be_bytes());
}

/// `increment` must be 1..=2^31-1 (the caller's window arithmetic guarantees it).
pub fn write_window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    debug_assert!((1..=super::MAX_WINDOW).contains(&increment));
    put(out, 4, kind::WINDOW_UPDATE, 0, stream);
    out.extend_from_slice(&(increment & 0x7fff_ffff).to_be_bytes());
}

/// A HEADERS frame carrying `block`, split into CONTINUATION frames of at most
/// `max_frame_size` (the peer's SETTINGS_MAX_FRAME_SIZE) bytes each.
pub fn write_headers(
    out: &mut Vec<u8>,
    stream: u32,
    block: &[u8],
    end_stream: bool,
    max_frame_size: u32,
) {
    let max = (max_frame_size as usize).clamp(1, super::MAX_MAX_FRAME_SIZE as usize);
    let mut chunks = block.chunks(max);
    let first = chunks.next().unwrap_or_default();
    let rest = block.len() - first.len();
    let mut flags = if end_stream { flag::END_STREAM } else { 0 };
    if rest == 0 {
        flags |= flag::END_HEADERS;
    }
    put(out, first.len(), kind::HEADERS, flags, stream);
    out.extend_from_slice(first);
    let mut left = rest;
    for c in chunks {
        left -= c.len();
        let flags = if left == 0 { flag::END_HEADERS } else { 0 };
        put(out, c.len(), kind::CONTINUATION, flags, stream);
        out.extend_from_slice(c);
    }
}

/// The header of a DATA frame of `len` bytes (no padding): for writev of the header and
/// sendfile (or a buffer) of the payload.
pub fn data_header(stream: u32, len: u32, end_stream: bool) -> [u8; HEADER_LEN] {
    header(
        len,
        kind::DATA,
        if end_stream { flag::END_STREAM } else { 0 },
        stream,
    )
}

/// A whole DATA frame (`data.len()` within the peer's max frame size).
pub fn write_data(out: &mut Vec<u8>, stream: u32, data: &[u8], end_stream: bool) {
    out.extend_from_slice(&data_header(stream, data.len() as u32, end_stream));
    out.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = header(payload.len() as u32, kind, flags, stream).to_vec();
        v.extend_from_slice(payload);
        v
    }

    /// A decoder past the initial SETTINGS.
    fn dec() -> Decoder {
        let mut d = Decoder::new(16_384);
        let s = raw(kind::SETTINGS, 0, 0, &[]);
        assert!(matches!(
            d.decode(&s),
            Ok(Some((Frame::Settings { .. }, 9)))
        ));
        d
    }

    /// Decodes one whole frame (a leaked copy, so tests can build frames inline).
    fn one(bytes: &[u8]) -> Result<Frame<'static>, FrameError> {
        let bytes: &'static [u8] = Box::leak(bytes.to_vec().into_boxed_slice());
        let mut d = dec();
        match d.decode(bytes)? {
            Some((f, n)) => {
                assert_eq!(n, bytes.len());
                Ok(f)
            }
            None => panic!("incomplete: {bytes:?}"),
        }
    }

    fn conn_code(bytes: &[u8]) -> ErrorCode {
        let e = one(bytes).expect_err("an error").error;
        assert!(e.is_connection(), "{e:?}");
        e.code()
    }

    fn stream_code(bytes: &[u8]) -> (u32, ErrorCode, usize) {
        let e = one(bytes).expect_err("an error");
        match e.error {
            H2Error::Stream { stream, code, .. } => (stream, code, e.consumed),
            other => panic!("not a stream error: {other:?}"),
        }
    }

    #[test]
    fn need_more_until_the_whole_frame_is_in() {
        let f = raw(kind::PING, 0, 0, b"12345678");
        let mut d = dec();
        for i in 0..f.len() {
            assert_eq!(d.decode(&f[..i]), Ok(None), "prefix {i}");
        }
        assert_eq!(d.needed(&f[..9]), Some(17));
        assert_eq!(
            d.decode(&f),
            Ok(Some((
                Frame::Ping {
                    ack: false,
                    data: *b"12345678"
                },
                17
            )))
        );
    }

    #[test]
    fn oversized_frames_are_refused_from_the_header_alone() {
        let mut d = dec();
        let h = header(16_385, kind::DATA, 0, 1);
        let e = d.decode(&h).unwrap_err();
        assert_eq!(e.error.code(), ErrorCode::FrameSizeError);
        assert!(e.error.is_connection());
        // Unknown types are bounded too.
        let h = header(1 << 20, 0xee, 0, 0);
        assert!(d.decode(&h).is_err());
        // A larger advertised size admits it.
        let mut big = Decoder::new(1 << 20);
        big.seen_first = true;
        assert_eq!(big.decode(&h), Ok(None));
    }

    #[test]
    fn the_first_frame_must_be_settings() {
        let mut d = Decoder::new(16_384);
        let e = d.decode(&raw(kind::PING, 0, 0, &[0; 8])).unwrap_err();
        assert_eq!(e.error.code(), ErrorCode::ProtocolError);
        let e = d
            .decode(&raw(kind::SETTINGS, flag::ACK, 0, &[]))
            .unwrap_err();
        assert_eq!(e.error.code(), ErrorCode::ProtocolError);
        assert!(d.decode(&raw(kind::SETTINGS, 0, 0, &[])).unwrap().is_some());
        assert!(d.decode(&raw(kind::PING, 0, 0, &[0; 8])).unwrap().is_some());
    }

    #[test]
    fn data_padding_is_stripped_and_counted() {
        let mut p = vec![3];
        p.extend_from_slice(b"hello");
        p.extend_from_slice(&[0; 3]);
        let f = one(&raw(kind::DATA, flag::PADDED | flag::END_STREAM, 1, &p)).unwrap();
        assert_eq!(
            f,
            Frame::Data {
                stream: 1,
                data: b"hello",
                end_stream: true,
                flow_len: 9
            }
        );
        // Padding as long as the payload, or a padded frame with no room for the length.
        assert_eq!(
            conn_code(&raw(kind::DATA, flag::PADDED, 1, &[1])),
            ErrorCode::ProtocolError
        );
        assert_eq!(
            conn_code(&raw(kind::DATA, flag::PADDED, 1, &[5, 0, 0])),
            ErrorCode::ProtocolError
        );
        assert_eq!(
            conn_code(&raw(kind::DATA, flag::PADDED, 1, &[])),
            ErrorCode::FrameSizeError
        );
        // Only padding: allowed, empty data.
        let f = one(&raw(kind::DATA, flag::PADDED, 1, &[2, 0, 0])).unwrap();
        assert!(matches!(
            f,
            Frame::Data {
                data: b"",
                flow_len: 3,
                ..
            }
        ));
        assert_eq!(
            conn_code(&raw(kind::DATA, 0, 0, b"x")),
            ErrorCode::ProtocolError
        );
    }

    #[test]
    fn headers_priority_and_padding_are_removed() {
        let mut p = vec![2, 0, 0, 0, 3, 16];
        p.extend_from_slice(b"blk");
        p.extend_from_slice(&[0, 0]);
        let flags = flag::PADDED | flag::PRIORITY | flag::END_HEADERS;
        let f = one(&raw(kind::HEADERS, flags, 5, &p)).unwrap();
        assert_eq!(
            f,
            Frame::Headers {
                stream: 5,
                fragment: b"blk",
                end_stream: false,
                end_headers: true,
                self_dependent: false
            }
        );
        let p = [0x80, 0, 0, 5, 16, b'x'];
        let f = one(&raw(kind::HEADERS, flag::PRIORITY, 5, &p)).unwrap();
        assert!(matches!(
            f,
            Frame::Headers {
                self_dependent: true,
                fragment: b"x",
                ..
            }
        ));
        assert_eq!(
            conn_code(&raw(kind::HEADERS, flag::PRIORITY, 5, &[0; 4])),
            ErrorCode::FrameSizeError
        );
        assert_eq!(
            conn_code(&raw(kind::HEADERS, 0, 0, b"x")),
            ErrorCode::ProtocolError
        );
        assert_eq!(
            conn_code(&raw(kind::HEADERS, 0, 2, b"x")),
            ErrorCode::ProtocolError
        );
    }

    #[test]
    fn priority_frames_are_checked_then_ignored() {
        assert_eq!(
            one(&raw(kind::PRIORITY, 0, 3, &[0, 0, 0, 1, 9])).unwrap(),
            Frame::Priority { stream: 3 }
        );
        // Even streams are idle, and PRIORITY may name an idle stream.
        assert!(one(&raw(kind::PRIORITY, 0, 4, &[0, 0, 0, 1, 9])).is_ok());
        assert_eq!(
            stream_code(&raw(kind::PRIORITY, 0, 3, &[0; 4])),
            (3, ErrorCode::FrameSizeError, 13)
        );
        assert_eq!(
            stream_code(&raw(kind::PRIORITY, 0, 3, &[0, 0, 0, 3, 0])),
            (3, ErrorCode::ProtocolError, 14)
        );
        assert_eq!(
            conn_code(&raw(kind::PRIORITY, 0, 0, &[0; 5])),
            ErrorCode::ProtocolError
        );
    }

    #[test]
    fn control_frame_lengths_and_streams() {
        assert_eq!(
            conn_code(&raw(kind::RST_STREAM, 0, 1, &[0; 3])),
            ErrorCode::FrameSizeError
        );
        assert_eq!(
            conn_code(&raw(kind::RST_STREAM, 0, 0, &[0; 4])),
            ErrorCode::ProtocolError
        );
        assert_eq!(
            one(&raw(kind::RST_STREAM, 0, 1, &[0, 0, 0, 8])).unwrap(),
            Frame::RstStream {
                stream: 1,
                code: ErrorCode::Cancel
            }
        );
        assert_eq!(
            conn_code(&raw(kind::SETTINGS, 0, 1, &[])),
            ErrorCode::ProtocolError
        );
        assert_eq!(
            conn_code(&raw(kind::SETTINGS, 0, 0, &[0; 5])),
            ErrorCode::FrameSizeError
        );
        assert_eq!(
            conn_code(&raw(kind::SETTINGS, flag::ACK, 0, &[0; 6])),
            ErrorCode::FrameSizeError
        );
        assert_eq!(
            one(&raw(kind::SETTINGS, flag::ACK, 0, &[])).unwrap(),
            Frame::Settings {
                ack: true,
                payload: b""
            }
        );
        assert_eq!(
            conn_code(&raw(kind::PUSH_PROMISE, 0, 1, &[0; 8])),
            ErrorCode::ProtocolError
        );
        assert_eq!(
            conn_code(&raw(kind::PING, 0, 0, &[0; 7])),
            ErrorCode::FrameSizeError
        );
        assert_eq!(
            conn_code(&raw(kind::PING, 0, 1, &[0; 8])),
            ErrorCode::ProtocolError
        );
        assert_eq!(
            conn_code(&raw(kind::GOAWAY, 0, 0, &[0; 7])),
            ErrorCode::FrameSizeError
        );
        assert_eq!(
            conn_code(&raw(kind::GOAWAY, 0, 3, &[0; 8])),
            ErrorCode::ProtocolError
        );
        let g = [0x80, 0, 0, 7, 0, 0, 0, 0xb, b'h', b'i'];
        assert_eq!(
            one(&raw(kind::GOAWAY, 0, 0, &g)).unwrap(),
            Frame::GoAway {
                last_stream: 7,
                code: ErrorCode::EnhanceYourCalm,
                debug: b"hi"
            }
        );
    }

    #[test]
    fn window_update_zero_is_a_stream_or_connection_error() {
        assert_eq!(
            stream_code(&raw(kind::WINDOW_UPDATE, 0, 1, &[0; 4])),
            (1, ErrorCode::ProtocolError, 13)
        );
        assert_eq!(
            conn_code(&raw(kind::WINDOW_UPDATE, 0, 0, &[0x80, 0, 0, 0])),
            ErrorCode::ProtocolError
        );
        assert_eq!(
            conn_code(&raw(kind::WINDOW_UPDATE, 0, 1, &[0; 5])),
            ErrorCode::FrameSizeError
        );
        assert_eq!(
            conn_code(&raw(kind::WINDOW_UPDATE, 0, 2, &[0, 0, 0, 1])),
            ErrorCode::ProtocolError
        );
        assert_eq!(
            one(&raw(kind::WINDOW_UPDATE, 0, 0, &[0xff, 0xff, 0xff, 0xff])).unwrap(),
            Frame::WindowUpdate {
                stream: 0,
                increment: 0x7fff_ffff
            }
        );
    }

    #[test]
    fn priority_update_and_unknown_types() {
        let f = one(&raw(kind::PRIORITY_UPDATE, 0, 0, b"\0\0\0\x05u=1")).unwrap();
        assert_eq!(
            f,
            Frame::PriorityUpdate {
                prioritized: 5,
                field: b"u=1"
            }
        );
        assert_eq!(
            conn_code(&raw(kind::PRIORITY_UPDATE, 0, 1, b"\0\0\0\x05")),
            ErrorCode::ProtocolError
        );
        assert_eq!(
            conn_code(&raw(kind::PRIORITY_UPDATE, 0, 0, b"\0\0\0\0")),
            ErrorCode::ProtocolError
        );
        assert_eq!(
            conn_code(&raw(kind::PRIORITY_UPDATE, 0, 0, b"\0\0\0")),
            ErrorCode::FrameSizeError
        );
        // Unknown types, on any stream, even or odd, are passed on to be ignored.
        assert_eq!(
            one(&raw(0xee, 0xff, 2, b"x")).unwrap(),
            Frame::Unknown {
                kind: 0xee,
                stream: 2
            }
        );
    }

    #[test]
    fn reserved_bit_is_ignored() {
        let f = one(&raw(kind::DATA, 0, 0x8000_0001, b"")).unwrap();
        assert_eq!(f.stream(), 1);
    }

    fn headers(stream: u32, frag: &[u8], end_headers: bool) -> Frame<'_> {
        Frame::Headers {
            stream,
            fragment: frag,
            end_stream: true,
            end_headers,
            self_dependent: false,
        }
    }

    fn cont(stream: u32, frag: &[u8], end_headers: bool) -> Frame<'_> {
        Frame::Continuation {
            stream,
            fragment: frag,
            end_headers,
        }
    }

    #[test]
    fn single_headers_frame_passes_through_without_a_copy() {
        let mut a = BlockAssembler::default();
        let frag = b"abc".to_vec();
        let f = headers(1, &frag, true);
        let Ok(Step::Block(b)) = a.push(&f) else {
            panic!()
        };
        assert_eq!(
            (b.stream, b.block, b.end_stream, b.error),
            (1, &b"abc"[..], true, None)
        );
        assert!(std::ptr::eq(b.block.as_ptr(), frag.as_ptr()));
        assert_eq!(a.push(&Frame::Priority { stream: 1 }), Ok(Step::Other));
    }

    #[test]
    fn continuations_are_joined() {
        let mut a = BlockAssembler::default();
        assert_eq!(a.push(&headers(3, b"ab", false)), Ok(Step::Pending));
        assert_eq!(a.open_stream(), Some(3));
        assert_eq!(a.push(&cont(3, b"cd", false)), Ok(Step::Pending));
        let Ok(Step::Block(b)) = a.push(&cont(3, b"e", true)) else {
            panic!()
        };
        assert_eq!((b.stream, b.block, b.end_stream), (3, &b"abcde"[..], true));
        assert_eq!(a.open_stream(), None);
        // The next block starts clean.
        let Ok(Step::Block(b)) = a.push(&headers(5, b"z", true)) else {
            panic!()
        };
        assert_eq!(b.block, b"z");
    }

    #[test]
    fn anything_inside_a_header_block_is_a_connection_error() {
        let others = [
            cont(5, b"x", true),
            Frame::Priority { stream: 3 },
            Frame::Ping {
                ack: false,
                data: [0; 8],
            },
            Frame::Unknown {
                kind: 0xee,
                stream: 0,
            },
            headers(5, b"x", true),
            Frame::Data {
                stream: 3,
                data: b"",
                end_stream: false,
                flow_len: 0,
            },
        ];
        for other in others {
            let mut a = BlockAssembler::default();
            a.push(&headers(3, b"ab", false)).unwrap();
            let e = a.push(&other).unwrap_err();
            assert_eq!(
                (e.code(), e.is_connection()),
                (ErrorCode::ProtocolError, true),
                "{other:?}"
            );
        }
        // And a CONTINUATION with no block open.
        let mut a = BlockAssembler::default();
        assert_eq!(
            a.push(&cont(1, b"x", true)).unwrap_err().code(),
            ErrorCode::ProtocolError
        );
    }

    #[test]
    fn continuation_flood_is_cut_early() {
        let mut a = BlockAssembler::default();
        a.push(&headers(1, b"", false)).unwrap();
        for _ in 0..20 {
            assert_eq!(a.push(&cont(1, b"", false)), Ok(Step::Pending));
        }
        let e = a.push(&cont(1, b"", false)).unwrap_err();
        assert_eq!(e.code(), ErrorCode::EnhanceYourCalm);
        // Bytes: cut when the fragment that crosses the budget arrives, not after.
        let mut a = BlockAssembler::new(BlockLimits {
            max_bytes: 100,
            max_continuations: 20,
        });
        let chunk = [0u8; 40];
        a.push(&headers(1, &chunk, false)).unwrap();
        a.push(&cont(1, &chunk, false)).unwrap();
        assert!(a.push(&cont(1, &chunk, false)).is_err());
        assert!(a.buf.len() <= 100);
        let mut a = BlockAssembler::new(BlockLimits {
            max_bytes: 100,
            max_continuations: 20,
        });
        assert!(a.push(&headers(1, &[0; 101], true)).is_err());
    }

    #[test]
    fn self_dependency_survives_continuation() {
        let mut a = BlockAssembler::default();
        let f = Frame::Headers {
            stream: 7,
            fragment: b"a",
            end_stream: false,
            end_headers: false,
            self_dependent: true,
        };
        a.push(&f).unwrap();
        let Ok(Step::Block(b)) = a.push(&cont(7, b"b", true)) else {
            panic!()
        };
        assert_eq!(b.error.map(|e| e.code()), Some(ErrorCode::ProtocolError));
        assert!(!b.error.unwrap().is_connection());
    }

    #[test]
    fn writers_produce_what_the_decoder_reads() {
        let mut out = Vec::new();
        write_settings_ack(&mut out);
        write_ping(&mut out, true, *b"pingpong");
        write_goaway(&mut out, 9, ErrorCode::NoError, b"bye");
        write_rst_stream(&mut out, 3, ErrorCode::RefusedStream);
        write_window_update(&mut out, 0, 1 << 20);
        write_data(&mut out, 1, b"body", true);
        let mut d = dec();
        let mut frames = Vec::new();
        let mut pos = 0;
        while let Some((f, n)) = d.decode(&out[pos..]).unwrap() {
            frames.push(f);
            pos += n;
        }
        assert_eq!(pos, out.len());
        assert_eq!(
            frames,
            [
                Frame::Settings {
                    ack: true,
                    payload: b""
                },
                Frame::Ping {
                    ack: true,
                    data: *b"pingpong"
                },
                Frame::GoAway {
                    last_stream: 9,
                    code: ErrorCode::NoError,
                    debug: b"bye"
                },
                Frame::RstStream {
                    stream: 3,
                    code: ErrorCode::RefusedStream
                },
                Frame::WindowUpdate {
                    stream: 0,
                    increment: 1 << 20
                },
                Frame::Data {
                    stream: 1,
                    data: b"body",
                    end_stream: true,
                    flow_len: 4
                },
            ]
        );
        assert_eq!(data_header(1, 4, true), out[out.len() - 13..out.len() - 4]);
    }

    #[test]
    fn headers_are_split_into_continuations() {
        let block: Vec<u8> = (0..=255).collect();
        for (max, frames) in [(16_384, 1), (100, 3), (128, 2), (256, 1)] {
            let mut out = Vec::new();
            write_headers(&mut out, 1, &block, true, max);
            let mut d = dec();
            let mut a = BlockAssembler::default();
            let (mut pos, mut n_frames, mut got) = (0, 0, None);
            while let Some((f, n)) = d.decode(&out[pos..]).unwrap() {
                pos += n;
                n_frames += 1;
                if let Step::Block(b) = a.push(&f).unwrap() {
                    got = Some((b.block.to_vec(), b.end_stream));
                }
            }
            assert_eq!(n_frames, frames, "max {max}");
            assert_eq!(got, Some((block.clone(), true)));
        }
        // An empty block is one HEADERS with END_HEADERS.
        let mut out = Vec::new();
        write_headers(&mut out, 1, b"", false, 16_384);
        assert_eq!(out, header(0, kind::HEADERS, flag::END_HEADERS, 1));
    }
}
