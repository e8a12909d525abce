//! Chunked body decoder: the verdict (bytes consumed, finished, or the error) is the
//! same whether the input arrives whole, split in two at a point chosen by the first
//! input byte, or one byte at a time.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vireo::http::request::{ChunkedDecoder, Limits};
use vireo::http::HttpError;

const LIMITS: Limits = Limits {
    max_request_line: 8192,
    max_header_bytes: 64,
    max_body_bytes: 4096,
};

type Verdict = Result<(usize, bool), HttpError>;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, input)) = data.split_first() else {
        return;
    };
    let at = if input.is_empty() {
        0
    } else {
        usize::from(sel) % (input.len() + 1)
    };

    let mut d = ChunkedDecoder::new();
    let whole = d.feed(input, &LIMITS);
    match whole {
        Ok((n, done)) => {
            assert!(n <= input.len());
            if done {
                // Finished is sticky and consumes nothing more.
                assert_eq!(d.feed(input, &LIMITS), Ok((0, true)));
                // Exactly the body is enough to finish.
                assert_eq!(
                    ChunkedDecoder::new().feed(&input[..n], &LIMITS),
                    Ok((n, true))
                );
            } else {
                assert_eq!(n, input.len(), "unfinished decoder must consume everything");
            }
        }
        Err(e) => {
            assert!(e.close);
            assert!(matches!(e.status, 400 | 413 | 431), "{e:?}");
            // Errors are sticky.
            assert_eq!(d.feed(b"0\r\n\r\n", &LIMITS), Err(e));
        }
    }
    assert_eq!(split(input, at), whole, "split at {at}");
    assert_eq!(bytewise(input), whole, "byte at a time");
});

fn split(input: &[u8], at: usize) -> Verdict {
    let mut d = ChunkedDecoder::new();
    let (a, done) = d.feed(&input[..at], &LIMITS)?;
    if done {
        return Ok((a, true));
    }
    assert_eq!(a, at);
    let (b, done) = d.feed(&input[at..], &LIMITS)?;
    Ok((a + b, done))
}

fn bytewise(input: &[u8]) -> Verdict {
    let mut d = ChunkedDecoder::new();
    for (i, b) in input.iter().enumerate() {
        let (n, done) = d.feed(std::slice::from_ref(b), &LIMITS)?;
        if done {
            return Ok((i + n, true));
        }
        assert_eq!(n, 1);
    }
    Ok((input.len(), false))
}
