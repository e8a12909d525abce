//! Listening sockets built with socket2 so we control what mio's `TcpListener::bind` does
//! not: SO_REUSEPORT (one socket per reactor on the same address, the kernel spreads new
//! connections between them) and the backlog (mio hard-codes 128). `carry_over` decides
//! which sockets a reload keeps.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;

/// Bind one non-blocking, close-on-exec listener with SO_REUSEADDR + SO_REUSEPORT.
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    defer_accept(&socket);
    socket.bind(&addr.into())?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(socket.into())
}

/// Bind `n` listeners on `addr`. With port 0 the first socket picks the port and the others
/// join it, so every reactor listens on the same, real address.
pub fn bind_all(
    addr: SocketAddr,
    backlog: u32,
    n: usize,
) -> io::Result<Vec<std::net::TcpListener>> {
    let first = bind(addr, backlog)?;
    let real = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..n {
        all.push(bind(real, backlog)?);
    }
    Ok(all)
}

/// One configured address's listening sockets (the server's own descriptors): socket `i`
/// is reactor `i`'s.
pub struct Address {
    /// As configured (port 0 stays 0: a reload keeps the port it got).
    pub want: SocketAddr,
    /// As bound.
    pub addr: SocketAddr,
    pub sockets: Vec<std::net::TcpListener>,
    /// Just bound, not carried over from the running generation.
    pub fresh: bool,
}

#[derive(Debug)]
pub struct BindError {
    pub addr: SocketAddr,
    pub err: io::Error,
}

/// The sockets for `listen` and `workers`, given the running ones: an address still listed
/// keeps its sockets (duplicated; as many as still fit, more bound on the same address), a
/// new one gets a fresh set. Nothing running changes.
pub fn carry_over(
    old: &[Address],
    listen: &[SocketAddr],
    backlog: u32,
    workers: usize,
) -> Result<Vec<Address>, BindError> {
    let mut out = Vec::with_capacity(listen.len());
    for &want in listen {
        let Some(old) = old.iter().find(|l| l.want == want) else {
            let sockets =
                bind_all(want, backlog, workers).map_err(|err| BindError { addr: want, err })?;
            let addr = sockets[0]
                .local_addr()
                .map_err(|err| BindError { addr: want, err })?;
            out.push(Address {
                want,
                addr,
                sockets,
                fresh: true,
            });
            continue;
        };
        let addr = old.addr;
        let mut sockets = Vec::with_capacity(workers);
        for s in old.sockets.iter().take(workers) {
            sockets.push(s.try_clone().map_err(|err| BindError { addr, err })?);
        }
        while sockets.len() < workers {
            sockets.push(bind(addr, backlog).map_err(|err| BindError { addr, err })?);
        }
        out.push(Address {
            want,
            addr,
            sockets,
            fresh: false,
        });
    }
    Ok(out)
}

/// TCP_DEFER_ACCEPT (nginx's `deferred`): the kernel hands a connection over only once its
/// first bytes have arrived, so the read right after accept finds the request. A client
/// that connects and sends nothing is handed over after about a second anyway, and then
/// meets the header timeout. Best effort: a kernel without it accepts as usual.
fn defer_accept(socket: &Socket) {
    use std::os::fd::AsRawFd;
    let secs: libc::c_int = 1;
    // SAFETY: a valid socket descriptor, and a c_int option value with its exact size;
    // neither socket2 nor rustix wraps TCP_DEFER_ACCEPT.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&secs as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        log::debug!("TCP_DEFER_ACCEPT: {}", io::Error::last_os_error());
    }
}
