//! zstd, brotli and gzip end to end: every body is decoded here with the same crates the
//! server encodes with and compared with the file's bytes.

use crate::compression::{gunzip, request, server_with, text};
use crate::support::*;
use std::io::{Read, Write};
use std::time::{Duration, SystemTime};

/// (Accept-Encoding token, ETag suffix, sidecar extension).
const CODINGS: [(&str, &str, &str); 3] = [
    ("gzip", "-gz", ".gz"),
    ("zstd", "-zst", ".zst"),
    ("br", "-br", ".br"),
];

fn decode(coding: &str, body: &[u8]) -> Vec<u8> {
    match coding {
        "gzip" => gunzip(body),
        "zstd" => zstd::stream::decode_all(body).expect("valid zstd"),
        "br" => {
            let mut out = Vec::new();
            brotli::Decompressor::new(body, 4096)
                .read_to_end(&mut out)
                .expect("valid brotli");
            out
        }
        other => panic!("no decoder for {other}"),
    }
}

fn brotli_encode(data: &[u8], quality: u32) -> Vec<u8> {
    let mut w = brotli::CompressorWriter::new(Vec::new(), 4096, quality, 22);
    w.write_all(data).expect("br");
    w.into_inner()
}

fn zstd_encode(data: &[u8], level: i32) -> Vec<u8> {
    zstd::bulk::compress(data, level).expect("zstd")
}

fn gzip_encode(data: &[u8], level: u32) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    enc.write_all(data).expect("gz");
    enc.finish().expect("gz")
}

fn ae(coding: &str) -> String {
    format!("Accept-Encoding: {coding}\r\n")
}

/// A GET in `coding` that must come back encoded with it, decoding to `data`.
fn get_encoded(c: &mut Client, path: &str, coding: &str, data: &[u8]) -> Response {
    let r = request(c, "GET", path, &ae(coding));
    assert_eq!(r.status, 200, "{coding}: {}", r.head);
    assert_eq!(r.header("content-encoding"), Some(coding), "{}", r.head);
    assert_eq!(r.header("vary"), Some("Accept-Encoding"), "{coding}");
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str()),
        "{coding}"
    );
    assert!(decode(coding, &r.body) == data, "{coding}: wrong bytes");
    r
}

#[test]
fn each_coding_decodes_to_the_file_with_its_own_etag() {
    let data = text(200_000, 21);
    let s = server_with("", vec![("data.json", data.clone())]);
    let mut c = s.connect();
    let plain = request(&mut c, "GET", "/data.json", "");
    assert!(plain.body == data);
    let identity = plain.header("etag").expect("etag").to_string();
    let stem = identity.strip_suffix('"').expect("quoted etag");

    let mut etags = Vec::new();
    for (coding, suffix, _) in CODINGS {
        let r = get_encoded(&mut c, "/data.json", coding, &data);
        assert!(r.body.len() < data.len() / 2, "{coding} did not compress");
        let etag = r.header("etag").expect("etag").to_string();
        assert_eq!(etag, format!("{stem}{suffix}\""), "{coding}");
        etags.push(etag);
    }
    for (i, (coding, _, _)) in CODINGS.iter().enumerate() {
        // Its own tag: 304, with that tag.
        let r = request(
            &mut c,
            "GET",
            "/data.json",
            &format!("{}If-None-Match: {}\r\n", ae(coding), etags[i]),
        );
        assert_eq!(r.status, 304, "{coding}: {}", r.head);
        assert_eq!(r.header("etag"), Some(etags[i].as_str()), "{coding}");
        assert_eq!(r.header("vary"), Some("Accept-Encoding"), "{coding}");
        // Another coding's tag, or the identity one: the full body.
        let other = &etags[(i + 1) % etags.len()];
        for tag in [other.as_str(), identity.as_str()] {
            let r = request(
                &mut c,
                "GET",
                "/data.json",
                &format!("{}If-None-Match: {tag}\r\n", ae(coding)),
            );
            assert_eq!(r.status, 200, "{coding} with {tag}");
            assert!(decode(coding, &r.body) == data, "{coding} with {tag}");
        }
    }
    // The identity tag still matches identity only.
    let r = request(
        &mut c,
        "GET",
        "/data.json",
        &format!("If-None-Match: {}\r\n", etags.join(", ")),
    );
    assert_eq!(r.status, 200);
    assert!(r.body == data);
}

#[test]
fn q_values_then_server_order_choose_the_coding() {
    let data = text(60_000, 22);
    let check = |s: &TestServer, cases: &[(&str, Option<&str>)]| {
        let mut c = s.connect();
        for &(accept, want) in cases {
            let r = request(&mut c, "GET", "/q.txt", &ae(accept));
            assert_eq!(r.status, 200, "{accept}");
            assert_eq!(r.header("content-encoding"), want, "{accept}");
            assert_eq!(r.header("vary"), Some("Accept-Encoding"), "{accept}");
            match want {
                Some(coding) => assert!(decode(coding, &r.body) == data, "{accept}"),
                None => assert!(r.body == data, "{accept}"),
            }
        }
    };
    let s = server_with("", vec![("q.txt", data.clone())]);
    check(
        &s,
        &[
            ("gzip, br, zstd", Some("zstd")),
            ("gzip;q=1, zstd;q=0.5", Some("gzip")),
            ("br;q=0.9, gzip;q=0.9", Some("br")),
            ("gzip;q=0.9, br;q=0.9", Some("br")),
            ("*", Some("zstd")),
            ("zstd;q=0, *", Some("br")),
            ("zstd;q=0, br;q=0, *", Some("gzip")),
            ("ZSTD;Q=0.2, gzip;q=0.1", Some("zstd")),
            ("br", Some("br")),
        ],
    );
    drop(s);
    // The configured order replaces the default one; zstd, neither listed nor beside the
    // file, is not made.
    let s = server_with(
        "[compression]\ncodings = [\"gzip\", \"br\"]\n",
        vec![("q.txt", data.clone())],
    );
    check(
        &s,
        &[
            ("zstd, br, gzip", Some("gzip")),
            ("*", Some("gzip")),
            ("zstd", None),
            ("zstd, br", Some("br")),
            ("zstd;q=1, br;q=0.5", Some("br")),
        ],
    );
}

/// A docroot with `name` holding `data` plus `sidecars` (extension, bytes, age).
fn with_sidecars(
    extra: &str,
    name: &'static str,
    data: Vec<u8>,
    sidecars: Vec<(&'static str, Vec<u8>, Duration)>,
) -> TestServer {
    TestServer::start_with(extra, move |root| {
        let now = SystemTime::now();
        let file = root.join(name);
        std::fs::write(&file, &data).expect("write");
        set_mtime(&file, now);
        for (ext, bytes, age) in &sidecars {
            let side = root.join(format!("{name}{ext}"));
            std::fs::write(&side, bytes).expect("write");
            set_mtime(&side, now - *age);
        }
    })
}

#[test]
fn a_fresh_sidecar_is_served_for_a_coding_not_made_on_the_fly() {
    let data = text(20_000, 23);
    let br = brotli_encode(&data, 11);
    let s = with_sidecars(
        "[compression]\ncodings = []\n",
        "p.css",
        data.clone(),
        vec![(".br", br.clone(), Duration::ZERO)],
    );
    let mut c = s.connect();
    let r = get_encoded(&mut c, "/p.css", "br", &data);
    assert!(r.body == br, "sidecar bytes expected");
    assert!(r.header("etag").expect("etag").ends_with("-br\""));
    // HEAD agrees with the sidecar's length.
    let h = request(&mut c, "HEAD", "/p.css", &ae("br"));
    assert_eq!(h.header("content-length"), r.header("content-length"));
    // Nothing is made on the fly: no sidecar, identity.
    for coding in ["zstd", "gzip", "zstd, gzip"] {
        let r = request(&mut c, "GET", "/p.css", &ae(coding));
        assert_eq!(r.header("content-encoding"), None, "{coding}");
        assert!(r.body == data, "{coding}");
    }
    // br is acceptable but zstd preferred by q: zstd has no source, br gets it.
    let r = get_encoded(&mut c, "/p.css", "br", &data);
    assert!(r.body == br);
    let r = request(&mut c, "GET", "/p.css", &ae("zstd;q=1, br;q=0.1"));
    assert_eq!(r.header("content-encoding"), Some("br"));
    assert!(r.body == br);
}

#[test]
fn a_sidecar_older_than_the_file_is_ignored() {
    let data = text(20_000, 25);
    // What the file held before it was edited: serving this would be stale. (`text`
    // ignores the seed's low bit, so seeds differ by 2.)
    let old = text(20_000, 27);
    assert!(old != data);
    let old_br = brotli_encode(&old, 11);
    let stale = vec![(".br", old_br.clone(), Duration::from_secs(3600))];
    let s = with_sidecars(
        "[compression]\ncodings = []\n",
        "s.css",
        data.clone(),
        stale.clone(),
    );
    let r = request(&mut s.connect(), "GET", "/s.css", &ae("br"));
    assert_eq!(r.header("content-encoding"), None, "{}", r.head);
    assert!(r.body == data);
    drop(s);
    // With br made on the fly, the job's output (from the current file) wins.
    let s = with_sidecars("", "s.css", data.clone(), stale);
    let r = get_encoded(&mut s.connect(), "/s.css", "br", &data);
    assert!(r.body != old_br);
}

#[test]
fn with_several_sidecars_the_negotiated_order_decides() {
    let data = text(30_000, 26);
    // Levels the server does not use, so a sidecar is told from an on-the-fly body.
    let zst = zstd_encode(&data, 19);
    let gz = gzip_encode(&data, 9);
    assert!(zst != zstd_encode(&data, 3) && gz != gzip_encode(&data, 6));
    let sidecars = vec![
        (".zst", zst.clone(), Duration::ZERO),
        (".gz", gz.clone(), Duration::ZERO),
    ];
    let accept = "gzip, zstd";
    for (extra, want, bytes) in [
        // Default order (zstd, br, gzip); a sidecar is preferred to a job.
        ("", "zstd", &zst),
        // gzip listed first.
        (
            "[compression]\ncodings = [\"gzip\", \"zstd\"]\n",
            "gzip",
            &gz,
        ),
        // Only gzip on the fly: it is offered before the sidecar-only zstd.
        ("[compression]\ncodings = [\"gzip\"]\n", "gzip", &gz),
        // Nothing on the fly: sidecars in vireo's order (zstd, br, gzip).
        ("[compression]\ncodings = []\n", "zstd", &zst),
    ] {
        let s = with_sidecars(extra, "m.js", data.clone(), sidecars.clone());
        let mut c = s.connect();
        let r = request(&mut c, "GET", "/m.js", &ae(accept));
        assert_eq!(r.header("content-encoding"), Some(want), "{extra}");
        assert!(&r.body == bytes, "{extra}: sidecar bytes expected");
        assert!(decode(want, &r.body) == data);
        // q-values still come first.
        let r = request(&mut c, "GET", "/m.js", &ae("gzip;q=0.5, zstd;q=0.4"));
        assert_eq!(r.header("content-encoding"), Some("gzip"), "{extra}");
        assert!(r.body == gz, "{extra}");
    }
}

#[test]
fn head_announces_exactly_what_get_sends_for_each_coding() {
    let data = text(100_000, 27);
    let s = server_with("", vec![("h.js", data.clone())]);
    let mut c = s.connect();
    let mut etags = Vec::new();
    for (coding, _, _) in CODINGS {
        // Cold (HEAD before any body exists), then from the cache.
        let cold = request(&mut c, "HEAD", "/h.js", &ae(coding));
        let g = get_encoded(&mut c, "/h.js", coding, &data);
        let warm = request(&mut c, "HEAD", "/h.js", &ae(coding));
        for h in [&cold, &warm] {
            assert_eq!(h.status, 200, "{coding}");
            for name in [
                "content-length",
                "content-encoding",
                "etag",
                "vary",
                "content-type",
                "last-modified",
            ] {
                assert_eq!(h.header(name), g.header(name), "{coding}: {name}");
            }
            assert!(h.body.is_empty());
        }
        etags.push(g.header("etag").expect("etag").to_string());
    }
    etags.sort();
    etags.dedup();
    assert_eq!(etags.len(), 3, "{etags:?}");
    // The connection is still in step: nothing was sent after the HEAD answers.
    assert_eq!(c.get("/small.txt").body, b"hello, vireo\n");
}

#[test]
fn a_changed_file_is_never_served_from_a_stale_zstd_or_brotli_entry() {
    for (i, coding) in ["zstd", "br"].into_iter().enumerate() {
        let seed = 31 + 4 * i as u64;
        let old = text(40_000, seed);
        let s = server_with("", vec![("c.txt", old.clone())]);
        let mut c = s.connect();
        let before = get_encoded(&mut c, "/c.txt", coding, &old);
        // Cached now: a second request gets the same bytes.
        let again = get_encoded(&mut c, "/c.txt", coding, &old);
        assert!(again.body == before.body);
        // Same size, new content and mtime: the entry's key no longer matches.
        let new = text(40_000, seed + 2);
        assert!(new != old);
        let path = s.root().join("c.txt");
        std::fs::write(&path, &new).expect("rewrite");
        set_mtime(&path, SystemTime::now() + Duration::from_secs(5));
        let after = get_encoded(&mut c, "/c.txt", coding, &new);
        assert_ne!(after.header("etag"), before.header("etag"), "{coding}");
        let h = request(&mut c, "HEAD", "/c.txt", &ae(coding));
        assert_eq!(h.header("content-length"), after.header("content-length"));
        assert_eq!(h.header("etag"), after.header("etag"));
        // The old tag no longer validates.
        let r = request(
            &mut c,
            "GET",
            "/c.txt",
            &format!(
                "{}If-None-Match: {}\r\n",
                ae(coding),
                before.header("etag").expect("etag")
            ),
        );
        assert_eq!(r.status, 200, "{coding}");
        assert!(decode(coding, &r.body) == new, "{coding}");
    }
}

#[test]
fn ranges_are_answered_from_identity_bytes() {
    let data = text(40_000, 40);
    let s = server_with("", vec![("r.txt", data.clone())]);
    let mut c = s.connect();
    // Once with nothing cached, once with both encoded bodies in the cache.
    for round in 0..2 {
        let r = request(
            &mut c,
            "GET",
            "/r.txt",
            "Accept-Encoding: zstd, br\r\nRange: bytes=0-99\r\n",
        );
        assert_eq!(r.status, 206, "round {round}: {}", r.head);
        assert_eq!(r.header("content-encoding"), None, "round {round}");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes 0-99/{}", data.len()).as_str())
        );
        assert_eq!(r.body, &data[..100]);
        if round == 0 {
            get_encoded(&mut c, "/r.txt", "zstd", &data);
            get_encoded(&mut c, "/r.txt", "br", &data);
        }
    }
}

#[test]
fn configured_levels_reach_each_coder() {
    let data = text(300_000, 41);
    let sizes = |levels: &str| -> Vec<usize> {
        let s = server_with(
            &format!("[compression]\n{levels}\n"),
            vec![("l.txt", data.clone())],
        );
        let mut c = s.connect();
        CODINGS
            .iter()
            .map(|(coding, _, _)| get_encoded(&mut c, "/l.txt", coding, &data).body.len())
            .collect()
    };
    let low = sizes("level = 1\nzstd_level = 1\nbrotli_level = 0");
    let high = sizes("level = 9\nzstd_level = 19\nbrotli_level = 11");
    for (i, (coding, _, _)) in CODINGS.iter().enumerate() {
        assert!(high[i] < low[i], "{coding}: {} !< {}", high[i], low[i]);
    }
}

#[test]
fn check_refuses_an_unknown_coding_naming_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("public")).expect("mkdir");
    let path = dir.path().join("v.toml");
    let run = |text: &str| {
        std::fs::write(&path, format!("root = \"public\"\n[compression]\n{text}\n"))
            .expect("write");
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_vireo"))
            .args(["--check", "--config", path.to_str().expect("utf8")])
            .output()
            .expect("run vireo");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, err) = run("codings = [\"zstd\", \"lzma\"]");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("v.toml: line 3, column 20")
            && err.contains("compression.codings")
            && err.contains("lzma"),
        "{err}"
    );
    for (text, key) in [
        ("zstd_level = 20", "compression.zstd_level"),
        ("brotli_level = 12", "compression.brotli_level"),
    ] {
        let (code, err) = run(text);
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains("line 3") && err.contains(key), "{err}");
    }
    let (code, err) = run("codings = [\"br\", \"gzip\"]\nzstd_level = 19\nbrotli_level = 11");
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn a_reload_changing_only_the_zstd_or_brotli_level_takes_effect() {
    let data = text(200_000, 61);
    let s = server_with(
        "[compression]\nzstd_level = 1\nbrotli_level = 0\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
        vec![("l.txt", data.clone())],
    );
    let cfg = s.dir.path().join("vireo.toml");
    // One level at a time: each alone must reach the encoder (and not a cached entry
    // made at the old level).
    for (n, (coding, from, to)) in [
        ("zstd", "zstd_level = 1", "zstd_level = 19"),
        ("br", "brotli_level = 0", "brotli_level = 11"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut c = s.connect();
        let before = get_encoded(&mut c, "/l.txt", coding, &data).body;
        // Cached at this level: the same bytes again.
        assert!(get_encoded(&mut c, "/l.txt", coding, &data).body == before);
        let text = std::fs::read_to_string(&cfg).expect("read cfg");
        assert!(text.contains(from), "{text}");
        std::fs::write(&cfg, text.replace(from, to)).expect("write cfg");
        s.signal(1);
        s.wait_reloads("ok", n as u64 + 1);
        let mut c = s.connect();
        let after = get_encoded(&mut c, "/l.txt", coding, &data).body;
        assert!(
            after.len() < before.len(),
            "{coding}: {to} made {} bytes, as many as {from} ({})",
            after.len(),
            before.len()
        );
    }
}
