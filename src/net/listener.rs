//! Listening sockets.

use mio::net::TcpListener;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;

/// Accept queue length asked of the kernel (it caps it at `net.core.somaxconn`).
const LISTEN_BACKLOG: i32 = 4096;

/// Binds a non-blocking listener with a deep accept queue (mio's own `bind` asks for 128, which
/// a burst of connecting clients overflows).
pub(crate) fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // IPv6 only, so `--listen 0.0.0.0:P --listen [::]:P` binds both instead of failing.
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(socket.into()))
}
