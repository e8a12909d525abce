//! The byte classes of RFC 9110 § 5.6 that the parser, negotiation and the configuration's
//! header check all need: one definition, so a header name the config accepts is exactly
//! one the parser would.

/// Optional whitespace (RFC 9110 5.6.3): SP or HTAB.
pub fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Strip optional whitespace from both ends.
pub fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_ows(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| !is_ows(b)).map_or(start, |p| p + 1);
    &s[start..end]
}

/// RFC 9110 5.6.2 tchar.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 9110 5.6.2 token: one or more tchar.
pub fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// field-value bytes: HTAB, SP, VCHAR, obs-text. No other CTL, no DEL.
pub fn is_field_byte(b: u8) -> bool {
    b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_whitespace() {
        assert!(is_token(b"Cache-Control") && is_token(b"x!#$%&'*+-.^_`|~9"));
        assert!(!is_token(b"") && !is_token(b"a b") && !is_token(b"a:b") && !is_token(b"\xc3"));
        assert_eq!(trim(b" \t a b\t "), b"a b");
        assert_eq!(trim(b" \t "), b"");
        assert_eq!(trim(b"x"), b"x");
    }
}
