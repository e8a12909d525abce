//! `[timeouts]`, and the one table of timeout classes: the four configurable ones plus
//! the three fixed ones (lingering close, graceful drain, the HTTP/2 SETTINGS ACK). `net::timer` keeps a queue per
//! class and `ops::metrics` counts expiries per class under its `name`; both size their
//! arrays with `CLASSES`. The table lives here, below both, so neither uses the other.

use serde::Deserialize;
use std::time::Duration;
use toml::Spanned;

use super::parse::{unspanned, Src};
use super::ConfigError;

/// The kinds of connection deadline, each with its own duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutClass {
    /// From accept (or the first byte of a keep-alive request) to a complete head.
    Header = 0,
    /// Idle between requests.
    KeepAlive = 1,
    /// No progress reading a request body.
    Body = 2,
    /// No progress writing a response.
    Send = 3,
    /// Lingering close: reading what the client still sends after our last response.
    Linger = 4,
    /// Graceful drain: an idle keep-alive connection gets this grace to send a request
    /// already on its way (answered with `Connection: close`) before it is closed.
    Drain = 5,
    /// A proxied request's upstream deadline (connect, send or read, per `[[upstream]]`):
    /// armed with the deadline itself as its start, the class's duration being zero.
    Upstream = 6,
    /// HTTP/2: our SETTINGS must be acknowledged within this (RFC 9113 6.5.3).
    SettingsAck = 7,
}

/// How many classes there are (the length of `TimeoutClass::ALL`).
pub const CLASSES: usize = 8;

impl TimeoutClass {
    /// Every class, in discriminant order: `ALL[c as usize] == c`.
    pub const ALL: [TimeoutClass; CLASSES] = [
        TimeoutClass::Header,
        TimeoutClass::KeepAlive,
        TimeoutClass::Body,
        TimeoutClass::Send,
        TimeoutClass::Linger,
        TimeoutClass::Drain,
        TimeoutClass::Upstream,
        TimeoutClass::SettingsAck,
    ];

    /// The `kind` label of `vireo_timeouts_total`; for a configurable class also its key
    /// under `[timeouts]`.
    pub const fn name(self) -> &'static str {
        match self {
            TimeoutClass::Header => "header",
            TimeoutClass::KeepAlive => "keepalive",
            TimeoutClass::Body => "body",
            TimeoutClass::Send => "send",
            TimeoutClass::Linger => "linger",
            TimeoutClass::Drain => "drain",
            TimeoutClass::Upstream => "upstream",
            TimeoutClass::SettingsAck => "settings_ack",
        }
    }
}

/// Lingering close gives the client this long to finish sending.
pub const LINGER: Duration = Duration::from_secs(5);
/// During a graceful drain, idle keep-alive connections are closed after this grace (and
/// an HTTP/2 connection sends its final GOAWAY at the latest this long after the first).
pub const DRAIN_IDLE: Duration = Duration::from_secs(1);
/// How long a peer has to acknowledge our HTTP/2 SETTINGS (nginx and sozu: 5 s too).
pub const SETTINGS_ACK: Duration = Duration::from_secs(5);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawTimeouts {
    header: Spanned<String>,
    keepalive: Spanned<String>,
    body: Spanned<String>,
    send: Spanned<String>,
    shutdown: Spanned<String>,
}

impl Default for RawTimeouts {
    fn default() -> Self {
        RawTimeouts {
            header: unspanned("10s"),
            keepalive: unspanned("75s"),
            body: unspanned("30s"),
            send: unspanned("30s"),
            shutdown: unspanned("30s"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Timeouts {
    pub header: Duration,
    pub keepalive: Duration,
    pub body: Duration,
    pub send: Duration,
    pub shutdown: Duration,
}

impl Timeouts {
    /// The duration of `class`: configured, or fixed.
    pub fn of(&self, class: TimeoutClass) -> Duration {
        match class {
            TimeoutClass::Header => self.header,
            TimeoutClass::KeepAlive => self.keepalive,
            TimeoutClass::Body => self.body,
            TimeoutClass::Send => self.send,
            TimeoutClass::Linger => LINGER,
            TimeoutClass::Drain => DRAIN_IDLE,
            TimeoutClass::SettingsAck => SETTINGS_ACK,
            // Armed with the deadline itself as its start.
            TimeoutClass::Upstream => Duration::ZERO,
        }
    }
}

impl RawTimeouts {
    pub(super) fn build(&self, src: &Src) -> Result<Timeouts, ConfigError> {
        Ok(Timeouts {
            header: src.duration(&self.header, "timeouts.header")?,
            keepalive: src.duration(&self.keepalive, "timeouts.keepalive")?,
            body: src.duration(&self.body, "timeouts.body")?,
            send: src.duration(&self.send, "timeouts.send")?,
            shutdown: src.duration(&self.shutdown, "timeouts.shutdown")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_class_table_is_in_discriminant_order_with_distinct_names() {
        for (i, c) in TimeoutClass::ALL.into_iter().enumerate() {
            assert_eq!(c as usize, i, "{c:?}");
            assert!(TimeoutClass::ALL[..i].iter().all(|o| o.name() != c.name()));
        }
    }
}
