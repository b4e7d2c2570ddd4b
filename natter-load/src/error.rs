//! The one error type of natter-load and the exit code each kind maps to.

use std::fmt;
use std::io;

/// Everything that can stop a run. Each variant carries enough context to be read on its own.
#[derive(Debug)]
pub enum Error {
    /// Bad command line; exit code 2.
    Usage(String),
    /// An operating-system call failed; `context` says what we were doing.
    Io {
        /// What we were doing, e.g. "connecting to 127.0.0.1:7001".
        context: String,
        /// The OS error.
        source: io::Error,
    },
    /// The global `--timeout` (or a phase's own bound) ran out.
    Timeout(String),
    /// The server said something the contract does not allow at that point, or closed early.
    Protocol(String),
}

impl Error {
    /// Exit code for this error: 2 for usage errors, 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) => write!(f, "usage error: {m} (try --help)"),
            Error::Io { context, source } => write!(f, "{context}: {source}"),
            Error::Timeout(m) => write!(f, "timed out: {m}"),
            Error::Protocol(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Result alias used across the crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Adds a context string to an `io::Result`, turning it into [`Error::Io`].
pub trait IoContext<T> {
    /// Wraps the error with `context()`; the closure runs only on error.
    fn ctx<F: FnOnce() -> String>(self, context: F) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, context: F) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: context(),
            source,
        })
    }
}
