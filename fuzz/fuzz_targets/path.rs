//! Path normaliser and resolver: the normalised path never climbs (no "." / ".." /
//! empty segment, no leading '/', no NUL), normalising is idempotent, and a Resolver on
//! a temporary root never hands out a file or directory that lies outside it.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vireo::http::path::normalize;
use vireo::testkit::EscapeRoot;

fn world() -> &'static EscapeRoot {
    static W: OnceLock<EscapeRoot> = OnceLock::new();
    W.get_or_init(|| EscapeRoot::new().unwrap())
}

fn encode(normalized: &[u8]) -> Vec<u8> {
    let mut v = b"/".to_vec();
    for &b in normalized {
        if b == b'/' || b.is_ascii_alphanumeric() || b"-_~".contains(&b) {
            v.push(b);
        } else {
            v.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    v
}

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    if let Ok(trailing) = normalize(data, &mut out) {
        assert!(!out.starts_with(b"/") && !out.ends_with(b"/"), "{out:?}");
        assert!(!out.contains(&0));
        if out.is_empty() {
            assert!(trailing, "the root is a directory");
        }
        for seg in out.split(|&b| b == b'/') {
            if out.is_empty() {
                break;
            }
            assert!(!seg.is_empty() && seg != b"." && seg != b"..", "{out:?}");
        }
        // Idempotent: re-encoding the result normalises to itself.
        let mut again = Vec::new();
        let t = normalize(&encode(&out), &mut again);
        assert!(t.is_ok(), "{t:?}");
        assert_eq!(again, out);
    }

    let w = world();
    let mut scratch = Vec::new();
    if let Ok(r) = w.resolver.open(data, &mut scratch) {
        w.assert_inside(&r);
    }
    if let Ok(r) = w.resolver.open_relative(data) {
        w.assert_inside(&r);
    }
});
