//! Black-box harness: runs the real `natter` binary on a loopback port and talks to it over TCP.
//!
//! Synchronisation rule: nothing here sleeps to wait for the server. Every wait reads until an
//! expected line (or EOF) arrives, with a deadline. To assert that *nothing* arrived, a client
//! sends a probe whose answer is known (a whisper to itself) and checks that the answer is the
//! very next thing it reads ([`Client::expect_silence`]).

#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::process::{Child, ChildStderr, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Deadline for one expected line (or one expected burst of raw bytes).
pub const LINE_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline for the server to print its `listening on` line.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Flags every test server gets: flood control and the per-address limit off (as the README
/// advises for tests and benchmarks from one address).
pub const BASE_ARGS: &[&str] = &[
    "--listen",
    "127.0.0.1:0",
    "--rate",
    "0",
    "--max-per-ip",
    "0",
];

/// The default banner, line by line.
pub const BANNER: [&str; 2] = [
    "*** Welcome to natter, a chat server for telnet and netcat.",
    "*** Type /help for a list of commands.",
];
/// The login prompt (no line end).
pub const PROMPT: &str = "Your nickname: ";

/// Telnet bytes.
pub const IAC: u8 = 0xFF;
pub const DONT: u8 = 0xFE;
pub const DO: u8 = 0xFD;
pub const WONT: u8 = 0xFC;
pub const WILL: u8 = 0xFB;
pub const SB: u8 = 0xFA;
pub const EL: u8 = 0xF8;
pub const EC: u8 = 0xF7;
pub const AYT: u8 = 0xF6;
pub const AO: u8 = 0xF5;
pub const IP: u8 = 0xF4;
pub const BRK: u8 = 0xF3;
pub const NOP: u8 = 0xF1;
pub const SE: u8 = 0xF0;

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

/// Lines the server wrote to stderr so far, plus whether the pipe has closed.
#[derive(Default)]
struct StderrLog {
    lines: Vec<String>,
    closed: bool,
}

#[derive(Default)]
struct SharedStderr {
    log: Mutex<StderrLog>,
    changed: Condvar,
}

/// A running `natter` process. Killed (only this child, and the process an upgrade handed its
/// sockets to) and reaped on drop.
pub struct Server {
    /// The first address the server said it listens on.
    pub addr: SocketAddr,
    child: Child,
    stderr: Arc<SharedStderr>,
    /// The process serving now: the child, or the last process an upgrade started.
    pid: u32,
}

impl Server {
    /// Starts the server with [`BASE_ARGS`] plus `extra_args`.
    pub fn start(extra_args: &[&str]) -> Server {
        let mut args: Vec<&str> = BASE_ARGS.to_vec();
        args.extend_from_slice(extra_args);
        Server::start_exact(&args)
    }

    /// Starts the server with exactly `args`, for tests that must not listen on
    /// [`BASE_ARGS`]' address (`--listen` adds up; other flags given again simply override).
    pub fn start_exact(args: &[&str]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_natter"));
        cmd.args(args);
        Server::start_command(cmd)
    }

    /// Like [`Server::start_exact`], but returns the server's stderr instead of panicking when
    /// it does not start listening (e.g. a port that another process took meanwhile).
    pub fn try_start_exact(args: &[&str]) -> Result<Server, Vec<String>> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_natter"));
        cmd.args(args);
        Server::try_start_command(cmd)
    }

    /// Starts the server with a prepared command (e.g. the binary behind `prlimit`); waits for
    /// its `listening on ADDR` line like [`Server::start_exact`].
    pub fn start_command(cmd: Command) -> Server {
        let shown = format!("{cmd:?}");
        Server::try_start_command(cmd).unwrap_or_else(|lines| {
            panic!("{shown} did not print `listening on ADDR`; stderr so far: {lines:#?}")
        })
    }

    fn try_start_command(mut cmd: Command) -> Result<Server, Vec<String>> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn natter");
        let stderr = Arc::new(SharedStderr::default());
        spawn_stderr_drain(
            child.stderr.take().expect("stderr pipe"),
            Arc::clone(&stderr),
        );
        let pid = child.id();
        let mut server = Server {
            addr: "0.0.0.0:0".parse().expect("placeholder addr"),
            child,
            stderr,
            pid,
        };
        let line = server.try_wait_for_stderr(|l| l.contains("listening on "), START_TIMEOUT)?;
        server.addr = parse_listen_line(&line);
        Ok(server)
    }

    /// Starts the server on a free loopback port the test picks, with [`BASE_ARGS`]' other
    /// flags plus `extra_args`, and waits until it accepts connections (for servers that do
    /// not log their `listening on` line, e.g. at `--log-level warn`).
    pub fn start_on_free_port(extra_args: &[&str]) -> Server {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_natter"));
        cmd.args([
            "--listen",
            &addr.to_string(),
            "--rate",
            "0",
            "--max-per-ip",
            "0",
        ])
        .args(extra_args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn natter");
        let stderr = Arc::new(SharedStderr::default());
        spawn_stderr_drain(
            child.stderr.take().expect("stderr pipe"),
            Arc::clone(&stderr),
        );
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "{cmd:?} did not start listening");
            thread::sleep(Duration::from_millis(10));
        }
        let pid = child.id();
        Server {
            addr,
            child,
            stderr,
            pid,
        }
    }

    /// Every address the server printed in a `listening on ADDR` line so far.
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.stderr_lines()
            .iter()
            .filter(|l| l.contains("listening on "))
            .map(|l| parse_listen_line(l))
            .collect()
    }

    /// A copy of every stderr line the server printed so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.log.lock().expect("stderr lock").lines.clone()
    }

    /// Waits until a stderr line matches `pred` (searching lines already printed too) and
    /// returns it; panics with the whole log after [`LINE_TIMEOUT`].
    pub fn wait_for_stderr(&self, pred: impl Fn(&str) -> bool) -> String {
        self.try_wait_for_stderr(pred, LINE_TIMEOUT)
            .unwrap_or_else(|lines| panic!("no matching stderr line; stderr so far: {lines:#?}"))
    }

    /// Like [`Server::wait_for_stderr`], but counts matching lines: waits until at least
    /// `count` lines match.
    pub fn wait_for_stderr_count(&self, count: usize, pred: impl Fn(&str) -> bool) {
        self.wait_for_stderr_count_within(count, pred, LINE_TIMEOUT);
    }

    /// Like [`Server::wait_for_stderr_count`] with a deadline of `timeout`.
    pub fn wait_for_stderr_count_within(
        &self,
        count: usize,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) {
        let deadline = Instant::now() + timeout;
        let mut log = self.stderr.log.lock().expect("stderr lock");
        loop {
            if log.lines.iter().filter(|l| pred(l)).count() >= count {
                return;
            }
            let now = Instant::now();
            if now >= deadline || log.closed {
                panic!(
                    "expected {count} matching stderr lines; stderr so far: {:#?}",
                    log.lines
                );
            }
            log = self
                .stderr
                .changed
                .wait_timeout(log, deadline - now)
                .expect("stderr lock")
                .0;
        }
    }

    fn try_wait_for_stderr(
        &self,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Result<String, Vec<String>> {
        let deadline = Instant::now() + timeout;
        let mut log = self.stderr.log.lock().expect("stderr lock");
        loop {
            if let Some(line) = log.lines.iter().find(|l| pred(l)) {
                return Ok(line.clone());
            }
            let now = Instant::now();
            if now >= deadline || log.closed {
                return Err(log.lines.clone());
            }
            log = self
                .stderr
                .changed
                .wait_timeout(log, deadline - now)
                .expect("stderr lock")
                .0;
        }
    }

    /// How many stderr lines printed so far match `pred`.
    pub fn count_stderr(&self, pred: impl Fn(&str) -> bool) -> usize {
        let log = self.stderr.log.lock().expect("stderr lock");
        log.lines.iter().filter(|l| pred(l)).count()
    }

    /// The id of the process serving now (it changes with every upgrade).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends SIGUSR2 and waits until the new process has taken over and the old one has
    /// exited with status 0; returns the new process's id.
    pub fn upgrade(&mut self) -> u32 {
        let old = self.pid;
        let started = self.count_stderr(|l| l.contains("upgrade: started"));
        let took_over = self.count_stderr(|l| l.contains("upgrade: took over"));
        self.signal("USR2");
        self.wait_for_stderr_count(took_over + 1, |l| l.contains("upgrade: took over"));
        self.wait_for_stderr_count(started + 1, |l| l.contains("upgrade: started"));
        let line = self
            .stderr_lines()
            .into_iter()
            .filter(|l| l.contains("upgrade: started"))
            .nth(started)
            .expect("the started line");
        self.pid = line
            .rsplit("as pid ")
            .next()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no pid in {line:?}"));
        if old == self.child.id() {
            let status = wait_child(&mut self.child, LINE_TIMEOUT).expect("the old process exits");
            assert!(status.success(), "the old process exited with {status}");
        } else {
            wait_gone(old);
        }
        self.pid
    }

    /// Sends SIGUSR2 and waits until the log says the upgrade failed; returns that line. The
    /// same process goes on serving. (A new process that hangs is given up after 10 s.)
    pub fn upgrade_fails(&mut self) -> String {
        let failed = self.count_stderr(|l| l.contains("upgrade failed"));
        self.signal("USR2");
        let within = Duration::from_secs(15);
        self.wait_for_stderr_count_within(failed + 1, |l| l.contains("upgrade failed"), within);
        self.stderr_lines()
            .into_iter()
            .filter(|l| l.contains("upgrade failed"))
            .nth(failed)
            .expect("the failure line")
    }

    /// The serving process's open descriptors and resident memory (`VmRSS`, in KiB).
    pub fn fds_and_rss_kib(&self) -> (usize, u64) {
        let fds = std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .expect("read /proc/PID/fd")
            .count();
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .expect("read /proc/PID/status");
        let rss = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS");
        (fds, rss)
    }

    /// Whether the child has not exited yet.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// utime + stime of the server process so far, in clock ticks (`/proc/PID/stat`).
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .expect("read /proc/PID/stat");
        // Fields after the command name (which may contain spaces) start at field 3.
        let after = &stat[stat.rfind(')').expect("comm") + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        let utime: u64 = fields[14 - 3].parse().expect("utime");
        let stime: u64 = fields[15 - 3].parse().expect("stime");
        utime + stime
    }

    /// Sends SIGTERM to this child (by its pid, with the `kill` utility).
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends signal `name` (e.g. `"INT"`) to this child, by its pid.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed: {status}");
    }

    /// Waits for the child to exit, at most `timeout`; panics (the child is killed on drop)
    /// if it does not.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        wait_child(&mut self.child, timeout)
            .unwrap_or_else(|| panic!("natter did not exit within {timeout:?}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Only this child, by its handle, and the process an upgrade started, by its pid.
        // Errors mean it has already exited.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.pid != self.child.id() {
            let _ = Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status();
        }
    }
}

/// Waits until process `pid` (not our child) is gone, at most [`LINE_TIMEOUT`].
fn wait_gone(pid: u32) {
    let deadline = Instant::now() + LINE_TIMEOUT;
    // Not our child: nothing to wait on, so look at /proc (its parent reaps it).
    while std::path::Path::new(&format!("/proc/{pid}/stat")).exists() {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = state
            .rfind(')')
            .is_some_and(|i| state[i + 1..].trim_start().starts_with('Z'));
        if zombie {
            return;
        }
        assert!(Instant::now() < deadline, "process {pid} did not exit");
        thread::sleep(Duration::from_millis(10));
    }
}

fn spawn_stderr_drain(mut pipe: ChildStderr, shared: Arc<SharedStderr>) {
    thread::spawn(move || {
        let mut pending: Vec<u8> = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = match pipe.read(&mut chunk) {
                Ok(0) | Err(_) => 0,
                Ok(n) => n,
            };
            let mut log = shared.log.lock().expect("stderr lock");
            if n == 0 {
                if !pending.is_empty() {
                    log.lines
                        .push(String::from_utf8_lossy(&pending).into_owned());
                }
                log.closed = true;
                shared.changed.notify_all();
                return;
            }
            pending.extend_from_slice(&chunk[..n]);
            while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=pos).collect();
                let text = String::from_utf8_lossy(&line);
                log.lines
                    .push(text.trim_end_matches(['\r', '\n']).to_string());
            }
            shared.changed.notify_all();
        }
    });
}

fn parse_listen_line(line: &str) -> SocketAddr {
    let after = line
        .split("listening on ")
        .nth(1)
        .unwrap_or_else(|| panic!("not a listening line: {line:?}"));
    let word = after.split_whitespace().next().unwrap_or("");
    word.parse()
        .unwrap_or_else(|e| panic!("cannot parse address {word:?} in {line:?}: {e}"))
}

/// Waits for `child` to exit without blocking forever: polls `try_wait` (this waits for a
/// process, not for a protocol event, so polling is the only portable option with std).
fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `natter ARGS` to completion (it must exit within `timeout`, or it is killed and the
/// test fails) and returns its status and output.
pub fn run_natter(args: &[&str], timeout: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_natter"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn natter");
    let mut out_pipe = child.stdout.take().expect("stdout pipe");
    let mut err_pipe = child.stderr.take().expect("stderr pipe");
    let out_thread = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_thread = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let status = match wait_child(&mut child, timeout) {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err_thread.join().unwrap_or_default();
            panic!(
                "natter {args:?} did not exit within {timeout:?}; stderr: {:?}",
                String::from_utf8_lossy(&stderr)
            );
        }
    };
    Output {
        status,
        stdout: out_thread.join().expect("stdout reader"),
        stderr: err_thread.join().expect("stderr reader"),
    }
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

static SYNC_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// One TCP connection to the server, with a receive buffer so lines, the prompt and raw telnet
/// bytes can all be read exactly.
pub struct Client {
    stream: TcpStream,
    /// Received but not consumed yet.
    buf: Vec<u8>,
    /// Everything ever received on this connection.
    received: Vec<u8>,
    eof: bool,
    /// The nickname the client is logged in as (used by [`Client::expect_silence`]).
    pub nick: String,
}

/// Why a read attempt ended without a complete result.
enum Fill {
    Data,
    Eof,
    Timeout,
}

impl Client {
    /// Connects (with TCP_NODELAY, so every `send` is its own segment).
    pub fn connect(addr: impl ToSocketAddrs) -> Client {
        Client::from_stream(TcpStream::connect(addr).expect("connect to natter"))
    }

    /// A client over a socket the test connected itself (e.g. with a small receive buffer).
    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .expect("write timeout");
        Client {
            stream,
            buf: Vec::new(),
            received: Vec::new(),
            eof: false,
            nick: String::new(),
        }
    }

    /// Sends raw bytes in one write call.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send to natter");
    }

    /// Sends `line` followed by CR LF, in one write call.
    pub fn send_line(&mut self, line: &str) {
        let mut bytes = line.as_bytes().to_vec();
        bytes.extend_from_slice(b"\r\n");
        self.send(&bytes);
    }

    /// A second handle on the socket, for a writer thread.
    pub fn writer(&self) -> TcpStream {
        self.stream.try_clone().expect("clone stream")
    }

    /// Half-closes the connection (no more data from us).
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Everything received on this connection so far (consumed or not).
    pub fn received(&self) -> &[u8] {
        &self.received
    }

    /// Reads until the buffer holds at least one more byte, EOF, or `deadline`.
    fn fill(&mut self, deadline: Instant) -> Fill {
        if self.eof {
            return Fill::Eof;
        }
        let now = Instant::now();
        if now >= deadline {
            return Fill::Timeout;
        }
        let remaining = (deadline - now).max(Duration::from_millis(1));
        self.stream
            .set_read_timeout(Some(remaining))
            .expect("read timeout");
        let mut chunk = [0u8; 65536];
        match self.stream.read(&mut chunk) {
            Ok(0) => {
                self.eof = true;
                Fill::Eof
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                self.received.extend_from_slice(&chunk[..n]);
                Fill::Data
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if Instant::now() >= deadline {
                    Fill::Timeout
                } else {
                    Fill::Data
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => Fill::Data,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                ) =>
            {
                self.eof = true;
                Fill::Eof
            }
            Err(e) => panic!("[{}] read error: {e}", self.nick),
        }
    }

    fn buffered(&self) -> String {
        format!("{:?}", String::from_utf8_lossy(&self.buf))
    }

    /// Reads one line (up to CR LF) and returns it without the CR LF. Panics after
    /// [`LINE_TIMEOUT`], on EOF, on a bare LF in the server's output, or on invalid UTF-8.
    pub fn read_line(&mut self) -> String {
        self.try_read_line(LINE_TIMEOUT)
            .unwrap_or_else(|why| panic!("{why}"))
    }

    /// Like [`Client::read_line`] but returns an error text instead of panicking.
    pub fn try_read_line(&mut self, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..pos + 2).take(pos).collect();
                if line.contains(&b'\n') {
                    return Err(format!(
                        "[{}] server sent a bare LF (lines must end with CR LF): {:?}",
                        self.nick,
                        String::from_utf8_lossy(&line)
                    ));
                }
                return String::from_utf8(line).map_err(|e| {
                    format!(
                        "[{}] server sent invalid UTF-8: {:?}",
                        self.nick,
                        e.as_bytes()
                    )
                });
            }
            match self.fill(deadline) {
                Fill::Data => {}
                Fill::Eof => {
                    return Err(format!(
                        "[{}] connection closed while waiting for a line; buffered: {}",
                        self.nick,
                        self.buffered()
                    ));
                }
                Fill::Timeout => {
                    return Err(format!(
                        "[{}] timed out after {timeout:?} waiting for a line; buffered: {}",
                        self.nick,
                        self.buffered()
                    ));
                }
            }
        }
    }

    /// Reads one line and asserts it is exactly `expected`.
    #[track_caller]
    pub fn expect_line(&mut self, expected: &str) {
        let got = self.read_line();
        assert_eq!(got, expected, "[{}] unexpected line", self.nick);
    }

    /// Reads lines and asserts they are exactly `expected`, in order.
    #[track_caller]
    pub fn expect_lines(&mut self, expected: &[&str]) {
        for want in expected {
            self.expect_line(want);
        }
    }

    /// Reads exactly `n` lines.
    pub fn read_lines(&mut self, n: usize) -> Vec<String> {
        (0..n).map(|_| self.read_line()).collect()
    }

    /// Reads exactly the bytes of the prompt `Your nickname: `.
    #[track_caller]
    pub fn expect_prompt(&mut self) {
        self.expect_raw(PROMPT.as_bytes());
    }

    /// Reads either one line (returned) or the prompt (consumed; `None`).
    pub fn read_line_or_prompt(&mut self) -> Option<String> {
        let deadline = Instant::now() + LINE_TIMEOUT;
        let prompt = PROMPT.as_bytes();
        loop {
            if self.buf.starts_with(prompt) {
                self.buf.drain(..prompt.len());
                return None;
            }
            if self.buf.windows(2).any(|w| w == b"\r\n") {
                return Some(self.read_line());
            }
            match self.fill(deadline) {
                Fill::Data => {}
                Fill::Eof | Fill::Timeout => panic!(
                    "[{}] expected a line or the prompt; buffered: {}",
                    self.nick,
                    self.buffered()
                ),
            }
        }
    }

    /// Reads exactly `expected.len()` bytes and asserts they equal `expected`.
    #[track_caller]
    pub fn expect_raw(&mut self, expected: &[u8]) {
        let deadline = Instant::now() + LINE_TIMEOUT;
        while self.buf.len() < expected.len() {
            match self.fill(deadline) {
                Fill::Data => {}
                Fill::Eof | Fill::Timeout => break,
            }
        }
        let n = expected.len().min(self.buf.len());
        let got: Vec<u8> = self.buf.drain(..n).collect();
        assert_eq!(
            got,
            expected,
            "[{}] expected raw bytes {:?} ({:02X?}), got {:?} ({:02X?}); still buffered: {}",
            self.nick,
            String::from_utf8_lossy(expected),
            expected,
            String::from_utf8_lossy(&got),
            got,
            self.buffered()
        );
    }

    /// Skips lines until one satisfies `pred`, and returns that line.
    pub fn read_until(&mut self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + LINE_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .try_read_line(left)
                .unwrap_or_else(|why| panic!("{why}"));
            if pred(&line) {
                return line;
            }
        }
    }

    /// Reads raw bytes until `pattern` has been received; returns everything up to and
    /// including it.
    pub fn read_raw_until(&mut self, pattern: &[u8]) -> Vec<u8> {
        let deadline = Instant::now() + LINE_TIMEOUT;
        loop {
            if let Some(pos) = self.buf.windows(pattern.len()).position(|w| w == pattern) {
                return self.buf.drain(..pos + pattern.len()).collect();
            }
            match self.fill(deadline) {
                Fill::Data => {}
                Fill::Eof | Fill::Timeout => panic!(
                    "[{}] did not receive {:02X?}; buffered: {:02X?}",
                    self.nick, pattern, self.buf
                ),
            }
        }
    }

    /// Reads until the server closes the connection (within [`LINE_TIMEOUT`]) and returns the
    /// remaining lines (a final partial line, if any, is returned as is).
    pub fn expect_closed(&mut self) -> Vec<String> {
        let deadline = Instant::now() + LINE_TIMEOUT;
        loop {
            match self.fill(deadline) {
                Fill::Data => {}
                Fill::Eof => break,
                Fill::Timeout => panic!(
                    "[{}] connection still open after {LINE_TIMEOUT:?}; buffered: {}",
                    self.nick,
                    self.buffered()
                ),
            }
        }
        let rest = String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned();
        let mut lines: Vec<String> = rest.split("\r\n").map(str::to_string).collect();
        if lines.last().is_some_and(String::is_empty) {
            lines.pop();
        }
        lines
    }

    /// Asserts that nothing is pending for this client: sends a whisper to itself and checks
    /// that the whisper's two lines (`*ME* sync-N` and `-> *ME* sync-N`, in either order) are
    /// the very next lines. Also synchronises: every line the server sent this client before it
    /// handled the probe has been consumed. Needs a logged-in client with `nick` set.
    #[track_caller]
    pub fn expect_silence(&mut self) {
        assert!(
            !self.nick.is_empty(),
            "expect_silence needs a logged-in client"
        );
        let n = SYNC_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tag = format!("sync-{n}");
        let nick = self.nick.clone();
        self.send_line(&format!("/w {nick} {tag}"));
        let received = format!("*{nick}* {tag}");
        let echo = format!("-> *{nick}* {tag}");
        let first = self.read_line();
        let second = self.read_line();
        let ok = (first == received && second == echo) || (first == echo && second == received);
        assert!(
            ok,
            "[{nick}] expected nothing before the sync probe's answer ({received:?} and {echo:?}), \
             got {first:?} then {second:?}"
        );
    }

    /// Reads the two banner lines (whatever they say) and the prompt.
    pub fn skip_banner(&mut self) {
        self.read_line();
        self.read_line();
        self.expect_prompt();
    }
}

/// Connects, skips the default two-line banner, sends `nick` and expects the welcome line for
/// `#lobby`.
#[track_caller]
pub fn login(addr: SocketAddr, nick: &str) -> Client {
    login_in(addr, nick, "#lobby")
}

/// Like [`login`] for a server whose default room is `room` (with its `#`).
#[track_caller]
pub fn login_in(addr: SocketAddr, nick: &str, room: &str) -> Client {
    let mut c = Client::connect(addr);
    c.nick = nick.to_string();
    c.skip_banner();
    c.send_line(nick);
    c.expect_line(&format!("*** Welcome, {nick}! You are in {room}."));
    c
}

/// Logs in `nick` while `others` are in the room: each of them must get the join notice.
#[track_caller]
pub fn login_seen_by(addr: SocketAddr, nick: &str, others: &mut [&mut Client]) -> Client {
    let c = login(addr, nick);
    for other in others.iter_mut() {
        other.expect_line(&format!("*** {nick} joined #lobby"));
    }
    c
}

/// The line another member receives for a chat message.
pub fn chat(nick: &str, text: &str) -> String {
    format!("<{nick}> {text}")
}

/// alice (the sender) and bob (the listener), both logged in to #lobby.
pub fn pair(server: &Server) -> (Client, Client) {
    let mut bob = login(server.addr, "bob");
    let alice = login_seen_by(server.addr, "alice", &mut [&mut bob]);
    (alice, bob)
}

/// A client that has read the banner and is at the nickname prompt.
pub fn connect_to_prompt(server: &Server) -> Client {
    let mut c = Client::connect(server.addr);
    c.skip_banner();
    c
}

/// Floods `writer` with 500-byte lines from a thread until `stop` is set, the socket fails or
/// 64 MiB are sent (far more than the kernel buffers between the server and a client that
/// never reads); the thread returns how many bytes it sent.
pub fn flood(
    mut writer: impl Write + Send + 'static,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<usize> {
    thread::spawn(move || {
        let line = format!("{}\r\n", "z".repeat(500));
        let mut sent = 0usize;
        while !stop.load(Ordering::Relaxed) && sent < 64 << 20 {
            if writer.write_all(line.as_bytes()).is_err() {
                break;
            }
            sent += line.len();
        }
        sent
    })
}
