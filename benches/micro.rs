//! Micro-benchmarks of the per-request hot path (divan): parse a browser request, route it
//! to a cached small file (the whole user-space work of a keep-alive request but the
//! syscalls), build a response head, negotiate Accept-Encoding and Range; and the one-time
//! cost of compressing a 1 MiB text body per coding (what a cache miss costs the pool).
//!
//!     cargo bench --bench micro
//!     cargo bench --bench micro -- codec     # only the encoders
//!
//! Instruction counts are steadier than time on a noisy machine:
//!     valgrind --tool=callgrind target/release/deps/micro-* --bench route

use std::time::Instant;

use divan::{black_box, Bencher};
use vireo::http::h1::{encode, Framing};
use vireo::http::negotiate::{choose_encoding, parse_range, Coding, RangeResult};
use vireo::http::request::{parse, Limits};
use vireo::http::response::{Body, ContentType, EtagBuf, Headers, Reply};
use vireo::offload::codec::{self, Levels};
use vireo::site::Site;
use vireo::Config;

fn main() {
    divan::main();
}

/// What Chrome sends for a page on a keep-alive connection.
const BROWSER: &[u8] = b"GET /small.html HTTP/1.1\r\n\
Host: 127.0.0.1:8080\r\n\
Connection: keep-alive\r\n\
sec-ch-ua: \"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\"\r\n\
sec-ch-ua-mobile: ?0\r\n\
sec-ch-ua-platform: \"Linux\"\r\n\
Upgrade-Insecure-Requests: 1\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n\
Sec-Fetch-Site: none\r\n\
Sec-Fetch-Mode: navigate\r\n\
Sec-Fetch-User: ?1\r\n\
Sec-Fetch-Dest: document\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
If-None-Match: \"674f3a2b-400\"\r\n\
\r\n";

/// What wrk sends.
const WRK: &[u8] = b"GET /small.html HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";

const NOTFOUND: &[u8] = b"GET /nope.html HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";

fn request(name: &str) -> &'static [u8] {
    match name {
        "browser" => BROWSER,
        "notfound" => NOTFOUND,
        _ => WRK,
    }
}

const LIMITS: Limits = Limits {
    max_request_line: 8192,
    max_header_bytes: 16384,
    max_body_bytes: 1 << 20,
};

#[divan::bench(args = ["browser", "wrk"])]
fn parse_head(b: Bencher, name: &str) {
    let req = request(name);
    b.bench(|| parse(black_box(req), &LIMITS));
}

/// Site::respond for a cached 1 KiB file (no compression): path normalisation, the
/// open-file cache hit, validators, then the h1 encoder writing the head into a reused
/// buffer.
#[divan::bench(args = ["browser", "wrk", "notfound"])]
fn route(b: Bencher, name: &str) {
    let req = request(name);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("small.html"), vec![b'x'; 1024]).expect("write");
    let text = format!(
        "root = {:?}\n[compression]\nenabled = false\n[open_file_cache]\ncheck = \"1h\"\nvalid = \"1h\"\nerrors = true\n",
        dir.path().display().to_string()
    );
    let config = Config::from_toml(&text, dir.path(), "micro.toml").expect("config");
    let mut site = Site::new(std::sync::Arc::new(config), None, None).expect("site");
    let mut out = Vec::with_capacity(4096);
    let date = b"Sun, 06 Nov 1994 08:49:37 GMT";
    let head = parse(req, &LIMITS).expect("valid").expect("complete");
    let now = Instant::now();
    b.bench_local(|| {
        out.clear();
        let reply = site.respond(&head, req, now, date, false).reply;
        let framing = Framing {
            keep_alive: true,
            http10: false,
            head_only: false,
        };
        black_box(encode(reply, framing, date, &mut out).status)
    });
}

/// The h1 encoder alone, for a 200 with validators: the head written into a reused
/// buffer (the reply is built outside the timed part).
#[divan::bench]
fn write_head(b: Bencher) {
    let framing = Framing {
        keep_alive: true,
        http10: false,
        head_only: false,
    };
    let mut out = Vec::with_capacity(512);
    let date = b"Sun, 06 Nov 1994 08:49:37 GMT";
    b.with_inputs(|| Reply {
        status: 200,
        headers: Headers {
            content_type: Some(ContentType::Static("text/html; charset=utf-8")),
            etag: Some(EtagBuf::new(1_700_000_000, 1024)),
            last_modified: Some(1_700_000_000),
            vary: true,
            accept_ranges: true,
            ..Headers::default()
        },
        body: Body::Empty,
        close: false,
    })
    .bench_local_values(|reply| {
        out.clear();
        encode(reply, framing, date, &mut out).keep_alive
    });
}

#[divan::bench(args = ["gzip, deflate, br, zstd", "br;q=1.0, gzip;q=0.8, *;q=0.1", "identity"])]
fn accept_encoding(b: Bencher, header: &str) {
    b.bench(|| choose_encoding(Some(black_box(header.as_bytes())), &[Coding::Gzip]));
}

#[divan::bench(args = ["bytes=0-1023", "bytes=0-99,200-299,-100"])]
fn range(b: Bencher, header: &str) {
    let mut out = Vec::with_capacity(16);
    b.bench_local(|| {
        parse_range(black_box(header.as_bytes()), 1 << 20, 16, &mut out) == RangeResult::Satisfiable
    });
}

/// One cache miss: a 1 MiB text body encoded at the default levels (gzip 6, zstd 3,
/// br 5). Time per iteration = CPU time per MiB; divan prints the input throughput too.
#[divan::bench(args = ["gzip", "zstd", "br"], sample_count = 20, sample_size = 1)]
fn codec(b: Bencher, coding: &str) {
    let coding = match coding {
        "zstd" => Coding::Zstd,
        "br" => Coding::Br,
        _ => Coding::Gzip,
    };
    let input = vireo::testkit::text(1 << 20);
    let levels = Levels::default();
    let mut out = Vec::new();
    b.counter(divan::counter::BytesCount::new(input.len()))
        .bench_local(|| {
            codec::encode(coding, &levels, black_box(&input), &mut out).expect("encode");
            out.len()
        });
}
