//! The blocking start-up exchange: proves Redis answers (within a deadline) and fetches what a
//! node needs before it serves anyone. Blocking is allowed here only: the loop is not running.

use super::codec::{self, Frame};
use super::conn::{ConnError, Target};
use super::{Keys, RedisError, Start, epoch_candidate, reply};
use bytes::{Bytes, BytesMut};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// What the start-up exchange learned.
pub(super) struct Handshake {
    /// The epoch key's value.
    pub(super) epoch: Bytes,
    /// What the node needs before it serves anyone.
    pub(super) start: Start,
}

/// Connects, sends `SET epoch RANDOM NX GET`, `INCR nodes`, `HMGET snapshot ms seq blob` and
/// `TIME` in one write, and reads the four replies, all within `limit`.
pub(super) fn handshake(
    addr: &str,
    target: &Target,
    keys: &Keys,
    limit: Duration,
) -> Result<Handshake, RedisError> {
    let deadline = Instant::now() + limit;
    let timeout = || RedisError::Timeout {
        addr: addr.to_owned(),
        secs: limit.as_secs().max(1),
    };
    let io_error = |e: io::Error| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => timeout(),
        _ => RedisError::Unreachable {
            addr: addr.to_owned(),
            reason: ConnError::Io(e),
        },
    };
    let mut stream = Blocking::connect(target, limit).map_err(|e| RedisError::Unreachable {
        addr: addr.to_owned(),
        reason: ConnError::Connect(e),
    })?;

    let candidate = epoch_candidate();
    let mut out = BytesMut::new();
    codec::encode_command(&mut out, &keys.epoch_check(&candidate));
    codec::encode_command(&mut out, &[b"INCR", &keys.nodes]);
    codec::encode_command(
        &mut out,
        &[b"HMGET", &keys.snapshot, b"ms", b"seq", b"blob"],
    );
    codec::encode_command(&mut out, &[b"TIME"]);
    stream
        .set_timeout(remaining(deadline).ok_or_else(timeout)?)
        .map_err(io_error)?;
    stream.write_all(&out).map_err(io_error)?;

    let mut input = BytesMut::new();
    let mut replies = Vec::with_capacity(4);
    while replies.len() < 4 {
        match codec::decode_reply(&mut input) {
            Ok(Some(frame)) => replies.push(frame),
            Ok(None) => read_more(&mut stream, &mut input, deadline).map_err(|e| match e {
                None => timeout(),
                Some(e) => RedisError::Unreachable {
                    addr: addr.to_owned(),
                    reason: e,
                },
            })?,
            Err(e) => {
                return Err(RedisError::Unreachable {
                    addr: addr.to_owned(),
                    reason: ConnError::Protocol(e),
                });
            }
        }
    }
    interpret(replies, candidate).map_err(|reason| RedisError::Reply {
        addr: addr.to_owned(),
        reason,
    })
}

fn interpret(replies: Vec<Frame>, candidate: Vec<u8>) -> Result<Handshake, reply::ReplyError> {
    let mut replies = replies.into_iter();
    let mut next = || replies.next().unwrap_or(Frame::Null);
    let epoch = reply::optional_string("SET", next())?.unwrap_or_else(|| Bytes::from(candidate));
    let node_id = reply::integer("INCR", next())?;
    let snapshot = reply::snapshot(next())?;
    let redis_time_ms = reply::time_ms(next())?;
    Ok(Handshake {
        epoch,
        start: Start {
            node_id: node_id.unsigned_abs(),
            snapshot,
            redis_time_ms,
        },
    })
}

fn remaining(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
}

/// Reads once more; `Err(None)` when the deadline passed.
fn read_more(
    stream: &mut Blocking,
    input: &mut BytesMut,
    deadline: Instant,
) -> Result<(), Option<ConnError>> {
    let left = remaining(deadline).ok_or(None)?;
    stream
        .set_timeout(left)
        .map_err(|e| Some(ConnError::Io(e)))?;
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk) {
        Ok(0) => Err(Some(ConnError::Closed)),
        Ok(n) => {
            input.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Err(None)
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
        Err(e) => Err(Some(ConnError::Io(e))),
    }
}

/// A blocking socket with timeouts, for the start-up exchange only.
enum Blocking {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Blocking {
    fn connect(target: &Target, limit: Duration) -> io::Result<Blocking> {
        Ok(match target {
            Target::Tcp(addr) => Blocking::Tcp(TcpStream::connect_timeout(addr, limit)?),
            Target::Unix(path) => Blocking::Unix(UnixStream::connect(path)?),
        })
    }

    fn set_timeout(&self, timeout: Duration) -> io::Result<()> {
        match self {
            Blocking::Tcp(s) => {
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))
            }
            Blocking::Unix(s) => {
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))
            }
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Blocking::Tcp(s) => s.write_all(bytes),
            Blocking::Unix(s) => s.write_all(bytes),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Blocking::Tcp(s) => s.read(buf),
            Blocking::Unix(s) => s.read(buf),
        }
    }
}
