//! The handler: a parsed request head plus the site (configuration, resolver, open-file
//! cache, offload handle) in, a protocol-neutral `Reply` out. It writes no wire bytes: the
//! connection's encoder (`http::h1` today) decides framing and keep-alive.
//!
//! Everything a static server decides lives here, each decision in one place: method ->
//! 405/501, path -> file or redirect, `FileError` -> status (one `match`), validators ->
//! 304/412, Range -> 206/416, and which representation to send. A body that must be made
//! off the loop (a compressed variant, a listing) comes back as `Body::Pending` plus the
//! `Job` that will make it.

use crate::config::Config;
use crate::http::negotiate::{self, Coding, Conditionals, Precondition, RangeResult, Validators};
use crate::http::request::RequestHead;
use crate::http::response::{self, Body, ContentRange, ContentType, Headers, Reply};
use crate::http::{Method, Version};
use crate::offload::{self, Key, Offload};
use crate::site::auth::{self, Gate};
use crate::site::autoindex::ListingKey;
use crate::site::files::{self, EtagBuf, FileError, FileMeta, OpenCache, Resolved, Resolver};
use crate::site::rules::{self, push_path_encoded, HeaderRules};
use crate::site::{autoindex, Site};
use std::fs::File;
use std::sync::Arc;

mod source;

use source::{key_of, From};

/// Most ranges honoured in one request before falling back to the whole file (amplification guard).
const MAX_RANGES: usize = 16;

/// A router's answer: the reply, and the job its `Body::Pending` waits for.
pub struct Answer {
    pub reply: Reply,
    pub job: Option<Job>,
}

/// Work the reply waits for, done on the offload pool (`Site::start`).
pub enum Job {
    /// Encode `file` (`len` bytes) with the reply's coding. `identity_etag` serves the
    /// identity fallback when the pool refuses the job.
    Encode {
        key: Key,
        file: Arc<File>,
        len: u64,
        identity_etag: EtagBuf,
    },
    /// Render the listing of `dir`.
    Listing { key: ListingKey, dir: File },
    /// Check a password (`[[auth]]`); the request is routed again with the verdict.
    Auth(crate::site::auth::AuthJob),
    /// Not a pool job: the connection sends the request to the upstream set of
    /// `[[proxy]]` rule `rule` (an index into the site's `Config::proxy`).
    Proxy { rule: usize },
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
struct Router<'a> {
    config: &'a Config,
    resolver: &'a Resolver,
    files: &'a mut OpenCache,
    rules: &'a HeaderRules,
    date: &'a [u8],
    now: std::time::Instant,
    /// For lookups made while the request's `Target` is alive (error pages, sidecars,
    /// the slashed path `[[headers]]` rules match).
    scratch: &'a mut Vec<u8>,
    /// HTTP/1.0 request (compression may be off for it).
    http10: bool,
    offload: Option<&'a Arc<Offload>>,
    /// Set on the metrics listener's connections: they only serve `/metrics`.
    metrics: Option<&'a crate::ops::metrics::Registry>,
    /// Set by the answers that wait for the pool.
    job: Option<Job>,
    /// The password check this request waited for.
    verdict: Option<crate::site::auth::Verdict>,
}

/// The `[[proxy]]` rule (most specific first) matching a normalised target, matched
/// case-sensitively as the application sees paths. `scratch` holds the slashed path.
fn proxy_rule(
    rules: &[crate::config::ProxyRule],
    target: &Target,
    scratch: &mut Vec<u8>,
) -> Option<usize> {
    scratch.clear();
    scratch.push(b'/');
    scratch.extend_from_slice(&target.rel);
    if target.trailing && !target.rel.is_empty() {
        scratch.push(b'/');
    }
    rules.iter().position(|r| r.pattern.matches(scratch))
}

impl Site {
    /// The reply for an error status found outside the router (an upstream's 502/504):
    /// the site's `[error_pages]` file if it has one, else the built-in page.
    pub fn error_reply(&mut self, status: u16, now: std::time::Instant, date: &[u8]) -> Reply {
        let mut router = Router {
            config: &self.config,
            resolver: &self.resolver,
            files: &mut self.files,
            rules: &self.rules,
            date,
            now,
            scratch: &mut self.scratch,
            http10: false,
            offload: self.offload.as_ref(),
            metrics: None,
            job: None,
            verdict: None,
        };
        router.error(status)
    }

    /// Would this request go to a `[[proxy]]` rule (before redirects and auth judge it)?
    /// Its body is then relayed as it arrives instead of read first.
    pub fn would_proxy(&mut self, head: &RequestHead, buf: &[u8]) -> bool {
        if self.config.proxy.is_empty() {
            return false;
        }
        let path = head.path.get(buf);
        let path = if path.is_empty() { &b"/"[..] } else { path };
        let mut target = Target {
            rel: std::mem::take(&mut self.path),
            trailing: false,
        };
        let hit = match files::normalize(path, &mut target.rel) {
            Ok(t) => {
                target.trailing = t;
                proxy_rule(&self.config.proxy, &target, &mut self.scratch).is_some()
            }
            Err(_) => false,
        };
        self.path = target.rel;
        hit
    }

    /// Answer one request. `buf` is the slice the head's spans point into; `date` is the
    /// `Date` the reply will carry; `metrics`: the request came on the metrics listener.
    pub fn respond(
        &mut self,
        head: &RequestHead,
        buf: &[u8],
        now: std::time::Instant,
        date: &[u8],
        metrics: bool,
    ) -> Answer {
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
            rules: &self.rules,
            date,
            now,
            scratch: &mut self.scratch,
            http10: head.version == Version::Http10,
            offload: self.offload.as_ref(),
            metrics: if metrics {
                self.registry.as_deref()
            } else {
                None
            },
            job: None,
            verdict: self.verdict.take(),
        };
        let reply = router.respond(head, buf, &mut target);
        let job = router.job.take();
        self.path = target.rel;
        Answer { reply, job }
    }
}

impl Router<'_> {
    fn respond(&mut self, head: &RequestHead, buf: &[u8], target: &mut Target) -> Reply {
        if let Some(registry) = self.metrics {
            return self.metrics(head, buf, registry);
        }
        if !self.config.proxy.is_empty() {
            // Redirects, then auth, then proxy, then files; a proxied path takes every
            // method (the application decides).
            if let Some(r) = self.proxy(head, buf, target) {
                return r;
            }
        }
        let redirect_site = self.config.redirects.first().is_some_and(|r| r.any_method);
        match head.method {
            Method::Get | Method::Head => {}
            // A whole-host redirect answers every method with its 301.
            _ if redirect_site => {}
            Method::Options => {
                return Reply {
                    status: 204,
                    headers: Headers {
                        allow: true,
                        ..Headers::default()
                    },
                    body: Body::Empty,
                    close: false,
                }
            }
            Method::Other => return self.error(501),
            _ => return self.error(405),
        }
        let path = head.path.get(buf);
        let path = if path.is_empty() { &b"/"[..] } else { path };
        // Every later decision (index or redirect, `[[headers]]`, the `.gz` sidecar) is
        // taken on the normalised path and its trailing-slash flag, never on the raw one:
        // `/assets/.` is `/assets/`, `//x/../assets` is `/assets`.
        let mut hidden = false;
        let resolved = match files::normalize(path, &mut target.rel) {
            Ok(t) => {
                target.trailing = t;
                let query = head.query.map(|q| q.get(buf));
                if let Some(r) =
                    rules::redirect(&self.config.redirects, target, query, self.scratch)
                {
                    return r;
                }
                if let Some(r) = self.guard(head, buf, target) {
                    return r;
                }
                // A sidecar asked for by name is as hidden as the file it stands for.
                hidden = !self.config.serve_hidden
                    && rules::sidecar_stems(&target.rel)
                        .any(|n| files::is_hidden(&target.rel[..n]));
                if hidden {
                    Err(FileError::NotFound)
                } else {
                    self.files
                        .open_normalized(self.resolver, &mut target.rel, t, self.now)
                }
            }
            Err(e) => Err(e),
        };
        let resolved = match resolved {
            Err(FileError::NotFound) if !hidden => self.fallback(target),
            r => r,
        };
        let target = &*target;
        match resolved {
            Ok(Resolved::File(meta)) => {
                // nginx's `index` is an internal redirect that its locations judge again:
                // an `[[auth]]` rule for the index file (`/**/*.html`) protects `/dir/` too.
                if let Some(name) = meta.index.and_then(|i| self.resolver.index_name(i)) {
                    if !self.config.auth.is_empty() {
                        let mut rel = Vec::with_capacity(target.rel.len() + 1 + name.len());
                        rel.extend_from_slice(&target.rel);
                        if !rel.is_empty() {
                            rel.push(b'/');
                        }
                        rel.extend_from_slice(name);
                        let index = Target {
                            rel,
                            trailing: false,
                        };
                        if let Some(r) = self.guard(head, buf, &index) {
                            return r;
                        }
                    }
                }
                self.file(head, buf, meta, target)
            }
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
                let mut r = Reply::error(301);
                r.headers.location = Some(loc.into_boxed_slice());
                r
            }
            Ok(Resolved::Directory(dir)) if self.config.autoindex => {
                self.autoindex(dir, &target.rel)
            }
            // A directory without an index: nginx answers 403 too.
            Ok(Resolved::Directory(_)) => self.error(403),
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
                self.error(status)
            }
        }
    }

    fn file(&mut self, head: &RequestHead, buf: &[u8], meta: FileMeta, target: &Target) -> Reply {
        let compressible = self.compressible(head, &meta);
        // Ranges apply to the identity representation: a Range request is never encoded.
        let source = if compressible && head.range.is_none() {
            self.negotiated_source(head.accept_encoding.map(|s| s.get(buf)), &meta, target)
        } else {
            None
        };
        let extra = if self.rules.is_empty() {
            Default::default()
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
            self.rules.for_path(self.scratch)
        };
        let last_modified = response::parse_date(self.date)
            .and_then(|date| response::last_modified(meta.modified(), date));
        let coding = source.as_ref().map_or(Coding::Identity, |s| s.coding);
        let etag = meta.etag.for_coding(coding);
        // The representation's validators and caching headers, shared by 200, 206 and 304.
        let mut headers = Headers {
            coding,
            vary: compressible,
            last_modified,
            etag: Some(etag),
            accept_ranges: coding == Coding::Identity,
            extra,
            ..Headers::default()
        };
        let v = Validators {
            etag: etag.as_str().as_bytes(),
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
                return Reply {
                    status: 304,
                    headers,
                    body: Body::Empty,
                    close: false,
                }
            }
            Precondition::Failed => return self.error(412),
        }
        headers.content_type = Some(ContentType::Static(meta.mime));
        let Some(source) = source else {
            return self.identity(head, buf, meta, headers);
        };
        let body = match source.from {
            From::Cached(data) => Body::Shared(data),
            From::Sidecar(side) => Body::File {
                file: side.file,
                start: 0,
                end: side.len,
            },
            From::Job => {
                self.job = Some(Job::Encode {
                    key: key_of(&meta, coding),
                    len: meta.len,
                    file: meta.file,
                    identity_etag: meta.etag,
                });
                Body::Pending
            }
        };
        Reply {
            status: 200,
            headers,
            body,
            close: false,
        }
    }

    /// The Prometheus endpoint, on its own listener.
    fn metrics(
        &mut self,
        head: &RequestHead,
        buf: &[u8],
        registry: &crate::ops::metrics::Registry,
    ) -> Reply {
        if !matches!(head.method, Method::Get | Method::Head) {
            return self.error(405);
        }
        if head.path.get(buf) != b"/metrics" {
            return self.error(404);
        }
        let body: Arc<[u8]> = Arc::from(registry.render().into_bytes());
        Reply {
            status: 200,
            headers: Headers {
                content_type: Some(ContentType::Static(
                    "text/plain; version=0.0.4; charset=utf-8",
                )),
                ..Headers::default()
            },
            body: Body::Shared(body),
            close: false,
        }
    }

    /// `[[auth]]`: the 401 or the parked check a protected path needs; None when open.
    /// A `[[proxy]]` rule's answer (after the redirects and `[[auth]]` that judge its
    /// path first), or None when no rule takes the path.
    fn proxy(&mut self, head: &RequestHead, buf: &[u8], target: &mut Target) -> Option<Reply> {
        let path = head.path.get(buf);
        let path = if path.is_empty() { &b"/"[..] } else { path };
        let t = files::normalize(path, &mut target.rel).ok()?;
        target.trailing = t;
        let rule = proxy_rule(&self.config.proxy, target, self.scratch)?;
        let query = head.query.map(|q| q.get(buf));
        if let Some(r) = rules::redirect(&self.config.redirects, target, query, self.scratch) {
            return Some(r);
        }
        if let Some(r) = self.guard(head, buf, target) {
            return Some(r);
        }
        self.job = Some(Job::Proxy { rule });
        Some(Reply {
            body: Body::Pending,
            ..Reply::error(502)
        })
    }

    fn guard(&mut self, head: &RequestHead, buf: &[u8], target: &Target) -> Option<Reply> {
        let config = self.config;
        let creds = head.authorization.map(|s| s.get(buf));
        // Not taken: a directory's index is judged after the directory (`respond`), and
        // the verdict is matched to its check by key.
        let (v, now) = (self.verdict, self.now);
        match auth::gate(
            &config.auth,
            target,
            self.scratch,
            creds,
            self.offload,
            v,
            now,
        ) {
            Gate::Open => None,
            Gate::Denied(rule) => {
                let mut r = self.error(401);
                r.headers.extra = response::Extra::new(&rule.challenge, 1);
                Some(r)
            }
            Gate::Verify(job) => {
                self.job = Some(Job::Auth(job));
                let pending = Reply::error(401);
                Some(Reply {
                    body: Body::Pending,
                    ..pending
                })
            }
        }
    }

    /// An error response: the configured `[error_pages]` file if there is one and it can
    /// be opened, else the built-in body. 405 carries Allow.
    fn error(&mut self, status: u16) -> Reply {
        let mut reply = match self.error_page(status) {
            Some(meta) => Reply {
                status,
                headers: Headers {
                    content_type: Some(ContentType::Static(meta.mime)),
                    ..Headers::default()
                },
                body: whole(meta),
                close: false,
            },
            None => Reply::error(status),
        };
        reply.headers.allow = status == 405;
        reply
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

    /// `fallback` (SPA routing) for a path that names nothing: the fallback file, as if it
    /// had been asked for (its own validators, coding and `[[headers]]`). Still 404 when
    /// none is set or it is gone or not a file: never a redirect, so never a loop.
    fn fallback(&mut self, target: &mut Target) -> Result<Resolved, FileError> {
        let Some(fallback) = self.config.fallback.as_deref() else {
            return Err(FileError::NotFound);
        };
        target.trailing = files::normalize(fallback, &mut target.rel)?;
        match self
            .files
            .open_normalized(self.resolver, &mut target.rel, target.trailing, self.now)
        {
            Ok(Resolved::File(meta)) => Ok(Resolved::File(meta)),
            r => {
                let why = r.err().map_or("not a file".into(), |e| e.to_string());
                log::warn!("fallback {:?}: {why}", String::from_utf8_lossy(fallback));
                Err(FileError::NotFound)
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
    /// offload cache or else built on the pool (never here, on the loop). Dotfiles are
    /// never listed, even with `hidden = "allow"` (as nginx's autoindex).
    fn autoindex(&mut self, dir: File, rel: &[u8]) -> Reply {
        let Some(offload) = self.offload else {
            log::error!("autoindex without an offload pool");
            return self.error(500);
        };
        let key = match ListingKey::of(self.resolver, &dir, rel, false) {
            Ok(key) => key,
            Err(e) => {
                let path = String::from_utf8_lossy(rel).into_owned();
                log::error!("autoindex {path:?}: {e}");
                return self.error(autoindex::error_status(&e));
            }
        };
        let Some(page) = autoindex::lookup(offload, &key, self.config.open_file_cache.valid) else {
            self.job = Some(Job::Listing { key, dir });
            return autoindex::page_reply(Body::Pending);
        };
        autoindex::page_reply(if page.is_empty() {
            Body::Empty
        } else {
            Body::Shared(page)
        })
    }
}

/// A whole file as a body: from memory when the open-file cache holds it.
fn whole(meta: FileMeta) -> Body {
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
