//! The pure protocol core: no sockets, no clock, no I/O.
//!
//! Bytes come in through [`chat::Chat`]'s `handle_*` methods and leave through its `poll_*` and
//! output methods; everything below it (telnet decoding, line assembly, cleaning, parsing,
//! names, reply texts) is a pure function or a small state value.

pub mod chat;
pub mod command;
pub mod line;
pub mod names;
pub mod reply;
pub mod sanitize;
pub mod telnet;
