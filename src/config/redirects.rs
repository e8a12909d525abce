//! `[[redirects]]`: old URLs sent elsewhere, before any file lookup. A function of one
//! section's rules, so a `[[site]]` can reuse it for its own `[[site.redirects]]`.

use serde::Deserialize;
use std::sync::Arc;
use toml::Spanned;

use super::headers::PathPattern;
use super::parse::Src;
use super::ConfigError;
use crate::http::path;

/// Most rules per site (each request scans them in order).
pub const MAX_REDIRECTS: usize = 1000;

/// Hops followed from each rule's target when looking for a loop at `--check`.
const MAX_HOPS: usize = 10;

/// One `[[redirects]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRedirect {
    from: Spanned<String>,
    to: Spanned<String>,
    #[serde(default = "default_status")]
    status: Spanned<i64>,
}

fn default_status() -> Spanned<i64> {
    Spanned::new(0..0, 301)
}

/// What a rule's `from` matches, against the decoded, normalised request path (with its
/// leading '/', and a trailing '/' for a directory), never the query.
#[derive(Debug, Clone)]
enum From {
    /// No `*` and no trailing '/': that path only.
    Exact(Box<[u8]>),
    /// Ending in '/' (a prefix, the rest is kept) or with `*` (a glob), as `[[headers]]`.
    Pattern(PathPattern),
}

/// One validated rule.
#[derive(Debug, Clone)]
pub struct Redirect {
    from: From,
    /// `to` without its query, percent-encoded where needed: a path starting with exactly
    /// one '/', or an absolute http(s) URL. For a prefix rule it ends with '/'.
    pub to: Box<[u8]>,
    /// `to`'s own query (after '?'); when set, the request's query is dropped.
    pub query: Option<Box<[u8]>>,
    /// 301, 302, 303, 307 or 308.
    pub status: u16,
    /// `to` as a decoded, normalised path (None for a URL): what a browser would ask next.
    next: Option<Vec<u8>>,
    /// A whole-host `redirect`: answers every method, like nginx's `return 301` (the other
    /// rules apply to the GET/HEAD the router serves).
    pub any_method: bool,
}

impl Redirect {
    pub fn matches(&self, path: &[u8]) -> bool {
        match &self.from {
            From::Exact(p) => **p == *path,
            From::Pattern(p) => p.matches(path),
        }
    }

    /// For a prefix rule, what follows the prefix in a path it matches (appended to `to`,
    /// encoded); None for exact and glob rules, which redirect to `to` as written.
    pub fn rest<'p>(&self, path: &'p [u8]) -> Option<&'p [u8]> {
        match &self.from {
            From::Pattern(PathPattern::Prefix(p)) => path.get(p.len()..),
            _ => None,
        }
    }

    /// The path a browser asks for after this redirect of `path` (None: another host).
    fn follow(&self, path: &[u8]) -> Option<Vec<u8>> {
        let mut next = self.next.clone()?;
        next.extend_from_slice(self.rest(path).unwrap_or_default());
        Some(next)
    }
}

/// Validate the rules, in file order; the first matching rule wins at run time.
pub(super) fn build_redirects(
    raw: Vec<RawRedirect>,
    src: &Src,
) -> Result<Arc<[Redirect]>, ConfigError> {
    if raw.len() > MAX_REDIRECTS {
        return Err(src.invalid(
            raw[MAX_REDIRECTS].from.span(),
            "redirects",
            format!("at most {MAX_REDIRECTS} [[redirects]] rules"),
        ));
    }
    let mut rules = Vec::with_capacity(raw.len());
    for r in &raw {
        let from = parse_from(r.from.get_ref())
            .map_err(|msg| src.invalid(r.from.span(), "redirects.from", msg))?;
        let prefix = matches!(from, From::Pattern(PathPattern::Prefix(_)));
        let (to, query, next) = parse_to(r.to.get_ref(), prefix)
            .map_err(|msg| src.invalid(r.to.span(), "redirects.to", msg))?;
        let status = match *r.status.get_ref() {
            s @ (301 | 302 | 303 | 307 | 308) => s as u16,
            s => {
                return Err(src.invalid(
                    r.status.span(),
                    "redirects.status",
                    format!("{s}: use 301, 302, 303, 307 or 308"),
                ))
            }
        };
        rules.push(Redirect {
            from,
            to,
            query,
            status,
            next,
            any_method: false,
        });
    }
    for (i, r) in raw.iter().enumerate() {
        if let Some(msg) = find_loop(&rules, i) {
            return Err(src.invalid(r.to.span(), "redirects.to", msg));
        }
    }
    Ok(rules.into())
}

/// A `[[site]] redirect`: an absolute http(s) URL without query, as one prefix rule from
/// `/`, so every request keeps its path and query (301).
pub(super) fn whole_host(url: &Spanned<String>, src: &Src) -> Result<Arc<[Redirect]>, ConfigError> {
    let u = url.get_ref();
    let bad = |msg: String| src.invalid(url.span(), "site.redirect", msg);
    let lower = u.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(bad(format!("{u:?}: must be an http(s):// URL")));
    }
    if u.contains('?') {
        return Err(bad(format!(
            "{u:?}: the request's own query is kept; give none"
        )));
    }
    let mut to = u.trim_end_matches('/').to_string();
    to.push('/');
    let (to, query, next) = parse_to(&to, true).map_err(bad)?;
    Ok(Arc::from(vec![Redirect {
        from: From::Pattern(PathPattern::Prefix(b"/".to_vec().into())),
        to,
        query,
        status: 301,
        next,
        any_method: true,
    }]))
}

/// `from`: like a `[[headers]] path`, plus exact paths. Request paths are normalised, so a
/// `from` with an empty segment inside (`//`) or a `.` or `..` segment can never match:
/// that is refused rather than silently never applied.
fn parse_from(p: &str) -> Result<From, String> {
    let pattern = PathPattern::parse(p).map_err(|msg| format!("{p:?}: {msg}"))?;
    let segs: Vec<&str> = p.split('/').collect();
    let last = segs.len() - 1;
    let dead = segs
        .iter()
        .enumerate()
        .any(|(i, s)| (s.is_empty() && i != 0 && i != last) || *s == "." || *s == "..");
    if dead {
        return Err(format!(
            "{p:?} can never match: request paths are normalised (no `//`, `.` or `..` segments)"
        ));
    }
    Ok(match pattern {
        PathPattern::Prefix(_) if !p.ends_with('/') => From::Exact(p.as_bytes().into()),
        pattern => From::Pattern(pattern),
    })
}

type To = (Box<[u8]>, Option<Box<[u8]>>, Option<Vec<u8>>);

/// `to`: a path (one leading '/') or an absolute http(s) URL, optionally with a query;
/// percent-encoded where a URI needs it. A prefix rule's `to` must end with '/', so that
/// the rest of the path is appended as a whole segment.
fn parse_to(to: &str, prefix: bool) -> Result<To, String> {
    if to.bytes().any(|b| b < b' ' || b == 0x7f) {
        return Err(format!("{to:?} contains a control character"));
    }
    if to.contains('#') {
        return Err(format!("{to:?}: a fragment ('#') is not supported"));
    }
    let (base, query) = match to.split_once('?') {
        Some((b, q)) => (b, Some(encode(q).into_boxed_slice())),
        None => (to, None),
    };
    let lower = base.to_ascii_lowercase();
    let url = lower.starts_with("http://") || lower.starts_with("https://");
    let next = if url {
        let after = &base[base.find("//").map_or(0, |i| i + 2)..];
        let host = after.split('/').next().unwrap_or_default();
        if host.is_empty() || host.contains(' ') {
            return Err(format!("{to:?}: the URL has no host"));
        }
        if prefix && !(after.len() > host.len() && base.ends_with('/')) {
            return Err(format!(
                "{to:?}: a prefix `from` (ending in '/') needs a `to` whose path ends in '/'"
            ));
        }
        None
    } else {
        if !base.starts_with('/') || base.starts_with("//") {
            return Err(format!(
                "{to:?}: must be a path starting with one '/' or an http(s):// URL"
            ));
        }
        if prefix && !base.ends_with('/') {
            return Err(format!(
                "{to:?}: a prefix `from` (ending in '/') needs a `to` ending in '/'"
            ));
        }
        let encoded = encode(base);
        let mut rel = Vec::new();
        let dir = path::normalize(&encoded, &mut rel)
            .map_err(|e| format!("{to:?} is not a valid path ({e})"))?;
        let mut next = Vec::with_capacity(rel.len() + 2);
        next.push(b'/');
        next.extend_from_slice(&rel);
        if dir && !rel.is_empty() {
            next.push(b'/');
        }
        Some(next)
    };
    Ok((encode(base).into_boxed_slice(), query, next))
}

/// Percent-encode what a URI may not hold as written (space, non-ASCII, `"<>\^`{|}`),
/// leaving '%' and reserved characters as the configuration wrote them.
fn encode(s: &str) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%[]".contains(&b) {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
    out
}

/// A loop visible without a request: from rule `i`'s own target, follow the first
/// matching rule a few hops; coming back to rule `i` is a loop (at the first hop, a
/// redirect to itself; a prefix rule whose target is under its own prefix grows forever).
fn find_loop(rules: &[Redirect], i: usize) -> Option<String> {
    let mut at = rules[i].next.clone()?;
    for hop in 0..MAX_HOPS {
        let j = rules.iter().position(|r| r.matches(&at))?;
        let shown = String::from_utf8_lossy(&at).into_owned();
        if j == i {
            return Some(if hop == 0 {
                format!("redirects to itself ({shown:?} matches this rule's `from`)")
            } else {
                format!("redirect loop: {shown:?} comes back to this rule")
            });
        }
        at = rules[j].follow(&at)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::tests::load;

    fn rule(from: &str, to: &str) -> String {
        format!("[[redirects]]\nfrom = {from:?}\nto = {to:?}\n")
    }

    fn err(text: &str) -> String {
        load(text).unwrap_err().to_string()
    }

    #[test]
    fn forms_and_targets() {
        let c = load(&(rule("/blog/", "/posts/") + &rule("/old", "https://x.example/new?a=1")))
            .expect("valid");
        let r = &c.redirects;
        assert_eq!(r[0].status, 301);
        assert!(r[0].matches(b"/blog/2024/x") && r[0].matches(b"/blog/"));
        assert_eq!(r[0].rest(b"/blog/2024/x"), Some(&b"2024/x"[..]));
        assert!(r[1].matches(b"/old") && !r[1].matches(b"/old/") && !r[1].matches(b"/older"));
        assert_eq!(r[1].rest(b"/old"), None);
        assert_eq!(&*r[1].to, b"https://x.example/new");
        assert_eq!(r[1].query.as_deref(), Some(&b"a=1"[..]));
        let c = load(&rule("/**/*.php", "/ünï code/x y")).expect("valid");
        assert!(c.redirects[0].matches(b"/a/b.php"));
        assert_eq!(&*c.redirects[0].to, b"/%C3%BCn%C3%AF%20code/x%20y");
    }

    #[test]
    fn statuses() {
        for s in [301, 302, 303, 307, 308] {
            let c = load(&format!("{}status = {s}\n", rule("/a", "/b"))).expect("status");
            assert_eq!(c.redirects[0].status, s);
        }
        for s in ["300", "304", "200", "0", "-1", "\"301\""] {
            assert!(load(&format!("{}status = {s}\n", rule("/a", "/b"))).is_err());
        }
        let e = err(&format!("{}status = 305\n", rule("/a", "/b")));
        assert!(
            e.contains("line 4") && e.contains("redirects.status"),
            "{e}"
        );
    }

    #[test]
    fn bad_rules_are_named() {
        for (text, key) in [
            (rule("/a", "/a"), "redirects.to"),
            (rule("/a/", "/a/b/"), "redirects.to"),
            (rule("/*.php", "/index.php"), "redirects.to"),
            (rule("/a", "/x/../a"), "redirects.to"),
            (rule("/a", "b"), "redirects.to"),
            (rule("/a", "//evil.example/"), "redirects.to"),
            (rule("/a", "ftp://x/"), "redirects.to"),
            (rule("/a", "https:///x"), "redirects.to"),
            (rule("/a", "/b#frag"), "redirects.to"),
            (rule("/a", "/b\r\nX: 1"), "redirects.to"),
            (rule("/a", "/%zz"), "redirects.to"),
            (rule("/a", "/../x"), "redirects.to"),
            (rule("/a/", "/b"), "redirects.to"),
            (rule("/a/", "https://x.example"), "redirects.to"),
            (rule("a", "/b"), "redirects.from"),
            (rule("/a?x", "/b"), "redirects.from"),
            (rule("/a//*.js", "/b"), "redirects.from"),
            (rule("/a/./*.js", "/b"), "redirects.from"),
            (rule("/**/../x", "/b"), "redirects.from"),
            (rule("/a/..", "/b"), "redirects.from"),
            (rule("/a**", "/b"), "redirects.from"),
        ] {
            let e = err(&text);
            assert!(e.contains(key) && e.contains("line"), "{text}: {e}");
        }
        // A loop through two rules, seen from the first.
        let e = err(&(rule("/a", "/b") + &rule("/b", "/a")));
        assert!(e.contains("line 3") && e.contains("loop"), "{e}");
        // Not a loop: the target is claimed by an earlier rule that goes elsewhere.
        load(&(rule("/a/x/", "/done/") + &rule("/a/", "/a/x/"))).expect("no loop");
        assert!(load(&rule("/a", "/b").replace("to", "too")).is_err());
        let many: String = (0..1001).map(|i| rule(&format!("/r{i}"), "/x")).collect();
        let e = err(&many);
        assert!(e.contains("at most 1000") && e.contains("line 3002"), "{e}");
        let ok: String = (0..1000).map(|i| rule(&format!("/r{i}"), "/x")).collect();
        assert_eq!(load(&ok).expect("1000 rules").redirects.len(), 1000);
    }
}
