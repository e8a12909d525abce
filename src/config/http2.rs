//! `[http2]`: whether TLS listeners offer `h2` in ALPN, whether plain listeners take
//! HTTP/2 with prior knowledge (h2c), and the SETTINGS we advertise. The header list
//! limit is `limits.max_header_bytes` (SETTINGS_MAX_HEADER_LIST_SIZE), not a key here.

use serde::Deserialize;

use super::parse::Src;
use super::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawHttp2 {
    enabled: bool,
    cleartext: bool,
    max_concurrent_streams: u32,
    initial_window: u32,
    max_frame_size: u32,
}

impl Default for RawHttp2 {
    fn default() -> Self {
        RawHttp2 {
            enabled: true,
            cleartext: false,
            max_concurrent_streams: 128,
            initial_window: 65_535,
            max_frame_size: 16_384,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Http2 {
    /// TLS listeners offer `h2` then `http/1.1` in ALPN.
    pub enabled: bool,
    /// Plain listeners also take HTTP/2 with prior knowledge (the client preface first).
    pub cleartext: bool,
    /// SETTINGS_MAX_CONCURRENT_STREAMS: streams past it are refused (REFUSED_STREAM).
    pub max_concurrent_streams: u32,
    /// SETTINGS_INITIAL_WINDOW_SIZE: each stream's request-body window.
    pub initial_window: u32,
    /// SETTINGS_MAX_FRAME_SIZE we accept.
    pub max_frame_size: u32,
}

impl Default for Http2 {
    fn default() -> Http2 {
        Http2 {
            enabled: true,
            cleartext: false,
            max_concurrent_streams: 128,
            initial_window: 65_535,
            max_frame_size: 16_384,
        }
    }
}

impl RawHttp2 {
    pub(super) fn build(self, src: &Src) -> Result<Http2, ConfigError> {
        if !(1..=1024).contains(&self.max_concurrent_streams) {
            return Err(src.invalid(
                0..0,
                "http2.max_concurrent_streams",
                "between 1 and 1024".into(),
            ));
        }
        if !(65_535..=(1 << 31) - 1).contains(&self.initial_window) {
            return Err(src.invalid(
                0..0,
                "http2.initial_window",
                "between 65535 and 2147483647".into(),
            ));
        }
        if !(16_384..=16_777_215).contains(&self.max_frame_size) {
            return Err(src.invalid(
                0..0,
                "http2.max_frame_size",
                "between 16384 and 16777215".into(),
            ));
        }
        Ok(Http2 {
            enabled: self.enabled,
            cleartext: self.enabled && self.cleartext,
            max_concurrent_streams: self.max_concurrent_streams,
            initial_window: self.initial_window,
            max_frame_size: self.max_frame_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::load;

    #[test]
    fn http2_defaults_and_checks() {
        let c = load("").expect("defaults");
        assert!(c.http2.enabled && !c.http2.cleartext);
        assert_eq!(c.http2.max_concurrent_streams, 128);
        let c = load("[http2]\ncleartext = true\nmax_concurrent_streams = 10\n").expect("ok");
        assert!(c.http2.cleartext);
        assert_eq!(c.http2.max_concurrent_streams, 10);
        let c = load("[http2]\nenabled = false\ncleartext = true\n").expect("ok");
        assert!(!c.http2.cleartext, "cleartext needs http2 enabled");
        for bad in [
            "max_concurrent_streams = 0",
            "initial_window = 10",
            "max_frame_size = 1000",
            "max_frame_size = 16777216",
            "bogus = 1",
        ] {
            let e = load(&format!("[http2]\n{bad}\n")).unwrap_err().to_string();
            assert!(e.contains("http2") || e.contains("bogus"), "{bad}: {e}");
        }
    }
}
