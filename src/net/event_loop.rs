//! The poll loop: accepts, reads, hands bytes to the chat core, and carries out what
//! [`Chat::poll_output`] asks for.

use super::listener::listen;
use super::{fd_limit, log, peer_of};
use crate::config::Config;
use crate::proto::chat::{Chat, CloseReason, Closed, ConnId, Output};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};
use thiserror::Error;

/// Size of the one read buffer shared by every connection.
const SCRATCH: usize = 16 * 1024;
/// Reads from one connection per turn before others get their turn.
const READS_PER_TURN: usize = 8;
/// Most slices in one vectored write (a connection with more is written again at once).
const MAX_IOV: usize = 64;
/// How long to wait before accepting again after running out of file descriptors (a close of
/// our own resumes accepting at once).
const ACCEPT_RETRY: Duration = Duration::from_millis(500);

const SIGNAL_TOKEN: Token = Token(usize::MAX);
const LISTENER_BASE: usize = usize::MAX - 1024;

/// Why the server could not start or keep running.
#[derive(Debug, Error)]
pub enum ServerError {
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The poll instance or the signal handlers could not be set up.
    #[error("cannot set up the event loop: {0}")]
    Setup(io::Error),
    /// Waiting for events failed.
    #[error("the event loop failed: {0}")]
    Poll(io::Error),
}

/// A bound server, ready to [`Server::run`].
pub struct Server {
    poll: Poll,
    listeners: Vec<TcpListener>,
    signals: Signals,
    conns: Slab<Conn>,
    chat: Chat,
    generation: u32,
    scratch: Vec<u8>,
    /// Connections with more input than one turn reads, or whose held input was released.
    backlog: Vec<ConnId>,
    /// The core's next deadline, from the last drain.
    deadline: Option<Instant>,
    /// Set while accepting is paused because descriptors ran out.
    accept_retry_at: Option<Instant>,
    shutdown_grace: Duration,
    shutdown_at: Option<Instant>,
}

/// The shell's part of a connection: the socket and its poll state.
struct Conn {
    stream: TcpStream,
    generation: u32,
    /// Whether WRITABLE interest is registered (only while the kernel refuses output).
    writing: bool,
}

impl Server {
    /// Raises the open-file limit, binds every listen address and sets up signals.
    pub fn bind(config: Config) -> Result<Server, ServerError> {
        let fd_capacity = fd_limit::raise_and_derive_max_clients(config.listen.len());
        let max_clients = config.max_clients.unwrap_or(fd_capacity);
        let poll = Poll::new().map_err(ServerError::Setup)?;
        let mut listeners = Vec::new();
        for (i, &addr) in config.listen.iter().enumerate() {
            let mut listener = listen(addr).map_err(|source| ServerError::Bind { addr, source })?;
            poll.registry()
                .register(&mut listener, Token(LISTENER_BASE + i), Interest::READABLE)
                .map_err(ServerError::Setup)?;
            listeners.push(listener);
        }
        let mut signals = Signals::new([SIGINT, SIGTERM]).map_err(ServerError::Setup)?;
        poll.registry()
            .register(&mut signals, SIGNAL_TOKEN, Interest::READABLE)
            .map_err(ServerError::Setup)?;
        Ok(Server {
            poll,
            listeners,
            signals,
            conns: Slab::with_capacity(max_clients.min(1 << 20)),
            chat: Chat::new(config.chat_settings(max_clients), Instant::now()),
            generation: 0,
            scratch: vec![0; SCRATCH],
            backlog: Vec::new(),
            deadline: None,
            accept_retry_at: None,
            shutdown_grace: config.shutdown_grace,
            shutdown_at: None,
        })
    }

    /// The addresses actually bound (useful with port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Runs until SIGINT or SIGTERM, then flushes for up to the shutdown grace and returns.
    pub fn run(mut self) -> Result<(), ServerError> {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.poll_timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(ServerError::Poll(e));
            }
            let now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    SIGNAL_TOKEN => self.begin_shutdown(now),
                    Token(t) if t >= LISTENER_BASE => self.accept(t - LISTENER_BASE, now),
                    Token(t) => {
                        let id = token_to_id(t);
                        if event.is_writable() {
                            self.chat.handle_writable(id);
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.read(id, now, event.is_read_closed() || event.is_error());
                        }
                    }
                }
                self.drain_if_full(now);
            }
            for id in std::mem::take(&mut self.backlog) {
                self.read(id, now, true);
                self.drain_if_full(now);
            }
            if self.deadline.is_some_and(|d| d <= now) {
                self.chat.handle_timeout(now);
            }
            if self.accept_retry_at.is_some_and(|t| t <= now) {
                self.resume_accepting(now);
            }
            self.drain(now);
            if let Some(deadline) = self.shutdown_at
                && (now >= deadline || self.chat.queued_bytes() == 0)
            {
                log(format_args!("shut down"));
                return Ok(());
            }
        }
    }

    /// How long the next poll may block: until the earliest deadline, or forever.
    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.backlog.is_empty() {
            return Some(Duration::ZERO);
        }
        [self.deadline, self.accept_retry_at, self.shutdown_at]
            .into_iter()
            .flatten()
            .min()
            .map(|d| d.saturating_duration_since(now))
    }

    /// Carries out everything the core asks for, until it says what to wait for.
    fn drain(&mut self, now: Instant) {
        loop {
            match self.chat.poll_output() {
                Output::Write(id) => self.write(id, now),
                Output::Close(closed) => self.finish_close(closed, now),
                // Held input was released: read again this turn (epoll will not say so).
                Output::Resume(id) => self.backlog.push(id),
                Output::Timeout(deadline) => {
                    self.deadline = deadline;
                    return;
                }
            }
        }
    }

    /// Writes early when this turn has already queued a lot of output.
    fn drain_if_full(&mut self, now: Instant) {
        if self.chat.wants_flush() {
            self.drain(now);
        }
    }

    fn accept(&mut self, listener: usize, now: Instant) {
        while self.accept_retry_at.is_none() && self.shutdown_at.is_none() {
            let Some(l) = self.listeners.get(listener) else {
                return;
            };
            match l.accept() {
                Ok((stream, addr)) => {
                    self.add_conn(stream, addr, now);
                    self.drain_if_full(now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if is_out_of_descriptors(&e) => {
                    log(format_args!(
                        "accept paused: {e}; retrying when a connection closes or in {ACCEPT_RETRY:?}"
                    ));
                    self.accept_retry_at = Some(now + ACCEPT_RETRY);
                }
                Err(e) if is_transient_accept_error(&e) => {}
                Err(e) => {
                    log(format_args!("accept failed: {e}"));
                    return;
                }
            }
        }
    }

    fn resume_accepting(&mut self, now: Instant) {
        if self.accept_retry_at.take().is_some() {
            for i in 0..self.listeners.len() {
                self.accept(i, now);
            }
        }
    }

    fn add_conn(&mut self, mut stream: TcpStream, addr: SocketAddr, now: Instant) {
        let entry = self.conns.vacant_entry();
        self.generation = self.generation.wrapping_add(1);
        let id = ConnId {
            index: entry.key() as u32,
            generation: self.generation,
        };
        let registered =
            self.poll
                .registry()
                .register(&mut stream, id_to_token(id), Interest::READABLE);
        if let Err(e) = registered {
            log(format_args!("cannot watch connection from {addr}: {e}"));
            return;
        }
        let _ = stream.set_nodelay(true);
        entry.insert(Conn {
            stream,
            generation: id.generation,
            writing: false,
        });
        log(format_args!("connect {id} from {addr}"));
        self.chat.handle_connect(id, peer_of(addr.ip()), now);
    }

    /// Reads from `id` and hands the bytes to the core. Reads until the kernel has nothing
    /// more when `to_end` is set; otherwise a short read is taken to mean "drained" (epoll is
    /// edge-triggered and will report new data), saving a system call per turn.
    fn read(&mut self, id: ConnId, now: Instant, to_end: bool) {
        for _ in 0..READS_PER_TURN {
            if !self.chat.wants_input(id) {
                return;
            }
            let Some(conn) = conn_of(&mut self.conns, id) else {
                return;
            };
            match conn.stream.read(&mut self.scratch) {
                Ok(0) => {
                    // The peer may still read: the core closes it like one of its own closes,
                    // with the replies to its last lines as final output.
                    return self.chat.handle_disconnect(id, CloseReason::InputClosed);
                }
                Ok(n) => {
                    self.chat.handle_input(id, &self.scratch[..n], now);
                    if n < self.scratch.len() && !to_end {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.lose(id, e, now),
            }
        }
        self.backlog.push(id);
    }

    /// Writes `id`'s pending output with one vectored write and tells the core how it went;
    /// WRITABLE interest is kept only while the kernel refuses bytes.
    fn write(&mut self, id: ConnId, now: Instant) {
        let Some(conn) = conn_of(&mut self.conns, id) else {
            return;
        };
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let n = self.chat.gather(id, &mut iov);
        let offered: usize = iov[..n].iter().map(|s| s.len()).sum();
        let (taken, blocked) = match conn.stream.write_vectored(&iov[..n]) {
            Ok(taken) => (taken, taken < offered),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => (0, true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => (0, false),
            Err(e) => return self.lose(id, e, now),
        };
        if blocked != conn.writing {
            let interest = if blocked {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if self
                .poll
                .registry()
                .reregister(&mut conn.stream, id_to_token(id), interest)
                .is_ok()
            {
                conn.writing = blocked;
            }
        }
        // Also when nothing was taken: the core judges --sendq after each write attempt.
        self.chat.handle_written(id, taken, blocked);
    }

    /// The socket failed or the peer left: forget it here and in the core.
    fn lose(&mut self, id: ConnId, error: io::Error, now: Instant) {
        if conn_of(&mut self.conns, id).is_none() {
            return;
        }
        self.conns.remove(id.index as usize);
        // A reset or a write to a closed peer is the peer leaving, not a fault of ours.
        let reason = if is_peer_gone(&error) {
            log(format_args!(
                "disconnect {id} ({})",
                CloseReason::PeerClosed
            ));
            CloseReason::PeerClosed
        } else {
            log(format_args!(
                "disconnect {id} ({}: {error})",
                CloseReason::SocketError
            ));
            CloseReason::SocketError
        };
        self.chat.handle_disconnect(id, reason);
        self.resume_accepting(now);
    }

    /// The core is done with a connection: send its last bytes, then close it gracefully.
    fn finish_close(&mut self, closed: Closed, now: Instant) {
        let Closed {
            id,
            reason,
            final_output,
        } = closed;
        if conn_of(&mut self.conns, id).is_none() {
            return;
        }
        let mut conn = self.conns.remove(id.index as usize);
        if !final_output.is_empty() {
            let _ = conn.stream.write(&final_output);
        }
        let _ = conn.stream.shutdown(Shutdown::Write);
        // Drain what the peer already sent, so closing sends FIN rather than RST (an RST could
        // make the peer's kernel drop our last line before it is read).
        while matches!(conn.stream.read(&mut self.scratch), Ok(n) if n > 0) {}
        log(format_args!("disconnect {id} ({reason})"));
        drop(conn);
        self.resume_accepting(now);
    }

    fn begin_shutdown(&mut self, now: Instant) {
        if self.signals.pending().next().is_none() || self.shutdown_at.is_some() {
            return;
        }
        log(format_args!(
            "shutting down: flushing for up to {:?}",
            self.shutdown_grace
        ));
        self.shutdown_at = Some(now + self.shutdown_grace);
        for listener in &mut self.listeners {
            let _ = self.poll.registry().deregister(listener);
        }
        self.listeners.clear();
        self.chat.handle_shutdown();
    }
}

/// The connection `id` names, unless its slot is empty or holds a newer connection.
fn conn_of(conns: &mut Slab<Conn>, id: ConnId) -> Option<&mut Conn> {
    conns
        .get_mut(id.index as usize)
        .filter(|c| c.generation == id.generation)
}

fn id_to_token(id: ConnId) -> Token {
    Token(((id.generation as usize) << 32) | id.index as usize)
}

fn token_to_id(token: usize) -> ConnId {
    ConnId {
        index: token as u32,
        generation: (token >> 32) as u32,
    }
}

fn is_out_of_descriptors(e: &io::Error) -> bool {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM: the system is short of something; retry later.
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}

fn is_peer_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    )
}

fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}
