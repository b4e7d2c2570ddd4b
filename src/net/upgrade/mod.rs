//! The upgrade hand-over channel: how a running process gives its listening sockets, its client
//! connections and its chat state to a fresh start of its own program file (SIGUSR2, see
//! "Upgrade without dropping anyone" in `PROTOCOL.md`).
//!
//! The shape is Cloudflare's tableflip and shellflip (the old process starts the new one and
//! waits for it to say it is ready), plus live connections and a three-step commit, because
//! both processes hold the same sockets for a moment and only one of them may ever use them.
//!
//! # Starting the new process
//! At start the server records its program file and arguments ([`Program::capture`]): argv\[0\]
//! made absolute without resolving symbolic links, so a new build installed by rename or by
//! switching a symlink is what starts (`/proc/self/exe` would name the old, deleted file).
//! [`Handover::start`] starts that file again with the same arguments, one end of a private
//! Unix socket pair as its **stdin**, and `NATTER_UPGRADE=<old pid>` in its environment.
//! Nothing travels as an argument and no unsafe code (`pre_exec`) is needed: std puts the
//! socket on fd 0 of the child. The new process ([`Takeover::detect`]) believes the marker only
//! if it names its parent process, so a marker inherited by some later, unrelated child is
//! ignored (we cannot remove it from our environment: `remove_var` is unsafe code). It then
//! moves the channel off fd 0 (a close-on-exec duplicate) and puts `/dev/null` back on fd 0.
//!
//! # Messages
//! A Unix stream socket. Every message is a frame: a 4-byte little-endian length, then that
//! many bytes of a `postcard`-encoded message (at most 64 KiB). New process to old:
//! `Hello { channel, program, reads }` (always the first variant and first fields, so every
//! future program can still say hello to an old one), `Confirm`, `Abort(reason)`. Old to new:
//! `State { version, len, confirm_within_ms }` followed by `len` raw bytes (the core's
//! snapshot blob, streamed, never copied into a frame), `Fds(tags)` with exactly `tags.len()`
//! descriptors attached by `SCM_RIGHTS` (at most 200 per message; the kernel allows 253),
//! `End { fds }`, and `Commit`. A tag says which descriptor it is: [`FdTag::Listener`] with the
//! listener's index, or [`FdTag::Conn`] with the key the snapshot knows the connection by.
//!
//! ```text
//!   old (serving)                          new (binds nothing)
//!        <------------------------------- Hello { channel 1, "0.2.0", reads [5, 4] }
//!   negotiate: writes 5, 5 is readable
//!   (Progress::Accepted) freeze at the end of the turn, export the state
//!   State { 5, len, ms } + len bytes ---->
//!   Fds [Listener 0, Conn 7, ...] + fds -> (batches of <= 200)
//!   End { fds: n } ---------------------->  rebuild everything, register with its own poll,
//!                                           touch no socket
//!        <------------------------------- Confirm
//!   Commit ------------------------------>  (Progress::Committed: old exits 0, untouched)
//!                                           now, and only now, serve the sockets
//! ```
//! Received descriptors have close-on-exec set (`MSG_CMSG_CLOEXEC`); a message whose control
//! data was cut off (`MSG_CTRUNC`) fails the hand-over, and the descriptors that did arrive are
//! closed.
//!
//! # The three-step commit
//! 1. **Confirm** (new to old): the new process has everything and has rebuilt its state, and
//!    it has not read, written or accepted anything on any handed-over socket. Before Confirm
//!    it may give up at any time (`Abort`, or just exit): the old one kills and reaps it, and
//!    goes on.
//! 2. **Commit** (old to new): the old process's point of no return is the moment the last
//!    byte of `Commit` is accepted by its socket. Before that, a failure, the 10-second deadline
//!    or SIGINT/SIGTERM makes it kill and reap the new process and unfreeze, which is safe
//!    because the new one cannot have seen a whole `Commit`. After it, the old process never
//!    touches a client socket again, tells systemd `MAINPID=<new pid>`, and exits 0 without
//!    `shutdown(2)`, without a notice and without writing anything on drop: just close.
//! 3. **Serve** (new): only once the new process has read the whole `Commit` does it read,
//!    write or accept. After sending Confirm it waits for Commit without a deadline of its own:
//!    the old process either commits or kills it, and if the channel ends without Commit (the
//!    old one died) it exits without touching the sockets.
//!
//! # Using it from the mio loop
//! Old process ([`Handover`], non-blocking; nothing in it blocks except reaping a killed
//! child): on SIGUSR2, `Handover::start`, then register [`Handover::channel`] for READABLE |
//! WRITABLE and keep serving. On every event for that token, and whenever the loop wakes at or
//! after [`Handover::deadline`], call [`Handover::poll`] (it reads and writes until the socket
//! would block, as edge-triggered readiness needs). When it returns
//! [`Progress::Accepted`], finish the turn, freeze, export the state and call
//! [`Handover::send_state`] (it starts writing at once). While frozen, poll only signals and
//! the channel. [`Progress::Committed`]: notify systemd and exit 0. Any `Err`, or SIGINT or
//! SIGTERM before `Committed`: call [`Handover::abandon`] (kills and reaps the child; dropping
//! the `Handover` does the same), log `upgrade failed: REASON`, unfreeze. mio is
//! edge-triggered: readiness events for client sockets and listeners that arrive while frozen
//! are consumed and not acted on, so after unfreezing treat every connection and listener as
//! possibly readable (and writable if it has output queued), or keep the events seen meanwhile.
//!
//! New process ([`Takeover`], blocking with deadlines: it serves nothing yet):
//! `Takeover::detect()` before binding anything; if it returns a takeover, call
//! [`Takeover::receive`], rebuild, then [`Takeover::confirm`]; serve only after it returns
//! `Ok`. If rebuilding fails, [`Takeover::fail`] tells the old process why; on any error, exit
//! non-zero without touching the received sockets (dropping an `OwnedFd` only closes this
//! process's copy; never call `shutdown`). Received sockets share their open file description
//! with the old process: they are already non-blocking, and changing such flags would change
//! them for the old process too. A new epoll registration reports the readiness a socket
//! already has, so bytes waiting in the kernel wake the new loop; input the old process had
//! already read travels in the state and must be scheduled by the core.
//!
//! # Versions
//! The new process says which state versions it can read (its own and the one before, from the
//! core); the old one sends its own version if that is among them, and otherwise kills it and
//! goes on. `Hello` also carries the version of this channel protocol, checked first.
//!
//! # Test faults
//! Debug builds only: `NATTER_TEST_UPGRADE_FAULT` makes the new process misbehave, see
//! [`fault::Fault`].

mod channel;
mod fault;
mod new;
mod old;
mod protocol;
mod spawn;

#[cfg(test)]
mod tests;

pub(crate) use fault::FAULT_ENV;
#[cfg(test)]
pub(crate) use fault::FAULT_EXIT_CODE;
pub(crate) use new::{Received, Takeover};
pub(crate) use old::{Handover, Progress};
pub(crate) use protocol::FdTag;
#[cfg(test)]
pub(crate) use spawn::ENV_MARKER;
pub(crate) use spawn::Program;

use std::io;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

/// How long the old process waits for the new one's Confirm, from the moment it starts it.
pub(crate) const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a hand-over failed (the old process logs it as `upgrade failed: REASON`).
#[derive(Debug, Error)]
pub(crate) enum UpgradeError {
    /// Neither argv\[0\] nor the running executable names the program file.
    #[error("cannot tell which program file to start: {0}")]
    ProgramPath(io::Error),
    /// The socket pair for the hand-over could not be made.
    #[error("cannot create the hand-over channel: {0}")]
    Channel(io::Error),
    /// The new process could not be started.
    #[error("cannot start {}: {source}", path.display())]
    Spawn {
        /// The program file.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The new process found no usable channel on its stdin.
    #[error("the hand-over channel on stdin is unusable: {0}")]
    Stdin(io::Error),
    /// Reading or writing the channel failed.
    #[error("the hand-over channel failed: {0}")]
    Io(io::Error),
    /// The other process closed the channel (it exited, or gave up).
    #[error("the other process closed the hand-over channel")]
    Closed,
    /// The deadline passed.
    #[error("no confirmation within {} seconds", .0.as_secs_f32())]
    Timeout(Duration),
    /// The old process did not finish its part in time (seen from the new process).
    #[error("the old process did not finish the hand-over in time")]
    OldTooSlow,
    /// The two programs speak different versions of this channel protocol.
    #[error("the new program ({program}) speaks hand-over protocol {theirs}, this one {ours}")]
    ChannelVersion {
        /// The new program's version string.
        program: String,
        /// Its channel protocol version.
        theirs: u16,
        /// Ours.
        ours: u16,
    },
    /// The reading side cannot read the state version the writing side has.
    #[error("the new program ({program}) cannot read state version {offered} (it reads {reads:?})")]
    StateVersion {
        /// The reading program's version string.
        program: String,
        /// The version the old process writes.
        offered: u32,
        /// The versions the new process reads.
        reads: Vec<u32>,
    },
    /// The new process gave up and said why.
    #[error("the new process gave up: {0}")]
    Aborted(String),
    /// A message was malformed or came at the wrong time.
    #[error("bad hand-over message: {0}")]
    Protocol(String),
    /// A message's control data was cut off (`MSG_CTRUNC`): descriptors were lost.
    #[error("descriptors were cut off in transit (MSG_CTRUNC); the ones that arrived were closed")]
    Truncated,
    /// The loop could not name a descriptor it had listed for the hand-over.
    #[error("the descriptor for {0:?} is gone")]
    MissingFd(FdTag),
    /// The test fault switch holds an unknown value.
    #[error("{FAULT_ENV}={0} is not one of {1}")]
    BadFault(String, &'static str),
}

impl From<io::Error> for UpgradeError {
    fn from(e: io::Error) -> UpgradeError {
        match e.kind() {
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => UpgradeError::Closed,
            _ => UpgradeError::Io(e),
        }
    }
}

impl From<rustix::io::Errno> for UpgradeError {
    fn from(e: rustix::io::Errno) -> UpgradeError {
        io::Error::from(e).into()
    }
}
