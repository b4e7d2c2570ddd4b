//! The shell's connections: a slab of sockets keyed like the core's [`ConnId`]s, and the
//! socket operations the loop makes on them. A TLS connection's state lives in a side table,
//! so a plain connection's entry stays 16 bytes.

use super::tls::TlsConn;
use crate::proto::chat::ConnId;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use slab::Slab;
use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;

/// The shell's part of a connection (16 bytes in the slab, see the test below).
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    pub(crate) generation: u32,
    /// Its key in [`Conns`]' TLS table, or [`PLAIN`].
    tls: u32,
    /// Whether WRITABLE interest is registered (only while the kernel refuses output).
    pub(crate) writing: bool,
    /// Nothing has been read yet (a plain connection's first byte is checked once).
    pub(crate) fresh: bool,
}

/// The `tls` key of a plain connection.
const PLAIN: u32 = u32::MAX;

/// Every open connection.
pub(crate) struct Conns {
    slab: Slab<Conn>,
    /// The last generation given out.
    generation: u32,
    /// The TLS state of the connections that have one (boxed: over 1 KB each).
    tls: Slab<Box<TlsConn>>,
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
            tls: Slab::new(),
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
                    tls: PLAIN,
                    writing: false,
                    fresh: false,
                };
                (id.index as usize, conn)
            })
            .collect();
        slab.reserve(capacity.saturating_sub(slab.len()));
        Conns {
            slab,
            generation,
            tls: Slab::new(),
        }
    }

    /// Adds a connection (a TLS one when `tls` is given) and registers it for reading; returns
    /// its id.
    pub(crate) fn add(
        &mut self,
        mut stream: TcpStream,
        registry: &Registry,
        tls: Option<Box<TlsConn>>,
    ) -> io::Result<ConnId> {
        let entry = self.slab.vacant_entry();
        // Generation 0 is never given out, so no connection's token is 0.
        self.generation = self.generation.wrapping_add(1).max(1);
        let id = ConnId {
            index: entry.key() as u32,
            generation: self.generation,
        };
        registry.register(&mut stream, token_of(id), Interest::READABLE)?;
        let _ = stream.set_nodelay(true);
        let tls = match tls {
            Some(t) => self.tls.insert(t) as u32,
            None => PLAIN,
        };
        entry.insert(Conn {
            stream,
            generation: id.generation,
            tls,
            writing: false,
            fresh: true,
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

    /// A TLS connection with its TLS state; `None` for a plain one.
    pub(crate) fn get_tls(&mut self, id: ConnId) -> Option<(&mut Conn, &mut TlsConn)> {
        let conn = self
            .slab
            .get_mut(id.index as usize)
            .filter(|c| c.generation == id.generation)?;
        let tls = self.tls.get_mut(conn.tls as usize)?;
        Some((conn, tls))
    }

    /// Forgets `id`; returns its socket and, for a TLS connection, its TLS state.
    pub(crate) fn remove(&mut self, id: ConnId) -> Option<(Conn, Option<Box<TlsConn>>)> {
        self.get_mut(id)?;
        let conn = self.slab.remove(id.index as usize);
        let tls = self.tls.try_remove(conn.tls as usize);
        if self.tls.is_empty() && self.tls.capacity() > TLS_KEEP {
            self.tls = Slab::new();
        }
        Some((conn, tls))
    }

    /// The ids of the TLS connections.
    pub(crate) fn tls_ids(&self) -> Vec<ConnId> {
        self.iter()
            .filter(|(_, c)| c.is_tls())
            .map(|(id, _)| id)
            .collect()
    }

    /// Every TLS connection's TLS state.
    pub(crate) fn tls_states(&self) -> impl Iterator<Item = &TlsConn> {
        self.tls.iter().map(|(_, t)| &**t)
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

/// TLS table slots kept once the table is empty again (a burst's peak is given back).
const TLS_KEEP: usize = 1024;

impl Conn {
    /// Whether this is a TLS connection.
    pub(crate) fn is_tls(&self) -> bool {
        self.tls != PLAIN
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_connection_costs_16_bytes_in_the_slab() {
        use std::mem::{align_of, size_of};
        // The socket is 4 bytes in a release build (mio adds 8 for checks in debug builds):
        // our own fields, TLS key and flags included, must fit in the 12 bytes beside it.
        let stream = size_of::<TcpStream>();
        let bound = (stream + 12).next_multiple_of(align_of::<Conn>());
        assert!(
            size_of::<Conn>() <= bound,
            "{} > {bound}",
            size_of::<Conn>()
        );
        // A slab slot holds the connection or the next free slot's index.
        #[allow(dead_code)]
        enum Slot {
            Vacant(usize),
            Occupied(Conn),
        }
        #[cfg(not(debug_assertions))]
        assert_eq!((size_of::<Conn>(), size_of::<Slot>()), (16, 16));
        assert!(size_of::<Slot>() <= bound.next_multiple_of(8));
    }
}
