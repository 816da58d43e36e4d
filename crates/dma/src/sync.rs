//! Synchronisation primitives, from `loom` when the crate is model-checked
//! (`RUSTFLAGS="--cfg loom"`) and from `std` otherwise, so that the live-switch
//! protocol (`software.md` §1.4) is checked over the code that really runs.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

/// Lock a mutex, ignoring poisoning (a panicking holder cannot leave the data
/// half-updated in a way the next holder would misread: every critical section
/// here restores its invariants before anything can panic).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}
