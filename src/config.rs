//! Configuration: the TOML file as written (`RawConfig`, a serde mirror that rejects unknown
//! keys) resolved into the `Config` the server runs with (canonical root, `Duration`s,
//! worker count, validated limits). Keeping the two apart means every later module reads
//! plain, already-checked values and never re-parses a string.
//!
//! Errors name the file, the line and column, and the key: `vireo --check` is meant to be
//! read by a person fixing a typo.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;

/// Default config path, relative to the working directory.
pub const DEFAULT_PATH: &str = "config/vireo.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {err}")]
    Read { file: String, err: std::io::Error },
    #[error("{file}: {msg}")]
    Parse { file: String, msg: String },
    #[error("{file}: line {line}, column {col}: `{key}`: {msg}")]
    Invalid {
        file: String,
        line: usize,
        col: usize,
        key: &'static str,
        msg: String,
    },
}

/// `workers = "auto"` or a positive integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    Auto,
    N(usize),
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Count, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"auto\" or a positive integer")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Count, E> {
                if (1..=1024).contains(&v) {
                    Ok(Count::N(v as usize))
                } else {
                    Err(E::custom(format!("{v} is out of range 1..=1024")))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Count, E> {
                if v == "auto" {
                    Ok(Count::Auto)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(v), &self))
                }
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    listen: Spanned<String>,
    workers: Count,
    root: Spanned<String>,
    index: Vec<String>,
    limits: RawLimits,
    timeouts: RawTimeouts,
    compression: RawCompression,
    open_file_cache: RawOpenFileCache,
    log: RawLog,
    metrics: RawMetrics,
    autoindex: bool,
    hidden: Spanned<String>,
    error_pages: Entries<Spanned<String>>,
    headers: Vec<RawHeaderRule>,
}

/// One `[[headers]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeaderRule {
    path: Spanned<String>,
    set: Spanned<Entries<Spanned<String>>>,
}

/// A TOML table as (key, value) pairs, in the order the toml crate yields them (sorted by
/// key: it is built without `preserve_order`).
#[derive(Debug)]
struct Entries<V>(Vec<(String, V)>);

impl<V> Default for Entries<V> {
    fn default() -> Self {
        Entries(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Entries<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Vis<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Vis<V> {
            type Value = Entries<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a table")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Entries<V>, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, V>()? {
                    out.push((k, v));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(Vis(std::marker::PhantomData))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLog {
    access: Spanned<String>,
    format: Spanned<String>,
    level: Spanned<String>,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            access: Spanned::new(0..0, "off".into()),
            format: Spanned::new(0..0, "combined".into()),
            level: Spanned::new(0..0, "info".into()),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawMetrics {
    listen: Option<Spanned<String>>,
}

/// `[log]`: the access log and the error log's level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    /// None = off.
    pub access: Option<crate::ops::accesslog::Target>,
    pub format: crate::ops::accesslog::Format,
    /// Error log level (stderr): off, error, warn, info, debug, trace.
    pub level: log::LevelFilter,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            listen: Spanned::new(0..0, "127.0.0.1:8080".into()),
            workers: Count::Auto,
            root: Spanned::new(0..0, "public".into()),
            index: vec!["index.html".into()],
            limits: RawLimits::default(),
            timeouts: RawTimeouts::default(),
            compression: RawCompression::default(),
            open_file_cache: RawOpenFileCache::default(),
            log: RawLog::default(),
            metrics: RawMetrics::default(),
            autoindex: false,
            hidden: Spanned::new(0..0, "deny".into()),
            error_pages: Entries::default(),
            headers: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawOpenFileCache {
    entries: usize,
    valid: Spanned<String>,
    check: Spanned<String>,
    inline_bytes: u64,
    errors: bool,
}

impl Default for RawOpenFileCache {
    fn default() -> Self {
        RawOpenFileCache {
            entries: 1024,
            valid: Spanned::new(0..0, "1s".into()),
            check: Spanned::new(0..0, "0s".into()),
            inline_bytes: 16384,
            errors: false,
        }
    }
}

/// nginx's open_file_cache, per reactor.
#[derive(Debug, Clone)]
pub struct OpenFileCache {
    /// Paths kept open per reactor; 0 disables the cache.
    pub entries: usize,
    /// After this long a cached path is resolved again (renames, deletions).
    pub valid: Duration,
    /// A hit trusts the cached metadata for this long before fstat-ing the fd again (in-place
    /// edits); zero checks on every hit.
    pub check: Duration,
    /// Files up to this size are kept in memory and sent with the head in one writev.
    pub inline_bytes: u64,
    /// Cache "not found" too, for `valid` (nginx's open_file_cache_errors).
    pub errors: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLimits {
    backlog: u32,
    max_connections: usize,
    max_request_line: usize,
    max_header_bytes: usize,
    max_body_bytes: u64,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            backlog: 4096,
            // workers x (this + open_file_cache.entries) must fit RLIMIT_NOFILE: 4096 fits
            // a hard limit of 20,000 up to 3 workers (systemd's default, 524288, far more).
            max_connections: 4096,
            max_request_line: 8192,
            max_header_bytes: 16384,
            max_body_bytes: 1 << 20,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTimeouts {
    header: Spanned<String>,
    keepalive: Spanned<String>,
    body: Spanned<String>,
    send: Spanned<String>,
    shutdown: Spanned<String>,
}

impl Default for RawTimeouts {
    fn default() -> Self {
        let d = |s: &str| Spanned::new(0..0, s.to_string());
        RawTimeouts {
            header: d("10s"),
            keepalive: d("75s"),
            body: d("30s"),
            send: d("30s"),
            shutdown: d("30s"),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCompression {
    enabled: bool,
    level: Spanned<u32>,
    min_bytes: u64,
    types: Vec<String>,
    threads: Count,
    max_pending: usize,
    cache_bytes: u64,
    precompressed: bool,
    http10: bool,
}

impl Default for RawCompression {
    fn default() -> Self {
        RawCompression {
            enabled: true,
            level: Spanned::new(0..0, 6),
            min_bytes: 256,
            types: vec![
                "text/*".into(),
                "application/json".into(),
                "application/javascript".into(),
                "image/svg+xml".into(),
            ],
            threads: Count::Auto,
            max_pending: 256,
            cache_bytes: 64 << 20,
            precompressed: true,
            http10: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub backlog: u32,
    pub max_connections: usize,
    pub max_request_line: usize,
    pub max_header_bytes: usize,
    pub max_body_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct Timeouts {
    pub header: Duration,
    pub keepalive: Duration,
    pub body: Duration,
    pub send: Duration,
    pub shutdown: Duration,
}

#[derive(Debug, Clone)]
pub struct Compression {
    pub enabled: bool,
    pub level: u32,
    pub min_bytes: u64,
    pub types: Vec<String>,
    pub threads: usize,
    pub max_pending: usize,
    pub cache_bytes: u64,
    pub precompressed: bool,
    /// Also compress for HTTP/1.0 clients (off by default, like nginx's gzip_http_version 1.1).
    pub http10: bool,
}

/// The validated configuration every other module reads.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub workers: usize,
    /// Canonical, existing directory.
    pub root: PathBuf,
    pub index: Vec<String>,
    pub limits: Limits,
    pub timeouts: Timeouts,
    pub compression: Compression,
    pub open_file_cache: OpenFileCache,
    pub log: Log,
    /// Address of the Prometheus endpoint (`GET /metrics`); None = off.
    pub metrics: Option<SocketAddr>,
    /// Answer a directory without an index with an HTML listing instead of 403.
    pub autoindex: bool,
    /// `hidden = "allow"`: serve paths with a segment starting with '.'; by default
    /// (`"deny"`) they are 404, except a leading `/.well-known/`.
    pub serve_hidden: bool,
    /// `[error_pages]`: status -> request path (starting with '/') of the page served
    /// with that status instead of the built-in body.
    pub error_pages: Vec<(u16, Box<[u8]>)>,
    /// `[[headers]]`, in file order (at most `MAX_HEADER_RULES`).
    pub headers: Arc<[HeaderRule]>,
    /// The file this came from, if any (for reload and messages).
    pub source: Option<PathBuf>,
}

impl Config {
    /// Load `path`; relative paths inside the file are relative to the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Read {
            file: file.clone(),
            err,
        })?;
        let base = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut cfg = Config::from_toml(&text, &base, &file)?;
        cfg.source = Some(path.to_path_buf());
        Ok(cfg)
    }

    /// Built-in defaults: serve `./public` on 127.0.0.1:8080.
    pub fn defaults() -> Result<Config, ConfigError> {
        Config::from_toml("", Path::new("."), "(built-in defaults)")
    }

    /// Parse and validate TOML text; `file` is only used in messages.
    pub fn from_toml(text: &str, base: &Path, file: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: file.to_string(),
            msg: e.to_string().trim_end().to_string(),
        })?;
        let invalid = |span: std::ops::Range<usize>, key: &'static str, msg: String| {
            let (line, col) = line_col(text, span.start);
            ConfigError::Invalid {
                file: file.to_string(),
                line,
                col,
                key,
                msg,
            }
        };

        let listen = resolve_addr(raw.listen.get_ref())
            .map_err(|msg| invalid(raw.listen.span(), "listen", msg))?;
        let workers = match raw.workers {
            Count::Auto => num_cpus::get().max(1),
            Count::N(n) => n,
        };
        let root_path = base.join(raw.root.get_ref());
        let root = std::fs::canonicalize(&root_path).map_err(|e| {
            invalid(
                raw.root.span(),
                "root",
                format!("{}: {e}", root_path.display()),
            )
        })?;
        if !root.is_dir() {
            return Err(invalid(
                raw.root.span(),
                "root",
                format!("{} is not a directory", root.display()),
            ));
        }
        for name in &raw.index {
            if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                return Err(invalid(
                    0..0,
                    "index",
                    format!("{name:?} must be a plain file name"),
                ));
            }
        }
        let l = raw.limits;
        if l.backlog == 0 || l.max_connections == 0 {
            return Err(invalid(
                0..0,
                "limits",
                "backlog and max_connections must be positive".into(),
            ));
        }
        if l.max_request_line < 64 || l.max_header_bytes < l.max_request_line {
            return Err(invalid(
                0..0,
                "limits",
                "need max_request_line >= 64 and max_header_bytes >= max_request_line".into(),
            ));
        }
        if l.max_header_bytes > 1 << 20 {
            return Err(invalid(
                0..0,
                "limits.max_header_bytes",
                "at most 1 MiB".into(),
            ));
        }
        let t = &raw.timeouts;
        let dur = |s: &Spanned<String>, key: &'static str| {
            parse_duration(s.get_ref()).map_err(|msg| invalid(s.span(), key, msg))
        };
        let timeouts = Timeouts {
            header: dur(&t.header, "timeouts.header")?,
            keepalive: dur(&t.keepalive, "timeouts.keepalive")?,
            body: dur(&t.body, "timeouts.body")?,
            send: dur(&t.send, "timeouts.send")?,
            shutdown: dur(&t.shutdown, "timeouts.shutdown")?,
        };
        let c = raw.compression;
        if *c.level.get_ref() > 9 {
            return Err(invalid(
                c.level.span(),
                "compression.level",
                "must be 0..=9".into(),
            ));
        }
        let ofc = &raw.open_file_cache;
        let open_file_cache = OpenFileCache {
            entries: ofc.entries,
            valid: dur(&ofc.valid, "open_file_cache.valid")?,
            check: dur(&ofc.check, "open_file_cache.check")?,
            inline_bytes: ofc.inline_bytes.min(1 << 20),
            errors: ofc.errors,
        };
        let rl = &raw.log;
        let access = match rl.access.get_ref().as_str() {
            "off" => None,
            "stdout" => Some(crate::ops::accesslog::Target::Stdout),
            "" => return Err(invalid(rl.access.span(), "log.access", "empty path".into())),
            p => Some(crate::ops::accesslog::Target::File(base.join(p))),
        };
        let format = match rl.format.get_ref().as_str() {
            "combined" => crate::ops::accesslog::Format::Combined,
            "json" => crate::ops::accesslog::Format::Json,
            other => {
                return Err(invalid(
                    rl.format.span(),
                    "log.format",
                    format!("{other:?}: use \"combined\" or \"json\""),
                ))
            }
        };
        let level = rl
            .level
            .get_ref()
            .parse::<log::LevelFilter>()
            .map_err(|_| {
                invalid(
                    rl.level.span(),
                    "log.level",
                    format!(
                        "{:?}: use off, error, warn, info, debug or trace",
                        rl.level.get_ref()
                    ),
                )
            })?;
        let serve_hidden = match raw.hidden.get_ref().as_str() {
            "deny" => false,
            "allow" => true,
            other => {
                return Err(invalid(
                    raw.hidden.span(),
                    "hidden",
                    format!("{other:?}: use \"deny\" or \"allow\""),
                ))
            }
        };
        let metrics = match &raw.metrics.listen {
            None => None,
            Some(m) => Some(
                resolve_addr(m.get_ref())
                    .map_err(|msg| invalid(m.span(), "metrics.listen", msg))?,
            ),
        };
        let mut error_pages: Vec<(u16, Box<[u8]>)> = Vec::new();
        for (key, page) in &raw.error_pages.0 {
            let at = page.span();
            let status = key
                .parse::<u16>()
                .ok()
                .filter(|s| (400..=599).contains(s) && key.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| {
                    invalid(
                        at.clone(),
                        "error_pages",
                        format!("{key:?}: the key must be a status code 400..=599"),
                    )
                })?;
            check_page_path(page.get_ref()).map_err(|msg| {
                invalid(
                    at.clone(),
                    "error_pages",
                    format!("{key} = {:?}: {msg}", page.get_ref()),
                )
            })?;
            error_pages.push((status, page.get_ref().as_bytes().into()));
        }
        if raw.headers.len() > MAX_HEADER_RULES {
            return Err(invalid(
                raw.headers[MAX_HEADER_RULES].path.span(),
                "headers",
                format!("at most {MAX_HEADER_RULES} [[headers]] rules"),
            ));
        }
        let mut headers = Vec::with_capacity(raw.headers.len());
        for rule in &raw.headers {
            let pattern = PathPattern::parse(rule.path.get_ref()).map_err(|msg| {
                invalid(
                    rule.path.span(),
                    "headers.path",
                    format!("{:?}: {msg}", rule.path.get_ref()),
                )
            })?;
            let set = rule.set.get_ref();
            if set.0.is_empty() {
                return Err(invalid(
                    rule.set.span(),
                    "headers.set",
                    "sets no header".into(),
                ));
            }
            let mut block = Vec::new();
            for (name, value) in &set.0 {
                check_header(name, value.get_ref()).map_err(|msg| {
                    invalid(value.span(), "headers.set", format!("{name:?}: {msg}"))
                })?;
                block.extend_from_slice(name.as_bytes());
                block.extend_from_slice(b": ");
                block.extend_from_slice(value.get_ref().as_bytes());
                block.extend_from_slice(b"\r\n");
            }
            headers.push(HeaderRule {
                pattern,
                block: block.into(),
            });
        }
        let threads = match c.threads {
            Count::Auto => num_cpus::get().saturating_sub(1).max(1),
            Count::N(n) => n,
        };
        Ok(Config {
            listen,
            workers,
            root,
            index: raw.index,
            limits: Limits {
                backlog: l.backlog,
                max_connections: l.max_connections,
                max_request_line: l.max_request_line,
                max_header_bytes: l.max_header_bytes,
                max_body_bytes: l.max_body_bytes,
            },
            timeouts,
            compression: Compression {
                enabled: c.enabled,
                level: *c.level.get_ref(),
                min_bytes: c.min_bytes,
                types: c.types,
                threads,
                max_pending: c.max_pending,
                cache_bytes: c.cache_bytes,
                precompressed: c.precompressed,
                http10: c.http10,
            },
            open_file_cache,
            log: Log {
                access,
                format,
                level,
            },
            metrics,
            autoindex: raw.autoindex,
            serve_hidden,
            error_pages,
            headers: headers.into(),
            source: None,
        })
    }
}

/// Most `[[headers]]` rules (the router tracks matches in a u64).
pub const MAX_HEADER_RULES: usize = 64;

/// Headers vireo writes itself (or that frame the message): `[[headers]]` may not set them.
const RESERVED_HEADERS: &[&str] = &[
    "accept-ranges",
    "connection",
    "content-encoding",
    "content-length",
    "content-range",
    "content-type",
    "date",
    "etag",
    "keep-alive",
    "last-modified",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn check_header(name: &str, value: &str) -> Result<(), String> {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(tchar) {
        return Err("a header name must be a token (letters, digits, !#$%&'*+-.^_`|~)".into());
    }
    if RESERVED_HEADERS
        .iter()
        .any(|r| r.eq_ignore_ascii_case(name))
    {
        return Err("set by vireo itself; cannot be configured".into());
    }
    // field-value: no CR, LF, NUL or other control characters (HTAB is allowed inside).
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err("the value contains a control character (CR, LF, NUL, ...)".into());
    }
    if value.starts_with([' ', '\t']) || value.ends_with([' ', '\t']) {
        return Err("the value has leading or trailing whitespace".into());
    }
    Ok(())
}

/// An error page is a request path: '/'-rooted, no query, no dot-segment escaping the root.
fn check_page_path(p: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        return Err("must be a path under root starting with '/'".into());
    }
    if p.bytes()
        .any(|b| b <= b' ' || b == 0x7f || b == b'?' || b == b'#')
    {
        return Err("contains whitespace, a control character, '?' or '#'".into());
    }
    let mut scratch = Vec::new();
    match crate::http::path::normalize(p.as_bytes(), &mut scratch) {
        Ok(false) => Ok(()),
        Ok(true) => Err("names a directory, not a file".into()),
        Err(e) => Err(format!("not a valid path under root ({e})")),
    }
}

/// One `[[headers]]` rule: its pattern and its header lines, pre-rendered.
#[derive(Debug, Clone)]
pub struct HeaderRule {
    pub pattern: PathPattern,
    /// `Name: value\r\n` lines, sorted by name within the rule.
    pub block: Box<[u8]>,
}

/// A `[[headers]] path`. Without `*` it is a prefix of the request path (`/assets/`).
/// With `*` the whole path must match: `*` matches within one segment (never '/'), a
/// segment that is exactly `**` matches zero or more whole segments (`/**/*.js`,
/// `/assets/**`). Matched against the decoded, normalised request path (no query).
#[derive(Debug, Clone)]
pub enum PathPattern {
    Prefix(Box<[u8]>),
    Glob(Box<[GlobSeg]>),
}

#[derive(Debug, Clone)]
pub enum GlobSeg {
    /// `**`: any number of segments.
    Any,
    /// One segment; `*` in it matches any run of non-'/' bytes.
    One(Box<[u8]>),
}

impl PathPattern {
    pub fn parse(p: &str) -> Result<PathPattern, String> {
        if !p.starts_with('/') {
            return Err("must start with '/'".into());
        }
        if p.bytes()
            .any(|b| b <= b' ' || b == 0x7f || b == b'?' || b == b'#')
        {
            return Err("contains whitespace, a control character, '?' or '#'".into());
        }
        if !p.contains('*') {
            return Ok(PathPattern::Prefix(p.as_bytes().into()));
        }
        let mut segs = Vec::new();
        for seg in p.split('/') {
            if seg == "**" {
                // Consecutive `**` are one.
                if !matches!(segs.last(), Some(GlobSeg::Any)) {
                    segs.push(GlobSeg::Any);
                }
            } else if seg.contains("**") {
                return Err("`**` must be a whole segment (like /assets/**/x.js)".into());
            } else {
                segs.push(GlobSeg::One(seg.as_bytes().into()));
            }
        }
        Ok(PathPattern::Glob(segs.into()))
    }

    /// Does the raw request path match? No allocation; O(pattern * path) at worst.
    pub fn matches(&self, path: &[u8]) -> bool {
        match self {
            PathPattern::Prefix(p) => path.starts_with(p),
            PathPattern::Glob(segs) => glob_path(segs, path),
        }
    }
}

/// Segment-level wildcard match: `GlobSeg::One` consumes exactly one path segment, `Any`
/// zero or more. Greedy with a single backtrack point, like the classic `*` algorithm
/// (correct because every other token matches exactly one symbol).
fn glob_path(pat: &[GlobSeg], path: &[u8]) -> bool {
    let n = path.len();
    // The segment starting at `pos` and the start of the next one (`n + 1` = none left).
    let seg_at = |pos: usize| -> (&[u8], usize) {
        let end = path[pos..]
            .iter()
            .position(|&b| b == b'/')
            .map_or(n, |i| pos + i);
        (&path[pos..end], end + 1)
    };
    let (mut p, mut s) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if s > n {
            return pat[p..].iter().all(|g| matches!(g, GlobSeg::Any));
        }
        match pat.get(p) {
            Some(GlobSeg::Any) => {
                star = Some((p + 1, s));
                p += 1;
                continue;
            }
            Some(GlobSeg::One(g)) => {
                let (seg, next) = seg_at(s);
                if glob_segment(g, seg) {
                    p += 1;
                    s = next;
                    continue;
                }
            }
            None => {}
        }
        match star {
            Some((sp, ss)) => {
                let (_, next) = seg_at(ss);
                p = sp;
                s = next;
                star = Some((sp, next));
            }
            None => return false,
        }
    }
}

/// `*` wildcard match of one segment (no '/' on either side).
fn glob_segment(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if p < pat.len() && pat[p] == b'*' {
            star = Some((p + 1, i));
            p += 1;
        } else if p < pat.len() && pat[p] == s[i] {
            p += 1;
            i += 1;
        } else if let Some((sp, si)) = star {
            p = sp;
            i = si + 1;
            star = Some((sp, si + 1));
        } else {
            return false;
        }
    }
    pat[p..].iter().all(|&b| b == b'*')
}

fn resolve_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    // "localhost:8080" and friends: resolved once at start-up, never on the hot path.
    match s.to_socket_addrs() {
        Ok(mut it) => it
            .next()
            .ok_or_else(|| format!("{s:?} resolves to no address")),
        Err(e) => Err(format!("{s:?} is not HOST:PORT ({e})")),
    }
}

/// Longest duration accepted: deadlines are `Instant + duration`, which panics on
/// overflow, and nothing vireo waits for needs longer.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// "10s", "500ms", "2m", "1h", "0s", at most 1 year. A bare number is refused: units must
/// be explicit.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{s:?} needs a unit (ms, s, m, h)"))?;
    let (num, unit) = s.split_at(split);
    let too_long = || format!("{s:?} is too long: at most 1 year (8760h)");
    let n: u64 = num.parse().map_err(|e: std::num::ParseIntError| {
        if *e.kind() == std::num::IntErrorKind::PosOverflow {
            too_long()
        } else {
            format!("{s:?} is not a duration like \"10s\" or \"500ms\"")
        }
    })?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    };
    if d > MAX_DURATION {
        return Err(too_long());
    }
    Ok(d)
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("public")).expect("mkdir");
        Config::from_toml(text, dir.path(), "t.toml")
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = load("").expect("defaults");
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.limits.backlog, 4096);
        assert_eq!(c.timeouts.keepalive, Duration::from_secs(75));
        assert!(c.workers >= 1);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = load("[limits]\nmax_conections = 5\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_conections"), "{e}");
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn bad_duration_names_line_and_key() {
        let e = load("[timeouts]\nheader = \"10 parsecs\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("timeouts.header"), "{e}");
    }

    #[test]
    fn workers_accepts_auto_or_integer_only() {
        assert_eq!(load("workers = 3").expect("3").workers, 3);
        assert!(load("workers = \"two\"").is_err());
        assert!(load("workers = 0").is_err());
    }

    #[test]
    fn error_pages_are_validated() {
        let c =
            load("[error_pages]\n404 = \"/404.html\"\n500 = \"/err/500.html\"\n").expect("valid");
        assert_eq!(c.error_pages.len(), 2);
        assert_eq!(c.error_pages[0], (404, b"/404.html".to_vec().into()));
        for (text, needle) in [
            ("[error_pages]\n200 = \"/x.html\"\n", "\"200\""),
            ("[error_pages]\nabc = \"/x.html\"\n", "\"abc\""),
            ("[error_pages]\n\"+404\" = \"/x.html\"\n", "\"+404\""),
            ("[error_pages]\n404 = \"x.html\"\n", "404"),
            ("[error_pages]\n404 = \"/../x.html\"\n", "404"),
            ("[error_pages]\n404 = \"/errors/\"\n", "404"),
            ("[error_pages]\n404 = \"/a b\"\n", "404"),
            ("[error_pages]\n404 = \"/%zz\"\n", "404"),
        ] {
            let e = load(text).unwrap_err().to_string();
            assert!(
                e.contains("line 2") && e.contains("error_pages") && e.contains(needle),
                "{text}: {e}"
            );
        }
        assert!(load("[error_pages]\n404 = 5\n").is_err());
    }

    #[test]
    fn header_rules_are_validated_and_rendered() {
        let c = load(
            "[[headers]]\npath = \"/assets/\"\nset = { \"Cache-Control\" = \"public\", \"X-B\" = \"1\", \"X-A\" = \"2\" }\n",
        )
        .expect("valid");
        assert_eq!(
            &*c.headers[0].block,
            b"Cache-Control: public\r\nX-A: 2\r\nX-B: 1\r\n"
        );
        for (text, key) in [
            ("path = \"assets/\"\nset = { X = \"1\" }", "headers.path"),
            ("path = \"/a**/\"\nset = { X = \"1\" }", "headers.path"),
            ("path = \"/a\"\nset = { \"X Y\" = \"1\" }", "headers.set"),
            (
                "path = \"/a\"\nset = { X = \"a\\r\\nEvil: 1\" }",
                "headers.set",
            ),
            ("path = \"/a\"\nset = { X = \"a\\u0000\" }", "headers.set"),
            (
                "path = \"/a\"\nset = { \"Content-Length\" = \"1\" }",
                "headers.set",
            ),
            ("path = \"/a\"\nset = {}", "headers.set"),
        ] {
            let e = load(&format!("[[headers]]\n{text}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key) && e.contains("line"), "{text}: {e}");
        }
        assert!(load("[[headers]]\npath = \"/a\"\n").is_err());
        assert!(load("[[headers]]\npath = \"/a\"\nset = {X=\"1\"}\nother = 1\n").is_err());
    }

    #[test]
    fn path_patterns() {
        let m = |p: &str, s: &str| PathPattern::parse(p).expect(p).matches(s.as_bytes());
        assert!(m("/assets/", "/assets/app.js"));
        assert!(!m("/assets/", "/asset/app.js"));
        assert!(m("/", "/anything"));
        assert!(m("/*.js", "/app.js"));
        assert!(!m("/*.js", "/a/app.js"));
        assert!(!m("/*.js", "/app.json"));
        assert!(m("/**/*.js", "/app.js"));
        assert!(m("/**/*.js", "/a/b/c/app.min.js"));
        assert!(!m("/**/*.js", "/a/b/c/app.css"));
        assert!(m("/assets/**", "/assets/x/y/z"));
        assert!(m("/assets/**", "/assets/"));
        assert!(!m("/assets/**", "/other/x"));
        assert!(m("/a/*/c", "/a/bbb/c"));
        assert!(!m("/a/*/c", "/a/b/b/c"));
        assert!(m("/a/**/c/**/e", "/a/c/x/e"));
        assert!(m("/a/**/c/**/e", "/a/x/c/y/c/z/e"));
        assert!(!m("/a/**/c/**/e", "/a/x/c/y/e/z"));
        assert!(m("/*a*b*", "/xxaxxbxx"));
        assert!(!m("/*a*b*", "/xxbxxaxx"));
        // Long adversarial inputs stay fast (no exponential backtracking).
        let long = format!("/{}", "a/".repeat(4000));
        assert!(!m("/**/a/**/a/**/b", &long));
        let long = format!("/{}", "a".repeat(8000));
        assert!(!m("/*a*a*a*a*a*b", &long));
    }

    #[test]
    fn hidden_is_deny_or_allow() {
        assert!(!load("").expect("defaults").serve_hidden);
        assert!(!load("hidden = \"deny\"").expect("deny").serve_hidden);
        assert!(load("hidden = \"allow\"").expect("allow").serve_hidden);
        let e = load("\nhidden = \"yes\"").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("hidden"), "{e}");
        assert!(load("hidden = true").is_err());
    }

    #[test]
    fn autoindex_defaults_off() {
        assert!(!load("").expect("defaults").autoindex);
        assert!(load("autoindex = true").expect("on").autoindex);
        assert!(load("autoindex = \"yes\"").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("s").is_err());
        assert_eq!(parse_duration("8760h"), Ok(MAX_DURATION));
        for huge in [
            "8761h",
            "100000000000h",
            "18446744073709551615ms",
            "99999999999999999999s",
        ] {
            let e = parse_duration(huge).unwrap_err();
            assert!(e.contains("at most 1 year"), "{huge}: {e}");
        }
    }
}
