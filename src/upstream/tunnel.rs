//! An upgraded connection (`Upgrade: websocket` answered `101`): from here on a
//! bidirectional byte tunnel between the client's socket and the upstream connection,
//! both in the reactor's Poll. Nothing is parsed; bytes pass as they come.
//!
//! ```text
//!  client --read (only while `up` has room)--> up [<= 64 KiB] --write--> upstream
//!  client <--write-- down [<= 64 KiB] <--read (only while `down` has room)-- upstream
//! ```
//!
//! Backpressure: a side is read only while the other side's buffer has room, so a slow
//! reader holds at most `TUNNEL_BUF` bytes per direction here and the rest waits in the
//! kernel (and then at the sender). The buffers are allocated on first use and given back
//! whenever both are empty, so an idle tunnel holds no buffer at all. An EOF one way
//! half-closes the other side's write once what was buffered went out (a WebSocket close
//! handshake, or a client that `shutdown(SHUT_WR)`s, works as through nginx). The idle
//! limit (no byte either way) is the set's `read_timeout`, as nginx's
//! `proxy_read_timeout` is for its tunnels. The upstream connection is never pooled
//! again: it closes with the tunnel.

use crate::http::upstream_response::{self, is_hop_by_hop};
use crate::upstream::pool::{UpKey, UpSock, Upstreams};
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Bytes held per direction.
pub const TUNNEL_BUF: usize = 64 * 1024;

/// Tunnels open now and opened since start, over every reactor and generation (a
/// tunnel outlives its generation's reload).
pub static OPEN: AtomicU64 = AtomicU64::new(0);
pub static TOTAL: AtomicU64 = AtomicU64::new(0);

/// The client's side as the tunnel sees it: its socket and cached readiness.
pub trait ClientSide {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize>;
    fn write(&mut self, b: &[u8]) -> io::Result<usize>;
    fn shutdown_write(&mut self);
    /// A short read proves the socket drained (plain TCP; not TLS).
    fn short_read_drains(&self) -> bool;
    fn readable(&mut self) -> &mut bool;
    fn writable(&mut self) -> &mut bool;
    /// The peer's FIN was reported (read on to EOF).
    fn read_closed(&self) -> bool;
}

/// One direction's bytes: `data[start..end]` waits to be written.
#[derive(Default)]
struct Buf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl Buf {
    fn pending(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Room to read into, compacting or allocating as needed.
    fn room(&mut self) -> &mut [u8] {
        if self.data.is_empty() {
            self.data = vec![0; TUNNEL_BUF];
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.data.len() && self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.data[self.end..]
    }

    fn has_room(&self) -> bool {
        self.data.is_empty() || self.end < self.data.len() || self.start > 0
    }

    fn took(&mut self, n: usize) {
        self.start += n;
    }
}

/// What a `pump` came to.
#[derive(Debug, PartialEq, Eq)]
pub enum TunnelStep {
    /// Waiting for readiness on either side.
    Blocked,
    /// The turn's byte budget is spent: pump again on the next tick.
    Yield,
    /// Both directions ended (EOF each way, everything delivered).
    Closed,
    Failed(String),
}

pub struct Tunnel {
    pub conn: UpKey,
    up: Buf,
    down: Buf,
    client_eof: bool,
    upstream_eof: bool,
    /// Our write side towards the upstream / the client is shut.
    up_shut: bool,
    down_shut: bool,
    /// The last byte either way: the idle limit counts from here.
    pub last: Instant,
    /// Bytes to the client and to the upstream.
    pub bytes_down: u64,
    pub bytes_up: u64,
}

impl Tunnel {
    /// `early_up`: what the client sent after its request head (already read); `early_down`:
    /// the 101 head for the client and what the upstream sent after it.
    pub fn new(conn: UpKey, early_up: &[u8], early_down: &[u8], now: Instant) -> Tunnel {
        let mut t = Tunnel {
            conn,
            up: Buf::default(),
            down: Buf::default(),
            client_eof: false,
            upstream_eof: false,
            up_shut: false,
            down_shut: false,
            last: now,
            bytes_down: 0,
            bytes_up: 0,
        };
        for (b, bytes) in [(&mut t.up, early_up), (&mut t.down, early_down)] {
            if !bytes.is_empty() {
                // Both fit: the head is at most the client's header limit plus the
                // exchange's bounded buffer; grow past `TUNNEL_BUF` once if not.
                b.data = bytes.to_vec();
                b.data.resize(b.data.len().max(TUNNEL_BUF), 0);
                b.end = bytes.len();
            }
        }
        OPEN.fetch_add(1, Ordering::Relaxed);
        TOTAL.fetch_add(1, Ordering::Relaxed);
        t
    }

    /// Move bytes both ways as far as readiness, room and `budget` allow.
    pub fn pump(
        &mut self,
        client: &mut dyn ClientSide,
        ups: &mut Upstreams,
        budget: u64,
        now: Instant,
    ) -> TunnelStep {
        let Some(up) = ups.get(self.conn) else {
            return TunnelStep::Failed("upstream connection gone".into());
        };
        let mut moved: u64 = 0;
        loop {
            let before = moved;
            // Client -> buffer, only while it has room.
            while !self.client_eof && *client.readable() && self.up.has_room() {
                let room = self.up.room();
                let want = room.len();
                match client.read(room) {
                    Ok(0) => {
                        self.client_eof = true;
                        *client.readable() = false;
                    }
                    Ok(n) => {
                        self.up.end += n;
                        moved += n as u64;
                        if n < want && client.short_read_drains() && !client.read_closed() {
                            *client.readable() = false;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => *client.readable() = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return TunnelStep::Failed(format!("client read: {e}")),
                }
            }
            // Buffer -> upstream.
            while !self.up.is_empty() && up.writable {
                match up.sock.write(self.up.pending()) {
                    Ok(0) => return TunnelStep::Failed("upstream write returned 0".into()),
                    Ok(n) => {
                        self.up.took(n);
                        self.bytes_up += n as u64;
                        moved += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => up.writable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return TunnelStep::Failed(format!("upstream write: {e}")),
                }
            }
            if self.client_eof && self.up.is_empty() && !self.up_shut {
                self.up_shut = true;
                let _ = match &up.sock {
                    UpSock::Tcp(s) => s.shutdown(Shutdown::Write),
                    UpSock::Unix(s) => s.shutdown(Shutdown::Write),
                };
            }
            // Upstream -> buffer, only while it has room.
            while !self.upstream_eof && up.readable && self.down.has_room() {
                let room = self.down.room();
                let want = room.len();
                match up.sock.read(room) {
                    Ok(0) => {
                        self.upstream_eof = true;
                        up.readable = false;
                    }
                    Ok(n) => {
                        self.down.end += n;
                        moved += n as u64;
                        if n < want && !up.hup {
                            up.readable = false;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => up.readable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return TunnelStep::Failed(format!("upstream read: {e}")),
                }
            }
            // Buffer -> client.
            while !self.down.is_empty() && *client.writable() {
                match client.write(self.down.pending()) {
                    Ok(0) => return TunnelStep::Failed("client write returned 0".into()),
                    Ok(n) => {
                        self.down.took(n);
                        self.bytes_down += n as u64;
                        moved += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => *client.writable() = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return TunnelStep::Failed(format!("client write: {e}")),
                }
            }
            if self.upstream_eof && self.down.is_empty() && !self.down_shut {
                self.down_shut = true;
                client.shutdown_write();
            }
            if moved > before {
                self.last = now;
            }
            if self.up_shut && self.down_shut {
                return TunnelStep::Closed;
            }
            if moved >= budget {
                return TunnelStep::Yield;
            }
            if moved == before {
                break;
            }
        }
        if self.up.is_empty() && self.down.is_empty() {
            // Idle: an open tunnel waiting for a message holds no buffer.
            self.up = Buf::default();
            self.down = Buf::default();
        }
        TunnelStep::Blocked
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        let _ = OPEN.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_sub(1))
        });
    }
}

/// Is this request an upgrade the tunnel can carry: HTTP/1.1, `Connection` naming
/// `upgrade`, an `Upgrade` value other than `h2c` (HTTP/2 is not tunnelled)? Returns the
/// `Upgrade` value to forward.
pub fn upgrade_of(head: &[u8]) -> Option<Vec<u8>> {
    let mut fields = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut fields);
    if !matches!(req.parse(head), Ok(httparse::Status::Complete(_))) || req.version != Some(1) {
        return None;
    }
    let mut upgrade: Option<Vec<u8>> = None;
    let mut named = false;
    for f in req.headers.iter() {
        let v = crate::http::token::trim(f.value);
        if f.name.eq_ignore_ascii_case("connection") {
            named |= v
                .split(|&b| b == b',')
                .any(|t| crate::http::token::trim(t).eq_ignore_ascii_case(b"upgrade"));
        } else if f.name.eq_ignore_ascii_case("upgrade") {
            if upgrade.is_some() || v.is_empty() {
                return None; // two Upgrade lines: not guessed at
            }
            upgrade = Some(v.to_vec());
        }
    }
    let up = upgrade?;
    let h2c = up
        .split(|&b| b == b',')
        .any(|t| crate::http::token::trim(t).eq_ignore_ascii_case(b"h2c"));
    (named && !h2c).then_some(up)
}

/// The `101` head the client gets: the upstream's fields but the hop-by-hop ones (and
/// those its `Connection` names), its `Upgrade` kept, `Via` added, `Connection: upgrade`.
pub fn write_upgrade_head(head: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
    let mut via: Option<Vec<u8>> = None;
    upstream_response::fields(head, |name, value, connection_named| {
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        let upgrade = is("upgrade");
        if (!upgrade && (is_hop_by_hop(name) || connection_named)) || is("content-length") {
            return;
        }
        if is("via") {
            let v = via.get_or_insert_with(Vec::new);
            if !v.is_empty() {
                v.extend_from_slice(b", ");
            }
            v.extend_from_slice(value);
            return;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    });
    out.extend_from_slice(b"Via: ");
    if let Some(v) = via {
        out.extend_from_slice(&v);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(b"1.1 vireo\r\nConnection: upgrade\r\n\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_requests_are_recognised() {
        let ws = b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n";
        assert_eq!(upgrade_of(ws).as_deref(), Some(&b"websocket"[..]));
        let no_conn = b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n";
        assert_eq!(upgrade_of(no_conn), None);
        let h2c = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\r\n";
        assert_eq!(upgrade_of(h2c), None);
        let v10 = b"GET /ws HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
        assert_eq!(upgrade_of(v10), None);
    }

    #[test]
    fn the_101_head_keeps_upgrade_and_drops_other_hop_by_hop_fields() {
        let mut out = Vec::new();
        write_upgrade_head(
            b"HTTP/1.1 101 Switching\r\nUpgrade: websocket\r\nConnection: Upgrade, X-Secret\r\n\
              X-Secret: 1\r\nKeep-Alive: timeout=5\r\nSec-WebSocket-Accept: abc\r\n\r\n",
            &mut out,
        );
        let s = String::from_utf8(out).expect("ascii");
        assert!(s.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{s}");
        assert!(s.contains("Upgrade: websocket\r\n"), "{s}");
        assert!(s.contains("Sec-WebSocket-Accept: abc\r\n"), "{s}");
        assert!(s.contains("Connection: upgrade\r\n"), "{s}");
        assert!(!s.contains("X-Secret") && !s.contains("Keep-Alive"), "{s}");
        assert!(
            s.ends_with("Via: 1.1 vireo\r\nConnection: upgrade\r\n\r\n"),
            "{s}"
        );
    }
}
