//! This node's side of cluster mode: its events on their way through the log (and the
//! connections that wait for them), the users it re-announces, what it hands the shell, and
//! the log's shared state as far as it has applied it.
//!
//! Everything the node publishes during one loop turn goes into the log as one entry (up to
//! [`MAX_ENTRY_BODIES`] and about [`MAX_ENTRY_BYTES`]): the lines of one read, like a paste or
//! a burst from a bot, are applied by every node in one turn, and their recipients get them in
//! one write, as from a single server.
//!
//! A logged-in connection pipelines: its lines go into the log one after the other without
//! waiting for each to come back (the log keeps their order), up to [`MAX_IN_FLIGHT`]. A
//! reply the node gives at once (`/help`, a usage error) while some of the connection's events
//! are on their way is kept with the last of them and sent when it comes back, so replies stay
//! in the order of the lines. A login or a quit holds the connection's input until it comes
//! back: what follows depends on its outcome.

use super::LogPos;
use super::entry::{self, Header};
use super::nodes::{LogClock, Nodes};
use crate::proto::chat::ConnId;
use crate::proto::names::{Nick, RoomName};
use bytes::{Bytes, BytesMut};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Events of one connection on their way through the log at most; then its input waits.
pub(crate) const MAX_IN_FLIGHT: u32 = 64;
/// Bodies in one entry at most.
pub(crate) const MAX_ENTRY_BODIES: usize = 1024;
/// Bytes of bodies after which an entry takes no more.
pub(crate) const MAX_ENTRY_BYTES: usize = 64 * 1024;

/// An event of this node on its way through the log.
pub(crate) struct InFlight {
    pub(crate) conn: ConnId,
    /// The event's encoded body (published again if the node has to rejoin).
    pub(crate) body: Vec<u8>,
    /// The connection's input waits until this one is back (a login or a quit).
    pub(crate) blocking: bool,
    /// Replies given meanwhile, sent to the connection once this one is back.
    pub(crate) after: BytesMut,
}

/// One connection's events on their way.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Waiting {
    count: u32,
    blocking: u32,
    /// The number of the last one.
    last: u64,
}

/// What one body of an entry this node published is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sent {
    /// The event with this number.
    Event(u64),
    Heartbeat,
    Rejoin,
}

/// Whether this node must start over from the stored snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resync {
    No,
    /// It must; the shell has not been told yet.
    Wanted,
    /// The shell was told (`Output::Resync`) and will call `Chat::handle_cluster_start`.
    Asked,
}

/// A node's cluster state. The shared part (`nodes`, `clock`) is the same on every node at
/// the same log position.
pub(crate) struct Cluster {
    pub(crate) epoch: u32,
    pub(crate) started: bool,
    /// The sequence number of the next entry.
    pub(crate) next_seq: u64,
    /// The last entry handled.
    pub(crate) applied: LogPos,
    pub(crate) clock: LogClock,
    pub(crate) nodes: Nodes,
    next_event: u64,
    /// This node's events not yet back from the log, by number (in the order made).
    in_flight: BTreeMap<u64, InFlight>,
    /// Each connection's share of them.
    waiting: HashMap<ConnId, Waiting>,
    /// Local users taken out of the directory until their rejoin comes back: nickname and room.
    pub(crate) rejoining: BTreeMap<ConnId, (Nick, RoomName)>,
    /// A rejoin is queued or on its way.
    rejoin_pending: bool,
    /// What to publish at the next drain (a heartbeat's or a rejoin's body; an event's is in
    /// `in_flight`).
    pending: VecDeque<(Sent, Vec<u8>)>,
    /// What each published entry carries, by sequence number, until it comes back.
    packed: HashMap<u64, Vec<Sent>>,
    /// A snapshot taken, waiting for every reader to be past it.
    pub(crate) snapshot_due: Option<(LogPos, Bytes)>,
    pub(crate) snapshot_ready: Option<(LogPos, Bytes)>,
    pub(crate) last_snapshot_ms: u64,
    pub(crate) next_heartbeat_ms: u64,
    /// The "chat paused" notice was sent.
    pub(crate) paused: bool,
    /// No new event may start (an upgrade waits for the log to be quiet).
    pub(crate) quiescing: bool,
    pub(crate) quiesced: Vec<ConnId>,
    pub(crate) resync: Resync,
}

impl Cluster {
    pub(crate) fn new() -> Cluster {
        Cluster {
            epoch: 0,
            started: false,
            next_seq: 1,
            applied: LogPos::ZERO,
            clock: LogClock::default(),
            nodes: Nodes::default(),
            next_event: 0,
            in_flight: BTreeMap::new(),
            waiting: HashMap::new(),
            rejoining: BTreeMap::new(),
            rejoin_pending: false,
            pending: VecDeque::new(),
            packed: HashMap::new(),
            snapshot_due: None,
            snapshot_ready: None,
            last_snapshot_ms: 0,
            next_heartbeat_ms: 0,
            paused: false,
            quiescing: false,
            quiesced: Vec::new(),
            resync: Resync::No,
        }
    }

    /// Whether `id` waits for the log (an event on its way, or its rejoin).
    pub(crate) fn is_waiting(&self, id: ConnId) -> bool {
        self.waiting.contains_key(&id) || self.rejoining.contains_key(&id)
    }

    /// Whether `id`'s input must wait for the log: a login or a quit on its way, its rejoin,
    /// or too many events on their way.
    pub(crate) fn blocks(&self, id: ConnId) -> bool {
        self.waiting
            .get(&id)
            .is_some_and(|w| w.blocking > 0 || w.count >= MAX_IN_FLIGHT)
            || self.rejoining.contains_key(&id)
    }

    /// Where a reply to `id` goes when it must wait for `id`'s events on their way.
    pub(crate) fn deferred(&mut self, id: ConnId) -> Option<&mut BytesMut> {
        let last = self.waiting.get(&id)?.last;
        self.in_flight.get_mut(&last).map(|f| &mut f.after)
    }

    pub(crate) fn is_rejoining(&self, id: ConnId) -> bool {
        self.rejoining.contains_key(&id)
    }

    /// Whether anything of this node is on its way through the log (an upgrade must wait).
    pub(crate) fn busy(&self) -> bool {
        !self.started
            || self.resync != Resync::No
            || !self.in_flight.is_empty()
            || self.rejoin_pending
    }

    pub(crate) fn publishing(&self) -> bool {
        self.started && self.resync == Resync::No
    }

    /// Queues an event of connection `conn` (blocking its input until it is back, or not); it
    /// is kept until it comes back from the log.
    pub(crate) fn queue_event(&mut self, conn: ConnId, blocking: bool, body: Vec<u8>) {
        let n = self.next_event;
        self.next_event += 1;
        let w = self.waiting.entry(conn).or_default();
        w.count += 1;
        w.blocking += u32::from(blocking);
        w.last = n;
        let f = InFlight {
            conn,
            body,
            blocking,
            after: BytesMut::new(),
        };
        self.in_flight.insert(n, f);
        self.pending.push_back((Sent::Event(n), Vec::new()));
    }

    /// Queues a heartbeat.
    pub(crate) fn queue_heartbeat(&mut self, body: Vec<u8>) {
        self.pending.push_back((Sent::Heartbeat, body));
    }

    /// Starts publishing afresh with a rejoin, then every event still on its way, in order
    /// (anything queued or published before is void).
    pub(crate) fn queue_rejoin(&mut self, body: Vec<u8>) {
        self.pending.clear();
        self.packed.clear();
        self.rejoin_pending = true;
        self.pending.push_back((Sent::Rejoin, body));
        for &n in self.in_flight.keys() {
            self.pending.push_back((Sent::Event(n), Vec::new()));
        }
    }

    /// Forgets what was queued or published for another log (the node starts over).
    pub(crate) fn forget_published(&mut self) {
        self.pending.clear();
        self.packed.clear();
        self.rejoin_pending = false;
    }

    /// Packs what is queued into the next entry for the log, if anything is (and the node
    /// may publish).
    pub(crate) fn pack(&mut self, node: u32) -> Option<Bytes> {
        if !self.publishing() {
            // Kept in `in_flight`: published again once the node may.
            self.pending.clear();
            return None;
        }
        let mut sent = Vec::new();
        let mut bodies: Vec<&[u8]> = Vec::new();
        let mut size = 0;
        for (what, body) in &self.pending {
            let body = match what {
                Sent::Event(n) => self.in_flight.get(n).map_or(&[][..], |f| f.body.as_slice()),
                _ => body.as_slice(),
            };
            if !sent.is_empty() && (sent.len() >= MAX_ENTRY_BODIES || size >= MAX_ENTRY_BYTES) {
                break;
            }
            size += body.len();
            sent.push(*what);
            bodies.push(body);
        }
        if sent.is_empty() {
            return None;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let header = Header {
            epoch: self.epoch,
            node,
            seq,
        };
        let entry = Bytes::from(entry::encode(header, &bodies));
        self.pending.drain(..sent.len());
        self.packed.insert(seq, sent);
        Some(entry)
    }

    /// Entry `seq` of this node came back: what its bodies are.
    pub(crate) fn unpack(&mut self, seq: u64) -> Vec<Sent> {
        self.packed.remove(&seq).unwrap_or_default()
    }

    /// Event `n` of this node came back: its connection and the replies kept for it.
    pub(crate) fn event_back(&mut self, n: u64) -> Option<(ConnId, BytesMut)> {
        let f = self.in_flight.remove(&n)?;
        if let Some(w) = self.waiting.get_mut(&f.conn) {
            w.count -= 1;
            w.blocking -= u32::from(f.blocking);
            if w.count == 0 {
                self.waiting.remove(&f.conn);
            }
        }
        Some((f.conn, f.after))
    }

    /// The rejoin came back: the connections that waited for it and need not wait any more.
    pub(crate) fn rejoin_back(&mut self) -> Vec<ConnId> {
        self.rejoin_pending = false;
        let mut done: Vec<ConnId> = std::mem::take(&mut self.rejoining).into_keys().collect();
        done.retain(|&id| !self.blocks(id));
        done
    }
}
