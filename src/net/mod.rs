//! The I/O shell: the only code that touches sockets, signals and the clock.
//!
//! One single-threaded `mio` poll loop owns the listeners, a slab of connections and the pure
//! [`crate::proto::chat::Chat`] core. See [`Server`].

mod fd_limit;
mod server;

pub use server::{Server, ServerError};

/// Writes one log line (`natter: ...`) to stderr; log lines are never fatal.
pub(crate) fn log(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "natter: {args}");
}
