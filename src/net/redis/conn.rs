//! One non-blocking connection to Redis, registered in a `mio` poll under the owner's token.
//!
//! Commands are queued into one out buffer (pipelining: a turn's commands leave in one write)
//! and each carries a tag; replies come back in the order the commands were sent, so each reply
//! is matched to the oldest tag still waiting.

use super::codec::{self, CodecError, Frame};
use bytes::BytesMut;
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use thiserror::Error;

/// Bytes asked of the kernel per read.
const READ_CHUNK: usize = 16 * 1024;

/// Where Redis listens, resolved once at start so that reconnecting never blocks on DNS.
#[derive(Debug, Clone)]
pub(super) enum Target {
    /// A TCP address.
    Tcp(SocketAddr),
    /// The path of a Unix socket.
    Unix(PathBuf),
}

/// Why a connection ended.
#[derive(Debug, Error)]
pub enum ConnError {
    /// The connection could not be opened.
    #[error("cannot connect: {0}")]
    Connect(io::Error),
    /// Redis closed the connection.
    #[error("Redis closed the connection")]
    Closed,
    /// Reading or writing failed (e.g. a reset).
    #[error("{0}")]
    Io(io::Error),
    /// Redis sent bytes that are not a reply.
    #[error("{0}")]
    Protocol(#[from] CodecError),
    /// Redis owed an answer for too long (see the module docs).
    #[error("no answer for {0} seconds")]
    Silent(u64),
    /// Redis sent a reply nobody asked for.
    #[error("Redis sent a reply to no command")]
    Unasked,
}

enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// One connection: a socket, the commands not yet written, the bytes of replies not yet whole
/// and the tags of the commands still waiting for a reply.
pub(super) struct Conn<T> {
    socket: Socket,
    /// Set once the non-blocking connect has finished.
    connected: bool,
    out: BytesMut,
    input: BytesMut,
    waiting: VecDeque<T>,
}

impl<T> Conn<T> {
    /// Starts a non-blocking connect and registers the socket for reading and writing
    /// (edge-triggered, so writable only reports a socket that had been full).
    pub(super) fn open(
        target: &Target,
        registry: &Registry,
        token: Token,
    ) -> Result<Conn<T>, ConnError> {
        let mut socket = match target {
            Target::Tcp(addr) => {
                Socket::Tcp(TcpStream::connect(*addr).map_err(ConnError::Connect)?)
            }
            Target::Unix(path) => {
                Socket::Unix(UnixStream::connect(path).map_err(ConnError::Connect)?)
            }
        };
        let interest = Interest::READABLE | Interest::WRITABLE;
        match &mut socket {
            Socket::Tcp(s) => registry.register(s, token, interest),
            Socket::Unix(s) => registry.register(s, token, interest),
        }
        .map_err(ConnError::Connect)?;
        Ok(Conn {
            socket,
            connected: false,
            out: BytesMut::new(),
            input: BytesMut::new(),
            waiting: VecDeque::new(),
        })
    }

    /// Queues one command; it is written by the next [`Conn::flush`].
    pub(super) fn send(&mut self, args: &[&[u8]], tag: T) {
        codec::encode_command(&mut self.out, args);
        self.waiting.push_back(tag);
    }

    /// How many commands wait for their reply.
    pub(super) fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Handles readiness: finishes the connect, reads what arrived (then take the replies with
    /// [`Conn::next_reply`]) and writes what is queued.
    pub(super) fn on_ready(&mut self) -> Result<(), ConnError> {
        if !self.connected && !self.finish_connect()? {
            return Ok(());
        }
        self.read()?;
        self.flush()
    }

    /// Writes queued commands until done or the kernel refuses more (then the socket's next
    /// writable event continues).
    pub(super) fn flush(&mut self) -> Result<(), ConnError> {
        while self.connected && !self.out.is_empty() {
            match self.socket_write() {
                Ok(0) => return Err(ConnError::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    let _ = self.out.split_to(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ConnError::Io(e)),
            }
        }
        if self.out.is_empty() && self.out.capacity() > READ_CHUNK {
            self.out = BytesMut::new();
        }
        Ok(())
    }

    /// The next whole reply and the tag of the command it answers.
    pub(super) fn next_reply(&mut self) -> Result<Option<(T, Frame)>, ConnError> {
        let Some(frame) = codec::decode_reply(&mut self.input)? else {
            return Ok(None);
        };
        let tag = self.waiting.pop_front().ok_or(ConnError::Unasked)?;
        Ok(Some((tag, frame)))
    }

    /// Removes the socket from the poll; the connection is then dropped.
    pub(super) fn close(mut self, registry: &Registry) {
        let _ = match &mut self.socket {
            Socket::Tcp(s) => registry.deregister(s),
            Socket::Unix(s) => registry.deregister(s),
        };
    }

    /// Whether the non-blocking connect has finished; its error if it failed.
    fn finish_connect(&mut self) -> Result<bool, ConnError> {
        let (error, peer) = match &self.socket {
            Socket::Tcp(s) => (s.take_error(), s.peer_addr().map(drop)),
            Socket::Unix(s) => (s.take_error(), s.peer_addr().map(drop)),
        };
        if let Some(e) = error.map_err(ConnError::Connect)? {
            return Err(ConnError::Connect(e));
        }
        match peer {
            Ok(()) => {
                self.connected = true;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(ConnError::Connect(e)),
        }
    }

    /// Reads until the kernel says it has nothing more: readiness is edge-triggered, and a short
    /// read may hide a close that came with the data. Redis sends only replies to our own
    /// commands, whose size we bound (`XREAD COUNT`), so this ends.
    fn read(&mut self) -> Result<(), ConnError> {
        loop {
            let start = self.input.len();
            self.input.resize(start + READ_CHUNK, 0);
            let result = match &mut self.socket {
                Socket::Tcp(s) => s.read(&mut self.input[start..]),
                Socket::Unix(s) => s.read(&mut self.input[start..]),
            };
            self.input.truncate(start + *result.as_ref().unwrap_or(&0));
            match result {
                Ok(0) => return Err(ConnError::Closed),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ConnError::Io(e)),
            }
        }
    }

    fn socket_write(&mut self) -> io::Result<usize> {
        match &mut self.socket {
            Socket::Tcp(s) => s.write(&self.out),
            Socket::Unix(s) => s.write(&self.out),
        }
    }
}
