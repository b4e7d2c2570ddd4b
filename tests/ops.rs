//! Operations through the real binary: the log's levels and journald prefixes, a log that
//! never blocks the server, SIGHUP re-reading the MOTD, the SIGUSR1 counters line, systemd
//! notifications on a datagram socket the test binds, and the Prometheus metrics (which carry
//! over an upgrade).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

#[test]
fn log_levels_choose_what_is_logged() {
    let quiet = Server::start_on_free_port(&["--log-level", "warn"]);
    let mut c = login(quiet.addr, "alice");
    c.send_line("/quit");
    c.expect_closed();
    // Connects and disconnects are info: none at warn. A limit hit is a warning.
    // A limit hit is a warning. (Clients from 127.0.0.2: the start-up probe came from
    // 127.0.0.1 and must not count.)
    let full = Server::start_on_free_port(&[
        "--log-level",
        "warn",
        "--max-per-ip",
        "1",
        "--limit-loopback",
    ]);
    let _first = connect_from(full.addr, [127, 0, 0, 2]);
    let mut second = connect_from(full.addr, [127, 0, 0, 2]);
    second.expect_line("!!! Too many connections from your address.");
    full.wait_for_stderr(|l| l.contains("(too many connections from address)"));
    assert_eq!(
        quiet.count_stderr(|l| l.contains("connect")),
        0,
        "{:?}",
        quiet.stderr_lines()
    );
    drop(quiet);
    drop(full);
    let info = Server::start(&[]);
    let mut c = login(info.addr, "bob");
    c.send_line("/quit");
    c.expect_closed();
    info.wait_for_stderr(|l| l.contains("disconnect #1 (quit)"));
    assert_eq!(
        info.count_stderr(|l| l.contains("read ")),
        0,
        "reads are debug"
    );
}

/// A client whose socket is bound to source address `ip` before it connects.
fn connect_from(addr: SocketAddr, ip: [u8; 4]) -> Client {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let source = SocketAddr::from((ip, 0));
    socket
        .bind(&source.into())
        .expect("bind the source address");
    socket.connect(&addr.into()).expect("connect");
    Client::from_stream(TcpStream::from(socket))
}

#[test]
fn under_systemd_each_line_carries_its_syslog_level() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_natter"));
    cmd.args(BASE_ARGS).env("JOURNAL_STREAM", "8:1234");
    let server = Server::start_command(cmd);
    let c = Client::connect(server.addr);
    drop(c);
    let line = server.wait_for_stderr(|l| l.contains("connect #1 from"));
    assert!(line.starts_with("<6>natter: "), "{line:?}");
}

/// The server's stderr is a pipe the test stops reading: the pipe fills, the server keeps
/// serving, and once the pipe is read again the log says how many lines it dropped.
#[test]
fn a_full_stderr_pipe_never_blocks_the_server() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_natter"))
        .args(BASE_ARGS)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn natter");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let addr = read_listen_line(&mut stderr);
    // Each connection logs two lines of about 60 bytes: 3,000 of them fill a 64 KiB pipe
    // nearly three times. Every one must still be served at once.
    let deadline = Instant::now() + Duration::from_secs(60);
    for _ in 0..3000 {
        let mut c = Client::connect(addr);
        c.skip_banner();
        assert!(Instant::now() < deadline, "the server slowed down");
    }
    let mut rest = Vec::new();
    let mut chunk = [0; 65536];
    // Read what is in the pipe now, then make the server log again.
    let n = stderr.get_mut().read(&mut chunk).expect("read stderr");
    rest.extend_from_slice(&chunk[..n]);
    drain_pipe_until(&mut stderr, &mut rest, addr);
    let text = String::from_utf8_lossy(&rest);
    let dropped: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("natter: log: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no drop notice in the log's tail"));
    assert!(dropped > 100, "only {dropped} lines dropped");
    let _ = child.kill();
    let _ = child.wait();
}

fn read_listen_line(stderr: &mut impl BufRead) -> SocketAddr {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).expect("read stderr") > 0,
            "no listen line"
        );
        if let Some(addr) = line.trim().rsplit("listening on ").next()
            && line.contains("listening on ")
        {
            return addr.parse().expect("address");
        }
    }
}

/// Reads stderr (now with room in the pipe), connecting once more whenever it is empty, until
/// the drop notice has been read.
fn drain_pipe_until(
    stderr: &mut BufReader<std::process::ChildStderr>,
    out: &mut Vec<u8>,
    addr: SocketAddr,
) {
    let deadline = Instant::now() + LINE_TIMEOUT;
    let mut line = String::new();
    while !String::from_utf8_lossy(out).contains("lines dropped") {
        assert!(Instant::now() < deadline, "no drop notice");
        let mut c = Client::connect(addr);
        c.skip_banner();
        drop(c);
        line.clear();
        if stderr.read_line(&mut line).expect("read stderr") == 0 {
            break;
        }
        out.extend_from_slice(line.as_bytes());
    }
}

#[test]
fn sighup_reads_the_motd_again_and_a_broken_file_keeps_the_old_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let motd = dir.path().join("motd");
    std::fs::write(&motd, "first words\n").expect("write motd");
    let server = Server::start(&["--motd", motd.to_str().expect("utf-8 path")]);
    let mut c = Client::connect(server.addr);
    c.expect_line("*** first words");
    c.expect_prompt();
    std::fs::write(&motd, "second words\nand more\n").expect("write motd");
    server.signal("HUP");
    server.wait_for_stderr(|l| l.contains("reload: read"));
    let mut c = Client::connect(server.addr);
    c.expect_lines(&["*** second words", "*** and more"]);
    c.expect_prompt();
    std::fs::remove_file(&motd).expect("remove motd");
    server.signal("HUP");
    let why = server.wait_for_stderr(|l| l.contains("keeping the previous banner"));
    assert!(why.contains("motd"), "{why:?}");
    let mut c = Client::connect(server.addr);
    c.expect_lines(&["*** second words", "*** and more"]);
}

#[test]
fn sigusr1_logs_one_line_of_counters() {
    let server = Server::start(&["--max-clients", "2"]);
    let (mut alice, _bob) = pair(&server);
    let mut refused = Client::connect(server.addr);
    refused.expect_line("!!! Server is full, try again later.");
    alice.send_line("hello");
    alice.expect_silence();
    server.signal("USR1");
    let line = server.wait_for_stderr(|l| l.contains("counters:"));
    for part in [
        "at_prompt=0",
        "logged_in=2",
        "rooms=1",
        "refused_full=1",
        "uptime=",
    ] {
        assert!(line.contains(part), "{part} missing from {line:?}");
    }
    assert!(
        line.contains("lines_in=") && line.contains("bytes_out="),
        "{line:?}"
    );
}

/// A Unix datagram socket standing in for systemd's.
struct NotifySocket {
    socket: UnixDatagram,
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl NotifySocket {
    fn bind() -> NotifySocket {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).expect("bind notify socket");
        NotifySocket {
            socket,
            _dir: dir,
            path,
        }
    }

    /// Reads datagrams until one contains `want`; returns it.
    fn expect(&self, want: &str) -> String {
        let deadline = Instant::now() + LINE_TIMEOUT;
        let mut buf = [0; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no notification with {want:?}");
            self.socket.set_read_timeout(Some(left)).expect("timeout");
            if let Ok(n) = self.socket.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                if msg.contains(want) {
                    return msg;
                }
            }
        }
    }
}

#[test]
fn systemd_hears_ready_status_mainpid_and_stopping() {
    let notify = NotifySocket::bind();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_natter"));
    cmd.args(BASE_ARGS).env("NOTIFY_SOCKET", &notify.path);
    let mut server = Server::start_command(cmd);
    let ready = notify.expect("READY=1");
    assert!(ready.contains("STATUS=0 users in 1 room"), "{ready:?}");
    let mut alice = login(server.addr, "alice");
    notify.expect("STATUS=1 user in 1 room");
    let new_pid = server.upgrade();
    notify.expect(&format!("MAINPID={new_pid}"));
    alice.expect_line("*** Server upgraded.");
    server.terminate();
    notify.expect("STOPPING=1");
    alice.expect_line("*** Server is shutting down.");
}

/// Sends one HTTP request and returns the whole response.
fn http_get(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to metrics");
    s.set_read_timeout(Some(LINE_TIMEOUT)).expect("timeout");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("request");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("response");
    response
}

fn metric(response: &str, name: &str) -> u64 {
    response
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {response}"))
}

#[test]
fn metrics_answer_in_prometheus_text_and_carry_over_an_upgrade() {
    let mut server = Server::start(&["--metrics-listen", "127.0.0.1:0"]);
    let line = server.wait_for_stderr(|l| l.contains("metrics on http://"));
    let addr: SocketAddr = line
        .rsplit("http://")
        .next()
        .and_then(|a| a.trim_end_matches("/metrics").parse().ok())
        .expect("metrics address");
    let (mut alice, mut bob) = pair(&server);
    let _prompt = connect_to_prompt(&server);
    alice.send_line("one");
    bob.expect_line("<alice> one");
    let before = http_get(addr);
    assert!(before.starts_with("HTTP/1.1 200 OK\r\n"), "{before}");
    assert!(before.contains("Content-Type: text/plain; version=0.0.4"));
    assert_eq!(metric(&before, "natter_users_logged_in"), 2);
    assert_eq!(metric(&before, "natter_users_at_prompt"), 1);
    assert_eq!(metric(&before, "natter_connections"), 3);
    let lines = metric(&before, "natter_lines_received_total");
    assert!(lines >= 3, "{before}");
    server.upgrade();
    alice.expect_line("*** Server upgraded.");
    let after = http_get(addr);
    assert_eq!(metric(&after, "natter_users_logged_in"), 2);
    assert_eq!(metric(&after, "natter_upgrades_total"), 1);
    assert!(metric(&after, "natter_lines_received_total") >= lines);
    assert!(
        metric(&after, "natter_sent_bytes_total") >= metric(&before, "natter_sent_bytes_total")
    );
}
