//! `[[upstream]]`: named sets of servers the `[[proxy]]` rules send requests to, with how
//! to pick one (balance), how many idle connections each reactor keeps to each server,
//! the deadlines of an exchange and the passive health rule. Shared by every site.
//!
//! Server addresses are resolved here, once, at load (start, reload, `--check`): a
//! request never waits for DNS. `resolve` (periodic re-resolution) and `health` (active
//! checks) are acted on by `upstream::checker`, off the reactors.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

use super::parse::{resolve_addr, Src};
use super::ConfigError;

/// Most `[[upstream]]` tables, and servers in one.
pub const MAX_UPSTREAMS: usize = 1000;
pub const MAX_SERVERS: usize = 256;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    name: Spanned<String>,
    servers: Spanned<Vec<RawServer>>,
    #[serde(default = "d_resolve")]
    resolve: Spanned<String>,
    #[serde(default = "d_balance")]
    balance: Spanned<String>,
    #[serde(default = "d_hash")]
    hash: Spanned<String>,
    #[serde(default = "d_keepalive")]
    keepalive: Spanned<i64>,
    #[serde(default = "d_60s")]
    keepalive_timeout: Spanned<String>,
    #[serde(default = "d_keepalive_requests")]
    keepalive_requests: Spanned<i64>,
    #[serde(default = "d_5s")]
    connect_timeout: Spanned<String>,
    #[serde(default = "d_60s")]
    read_timeout: Spanned<String>,
    #[serde(default = "d_60s")]
    send_timeout: Spanned<String>,
    #[serde(default = "d_one")]
    max_fails: Spanned<i64>,
    #[serde(default = "d_10s")]
    fail_timeout: Spanned<String>,
    #[serde(default)]
    health: Option<RawHealth>,
    #[serde(default = "d_one")]
    retries: Spanned<i64>,
}

fn sp<T>(v: T) -> Spanned<T> {
    Spanned::new(0..0, v)
}
fn d_resolve() -> Spanned<String> {
    sp("0s".into())
}
fn d_balance() -> Spanned<String> {
    sp("round_robin".into())
}
fn d_hash() -> Spanned<String> {
    sp("client_ip".into())
}
fn d_keepalive() -> Spanned<i64> {
    sp(32)
}
fn d_keepalive_requests() -> Spanned<i64> {
    sp(1000)
}
fn d_one() -> Spanned<i64> {
    sp(1)
}
fn d_5s() -> Spanned<String> {
    sp("5s".into())
}
fn d_10s() -> Spanned<String> {
    sp("10s".into())
}
fn d_60s() -> Spanned<String> {
    sp("60s".into())
}

/// A server: `"host:port"`, `"unix:/path"`, or a table with weights and flags.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawServer {
    Addr(String),
    Table(RawServerTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServerTable {
    addr: String,
    #[serde(default = "one")]
    weight: i64,
    #[serde(default)]
    backup: bool,
    #[serde(default)]
    max_conns: i64,
}

fn one() -> i64 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    path: String,
    #[serde(default = "d_5s_plain")]
    interval: String,
    #[serde(default = "d_2s_plain")]
    timeout: String,
    #[serde(default = "d_200")]
    expect: i64,
}

fn d_5s_plain() -> String {
    "5s".into()
}
fn d_2s_plain() -> String {
    "2s".into()
}
fn d_200() -> i64 {
    200
}

/// Where a server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for UpstreamAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            UpstreamAddr::Tcp(a) => write!(f, "{a}"),
            UpstreamAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct UpstreamServer {
    pub addr: UpstreamAddr,
    /// As written (for logs and metrics labels).
    pub text: Box<str>,
    pub weight: u32,
    pub backup: bool,
    /// Most connections to it per reactor; 0 = no limit.
    pub max_conns: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// nginx's smooth weighted round robin.
    RoundRobin,
    LeastConn,
    Hash,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    ClientIp,
    Uri,
    Header(Box<str>),
}

/// `health`: the active check `upstream::checker` runs.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub path: Box<str>,
    pub interval: Duration,
    pub timeout: Duration,
    pub expect: u16,
}

#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: Box<str>,
    pub servers: Vec<UpstreamServer>,
    pub resolve: Duration,
    pub balance: Balance,
    pub hash: HashKey,
    /// Idle connections kept per reactor per server.
    pub keepalive: usize,
    pub keepalive_timeout: Duration,
    pub keepalive_requests: u32,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub send_timeout: Duration,
    pub max_fails: u32,
    pub fail_timeout: Duration,
    pub health: Option<HealthCheck>,
    pub retries: u32,
}

impl Upstream {
    /// The one-server set `pass = "http://host:port"` stands for (defaults otherwise).
    pub(super) fn single(name: String, addr: UpstreamAddr, text: &str) -> Upstream {
        Upstream {
            name: name.into(),
            servers: vec![UpstreamServer {
                addr,
                text: text.into(),
                weight: 1,
                backup: false,
                max_conns: 0,
            }],
            resolve: Duration::ZERO,
            balance: Balance::RoundRobin,
            hash: HashKey::ClientIp,
            keepalive: 32,
            keepalive_timeout: Duration::from_secs(60),
            keepalive_requests: 1000,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            max_fails: 1,
            fail_timeout: Duration::from_secs(10),
            health: None,
            retries: 1,
        }
    }
}

/// `"host:port"` or `"unix:/absolute/path"`.
pub(super) fn parse_server_addr(s: &str) -> Result<UpstreamAddr, String> {
    if let Some(p) = s.strip_prefix("unix:") {
        if !p.starts_with('/') {
            return Err(format!("{s:?}: a unix socket path must be absolute"));
        }
        return Ok(UpstreamAddr::Unix(PathBuf::from(p)));
    }
    if s.is_empty() || s.contains('/') {
        return Err(format!("{s:?} is not HOST:PORT or unix:/path"));
    }
    resolve_addr(s).map(UpstreamAddr::Tcp)
}

fn count(
    v: &Spanned<i64>,
    key: &'static str,
    range: std::ops::RangeInclusive<i64>,
    src: &Src,
) -> Result<i64, ConfigError> {
    let n = *v.get_ref();
    if !range.contains(&n) {
        let msg = format!("{n} is out of range ({}..={})", range.start(), range.end());
        return Err(src.invalid(v.span(), key, msg));
    }
    Ok(n)
}

pub(super) fn build_upstreams(
    raw: Vec<RawUpstream>,
    src: &Src,
) -> Result<Vec<Upstream>, ConfigError> {
    if let Some(u) = raw.get(MAX_UPSTREAMS) {
        let msg = format!("at most {MAX_UPSTREAMS} [[upstream]] tables");
        return Err(src.invalid(u.name.span(), "upstream", msg));
    }
    let mut out: Vec<Upstream> = Vec::with_capacity(raw.len());
    let mut lines: Vec<usize> = Vec::new();
    for u in raw {
        let name = u.name.get_ref();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        {
            let msg = format!("{name:?}: letters, digits, '_', '-' and '.' only");
            return Err(src.invalid(u.name.span(), "upstream.name", msg));
        }
        if let Some(i) = out.iter().position(|o| &*o.name == name.as_str()) {
            let msg = format!("{name:?} is already defined on line {}", lines[i]);
            return Err(src.invalid(u.name.span(), "upstream.name", msg));
        }
        let list = u.servers.get_ref();
        if list.is_empty() {
            return Err(src.invalid(
                u.servers.span(),
                "upstream.servers",
                "needs at least one server".into(),
            ));
        }
        if list.len() > MAX_SERVERS {
            let msg = format!("{} servers; at most {MAX_SERVERS}", list.len());
            return Err(src.invalid(u.servers.span(), "upstream.servers", msg));
        }
        let mut servers = Vec::with_capacity(list.len());
        for (i, s) in list.iter().enumerate() {
            let entry = |msg: String| {
                src.invalid(
                    u.servers.span(),
                    "upstream.servers",
                    format!("entry {}: {msg}", i + 1),
                )
            };
            let (text, weight, backup, max_conns) = match s {
                RawServer::Addr(a) => (a.as_str(), 1, false, 0),
                RawServer::Table(t) => (t.addr.as_str(), t.weight, t.backup, t.max_conns),
            };
            let addr = parse_server_addr(text).map_err(entry)?;
            if !(1..=1000).contains(&weight) {
                return Err(entry(format!("weight {weight} is out of range (1..=1000)")));
            }
            if !(0..=1_000_000).contains(&max_conns) {
                return Err(entry(format!(
                    "max_conns {max_conns} is out of range (0..=1000000)"
                )));
            }
            servers.push(UpstreamServer {
                addr,
                text: text.into(),
                weight: weight as u32,
                backup,
                max_conns: max_conns as u32,
            });
        }
        if servers.iter().all(|s| s.backup) {
            return Err(src.invalid(
                u.servers.span(),
                "upstream.servers",
                "every server is a backup: at least one must not be".into(),
            ));
        }
        let balance = match u.balance.get_ref().as_str() {
            "round_robin" => Balance::RoundRobin,
            "least_conn" => Balance::LeastConn,
            "hash" => Balance::Hash,
            other => {
                let msg = format!("{other:?}: round_robin, least_conn or hash");
                return Err(src.invalid(u.balance.span(), "upstream.balance", msg));
            }
        };
        let hash = match u.hash.get_ref().as_str() {
            "client_ip" => HashKey::ClientIp,
            "uri" => HashKey::Uri,
            h => match h.strip_prefix("header:") {
                Some(n) if !n.is_empty() && n.bytes().all(crate::http::token::is_tchar) => {
                    HashKey::Header(n.into())
                }
                _ => {
                    let msg = format!("{h:?}: client_ip, uri or header:NAME");
                    return Err(src.invalid(u.hash.span(), "upstream.hash", msg));
                }
            },
        };
        let health = match u.health {
            None => None,
            Some(h) => {
                let bad = |msg: String| src.invalid(u.name.span(), "upstream.health", msg);
                if !h.path.starts_with('/') {
                    return Err(bad(format!("path {:?} must start with '/'", h.path)));
                }
                Some(HealthCheck {
                    path: h.path.into(),
                    interval: super::parse_duration(&h.interval).map_err(bad)?,
                    timeout: super::parse_duration(&h.timeout).map_err(bad)?,
                    expect: u16::try_from(h.expect)
                        .ok()
                        .filter(|s| (100..600).contains(s))
                        .ok_or_else(|| bad(format!("expect {} is not a status", h.expect)))?,
                })
            }
        };
        let nonzero = |s: &Spanned<String>, key| -> Result<Duration, ConfigError> {
            let d = src.duration(s, key)?;
            if d.is_zero() {
                return Err(src.invalid(s.span(), key, "must be more than 0".into()));
            }
            Ok(d)
        };
        let (line, _) = src.line_col(u.name.span().start);
        lines.push(line);
        out.push(Upstream {
            name: name.as_str().into(),
            servers,
            resolve: src.duration(&u.resolve, "upstream.resolve")?,
            balance,
            hash,
            keepalive: count(&u.keepalive, "upstream.keepalive", 0..=65_536, src)? as usize,
            keepalive_timeout: nonzero(&u.keepalive_timeout, "upstream.keepalive_timeout")?,
            keepalive_requests: count(
                &u.keepalive_requests,
                "upstream.keepalive_requests",
                1..=u32::MAX as i64,
                src,
            )? as u32,
            connect_timeout: nonzero(&u.connect_timeout, "upstream.connect_timeout")?,
            read_timeout: nonzero(&u.read_timeout, "upstream.read_timeout")?,
            send_timeout: nonzero(&u.send_timeout, "upstream.send_timeout")?,
            max_fails: count(&u.max_fails, "upstream.max_fails", 0..=1_000_000, src)? as u32,
            fail_timeout: nonzero(&u.fail_timeout, "upstream.fail_timeout")?,
            health,
            retries: count(&u.retries, "upstream.retries", 0..=16, src)? as u32,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::config::tests::load;
    use crate::config::{Balance, UpstreamAddr};

    #[test]
    fn upstreams_and_proxies_are_read_and_resolved() {
        let c = load(
            "[[upstream]]\nname = \"app\"\nservers = [\"127.0.0.1:9000\", \"unix:/run/app.sock\", \
             { addr = \"127.0.0.1:9001\", weight = 3, backup = true, max_conns = 10 }]\n\
             balance = \"least_conn\"\nkeepalive = 4\nread_timeout = \"2s\"\n\
             [[proxy]]\npath = \"/api/\"\nupstream = \"app\"\n\
             [[proxy]]\npath = \"/api/v2/\"\npass = \"http://127.0.0.1:9100\"\nstrip_prefix = true\n\
             set_headers = { \"X-Req\" = \"1\" }\n",
        )
        .expect("valid");
        assert_eq!(c.upstreams.len(), 2);
        let u = &c.upstreams[0];
        assert_eq!(u.balance, Balance::LeastConn);
        assert_eq!(
            u.servers[1].addr,
            UpstreamAddr::Unix("/run/app.sock".into())
        );
        assert_eq!(
            (
                u.servers[2].weight,
                u.servers[2].backup,
                u.servers[2].max_conns
            ),
            (3, true, 10)
        );
        assert_eq!(u.read_timeout, std::time::Duration::from_secs(2));
        // Most specific first: /api/v2/ before /api/.
        assert_eq!(&*c.proxy[0].path, "/api/v2/");
        assert_eq!(c.proxy[0].upstream, 1);
        assert_eq!(&*c.proxy[0].set_headers, b"X-Req: 1\r\n");
        assert_eq!(c.proxy[0].strip_len(b"/api/v2/x"), 7);
    }

    #[test]
    fn check_names_the_line_of_each_mistake() {
        let cases = [
            ("[[proxy]]\npath = \"/\"\nupstream = \"nope\"\n", "line 3", "no [[upstream]] has this name"),
            ("[[upstream]]\nname = \"a\"\nservers = []\n", "line 3", "at least one server"),
            (
                "[[upstream]]\nname = \"a\"\nservers = [\"127.0.0.1:1\"]\n[[upstream]]\nname = \"a\"\nservers = [\"127.0.0.1:2\"]\n",
                "line 5",
                "already defined on line 2",
            ),
            ("[[upstream]]\nname = \"a\"\nservers = [\"127.0.0.1:1\", \"nowhere\"]\n", "entry 2", "not HOST:PORT"),
            ("[[upstream]]\nname = \"a\"\nservers = [\"unix:rel.sock\"]\n", "line 3", "absolute"),
            ("[[upstream]]\nname = \"a\"\nservers = [\"127.0.0.1:1\"]\nbalance = \"random\"\n", "line 4", "round_robin"),
            ("[[proxy]]\npath = \"/\"\npass = \"https://x:1\"\n", "line 3", "https is not supported"),
            ("[[proxy]]\npath = \"/\"\n", "line 2", "exactly one of"),
            (
                "[[proxy]]\npath = \"/\"\npass = \"http://127.0.0.1:1\"\nset_headers = { Host = \"x\" }\n",
                "line 4",
                "set by the proxy",
            ),
            ("[[proxy]]\npath = \"/\"\npass = \"http://127.0.0.1:1\"\nmax_body_bytes = 99999999999\n", "line 4", "limits.max_body_bytes"),
            ("trusted_proxies = [\"10.0.0.0/33\"]\n", "line 1", "prefix length"),
            ("[[upstream]]\nname = \"a\"\nservers = [\"127.0.0.1:1\"]\nkeepalive_timeout = \"0s\"\n", "line 4", "more than 0"),
        ];
        for (text, at, what) in cases {
            let e = load(text).expect_err(text).to_string();
            assert!(e.contains(at) && e.contains(what), "{text:?}: {e}");
        }
    }

    #[test]
    fn site_proxies_use_the_shared_upstreams() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("public")).expect("mkdir");
        let text = "[[upstream]]\nname = \"app\"\nservers = [\"127.0.0.1:9000\"]\n\
                    [[site]]\nhosts = [\"a.test\"]\nroot = \"public\"\n\
                    [[site.proxy]]\npath = \"/\"\nupstream = \"app\"\n";
        let c = crate::config::Config::from_toml(text, dir.path(), "t.toml").expect("valid");
        assert!(c.proxy.is_empty());
        assert_eq!(c.sites[0].proxy.len(), 1);
        assert_eq!(c.for_site(&c.sites[0]).upstreams.len(), 1);
    }

    #[test]
    fn cidrs_match_their_range() {
        let c = crate::config::Cidr::parse("10.1.0.0/16").expect("cidr");
        assert!(c.contains("10.1.200.3".parse().expect("ip")));
        assert!(!c.contains("10.2.0.1".parse().expect("ip")));
        assert!(c.contains("::ffff:10.1.0.9".parse().expect("ip")));
        let all = crate::config::Cidr::parse("::/0").expect("cidr");
        assert!(all.contains("2001:db8::1".parse().expect("ip")));
        assert!(crate::config::Cidr::parse("127.0.0.1")
            .expect("one")
            .contains("127.0.0.1".parse().expect("ip")));
    }
}
