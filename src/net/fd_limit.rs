//! The open-file limit: raised to the hard limit at start, and the connection cap derived
//! from it.

use super::log::{Level, log};
use rlimit::Resource;

/// Descriptors kept free for things other than clients: stdio, the poll instance, the signal
/// pipe, listeners, and one spare for a refusal.
const RESERVED_FDS: u64 = 16;

/// Raises the soft open-file limit to the hard limit, logs both figures, and returns the
/// number of client connections that fit (at least 1).
pub(crate) fn raise_and_derive_max_clients(listeners: usize) -> usize {
    let (soft, hard) = rlimit::getrlimit(Resource::NOFILE).unwrap_or((1024, 1024));
    let raised = rlimit::increase_nofile_limit(hard).unwrap_or(soft);
    log!(
        Level::Info,
        "open-file limit: soft {soft} raised to {raised} (hard limit {hard})"
    );
    let reserved = RESERVED_FDS + listeners as u64;
    raised.saturating_sub(reserved).clamp(1, usize::MAX as u64) as usize
}
