//! Listening sockets built with socket2 so we control what mio's `TcpListener::bind` does
//! not: SO_REUSEPORT (one socket per reactor on the same address, the kernel spreads new
//! connections between them) and the backlog (mio hard-codes 128).

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
