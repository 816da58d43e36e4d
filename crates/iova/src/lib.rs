//! IOVA allocator with per-CPU magazine caches and flush queues
//! (reference: `software.md` §2 flush queues, §3 IOVA allocator).
//!
//! * [`IovaDomain`]: Linux's `iova.c` semantics. Top-down, size-aligned allocation
//!   under a limit pfn from a balanced tree with cached start nodes, a retry from
//!   the top, the `max32_alloc_size` fast fail, reserved ranges, and per-CPU
//!   magazines of freed ranges (orders 0..=5, 127 pfns each) with a depot that
//!   shrinks on a [`Clock`](iommu_types::Clock). Granules larger than a CPU page are
//!   allowed. [`IovaDomain::alloc_iova_dma`] adds dma-iommu's 32-bit-first attempt.
//! * [`FlushQueue`]: dma-iommu's deferred freeing for lazy domains, per-CPU rings
//!   of 256 entries with a 10 ms timeout or one ring of 32768 entries with 1 s,
//!   generic in the freed page-table payload.
//!
//! The crate uses `std` (locks are `std::sync::Mutex`, switched to loom's under
//! `--cfg loom`; see `src/sync.rs`).

mod domain;
mod error;
mod fq;
mod rangemap;
mod rcache;
mod stats;
mod sync;
mod tree;

pub use domain::{IovaDomain, IovaDomainBuilder, Pci32BitWorkaround};
pub use error::{Error, Result};
pub use fq::{
    FlushQueue, FqConfig, FqEntry, FqKind, FqOps, IOVA_DEFAULT_FQ_SIZE, IOVA_DEFAULT_FQ_TIMEOUT_NS,
    IOVA_SINGLE_FQ_SIZE, IOVA_SINGLE_FQ_TIMEOUT_NS,
};
pub use rcache::{IOVA_DEPOT_DELAY_NS, IOVA_MAG_SIZE, IOVA_RANGE_CACHE_MAX_SIZE};
pub use stats::{FqStats, IovaStats};
pub use tree::IovaRange;

/// Test helpers shared by the unit tests.
#[cfg(test)]
mod tests_support {
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A CPU-id source a test switches by hand.
    pub(crate) struct SwitchCpu {
        current: AtomicUsize,
        count: usize,
    }

    impl SwitchCpu {
        pub(crate) fn new(count: usize) -> Self {
            Self {
                current: AtomicUsize::new(0),
                count,
            }
        }

        pub(crate) fn set(&self, cpu: usize) {
            self.current.store(cpu, Ordering::Relaxed);
        }
    }

    impl iommu_types::CpuId for SwitchCpu {
        fn current(&self) -> usize {
            self.current.load(Ordering::Relaxed)
        }
        fn count(&self) -> usize {
            self.count
        }
    }
}
