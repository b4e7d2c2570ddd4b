//! The log: one line per event on stderr, `natter: ` first, that never blocks the loop.
//!
//! Call `log!` from anywhere in the crate: `log!(Level::Info, "connect {id} from {addr}")`.
//! The process's logger lives in a thread-local (the server has one thread); `init` sets its
//! level once at start, and until then it logs at `Level::Info`.
//!
//! # Never blocking
//! Each line goes out in one system call that cannot wait. How depends on what stderr is, found
//! once with `fstat`:
//! - a socket (journald's stream under systemd): `send` with `MSG_DONTWAIT`;
//! - a pipe, FIFO or terminal: a private non-blocking open file description, opened through
//!   `/proc/self/fd/2`, so the description shared with other processes (the parent's pipe, the
//!   terminal) keeps its flags. If that open is refused (a pipe created by another user, no
//!   `/proc`), each write is preceded by a zero-timeout `poll` for room: a line is at most
//!   `PIPE_BUF` bytes, so a pipe with room takes it whole (only another process filling the
//!   same pipe between the `poll` and the `write` could still make that write wait);
//! - a regular file: plain writes.
//!
//! A line the sink cannot take at once is dropped and counted; the next line that gets through
//! is preceded by `log: N lines dropped`. There is no timer: an idle server does not wake up to
//! report drops. A line the sink took only part of keeps its rest (at most one line), which is
//! written first at the next call, so lines never interleave.
//!
//! Under systemd (`JOURNAL_STREAM` set) each line starts with its syslog level (`<3>` error,
//! `<4>` warn, `<6>` info, `<7>` debug). Control characters in a message are escaped (`\n`,
//! `\u{1b}`), so a line is always one line; a line is cut at 4096 bytes.

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;
use rustix::net::SendFlags;
use std::cell::RefCell;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::str::FromStr;
use thiserror::Error;

/// Logs one line at a level: `log!(Level::Warn, "accept failed: {e}")`. The message is only
/// formatted when the level is enabled.
macro_rules! log {
    ($level:expr, $($arg:tt)+) => {{
        let level: $crate::net::log::Level = $level;
        if $crate::net::log::enabled(level) {
            $crate::net::log::emit(level, format_args!($($arg)+));
        }
    }};
}
pub(crate) use log;

/// How much to log (`--log-level`), most severe first: each level includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Something failed that the operator should fix.
    Error,
    /// Something unusual: a limit hit, a failed upgrade.
    Warn,
    /// One line per event: start, listen, connect, disconnect, upgrade, shutdown (default).
    Info,
    /// Details for debugging.
    Debug,
}

/// An unknown `--log-level` value.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("unknown log level {0:?}: expected error, warn, info or debug")]
pub struct LevelError(String);

impl FromStr for Level {
    type Err = LevelError;

    fn from_str(s: &str) -> Result<Level, LevelError> {
        match s.to_ascii_lowercase().as_str() {
            "error" => Ok(Level::Error),
            "warn" => Ok(Level::Warn),
            "info" => Ok(Level::Info),
            "debug" => Ok(Level::Debug),
            _ => Err(LevelError(s.to_owned())),
        }
    }
}

impl Level {
    /// The syslog priority prefix journald reads from the start of a line.
    fn syslog_prefix(self) -> &'static str {
        match self {
            Level::Error => "<3>",
            Level::Warn => "<4>",
            Level::Info => "<6>",
            Level::Debug => "<7>",
        }
    }
}

thread_local! {
    static LOGGER: RefCell<Option<Logger>> = const { RefCell::new(None) };
}

/// Sets the level of the log on stderr (journald prefixes when `JOURNAL_STREAM` is set). Call
/// once at start; lines logged before it use [`Level::Info`].
pub fn init(max: Level) {
    let _ = LOGGER.try_with(|cell| {
        if let Ok(mut slot) = cell.try_borrow_mut() {
            slot.get_or_insert_with(|| Logger::stderr(max)).max = max;
        }
    });
}

/// Whether a line at `level` would be written (the macro checks before formatting).
pub(crate) fn enabled(level: Level) -> bool {
    LOGGER
        .try_with(|cell| match cell.try_borrow() {
            Ok(slot) => slot
                .as_ref()
                .map_or(level <= Level::Info, |l| l.enabled(level)),
            Err(_) => false,
        })
        .unwrap_or(false)
}

/// Writes one line if `level` is enabled; use [`log!`] instead.
pub(crate) fn emit(level: Level, args: fmt::Arguments<'_>) {
    let _ = LOGGER.try_with(|cell| {
        // A message whose formatting logs again would need the logger twice: drop the inner one.
        if let Ok(mut slot) = cell.try_borrow_mut() {
            slot.get_or_insert_with(|| Logger::stderr(Level::Info))
                .log(level, args);
        }
    });
}

/// Lines dropped since start because stderr could not take them (for the metrics).
pub(crate) fn dropped_total() -> u64 {
    LOGGER
        .try_with(|cell| {
            cell.try_borrow()
                .ok()
                .and_then(|slot| slot.as_ref().map(Logger::dropped_total))
        })
        .ok()
        .flatten()
        .unwrap_or(0)
}

/// Longest line written, line end included: `PIPE_BUF`, so a pipe takes a line whole or not at
/// all.
const MAX_LINE: usize = 4096;
/// Marks a line that was cut at [`MAX_LINE`].
const CUT: &[u8] = b"...";

/// A logger writing to one sink without ever blocking.
struct Logger {
    max: Level,
    journal: bool,
    sink: Sink,
    /// The line being written (reused, so logging does not allocate once warm).
    line: Vec<u8>,
    /// The unwritten end of the last line, when the sink took only part of it.
    rest: Vec<u8>,
    /// Lines dropped since the last `log: N lines dropped` notice.
    dropped: u64,
    dropped_total: u64,
    /// Bytes the sink took since start (tests compare the stream with it).
    written: u64,
}

impl Logger {
    /// A logger on this process's stderr.
    fn stderr(max: Level) -> Logger {
        let journal = std::env::var_os("JOURNAL_STREAM").is_some_and(|v| !v.is_empty());
        Logger::new(Target::Stderr(io::stderr()), max, journal)
    }

    /// A logger on `target`, with syslog prefixes when `journal` is set.
    fn new(target: Target, max: Level, journal: bool) -> Logger {
        Logger::with_sink(Sink::open(target), max, journal)
    }

    fn with_sink(sink: Sink, max: Level, journal: bool) -> Logger {
        Logger {
            max,
            journal,
            sink,
            line: Vec::new(),
            rest: Vec::new(),
            dropped: 0,
            dropped_total: 0,
            written: 0,
        }
    }

    /// Whether lines at `level` are written.
    fn enabled(&self, level: Level) -> bool {
        level <= self.max
    }

    /// Lines dropped since this logger started.
    fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    /// Writes one line, or drops and counts it if the sink cannot take it now.
    fn log(&mut self, level: Level, args: fmt::Arguments<'_>) {
        if !self.enabled(level) {
            return;
        }
        if !self.finish_rest() {
            return self.drop_line();
        }
        if self.dropped > 0 {
            let dropped = self.dropped;
            self.format(Level::Warn, format_args!("log: {dropped} lines dropped"));
            if !self.send_line() {
                return self.drop_line();
            }
            self.dropped = 0;
            if !self.rest.is_empty() {
                // The notice went out only in part: this line would have to wait behind it.
                return self.drop_line();
            }
        }
        self.format(level, args);
        if !self.send_line() {
            self.drop_line();
        }
    }

    fn drop_line(&mut self) {
        self.dropped += 1;
        self.dropped_total += 1;
    }

    /// Writes what is left of a partly written line; true once nothing is left.
    fn finish_rest(&mut self) -> bool {
        if self.rest.is_empty() {
            return true;
        }
        match self.sink.try_write(&self.rest) {
            Ok(n) => {
                let n = n.min(self.rest.len());
                self.written += n as u64;
                self.rest.drain(..n);
                self.rest.is_empty()
            }
            Err(_) => false,
        }
    }

    /// Writes `self.line` once; false if none of it was taken. A part not taken is kept in
    /// `self.rest`.
    fn send_line(&mut self) -> bool {
        match self.sink.try_write(&self.line) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                let n = n.min(self.line.len());
                self.written += n as u64;
                self.rest.extend_from_slice(&self.line[n..]);
                true
            }
        }
    }

    /// Renders one line into `self.line`: prefix, escaped message (cut to fit), line end.
    fn format(&mut self, level: Level, args: fmt::Arguments<'_>) {
        self.line.clear();
        if self.journal {
            self.line
                .extend_from_slice(level.syslog_prefix().as_bytes());
        }
        self.line.extend_from_slice(b"natter: ");
        let limit = MAX_LINE - CUT.len() - 1;
        let mut out = OneLine {
            buf: &mut self.line,
            limit,
            cut: false,
        };
        let _ = fmt::Write::write_fmt(&mut out, args);
        if out.cut {
            self.line.extend_from_slice(CUT);
        }
        self.line.push(b'\n');
    }
}

/// Formats into a line buffer, escaping control characters and stopping at `limit` bytes.
struct OneLine<'a> {
    buf: &'a mut Vec<u8>,
    limit: usize,
    cut: bool,
}

impl fmt::Write for OneLine<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            // The escape of a control character is ASCII (`\n`, `\u{1b}`).
            let escape = c.escape_debug();
            let len = if c.is_control() {
                escape.len()
            } else {
                c.len_utf8()
            };
            if self.buf.len() + len > self.limit {
                self.cut = true;
                return Err(fmt::Error);
            }
            if c.is_control() {
                self.buf.extend(escape.map(|e| e as u8));
            } else {
                self.buf
                    .extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
            }
        }
        Ok(())
    }
}

/// What the log writes to.
enum Target {
    /// This process's stderr (descriptor 2), kept open and shared.
    Stderr(io::Stderr),
    /// A descriptor of our own: a private reopened description, or a test's pipe or socket.
    Owned(OwnedFd),
}

impl AsFd for Target {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Target::Stderr(stderr) => stderr.as_fd(),
            Target::Owned(fd) => fd.as_fd(),
        }
    }
}

/// How a line is written to the target without blocking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    /// `send` with `MSG_DONTWAIT` (sockets).
    Send,
    /// Plain `write`: the description is our own and non-blocking, or a regular file.
    Write,
    /// `poll` for room with a zero timeout, then `write` (a pipe we could not reopen).
    PollFirst,
    /// Nothing to write to (stderr closed).
    Discard,
}

struct Sink {
    target: Target,
    method: Method,
}

impl Sink {
    /// Picks how to write to `target` without blocking and without changing the flags of a
    /// description other processes share.
    fn open(target: Target) -> Sink {
        let Ok(stat) = rustix::fs::fstat(&target) else {
            return Sink {
                target,
                method: Method::Discard,
            };
        };
        let method = match FileType::from_raw_mode(stat.st_mode) {
            FileType::Socket => Method::Send,
            FileType::RegularFile => Method::Write,
            _ => match reopen_nonblocking(target.as_fd()) {
                Ok(own) => {
                    return Sink {
                        target: Target::Owned(own),
                        method: Method::Write,
                    };
                }
                Err(_) => Method::PollFirst,
            },
        };
        Sink { target, method }
    }

    /// One attempt to write `buf`: the number of bytes taken, or an error (`EAGAIN` when the
    /// target is full).
    fn try_write(&self, buf: &[u8]) -> Result<usize, Errno> {
        loop {
            let result = match self.method {
                Method::Send => {
                    rustix::net::send(&self.target, buf, SendFlags::DONTWAIT | SendFlags::NOSIGNAL)
                }
                Method::Write => rustix::io::write(&self.target, buf),
                Method::PollFirst => {
                    if !has_room(self.target.as_fd()) {
                        return Err(Errno::AGAIN);
                    }
                    rustix::io::write(&self.target, buf)
                }
                Method::Discard => Ok(buf.len()),
            };
            if result != Err(Errno::INTR) {
                return result;
            }
        }
    }
}

/// Opens a new, non-blocking description of what `fd` refers to (a pipe, FIFO or terminal).
fn reopen_nonblocking(fd: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let flags = OFlags::WRONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    rustix::fs::open(path.as_str(), flags, Mode::empty())
}

/// Whether `fd` can take a write now (anything but a clear "yes" counts as no).
fn has_room(fd: BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::new(&fd, PollFlags::OUT)];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(rustix::event::poll(&mut fds, Some(&now)), Ok(1))
        && fds[0].revents().contains(PollFlags::OUT)
}

#[cfg(test)]
mod tests;
