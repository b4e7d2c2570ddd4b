//! The test-only fault switch for the new process of an upgrade.

use super::UpgradeError;

/// The environment variable that makes the new process misbehave (debug builds only).
pub(crate) const FAULT_ENV: &str = "NATTER_TEST_UPGRADE_FAULT";
/// Exit status of a new process that crashes on purpose.
pub(crate) const FAULT_EXIT_CODE: i32 = 86;

const NAMES: &str = "refuse-version, hang-before-reading, crash-before-confirm, hang";

/// A way for the new process to fail, for the old process's tests. [`Takeover`] applies it.
///
/// [`Takeover`]: super::Takeover
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// `refuse-version`: say hello with no readable state version, so the old process refuses.
    RefuseVersion,
    /// `hang-before-reading`: say hello, then never read (the old process's writes back up).
    HangBeforeReading,
    /// `crash-before-confirm`: receive everything, then exit with [`FAULT_EXIT_CODE`].
    CrashBeforeConfirm,
    /// `hang`: receive everything, then never confirm.
    Hang,
}

impl Fault {
    /// The fault asked for by [`FAULT_ENV`]; always `None` in release builds, which ignore it.
    pub(crate) fn from_env() -> Result<Option<Fault>, UpgradeError> {
        if !cfg!(debug_assertions) {
            return Ok(None);
        }
        match std::env::var_os(FAULT_ENV) {
            None => Ok(None),
            Some(value) => {
                let value = value.to_string_lossy();
                Fault::parse(&value)
                    .map(Some)
                    .ok_or_else(|| UpgradeError::BadFault(value.into_owned(), NAMES))
            }
        }
    }

    fn parse(name: &str) -> Option<Fault> {
        match name {
            "refuse-version" => Some(Fault::RefuseVersion),
            "hang-before-reading" => Some(Fault::HangBeforeReading),
            "crash-before-confirm" => Some(Fault::CrashBeforeConfirm),
            "hang" => Some(Fault::Hang),
            _ => None,
        }
    }
}

/// Never returns: a hung new process, which the old one kills. It reads nothing and answers
/// nothing, but it does notice the channel closing: if the old process itself is killed first
/// (a test that fails), it exits instead of hanging on as an orphan.
pub(super) fn hang(channel: &std::os::unix::net::UnixStream) -> ! {
    use rustix::event::{PollFd, PollFlags, poll};
    let watch = PollFlags::RDHUP | PollFlags::HUP;
    loop {
        let mut fds = [PollFd::new(channel, watch)];
        if poll(&mut fds, None).is_ok() && fds[0].revents().intersects(watch | PollFlags::ERR) {
            std::process::exit(FAULT_EXIT_CODE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_name_parses() {
        for name in NAMES.split(", ") {
            assert!(Fault::parse(name).is_some(), "{name}");
        }
        assert_eq!(Fault::parse("hang"), Some(Fault::Hang));
        assert_eq!(Fault::parse("hnag"), None);
    }
}
