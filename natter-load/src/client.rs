//! Many non-blocking client connections on one `mio::Poll`, each brought to its goal by a
//! [`Login`] (natter's login or IRC registration, see `login.rs`).
//!
//! A [`Pool`] owns the sockets and feeds each connection's [`Login`]; once it is ready, every
//! later line goes to the scenario as [`Ev::Line`]. Reads go through one shared scratch
//! buffer; per connection only an unfinished line and unsent bytes are kept. Writes that the
//! kernel refuses are queued and flushed when the socket becomes writable again
//! (edge-triggered, registered once), so nothing spins.

use crate::dialect::Dialect;
use crate::error::{Error, IoContext, Result};
use crate::login::{Goal, Login, Phase, Step};
use crate::wire::LineBuf;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// Index of a connection in its pool; valid until [`Pool::remove`] is called for it.
pub type Id = usize;

/// Something that happened to one connection.
#[derive(Debug)]
pub enum Ev {
    /// Reached its goal: at the prompt, or logged in (and joined, if asked) and past the sync
    /// barrier.
    Ready(Id),
    /// A line from the server after [`Ev::Ready`] (without CR LF).
    Line(Id, String),
    /// The connection is closed (by the server, or an error); call [`Pool::remove`].
    /// Carries a reason and whether the client had reached [`Ev::Ready`].
    Closed(Id, String, bool),
}

struct Conn {
    stream: TcpStream,
    node: usize,
    login: Login,
    closed: bool,
    lines: LineBuf,
    out: Vec<u8>,
    out_pos: usize,
    started: Instant,
}

/// Where the clients connect to and from.
#[derive(Debug, Clone)]
pub struct Target {
    /// The servers' addresses (loopback); a client connects to the one its node index names.
    pub addrs: Vec<SocketAddr>,
    /// Bind source addresses 127.0.0.1 ..= 127.0.0.K round-robin (0 = let the kernel choose).
    pub sources: u8,
    /// The protocol the clients speak.
    pub dialect: Dialect,
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

    /// The dialect the clients speak.
    pub fn dialect(&self) -> Dialect {
        self.target.dialect
    }

    /// The mio registry, e.g. to register a `Waker`. Tokens from `usize::MAX` down are free.
    pub fn registry(&self) -> &mio::Registry {
        self.poll.registry()
    }

    /// Starts a connection to node `node` (an index into the target's addresses, taken modulo
    /// their number) that will go as far as `goal` as `nick`.
    pub fn connect(&mut self, nick: &str, goal: Goal, node: usize) -> Result<Id> {
        let node = node % self.target.addrs.len();
        let stream = self.open_socket(self.target.addrs[node])?;
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
            node,
            login: Login::new(self.target.dialect, nick, goal),
            closed: false,
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

    fn open_socket(&mut self, addr: SocketAddr) -> Result<TcpStream> {
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
        if conn.closed {
            return;
        }
        conn.out.extend_from_slice(bytes);
        if conn.login.phase() != Phase::Connecting
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
            .map_or("", |c| c.login.nick())
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
            let i = if c.closed {
                5
            } else {
                c.login.phase() as usize
            };
            n[i] += 1;
        }
        format!(
            "{} connecting, {} awaiting the prompt, {} awaiting the login reply, \
             {} awaiting the sync reply, {} ready, {} closed",
            n[0], n[1], n[2], n[3], n[4], n[5]
        )
    }

    /// Live connections that are connected but have not seen the prompt yet.
    pub fn awaiting_prompt(&self) -> usize {
        self.conns
            .iter()
            .flatten()
            .filter(|c| !c.closed && c.login.wants_prompt())
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
        if conn.closed {
            return;
        }
        if conn.login.phase() == Phase::Connecting {
            let addr = self.target.addrs[conn.node];
            match conn.stream.take_error() {
                Ok(Some(e)) | Err(e) => {
                    return self.close(id, format!("connect to {addr} failed: {e}"));
                }
                Ok(None) => {}
            }
            match conn.stream.peer_addr() {
                Ok(_) => {
                    let step = conn.login.connected();
                    self.apply(id, step);
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => return self.close(id, format!("connect to {addr} failed: {e}")),
            }
        }
        let Some(conn) = self.conns[id].as_mut() else {
            return;
        };
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
            if conn.closed {
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
                let Some(conn) = self.conns[id].as_mut() else {
                    return;
                };
                if conn.closed {
                    return;
                }
                let step = conn.login.line(line);
                self.apply(id, step);
            }
            let Some(conn) = self.conns[id].as_mut() else {
                return;
            };
            if !conn.closed && conn.login.wants_prompt() && conn.lines.at_prompt() {
                conn.lines.clear();
                let step = conn.login.prompt();
                self.apply(id, step);
            }
        }
    }

    /// Carries out what a connection's [`Login`] asked for.
    fn apply(&mut self, id: Id, step: Step) {
        match step {
            Step::Wait => {}
            Step::Send(bytes) => self.send(id, bytes.as_bytes()),
            Step::Ready => self.pending.push(Ev::Ready(id)),
            Step::Refused(reason) => self.close(id, reason),
            Step::Deliver(line) => self.pending.push(Ev::Line(id, line)),
        }
    }

    fn close(&mut self, id: Id, reason: String) {
        if let Some(conn) = self.conns[id].as_mut()
            && !conn.closed
        {
            conn.closed = true;
            conn.out = Vec::new();
            conn.out_pos = 0;
            self.pending
                .push(Ev::Closed(id, reason, conn.login.is_ready()));
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
