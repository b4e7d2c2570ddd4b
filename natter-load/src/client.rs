//! Many non-blocking client connections on one `mio::Poll`, each logged in by the contract.
//!
//! A [`Pool`] owns the sockets. Each connection walks through the login that PROTOCOL.md
//! guarantees, with no knowledge of the server's exact texts:
//!
//! 1. read until the prompt `Your nickname: ` (no line end) and send `NICK\r\n`;
//! 2. wait for a `*** ` line naming NICK (the login reply); an `!!! ` line instead is an error;
//! 3. optionally send `/join ROOM`, then whisper itself `/w NICK nlsync` and wait for the echo
//!    `-> *NICK* nlsync`: the server handles a client's lines in order, so everything the join
//!    caused for this client has been sent before that echo.
//!
//! Then the pool reports [`Ev::Ready`] and hands every later line to the scenario as
//! [`Ev::Line`]. Reads go through one shared scratch buffer; per connection only an unfinished
//! line and unsent bytes are kept. Writes that the kernel refuses are queued and flushed when
//! the socket becomes writable again (edge-triggered, registered once), so nothing spins.

use crate::error::{Error, IoContext, Result};
use crate::wire::{self, LineBuf};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// Index of a connection in its pool; valid until [`Pool::remove`] is called for it.
pub type Id = usize;

/// The token every client whispers itself as a sync barrier.
pub const SYNC_TOKEN: &str = "nlsync";

/// Something that happened to one connection.
#[derive(Debug)]
pub enum Ev {
    /// Logged in (and joined, if asked) and past the sync barrier.
    Ready(Id),
    /// A line from the server after [`Ev::Ready`] (without CR LF).
    Line(Id, String),
    /// The connection is closed (by the server, or an error); call [`Pool::remove`].
    /// Carries a reason and whether the client had reached [`Ev::Ready`].
    Closed(Id, String, bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    AwaitPrompt,
    AwaitLogin,
    AwaitSync,
    Ready,
    Closed,
}

struct Conn {
    stream: TcpStream,
    nick: String,
    join: Option<String>,
    phase: Phase,
    lines: LineBuf,
    out: Vec<u8>,
    out_pos: usize,
    started: Instant,
}

/// Where the clients connect to and from.
#[derive(Debug, Clone)]
pub struct Target {
    /// The server's address (loopback).
    pub addr: SocketAddr,
    /// Bind source addresses 127.0.0.1 ..= 127.0.0.K round-robin (0 = let the kernel choose).
    pub sources: u8,
}

/// A set of client connections driven by one `mio::Poll`.
pub struct Pool {
    poll: Poll,
    events: Events,
    conns: Vec<Option<Conn>>,
    free: Vec<Id>,
    live: usize,
    scratch: Vec<u8>,
    target: Target,
    next_source: usize,
    pending: Vec<Ev>,
    last_rx: Instant,
    rx_bytes: u64,
}

impl Pool {
    /// Creates an empty pool.
    pub fn new(target: Target) -> Result<Pool> {
        Ok(Pool {
            poll: Poll::new().ctx(|| "creating the mio Poll".into())?,
            events: Events::with_capacity(1024),
            conns: Vec::new(),
            free: Vec::new(),
            live: 0,
            scratch: vec![0; 64 * 1024],
            target,
            next_source: 0,
            pending: Vec::new(),
            last_rx: Instant::now(),
            rx_bytes: 0,
        })
    }

    /// The mio registry, e.g. to register a `Waker`. Tokens from `usize::MAX` down are free.
    pub fn registry(&self) -> &mio::Registry {
        self.poll.registry()
    }

    /// Starts a connection that will log in as `nick` and, if given, `/join` `join`.
    pub fn connect(&mut self, nick: &str, join: Option<&str>) -> Result<Id> {
        let stream = self.open_socket()?;
        // Small request lines must not wait for delayed ACKs (Nagle), or latency is 40 ms.
        stream
            .set_nodelay(true)
            .ctx(|| "setting TCP_NODELAY".into())?;
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        let mut conn = Conn {
            stream,
            nick: nick.to_owned(),
            join: join.map(str::to_owned),
            phase: Phase::Connecting,
            lines: LineBuf::default(),
            out: Vec::new(),
            out_pos: 0,
            started: Instant::now(),
        };
        self.poll
            .registry()
            .register(
                &mut conn.stream,
                Token(id),
                Interest::READABLE | Interest::WRITABLE,
            )
            .ctx(|| "registering a socket with epoll".into())?;
        self.conns[id] = Some(conn);
        self.live += 1;
        Ok(id)
    }

    fn open_socket(&mut self) -> Result<TcpStream> {
        let addr = self.target.addr;
        if self.target.sources == 0 {
            return TcpStream::connect(addr).map_err(|e| connect_error(addr, None, e));
        }
        let n = self.next_source % usize::from(self.target.sources);
        self.next_source = self.next_source.wrapping_add(1);
        let src = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + n as u8)), 0);
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .ctx(|| "creating a socket".into())?;
        sock.set_nonblocking(true)
            .ctx(|| "making a socket non-blocking".into())?;
        sock.bind(&src.into())
            .map_err(|e| connect_error(addr, Some(src), e))?;
        match sock.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(115) || e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(connect_error(addr, Some(src), e)),
        }
        Ok(TcpStream::from_std(std::net::TcpStream::from(sock)))
    }

    /// Queues `bytes` for connection `id` and writes as much as the kernel takes now.
    pub fn send(&mut self, id: Id, bytes: &[u8]) {
        let Some(conn) = self.conns.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        if conn.phase == Phase::Closed {
            return;
        }
        conn.out.extend_from_slice(bytes);
        if conn.phase != Phase::Connecting
            && let Err(e) = flush(conn)
        {
            self.close(id, format!("write failed: {e}"));
        }
    }

    /// The nickname of `id` (empty if removed).
    pub fn nick(&self, id: Id) -> &str {
        self.conns
            .get(id)
            .and_then(Option::as_ref)
            .map_or("", |c| c.nick.as_str())
    }

    /// Time since `connect` was called for `id`.
    pub fn age(&self, id: Id) -> Duration {
        self.conns
            .get(id)
            .and_then(Option::as_ref)
            .map_or(Duration::ZERO, |c| c.started.elapsed())
    }

    /// Closes and forgets `id`; its slot may be reused by a later `connect`.
    pub fn remove(&mut self, id: Id) {
        if let Some(mut conn) = self.conns.get_mut(id).and_then(Option::take) {
            // Deregistering can only fail if the fd is already gone; closing it follows anyway.
            let _ = self.poll.registry().deregister(&mut conn.stream);
            self.free.push(id);
            self.live -= 1;
        }
    }

    /// Number of connections not yet removed.
    pub fn live(&self) -> usize {
        self.live
    }

    /// How many live connections are in each phase, for timeout messages.
    pub fn phases(&self) -> String {
        let mut n = [0usize; 6];
        for c in self.conns.iter().flatten() {
            n[c.phase as usize] += 1;
        }
        format!(
            "{} connecting, {} awaiting the prompt, {} awaiting the login reply, \
             {} awaiting the sync echo, {} ready, {} closed",
            n[0], n[1], n[2], n[3], n[4], n[5]
        )
    }

    /// Live connections that are connected but have not seen the prompt yet.
    pub fn awaiting_prompt(&self) -> usize {
        self.conns
            .iter()
            .flatten()
            .filter(|c| c.phase == Phase::AwaitPrompt)
            .count()
    }

    /// When the last byte arrived on any connection.
    pub fn last_rx(&self) -> Instant {
        self.last_rx
    }

    /// Bytes received so far on all connections.
    pub fn rx_bytes(&self) -> u64 {
        self.rx_bytes
    }

    /// Waits up to `timeout` for socket events and handles them; the resulting [`Ev`]s are
    /// appended to `out`. Returns the tokens of events that are not connections (e.g. a Waker).
    pub fn poll(&mut self, timeout: Duration, out: &mut Vec<Ev>) -> Result<Vec<Token>> {
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(Vec::new()),
            Err(e) => return Err(e).ctx(|| "waiting in epoll".into()),
        }
        let mut foreign = Vec::new();
        let ready: Vec<(Id, bool, bool)> = self
            .events
            .iter()
            .map(|e| {
                (
                    e.token().0,
                    e.is_readable() || e.is_read_closed(),
                    e.is_writable(),
                )
            })
            .collect();
        for (id, readable, writable) in ready {
            if id >= self.conns.len() {
                foreign.push(Token(id));
                continue;
            }
            self.handle(id, readable, writable);
        }
        out.append(&mut self.pending);
        Ok(foreign)
    }

    fn handle(&mut self, id: Id, readable: bool, writable: bool) {
        let Some(conn) = self.conns[id].as_mut() else {
            return;
        };
        if conn.phase == Phase::Closed {
            return;
        }
        if conn.phase == Phase::Connecting {
            match conn.stream.take_error() {
                Ok(Some(e)) | Err(e) => {
                    let msg = format!("connect to {} failed: {e}", self.target.addr);
                    return self.close(id, msg);
                }
                Ok(None) => {}
            }
            match conn.stream.peer_addr() {
                Ok(_) => conn.phase = Phase::AwaitPrompt,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => {
                    let msg = format!("connect to {} failed: {e}", self.target.addr);
                    return self.close(id, msg);
                }
            }
        }
        if writable && let Err(e) = flush(conn) {
            return self.close(id, format!("write failed: {e}"));
        }
        if readable {
            self.read_all(id);
        }
    }

    fn read_all(&mut self, id: Id) {
        loop {
            let Some(conn) = self.conns[id].as_mut() else {
                return;
            };
            if conn.phase == Phase::Closed {
                return;
            }
            let n = match conn.stream.read(&mut self.scratch) {
                Ok(0) => return self.close(id, "server closed the connection".into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.close(id, format!("read failed: {e}")),
            };
            self.last_rx = Instant::now();
            self.rx_bytes += n as u64;
            let mut lines = Vec::new();
            let fed = conn.lines.feed(&self.scratch[..n], |l| {
                lines.push(String::from_utf8_lossy(l).into_owned())
            });
            if fed.is_err() {
                return self.close(id, "server sent a line longer than 64 KiB".into());
            }
            for line in lines {
                self.on_line(id, line);
            }
            let Some(conn) = self.conns[id].as_mut() else {
                return;
            };
            if conn.phase == Phase::AwaitPrompt && conn.lines.at_prompt() {
                conn.lines.clear();
                conn.phase = Phase::AwaitLogin;
                let nick = format!("{}\r\n", conn.nick);
                self.send(id, nick.as_bytes());
            }
        }
    }

    fn on_line(&mut self, id: Id, line: String) {
        let Some(conn) = self.conns[id].as_mut() else {
            return;
        };
        match conn.phase {
            Phase::Ready => self.pending.push(Ev::Line(id, line)),
            Phase::AwaitLogin | Phase::AwaitSync if line.starts_with("!!! ") => {
                let msg = format!("{} was refused: {line}", conn.nick);
                self.close(id, msg);
            }
            Phase::AwaitLogin if wire::notice_names(&line, &conn.nick) => {
                conn.phase = Phase::AwaitSync;
                let mut req = String::new();
                if let Some(room) = &conn.join {
                    req.push_str(&format!("/join {room}\r\n"));
                }
                req.push_str(&wire::barrier_request(&conn.nick, SYNC_TOKEN));
                self.send(id, req.as_bytes());
            }
            Phase::AwaitSync if wire::is_barrier_echo(&line, &conn.nick, SYNC_TOKEN) => {
                conn.phase = Phase::Ready;
                self.pending.push(Ev::Ready(id));
            }
            // Banner, notices about others before we are ready: not the scenario's business.
            _ => {}
        }
    }

    fn close(&mut self, id: Id, reason: String) {
        if let Some(conn) = self.conns[id].as_mut()
            && conn.phase != Phase::Closed
        {
            let was_ready = conn.phase == Phase::Ready;
            conn.phase = Phase::Closed;
            conn.out = Vec::new();
            conn.out_pos = 0;
            self.pending.push(Ev::Closed(id, reason, was_ready));
        }
    }
}

/// Writes queued bytes until done or the kernel refuses more.
fn flush(conn: &mut Conn) -> io::Result<()> {
    while conn.out_pos < conn.out.len() {
        match conn.stream.write(&conn.out[conn.out_pos..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => conn.out_pos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if conn.out_pos == conn.out.len() {
        conn.out_pos = 0;
        if conn.out.capacity() > 4096 {
            conn.out = Vec::new();
        } else {
            conn.out.clear();
        }
    }
    Ok(())
}

fn connect_error(addr: SocketAddr, src: Option<SocketAddr>, e: io::Error) -> Error {
    let from = src.map(|s| format!(" from {}", s.ip())).unwrap_or_default();
    let hint = match e.raw_os_error() {
        Some(99) => " (out of local ports: use --sources 8, or wait for TIME_WAIT to clear)",
        Some(24) => " (too many open files: raise `ulimit -n` or use fewer clients per process)",
        _ => "",
    };
    Error::Io {
        context: format!("connecting to {addr}{from}{hint}"),
        source: e,
    }
}
