//! Cluster mode's shell: the Redis log ([`RedisLog`]) between the core and Redis, driven from
//! the poll loop.
//!
//! It owns the log and its two tokens, hands the log's events to the core (entries, stalls,
//! a restart of Redis), hands the core's entries ([`Output::Publish`]) to the log in order
//! (keeping them itself while the log's backlog is full), stores the core's snapshots, and
//! connects afresh when the core asks ([`Output::Resync`]) or Redis restarted empty: a fresh
//! connection brings a new node id, the stored snapshot, and reading from it.
//!
//! [`Output::Publish`]: crate::proto::chat::Output::Publish
//! [`Output::Resync`]: crate::proto::chat::Output::Resync

use super::event_loop::Server;
use super::log::{Level, log};
use super::redis::{LogEvent, RedisError, RedisLog, Start, StreamId};
use crate::proto::chat::snapshot::SnapshotError;
use crate::proto::chat::{Chat, ClusterStart, LogPos, Output};
use bytes::Bytes;
use mio::{Registry, Token};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use thiserror::Error;

/// The token of the log's write connection.
pub(super) const REDIS_WRITE_TOKEN: Token = Token(usize::MAX - 2);
/// The token of the log's read connection.
pub(super) const REDIS_READ_TOKEN: Token = Token(usize::MAX - 3);
/// How long to wait before connecting afresh again after a failed attempt.
const RECONNECT_RETRY: Duration = Duration::from_secs(1);

/// Why a node could not join its cluster.
#[derive(Debug, Error)]
pub enum ClusterError {
    /// Redis could not be reached or answered wrongly (the message names the address).
    #[error("{0}")]
    Redis(#[from] RedisError),
    /// The stored snapshot of the cluster's directory could not be read.
    #[error("cannot read the cluster's stored snapshot at {addr}: {source}")]
    Snapshot {
        /// The Redis address, as given.
        addr: String,
        /// Why.
        source: SnapshotError,
    },
}

/// The node's link to its cluster.
pub(super) struct ClusterLink {
    log: RedisLog,
    addr: String,
    name: String,
    /// Entries the log refused because its backlog was full: appended, in order, later.
    overflow: VecDeque<Bytes>,
    /// Set while connecting afresh failed: when to try again.
    retry_at: Option<Instant>,
}

impl ClusterLink {
    /// Joins cluster `name` at `addr` (blocking at most 4 s): a node id, the stored snapshot,
    /// and reading after it.
    pub(super) fn connect(
        addr: &str,
        name: &str,
        registry: &Registry,
        chat: &mut Chat,
        now: Instant,
    ) -> Result<ClusterLink, ClusterError> {
        let (log, start) = open(addr, name, registry, now)?;
        let link = ClusterLink::from_log(log, addr, name);
        link.start(chat, &start)?;
        Ok(link)
    }

    /// Joins again in a process that took over from an upgrade: reading resumes after the
    /// last entry the core applied (or starts over, if Redis restarted empty meanwhile).
    pub(super) fn resume(
        addr: &str,
        name: &str,
        registry: &Registry,
        chat: &mut Chat,
        now: Instant,
    ) -> Result<ClusterLink, ClusterError> {
        let (mut log, start) = open(addr, name, registry, now)?;
        let same_epoch = chat.log_epoch() == Some(epoch_tag(log.epoch()));
        let link = match chat.log_position() {
            Some(at) if same_epoch => {
                log.resume_after(stream_id(at));
                ClusterLink::from_log(log, addr, name)
            }
            _ => {
                let link = ClusterLink::from_log(log, addr, name);
                link.start(chat, &start)?;
                link
            }
        };
        Ok(link)
    }

    fn from_log(log: RedisLog, addr: &str, name: &str) -> ClusterLink {
        ClusterLink {
            log,
            addr: addr.to_owned(),
            name: name.to_owned(),
            overflow: VecDeque::new(),
            retry_at: None,
        }
    }

    /// Hands what a fresh connection learned to the core.
    fn start(&self, chat: &mut Chat, start: &Start) -> Result<(), ClusterError> {
        let node = u32::try_from(start.node_id).unwrap_or(u32::MAX);
        let snapshot = start
            .snapshot
            .as_ref()
            .map(|(id, blob)| (log_pos(*id), blob.as_ref()));
        chat.handle_cluster_start(ClusterStart {
            node,
            epoch: epoch_tag(self.log.epoch()),
            snapshot,
        })
        .map_err(|source| ClusterError::Snapshot {
            addr: self.addr.clone(),
            source,
        })?;
        log!(
            Level::Info,
            "cluster {}: node {node} at {}{}",
            self.name,
            self.addr,
            start
                .snapshot
                .as_ref()
                .map_or(String::new(), |(id, _)| format!(", reading after {id}"))
        );
        Ok(())
    }

    /// Whether `token` is one of the log's.
    pub(super) fn owns(token: Token) -> bool {
        token == REDIS_WRITE_TOKEN || token == REDIS_READ_TOKEN
    }

    pub(super) fn handle_ready(&mut self, token: Token, now: Instant) {
        self.log.handle_ready(token, now);
    }

    /// Reads both connections as if they were ready (readiness that arrived while the loop
    /// did not look, during a frozen upgrade, was not acted on: epoll is edge-triggered).
    pub(super) fn poke(&mut self, now: Instant) {
        self.log.handle_ready(REDIS_WRITE_TOKEN, now);
        self.log.handle_ready(REDIS_READ_TOKEN, now);
    }

    /// When [`ClusterLink::handle_timeout`] is next needed.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        [self.log.next_deadline(), self.retry_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// Moves the log on (reconnects, epoch checks, stalls) and retries a fresh connection
    /// that failed.
    pub(super) fn handle_timeout(&mut self, chat: &mut Chat, registry: &Registry, now: Instant) {
        if self.log.next_deadline().is_some_and(|d| d <= now) {
            self.log.handle_timeout(now);
        }
        if self.retry_at.is_some_and(|t| t <= now) {
            self.reconnect(chat, registry, now);
        }
    }

    /// The log's next event for the core.
    pub(super) fn next_event(&mut self) -> Option<LogEvent> {
        self.log.poll_event()
    }

    /// Hands a log event that is not an entry to the core (or acts on it).
    pub(super) fn on_event(
        &mut self,
        event: LogEvent,
        chat: &mut Chat,
        registry: &Registry,
        now: Instant,
    ) {
        match event {
            LogEvent::Entry { id, payload } => {
                if let Err(e) = chat.handle_entry(log_pos(id), &payload) {
                    log!(Level::Warn, "cluster: entry {id} skipped: {e}");
                }
            }
            LogEvent::Stalled => {
                log!(
                    Level::Warn,
                    "cluster: Redis at {} does not answer",
                    self.addr
                );
                chat.handle_log_stalled();
            }
            LogEvent::Resumed => {
                log!(Level::Info, "cluster: Redis at {} answers again", self.addr);
                chat.handle_log_resumed();
            }
            LogEvent::Restarted => {
                log!(
                    Level::Warn,
                    "cluster: Redis at {} restarted empty; joining again",
                    self.addr
                );
                self.reconnect(chat, registry, now);
            }
            LogEvent::SnapshotWritten { id, stored } => {
                log!(Level::Debug, "cluster: snapshot at {id} stored: {stored}");
            }
            LogEvent::Warning(e) => log!(Level::Warn, "cluster: {e}"),
        }
    }

    /// Appends one of the core's entries (in order, after any the log refused before).
    pub(super) fn publish(&mut self, payload: Bytes) {
        self.overflow.push_back(payload);
        self.move_overflow();
    }

    /// Stores a snapshot of the directory taken after entry `at`.
    pub(super) fn store_snapshot(&mut self, at: LogPos, blob: &[u8]) {
        let id = stream_id(at);
        if !self.log.write_snapshot(id, blob) {
            log!(
                Level::Debug,
                "cluster: snapshot at {id} dropped (Redis away)"
            );
        }
    }

    /// Writes everything queued (once per loop turn).
    pub(super) fn flush(&mut self, now: Instant) {
        self.move_overflow();
        self.log.flush(now);
    }

    /// Whether entries of this node wait to be stored in Redis.
    pub(super) fn pending(&self) -> bool {
        !self.overflow.is_empty() || self.log.pending_append_bytes() > 0
    }

    /// Connects afresh (the core missed entries, or Redis restarted empty): a new node id,
    /// the stored snapshot, reading after it. On failure the old log stays and it is tried
    /// again in a second.
    pub(super) fn reconnect(&mut self, chat: &mut Chat, registry: &Registry, now: Instant) {
        self.retry_at = None;
        match open(&self.addr, &self.name, registry, now) {
            Ok((log, start)) => {
                // The old connections close with the old log; entries it had not stored are
                // published again by the core after its rejoin.
                self.log = log;
                self.overflow.clear();
                if let Err(e) = self.start(chat, &start) {
                    log!(Level::Error, "cluster: {e}; trying again");
                    self.retry_at = Some(now + RECONNECT_RETRY);
                }
            }
            Err(e) => {
                log!(Level::Warn, "cluster: cannot join again: {e}; trying again");
                self.retry_at = Some(now + RECONNECT_RETRY);
            }
        }
    }

    fn move_overflow(&mut self) {
        while let Some(payload) = self.overflow.front() {
            match self.log.append(payload.clone()) {
                Ok(()) => {
                    self.overflow.pop_front();
                }
                Err(_) => return,
            }
        }
    }
}

/// The core's name for a Redis stream id (the core knows a log, not Redis).
fn log_pos(id: StreamId) -> LogPos {
    LogPos {
        ms: id.ms,
        seq: id.seq,
    }
}

/// The Redis stream id of a position in the core's log.
fn stream_id(at: LogPos) -> StreamId {
    StreamId {
        ms: at.ms,
        seq: at.seq,
    }
}

impl Server {
    /// The log's part of a loop turn: its timers, then its events into the core (writing
    /// early when they queue a lot of output).
    pub(super) fn pump_log(&mut self, now: Instant) {
        if let Some(link) = &mut self.cluster
            && link.next_deadline().is_some_and(|d| d <= now)
        {
            link.handle_timeout(&mut self.chat, self.poll.registry(), now);
        }
        loop {
            let Some(link) = &mut self.cluster else {
                return;
            };
            let Some(event) = link.next_event() else {
                return;
            };
            link.on_event(event, &mut self.chat, self.poll.registry(), now);
            self.drain_if_full(now);
        }
    }

    /// Carries out a cluster output of the core (see the drain rule).
    pub(super) fn cluster_output(&mut self, output: Output, now: Instant) {
        let Some(link) = &mut self.cluster else {
            return;
        };
        match output {
            Output::Publish(entry) => link.publish(entry),
            Output::StoreSnapshot { at, blob } => link.store_snapshot(at, &blob),
            Output::Resync => {
                log!(
                    Level::Warn,
                    "cluster: entries were trimmed before this node read them; joining again"
                );
                link.reconnect(&mut self.chat, self.poll.registry(), now);
            }
            _ => {}
        }
    }
}

/// Opens the log. The old log's tokens are reused: mio forgets a socket once it is closed.
fn open(
    addr: &str,
    name: &str,
    registry: &Registry,
    now: Instant,
) -> Result<(RedisLog, Start), RedisError> {
    RedisLog::connect(
        addr,
        name,
        registry,
        REDIS_WRITE_TOKEN,
        REDIS_READ_TOKEN,
        now,
    )
}

/// A short tag of the log's epoch for the entries (the epoch value is 32 random hex digits:
/// the first 8 of them; anything else is folded with FNV-1a).
pub(super) fn epoch_tag(epoch: &[u8]) -> u32 {
    let hex = epoch
        .get(..8)
        .and_then(|h| std::str::from_utf8(h).ok())
        .and_then(|h| u32::from_str_radix(h, 16).ok());
    hex.unwrap_or_else(|| {
        epoch.iter().fold(0x811c_9dc5, |h: u32, &b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_tags_come_from_the_random_value() {
        assert_eq!(epoch_tag(b"0badf00d0123456789abcdef01234567"), 0x0bad_f00d);
        assert_ne!(epoch_tag(b"not hex at all"), epoch_tag(b"not hex at alm"));
    }
}
