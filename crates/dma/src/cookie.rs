//! The DMA cookie of a domain: its IOVA space, its flush queue and the strict/lazy
//! flag, with the unmap protocol of the live switch (reference `software.md` §1.4,
//! §2; seed 000).
//!
//! * **Publish:** [`DmaCookie::enable_flush_queue`] initialises the flush queue
//!   completely, then stores the lazy flag with Release. No CPU can see the flag
//!   before the queue is ready.
//! * **Consume:** [`DmaCookie::unmap`] loads the flag ONCE (Acquire) and that one
//!   snapshot decides the gather mode, whether to sync, and whether the IOVA is
//!   freed or queued. Reading it twice lets a concurrent strict → lazy switch fall
//!   in between: sync skipped *and* IOVA freed, so the IOVA can be reused while
//!   stale IOTLB entries still point at the old pages.
//!
//! The flush queue is `iommu-iova`'s [`FlushQueue`] (one implementation of the
//! mechanism for the whole stack): the cookie builds it inactive, owning the
//! domain (as its [`FqOps`], through [`FqDomain`]) and the allocator (as its
//! [`IovaSink`], through [`FqIova`]), and activates it in the switch.
//!
//! The protocol is generic over [`DmaDomain`] and [`IovaAllocator`] and uses the
//! crate's `sync` shim (and iommu-iova's), so the loom test
//! (`tests/loom_switch.rs`) checks this very code.

use std::sync::Arc;

use io_pgtable::{FreedTable, IotlbGather};
use iommu_iova::{FlushQueue, FqConfig, FqKind, FqOps, IOVA_DEFAULT_FQ_SIZE, IovaSink};
use iommu_types::{Clock, CpuId, Errno, Iova, PhysAddr, Prot, VirtualClock};

use crate::error::{Error, Result};
use crate::layout::Granule;
use crate::ops::{DmaDomain, IovaAllocator};
use crate::sync::{AtomicBool, Mutex, Ordering, lock};

/// Entries per CPU flush ring by default (Linux `IOVA_DEFAULT_FQ_SIZE`; a ring
/// holds one less).
pub const FQ_DEFAULT_SIZE: usize = IOVA_DEFAULT_FQ_SIZE;
/// Time from the first queued entry to the timer flush (Linux
/// `IOVA_DEFAULT_FQ_TIMEOUT`), in ns. There is no timer thread: queueing arms a
/// deadline on the cookie's clock and whoever drives time calls
/// [`DmaCookie::poll_flush_queue`].
pub const FQ_DEFAULT_TIMEOUT_NS: u64 = iommu_iova::IOVA_DEFAULT_FQ_TIMEOUT_NS;

/// The domain as the flush queue's owner: its `flush_iotlb_all` and the release
/// of the table pages an unmap freed.
#[derive(Debug)]
pub struct FqDomain<D>(D);

impl<D: DmaDomain> FqOps<Vec<FreedTable>> for FqDomain<D> {
    #[inline]
    fn flush_iotlb_all(&self) -> core::result::Result<(), Errno> {
        self.0.flush_iotlb_all()
    }
    #[inline]
    fn free_payload(&self, tables: Vec<FreedTable>) {
        if !tables.is_empty() {
            self.0.free_tables(tables);
        }
    }
}

/// The allocator as the flush queue's sink: completed ranges go back through
/// [`IovaAllocator::free`].
#[derive(Debug)]
pub struct FqIova<A>(A);

impl<A: IovaAllocator> IovaSink for FqIova<A> {
    #[inline]
    fn release_range(&self, pfn: u64, pages: u64) {
        self.0.free(pfn, pages);
    }
}

/// The flush queue of a [`DmaCookie`]: iommu-iova's queue, with freed table
/// lists as payload, over the cookie's domain and allocator.
pub type CookieFlushQueue<D, A> = FlushQueue<Vec<FreedTable>, FqDomain<D>, FqIova<A>>;

/// The DMA layer's errors for what the flush queue refuses.
fn fq_error(e: iommu_iova::Error) -> Error {
    match e {
        iommu_iova::Error::Flush(errno) => Error::Domain(errno),
        iommu_iova::Error::FqInactive => {
            Error::Invalid("flush queue used before it was initialised")
        }
        iommu_iova::Error::BadConfig(why) => Error::Invalid(why),
        _ => Error::Invalid("flush queue refused the range"),
    }
}

/// Which decision of an unmap is being taken (for the protocol's single snapshot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Gather,
    Sync,
    Free,
}

/// The DMA state of one translating domain shared by all its devices.
pub struct DmaCookie<D: DmaDomain, A: IovaAllocator> {
    granule: Granule,
    aperture: (u64, u64),
    start_pfn: u64,
    lazy: AtomicBool,
    strict_only: AtomicBool,
    /// Owns the domain and the allocator (see [`DmaCookie::domain`]).
    fq: CookieFlushQueue<D, A>,
    clock: Option<Arc<dyn Clock>>,
    init_lock: Mutex<()>,
}

impl<D: DmaDomain, A: IovaAllocator> core::fmt::Debug for DmaCookie<D, A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DmaCookie")
            .field("granule", &self.granule)
            .field("lazy", &self.lazy.load(Ordering::Relaxed))
            .finish()
    }
}

impl<D: DmaDomain, A: IovaAllocator> DmaCookie<D, A> {
    /// A strict cookie over `domain`, allocating IOVAs from `iova`, with one flush
    /// ring per CPU of `cpus` (used once lazy mode is enabled). The granule is the
    /// smallest page size of the domain; pfn 0 is never used.
    pub fn new(domain: D, iova: A, cpus: Arc<dyn CpuId>) -> Result<Self> {
        Self::with_fq_size(domain, iova, cpus, FQ_DEFAULT_SIZE)
    }

    /// Like [`DmaCookie::new`] with `fq_size` slots per flush ring (a power of two
    /// ≥ 2; a ring holds `fq_size - 1` entries, as Linux's).
    pub fn with_fq_size(domain: D, iova: A, cpus: Arc<dyn CpuId>, fq_size: usize) -> Result<Self> {
        let config = FqConfig {
            kind: FqKind::PerCpu,
            size: fq_size,
            timeout_ns: FQ_DEFAULT_TIMEOUT_NS,
        };
        Self::with_fq_config(domain, iova, cpus, config)
    }

    /// Like [`DmaCookie::new`] with any flush-queue layout (for example
    /// [`FqConfig::single`], the one large queue for IOMMUs whose global
    /// invalidation is expensive).
    pub fn with_fq_config(
        domain: D,
        iova: A,
        cpus: Arc<dyn CpuId>,
        config: FqConfig,
    ) -> Result<Self> {
        let granule = Granule::new(
            domain
                .pgsize_bitmap()
                .smallest()
                .ok_or(Error::Invalid("domain maps no page size"))?,
        )?;
        let aperture = domain.aperture();
        if aperture.1 <= aperture.0 {
            return Err(Error::Invalid("empty aperture"));
        }
        let start_pfn = (aperture.0 >> granule.shift()).max(1);
        // Until `with_clock`, a clock that never moves: the timer is armed and
        // reported, and fired by whoever calls `flush_queue_timer`.
        let fq = FlushQueue::with_parts(
            FqDomain(domain),
            FqIova(iova),
            Arc::new(VirtualClock::new(0)),
            cpus,
            config,
        )
        .map_err(fq_error)?
        .into_inactive();
        Ok(Self {
            granule,
            aperture,
            start_pfn,
            lazy: AtomicBool::new(false),
            strict_only: AtomicBool::new(false),
            fq,
            clock: None,
            init_lock: Mutex::new(()),
        })
    }

    /// Drive the flush-queue timer from `clock`: queueing arms a deadline
    /// `FQ_DEFAULT_TIMEOUT_NS` ahead and [`DmaCookie::poll_flush_queue`] fires it.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.fq.set_clock(clock.clone());
        self.clock = Some(clock);
        self
    }

    /// The domain.
    #[inline]
    pub fn domain(&self) -> &D {
        &self.fq.ops().0
    }

    /// The IOVA allocator.
    #[inline]
    pub fn iova(&self) -> &A {
        &self.fq.sink().0
    }

    /// The IOVA granule.
    pub fn granule(&self) -> Granule {
        self.granule
    }

    /// The flush queue (accepts entries once lazy).
    pub fn flush_queue(&self) -> &CookieFlushQueue<D, A> {
        &self.fq
    }

    /// Whether unmaps are currently lazy (DMA-FQ).
    pub fn is_lazy(&self) -> bool {
        self.lazy.load(Ordering::Acquire)
    }

    /// Forbid lazy mode for good (an untrusted device uses this domain). Fails
    /// with EPERM if the domain is already lazy.
    pub fn set_strict_only(&self) -> Result<()> {
        let _g = lock(&self.init_lock);
        if self.lazy.load(Ordering::Acquire) {
            return Err(Error::Refused(
                "domain is already lazy; untrusted devices need strict",
            ));
        }
        self.strict_only.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// The live DMA → DMA-FQ switch (`iommu_dma_init_fq`): return if already lazy,
    /// initialise the queue, then publish the flag with Release.
    pub fn enable_flush_queue(&self) -> Result<()> {
        let _g = lock(&self.init_lock);
        if self.lazy.load(Ordering::Acquire) {
            return Ok(());
        }
        if self.strict_only.load(Ordering::Relaxed) {
            return Err(Error::Refused(
                "an untrusted device forces strict invalidation",
            ));
        }
        self.fq.activate();
        self.lazy.store(true, Ordering::Release);
        Ok(())
    }

    /// BROKEN on purpose (test only): publishes the flag before the queue exists.
    #[cfg(any(test, loom))]
    #[doc(hidden)]
    pub fn enable_flush_queue_publish_first(&self) -> Result<()> {
        let _g = lock(&self.init_lock);
        self.lazy.store(true, Ordering::Release);
        self.fq.activate();
        Ok(())
    }

    /// Allocate `size` bytes (granule multiple) of IOVA ending at or below `limit`
    /// (clamped to the aperture). Returns the IOVA.
    pub fn alloc_iova(&self, size: u64, limit: u64, flush_rcache: bool) -> Result<u64> {
        let shift = self.granule.shift();
        let limit = limit.min(self.aperture.1);
        let pages = size >> shift;
        if pages == 0 || !self.granule.is_aligned(size) {
            return Err(Error::Invalid(
                "IOVA size must be a non-zero granule multiple",
            ));
        }
        // The last pfn whose whole granule lies at or below `limit`; none when the
        // limit is below the first granule's end.
        let limit_pfn = match limit.checked_add(1) {
            None => u64::MAX >> shift,
            Some(end) => (end >> shift)
                .checked_sub(1)
                .ok_or(Error::NoIovaSpace { bytes: size, limit })?,
        };
        match self.iova().alloc(pages, limit_pfn, flush_rcache) {
            Some(pfn)
                if pfn >= self.start_pfn
                    && pfn
                        .checked_add(pages - 1)
                        .is_some_and(|last| last <= limit_pfn) =>
            {
                Ok(pfn << shift)
            }
            Some(pfn) => {
                self.iova().free(pfn, pages);
                Err(Error::NoIovaSpace { bytes: size, limit })
            }
            None => Err(Error::NoIovaSpace { bytes: size, limit }),
        }
    }

    /// Return an IOVA range nothing was mapped in (or whose mappings were already
    /// invalidated synchronously).
    pub fn free_iova_now(&self, iova: u64, size: u64) {
        let shift = self.granule.shift();
        self.iova().free(iova >> shift, size >> shift);
    }

    /// Map through the domain.
    pub fn map(&self, iova: u64, pa: u64, size: u64, prot: Prot) -> Result<()> {
        self.domain()
            .map(Iova(iova), PhysAddr(pa), size, prot)
            .map_err(Error::Domain)
    }

    /// Unmap `ranges` (granule-aligned `(iova, len)` pieces inside one IOVA
    /// allocation `[alloc_iova, alloc_iova + alloc_size)`), then invalidate and free
    /// the allocation strictly, or queue it, as decided by ONE snapshot of the flag.
    pub fn unmap(&self, ranges: &[(u64, u64)], alloc_iova: u64, alloc_size: u64) -> Result<()> {
        let lazy = self.lazy.load(Ordering::Acquire);
        self.unmap_with(ranges, alloc_iova, alloc_size, |_| lazy)
    }

    /// BROKEN on purpose (test only): the seed-000 v2 bug. The free decision comes
    /// from a first read of the flag, the sync decision from a second one.
    #[cfg(any(test, loom))]
    #[doc(hidden)]
    pub fn unmap_double_read(
        &self,
        ranges: &[(u64, u64)],
        alloc_iova: u64,
        alloc_size: u64,
    ) -> Result<()> {
        let first = self.lazy.load(Ordering::Acquire);
        self.unmap_with(ranges, alloc_iova, alloc_size, |step| match step {
            Step::Sync => self.lazy.load(Ordering::Acquire),
            Step::Gather | Step::Free => first,
        })
    }

    fn unmap_with(
        &self,
        ranges: &[(u64, u64)],
        alloc_iova: u64,
        alloc_size: u64,
        lazy_at: impl Fn(Step) -> bool,
    ) -> Result<()> {
        let mut gather = if lazy_at(Step::Gather) {
            IotlbGather::new_queued()
        } else {
            IotlbGather::new()
        };
        let mut unmapped = 0;
        for &(iova, len) in ranges {
            unmapped += self.domain().unmap(Iova(iova), len, &mut gather);
        }
        if unmapped == 0 {
            // Nothing of ours was there: a bad or repeated unmap. Touch no IOVA.
            return Err(Error::NotMapped { addr: alloc_iova });
        }
        if !lazy_at(Step::Sync) {
            // On failure the IOVA is leaked on purpose: stale entries may remain.
            self.domain()
                .iotlb_sync(&mut gather)
                .map_err(Error::Domain)?;
        }
        let shift = self.granule.shift();
        let (pfn, pages) = (alloc_iova >> shift, alloc_size >> shift);
        if lazy_at(Step::Free) {
            let freelist = core::mem::take(&mut gather.freelist);
            self.fq.queue_iova(pfn, pages, freelist).map_err(fq_error)
        } else {
            self.iova().free(pfn, pages);
            Ok(())
        }
    }

    /// Undo maps made by a call that is failing: clear `ranges`, invalidate them
    /// and wait, without touching the IOVA allocation (the caller frees it; it was
    /// never handed to the device, and the sync leaves nothing stale).
    pub fn unmap_unwind(&self, ranges: &[(u64, u64)]) -> Result<()> {
        let mut gather = IotlbGather::new();
        for &(iova, len) in ranges {
            self.domain().unmap(Iova(iova), len, &mut gather);
        }
        self.domain().iotlb_sync(&mut gather).map_err(Error::Domain)
    }

    /// Run the flush-queue timer if its deadline has passed on the cookie's clock
    /// (none without [`DmaCookie::with_clock`]). Returns whether it ran.
    pub fn poll_flush_queue(&self) -> Result<bool> {
        if self.clock.is_none() || !self.lazy.load(Ordering::Acquire) {
            return Ok(false);
        }
        self.fq.poll().map_err(fq_error)
    }

    /// The flush-queue timer: flush the domain once and free every completed entry.
    /// A no-op while strict.
    pub fn flush_queue_timer(&self) -> Result<()> {
        if !self.lazy.load(Ordering::Acquire) {
            return Ok(());
        }
        self.fq.fire_timer().map_err(fq_error)
    }
}
