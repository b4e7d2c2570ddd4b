//! TLS in the poll loop: what the loop does differently for a connection accepted on a TLS
//! port, following the adapter's rules (see [`super::tls`]), and for a plain-text connection
//! whose client starts a TLS handshake.
//!
//! - Accept: the connection gets a boxed [`TlsConn`] made with the configuration current then,
//!   and a handshake deadline in a FIFO (the timeout is the same for all, so the FIFO is in
//!   deadline order); the core hears of it at once, so limits count from accept.
//! - Read: loops until the socket would block (the adapter's counts are ciphertext) and hands
//!   each plaintext slice to the core; the end of the handshake makes the core write again.
//! - Write: the core's slices go through [`TlsConn::write`] with one shared encryption buffer.
//!   WRITABLE interest is kept exactly while the adapter holds ciphertext the kernel refused;
//!   before the handshake is done the core is told "blocked" and waits for its end.
//! - Close: the last plaintext, a close_notify, then FIN. A connection still handshaking gets
//!   no byte from the core (nothing goes out in plain text).

use super::conns::Conn;
use super::event_loop::{MAX_IOV, READS_PER_TURN, Server, ServerError};
use super::log::{Level, log};
use super::tls::{Input, TlsConn, TlsError, load_server_config, plaintext_port_hint};
use crate::config::{Config, TlsFiles};
use crate::proto::chat::{CloseReason, ConnId};
use rustls::ServerConfig;
use std::collections::VecDeque;
use std::fmt::Display;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Handshake deadlines kept allocated once the FIFO is empty again.
const DEADLINES_KEEP: usize = 1024;

/// The loop's TLS state (absent without `--tls-listen`).
pub(super) struct TlsShell {
    /// What new connections handshake with (SIGHUP replaces it; connections keep theirs).
    config: Arc<ServerConfig>,
    files: TlsFiles,
    timeout: Duration,
    /// TLS connections by accept time, with their handshake deadlines.
    deadlines: VecDeque<(Instant, ConnId)>,
    /// Where records are encrypted, shared by every connection.
    encrypt: Vec<u8>,
}

impl TlsShell {
    /// Loads the certificate and key when there is a `--tls-listen` (before anything is bound).
    pub(super) fn load(config: &Config) -> Result<Option<TlsShell>, ServerError> {
        let Some(files) = config.tls.clone().filter(|_| !config.tls_listen.is_empty()) else {
            return Ok(None);
        };
        Ok(Some(TlsShell {
            config: load_server_config(&files.cert, &files.key)?,
            files,
            timeout: config.tls_handshake_timeout,
            deadlines: VecDeque::new(),
            encrypt: Vec::new(),
        }))
    }

    fn oldest(&self) -> Option<(Instant, ConnId)> {
        self.deadlines.front().copied()
    }

    fn pop_oldest(&mut self) {
        self.deadlines.pop_front();
        if self.deadlines.is_empty() && self.deadlines.capacity() > DEADLINES_KEEP {
            self.deadlines = VecDeque::new();
        }
    }

    /// SIGHUP: builds a new configuration from the same files; on any error the old one stays.
    fn reload(&mut self) {
        let TlsFiles { cert, key } = &self.files;
        match load_server_config(cert, key) {
            Ok(config) => {
                self.config = config;
                log!(
                    Level::Info,
                    "reload: read TLS certificate {} and key {}",
                    cert.display(),
                    key.display()
                );
            }
            Err(e) => log!(
                Level::Warn,
                "reload: {e}; keeping the previous TLS certificate and key"
            ),
        }
    }
}

/// What the log adds to a line about a TLS listener or connection.
pub(super) fn tls_tag(is_tls: bool) -> &'static str {
    if is_tls { " (TLS)" } else { "" }
}

impl Server {
    /// The TLS state for a connection from `addr` accepted on `listener` (`None` on a
    /// plain-text one); an error is logged, and the connection is to be dropped.
    pub(super) fn tls_for(
        &self,
        listener: usize,
        addr: SocketAddr,
    ) -> Result<Option<Box<TlsConn>>, ()> {
        match &self.tls {
            Some(shell) if self.listeners.get(listener).is_some_and(|l| l.is_tls()) => {
                match TlsConn::new(shell.config.clone()) {
                    Ok(tls) => Ok(Some(Box::new(tls))),
                    Err(e) => {
                        log!(Level::Warn, "cannot start TLS with {addr}: {e}");
                        Err(())
                    }
                }
            }
            _ => Ok(None),
        }
    }

    /// When the oldest TLS handshake still under way runs out of time.
    pub(super) fn tls_deadline(&self) -> Option<Instant> {
        self.tls.as_ref()?.oldest().map(|(deadline, _)| deadline)
    }

    /// Starts the handshake clock of a TLS connection just accepted.
    pub(super) fn watch_handshake(&mut self, id: ConnId, now: Instant) {
        if let Some(shell) = &mut self.tls {
            shell.deadlines.push_back((now + shell.timeout, id));
        }
    }

    /// Keeps the handshake FIFO honest, once per turn: connections whose deadline passed
    /// while still handshaking are closed (no line is sent), and entries at the front that no
    /// longer matter (done or gone) are dropped, so a server with every handshake done has no
    /// deadline and does not wake up.
    pub(super) fn tend_handshakes(&mut self, now: Instant) {
        while let Some((deadline, id)) = self.tls.as_ref().and_then(TlsShell::oldest) {
            let handshaking = self
                .conns
                .get_tls(id)
                .is_some_and(|(_, t)| t.is_handshaking());
            if handshaking && deadline > now {
                return;
            }
            if let Some(shell) = &mut self.tls {
                shell.pop_oldest();
            }
            if handshaking {
                self.close_now(id, b"", "TLS handshake timeout", now);
            }
        }
    }

    /// Reads from a TLS connection until the socket would block (or the core holds its input,
    /// or the turn's share is used up), handing the plaintext to the core.
    pub(super) fn read_tls(&mut self, id: ConnId, now: Instant) {
        for _ in 0..READS_PER_TURN {
            if !self.chat.wants_input(id) {
                return;
            }
            let (Some(shell), Some((conn, tls))) = (&mut self.tls, self.conns.get_tls(id)) else {
                return;
            };
            let chat = &mut self.chat;
            let result = tls.read(
                &mut conn.stream,
                &mut self.scratch,
                &mut shell.encrypt,
                |p| chat.handle_input(id, p, now),
            );
            // Handshake records the kernel refused wait for WRITABLE.
            conn.want_writable(self.poll.registry(), id, tls.has_pending_output());
            let outcome = match result {
                Ok(outcome) => outcome,
                Err(e) => return self.tls_failed(id, e, now),
            };
            if outcome.handshake_finished {
                // The banner and prompt waited for this.
                self.chat.handle_writable(id);
            }
            match outcome.input {
                Input::Data(_) => {}
                Input::WouldBlock => return,
                Input::Ended(_) => {
                    return self.chat.handle_disconnect(id, CloseReason::InputClosed);
                }
            }
        }
        self.backlog.push(id);
    }

    /// Writes `id`'s pending output through TLS and tells the core how it went.
    pub(super) fn write_tls(&mut self, id: ConnId, now: Instant) {
        let (Some(shell), Some((conn, tls))) = (&mut self.tls, self.conns.get_tls(id)) else {
            return;
        };
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let n = self.chat.gather(id, &mut iov);
        let result = tls.write(&mut conn.stream, &iov[..n], &mut shell.encrypt);
        conn.want_writable(self.poll.registry(), id, tls.has_pending_output());
        match result {
            // Also when nothing was taken: the core judges --sendq after each write attempt.
            Ok((taken, blocked)) => self.chat.handle_written(id, taken, blocked),
            Err(e) => self.tls_failed(id, e, now),
        }
    }

    /// A socket turned writable. On a TLS one, ciphertext the kernel refused goes first, then
    /// the core may write again (once the handshake is done).
    pub(super) fn on_writable(&mut self, id: ConnId, now: Instant) {
        let tls = match self.tls {
            Some(_) => self.conns.get_tls(id),
            None => None,
        };
        let Some((conn, tls)) = tls else {
            return self.chat.handle_writable(id);
        };
        match tls.send_pending(&mut conn.stream) {
            Ok(true) => {
                conn.want_writable(self.poll.registry(), id, false);
                if !tls.is_handshaking() {
                    self.chat.handle_writable(id);
                }
            }
            Ok(false) => {}
            Err(e) => self.tls_failed(id, e, now),
        }
    }

    /// Whether a TLS connection holds ciphertext the kernel has not taken yet.
    pub(super) fn tls_output_pending(&self) -> bool {
        self.conns.tls_states().any(TlsConn::has_pending_output)
    }

    /// Closes a TLS connection the core is done with: its last plaintext, close_notify, FIN.
    pub(super) fn close_tls(&mut self, mut conn: Conn, mut tls: Box<TlsConn>, last: &[u8]) {
        if let Some(shell) = &mut self.tls
            && !tls.is_handshaking()
        {
            let _ = tls.write(&mut conn.stream, &[IoSlice::new(last)], &mut shell.encrypt);
            if let Ok(true) = tls.queue_close_notify() {
                let _ = tls.send_pending(&mut conn.stream);
            }
        }
        conn.close(&[], &mut self.scratch);
    }

    /// Shutdown begins: connections still handshaking are closed (they would only hold the
    /// notice until the grace period ends).
    pub(super) fn close_handshaking_tls(&mut self, now: Instant) {
        for id in self.conns.tls_ids() {
            if self
                .conns
                .get_tls(id)
                .is_some_and(|(_, t)| t.is_handshaking())
            {
                self.close_now(id, b"", "TLS handshake not done at shutdown", now);
            }
        }
    }

    /// The last turn of a shutdown: every TLS connection gets its close_notify, then FIN.
    pub(super) fn close_all_tls(&mut self) {
        for id in self.conns.tls_ids() {
            if let Some((conn, Some(tls))) = self.conns.remove(id) {
                self.close_tls(conn, tls, b"");
            }
        }
    }

    /// An upgrade is about to hand everything over: TLS connections cannot go (no kernel TLS
    /// here), so the core tells their users to reconnect and closes them first.
    pub(super) fn leave_tls_behind(&mut self) {
        let ids = self.conns.tls_ids();
        if ids.is_empty() {
            return;
        }
        let logged_in = ids
            .iter()
            .filter(|&&id| self.chat.nick(id).is_some())
            .count();
        for &id in &ids {
            self.chat.handle_not_handed_over(id);
        }
        log!(
            Level::Info,
            "upgrade: closing {} TLS connections ({logged_in} logged in): TLS connections cannot be handed over",
            ids.len()
        );
    }

    /// SIGHUP: the certificate and key are read again.
    pub(super) fn reload_tls(&mut self) {
        if let Some(shell) = &mut self.tls {
            shell.reload();
        }
    }

    /// A plain-text connection's first byte starts a TLS handshake: it is closed at once.
    pub(super) fn refuse_tls_on_plain_port(&mut self, id: ConnId, now: Instant) {
        let peer = self
            .conns
            .get_mut(id)
            .and_then(|c| c.stream.peer_addr().ok());
        let peer = peer.map_or_else(|| "an unknown peer".to_string(), |a| a.to_string());
        let why = format!("TLS handshake on a plain-text port, from {peer}");
        self.close_now(id, b"", why, now);
    }

    /// What a failed TLS read or write means for the connection.
    fn tls_failed(&mut self, id: ConnId, error: TlsError, now: Instant) {
        match error {
            TlsError::Io(e) => self.lose(id, e, now),
            TlsError::NotTls(_) => {
                // The hint goes to the address the client connected to.
                let local = self
                    .conns
                    .get_mut(id)
                    .and_then(|c| c.stream.local_addr().ok());
                let hint = local.map(plaintext_port_hint).unwrap_or_default();
                self.close_now(id, hint.as_bytes(), "plain text on a TLS port", now);
            }
            other => self.close_now(id, b"", other, now),
        }
    }

    /// Closes `id` from the shell's side: `raw` is written as is (never TLS), then FIN after
    /// reading what the peer sent, so the close is not a reset. The core forgets it.
    fn close_now(&mut self, id: ConnId, raw: &[u8], why: impl Display, now: Instant) {
        let Some((conn, _)) = self.conns.remove(id) else {
            return;
        };
        conn.close(raw, &mut self.scratch);
        log!(Level::Info, "disconnect {id} ({why})");
        // A reason the shell gives: the core sends nothing back and tells no room.
        self.chat.handle_disconnect(id, CloseReason::SocketError);
        self.resume_accepting(now);
    }
}
