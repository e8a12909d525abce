//! The handler: a parsed request head plus the configuration and the file resolver in, a
//! response head (written into the connection's buffer) and a `Body` out.
//!
//! Everything a static server decides lives here, each decision in one place: method ->
//! 405/501, path -> file or redirect, `FileError` -> status (one `match`), validators ->
//! 304/412, Range -> 206/416, and which representation to send. The router knows nothing of
//! sockets or the event loop; the connection sends whatever `Body` it returns.

use crate::config::Config;
use crate::files::{FileError, FileMeta, Resolved, Resolver};
use crate::http::negotiate::{
    self, ByteRange, Conditionals, Precondition, RangeResult, Validators,
};
use crate::http::request::RequestHead;
use crate::http::response::{self, error_body};
use crate::http::{Method, Version};
use std::fs::File;

/// Methods a static resource allows; sent with every 405 and OPTIONS (nginx omits it on 405).
pub const ALLOW: &[u8] = b"GET, HEAD, OPTIONS";

/// Most ranges honoured in one request before falling back to the whole file (amplification guard).
const MAX_RANGES: usize = 16;

/// What follows the head.
pub enum Body {
    Empty,
    Static(&'static [u8]),
    /// `start..end` of an open file, sent with sendfile.
    File {
        file: File,
        start: u64,
        end: u64,
    },
    /// multipart/byteranges: `heads` holds every part preamble and the trailer; parts are
    /// sent in order, each preamble followed by its slice of the file.
    Multipart {
        file: File,
        heads: Vec<u8>,
        parts: Vec<(std::ops::Range<usize>, ByteRange)>,
        trailer: std::ops::Range<usize>,
    },
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Static(b) => b.len() as u64,
            Body::File { start, end, .. } => end - start,
            Body::Multipart { parts, trailer, .. } => {
                parts
                    .iter()
                    .map(|(h, r)| (h.len() as u64) + r.end - r.start + 1)
                    .sum::<u64>()
                    + trailer.len() as u64
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub struct Reply {
    pub status: u16,
    pub body: Body,
    /// Whether the connection stays open after this response (already announced in the head).
    pub keep_alive: bool,
}

/// Per-reactor routing context: no locks, no shared mutable state.
pub struct Router<'a> {
    pub config: &'a Config,
    pub resolver: &'a Resolver,
    pub date: &'a [u8],
    pub scratch: &'a mut Vec<u8>,
    /// Set per request: HTTP/1.0 keep-alive must be announced explicitly.
    pub http10: bool,
}

impl Router<'_> {
    /// Answer one request. `buf` is the slice the head's spans point into. `keep_alive` is
    /// what the connection intends; the reply may only lower it.
    pub fn respond(
        &mut self,
        head: &RequestHead,
        buf: &[u8],
        keep_alive: bool,
        out: &mut Vec<u8>,
    ) -> Reply {
        let head_only = head.method == Method::Head;
        self.http10 = head.version == Version::Http10;
        match head.method {
            Method::Get | Method::Head => {}
            Method::Options => return self.options(out, keep_alive),
            Method::Other => return self.error(out, 501, keep_alive, head_only),
            _ => return self.error(out, 405, keep_alive, head_only),
        }
        let path = head.path.get(buf);
        let path = if path.is_empty() { &b"/"[..] } else { path };
        let resolved = self.resolver.open(path, self.scratch);
        match resolved {
            Ok(Resolved::File(meta)) => self.file(head, buf, meta, keep_alive, out),
            Ok(Resolved::AddSlash) => {
                let mut loc = Vec::with_capacity(path.len() + 1);
                loc.extend_from_slice(path);
                loc.push(b'/');
                if let Some(q) = head.query {
                    loc.push(b'?');
                    loc.extend_from_slice(q.get(buf));
                }
                self.redirect(out, &loc, keep_alive, head_only)
            }
            // A directory without an index: nginx answers 403 too.
            Ok(Resolved::Directory(_)) => self.error(out, 403, keep_alive, head_only),
            Err(e) => {
                let status = match e {
                    FileError::BadRequest => 400,
                    FileError::NotFound => 404,
                    FileError::Forbidden => 403,
                    FileError::Unavailable => 503,
                    FileError::Io(ref err) => {
                        log::error!("open {:?}: {err}", String::from_utf8_lossy(path));
                        500
                    }
                };
                self.error(out, status, keep_alive, head_only)
            }
        }
    }

    fn file(
        &mut self,
        head: &RequestHead,
        buf: &[u8],
        meta: FileMeta,
        keep_alive: bool,
        out: &mut Vec<u8>,
    ) -> Reply {
        let head_only = head.method == Method::Head;
        let etag = meta.etag.as_str().as_bytes();
        let v = Validators {
            etag,
            last_modified: meta.mtime,
        };
        let conds = Conditionals {
            if_match: head.if_match.map(|s| s.get(buf)),
            if_none_match: head.if_none_match.map(|s| s.get(buf)),
            if_modified_since: head.if_modified_since.map(|s| s.get(buf)),
            if_unmodified_since: head.if_unmodified_since.map(|s| s.get(buf)),
        };
        match negotiate::evaluate(&conds, &v, true) {
            Precondition::Proceed => {}
            Precondition::NotModified => {
                response::start(out, 304, self.date);
                self.validators(out, &meta);
                response::finish(out, keep_alive, self.http10);
                return Reply {
                    status: 304,
                    body: Body::Empty,
                    keep_alive,
                };
            }
            Precondition::Failed => return self.error(out, 412, keep_alive, head_only),
        }

        // Range applies to the identity representation only.
        let mut ranges = Vec::new();
        let range = match head.range {
            Some(r)
                if head
                    .if_range
                    .is_none_or(|ir| negotiate::if_range_matches(ir.get(buf), &v)) =>
            {
                negotiate::parse_range(r.get(buf), meta.len, MAX_RANGES, &mut ranges)
            }
            _ => RangeResult::Ignore,
        };
        let http10 = self.http10;
        match range {
            RangeResult::Unsatisfiable => {
                let body = error_body(416);
                response::start(out, 416, self.date);
                out.extend_from_slice(b"Content-Range: bytes */");
                out.extend_from_slice(itoa::Buffer::new().format(meta.len).as_bytes());
                out.extend_from_slice(b"\r\n");
                response::header(out, b"Content-Type", b"text/html; charset=utf-8");
                response::header_u64(out, b"Content-Length", body.len() as u64);
                response::finish(out, keep_alive, http10);
                Reply {
                    status: 416,
                    body: if head_only {
                        Body::Empty
                    } else {
                        Body::Static(body)
                    },
                    keep_alive,
                }
            }
            RangeResult::Satisfiable if ranges.len() == 1 => {
                let r = ranges[0];
                response::start(out, 206, self.date);
                response::header(out, b"Content-Type", meta.mime.as_bytes());
                let mut b = itoa::Buffer::new();
                out.extend_from_slice(b"Content-Range: bytes ");
                out.extend_from_slice(b.format(r.start).as_bytes());
                out.push(b'-');
                out.extend_from_slice(b.format(r.end).as_bytes());
                out.push(b'/');
                out.extend_from_slice(b.format(meta.len).as_bytes());
                out.extend_from_slice(b"\r\n");
                response::header_u64(out, b"Content-Length", r.end - r.start + 1);
                self.validators(out, &meta);
                response::finish(out, keep_alive, http10);
                Reply {
                    status: 206,
                    body: if head_only {
                        Body::Empty
                    } else {
                        Body::File {
                            file: meta.file,
                            start: r.start,
                            end: r.end + 1,
                        }
                    },
                    keep_alive,
                }
            }
            RangeResult::Satisfiable => {
                let boundary = boundary(etag);
                let mut heads = Vec::new();
                let mp = negotiate::multipart_layout(
                    &ranges, meta.len, meta.mime, &boundary, &mut heads,
                );
                response::start(out, 206, self.date);
                out.extend_from_slice(b"Content-Type: multipart/byteranges; boundary=");
                out.extend_from_slice(boundary.as_bytes());
                out.extend_from_slice(b"\r\n");
                response::header_u64(out, b"Content-Length", mp.content_length);
                self.validators(out, &meta);
                response::finish(out, keep_alive, http10);
                Reply {
                    status: 206,
                    body: if head_only {
                        Body::Empty
                    } else {
                        Body::Multipart {
                            file: meta.file,
                            heads,
                            parts: mp.parts,
                            trailer: mp.trailer,
                        }
                    },
                    keep_alive,
                }
            }
            RangeResult::Ignore => {
                response::start(out, 200, self.date);
                response::header(out, b"Content-Type", meta.mime.as_bytes());
                response::header_u64(out, b"Content-Length", meta.len);
                self.validators(out, &meta);
                response::finish(out, keep_alive, http10);
                let len = meta.len;
                Reply {
                    status: 200,
                    body: if head_only || len == 0 {
                        Body::Empty
                    } else {
                        Body::File {
                            file: meta.file,
                            start: 0,
                            end: len,
                        }
                    },
                    keep_alive,
                }
            }
        }
    }

    /// Validators and caching headers shared by 200, 206 and 304.
    fn validators(&self, out: &mut Vec<u8>, meta: &FileMeta) {
        response::header(out, b"Last-Modified", &response::http_date(meta.mtime));
        response::header(out, b"ETag", meta.etag.as_str().as_bytes());
        out.extend_from_slice(b"Accept-Ranges: bytes\r\n");
    }

    fn options(&mut self, out: &mut Vec<u8>, keep_alive: bool) -> Reply {
        response::start(out, 204, self.date);
        response::header(out, b"Allow", ALLOW);
        response::finish(out, keep_alive, self.http10);
        Reply {
            status: 204,
            body: Body::Empty,
            keep_alive,
        }
    }

    fn redirect(
        &mut self,
        out: &mut Vec<u8>,
        location: &[u8],
        keep_alive: bool,
        head_only: bool,
    ) -> Reply {
        let body = error_body(301);
        response::start(out, 301, self.date);
        response::header(out, b"Location", location);
        response::header(out, b"Content-Type", b"text/html; charset=utf-8");
        response::header_u64(out, b"Content-Length", body.len() as u64);
        response::finish(out, keep_alive, self.http10);
        Reply {
            status: 301,
            body: if head_only {
                Body::Empty
            } else {
                Body::Static(body)
            },
            keep_alive,
        }
    }

    /// An error page with the original status. 405 carries Allow.
    pub fn error(
        &mut self,
        out: &mut Vec<u8>,
        status: u16,
        keep_alive: bool,
        head_only: bool,
    ) -> Reply {
        let body = error_body(status);
        response::start(out, status, self.date);
        if status == 405 {
            response::header(out, b"Allow", ALLOW);
        }
        response::header(out, b"Content-Type", b"text/html; charset=utf-8");
        response::header_u64(out, b"Content-Length", body.len() as u64);
        response::finish(out, keep_alive, self.http10);
        Reply {
            status,
            body: if head_only {
                Body::Empty
            } else {
                Body::Static(body)
            },
            keep_alive,
        }
    }
}

/// A multipart boundary derived from the ETag: stable for a file version, and never a
/// substring of the headers it separates.
fn boundary(etag: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in etag {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("vireo{h:016x}")
}
