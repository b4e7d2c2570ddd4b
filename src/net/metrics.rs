//! Counters: the SIGUSR1 log line and `--metrics-listen` (Prometheus text over HTTP).
//!
//! The core owns the counters (they carry over an upgrade); the loop copies them into a
//! `Counters` when one is needed: for a SIGUSR1 line (`log!(Level::Info, "{counters}")`) or
//! for a metrics event.
//!
//! # The metrics listener in the loop
//! `MetricsListener` uses the `TOKENS` tokens from the one the loop gives it. For an event
//! whose token it `owns`(MetricsListener::owns), the loop calls
//! `handle_event`(MetricsListener::handle_event); it folds
//! `next_deadline`(MetricsListener::next_deadline) into its poll timeout and calls
//! `handle_timeout`(MetricsListener::handle_timeout) when that passes. Every request (whatever
//! its method or path) is read up to the blank line that ends its headers (at most 8 KiB; the
//! peer closing its side also ends it) and answered with the counters, then the connection is
//! closed. At most `MAX_EXCHANGES` connections are served at once (more are closed at once),
//! each for at most 5 seconds.

use super::listener::{is_transient_accept_error, listen};
use crate::net::log::{Level, log};
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use slab::Slab;
use std::fmt::{self, Write as _};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};
use thiserror::Error;

/// The counters the metrics and the SIGUSR1 line report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    /// Connections at the nickname prompt.
    pub(crate) at_prompt: u64,
    /// Logged-in users.
    pub(crate) logged_in: u64,
    /// Open client connections (at the prompt, logged in, or being closed).
    pub(crate) connections: u64,
    /// Rooms.
    pub(crate) rooms: u64,
    /// Input lines received.
    pub(crate) lines_received: u64,
    /// Lines delivered to clients (one per recipient).
    pub(crate) lines_delivered: u64,
    /// Bytes read from clients.
    pub(crate) bytes_in: u64,
    /// Bytes written to clients.
    pub(crate) bytes_out: u64,
    /// Connections refused by `--max-clients`.
    pub(crate) refused_server_full: u64,
    /// Connections refused by `--max-per-ip`.
    pub(crate) refused_per_address: u64,
    /// Clients disconnected because their unsent output passed `--sendq`.
    pub(crate) dropped_too_slow: u64,
    /// Seconds since the server first started (upgrades included).
    pub(crate) uptime_seconds: u64,
    /// Upgrades this server went through.
    pub(crate) upgrades: u64,
    /// Log lines dropped because stderr could not take them.
    pub(crate) log_lines_dropped: u64,
}

impl fmt::Display for Counters {
    /// The SIGUSR1 log line: `counters: at_prompt=.. logged_in=.. ... uptime=..s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "counters: at_prompt={} logged_in={} rooms={} lines_in={} lines_out={} bytes_in={} \
             bytes_out={} refused_full={} refused_per_ip={} uptime={}s",
            self.at_prompt,
            self.logged_in,
            self.rooms,
            self.lines_received,
            self.lines_delivered,
            self.bytes_in,
            self.bytes_out,
            self.refused_server_full,
            self.refused_per_address,
            self.uptime_seconds
        )
    }
}

/// One sample of a family: its label set (`{limit="max_clients"}` or empty) and its value.
type Sample = (&'static str, fn(&Counters) -> u64);

/// One metric family: its name, type, help and samples.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: &'static [Sample],
}

const FAMILIES: &[Family] = &[
    Family {
        name: "natter_connections",
        kind: "gauge",
        help: "Open client connections.",
        samples: &[("", |c| c.connections)],
    },
    Family {
        name: "natter_users_at_prompt",
        kind: "gauge",
        help: "Connections at the nickname prompt.",
        samples: &[("", |c| c.at_prompt)],
    },
    Family {
        name: "natter_users_logged_in",
        kind: "gauge",
        help: "Logged-in users.",
        samples: &[("", |c| c.logged_in)],
    },
    Family {
        name: "natter_rooms",
        kind: "gauge",
        help: "Rooms.",
        samples: &[("", |c| c.rooms)],
    },
    Family {
        name: "natter_lines_received_total",
        kind: "counter",
        help: "Input lines received from clients.",
        samples: &[("", |c| c.lines_received)],
    },
    Family {
        name: "natter_lines_delivered_total",
        kind: "counter",
        help: "Lines delivered to clients, one per recipient.",
        samples: &[("", |c| c.lines_delivered)],
    },
    Family {
        name: "natter_received_bytes_total",
        kind: "counter",
        help: "Bytes read from clients.",
        samples: &[("", |c| c.bytes_in)],
    },
    Family {
        name: "natter_sent_bytes_total",
        kind: "counter",
        help: "Bytes written to clients.",
        samples: &[("", |c| c.bytes_out)],
    },
    Family {
        name: "natter_connections_refused_total",
        kind: "counter",
        help: "Connections refused by a limit.",
        samples: &[
            ("{limit=\"max_clients\"}", |c| c.refused_server_full),
            ("{limit=\"max_per_ip\"}", |c| c.refused_per_address),
        ],
    },
    Family {
        name: "natter_disconnects_too_slow_total",
        kind: "counter",
        help: "Clients disconnected because their unsent output passed --sendq.",
        samples: &[("", |c| c.dropped_too_slow)],
    },
    Family {
        name: "natter_uptime_seconds",
        kind: "gauge",
        help: "Seconds since the server first started, upgrades included.",
        samples: &[("", |c| c.uptime_seconds)],
    },
    Family {
        name: "natter_upgrades_total",
        kind: "counter",
        help: "Upgrades (SIGUSR2) completed.",
        samples: &[("", |c| c.upgrades)],
    },
    Family {
        name: "natter_log_lines_dropped_total",
        kind: "counter",
        help: "Log lines dropped because stderr could not take them.",
        samples: &[("", |c| c.log_lines_dropped)],
    },
];

impl Counters {
    /// The counters in the Prometheus text format (version 0.0.4).
    pub(crate) fn prometheus_text(&self) -> String {
        let mut out = String::with_capacity(2048);
        for family in FAMILIES {
            let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
            let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind);
            for (labels, value) in family.samples {
                let _ = writeln!(out, "{}{labels} {}", family.name, value(self));
            }
        }
        out
    }
}

/// Connections served at once; more are closed as soon as they are accepted.
pub(crate) const MAX_EXCHANGES: usize = 8;
/// Tokens a [`MetricsListener`] uses, from the first one it is given.
pub(crate) const TOKENS: usize = 1 + MAX_EXCHANGES;
/// Accept queue length: a scraper or two, not a crowd.
const BACKLOG: i32 = 64;
/// Longest request read (the request line and headers).
const MAX_REQUEST: usize = 8 * 1024;
/// How long a connection may take to send its request and read the answer.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the metrics listener could not start.
#[derive(Debug, Error)]
pub enum MetricsError {
    /// The `--metrics-listen` address could not be bound.
    #[error("cannot listen for metrics on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The listener could not be registered with the poll.
    #[error("cannot watch the metrics listener: {0}")]
    Register(io::Error),
}

/// The `--metrics-listen` socket and the requests it is serving.
pub(crate) struct MetricsListener {
    listener: TcpListener,
    first: Token,
    exchanges: Slab<Exchange>,
}

/// One request and its answer.
struct Exchange {
    stream: TcpStream,
    deadline: Instant,
    request: Vec<u8>,
    /// The answer once the request is complete, and how much of it is written.
    response: Option<(Vec<u8>, usize)>,
}

/// What an exchange needs next.
enum Next {
    Wait,
    Close,
}

/// Where reading a request stands.
enum Request {
    /// More may come.
    Incomplete,
    /// Headers ended, the limit was reached, or the peer closed its side after sending some.
    Complete,
    /// The peer left without a request, or the socket failed: close without an answer.
    Gone,
}

impl MetricsListener {
    /// Binds `addr` and registers it under `first` (tokens `first..first + TOKENS` are used).
    pub(crate) fn bind(
        addr: SocketAddr,
        registry: &Registry,
        first: Token,
    ) -> Result<MetricsListener, MetricsError> {
        let listener =
            listen(addr, BACKLOG).map_err(|source| MetricsError::Bind { addr, source })?;
        MetricsListener::register(listener, registry, first)
    }

    /// Takes over a bound listener (one handed over by an upgrade).
    pub(crate) fn from_std(
        listener: std::net::TcpListener,
        registry: &Registry,
        first: Token,
    ) -> Result<MetricsListener, MetricsError> {
        listener
            .set_nonblocking(true)
            .map_err(MetricsError::Register)?;
        MetricsListener::register(TcpListener::from_std(listener), registry, first)
    }

    fn register(
        mut listener: TcpListener,
        registry: &Registry,
        first: Token,
    ) -> Result<MetricsListener, MetricsError> {
        registry
            .register(&mut listener, first, Interest::READABLE)
            .map_err(MetricsError::Register)?;
        Ok(MetricsListener {
            listener,
            first,
            exchanges: Slab::with_capacity(MAX_EXCHANGES),
        })
    }

    /// The address bound (useful with port 0).
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Whether `token` is one of this listener's.
    pub(crate) fn owns(&self, token: Token) -> bool {
        (self.first.0..self.first.0 + TOKENS).contains(&token.0)
    }

    /// Handles readiness of one of this listener's tokens.
    pub(crate) fn handle_event(
        &mut self,
        registry: &Registry,
        token: Token,
        now: Instant,
        counters: &Counters,
    ) {
        if token == self.first {
            self.accept(registry, now, counters);
        } else if let Some(key) = token.0.checked_sub(self.first.0 + 1) {
            self.advance(key, counters);
        }
    }

    /// When the oldest connection times out; `None` with none open.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.exchanges.iter().map(|(_, e)| e.deadline).min()
    }

    /// Closes the connections whose time is up.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.exchanges.retain(|_, e| e.deadline > now);
    }

    fn accept(&mut self, registry: &Registry, now: Instant, counters: &Counters) {
        loop {
            let (mut stream, peer) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if is_transient_accept_error(&e) => continue,
                Err(e) => {
                    log!(Level::Warn, "metrics: accept failed: {e}");
                    return;
                }
            };
            if self.exchanges.len() >= MAX_EXCHANGES {
                log!(Level::Debug, "metrics: busy, closed connection from {peer}");
                continue;
            }
            let entry = self.exchanges.vacant_entry();
            let token = Token(self.first.0 + 1 + entry.key());
            let interest = Interest::READABLE | Interest::WRITABLE;
            if let Err(e) = registry.register(&mut stream, token, interest) {
                log!(
                    Level::Warn,
                    "metrics: cannot watch connection from {peer}: {e}"
                );
                continue;
            }
            let key = entry.key();
            entry.insert(Exchange {
                stream,
                deadline: now + EXCHANGE_TIMEOUT,
                request: Vec::new(),
                response: None,
            });
            // Its request may be here already.
            self.advance(key, counters);
        }
    }

    /// Reads, answers or closes exchange `key`, as far as the socket allows.
    fn advance(&mut self, key: usize, counters: &Counters) {
        let Some(exchange) = self.exchanges.get_mut(key) else {
            return;
        };
        if let Next::Close = exchange.advance(counters) {
            self.exchanges.remove(key);
        }
    }
}

impl AsFd for MetricsListener {
    /// The listening socket, for an upgrade's hand-over.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }
}

impl Exchange {
    fn advance(&mut self, counters: &Counters) -> Next {
        if self.response.is_none() {
            match self.read_request() {
                Request::Incomplete => return Next::Wait,
                Request::Complete => {
                    self.response = Some((respond(&self.request, counters), 0));
                }
                Request::Gone => return Next::Close,
            }
        }
        self.write_response()
    }

    /// Reads until the request is complete or the socket has nothing more for now.
    fn read_request(&mut self) -> Request {
        let mut chunk = [0; 2048];
        loop {
            let room = (MAX_REQUEST - self.request.len()).min(chunk.len());
            match self.stream.read(&mut chunk[..room]) {
                Ok(0) if self.request.is_empty() => return Request::Gone,
                Ok(0) => return Request::Complete,
                Ok(n) => {
                    self.request.extend_from_slice(&chunk[..n]);
                    if self.request.len() >= MAX_REQUEST || headers_end(&self.request) {
                        return Request::Complete;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Request::Incomplete,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Request::Gone,
            }
        }
    }

    fn write_response(&mut self) -> Next {
        let Some((response, written)) = &mut self.response else {
            return Next::Wait;
        };
        while *written < response.len() {
            match self.stream.write(&response[*written..]) {
                Ok(0) => return Next::Close,
                Ok(n) => *written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Wait,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Next::Close,
            }
        }
        // Answered. Drain what the peer sent beyond the headers, so closing sends FIN rather
        // than a reset that could lose the answer before the peer reads it.
        let _ = self.stream.shutdown(Shutdown::Write);
        let mut sink = [0; 2048];
        while matches!(self.stream.read(&mut sink), Ok(n) if n > 0) {}
        Next::Close
    }
}

/// Whether `request` holds the blank line that ends HTTP headers.
fn headers_end(request: &[u8]) -> bool {
    request.windows(4).any(|w| w == b"\r\n\r\n") || request.windows(2).any(|w| w == b"\n\n")
}

/// The HTTP answer to any request: the counters, without the body for `HEAD`.
fn respond(request: &[u8], counters: &Counters) -> Vec<u8> {
    let body = counters.prometheus_text();
    let mut response = format!(
        "HTTP/1.1 200 OK\r\n\
         Content-Type: text/plain; version=0.0.4\r\n\
         Content-Length: {}\r\n\
         Connection: close\r\n\
         \r\n",
        body.len()
    );
    if !request.starts_with(b"HEAD ") {
        response.push_str(&body);
    }
    response.into_bytes()
}

#[cfg(test)]
mod tests;
