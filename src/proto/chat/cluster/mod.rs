//! Cluster mode: every node applies the same events in the order of one shared log.
//!
//! In cluster mode an event is not applied when it is made: it is encoded (`entry`), and
//! everything a node makes in one loop turn goes to the shell as one entry
//! ([`Output::Publish`]), which appends it to the log. Every node reads every entry back in log
//! order ([`Chat::handle_entry`]) and applies its events, so every node decides the same and
//! holds the same directory; each writes only to its own connections. A connection's lines
//! keep their order: the log keeps it, a reply given at once waits behind the connection's
//! events on their way, and a login or a quit holds the input that follows (`node`).
//!
//! Around the events, the log also carries:
//! - **heartbeats**, once a second from every node, saying how far it has read. A node silent
//!   for more than 10 s of log time is gone (`nodes`): every node removes its users at the
//!   same entry, in the same order.
//! - **rejoins**: a node that sees its own death applied (it was stopped, or cut off from
//!   Redis), or whose log started over (Redis restarted empty, or it read past a gap),
//!   re-announces its users; a user whose nickname was taken meanwhile becomes a guest.
//!
//! Entries from each node carry a sequence number: a duplicate (Redis may store a re-sent
//! append twice) is skipped, and a missing one means the reader fell behind a trim and must
//! start over from the stored snapshot ([`Output::Resync`]). The lowest live node snapshots the
//! directory every few seconds ([`Output::StoreSnapshot`]), once every reader is past it.

mod entry;
mod node;
mod nodes;
mod rejoin;
mod state;

pub use entry::{ENTRY_VERSION, EntryError};
pub(super) use node::Cluster;
use node::{Resync, Sent};
pub(super) use state::ClusterV1;

use super::event::Event;
use super::session::Hold;
use super::timers::TimerKind;
use super::{Chat, ConnId, Output};
use crate::proto::names::{Nick, RoomName};
use crate::proto::reply;
use bytes::{BufMut, Bytes};
use entry::Body;
use nodes::Admit;
use std::collections::BTreeMap;

/// How often a node says it is alive (core clock).
const HEARTBEAT_EVERY_MS: u64 = 1_000;
/// How often (log time) the lowest live node snapshots the directory.
const SNAPSHOT_EVERY_MS: u64 = 5_000;

/// A position in the shared log: the id the log gave an entry (for Redis, `ms` is its clock).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogPos {
    /// Milliseconds.
    pub ms: u64,
    /// Sequence among entries of the same millisecond.
    pub seq: u64,
}

impl LogPos {
    /// Before every entry.
    pub const ZERO: LogPos = LogPos { ms: 0, seq: 0 };
}

/// What the shell learned when it connected to the log (at start, when the log started over,
/// or to read on after falling behind).
#[derive(Debug, Clone, Copy)]
pub struct ClusterStart<'a> {
    /// This node's id in the log, unique in its epoch (never 0).
    pub node: u32,
    /// A tag of the log's epoch: entries written for another epoch are ignored.
    pub epoch: u32,
    /// The stored directory snapshot and the position it was taken at; reading goes on
    /// after it.
    pub snapshot: Option<(LogPos, &'a [u8])>,
}

impl Chat {
    // ---- the shell's side ----

    /// Connected to the log (at start, or again after [`Output::Resync`] or when the log
    /// started over): takes the node id and the epoch, loads the stored snapshot (from this
    /// epoch) as the directory, and re-announces this node's logged-in users, if it has any.
    /// A standalone core ignores it.
    pub fn handle_cluster_start(
        &mut self,
        start: ClusterStart<'_>,
    ) -> Result<(), super::snapshot::SnapshotError> {
        let Some(c) = &self.cluster else {
            return Ok(());
        };
        let restored = match start.snapshot {
            Some((at, blob)) => {
                let d = state::decode_directory(blob)?;
                (d.epoch == start.epoch).then_some((at, d))
            }
            None => None,
        };
        let same_log = c.started && c.epoch == start.epoch;
        let previous = (same_log && self.settings.node != start.node).then_some(self.settings.node);
        let users = self.local_users();
        let guests = self.directory.guests();
        self.settings.node = start.node;
        let (at, log) = self.restore_directory(restored)?;
        let Some(c) = &mut self.cluster else {
            return Ok(());
        };
        c.epoch = start.epoch;
        c.started = true;
        c.next_seq = 1;
        c.applied = at;
        c.clock = log.clock;
        c.nodes = log.nodes;
        c.resync = Resync::No;
        c.rejoining = users;
        c.forget_published();
        c.snapshot_due = None;
        c.last_snapshot_ms = at.ms;
        c.next_heartbeat_ms = self.now_ms;
        let announce = !c.rejoining.is_empty() || previous.is_some() || c.busy();
        if announce {
            self.announce(previous, guests);
        }
        self.handle_log_resumed();
        Ok(())
    }

    /// Applies the entry at `at` of the log (entries come in log order, each once). An entry
    /// that cannot be read is skipped and reported; it still counts in its author's sequence.
    pub fn handle_entry(&mut self, at: LogPos, payload: &[u8]) -> Result<(), EntryError> {
        let Some(c) = &mut self.cluster else {
            return Ok(());
        };
        if !c.started || c.resync != Resync::No || at <= c.applied {
            return Ok(());
        }
        c.applied = at;
        if c.paused {
            // Redis answers: users hear of it before anything it brings.
            self.handle_log_resumed();
        }
        let Some(c) = &mut self.cluster else {
            return Ok(());
        };
        let (header, rest) = entry::decode_header(payload)?;
        if header.epoch != c.epoch {
            return Ok(());
        }
        c.clock.advance(at.ms);
        let now = c.clock.now;
        let admit = c.nodes.admit(
            header.node,
            header.seq,
            now,
            entry::starts_with_rejoin(rest),
        );
        if admit == Admit::Gap {
            c.resync = Resync::Wanted;
            return Ok(());
        }
        for node in c.nodes.expire(now) {
            self.node_gone(node);
        }
        let own = header.node == self.settings.node;
        let sent = match &mut self.cluster {
            Some(c) if own => c.unpack(header.seq),
            _ => Vec::new(),
        };
        let result = match admit {
            Admit::Apply => self.apply_bodies(header.node, rest, &sent),
            _ => Ok(()),
        };
        self.after_entry(at);
        self.finish();
        result
    }

    /// Redis has not answered for a while: logged-in users are told the chat is paused.
    pub fn handle_log_stalled(&mut self) {
        let Some(c) = &mut self.cluster else {
            return;
        };
        if !std::mem::replace(&mut c.paused, true) {
            self.tell_all(true, reply::chat_paused);
            self.finish();
        }
    }

    /// Redis answers again: logged-in users are told the chat goes on.
    pub fn handle_log_resumed(&mut self) {
        let Some(c) = &mut self.cluster else {
            return;
        };
        if std::mem::replace(&mut c.paused, false) {
            self.tell_all(true, reply::chat_resumed);
            self.finish();
        }
    }

    /// Stops (or lets go on) starting new events: an upgrade waits until nothing is on its way
    /// through the log ([`Chat::log_busy`]) before it exports the state.
    pub fn set_quiescing(&mut self, on: bool) {
        let Some(c) = &mut self.cluster else {
            return;
        };
        c.quiescing = on;
        if !on {
            for id in std::mem::take(&mut c.quiesced) {
                self.resume_after_log(id);
            }
            self.finish();
        }
    }

    /// Whether an event of this node is on its way through the log.
    pub fn log_busy(&self) -> bool {
        self.cluster.as_ref().is_some_and(Cluster::busy)
    }

    /// The last entry handled (in cluster mode): reading resumes after it.
    pub fn log_position(&self) -> Option<LogPos> {
        self.cluster.as_ref().map(|c| c.applied)
    }

    /// The epoch tag of the log this node reads (in cluster mode, once started).
    pub fn log_epoch(&self) -> Option<u32> {
        self.cluster.as_ref().filter(|c| c.started).map(|c| c.epoch)
    }

    /// The directory and the log's shared state, encoded as the cluster's snapshot: every node
    /// that has applied the same entries gives the same bytes.
    pub fn cluster_directory(&self) -> Option<Vec<u8>> {
        let c = self.cluster.as_ref()?;
        Some(self.encode_directory(c.applied, c.epoch, c.clock, &c.nodes))
    }

    // ---- internals ----

    /// Hands an event to the log: it is applied when it comes back.
    pub(super) fn publish_event(&mut self, event: Event<'_>) {
        if let Some(c) = &mut self.cluster {
            // What follows a login or a quit depends on its outcome: the input waits for it.
            let blocking = matches!(
                event,
                Event::Login { .. } | Event::Quit { .. } | Event::Leave { .. }
            );
            let conn = event.origin().conn;
            c.queue_event(conn, blocking, entry::event_body(&event));
        }
    }

    /// The next output of cluster mode, if any.
    pub(super) fn poll_cluster(&mut self) -> Option<Output> {
        let node = self.settings.node;
        let c = self.cluster.as_mut()?;
        if let Some(payload) = c.pack(node) {
            return Some(Output::Publish(payload));
        }
        if let Some((at, blob)) = c.snapshot_ready.take() {
            return Some(Output::StoreSnapshot { at, blob });
        }
        if c.resync == Resync::Wanted {
            c.resync = Resync::Asked;
            return Some(Output::Resync);
        }
        None
    }

    /// Sends a heartbeat when one is due.
    pub(super) fn heartbeat(&mut self) {
        let now_ms = self.now_ms;
        let Some(c) = &mut self.cluster else {
            return;
        };
        if c.started && c.next_heartbeat_ms <= now_ms {
            c.next_heartbeat_ms = now_ms + HEARTBEAT_EVERY_MS;
            if c.publishing() {
                c.queue_heartbeat(entry::heartbeat_body(c.applied));
            }
        }
    }

    /// When the next heartbeat is due (core clock).
    pub(super) fn heartbeat_ms(&self) -> Option<u64> {
        self.cluster
            .as_ref()
            .filter(|c| c.started)
            .map(|c| c.next_heartbeat_ms)
    }

    /// Whether input of `id` must not be processed now (held with [`Hold::Event`]); records
    /// it to go on later when that is because of quiescing.
    pub(super) fn log_holds(&mut self, id: ConnId) -> bool {
        let Some(c) = &mut self.cluster else {
            return false;
        };
        if c.quiescing && !c.blocks(id) {
            c.quiesced.push(id);
        }
        c.quiescing || c.blocks(id)
    }

    /// A connection that waited for the log may go on: its held input is processed, unless
    /// flood control or another wait still holds it.
    pub(super) fn resume_after_log(&mut self, id: ConnId) {
        let (rate, burst, now) = (self.settings.rate, self.settings.burst, self.now_ms);
        let Some(s) = self.sessions.open_mut(id) else {
            return;
        };
        if s.hold != Hold::Event {
            return;
        }
        if s.bucket.ready(rate, burst, now) {
            self.release_held_input(id);
        } else {
            s.hold = Hold::Rate;
            let at = now + s.bucket.wait_ms(rate, burst, now);
            self.timers.push(at, id, TimerKind::Rate);
        }
    }

    /// Applies the bodies of an entry of `node`, in order; when the entry is this node's, what
    /// each body was (`sent`) comes back after it.
    fn apply_bodies(&mut self, node: u32, rest: &[u8], sent: &[Sent]) -> Result<(), EntryError> {
        for (i, body) in entry::bodies(node, rest).enumerate() {
            match body? {
                Body::Event(event) => self.apply(event),
                Body::Heartbeat { applied } => {
                    if let Some(c) = &mut self.cluster {
                        c.nodes.set_applied(node, applied);
                    }
                }
                Body::Rejoin(rejoin) => self.apply_rejoin(node, rejoin),
            }
            if let Some(&what) = sent.get(i) {
                self.own_body_back(what);
            }
        }
        Ok(())
    }

    /// One body of this node's came back: the replies kept for it go out, and connections
    /// that waited for it go on.
    fn own_body_back(&mut self, what: Sent) {
        let Some(c) = &mut self.cluster else {
            return;
        };
        match what {
            Sent::Event(n) => {
                let Some((id, after)) = c.event_back(n) else {
                    return;
                };
                let go_on = !c.blocks(id);
                if !after.is_empty() {
                    self.outbox.send(id, |b| b.put_slice(&after));
                }
                if go_on {
                    self.resume_after_log(id);
                }
            }
            Sent::Rejoin => {
                for id in c.rejoin_back() {
                    self.resume_after_log(id);
                }
            }
            Sent::Heartbeat => {}
        }
    }

    /// A reply to `id` that needs nothing shared: sent now, or, while events of `id` are on
    /// their way through the log, once the last of them is back (replies keep the order of
    /// the lines).
    pub(super) fn reply_local(&mut self, id: ConnId, f: impl FnOnce(&mut bytes::BytesMut)) {
        if let Some(kept) = self.cluster.as_mut().and_then(|c| c.deferred(id)) {
            f(kept);
        } else {
            self.outbox.send(id, f);
        }
    }

    /// After an entry: the lowest live node takes a snapshot when one is due, and hands it
    /// out once every reader is past it.
    fn after_entry(&mut self, at: LogPos) {
        let node = self.settings.node;
        let Some(c) = &self.cluster else {
            return;
        };
        let due = c.snapshot_due.is_none()
            && c.nodes.lowest_live() == Some(node)
            && at.ms >= c.last_snapshot_ms + SNAPSHOT_EVERY_MS;
        if due {
            let blob = Bytes::from(self.encode_directory(at, c.epoch, c.clock, &c.nodes));
            if let Some(c) = &mut self.cluster {
                c.last_snapshot_ms = at.ms;
                c.snapshot_due = Some((at, blob));
            }
        }
        if let Some(c) = &mut self.cluster
            && c.snapshot_due
                .as_ref()
                .is_some_and(|(at, _)| c.nodes.all_read(*at, c.clock.now))
        {
            c.snapshot_ready = c.snapshot_due.take();
        }
    }

    /// This node's logged-in users (open sessions), with those already waiting to rejoin.
    fn local_users(&mut self) -> BTreeMap<ConnId, (Nick, RoomName)> {
        let mut users = self
            .cluster
            .as_mut()
            .map(|c| std::mem::take(&mut c.rejoining))
            .unwrap_or_default();
        let dir = &self.directory;
        for (id, s) in self.sessions.iter() {
            let user = dir.find(self.origin_of(id)).and_then(|u| dir.user(u));
            if let Some(user) = user.filter(|_| s.is_open())
                && let Some(room) = dir.room(user.room)
            {
                users.insert(id, (user.nick, room.name));
            }
        }
        users.retain(|&id, _| self.sessions.is_open(id));
        users
    }
}
