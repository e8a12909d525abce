//! `[[site]]`: virtual hosts. Each site has its own root and file rules, built by the same
//! section builders as the top-level keys (which form the default site, answering any
//! Host no `[[site]]` claims). A site with `redirect` sends its whole host elsewhere.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use toml::Spanned;

use super::parse::{Entries, Src};
use super::tls::RawCertPair;
use super::{
    auth, files, headers, redirects, AuthRule, CertPair, ConfigError, HeaderRule, Redirect,
};

/// Most `[[site]]` tables (each costs a `Site`, with its own caches, per reactor).
pub const MAX_SITES: usize = 1000;

/// One `[[site]]` table. `index`, `autoindex` and `hidden` left out take the top level's
/// values (as nginx `server` blocks inherit http-level `index` and `autoindex`); the other
/// keys are the site's own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSite {
    hosts: Spanned<Vec<Spanned<String>>>,
    root: Option<Spanned<String>>,
    index: Option<Vec<String>>,
    autoindex: Option<bool>,
    hidden: Option<Spanned<String>>,
    fallback: Option<Spanned<String>>,
    #[serde(default)]
    error_pages: Entries<Spanned<String>>,
    #[serde(default)]
    headers: Vec<headers::RawHeaderRule>,
    #[serde(default)]
    redirects: Vec<redirects::RawRedirect>,
    #[serde(default)]
    auth: Vec<auth::RawAuth>,
    #[serde(default)]
    proxy: Vec<super::proxy::RawProxy>,
    redirect: Option<Spanned<String>>,
    tls: Option<Spanned<RawCertPair>>,
}

/// What one site serves: the top-level keys of the same names, per site.
#[derive(Debug, Clone)]
pub struct SiteConfig {
    /// Lower case, without a trailing dot; a wildcard keeps its leading `*.`.
    pub hosts: Vec<String>,
    /// Canonical, existing directory (a redirect site has the default site's).
    pub root: PathBuf,
    pub index: Vec<String>,
    pub autoindex: bool,
    pub serve_hidden: bool,
    pub error_pages: Vec<(u16, Box<[u8]>)>,
    pub headers: Arc<[HeaderRule]>,
    /// For a `redirect` site, the one rule sending every path to the target.
    pub redirects: Arc<[Redirect]>,
    pub fallback: Option<Box<[u8]>>,
    pub auth: Arc<[AuthRule]>,
    /// `[[site.proxy]]`, most specific first (upstream sets are the top level's).
    pub proxy: Arc<[super::ProxyRule]>,
    /// The certificate SNI picks for this site's names; None = `[tls]`'s default.
    pub tls: Option<CertPair>,
}

/// What a `[[site]]` takes from the top level: the default site's root (for a redirect
/// site, which serves no files) and the keys it inherits when it leaves them out.
pub(super) struct Inherited<'a> {
    pub root: &'a Path,
    pub index: &'a [String],
    pub autoindex: bool,
    pub serve_hidden: bool,
}

/// What every site's `[[site.proxy]]` rules resolve against.
pub(super) struct Shared<'a> {
    pub upstreams: &'a mut Vec<super::Upstream>,
    pub trusted: &'a Arc<[super::Cidr]>,
    pub max_body: u64,
}

/// Validate every `[[site]]`: its sections, its names (well-formed, each claimed once).
/// `has_tls`: the file has a `[tls]` section (a site's `tls` needs its listeners).
pub(super) fn build_sites(
    raw: Vec<RawSite>,
    top: &Inherited,
    mut shared: Shared,
    base: &Path,
    has_tls: bool,
    src: &Src,
) -> Result<Vec<SiteConfig>, ConfigError> {
    if let Some(s) = raw.get(MAX_SITES) {
        let msg = format!("{} [[site]] tables; at most {MAX_SITES}", raw.len());
        return Err(src.invalid(s.hosts.span(), "site", msg));
    }
    // Every name seen so far: (name, site number from 1, its span).
    let mut claimed: std::collections::HashMap<String, (usize, std::ops::Range<usize>)> =
        std::collections::HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, s) in raw.into_iter().enumerate() {
        let n = i + 1;
        if s.hosts.get_ref().is_empty() {
            let msg = "needs at least one name".to_string();
            return Err(src.invalid(s.hosts.span(), "site.hosts", msg));
        }
        let mut hosts = Vec::with_capacity(s.hosts.get_ref().len());
        for h in s.hosts.get_ref() {
            let name = host_pattern(h.get_ref())
                .map_err(|msg| src.invalid(h.span(), "site.hosts", msg))?;
            if let Some((m, at)) = claimed.get(&name) {
                let (line, _) = src.line_col(at.start);
                let msg = format!(
                    "{name:?} is claimed twice: by [[site]] #{m} (line {line}) and by \
                     [[site]] #{n}"
                );
                return Err(src.invalid(h.span(), "site.hosts", msg));
            }
            claimed.insert(name.clone(), (n, h.span()));
            hosts.push(name);
        }
        let tls = match &s.tls {
            Some(t) if !has_tls => {
                let msg = "a site's certificate needs a [tls] section (listeners and the \
                           default certificate)"
                    .to_string();
                return Err(src.invalid(t.span(), "site.tls", msg));
            }
            Some(t) => Some(t.get_ref().resolve(base)),
            None => None,
        };
        let mut site = build_one(s, hosts, top, &mut shared, base, src)?;
        site.tls = tls;
        out.push(site);
    }
    Ok(out)
}

fn build_one(
    s: RawSite,
    hosts: Vec<String>,
    top: &Inherited,
    shared: &mut Shared,
    base: &Path,
    src: &Src,
) -> Result<SiteConfig, ConfigError> {
    if let Some(to) = &s.redirect {
        let serves = s.root.is_some()
            || s.index.is_some()
            || s.autoindex.is_some()
            || s.hidden.is_some()
            || s.fallback.is_some()
            || !s.error_pages.0.is_empty()
            || !s.headers.is_empty()
            || !s.redirects.is_empty()
            || !s.auth.is_empty()
            || !s.proxy.is_empty();
        if serves {
            let msg = "a site with `redirect` serves no files: drop its other keys".to_string();
            return Err(src.invalid(to.span(), "site.redirect", msg));
        }
        return Ok(SiteConfig {
            hosts,
            root: top.root.to_path_buf(),
            index: Vec::new(),
            autoindex: false,
            serve_hidden: false,
            error_pages: Vec::new(),
            headers: Arc::from(Vec::new()),
            redirects: redirects::whole_host(to, src)?,
            fallback: None,
            auth: Arc::from(Vec::new()),
            proxy: Arc::from(Vec::new()),
            tls: None,
        });
    }
    let Some(root) = &s.root else {
        let msg = "needs `root` (or `redirect`)".to_string();
        return Err(src.invalid(s.hosts.span(), "site", msg));
    };
    let root = files::root(root, base, src)?;
    let index = s.index.unwrap_or_else(|| top.index.to_vec());
    files::check_index(&index, src)?;
    let serve_hidden = match &s.hidden {
        Some(h) => files::serve_hidden(h, src)?,
        None => top.serve_hidden,
    };
    Ok(SiteConfig {
        hosts,
        index,
        autoindex: s.autoindex.unwrap_or(top.autoindex),
        serve_hidden,
        error_pages: files::error_pages(&s.error_pages, src)?,
        headers: headers::build(&s.headers, src)?,
        redirects: redirects::build_redirects(s.redirects, src)?,
        fallback: files::fallback(s.fallback.as_ref(), &root, src)?,
        auth: auth::build_auth(s.auth, base, src)?,
        proxy: super::proxy::build_proxies(
            s.proxy,
            shared.upstreams,
            shared.trusted,
            shared.max_body,
            src,
        )?,
        root,
        tls: None,
    })
}

/// A name as `hosts` lists it: a host name, an IP literal (`[::1]` for IPv6) or `*.`
/// followed by a name. Returned in lower case without a trailing dot, as requests are
/// matched.
fn host_pattern(raw: &str) -> Result<String, String> {
    let lower = raw.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    if name.starts_with('[') {
        let ok = name.ends_with(']')
            && name.len() > 2
            && name[1..name.len() - 1]
                .parse::<std::net::Ipv6Addr>()
                .is_ok();
        return if ok {
            Ok(name.to_string())
        } else {
            Err(format!("{raw:?} is not an IPv6 literal like \"[::1]\""))
        };
    }
    let rest = name.strip_prefix("*.").unwrap_or(name);
    if rest.contains('*') {
        return Err(format!(
            "{raw:?}: a wildcard is one leading \"*.\" followed by a name, like \"*.example.org\""
        ));
    }
    if rest.contains(':') {
        return Err(format!(
            "{raw:?}: names have no port (a Host is matched by name on every listener)"
        ));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if rest.is_empty() || rest.len() > 253 || !rest.split('.').all(label_ok) {
        return Err(format!(
            "{raw:?} is not a host name (letters, digits, '-' and '_' in dot-separated labels)"
        ));
    }
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::super::tests::load;
    use super::host_pattern;

    #[test]
    fn host_patterns() {
        assert_eq!(host_pattern("Example.ORG.").as_deref(), Ok("example.org"));
        assert_eq!(
            host_pattern("*.example.org").as_deref(),
            Ok("*.example.org")
        );
        assert_eq!(host_pattern("[::1]").as_deref(), Ok("[::1]"));
        assert_eq!(host_pattern("127.0.0.1").as_deref(), Ok("127.0.0.1"));
        for bad in [
            "*.", "*", "a.*.b", "**.x", "*x.org", "a..b", "", ".", "a.org:80", "[x]", "a b",
        ] {
            assert!(host_pattern(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sites_are_validated_in_place() {
        let c = load("[[site]]\nhosts = [\"a.org\"]\nroot = \"public\"\n").expect("valid");
        assert_eq!(c.sites.len(), 1);
        assert_eq!(c.sites[0].index, ["index.html"]);
        let e = load("[[site]]\nhosts = [\"a.org\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("root"), "{e}");
        let e = load("[[site]]\nhosts = []\nroot = \"public\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least one"), "{e}");
        let e = load(
            "[[site]]\nhosts = [\"a.org\"]\nroot = \"public\"\n\
             [[site]]\nhosts = [\"b.org\", \"A.org.\"]\nroot = \"public\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("line 5") && e.contains("#1 (line 2)") && e.contains("#2"),
            "{e}"
        );
        let e = load(
            "[[site]]\nhosts = [\"w.org\"]\nredirect = \"https://a.org\"\nroot = \"public\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("redirect"), "{e}");
        let e = load("[[site]]\nhosts = [\"w.org\"]\nredirect = \"/x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("redirect"), "{e}");
        let e = load(
            "[[site]]\nhosts = [\"w.org\"]\nroot = \"public\"\n\
             tls = { cert = \"c.pem\", key = \"k.pem\" }\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("line 4") && e.contains("site.tls") && e.contains("[tls]"),
            "{e}"
        );
        let tls = "[tls]\nlisten = \"127.0.0.1:0\"\ncert = \"d.pem\"\nkey = \"d.key\"\n";
        let e = load(&format!(
            "{tls}[[site]]\nhosts = [\"w.org\"]\nroot = \"public\"\n\
             tls = {{ cert = \"c.pem\", key = \"k.pem\", chain = \"x\" }}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("chain"), "{e}");
        let c = load(&format!(
            "{tls}[[site]]\nhosts = [\"w.org\"]\nredirect = \"https://a.org\"\n\
             tls = {{ cert = \"c/c.pem\", key = \"k.pem\" }}\n"
        ))
        .expect("a redirect site may have a certificate");
        let pair = c.sites[0].tls.as_ref().expect("tls");
        assert!(
            pair.cert.ends_with("c/c.pem") && pair.cert.is_absolute(),
            "{pair:?}"
        );
        let e = load("[[site]]\nhosts = [\"w.org\"]\nroot = \"public\"\nbogus = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn index_autoindex_and_hidden_are_inherited_unless_set() {
        let top = "index = [\"home.html\"]\nautoindex = true\nhidden = \"allow\"\n";
        let c = load(&format!(
            "{top}[[site]]\nhosts = [\"a.org\"]\nroot = \"public\"\n\
             [[site]]\nhosts = [\"b.org\"]\nroot = \"public\"\nindex = [\"i.htm\"]\n\
             autoindex = false\nhidden = \"deny\"\n"
        ))
        .expect("valid");
        let (a, b) = (&c.sites[0], &c.sites[1]);
        assert_eq!(
            (&a.index[..], a.autoindex, a.serve_hidden),
            (&["home.html".to_string()][..], true, true)
        );
        assert_eq!(
            (&b.index[..], b.autoindex, b.serve_hidden),
            (&["i.htm".to_string()][..], false, false)
        );
        // The inherited values reach the site's own configuration.
        let sc = c.for_site(a);
        assert!(sc.autoindex && sc.serve_hidden && sc.index == ["home.html"]);
    }
}
