//! The HTTP/2 encoder: a `Reply` becomes an HPACK-encoded HEADERS block; the body is left
//! to the connection, which frames it as DATA within the flow-control windows.
//!
//! The fields are exactly HTTP/1.1's, from the same `h1::fields` list in the same order,
//! with lowercase names, `:status` first and `server` and `date` after it as HTTP/1.1
//! writes them; `Connection`, `Keep-Alive` and `Transfer-Encoding` never appear (RFC
//! 9113 8.2.2), so a configured extra with such a name is dropped (config already refuses
//! them). A reply to HEAD, a 204 or 304, or an empty body ends the stream with its HEADERS.
//!
//! Indexing: what repeats between responses on a connection goes into the dynamic table
//! (`:status`, `server`, `date`, which changes once a second, `content-type`,
//! `content-encoding`, `vary`, `accept-ranges`, `allow`, the configured extras), so the
//! second response's fixed fields cost about a byte each; per-response values
//! (`content-length`, `etag`, `last-modified`, `location`, `content-range`,
//! `retry-after`, a multipart boundary) are literals without indexing, so they do not
//! evict the fields that do repeat.

use super::hpack::{Encoder, Indexing};
use crate::http::h1::{self, Field};
use crate::http::response::{Body, Reply};

/// What the connection needs after the HEADERS block is encoded.
pub struct Head {
    pub status: u16,
    /// Set END_STREAM on the HEADERS frame: no DATA follows.
    pub end_stream: bool,
    /// What remains to send as DATA (`Body::Empty` when `end_stream`).
    pub body: Body,
    /// DATA payload bytes this reply will send (for the log and the counters).
    pub bytes: u64,
    /// The reply asked to close the connection (a framing doubt on HTTP/1.1); on HTTP/2
    /// the connection may GOAWAY after this stream or simply carry on.
    pub close: bool,
}

/// One connection's response encoder: its HPACK encoder and reused scratch buffers.
#[derive(Debug, Default)]
pub struct ReplyEncoder {
    pub hpack: Encoder,
    value: Vec<u8>,
    extra: Vec<u8>,
}

impl ReplyEncoder {
    pub fn new() -> ReplyEncoder {
        ReplyEncoder::default()
    }

    /// Appends `reply`'s header block to `block` (pass it to `frame::write_headers`).
    /// `date` is the cached `Date` value (`h1::DateCache::get`).
    pub fn encode(
        &mut self,
        reply: Reply,
        head_only: bool,
        date: &[u8],
        block: &mut Vec<u8>,
    ) -> Head {
        let (status, h, body, close) = reply.into_parts();
        let hp = &mut self.hpack;
        hp.begin(block);
        let mut b = itoa::Buffer::new();
        hp.field(
            b":status",
            b.format(status).as_bytes(),
            Indexing::Incremental,
            block,
        );
        hp.field(b"server", b"vireo", Indexing::Incremental, block);
        hp.field(b"date", date, Indexing::Incremental, block);
        let value = &mut self.value;
        h1::fields(status, &h, body.len(), |f| {
            value.clear();
            f.write_value(value);
            let how = match f {
                Field::ContentType(t) if t.starts_with(b"multipart/") => Indexing::Without,
                Field::Allow
                | Field::ContentType(_)
                | Field::ContentEncoding(_)
                | Field::Vary
                | Field::AcceptRanges => Indexing::Incremental,
                Field::Location(_)
                | Field::RetryAfter(_)
                | Field::ContentRange(_)
                | Field::ContentLength(_)
                | Field::LastModified(_)
                | Field::ETag(_) => Indexing::Without,
            };
            hp.field(f.lowercase_name().as_bytes(), value, how, block);
        });
        self.extra.clear();
        h.extra.write(&mut self.extra);
        for line in self.extra.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let (name, rest) = line.split_at(colon);
            let v = rest[1..].trim_ascii();
            self.value.clear();
            self.value.extend(name.iter().map(u8::to_ascii_lowercase));
            let forbidden: [&[u8]; 5] = [
                b"connection",
                b"keep-alive",
                b"proxy-connection",
                b"transfer-encoding",
                b"upgrade",
            ];
            if self.value.is_empty() || forbidden.contains(&&self.value[..]) {
                continue;
            }
            self.hpack
                .field(&self.value, v, Indexing::Incremental, block);
        }
        let no_body = head_only || status < 200 || status == 204 || status == 304;
        let body = if no_body { Body::Empty } else { body };
        let bytes = body.len();
        Head {
            status,
            end_stream: bytes == 0,
            body,
            bytes,
            close,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::h1::{encode as h1_encode, Framing};
    use crate::http::h2::hpack::{Decoder, DecoderLimits, FieldList};
    use crate::http::negotiate::{ByteRange, Coding};
    use crate::http::response::{error_body, ContentRange, ContentType, EtagBuf, Extra, Headers};
    use std::sync::Arc;

    fn full(status: u16) -> Reply {
        let blocks: Arc<[Box<[u8]>]> = vec![
            b"Cache-Control: max-age=60\r\n".to_vec().into_boxed_slice(),
            b"Strict-Transport-Security: max-age=63072000\r\nX-A: b\r\n"
                .to_vec()
                .into_boxed_slice(),
        ]
        .into();
        Reply {
            status,
            headers: Headers {
                allow: status == 405,
                location: (status == 301).then(|| b"/dir/".to_vec().into_boxed_slice()),
                retry_after: (status == 503).then_some(5),
                content_range: match status {
                    206 => Some(ContentRange::Part(ByteRange { start: 2, end: 5 }, 100)),
                    416 => Some(ContentRange::Unsatisfied(100)),
                    _ => None,
                },
                content_type: Some(ContentType::Static("text/css")),
                coding: if status == 200 {
                    Coding::Br
                } else {
                    Coding::Identity
                },
                vary: true,
                last_modified: Some(1_700_000_000),
                etag: Some(EtagBuf::new(1, 2)),
                accept_ranges: true,
                extra: Extra::new(&blocks, 0b11),
            },
            body: Body::Static(b"body"),
            close: false,
        }
    }

    /// The h1 head's fields, lowercased, minus the connection-specific ones.
    fn h1_fields(reply: Reply, head_only: bool) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let f = Framing {
            keep_alive: true,
            http10: false,
            head_only,
        };
        h1_encode(reply, f, b"Tue, 14 Nov 2023 22:13:20 GMT", &mut out);
        let text = String::from_utf8(out).expect("ascii");
        let head = text.split("\r\n\r\n").next().expect("head");
        let mut lines = head.split("\r\n");
        let status = lines.next().expect("status line")[9..12].to_owned();
        let mut v = vec![(":status".to_owned(), status)];
        for l in lines {
            let (n, val) = l.split_once(": ").expect("field");
            let n = n.to_ascii_lowercase();
            if n != "connection" {
                v.push((n, val.to_owned()));
            }
        }
        v
    }

    fn h2_fields(
        enc: &mut ReplyEncoder,
        dec: &mut Decoder,
        reply: Reply,
    ) -> (Vec<(String, String)>, Head, usize) {
        let mut block = Vec::new();
        let head = enc.encode(reply, false, b"Tue, 14 Nov 2023 22:13:20 GMT", &mut block);
        let mut list = FieldList::new();
        dec.decode(&block, &mut list).expect("decodes");
        let v = list
            .iter()
            .map(|(n, v)| {
                (
                    String::from_utf8(n.to_vec()).unwrap(),
                    String::from_utf8(v.to_vec()).unwrap(),
                )
            })
            .collect();
        (v, head, block.len())
    }

    #[test]
    fn the_same_fields_as_http1_in_the_same_order() {
        let mut enc = ReplyEncoder::new();
        let mut dec = Decoder::new(DecoderLimits::default());
        for status in [200, 206, 301, 304, 404, 405, 416, 503, 204] {
            let (got, head, _) = h2_fields(&mut enc, &mut dec, full(status));
            assert_eq!(got, h1_fields(full(status), false), "status {status}");
            assert!(got
                .iter()
                .all(|(n, _)| n.bytes().all(|b| !b.is_ascii_uppercase())));
            let empty = matches!(status, 204 | 304);
            assert_eq!(head.end_stream, empty, "{status}");
            assert_eq!(head.bytes, if empty { 0 } else { 4 });
        }
    }

    #[test]
    fn head_and_empty_bodies_end_the_stream_with_the_headers() {
        let mut enc = ReplyEncoder::new();
        let mut block = Vec::new();
        let h = enc.encode(Reply::error(404), true, b"d", &mut block);
        assert!(h.end_stream && matches!(h.body, Body::Empty) && h.bytes == 0);
        // HEAD still announces the length a GET would get (as HTTP/1.1 does).
        let mut dec = Decoder::new(DecoderLimits::default());
        let mut list = FieldList::new();
        dec.decode(&block, &mut list).unwrap();
        let cl = error_body(404).len().to_string();
        assert!(list
            .iter()
            .any(|(n, v)| n == b"content-length" && v == cl.as_bytes()));
        let mut r = Reply::error(200);
        r.body = Body::Empty;
        let h = enc.encode(r, false, b"d", &mut Vec::new());
        assert!(h.end_stream);
        let h = enc.encode(Reply::error(500), false, b"d", &mut Vec::new());
        assert!(!h.end_stream);
        assert!(matches!(h.body, Body::Static(_)));
    }

    #[test]
    fn a_second_response_costs_little() {
        let mut enc = ReplyEncoder::new();
        let mut dec = Decoder::new(DecoderLimits::default());
        let (_, _, first) = h2_fields(&mut enc, &mut dec, full(200));
        let (got, _, second) = h2_fields(&mut enc, &mut dec, full(200));
        assert_eq!(got, h1_fields(full(200), false));
        // What stays: content-length, last-modified and etag literals (~45 bytes).
        assert!(second < 60, "second {second} bytes, first {first}");
        assert!(first > 2 * second, "first {first}, second {second}");
    }

    #[test]
    fn connection_specific_extras_are_dropped() {
        let blocks: Arc<[Box<[u8]>]> = vec![b"Connection: close\r\nX-Ok: 1\r\nUpgrade: h2c\r\n"
            .to_vec()
            .into_boxed_slice()]
        .into();
        let mut r = Reply::error(404);
        r.headers.extra = Extra::new(&blocks, 1);
        let mut enc = ReplyEncoder::new();
        let mut dec = Decoder::new(DecoderLimits::default());
        let (got, _, _) = h2_fields(&mut enc, &mut dec, r);
        let names: Vec<_> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                ":status",
                "server",
                "date",
                "content-type",
                "content-length",
                "x-ok"
            ]
        );
    }
}
