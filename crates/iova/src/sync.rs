//! Locks and atomics, switched to loom's model-checked versions under `--cfg loom`.
//!
//! Everything in the crate that synchronises goes through this module, so the loom
//! tests (`tests/loom_*.rs`) check the real code paths.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering, fence};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering, fence};

#[cfg(not(loom))]
use std::sync::{Mutex as Inner, MutexGuard};

#[cfg(loom)]
use loom::sync::{Mutex as Inner, MutexGuard};

/// A mutual-exclusion lock whose `lock` never fails: a panic while holding it
/// cannot leave our structures half-updated in a way later users could not cope
/// with (every critical section keeps its invariants at each step), so poisoning is
/// ignored.
#[derive(Debug)]
pub(crate) struct Lock<T>(Inner<T>);

impl<T> Lock<T> {
    /// A lock around `value`.
    pub(crate) fn new(value: T) -> Self {
        Self(Inner::new(value))
    }

    /// Take the lock.
    #[inline]
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        match self.0.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// Aligns (and so pads) a per-CPU value to its own cache lines, so that CPUs
/// working on their own entries do not bounce a shared line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> core::ops::Deref for CachePadded<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}
