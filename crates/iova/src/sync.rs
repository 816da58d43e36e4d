//! Locks and atomics, switched to loom's model-checked versions under `--cfg loom`.
//!
//! Everything in the crate that synchronises goes through this module, so the loom
//! tests (`tests/loom_*.rs`) check the real code paths.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering, fence};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering, fence};

/// A short-hold lock (Linux uses spinlocks here): a test-and-set spinlock whose
/// release is a plain store, yielding the CPU while another holder runs, so a
/// preempted holder on an oversubscribed host does not make waiters burn their
/// time slices. Under loom it is loom's model-checked mutex.
#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct Lock<T>(spin::mutex::SpinMutex<T, spin::relax::Yield>);

#[cfg(not(loom))]
impl<T> Lock<T> {
    /// A lock around `value`.
    pub(crate) fn new(value: T) -> Self {
        Self(spin::mutex::SpinMutex::new(value))
    }

    /// Take the lock.
    #[inline]
    pub(crate) fn lock(&self) -> spin::mutex::SpinMutexGuard<'_, T> {
        self.0.lock()
    }
}

/// The loom version of [`Lock`].
#[cfg(loom)]
#[derive(Debug)]
pub(crate) struct Lock<T>(loom::sync::Mutex<T>);

#[cfg(loom)]
impl<T> Lock<T> {
    /// A lock around `value`.
    pub(crate) fn new(value: T) -> Self {
        Self(loom::sync::Mutex::new(value))
    }

    /// Take the lock (a panic while holding it cannot leave our structures
    /// half-updated, so poisoning is ignored).
    #[inline]
    pub(crate) fn lock(&self) -> loom::sync::MutexGuard<'_, T> {
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
