//! Configuration: the TOML file as written (`RawConfig`, a serde mirror that rejects unknown
//! keys) resolved into the `Config` the server runs with (canonical root, `Duration`s,
//! worker count, validated limits). Keeping the two apart means every later module reads
//! plain, already-checked values and never re-parses a string.
//!
//! One file per section, each with its raw mirror, its resolved form and the builder from
//! one to the other; `parse` holds what they share. Errors name the file, the line and
//! column, and the key: `vireo --check` is meant to be read by a person fixing a typo.
//!
//! This room uses std, serde, toml and `http` (pure bytes) only: every runtime module
//! may read the configuration, the configuration reads none of them.

mod auth;
mod compression;
mod files;
mod headers;
mod http2;
mod limits;
mod log_metrics;
mod parse;
mod proxy;
mod redirects;
mod site;
pub mod timeouts;
mod tls;
mod upstream;

pub use auth::{AuthRule, Users, MAX_AUTH_RULES, MAX_HTPASSWD_BYTES};
pub use compression::Compression;
pub use files::OpenFileCache;
pub use headers::{GlobSeg, HeaderRule, PathPattern, MAX_HEADER_RULES};
pub use http2::Http2;
pub use limits::Limits;
pub use log_metrics::{AccessFormat, AccessTarget, Log};
pub use parse::{parse_duration, ConfigError, Count, MAX_DURATION, MAX_LISTEN};
pub use proxy::{Cidr, ProxyRule, MAX_PROXY_RULES};
pub use redirects::{Redirect, MAX_REDIRECTS};
pub use site::{SiteConfig, MAX_SITES};
pub use timeouts::{TimeoutClass, Timeouts, CLASSES};
pub use tls::{CertPair, TlsConfig};
pub use upstream::{Balance, HashKey, HealthCheck, Upstream, UpstreamAddr, UpstreamServer};

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use toml::Spanned;

use parse::{unspanned, Entries, OneOrMany, Src};

/// Default config path, relative to the working directory.
pub const DEFAULT_PATH: &str = "config/vireo.toml";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    listen: Spanned<OneOrMany>,
    workers: Count,
    pin_workers: bool,
    root: Spanned<String>,
    index: Vec<String>,
    limits: limits::RawLimits,
    timeouts: timeouts::RawTimeouts,
    compression: compression::RawCompression,
    open_file_cache: files::RawOpenFileCache,
    log: log_metrics::RawLog,
    metrics: log_metrics::RawMetrics,
    autoindex: bool,
    hidden: Spanned<String>,
    error_pages: Entries<Spanned<String>>,
    headers: Vec<headers::RawHeaderRule>,
    redirects: Vec<redirects::RawRedirect>,
    fallback: Option<Spanned<String>>,
    auth: Vec<auth::RawAuth>,
    site: Vec<site::RawSite>,
    tls: Option<tls::RawTls>,
    http2: http2::RawHttp2,
    upstream: Vec<upstream::RawUpstream>,
    proxy: Vec<proxy::RawProxy>,
    trusted_proxies: Option<Spanned<Vec<String>>>,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            listen: Spanned::new(0..0, OneOrMany(vec![unspanned("127.0.0.1:8080")])),
            workers: Count::Auto,
            pin_workers: false,
            root: unspanned("public"),
            index: vec!["index.html".into()],
            limits: Default::default(),
            timeouts: Default::default(),
            compression: Default::default(),
            open_file_cache: Default::default(),
            log: Default::default(),
            metrics: Default::default(),
            autoindex: false,
            hidden: unspanned("deny"),
            error_pages: Entries::default(),
            headers: Vec::new(),
            redirects: Vec::new(),
            fallback: None,
            auth: Vec::new(),
            site: Vec::new(),
            tls: None,
            http2: Default::default(),
            upstream: Vec::new(),
            proxy: Vec::new(),
            trusted_proxies: None,
        }
    }
}

/// The validated configuration every other module reads.
#[derive(Debug, Clone)]
pub struct Config {
    /// Distinct, in file order; each gets one SO_REUSEPORT socket per reactor.
    pub listen: Vec<SocketAddr>,
    pub workers: usize,
    /// Reactor `i` on the `i`-th allowed CPU, its listeners steered there (`net::affinity`).
    pub pin_workers: bool,
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
    /// `[[redirects]]`, in file order (at most `MAX_REDIRECTS`): the first match answers.
    pub redirects: Arc<[Redirect]>,
    /// `fallback`: request path of the file that answers a GET/HEAD naming nothing.
    pub fallback: Option<Box<[u8]>>,
    /// `[[auth]]`, most specific first (longest literal prefix; at most `MAX_AUTH_RULES`).
    pub auth: Arc<[AuthRule]>,
    /// `[[site]]`, in file order (at most `MAX_SITES`); the fields above are the default
    /// site's.
    pub sites: Vec<SiteConfig>,
    /// `[tls]`: HTTPS listeners and certificates; None = no HTTPS.
    pub tls: Option<TlsConfig>,
    /// `[http2]`.
    pub http2: Http2,
    /// `[[upstream]]` sets, then one per distinct `pass` URL; shared by every site.
    pub upstreams: Arc<[Upstream]>,
    /// `[[proxy]]`, most specific first.
    pub proxy: Arc<[ProxyRule]>,
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

    /// Parse and validate TOML text; `file` is only used in messages. Sections are checked
    /// in a fixed order, so of several mistakes the same one is always reported.
    pub fn from_toml(text: &str, base: &Path, file: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: file.to_string(),
            msg: e.to_string().trim_end().to_string(),
        })?;
        let src = Src { text, file };
        let listen = src.listen(&raw.listen)?;
        let workers = match raw.workers {
            Count::Auto => num_cpus::get().max(1),
            Count::N(n) => n,
        };
        let root = files::root(&raw.root, base, &src)?;
        files::check_index(&raw.index, &src)?;
        let limits = raw.limits.build(&src)?;
        let timeouts = raw.timeouts.build(&src)?;
        let compression = raw.compression.build(&src)?;
        let open_file_cache = raw.open_file_cache.build(&src)?;
        let log = raw.log.build(base, &src)?;
        let serve_hidden = files::serve_hidden(&raw.hidden, &src)?;
        let metrics = raw.metrics.build(&src)?;
        let error_pages = files::error_pages(&raw.error_pages, &src)?;
        let headers = headers::build(&raw.headers, &src)?;
        let redirects = redirects::build_redirects(raw.redirects, &src)?;
        let fallback = files::fallback(raw.fallback.as_ref(), &root, &src)?;
        let auth = auth::build_auth(raw.auth, base, &src)?;
        let top = site::Inherited {
            root: &root,
            index: &raw.index,
            autoindex: raw.autoindex,
            serve_hidden,
        };
        let mut upstreams = upstream::build_upstreams(raw.upstream, &src)?;
        let trusted = proxy::trusted(raw.trusted_proxies.as_ref(), "trusted_proxies", &src)?;
        let proxies = proxy::build_proxies(
            raw.proxy,
            &mut upstreams,
            &trusted,
            limits.max_body_bytes,
            &src,
        )?;
        let shared = site::Shared {
            upstreams: &mut upstreams,
            trusted: &trusted,
            max_body: limits.max_body_bytes,
        };
        let sites = site::build_sites(raw.site, &top, shared, base, raw.tls.is_some(), &src)?;
        let http2 = raw.http2.build(&src)?;
        let tls = match raw.tls {
            Some(t) => Some(t.build(&listen, base, &src)?),
            None => None,
        };
        Ok(Config {
            listen,
            workers,
            pin_workers: raw.pin_workers,
            root,
            index: raw.index,
            limits,
            timeouts,
            compression,
            open_file_cache,
            log,
            metrics,
            autoindex: raw.autoindex,
            serve_hidden,
            error_pages,
            headers,
            redirects,
            fallback,
            auth,
            sites,
            tls,
            http2,
            upstreams: upstreams.into(),
            proxy: proxies,
            source: None,
        })
    }

    /// This configuration as site `s` sees it: the server-wide sections stay, the
    /// per-site ones are the site's (and it has no `[[site]]` of its own).
    pub fn for_site(&self, s: &SiteConfig) -> Config {
        Config {
            listen: self.listen.clone(),
            workers: self.workers,
            pin_workers: self.pin_workers,
            root: s.root.clone(),
            index: s.index.clone(),
            limits: self.limits.clone(),
            timeouts: self.timeouts.clone(),
            compression: self.compression.clone(),
            open_file_cache: self.open_file_cache.clone(),
            log: self.log.clone(),
            metrics: self.metrics,
            autoindex: s.autoindex,
            serve_hidden: s.serve_hidden,
            error_pages: s.error_pages.clone(),
            headers: Arc::clone(&s.headers),
            redirects: Arc::clone(&s.redirects),
            fallback: s.fallback.clone(),
            auth: Arc::clone(&s.auth),
            sites: Vec::new(),
            tls: self.tls.clone(),
            http2: self.http2.clone(),
            upstreams: Arc::clone(&self.upstreams),
            proxy: Arc::clone(&s.proxy),
            source: self.source.clone(),
        }
    }

    /// Every listening address: the plain ones, then the TLS ones (each reactor's
    /// listeners are in this order).
    pub fn all_listen(&self) -> Vec<SocketAddr> {
        let tls = self.tls.iter().flat_map(|t| t.listen.iter());
        self.listen.iter().chain(tls).copied().collect()
    }

    /// Is `addr` (as configured) a TLS listener?
    pub fn is_tls_listener(&self, addr: SocketAddr) -> bool {
        self.tls.as_ref().is_some_and(|t| t.listen.contains(&addr))
    }

    /// Does any site list directories / check passwords (the offload pool needs to)?
    pub fn any_autoindex(&self) -> bool {
        self.autoindex || self.sites.iter().any(|s| s.autoindex)
    }

    pub fn any_auth(&self) -> bool {
        !self.auth.is_empty() || self.sites.iter().any(|s| !s.auth.is_empty())
    }

    /// What is valid but worth a warning (logged at start and reload, printed by
    /// `--check`): today, htpasswd files that mix bcrypt costs.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        auth::warnings(&self.auth, &mut out);
        for s in &self.sites {
            auth::warnings(&s.auth, &mut out);
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;

    /// `text` against a fresh directory holding the default root, `public`.
    pub(crate) fn load(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("public")).expect("mkdir");
        Config::from_toml(text, dir.path(), "t.toml")
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = load("").expect("defaults");
        assert_eq!(c.listen, ["127.0.0.1:8080".parse().expect("addr")]);
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
    fn listen_is_a_string_or_a_list_of_distinct_addresses() {
        let one = load("listen = \"[::1]:80\"").expect("one");
        assert_eq!(one.listen, ["[::1]:80".parse().expect("addr")]);
        let two = load("listen = [\"0.0.0.0:8080\", \"[::]:8080\"]").expect("two");
        assert_eq!(two.listen.len(), 2);
        let e = load("listen = []").unwrap_err().to_string();
        assert!(e.contains("`listen`") && e.contains("at least one"), "{e}");
        let e = load("root = \"public\"\nlisten = [\"127.0.0.1:1\", \"127.0.0.1:1\"]")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 2, column 26") && e.contains("twice"),
            "{e}"
        );
        let e = load("listen = \"nowhere\"").unwrap_err().to_string();
        assert!(
            e.contains("line 1, column 10") && e.contains("HOST:PORT"),
            "{e}"
        );
        let e = load("listen = [\"127.0.0.1:1\", 2]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen"), "{e}");
        let many: Vec<String> = (1..=MAX_LISTEN + 1)
            .map(|p| format!("\"127.0.0.1:{p}\""))
            .collect();
        let e = load(&format!("listen = [{}]", many.join(",")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("at most"), "{e}");
    }

    #[test]
    fn workers_accepts_auto_or_integer_only() {
        assert_eq!(load("workers = 3").expect("3").workers, 3);
        assert!(load("workers = \"two\"").is_err());
        assert!(load("workers = 0").is_err());
    }
}
