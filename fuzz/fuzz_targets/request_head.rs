//! Request-head parser: never panics, spans stay in bounds, framing agrees with the
//! Content-Length / Transfer-Encoding fields, and the verdict depends only on a prefix
//! (so it cannot change with how the bytes were split across reads).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vireo::http::request::{parse, BodyFraming, Limits, RequestHead};
use vireo::http::{Method, Span, Version};

const DEFAULT: Limits = Limits {
    max_request_line: 8192,
    max_header_bytes: 16384,
    max_body_bytes: 1_048_576,
};

/// Small limits so the 414 / 431 / 413 paths are reachable with short inputs.
const SMALL: Limits = Limits {
    max_request_line: 48,
    max_header_bytes: 160,
    max_body_bytes: 100,
};

fuzz_target!(|data: &[u8]| {
    check(data, &DEFAULT);
    check(data, &SMALL);
});

fn check(buf: &[u8], limits: &Limits) {
    let verdict = parse(buf, limits);
    match &verdict {
        Ok(None) => return,
        Ok(Some(h)) => check_head(buf, h, limits),
        Err(e) => {
            assert!(e.close, "every parse error closes: {e:?}");
            assert!(
                matches!(e.status, 400 | 413 | 414 | 417 | 431 | 501 | 505),
                "unexpected status {e:?}"
            );
        }
    }
    // Monotone in the prefix: more bytes never change a settled verdict ...
    for tail in [
        &b"\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"\x00",
    ] {
        let mut longer = buf.to_vec();
        longer.extend_from_slice(tail);
        assert_eq!(parse(&longer, limits), verdict, "appending {tail:?}");
    }
    // ... and a success is never preceded by an error on a shorter prefix.
    if let Ok(Some(h)) = &verdict {
        assert_eq!(parse(&buf[..h.head_len], limits), verdict, "exact head");
        let n = h.head_len;
        let cuts = (0..n).step_by((n / 24).max(1)).chain([n - 1]);
        for cut in cuts {
            assert_eq!(parse(&buf[..cut], limits), Ok(None), "prefix {cut}");
        }
    }
}

fn check_head(buf: &[u8], h: &RequestHead, limits: &Limits) {
    let n = h.head_len;
    assert!(n <= buf.len(), "head_len {n} > input {}", buf.len());
    assert!(n <= limits.max_header_bytes, "head_len over limit");
    let head = &buf[..n];
    let span_ok = |s: Span| s.start <= s.end && (s.end as usize) <= n;
    let mut spans = vec![h.method_span, h.target, h.path];
    spans.extend([h.query, h.host].into_iter().flatten());
    spans.extend(h.field_spans().into_iter().filter_map(|(_, s)| s));
    for s in spans {
        assert!(span_ok(s), "span {s:?} out of head of {n}");
    }
    let method = h.method_span.get(buf);
    assert_eq!(Method::from_bytes(method), h.method);
    assert!(!method.is_empty());
    let target = h.target.get(buf);
    assert!(!target.is_empty());
    assert!(target
        .iter()
        .all(|&b| (0x21..0x7f).contains(&b) && b != b'#'));
    // path and query lie inside the target.
    let inside = |s: Span| s.start >= h.target.start && s.end <= h.target.end;
    assert!(inside(h.path), "path outside target");
    if let Some(q) = h.query {
        assert!(inside(q), "query outside target");
        assert_eq!(q.start, h.path.end + 1, "query does not follow path's '?'");
    }
    if h.version == Version::Http11 && h.method != Method::Connect {
        // An HTTP/1.1 request always names its host (Host field or absolute-form).
        assert!(h.host.is_some(), "1.1 without host");
    }
    if h.expect_continue {
        assert_eq!(h.version, Version::Http11);
    }
    check_framing(head, h, limits);
}

/// Independent scan of the (already accepted, hence well-formed) head's fields.
fn check_framing(head: &[u8], h: &RequestHead, limits: &Limits) {
    let mut cl: Vec<&[u8]> = Vec::new();
    let mut te = 0;
    // Skip leading empty lines and the request line.
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .skip_while(|l| l.is_empty())
        .skip(1);
    for line in &mut lines {
        if line.is_empty() {
            break;
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .expect("field has a colon");
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"content-length") {
            cl.push(value);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            te += 1;
        }
    }
    match h.framing {
        BodyFraming::Chunked => {
            assert!(te > 0 && cl.is_empty(), "chunked with CL or without TE");
            assert_eq!(h.version, Version::Http11, "chunked in 1.0");
        }
        BodyFraming::Length(len) => {
            assert!(te == 0 && !cl.is_empty(), "Length without a single CL");
            assert!(len <= limits.max_body_bytes);
            for v in cl {
                for part in v.split(|&b| b == b',') {
                    let digits = part.trim_ascii();
                    let parsed: u64 = std::str::from_utf8(digits).unwrap().parse().unwrap();
                    assert!(digits.iter().all(u8::is_ascii_digit));
                    assert_eq!(parsed, len, "Content-Length {v:?} vs framing {len}");
                }
            }
        }
        BodyFraming::None => assert!(te == 0 && cl.is_empty(), "framing None with CL/TE"),
    }
}
