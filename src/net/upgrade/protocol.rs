//! The hand-over messages, their framing, and the version negotiation.

use super::UpgradeError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Version of this channel protocol (framing and messages), not of the chat state.
pub(crate) const CHANNEL_VERSION: u16 = 1;
/// Most descriptors sent in one message (the kernel's own limit, `SCM_MAX_FD`, is 253).
pub(crate) const MAX_FDS_PER_MESSAGE: usize = 200;
/// Largest frame accepted; the largest one sent, a batch of 200 tags, is about 2 KB.
pub(crate) const MAX_FRAME: usize = 64 * 1024;
/// Bytes in a frame's length prefix.
pub(crate) const LEN_PREFIX: usize = 4;

/// Which handed-over descriptor this is, so the new process can put it back in its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) enum FdTag {
    /// A listening socket, by its index in the listener list.
    Listener(u32),
    /// A client connection, by the key the snapshot knows it by (such as its slab key, with
    /// its generation packed in if wanted).
    Conn(u64),
}

/// The new process's first words. Its fields never change and new ones go at the end, so any
/// later program can still say hello to an older one (postcard ignores trailing bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Hello {
    /// [`CHANNEL_VERSION`] of the new program.
    pub(crate) channel: u16,
    /// The new program's own version, for the log.
    pub(crate) program: String,
    /// The state versions it can read.
    pub(crate) reads: Vec<u32>,
}

/// Messages from the new process to the old one. `Hello` stays the first variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ToOld {
    /// Who we are and what we read.
    Hello(Hello),
    /// Everything arrived and is rebuilt; no handed-over socket has been touched.
    Confirm,
    /// The new process gives up, and why.
    Abort(String),
}

/// Messages from the old process to the new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ToNew {
    /// The state follows right after this frame: `len` raw bytes, in state `version`. The old
    /// process waits `confirm_within_ms` more for Confirm.
    State {
        /// The state version the bytes are in.
        version: u32,
        /// How many bytes follow.
        len: u64,
        /// Milliseconds left before the old process gives up.
        confirm_within_ms: u64,
    },
    /// `SCM_RIGHTS` carries exactly one descriptor per tag with this frame, in this order.
    Fds(Vec<FdTag>),
    /// Everything was sent: this many descriptors in all.
    End {
        /// The number of descriptors sent.
        fds: u64,
    },
    /// The new process owns everything from now on.
    Commit,
}

/// The state version the old process sends (the one it writes), if the new one can read it.
pub(crate) fn negotiate(writes: u32, hello: &Hello) -> Result<u32, UpgradeError> {
    if hello.channel != CHANNEL_VERSION {
        return Err(UpgradeError::ChannelVersion {
            program: hello.program.clone(),
            theirs: hello.channel,
            ours: CHANNEL_VERSION,
        });
    }
    if !hello.reads.contains(&writes) {
        return Err(UpgradeError::StateVersion {
            program: hello.program.clone(),
            offered: writes,
            reads: hello.reads.clone(),
        });
    }
    Ok(writes)
}

/// One frame: the length prefix and the encoded message.
pub(crate) fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, UpgradeError> {
    let mut frame = postcard::to_extend(msg, vec![0; LEN_PREFIX])
        .map_err(|e| UpgradeError::Protocol(e.to_string()))?;
    let len = frame.len() - LEN_PREFIX;
    if len > MAX_FRAME {
        return Err(too_long(len));
    }
    frame[..LEN_PREFIX].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(frame)
}

/// The first frame in `buf` and its size, or `None` if it is not all there yet.
pub(crate) fn decode<T: DeserializeOwned>(buf: &[u8]) -> Result<Option<(T, usize)>, UpgradeError> {
    let Some(prefix) = buf.first_chunk::<LEN_PREFIX>() else {
        return Ok(None);
    };
    let len = u32::from_le_bytes(*prefix) as usize;
    if len > MAX_FRAME {
        return Err(too_long(len));
    }
    let Some(body) = buf.get(LEN_PREFIX..LEN_PREFIX + len) else {
        return Ok(None);
    };
    let msg = postcard::from_bytes(body).map_err(|e| UpgradeError::Protocol(e.to_string()))?;
    Ok(Some((msg, LEN_PREFIX + len)))
}

fn too_long(len: usize) -> UpgradeError {
    UpgradeError::Protocol(format!("a {len}-byte message (the limit is {MAX_FRAME})"))
}
