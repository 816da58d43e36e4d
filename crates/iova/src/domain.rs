//! The IOVA domain: tree allocation plus the per-CPU range caches, with Linux's
//! `alloc_iova_fast` / `free_iova_fast` semantics and dma-iommu's 32-bit-first
//! attempt (reference: `software.md` §3.1-§3.4).

use std::sync::Arc;

use iommu_types::{Clock, CpuId, ThreadCpuId};

use crate::error::{Error, Result};
use crate::rcache::{IOVA_DEPOT_DELAY_NS, IOVA_MAG_SIZE, IOVA_RANGE_CACHE_MAX_SIZE, Rcache};
use crate::stats::IovaStats;
use crate::sync::{AtomicBool, AtomicU32, AtomicU64, Lock, Ordering};
use crate::tree::{IovaRange, IovaTree, fls};

/// `order_base_2(size)`: the smallest `o` with `2^o ≥ size`.
#[inline]
fn order_base_2(size: u64) -> u32 {
    fls(size - 1)
}

/// Builder for an [`IovaDomain`].
pub struct IovaDomainBuilder {
    granule: u64,
    start_pfn: u64,
    cpus: Option<Arc<dyn CpuId>>,
    clock: Option<Arc<dyn Clock>>,
    mag_size: usize,
}

impl IovaDomainBuilder {
    /// The source of CPU ids for the per-CPU caches (default: a [`ThreadCpuId`]
    /// over the host's available parallelism).
    pub fn cpus(mut self, cpus: Arc<dyn CpuId>) -> Self {
        self.cpus = Some(cpus);
        self
    }

    /// The clock that times the depot-shrinking work (see [`IovaDomain::poll`]).
    /// Without one, depots shrink only through [`IovaDomain::shrink_depots`].
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Pfns per magazine, 1..=[`IOVA_MAG_SIZE`] (default `IOVA_MAG_SIZE`). Small
    /// values exist for model checking, where every pfn is a step.
    pub fn magazine_size(mut self, size: usize) -> Self {
        self.mag_size = size;
        self
    }

    /// Build the domain.
    pub fn build(self) -> Result<IovaDomain> {
        let g = self.granule;
        if g == 0 || !g.is_power_of_two() || g > (1 << 32) {
            return Err(Error::BadGranule(g));
        }
        if self.mag_size == 0 || self.mag_size > IOVA_MAG_SIZE {
            return Err(Error::BadConfig("magazine size must be 1..=127"));
        }
        let shift = g.trailing_zeros();
        // The top pfn is the tree's anchor sentinel, never allocatable.
        let max_pfn = (u64::MAX >> shift).min(u64::MAX - 1);
        if self.start_pfn > max_pfn {
            return Err(Error::BadConfig("start pfn beyond the address space"));
        }
        let dma_32bit_pfn = (1u64 << 32) >> shift;
        let cpus = self.cpus.unwrap_or_else(|| {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            Arc::new(ThreadCpuId::new(n))
        });
        let ncpus = cpus.count().max(1);
        Ok(IovaDomain {
            granule: g,
            shift,
            start_pfn: self.start_pfn,
            dma_32bit_pfn,
            max_pfn,
            mag_size: self.mag_size,
            tree: Lock::new(IovaTree::new(self.start_pfn, dma_32bit_pfn)),
            rcaches: (0..IOVA_RANGE_CACHE_MAX_SIZE)
                .map(|_| Rcache::new(ncpus))
                .collect(),
            ncpus,
            cpus,
            clock: self.clock,
            rcache_flushes: AtomicU64::new(0),
            depot_shrinks: AtomicU64::new(0),
            dac_fallbacks: AtomicU64::new(0),
            alloc_failures: AtomicU64::new(0),
        })
    }
}

/// An IOVA space: allocated ranges in a tree, recently freed ones in per-CPU
/// magazines.
///
/// Addresses are counted in pfns of `granule` bytes. Unlike Linux, a granule larger
/// than the CPU page is accepted (the DMA API issue needs it for IOMMUs such as
/// Apple's DART with 16 KiB pages on 4 KiB kernels).
///
/// Concurrency: the tree is under one lock; each (size order, CPU) pair has its own
/// lock and each order's depot another, as Linux's spinlocks. All methods take
/// `&self` and the domain is `Send + Sync`.
pub struct IovaDomain {
    granule: u64,
    shift: u32,
    start_pfn: u64,
    dma_32bit_pfn: u64,
    max_pfn: u64,
    mag_size: usize,
    tree: Lock<IovaTree>,
    rcaches: Box<[Rcache]>,
    ncpus: usize,
    cpus: Arc<dyn CpuId>,
    clock: Option<Arc<dyn Clock>>,
    rcache_flushes: AtomicU64,
    depot_shrinks: AtomicU64,
    dac_fallbacks: AtomicU64,
    alloc_failures: AtomicU64,
}

impl core::fmt::Debug for IovaDomain {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IovaDomain")
            .field("granule", &self.granule)
            .field("start_pfn", &self.start_pfn)
            .field("ncpus", &self.ncpus)
            .finish_non_exhaustive()
    }
}

impl IovaDomain {
    /// Start building a domain of `granule`-byte pfns whose lowest allocatable pfn
    /// is `start_pfn` (dma-iommu uses `max(1, aperture_start >> shift)`).
    pub fn builder(granule: u64, start_pfn: u64) -> IovaDomainBuilder {
        IovaDomainBuilder {
            granule,
            start_pfn,
            cpus: None,
            clock: None,
            mag_size: IOVA_MAG_SIZE,
        }
    }

    /// A domain with default CPU ids and no clock (Linux's `init_iova_domain`).
    pub fn new(granule: u64, start_pfn: u64) -> Result<Self> {
        Self::builder(granule, start_pfn).build()
    }

    /// Bytes per pfn.
    pub fn granule(&self) -> u64 {
        self.granule
    }

    /// `log2(granule)` (Linux's `iova_shift`).
    pub fn shift(&self) -> u32 {
        self.shift
    }

    /// `granule - 1` (Linux's `iova_mask`).
    pub fn mask(&self) -> u64 {
        self.granule - 1
    }

    /// Offset of `addr` inside its granule (`iova_offset`).
    pub fn offset(&self, addr: u64) -> u64 {
        addr & self.mask()
    }

    /// `size` rounded up to whole granules, or `None` on overflow (`iova_align`).
    pub fn align(&self, size: u64) -> Option<u64> {
        Some(size.checked_add(self.mask())? & !self.mask())
    }

    /// `addr` rounded down to its granule (`iova_align_down`).
    pub fn align_down(&self, addr: u64) -> u64 {
        addr & !self.mask()
    }

    /// The pfn of an address (`iova_pfn`).
    pub fn pfn(&self, addr: u64) -> u64 {
        addr >> self.shift
    }

    /// The address of a pfn (`iova_dma_addr`).
    pub fn dma_addr(&self, pfn: u64) -> u64 {
        pfn << self.shift
    }

    /// The lowest allocatable pfn.
    pub fn start_pfn(&self) -> u64 {
        self.start_pfn
    }

    /// The first pfn at or above 4 GiB (Linux's `dma_32bit_pfn`).
    pub fn dma_32bit_pfn(&self) -> u64 {
        self.dma_32bit_pfn
    }

    /// The highest pfn the domain can represent.
    pub fn max_pfn(&self) -> u64 {
        self.max_pfn
    }

    /// The largest mapping the caches serve, in bytes: 32 granules
    /// (Linux's `iova_rcache_range`, there in CPU pages).
    pub fn rcache_range(&self) -> u64 {
        self.granule << (IOVA_RANGE_CACHE_MAX_SIZE - 1)
    }

    /// Number of CPUs the per-CPU structures were sized for.
    pub fn ncpus(&self) -> usize {
        self.ncpus
    }

    /// The CPU-id source (the flush queues index their rings with it too).
    pub fn cpu_ids(&self) -> &Arc<dyn CpuId> {
        &self.cpus
    }

    #[inline]
    pub(crate) fn current_cpu(&self) -> usize {
        let c = self.cpus.current();
        if c < self.ncpus { c } else { c % self.ncpus }
    }

    /// Allocate `size` pfns ending at or below `limit_pfn` (clamped to
    /// [`max_pfn`](Self::max_pfn)) straight from the tree (Linux's `alloc_iova`); `size_aligned` aligns the start to the next power
    /// of two ≥ `size`. Returns the range.
    pub fn alloc_iova(&self, size: u64, limit_pfn: u64, size_aligned: bool) -> Result<IovaRange> {
        if size == 0 {
            return Err(Error::ZeroSize);
        }
        let limit_pfn = limit_pfn.min(self.max_pfn);
        match self.tree.lock().alloc(size, limit_pfn, size_aligned) {
            Some(pfn_lo) => Ok(IovaRange {
                pfn_lo,
                pfn_hi: pfn_lo + size - 1,
            }),
            None => {
                self.alloc_failures.fetch_add(1, Ordering::Relaxed);
                Err(Error::NoSpace { size, limit_pfn })
            }
        }
    }

    /// Allocate `size` pfns ending at or below `limit_pfn`, size-aligned, from this
    /// CPU's cache when possible (Linux's `alloc_iova_fast`). Sizes under 32
    /// granules are rounded up to a power of two. When the tree is full and
    /// `flush_rcache` is set, every CPU's cache and the depots are returned to the
    /// tree and the allocation is retried once. Returns the first pfn.
    #[inline]
    pub fn alloc_iova_fast(&self, size: u64, limit_pfn: u64, flush_rcache: bool) -> Result<u64> {
        if size == 0 {
            return Err(Error::ZeroSize);
        }
        let limit_pfn = limit_pfn.min(self.max_pfn);
        let size = if size < (1 << (IOVA_RANGE_CACHE_MAX_SIZE - 1)) {
            size.next_power_of_two()
        } else {
            size
        };
        let order = order_base_2(size) as usize;
        if order < IOVA_RANGE_CACHE_MAX_SIZE {
            let cpu = self.current_cpu();
            if let Some(pfn) = self.rcaches[order].get(cpu, size, limit_pfn) {
                return Ok(pfn);
            }
        }
        let mut flush = flush_rcache;
        loop {
            if let Some(pfn) = self.tree.lock().alloc(size, limit_pfn, true) {
                return Ok(pfn);
            }
            if !flush {
                self.alloc_failures.fetch_add(1, Ordering::Relaxed);
                return Err(Error::NoSpace { size, limit_pfn });
            }
            flush = false;
            self.flush_rcaches();
        }
    }

    /// Free the range starting at `pfn` of `size` pfns (as given to, not returned
    /// by, [`alloc_iova_fast`](Self::alloc_iova_fast)) into this CPU's cache, or to
    /// the tree when its order is not cached (Linux's `free_iova_fast`).
    ///
    /// Cheap checks refuse a pfn the fast path can never have returned for this
    /// size (below the start pfn or misaligned); like Linux, a double free of a
    /// plausible pfn is not detected here (the DMA layer owns that invariant).
    #[inline]
    pub fn free_iova_fast(&self, pfn: u64, size: u64) -> Result<()> {
        if size == 0 {
            return Err(Error::ZeroSize);
        }
        self.check_fast_free(pfn, size)?;
        let order = order_base_2(size) as usize;
        if order < IOVA_RANGE_CACHE_MAX_SIZE {
            let cpu = self.current_cpu();
            if self.rcaches[order].insert(cpu, pfn, self.mag_size) {
                self.schedule_depot_work(order);
            }
            return Ok(());
        }
        self.free_iova(pfn).map(|_| ())
    }

    /// The cheap plausibility checks of [`free_iova_fast`](Self::free_iova_fast).
    pub(crate) fn check_fast_free(&self, pfn: u64, size: u64) -> Result<()> {
        if size == 0 {
            return Err(Error::ZeroSize);
        }
        let align_mask = (1u64 << order_base_2(size).min(63)) - 1;
        if pfn < self.start_pfn || pfn & align_mask != 0 || pfn > self.max_pfn {
            return Err(Error::BadFastFree { pfn, size });
        }
        Ok(())
    }

    /// Remove the range containing `pfn` from the tree (Linux's `free_iova`).
    pub fn free_iova(&self, pfn: u64) -> Result<IovaRange> {
        self.tree.lock().remove(pfn).ok_or(Error::NotFound(pfn))
    }

    /// The range containing `pfn` (Linux's `find_iova`). A pfn sitting in a cache
    /// still has its range in the tree.
    pub fn find_iova(&self, pfn: u64) -> Option<IovaRange> {
        self.tree.lock().find(pfn)
    }

    /// Keep `pfn_lo..=pfn_hi` out of every allocation (Linux's `reserve_iova`),
    /// merging with ranges already present. Returns the range that covers the top
    /// of the request.
    pub fn reserve_iova(&self, pfn_lo: u64, pfn_hi: u64) -> Result<IovaRange> {
        self.tree.lock().reserve(pfn_lo, pfn_hi, self.max_pfn)
    }

    /// Allocate for a device the way dma-iommu does (`iommu_dma_alloc_iova`): while
    /// `workaround` is on and the limit is above 4 GiB, first try below 4 GiB
    /// without flushing the caches; on the first failure turn the workaround off
    /// for good (remembering the address width now used) and allocate from the
    /// full limit, flushing the caches if needed. Pass `None` for devices without
    /// the workaround (non-PCI, or `iommu.forcedac`).
    pub fn alloc_iova_dma(
        &self,
        size: u64,
        limit_pfn: u64,
        workaround: Option<&Pci32BitWorkaround>,
    ) -> Result<u64> {
        let alloc = |limit, flush| self.alloc_iova_fast(size, limit, flush);
        let Some(w) = workaround else {
            return alloc(limit_pfn, true);
        };
        let limit_addr = ((limit_pfn as u128 + 1) << self.shift) - 1;
        let bits = 128 - limit_addr.leading_zeros();
        let (r, fell_back) = w.alloc_32bit_first(limit_pfn, self.dma_32bit_pfn - 1, bits, alloc);
        if fell_back {
            self.dac_fallbacks.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    /// Return every CPU's cached pfns and every depot to the tree
    /// (`free_cpu_cached_iovas` for each CPU, then `free_global_cached_iovas`).
    pub fn flush_rcaches(&self) {
        self.rcache_flushes.fetch_add(1, Ordering::Relaxed);
        for rc in self.rcaches.iter() {
            for cpu in 0..self.ncpus {
                rc.flush_cpu(cpu, &self.tree);
            }
            rc.flush_depot(&self.tree);
        }
    }

    /// Return one CPU's cached pfns to the tree (CPU hot-unplug).
    pub fn flush_cpu_rcache(&self, cpu: usize) {
        if cpu < self.ncpus {
            for rc in self.rcaches.iter() {
                rc.flush_cpu(cpu, &self.tree);
            }
        }
    }

    fn schedule_depot_work(&self, order: usize) {
        let now = self.clock.as_ref().map_or(0, |c| c.now_ns());
        let mut d = self.rcaches[order].depot.lock();
        if d.work_due.is_none() {
            d.work_due = Some(now.saturating_add(IOVA_DEPOT_DELAY_NS));
        }
    }

    fn run_depot_work(&self, order: usize, now: u64) -> bool {
        let rc = &self.rcaches[order];
        {
            let mut d = rc.depot.lock();
            match d.work_due {
                Some(due) if due <= now => d.work_due = None,
                _ => return false,
            }
        }
        if rc.shrink_one(&self.tree) {
            self.depot_shrinks.fetch_add(1, Ordering::Relaxed);
            let mut d = rc.depot.lock();
            if d.work_due.is_none() {
                d.work_due = Some(now.saturating_add(IOVA_DEPOT_DELAY_NS));
            }
        }
        true
    }

    /// Run the depot-shrinking work that is due by the domain's clock: for each
    /// order whose work is due, free one depot magazine to the tree if the depot
    /// holds more magazines than there are CPUs, and re-arm the work
    /// `IOVA_DEPOT_DELAY` later if one was freed (Linux's `iova_depot_work_func`).
    /// The work is armed whenever a magazine moves to the depot and is not yet
    /// pending. Returns how many work items ran. Without a clock this does nothing.
    pub fn poll(&self) -> usize {
        let Some(clock) = self.clock.as_ref() else {
            return 0;
        };
        let now = clock.now_ns();
        (0..IOVA_RANGE_CACHE_MAX_SIZE)
            .filter(|&o| self.run_depot_work(o, now))
            .count()
    }

    /// When the next depot work is due, if any is pending.
    pub fn next_depot_deadline(&self) -> Option<u64> {
        self.rcaches
            .iter()
            .filter_map(|rc| rc.depot.lock().work_due)
            .min()
    }

    /// Shrink every depot to at most one magazine per CPU right now, whatever the
    /// clock says. Returns the number of magazines freed to the tree.
    pub fn shrink_depots(&self) -> usize {
        let mut freed = 0;
        for rc in self.rcaches.iter() {
            while rc.shrink_one(&self.tree) {
                freed += 1;
            }
        }
        self.depot_shrinks
            .fetch_add(freed as u64, Ordering::Relaxed);
        freed
    }

    /// Number of full magazines in the depot of size order `order`.
    pub fn depot_len(&self, order: usize) -> usize {
        self.rcaches
            .get(order)
            .map_or(0, |rc| rc.depot.lock().mags.len())
    }

    /// Every range in the tree (allocated, cached or reserved), in address order.
    pub fn ranges(&self) -> Vec<IovaRange> {
        self.tree.lock().ranges().collect()
    }

    /// Number of ranges in the tree.
    pub fn tree_len(&self) -> usize {
        self.tree.lock().len()
    }

    /// The current `max32_alloc_size` (sizes at least this large fail at once for
    /// limits at or below 4 GiB until something below 4 GiB is freed).
    pub fn max32_alloc_size(&self) -> u64 {
        self.tree.lock().max32_alloc_size()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> IovaStats {
        let mut s = IovaStats::default();
        for rc in self.rcaches.iter() {
            for c in rc.cpus.iter() {
                let c = c.lock();
                s.rcache_hits += c.hits;
                s.rcache_misses += c.misses;
                s.rcache_inserts += c.inserts;
                s.cached_pfns += (c.loaded.len() + c.prev.len()) as u64;
            }
            let d = rc.depot.lock();
            s.depot_pushes += d.pushes;
            s.cached_pfns += d.mags.iter().map(|m| m.len() as u64).sum::<u64>();
        }
        let t = self.tree.lock();
        s.tree_allocs = t.counters.allocs;
        s.tree_frees = t.counters.frees;
        s.tree_failures = t.counters.failures;
        s.max32_fast_fails = t.counters.fast_fails;
        s.tree_nodes = t.len() as u64;
        drop(t);
        s.rcache_flushes = self.rcache_flushes.load(Ordering::Relaxed);
        s.depot_shrinks = self.depot_shrinks.load(Ordering::Relaxed);
        s.dac_fallbacks = self.dac_fallbacks.load(Ordering::Relaxed);
        s.alloc_failures = self.alloc_failures.load(Ordering::Relaxed);
        s
    }
}

/// Per-device state of dma-iommu's `pci_32bit_workaround`: on (the default for
/// PCI devices unless `iommu.forcedac`) until a 32-bit-first attempt fails.
#[derive(Debug)]
pub struct Pci32BitWorkaround {
    enabled: AtomicBool,
    dac_bits: AtomicU32,
}

impl Pci32BitWorkaround {
    /// The state of a device: `enabled = !forcedac`.
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled: AtomicBool::new(enabled),
            dac_bits: AtomicU32::new(0),
        }
    }

    /// Whether the next allocation still tries below 4 GiB first.
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// The address width the device switched to ("Using N-bit DMA addresses"),
    /// or `None` while the workaround is on or was never enabled.
    pub fn dac_bits(&self) -> Option<u32> {
        match self.dac_bits.load(Ordering::Relaxed) {
            0 => None,
            b => Some(b),
        }
    }

    /// Turn the workaround back on (the device's DMA ops are set up again).
    pub fn reset(&self) {
        self.dac_bits.store(0, Ordering::Relaxed);
        self.enabled.store(true, Ordering::Relaxed);
    }

    /// dma-iommu's 32-bit-first policy over any allocator `alloc(limit, flush)`
    /// (limits inclusive, in the caller's units: pfns for [`IovaDomain`], bytes
    /// for the DMA layer): while the workaround is on and `limit` is above
    /// `limit32`, try `alloc(limit32, false)` first (caches not flushed); if that
    /// fails, turn the workaround off for good, recording `dac_bits` (the width of
    /// `limit`), then `alloc(limit, true)`. Returns the allocation and whether this
    /// call turned the workaround off.
    pub fn alloc_32bit_first<T, E>(
        &self,
        limit: u64,
        limit32: u64,
        dac_bits: u32,
        mut alloc: impl FnMut(u64, bool) -> core::result::Result<T, E>,
    ) -> (core::result::Result<T, E>, bool) {
        let mut fell_back = false;
        if limit > limit32 && self.is_enabled() {
            if let Ok(v) = alloc(limit32, false) {
                return (Ok(v), false);
            }
            fell_back = self.disable(dac_bits);
        }
        (alloc(limit, true), fell_back)
    }

    /// Turn it off; returns whether this call did (so one notice is logged).
    fn disable(&self, bits: u32) -> bool {
        let was = self.enabled.swap(false, Ordering::Relaxed);
        if was {
            self.dac_bits.store(bits, Ordering::Relaxed);
        }
        was
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iommu_types::{FixedCpuId, VirtualClock};

    fn domain(granule: u64, start: u64) -> IovaDomain {
        IovaDomain::builder(granule, start)
            .cpus(Arc::new(FixedCpuId { id: 0, count: 2 }))
            .build()
            .unwrap()
    }

    #[test]
    fn start_pfn_must_leave_an_allocatable_pfn() {
        // Granule 1: the top pfn is the tree's sentinel, so u64::MAX cannot start.
        assert!(matches!(
            IovaDomain::builder(1, u64::MAX).build(),
            Err(Error::BadConfig(_))
        ));
        let d = IovaDomain::builder(1, u64::MAX - 1).build().unwrap();
        assert_eq!(
            d.alloc_iova(1, u64::MAX - 1, false).map(|r| r.pfn_lo),
            Ok(u64::MAX - 1)
        );
    }

    #[test]
    fn domain_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<IovaDomain>();
        check::<crate::FlushQueue<Vec<u64>>>();
    }

    #[test]
    fn absurd_sizes_fail_cleanly() {
        let d = domain(4096, 1);
        for size in [u64::MAX, 1 << 63, (1 << 52) + 1] {
            assert!(matches!(
                d.alloc_iova_fast(size, u64::MAX, true),
                Err(Error::NoSpace { .. })
            ));
            assert!(matches!(
                d.alloc_iova(size, u64::MAX, false),
                Err(Error::NoSpace { .. })
            ));
            assert!(d.free_iova_fast(1, size).is_err());
        }
        assert_eq!(d.alloc_iova_fast(0, 100, true), Err(Error::ZeroSize));
        assert_eq!(d.alloc_iova(0, 100, true), Err(Error::ZeroSize));
        // A limit beyond the address space is clamped, not trusted.
        let p = d.alloc_iova_fast(1, u64::MAX, true).unwrap();
        assert!(p < u64::MAX);
        assert_eq!(
            d.reserve_iova(5, u64::MAX),
            Err(Error::BadRange {
                lo: 5,
                hi: u64::MAX
            })
        );
        assert_eq!(d.tree_len(), 1);
    }

    #[test]
    fn rejects_bad_configuration() {
        assert_eq!(IovaDomain::new(0, 1).unwrap_err(), Error::BadGranule(0));
        assert_eq!(
            IovaDomain::new(3000, 1).unwrap_err(),
            Error::BadGranule(3000)
        );
        assert!(IovaDomain::new(1 << 33, 1).is_err());
        assert!(
            IovaDomain::builder(4096, 1)
                .magazine_size(0)
                .build()
                .is_err()
        );
        assert!(
            IovaDomain::builder(4096, 1)
                .magazine_size(128)
                .build()
                .is_err()
        );
    }

    #[test]
    fn granule_larger_than_the_cpu_page_is_allowed() {
        // 16 KiB and 64 KiB granules (Linux BUG()s on a 4 KiB-page kernel).
        for (g, pfn32) in [(16384u64, 1u64 << 18), (65536, 1 << 16)] {
            let d = domain(g, 1);
            assert_eq!(d.dma_32bit_pfn(), pfn32);
            let p = d.alloc_iova_fast(3, pfn32 - 1, true).unwrap();
            assert_eq!(p, pfn32 - 4);
            assert_eq!(d.dma_addr(p), (1 << 32) - 4 * g);
            assert_eq!(d.pfn(d.dma_addr(p) + 5), p);
            assert_eq!(d.align(1), Some(g));
        }
    }

    #[test]
    fn fast_path_rounds_aligns_and_reuses() {
        let d = domain(4096, 1);
        let lim = d.dma_32bit_pfn() - 1;
        let a = d.alloc_iova_fast(5, lim, true).unwrap();
        assert_eq!(a % 8, 0);
        assert_eq!(d.find_iova(a).unwrap().size(), 8);
        d.free_iova_fast(a, 5).unwrap();
        // Cached: the next 5..=8-granule allocation gets it back without the tree.
        let before = d.stats();
        assert_eq!(d.alloc_iova_fast(7, lim, true), Ok(a));
        let after = d.stats();
        assert_eq!(after.rcache_hits, before.rcache_hits + 1);
        assert_eq!(after.tree_allocs, before.tree_allocs);
        // Larger than the cache: aligned to 64 and freed to the tree.
        let b = d.alloc_iova_fast(40, lim, true).unwrap();
        assert_eq!(b % 64, 0);
        d.free_iova_fast(b, 40).unwrap();
        assert!(d.find_iova(b).is_none());
    }

    #[test]
    fn fast_free_refuses_impossible_pfns() {
        let d = domain(4096, 16);
        assert_eq!(
            d.free_iova_fast(8, 1),
            Err(Error::BadFastFree { pfn: 8, size: 1 })
        );
        assert_eq!(
            d.free_iova_fast(17, 2),
            Err(Error::BadFastFree { pfn: 17, size: 2 })
        );
        assert_eq!(d.free_iova_fast(32, 0), Err(Error::ZeroSize));
        assert_eq!(d.free_iova(1234), Err(Error::NotFound(1234)));
        assert_eq!(d.stats().cached_pfns, 0);
    }

    #[test]
    fn cached_pfn_above_the_limit_falls_back_to_the_tree() {
        let d = domain(4096, 1);
        let high = d.alloc_iova_fast(1, 1000, true).unwrap();
        assert_eq!(high, 1000);
        d.free_iova_fast(high, 1).unwrap();
        let low = d.alloc_iova_fast(1, 500, true).unwrap();
        assert_eq!(low, 500);
        // 1000 stays cached.
        assert_eq!(d.alloc_iova_fast(1, 1000, true), Ok(1000));
    }

    #[test]
    fn cached_pfn_one_past_the_limit_is_not_returned() {
        let d = domain(4096, 1);
        let p = d.alloc_iova_fast(2, 1023, true).unwrap();
        assert_eq!(p, 1022);
        d.free_iova_fast(p, 2).unwrap();
        // 1022..=1023 ends one past 1022: the tree serves the request instead.
        assert_eq!(d.alloc_iova_fast(2, 1022, true), Ok(1020));
        assert_eq!(d.alloc_iova_fast(2, 1023, true), Ok(1022));
    }

    #[test]
    fn failure_flushes_the_caches_then_retries() {
        let d = domain(4096, 1);
        let lim = 8;
        let got: Vec<_> = (0..8)
            .map(|_| d.alloc_iova_fast(1, lim, true).unwrap())
            .collect();
        for &p in &got {
            d.free_iova_fast(p, 1).unwrap();
        }
        // Everything is cached as order-0 pfns; an order-1 request needs the tree.
        assert_eq!(
            d.alloc_iova_fast(2, lim, false),
            Err(Error::NoSpace {
                size: 2,
                limit_pfn: 8
            })
        );
        let p = d.alloc_iova_fast(2, lim, true).unwrap();
        // Highest 2-aligned pair ending at or below 8.
        assert_eq!(p, 6);
        let s = d.stats();
        assert_eq!(s.rcache_flushes, 1);
        assert_eq!(s.cached_pfns, 0);
    }

    #[test]
    fn thirty_two_bit_first_then_dac_for_good() {
        let d = domain(4096, 1);
        let lim32 = d.dma_32bit_pfn() - 1;
        let lim64 = (1u64 << 48 >> 12) - 1;
        let w = Pci32BitWorkaround::new(true);
        let a = d.alloc_iova_dma(1, lim64, Some(&w)).unwrap();
        assert_eq!(a, lim32, "first attempt lands below 4 GiB");
        // Fill the rest of the 32-bit space with a reservation.
        d.reserve_iova(1, lim32 - 1).unwrap();
        let b = d.alloc_iova_dma(1, lim64, Some(&w)).unwrap();
        assert_eq!(b, lim64);
        assert!(!w.is_enabled());
        assert_eq!(w.dac_bits(), Some(48));
        assert_eq!(d.stats().dac_fallbacks, 1);
        // From now on straight to the full mask even if 32-bit space frees up.
        d.free_iova(a).unwrap();
        assert_eq!(d.alloc_iova_dma(1, lim64, Some(&w)), Ok(lim64 - 1));
        // forcedac devices (None) never try 32-bit first.
        let d2 = domain(4096, 1);
        assert_eq!(d2.alloc_iova_dma(1, lim64, None), Ok(lim64));
        w.reset();
        assert!(w.is_enabled() && w.dac_bits().is_none());
    }

    #[test]
    fn depot_grows_and_shrinks_on_the_clock() {
        let clock = Arc::new(VirtualClock::new(0));
        let d = IovaDomain::builder(4096, 1)
            .cpus(Arc::new(FixedCpuId { id: 0, count: 1 }))
            .clock(clock.clone())
            .magazine_size(2)
            .build()
            .unwrap();
        let pfns: Vec<_> = (0..10)
            .map(|_| d.alloc_iova_fast(1, 1000, true).unwrap())
            .collect();
        for &p in &pfns {
            d.free_iova_fast(p, 1).unwrap();
        }
        // 10 frees with 2-pfn magazines: loaded + prev hold 4 → 3 magazines in the
        // depot (pushed at the 5th, 7th and 9th free).
        assert_eq!(d.depot_len(0), 3);
        assert_eq!(d.next_depot_deadline(), Some(IOVA_DEPOT_DELAY_NS));
        assert_eq!(d.poll(), 0);
        clock.advance(IOVA_DEPOT_DELAY_NS);
        assert_eq!(d.poll(), 1);
        assert_eq!(d.depot_len(0), 2);
        assert_eq!(d.next_depot_deadline(), Some(2 * IOVA_DEPOT_DELAY_NS));
        clock.advance(IOVA_DEPOT_DELAY_NS);
        d.poll();
        // One CPU: the work stops at one magazine and does not re-arm.
        assert_eq!(d.depot_len(0), 1);
        clock.advance(IOVA_DEPOT_DELAY_NS);
        d.poll();
        assert_eq!(d.depot_len(0), 1);
        assert_eq!(d.next_depot_deadline(), None);
        assert_eq!(d.stats().depot_shrinks, 2);
        // Freed magazines really went back to the tree: 10 - 4 pfns remain cached.
        assert_eq!(d.tree_len(), 6);
    }

    #[test]
    fn explicit_shrink_without_a_clock() {
        let d = IovaDomain::builder(4096, 1)
            .cpus(Arc::new(FixedCpuId { id: 0, count: 1 }))
            .magazine_size(1)
            .build()
            .unwrap();
        let pfns: Vec<_> = (0..6)
            .map(|_| d.alloc_iova_fast(1, 1000, true).unwrap())
            .collect();
        for &p in &pfns {
            d.free_iova_fast(p, 1).unwrap();
        }
        assert_eq!(d.depot_len(0), 4);
        assert_eq!(d.poll(), 0);
        assert_eq!(d.shrink_depots(), 3);
        assert_eq!(d.depot_len(0), 1);
        assert_eq!(d.tree_len(), 3);
    }

    #[test]
    fn statistics_count_what_happened() {
        let d = IovaDomain::builder(4096, 1)
            .cpus(Arc::new(FixedCpuId { id: 0, count: 1 }))
            .build()
            .unwrap();
        let lim32 = d.dma_32bit_pfn() - 1;
        let a = d.alloc_iova_fast(1, lim32, true).unwrap(); // miss, tree
        d.free_iova_fast(a, 1).unwrap(); // insert
        let b = d.alloc_iova_fast(1, lim32, true).unwrap(); // hit
        assert_eq!(a, b);
        let big = d.alloc_iova_fast(64, lim32, true).unwrap(); // not cached: tree
        d.free_iova_fast(big, 64).unwrap(); // tree free
        d.reserve_iova(1, lim32 - 2).unwrap();
        // Only lim32 - 1 is free, and it is not 2-aligned for a 2-granule range.
        assert!(d.alloc_iova_fast(2, lim32, false).is_err());
        assert!(d.alloc_iova_fast(2, lim32, false).is_err()); // max32 fast fail
        let s = d.stats();
        assert_eq!(s.rcache_hits, 1);
        assert_eq!(s.rcache_misses, 3);
        assert_eq!(s.rcache_inserts, 1);
        assert_eq!(s.tree_allocs, 2);
        assert_eq!(s.tree_frees, 1);
        assert_eq!(s.tree_failures, 2);
        assert_eq!(s.max32_fast_fails, 1);
        assert_eq!(s.alloc_failures, 2);
        assert_eq!(s.tree_nodes, 2);
        assert_eq!(s.cached_pfns, 0);
    }

    #[test]
    fn hot_unplug_drains_only_that_cpu() {
        let cpu = Arc::new(crate::tests_support::SwitchCpu::new(2));
        let d = IovaDomain::builder(4096, 1)
            .cpus(cpu.clone())
            .build()
            .unwrap();
        let p0 = d.alloc_iova_fast(1, 100, true).unwrap();
        let p1 = d.alloc_iova_fast(1, 100, true).unwrap();
        d.free_iova_fast(p0, 1).unwrap();
        cpu.set(1);
        d.free_iova_fast(p1, 1).unwrap();
        d.flush_cpu_rcache(1);
        assert!(d.find_iova(p1).is_none());
        assert!(d.find_iova(p0).is_some());
        cpu.set(0);
        assert_eq!(d.alloc_iova_fast(1, 100, true), Ok(p0));
    }

    #[test]
    fn everything_returns_after_flush() {
        let d = domain(4096, 1);
        let lim = 4095;
        let mut live = Vec::new();
        for s in 1..=64 {
            live.push((d.alloc_iova_fast(s, lim, true).unwrap(), s));
        }
        for (p, s) in live {
            d.free_iova_fast(p, s).unwrap();
        }
        d.flush_rcaches();
        assert_eq!(d.tree_len(), 0);
        assert_eq!(d.alloc_iova(4095, lim, false).unwrap().pfn_lo, 1);
    }

    #[test]
    fn the_32bit_first_policy_works_over_any_allocator() {
        let w = Pci32BitWorkaround::new(true);
        let mut calls = Vec::new();
        // Below 4 GiB fits: one attempt, caches not flushed, workaround kept.
        let r = w.alloc_32bit_first(u64::MAX, 0xffff_ffff, 64, |l, f| {
            calls.push((l, f));
            Ok::<u64, ()>(l)
        });
        assert_eq!(
            (r, calls.clone()),
            ((Ok(0xffff_ffff), false), vec![(0xffff_ffff, false)])
        );
        // A limit at or below 4 GiB makes no separate attempt.
        calls.clear();
        let r = w.alloc_32bit_first(0xfff, 0xffff_ffff, 12, |l, f| {
            calls.push((l, f));
            Ok::<u64, ()>(l)
        });
        assert_eq!(
            (r, calls.clone()),
            ((Ok(0xfff), false), vec![(0xfff, true)])
        );
        // The 32-bit attempt fails: off for good, width recorded, full limit with flush.
        calls.clear();
        let r = w.alloc_32bit_first(1 << 40, 0xffff_ffff, 41, |l, f| {
            calls.push((l, f));
            if l > 0xffff_ffff { Ok(l) } else { Err(()) }
        });
        assert_eq!(r, (Ok(1 << 40), true));
        assert_eq!(calls, vec![(0xffff_ffff, false), (1 << 40, true)]);
        assert_eq!((w.is_enabled(), w.dac_bits()), (false, Some(41)));
        let (r, fell) = w.alloc_32bit_first(1 << 40, 0xffff_ffff, 41, |l, _| Ok::<u64, ()>(l));
        assert_eq!((r, fell), (Ok(1 << 40), false), "no more 32-bit attempts");
    }
}
