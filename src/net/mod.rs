//! The I/O shell: the only code that touches sockets, signals and the clock.
//!
//! One single-threaded `mio` poll loop owns the listeners, a slab of connections and the pure
//! [`crate::proto::chat::Chat`] core. See [`Server`].

mod event_loop;
mod fd_limit;
mod listener;
pub(crate) mod log;
pub(crate) mod metrics;
pub(crate) mod notify;
mod peer;
#[cfg(test)]
pub(crate) mod test_fds;
pub mod tls;
// Not wired into the poll loop yet (issue 8): the server will call it on SIGUSR2 and at start.
#[allow(dead_code, unused_imports)]
pub(crate) mod upgrade;

pub mod redis;

pub use event_loop::{Server, ServerError};
pub use peer::peer_of;

/// Writes one log line (`natter: ...`) to stderr in a single system call (stderr is
/// unbuffered, so formatting straight into it would cost one call per piece); log lines are
/// never fatal.
pub(crate) fn log(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let line = format!("natter: {args}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}
