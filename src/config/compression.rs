//! `[compression]`: gzip on the offload pool, its cache and its budget.

use serde::Deserialize;
use toml::Spanned;

use super::parse::{Count, Src};
use super::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawCompression {
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

impl RawCompression {
    pub(super) fn build(self, src: &Src) -> Result<Compression, ConfigError> {
        let level = *self.level.get_ref();
        if level > 9 {
            return Err(src.invalid(
                self.level.span(),
                "compression.level",
                "must be 0..=9".into(),
            ));
        }
        let threads = match self.threads {
            Count::Auto => num_cpus::get().saturating_sub(1).max(1),
            Count::N(n) => n,
        };
        Ok(Compression {
            enabled: self.enabled,
            level,
            min_bytes: self.min_bytes,
            types: self.types,
            threads,
            max_pending: self.max_pending,
            cache_bytes: self.cache_bytes,
            precompressed: self.precompressed,
            http10: self.http10,
        })
    }
}
