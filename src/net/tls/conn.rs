//! One TLS connection over rustls 0.23's unbuffered API: the only file that calls rustls's
//! connection API. The caller owns the read scratch buffer and a shared encryption buffer; the
//! connection keeps bytes only while a record is unfinished or the kernel refused ciphertext.

use super::io::{gather, read_once, sink, transmit, write_some};
use super::is_tls_handshake_start;
use rustls::ServerConfig;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, EncryptError, InsufficientSizeError,
    UnbufferedStatus, WriteTraffic,
};
use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;
use thiserror::Error;

/// The longest TLS record we accept on the wire: a 5-byte header and 2^14 + 256 bytes of
/// ciphertext (TLS 1.3's limit; TLS 1.2 records of our AEAD suites are smaller). The read
/// scratch buffer must be at least this long; unprocessed input never reaches it.
pub const MAX_RECORD_LEN: usize = 5 + 16 * 1024 + 256;

/// Why a TLS connection cannot go on. Each ends the connection.
#[derive(Debug, Error)]
pub enum TlsError {
    /// The first byte was not a TLS handshake record: a plain-text client on the TLS port.
    #[error("not a TLS client (first byte {0:#04x})")]
    NotTls(u8),
    /// The peer sent more than one record's worth of bytes that cannot be processed yet.
    #[error("TLS input larger than one record ({MAX_RECORD_LEN} bytes) cannot be processed")]
    TooLarge,
    /// The peer broke the TLS protocol, or the handshake failed.
    #[error("TLS: {0}")]
    Protocol(#[from] rustls::Error),
    /// Encrypting failed (the keys are used up, after about 2^24 records).
    #[error("TLS encryption failed: {0}")]
    Encrypt(String),
    /// The socket failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The caller's read buffer cannot hold one TLS record.
    #[error("read buffer of {0} bytes is shorter than one TLS record ({MAX_RECORD_LEN})")]
    ScratchTooSmall(usize),
    /// Application data was offered after close_notify was queued.
    #[error("data offered after close_notify")]
    WriteAfterClose,
}

/// What one [`TlsConn::read`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOutcome {
    /// What the socket gave.
    pub input: Input,
    /// The handshake completed in this call: the core's output (banner, prompt) can now go out.
    pub handshake_finished: bool,
}

/// What the socket gave to one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// This many bytes of ciphertext came in; their plaintext, if any, went to the callback.
    Data(usize),
    /// Nothing to read until the next READABLE event.
    WouldBlock,
    /// The peer will send nothing more (any plaintext that came before went to the callback).
    Ended(InputEnd),
}

/// How the peer ended its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputEnd {
    /// A TLS close_notify: a clean end.
    CloseNotify,
    /// TCP end of stream without a close_notify.
    Eof,
}

/// One server-side TLS connection. Holds no buffer while idle.
pub struct TlsConn {
    tls: UnbufferedServerConnection,
    /// Received ciphertext rustls could not use yet (part of a record, or handshake records
    /// being joined into one message); shorter than [`MAX_RECORD_LEN`]; unallocated when empty.
    incoming: Vec<u8>,
    /// Ciphertext the kernel has not taken yet; unallocated when empty.
    outgoing: Vec<u8>,
    /// Some input has arrived (the first byte was checked).
    started: bool,
    handshake_done: bool,
    peer_closed: bool,
    close_queued: bool,
}

impl TlsConn {
    /// A new connection that will handshake with `config`.
    pub fn new(config: Arc<ServerConfig>) -> Result<TlsConn, TlsError> {
        Ok(TlsConn {
            tls: UnbufferedServerConnection::new(config)?,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            started: false,
            handshake_done: false,
            peer_closed: false,
            close_queued: false,
        })
    }

    /// Reads once from `socket` into `scratch` (after the unfinished record kept from last
    /// time), hands the plaintext of every whole record to `on_plaintext`, and writes the
    /// handshake records rustls produced (encoded in `shared`; what the kernel refuses is kept).
    pub fn read<S: Read + Write>(
        &mut self,
        socket: &mut S,
        scratch: &mut [u8],
        shared: &mut Vec<u8>,
        mut on_plaintext: impl FnMut(&[u8]),
    ) -> Result<ReadOutcome, TlsError> {
        let outcome = |input| ReadOutcome {
            input,
            handshake_finished: false,
        };
        if self.peer_closed {
            return Ok(outcome(Input::Ended(InputEnd::CloseNotify)));
        }
        if scratch.len() < MAX_RECORD_LEN {
            return Err(TlsError::ScratchTooSmall(scratch.len()));
        }
        let held = self.incoming.len();
        scratch[..held].copy_from_slice(&self.incoming);
        let n = match read_once(socket, &mut scratch[held..])? {
            None => return Ok(outcome(Input::WouldBlock)),
            Some(0) => return Ok(outcome(Input::Ended(InputEnd::Eof))),
            Some(n) => n,
        };
        if !self.started {
            self.started = true;
            if !is_tls_handshake_start(scratch[0]) {
                return Err(TlsError::NotTls(scratch[0]));
            }
        }
        let filled = held + n;
        let out = sink(&mut self.outgoing, shared);
        let processed = process(
            &mut self.tls,
            &mut scratch[..filled],
            out,
            &mut on_plaintext,
        );
        let (done, peer_closed) = match processed {
            Ok(r) => r,
            Err(e) => {
                // Best effort: let the peer see the alert rustls queued.
                queue_alerts(&mut self.tls, out)?;
                let _ = transmit(socket, &mut self.outgoing, shared);
                return Err(e);
            }
        };
        let left = &scratch[done..filled];
        if left.len() >= MAX_RECORD_LEN {
            return Err(TlsError::TooLarge);
        }
        self.incoming = left.to_vec();
        transmit(socket, &mut self.outgoing, shared)?;
        let handshake_finished = !self.handshake_done && !self.tls.is_handshaking();
        self.handshake_done |= handshake_finished;
        self.peer_closed = peer_closed;
        let input = match peer_closed {
            true => Input::Ended(InputEnd::CloseNotify),
            false => Input::Data(n),
        };
        Ok(ReadOutcome {
            input,
            handshake_finished,
        })
    }

    /// Encrypts and sends plaintext from `data`, as `write_vectored` would send it on a plain
    /// socket. Returns `(taken, blocked)`: how many bytes from the front of `data` the caller may
    /// forget, and whether the socket refused bytes (wait for WRITABLE, then call again).
    ///
    /// Unsent ciphertext goes first; nothing new is encrypted while some is left. Then records
    /// of at most 16 KiB of plaintext are encrypted in `shared` and written, until `data` is
    /// used up or the kernel refuses some of a record, which is kept here. Nothing is taken
    /// before the handshake is done.
    pub fn write<S: Write>(
        &mut self,
        socket: &mut S,
        data: &[IoSlice<'_>],
        shared: &mut Vec<u8>,
    ) -> Result<(usize, bool), TlsError> {
        if !self.send_pending(socket)? || !self.handshake_done {
            return Ok((0, true));
        }
        let total: usize = data.iter().map(|s| s.len()).sum();
        if total > 0 && self.close_queued {
            return Err(TlsError::WriteAfterClose);
        }
        let mut taken = 0;
        while taken < total {
            shared.clear();
            let plain = gather(data, taken, shared);
            let ready = encrypt_record(&mut self.tls, &mut self.incoming, shared)?;
            let sent = write_some(socket, &shared[plain..])?;
            if ready {
                taken += plain;
            }
            if plain + sent < shared.len() || !ready {
                self.outgoing = shared[plain + sent..].to_vec();
                shared.clear();
                return Ok((taken, true));
            }
        }
        shared.clear();
        Ok((taken, false))
    }

    /// Writes the ciphertext the kernel refused before. Returns whether none is left.
    pub fn send_pending<S: Write>(&mut self, socket: &mut S) -> Result<bool, TlsError> {
        if !self.outgoing.is_empty() {
            transmit(socket, &mut self.outgoing, &mut Vec::new())?;
        }
        Ok(self.outgoing.is_empty())
    }

    /// Queues a TLS close_notify after any unsent ciphertext; send it with
    /// [`TlsConn::send_pending`]. Returns `false`, queueing nothing, while the handshake is not
    /// done (such a connection is simply closed). Nothing may be written after it.
    pub fn queue_close_notify(&mut self) -> Result<bool, TlsError> {
        if !self.handshake_done {
            return Ok(false);
        }
        if !self.close_queued {
            self.close_queued = true;
            let (tls, incoming, outgoing) = (&mut self.tls, &mut self.incoming, &mut self.outgoing);
            with_write_traffic(tls, incoming, outgoing, |traffic, out| {
                grow_and_retry(out, |_, tail| traffic.queue_close_notify(tail))
            })?;
        }
        Ok(true)
    }

    /// Whether the handshake is still under way (no application data may be sent yet).
    pub fn is_handshaking(&self) -> bool {
        !self.handshake_done
    }

    /// Whether ciphertext is waiting for the kernel (the socket should be watched for WRITABLE).
    pub fn has_pending_output(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Heap bytes held in this connection's own buffers (zero while idle). rustls's own state
    /// (keys, handshake state) is not counted.
    pub fn buffer_capacity(&self) -> usize {
        self.incoming.capacity() + self.outgoing.capacity()
    }
}

/// Feeds `buf` to rustls until it needs more bytes. Returns how many bytes of `buf` rustls is
/// done with and whether the peer sent close_notify. Handshake records go to `out`.
fn process(
    tls: &mut UnbufferedServerConnection,
    buf: &mut [u8],
    out: &mut Vec<u8>,
    on_plaintext: &mut dyn FnMut(&[u8]),
) -> Result<(usize, bool), TlsError> {
    let mut done = 0;
    let mut peer_closed = false;
    loop {
        let UnbufferedStatus { mut discard, state } = tls.process_tls_records(&mut buf[done..]);
        let go_on = match state? {
            ConnectionState::ReadTraffic(mut records) => {
                while let Some(record) = records.next_record() {
                    let record = record?;
                    discard += record.discard;
                    on_plaintext(record.payload);
                }
                true
            }
            // 0-RTT is off (the config's default), so this never comes; drop it if it does.
            ConnectionState::ReadEarlyData(mut records) => {
                while let Some(record) = records.next_record() {
                    discard += record?.discard;
                }
                true
            }
            ConnectionState::EncodeTlsData(mut encoder) => {
                encode(&mut encoder, out)?;
                true
            }
            // The caller writes `out` before anything else goes out.
            ConnectionState::TransmitTlsData(transmit) => {
                transmit.done();
                true
            }
            ConnectionState::PeerClosed => {
                peer_closed = true;
                true
            }
            ConnectionState::Closed => {
                peer_closed = true;
                false
            }
            // BlockedHandshake, WriteTraffic: rustls needs more input.
            _ => false,
        };
        done += discard;
        if !go_on {
            return Ok((done, peer_closed));
        }
    }
}

/// Moves the alerts rustls queued on a fatal error into `out`.
fn queue_alerts(tls: &mut UnbufferedServerConnection, out: &mut Vec<u8>) -> Result<(), TlsError> {
    // `wants_write` guards the call: with records queued, rustls hands them out before it looks
    // at the (here empty) input buffer.
    while tls.wants_write() {
        match tls.process_tls_records(&mut []).state {
            Ok(ConnectionState::EncodeTlsData(mut encoder)) => encode(&mut encoder, out)?,
            Ok(ConnectionState::TransmitTlsData(transmit)) => transmit.done(),
            _ => break,
        }
    }
    Ok(())
}

/// Brings rustls to the state where it encrypts application data (encoding any handshake
/// records it has queued into `out` first) and runs `f` there. Returns `None` when rustls
/// cannot take application data now.
fn with_write_traffic<R>(
    tls: &mut UnbufferedServerConnection,
    incoming: &mut Vec<u8>,
    out: &mut Vec<u8>,
    f: impl FnOnce(&mut WriteTraffic<'_, ServerConnectionData>, &mut Vec<u8>) -> Result<R, TlsError>,
) -> Result<Option<R>, TlsError> {
    loop {
        // The unfinished input is passed again, as rustls requires between calls.
        let UnbufferedStatus { discard, state } = tls.process_tls_records(incoming);
        match state? {
            ConnectionState::WriteTraffic(mut traffic) => {
                let result = f(&mut traffic, out)?;
                incoming.drain(..discard);
                return Ok(Some(result));
            }
            ConnectionState::EncodeTlsData(mut encoder) => encode(&mut encoder, out)?,
            ConnectionState::TransmitTlsData(transmit) => transmit.done(),
            _ => return Ok(None),
        }
        incoming.drain(..discard);
    }
}

/// Encrypts the plaintext `shared` holds into one record appended after it. Returns `false`
/// when rustls cannot encrypt now (nothing was taken; queued handshake bytes may follow the
/// plaintext and must be sent).
fn encrypt_record(
    tls: &mut UnbufferedServerConnection,
    incoming: &mut Vec<u8>,
    shared: &mut Vec<u8>,
) -> Result<bool, TlsError> {
    let plain = shared.len();
    // Any handshake bytes encoded on the way sit between the plaintext and the record.
    let done = with_write_traffic(tls, incoming, shared, |traffic, buf| {
        grow_and_retry(buf, |head, tail| traffic.encrypt(&head[..plain], tail))
    })?;
    Ok(done.is_some())
}

/// Appends what `op` writes to `buf`: `op` gets what `buf` holds and the room after it, and
/// the room grows to the size rustls asks for when it is too short.
fn grow_and_retry(
    buf: &mut Vec<u8>,
    mut op: impl FnMut(&[u8], &mut [u8]) -> Result<usize, EncryptError>,
) -> Result<(), TlsError> {
    let start = buf.len();
    loop {
        let (head, tail) = buf.split_at_mut(start);
        match op(head, tail) {
            Ok(n) => {
                buf.truncate(start + n);
                return Ok(());
            }
            Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
                buf.resize(start + required_size, 0);
            }
            Err(e) => {
                buf.truncate(start);
                return Err(TlsError::Encrypt(e.to_string()));
            }
        }
    }
}

/// Appends a handshake record rustls wants to send to `out`.
fn encode(
    encoder: &mut EncodeTlsData<'_, ServerConnectionData>,
    out: &mut Vec<u8>,
) -> Result<(), TlsError> {
    let start = out.len();
    loop {
        match encoder.encode(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
                out.resize(start + required_size, 0);
            }
            Err(EncodeError::AlreadyEncoded) => {
                out.truncate(start);
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod socket_tests;
#[cfg(test)]
mod tests;
