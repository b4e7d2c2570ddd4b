//! `fanout --upgrades N`: SIGUSR2 the server N times while the senders run, and check that the
//! upgrades are invisible to the receivers apart from one `*** Server upgraded.` line each.
//!
//! [`Upgrades`] is the bookkeeping, pure and unit-tested: when the next signal is due, which
//! notices each receiver has seen, and the freeze (for each receiver and upgrade, the time
//! from its last delivery before the notice to its first delivery after it; the largest is
//! reported). The scenario loop feeds it lines and the time, and [`Upgrades::step`] tells it
//! when to signal. The server's process is followed through its generations by
//! [`Lineage`](crate::lineage::Lineage).

use crate::error::{Error, IoContext, Result};
use crate::lineage::Lineage;
use std::time::{Duration, Instant};

/// The line every logged-in user gets once per upgrade (PROTOCOL.md, SIGUSR2).
pub const NOTICE: &str = "*** Server upgraded.";

/// How long an upgrade may take, from the signal until every receiver has seen the notice
/// and the new process has replaced the old one. The old process waits 10 s for the new one's
/// confirmation before it gives up, so 20 s is generous.
pub const UPGRADE_BOUND: Duration = Duration::from_secs(20);

/// What the scenario loop must do for the upgrades.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing now.
    Wait,
    /// Send SIGUSR2 now (the upgrade is then counted as started).
    Signal,
}

/// Upgrade bookkeeping for R receivers.
#[derive(Debug)]
pub struct Upgrades {
    wanted: u32,
    gap: Duration,
    /// Signals sent.
    signalled: u32,
    /// Upgrades whose new process has taken over.
    switched: u32,
    /// Upgrades every receiver has seen the notice of.
    all_seen: u32,
    /// Upgrades complete (signalled, switched and seen by all), so the next may start.
    done: u32,
    signal_at: Instant,
    next_at: Instant,
    /// Per receiver: notices seen.
    seen: Vec<u32>,
    /// Per upgrade number k (1-based): receivers that have seen k notices.
    reached: Vec<usize>,
    /// Per receiver: time of its last delivery, and whether a notice came after it.
    last_delivery: Vec<Instant>,
    across: Vec<bool>,
    /// Longest wait of a receiver for a delivery across a notice.
    pub freeze_max: Duration,
    /// Notices beyond one per signal.
    pub extra_notices: u64,
}

impl Upgrades {
    /// `wanted` upgrades for `receivers` receivers, the first `gap` after `start`, each next
    /// one `gap` after the previous one is complete.
    pub fn new(wanted: u32, gap: Duration, receivers: usize, start: Instant) -> Upgrades {
        Upgrades {
            wanted,
            gap,
            signalled: 0,
            switched: 0,
            all_seen: 0,
            done: 0,
            signal_at: start,
            next_at: start + gap,
            seen: vec![0; receivers],
            reached: vec![0; wanted as usize + 1],
            last_delivery: vec![start; receivers],
            across: vec![false; receivers],
            freeze_max: Duration::ZERO,
            extra_notices: 0,
        }
    }

    /// Upgrades signalled so far.
    pub fn started(&self) -> u32 {
        self.signalled
    }

    /// Upgrades complete so far.
    pub fn done(&self) -> u32 {
        self.done
    }

    /// True until all wanted upgrades are complete.
    pub fn pending(&self) -> bool {
        self.done < self.wanted
    }

    /// True while a signalled upgrade is not complete (the old process must be followed).
    pub fn in_flight(&self) -> bool {
        self.signalled > self.done
    }

    /// Receiver `r` got the upgrade notice.
    pub fn on_notice(&mut self, r: usize) {
        self.seen[r] += 1;
        let k = self.seen[r];
        if k > self.signalled {
            self.extra_notices += 1;
            return;
        }
        self.reached[k as usize] += 1;
        self.across[r] = true;
        while self.all_seen < self.signalled
            && self.reached[self.all_seen as usize + 1] == self.seen.len()
        {
            self.all_seen += 1;
        }
    }

    /// Receiver `r` got a chat delivery at `now`.
    pub fn on_delivery(&mut self, r: usize, now: Instant) {
        if std::mem::take(&mut self.across[r]) {
            let wait = now.saturating_duration_since(self.last_delivery[r]);
            self.freeze_max = self.freeze_max.max(wait);
        }
        self.last_delivery[r] = now;
    }

    /// True while the new process of the signalled upgrade has not been found yet.
    pub fn awaiting_switch(&self) -> bool {
        self.switched < self.signalled
    }

    /// The new process of the signalled upgrade has taken over.
    pub fn on_switched(&mut self) {
        self.switched = self.signalled;
    }

    /// Decides what to do at `now`; an error when an upgrade takes longer than
    /// [`UPGRADE_BOUND`].
    pub fn step(&mut self, now: Instant) -> std::result::Result<Action, String> {
        if self.in_flight() {
            if self.switched == self.signalled && self.all_seen == self.signalled {
                self.done = self.signalled;
                self.next_at = now + self.gap;
            } else if now.saturating_duration_since(self.signal_at) > UPGRADE_BOUND {
                return Err(self.stuck());
            } else {
                return Ok(Action::Wait);
            }
        }
        if self.done < self.wanted && now >= self.next_at {
            self.signalled += 1;
            self.signal_at = now;
            return Ok(Action::Signal);
        }
        Ok(Action::Wait)
    }

    fn stuck(&self) -> String {
        let k = self.signalled;
        let have = self.reached[k as usize];
        format!(
            "upgrade {k} of {}: after {} s, {have} of {} receivers have seen `{NOTICE}` \
             and the new process has {}taken over",
            self.wanted,
            UPGRADE_BOUND.as_secs(),
            self.seen.len(),
            if self.switched == k { "" } else { "not " }
        )
    }
}

/// Sends SIGUSR2 to the server's current process.
pub fn signal(lineage: &Lineage) -> Result<()> {
    let pid = lineage.current().pid();
    let target = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| Error::Protocol(format!("pid {pid} is not a valid process id")))?;
    rustix::process::kill_process(target, rustix::process::Signal::USR2)
        .map_err(std::io::Error::from)
        .ctx(|| format!("sending SIGUSR2 to the server (pid {pid})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn signals_one_after_another_once_complete() {
        let t0 = Instant::now();
        let mut u = Upgrades::new(2, ms(100), 2, t0);
        assert_eq!(u.step(t0), Ok(Action::Wait), "not before the gap");
        assert_eq!(u.step(t0 + ms(100)), Ok(Action::Signal));
        assert!(u.in_flight());
        u.on_notice(0);
        u.on_notice(1);
        assert_eq!(
            u.step(t0 + ms(150)),
            Ok(Action::Wait),
            "old process still serving"
        );
        u.on_switched();
        // Complete now; the next one waits for the gap.
        assert_eq!(u.step(t0 + ms(200)), Ok(Action::Wait));
        assert_eq!(u.done(), 1);
        assert_eq!(u.step(t0 + ms(299)), Ok(Action::Wait));
        assert_eq!(u.step(t0 + ms(300)), Ok(Action::Signal));
        u.on_switched();
        u.on_notice(1);
        assert_eq!(
            u.step(t0 + ms(310)),
            Ok(Action::Wait),
            "receiver 0 has not seen it"
        );
        u.on_notice(0);
        assert_eq!(u.step(t0 + ms(320)), Ok(Action::Wait));
        assert!(!u.pending());
        assert_eq!(
            u.step(t0 + ms(10_000)),
            Ok(Action::Wait),
            "no more than wanted"
        );
        assert_eq!(u.extra_notices, 0);
    }

    #[test]
    fn extra_notices_and_stuck_upgrades_are_reported() {
        let t0 = Instant::now();
        let mut u = Upgrades::new(1, ms(0), 3, t0);
        u.on_notice(2);
        assert_eq!(u.extra_notices, 1, "a notice before any signal");
        assert_eq!(u.step(t0), Ok(Action::Signal));
        u.on_notice(0);
        let err = u.step(t0 + UPGRADE_BOUND + ms(1)).unwrap_err();
        assert!(err.contains("1 of 3 receivers"), "{err}");
        assert!(err.contains("has not taken over"), "{err}");
    }

    #[test]
    fn freeze_spans_the_notice() {
        let t0 = Instant::now();
        let mut u = Upgrades::new(1, ms(0), 2, t0);
        assert_eq!(u.step(t0), Ok(Action::Signal));
        u.on_delivery(0, t0 + ms(10));
        u.on_delivery(0, t0 + ms(12)); // queued before the upgrade: still flowing
        u.on_notice(0);
        u.on_delivery(0, t0 + ms(70)); // first after the notice: 58 ms frozen
        u.on_delivery(0, t0 + ms(200)); // a later pause is not the upgrade's
        u.on_delivery(1, t0 + ms(5));
        u.on_notice(1);
        u.on_delivery(1, t0 + ms(40));
        assert_eq!(u.freeze_max, ms(58));
    }
}
