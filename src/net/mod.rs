//! The I/O shell: the only code that touches sockets, signals and the clock.
//!
//! One single-threaded `mio` poll loop owns the listeners, a slab of connections and the pure
//! [`crate::proto::chat::Chat`] core. See [`Server`].

mod fd_limit;
mod server;
pub mod tls;

pub use server::{Server, ServerError};

/// Writes one log line (`natter: ...`) to stderr in a single system call (stderr is
/// unbuffered, so formatting straight into it would cost one call per piece); log lines are
/// never fatal.
pub(crate) fn log(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let line = format!("natter: {args}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}
