//! TLS for the poll loop: certificate loading ([`load_server_config`]) and a per-connection
//! adapter ([`TlsConn`]) over rustls 0.23's unbuffered API, so the loop owns the buffers.
//!
//! Every rustls connection call lives in `conn.rs`: rustls 0.24 replaces the unbuffered API, and
//! that file is the only one that should have to change.
//!
//! # How the loop drives a TLS connection
//! - **Accept:** `TlsConn::new(config.clone())` with the config current at accept time (a
//!   SIGHUP swaps the loop's `Arc`; existing connections keep theirs), and tell the core about
//!   the connection as for a plain one (limits count from accept; its banner waits here until
//!   the handshake is done). Box it: `TlsConn` is over 1 KB and a plain connection must not pay
//!   for it in the slab.
//! - **Read** (READABLE): [`TlsConn::read`] reads once into the loop's scratch buffer (at least
//!   [`MAX_RECORD_LEN`] bytes long), decrypts every whole record and hands each plaintext slice
//!   to the callback (forward it to the core as `handle_input`; one read's plaintext is never
//!   more than the scratch buffer's length). Handshake records it has to send are written at
//!   once; what the kernel refuses stays queued in the connection.
//!   [`Input::Data`] asks for another read as with a plain socket (its count is ciphertext, so
//!   read again until `WouldBlock` rather than judging a short read), [`Input::WouldBlock`] ends
//!   the turn, [`Input::Ended`] is the peer's end of input (after any plaintext that came with
//!   it): treat it as a plain EOF. When [`ReadOutcome::handshake_finished`] is set, ask the
//!   core for this connection's output (banner and prompt) now. [`TlsError::NotTls`] means the
//!   first byte was not a TLS handshake: drain its input, write [`plaintext_port_hint`] on the
//!   raw socket, then close with FIN. Any other error: close the socket (a TLS alert may
//!   already have been sent).
//! - **Write** (dirty or WRITABLE): [`TlsConn::write`] takes the core's `IoSlice`s and returns
//!   `(taken, blocked)` like a plain `write_vectored` would: plaintext taken may be forgotten by
//!   the core (it is encrypted, and sent or queued here, at most one record's worth), and
//!   `blocked` means: wait for WRITABLE, then call `write` again (with or without new data).
//!   Before the handshake is done it takes nothing and reports blocked.
//! - **Close** (`/quit`, shutdown, too slow ...): after the core's last bytes went through
//!   `write`, call [`TlsConn::queue_close_notify`], then [`TlsConn::send_pending`] until it
//!   returns `true` (or the grace period ends), then shut the TCP socket down. A connection
//!   whose handshake never finished gets no close_notify: just close it.
//!
//! # Memory
//! Between reads a connection holds at most the unfinished part of one record, and between
//! writes only the ciphertext the kernel refused (at most one record, plus a close_notify).
//! Both are freed, capacity included, as soon as they are empty, so an idle connection holds
//! no buffer of ours; [`TlsConn::buffer_capacity`] tells. What remains is rustls's own state:
//! `examples/tls_idle_memory.rs` measures about 3.5 KB of RssAnon per idle connection after its
//! handshake and one line each way (1,144 bytes of it the boxed `TlsConn`, the rest rustls's
//! keys and record layer on the heap), besides the kernel's socket buffers.

mod config;
mod conn;
mod io;
#[cfg(test)]
mod testing;

pub use config::{TlsConfigError, load_server_config};
pub use conn::{Input, InputEnd, MAX_RECORD_LEN, ReadOutcome, TlsConn, TlsError};

use std::net::SocketAddr;

/// Whether a connection's first byte starts a TLS handshake record (content type 22).
pub fn is_tls_handshake_start(first_byte: u8) -> bool {
    first_byte == 0x16
}

/// The line sent in plain text to a client that spoke plain text to the TLS port at `addr`
/// (pass the address the client connected to: the accepted socket's local address).
pub fn plaintext_port_hint(addr: SocketAddr) -> String {
    format!(
        "!!! This is a TLS port. Use a TLS client, e.g. openssl s_client -quiet -crlf -connect {addr}\r\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_handshake_content_type_starts_tls() {
        assert!(is_tls_handshake_start(0x16));
        for b in (0..=255u8).filter(|&b| b != 0x16) {
            assert!(!is_tls_handshake_start(b), "{b:#04x}");
        }
    }

    #[test]
    fn hint_names_the_address_the_client_used() {
        assert_eq!(
            plaintext_port_hint("127.0.0.1:6697".parse().unwrap()),
            "!!! This is a TLS port. Use a TLS client, e.g. openssl s_client -quiet -crlf -connect 127.0.0.1:6697\r\n"
        );
        assert!(
            plaintext_port_hint("[::1]:6697".parse().unwrap()).contains("-connect [::1]:6697\r\n")
        );
    }
}
