//! Time sources (ARCHITECTURE.md "Time and determinism").

use core::sync::atomic::{AtomicU64, Ordering};

/// A monotonic time source in nanoseconds.
///
/// Simulations use a [`VirtualClock`] advanced by the simulator so that runs are
/// reproducible from a seed; benchmarks may use a real clock.
pub trait Clock: Send + Sync {
    /// Current time in nanoseconds since an arbitrary origin.
    fn now_ns(&self) -> u64;
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct VirtualClock {
    now: AtomicU64,
}

impl VirtualClock {
    /// A clock at time `start_ns`.
    pub const fn new(start_ns: u64) -> Self {
        Self {
            now: AtomicU64::new(start_ns),
        }
    }

    /// Advance by `ns` and return the new time. Time saturates at `u64::MAX` rather
    /// than wrapping back to the past (a clock must stay monotonic whatever the
    /// caller's arithmetic).
    pub fn advance(&self, ns: u64) -> u64 {
        let step = |t: u64| Some(t.saturating_add(ns));
        match self
            .now
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, step)
        {
            Ok(prev) | Err(prev) => prev.saturating_add(ns),
        }
    }

    /// Move to `ns` if that is later than now (time never goes back).
    pub fn advance_to(&self, ns: u64) {
        self.now.fetch_max(ns, Ordering::AcqRel);
    }
}

impl Clock for VirtualClock {
    fn now_ns(&self) -> u64 {
        self.now.load(Ordering::Acquire)
    }
}

impl<T: Clock + ?Sized> Clock for &T {
    fn now_ns(&self) -> u64 {
        (**self).now_ns()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_clock_is_monotonic() {
        let c = VirtualClock::new(10);
        assert_eq!(c.now_ns(), 10);
        assert_eq!(c.advance(5), 15);
        c.advance_to(12);
        assert_eq!(c.now_ns(), 15);
        c.advance_to(100);
        assert_eq!(c.now_ns(), 100);
        assert_eq!(c.advance(u64::MAX), u64::MAX, "saturates");
        assert_eq!(c.advance(1), u64::MAX, "never wraps back to the past");
        assert_eq!(c.now_ns(), u64::MAX);
    }
}
