//! Content negotiation, conditional requests and byte ranges (RFC 9110 §§ 12.5.3, 13, 14).
//!
//! Pure functions over header bytes: the router hands in raw field values and the
//! representation's validators and gets back a decision. Nothing here allocates per call
//! except where the caller passes a reusable buffer in.

use std::cmp::Ordering;
use std::ops::Range;
use std::time::UNIX_EPOCH;

use memchr::memchr;

use super::token::{is_ows, is_token, trim};

/// Parse an HTTP-date (IMF-fixdate, RFC 850 or asctime, all of which RFC 9110 5.6.7 says a
/// recipient must accept) into unix seconds. Anything else is `None` so callers can treat
/// the field as absent, as 13.1.3 / 13.1.4 require.
fn parse_date(v: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(trim(v)).ok()?;
    let t = httpdate::parse_http_date(s).ok()?;
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

// ---------------------------------------------------------------------------------------
// Accept-Encoding (RFC 9110 12.5.3)
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Coding {
    #[default]
    Identity,
    Gzip,
    Br,
    Zstd,
}

impl Coding {
    /// The token for Content-Encoding (identity is never sent on the wire).
    pub fn as_str(self) -> &'static str {
        match self {
            Coding::Identity => "identity",
            Coding::Gzip => "gzip",
            Coding::Br => "br",
            Coding::Zstd => "zstd",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn from_token(t: &[u8]) -> Option<Coding> {
        // "x-gzip" is the historical alias that RFC 9110 8.4.1.3 says to treat as gzip.
        if t.eq_ignore_ascii_case(b"gzip") || t.eq_ignore_ascii_case(b"x-gzip") {
            Some(Coding::Gzip)
        } else if t.eq_ignore_ascii_case(b"br") {
            Some(Coding::Br)
        } else if t.eq_ignore_ascii_case(b"zstd") {
            Some(Coding::Zstd)
        } else if t.eq_ignore_ascii_case(b"identity") {
            Some(Coding::Identity)
        } else {
            None
        }
    }
}

/// q-values are kept in thousandths so comparisons are exact.
const Q_MAX: u16 = 1000;

/// qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
fn parse_q(v: &[u8]) -> Option<u16> {
    let (&int, rest) = v.split_first()?;
    let frac: &[u8] = match rest {
        [] => &[],
        [b'.', f @ ..] if f.len() <= 3 => f,
        _ => return None,
    };
    let mut thousandths = 0u16;
    let mut scale = 100u16;
    for &d in frac {
        if !d.is_ascii_digit() {
            return None;
        }
        thousandths += u16::from(d - b'0') * scale;
        scale /= 10;
    }
    match int {
        b'0' => Some(thousandths),
        b'1' if thousandths == 0 => Some(Q_MAX),
        _ => None,
    }
}

/// One Accept-Encoding list element -> (coding token, weight). `None` for an empty
/// element or one that is malformed (bad token, bad q), which is then ignored entirely.
fn parse_accept_elem(elem: &[u8]) -> Option<(&[u8], u16)> {
    let mut parts = elem.split(|&b| b == b';');
    let name = trim(parts.next()?);
    if !is_token(name) {
        return None;
    }
    let mut q = None;
    for p in parts {
        let p = trim(p);
        if p.is_empty() {
            continue; // "gzip;" — harmless, tolerate
        }
        let eq = memchr(b'=', p)?;
        let (k, v) = (trim(&p[..eq]), trim(&p[eq + 1..]));
        if k.eq_ignore_ascii_case(b"q") {
            if q.is_some() {
                return None; // two weights: ambiguous, drop the element
            }
            q = Some(parse_q(v)?);
        }
        // Other parameters are not defined for Accept-Encoding; ignore them.
    }
    Some((name, q.unwrap_or(Q_MAX)))
}

/// Pick the best coding among `offered` (server preference order). `None` header means
/// identity; `None` result means nothing acceptable remains (the caller still sends
/// identity, as nginx does).
pub fn choose_encoding(header: Option<&[u8]>, offered: &[Coding]) -> Option<Coding> {
    let Some(header) = header else {
        return Some(Coding::Identity);
    };
    // Explicit weights indexed by Coding; the first valid occurrence of a coding wins.
    let mut explicit: [Option<u16>; 4] = [None; 4];
    let mut star: Option<u16> = None;
    for elem in header.split(|&b| b == b',') {
        let Some((name, q)) = parse_accept_elem(elem) else {
            continue;
        };
        if name == b"*" {
            star.get_or_insert(q);
        } else if let Some(c) = Coding::from_token(name) {
            explicit[c.index()].get_or_insert(q);
        }
    }
    // Rank: None = not acceptable. Unlisted identity (no "*") is acceptable by default but
    // ranks below any coding the client listed with q > 0 (rank 0 < every positive q).
    let rank = |c: Coding| -> Option<u16> {
        let q = match (explicit[c.index()], star) {
            (Some(q), _) | (None, Some(q)) => q,
            (None, None) if c == Coding::Identity => return Some(0),
            (None, None) => return None,
        };
        (q > 0).then_some(q)
    };
    let mut best: Option<(Coding, u16)> = None;
    let implicit_identity = [Coding::Identity];
    let tail: &[Coding] = if offered.contains(&Coding::Identity) {
        &[]
    } else {
        &implicit_identity // identity competes last, so codings win ties against it
    };
    for &c in offered.iter().chain(tail) {
        if let Some(q) = rank(c) {
            // Strictly greater: among equal weights the earlier (preferred) one stays.
            if best.is_none_or(|(_, bq)| q > bq) {
                best = Some((c, q));
            }
        }
    }
    best.map(|(c, _)| c)
}

// ---------------------------------------------------------------------------------------
// Media types
// ---------------------------------------------------------------------------------------

/// "type/subtype" with parameters and surrounding whitespace removed.
fn split_media(s: &str) -> Option<(&str, &str)> {
    let essence = s.split_once(';').map_or(s, |(e, _)| e).trim();
    let (t, st) = essence.split_once('/')?;
    if t.is_empty() || st.is_empty() {
        return None;
    }
    Some((t, st))
}

/// Does `mime` (parameters allowed) match any of `patterns` ("a/b", "a/*", "*/*";
/// pattern parameters are ignored)? Case-insensitive.
pub fn mime_matches(mime: &str, patterns: &[String]) -> bool {
    let Some((ty, sub)) = split_media(mime) else {
        return false;
    };
    patterns.iter().any(|p| {
        let p = p.trim();
        if p == "*" {
            return true; // sloppy config shorthand for */*
        }
        match split_media(p) {
            Some(("*", "*")) => true,
            Some((pt, ps)) => {
                pt.eq_ignore_ascii_case(ty) && (ps == "*" || ps.eq_ignore_ascii_case(sub))
            }
            None => false,
        }
    })
}

// ---------------------------------------------------------------------------------------
// Conditional requests (RFC 9110 13)
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precondition {
    Proceed,
    NotModified,
    Failed,
}

#[derive(Clone, Copy, Debug)]
pub struct Validators<'a> {
    /// Strong entity-tag including quotes, e.g. `"5f1a-2c"`.
    pub etag: &'a [u8],
    /// The `Last-Modified` sent, in unix seconds; None when none is (RFC 9110 13.1.3 /
    /// 13.1.4: date conditions are then ignored, and an If-Range date never matches).
    pub last_modified: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Conditionals<'a> {
    pub if_match: Option<&'a [u8]>,
    pub if_none_match: Option<&'a [u8]>,
    pub if_modified_since: Option<&'a [u8]>,
    pub if_unmodified_since: Option<&'a [u8]>,
}

/// entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE at the start of `s`.
/// Returns (weak, opaque bytes without quotes, bytes consumed).
fn parse_etag(s: &[u8]) -> Option<(bool, &[u8], usize)> {
    // "W/" is case-sensitive (%s"W/" in RFC 9110 8.8.3).
    let (weak, open) = if s.starts_with(b"W/") {
        (true, 2)
    } else {
        (false, 0)
    };
    if s.get(open) != Some(&b'"') {
        return None;
    }
    let body = &s[open + 1..];
    let close = memchr(b'"', body)?;
    let opaque = &body[..close];
    // etagc = %x21 / %x23-7E / obs-text
    if !opaque
        .iter()
        .all(|&b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80)
    {
        return None;
    }
    Some((weak, opaque, open + close + 2))
}

/// Walk a `#entity-tag` list, calling `pred(weak, opaque)` for each well-formed element
/// until it returns true. Malformed elements are skipped up to the next comma. Commas may
/// legally appear inside a quoted tag, so the list cannot just be split on ','.
fn etag_list_any(list: &[u8], mut pred: impl FnMut(bool, &[u8]) -> bool) -> bool {
    let mut i = 0;
    while i < list.len() {
        let b = list[i];
        if b == b',' || is_ows(b) {
            i += 1;
            continue;
        }
        let rest = &list[i..];
        let mut skip_from = 0;
        if let Some((weak, opaque, end)) = parse_etag(rest) {
            let after = end + rest[end..].iter().take_while(|&&b| is_ows(b)).count();
            if after == rest.len() || rest[after] == b',' {
                if pred(weak, opaque) {
                    return true;
                }
                i += after;
                continue;
            }
            skip_from = end; // junk after a tag: the element is malformed
        }
        i += memchr(b',', &rest[skip_from..]).map_or(rest.len(), |p| skip_from + p);
    }
    false
}

/// If-Match / If-None-Match field value against the current strong tag. "*" matches
/// because the resource exists (the caller only evaluates for existing files).
fn etag_field_matches(field: &[u8], current: &[u8], strong: bool) -> bool {
    if trim(field) == b"*" {
        return true;
    }
    let Some((cur_weak, cur, _)) = parse_etag(trim(current)) else {
        return false;
    };
    if strong && cur_weak {
        return false;
    }
    etag_list_any(field, |weak, opaque| (!strong || !weak) && opaque == cur)
}

/// RFC 9110 13.2.2 evaluation order. The caller does the range step (If-Range) itself.
pub fn evaluate(c: &Conditionals, v: &Validators, is_get_or_head: bool) -> Precondition {
    // Step 1/2: If-Match (strong) takes precedence over If-Unmodified-Since.
    if let Some(im) = c.if_match {
        if !etag_field_matches(im, v.etag, true) {
            return Precondition::Failed;
        }
    } else if let (Some(date), Some(lm)) =
        (c.if_unmodified_since.and_then(parse_date), v.last_modified)
    {
        if lm > date {
            return Precondition::Failed;
        }
    }
    // Step 3/4: If-None-Match (weak) makes If-Modified-Since irrelevant whenever present.
    if let Some(inm) = c.if_none_match {
        if etag_field_matches(inm, v.etag, false) {
            return if is_get_or_head {
                Precondition::NotModified
            } else {
                Precondition::Failed
            };
        }
    } else if is_get_or_head {
        if let (Some(date), Some(lm)) = (c.if_modified_since.and_then(parse_date), v.last_modified)
        {
            if lm <= date {
                return Precondition::NotModified;
            }
        }
    }
    Precondition::Proceed
}

/// If-Range (RFC 9110 13.1.5): strong entity-tag match, or an HTTP-date equal to
/// Last-Modified. A weak tag or anything unparseable means "send the whole thing".
///
/// Caveat for the caller: 13.1.5 only allows the date form when Last-Modified is a strong
/// validator; a file modified within the same second as the response is not.
pub fn if_range_matches(if_range: &[u8], v: &Validators) -> bool {
    let val = trim(if_range);
    // 13.1.5: a DQUOTE in the first three characters distinguishes a tag from a date.
    if val.iter().take(3).any(|&b| b == b'"') {
        let (Some((false, opaque, end)), Some((false, cur, _))) =
            (parse_etag(val), parse_etag(trim(v.etag)))
        else {
            return false;
        };
        return end == val.len() && opaque == cur;
    }
    v.last_modified.is_some() && parse_date(val) == v.last_modified
}

// ---------------------------------------------------------------------------------------
// Ranges (RFC 9110 14)
// ---------------------------------------------------------------------------------------

/// Inclusive `start..=end`; always `end < len` of the representation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start).saturating_add(1)
    }

    /// Never true for a well-formed range; present to satisfy the len/is_empty convention.
    pub fn is_empty(&self) -> bool {
        self.end < self.start
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum RangeResult {
    /// Not a bytes range or syntactically invalid: ignore the header, send 200 with the full body.
    Ignore,
    /// One or more satisfiable ranges, in request order (or coalesced, see `parse_range`),
    /// written into the caller's `out`.
    Satisfiable,
    /// Syntactically valid but none overlaps the file: 416 with "Content-Range: bytes */len".
    Unsatisfiable,
}

/// Saturating decimal: positions beyond u64 are unsatisfiable or clamp anyway, so a huge
/// number must not turn a valid header into a syntax error.
fn dec_sat(d: &[u8]) -> u64 {
    d.iter().fold(0u64, |acc, &b| {
        acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    })
}

/// Exact numeric comparison of two digit strings (immune to saturation).
fn cmp_dec(a: &[u8], b: &[u8]) -> Ordering {
    let strip = |s: &[u8]| -> usize { s.iter().take_while(|&&c| c == b'0').count() };
    let (a, b) = (&a[strip(a)..], &b[strip(b)..]);
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn all_digits(s: &[u8]) -> bool {
    s.iter().all(u8::is_ascii_digit)
}

/// Parse a Range field value against a representation of `len` bytes. `out` is cleared
/// first and holds ranges only when the result is `Satisfiable`.
pub fn parse_range(
    header: &[u8],
    len: u64,
    max_ranges: usize,
    out: &mut Vec<ByteRange>,
) -> RangeResult {
    out.clear();
    let r = parse_range_inner(header, len, max_ranges, out);
    if r != RangeResult::Satisfiable {
        out.clear();
    }
    r
}

fn parse_range_inner(
    header: &[u8],
    len: u64,
    max_ranges: usize,
    out: &mut Vec<ByteRange>,
) -> RangeResult {
    let h = trim(header);
    let Some(eq) = memchr(b'=', h) else {
        return RangeResult::Ignore;
    };
    if !trim(&h[..eq]).eq_ignore_ascii_case(b"bytes") {
        return RangeResult::Ignore; // unknown unit: 14.2 says ignore
    }
    let mut count = 0usize;
    for spec in h[eq + 1..].split(|&b| b == b',') {
        let spec = trim(spec);
        if spec.is_empty() {
            continue; // #rule allows empty list elements
        }
        count += 1;
        if count > max_ranges {
            return RangeResult::Ignore; // amplification guard: serve the whole thing once
        }
        let Some(dash) = memchr(b'-', spec) else {
            return RangeResult::Ignore;
        };
        let (a, b) = (&spec[..dash], &spec[dash + 1..]);
        if !all_digits(a) || !all_digits(b) {
            return RangeResult::Ignore;
        }
        let range = if a.is_empty() {
            // suffix-range
            if b.is_empty() {
                return RangeResult::Ignore;
            }
            let n = dec_sat(b);
            if n == 0 || len == 0 {
                continue; // "-0" or empty file: unsatisfiable
            }
            ByteRange {
                start: len.saturating_sub(n),
                end: len - 1,
            }
        } else {
            let first = dec_sat(a);
            let last = if b.is_empty() {
                u64::MAX
            } else if cmp_dec(a, b) == Ordering::Greater {
                return RangeResult::Ignore; // 14.1.1: last < first is invalid
            } else {
                dec_sat(b)
            };
            if first >= len {
                continue; // also covers len == 0
            }
            ByteRange {
                start: first,
                end: last.min(len - 1),
            }
        };
        out.push(range);
    }
    if count == 0 {
        return RangeResult::Ignore; // "bytes=" — 1#range-spec needs at least one
    }
    if out.is_empty() {
        return RangeResult::Unsatisfiable;
    }
    coalesce_if_needed(out);
    RangeResult::Satisfiable
}

/// 14.2: overlapping or out-of-order ranges are an amplification vector. If the set is not
/// already strictly ascending and disjoint, sort and merge overlapping/adjacent ranges.
/// A strictly ascending disjoint set already totals <= len, so it is left in request order.
fn coalesce_if_needed(out: &mut Vec<ByteRange>) {
    if out.windows(2).all(|w| w[0].end < w[1].start) {
        return;
    }
    out.sort_unstable_by_key(|r| r.start);
    let mut w = 0;
    for i in 1..out.len() {
        let r = out[i];
        if r.start <= out[w].end.saturating_add(1) {
            out[w].end = out[w].end.max(r.end);
        } else {
            w += 1;
            out[w] = r;
        }
    }
    out.truncate(w + 1);
}

/// Append a Content-Range value "bytes S-E/LEN".
pub fn push_content_range(out: &mut Vec<u8>, r: ByteRange, len: u64) {
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(b"bytes ");
    out.extend_from_slice(b.format(r.start).as_bytes());
    out.push(b'-');
    out.extend_from_slice(b.format(r.end).as_bytes());
    out.push(b'/');
    out.extend_from_slice(b.format(len).as_bytes());
}

/// Append the 416 Content-Range value "bytes */LEN".
pub fn push_unsatisfied_content_range(out: &mut Vec<u8>, len: u64) {
    out.extend_from_slice(b"bytes */");
    out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
}

/// Layout of a multipart/byteranges body. The connection sends, in order:
/// `heads[parts[0].0]`, file bytes of `parts[0].1`, ..., `heads[trailer]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Multipart {
    pub parts: Vec<(Range<usize>, ByteRange)>,
    pub trailer: Range<usize>,
    pub content_length: u64,
}

/// Build the part preambles into `heads` (cleared first). The first part head starts
/// directly with "--BOUNDARY" (as in the RFC 9110 14.6 example); every later head starts
/// with the CRLF that ends the previous part's data, as does the trailer.
/// An empty `content_type` omits the per-part Content-Type line.
pub fn multipart_layout(
    ranges: &[ByteRange],
    len: u64,
    content_type: &str,
    boundary: &str,
    heads: &mut Vec<u8>,
) -> Multipart {
    heads.clear();
    let mut parts = Vec::with_capacity(ranges.len());
    let mut data = 0u64;
    for (i, r) in ranges.iter().enumerate() {
        let start = heads.len();
        if i > 0 {
            heads.extend_from_slice(b"\r\n");
        }
        heads.extend_from_slice(b"--");
        heads.extend_from_slice(boundary.as_bytes());
        heads.extend_from_slice(b"\r\n");
        if !content_type.is_empty() {
            heads.extend_from_slice(b"Content-Type: ");
            heads.extend_from_slice(content_type.as_bytes());
            heads.extend_from_slice(b"\r\n");
        }
        heads.extend_from_slice(b"Content-Range: ");
        push_content_range(heads, *r, len);
        heads.extend_from_slice(b"\r\n\r\n");
        parts.push((start..heads.len(), *r));
        data = data.saturating_add(r.len());
    }
    let t = heads.len();
    heads.extend_from_slice(b"\r\n--");
    heads.extend_from_slice(boundary.as_bytes());
    heads.extend_from_slice(b"--\r\n");
    Multipart {
        parts,
        trailer: t..heads.len(),
        content_length: (heads.len() as u64).saturating_add(data),
    }
}

/// Content-Type header value for a multipart/byteranges response.
pub fn multipart_content_type(boundary: &str) -> String {
    format!("multipart/byteranges; boundary={boundary}")
}

/// A 16-hex-char boundary derived from the entity-tag (FNV-1a 64): stable per
/// representation, so repeated requests produce byte-identical responses.
pub fn boundary_from_etag(etag: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in etag {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use Coding::*;

    fn ce(h: &str, offered: &[Coding]) -> Option<Coding> {
        choose_encoding(Some(h.as_bytes()), offered)
    }

    const ALL: [Coding; 3] = [Zstd, Br, Gzip];

    #[test]
    fn encoding_basic() {
        assert_eq!(ce("gzip", &[Gzip]), Some(Gzip));
        assert_eq!(ce("gzip", &ALL), Some(Gzip));
        assert_eq!(ce("gzip;q=0", &[Gzip]), Some(Identity));
        assert_eq!(ce("*", &[Gzip]), Some(Gzip));
        assert_eq!(ce("*", &ALL), Some(Zstd));
        assert_eq!(ce("*;q=0", &[Gzip]), None);
        assert_eq!(ce("*;q=0", &[]), None);
        assert_eq!(ce("identity;q=0, gzip;q=0", &[Gzip]), None);
        assert_eq!(ce("identity;q=0", &[]), None);
        assert_eq!(ce("identity;q=0", &[Gzip]), None);
        assert_eq!(ce("identity;q=0, gzip", &[Gzip]), Some(Gzip));
        assert_eq!(ce("deflate", &[Gzip]), Some(Identity));
        assert_eq!(ce("", &ALL), Some(Identity));
        assert_eq!(ce("  ", &ALL), Some(Identity));
        assert_eq!(choose_encoding(None, &ALL), Some(Identity));
    }

    #[test]
    fn encoding_weights_and_ties() {
        assert_eq!(ce("br;q=0.5, gzip;q=0.8", &[Br, Gzip]), Some(Gzip));
        assert_eq!(ce("gzip, br", &[Br, Gzip]), Some(Br));
        assert_eq!(ce("gzip, br", &[Gzip, Br]), Some(Gzip));
        assert_eq!(ce("gzip;q=0.001", &[Gzip]), Some(Gzip));
        // Identity listed higher than the coding wins.
        assert_eq!(ce("identity, gzip;q=0.5", &[Gzip]), Some(Identity));
        // Equal q: a coding beats identity.
        assert_eq!(ce("identity;q=0.5, gzip;q=0.5", &[Gzip]), Some(Gzip));
        // "*" applies only to codings not listed explicitly.
        assert_eq!(ce("*;q=0.9, gzip;q=0.1", &[Gzip, Br]), Some(Br));
        assert_eq!(ce("*, br;q=0", &[Br]), Some(Identity));
        assert_eq!(ce("*;q=0, identity", &[Gzip]), Some(Identity));
        assert_eq!(ce("*;q=0.3, identity;q=0.5", &[Gzip]), Some(Identity));
        // Explicit Identity in `offered` is ranked at its position.
        assert_eq!(ce("gzip, identity", &[Identity, Gzip]), Some(Identity));
    }

    #[test]
    fn encoding_syntax() {
        assert_eq!(ce("GZIP ; Q=0.5", &[Gzip]), Some(Gzip));
        assert_eq!(ce("gzip ;q = 0.5", &[Gzip]), Some(Gzip));
        assert_eq!(ce("x-gzip", &[Gzip]), Some(Gzip));
        assert_eq!(ce("X-GZIP;q=0", &[Gzip]), Some(Identity));
        assert_eq!(ce("Br", &[Br]), Some(Br));
        assert_eq!(ce("zstd;q=1.000", &[Zstd]), Some(Zstd));
        assert_eq!(ce("zstd;q=0.", &[Zstd]), Some(Identity));
        // Invalid q: element ignored (so gzip is simply not listed).
        for bad in [
            "gzip;q=1.5",
            "gzip;q=abc",
            "gzip;q=1.001",
            "gzip;q=0.0001",
            "gzip;q=.5",
            "gzip;q=",
            "gzip;q",
            "gzip;q=\"1\"",
            "gzip;q=0.5;q=0.6",
            "gz ip",
        ] {
            assert_eq!(ce(bad, &[Gzip]), Some(Identity), "{bad}");
        }
        // An ignored bad "*;q=0" must not exclude identity.
        assert_eq!(ce("*;q=zero", &[Gzip]), Some(Identity));
        assert_eq!(ce("identity;q=2", &[]), Some(Identity));
        // Empty list elements are fine.
        assert_eq!(ce(",, br ,", &[Gzip, Br]), Some(Br));
        // First occurrence of a duplicate wins.
        assert_eq!(ce("gzip;q=0, gzip", &[Gzip]), Some(Identity));
    }

    #[test]
    fn mime() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let pats = p(&["application/json", "text/*"]);
        assert!(mime_matches("application/json", &pats));
        assert!(mime_matches("Application/JSON; charset=utf-8", &pats));
        assert!(mime_matches("text/html;charset=utf-8", &pats));
        assert!(mime_matches("TEXT/css", &pats));
        assert!(!mime_matches("image/png", &pats));
        assert!(!mime_matches("application/jsonx", &pats));
        assert!(!mime_matches("application", &pats));
        assert!(mime_matches("image/png", &p(&["*/*"])));
        assert!(mime_matches("image/png", &p(&["IMAGE/PNG"])));
        assert!(mime_matches("image/svg+xml", &p(&["image/svg+xml; q=1"])));
        assert!(!mime_matches("image/png", &[]));
        assert!(!mime_matches("text/html", &p(&["text/plain"])));
    }

    const ETAG: &[u8] = b"\"5f1a-2c\"";
    const LM: u64 = 784_111_777; // Sun, 06 Nov 1994 08:49:37 GMT
    const LM_S: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
    const BEFORE: &str = "Sun, 06 Nov 1994 08:49:36 GMT";
    const AFTER: &str = "Sun, 06 Nov 1994 08:49:38 GMT";

    fn v() -> Validators<'static> {
        Validators {
            etag: ETAG,
            last_modified: Some(LM),
        }
    }

    fn ev(
        im: Option<&str>,
        inm: Option<&str>,
        ims: Option<&str>,
        ius: Option<&str>,
        get: bool,
    ) -> Precondition {
        let c = Conditionals {
            if_match: im.map(str::as_bytes),
            if_none_match: inm.map(str::as_bytes),
            if_modified_since: ims.map(str::as_bytes),
            if_unmodified_since: ius.map(str::as_bytes),
        };
        evaluate(&c, &v(), get)
    }

    use Precondition::*;

    #[test]
    fn cond_none() {
        assert_eq!(evaluate(&Conditionals::default(), &v(), true), Proceed);
        assert_eq!(evaluate(&Conditionals::default(), &v(), false), Proceed);
    }

    #[test]
    fn cond_if_match() {
        let im = |h: &str| ev(Some(h), None, None, None, true);
        assert_eq!(im("\"5f1a-2c\""), Proceed);
        assert_eq!(im("*"), Proceed);
        assert_eq!(im(" * "), Proceed);
        assert_eq!(im("\"nope\""), Failed);
        assert_eq!(im("W/\"5f1a-2c\""), Failed); // strong comparison
        assert_eq!(im("\"a\", \"5f1a-2c\""), Proceed);
        assert_eq!(im("\"a\",\"5f1a-2c\"  ,"), Proceed);
        assert_eq!(im("garbage, \"5f1a-2c\""), Proceed);
        assert_eq!(im("\"5f1a-2c\"x"), Failed); // malformed element is not a match
        assert_eq!(im("5f1a-2c"), Failed);
        assert_eq!(im(""), Failed);
        assert_eq!(im("\"a,b\", \"c\""), Failed);
        // If-Match wins over If-Unmodified-Since; success makes IUS irrelevant.
        assert_eq!(
            ev(Some("\"5f1a-2c\""), None, None, Some(BEFORE), true),
            Proceed
        );
        // If-Match failure beats If-None-Match.
        assert_eq!(
            ev(Some("\"x\""), Some("\"5f1a-2c\""), None, None, true),
            Failed
        );
        assert_eq!(ev(Some("\"x\""), Some("\"y\""), None, None, true), Failed);
        assert_eq!(ev(Some("\"x\""), None, None, None, false), Failed);
    }

    #[test]
    fn cond_dates_ignored_without_last_modified() {
        let none = Validators {
            etag: ETAG,
            last_modified: None,
        };
        let c = |ims: Option<&'static str>, ius: Option<&'static str>| Conditionals {
            if_modified_since: ims.map(str::as_bytes),
            if_unmodified_since: ius.map(str::as_bytes),
            ..Conditionals::default()
        };
        assert_eq!(evaluate(&c(Some(AFTER), None), &none, true), Proceed);
        assert_eq!(evaluate(&c(None, Some(BEFORE)), &none, true), Proceed);
        assert!(!if_range_matches(LM_S.as_bytes(), &none));
        assert!(if_range_matches(ETAG, &none));
    }

    #[test]
    fn cond_if_unmodified_since() {
        let ius = |h: &str| ev(None, None, None, Some(h), true);
        assert_eq!(ius(LM_S), Proceed);
        assert_eq!(ius(AFTER), Proceed);
        assert_eq!(ius(BEFORE), Failed);
        assert_eq!(ius("not a date"), Proceed);
        assert_eq!(ius("Sunday, 06-Nov-94 08:49:36 GMT"), Failed); // RFC 850
        assert_eq!(ius("Sun Nov  6 08:49:36 1994"), Failed); // asctime
        assert_eq!(ev(None, None, None, Some(BEFORE), false), Failed);
    }

    #[test]
    fn cond_if_none_match() {
        let inm = |h: &str, get| ev(None, Some(h), None, None, get);
        assert_eq!(inm("\"5f1a-2c\"", true), NotModified);
        assert_eq!(inm("W/\"5f1a-2c\"", true), NotModified); // weak comparison
        assert_eq!(inm("\"a\", W/\"5f1a-2c\"", true), NotModified);
        assert_eq!(inm("*", true), NotModified);
        assert_eq!(inm("\"other\"", true), Proceed);
        assert_eq!(inm("w/\"5f1a-2c\"", true), Proceed); // "W/" is case-sensitive
        assert_eq!(inm("\"5f1a-2c\"", false), Failed);
        assert_eq!(inm("*", false), Failed);
        assert_eq!(inm("\"other\"", false), Proceed);
        // INM present (not matching) -> IMS ignored even though it would say 304.
        assert_eq!(
            ev(None, Some("\"other\""), Some(AFTER), None, true),
            Proceed
        );
        // INM match with an IMS that says modified -> still 304.
        assert_eq!(
            ev(None, Some("\"5f1a-2c\""), Some(BEFORE), None, true),
            NotModified
        );
        // IUS failure beats INM.
        assert_eq!(
            ev(None, Some("\"5f1a-2c\""), None, Some(BEFORE), true),
            Failed
        );
    }

    #[test]
    fn cond_if_modified_since() {
        let ims = |h: &str, get| ev(None, None, Some(h), None, get);
        assert_eq!(ims(LM_S, true), NotModified);
        assert_eq!(ims(AFTER, true), NotModified);
        assert_eq!(ims(BEFORE, true), Proceed);
        assert_eq!(ims(LM_S, false), Proceed); // only for GET/HEAD
        assert_eq!(ims("yesterday", true), Proceed);
        assert_eq!(ims("Sun, 06 Nov 1994 08:49:37 GMT, x", true), Proceed);
        assert_eq!(ims("  Sun, 06 Nov 1994 08:49:37 GMT ", true), NotModified);
    }

    #[test]
    fn if_range() {
        assert!(if_range_matches(b"\"5f1a-2c\"", &v()));
        assert!(if_range_matches(b" \"5f1a-2c\" ", &v()));
        assert!(!if_range_matches(b"W/\"5f1a-2c\"", &v()));
        assert!(!if_range_matches(b"\"other\"", &v()));
        assert!(!if_range_matches(b"\"5f1a-2c\", \"x\"", &v()));
        assert!(if_range_matches(LM_S.as_bytes(), &v()));
        assert!(!if_range_matches(AFTER.as_bytes(), &v()));
        assert!(!if_range_matches(BEFORE.as_bytes(), &v()));
        assert!(!if_range_matches(b"", &v()));
        assert!(!if_range_matches(b"*", &v()));
        let weak = Validators {
            etag: b"W/\"5f1a-2c\"",
            last_modified: Some(LM),
        };
        assert!(!if_range_matches(b"W/\"5f1a-2c\"", &weak));
        assert!(!if_range_matches(b"\"5f1a-2c\"", &weak));
    }

    fn pr(h: &str, len: u64) -> (RangeResult, Vec<(u64, u64)>) {
        let mut out = vec![ByteRange { start: 9, end: 9 }]; // must be cleared
        let r = parse_range(h.as_bytes(), len, 16, &mut out);
        (r, out.iter().map(|r| (r.start, r.end)).collect())
    }

    use RangeResult::{Ignore, Satisfiable, Unsatisfiable};

    #[test]
    fn range_forms() {
        assert_eq!(pr("bytes=0-99", 1000), (Satisfiable, vec![(0, 99)]));
        assert_eq!(pr("bytes=0-0", 1000), (Satisfiable, vec![(0, 0)]));
        assert_eq!(pr("bytes=500-", 1000), (Satisfiable, vec![(500, 999)]));
        assert_eq!(pr("bytes=-500", 1000), (Satisfiable, vec![(500, 999)]));
        assert_eq!(pr("bytes=-5000", 1000), (Satisfiable, vec![(0, 999)]));
        assert_eq!(pr("bytes=0-99999", 1000), (Satisfiable, vec![(0, 999)]));
        assert_eq!(pr("BYTES=1-2", 10), (Satisfiable, vec![(1, 2)]));
        assert_eq!(
            pr("bytes=0-99,200-,-500", 1000),
            (Satisfiable, vec![(0, 99), (200, 999)])
        );
        assert_eq!(pr("bytes=0-99,200-299", 1000).1, vec![(0, 99), (200, 299)]);
        assert_eq!(
            pr("bytes= 0-1 , 3-4", 10),
            (Satisfiable, vec![(0, 1), (3, 4)])
        );
        assert_eq!(pr("bytes=0-1,,3-4,", 10).1, vec![(0, 1), (3, 4)]);
        // Adjacent but ascending: left alone (request order preserved).
        assert_eq!(pr("bytes=0-1,2-3", 10).1, vec![(0, 1), (2, 3)]);
        // Huge numbers saturate instead of erroring.
        assert_eq!(
            pr("bytes=0-99999999999999999999999", 10),
            (Satisfiable, vec![(0, 9)])
        );
        assert_eq!(pr("bytes=-99999999999999999999999", 10).1, vec![(0, 9)]);
        assert_eq!(pr("bytes=99999999999999999999-", 10).0, Unsatisfiable);
        assert_eq!(pr("bytes=0005-0009", 10).1, vec![(5, 9)]);
    }

    #[test]
    fn range_unsatisfiable() {
        assert_eq!(pr("bytes=-0", 10), (Unsatisfiable, vec![]));
        assert_eq!(pr("bytes=10-", 10), (Unsatisfiable, vec![]));
        assert_eq!(pr("bytes=10-20", 10), (Unsatisfiable, vec![]));
        assert_eq!(pr("bytes=10-20, 5-", 10), (Satisfiable, vec![(5, 9)]));
        assert_eq!(pr("bytes=10-20,-0", 10).0, Unsatisfiable);
        for h in ["bytes=0-", "bytes=0-0", "bytes=-1", "bytes=-0"] {
            assert_eq!(pr(h, 0), (Unsatisfiable, vec![]), "{h}");
        }
    }

    #[test]
    fn range_ignored() {
        for h in [
            "items=0-1",
            "bytes 0-1",
            "bytes=",
            "bytes= , ",
            "bytes=5-1",
            "bytes=-",
            "bytes=a-b",
            "bytes=0-1-2",
            "bytes=--1",
            "bytes=1",
            "bytes=0 - 1",
            "bytes=+1-2",
            "bytes=0-1,5-1",
            "bytes=0-1;x",
            "bytes=99999999999999999999-99999999999999999998",
            "",
        ] {
            assert_eq!(pr(h, 10), (Ignore, vec![]), "{h}");
        }
        // Still syntactically invalid against an empty file.
        assert_eq!(pr("bytes=5-1", 0).0, Ignore);
    }

    #[test]
    fn range_limits_and_coalescing() {
        let many: Vec<String> = (0..17).map(|i| format!("{}-{}", i * 2, i * 2)).collect();
        let h17 = format!("bytes={}", many.join(","));
        let h16 = format!("bytes={}", many[..16].join(","));
        assert_eq!(pr(&h17, 100), (Ignore, vec![]));
        let (r, v16) = pr(&h16, 100);
        assert_eq!(r, Satisfiable);
        assert_eq!(v16.len(), 16);
        let mut out = Vec::new();
        assert_eq!(parse_range(b"bytes=0-1", 10, 0, &mut out), Ignore);

        assert_eq!(pr("bytes=0-5,3-8", 10), (Satisfiable, vec![(0, 8)]));
        assert_eq!(pr("bytes=5-6,0-1", 10).1, vec![(0, 1), (5, 6)]);
        assert_eq!(pr("bytes=4-5,0-3", 10).1, vec![(0, 5)]); // adjacent once sorting
        assert_eq!(pr("bytes=0-,0-,0-", 10).1, vec![(0, 9)]);
        assert_eq!(pr("bytes=-3,0-", 10).1, vec![(0, 9)]);
        assert_eq!(
            pr("bytes=8-9,0-1,4-4,1-2", 10).1,
            vec![(0, 2), (4, 4), (8, 9)]
        );
    }

    /// Deterministic xorshift so the property loop needs no extra crates.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn range_properties() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut out = Vec::new();
        let mut sat = 0;
        for len in 0..48u64 {
            for _ in 0..400 {
                let n = 1 + rng.below(5);
                let mut h = String::from("bytes=");
                let mut bytes_wanted = vec![false; len as usize];
                let mut any_sat = false;
                for i in 0..n {
                    if i > 0 {
                        h.push_str(if rng.below(2) == 0 { "," } else { " , " });
                    }
                    let a = rng.below(len + 5);
                    let b = a + rng.below(20);
                    // Naive model of what each spec selects.
                    let sel = match rng.below(3) {
                        0 => {
                            h.push_str(&format!("{a}-{b}"));
                            (a, b)
                        }
                        1 => {
                            h.push_str(&format!("{a}-"));
                            (a, u64::MAX)
                        }
                        _ => {
                            let s = rng.below(len + 5);
                            h.push_str(&format!("-{s}"));
                            if s == 0 {
                                (u64::MAX, 0)
                            } else {
                                (len.saturating_sub(s), u64::MAX)
                            }
                        }
                    };
                    for (x, w) in bytes_wanted.iter_mut().enumerate() {
                        let x = x as u64;
                        if x >= sel.0 && x <= sel.1 {
                            *w = true;
                            any_sat = true;
                        }
                    }
                }
                let r = parse_range(h.as_bytes(), len, 16, &mut out);
                match r {
                    Satisfiable => {
                        sat += 1;
                        let total: u64 = out.iter().map(ByteRange::len).sum();
                        assert!(total <= len, "{h} len={len} {out:?}");
                        for br in &out {
                            assert!(br.start <= br.end && br.end < len, "{h} {out:?}");
                        }
                        for w in out.windows(2) {
                            assert!(w[0].end < w[1].start, "{h} {out:?}");
                        }
                        let mut got = vec![false; len as usize];
                        for br in &out {
                            for g in &mut got[br.start as usize..=br.end as usize] {
                                *g = true;
                            }
                        }
                        assert_eq!(got, bytes_wanted, "{h} len={len}");
                    }
                    Unsatisfiable => {
                        assert!(out.is_empty());
                        assert!(!any_sat, "{h} len={len}");
                    }
                    Ignore => panic!("valid header ignored: {h}"),
                }
            }
        }
        assert!(sat > 1000);
        // Garbage never panics and never yields an out-of-bounds range.
        let alphabet = b"bytes=0123456789-, \t;xB";
        for _ in 0..20_000 {
            let n = rng.below(16) as usize;
            let h: Vec<u8> = (0..n)
                .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
                .collect();
            let len = rng.below(30);
            let mut h2 = b"bytes=".to_vec();
            h2.extend_from_slice(&h);
            for hdr in [&h, &h2] {
                if parse_range(hdr, len, 4, &mut out) == Satisfiable {
                    let total: u64 = out.iter().map(ByteRange::len).sum();
                    assert!(total <= len && out.len() <= 4);
                    assert!(out.iter().all(|r| r.start <= r.end && r.end < len));
                } else {
                    assert!(out.is_empty());
                }
            }
        }
    }

    #[test]
    fn multipart() {
        let file: Vec<u8> = (0..200u32).map(|i| (i % 251) as u8).collect();
        let len = file.len() as u64;
        let ranges = [
            ByteRange { start: 0, end: 9 },
            ByteRange {
                start: 100,
                end: 199,
            },
        ];
        let b = boundary_from_etag(ETAG);
        assert_eq!(b.len(), 16);
        assert!(b.bytes().all(|c| c.is_ascii_hexdigit()));
        let mut heads = b"stale".to_vec();
        let m = multipart_layout(&ranges, len, "text/plain", &b, &mut heads);
        let mut body = Vec::new();
        for (span, r) in &m.parts {
            body.extend_from_slice(&heads[span.clone()]);
            body.extend_from_slice(&file[r.start as usize..=r.end as usize]);
        }
        body.extend_from_slice(&heads[m.trailer.clone()]);
        assert_eq!(m.content_length, body.len() as u64);
        let expected_head0 =
            format!("--{b}\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-9/200\r\n\r\n");
        let expected_head1 = format!(
            "\r\n--{b}\r\nContent-Type: text/plain\r\nContent-Range: bytes 100-199/200\r\n\r\n"
        );
        assert_eq!(&heads[m.parts[0].0.clone()], expected_head0.as_bytes());
        assert_eq!(&heads[m.parts[1].0.clone()], expected_head1.as_bytes());
        assert_eq!(
            &heads[m.trailer.clone()],
            format!("\r\n--{b}--\r\n").as_bytes()
        );
        let mut expected = expected_head0.into_bytes();
        expected.extend_from_slice(&file[0..10]);
        expected.extend_from_slice(expected_head1.as_bytes());
        expected.extend_from_slice(&file[100..200]);
        expected.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
        assert_eq!(body, expected);
        assert_eq!(
            multipart_content_type(&b),
            format!("multipart/byteranges; boundary={b}")
        );

        // Without a content type and with large numbers the length is still exact.
        let big = 10_000_000_000u64;
        let r = [
            ByteRange { start: 5, end: 5 },
            ByteRange {
                start: big - 10,
                end: big - 1,
            },
        ];
        let m = multipart_layout(&r, big, "", "XYZ", &mut heads);
        assert!(!heads.windows(13).any(|w| w == b"Content-Type:"));
        assert_eq!(m.content_length, heads.len() as u64 + 1 + 10);
    }

    #[test]
    fn content_range_values() {
        let mut out = Vec::new();
        push_content_range(&mut out, ByteRange { start: 0, end: 99 }, 1000);
        assert_eq!(out, b"bytes 0-99/1000");
        out.clear();
        push_unsatisfied_content_range(&mut out, 1000);
        assert_eq!(out, b"bytes */1000");
    }

    /// The issue's rule: among the codings accepted with the highest q, the configured
    /// order wins (default zstd, br, gzip); `identity;q=0` and `*` as before.
    #[test]
    fn encoding_prefers_configured_order_among_equal_q() {
        assert_eq!(ce("gzip, br, zstd", &ALL), Some(Zstd));
        assert_eq!(ce("gzip, deflate, br, zstd", &ALL), Some(Zstd));
        assert_eq!(ce("gzip, deflate, br", &ALL), Some(Br));
        assert_eq!(ce("gzip;q=1, zstd;q=0.5", &ALL), Some(Gzip));
        assert_eq!(ce("br;q=0.9, gzip;q=0.9, zstd;q=0.8", &ALL), Some(Br));
        assert_eq!(ce("*", &ALL), Some(Zstd));
        assert_eq!(ce("br;q=0, *", &ALL), Some(Zstd));
        assert_eq!(ce("zstd;q=0, *", &ALL), Some(Br));
        assert_eq!(ce("zstd;q=0, br;q=0, *;q=0.2", &ALL), Some(Gzip));
        // Only gzip offered (e.g. br and zstd switched off): a zstd-only client gets identity.
        assert_eq!(ce("zstd", &[Gzip]), Some(Identity));
        assert_eq!(ce("zstd, identity;q=0", &[Gzip]), None);
        assert_eq!(ce("zstd, br, identity;q=0", &ALL), Some(Zstd));
        // A configured order other than the default is honoured the same way.
        assert_eq!(ce("gzip, br, zstd", &[Gzip, Br, Zstd]), Some(Gzip));
        assert_eq!(ce("*", &[Br, Gzip]), Some(Br));
    }
}
