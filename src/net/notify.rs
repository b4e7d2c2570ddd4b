//! systemd notifications (`Type=notify`): `READY=1`, `STATUS=`, `MAINPID=`, `STOPPING=1`.
//!
//! All of it is a no-op unless `NOTIFY_SOCKET` was set when the [`Notifier`] was made.
//!
//! # How the loop uses it
//! - once listening: [`Notifier::ready`] with the current counts;
//! - every turn, after draining: [`Notifier::status`] with the current counts (a comparison when
//!   nothing changed). A change goes out at once if the last `STATUS=` is a second old, otherwise
//!   it waits, and [`Notifier::next_deadline`] says when to wake for it. With no change waiting
//!   there is no deadline: an idle server does not wake up;
//! - an upgrade's old process, once the new one confirmed: [`Notifier::main_pid`] with the new
//!   PID, then nothing more (above all no `STOPPING=1`: the service goes on);
//! - shutdown: [`Notifier::stopping`].
//!
//! A notification that cannot be sent is logged and otherwise ignored.

use crate::net::log::{Level, log};
use sd_notify::NotifyState;
use std::fmt;
use std::time::{Duration, Instant};

/// Shortest time between two `STATUS=` messages.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// What `STATUS=` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Status {
    /// Logged-in users.
    pub(crate) users: usize,
    /// Rooms.
    pub(crate) rooms: usize,
}

impl fmt::Display for Status {
    /// `1 user in 1 room`, `12 users in 3 rooms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        write!(
            f,
            "{} user{} in {} room{}",
            self.users,
            plural(self.users),
            self.rooms,
            plural(self.rooms)
        )
    }
}

/// Sends this process's notifications to systemd.
pub(crate) struct Notifier {
    enabled: bool,
    phase: Phase,
    throttle: Throttle,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Before `READY=1`: counts are sent with it.
    Starting,
    Running,
    /// After `MAINPID=` or `STOPPING=1`: this process says nothing more.
    Done,
}

impl Notifier {
    /// A notifier that sends when `NOTIFY_SOCKET` is set (read now and at each send).
    pub(crate) fn from_env() -> Notifier {
        Notifier::new(std::env::var_os("NOTIFY_SOCKET").is_some())
    }

    fn new(enabled: bool) -> Notifier {
        Notifier {
            enabled,
            phase: Phase::Starting,
            throttle: Throttle::default(),
        }
    }

    /// Whether notifications are sent at all (tests).
    #[cfg(test)]
    pub(crate) fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// `READY=1` with the first `STATUS=`: the server listens.
    pub(crate) fn ready(&mut self, status: Status, now: Instant) {
        if !self.enabled || self.phase != Phase::Starting {
            return;
        }
        self.phase = Phase::Running;
        let text = status.to_string();
        send(&[NotifyState::Ready, NotifyState::Status(&text)]);
        self.throttle.sent(status, now);
    }

    /// Reports the current counts; sends `STATUS=` if they changed and the last one is at least
    /// a second old, else keeps the change for [`Notifier::next_deadline`].
    pub(crate) fn status(&mut self, status: Status, now: Instant) {
        if !self.enabled || self.phase != Phase::Running {
            return;
        }
        if let Some(status) = self.throttle.update(status, now) {
            let text = status.to_string();
            send(&[NotifyState::Status(&text)]);
        }
    }

    /// When a waiting `STATUS=` is due; `None` while nothing waits.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        if !self.enabled || self.phase != Phase::Running {
            return None;
        }
        self.throttle.next_deadline()
    }

    /// `MAINPID=`: the upgraded process `pid` is the service's main process from now on. This
    /// process sends nothing after it.
    pub(crate) fn main_pid(&mut self, pid: u32) {
        if !self.enabled || self.phase == Phase::Done {
            return;
        }
        self.phase = Phase::Done;
        send(&[NotifyState::MainPid(pid)]);
    }

    /// `STOPPING=1`: the server is shutting down.
    pub(crate) fn stopping(&mut self) {
        if !self.enabled || self.phase == Phase::Done {
            return;
        }
        self.phase = Phase::Done;
        send(&[NotifyState::Stopping, NotifyState::Status("Shutting down")]);
    }
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        log!(Level::Warn, "cannot notify systemd: {e}");
    }
}

/// Decides when a changed status goes out: at most one per [`STATUS_INTERVAL`], the latest
/// counts, and nothing for a change that went back to what was last sent.
#[derive(Debug, Default)]
struct Throttle {
    /// The last status sent and when.
    last: Option<(Status, Instant)>,
    /// A change not sent yet.
    waiting: Option<Status>,
}

impl Throttle {
    /// Records the current status; returns it when it is to be sent now.
    fn update(&mut self, status: Status, now: Instant) -> Option<Status> {
        let Some((sent, at)) = self.last else {
            self.sent(status, now);
            return Some(status);
        };
        if status == sent {
            self.waiting = None;
            return None;
        }
        if now < at + STATUS_INTERVAL {
            self.waiting = Some(status);
            return None;
        }
        self.sent(status, now);
        Some(status)
    }

    fn sent(&mut self, status: Status, now: Instant) {
        self.last = Some((status, now));
        self.waiting = None;
    }

    fn next_deadline(&self) -> Option<Instant> {
        let (_, at) = self.last?;
        self.waiting.map(|_| at + STATUS_INTERVAL)
    }
}

#[cfg(test)]
mod tests;
