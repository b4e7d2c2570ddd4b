//! natter: a chat server for telnet and netcat users, built for many idle connections on a
//! small machine.
//!
//! # Architecture
//! - [`proto`] is the pure core: telnet decoding, line assembly, text cleaning, command parsing,
//!   names and the chat state machine ([`proto::chat::Chat`]). It performs no I/O and never
//!   reads the clock: time is an argument, so tests drive it with a fake clock.
//! - [`net`] is the shell: one single-threaded `mio` poll loop, a slab of sockets, and nothing
//!   else. It reads into one shared scratch buffer, hands bytes to the core, and writes each
//!   connection's queued output once per loop turn.
//! - [`config`] turns flags into a [`config::Config`].
//!
//! # Drain rule
//! After handing events to the core, the shell drains closes, resumes and dirty connections,
//! then blocks until the next I/O event or the core's next deadline; with nothing due it blocks
//! without a timeout, so an idle server uses no CPU. See [`proto::chat`] for the exact order.
//!
//! # Memory model
//! An idle connection owns no heap buffer: its session (about 100 bytes) lives in a slot table
//! reserved up front (untouched pages cost nothing), plus 16 bytes in the shell's slab, 4 bytes
//! in its room's member list and 4 bytes in the nickname table. Output queues, unfinished lines
//! and held input are allocated when needed and freed as soon as they are empty. For comparison,
//! the kernel itself spends about 3.9 KB per TCP socket.
//!
//! # Limits
//! Every untrusted size is bounded: input lines (`--max-line`), telnet subnegotiations (skipped,
//! never stored), unsent output (`--sendq`, judged after each write attempt; then the client is
//! dropped as too slow), output queued in one loop turn (8 MiB, then the senders' remaining input
//! is held until it is written), held input (one read), nicknames (24) and room names (32).
//! Flood control and output backpressure hold input instead of dropping it: TCP keeps the rest.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod config;
pub mod net;
pub mod proto;
