//! Inputs found by `fuzz/` (cargo fuzz), kept as regression tests over the public API.

use vireo::http::request::{parse, Limits};

/// Every prefix of `input` either needs more bytes or gives the whole input's verdict.
fn assert_prefix_stable(input: &[u8], limits: &Limits) {
    let whole = parse(input, limits);
    assert!(whole.is_err(), "{whole:?}");
    for cut in 0..input.len() {
        match parse(&input[..cut], limits) {
            Ok(None) => {}
            other => assert_eq!(other, whole, "prefix {cut} vs whole"),
        }
    }
}

/// request_head crash-aafadaa9: a request line exactly at the limit followed by a bare
/// CR got 400 when the read ended at the CR but 414 when more bytes came with it.
#[test]
fn bare_cr_just_past_the_request_line_limit() {
    let small = Limits {
        max_request_line: 48,
        max_header_bytes: 160,
        max_body_bytes: 100,
    };
    let mut line = b"G ".to_vec();
    line.extend_from_slice(&[b'Q'; 44]);
    line.extend_from_slice(&[0xff, 0xff, b'\r', b'\r', b'\n', b'\r', b'\n']);
    assert_prefix_stable(&line, &small);

    let default = Limits {
        max_request_line: 8192,
        max_header_bytes: 16384,
        max_body_bytes: 1 << 20,
    };
    for tail in [&b"\r\r\n\r\n"[..], b"\rX\r\n\r\n", b"\r \r\n\r\n"] {
        let mut req = b"GET /".to_vec();
        req.resize(8192, b'a');
        req.extend_from_slice(tail);
        assert_prefix_stable(&req, &default);
        let mut req = b"GET /".to_vec();
        req.resize(8192 - 9, b'a');
        req.extend_from_slice(b" HTTP/1.1");
        req.extend_from_slice(tail);
        assert_prefix_stable(&req, &default);
    }
}

/// request_head crash-080d08a8: 161 empty lines (over a 160-byte head limit) then a
/// partial request line gave 431, but 400 once more bytes made that line look too long.
#[test]
fn empty_lines_over_the_head_limit_are_431_whatever_follows() {
    let small = Limits {
        max_request_line: 48,
        max_header_bytes: 160,
        max_body_bytes: 100,
    };
    let mut input = vec![b'\n'; 161];
    input.extend_from_slice(b"A##V## ");
    input.extend_from_slice(&[0u8; 34]);
    let verdict = parse(&input, &small);
    assert_eq!(verdict.as_ref().map_err(|e| e.status), Err(431));
    for tail in [
        &b"\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"\x00",
    ] {
        let mut longer = input.clone();
        longer.extend_from_slice(tail);
        assert_eq!(parse(&longer, &small), verdict, "appending {tail:?}");
    }
    assert_prefix_stable(&input, &small);
}

/// connection crash-0ba2570c: requests pipelined behind a response that could not be sent
/// at once (the client's window was shut) were answered only when more input came, so
/// the whole input delivered in one piece got one response fewer than the same bytes
/// trickled in. Replays the exact input through the fuzzer's checks, and the minimal shape.
#[test]
fn pipelined_requests_behind_a_blocked_response() {
    use vireo::net::harness::{exercise, world, Harness, Step};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut hs: Vec<Harness> = world(dir.path()).expect("world");
    let input = include_bytes!("../fuzz/corpus/connection/regress-pipelined-behind-long-response");
    exercise(&mut hs, input).expect("fuzzer checks");

    let two = b"GET /app.js HTTP/1.1\r\nHost: x\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n";
    // The window opens only after both requests are buffered; no more input follows until
    // the client's FIN, which must not be what unblocks the second answer.
    let t = hs[0]
        .run_open(&[Step::Data(two.to_vec()), Step::Window(usize::MAX / 2)])
        .expect("run");
    let before_fin = hs[0].check(two, &t.output, false).expect("well formed");
    assert_eq!(
        before_fin.len(),
        2,
        "second pipelined request left unanswered"
    );
}
