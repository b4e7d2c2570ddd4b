//! Socket and buffer helpers of the TLS adapter (no rustls here).

use super::conn::TlsError;
use std::io::{self, IoSlice, Read, Write};

/// Plaintext encrypted into one record.
pub(super) const MAX_PLAINTEXT_PER_RECORD: usize = 16 * 1024;

/// Where new ciphertext goes: after the connection's unsent bytes if it has any (order
/// matters), otherwise into the loop's shared buffer.
pub(super) fn sink<'a>(own: &'a mut Vec<u8>, shared: &'a mut Vec<u8>) -> &'a mut Vec<u8> {
    if own.is_empty() {
        shared.clear();
        shared
    } else {
        own
    }
}

/// Copies up to one record's worth of plaintext from `data`, skipping its first `skip` bytes,
/// into `out`. Returns the number of bytes copied.
pub(super) fn gather(data: &[IoSlice<'_>], mut skip: usize, out: &mut Vec<u8>) -> usize {
    for slice in data {
        if skip >= slice.len() {
            skip -= slice.len();
            continue;
        }
        let room = MAX_PLAINTEXT_PER_RECORD - out.len();
        let piece = &slice[skip..];
        out.extend_from_slice(&piece[..piece.len().min(room)]);
        skip = 0;
        if out.len() == MAX_PLAINTEXT_PER_RECORD {
            break;
        }
    }
    out.len()
}

/// Sends the ciphertext waiting in `shared` or, when that is empty, in `own`; keeps in `own`
/// (and frees when empty) what the kernel refuses.
pub(super) fn transmit<S: Write>(
    socket: &mut S,
    own: &mut Vec<u8>,
    shared: &mut Vec<u8>,
) -> Result<(), TlsError> {
    if !shared.is_empty() {
        let sent = write_some(socket, shared)?;
        *own = shared[sent..].to_vec();
        shared.clear();
    } else if !own.is_empty() {
        let sent = write_some(socket, own)?;
        own.drain(..sent);
        if own.is_empty() {
            *own = Vec::new();
        }
    }
    Ok(())
}

/// Writes as much of `bytes` as the socket takes; returns how much that was.
pub(super) fn write_some<S: Write>(socket: &mut S, bytes: &[u8]) -> Result<usize, TlsError> {
    let mut sent = 0;
    while sent < bytes.len() {
        match socket.write(&bytes[sent..]) {
            Ok(0) => break,
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(sent)
}

/// One read: `None` when the socket would block.
pub(super) fn read_once<S: Read>(
    socket: &mut S,
    buf: &mut [u8],
) -> Result<Option<usize>, TlsError> {
    loop {
        match socket.read(buf) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
}
