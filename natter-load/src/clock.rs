//! One monotonic clock for the whole run, and the global deadline.

use crate::error::{Error, Result};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static START: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the load generator's start (the first call of this function or
/// [`start`]), from `Instant`, so it never goes backwards.
pub fn now_ns() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Fixes the start of the run's clock; call once early in `main`.
pub fn start() {
    START.get_or_init(Instant::now);
}

/// The point in time by which the whole run must be over (`--timeout`).
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
    secs: u64,
}

impl Deadline {
    /// A deadline `secs` seconds from now.
    pub fn in_secs(secs: u64) -> Deadline {
        Deadline {
            at: Instant::now() + Duration::from_secs(secs),
            secs,
        }
    }

    /// Time left (zero when past).
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Whole seconds left, rounded up (to hand the deadline to a worker process).
    pub fn remaining_secs(&self) -> u64 {
        let r = self.remaining();
        r.as_secs() + u64::from(r.subsec_nanos() > 0)
    }

    /// Fails with [`Error::Timeout`] naming `what` (evaluated only on failure) once past.
    pub fn check(&self, what: impl FnOnce() -> String) -> Result<()> {
        if Instant::now() >= self.at {
            Err(Error::Timeout(format!(
                "{} (--timeout {} s ran out)",
                what(),
                self.secs
            )))
        } else {
            Ok(())
        }
    }

    /// How long to block in poll: `want`, but never past the deadline.
    pub fn cap(&self, want: Duration) -> Duration {
        want.min(self.remaining())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_monotonic() {
        start();
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a);
    }

    #[test]
    fn expired_deadline_fails_with_context() {
        let d = Deadline::in_secs(0);
        let e = d.check(|| "logging in 3/5".into()).unwrap_err();
        assert!(e.to_string().contains("logging in 3/5"));
        assert!(Deadline::in_secs(60).check(|| unreachable!()).is_ok());
        assert_eq!(d.remaining_secs(), 0);
    }
}
