//! Lib unit tests that open descriptors run beside tests that count this process's open
//! descriptors (to prove nothing leaks). Counting tests hold the write side of this lock, so
//! they run alone; tests that open descriptors hold the read side, so they run together.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static FDS: RwLock<()> = RwLock::new(());

/// For a test that counts open descriptors.
pub(crate) fn counting() -> RwLockWriteGuard<'static, ()> {
    FDS.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// For a test that opens descriptors.
pub(crate) fn opening() -> RwLockReadGuard<'static, ()> {
    FDS.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}
