//! `[compression]`: codings made on the offload pool, their order, cache and budget.

use serde::Deserialize;
use toml::Spanned;

use super::parse::{Count, Src};
use super::ConfigError;
use crate::http::negotiate::Coding;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawCompression {
    enabled: bool,
    codings: Spanned<Vec<Spanned<String>>>,
    level: Spanned<u32>,
    zstd_level: Spanned<i32>,
    brotli_level: Spanned<u32>,
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
            codings: Spanned::new(
                0..0,
                ["zstd", "br", "gzip"]
                    .map(|c| Spanned::new(0..0, c.to_string()))
                    .into(),
            ),
            level: Spanned::new(0..0, 6),
            zstd_level: Spanned::new(0..0, 3),
            brotli_level: Spanned::new(0..0, 5),
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
    /// Codings made on the fly, in the server's order of preference (sidecars `file.zst`,
    /// `file.br`, `file.gz` are served whatever this says). Empty: no on-the-fly compression.
    pub codings: Vec<Coding>,
    /// gzip level 0..=9.
    pub level: u32,
    /// zstd level 1..=19 (20+ need windows over the 8 MiB RFC 9659 allows).
    pub zstd_level: i32,
    /// brotli quality 0..=11.
    pub brotli_level: u32,
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
        let zstd_level = *self.zstd_level.get_ref();
        if !(1..=19).contains(&zstd_level) {
            return Err(src.invalid(
                self.zstd_level.span(),
                "compression.zstd_level",
                "must be 1..=19".into(),
            ));
        }
        let brotli_level = *self.brotli_level.get_ref();
        if brotli_level > 11 {
            return Err(src.invalid(
                self.brotli_level.span(),
                "compression.brotli_level",
                "must be 0..=11".into(),
            ));
        }
        let mut codings = Vec::new();
        for name in self.codings.into_inner() {
            let coding = match name.get_ref().as_str() {
                "zstd" => Coding::Zstd,
                "br" => Coding::Br,
                "gzip" => Coding::Gzip,
                other => {
                    return Err(src.invalid(
                        name.span(),
                        "compression.codings",
                        format!("unknown coding {other:?} (zstd, br or gzip)"),
                    ))
                }
            };
            if codings.contains(&coding) {
                return Err(src.invalid(
                    name.span(),
                    "compression.codings",
                    format!("{:?} is listed twice", coding.as_str()),
                ));
            }
            codings.push(coding);
        }
        let threads = match self.threads {
            Count::Auto => num_cpus::get().saturating_sub(1).max(1),
            Count::N(n) => n,
        };
        Ok(Compression {
            enabled: self.enabled,
            codings,
            level,
            zstd_level,
            brotli_level,
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

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::http::negotiate::Coding;

    fn load(toml: &str) -> Result<Config, crate::config::ConfigError> {
        let dir = std::env::temp_dir();
        Config::from_toml(&format!("root = \".\"\n{toml}"), &dir, "t.toml")
    }

    #[test]
    fn codings_default_to_zstd_br_gzip_and_are_checked() {
        let c = load("").expect("defaults").compression;
        assert_eq!(c.codings, [Coding::Zstd, Coding::Br, Coding::Gzip]);
        assert_eq!((c.level, c.zstd_level, c.brotli_level), (6, 3, 5));
        let c = load("[compression]\ncodings = [\"gzip\"]")
            .expect("gzip only")
            .compression;
        assert_eq!(c.codings, [Coding::Gzip]);
        assert!(load("[compression]\ncodings = []")
            .expect("none")
            .compression
            .codings
            .is_empty());
        let e = load("[compression]\ncodings = [\"gzip\", \"lzma\"]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("lzma"), "{e}");
        let e = load("[compression]\ncodings = [\"br\", \"br\"]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("twice"), "{e}");
        for bad in ["zstd_level = 0", "zstd_level = 20", "brotli_level = 12"] {
            assert!(load(&format!("[compression]\n{bad}")).is_err(), "{bad}");
        }
    }
}
