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
//!   generic in the freed page-table payload, in the owner's callbacks
//!   ([`FqOps`]) and in where freed ranges go ([`IovaSink`], by default the
//!   [`IovaDomain`]). The DMA layer (`iommu-dma`) uses this one queue.
//!
//! The crate uses `std`: the locks are short spinlocks that yield while waiting
//! (loom's mutex under `--cfg loom`; see `src/sync.rs`).
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use iommu_iova::{FlushQueue, FqConfig, FqOps, IovaDomain};
//! use iommu_types::{Errno, FixedCpuId, VirtualClock};
//!
//! /// The DMA layer's side: invalidate the IOTLB, free page-table pages.
//! struct Domain { flushes: Mutex<u32>, freed_tables: Mutex<Vec<u64>> }
//! impl FqOps<Vec<u64>> for Domain {
//!     fn flush_iotlb_all(&self) -> Result<(), Errno> { *self.flushes.lock().unwrap() += 1; Ok(()) }
//!     fn free_payload(&self, tables: Vec<u64>) { self.freed_tables.lock().unwrap().extend(tables); }
//! }
//!
//! let iovad = Arc::new(
//!     IovaDomain::builder(4096, 1).cpus(Arc::new(FixedCpuId { id: 0, count: 1 })).build()?,
//! );
//! let dom = Arc::new(Domain { flushes: Mutex::new(0), freed_tables: Mutex::new(vec![]) });
//! let clock = Arc::new(VirtualClock::new(0));
//! let fq = FlushQueue::new(iovad.clone(), dom.clone(), clock.clone(), FqConfig::per_cpu())?;
//!
//! // map: 3 pages under a 32-bit mask (rounded to 4, aligned to 4)
//! let pfn = iovad.alloc_iova_dma(3, (1 << 20) - 1, None)?;
//! assert_eq!(pfn % 4, 0);
//! // lazy unmap: PTEs cleared, one table page freed, IOVA queued
//! fq.queue_iova(pfn, 3, vec![0x8000_0000])?;
//! clock.advance(10_000_000);
//! assert!(fq.poll()?); // the 10 ms timeout flushes and releases
//! assert_eq!(*dom.flushes.lock().unwrap(), 1);
//! assert_eq!(*dom.freed_tables.lock().unwrap(), vec![0x8000_0000]);
//! # Ok::<(), iommu_iova::Error>(())
//! ```

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
    IOVA_SINGLE_FQ_SIZE, IOVA_SINGLE_FQ_TIMEOUT_NS, IovaSink,
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
