//! The model shell of a cluster: K cores, each in its own [`Sim`], and one in-memory log that
//! delivers the same entries to every node in one order, as Redis does. One fake clock for all.
//!
//! A node can be stopped (it neither reads nor publishes; what it publishes meanwhile reaches
//! the log when it goes on, as with SIGSTOP), killed (gone for good), or cut off; the log can
//! deliver some entries twice (a re-sent append Redis stored twice), start over empty (Redis
//! restarted), and store snapshots and trim itself as the Redis log does.

use super::{Sim, SimError};
use crate::proto::chat::{ClusterStart, LogPos, Settings};
use bytes::Bytes;

/// How the log's clock moves per step of [`SimCluster::advance`].
const STEP_MS: u64 = 100;
/// The log's clock when the cluster starts (Redis time is far from zero).
const LOG_BASE_MS: u64 = 1_700_000_000_000;

/// One node and where it is in the log.
pub struct SimNode {
    /// Its model shell.
    pub sim: Sim,
    /// Its node id in the current epoch.
    pub id: u32,
    /// The index in [`SimCluster::log`] of the next entry it reads.
    pub next: usize,
    /// Neither reads nor publishes (SIGSTOP), until [`SimCluster::resume`].
    pub stopped: bool,
    /// Gone for good (kill -9).
    pub dead: bool,
}

/// The model shell of a cluster.
pub struct SimCluster {
    /// The nodes.
    pub nodes: Vec<SimNode>,
    /// The log: every entry with its position, in order (a trimmed prefix is `None`).
    pub log: Vec<Option<(LogPos, Bytes)>>,
    /// The stored snapshot: the log index after it, its position, its blob.
    pub snapshot: Option<(usize, LogPos, Bytes)>,
    /// Milliseconds since the cluster started (all nodes' clocks move with it).
    pub now_ms: u64,
    /// Compare every node's directory after every entry (all nodes must agree).
    pub compare: bool,
    /// Deliver each appended entry a second time later on, when set (duplicates in the log).
    pub duplicate: bool,
    epoch: u32,
    next_node: u32,
    last_ms: u64,
    last_seq: u64,
}

impl SimCluster {
    /// `k` nodes with `settings` (cluster mode is turned on), started on an empty log.
    pub fn new(k: usize, settings: Settings) -> Result<SimCluster, SimError> {
        let mut c = SimCluster {
            nodes: Vec::new(),
            log: Vec::new(),
            snapshot: None,
            now_ms: 0,
            compare: true,
            duplicate: false,
            epoch: 7,
            next_node: 1,
            last_ms: 0,
            last_seq: 0,
        };
        for _ in 0..k {
            c.add_node(settings.clone())?;
        }
        Ok(c)
    }

    /// Starts one more node (it loads the stored snapshot and reads on after it); returns its
    /// index.
    pub fn add_node(&mut self, settings: Settings) -> Result<usize, SimError> {
        let mut sim = Sim::new(Settings {
            cluster: true,
            ..settings
        });
        sim.jump(self.now_ms);
        self.nodes.push(SimNode {
            sim,
            id: 0,
            next: 0,
            stopped: false,
            dead: false,
        });
        let n = self.nodes.len() - 1;
        self.connect(n)?;
        Ok(n)
    }

    /// Node `n` connects to the log afresh: a new id, the stored snapshot, reading after it.
    fn connect(&mut self, n: usize) -> Result<(), SimError> {
        let id = self.next_node;
        self.next_node += 1;
        let (next, snapshot) = match &self.snapshot {
            Some((next, at, blob)) => (*next, Some((*at, blob.clone()))),
            None => (self.first_index(), None),
        };
        let node = &mut self.nodes[n];
        node.id = id;
        node.next = next;
        let snapshot = snapshot.as_ref().map(|(at, blob)| (*at, blob.as_ref()));
        node.sim.cluster_start(ClusterStart {
            node: id,
            epoch: self.epoch,
            snapshot,
        })
    }

    /// The first entry not trimmed away.
    fn first_index(&self) -> usize {
        self.log
            .iter()
            .position(Option::is_some)
            .unwrap_or(self.log.len())
    }

    /// Moves everyone's clock on by `ms`, in steps: each step fires every node's timers
    /// (heartbeats), then settles the log.
    pub fn advance(&mut self, ms: u64) -> Result<(), SimError> {
        let target = self.now_ms + ms;
        while self.now_ms < target {
            let step = STEP_MS.min(target - self.now_ms);
            self.now_ms += step;
            for node in &mut self.nodes {
                if node.dead {
                    continue;
                }
                if node.stopped {
                    node.sim.jump(step);
                } else {
                    node.sim.advance(step)?;
                }
            }
            self.settle()?;
        }
        Ok(())
    }

    /// Appends what the running nodes published, delivers everything to everyone who runs,
    /// and repeats until nothing more is published.
    pub fn settle(&mut self) -> Result<(), SimError> {
        for _ in 0..10_000 {
            let before = self.log.len();
            self.collect();
            let mut busy = self.log.len() > before;
            while self.deliver_one()? {
                busy = true;
            }
            self.store_snapshots();
            busy |= self.resync_if_wanted()?;
            if !busy {
                return Ok(());
            }
        }
        Err(SimError("the cluster never settles".into()))
    }

    /// Node `n` stops (SIGSTOP): it neither reads nor publishes until [`SimCluster::resume`].
    pub fn stop(&mut self, n: usize) {
        self.nodes[n].stopped = true;
    }

    /// Node `n` goes on (SIGCONT): what it published meanwhile reaches the log now.
    pub fn resume(&mut self, n: usize) -> Result<(), SimError> {
        self.nodes[n].stopped = false;
        self.settle()
    }

    /// Node `n` dies without a word.
    pub fn kill(&mut self, n: usize) {
        self.nodes[n].dead = true;
    }

    /// The log starts over empty (Redis restarted): every running node connects afresh.
    pub fn restart_log(&mut self) -> Result<(), SimError> {
        self.log.clear();
        self.snapshot = None;
        self.epoch += 1;
        self.next_node = 1;
        for n in 0..self.nodes.len() {
            if !self.nodes[n].dead {
                self.nodes[n].sim.take_published();
                self.connect(n)?;
            }
        }
        self.settle()
    }

    /// Node `n`'s model shell.
    pub fn sim(&mut self, n: usize) -> &mut Sim {
        &mut self.nodes[n].sim
    }

    /// Checks that every running node that has read the whole log has the same directory.
    pub fn check_agree(&self) -> Result<(), SimError> {
        self.check_agree_at(self.log.len())
    }

    /// Appends the entries the running nodes published (each twice when duplicating).
    fn collect(&mut self) {
        let mut new = Vec::new();
        for node in &mut self.nodes {
            if !node.dead && !node.stopped {
                new.extend(node.sim.take_published());
            }
        }
        // A re-sent batch comes again after the first copy, as after a reconnect.
        let copies = if self.duplicate { 2 } else { 1 };
        for payload in std::iter::repeat_n(new, copies).flatten() {
            let at = self.next_pos();
            self.log.push(Some((at, payload)));
        }
    }

    fn next_pos(&mut self) -> LogPos {
        let ms = LOG_BASE_MS + self.now_ms;
        if ms > self.last_ms {
            self.last_ms = ms;
            self.last_seq = 0;
        } else {
            self.last_seq += 1;
        }
        LogPos {
            ms: self.last_ms,
            seq: self.last_seq,
        }
    }

    /// Delivers the next entry to every running node that has not read it; false when every
    /// running node is at the end.
    fn deliver_one(&mut self) -> Result<bool, SimError> {
        let end = self.log.len();
        let Some(index) = self
            .nodes
            .iter()
            .filter(|n| !n.dead && !n.stopped && n.next < end)
            .map(|n| n.next)
            .min()
        else {
            return Ok(false);
        };
        for node in &mut self.nodes {
            if node.dead || node.stopped || node.next != index {
                continue;
            }
            node.next += 1;
            // A trimmed entry is skipped silently, as XREAD does.
            if let Some((at, payload)) = &self.log[index] {
                node.sim.entry(*at, payload)?;
            }
        }
        if self.compare
            && self
                .nodes
                .iter()
                .all(|n| n.dead || n.stopped || n.next > index)
        {
            self.check_agree_at(index + 1)?;
        }
        Ok(true)
    }

    /// Every running node that has read exactly `upto` entries agrees.
    fn check_agree_at(&self, upto: usize) -> Result<(), SimError> {
        let mut first: Option<(u32, Vec<u8>)> = None;
        for node in self
            .nodes
            .iter()
            .filter(|n| !n.dead && !n.stopped && n.next == upto)
        {
            if node.sim.resync_wanted {
                continue;
            }
            let dir = node.sim.chat().cluster_directory().unwrap_or_default();
            match &first {
                None => first = Some((node.id, dir)),
                Some((id, d)) if *d != dir => {
                    return Err(SimError(format!(
                        "nodes {id} and {} disagree after entry {upto}",
                        node.id
                    )));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Stores the snapshots nodes handed out (only a newer one replaces the stored one), and
    /// trims the log below the one it replaced, as the Redis log does.
    fn store_snapshots(&mut self) {
        let mut handed = Vec::new();
        for node in &mut self.nodes {
            handed.extend(node.sim.take_snapshots());
        }
        for (at, blob) in handed {
            if self.snapshot.as_ref().is_some_and(|(_, s, _)| *s >= at) {
                continue;
            }
            let next = self
                .log
                .iter()
                .position(|e| e.as_ref().is_some_and(|(p, _)| *p > at))
                .unwrap_or(self.log.len());
            if let Some((prev_next, _, _)) = self.snapshot {
                for e in &mut self.log[..prev_next] {
                    *e = None;
                }
            }
            self.snapshot = Some((next, at, blob));
        }
    }

    /// Connects afresh every node that asked to; returns whether one did.
    fn resync_if_wanted(&mut self) -> Result<bool, SimError> {
        let mut any = false;
        for n in 0..self.nodes.len() {
            let node = &self.nodes[n];
            if !node.dead && !node.stopped && node.sim.resync_wanted {
                self.connect(n)?;
                any = true;
            }
        }
        Ok(any)
    }
}

/// Cluster mode's inputs and outputs of one node's model shell.
impl Sim {
    /// Cluster mode: an entry read from the shared log.
    pub fn entry(&mut self, at: LogPos, payload: &[u8]) -> Result<(), SimError> {
        self.chat
            .handle_entry(at, payload)
            .map_err(|e| SimError(format!("entry at {at:?}: {e}")))?;
        self.after()
    }

    /// Cluster mode: connected to the log (see `Chat::handle_cluster_start`).
    pub fn cluster_start(&mut self, start: ClusterStart<'_>) -> Result<(), SimError> {
        self.resync_wanted = false;
        self.chat
            .handle_cluster_start(start)
            .map_err(|e| SimError(format!("cluster start: {e}")))?;
        self.after()
    }

    /// Cluster mode: the entries published since the last call, in order.
    pub fn take_published(&mut self) -> Vec<Bytes> {
        std::mem::take(&mut self.published)
    }

    /// Cluster mode: the snapshots handed out to store since the last call.
    pub fn take_snapshots(&mut self) -> Vec<(LogPos, Bytes)> {
        std::mem::take(&mut self.snapshots)
    }
}
