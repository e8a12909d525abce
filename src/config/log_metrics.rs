//! `[log]` (the access log and the error log's level) and `[metrics]`.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use toml::Spanned;

use super::parse::{unspanned, Src};
use super::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLog {
    access: Spanned<String>,
    format: Spanned<String>,
    level: Spanned<String>,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            access: unspanned("off"),
            format: unspanned("combined"),
            level: unspanned("info"),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawMetrics {
    listen: Option<Spanned<String>>,
}

/// Where access log lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessTarget {
    Stdout,
    File(PathBuf),
}

/// How an access log line is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessFormat {
    /// Apache/nginx combined.
    Combined,
    /// The same fields plus the request time and the reactor, one JSON object a line.
    Json,
}

/// `[log]`: the access log and the error log's level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    /// None = off.
    pub access: Option<AccessTarget>,
    pub format: AccessFormat,
    /// Error log level (stderr): off, error, warn, info, debug, trace.
    pub level: log::LevelFilter,
}

impl RawLog {
    /// A relative access log path is relative to `base`, the config file's directory.
    pub(super) fn build(&self, base: &Path, src: &Src) -> Result<Log, ConfigError> {
        let access = match self.access.get_ref().as_str() {
            "off" => None,
            "stdout" => Some(AccessTarget::Stdout),
            "" => return Err(src.invalid(self.access.span(), "log.access", "empty path".into())),
            p => Some(AccessTarget::File(base.join(p))),
        };
        let format = match self.format.get_ref().as_str() {
            "combined" => AccessFormat::Combined,
            "json" => AccessFormat::Json,
            other => {
                return Err(src.invalid(
                    self.format.span(),
                    "log.format",
                    format!("{other:?}: use \"combined\" or \"json\""),
                ))
            }
        };
        let level = self
            .level
            .get_ref()
            .parse::<log::LevelFilter>()
            .map_err(|_| {
                src.invalid(
                    self.level.span(),
                    "log.level",
                    format!(
                        "{:?}: use off, error, warn, info, debug or trace",
                        self.level.get_ref()
                    ),
                )
            })?;
        Ok(Log {
            access,
            format,
            level,
        })
    }
}

impl RawMetrics {
    /// The Prometheus endpoint's address; None = off.
    pub(super) fn build(&self, src: &Src) -> Result<Option<SocketAddr>, ConfigError> {
        self.listen
            .as_ref()
            .map(|m| src.addr(m, "metrics.listen"))
            .transpose()
    }
}
