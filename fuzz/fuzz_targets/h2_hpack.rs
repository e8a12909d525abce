//! HPACK: the decoder on arbitrary blocks under tight limits never panics and never
//! returns more than the limits allow; and encode -> decode returns the fields encoded,
//! with both tables the same size, whatever the table size changes in between.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vireo::http::h2::hpack::{Decoder, DecoderLimits, Encoder, FieldList, HpackError, Indexing};

const TIGHT: DecoderLimits = DecoderLimits {
    max_table_size: 256,
    max_list_size: 512,
    max_fields: 8,
};

fuzz_target!(|data: &[u8]| {
    decode_blocks(data);
    round_trip(data);
});

/// Blocks of arbitrary bytes, each prefixed by a length byte, on one connection.
fn decode_blocks(mut data: &[u8]) {
    let mut dec = Decoder::new(TIGHT);
    let mut list = FieldList::new();
    while let Some((&len, rest)) = data.split_first() {
        let n = usize::from(len).min(rest.len());
        let (block, tail) = rest.split_at(n);
        data = tail;
        match dec.decode(block, &mut list) {
            Ok(()) => {
                assert!(list.list_size() <= TIGHT.max_list_size);
                assert!(list.len() <= TIGHT.max_fields);
                assert_eq!(list.iter().count(), list.len());
            }
            Err(HpackError::ListTooLarge) => assert!(list.is_empty()),
            // A compression error ends the connection.
            Err(_) => return,
        }
        assert!(dec.table_size() <= TIGHT.max_table_size);
    }
}

/// Fields are NUL-separated name/value pairs; 0xff starts a new block whose next byte
/// sets the peer's table size.
fn round_trip(data: &[u8]) {
    let mut enc = Encoder::new();
    enc.huffman = data.first().is_some_and(|b| b & 1 == 1);
    let mut dec = Decoder::new(DecoderLimits {
        max_list_size: usize::MAX,
        max_fields: usize::MAX,
        ..DecoderLimits::default()
    });
    let mut list = FieldList::new();
    for block in data.split(|&b| b == 0xff) {
        let (size, block) = match block.split_first() {
            Some((&s, rest)) => (u32::from(s) * 32, rest),
            None => (4096, block),
        };
        enc.set_peer_max(size);
        let parts: Vec<&[u8]> = block.split(|&b| b == 0).collect();
        let fields: Vec<(&[u8], &[u8])> = parts
            .chunks(2)
            .map(|c| (c[0], *c.get(1).unwrap_or(&&b""[..])))
            .collect();
        let mut wire = Vec::new();
        enc.begin(&mut wire);
        for (i, (n, v)) in fields.iter().enumerate() {
            let how =
                [Indexing::Incremental, Indexing::Without, Indexing::Never][(n.len() + i) % 3];
            enc.field(n, v, how, &mut wire);
        }
        dec.decode(&wire, &mut list).expect("our own block decodes");
        let got: Vec<(&[u8], &[u8])> = list.iter().collect();
        assert_eq!(got, fields);
        assert_eq!(dec.table_size(), enc.table_size());
    }
}
