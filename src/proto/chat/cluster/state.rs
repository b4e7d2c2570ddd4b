//! The cluster's state as transfer structs: the directory snapshot stored beside the log (a
//! node that starts later loads it and reads on after its position), and a node's own part of
//! an upgrade's state.
//!
//! # Directory snapshot format
//! Four bytes `NATD`, the format version as a little-endian `u32` ([`DIRECTORY_VERSION`]),
//! then [`DirectoryV1`] encoded with postcard: the log's epoch tag and the position the
//! snapshot was taken at, the rooms (the default room first, then by name, each with its
//! members in join order), the guest counter, and the log's shared state (its clock and every
//! node's sequence number, liveness and read position), which is what a node needs to apply
//! the entries after it exactly as every other node does. Every node that applied the same
//! entries encodes the same bytes.

use super::nodes::{LogClock, NodeState, Nodes, Status};
use super::{Cluster, LogPos};
use crate::proto::chat::Chat;
use crate::proto::chat::directory::Directory;
use crate::proto::chat::snapshot::{RoomV1, SnapshotError, header, rooms_from_v1, split_header};
use serde::{Deserialize, Serialize};

/// The version of the directory snapshot this program writes and reads.
pub(super) const DIRECTORY_VERSION: u32 = 1;

const MAGIC: &[u8; 4] = b"NATD";

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
enum StatusV1 {
    Live,
    Gone,
    Retired,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
struct NodeV1 {
    id: u32,
    status: StatusV1,
    last_seq: u64,
    last_ms: u64,
    applied_ms: u64,
    applied_seq: u64,
}

/// The log's state that every node shares.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct LogV1 {
    clock_ms: u64,
    last_entry_ms: u64,
    nodes: Vec<NodeV1>,
}

/// The directory snapshot.
#[derive(Serialize, Deserialize, Debug)]
pub(super) struct DirectoryV1 {
    pub(super) epoch: u32,
    at_ms: u64,
    at_seq: u64,
    rooms: Vec<RoomV1>,
    guests: u64,
    log: LogV1,
}

/// A cluster node's own state in an upgrade (nothing may be on its way through the log).
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct ClusterV1 {
    node: u32,
    epoch: u32,
    next_seq: u64,
    applied_ms: u64,
    applied_seq: u64,
    last_snapshot_ms: u64,
    log: LogV1,
}

impl ClusterV1 {
    pub(crate) fn node(&self) -> u32 {
        self.node
    }
}

/// The log's shared state, restored.
pub(super) struct LogState {
    pub(super) clock: LogClock,
    pub(super) nodes: Nodes,
}

/// Decodes a directory snapshot.
pub(super) fn decode_directory(blob: &[u8]) -> Result<DirectoryV1, SnapshotError> {
    let (version, body) = split_header(blob, MAGIC)?;
    if version != DIRECTORY_VERSION {
        return Err(SnapshotError::Version(version));
    }
    Ok(postcard::from_bytes(body)?)
}

impl Chat {
    /// Encodes the directory and the log's shared state as a snapshot taken at `at`.
    pub(super) fn encode_directory(
        &self,
        at: LogPos,
        epoch: u32,
        clock: LogClock,
        nodes: &Nodes,
    ) -> Vec<u8> {
        let snapshot = DirectoryV1 {
            epoch,
            at_ms: at.ms,
            at_seq: at.seq,
            rooms: self.rooms_v1(),
            guests: self.directory.guests(),
            log: log_v1(clock, nodes),
        };
        // Encoding into a Vec cannot fail for these types.
        postcard::to_extend(&snapshot, header(MAGIC, DIRECTORY_VERSION)).unwrap_or_default()
    }

    /// Makes the directory the snapshot's (at its position), or an empty one; returns the
    /// position reading goes on after and the log's shared state.
    pub(super) fn restore_directory(
        &mut self,
        restored: Option<(LogPos, DirectoryV1)>,
    ) -> Result<(LogPos, LogState), SnapshotError> {
        let node = self.settings.node;
        let reserve = self.settings.max_clients.min(1 << 20);
        let Some((at, d)) = restored else {
            self.directory = Directory::new(self.settings.default_room, node, reserve);
            let log = LogState {
                clock: LogClock::default(),
                nodes: Nodes::default(),
            };
            return Ok((LogPos::ZERO, log));
        };
        let rooms = rooms_from_v1(d.rooms)?;
        self.directory = Directory::restore(node, reserve, rooms, d.guests);
        Ok((at, log_state(d.log)))
    }

    /// This node's cluster state for an upgrade.
    pub(crate) fn cluster_v1(&self) -> Option<ClusterV1> {
        let c = self.cluster.as_ref()?;
        Some(ClusterV1 {
            node: self.settings.node,
            epoch: c.epoch,
            next_seq: c.next_seq,
            applied_ms: c.applied.ms,
            applied_seq: c.applied.seq,
            last_snapshot_ms: c.last_snapshot_ms,
            log: log_v1(c.clock, &c.nodes),
        })
    }

    /// Takes over a cluster node's state from an upgrade (the directory is restored already).
    pub(crate) fn restore_cluster(&mut self, v: ClusterV1) {
        let mut c = Cluster::new();
        let log = log_state(v.log);
        c.epoch = v.epoch;
        c.started = true;
        c.next_seq = v.next_seq;
        c.applied = LogPos {
            ms: v.applied_ms,
            seq: v.applied_seq,
        };
        c.clock = log.clock;
        c.nodes = log.nodes;
        c.last_snapshot_ms = v.last_snapshot_ms;
        c.next_heartbeat_ms = self.now_ms;
        self.cluster = Some(c);
    }
}

fn log_v1(clock: LogClock, nodes: &Nodes) -> LogV1 {
    LogV1 {
        clock_ms: clock.now,
        last_entry_ms: clock.last_entry_ms,
        nodes: nodes
            .map
            .iter()
            .map(|(&id, n)| NodeV1 {
                id,
                status: match n.status {
                    Status::Live => StatusV1::Live,
                    Status::Gone => StatusV1::Gone,
                    Status::Retired => StatusV1::Retired,
                },
                last_seq: n.last_seq,
                last_ms: n.last_ms,
                applied_ms: n.applied.ms,
                applied_seq: n.applied.seq,
            })
            .collect(),
    }
}

fn log_state(log: LogV1) -> LogState {
    let nodes = log
        .nodes
        .into_iter()
        .map(|n| {
            let state = NodeState {
                status: match n.status {
                    StatusV1::Live => Status::Live,
                    StatusV1::Gone => Status::Gone,
                    StatusV1::Retired => Status::Retired,
                },
                last_seq: n.last_seq,
                last_ms: n.last_ms,
                applied: LogPos {
                    ms: n.applied_ms,
                    seq: n.applied_seq,
                },
            };
            (n.id, state)
        })
        .collect();
    LogState {
        clock: LogClock {
            now: log.clock_ms,
            last_entry_ms: log.last_entry_ms,
        },
        nodes: Nodes { map: nodes },
    }
}
