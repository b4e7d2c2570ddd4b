//! A real `redis-server` for tests: its own free loopback port, no persistence, stopped (only
//! this child, by PID) and reaped on drop.
//!
//! When `redis-server` is not installed, [`RedisServer::start`] panics if the `CI` environment
//! variable is set, and otherwise prints a loud "skipped" line and returns `None`.

#![allow(dead_code)]

use bytes::BytesMut;
use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::types::OwnedFrame;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long `redis-server` may take to answer PING after it was spawned.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one command of the helper may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// A running `redis-server` on `127.0.0.1:port`.
pub struct RedisServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its Unix socket, when started with [`RedisServer::start_with_unix_socket`].
    pub unix_socket: Option<PathBuf>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a `redis-server` on a free loopback port and waits until it answers PING.
    pub fn start() -> Option<RedisServer> {
        RedisServer::start_inner(None)
    }

    /// Like [`RedisServer::start`], and it also listens on a Unix socket in a fresh directory
    /// under the system's temporary directory.
    pub fn start_with_unix_socket() -> Option<RedisServer> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "natter-redis-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create a directory for the Redis socket");
        RedisServer::start_inner(Some(dir.join("redis.sock")))
    }

    fn start_inner(unix_socket: Option<PathBuf>) -> Option<RedisServer> {
        for _ in 0..5 {
            let port = free_port();
            match spawn(port, unix_socket.as_deref()) {
                Spawned::Missing => return missing(),
                Spawned::Up(child) => {
                    return Some(RedisServer {
                        port,
                        unix_socket,
                        child: Some(child),
                    });
                }
                // Someone else took the port between our probe and redis' bind: try another.
                Spawned::Exited => continue,
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("redis-server is running").id()
    }

    /// Kills the server (SIGKILL by PID) and reaps it: its port refuses connections.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a fresh, empty server on the same port (after [`RedisServer::kill`]).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "kill the running server first");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match spawn(self.port, self.unix_socket.as_deref()) {
                Spawned::Up(child) => {
                    self.child = Some(child);
                    return;
                }
                Spawned::Missing => panic!("redis-server vanished"),
                Spawned::Exited if Instant::now() < deadline => {}
                Spawned::Exited => panic!("redis-server did not start again on {}", self.port),
            }
        }
    }

    /// Kills the server and starts an empty one on the same port.
    pub fn restart_empty(&mut self) {
        self.kill();
        self.start_again();
    }

    /// Stops the server (SIGSTOP): connections stay open, nothing is answered.
    pub fn pause(&self) {
        signal(self.pid(), "-STOP");
    }

    /// Continues a paused server (SIGCONT).
    pub fn resume(&self) {
        signal(self.pid(), "-CONT");
    }

    /// Closes every client connection but the helper's own (`CLIENT KILL TYPE normal`);
    /// returns how many were closed.
    pub fn kill_client_connections(&self) -> i64 {
        match self.command(&["CLIENT", "KILL", "TYPE", "normal"]) {
            OwnedFrame::Integer(n) => n,
            other => panic!("CLIENT KILL answered {other:?}"),
        }
    }

    /// Runs one command on a new connection and returns the reply.
    pub fn command(&self, args: &[&str]) -> OwnedFrame {
        command_at(self.port, args, COMMAND_TIMEOUT)
            .unwrap_or_else(|e| panic!("{args:?} against redis on port {}: {e}", self.port))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A paused server must be continued to die of SIGKILL promptly and be reaped.
            signal(child.id(), "-CONT");
        }
        self.kill();
        if let Some(dir) = self.unix_socket.as_ref().and_then(|p| p.parent()) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

enum Spawned {
    Up(Child),
    Exited,
    Missing,
}

fn spawn(port: u16, unix_socket: Option<&Path>) -> Spawned {
    let port_text = port.to_string();
    let mut command = Command::new("redis-server");
    command
        .args(["--port", &port_text, "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"]);
    if let Some(path) = unix_socket {
        command.arg("--unixsocket").arg(path);
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == ErrorKind::NotFound => return Spawned::Missing,
        Err(e) => panic!("cannot run redis-server: {e}"),
    };
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if child.try_wait().expect("wait for redis-server").is_some() {
            return Spawned::Exited;
        }
        if let Ok(OwnedFrame::SimpleString(pong)) =
            command_at(port, &["PING"], Duration::from_millis(500))
            && pong == b"PONG"
        {
            return Spawned::Up(child);
        }
        // Polling for the port to open (not synchronisation on a result we could read).
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("redis-server on port {port} did not answer PING within {START_TIMEOUT:?}");
}

fn missing() -> Option<RedisServer> {
    if std::env::var_os("CI").is_some() {
        panic!(
            "redis-server is not installed, and CI must run the Redis tests: apt-get install -y redis-server"
        );
    }
    eprintln!();
    eprintln!(
        "!!!!!!!! skipped: redis-server not installed (apt-get install -y redis-server) !!!!!!!!"
    );
    eprintln!();
    None
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free loopback port")
        .port()
}

fn signal(pid: u32, which: &str) {
    let status = Command::new("kill")
        .args([which, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {which} {pid} failed");
}

/// Sends one command on a new connection and reads its reply, within `timeout`.
fn command_at(port: u16, args: &[&str], timeout: Duration) -> Result<OwnedFrame, String> {
    let deadline = Instant::now() + timeout;
    let addr = ("127.0.0.1", port);
    let mut stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    let mut out = format!("*{}\r\n", args.len());
    for arg in args {
        out.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream
        .write_all(out.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut input = BytesMut::new();
    loop {
        if let Some((frame, _)) = decode(&input).map_err(|e| e.to_string())? {
            return Ok(frame);
        }
        let left = deadline
            .checked_duration_since(Instant::now())
            .ok_or("no reply in time")?;
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .map_err(|e| e.to_string())?;
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) => return Err("connection closed".into()),
            Ok(n) => input.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(e.to_string()),
        }
    }
}
