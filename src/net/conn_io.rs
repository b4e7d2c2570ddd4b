//! The loop's work on client sockets: accepting, reading into the core, writing what the core
//! gathers, and closing.

use super::event_loop::{ACCEPT_RETRY, MAX_IOV, READS_PER_TURN, Server};
use super::listener::is_transient_accept_error;
use super::log::{Level, log};
use super::peer_of;
use super::tls::is_tls_handshake_start;
use super::tls_loop::tls_tag;
use crate::proto::chat::{CloseReason, Closed, ConnId};
use std::io::{self, IoSlice, Read};
use std::time::Instant;

impl Server {
    pub(super) fn accept(&mut self, listener: usize, now: Instant) {
        while self.accept_retry_at.is_none() && self.shutdown_at.is_none() {
            let Some(l) = self.listeners.get(listener) else {
                return;
            };
            match l.accept() {
                Ok((stream, addr)) => {
                    let Ok(tls) = self.tls_for(listener, addr) else {
                        continue;
                    };
                    let is_tls = tls.is_some();
                    match self.conns.add(stream, self.poll.registry(), tls) {
                        Ok(id) => {
                            log!(Level::Info, "connect {id} from {addr}{}", tls_tag(is_tls));
                            if is_tls {
                                self.watch_handshake(id, now);
                            }
                            self.chat.handle_connect(id, peer_of(addr.ip()), now);
                        }
                        Err(e) => log!(Level::Warn, "cannot watch connection from {addr}: {e}"),
                    }
                    self.drain_if_full(now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if is_out_of_descriptors(&e) => {
                    log!(
                        Level::Warn,
                        "accept paused: {e}; retrying when a connection closes or in {ACCEPT_RETRY:?}"
                    );
                    self.accept_retry_at = Some(now + ACCEPT_RETRY);
                }
                Err(e) if is_transient_accept_error(&e) => {}
                Err(e) => {
                    log!(Level::Error, "accept failed: {e}");
                    return;
                }
            }
        }
    }

    pub(super) fn resume_accepting(&mut self, now: Instant) {
        if self.accept_retry_at.take().is_some() {
            for i in 0..self.listeners.len() {
                self.accept(i, now);
            }
        }
    }

    /// Reads from `id` and hands the bytes to the core. Reads until the kernel has nothing
    /// more when `to_end` is set; otherwise a short read is taken to mean "drained" (epoll is
    /// edge-triggered and will report new data), saving a system call per turn.
    pub(super) fn read(&mut self, id: ConnId, now: Instant, to_end: bool) {
        for _ in 0..READS_PER_TURN {
            if !self.chat.wants_input(id) {
                return;
            }
            let Some(conn) = self.conns.get_mut(id) else {
                return;
            };
            if conn.is_tls() {
                return self.read_tls(id, now);
            }
            match conn.stream.read(&mut self.scratch) {
                Ok(0) => {
                    // The peer may still read: the core closes it like one of its own closes,
                    // with the replies to its last lines as final output.
                    return self.chat.handle_disconnect(id, CloseReason::InputClosed);
                }
                Ok(n) => {
                    if std::mem::take(&mut conn.fresh) && is_tls_handshake_start(self.scratch[0]) {
                        return self.refuse_tls_on_plain_port(id, now);
                    }
                    log!(Level::Debug, "read {n} bytes from {id}");
                    self.chat.handle_input(id, &self.scratch[..n], now);
                    if n < self.scratch.len() && !to_end {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.lose(id, e, now),
            }
        }
        self.backlog.push(id);
    }

    /// Writes `id`'s pending output with one vectored write and tells the core how it went.
    pub(super) fn write(&mut self, id: ConnId, now: Instant) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if conn.is_tls() {
            return self.write_tls(id, now);
        }
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let n = self.chat.gather(id, &mut iov);
        let (taken, blocked) = match conn.write(&iov[..n]) {
            Ok(result) => result,
            Err(e) => return self.lose(id, e, now),
        };
        conn.want_writable(self.poll.registry(), id, blocked);
        // Also when nothing was taken: the core judges --sendq after each write attempt.
        self.chat.handle_written(id, taken, blocked);
    }

    /// The socket failed or the peer left: forget it here and in the core.
    pub(super) fn lose(&mut self, id: ConnId, error: io::Error, now: Instant) {
        if self.conns.remove(id).is_none() {
            return;
        }
        // A reset or a write to a closed peer is the peer leaving, not a fault of ours.
        let reason = if is_peer_gone(&error) {
            log!(Level::Info, "disconnect {id} ({})", CloseReason::PeerClosed);
            CloseReason::PeerClosed
        } else {
            log!(
                Level::Info,
                "disconnect {id} ({}: {error})",
                CloseReason::SocketError
            );
            CloseReason::SocketError
        };
        self.chat.handle_disconnect(id, reason);
        self.resume_accepting(now);
    }

    /// The core is done with a connection: send its last bytes, then close it gracefully.
    pub(super) fn finish_close(&mut self, closed: Closed, now: Instant) {
        let Some((conn, tls)) = self.conns.remove(closed.id) else {
            return;
        };
        match tls {
            Some(tls) => self.close_tls(conn, tls, &closed.final_output),
            None => conn.close(&closed.final_output, &mut self.scratch),
        }
        let level = if closed.reason.is_limit() {
            Level::Warn
        } else {
            Level::Info
        };
        log!(level, "disconnect {} ({})", closed.id, closed.reason);
        self.resume_accepting(now);
    }
}

fn is_out_of_descriptors(e: &io::Error) -> bool {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM: the system is short of something; retry later.
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}

fn is_peer_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    )
}
