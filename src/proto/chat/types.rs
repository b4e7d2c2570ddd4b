//! The core's public vocabulary: connection ids, why a connection ends, and what the shell
//! must do next.

use super::cluster::LogPos;
use bytes::Bytes;
use std::fmt;
use std::time::Instant;

/// One connection: a slot index chosen by the shell plus a generation, so that a stale id for a
/// reused slot never reaches the newcomer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    /// Slot index (the shell's slab key).
    pub index: u32,
    /// Generation, unique for the life of the server.
    pub generation: u32,
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.generation)
    }
}

/// Why a connection ends; logged by the shell and, for members of a room, told to the room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The user typed `/quit` or pressed Ctrl-C in telnet.
    Quit,
    /// The peer closed or reset the connection; the shell has dropped the socket.
    PeerClosed,
    /// The peer closed its sending side (end of input). It may still read, so the core hands
    /// back what is queued for it, like any close of its own.
    InputClosed,
    /// Reading from or writing to the socket failed; the shell has dropped the socket.
    SocketError,
    /// Unsent output passed `--sendq`.
    TooSlow,
    /// Silent for `--idle-timeout`.
    IdleTimeout,
    /// No nickname within `--login-timeout`.
    LoginTimeout,
    /// `--max-clients` reached.
    ServerFull,
    /// `--max-per-ip` reached for the peer's address.
    TooManyFromAddress,
    /// The first line was an HTTP request line.
    HttpRequest,
    /// The connection could not be handed over in an upgrade.
    ServerUpgrade,
}

impl CloseReason {
    /// Whether the connection ran into one of the server's limits (`--max-clients`,
    /// `--max-per-ip`, `--sendq`): worth an operator's attention, unlike an ordinary goodbye.
    pub fn is_limit(self) -> bool {
        matches!(
            self,
            CloseReason::ServerFull | CloseReason::TooManyFromAddress | CloseReason::TooSlow
        )
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CloseReason::Quit => "quit",
            CloseReason::PeerClosed => "closed by peer",
            CloseReason::InputClosed => "end of input",
            CloseReason::SocketError => "socket error",
            CloseReason::TooSlow => "too slow",
            CloseReason::IdleTimeout => "idle timeout",
            CloseReason::LoginTimeout => "login timeout",
            CloseReason::ServerFull => "server full",
            CloseReason::TooManyFromAddress => "too many connections from address",
            CloseReason::HttpRequest => "HTTP request",
            CloseReason::ServerUpgrade => "cannot be handed over in an upgrade",
        })
    }
}

/// A connection the core is done with: the shell writes `final_output` once, then closes.
#[derive(Debug)]
pub struct Closed {
    /// The connection.
    pub id: ConnId,
    /// Why it ends.
    pub reason: CloseReason,
    /// Bytes still to send (such as `*** Bye, NICK!`); empty for a client that was too slow.
    pub final_output: Vec<u8>,
}

/// What the shell must do next; see the drain rule in the crate docs.
#[derive(Debug)]
pub enum Output {
    /// Write `id`'s output once: [`Chat::gather`](super::Chat::gather) it, make one vectored write, and report with
    /// [`Chat::handle_written`](super::Chat::handle_written) before polling again.
    Write(ConnId),
    /// Write the final bytes once, then close the connection.
    Close(Closed),
    /// Read from this connection again: its input was held and may go on.
    Resume(ConnId),
    /// Cluster mode: append this entry to the shared log (entries in the order given).
    Publish(Bytes),
    /// Cluster mode: store this directory snapshot, taken after the entry at `at` (and trim
    /// the log below it).
    StoreSnapshot {
        /// The last entry the snapshot includes.
        at: LogPos,
        /// The snapshot.
        blob: Bytes,
    },
    /// Cluster mode: this node missed entries (the log was trimmed past it): connect to the
    /// log afresh and call [`Chat::handle_cluster_start`](super::Chat::handle_cluster_start).
    Resync,
    /// Nothing more to do now: wait for I/O, or until this deadline if there is one.
    Timeout(Option<Instant>),
}
