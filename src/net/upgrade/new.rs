//! The new process's side: say hello, receive the state and the sockets, confirm, and wait for
//! the commit. Blocking with deadlines: the new process serves nothing until it is done.

use super::channel::{Inbox, Outbox, Recv};
use super::fault::{FAULT_EXIT_CODE, Fault, hang};
use super::protocol::{CHANNEL_VERSION, FdTag, Hello, ToNew, ToOld};
use super::spawn::{started_for_upgrade, take_stdin};
use super::{CONFIRM_TIMEOUT, UpgradeError};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Extra time the new process allows beyond the old process's deadline before giving up.
const SLACK: Duration = Duration::from_secs(1);
/// Longest reason sent with `Abort`.
const MAX_REASON: usize = 1024;

/// What the old process handed over.
#[derive(Debug)]
pub(crate) struct Received {
    /// The version the state is in (one of those we said we read).
    pub(crate) state_version: u32,
    /// The core's state, as the old process exported it.
    pub(crate) state: Vec<u8>,
    /// Listening sockets by index, in the order sent.
    pub(crate) listeners: Vec<(u32, OwnedFd)>,
    /// Client connections by key, in the order sent.
    pub(crate) conns: Vec<(u64, OwnedFd)>,
}

/// An upgrade under way, seen from the new process.
pub(crate) struct Takeover {
    channel: UnixStream,
    inbox: Inbox,
    fault: Option<Fault>,
}

impl Takeover {
    /// Whether this process was started for an upgrade. If so, takes the channel off stdin
    /// (which becomes `/dev/null`) and reads the test fault switch. Call it before binding
    /// anything, and before anything reads stdin.
    pub(crate) fn detect() -> Result<Option<Takeover>, UpgradeError> {
        if !started_for_upgrade() {
            return Ok(None);
        }
        let channel = take_stdin()?;
        let fault = Fault::from_env()?;
        Ok(Some(Takeover::new(channel, fault)))
    }

    /// A takeover over a channel already in hand (blocking mode).
    pub(crate) fn new(channel: UnixStream, fault: Option<Fault>) -> Takeover {
        Takeover {
            channel,
            inbox: Inbox::default(),
            fault,
        }
    }

    /// Says hello (this program's version, the state versions it reads) and receives the state
    /// and every descriptor. Touch none of them before [`Takeover::confirm`] returns.
    pub(crate) fn receive(
        &mut self,
        program: &str,
        reads: &[u32],
    ) -> Result<Received, UpgradeError> {
        let deadline = Instant::now() + CONFIRM_TIMEOUT + SLACK;
        let reads = match self.fault {
            Some(Fault::RefuseVersion) => Vec::new(),
            _ => reads.to_vec(),
        };
        let hello = Hello {
            channel: CHANNEL_VERSION,
            program: program.to_owned(),
            reads: reads.clone(),
        };
        self.send(&ToOld::Hello(hello), deadline)?;
        if self.fault == Some(Fault::HangBeforeReading) {
            hang(&self.channel);
        }
        let (state_version, len, within) = match self.next(Some(deadline))? {
            ToNew::State {
                version,
                len,
                confirm_within_ms,
            } => (version, len, confirm_within_ms),
            other => return Err(unexpected(&other)),
        };
        if !reads.contains(&state_version) {
            return Err(UpgradeError::StateVersion {
                program: program.to_owned(),
                offered: state_version,
                reads,
            });
        }
        let deadline = Instant::now() + Duration::from_millis(within) + SLACK;
        let mut received = Received {
            state_version,
            state: self.read_state(len, deadline)?,
            listeners: Vec::new(),
            conns: Vec::new(),
        };
        self.read_fds(&mut received, deadline)?;
        Ok(received)
    }

    /// Confirms that everything is rebuilt, then waits for the old process's Commit, with no
    /// deadline of its own (the old process commits or kills us). Only after `Ok` may this
    /// process read, write or accept on the handed-over sockets; after an error it must exit
    /// without touching them.
    pub(crate) fn confirm(mut self) -> Result<(), UpgradeError> {
        match self.fault {
            Some(Fault::CrashBeforeConfirm) => std::process::exit(FAULT_EXIT_CODE),
            Some(Fault::Hang) => hang(&self.channel),
            _ => {}
        }
        self.send(&ToOld::Confirm, Instant::now() + SLACK)?;
        match self.next(None)? {
            ToNew::Commit => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Tells the old process why this one gives up (best effort); the caller then exits
    /// non-zero without touching the received sockets.
    pub(crate) fn fail(mut self, reason: &str) {
        let end = reason.floor_char_boundary(MAX_REASON);
        let _ = self.send(
            &ToOld::Abort(reason[..end].to_owned()),
            Instant::now() + SLACK,
        );
    }

    fn read_state(&mut self, len: u64, deadline: Instant) -> Result<Vec<u8>, UpgradeError> {
        let len = usize::try_from(len).map_err(|_| too_big(len))?;
        let mut state = Vec::new();
        state
            .try_reserve_exact(len)
            .map_err(|_| too_big(len as u64))?;
        state.resize(len, 0);
        let mut filled = 0;
        while filled < len {
            self.wait_until(Some(deadline))?;
            match self
                .inbox
                .read_raw(self.channel.as_fd(), &mut state[filled..])?
            {
                Recv::Data(n) => filled += n,
                Recv::Eof => return Err(UpgradeError::Closed),
                Recv::WouldBlock => {}
            }
        }
        Ok(state)
    }

    /// Receives the descriptor batches up to `End` into `received`.
    fn read_fds(&mut self, received: &mut Received, deadline: Instant) -> Result<(), UpgradeError> {
        loop {
            match self.next(Some(deadline))? {
                ToNew::Fds(tags) => {
                    let fds = self.inbox.take_fds(tags.len())?;
                    for (tag, fd) in tags.into_iter().zip(fds) {
                        match tag {
                            FdTag::Listener(index) => received.listeners.push((index, fd)),
                            FdTag::Conn(key) => received.conns.push((key, fd)),
                        }
                    }
                }
                ToNew::End { fds } => {
                    let got = (received.listeners.len() + received.conns.len()) as u64;
                    if fds != got || self.inbox.pending_fds() != 0 {
                        return Err(UpgradeError::Protocol(format!(
                            "{fds} descriptors announced, {got} named and {} more arrived",
                            self.inbox.pending_fds()
                        )));
                    }
                    return Ok(());
                }
                other => return Err(unexpected(&other)),
            }
        }
    }

    /// The next message, waiting until `deadline` (`None`: as long as it takes).
    fn next(&mut self, deadline: Option<Instant>) -> Result<ToNew, UpgradeError> {
        loop {
            if let Some(msg) = self.inbox.message()? {
                return Ok(msg);
            }
            self.wait_until(deadline)?;
            match self.inbox.fill(self.channel.as_fd())? {
                Recv::Data(_) | Recv::WouldBlock => {}
                Recv::Eof => return Err(UpgradeError::Closed),
            }
        }
    }

    fn send(&mut self, msg: &ToOld, deadline: Instant) -> Result<(), UpgradeError> {
        let mut outbox = Outbox::default();
        outbox.push(msg)?;
        loop {
            let left = self.left(deadline)?;
            self.channel.set_write_timeout(Some(left))?;
            if outbox.flush(self.channel.as_fd(), &mut |_| None)? {
                return Ok(());
            }
        }
    }

    /// Makes the next blocking read return by `deadline`; fails once it has passed.
    fn wait_until(&mut self, deadline: Option<Instant>) -> Result<(), UpgradeError> {
        let timeout = deadline.map(|d| self.left(d)).transpose()?;
        self.channel.set_read_timeout(timeout)?;
        Ok(())
    }

    fn left(&self, deadline: Instant) -> Result<Duration, UpgradeError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(UpgradeError::OldTooSlow);
        }
        Ok(left)
    }
}

fn unexpected(msg: &ToNew) -> UpgradeError {
    let name = match msg {
        ToNew::State { .. } => "State",
        ToNew::Fds(_) => "Fds",
        ToNew::End { .. } => "End",
        ToNew::Commit => "Commit",
    };
    UpgradeError::Protocol(format!("the old process sent {name} out of turn"))
}

fn too_big(len: u64) -> UpgradeError {
    UpgradeError::Protocol(format!("no memory for a state of {len} bytes"))
}
