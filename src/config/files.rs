//! What is served and how it is opened: `root`, `index`, `hidden`, `[open_file_cache]`
//! and `[error_pages]`.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

use super::headers::has_unsafe_byte;
use super::parse::{unspanned, Entries, Src};
use super::ConfigError;

/// `root`, relative to the config file's directory: must exist and be a directory.
pub(super) fn root(raw: &Spanned<String>, base: &Path, src: &Src) -> Result<PathBuf, ConfigError> {
    let root_path = base.join(raw.get_ref());
    let root = std::fs::canonicalize(&root_path)
        .map_err(|e| src.invalid(raw.span(), "root", format!("{}: {e}", root_path.display())))?;
    if !root.is_dir() {
        return Err(src.invalid(
            raw.span(),
            "root",
            format!("{} is not a directory", root.display()),
        ));
    }
    Ok(root)
}

/// `index`: plain file names, tried in order.
pub(super) fn check_index(names: &[String], src: &Src) -> Result<(), ConfigError> {
    for name in names {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(src.invalid(0..0, "index", format!("{name:?} must be a plain file name")));
        }
    }
    Ok(())
}

/// `fallback`: the request path (under `root`) of the file answering paths that name
/// nothing, as `try_files $uri $uri/ /index.html` does for single-page apps. It must exist
/// now: a typo would otherwise turn every unknown path into a 404 at run time.
pub(super) fn fallback(
    raw: Option<&Spanned<String>>,
    root: &Path,
    src: &Src,
) -> Result<Option<Box<[u8]>>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let p = raw.get_ref();
    let bad = |msg: String| src.invalid(raw.span(), "fallback", format!("{p:?}: {msg}"));
    check_page_path(p).map_err(bad)?;
    let mut rel = Vec::new();
    crate::http::path::normalize(p.as_bytes(), &mut rel).map_err(|e| bad(e.to_string()))?;
    let file = root.join(String::from_utf8_lossy(&rel).as_ref());
    match std::fs::canonicalize(&file) {
        Ok(f) if f.starts_with(root) && f.is_file() => Ok(Some(p.as_bytes().into())),
        Ok(f) if !f.starts_with(root) => Err(bad("leads outside root".into())),
        Ok(_) => Err(bad(format!("{} is not a file", file.display()))),
        Err(e) => Err(bad(format!("{}: {e}", file.display()))),
    }
}

/// `hidden = "deny" | "allow"`: whether dot-files are served.
pub(super) fn serve_hidden(raw: &Spanned<String>, src: &Src) -> Result<bool, ConfigError> {
    match raw.get_ref().as_str() {
        "deny" => Ok(false),
        "allow" => Ok(true),
        other => Err(src.invalid(
            raw.span(),
            "hidden",
            format!("{other:?}: use \"deny\" or \"allow\""),
        )),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawOpenFileCache {
    entries: usize,
    valid: Spanned<String>,
    check: Spanned<String>,
    inline_bytes: u64,
    errors: bool,
    cold_reads: bool,
}

impl Default for RawOpenFileCache {
    fn default() -> Self {
        RawOpenFileCache {
            entries: 1024,
            valid: unspanned("1s"),
            check: unspanned("0s"),
            inline_bytes: 16384,
            errors: false,
            cold_reads: true,
        }
    }
}

/// nginx's open_file_cache, per reactor.
#[derive(Debug, Clone)]
pub struct OpenFileCache {
    /// Paths kept open per reactor; 0 disables the cache.
    pub entries: usize,
    /// After this long a cached path is resolved again (renames, deletions).
    pub valid: Duration,
    /// A hit trusts the cached metadata for this long before fstat-ing the fd again (in-place
    /// edits); zero checks on every hit.
    pub check: Duration,
    /// Files up to this size are kept in memory and sent with the head in one writev.
    pub inline_bytes: u64,
    /// Cache "not found" too, for `valid` (nginx's open_file_cache_errors).
    pub errors: bool,
    /// Probe the page cache before sending file bytes and read cold windows in on the
    /// offload pool (nginx's `aio threads`); off: sendfile may wait on the disk.
    pub cold_reads: bool,
}

impl RawOpenFileCache {
    pub(super) fn build(&self, src: &Src) -> Result<OpenFileCache, ConfigError> {
        Ok(OpenFileCache {
            entries: self.entries,
            valid: src.duration(&self.valid, "open_file_cache.valid")?,
            check: src.duration(&self.check, "open_file_cache.check")?,
            inline_bytes: self.inline_bytes.min(1 << 20),
            errors: self.errors,
            cold_reads: self.cold_reads,
        })
    }
}

/// Status -> the request path of the page served with it.
pub(super) type ErrorPages = Vec<(u16, Box<[u8]>)>;

/// `[error_pages]`: status (400..=599) -> the request path of the page to serve.
pub(super) fn error_pages(
    raw: &Entries<Spanned<String>>,
    src: &Src,
) -> Result<ErrorPages, ConfigError> {
    let mut error_pages = Vec::new();
    for (key, page) in &raw.0 {
        let at = page.span();
        let status = key
            .parse::<u16>()
            .ok()
            .filter(|s| (400..=599).contains(s) && key.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| {
                src.invalid(
                    at.clone(),
                    "error_pages",
                    format!("{key:?}: the key must be a status code 400..=599"),
                )
            })?;
        check_page_path(page.get_ref()).map_err(|msg| {
            src.invalid(
                at.clone(),
                "error_pages",
                format!("{key} = {:?}: {msg}", page.get_ref()),
            )
        })?;
        error_pages.push((status, page.get_ref().as_bytes().into()));
    }
    Ok(error_pages)
}

/// An error page is a request path: '/'-rooted, no query, no dot-segment escaping the root.
fn check_page_path(p: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        return Err("must be a path under root starting with '/'".into());
    }
    if has_unsafe_byte(p) {
        return Err("contains whitespace, a control character, '?' or '#'".into());
    }
    let mut scratch = Vec::new();
    match crate::http::path::normalize(p.as_bytes(), &mut scratch) {
        Ok(false) => Ok(()),
        Ok(true) => Err("names a directory, not a file".into()),
        Err(e) => Err(format!("not a valid path under root ({e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::load;

    #[test]
    fn error_pages_are_validated() {
        let c =
            load("[error_pages]\n404 = \"/404.html\"\n500 = \"/err/500.html\"\n").expect("valid");
        assert_eq!(c.error_pages.len(), 2);
        assert_eq!(c.error_pages[0], (404, b"/404.html".to_vec().into()));
        for (text, needle) in [
            ("[error_pages]\n200 = \"/x.html\"\n", "\"200\""),
            ("[error_pages]\nabc = \"/x.html\"\n", "\"abc\""),
            ("[error_pages]\n\"+404\" = \"/x.html\"\n", "\"+404\""),
            ("[error_pages]\n404 = \"x.html\"\n", "404"),
            ("[error_pages]\n404 = \"/../x.html\"\n", "404"),
            ("[error_pages]\n404 = \"/errors/\"\n", "404"),
            ("[error_pages]\n404 = \"/a b\"\n", "404"),
            ("[error_pages]\n404 = \"/%zz\"\n", "404"),
        ] {
            let e = load(text).unwrap_err().to_string();
            assert!(
                e.contains("line 2") && e.contains("error_pages") && e.contains(needle),
                "{text}: {e}"
            );
        }
        assert!(load("[error_pages]\n404 = 5\n").is_err());
    }

    #[test]
    fn hidden_is_deny_or_allow() {
        assert!(!load("").expect("defaults").serve_hidden);
        assert!(!load("hidden = \"deny\"").expect("deny").serve_hidden);
        assert!(load("hidden = \"allow\"").expect("allow").serve_hidden);
        let e = load("\nhidden = \"yes\"").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("hidden"), "{e}");
        assert!(load("hidden = true").is_err());
    }

    #[test]
    fn fallback_must_name_an_existing_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("public/app")).expect("mkdir");
        std::fs::write(dir.path().join("public/app/index.html"), b"spa").expect("write");
        let load = |t: &str| super::super::Config::from_toml(t, dir.path(), "t.toml");
        assert_eq!(load("").expect("none").fallback, None);
        let c = load("fallback = \"/app/index.html\"").expect("valid");
        assert_eq!(c.fallback.as_deref(), Some(&b"/app/index.html"[..]));
        for bad in [
            "/missing.html",
            "/app/",
            "/app",
            "app/index.html",
            "/../x",
            "/a b",
        ] {
            let e = load(&format!("\nfallback = {bad:?}"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("line 2") && e.contains("fallback"), "{bad}: {e}");
        }
    }

    #[test]
    fn autoindex_defaults_off() {
        assert!(!load("").expect("defaults").autoindex);
        assert!(load("autoindex = true").expect("on").autoindex);
        assert!(load("autoindex = \"yes\"").is_err());
    }
}
