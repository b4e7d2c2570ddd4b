//! This node's side of cluster mode: its events on their way through the log (and the
//! connections that wait for them), the users it re-announces, what it hands the shell, and
//! the log's shared state as far as it has applied it.

use super::LogPos;
use super::entry::{self, Header};
use super::nodes::{LogClock, Nodes};
use crate::proto::chat::ConnId;
use crate::proto::names::{Nick, RoomName};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap, VecDeque};

/// An event of this node on its way through the log.
pub(crate) struct InFlight {
    pub(crate) conn: ConnId,
    /// The entry as published (shared with the publish queue).
    pub(crate) entry: Bytes,
}

/// Whether this node must start over from the stored snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resync {
    No,
    /// It must; the shell has not been told yet.
    Wanted,
    /// The shell was told ([`Output::Resync`]) and will call [`Chat::handle_cluster_start`].
    Asked,
}

/// A node's cluster state. The shared part (`nodes`, `clock`) is the same on every node at
/// the same log position.
pub(crate) struct Cluster {
    pub(crate) epoch: u32,
    pub(crate) started: bool,
    pub(crate) next_seq: u64,
    /// The last entry handled.
    pub(crate) applied: LogPos,
    pub(crate) clock: LogClock,
    pub(crate) nodes: Nodes,
    /// This node's events not yet back from the log, by sequence number.
    pub(crate) in_flight: BTreeMap<u64, InFlight>,
    /// How many of them each connection has.
    pub(crate) waiting: HashMap<ConnId, u32>,
    /// Local users taken out of the directory until their rejoin comes back: nickname and room.
    pub(crate) rejoining: BTreeMap<ConnId, (Nick, RoomName)>,
    pub(crate) rejoin_seq: Option<u64>,
    pub(crate) publish: VecDeque<Bytes>,
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
            in_flight: BTreeMap::new(),
            waiting: HashMap::new(),
            rejoining: BTreeMap::new(),
            rejoin_seq: None,
            publish: VecDeque::new(),
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

    pub(crate) fn is_rejoining(&self, id: ConnId) -> bool {
        self.rejoining.contains_key(&id)
    }

    /// Whether anything of this node is on its way through the log (an upgrade must wait).
    pub(crate) fn busy(&self) -> bool {
        !self.started
            || self.resync != Resync::No
            || !self.in_flight.is_empty()
            || !self.publish.is_empty()
            || self.rejoin_seq.is_some()
    }

    pub(crate) fn publishing(&self) -> bool {
        self.started && self.resync == Resync::No
    }

    /// Gives `body` the next sequence number and queues it for the log (kept back while the
    /// node cannot publish); an event of connection `conn` is kept until it comes back.
    pub(crate) fn queue(&mut self, node: u32, conn: Option<ConnId>, body: &[u8]) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let header = Header {
            epoch: self.epoch,
            node,
            seq,
        };
        let entry = Bytes::from(entry::encode(header, body));
        if self.publishing() {
            self.publish.push_back(entry.clone());
        }
        if let Some(conn) = conn {
            *self.waiting.entry(conn).or_default() += 1;
            self.in_flight.insert(seq, InFlight { conn, entry });
        }
        seq
    }

    /// Queues every event still on its way again, in order, under new sequence numbers.
    pub(crate) fn republish(&mut self, node: u32) {
        let old = std::mem::take(&mut self.in_flight);
        self.waiting.clear();
        for f in old.into_values() {
            // Our own entries always have a header that decodes.
            if let Ok((_, body)) = entry::decode_header(&f.entry) {
                self.queue(node, Some(f.conn), body);
            }
        }
    }

    /// Event `seq` of this node came back: returns its connection if it waits no more.
    pub(crate) fn back(&mut self, seq: u64) -> Vec<ConnId> {
        let mut done = Vec::new();
        if let Some(f) = self.in_flight.remove(&seq) {
            if let Some(n) = self.waiting.get_mut(&f.conn) {
                *n -= 1;
                if *n == 0 {
                    self.waiting.remove(&f.conn);
                }
            }
            done.push(f.conn);
        }
        if self.rejoin_seq == Some(seq) {
            self.rejoin_seq = None;
            done.extend(std::mem::take(&mut self.rejoining).into_keys());
        }
        done.retain(|&id| !self.is_waiting(id));
        done
    }
}
