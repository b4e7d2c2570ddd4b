//! Listening sockets.

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};

/// Accept queue length asked of the kernel for the chat listeners (it caps it at
/// `net.core.somaxconn`).
pub(crate) const CHAT_BACKLOG: i32 = 4096;

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

/// Binds a non-blocking listener with an accept queue of `backlog` (mio's own `bind` asks for
/// 128, which a burst of connecting chat clients overflows).
pub(crate) fn listen(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // IPv6 only, so `--listen 0.0.0.0:P --listen [::]:P` binds both instead of failing.
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// Whether an `accept` error concerns only the connection that failed (the next may succeed).
pub(crate) fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}
