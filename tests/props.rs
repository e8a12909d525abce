//! Property tests over vireo's pure, public parts: request heads round-trip through the
//! parser, the path normaliser and resolver never leave the root, satisfiable ranges
//! stay inside the file with a multipart body of exactly its Content-Length, and
//! Accept-Encoding negotiation never picks a refused coding.

use std::sync::OnceLock;

use proptest::prelude::*;
use vireo::http::negotiate::{
    boundary_from_etag, choose_encoding, multipart_layout, parse_range, ByteRange, Coding,
    RangeResult,
};
use vireo::http::path::normalize;
use vireo::http::request::{parse, BodyFraming, Limits};
use vireo::http::{Method, Version};
use vireo::testkit::EscapeRoot;

const LIMITS: Limits = Limits {
    max_request_line: 8192,
    max_header_bytes: 16384,
    max_body_bytes: 1_048_576,
};

// ---------------------------------------------------------------------------------------
// parse(serialize(request)) == request
// ---------------------------------------------------------------------------------------

/// Header fields the parser exposes as spans, in the order of `RequestHead::field_spans`.
const KNOWN: [&str; 9] = [
    "Accept-Encoding",
    "If-None-Match",
    "If-Match",
    "If-Modified-Since",
    "If-Unmodified-Since",
    "Range",
    "If-Range",
    "User-Agent",
    "Referer",
];

#[derive(Clone, Debug)]
struct Req {
    method: String,
    path: String,
    query: Option<String>,
    http11: bool,
    host: Option<String>,
    /// (index into KNOWN, value)
    known: Vec<(usize, String)>,
    content_length: Option<u64>,
    connection: Option<&'static str>,
    extra: Vec<(String, String)>,
    /// 0 = as written, 1 = lower case, 2 = upper case field names.
    name_case: u8,
    ows: (&'static str, &'static str),
    bare_lf: bool,
    pipelined: Vec<u8>,
}

fn field_value() -> impl Strategy<Value = String> {
    // Visible ASCII, inner spaces/tabs, no surrounding whitespace (the parser trims it).
    "[!-~]([ -~\t]{0,30}[!-~])?"
}

fn req() -> impl Strategy<Value = Req> {
    let method = prop_oneof![
        Just("GET".to_string()),
        Just("HEAD".to_string()),
        Just("POST".to_string()),
        Just("OPTIONS".to_string()),
        Just("DELETE".to_string()),
        "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}"
            .prop_filter("CONNECT needs authority-form", |m| m != "CONNECT"),
    ];
    let path = prop::collection::vec("[A-Za-z0-9._~!$&'()*+,;=:@%-]{0,12}", 0..5)
        .prop_map(|segs| format!("/{}", segs.join("/")));
    let query = prop::option::of("[A-Za-z0-9=&/?%._-]{0,20}");
    let host = "[a-z0-9.-]{1,20}(:[0-9]{1,5})?";
    let known = prop::collection::vec((0..KNOWN.len(), field_value()), 0..6);
    let extra = prop::collection::vec(("X-[A-Za-z0-9-]{1,10}", field_value()), 0..5);
    let connection = prop::option::of(prop_oneof![
        Just("close"),
        Just("keep-alive"),
        Just("Keep-Alive, Upgrade"),
        Just("upgrade"),
    ]);
    let ows = (
        prop_oneof![Just(""), Just(" "), Just("\t "), Just("  ")],
        prop_oneof![Just(""), Just(" "), Just("\t")],
    );
    (
        (method, path, query, any::<bool>(), prop::option::of(host)),
        (known, prop::option::of(0u64..=2000), connection, extra),
        (
            0u8..3,
            ows,
            any::<bool>(),
            prop::collection::vec(any::<u8>(), 0..40),
        ),
    )
        .prop_map(
            |(
                (method, path, query, http11, host),
                (known, content_length, connection, extra),
                (name_case, ows, bare_lf, pipelined),
            )| {
                // HTTP/1.1 needs exactly one Host; 1.0 may omit it.
                let host = if http11 {
                    Some(host.unwrap_or_else(|| "h".into()))
                } else {
                    host
                };
                Req {
                    method,
                    path,
                    query,
                    http11,
                    host,
                    known,
                    content_length,
                    connection,
                    extra,
                    name_case,
                    ows,
                    bare_lf,
                    pipelined,
                }
            },
        )
}

impl Req {
    fn target(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        }
    }

    fn serialize(&self) -> Vec<u8> {
        let eol = if self.bare_lf { "\n" } else { "\r\n" };
        let ver = if self.http11 { "1.1" } else { "1.0" };
        let mut s = format!("{} {} HTTP/{ver}{eol}", self.method, self.target());
        let mut field = |name: &str, value: &str| {
            let name = match self.name_case {
                1 => name.to_ascii_lowercase(),
                2 => name.to_ascii_uppercase(),
                _ => name.to_string(),
            };
            s.push_str(&format!("{name}:{}{value}{}{eol}", self.ows.0, self.ows.1));
        };
        if let Some(h) = &self.host {
            field("Host", h);
        }
        for (i, v) in &self.known {
            field(KNOWN[*i], v);
        }
        if let Some(n) = self.content_length {
            field("Content-Length", &n.to_string());
        }
        if let Some(c) = self.connection {
            field("Connection", c);
        }
        for (n, v) in &self.extra {
            field(n, v);
        }
        s.push_str(eol);
        s.into_bytes()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn request_head_round_trips(r in req()) {
        let head = r.serialize();
        let mut buf = head.clone();
        buf.extend_from_slice(&r.pipelined);
        let h = match parse(&buf, &LIMITS) {
            Ok(Some(h)) => h,
            other => panic!("{other:?} for {:?}", String::from_utf8_lossy(&head)),
        };
        prop_assert_eq!(h.head_len, head.len());
        prop_assert_eq!(h.method_span.get(&buf), r.method.as_bytes());
        prop_assert_eq!(h.method, Method::from_bytes(r.method.as_bytes()));
        prop_assert_eq!(h.version, if r.http11 { Version::Http11 } else { Version::Http10 });
        let target = r.target();
        prop_assert_eq!(h.target.get(&buf), target.as_bytes());
        prop_assert_eq!(h.path.get(&buf), r.path.as_bytes());
        prop_assert_eq!(h.query.map(|q| q.get(&buf)), r.query.as_deref().map(str::as_bytes));
        prop_assert_eq!(h.host.map(|s| s.get(&buf)), r.host.as_deref().map(str::as_bytes));
        for (i, (name, span)) in h.field_spans().into_iter().enumerate() {
            prop_assert_eq!(name, KNOWN[i]);
            // The first occurrence of a field is the one reported.
            let want = r.known.iter().find(|(k, _)| *k == i).map(|(_, v)| v.as_bytes());
            prop_assert_eq!(span.map(|s| s.get(&buf)), want, "{}", name);
        }
        let framing = r.content_length.map_or(BodyFraming::None, BodyFraming::Length);
        prop_assert_eq!(h.framing, framing);
        let close = r.connection == Some("close");
        let ka = r.connection.is_some_and(|c| c.to_ascii_lowercase().contains("keep-alive"));
        prop_assert_eq!(h.keep_alive, if r.http11 { !close } else { ka });
        prop_assert!(!h.expect_continue);
        // Every proper prefix only asks for more bytes.
        for cut in [0, head.len() / 3, head.len() / 2, head.len() - 1] {
            prop_assert_eq!(parse(&buf[..cut], &LIMITS), Ok(None), "prefix {}", cut);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Paths: normalise, then resolve under a temporary root
// ---------------------------------------------------------------------------------------

fn world() -> &'static EscapeRoot {
    static W: OnceLock<EscapeRoot> = OnceLock::new();
    W.get_or_init(|| EscapeRoot::new().unwrap())
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("..".to_string()),
        Just(".".to_string()),
        Just("".to_string()),
        Just("%2e%2e".to_string()),
        Just("%2E.".to_string()),
        Just(".%2e".to_string()),
        Just("%2F".to_string()),
        Just("%00".to_string()),
        Just("a.txt".to_string()),
        Just("dir".to_string()),
        Just("sub".to_string()),
        Just("b.txt".to_string()),
        Just("index.html".to_string()),
        Just("link".to_string()),
        Just("up".to_string()),
        Just("up2".to_string()),
        Just("abs".to_string()),
        Just("absin".to_string()),
        Just("outdir".to_string()),
        Just("slash".to_string()),
        Just("etc".to_string()),
        Just("passwd".to_string()),
        Just("secret".to_string()),
        "[a-z.%0-9]{1,6}",
    ]
}

fn raw_path() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        9 => prop::collection::vec(segment(), 0..8).prop_map(|s| format!("/{}", s.join("/")).into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..40),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn normalized_paths_never_climb_and_resolver_stays_inside(raw in raw_path()) {
        let mut out = Vec::new();
        if normalize(&raw, &mut out).is_ok() {
            prop_assert!(!out.starts_with(b"/"), "{:?}", out);
            if !out.is_empty() {
                for seg in out.split(|&b| b == b'/') {
                    prop_assert!(seg != b".." && seg != b"." && !seg.is_empty(), "{:?}", out);
                }
            }
        }
        let w = world();
        let mut scratch = Vec::new();
        if let Ok(r) = w.resolver.open(&raw, &mut scratch) {
            w.assert_inside(&r);
        }
        // Not normalised: containment must come from the kernel / fallback alone.
        let rel = raw.strip_prefix(b"/").unwrap_or(&raw);
        if let Ok(r) = w.resolver.open_relative(rel) {
            w.assert_inside(&r);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Ranges and multipart/byteranges
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Spec {
    FromTo(u64, u64),
    From(u64),
    Suffix(u64),
}

fn spec(len: u64) -> impl Strategy<Value = Spec> {
    let pos = prop_oneof![0..=len.saturating_add(5), Just(u64::MAX)];
    (pos.clone(), pos, 0u8..3).prop_map(|(a, b, kind)| match kind {
        0 => Spec::FromTo(a.min(b), a.max(b)),
        1 => Spec::From(a),
        _ => Spec::Suffix(b),
    })
}

fn range_case() -> impl Strategy<Value = (u64, Vec<Spec>, usize)> {
    (0u64..3000).prop_flat_map(|len| {
        (
            Just(len),
            prop::collection::vec(spec(len), 1..8),
            1usize..10,
        )
    })
}

/// The bytes of the file each spec asks for, if any.
fn wanted(s: &Spec, len: u64) -> Option<(u64, u64)> {
    let (a, b) = match *s {
        Spec::FromTo(a, b) => (a, b.min(len.saturating_sub(1))),
        Spec::From(a) => (a, len.saturating_sub(1)),
        Spec::Suffix(0) => return None,
        Spec::Suffix(n) => (len.saturating_sub(n), len.saturating_sub(1)),
    };
    (len > 0 && a < len).then_some((a, b))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn satisfiable_ranges_fit_and_multipart_length_is_exact((len, specs, max) in range_case()) {
        let text: Vec<String> = specs
            .iter()
            .map(|s| match s {
                Spec::FromTo(a, b) => format!("{a}-{b}"),
                Spec::From(a) => format!("{a}-"),
                Spec::Suffix(n) => format!("-{n}"),
            })
            .collect();
        let header = format!("bytes={}", text.join(", "));
        let mut out = Vec::new();
        let r = parse_range(header.as_bytes(), len, max, &mut out);
        let want: Vec<(u64, u64)> = specs.iter().filter_map(|s| wanted(s, len)).collect();
        if specs.len() > max {
            prop_assert_eq!(r, RangeResult::Ignore);
            return Ok(());
        }
        if want.is_empty() {
            prop_assert_eq!(r, RangeResult::Unsatisfiable);
            prop_assert!(out.is_empty());
            return Ok(());
        }
        prop_assert_eq!(r, RangeResult::Satisfiable);
        // Inside the file, ascending, disjoint.
        for (i, br) in out.iter().enumerate() {
            prop_assert!(br.start <= br.end && br.end < len, "{:?} len {}", br, len);
            if i > 0 {
                prop_assert!(out[i - 1].end < br.start, "{:?}", out);
            }
        }
        // Exactly the requested bytes are covered.
        let mut asked = vec![false; len as usize];
        for (a, b) in &want {
            asked[*a as usize..=*b as usize].iter_mut().for_each(|x| *x = true);
        }
        let mut got = vec![false; len as usize];
        for br in &out {
            got[br.start as usize..=br.end as usize].iter_mut().for_each(|x| *x = true);
        }
        prop_assert!(asked == got, "{} -> {:?}", header, out);

        // Assemble the multipart body the way the connection sends it.
        let file: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let boundary = boundary_from_etag(b"\"5f-2c\"");
        let mut heads = Vec::new();
        let m = multipart_layout(&out, len, "text/plain; charset=utf-8", &boundary, &mut heads);
        let mut body = Vec::new();
        for (head, br) in &m.parts {
            body.extend_from_slice(&heads[head.clone()]);
            body.extend_from_slice(&file[br.start as usize..=br.end as usize]);
        }
        body.extend_from_slice(&heads[m.trailer.clone()]);
        prop_assert_eq!(body.len() as u64, m.content_length);
        let text = String::from_utf8_lossy(&body);
        prop_assert!(text.ends_with(&format!("\r\n--{boundary}--\r\n")), "{}", text);
        prop_assert_eq!(text.matches(&format!("--{boundary}\r\n")).count(), out.len());
        for br in &out {
            let cr = format!("Content-Range: bytes {}-{}/{len}\r\n\r\n", br.start, br.end);
            prop_assert!(text.contains(&cr), "{}", cr);
        }
    }

    #[test]
    fn range_len_is_consistent(start in 0u64..1000, extra in 0u64..1000) {
        let br = ByteRange { start, end: start + extra };
        prop_assert_eq!(br.len(), extra + 1);
        prop_assert!(!br.is_empty());
    }
}

// ---------------------------------------------------------------------------------------
// Accept-Encoding
// ---------------------------------------------------------------------------------------

const NAMES: [&str; 9] = [
    "gzip", "x-gzip", "GZip", "br", "zstd", "identity", "*", "deflate", "compress",
];
const QS: [(&str, u16); 9] = [
    ("0", 0),
    ("0.0", 0),
    ("0.000", 0),
    ("0.001", 1),
    ("0.5", 500),
    ("0.50", 500),
    ("0.999", 999),
    ("1", 1000),
    ("1.000", 1000),
];

fn coding_of(name: &str) -> Option<Coding> {
    match name.to_ascii_lowercase().as_str() {
        "gzip" | "x-gzip" => Some(Coding::Gzip),
        "br" => Some(Coding::Br),
        "zstd" => Some(Coding::Zstd),
        "identity" => Some(Coding::Identity),
        _ => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn accept_encoding_never_picks_a_refused_coding(
        elems in prop::collection::vec((0..NAMES.len(), prop::option::of(0..QS.len()), 0u8..3), 0..7),
        offered in prop::sample::subsequence(vec![Coding::Zstd, Coding::Br, Coding::Gzip, Coding::Identity], 0..=4),
    ) {
        let ows = ["", " ", "\t "];
        let header: Vec<String> = elems
            .iter()
            .map(|&(n, q, w)| match q {
                Some(q) => format!("{}{}{};{}q={}", ows[w as usize], NAMES[n], ows[w as usize], ows[w as usize], QS[q].0),
                None => format!("{}{}", ows[w as usize], NAMES[n]),
            })
            .collect();
        let header = header.join(",");
        // Reference weights: the first element naming a coding (or "*") counts.
        let weight = |c: Coding| -> Option<u16> {
            let q_of = |&(_, q, _): &(usize, Option<usize>, u8)| q.map_or(1000, |q| QS[q].1);
            elems.iter().find(|(n, _, _)| coding_of(NAMES[*n]) == Some(c)).map(q_of)
                .or_else(|| elems.iter().find(|(n, _, _)| NAMES[*n] == "*").map(q_of))
        };
        let pick = choose_encoding(Some(header.as_bytes()), &offered);
        match pick {
            Some(Coding::Identity) => {
                // Acceptable unless explicitly (or via "*") refused.
                prop_assert_ne!(weight(Coding::Identity), Some(0), "{}", header);
            }
            Some(c) => {
                prop_assert!(offered.contains(&c));
                let q = weight(c);
                prop_assert!(q.is_some_and(|q| q > 0), "{:?} with q {:?} for {}", c, q, header);
                // Nothing offered is strictly preferred by the client.
                for &o in &offered {
                    prop_assert!(weight(o).unwrap_or(0) <= q.unwrap(), "{:?} beats {:?} in {}", o, c, header);
                }
            }
            None => {
                for &o in offered.iter().chain([&Coding::Identity]) {
                    let w = weight(o);
                    let acceptable = match w {
                        Some(q) => q > 0,
                        None => o == Coding::Identity,
                    };
                    prop_assert!(!acceptable, "{:?} was acceptable in {}", o, header);
                }
            }
        }
    }
}
