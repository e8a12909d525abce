//! Range parsing and the multipart/byteranges layout: satisfiable ranges lie inside the
//! file, ascend without overlap, respect max_ranges; the multipart heads tile the buffer
//! and Content-Length equals the bytes actually sent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vireo::http::negotiate::{
    boundary_from_etag, multipart_layout, parse_range, push_content_range, RangeResult,
};

fuzz_target!(|data: &[u8]| {
    // [len selector: 1 byte][len: 8 bytes][max_ranges: 1 byte][header...]
    if data.len() < 10 {
        return;
    }
    let raw = u64::from_le_bytes(data[1..9].try_into().unwrap());
    // A file is at most i64::MAX bytes (off_t is signed).
    const MAX_FILE: u64 = i64::MAX as u64;
    let len = match data[0] % 4 {
        0 => raw % 256, // small files, where most ranges overlap the end
        1 => raw % 100_000,
        2 => MAX_FILE - (raw % 4),
        _ => raw & MAX_FILE,
    };
    let max_ranges = usize::from(data[9] % 40);
    let header = &data[10..];

    let mut out = Vec::new();
    let r = parse_range(header, len, max_ranges, &mut out);
    if r != RangeResult::Satisfiable {
        assert!(out.is_empty(), "{r:?} with ranges {out:?}");
        return;
    }
    assert!(!out.is_empty() && out.len() <= max_ranges);
    let mut total = 0u64;
    for (i, br) in out.iter().enumerate() {
        assert!(br.start <= br.end && br.end < len, "{br:?} for len {len}");
        assert!(!br.is_empty());
        assert_eq!(br.len(), br.end - br.start + 1);
        if i > 0 {
            assert!(out[i - 1].end < br.start, "not ascending/disjoint: {out:?}");
        }
        total += br.len(); // no overflow: disjoint ranges inside the file
    }
    assert!(total <= len);

    let content_type = std::str::from_utf8(header).unwrap_or("text/plain");
    let boundary = boundary_from_etag(header);
    let mut heads = Vec::new();
    let m = multipart_layout(&out, len, content_type, &boundary, &mut heads);
    assert_eq!(m.parts.len(), out.len());
    let mut at = 0;
    let mut sent = 0u64;
    let mut expect = Vec::new();
    for ((head, br), want) in m.parts.iter().zip(&out) {
        assert_eq!(br, want);
        assert_eq!(head.start, at, "part heads do not tile the buffer");
        assert!(head.end > head.start && head.end <= heads.len());
        let h = &heads[head.clone()];
        expect.clear();
        push_content_range(&mut expect, *br, len);
        assert!(
            h.windows(expect.len()).any(|w| w == expect.as_slice()),
            "part head lacks its Content-Range"
        );
        assert!(h.ends_with(b"\r\n\r\n"));
        at = head.end;
        sent = sent.checked_add(h.len() as u64 + br.len()).unwrap();
    }
    assert_eq!(m.trailer.start, at);
    assert_eq!(m.trailer.end, heads.len());
    sent += m.trailer.len() as u64;
    assert_eq!(
        m.content_length, sent,
        "Content-Length differs from the body sent"
    );
});
