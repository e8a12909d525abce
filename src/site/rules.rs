//! Path rules: which configured header lines a request path gets (`[[headers]]`), and
//! whether it is redirected (`[[redirects]]`).

use crate::config::{HeaderRule, Redirect};
use crate::http::negotiate::Coding;
use crate::http::response::{Extra, Reply};
use crate::site::route::Target;
use std::sync::Arc;

/// The site's header rules: patterns from the configuration and their rendered blocks,
/// shared by every reply that matches (an `Extra` is a bitmask over `blocks`).
pub struct HeaderRules {
    rules: Arc<[HeaderRule]>,
    blocks: Arc<[Box<[u8]>]>,
}

impl HeaderRules {
    pub fn new(rules: &Arc<[HeaderRule]>) -> HeaderRules {
        HeaderRules {
            rules: Arc::clone(rules),
            blocks: rules.iter().map(|r| r.block.clone()).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Match `path` (the normalised request path, with its leading slash) against every
    /// rule, in order (at most 64 count). A sidecar asked for by name (`X.gz`) also gets
    /// the lines of the file it stands for (`X`, see `sidecar_stems`).
    pub fn for_path(&self, path: &[u8]) -> Extra {
        let mut mask = 0u64;
        for n in sidecar_stems(path) {
            for (i, r) in self.rules.iter().enumerate().take(64) {
                if r.pattern.matches(&path[..n]) {
                    mask |= 1 << i;
                }
            }
        }
        Extra::new(&self.blocks, mask)
    }
}

/// The absolute form of a normalised target that rules match: `/` + target (+ `/` for a
/// directory), into `out`.
pub fn slashed(target: &Target, out: &mut Vec<u8>) {
    out.clear();
    out.push(b'/');
    out.extend_from_slice(&target.rel);
    if target.trailing && !target.rel.is_empty() {
        out.push(b'/');
    }
}

/// Every coding vireo knows, in the order sidecar-only fallbacks are offered; each has a
/// sidecar file (`Coding::sidecar_ext`: `.zst`, `.br`, `.gz`).
pub const CODINGS: [Coding; 3] = [Coding::Zstd, Coding::Br, Coding::Gzip];

/// The lengths of the prefixes of `path` that every path rule (`[[auth]]`,
/// `[[redirects]]`, `[[headers]]`, hidden files) judges it as: the path itself, then,
/// while it ends in a sidecar suffix (ASCII case-insensitively, as a case-folding
/// filesystem would open it), the path without it. A sidecar is the file it stands for,
/// compressed: `/data.json.gz` must be exactly as protected, hidden and redirected as
/// `/data.json` (and `/x.gz.br` as `/x.gz` and `/x`). At most one suffix per coding is
/// taken off, so a path is never matched more than `CODINGS.len() + 1` times; a suffix
/// that is a whole segment (`/dir/.gz`) stands for nothing.
pub fn sidecar_stems(path: &[u8]) -> impl Iterator<Item = usize> + '_ {
    std::iter::successors(Some(path.len()), move |&n| strip_sidecar(&path[..n]))
        .take(CODINGS.len() + 1)
}

/// `path` without its sidecar suffix, as a length; None when it has none.
fn strip_sidecar(path: &[u8]) -> Option<usize> {
    CODINGS.iter().find_map(|c| {
        let ext = c.sidecar_ext();
        let stem = path.len().checked_sub(ext.len())?;
        let ok = path[stem..].eq_ignore_ascii_case(ext) && stem > 0 && path[stem - 1] != b'/';
        ok.then_some(stem)
    })
}

/// `[[redirects]]`: the first rule matching the normalised target answers, before any
/// file lookup. `Location` is `to` plus, for a prefix rule, the rest of the normalised
/// path percent-encoded (it never starts with '/', so never `//host`); the request's query
/// is kept unless `to` has its own. A sidecar asked for by name (`/old.json.gz`) that no
/// rule matches is redirected as the file it stands for (`/old.json`), to the same place.
pub fn redirect(
    rules: &[Redirect],
    target: &Target,
    query: Option<&[u8]>,
    scratch: &mut Vec<u8>,
) -> Option<Reply> {
    if rules.is_empty() {
        return None;
    }
    slashed(target, scratch);
    let whole: &[u8] = scratch;
    let (rule, path) = sidecar_stems(whole).find_map(|n| {
        let path = &whole[..n];
        rules.iter().find(|r| r.matches(path)).map(|r| (r, path))
    })?;
    let mut loc = Vec::with_capacity(rule.to.len() + path.len() + 16);
    loc.extend_from_slice(&rule.to);
    if let Some(rest) = rule.rest(path) {
        push_path_encoded(&mut loc, rest);
    }
    if let Some(q) = rule.query.as_deref().or(query) {
        loc.push(b'?');
        loc.extend_from_slice(q);
    }
    let mut reply = Reply::error(rule.status);
    reply.headers.location = Some(loc.into_boxed_slice());
    Some(reply)
}

/// Append a decoded path as a URI path: bytes outside RFC 3986 pchar (and '/') are
/// percent-encoded, so `%`, `?`, `#`, `\\`, spaces and non-ASCII cannot change its meaning.
pub fn push_path_encoded(out: &mut Vec<u8>, path: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in path {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b) {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sidecar_is_judged_as_the_files_it_stands_for() {
        let stems = |p: &str| -> Vec<String> {
            sidecar_stems(p.as_bytes())
                .map(|n| p[..n].to_string())
                .collect()
        };
        assert_eq!(stems("/a/data.json"), ["/a/data.json"]);
        assert_eq!(stems("/data.json.gz"), ["/data.json.gz", "/data.json"]);
        assert_eq!(stems("/d.br"), ["/d.br", "/d"]);
        assert_eq!(
            stems("/d.ZST"),
            ["/d.ZST", "/d"],
            "case-folding filesystems"
        );
        assert_eq!(stems("/x.gz.br"), ["/x.gz.br", "/x.gz", "/x"]);
        assert_eq!(
            stems("/dir/.gz"),
            ["/dir/.gz"],
            "a whole segment stands for nothing"
        );
        assert_eq!(stems(".gz"), [".gz"]);
        assert_eq!(stems("/dir.gz/"), ["/dir.gz/"]);
        assert_eq!(stems("/xgz"), ["/xgz"]);
        // Bounded: one suffix per coding at most.
        assert_eq!(stems("/x.gz.gz.gz.gz.gz").len(), CODINGS.len() + 1);
    }
}
