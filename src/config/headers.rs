//! `[[headers]]`: response headers set by path, with prefix or glob patterns.

use serde::Deserialize;
use std::sync::Arc;
use toml::Spanned;

use super::parse::{Entries, Src};
use super::ConfigError;
use crate::http::token::is_token;

/// One `[[headers]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHeaderRule {
    path: Spanned<String>,
    set: Spanned<Entries<Spanned<String>>>,
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

/// One `[[headers]]` rule: its pattern and its header lines, pre-rendered.
#[derive(Debug, Clone)]
pub struct HeaderRule {
    pub pattern: PathPattern,
    /// `Name: value\r\n` lines, sorted by name within the rule.
    pub block: Box<[u8]>,
}

/// Validate the rules and render each one's header lines, in file order.
pub(super) fn build(raw: &[RawHeaderRule], src: &Src) -> Result<Arc<[HeaderRule]>, ConfigError> {
    if raw.len() > MAX_HEADER_RULES {
        return Err(src.invalid(
            raw[MAX_HEADER_RULES].path.span(),
            "headers",
            format!("at most {MAX_HEADER_RULES} [[headers]] rules"),
        ));
    }
    let mut headers = Vec::with_capacity(raw.len());
    for rule in raw {
        let pattern = PathPattern::parse(rule.path.get_ref()).map_err(|msg| {
            src.invalid(
                rule.path.span(),
                "headers.path",
                format!("{:?}: {msg}", rule.path.get_ref()),
            )
        })?;
        let set = rule.set.get_ref();
        if set.0.is_empty() {
            return Err(src.invalid(rule.set.span(), "headers.set", "sets no header".into()));
        }
        let mut block = Vec::new();
        for (name, value) in &set.0 {
            check_header(name, value.get_ref()).map_err(|msg| {
                src.invalid(value.span(), "headers.set", format!("{name:?}: {msg}"))
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
    Ok(headers.into())
}

fn check_header(name: &str, value: &str) -> Result<(), String> {
    if !is_token(name.as_bytes()) {
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

/// Whitespace, a control character, '?' or '#': never part of a configured request path
/// (a request path is matched without its query, and sent without a fragment).
pub(super) fn has_unsafe_byte(p: &str) -> bool {
    p.bytes()
        .any(|b| b <= b' ' || b == 0x7f || b == b'?' || b == b'#')
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
        if has_unsafe_byte(p) {
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
        self.matches_as(path, false)
    }

    /// Like `matches`, comparing ASCII letters case-insensitively (`[[auth]]`: a rule
    /// for `/admin/` covers `/ADMIN/`, which a case-folding filesystem serves as well).
    pub fn matches_ignore_case(&self, path: &[u8]) -> bool {
        self.matches_as(path, true)
    }

    fn matches_as(&self, path: &[u8], fold: bool) -> bool {
        match self {
            PathPattern::Prefix(p) => path
                .get(..p.len())
                .is_some_and(|head| eq_bytes(head, p, fold)),
            PathPattern::Glob(segs) => glob_path(segs, path, fold),
        }
    }
}

fn eq_bytes(a: &[u8], b: &[u8], fold: bool) -> bool {
    if fold {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

/// Segment-level wildcard match: `GlobSeg::One` consumes exactly one path segment, `Any`
/// zero or more. Greedy with a single backtrack point, like the classic `*` algorithm
/// (correct because every other token matches exactly one symbol).
fn glob_path(pat: &[GlobSeg], path: &[u8], fold: bool) -> bool {
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
                if glob_segment(g, seg, fold) {
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
fn glob_segment(pat: &[u8], s: &[u8], fold: bool) -> bool {
    let (mut p, mut i) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if p < pat.len() && pat[p] == b'*' {
            star = Some((p + 1, i));
            p += 1;
        } else if p < pat.len() && eq_bytes(&pat[p..=p], &s[i..=i], fold) {
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

#[cfg(test)]
mod tests {
    use super::super::tests::load;
    use super::*;

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
        // Case-sensitive unless asked (`[[auth]]` is not).
        let i = |p: &str, s: &str| {
            PathPattern::parse(p)
                .expect(p)
                .matches_ignore_case(s.as_bytes())
        };
        assert!(!m("/admin/", "/ADMIN/x") && i("/admin/", "/ADMIN/x"));
        assert!(!m("/**/*.pdf", "/a/X.PDF") && i("/**/*.pdf", "/a/X.PDF"));
        assert!(i("/Adm*/*.Pdf", "/aDMIN/x.pdF"));
        assert!(!i("/admin/", "/admi") && !i("/**/*.pdf", "/a/x.pdfx"));
    }
}
