//! HTTP/2 (RFC 9113), pure: frames, settings, HPACK, request validation and the reply
//! encoder, all on byte slices. No sockets, no timers, no stream table: `net/h2` owns the
//! connection state and drives this room from its event loop.
//!
//! The pieces, in the order a connection meets them:
//! [`check_preface`] on the first 24 bytes; [`frame::Decoder::decode`] on the read buffer
//! (`Ok(None)` = read more; the 9-byte header is judged against our SETTINGS_MAX_FRAME_SIZE
//! before the payload is waited for); [`frame::BlockAssembler`] joins HEADERS and
//! CONTINUATION under a byte and frame budget; [`hpack::Decoder`] turns the block into a
//! bounded [`hpack::FieldList`]; [`request::validate`] applies RFC 9113 8.2-8.3 and
//! [`request::Request::to_h1_head`] writes an HTTP/1.1 head so `http::request::parse` and
//! routing are reused unchanged; [`encode::encode`] turns the `Reply` into a HEADERS block
//! and the `frame::write_*` functions put frames into the output buffer.
//!
//! # Errors: stream or connection
//!
//! RFC 9113 5.4: a *stream error* resets one stream (`RST_STREAM` + code) and the
//! connection goes on; a *connection error* sends `GOAWAY` + code and closes. Where the
//! RFC allows either (5.4.1: an endpoint may always escalate), we escalate when carrying on
//! would need buffering we refuse to do (an oversized DATA frame is not skipped byte by
//! byte). [`H2Error`] says which; every fault this room detects is in this table.
//!
//! | fault | scope | code | where |
//! |---|---|---|---|
//! | bad client preface | connection | PROTOCOL_ERROR | 3.4, [`check_preface`] |
//! | first frame is not SETTINGS | connection | PROTOCOL_ERROR | 3.4 |
//! | frame longer than our SETTINGS_MAX_FRAME_SIZE (any type) | connection | FRAME_SIZE_ERROR | 4.2 |
//! | DATA, HEADERS, CONTINUATION, RST_STREAM, WINDOW_UPDATE(stream) on stream 0 | connection | PROTOCOL_ERROR | 6.1, 6.2, 6.10, 6.4 |
//! | SETTINGS, PING, GOAWAY, PRIORITY_UPDATE on a stream | connection | PROTOCOL_ERROR | 6.5, 6.7, 6.8, RFC 9218 7.1 |
//! | PRIORITY on stream 0 | connection | PROTOCOL_ERROR | 6.3 |
//! | any frame but PRIORITY on an even (server, never used) stream | connection | PROTOCOL_ERROR | 5.1, 5.1.1 |
//! | padding as long as the payload or longer | connection | PROTOCOL_ERROR | 6.1, 6.2 |
//! | DATA/HEADERS too short for their pad length / priority fields | connection | FRAME_SIZE_ERROR | 4.2 |
//! | PRIORITY length != 5 | stream | FRAME_SIZE_ERROR | 6.3 |
//! | HEADERS or PRIORITY depending on its own stream | stream | PROTOCOL_ERROR | 5.3.1 |
//! | RST_STREAM length != 4 | connection | FRAME_SIZE_ERROR | 6.4 |
//! | SETTINGS ACK with a payload, SETTINGS length % 6 != 0 | connection | FRAME_SIZE_ERROR | 6.5 |
//! | SETTINGS_ENABLE_PUSH not 0/1, ENABLE_CONNECT_PROTOCOL / NO_RFC7540_PRIORITIES not 0/1 | connection | PROTOCOL_ERROR | 6.5.2, RFC 8441 3, RFC 9218 2.1 |
//! | SETTINGS_INITIAL_WINDOW_SIZE > 2^31-1 | connection | FLOW_CONTROL_ERROR | 6.5.2 |
//! | SETTINGS_MAX_FRAME_SIZE outside 16384..=16777215 | connection | PROTOCOL_ERROR | 6.5.2 |
//! | PUSH_PROMISE from a client | connection | PROTOCOL_ERROR | 8.4, 6.6 |
//! | PING length != 8 | connection | FRAME_SIZE_ERROR | 6.7 |
//! | GOAWAY length < 8 | connection | FRAME_SIZE_ERROR | 6.8 |
//! | WINDOW_UPDATE length != 4 | connection | FRAME_SIZE_ERROR | 6.9 |
//! | WINDOW_UPDATE increment 0 on a stream | stream | PROTOCOL_ERROR | 6.9 |
//! | WINDOW_UPDATE increment 0 on stream 0 | connection | PROTOCOL_ERROR | 6.9 |
//! | PRIORITY_UPDATE shorter than 4, or for stream 0 / an even stream | connection | FRAME_SIZE_ERROR / PROTOCOL_ERROR | RFC 9218 7.1 |
//! | CONTINUATION without an open header block, any other frame (even unknown) or another stream's CONTINUATION inside one | connection | PROTOCOL_ERROR | 6.10 |
//! | header block over its byte budget (64 KiB) or CONTINUATION count (20) | connection | ENHANCE_YOUR_CALM | 10.5.1, CVE-2024-27316 |
//! | HPACK: bad index, integer overflow, bad Huffman/EOS/padding, truncated block, size update not at block start or above our setting | connection | COMPRESSION_ERROR | 4.3, RFC 7541 |
//! | decoded header list over SETTINGS_MAX_HEADER_LIST_SIZE or 128 fields (block still decoded, table in sync) | stream | PROTOCOL_ERROR (or a 431 reply: the caller's choice) | 8.2.2, 10.5.1 |
//! | malformed request: uppercase or invalid name, unknown/duplicate/late pseudo-header, missing `:method`/`:scheme`/`:path`, connection-specific field, `te` other than `trailers`, empty or relative `:path`, `*` not for OPTIONS, NUL/CR/LF or edge whitespace in a value, `host` disagreeing with `:authority`, invalid or conflicting `content-length`, CONNECT with `:scheme`/`:path` or `:protocol` | stream | PROTOCOL_ERROR | 8.1.1, 8.2, 8.3, 8.5 |
//! | pseudo-header in trailers | stream | PROTOCOL_ERROR | 8.1 |
//!
//! Left to `net/h2` because they need stream state (same codes, RFC 9113): frames on an idle
//! stream other than HEADERS/PRIORITY (connection PROTOCOL_ERROR, 5.1); a HEADERS stream id
//! not above every earlier one (connection PROTOCOL_ERROR, 5.1.1); DATA or HEADERS on a
//! half-closed (remote) or closed stream (stream STREAM_CLOSED, 5.1); flow-control window
//! overflow past 2^31-1 (stream or connection FLOW_CONTROL_ERROR, 6.9.1) and DATA beyond
//! the window we granted (FLOW_CONTROL_ERROR); `content-length` disagreeing with the DATA
//! received (stream PROTOCOL_ERROR, 8.1.1); streams past max_concurrent_streams (stream
//! REFUSED_STREAM, 5.1.2); floods and Rapid Reset (connection ENHANCE_YOUR_CALM); no
//! SETTINGS ACK in time (connection SETTINGS_TIMEOUT, 6.5.3). A well-formed CONNECT (only
//! `:method` and `:authority`) is not refused here: it becomes `CONNECT host:port HTTP/1.1`
//! and routing answers it exactly as it answers an HTTP/1.1 CONNECT (405).

pub mod encode;
pub mod frame;
pub mod hpack;
pub mod priority;
pub mod request;

/// The client connection preface (RFC 9113 3.4), before its SETTINGS frame.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Largest flow-control window and SETTINGS_INITIAL_WINDOW_SIZE (RFC 9113 6.9.1).
pub const MAX_WINDOW: u32 = (1 << 31) - 1;
/// The initial connection and stream window before any SETTINGS (RFC 9113 6.9.2).
pub const DEFAULT_WINDOW: u32 = 65_535;
/// SETTINGS_MAX_FRAME_SIZE bounds (RFC 9113 6.5.2); the lower one is also the default.
pub const MIN_MAX_FRAME_SIZE: u32 = 16_384;
pub const MAX_MAX_FRAME_SIZE: u32 = 16_777_215;

/// Checks the connection preface at the start of `buf`: `Ok(None)` while the bytes so far
/// are a prefix of it, `Ok(Some(24))` (the bytes to consume) once it is all there.
pub fn check_preface(buf: &[u8]) -> Result<Option<usize>, H2Error> {
    let n = buf.len().min(PREFACE.len());
    if buf[..n] != PREFACE[..n] {
        return Err(H2Error::connection(
            ErrorCode::ProtocolError,
            "bad connection preface",
        ));
    }
    Ok((n == PREFACE.len()).then_some(n))
}

/// RFC 9113 section 7 error codes. Unknown codes (a peer may send any u32) are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    NoError,
    ProtocolError,
    InternalError,
    FlowControlError,
    SettingsTimeout,
    StreamClosed,
    FrameSizeError,
    RefusedStream,
    Cancel,
    CompressionError,
    ConnectError,
    EnhanceYourCalm,
    InadequateSecurity,
    Http11Required,
    /// A code this implementation does not know; RFC 9113 7: no special behaviour.
    Unknown(u32),
}

impl ErrorCode {
    pub fn from_u32(v: u32) -> ErrorCode {
        match v {
            0x0 => ErrorCode::NoError,
            0x1 => ErrorCode::ProtocolError,
            0x2 => ErrorCode::InternalError,
            0x3 => ErrorCode::FlowControlError,
            0x4 => ErrorCode::SettingsTimeout,
            0x5 => ErrorCode::StreamClosed,
            0x6 => ErrorCode::FrameSizeError,
            0x7 => ErrorCode::RefusedStream,
            0x8 => ErrorCode::Cancel,
            0x9 => ErrorCode::CompressionError,
            0xa => ErrorCode::ConnectError,
            0xb => ErrorCode::EnhanceYourCalm,
            0xc => ErrorCode::InadequateSecurity,
            0xd => ErrorCode::Http11Required,
            other => ErrorCode::Unknown(other),
        }
    }

    pub fn to_u32(self) -> u32 {
        match self {
            ErrorCode::NoError => 0x0,
            ErrorCode::ProtocolError => 0x1,
            ErrorCode::InternalError => 0x2,
            ErrorCode::FlowControlError => 0x3,
            ErrorCode::SettingsTimeout => 0x4,
            ErrorCode::StreamClosed => 0x5,
            ErrorCode::FrameSizeError => 0x6,
            ErrorCode::RefusedStream => 0x7,
            ErrorCode::Cancel => 0x8,
            ErrorCode::CompressionError => 0x9,
            ErrorCode::ConnectError => 0xa,
            ErrorCode::EnhanceYourCalm => 0xb,
            ErrorCode::InadequateSecurity => 0xc,
            ErrorCode::Http11Required => 0xd,
            ErrorCode::Unknown(v) => v,
        }
    }

    /// The RFC's name, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NoError => "NO_ERROR",
            ErrorCode::ProtocolError => "PROTOCOL_ERROR",
            ErrorCode::InternalError => "INTERNAL_ERROR",
            ErrorCode::FlowControlError => "FLOW_CONTROL_ERROR",
            ErrorCode::SettingsTimeout => "SETTINGS_TIMEOUT",
            ErrorCode::StreamClosed => "STREAM_CLOSED",
            ErrorCode::FrameSizeError => "FRAME_SIZE_ERROR",
            ErrorCode::RefusedStream => "REFUSED_STREAM",
            ErrorCode::Cancel => "CANCEL",
            ErrorCode::CompressionError => "COMPRESSION_ERROR",
            ErrorCode::ConnectError => "CONNECT_ERROR",
            ErrorCode::EnhanceYourCalm => "ENHANCE_YOUR_CALM",
            ErrorCode::InadequateSecurity => "INADEQUATE_SECURITY",
            ErrorCode::Http11Required => "HTTP_1_1_REQUIRED",
            ErrorCode::Unknown(_) => "UNKNOWN",
        }
    }
}

/// A fault found in what the peer sent, with the answer RFC 9113 5.4 prescribes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum H2Error {
    /// Send `RST_STREAM(stream, code)`; the connection and its other streams go on.
    Stream {
        stream: u32,
        code: ErrorCode,
        why: &'static str,
    },
    /// Send `GOAWAY(last stream, code)` and close.
    Connection { code: ErrorCode, why: &'static str },
}

impl H2Error {
    pub const fn connection(code: ErrorCode, why: &'static str) -> H2Error {
        H2Error::Connection { code, why }
    }

    pub const fn stream(stream: u32, code: ErrorCode, why: &'static str) -> H2Error {
        H2Error::Stream { stream, code, why }
    }

    pub fn code(&self) -> ErrorCode {
        match *self {
            H2Error::Stream { code, .. } | H2Error::Connection { code, .. } => code,
        }
    }

    /// Short, fixed description for the error log; never sent to the peer.
    pub fn why(&self) -> &'static str {
        match *self {
            H2Error::Stream { why, .. } | H2Error::Connection { why, .. } => why,
        }
    }

    pub fn is_connection(&self) -> bool {
        matches!(self, H2Error::Connection { .. })
    }
}

/// SETTINGS identifiers (RFC 9113 6.5.2, RFC 8441, RFC 9218).
pub mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
    pub const ENABLE_CONNECT_PROTOCOL: u16 = 0x8;
    pub const NO_RFC7540_PRIORITIES: u16 = 0x9;
}

/// One side's SETTINGS. `Settings::PEER_DEFAULT` is what the peer's values are until its
/// SETTINGS frame arrives; `Settings::default()` is what we advertise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// HPACK dynamic table size the sender's decoder allows.
    pub header_table_size: u32,
    pub enable_push: bool,
    /// None: unlimited (the RFC's initial value).
    pub max_concurrent_streams: Option<u32>,
    /// Initial stream window; never above `MAX_WINDOW`.
    pub initial_window_size: u32,
    /// In `MIN_MAX_FRAME_SIZE..=MAX_MAX_FRAME_SIZE`.
    pub max_frame_size: u32,
    /// None: unlimited (advisory, RFC 9113 6.5.2).
    pub max_header_list_size: Option<u32>,
    pub enable_connect_protocol: bool,
    /// RFC 9218 2.1: the sender ignores RFC 7540 PRIORITY signals.
    pub no_rfc7540_priorities: bool,
}

impl Settings {
    /// RFC 9113 6.5.2 initial values: what we assume of the peer before its SETTINGS.
    pub const PEER_DEFAULT: Settings = Settings {
        header_table_size: 4096,
        enable_push: true,
        max_concurrent_streams: None,
        initial_window_size: DEFAULT_WINDOW,
        max_frame_size: MIN_MAX_FRAME_SIZE,
        max_header_list_size: None,
        enable_connect_protocol: false,
        no_rfc7540_priorities: false,
    };

    /// Applies a SETTINGS payload (already length-checked by the frame decoder), in order,
    /// ignoring unknown identifiers (6.5.2). To react to a change (the initial window
    /// delta for every open stream, the HPACK encoder's table size), copy the struct
    /// before and compare.
    pub fn apply(&mut self, payload: &[u8]) -> Result<(), H2Error> {
        for p in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([p[0], p[1]]);
            let v = u32::from_be_bytes([p[2], p[3], p[4], p[5]]);
            let flag = |what| match v {
                0 => Ok(false),
                1 => Ok(true),
                _ => Err(H2Error::connection(ErrorCode::ProtocolError, what)),
            };
            match id {
                setting::HEADER_TABLE_SIZE => self.header_table_size = v,
                setting::ENABLE_PUSH => self.enable_push = flag("ENABLE_PUSH not 0 or 1")?,
                setting::MAX_CONCURRENT_STREAMS => self.max_concurrent_streams = Some(v),
                setting::INITIAL_WINDOW_SIZE => {
                    if v > MAX_WINDOW {
                        return Err(H2Error::connection(
                            ErrorCode::FlowControlError,
                            "INITIAL_WINDOW_SIZE above 2^31-1",
                        ));
                    }
                    self.initial_window_size = v;
                }
                setting::MAX_FRAME_SIZE => {
                    if !(MIN_MAX_FRAME_SIZE..=MAX_MAX_FRAME_SIZE).contains(&v) {
                        return Err(H2Error::connection(
                            ErrorCode::ProtocolError,
                            "MAX_FRAME_SIZE out of range",
                        ));
                    }
                    self.max_frame_size = v;
                }
                setting::MAX_HEADER_LIST_SIZE => self.max_header_list_size = Some(v),
                setting::ENABLE_CONNECT_PROTOCOL => {
                    self.enable_connect_protocol = flag("ENABLE_CONNECT_PROTOCOL not 0 or 1")?
                }
                setting::NO_RFC7540_PRIORITIES => {
                    self.no_rfc7540_priorities = flag("NO_RFC7540_PRIORITIES not 0 or 1")?
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Appends a SETTINGS frame announcing every value that differs from the RFC's initial
    /// one (a peer assumes those for anything not sent).
    pub fn write(&self, out: &mut Vec<u8>) {
        let d = Settings::PEER_DEFAULT;
        let mut list: [(u16, u32); 8] = [(0, 0); 8];
        let mut n = 0;
        let mut add = |id, v| {
            list[n] = (id, v);
            n += 1;
        };
        if self.header_table_size != d.header_table_size {
            add(setting::HEADER_TABLE_SIZE, self.header_table_size);
        }
        if self.enable_push != d.enable_push {
            add(setting::ENABLE_PUSH, u32::from(self.enable_push));
        }
        if let Some(m) = self.max_concurrent_streams {
            add(setting::MAX_CONCURRENT_STREAMS, m);
        }
        if self.initial_window_size != d.initial_window_size {
            add(setting::INITIAL_WINDOW_SIZE, self.initial_window_size);
        }
        if self.max_frame_size != d.max_frame_size {
            add(setting::MAX_FRAME_SIZE, self.max_frame_size);
        }
        if let Some(m) = self.max_header_list_size {
            add(setting::MAX_HEADER_LIST_SIZE, m);
        }
        if self.enable_connect_protocol {
            add(setting::ENABLE_CONNECT_PROTOCOL, 1);
        }
        if self.no_rfc7540_priorities {
            add(setting::NO_RFC7540_PRIORITIES, 1);
        }
        frame::write_settings(out, &list[..n]);
    }
}

/// What we advertise: no push, 128 streams, 64 KiB header lists, RFC 9218 priorities; the
/// table, window and frame size at the RFC's values (no SETTINGS entry needed for them).
impl Default for Settings {
    fn default() -> Settings {
        Settings {
            header_table_size: 4096,
            enable_push: false,
            max_concurrent_streams: Some(128),
            initial_window_size: DEFAULT_WINDOW,
            max_frame_size: MIN_MAX_FRAME_SIZE,
            max_header_list_size: Some(64 * 1024),
            enable_connect_protocol: false,
            no_rfc7540_priorities: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u16, v: u32) -> Vec<u8> {
        let mut p = id.to_be_bytes().to_vec();
        p.extend_from_slice(&v.to_be_bytes());
        p
    }

    #[test]
    fn error_codes_round_trip() {
        for v in 0..=0xe {
            assert_eq!(ErrorCode::from_u32(v).to_u32(), v);
        }
        assert_eq!(ErrorCode::from_u32(0xb), ErrorCode::EnhanceYourCalm);
        assert_eq!(ErrorCode::from_u32(0xdead), ErrorCode::Unknown(0xdead));
        assert_eq!(ErrorCode::FrameSizeError.as_str(), "FRAME_SIZE_ERROR");
    }

    #[test]
    fn preface_is_checked_as_it_arrives() {
        assert_eq!(check_preface(b""), Ok(None));
        assert_eq!(check_preface(b"PRI * HTTP/2"), Ok(None));
        assert_eq!(check_preface(PREFACE), Ok(Some(24)));
        let mut more = PREFACE.to_vec();
        more.extend_from_slice(b"\0\0\0\x04");
        assert_eq!(check_preface(&more), Ok(Some(24)));
        let e = check_preface(b"GET / HTTP/1.1\r\n").unwrap_err();
        assert_eq!(e.code(), ErrorCode::ProtocolError);
        assert!(e.is_connection());
    }

    #[test]
    fn settings_apply_in_order_and_ignore_unknown_ids() {
        let mut s = Settings::PEER_DEFAULT;
        let mut p = entry(setting::INITIAL_WINDOW_SIZE, 1);
        p.extend(entry(setting::INITIAL_WINDOW_SIZE, 1000));
        p.extend(entry(0xff, 7));
        p.extend(entry(setting::HEADER_TABLE_SIZE, 0));
        p.extend(entry(setting::MAX_FRAME_SIZE, MAX_MAX_FRAME_SIZE));
        p.extend(entry(setting::ENABLE_PUSH, 0));
        s.apply(&p).unwrap();
        assert_eq!(s.initial_window_size, 1000);
        assert_eq!(s.header_table_size, 0);
        assert_eq!(s.max_frame_size, MAX_MAX_FRAME_SIZE);
        assert!(!s.enable_push);
    }

    #[test]
    fn settings_values_are_validated_with_the_right_code() {
        let cases = [
            (setting::ENABLE_PUSH, 2, ErrorCode::ProtocolError),
            (
                setting::INITIAL_WINDOW_SIZE,
                1 << 31,
                ErrorCode::FlowControlError,
            ),
            (setting::MAX_FRAME_SIZE, 16_383, ErrorCode::ProtocolError),
            (setting::MAX_FRAME_SIZE, 1 << 24, ErrorCode::ProtocolError),
            (setting::NO_RFC7540_PRIORITIES, 5, ErrorCode::ProtocolError),
            (
                setting::ENABLE_CONNECT_PROTOCOL,
                2,
                ErrorCode::ProtocolError,
            ),
        ];
        for (id, v, code) in cases {
            let mut s = Settings::PEER_DEFAULT;
            let e = s.apply(&entry(id, v)).unwrap_err();
            assert_eq!((e.code(), e.is_connection()), (code, true), "{id} = {v}");
        }
        let mut s = Settings::PEER_DEFAULT;
        s.apply(&entry(setting::INITIAL_WINDOW_SIZE, MAX_WINDOW))
            .unwrap();
        assert_eq!(s.initial_window_size, MAX_WINDOW);
    }

    #[test]
    fn our_settings_frame_round_trips() {
        let ours = Settings::default();
        let mut out = Vec::new();
        ours.write(&mut out);
        let mut dec = frame::Decoder::new(MIN_MAX_FRAME_SIZE);
        let Ok(Some((frame::Frame::Settings { ack, payload }, n))) = dec.decode(&out) else {
            panic!("not a settings frame: {out:?}");
        };
        assert!(!ack);
        assert_eq!(n, out.len());
        let mut peer = Settings::PEER_DEFAULT;
        peer.apply(payload).unwrap();
        assert_eq!(peer, ours);
    }
}
