//! The cluster's shared log: one Redis Stream used as a totally ordered log of opaque byte
//! payloads, driven from the server's single-threaded `mio` loop.
//!
//! The cluster logic (what an entry means, node liveness, rejoining) lives in the core; this
//! module only moves bytes to and from Redis, and says when Redis stalls, answers again or has
//! restarted empty. See [`RedisLog`] for the API and the order to call it in.
//!
//! # Redis keys and commands
//! Every key is namespaced by the cluster name `NAME` (`--cluster`); the braces keep a
//! cluster's keys in one slot should the Redis ever be a Redis Cluster.
//! - `natter:{NAME}:log` (stream): `XADD log * p PAYLOAD` appends;
//!   `XREAD BLOCK 1000 COUNT 1000 STREAMS log LAST-ID` reads.
//! - `natter:{NAME}:epoch` (string): `SET epoch RANDOM NX GET` on every connect, at start and
//!   once a second. Its value changes only when the key vanished, i.e. Redis restarted empty
//!   (or was flushed): then [`LogEvent::Restarted`].
//! - `natter:{NAME}:snapshot` (hash `ms`, `seq`, `blob`): written by one Lua script (`EVAL`)
//!   that stores a snapshot only if its id is newer than the stored one, then
//!   `XTRIM log MINID ID`; read at start with `HMGET snapshot ms seq blob`.
//! - `natter:{NAME}:nodes` (counter): `INCR`, for unique node ids.
//! - `TIME` at start.
//!
//! # Delivery rules
//! - **Entries exactly once, in log order.** The read connection remembers the id of the last
//!   entry it delivered and resumes `XREAD` after it on every reconnect, so each entry is
//!   delivered once (per epoch: after [`LogEvent::Restarted`] reading starts over at `0-0` in
//!   the new, empty stream).
//! - **Appends at least once, in order.** An appended payload stays queued until Redis
//!   acknowledged its `XADD`. When the write connection breaks, the payloads sent but not
//!   acknowledged are sent again after reconnecting, oldest first and before newer ones, so a
//!   node's entries appear in the order it appended them; one that Redis had stored before the
//!   connection broke appears twice. Every payload of the core carries (node id, per-node
//!   sequence number) and the core skips a sequence number it has already applied, so nobody
//!   sees the duplicate. Appends wait in memory while Redis is away, up to
//!   [`MAX_PENDING_APPEND_BYTES`]; past that [`RedisLog::append`] refuses (the core holds its
//!   users' input long before: it stops reading once [`LogEvent::Stalled`] arrives).
//!
//! # Failures
//! A connection that breaks (refused, reset, closed, a reply that is not RESP or is an error
//! where none is possible) is reopened after a back-off of 50 ms doubling up to 250 ms (short,
//! so that Redis back within 1.75 s is noticed before the 2 s pause notice is due).
//! [`LogEvent::Stalled`] comes once Redis has owed an answer for 2 s on either connection
//! (a command unanswered, the blocking read 2 s past its own timeout, or no connection);
//! [`LogEvent::Resumed`] when both connections are answered again. A connection that owes an
//! answer for 10 s is dropped and reopened (a half-open TCP connection never reports an error).

mod codec;
mod conn;
mod id;
mod link;
mod log;
mod reply;
mod startup;

pub use conn::ConnError;
pub use id::{BadStreamId, StreamId};
pub use log::{LogEvent, MAX_PENDING_APPEND_BYTES, RedisLog, Start};
pub use reply::ReplyError;

use conn::Target;
use std::net::ToSocketAddrs;
use std::path::PathBuf;
use thiserror::Error;

/// What went wrong with Redis. Every message names the address as the user gave it.
#[derive(Debug, Error)]
pub enum RedisError {
    /// The address is neither `HOST:PORT` nor a socket path, or its host does not resolve.
    #[error("bad Redis address {addr}: {reason} (expected HOST:PORT or the path of a Unix socket)")]
    Address {
        /// The address as given.
        addr: String,
        /// Why it is not usable.
        reason: String,
    },
    /// Redis could not be reached, or a connection to it broke.
    #[error("cannot reach Redis at {addr}: {reason}")]
    Unreachable {
        /// The address as given.
        addr: String,
        /// The reason.
        reason: ConnError,
    },
    /// Redis did not answer in time.
    #[error("Redis at {addr} did not answer within {secs} seconds")]
    Timeout {
        /// The address as given.
        addr: String,
        /// How long natter waited.
        secs: u64,
    },
    /// Redis answered with an error, or with a reply the command does not return.
    #[error("Redis at {addr}: {reason}")]
    Reply {
        /// The address as given.
        addr: String,
        /// The reply.
        reason: ReplyError,
    },
    /// Too many appends wait for Redis.
    #[error(
        "more than {limit} bytes of log entries wait for Redis at {addr}; \
         this one is refused"
    )]
    Backlog {
        /// The address as given.
        addr: String,
        /// The limit, [`MAX_PENDING_APPEND_BYTES`].
        limit: usize,
    },
}

/// The names of one cluster's keys.
#[derive(Debug, Clone)]
struct Keys {
    log: Vec<u8>,
    epoch: Vec<u8>,
    snapshot: Vec<u8>,
    nodes: Vec<u8>,
}

impl Keys {
    fn new(cluster: &str) -> Keys {
        let key = |what: &str| format!("natter:{{{cluster}}}:{what}").into_bytes();
        Keys {
            log: key("log"),
            epoch: key("epoch"),
            snapshot: key("snapshot"),
            nodes: key("nodes"),
        }
    }

    /// `SET epoch CANDIDATE NX GET`: sets the epoch key if Redis has none (it restarted empty
    /// or is new) and answers the value it holds.
    fn epoch_check<'a>(&'a self, candidate: &'a [u8]) -> [&'a [u8]; 5] {
        [b"SET", &self.epoch, candidate, b"NX", b"GET"]
    }
}

/// Turns `HOST:PORT` into a socket address (resolving the host, which may block: start only),
/// and anything with a `/` into a Unix socket path.
fn resolve(addr: &str) -> Result<Target, RedisError> {
    if addr.contains('/') {
        return Ok(Target::Unix(PathBuf::from(addr)));
    }
    let bad = |reason: String| RedisError::Address {
        addr: addr.to_owned(),
        reason,
    };
    let mut addrs = addr.to_socket_addrs().map_err(|e| bad(e.to_string()))?;
    addrs
        .next()
        .map(Target::Tcp)
        .ok_or_else(|| bad("the host has no address".to_owned()))
}

/// A value for the epoch key that no earlier epoch had: 128 random bits in hex.
fn epoch_candidate() -> Vec<u8> {
    let mut bits = [0u8; 16];
    if getrandom::fill(&mut bits).is_err() {
        // No OS randomness (should not happen on Linux): the clock in nanoseconds still differs
        // from any earlier epoch's value.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bits = nanos.to_le_bytes();
    }
    bits.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_namespaced_by_cluster() {
        let keys = Keys::new("blue");
        assert_eq!(keys.log, b"natter:{blue}:log");
        assert_eq!(keys.epoch, b"natter:{blue}:epoch");
        assert_eq!(keys.snapshot, b"natter:{blue}:snapshot");
        assert_eq!(keys.nodes, b"natter:{blue}:nodes");
    }

    #[test]
    fn addresses_are_host_port_or_socket_paths() {
        assert!(matches!(resolve("127.0.0.1:6380"), Ok(Target::Tcp(a)) if a.port() == 6380));
        assert!(
            matches!(resolve("/run/redis.sock"), Ok(Target::Unix(p)) if p == std::path::Path::new("/run/redis.sock"))
        );
        let err = resolve("nonsense").unwrap_err().to_string();
        assert!(err.contains("bad Redis address nonsense"), "{err}");
    }

    #[test]
    fn epoch_candidates_differ() {
        let a = epoch_candidate();
        assert_eq!(a.len(), 32);
        assert_ne!(a, epoch_candidate());
    }
}
