//! Timers: login and idle timeouts and the flood-control wake-up, in one heap. Nothing is
//! scheduled while nothing is due, so an idle server sleeps without a timeout.

use super::ConnId;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// What a timer is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum TimerKind {
    /// `--login-timeout` since connect.
    Login,
    /// `--idle-timeout` since the last input (checked against it when it fires).
    Idle,
    /// Flood control: the token bucket has a whole token again.
    Rate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Timer {
    pub(super) at_ms: u64,
    pub(super) index: u32,
    pub(super) generation: u32,
    pub(super) kind: TimerKind,
}

impl Timer {
    pub(super) fn id(&self) -> ConnId {
        ConnId {
            index: self.index,
            generation: self.generation,
        }
    }
}

#[derive(Default)]
pub(super) struct Timers {
    heap: BinaryHeap<Reverse<Timer>>,
}

impl Timers {
    pub(super) fn push(&mut self, at_ms: u64, id: ConnId, kind: TimerKind) {
        self.heap.push(Reverse(Timer {
            at_ms,
            index: id.index,
            generation: id.generation,
            kind,
        }));
    }

    /// The earliest timer, if it is due at `now_ms`.
    pub(super) fn pop_due(&mut self, now_ms: u64) -> Option<Timer> {
        let Reverse(t) = *self.heap.peek()?;
        if t.at_ms > now_ms {
            return None;
        }
        self.heap.pop();
        Some(t)
    }

    pub(super) fn next_ms(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse(t)| t.at_ms)
    }

    /// Forgets timers of closed connections: all of them once nobody is connected (an idle
    /// server has no deadline), otherwise whenever they outnumber the live ones, so churn with
    /// long timeouts cannot grow the heap.
    pub(super) fn drop_stale(&mut self, live: usize, is_open: impl Fn(ConnId) -> bool) {
        if live == 0 {
            self.heap.clear();
        } else if self.heap.len() > 4 * live + 64 {
            self.heap.retain(|Reverse(t)| is_open(t.id()));
        }
    }

    /// The timers of `id`, for a snapshot.
    pub(super) fn of(&self, id: ConnId) -> impl Iterator<Item = &Timer> {
        self.heap
            .iter()
            .map(|Reverse(t)| t)
            .filter(move |t| t.id() == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_in_order_and_stale_ones_are_dropped() {
        let a = ConnId {
            index: 0,
            generation: 1,
        };
        let b = ConnId {
            index: 1,
            generation: 1,
        };
        let mut t = Timers::default();
        t.push(30, a, TimerKind::Idle);
        t.push(10, b, TimerKind::Rate);
        assert_eq!(t.next_ms(), Some(10));
        assert_eq!(t.pop_due(5), None);
        assert_eq!(t.pop_due(30).map(|x| x.id()), Some(b));
        assert_eq!(t.of(a).count(), 1);
        t.drop_stale(0, |_| true);
        assert_eq!(t.next_ms(), None, "nobody connected: no deadline");
    }
}
