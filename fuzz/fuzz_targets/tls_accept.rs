//! The TLS accept path (vireo::net::harness::tls): random bytes, and real ClientHellos with
//! bytes flipped, delivered in chunks split at fuzzer-chosen points, each handshake step on
//! a real offload pool. It must never panic or get stuck, and answer plain HTTP with a
//! plain 400 and nothing else that is not TLS.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};
use std::sync::{Arc, OnceLock};
use vireo::net::harness::tls::{plain_400, self_signed_configs, TlsProbe};

struct World {
    probe: TlsProbe,
    client: Arc<ClientConfig>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let (server, client) =
            self_signed_configs(ck.cert.der().to_vec(), ck.signing_key.serialize_der()).unwrap();
        World {
            probe: TlsProbe::new(server).unwrap(),
            client,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    // Layout: mode, split count k, k split points, then the payload (mode even: the bytes
    // as they are; odd: (position, xor) pairs applied to a real ClientHello).
    let Some((&k, rest)) = rest.split_first() else {
        return;
    };
    let k = usize::from(k % 8).min(rest.len());
    let (splits, rest) = rest.split_at(k);
    let input = if mode % 2 == 0 {
        rest.to_vec()
    } else {
        let name = ServerName::try_from("localhost").unwrap();
        let mut c = ClientConnection::new(w.client.clone(), name).unwrap();
        let mut hello = Vec::new();
        c.write_tls(&mut hello).unwrap();
        for pair in rest.chunks_exact(3) {
            let pos = usize::from(u16::from_le_bytes([pair[0], pair[1]])) % hello.len();
            hello[pos] ^= pair[2];
        }
        hello
    };
    let mut cuts: Vec<usize> = splits
        .iter()
        .map(|&s| usize::from(s) * input.len() / 256)
        .collect();
    cuts.sort_unstable();
    let mut chunks: Vec<&[u8]> = Vec::new();
    let mut at = 0;
    for c in cuts {
        chunks.push(&input[at..c]);
        at = c;
    }
    chunks.push(&input[at..]);
    let fin = mode & 2 != 0;
    let p = match w.probe.run(&chunks, fin) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    };
    let first = input.iter().copied().next();
    if first.is_some_and(|b| b.is_ascii_uppercase()) {
        assert!(p.closed && plain_400(&p.output), "plain HTTP: {p:?}");
    } else {
        assert!(!plain_400(&p.output), "a 400 for a non-HTTP first byte");
    }
    if fin && !p.established {
        assert!(p.closed, "EOF mid-handshake must close");
    }
});
