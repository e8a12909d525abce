//! The request path as a path under the document root: percent-decoded and normalised
//! lexically, so `..` above the root is refused before any syscall. Pure bytes: the
//! configuration validates `[error_pages]` with it, `site::files` opens what it returns,
//! and the router asks `is_hidden` of it.

use std::fmt;

/// Why a request path has no place under the root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// Invalid percent-escape, `%00` / NUL, path not starting with '/'.
    BadRequest,
    /// A dot-segment climbing above the root, or an encoded slash.
    Forbidden,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::BadRequest => "bad request path",
            PathError::Forbidden => "forbidden",
        })
    }
}

impl std::error::Error for PathError {}

/// Percent-decode and normalise into `out` as a path relative to the root (no
/// leading '/'). Returns whether the path denotes a directory (trailing '/',
/// or a final "." / ".." segment, per RFC 3986 remove_dot_segments).
///
/// Decoding happens per segment, before dot handling, so "%2e%2e" is exactly
/// "..". A decoded '/' (%2F) is refused rather than treated as a separator, so
/// segment boundaries are always those the client wrote literally.
pub fn normalize(raw_path: &[u8], out: &mut Vec<u8>) -> Result<bool, PathError> {
    out.clear();
    let rest = match raw_path.strip_prefix(b"/") {
        Some(r) => r,
        None => return Err(PathError::BadRequest),
    };
    let mut trailing = true; // "/" alone is the root directory
    for seg in rest.split(|&b| b == b'/') {
        let seg_start = out.len();
        if !out.is_empty() {
            out.push(b'/');
        }
        let content = out.len();
        decode_segment(seg, out)?;
        match &out[content..] {
            b"" | b"." => {
                out.truncate(seg_start);
                trailing = true;
            }
            b".." => {
                out.truncate(seg_start);
                if out.is_empty() {
                    // Climbing above the root.
                    return Err(PathError::Forbidden);
                }
                let parent = out.iter().rposition(|&b| b == b'/').unwrap_or(0);
                out.truncate(parent);
                trailing = true;
            }
            _ => trailing = false,
        }
    }
    Ok(trailing)
}

/// Does a normalised relative path (`normalize`'s output) name a hidden file: a segment
/// starting with '.'? A leading `.well-known` (RFC 8615) is not hidden; dot segments below
/// it still are.
pub fn is_hidden(rel: &[u8]) -> bool {
    let rel = rel.strip_prefix(b".well-known").map_or(rel, |rest| {
        if rest.is_empty() || rest.starts_with(b"/") {
            rest
        } else {
            rel
        }
    });
    rel.split(|&b| b == b'/').any(|seg| seg.starts_with(b"."))
}

fn decode_segment(seg: &[u8], out: &mut Vec<u8>) -> Result<(), PathError> {
    let mut i = 0;
    while i < seg.len() {
        let b = seg[i];
        let decoded = if b == b'%' {
            let hex = |at: usize| seg.get(at).and_then(|&c| (c as char).to_digit(16));
            match (hex(i + 1), hex(i + 2)) {
                (Some(h), Some(l)) => {
                    i += 3;
                    (h << 4 | l) as u8
                }
                _ => return Err(PathError::BadRequest),
            }
        } else {
            i += 1;
            b
        };
        match decoded {
            // NUL would truncate the C path: a different file than checked.
            0 => return Err(PathError::BadRequest),
            // Encoded slash: refuse like Apache's AllowEncodedSlashes Off.
            b'/' => return Err(PathError::Forbidden),
            _ => out.push(decoded),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Result<(String, bool), PathError> {
        let mut out = Vec::new();
        let t = normalize(p.as_bytes(), &mut out)?;
        Ok((String::from_utf8(out).expect("test paths are utf-8"), t))
    }

    #[test]
    fn normalize_ok_cases() {
        assert_eq!(norm("/a/./b/../c").unwrap(), ("a/c".into(), false));
        assert_eq!(norm("//a//b/").unwrap(), ("a/b".into(), true));
        assert_eq!(
            norm("/with%20space.txt").unwrap(),
            ("with space.txt".into(), false)
        );
        assert_eq!(
            norm("/%C3%A9t%C3%A9.txt").unwrap(),
            ("été.txt".into(), false)
        );
        assert_eq!(norm("/a/..").unwrap(), ("".into(), true));
        assert_eq!(norm("/").unwrap(), ("".into(), true));
        assert_eq!(norm("/a/.").unwrap(), ("a".into(), true));
        assert_eq!(norm("/a/%2e%2E/b").unwrap(), ("b".into(), false));
        assert_eq!(norm("/a%5Cb").unwrap(), ("a\\b".into(), false));
        // A dot inside a name is not a dot segment.
        assert_eq!(norm("/..a/b..").unwrap(), ("..a/b..".into(), false));
    }

    #[test]
    fn hidden_segments() {
        let hidden = |p: &str| is_hidden(norm(p).expect(p).0.as_bytes());
        for p in [
            "/.env",
            "/.git/config",
            "/%2egit/config",
            "/a/.hidden/x",
            "/a/.x",
        ] {
            assert!(hidden(p), "{p}");
        }
        for p in [
            "/",
            "/a/b.c",
            "/.well-known/x",
            "/.well-known/",
            "/a..b",
            "/x/../y",
        ] {
            assert!(!hidden(p), "{p}");
        }
        assert!(hidden("/.well-known/.x"));
        assert!(hidden("/.well-knownx/y"));
        assert!(hidden("/a/.well-known/y"));
    }

    #[test]
    fn normalize_reuses_buffer() {
        let mut out = b"stale/leftover".to_vec();
        assert!(!normalize(b"/x", &mut out).unwrap());
        assert_eq!(out, b"x");
        // Any byte but NUL and '/' decodes, UTF-8 or not.
        assert!(!normalize(b"/%ff%Fe%7f", &mut out).unwrap());
        assert_eq!(out, b"\xff\xfe\x7f");
    }

    #[test]
    fn normalize_rejects() {
        let forbidden = [
            "/%2e%2e/etc/passwd",
            "/a/%2E%2e/%2e%2E/x",
            "/a/%2F/b",
            "/..",
            "/a/../..",
            "/../a",
            "/.%2e",
        ];
        for p in forbidden {
            assert_eq!(norm(p), Err(PathError::Forbidden), "{p}");
        }
        let bad = [
            "/%zz", "/%4", "/a%00b", "/%", "a/b", "", "/a\0b", "/%g0", "/%+1",
        ];
        for p in bad {
            assert_eq!(norm(p), Err(PathError::BadRequest), "{p:?}");
        }
    }
}
