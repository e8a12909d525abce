//! What a connection holds only while bytes are in flight, and the compact peer address:
//! the parts of a connection's state kept small so that an idle one costs ~112 bytes.

use crate::net::recv::Inbox;
use crate::net::send::{BufPool, Outbox};

/// The peer's address in 20 bytes where a `SocketAddr` takes 32 (an IPv6 flow label and
/// scope id are not kept: nothing logs them).
#[derive(Clone, Copy)]
pub(super) struct Peer {
    ip: [u8; 16],
    port: u16,
    v6: bool,
}

impl Peer {
    pub(super) fn of(a: std::net::SocketAddr) -> Peer {
        let mut ip = [0u8; 16];
        let v6 = match a.ip() {
            std::net::IpAddr::V4(v4) => {
                ip[..4].copy_from_slice(&v4.octets());
                false
            }
            std::net::IpAddr::V6(v6) => {
                ip = v6.octets();
                true
            }
        };
        Peer {
            ip,
            port: a.port(),
            v6,
        }
    }

    pub(super) fn addr(self) -> std::net::SocketAddr {
        let ip = if self.v6 {
            std::net::IpAddr::from(self.ip)
        } else {
            std::net::IpAddr::from([self.ip[0], self.ip[1], self.ip[2], self.ip[3]])
        };
        std::net::SocketAddr::new(ip, self.port)
    }
}

/// What a connection holds only while bytes are in flight: the bytes received and not
/// yet answered, and the response bytes on their way out. An idle keep-alive connection
/// holds none of it (nor its buffers); the reactor recycles the boxes (`Spares`).
#[derive(Default)]
pub struct Busy {
    pub(super) rx: Inbox,
    pub(super) tx: Outbox,
    /// The cold-window job on an I/O thread, cancelled if the connection closes first.
    pub(super) cold: Option<std::sync::Arc<crate::offload::ColdTicket>>,
}

/// A reactor's recycled buffers and `Busy` boxes, so idle connections hold none.
#[derive(Default)]
pub struct Spares {
    pub rx: BufPool,
    pub tx: BufPool,
    // Boxed on purpose: a connection takes the box itself, no move of the struct.
    #[allow(clippy::vec_box)]
    pub(super) shells: Vec<Box<Busy>>,
}

impl Spares {
    pub(super) const KEEP: usize = 256;
}

/// The connection's `Busy`, taken from `spares` if it had none.
pub(super) fn busy<'a>(b: &'a mut Option<Box<Busy>>, spares: &mut Spares) -> &'a mut Busy {
    b.get_or_insert_with(|| spares.shells.pop().unwrap_or_default())
}

/// Borrows only the field, so the rest of the connection stays free.
pub(super) fn pending(b: &Option<Box<Busy>>) -> &[u8] {
    b.as_ref().map_or(&[], |b| b.rx.pending())
}
