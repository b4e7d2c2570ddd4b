//! Frames and descriptors over a Unix stream socket, for blocking and non-blocking sockets alike.
//!
//! On a stream socket the kernel attaches `SCM_RIGHTS` descriptors to the first byte of the
//! `sendmsg` that carried them, and a `recvmsg` returns them with whichever read covers that
//! byte. So the sender attaches a batch to the first byte of its `Fds` frame, and the receiver
//! queues every descriptor as it arrives and hands out as many as a frame names, in order:
//! however the reads split the stream, a frame's descriptors have arrived once the frame has.

use super::UpgradeError;
use super::protocol::{FdTag, decode, encode};
use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, recvmsg, send, sendmsg,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::VecDeque;
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};

/// The kernel's limit of descriptors in one message (`SCM_MAX_FD`); room for this many means a
/// well-behaved sender never sees its descriptors cut off.
const SCM_MAX_FD: usize = 253;
/// Bytes asked of the kernel per read of control messages.
const READ_CHUNK: usize = 64 * 1024;

/// Frames waiting to be written, each with the tags of the descriptors to attach to it.
#[derive(Default)]
pub(crate) struct Outbox {
    chunks: VecDeque<Chunk>,
}

struct Chunk {
    bytes: Vec<u8>,
    fds: Vec<FdTag>,
    written: usize,
}

impl Outbox {
    /// Queues one message.
    pub(crate) fn push<T: Serialize>(&mut self, msg: &T) -> Result<(), UpgradeError> {
        self.push_with_fds(msg, Vec::new())
    }

    /// Queues one message that carries the descriptors `fds` name.
    pub(crate) fn push_with_fds<T: Serialize>(
        &mut self,
        msg: &T,
        fds: Vec<FdTag>,
    ) -> Result<(), UpgradeError> {
        self.push_raw(encode(msg)?, fds);
        Ok(())
    }

    /// Queues bytes as they are (the state blob, without a copy).
    pub(crate) fn push_raw(&mut self, bytes: Vec<u8>, fds: Vec<FdTag>) {
        self.chunks.push_back(Chunk {
            bytes,
            fds,
            written: 0,
        });
    }

    /// Whether everything queued has been written.
    pub(crate) fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Writes until everything is written (`Ok(true)`) or the socket takes no more
    /// (`Ok(false)`: wait until it is writable). `resolve` names the descriptor for a tag; it
    /// is asked only when a frame that carries descriptors starts to go out.
    pub(crate) fn flush<'f>(
        &mut self,
        sock: BorrowedFd<'_>,
        resolve: &mut dyn FnMut(FdTag) -> Option<BorrowedFd<'f>>,
    ) -> Result<bool, UpgradeError> {
        while let Some(chunk) = self.chunks.front_mut() {
            let rest = &chunk.bytes[chunk.written..];
            if rest.is_empty() {
                self.chunks.pop_front();
                continue;
            }
            let sent = if chunk.written == 0 && !chunk.fds.is_empty() {
                let fds = chunk
                    .fds
                    .iter()
                    .map(|&tag| resolve(tag).ok_or(UpgradeError::MissingFd(tag)))
                    .collect::<Result<Vec<_>, _>>()?;
                send_with_fds(sock, rest, &fds)
            } else {
                send(sock, rest, SendFlags::NOSIGNAL)
            };
            match sent {
                Ok(n) => chunk.written += n,
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(true)
    }
}

/// One `sendmsg` of `bytes` with `fds` attached (the kernel attaches them to the first byte
/// written, so a short write still delivers them all).
fn send_with_fds(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> Result<usize, Errno> {
    let rights = SendAncillaryMessage::ScmRights(fds);
    let mut space = vec![MaybeUninit::uninit(); rights.size()];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(rights) {
        return Err(Errno::NOBUFS);
    }
    sendmsg(
        sock,
        &[IoSlice::new(bytes)],
        &mut control,
        SendFlags::NOSIGNAL,
    )
}

/// What one read brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recv {
    /// This many bytes.
    Data(usize),
    /// The other end closed the channel.
    Eof,
    /// Nothing yet (non-blocking socket, or a blocking one's read timeout).
    WouldBlock,
}

/// Bytes read but not yet decoded, and descriptors received but not yet claimed by a frame.
pub(crate) struct Inbox {
    buf: Vec<u8>,
    fds: VecDeque<OwnedFd>,
    control: Vec<MaybeUninit<u8>>,
}

impl Default for Inbox {
    fn default() -> Inbox {
        Inbox::with_fd_room(SCM_MAX_FD)
    }
}

impl Inbox {
    /// An inbox whose reads have room for `fds` descriptors each (tests make it too small).
    pub(crate) fn with_fd_room(fds: usize) -> Inbox {
        let room = rustix::cmsg_space!(ScmRights(fds));
        Inbox {
            buf: Vec::new(),
            fds: VecDeque::new(),
            control: vec![MaybeUninit::uninit(); room],
        }
    }

    /// Reads once from `sock` into the buffer.
    pub(crate) fn fill(&mut self, sock: BorrowedFd<'_>) -> Result<Recv, UpgradeError> {
        let start = self.buf.len();
        self.buf.resize(start + READ_CHUNK, 0);
        let got = recv_with_fds(
            sock,
            &mut self.buf[start..],
            &mut self.control,
            &mut self.fds,
        );
        let n = match got {
            Ok(Recv::Data(n)) => n,
            _ => 0,
        };
        self.buf.truncate(start + n);
        got
    }

    /// Decodes the first complete frame, if one is buffered.
    pub(crate) fn message<T: DeserializeOwned>(&mut self) -> Result<Option<T>, UpgradeError> {
        let Some((msg, size)) = decode(&self.buf)? else {
            return Ok(None);
        };
        self.buf.drain(..size);
        Ok(Some(msg))
    }

    /// Reads raw bytes into `out`, which must not be empty (already-buffered bytes first): the
    /// state after its header.
    pub(crate) fn read_raw(
        &mut self,
        sock: BorrowedFd<'_>,
        out: &mut [u8],
    ) -> Result<Recv, UpgradeError> {
        if !self.buf.is_empty() {
            let n = self.buf.len().min(out.len());
            out[..n].copy_from_slice(&self.buf[..n]);
            self.buf.drain(..n);
            return Ok(Recv::Data(n));
        }
        recv_with_fds(sock, out, &mut self.control, &mut self.fds)
    }

    /// The first `n` descriptors received and not yet taken.
    pub(crate) fn take_fds(&mut self, n: usize) -> Result<Vec<OwnedFd>, UpgradeError> {
        if self.fds.len() < n {
            return Err(UpgradeError::Protocol(format!(
                "a batch names {n} descriptors but {} arrived",
                self.fds.len()
            )));
        }
        Ok(self.fds.drain(..n).collect())
    }

    /// Descriptors received and not yet taken.
    pub(crate) fn pending_fds(&self) -> usize {
        self.fds.len()
    }
}

/// One `recvmsg` into `out`, with close-on-exec set on every descriptor that comes with it;
/// those are queued on `fds`. Cut-off control data is an error, and the descriptors that did
/// arrive with it are closed.
fn recv_with_fds(
    sock: BorrowedFd<'_>,
    out: &mut [u8],
    control: &mut [MaybeUninit<u8>],
    fds: &mut VecDeque<OwnedFd>,
) -> Result<Recv, UpgradeError> {
    let mut control = RecvAncillaryBuffer::new(control);
    let msg = loop {
        match recvmsg(
            sock,
            &mut [IoSliceMut::new(out)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(msg) => break msg,
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => return Ok(Recv::WouldBlock),
            Err(e) => return Err(e.into()),
        }
    };
    if msg.flags.contains(ReturnFlags::CTRUNC) {
        // Dropping the buffer closes whatever it holds.
        drop(control);
        return Err(UpgradeError::Truncated);
    }
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    Ok(if msg.bytes == 0 {
        Recv::Eof
    } else {
        Recv::Data(msg.bytes)
    })
}
