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
    pub access: Option<crate::accesslog::Target>,
    pub format: crate::accesslog::Format,
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
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawOpenFileCache {
    entries: usize,
    valid: Spanned<String>,
    inline_bytes: u64,
}

impl Default for RawOpenFileCache {
    fn default() -> Self {
        RawOpenFileCache {
            entries: 1024,
            valid: Spanned::new(0..0, "1s".into()),
            inline_bytes: 16384,
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
    /// Files up to this size are kept in memory and sent with the head in one writev.
    pub inline_bytes: u64,
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
            max_connections: 10_000,
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
            inline_bytes: ofc.inline_bytes.min(1 << 20),
        };
        let rl = &raw.log;
        let access = match rl.access.get_ref().as_str() {
            "off" => None,
            "stdout" => Some(crate::accesslog::Target::Stdout),
            "" => return Err(invalid(rl.access.span(), "log.access", "empty path".into())),
            p => Some(crate::accesslog::Target::File(base.join(p))),
        };
        let format = match rl.format.get_ref().as_str() {
            "combined" => crate::accesslog::Format::Combined,
            "json" => crate::accesslog::Format::Json,
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
        let metrics = match &raw.metrics.listen {
            None => None,
            Some(m) => Some(
                resolve_addr(m.get_ref())
                    .map_err(|msg| invalid(m.span(), "metrics.listen", msg))?,
            ),
        };
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
            source: None,
        })
    }
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

/// "10s", "500ms", "2m", "1h", "0s". A bare number is refused: units must be explicit.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{s:?} needs a unit (ms, s, m, h)"))?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like \"10s\" or \"500ms\""))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    };
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
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("s").is_err());
    }
}
