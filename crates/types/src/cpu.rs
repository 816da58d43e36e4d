//! Which simulated CPU is running the caller, for per-CPU structures (IOVA magazines,
//! flush queues; reference `software.md` §2 and §3.3).

/// A source of CPU ids in `0..count()`.
pub trait CpuId: Send + Sync {
    /// The id of the CPU running the caller; always `< self.count()`.
    fn current(&self) -> usize;
    /// Number of CPUs.
    fn count(&self) -> usize;
}

/// Every caller is on CPU `id` of `count` (single-threaded tests, loom models).
#[derive(Clone, Copy, Debug)]
pub struct FixedCpuId {
    /// The CPU reported.
    pub id: usize,
    /// Number of CPUs.
    pub count: usize,
}

impl CpuId for FixedCpuId {
    fn current(&self) -> usize {
        self.id.min(self.count.saturating_sub(1))
    }
    fn count(&self) -> usize {
        self.count.max(1)
    }
}

#[cfg(feature = "std")]
mod thread {
    use super::CpuId;
    use core::cell::Cell;
    use core::sync::atomic::{AtomicUsize, Ordering};

    std::thread_local! {
        static CURRENT: Cell<Option<usize>> = const { Cell::new(None) };
    }
    static NEXT: AtomicUsize = AtomicUsize::new(0);

    /// CPU ids from a thread-local: a workload thread calls
    /// [`ThreadCpuId::set_current`] once to say which simulated CPU it is; a thread that
    /// never did gets ids handed out round-robin on first use.
    #[derive(Clone, Copy, Debug)]
    pub struct ThreadCpuId {
        count: usize,
    }

    impl ThreadCpuId {
        /// A source for `count` CPUs (at least 1).
        pub fn new(count: usize) -> Self {
            Self {
                count: count.max(1),
            }
        }

        /// Declare that the calling thread is simulated CPU `id`.
        pub fn set_current(id: usize) {
            CURRENT.with(|c| c.set(Some(id)));
        }
    }

    impl CpuId for ThreadCpuId {
        fn current(&self) -> usize {
            let id = CURRENT.with(|c| match c.get() {
                Some(id) => id,
                None => {
                    let id = NEXT.fetch_add(1, Ordering::Relaxed);
                    c.set(Some(id));
                    id
                }
            });
            id % self.count
        }
        fn count(&self) -> usize {
            self.count
        }
    }
}

#[cfg(feature = "std")]
pub use thread::ThreadCpuId;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_cpu_is_clamped() {
        let c = FixedCpuId { id: 7, count: 4 };
        assert_eq!(c.current(), 3);
        assert_eq!(c.count(), 4);
    }

    #[cfg(feature = "std")]
    #[test]
    fn thread_cpu_ids_are_per_thread() {
        let src = ThreadCpuId::new(4);
        ThreadCpuId::set_current(2);
        assert_eq!(src.current(), 2);
        let other = std::thread::spawn(move || {
            ThreadCpuId::set_current(5);
            src.current()
        })
        .join()
        .unwrap();
        assert_eq!(other, 1);
        assert_eq!(src.current(), 2);
    }
}
