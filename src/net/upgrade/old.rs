//! The old process's side: start the new process, hand everything over, then commit or give up.

use super::channel::{Inbox, Outbox, Recv};
use super::protocol::{FdTag, MAX_FDS_PER_MESSAGE, ToNew, ToOld, negotiate};
use super::spawn::{Program, spawn};
use super::{CONFIRM_TIMEOUT, UpgradeError};
use std::os::fd::{AsFd, BorrowedFd};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// An upgrade under way, seen from the old process. Non-blocking: drive it with
/// [`Handover::poll`] from the poll loop (see the module doc). Dropping it before
/// [`Progress::Committed`] kills and reaps the new process.
pub(crate) struct Handover {
    child: Child,
    channel: mio::net::UnixStream,
    inbox: Inbox,
    outbox: Outbox,
    /// The state version this program writes.
    writes: u32,
    timeout: Duration,
    deadline: Instant,
    phase: Phase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the new process's Hello.
    Hello,
    /// It reads our state version; waiting for the loop to freeze and send the state.
    Accepted,
    /// Everything is queued or sent; waiting for Confirm.
    Confirm,
    /// Confirm came; Commit is not all written yet.
    Committing,
    /// Commit is written: the new process owns everything.
    Committed,
}

/// What the loop does next, after [`Handover::poll`] or [`Handover::send_state`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Nothing to do: wait for the channel or the deadline.
    Waiting,
    /// The new process reads our state: finish this turn, freeze (no more reads, writes or
    /// accepts), export the state and call [`Handover::send_state`].
    Accepted {
        /// The new program's version, for the log.
        program: String,
        /// The state version to export.
        state_version: u32,
    },
    /// Commit is written: never touch a client or listening socket again; tell systemd the
    /// new `MAINPID` ([`Handover::pid`]) and exit 0.
    Committed,
}

impl Handover {
    /// Starts `program` again for an upgrade; this program writes state version `writes`.
    pub(crate) fn start(
        program: &Program,
        writes: u32,
        now: Instant,
    ) -> Result<Handover, UpgradeError> {
        Handover::start_command(program.command(), writes, CONFIRM_TIMEOUT, now)
    }

    /// [`Handover::start`] with any command and deadline (tests start a stand-in).
    pub(crate) fn start_command(
        command: Command,
        writes: u32,
        timeout: Duration,
        now: Instant,
    ) -> Result<Handover, UpgradeError> {
        let (child, channel) = spawn(command)?;
        Ok(Handover {
            child,
            channel: mio::net::UnixStream::from_std(channel),
            inbox: Inbox::default(),
            outbox: Outbox::default(),
            writes,
            timeout,
            deadline: now + timeout,
            phase: Phase::Hello,
        })
    }

    /// The channel, to register with the poll for READABLE | WRITABLE.
    pub(crate) fn channel(&mut self) -> &mut mio::net::UnixStream {
        &mut self.channel
    }

    /// When the loop must wake to call [`Handover::poll`] even without an event.
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The new process's id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads and writes the channel until it would block, and says what to do next. After the
    /// deadline, anything short of Committed is a timeout. `resolve` names the descriptor for
    /// each tag given to [`Handover::send_state`].
    pub(crate) fn poll<'f>(
        &mut self,
        now: Instant,
        mut resolve: impl FnMut(FdTag) -> Option<BorrowedFd<'f>>,
    ) -> Result<Progress, UpgradeError> {
        if self.phase == Phase::Committed {
            return Ok(Progress::Committed);
        }
        if now >= self.deadline {
            return Err(UpgradeError::Timeout(self.timeout));
        }
        self.flush(&mut resolve)?;
        if self.phase == Phase::Committed {
            return Ok(Progress::Committed);
        }
        let ended = self.read()?;
        while let Some(msg) = self.inbox.message::<ToOld>()? {
            let progress = self.handle(msg, &mut resolve)?;
            if progress != Progress::Waiting {
                return Ok(progress);
            }
        }
        if ended {
            return Err(UpgradeError::Closed);
        }
        Ok(Progress::Waiting)
    }

    /// Queues the state (`state`, in the version [`Progress::Accepted`] named) and the
    /// descriptors `fds` name, in batches, and starts writing them.
    pub(crate) fn send_state<'f>(
        &mut self,
        state: Vec<u8>,
        fds: &[FdTag],
        now: Instant,
        resolve: impl FnMut(FdTag) -> Option<BorrowedFd<'f>>,
    ) -> Result<Progress, UpgradeError> {
        if self.phase != Phase::Accepted {
            return Err(UpgradeError::Protocol(format!(
                "the state was offered while {:?}",
                self.phase
            )));
        }
        let left = self.deadline.saturating_duration_since(now);
        self.outbox.push(&ToNew::State {
            version: self.writes,
            len: state.len() as u64,
            confirm_within_ms: left.as_millis().try_into().unwrap_or(u64::MAX),
        })?;
        self.outbox.push_raw(state, Vec::new());
        for batch in fds.chunks(MAX_FDS_PER_MESSAGE) {
            self.outbox
                .push_with_fds(&ToNew::Fds(batch.to_vec()), batch.to_vec())?;
        }
        self.outbox.push(&ToNew::End {
            fds: fds.len() as u64,
        })?;
        self.phase = Phase::Confirm;
        self.poll(now, resolve)
    }

    /// Gives up: kills and reaps the new process (also what dropping does before Committed).
    /// Returns how it ended, for the log; `None` once committed, when nothing is done.
    pub(crate) fn abandon(mut self) -> Option<ExitStatus> {
        self.stop_child()
    }

    /// Waits for a committed new process to exit (tests: the old process does not wait).
    #[cfg(test)]
    pub(crate) fn wait_committed(mut self) -> std::io::Result<ExitStatus> {
        assert_eq!(self.phase, Phase::Committed);
        self.child.wait()
    }

    fn stop_child(&mut self) -> Option<ExitStatus> {
        if self.phase == Phase::Committed {
            return None;
        }
        // Kill succeeds on a child that already exited; wait reaps it (once, then remembers).
        let _ = self.child.kill();
        self.child.wait().ok()
    }

    fn flush<'f>(
        &mut self,
        resolve: &mut dyn FnMut(FdTag) -> Option<BorrowedFd<'f>>,
    ) -> Result<(), UpgradeError> {
        let all_written = self.outbox.flush(self.channel.as_fd(), resolve)?;
        if all_written && self.phase == Phase::Committing {
            self.phase = Phase::Committed;
        }
        Ok(())
    }

    /// Reads until the socket would block; true if the new process closed the channel.
    fn read(&mut self) -> Result<bool, UpgradeError> {
        loop {
            match self.inbox.fill(self.channel.as_fd())? {
                Recv::Data(_) => {}
                Recv::Eof => return Ok(true),
                Recv::WouldBlock => return Ok(false),
            }
        }
    }

    fn handle<'f>(
        &mut self,
        msg: ToOld,
        resolve: &mut dyn FnMut(FdTag) -> Option<BorrowedFd<'f>>,
    ) -> Result<Progress, UpgradeError> {
        match (self.phase, msg) {
            (Phase::Hello, ToOld::Hello(hello)) => {
                let state_version = negotiate(self.writes, &hello)?;
                self.phase = Phase::Accepted;
                Ok(Progress::Accepted {
                    program: hello.program,
                    state_version,
                })
            }
            (Phase::Confirm, ToOld::Confirm) if self.outbox.is_empty() => {
                self.outbox.push(&ToNew::Commit)?;
                self.phase = Phase::Committing;
                self.flush(resolve)?;
                Ok(match self.phase {
                    Phase::Committed => Progress::Committed,
                    _ => Progress::Waiting,
                })
            }
            (_, ToOld::Abort(reason)) => Err(UpgradeError::Aborted(reason)),
            (phase, msg) => Err(UpgradeError::Protocol(format!(
                "the new process sent {msg:?} while {phase:?}"
            ))),
        }
    }
}

impl Drop for Handover {
    fn drop(&mut self) {
        self.stop_child();
    }
}
