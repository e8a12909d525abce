//! The client's side of the harness: split the server's output into responses and hold
//! each to the letter of HTTP/1.1 framing, and a file's body to the file's bytes.

use super::Harness;
use std::io::Read;

/// One response as the client parsed it.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub close: bool,
    pub body_len: usize,
    /// Where the body lies in the output.
    pub body: std::ops::Range<usize>,
}

/// A complete request in the client's input (head and, if any, a valid whole body): the
/// server owes it exactly one final response, in order.
#[derive(Debug)]
struct Sent {
    head: bool,
    get: bool,
    /// The request-target's path, percent-decoded.
    path: Vec<u8>,
}

impl Harness {
    /// The complete requests in `input` under this harness's limits, in order. Stops at
    /// the first incomplete or invalid one: nothing after it is answered.
    fn requests(&self, input: &[u8]) -> Vec<Sent> {
        use crate::http::request::{parse, BodyFraming, ChunkedDecoder, Limits};
        let l = &self.config.limits;
        let limits = Limits {
            max_request_line: l.max_request_line,
            max_header_bytes: l.max_header_bytes,
            max_body_bytes: l.max_body_bytes,
        };
        let mut sent = Vec::new();
        let mut at = 0;
        while let Ok(Some(h)) = parse(&input[at..], &limits) {
            let req = &input[at..];
            let body = &req[h.head_len..];
            let body_len = match h.framing {
                BodyFraming::None => Some(0),
                BodyFraming::Length(n) => usize::try_from(n).ok().filter(|&n| n <= body.len()),
                BodyFraming::Chunked => match ChunkedDecoder::new().feed(body, &limits) {
                    Ok((n, true)) => Some(n),
                    _ => None,
                },
            };
            let Some(body_len) = body_len else {
                break;
            };
            sent.push(Sent {
                head: h.method == crate::http::Method::Head,
                get: h.method == crate::http::Method::Get,
                path: percent_decode(h.path.get(req)),
            });
            at += h.head_len + body_len;
        }
        sent
    }

    /// Split `output` (the server's answer to `input`) into responses and check each
    /// strictly: a status line and headers with one Content-Length, Date and Server, then
    /// exactly that many body bytes (none for HEAD, 1xx, 204 and 304), nothing after
    /// `Connection: close`, no more final responses than complete requests (+1 error), and
    /// the body of a 200 or single-range 206 for a file equal to the file's bytes (gunzipped
    /// when gzip). `truncated_ok` allows the last response to be cut short (a timer closed
    /// the connection).
    pub fn check(
        &self,
        input: &[u8],
        output: &[u8],
        truncated_ok: bool,
    ) -> Result<Vec<Response>, String> {
        let sent = self.requests(input);
        let mut out = Vec::new();
        let mut at = 0;
        while at < output.len() {
            let rest = &output[at..];
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut headers);
            let head_len = match r.parse(rest) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) if truncated_ok => break,
                Ok(httparse::Status::Partial) => return Err(format!("truncated head at {at}")),
                Err(e) => return Err(format!("malformed head at {at}: {e}")),
            };
            let n = out.len();
            let status = r.code.unwrap_or(0);
            if r.version != Some(1) {
                return Err(format!("response {n} is not HTTP/1.1"));
            }
            if !(100..600).contains(&status) {
                return Err(format!("status {status}"));
            }
            let header = |name: &str| {
                let mut it = r
                    .headers
                    .iter()
                    .filter(|h| h.name.eq_ignore_ascii_case(name));
                match (it.next(), it.next()) {
                    (Some(h), None) => Ok(Some(h.value)),
                    (None, _) => Ok(None),
                    _ => Err(format!("two {name} headers in response {n}")),
                }
            };
            let len = match header("content-length")? {
                Some(v) => std::str::from_utf8(v)
                    .ok()
                    .and_then(|v| v.parse::<usize>().ok())
                    .ok_or_else(|| format!("bad Content-Length in response {n}"))?,
                None if status < 200 || status == 204 || status == 304 => 0,
                None => return Err(format!("status {status} without Content-Length")),
            };
            if status >= 200 && (header("date")?.is_none() || header("server")?.is_none()) {
                return Err(format!("status {status} without Date or Server"));
            }
            let close = header("connection")?.is_some_and(|v| v.eq_ignore_ascii_case(b"close"));
            at += head_len;
            if status < 200 {
                continue; // interim (100 Continue): no body, the final response follows
            }
            let after = &output[at..];
            let req = sent.get(n);
            // An error that ends the connection carries its body even for HEAD (the head
            // was fine, the body or the wait for it was not).
            let error_body = crate::http::response::error_body(status);
            let fatal = close && status >= 400 && len == error_body.len();
            let head = req.is_some_and(|q| q.head) && !(fatal && after.starts_with(error_body));
            let body_len = if head || status == 204 || status == 304 {
                0
            } else {
                len
            };
            if after.len() < body_len {
                if truncated_ok {
                    break;
                }
                return Err(format!(
                    "body of response {n} cut short ({} of {body_len} bytes)",
                    after.len()
                ));
            }
            let body = &after[..body_len];
            if let Some(q) = req.filter(|q| q.get) {
                let coding = header("content-encoding")?.unwrap_or(b"identity");
                self.check_body(q, status, header("content-range")?, coding, body)
                    .map_err(|e| format!("response {n} ({status}): {e}"))?;
            }
            out.push(Response {
                status,
                close,
                body_len,
                body: at..at + body_len,
            });
            at += body_len;
            if close && at < output.len() {
                return Err("bytes after a Connection: close response".into());
            }
        }
        if out.len() > sent.len() + 1 {
            return Err(format!(
                "{} responses for {} complete requests",
                out.len(),
                sent.len()
            ));
        }
        Ok(out)
    }

    /// A 200 or single-range 206 to a GET for a file under the root must carry the file's
    /// bytes.
    fn check_body(
        &self,
        q: &Sent,
        status: u16,
        range: Option<&[u8]>,
        coding: &[u8],
        body: &[u8],
    ) -> Result<(), String> {
        if status != 200 && status != 206 {
            return Ok(());
        }
        let rel = String::from_utf8_lossy(&q.path);
        let mut path = self.config.root.join(rel.trim_start_matches('/'));
        if path.is_dir() {
            path.push("index.html");
        }
        let Ok(file) = std::fs::read(&path) else {
            return Ok(()); // a listing, or not a file the harness knows
        };
        let mut plain = Vec::new();
        let decoded = match coding {
            b"identity" => {
                plain.extend_from_slice(body);
                Ok(0)
            }
            b"gzip" => flate2::read::GzDecoder::new(body).read_to_end(&mut plain),
            b"zstd" => {
                zstd::stream::read::Decoder::new(body).and_then(|mut d| d.read_to_end(&mut plain))
            }
            b"br" => brotli::Decompressor::new(body, 4096).read_to_end(&mut plain),
            other => {
                return Err(format!(
                    "unknown coding {:?}",
                    String::from_utf8_lossy(other)
                ))
            }
        };
        decoded.map_err(|e| {
            let name = String::from_utf8_lossy(coding).into_owned();
            format!("bad {name} body: {e}")
        })?;
        let body = plain;
        let want = match (status, range) {
            (206, Some(r)) => {
                let r = std::str::from_utf8(r).map_err(|_| "bad Content-Range")?;
                let (a, b) = r
                    .strip_prefix("bytes ")
                    .and_then(|r| r.split_once('/'))
                    .and_then(|(r, _)| r.split_once('-'))
                    .ok_or_else(|| format!("bad Content-Range {r:?}"))?;
                let (a, b) = (a.parse::<usize>(), b.parse::<usize>());
                match (a, b) {
                    (Ok(a), Ok(b)) if a <= b && b < file.len() => &file[a..=b],
                    _ => return Err(format!("Content-Range {r:?} outside the file")),
                }
            }
            (206, None) => return Ok(()), // multipart/byteranges: framing checked only
            _ => &file[..],
        };
        if body != want {
            return Err(format!(
                "body ({} bytes) differs from {} ({} bytes)",
                body.len(),
                path.display(),
                want.len()
            ));
        }
        Ok(())
    }
}

fn percent_decode(raw: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match (raw[i], raw.get(i + 1), raw.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}
