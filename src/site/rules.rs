//! `[[headers]]` rules: which configured header lines a request path gets.

use crate::config::HeaderRule;
use crate::http::response::Extra;
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
