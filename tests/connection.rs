//! The connection fuzzer's checks (vireo::net::harness::exercise) on every seed of
//! fuzz/corpus/connection under many split schedules, and on generated pipelines: a whole
//! connection state machine over an in-memory stream, no sockets.

use proptest::prelude::*;
use std::cell::RefCell;
use vireo::http::response::error_body;
use vireo::net::harness::{exercise, world, Harness, Step};

struct World {
    harnesses: Vec<Harness>,
    _dir: tempfile::TempDir,
}

fn with_world<T>(f: impl FnOnce(&mut Vec<Harness>) -> T) -> T {
    thread_local! {
        static W: RefCell<Option<World>> = const { RefCell::new(None) };
    }
    W.with(|w| {
        let mut w = w.borrow_mut();
        let w = w.get_or_insert_with(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let harnesses = world(dir.path()).expect("world");
            World {
                harnesses,
                _dir: dir,
            }
        });
        f(&mut w.harnesses)
    })
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/connection");
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .expect("corpus dir")
        .map(|e| {
            let p = e.expect("entry").path();
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(&p).expect("seed"))
        })
        .collect();
    v.sort();
    assert!(v.len() >= 30, "seed corpus went missing");
    v
}

#[test]
fn every_seed_under_many_schedules() {
    with_world(|hs| {
        for (name, data) in seeds() {
            // Each configuration, each timer/drain setting, several split schedules.
            for flags in 0u8..16 {
                for seed in 1u64..6 {
                    let mut input = vec![flags];
                    input.extend_from_slice(&seed.to_le_bytes());
                    input.extend_from_slice(&data[data.len().min(9)..]);
                    if let Err(e) = exercise(hs, &input) {
                        panic!("seed {name}, flags {flags}, schedule {seed}: {e}");
                    }
                }
            }
        }
    });
}

#[test]
fn a_pipeline_byte_by_byte_gets_every_response_in_order() {
    let req = |p: &str| format!("GET {p} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes();
    let mut input = Vec::new();
    for p in ["/a.txt", "/nope", "/dir", "/big.bin", "/a.txt"] {
        input.extend(req(p));
    }
    let steps: Vec<Step> = input
        .iter()
        .map(|b| Step::Data(vec![*b]))
        .chain([Step::Window(1)])
        .collect();
    with_world(|hs| {
        let t = hs[0].run(&steps).expect("run");
        assert!(t.closed && !t.timed_out);
        let rs = hs[0].check(&input, &t.output, false).expect("well formed");
        let got: Vec<(u16, usize)> = rs.iter().map(|r| (r.status, r.body_len)).collect();
        assert_eq!(
            got,
            [
                (200, 6),
                (404, error_body(404).len()),
                (301, error_body(301).len()),
                (200, (2 << 20) + 4099),
                (200, 6)
            ]
        );
        let text = |i: usize| String::from_utf8_lossy(&t.output[rs[i].body.clone()]).into_owned();
        assert!(text(1).contains("<h1>404 Not Found</h1>"), "{}", text(1));
        assert!(
            text(2).contains("<h1>301 Moved Permanently</h1>"),
            "{}",
            text(2)
        );
    });
}

#[test]
fn pipelined_listings_park_on_the_pool_and_answer_in_order() {
    // World 2 has autoindex: each listing parks the connection until its pool job (or the
    // cache) answers; the requests behind it wait their turn.
    let mut input = Vec::new();
    for (m, p) in [
        ("GET", "/list/"),
        ("HEAD", "/list/"),
        ("GET", "/a.txt"),
        ("GET", "/list/"),
    ] {
        input.extend(format!("{m} {p} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes());
    }
    with_world(|hs| {
        let t = hs[2].run(&[Step::Data(input.clone())]).expect("run");
        assert!(t.closed && !t.timed_out);
        let rs = hs[2].check(&input, &t.output, false).expect("well formed");
        let got: Vec<(u16, usize)> = rs.iter().map(|r| (r.status, r.body_len)).collect();
        let page = got[0].1;
        assert!(page > 0);
        assert_eq!(got, [(200, page), (200, 0), (200, 6), (200, page)]);
        let text = String::from_utf8_lossy(&t.output);
        assert!(text.contains("Index of /list/") && text.contains("x.json"));
    });
}

#[test]
fn a_send_timeout_mid_body_closes_and_says_so() {
    let req = b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n";
    let steps = [Step::Data(req.to_vec()), Step::Window(1000), Step::Timeout];
    with_world(|hs| {
        let t = hs[0].run(&steps).expect("run");
        assert!(t.closed && t.timed_out);
        assert_eq!(t.output.len(), 1000);
        assert!(
            hs[0].check(req, &t.output, false).is_err(),
            "a cut body must be noticed"
        );
        assert!(hs[0].check(req, &t.output, true).is_ok());
    });
}

fn request() -> impl Strategy<Value = Vec<u8>> {
    let path = prop::sample::select(vec![
        "/",
        "/a.txt",
        "/app.js",
        "/dir",
        "/dir/",
        "/nope",
        "/out",
        "/list/",
        "/pre.txt",
        "/%2e%2e/secret",
        "/with%20space.txt",
        "/assets/style.css",
    ]);
    let method = prop::sample::select(vec!["GET", "HEAD", "POST", "OPTIONS", "DELETE"]);
    let extra = prop::sample::select(vec![
        "",
        "Accept-Encoding: gzip\r\n",
        "Range: bytes=1-3,5-\r\n",
        "Range: bytes=-2\r\n",
        "If-None-Match: *\r\n",
        "Connection: close\r\n",
        "Content-Length: 3\r\n\r\nabc",
        "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n",
        "Expect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
        "Bad Header: x\r\n",
    ]);
    (method, path, extra).prop_map(|(m, p, e)| {
        // A body in `extra` already ends the head; the final CRLF then ends a chunked
        // body or starts the next request's noise, both of which the server must handle.
        format!("{m} {p} HTTP/1.1\r\nHost: x\r\n{e}\r\n").into_bytes()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn generated_pipelines_survive_any_schedule(
        flags in 0u8..16,
        seed in any::<u64>(),
        reqs in prop::collection::vec(request(), 1..6),
    ) {
        let mut input = vec![flags];
        input.extend_from_slice(&seed.to_le_bytes());
        input.extend(reqs.concat());
        let r = with_world(|hs| exercise(hs, &input));
        prop_assert!(r.is_ok(), "{:?}", r);
    }
}

#[test]
fn an_interrupted_sendfile_is_retried_not_a_close() {
    // EINTR from each of read, writev and sendfile (a signal landed): the response must
    // still complete, byte for byte.
    let req = b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n";
    let steps = [
        Step::Interrupt,
        Step::Data(req.to_vec()),
        Step::Interrupt,
        Step::Window(1 << 30),
    ];
    with_world(|hs| {
        let t = hs[0].run_open(&steps).expect("run");
        assert!(!t.closed, "closed on EINTR");
        let rs = hs[0].check(req, &t.output, false).expect("well formed");
        let got: Vec<(u16, usize)> = rs.iter().map(|r| (r.status, r.body_len)).collect();
        assert_eq!(got, [(200, (2 << 20) + 4099), (200, 6)]);
    });
}

#[test]
fn every_h2_seed_under_many_schedules() {
    use vireo::net::harness::h2::exercise_h2;
    // The HTTP/2 seeds: byte 0 has bit 7 set.
    let h2: Vec<_> = seeds()
        .into_iter()
        .filter(|(_, d)| d.first().is_some_and(|f| f & 0x80 != 0))
        .collect();
    assert!(!h2.is_empty(), "h2 seeds went missing");
    with_world(|hs| {
        for (name, data) in &h2 {
            let frames = data.get(9..).unwrap_or_default();
            for flags in 0x80u8..0x84 {
                for seed in 1u64..20 {
                    let mut input = vec![flags];
                    input.extend_from_slice(&seed.to_le_bytes());
                    input.extend_from_slice(frames);
                    if let Err(e) = exercise_h2(hs, &input) {
                        panic!("{name} (flags {flags}, seed {seed}): {e}");
                    }
                }
            }
        }
    });
}
