//! What every section's builder shares: the error type with line and column, the value
//! parsers (durations, addresses, `"auto"`-or-a-count) and a TOML table kept as ordered
//! pairs.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::time::Duration;
use toml::Spanned;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {err}")]
    Read { file: String, err: std::io::Error },
    #[error("{file}: {msg}")]
    Parse { file: String, msg: String },
    #[error("{file}: line {line}, column {col}: `{key}`: {msg}")]
    Invalid {
        file: String,
        line: usize,
        col: usize,
        key: &'static str,
        msg: String,
    },
}

/// The text being validated and its name, so a builder can point at a value.
pub(super) struct Src<'a> {
    pub text: &'a str,
    pub file: &'a str,
}

impl Src<'_> {
    /// An error at `span` (a value's position in the text; `0..0` = the start).
    pub fn invalid(&self, span: Range<usize>, key: &'static str, msg: String) -> ConfigError {
        let (line, col) = line_col(self.text, span.start);
        ConfigError::Invalid {
            file: self.file.to_string(),
            line,
            col,
            key,
            msg,
        }
    }

    /// Line and column of a byte offset (both from 1).
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        line_col(self.text, offset)
    }

    pub fn duration(
        &self,
        s: &Spanned<String>,
        key: &'static str,
    ) -> Result<Duration, ConfigError> {
        parse_duration(s.get_ref()).map_err(|msg| self.invalid(s.span(), key, msg))
    }

    pub fn addr(&self, s: &Spanned<String>, key: &'static str) -> Result<SocketAddr, ConfigError> {
        resolve_addr(s.get_ref()).map_err(|msg| self.invalid(s.span(), key, msg))
    }

    /// `listen`: one address or a non-empty list of distinct ones (at most `MAX_LISTEN`).
    pub fn listen(&self, raw: &Spanned<OneOrMany>) -> Result<Vec<SocketAddr>, ConfigError> {
        let list = &raw.get_ref().0;
        if list.is_empty() {
            return Err(self.invalid(raw.span(), "listen", "needs at least one address".into()));
        }
        if list.len() > MAX_LISTEN {
            let msg = format!("{} addresses; at most {MAX_LISTEN}", list.len());
            return Err(self.invalid(raw.span(), "listen", msg));
        }
        let mut out: Vec<SocketAddr> = Vec::with_capacity(list.len());
        for s in list {
            // A lone string's element has no span of its own: point at the value.
            let span = if s.span() == (0..0) {
                raw.span()
            } else {
                s.span()
            };
            let a = resolve_addr(s.get_ref())
                .map_err(|msg| self.invalid(span.clone(), "listen", msg))?;
            if out.contains(&a) {
                let msg = format!("{a} is listed twice");
                return Err(self.invalid(span, "listen", msg));
            }
            out.push(a);
        }
        Ok(out)
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

/// A spanned string default: no position in the text.
pub(super) fn unspanned(s: &str) -> Spanned<String> {
    Spanned::new(0..0, s.to_string())
}

/// Most addresses `listen` takes: each costs one socket and one reserved token per reactor.
pub const MAX_LISTEN: usize = 64;

/// A string or a list of strings (`listen = "ADDR"` or `listen = ["ADDR", ...]`).
#[derive(Debug)]
pub(super) struct OneOrMany(pub Vec<Spanned<String>>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<OneOrMany, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![unspanned(v)]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<Spanned<String>>()? {
                    out.push(s);
                }
                Ok(OneOrMany(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// `workers = "auto"` or a positive integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    Auto,
    N(usize),
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Count, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"auto\" or a positive integer")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Count, E> {
                if (1..=1024).contains(&v) {
                    Ok(Count::N(v as usize))
                } else {
                    Err(E::custom(format!("{v} is out of range 1..=1024")))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Count, E> {
                if v == "auto" {
                    Ok(Count::Auto)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(v), &self))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A TOML table as (key, value) pairs, in the order the toml crate yields them (sorted by
/// key: it is built without `preserve_order`).
#[derive(Debug)]
pub(super) struct Entries<V>(pub Vec<(String, V)>);

impl<V> Default for Entries<V> {
    fn default() -> Self {
        Entries(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Entries<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Vis<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Vis<V> {
            type Value = Entries<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a table")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Entries<V>, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, V>()? {
                    out.push((k, v));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(Vis(std::marker::PhantomData))
    }
}

pub(super) fn resolve_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    // "localhost:8080" and friends: resolved once at start-up, never on the hot path.
    match s.to_socket_addrs() {
        Ok(mut it) => it
            .next()
            .ok_or_else(|| format!("{s:?} resolves to no address")),
        Err(e) => Err(format!("{s:?} is not HOST:PORT ({e})")),
    }
}

/// Longest duration accepted: deadlines are `Instant + duration`, which panics on
/// overflow, and nothing vireo waits for needs longer.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// "10s", "500ms", "2m", "1h", "0s", at most 1 year. A bare number is refused: units must
/// be explicit.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{s:?} needs a unit (ms, s, m, h)"))?;
    let (num, unit) = s.split_at(split);
    let too_long = || format!("{s:?} is too long: at most 1 year (8760h)");
    let n: u64 = num.parse().map_err(|e: std::num::ParseIntError| {
        if *e.kind() == std::num::IntErrorKind::PosOverflow {
            too_long()
        } else {
            format!("{s:?} is not a duration like \"10s\" or \"500ms\"")
        }
    })?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    };
    if d > MAX_DURATION {
        return Err(too_long());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("s").is_err());
        assert_eq!(parse_duration("8760h"), Ok(MAX_DURATION));
        for huge in [
            "8761h",
            "100000000000h",
            "18446744073709551615ms",
            "99999999999999999999s",
        ] {
            let e = parse_duration(huge).unwrap_err();
            assert!(e.contains("at most 1 year"), "{huge}: {e}");
        }
    }

    #[test]
    fn line_and_column_count_from_one() {
        assert_eq!(line_col("a\nbc\nd", 0), (1, 1));
        assert_eq!(line_col("a\nbc\nd", 3), (2, 2));
        assert_eq!(line_col("a\nbc\nd", 99), (3, 2));
    }
}
