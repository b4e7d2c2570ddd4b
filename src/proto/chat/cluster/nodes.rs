//! The nodes of a cluster as the log shows them: which are live, the last sequence number each
//! one had applied (to drop duplicates and see gaps), when each was last heard of, and how far
//! each says it has read. Every decision here depends only on the log, so every node that
//! applies the same entries makes the same ones at the same positions.
//!
//! Time is the log's own clock ([`LogClock`]): the Redis time of the entries, except that a
//! stretch in which the log was silent (Redis away for everyone) counts for at most
//! [`MAX_CLOCK_STEP_MS`], so an outage of Redis itself declares nobody gone.

use super::LogPos;
use std::collections::BTreeMap;

/// A node silent this long (by the log's clock) is gone.
pub(crate) const GONE_AFTER_MS: u64 = 10_000;
/// How far the log's clock moves between two consecutive entries at most.
pub(crate) const MAX_CLOCK_STEP_MS: u64 = 3_000;
/// How long a gone node still holds back trimming, so that one that was stopped or cut off
/// for a while can read on where it was instead of starting over.
pub(crate) const TRIM_GRACE_MS: u64 = 30_000;

/// The log's clock: Redis time, with silent stretches shortened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LogClock {
    /// The clock (milliseconds).
    pub(crate) now: u64,
    /// The Redis time of the last entry (0 before the first).
    pub(crate) last_entry_ms: u64,
}

impl LogClock {
    /// Moves the clock on to an entry stamped `ms` by Redis.
    pub(crate) fn advance(&mut self, ms: u64) {
        if self.last_entry_ms == 0 {
            self.now = ms;
        } else {
            self.now += ms.saturating_sub(self.last_entry_ms).min(MAX_CLOCK_STEP_MS);
        }
        self.last_entry_ms = self.last_entry_ms.max(ms);
    }
}

/// Where a node stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    /// Its entries are applied.
    Live,
    /// Silent for too long: its users were removed, and its entries are ignored until it
    /// re-announces itself (a rejoin).
    Gone,
    /// Replaced by a later incarnation (a rejoin under a new id named it): ignored for good.
    Retired,
}

/// One node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NodeState {
    pub(crate) status: Status,
    /// The last sequence number applied from it.
    pub(crate) last_seq: u64,
    /// The log clock at its last entry (or when it went gone).
    pub(crate) last_ms: u64,
    /// How far it said it had read, in its last heartbeat.
    pub(crate) applied: LogPos,
}

/// What to do with an entry, by its author's state and sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Apply it.
    Apply,
    /// Skip it: a duplicate, or from a node that is gone or retired.
    Skip,
    /// An entry of this node is missing before it (the log was trimmed past this reader): the
    /// reader must start over from the stored snapshot.
    Gap,
}

/// Every node this epoch of the log has seen, by id (ordered, so iteration is the same
/// everywhere).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Nodes {
    pub(crate) map: BTreeMap<u32, NodeState>,
}

impl Nodes {
    /// Decides about entry `seq` of `node` at log clock `now`, and records it when applied.
    /// A rejoin may bring back a gone node; a node's first entry (sequence number 1, or a
    /// rejoin) introduces it.
    pub(crate) fn admit(&mut self, node: u32, seq: u64, now: u64, rejoin: bool) -> Admit {
        let fresh = NodeState {
            status: Status::Live,
            last_seq: seq,
            last_ms: now,
            applied: LogPos::ZERO,
        };
        let Some(n) = self.map.get_mut(&node) else {
            if seq == 1 || rejoin {
                self.map.insert(node, fresh);
                return Admit::Apply;
            }
            return Admit::Gap;
        };
        if n.status == Status::Retired || seq <= n.last_seq {
            return Admit::Skip;
        }
        match n.status {
            Status::Live if seq != n.last_seq + 1 => return Admit::Gap,
            Status::Gone if !rejoin => return Admit::Skip,
            _ => {}
        }
        n.status = Status::Live;
        n.last_seq = seq;
        n.last_ms = now;
        Admit::Apply
    }

    /// Declares gone every live node silent for more than [`GONE_AFTER_MS`] at `now`; returns
    /// their ids, lowest first.
    pub(crate) fn expire(&mut self, now: u64) -> Vec<u32> {
        let mut gone = Vec::new();
        for (&id, n) in &mut self.map {
            if n.status == Status::Live && now.saturating_sub(n.last_ms) > GONE_AFTER_MS {
                n.status = Status::Gone;
                n.last_ms = now;
                gone.push(id);
            }
        }
        gone
    }

    /// Retires `node` for good (a later incarnation replaced it); returns whether it was live.
    pub(crate) fn retire(&mut self, node: u32, now: u64) -> bool {
        let n = self.map.entry(node).or_insert(NodeState {
            status: Status::Retired,
            last_seq: 0,
            last_ms: now,
            applied: LogPos::ZERO,
        });
        let was_live = n.status == Status::Live;
        n.status = Status::Retired;
        was_live
    }

    /// Records how far `node` says it has read.
    pub(crate) fn set_applied(&mut self, node: u32, applied: LogPos) {
        if let Some(n) = self.map.get_mut(&node) {
            n.applied = n.applied.max(applied);
        }
    }

    #[cfg(test)]
    pub(crate) fn is_live(&self, node: u32) -> bool {
        self.map
            .get(&node)
            .is_some_and(|n| n.status == Status::Live)
    }

    /// The live node with the lowest id: the one that writes snapshots.
    pub(crate) fn lowest_live(&self) -> Option<u32> {
        self.map
            .iter()
            .find(|(_, n)| n.status == Status::Live)
            .map(|(&id, _)| id)
    }

    /// Whether every live node, and every node gone less than [`TRIM_GRACE_MS`] ago, has read
    /// at least up to `at`, so that the log may be trimmed below it.
    pub(crate) fn all_read(&self, at: LogPos, now: u64) -> bool {
        self.map.values().all(|n| match n.status {
            Status::Live => n.applied >= at,
            Status::Gone => n.applied >= at || now.saturating_sub(n.last_ms) > TRIM_GRACE_MS,
            Status::Retired => true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_skipped_and_gaps_seen() {
        let mut n = Nodes::default();
        assert_eq!(n.admit(3, 1, 0, false), Admit::Apply);
        assert_eq!(n.admit(3, 2, 0, false), Admit::Apply);
        assert_eq!(n.admit(3, 2, 0, false), Admit::Skip, "a duplicate");
        assert_eq!(n.admit(3, 1, 0, false), Admit::Skip, "an older duplicate");
        assert_eq!(n.admit(3, 4, 0, false), Admit::Gap, "3 is missing");
        assert_eq!(
            n.admit(7, 5, 0, false),
            Admit::Gap,
            "its first entries are missing"
        );
        assert_eq!(
            n.admit(8, 5, 0, true),
            Admit::Apply,
            "a rejoin introduces a node"
        );
    }

    #[test]
    fn silent_nodes_go_and_come_back_only_by_rejoining() {
        let mut n = Nodes::default();
        n.admit(1, 1, 0, false);
        n.admit(2, 1, 0, false);
        n.admit(1, 2, 10_000, false);
        assert_eq!(
            n.expire(10_000),
            Vec::<u32>::new(),
            "10 s is not more than 10 s"
        );
        n.admit(1, 3, 10_001, false);
        assert_eq!(n.expire(10_001), vec![2]);
        assert_eq!(n.lowest_live(), Some(1));
        assert_eq!(n.admit(2, 2, 10_002, false), Admit::Skip, "gone: ignored");
        assert_eq!(n.admit(2, 3, 10_003, true), Admit::Apply, "its rejoin");
        assert!(n.is_live(2));
        assert_eq!(
            n.admit(2, 2, 10_004, false),
            Admit::Skip,
            "an old duplicate"
        );
        assert!(n.retire(2, 10_005));
        assert_eq!(n.admit(2, 9, 10_006, true), Admit::Skip, "retired for good");
    }

    #[test]
    fn trimming_waits_for_every_reader_and_recently_gone_ones() {
        let mut n = Nodes::default();
        let at = LogPos { ms: 5, seq: 0 };
        n.admit(1, 1, 0, false);
        n.admit(2, 1, 0, false);
        n.set_applied(1, at);
        assert!(!n.all_read(at, 0));
        n.set_applied(2, LogPos { ms: 6, seq: 0 });
        assert!(n.all_read(at, 0));
        n.admit(3, 1, 0, false);
        n.admit(1, 2, 20_000, false);
        n.admit(2, 2, 20_000, false);
        assert_eq!(n.expire(20_000), vec![3]);
        assert!(!n.all_read(at, 20_000), "3 was gone a moment ago");
        assert!(n.all_read(at, 20_000 + TRIM_GRACE_MS + 1));
    }

    #[test]
    fn the_clock_skips_silent_stretches() {
        let mut c = LogClock::default();
        c.advance(1_000_000);
        assert_eq!(c.now, 1_000_000);
        c.advance(1_000_500);
        assert_eq!(c.now, 1_000_500);
        c.advance(1_060_000);
        assert_eq!(c.now, 1_000_500 + MAX_CLOCK_STEP_MS);
        c.advance(1_050_000);
        assert_eq!(c.now, 1_000_500 + MAX_CLOCK_STEP_MS, "never backwards");
    }
}
