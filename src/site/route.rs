//! The handler: a parsed request head plus the configuration and the file resolver in, a
//! response head (written into the connection's buffer) and a `Body` out.
//!
//! Everything a static server decides lives here, each decision in one place: method ->
//! 405/501, path -> file or redirect, `FileError` -> status (one `match`), validators ->
//! 304/412, Range -> 206/416, and which representation to send. The router knows nothing of
//! sockets or the event loop; the connection sends whatever `Body` it returns.

use crate::config::{Config, HeaderRule};
use crate::http::negotiate::{
    self, ByteRange, Coding, Conditionals, Precondition, RangeResult, Validators,
};
use crate::http::request::RequestHead;
use crate::http::response::{self, error_body};
use crate::http::{Method, Version};
use crate::offload::{self, Key, Offload};
use crate::site::files::{self, EtagBuf, FileError, FileMeta, OpenCache, Resolved, Resolver};
use crate::site::Site;
use std::fs::File;
use std::sync::Arc;

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
        file: Arc<File>,
        start: u64,
        end: u64,
    },
    /// A body in memory shared with a cache, sent in the same writev as the head.
    Shared(Arc<[u8]>),
    /// No head yet: the file must be compressed off the loop first. The connection parks,
    /// submits the job and writes the head (`write_200`) when the result arrives.
    Compress(Pending),
    /// No head yet: the directory listing is built on the offload pool; the connection
    /// parks like for `Compress`.
    Listing(crate::site::autoindex::Job),
    /// multipart/byteranges: `heads` holds every part preamble and the trailer; parts are
    /// sent in order, each preamble followed by its slice of the file.
    Multipart {
        file: Arc<File>,
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
            Body::Shared(b) => b.len() as u64,
            Body::Compress(_) | Body::Listing(_) => 0,
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

/// What the head of a 200 for a file needs, kept while a compression job runs.
#[derive(Clone, Debug)]
pub struct Variant {
    pub mime: &'static str,
    pub etag: EtagBuf,
    /// Unix seconds, already no later than the `Date` of the response that chose it.
    pub last_modified: Option<u64>,
    pub gzip: bool,
    /// The resource has a gzip variant: caches must key on Accept-Encoding.
    pub vary: bool,
    pub keep_alive: bool,
    pub http10: bool,
    /// `[[headers]]` rules matching the request path.
    pub extra: ExtraHeaders,
}

/// The configured `[[headers]]` rules a request matched: the shared rule list (an Arc
/// clone, only when something matched) and a bitmask over it. Never allocates.
#[derive(Clone, Debug, Default)]
pub struct ExtraHeaders {
    rules: Option<Arc<[HeaderRule]>>,
    mask: u64,
}

impl ExtraHeaders {
    /// Match `path` (the normalised request path, with its leading slash) against every
    /// rule, in order.
    pub fn for_path(rules: &Arc<[HeaderRule]>, path: &[u8]) -> ExtraHeaders {
        let mut mask = 0u64;
        for (i, r) in rules.iter().enumerate().take(64) {
            if r.pattern.matches(path) {
                mask |= 1 << i;
            }
        }
        ExtraHeaders {
            rules: (mask != 0).then(|| Arc::clone(rules)),
            mask,
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        let Some(rules) = &self.rules else {
            return;
        };
        for (i, r) in rules.iter().enumerate().take(64) {
            if self.mask & (1 << i) != 0 {
                out.extend_from_slice(&r.block);
            }
        }
    }
}

/// A compression the router asked for.
pub struct Pending {
    pub key: Key,
    pub file: Arc<File>,
    pub len: u64,
    pub variant: Variant,
    /// For the identity fallback when the pool refuses the job.
    pub etag_identity: EtagBuf,
    pub head_only: bool,
}

/// The head of a 200 for a file (identity or compressed), shared by the router and by the
/// connection resuming after compression.
pub fn write_200(out: &mut Vec<u8>, date: &[u8], v: &Variant, len: u64) {
    response::start(out, 200, date);
    response::header(out, b"Content-Type", v.mime.as_bytes());
    response::header_u64(out, b"Content-Length", len);
    if v.gzip {
        out.extend_from_slice(b"Content-Encoding: gzip\r\n");
    }
    variant_headers(out, v);
    response::finish(out, v.keep_alive, v.http10);
}

/// Validators and caching headers shared by 200, 206 and 304.
fn variant_headers(out: &mut Vec<u8>, v: &Variant) {
    if v.vary {
        out.extend_from_slice(b"Vary: Accept-Encoding\r\n");
    }
    if let Some(lm) = v.last_modified {
        response::header(out, b"Last-Modified", &response::http_date(lm));
    }
    response::header(out, b"ETag", v.etag.as_str().as_bytes());
    if !v.gzip {
        out.extend_from_slice(b"Accept-Ranges: bytes\r\n");
    }
    v.extra.write(out);
}

pub struct Reply {
    pub status: u16,
    pub body: Body,
    /// Whether the connection stays open after this response (already announced in the head).
    pub keep_alive: bool,
}

/// The request path after normalisation, as the resolver saw it: decoded, dot segments
/// removed, relative to the root (no leading slash; for an index file, the directory).
/// `trailing`: it names a directory (`/dir/`). Every later decision (index or redirect,
/// `[[headers]]`, the `.gz` sidecar, a listing) is taken on this, never on the raw path.
pub struct Target {
    pub rel: Vec<u8>,
    pub trailing: bool,
}

/// One request's view of a `Site`: disjoint borrows of its parts plus the request's clock.
pub(crate) struct Router<'a> {
    config: &'a Config,
    resolver: &'a Resolver,
    files: &'a mut OpenCache,
    now: std::time::Instant,
    date: &'a [u8],
    /// For lookups made while the request's `Target` is alive (error pages, sidecars,
    /// the slashed path `[[headers]]` rules match).
    scratch: &'a mut Vec<u8>,
    /// Set per request: HTTP/1.0 keep-alive must be announced explicitly.
    http10: bool,
    offload: Option<&'a Arc<Offload>>,
    /// Set on the metrics listener's connections: they only serve `/metrics`.
    metrics: Option<&'a crate::ops::metrics::Registry>,
}

impl Site {
    /// Answer one request. `buf` is the slice the head's spans point into. `keep_alive` is
    /// what the connection intends; the reply may only lower it. `metrics`: the request came
    /// on the metrics listener.
    #[allow(clippy::too_many_arguments)]
    pub fn respond(
        &mut self,
        head: &RequestHead,
        buf: &[u8],
        keep_alive: bool,
        out: &mut Vec<u8>,
        now: std::time::Instant,
        date: &[u8],
        metrics: bool,
    ) -> Reply {
        // The path buffer is lent to the request as its `Target` and given back after:
        // no allocation, and no other lookup can overwrite it meanwhile.
        let mut target = Target {
            rel: std::mem::take(&mut self.path),
            trailing: false,
        };
        let mut router = Router {
            config: &self.config,
            resolver: &self.resolver,
            files: &mut self.files,
            now,
            date,
            scratch: &mut self.scratch,
            http10: false,
            offload: self.offload.as_ref(),
            metrics: if metrics {
                self.registry.as_deref()
            } else {
                None
            },
        };
        let reply = router.respond(head, buf, keep_alive, out, &mut target);
        self.path = target.rel;
        reply
    }
}

impl Router<'_> {
    fn respond(
        &mut self,
        head: &RequestHead,
        buf: &[u8],
        keep_alive: bool,
        out: &mut Vec<u8>,
        target: &mut Target,
    ) -> Reply {
        let head_only = head.method == Method::Head;
        self.http10 = head.version == Version::Http10;
        if let Some(registry) = self.metrics {
            return self.metrics(head, buf, registry, keep_alive, out);
        }
        match head.method {
            Method::Get | Method::Head => {}
            Method::Options => return self.options(out, keep_alive),
            Method::Other => return self.error(out, 501, keep_alive, head_only),
            _ => return self.error(out, 405, keep_alive, head_only),
        }
        let path = head.path.get(buf);
        let path = if path.is_empty() { &b"/"[..] } else { path };
        // Every later decision (index or redirect, `[[headers]]`, the `.gz` sidecar) is
        // taken on the normalised path and its trailing-slash flag, never on the raw one:
        // `/assets/.` is `/assets/`, `//x/../assets` is `/assets`.
        let resolved = match files::normalize(path, &mut target.rel) {
            Ok(t) if !self.config.serve_hidden && files::is_hidden(&target.rel) => {
                target.trailing = t;
                Err(FileError::NotFound)
            }
            Ok(t) => {
                target.trailing = t;
                self.files
                    .open_normalized(self.resolver, &mut target.rel, t, self.now)
            }
            Err(e) => Err(e),
        };
        let target = &*target;
        match resolved {
            Ok(Resolved::File(meta)) => self.file(head, buf, meta, target, keep_alive, out),
            Ok(Resolved::AddSlash) => {
                // Built from the normalised path, so it never starts with `//` (which a
                // browser would take for another host).
                let mut loc = Vec::with_capacity(target.rel.len() + 2);
                loc.push(b'/');
                push_path_encoded(&mut loc, &target.rel);
                loc.push(b'/');
                if let Some(q) = head.query {
                    loc.push(b'?');
                    loc.extend_from_slice(q.get(buf));
                }
                self.redirect(out, &loc, keep_alive, head_only)
            }
            Ok(Resolved::Directory(dir)) if self.config.autoindex => {
                self.autoindex(dir, &target.rel, keep_alive, head_only, out)
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
        target: &Target,
        keep_alive: bool,
        out: &mut Vec<u8>,
    ) -> Reply {
        let head_only = head.method == Method::Head;
        let http10 = self.http10;
        let compressible = self.compressible(head, &meta);
        // Ranges apply to the identity representation: a Range request is never compressed.
        let wants_gzip = compressible
            && head.range.is_none()
            && negotiate::choose_encoding(
                head.accept_encoding.map(|s| s.get(buf)),
                &[Coding::Gzip],
            ) == Some(Coding::Gzip);
        let source = if wants_gzip {
            self.gzip_source(&meta, target)
        } else {
            None
        };
        let extra = if self.config.headers.is_empty() {
            ExtraHeaders::default()
        } else {
            // Rules see the decoded, normalised path, as nginx locations do, so that
            // `/%61ssets/x` or `/x/../assets/x` cannot dodge an `/assets/` rule. Rules
            // match the absolute form, `/` + target (+ `/` for a directory's index).
            self.scratch.clear();
            self.scratch.push(b'/');
            self.scratch.extend_from_slice(&target.rel);
            if target.trailing && !target.rel.is_empty() {
                self.scratch.push(b'/');
            }
            ExtraHeaders::for_path(&self.config.headers, self.scratch)
        };
        let last_modified = response::parse_date(self.date)
            .and_then(|date| response::last_modified(meta.modified(), date));
        let mut variant = Variant {
            mime: meta.mime,
            etag: meta.etag,
            last_modified,
            gzip: source.is_some(),
            vary: compressible,
            keep_alive,
            http10,
            extra,
        };
        if variant.gzip {
            variant.etag = meta.etag.variant(b"-gz");
        }
        let v = Validators {
            etag: variant.etag.as_str().as_bytes(),
            last_modified,
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
                variant_headers(out, &variant);
                response::finish(out, keep_alive, http10);
                return Reply {
                    status: 304,
                    body: Body::Empty,
                    keep_alive,
                };
            }
            Precondition::Failed => return self.error(out, 412, keep_alive, head_only),
        }
        let body = match source {
            None => return self.identity(head, buf, meta, &variant, out),
            Some(GzSource::Cached(data)) => {
                write_200(out, self.date, &variant, data.len() as u64);
                Body::Shared(data)
            }
            Some(GzSource::Sidecar(gz)) => {
                write_200(out, self.date, &variant, gz.len);
                Body::File {
                    file: gz.file,
                    start: 0,
                    end: gz.len,
                }
            }
            Some(GzSource::Compress) => {
                return Reply {
                    status: 200,
                    body: Body::Compress(Pending {
                        key: key_of(&meta),
                        len: meta.len,
                        file: meta.file,
                        variant,
                        etag_identity: meta.etag,
                        head_only,
                    }),
                    keep_alive,
                }
            }
        };
        Reply {
            status: 200,
            body: if head_only { Body::Empty } else { body },
            keep_alive,
        }
    }

    /// Is this file worth compressing for this client at all (decides `Vary`)?
    fn compressible(&self, head: &RequestHead, meta: &FileMeta) -> bool {
        let c = &self.config.compression;
        c.enabled
            && (!self.http10 || c.http10)
            && meta.len >= c.min_bytes.max(1)
            && negotiate::mime_matches(meta.mime, &c.types)
            && (meta.len <= offload::MAX_INPUT || c.precompressed)
            && head.method != Method::Options
    }

    /// Where a gzip body can come from, cheapest first; None means identity.
    fn gzip_source(&mut self, meta: &FileMeta, target: &Target) -> Option<GzSource> {
        let offload = self.offload?;
        let key = key_of(meta);
        if let Some(data) = offload.lookup(&key) {
            return Some(GzSource::Cached(data));
        }
        // nginx's gzip_static: `file.gz` beside `file`, not older than it. For an index
        // file the target is the directory, so the index name is added:
        // `dir/index.html.gz`, never `dir.gz`.
        let index = match meta.index {
            Some(i) if target.trailing => self.resolver.index_name(i),
            _ => None,
        };
        if self.config.compression.precompressed && (index.is_some() || !target.trailing) {
            self.scratch.clear();
            self.scratch.extend_from_slice(&target.rel);
            if let Some(name) = index {
                if !target.rel.is_empty() {
                    self.scratch.push(b'/');
                }
                self.scratch.extend_from_slice(name);
            }
            self.scratch.extend_from_slice(b".gz");
            let side = self.resolver.open_relative(self.scratch);
            if let Ok(Resolved::File(gz)) = side {
                if gz.mtime >= meta.mtime {
                    return Some(GzSource::Sidecar(gz));
                }
            }
        }
        if meta.len <= offload::MAX_INPUT && offload.pending() < self.config.compression.max_pending
        {
            return Some(GzSource::Compress);
        }
        None
    }

    /// 200, 206 or 416 for the identity representation.
    fn identity(
        &mut self,
        head: &RequestHead,
        buf: &[u8],
        meta: FileMeta,
        variant: &Variant,
        out: &mut Vec<u8>,
    ) -> Reply {
        let head_only = head.method == Method::Head;
        let keep_alive = variant.keep_alive;
        let http10 = self.http10;
        let v = Validators {
            etag: meta.etag.as_str().as_bytes(),
            last_modified: variant.last_modified,
        };
        let mut ranges = Vec::new();
        let range = match head.range {
            Some(r)
                if head
                    .if_range
                    .is_none_or(|ir| self.if_range_matches(ir.get(buf), &v, &meta)) =>
            {
                negotiate::parse_range(r.get(buf), meta.len, MAX_RANGES, &mut ranges)
            }
            _ => RangeResult::Ignore,
        };
        match range {
            RangeResult::Unsatisfiable => {
                let len = meta.len;
                self.error_with(out, 416, keep_alive, head_only, |out| {
                    out.extend_from_slice(b"Content-Range: ");
                    negotiate::push_unsatisfied_content_range(out, len);
                    out.extend_from_slice(b"\r\n");
                })
            }
            RangeResult::Satisfiable if ranges.len() == 1 => {
                let r = ranges[0];
                response::start(out, 206, self.date);
                response::header(out, b"Content-Type", meta.mime.as_bytes());
                out.extend_from_slice(b"Content-Range: ");
                negotiate::push_content_range(out, r, meta.len);
                out.extend_from_slice(b"\r\n");
                response::header_u64(out, b"Content-Length", r.end - r.start + 1);
                variant_headers(out, variant);
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
                let boundary = negotiate::boundary_from_etag(meta.etag.as_str().as_bytes());
                let mut heads = Vec::new();
                let mp = negotiate::multipart_layout(
                    &ranges, meta.len, meta.mime, &boundary, &mut heads,
                );
                response::start(out, 206, self.date);
                response::header(
                    out,
                    b"Content-Type",
                    negotiate::multipart_content_type(&boundary).as_bytes(),
                );
                response::header_u64(out, b"Content-Length", mp.content_length);
                variant_headers(out, variant);
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
                write_200(out, self.date, variant, meta.len);
                let len = meta.len;
                Reply {
                    status: 200,
                    body: if head_only || len == 0 {
                        Body::Empty
                    } else if let Some(content) = meta.content {
                        Body::Shared(content)
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

    /// The Prometheus endpoint, on its own listener.
    fn metrics(
        &mut self,
        head: &RequestHead,
        buf: &[u8],
        registry: &crate::ops::metrics::Registry,
        keep_alive: bool,
        out: &mut Vec<u8>,
    ) -> Reply {
        let head_only = head.method == Method::Head;
        if !matches!(head.method, Method::Get | Method::Head) {
            return self.error(out, 405, keep_alive, head_only);
        }
        if head.path.get(buf) != b"/metrics" {
            return self.error(out, 404, keep_alive, head_only);
        }
        let body: Arc<[u8]> = Arc::from(registry.render().into_bytes());
        response::start(out, 200, self.date);
        response::header(
            out,
            b"Content-Type",
            b"text/plain; version=0.0.4; charset=utf-8",
        );
        response::header_u64(out, b"Content-Length", body.len() as u64);
        response::finish(out, keep_alive, self.http10);
        Reply {
            status: 200,
            body: if head_only {
                Body::Empty
            } else {
                Body::Shared(body)
            },
            keep_alive,
        }
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
        self.error_with(out, status, keep_alive, head_only, |out| {
            if status == 405 {
                response::header(out, b"Allow", ALLOW);
            }
        })
    }

    /// An error response: the configured `[error_pages]` file if there is one and it can
    /// be opened, else the built-in body. `headers` adds status-specific header lines.
    fn error_with(
        &mut self,
        out: &mut Vec<u8>,
        status: u16,
        keep_alive: bool,
        head_only: bool,
        headers: impl FnOnce(&mut Vec<u8>),
    ) -> Reply {
        let page = self.error_page(status);
        response::start(out, status, self.date);
        headers(out);
        let body = match page {
            Some(meta) => {
                response::header(out, b"Content-Type", meta.mime.as_bytes());
                response::header_u64(out, b"Content-Length", meta.len);
                if meta.len == 0 {
                    Body::Empty
                } else if let Some(content) = meta.content {
                    Body::Shared(content)
                } else {
                    Body::File {
                        file: meta.file,
                        start: 0,
                        end: meta.len,
                    }
                }
            }
            None => {
                let body = error_body(status);
                response::header(out, b"Content-Type", b"text/html; charset=utf-8");
                response::header_u64(out, b"Content-Length", body.len() as u64);
                Body::Static(body)
            }
        };
        response::finish(out, keep_alive, self.http10);
        Reply {
            status,
            body: if head_only { Body::Empty } else { body },
            keep_alive,
        }
    }

    /// The `[error_pages]` file for `status`, through the open-file cache. None (built-in
    /// body) when none is configured, on the metrics listener, or when it can't be opened.
    fn error_page(&mut self, status: u16) -> Option<FileMeta> {
        let config = self.config;
        if self.metrics.is_some() {
            return None;
        }
        let (_, path) = config.error_pages.iter().find(|(s, _)| *s == status)?;
        match self.files.open(self.resolver, path, self.scratch, self.now) {
            Ok(Resolved::File(meta)) => Some(meta),
            Ok(_) => None,
            Err(e) => {
                log::warn!(
                    "error page {:?} for {status}: {e}",
                    String::from_utf8_lossy(path)
                );
                None
            }
        }
    }

    /// If-Range (RFC 9110 13.1.5): an HTTP-date only matches when Last-Modified is a strong
    /// validator, i.e. at least one second before the Date we send (8.8.2.2); a file
    /// modified within the same second might change again unnoticed. A Last-Modified that
    /// was replaced by the Date (an mtime in the future) is never strong.
    fn if_range_matches(&self, if_range: &[u8], v: &Validators, meta: &FileMeta) -> bool {
        let val = if_range.trim_ascii_start();
        let is_date = !val.iter().take(3).any(|&b| b == b'"');
        if is_date {
            let (Some(date), Some(lm)) = (response::parse_date(self.date), v.last_modified) else {
                return false;
            };
            let nanos = if lm == meta.mtime {
                meta.mtime_nanos
            } else {
                0
            };
            let modified = std::time::Duration::new(lm, nanos);
            if modified + std::time::Duration::from_secs(1) > std::time::Duration::from_secs(date) {
                return false;
            }
        }
        negotiate::if_range_matches(val, v)
    }

    /// `autoindex = true`: an HTML listing of a directory without an index file, from the
    /// offload cache or else built on the pool (never here, on the loop).
    fn autoindex(
        &mut self,
        dir: File,
        rel: &[u8],
        keep_alive: bool,
        head_only: bool,
        out: &mut Vec<u8>,
    ) -> Reply {
        let head = crate::site::autoindex::Head {
            keep_alive,
            http10: self.http10,
            head_only,
        };
        // Dotfiles are never listed, even with `hidden = "allow"` (as nginx's autoindex).
        let Some(offload) = self.offload else {
            log::error!("autoindex without an offload pool");
            return self.error(out, 500, keep_alive, head_only);
        };
        let key = match offload::ListingKey::of(&dir, rel, false) {
            Ok(key) => key,
            Err(e) => {
                let path = String::from_utf8_lossy(rel).into_owned();
                log::error!("autoindex {path:?}: {e}");
                let status = crate::site::autoindex::error_status(&e);
                return self.error(out, status, keep_alive, head_only);
            }
        };
        let Some(page) = offload.lookup_listing(&key) else {
            return Reply {
                status: 200,
                body: Body::Listing(crate::site::autoindex::Job { key, dir, head }),
                keep_alive,
            };
        };
        head.write_200(out, self.date, page.len() as u64);
        Reply {
            status: 200,
            body: if head_only || page.is_empty() {
                Body::Empty
            } else {
                Body::Shared(page)
            },
            keep_alive,
        }
    }
}

/// Append a decoded path as a URI path: bytes outside RFC 3986 pchar (and '/') are
/// percent-encoded, so `%`, `?`, `#`, `\\`, spaces and non-ASCII cannot change its meaning.
fn push_path_encoded(out: &mut Vec<u8>, path: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in path {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b) {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

enum GzSource {
    Cached(Arc<[u8]>),
    Sidecar(FileMeta),
    Compress,
}

fn key_of(meta: &FileMeta) -> Key {
    Key {
        dev: meta.dev,
        ino: meta.ino,
        len: meta.len,
        mtime: meta.mtime,
        mtime_nanos: meta.mtime_nanos,
    }
}
