//! The shell's connections: a slab of sockets keyed like the core's [`ConnId`]s, and the
//! socket operations the loop makes on them.

use crate::proto::chat::ConnId;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use slab::Slab;
use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;

/// The shell's part of a connection (16 bytes in the slab).
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    pub(crate) generation: u32,
    /// Whether WRITABLE interest is registered (only while the kernel refuses output).
    pub(crate) writing: bool,
}

/// Every open connection.
pub(crate) struct Conns {
    slab: Slab<Conn>,
    /// The last generation given out.
    generation: u32,
}

/// Tokens at or above this are the server's own (listeners, signals, the upgrade channel); a
/// connection's token (generation above its slot index) never reaches them, as slot indices
/// stay far below 2^32 - 2^16.
pub(crate) const RESERVED_TOKENS: usize = usize::MAX - (1 << 16);

impl Conns {
    pub(crate) fn with_capacity(n: usize) -> Conns {
        Conns {
            slab: Slab::with_capacity(n),
            generation: 0,
        }
    }

    /// Connections handed over by an upgrade, under the ids the core knows them by.
    pub(crate) fn restore(conns: Vec<(ConnId, TcpStream)>, capacity: usize) -> Conns {
        let generation = conns.iter().map(|(id, _)| id.generation).max().unwrap_or(0);
        let mut slab: Slab<Conn> = conns
            .into_iter()
            .map(|(id, stream)| {
                let conn = Conn {
                    stream,
                    generation: id.generation,
                    writing: false,
                };
                (id.index as usize, conn)
            })
            .collect();
        slab.reserve(capacity.saturating_sub(slab.len()));
        Conns { slab, generation }
    }

    /// Adds a connection and registers it for reading; returns its id.
    pub(crate) fn add(&mut self, mut stream: TcpStream, registry: &Registry) -> io::Result<ConnId> {
        let entry = self.slab.vacant_entry();
        // Generation 0 is never given out, so no connection's token is 0.
        self.generation = self.generation.wrapping_add(1).max(1);
        let id = ConnId {
            index: entry.key() as u32,
            generation: self.generation,
        };
        registry.register(&mut stream, token_of(id), Interest::READABLE)?;
        let _ = stream.set_nodelay(true);
        entry.insert(Conn {
            stream,
            generation: id.generation,
            writing: false,
        });
        Ok(id)
    }

    /// The connection `id` names, unless its slot is empty or holds a newer connection.
    pub(crate) fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.slab
            .get_mut(id.index as usize)
            .filter(|c| c.generation == id.generation)
    }

    pub(crate) fn get(&self, id: ConnId) -> Option<&Conn> {
        self.slab
            .get(id.index as usize)
            .filter(|c| c.generation == id.generation)
    }

    pub(crate) fn remove(&mut self, id: ConnId) -> Option<Conn> {
        self.get_mut(id)?;
        Some(self.slab.remove(id.index as usize))
    }

    pub(crate) fn len(&self) -> usize {
        self.slab.len()
    }

    /// Every connection with its id.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (ConnId, &Conn)> {
        self.slab.iter().map(|(index, c)| {
            let id = ConnId {
                index: index as u32,
                generation: c.generation,
            };
            (id, c)
        })
    }

    pub(crate) fn ids(&self) -> Vec<ConnId> {
        self.iter().map(|(id, _)| id).collect()
    }
}

impl Conn {
    /// One vectored write of `iov`; returns what the kernel took and whether it refused some.
    pub(crate) fn write(&mut self, iov: &[IoSlice<'_>]) -> io::Result<(usize, bool)> {
        let offered: usize = iov.iter().map(|s| s.len()).sum();
        match self.stream.write_vectored(iov) {
            Ok(taken) => Ok((taken, taken < offered)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok((0, true)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok((0, false)),
            Err(e) => Err(e),
        }
    }

    /// Keeps WRITABLE interest exactly while the kernel refuses output.
    pub(crate) fn want_writable(&mut self, registry: &Registry, id: ConnId, on: bool) {
        if on == self.writing {
            return;
        }
        let interest = if on {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if registry
            .reregister(&mut self.stream, token_of(id), interest)
            .is_ok()
        {
            self.writing = on;
        }
    }

    /// Sends the last bytes once, then closes gracefully: FIN, and what the peer already sent
    /// is read first, so the close is not a reset that could lose our last line.
    pub(crate) fn close(mut self, final_output: &[u8], scratch: &mut [u8]) {
        if !final_output.is_empty() {
            let _ = self.stream.write(final_output);
        }
        let _ = self.stream.shutdown(Shutdown::Write);
        while matches!(self.stream.read(scratch), Ok(n) if n > 0) {}
    }
}

/// The poll token of a connection: its generation and slot index.
pub(crate) fn token_of(id: ConnId) -> Token {
    Token(((id.generation as usize) << 32) | id.index as usize)
}

/// The connection a token names (for tokens below [`RESERVED_TOKENS`]).
pub(crate) fn id_of(token: Token) -> ConnId {
    ConnId {
        index: token.0 as u32,
        generation: (token.0 >> 32) as u32,
    }
}

/// The key a connection travels under in an upgrade (the same packing as its token).
pub(crate) fn key_of(id: ConnId) -> u64 {
    token_of(id).0 as u64
}

/// The connection an upgrade key names.
pub(crate) fn id_of_key(key: u64) -> ConnId {
    id_of(Token(key as usize))
}
