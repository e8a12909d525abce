//! WebSocket (and other HTTP/1.1 upgrade) tunnels through the reverse proxy (issue 23): a
//! small RFC 6455 echo server on a std thread (handshake with a real
//! `Sec-WebSocket-Accept`, minimal framing written here), and clients that send masked
//! frames through vireo and read the echoes.

use crate::support::*;
use crate::upstream_support::{accept_each, header, read_head};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// SHA-1 (FIPS 180-4), for the handshake only.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for i in 0..16 {
            w[i] = u32::from_be_bytes(block[i * 4..i * 4 + 4].try_into().unwrap());
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, x) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

fn accept_of(key: &str) -> String {
    base64(&sha1(
        format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes(),
    ))
}

#[test]
fn the_handshake_helpers_match_rfc_6455s_example() {
    assert_eq!(
        accept_of("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

/// One frame: (opcode, payload). `mask`: a client's frame.
fn write_frame(s: &mut impl Write, opcode: u8, payload: &[u8], mask: bool) {
    let mut f = vec![0x80 | opcode];
    let m = if mask { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => f.push(m | n as u8),
        n if n < 65536 => {
            f.push(m | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(m | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if mask {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        f.extend_from_slice(payload);
    }
    s.write_all(&f).unwrap();
}

/// Read one frame (unmasking it); None at EOF.
fn read_frame(s: &mut impl Read) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).ok()?;
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).ok()?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).ok()?;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mut key = [0u8; 4];
    if h[1] & 0x80 != 0 {
        s.read_exact(&mut key).ok()?;
    }
    let mut p = vec![0u8; len as usize];
    s.read_exact(&mut p).ok()?;
    if h[1] & 0x80 != 0 {
        for (i, b) in p.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    Some((h[0] & 0x0f, p))
}

/// The echo upstream: a request with `Upgrade: websocket` is answered 101 and its frames
/// echoed; `/deny` gets a 403; a request without Upgrade a plain 200. Every head it read
/// is kept.
struct Echo {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
}

fn echo_upstream() -> Echo {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let h = heads.clone();
    accept_each(listener, move |mut s| {
        let mut buf = Vec::new();
        let Some(head) = read_head(&mut s, &mut buf) else {
            return;
        };
        h.lock().unwrap().push(head.clone());
        let upgrade = header(&head, "upgrade").is_some_and(|u| u == "websocket");
        if head.starts_with("GET /ws/deny") {
            let _ = s.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\n\r\ndenied");
            return;
        }
        if !upgrade {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nno upgrade");
            return;
        }
        let key = header(&head, "sec-websocket-key").unwrap_or("").to_string();
        let _ = s.write_all(
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                accept_of(&key)
            )
            .as_bytes(),
        );
        // Bytes that came with the head belong to the first frames.
        let mut r = std::io::Cursor::new(buf).chain(s.try_clone().unwrap());
        while let Some((op, payload)) = read_frame(&mut r) {
            write_frame(&mut s, op, &payload, false);
            if op == 8 {
                let _ = s.shutdown(std::net::Shutdown::Write);
                // Read to the client's EOF, then close.
                let mut sink = Vec::new();
                let _ = r.read_to_end(&mut sink);
                return;
            }
        }
    });
    Echo { addr, heads }
}

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn ws_server(u: &Echo, websocket: bool, extra: &str, top: &str) -> TestServer {
    TestServer::start_with(
        &format!(
            "{top}\n[[upstream]]\nname = \"app\"\nservers = [\"{}\"]\n{extra}\n\
             [[proxy]]\npath = \"/ws/\"\nupstream = \"app\"\nwebsocket = {websocket}\n",
            u.addr
        ),
        |_| {},
    )
}

/// The handshake through vireo: returns the socket after the 101 head and the head.
fn handshake(addr: SocketAddr, path: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: chat.test\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).unwrap(), 1, "closed in the head: {head:?}");
        head.push(b[0]);
    }
    (s, String::from_utf8(head).unwrap())
}

#[test]
fn websocket_frames_are_echoed_through_the_tunnel() {
    let u = echo_upstream();
    let s = ws_server(&u, true, "", "[metrics]\nlisten = \"127.0.0.1:0\"\n");
    let (mut c, head) = handshake(s.addr, "/ws/chat");
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_eq!(header(&head, "upgrade"), Some("websocket"), "{head}");
    assert_eq!(header(&head, "connection"), Some("upgrade"), "{head}");
    assert_eq!(
        header(&head, "sec-websocket-accept").map(str::to_string),
        Some(accept_of(KEY))
    );
    // The upstream saw the upgrade asked for, with the forwarding fields.
    let up = u.heads.lock().unwrap()[0].clone();
    assert_eq!(header(&up, "upgrade"), Some("websocket"), "{up}");
    assert_eq!(header(&up, "connection"), Some("upgrade"), "{up}");
    assert_eq!(header(&up, "sec-websocket-key"), Some(KEY), "{up}");
    assert_eq!(header(&up, "x-forwarded-for"), Some("127.0.0.1"), "{up}");
    for (i, msg) in ["hello", "through", "the tunnel"].iter().enumerate() {
        write_frame(&mut c, 1 + (i as u8 % 2), msg.as_bytes(), true);
        assert_eq!(
            read_frame(&mut c),
            Some((1 + (i as u8 % 2), msg.as_bytes().to_vec()))
        );
    }
    let m = scrape(&s);
    assert_eq!(metric(&m, "vireo_upstream_tunnels", ""), 1, "{m}");
    assert_eq!(metric(&m, "vireo_upstream_tunnels_total", ""), 1);
    // The close handshake: echoed, then the upstream's EOF becomes the client's.
    write_frame(&mut c, 8, &[3, 232], true);
    assert_eq!(read_frame(&mut c), Some((8, vec![3, 232])));
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    let start = Instant::now();
    while metric(&scrape(&s), "vireo_upstream_tunnels", "") != 0 {
        assert!(start.elapsed() < TIMEOUT, "the tunnel gauge stayed up");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn frames_sent_with_the_handshake_are_not_lost() {
    let u = echo_upstream();
    let s = ws_server(&u, true, "", "");
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut req = format!(
        "GET /ws/x HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\n\r\n"
    )
    .into_bytes();
    write_frame(&mut req, 2, b"early", true);
    c.write_all(&req).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(c.read(&mut b).unwrap(), 1);
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101 "));
    assert_eq!(read_frame(&mut c), Some((2, b"early".to_vec())));
}

#[test]
fn several_mebibytes_pass_both_ways_exact() {
    let u = echo_upstream();
    let s = ws_server(&u, true, "", "");
    let (mut c, head) = handshake(s.addr, "/ws/bulk");
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let frames: Vec<Vec<u8>> = (0..3).map(|i| pattern(3 << 20, i)).collect();
    let mut w = c.try_clone().unwrap();
    let sent = frames.clone();
    // Written while the echoes are read: the tunnel's buffers are bounded, so a client
    // that only wrote would stall both directions (as it would through any proxy).
    let writer = std::thread::spawn(move || {
        for f in &sent {
            write_frame(&mut w, 2, f, true);
        }
    });
    for f in &frames {
        let (op, got) = read_frame(&mut c).expect("echo");
        assert_eq!(op, 2);
        assert!(got == *f, "a {} byte frame came back different", f.len());
    }
    writer.join().unwrap();
}

#[test]
fn an_idle_tunnel_is_closed_at_read_timeout_and_a_busy_one_is_not() {
    let u = echo_upstream();
    let s = ws_server(&u, true, "read_timeout = \"1s\"", "");
    let (mut c, _) = handshake(s.addr, "/ws/idle");
    // Busy for 2.4 s, more than the limit: each message restarts the countdown.
    for i in 0..6 {
        std::thread::sleep(Duration::from_millis(400));
        write_frame(&mut c, 1, format!("m{i}").as_bytes(), true);
        assert_eq!(read_frame(&mut c), Some((1, format!("m{i}").into_bytes())));
    }
    let quiet = Instant::now();
    let mut b = [0u8; 16];
    let n = c.read(&mut b).unwrap_or(0);
    let idle = quiet.elapsed();
    assert_eq!(n, 0, "bytes instead of a close");
    assert!(
        idle >= Duration::from_millis(900) && idle < Duration::from_secs(5),
        "closed after {idle:?} of silence, not at read_timeout (1 s)"
    );
}

#[test]
fn a_tunnel_survives_a_reload_and_keeps_echoing() {
    let u = echo_upstream();
    let s = ws_server(
        &u,
        true,
        "",
        "[metrics]\nlisten = \"127.0.0.1:0\"\n[timeouts]\nshutdown = \"1s\"\n",
    );
    let (mut c, _) = handshake(s.addr, "/ws/reload");
    write_frame(&mut c, 1, b"before", true);
    assert_eq!(read_frame(&mut c), Some((1, b"before".to_vec())));
    s.signal(1);
    s.wait_reloads("ok", 1);
    // Past the old generation's drain deadline (timeouts.shutdown): still open.
    std::thread::sleep(Duration::from_millis(1600));
    for msg in ["after", "the reload"] {
        write_frame(&mut c, 1, msg.as_bytes(), true);
        assert_eq!(read_frame(&mut c), Some((1, msg.as_bytes().to_vec())));
    }
    // New tunnels are the new generation's, and work too.
    let (mut d, head) = handshake(s.addr, "/ws/new");
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    write_frame(&mut d, 1, b"new", true);
    assert_eq!(read_frame(&mut d), Some((1, b"new".to_vec())));
    assert_eq!(metric(&scrape(&s), "vireo_upstream_tunnels", ""), 2);
}

#[test]
fn graceful_shutdown_closes_tunnels_at_the_shutdown_timeout() {
    let u = echo_upstream();
    let mut s = ws_server(&u, true, "", "[timeouts]\nshutdown = \"1s\"\n");
    let (mut c, _) = handshake(s.addr, "/ws/bye");
    write_frame(&mut c, 1, b"hi", true);
    assert_eq!(read_frame(&mut c), Some((1, b"hi".to_vec())));
    let start = Instant::now();
    s.signal(15);
    let mut b = [0u8; 16];
    assert_eq!(c.read(&mut b).unwrap_or(0), 0);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "tunnel closed after {took:?}"
    );
    assert!(s.wait_exit(TIMEOUT).is_some_and(|st| st.success()));
}

#[test]
fn a_route_without_websocket_does_not_upgrade() {
    let u = echo_upstream();
    let s = ws_server(&u, false, "", "");
    let (mut c, head) = handshake(s.addr, "/ws/plain");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    let mut body = [0u8; 10];
    c.read_exact(&mut body).unwrap();
    assert_eq!(&body, b"no upgrade");
    let up = u.heads.lock().unwrap()[0].clone();
    assert_eq!(header(&up, "upgrade"), None, "{up}");
    assert_eq!(header(&up, "connection"), None, "{up}");
}

#[test]
fn an_answer_other_than_101_is_a_normal_response() {
    let u = echo_upstream();
    let s = ws_server(&u, true, "", "");
    let mut c = Client::connect(s.addr);
    c.send(
        format!(
            "GET /ws/deny HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\n\r\n"
        )
        .as_bytes(),
    );
    let r = c.read_response();
    assert_eq!(r.status, 403, "{}", r.head);
    assert_eq!(r.body, b"denied");
    assert_eq!(r.header("upgrade"), None);
    // Still HTTP on the same connection.
    let r = c.get("/ws/after");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"no upgrade");
}
