//! The counters' texts, and the metrics listener in a small mio loop with real loopback clients.

use super::*;
use mio::{Events, Poll};
use std::net::TcpStream as Client;
use std::process::{Command, Stdio};

const DEADLINE: Duration = Duration::from_secs(10);

fn sample() -> Counters {
    Counters {
        at_prompt: 2,
        logged_in: 7,
        connections: 9,
        rooms: 3,
        lines_received: 100,
        lines_delivered: 650,
        bytes_in: 4000,
        bytes_out: 52000,
        refused_server_full: 4,
        refused_per_address: 5,
        dropped_too_slow: 1,
        uptime_seconds: 3600,
        upgrades: 2,
        log_lines_dropped: 6,
    }
}

#[test]
fn the_counters_line_names_every_counter_it_reports() {
    let _fds = crate::net::test_fds::opening();
    assert_eq!(
        sample().to_string(),
        "counters: at_prompt=2 logged_in=7 rooms=3 lines_in=100 lines_out=650 bytes_in=4000 \
         bytes_out=52000 refused_full=4 refused_per_ip=5 uptime=3600s"
    );
}

#[test]
fn prometheus_text_has_help_type_and_samples() {
    let _fds = crate::net::test_fds::opening();
    let text = sample().prometheus_text();
    let expected = "\
# HELP natter_connections Open client connections.
# TYPE natter_connections gauge
natter_connections 9
# HELP natter_users_at_prompt Connections at the nickname prompt.
# TYPE natter_users_at_prompt gauge
natter_users_at_prompt 2
# HELP natter_users_logged_in Logged-in users.
# TYPE natter_users_logged_in gauge
natter_users_logged_in 7
# HELP natter_rooms Rooms.
# TYPE natter_rooms gauge
natter_rooms 3
# HELP natter_lines_received_total Input lines received from clients.
# TYPE natter_lines_received_total counter
natter_lines_received_total 100
# HELP natter_lines_delivered_total Lines delivered to clients, one per recipient.
# TYPE natter_lines_delivered_total counter
natter_lines_delivered_total 650
# HELP natter_received_bytes_total Bytes read from clients.
# TYPE natter_received_bytes_total counter
natter_received_bytes_total 4000
# HELP natter_sent_bytes_total Bytes written to clients.
# TYPE natter_sent_bytes_total counter
natter_sent_bytes_total 52000
# HELP natter_connections_refused_total Connections refused by a limit.
# TYPE natter_connections_refused_total counter
natter_connections_refused_total{limit=\"max_clients\"} 4
natter_connections_refused_total{limit=\"max_per_ip\"} 5
# HELP natter_disconnects_too_slow_total Clients disconnected because their unsent output passed --sendq.
# TYPE natter_disconnects_too_slow_total counter
natter_disconnects_too_slow_total 1
# HELP natter_uptime_seconds Seconds since the server first started, upgrades included.
# TYPE natter_uptime_seconds gauge
natter_uptime_seconds 3600
# HELP natter_upgrades_total Upgrades (SIGUSR2) completed.
# TYPE natter_upgrades_total counter
natter_upgrades_total 2
# HELP natter_log_lines_dropped_total Log lines dropped because stderr could not take them.
# TYPE natter_log_lines_dropped_total counter
natter_log_lines_dropped_total 6
";
    assert_eq!(text, expected);
}

/// A metrics listener on 127.0.0.1 driven by a small mio loop, as the server drives it.
struct Loop {
    poll: Poll,
    events: Events,
    metrics: MetricsListener,
    counters: Counters,
}

impl Loop {
    fn new() -> Loop {
        let poll = Poll::new().unwrap();
        let addr = "127.0.0.1:0".parse().unwrap();
        let metrics = MetricsListener::bind(addr, poll.registry(), Token(100)).unwrap();
        Loop {
            poll,
            events: Events::with_capacity(64),
            metrics,
            counters: sample(),
        }
    }

    fn connect(&self) -> Peer {
        let stream = Client::connect(self.metrics.local_addr().unwrap()).unwrap();
        stream.set_nonblocking(true).unwrap();
        Peer {
            stream,
            received: Vec::new(),
            closed: false,
        }
    }

    /// One loop turn: waits briefly for events and hands the metrics' ones over.
    fn turn(&mut self) {
        let timeout = Some(Duration::from_millis(20));
        self.poll.poll(&mut self.events, timeout).unwrap();
        let now = Instant::now();
        for event in self.events.iter() {
            assert!(self.metrics.owns(event.token()));
            let registry = self.poll.registry();
            self.metrics
                .handle_event(registry, event.token(), now, &self.counters);
        }
    }

    /// Runs turns until `done` holds; panics at the deadline.
    fn until(&mut self, what: &str, mut done: impl FnMut(&mut Loop) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !done(self) {
            assert!(Instant::now() < deadline, "not by the deadline: {what}");
            self.turn();
        }
    }

    /// Request bytes buffered by the listener, over all its connections.
    fn buffered(&self) -> usize {
        self.metrics
            .exchanges
            .iter()
            .map(|(_, e)| e.request.len())
            .sum()
    }
}

/// A client connection, read without blocking.
struct Peer {
    stream: Client,
    received: Vec<u8>,
    closed: bool,
}

impl Peer {
    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads what has arrived; true once the server closed the connection.
    fn pump(&mut self) -> bool {
        let mut buf = [0; 4096];
        while !self.closed {
            match self.stream.read(&mut buf) {
                Ok(0) => self.closed = true,
                Ok(n) => self.received.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("connection failed: {e}"),
            }
        }
        self.closed
    }

    fn text(&self) -> &str {
        std::str::from_utf8(&self.received).unwrap()
    }
}

/// Checks a complete answer: status, headers, and a body of the counters (or none for HEAD).
fn check_response(text: &str, counters: &Counters, with_body: bool) {
    let body = counters.prometheus_text();
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let expected = if with_body { head + &body } else { head };
    assert_eq!(text, expected);
}

#[test]
fn a_request_gets_the_counters_then_the_connection_closes() {
    let _fds = crate::net::test_fds::opening();
    let mut l = Loop::new();
    let mut peer = l.connect();
    peer.send(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n");
    l.until("answer and close", |_| peer.pump());
    check_response(peer.text(), &sample(), true);
    assert!(peer.text().contains("\nnatter_users_logged_in 7\n"));
    assert!(peer.text().contains("\nnatter_connections 9\n"));
    assert!(l.metrics.exchanges.is_empty());
    assert_eq!(l.metrics.next_deadline(), None);
}

#[test]
fn curl_reads_the_metrics() {
    let _fds = crate::net::test_fds::opening();
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("curl is not installed: skipped");
        return;
    }
    let mut l = Loop::new();
    let url = format!("http://{}/metrics", l.metrics.local_addr().unwrap());
    let mut curl = Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--include",
            "--max-time",
            "10",
            &url,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    l.until("curl exits", |_| curl.try_wait().unwrap().is_some());
    let out = curl.wait_with_output().unwrap();
    assert!(out.status.success());
    check_response(&String::from_utf8(out.stdout).unwrap(), &sample(), true);
}

#[test]
fn a_request_in_pieces_is_answered_after_its_blank_line() {
    let _fds = crate::net::test_fds::opening();
    let mut l = Loop::new();
    let mut peer = l.connect();
    let pieces: [&[u8]; 4] = [b"GET / HT", b"TP/1.0\r\n", b"Host: a\r\n", b"\r"];
    let mut sent = 0;
    for piece in pieces {
        peer.send(piece);
        sent += piece.len();
        l.until("the piece is read", |l| l.buffered() == sent);
        assert!(!peer.pump(), "closed early");
        assert!(peer.received.is_empty(), "answered before the blank line");
    }
    peer.send(b"\n");
    l.until("answer and close", |_| peer.pump());
    check_response(peer.text(), &sample(), true);
}

#[test]
fn bare_line_feeds_and_the_peer_closing_its_side_end_a_request() {
    let _fds = crate::net::test_fds::opening();
    let mut l = Loop::new();
    let mut lf = l.connect();
    lf.send(b"GET /\nHost: a\n\n");
    let mut half = l.connect();
    half.send(b"GET /");
    half.stream.shutdown(Shutdown::Write).unwrap();
    l.until("both answered", |_| lf.pump() & half.pump());
    check_response(lf.text(), &sample(), true);
    check_response(half.text(), &sample(), true);
}

#[test]
fn head_gets_the_headers_only() {
    let _fds = crate::net::test_fds::opening();
    let mut l = Loop::new();
    let mut peer = l.connect();
    peer.send(b"HEAD /metrics HTTP/1.1\r\n\r\n");
    l.until("answer and close", |_| peer.pump());
    check_response(peer.text(), &sample(), false);
}

#[test]
fn an_overlong_request_is_answered_after_8_kib() {
    let _fds = crate::net::test_fds::opening();
    let mut l = Loop::new();
    let mut peer = l.connect();
    peer.send(b"GET /");
    peer.send(&[b'a'; 10 * 1024]);
    l.until("answer and close", |_| peer.pump());
    check_response(peer.text(), &sample(), true);
}

#[test]
fn connections_beyond_the_bound_are_closed_at_once() {
    let _fds = crate::net::test_fds::opening();
    let mut l = Loop::new();
    let mut peers: Vec<Peer> = (0..MAX_EXCHANGES + 3).map(|_| l.connect()).collect();
    l.until("the extra connections are closed", |l| {
        l.metrics.exchanges.len() == MAX_EXCHANGES
            && peers[MAX_EXCHANGES..].iter_mut().all(Peer::pump)
    });
    for peer in &mut peers[MAX_EXCHANGES..] {
        assert!(peer.received.is_empty());
    }
    for peer in &mut peers[..MAX_EXCHANGES] {
        assert!(!peer.pump(), "a connection within the bound was closed");
        peer.send(b"GET / HTTP/1.1\r\n\r\n");
    }
    l.until("all answered", |_| {
        peers[..MAX_EXCHANGES].iter_mut().all(Peer::pump)
    });
    for peer in &peers[..MAX_EXCHANGES] {
        check_response(peer.text(), &sample(), true);
    }
    assert!(l.metrics.exchanges.is_empty());
}

#[test]
fn a_silent_connection_is_closed_at_its_deadline() {
    let _fds = crate::net::test_fds::opening();
    let mut l = Loop::new();
    let before = Instant::now();
    let mut peer = l.connect();
    l.until("accepted", |l| l.metrics.exchanges.len() == 1);
    let deadline = l.metrics.next_deadline().unwrap();
    assert!(deadline >= before + EXCHANGE_TIMEOUT);
    assert!(deadline <= Instant::now() + EXCHANGE_TIMEOUT);

    l.metrics
        .handle_timeout(deadline - Duration::from_millis(1));
    assert_eq!(l.metrics.exchanges.len(), 1);
    l.metrics.handle_timeout(deadline);
    assert!(l.metrics.exchanges.is_empty());
    assert_eq!(l.metrics.next_deadline(), None);
    l.until("closed", |_| peer.pump());
    assert!(peer.received.is_empty());
}

#[test]
fn binding_a_taken_address_names_it() {
    let _fds = crate::net::test_fds::opening();
    let l = Loop::new();
    let addr = l.metrics.local_addr().unwrap();
    let poll = Poll::new().unwrap();
    let err = MetricsListener::bind(addr, poll.registry(), Token(0))
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .starts_with(&format!("cannot listen for metrics on {addr}: ")),
        "{err}"
    );
}
