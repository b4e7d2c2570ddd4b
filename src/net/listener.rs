//! Listening sockets.

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};

/// Accept queue length asked of the kernel (it caps it at `net.core.somaxconn`).
const LISTEN_BACKLOG: i32 = 4096;

/// One listening socket of the chat, plain text or TLS.
pub(crate) struct Listener {
    socket: TcpListener,
    tls: bool,
}

impl Listener {
    pub(crate) fn new(socket: TcpListener, tls: bool) -> Listener {
        Listener { socket, tls }
    }

    /// Whether connections accepted here speak TLS.
    pub(crate) fn is_tls(&self) -> bool {
        self.tls
    }

    pub(crate) fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.socket, token, Interest::READABLE)
    }

    pub(crate) fn deregister(&mut self, registry: &Registry) {
        let _ = registry.deregister(&mut self.socket);
    }

    pub(crate) fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        self.socket.accept()
    }

    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.socket.local_addr().ok()
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

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
