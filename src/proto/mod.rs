//! The pure protocol core: no sockets, no clock, no I/O.
//!
//! Bytes come in through [`chat::Chat`]'s `handle_*` methods and leave through
//! [`chat::Chat::poll_output`]; everything below it (telnet decoding, line assembly, cleaning,
//! parsing, names, reply texts) is a pure function or a small state value.

pub mod chat;
pub mod command;
pub mod names;
pub mod reply;
pub mod wire;
