//! Segmentation independence: every request is sent split in two at every byte position
//! (TCP_NODELAY, two write calls, the second only once the server has read the first) and
//! must get the same responses as when sent whole.

use std::io::{Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;

/// Each case ends with a request carrying `Connection: close` (or an error that closes),
/// so the full answer is everything up to EOF.
const CASES: &[(&str, &[u8], &[u16])] = &[
    (
        "single GET",
        b"GET /small.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        &[200],
    ),
    (
        "HEAD",
        b"HEAD /index.html HTTP/1.1\r\nHost: t\r\nUser-Agent: split/1\r\nConnection: close\r\n\r\n",
        &[200],
    ),
    (
        "pipelined pair",
        b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /dir/ HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        &[200, 200],
    ),
    (
        "Content-Length body",
        b"GET /small.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world\
          GET /with%20space.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        &[200, 200],
    ),
    (
        "chunked body",
        b"GET /small.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
          5;ext=\"a b\"\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n\
          GET /missing HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        &[200, 404],
    ),
    (
        "100-continue, then the answer after the body",
        b"GET /small.txt HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello\
          GET /dir/ HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        &[100, 200, 200],
    ),
    (
        "400 bad chunk size after a good chunk, never a 200 first",
        b"GET /small.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\nz\r\n\
          GET /missing HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        &[400],
    ),
    (
        "400 duplicate Content-Length",
        b"GET /small.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        &[400],
    ),
    (
        "400 obs-fold after a good request",
        b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /small.txt HTTP/1.1\r\nHost: t\r\nX: a\r\n b\r\n\r\n",
        &[200, 400],
    ),
];

/// Send `a` then `b` as separate writes and read until the server closes.
fn exchange(addr: SocketAddr, a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    s.set_write_timeout(Some(TIMEOUT)).expect("timeout");
    s.write_all(a).expect("first half");
    if !b.is_empty() {
        // So the server reads the halves apart, whatever the machine's load.
        wait_read(&s);
        // The server may already have answered and closed (an early 400); the write
        // then fails or is drained by the lingering close. Either way read on.
        let _ = s.write_all(b);
    }
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read until close");
    out
}

fn v4(a: SocketAddr) -> SocketAddrV4 {
    match a {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(a) => panic!("not IPv4: {a}"),
    }
}

/// Wait (bounded) until everything written on `s` has reached the server's socket and the
/// server has read it: the client's send queue is acknowledged, and the server's end of the
/// connection has no unread bytes (or is gone: it answered and closed).
fn wait_read(s: &TcpStream) {
    let client = v4(s.local_addr().expect("local addr"));
    let server = v4(s.peer_addr().expect("peer addr"));
    let diag = Diag::new();
    let start = Instant::now();
    loop {
        let acked = diag.lookup(client, server).is_none_or(|q| q.wqueue == 0);
        // Before the data comes, TCP_DEFER_ACCEPT leaves only a request socket.
        let read = diag
            .lookup(server, client)
            .is_none_or(|q| q.state != TCP_SYN_RECV && q.rqueue == 0);
        if acked && read {
            return;
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "the server never read the first part"
        );
        std::thread::sleep(Duration::from_micros(50));
    }
}

const TCP_SYN_RECV: u8 = 3;

struct Queues {
    state: u8,
    /// Received, not yet read by the application.
    rqueue: u32,
    /// Sent, not yet acknowledged.
    wqueue: u32,
}

/// A NETLINK_SOCK_DIAG socket: looks up one TCP socket by its four-tuple, as `ss` does,
/// without listing the whole table.
struct Diag(socket2::Socket);

impl Diag {
    fn new() -> Diag {
        const NETLINK_SOCK_DIAG: i32 = 4;
        let s = socket2::Socket::new(
            socket2::Domain::from(libc::AF_NETLINK),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::from(NETLINK_SOCK_DIAG)),
        )
        .expect("netlink socket");
        Diag(s)
    }

    /// The socket whose local address is `local` and peer `remote`, if there is one.
    fn lookup(&self, local: SocketAddrV4, remote: SocketAddrV4) -> Option<Queues> {
        const SOCK_DIAG_BY_FAMILY: u16 = 20;
        const NLMSG_ERROR: u16 = 2;
        const NLM_F_REQUEST: u16 = 1;
        // struct nlmsghdr, then struct inet_diag_req_v2 with its inet_diag_sockid.
        let mut req = Vec::with_capacity(72);
        req.extend_from_slice(&72u32.to_ne_bytes());
        req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        req.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
        req.extend_from_slice(&[0; 8]); // sequence, port id
        req.extend_from_slice(&[libc::AF_INET as u8, libc::IPPROTO_TCP as u8, 0, 0]);
        req.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
        req.extend_from_slice(&local.port().to_be_bytes());
        req.extend_from_slice(&remote.port().to_be_bytes());
        for ip in [local.ip(), remote.ip()] {
            req.extend_from_slice(&ip.octets());
            req.extend_from_slice(&[0; 12]);
        }
        req.extend_from_slice(&[0; 4]); // any interface
        req.extend_from_slice(&[0xff; 8]); // INET_DIAG_NOCOOKIE
        assert_eq!(req.len(), 72);
        // Unconnected netlink sockets send to the kernel.
        (&self.0).write_all(&req).expect("netlink send");
        let mut buf = [0u8; 8192];
        let n = (&self.0).read(&mut buf).expect("netlink recv");
        let u16_at = |i: usize| u16::from_ne_bytes([buf[i], buf[i + 1]]);
        let u32_at = |i: usize| u32::from_ne_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        assert!(n >= 16, "short netlink answer");
        match u16_at(4) {
            // struct inet_diag_msg: family, state, timer, retrans, the 48-byte id,
            // expires, rqueue, wqueue.
            SOCK_DIAG_BY_FAMILY if n >= 16 + 64 => Some(Queues {
                state: buf[17],
                rqueue: u32_at(16 + 56),
                wqueue: u32_at(16 + 60),
            }),
            // ENOENT: no such socket (any other error is a broken lookup).
            NLMSG_ERROR if n >= 20 => {
                let errno = -(u32_at(16) as i32);
                assert_eq!(errno, libc::ENOENT, "sock_diag lookup failed");
                None
            }
            t => panic!("unexpected netlink message type {t}"),
        }
    }
}

/// Responses without their Date header (the only part that may differ between runs).
fn normalized(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .split_inclusive("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("date:"))
        .collect()
}

fn statuses(text: &str) -> Vec<u16> {
    text.split("HTTP/1.1 ")
        .skip(1)
        .map(|s| s[..3].parse().expect("status code"))
        .collect()
}

#[test]
fn any_segmentation_gives_the_same_responses() {
    let s = TestServer::start("");
    let addr = s.addr;
    let expected: Vec<String> = CASES
        .iter()
        .map(|(name, req, want)| {
            let whole = normalized(&exchange(addr, req, b""));
            assert_eq!(&statuses(&whole), want, "{name}: {whole}");
            whole
        })
        .collect();

    // Every (case, split point) pair, handed out to a few worker threads.
    let jobs: Vec<(usize, usize)> = CASES
        .iter()
        .enumerate()
        .flat_map(|(c, (_, req, _))| (1..req.len()).map(move |at| (c, at)))
        .collect();
    let next = AtomicUsize::new(0);
    let failures: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..6)
            .map(|_| {
                scope.spawn(|| {
                    let mut bad = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&(c, at)) = jobs.get(i) else { break };
                        let (name, req, _) = CASES[c];
                        let got = normalized(&exchange(addr, &req[..at], &req[at..]));
                        if got != expected[c] {
                            bad.push(format!(
                                "{name}, split at {at}:\n--- whole\n{}\n--- split\n{got}",
                                expected[c]
                            ));
                        }
                    }
                    bad
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("worker"))
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} splits differ; first:\n{}",
        failures.len(),
        jobs.len(),
        failures[0]
    );
}
