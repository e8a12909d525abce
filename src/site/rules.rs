//! Path rules: which configured header lines a request path gets (`[[headers]]`), and
//! whether it is redirected (`[[redirects]]`).

use crate::config::{HeaderRule, Redirect};
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
    /// rule, in order (at most 64 count).
    pub fn for_path(&self, path: &[u8]) -> Extra {
        let mut mask = 0u64;
        for (i, r) in self.rules.iter().enumerate().take(64) {
            if r.pattern.matches(path) {
                mask |= 1 << i;
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

/// `[[redirects]]`: the first rule matching the normalised target answers, before any
/// file lookup. `Location` is `to` plus, for a prefix rule, the rest of the normalised
/// path percent-encoded (it never starts with '/', so never `//host`); the request's query
/// is kept unless `to` has its own.
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
    let rule = rules.iter().find(|r| r.matches(scratch))?;
    let mut loc = Vec::with_capacity(rule.to.len() + scratch.len() + 16);
    loc.extend_from_slice(&rule.to);
    if let Some(rest) = rule.rest(scratch) {
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
