//! [`RedisLog`]: the shared log over two Redis connections, one for writing (pipelined
//! `XADD` and friends) and one for the blocking read.

mod receive;
mod send;

use super::conn::{ConnError, Target};
use super::id::StreamId;
use super::link::{DROP_AFTER, Link};
use super::startup;
use super::{Keys, RedisError, resolve};
use bytes::Bytes;
use mio::{Registry, Token};
use receive::Fault;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Payload bytes that may wait for Redis (queued or unacknowledged) before
/// [`RedisLog::append`] refuses more: 16 MiB, about 100,000 chat lines.
pub const MAX_PENDING_APPEND_BYTES: usize = 16 * 1024 * 1024;
/// Time limit of the start-up exchange (the server must exit within 5 s when Redis is away).
const START_LIMIT: Duration = Duration::from_secs(4);
/// Redis owing an answer this long makes the log [`LogEvent::Stalled`].
const STALL_AFTER: Duration = Duration::from_secs(2);
/// How long one `XREAD` blocks waiting for new entries.
const READ_BLOCK: Duration = Duration::from_millis(1000);
/// Most entries one `XREAD` returns.
const READ_COUNT: &[u8] = b"1000";
/// How often the write connection checks the epoch key (which also proves Redis answers).
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Stores a snapshot only if it is newer than the stored one, then trims the log below it,
/// in one atomic step (two nodes writing snapshots at once can never move it backwards).
/// KEYS: snapshot hash, log stream. ARGV: ms, seq, blob. Returns 1 if stored, 0 if not.
const SNAPSHOT_SCRIPT: &[u8] = br"
local cur = redis.call('HMGET', KEYS[1], 'ms', 'seq')
local ms, seq = tonumber(ARGV[1]), tonumber(ARGV[2])
if cur[1] then
  local cms, cseq = tonumber(cur[1]), tonumber(cur[2])
  if cms > ms or (cms == ms and cseq >= seq) then return 0 end
end
redis.call('HSET', KEYS[1], 'ms', ARGV[1], 'seq', ARGV[2], 'blob', ARGV[3])
redis.call('XTRIM', KEYS[2], 'MINID', ARGV[1] .. '-' .. ARGV[2])
return 1
";

/// What the log tells its owner, drained with [`RedisLog::poll_event`].
#[derive(Debug)]
pub enum LogEvent {
    /// The next entry of the log (in log order, each exactly once per epoch).
    Entry {
        /// Its id; `id.ms` is the Redis server's clock when it was added.
        id: StreamId,
        /// The payload as appended.
        payload: Bytes,
    },
    /// Redis has not answered for 2 seconds (refused, lost, or silent).
    Stalled,
    /// Redis answers again after [`LogEvent::Stalled`].
    Resumed,
    /// Redis restarted empty (the epoch key changed): the log, the snapshot and the node
    /// counter are gone. Reading starts over at the start of the new log; appends not yet
    /// acknowledged are sent again into it.
    Restarted,
    /// The answer to [`RedisLog::write_snapshot`]: `stored` is false when a snapshot with the
    /// same or a newer id was there already (then nothing was trimmed either).
    SnapshotWritten {
        /// The id given.
        id: StreamId,
        /// Whether it is now the stored snapshot.
        stored: bool,
    },
    /// Something went wrong that the log handles itself (it reconnects): for the server's log.
    Warning(RedisError),
}

/// What the start-up exchange learned: everything a node needs before it serves anyone.
#[derive(Debug)]
pub struct Start {
    /// A node id no other node got (from the `nodes` counter).
    pub node_id: u64,
    /// The stored snapshot and the id of the last entry it includes; reading starts after it.
    pub snapshot: Option<(StreamId, Bytes)>,
    /// The Redis server's clock at start, in milliseconds.
    pub redis_time_ms: u64,
}

/// The tag of a command on the write connection.
enum WriteOp {
    Epoch(Bytes),
    Append,
    Snapshot(StreamId),
}

/// The tag of a command on the read connection.
enum ReadOp {
    Epoch(Bytes),
    Read,
}

/// The cluster's log in Redis, driven from the server's `mio` loop.
///
/// # Calling order (the drain rule)
/// - Inputs: [`RedisLog::handle_ready`] for an event on either of its two tokens,
///   [`RedisLog::handle_timeout`] when [`RedisLog::next_deadline`] has passed (calling it
///   early is harmless).
/// - Mutators: [`RedisLog::append`] and [`RedisLog::write_snapshot`] queue commands; nothing
///   is written until [`RedisLog::flush`].
/// - Outputs: [`RedisLog::poll_event`] until `None`.
///
/// Each loop turn: read the clock once, hand events to the log, drain `poll_event` into the
/// core, hand the core's appends to the log, call `flush` once (one write carries the turn's
/// commands), then block until the earliest of the core's deadline and
/// [`RedisLog::next_deadline`].
pub struct RedisLog {
    addr: String,
    target: Target,
    registry: Registry,
    keys: Keys,
    writer: Link<WriteOp>,
    reader: Link<ReadOp>,
    /// The epoch key's value this log believes in.
    epoch: Bytes,
    /// Appended payloads not yet acknowledged, oldest first; the first `appends_sent` of them
    /// are written on the current write connection.
    appends: VecDeque<Bytes>,
    appends_sent: usize,
    append_bytes: usize,
    /// The id of the last entry delivered (the read resumes after it).
    last_id: StreamId,
    /// Set while the read connection has an `XREAD` outstanding.
    reading: bool,
    next_check: Instant,
    checking: bool,
    stalled: bool,
    events: VecDeque<LogEvent>,
}

impl RedisLog {
    /// Checks that Redis answers at `addr` (`HOST:PORT`, or a Unix socket path) within 4 s,
    /// blocking (start-up only); takes a node id, loads the snapshot of `cluster`'s log, then
    /// opens the two non-blocking connections under `write_token` and `read_token`. Reading
    /// starts after the snapshot's id, or at the start of the log when there is none.
    pub fn connect(
        addr: &str,
        cluster: &str,
        registry: &Registry,
        write_token: Token,
        read_token: Token,
        now: Instant,
    ) -> Result<(RedisLog, Start), RedisError> {
        let target = resolve(addr)?;
        let keys = Keys::new(cluster);
        let hello = startup::handshake(addr, &target, &keys, START_LIMIT)?;
        let registry = registry.try_clone().map_err(|e| RedisError::Unreachable {
            addr: addr.to_owned(),
            reason: ConnError::Io(e),
        })?;
        let mut log = RedisLog {
            addr: addr.to_owned(),
            target,
            registry,
            keys,
            writer: Link::new(write_token, now),
            reader: Link::new(read_token, now),
            epoch: hello.epoch,
            appends: VecDeque::new(),
            appends_sent: 0,
            append_bytes: 0,
            last_id: hello
                .start
                .snapshot
                .as_ref()
                .map_or(StreamId::ZERO, |(id, _)| *id),
            reading: false,
            next_check: now + CHECK_EVERY,
            checking: false,
            stalled: false,
            events: VecDeque::new(),
        };
        log.reconnect_due(now);
        Ok((log, hello.start))
    }

    // ---- getters ------------------------------------------------------------------------

    /// The id of the last entry delivered.
    pub fn last_id(&self) -> StreamId {
        self.last_id
    }

    /// The epoch key's value this log believes in (it changes with [`LogEvent::Restarted`]).
    pub fn epoch(&self) -> &[u8] {
        &self.epoch
    }

    /// Payload bytes appended but not yet acknowledged by Redis.
    pub fn pending_append_bytes(&self) -> usize {
        self.append_bytes
    }

    /// Whether the log is stalled (between [`LogEvent::Stalled`] and [`LogEvent::Resumed`]).
    pub fn is_stalled(&self) -> bool {
        self.stalled
    }

    /// When [`RedisLog::handle_timeout`] is next needed: a reconnect, the once-a-second epoch
    /// check, a stall or drop limit. Never `None` (the epoch check is always due).
    pub fn next_deadline(&self) -> Option<Instant> {
        let stall = (!self.stalled).then_some(STALL_AFTER);
        [
            Some(self.next_check),
            self.writer.deadline(stall),
            self.reader.deadline(stall),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ---- inputs -------------------------------------------------------------------------

    /// Handles readiness of one of the log's tokens (others are ignored).
    pub fn handle_ready(&mut self, token: Token, now: Instant) {
        if token == self.writer.token {
            let result = self.writer.on_ready();
            self.after_io(result, true, now);
        } else if token == self.reader.token {
            let result = self.reader.on_ready();
            self.after_io(result, false, now);
        }
        self.update_stall(now);
    }

    /// Reconnects, checks the epoch, drops silent connections and judges stalls as due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let silent = || Fault::Conn(ConnError::Silent(DROP_AFTER.as_secs()));
        if self.writer.overdue(now) {
            self.lose(true, silent(), now);
        }
        if self.reader.overdue(now) {
            self.lose(false, silent(), now);
        }
        self.reconnect_due(now);
        if self.next_check <= now {
            self.next_check = now + CHECK_EVERY;
            if !self.checking && self.writer.conn().is_some() {
                self.checking = true;
                self.send_epoch_check();
            }
        }
        self.flush(now);
        self.update_stall(now);
    }

    // ---- mutators -----------------------------------------------------------------------

    /// Appends `payload` to the log (`XADD log * p PAYLOAD` on the next [`RedisLog::flush`]).
    /// Refused past [`MAX_PENDING_APPEND_BYTES`] waiting for Redis.
    pub fn append(&mut self, payload: Bytes) -> Result<(), RedisError> {
        if self.append_bytes + payload.len() > MAX_PENDING_APPEND_BYTES {
            return Err(RedisError::Backlog {
                addr: self.addr.clone(),
                limit: MAX_PENDING_APPEND_BYTES,
            });
        }
        self.append_bytes += payload.len();
        self.appends.push_back(payload);
        self.send_appends();
        Ok(())
    }

    /// Stores `blob` as the snapshot of the log up to and including entry `id`, unless a
    /// snapshot with the same or a newer id is stored, then trims the log below `id`; answered
    /// by [`LogEvent::SnapshotWritten`]. Dropped when the write connection is down or breaks
    /// (snapshots are written again every few seconds); returns whether it was sent.
    ///
    /// Trimming removes every entry before `id`: a node still reading before it would miss
    /// them. Only pass an id every live node has read past.
    pub fn write_snapshot(&mut self, id: StreamId, blob: &[u8]) -> bool {
        let keys = &self.keys;
        let Some(conn) = self.writer.conn() else {
            return false;
        };
        let (ms, seq) = (id.ms.to_string(), id.seq.to_string());
        let args: [&[u8]; 8] = [
            b"EVAL",
            SNAPSHOT_SCRIPT,
            b"2",
            &keys.snapshot,
            &keys.log,
            ms.as_bytes(),
            seq.as_bytes(),
            blob,
        ];
        conn.send(&args, WriteOp::Snapshot(id));
        true
    }

    /// Reads on after `id` instead of where [`RedisLog::connect`] would start (a process that
    /// took over from an upgrade resumes after the last entry the old one applied). Call it
    /// right after `connect`, before the first loop turn.
    pub fn resume_after(&mut self, id: StreamId) {
        if !self.reading {
            self.last_id = id;
        }
    }

    /// Writes the queued commands of both connections (call once per loop turn).
    pub fn flush(&mut self, now: Instant) {
        for writer in [true, false] {
            if let Err(e) = self.flush_link(writer, now) {
                self.lose(writer, Fault::Conn(e), now);
            }
        }
    }

    // ---- outputs ------------------------------------------------------------------------

    /// The next event, in order.
    pub fn poll_event(&mut self) -> Option<LogEvent> {
        self.events.pop_front()
    }
}
