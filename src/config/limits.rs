//! `[limits]`: the listen backlog, the connection cap, the request size limits, the send
//! budget per turn and the password-check budget.

use serde::Deserialize;

use super::parse::Src;
use super::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLimits {
    backlog: u32,
    max_connections: usize,
    max_request_line: usize,
    max_header_bytes: usize,
    max_body_bytes: u64,
    send_chunk: u64,
    max_password_checks: usize,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            backlog: 4096,
            // workers x (this + open_file_cache.entries) must fit RLIMIT_NOFILE: 4096 fits
            // a hard limit of 20,000 up to 3 workers (systemd's default, 524288, far more).
            max_connections: 4096,
            max_request_line: 8192,
            max_header_bytes: 16384,
            max_body_bytes: 1 << 20,
            send_chunk: 512 << 10,
            // Each check holds a CPU thread for tens of ms (bcrypt): a few dozen queued
            // already mean a second of waiting.
            max_password_checks: 16,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub backlog: u32,
    pub max_connections: usize,
    pub max_request_line: usize,
    pub max_header_bytes: usize,
    pub max_body_bytes: u64,
    /// Bytes one connection may send per event-loop turn before the others get theirs
    /// (nginx's sendfile_max_chunk): a fast client pulling a 10 GB file cannot starve
    /// the loop.
    pub send_chunk: u64,
    /// bcrypt checks in flight in the process; a request past it gets 503 (a flood of
    /// bogus credentials can only delay other password checks, never handshakes or
    /// compression).
    pub max_password_checks: usize,
}

impl RawLimits {
    pub(super) fn build(self, src: &Src) -> Result<Limits, ConfigError> {
        if self.backlog == 0 || self.max_connections == 0 {
            return Err(src.invalid(
                0..0,
                "limits",
                "backlog and max_connections must be positive".into(),
            ));
        }
        if self.max_request_line < 64 || self.max_header_bytes < self.max_request_line {
            return Err(src.invalid(
                0..0,
                "limits",
                "need max_request_line >= 64 and max_header_bytes >= max_request_line".into(),
            ));
        }
        if self.max_header_bytes > 1 << 20 {
            return Err(src.invalid(0..0, "limits.max_header_bytes", "at most 1 MiB".into()));
        }
        if !(64 << 10..=1 << 30).contains(&self.send_chunk) {
            return Err(src.invalid(0..0, "limits.send_chunk", "between 64 KiB and 1 GiB".into()));
        }
        Ok(Limits {
            backlog: self.backlog,
            max_connections: self.max_connections,
            max_request_line: self.max_request_line,
            max_header_bytes: self.max_header_bytes,
            max_body_bytes: self.max_body_bytes,
            send_chunk: self.send_chunk,
            max_password_checks: self.max_password_checks,
        })
    }
}
