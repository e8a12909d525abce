//! Accept-Encoding negotiation: the pick is one of the offered codings (or identity),
//! a coding the client refused (q=0) is never picked, and case does not matter.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vireo::http::negotiate::{choose_encoding, Coding};

const OFFERS: &[&[Coding]] = &[
    &[Coding::Gzip],
    &[Coding::Zstd, Coding::Br, Coding::Gzip],
    &[Coding::Br, Coding::Gzip, Coding::Identity],
    &[Coding::Identity, Coding::Gzip],
    &[],
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, header)) = data.split_first() else {
        return;
    };
    let offered = OFFERS[usize::from(sel) % OFFERS.len()];
    let pick = choose_encoding(Some(header), offered);
    if let Some(c) = pick {
        assert!(
            c == Coding::Identity || offered.contains(&c),
            "{c:?} not offered"
        );
    }
    // Tokens and the "q" key are case-insensitive, digits have no case.
    assert_eq!(
        choose_encoding(Some(&header.to_ascii_uppercase()), offered),
        pick
    );
    assert_eq!(
        choose_encoding(Some(&header.to_ascii_lowercase()), offered),
        pick
    );

    // The first valid element for a coding wins: refusing the pick up front excludes it.
    if let Some(c) = pick {
        let mut refused = format!("{};q=0,", c.as_str()).into_bytes();
        refused.extend_from_slice(header);
        let again = choose_encoding(Some(&refused), offered);
        assert_ne!(again, Some(c), "picked {c:?} after q=0");
    }
    // Refusing everything ("*;q=0" plus explicit q=0 for each) leaves nothing.
    let mut all = b"gzip;q=0, br;q=0, zstd;q=0, identity;q=0, *;q=0,".to_vec();
    all.extend_from_slice(header);
    assert_eq!(choose_encoding(Some(&all), offered), None);
});
