//! TLB-maintenance callbacks and the gather of an unmap (Linux `iommu_iotlb_gather`,
//! `iommu_flush_ops`; reference `software.md` §6.7, `smmuv3.md` §4.4 and seed 001).

use alloc::vec::Vec;
use iommu_types::{Iova, PhysAddr};

/// A page-table page removed from a table by an unmap, not yet returned to memory.
///
/// The memory may still be cached by a hardware walk cache until the invalidation
/// that covers its range has completed, so its owner frees it only after that.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FreedTable {
    /// Physical address of the table.
    pub pa: PhysAddr,
    /// Size of the table memory in bytes.
    pub bytes: u64,
}

/// What an unmap removed, so that the invalidation that follows can be exact.
///
/// * `start..=end` is the IOVA range whose translations changed (`start == u64::MAX`
///   when nothing was gathered).
/// * `pgsize` is the size of the leaf entries removed **when every removed entry was a
///   leaf of that one size**; it is 0 when sizes were mixed. A driver may derive a
///   level hint (SMMUv3 TTL) from it only while [`IotlbGather::leaf_only`] is true.
/// * `leaf_only` becomes false as soon as a table entry was removed (a whole
///   next-level table went away): then walk caches must be invalidated too and the
///   level of what was cached under that table is unknown (seed 001: never assume
///   the last level in that case).
/// * `freelist` holds table pages removed while `queued`: their freeing is deferred to
///   whoever completes the invalidation (the strict sync, or the flush queue).
/// * `queued` (Linux `iommu_iotlb_gather_queued`) means the caller will invalidate
///   the whole domain later (lazy / DMA-FQ): per-page leaf invalidation is skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IotlbGather {
    /// First IOVA touched, `u64::MAX` when empty.
    pub start: u64,
    /// Last IOVA touched (inclusive).
    pub end: u64,
    /// Leaf size of every entry added, 0 if mixed or none.
    pub pgsize: u64,
    /// No table entry was removed: only leaves changed.
    pub leaf_only: bool,
    /// Table pages whose freeing waits for the invalidation.
    pub freelist: Vec<FreedTable>,
    /// Lazy mode: leaf invalidation is left to a later domain-wide flush.
    pub queued: bool,
}

impl Default for IotlbGather {
    fn default() -> Self {
        Self::new()
    }
}

impl IotlbGather {
    /// An empty, strict gather.
    pub const fn new() -> Self {
        Self {
            start: u64::MAX,
            end: 0,
            pgsize: 0,
            leaf_only: true,
            freelist: Vec::new(),
            queued: false,
        }
    }

    /// An empty gather in lazy (queued) mode.
    pub const fn new_queued() -> Self {
        let mut g = Self::new();
        g.queued = true;
        g
    }

    /// Whether nothing has been gathered.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.start > self.end
    }

    /// Size of the gathered range in bytes (0 when empty).
    #[inline]
    pub fn size(&self) -> u64 {
        if self.is_empty() {
            0
        } else {
            (self.end - self.start).saturating_add(1)
        }
    }

    /// Record that the leaf entry of `size` bytes at `iova` was removed.
    ///
    /// The caller (a driver's [`FlushOps::tlb_add_page`]) must first sync and reset
    /// the gather if [`IotlbGather::needs_sync_before`] says so.
    #[inline]
    pub fn add_leaf(&mut self, iova: Iova, size: u64) {
        self.add_range(iova, size);
        if self.pgsize == 0 && self.size() == size {
            self.pgsize = size;
        } else if self.pgsize != size {
            self.pgsize = 0;
        }
    }

    /// Record that a table entry covering `size` bytes at `iova` was removed (a whole
    /// sub-table went away): the range must be invalidated at all levels.
    pub fn add_table(&mut self, iova: Iova, size: u64) {
        self.add_range(iova, size);
        self.leaf_only = false;
        self.pgsize = 0;
    }

    #[inline]
    fn add_range(&mut self, iova: Iova, size: u64) {
        let last = iova.0.saturating_add(size.saturating_sub(1));
        if self.is_empty() {
            self.start = iova.0;
            self.end = last;
        } else {
            self.start = self.start.min(iova.0);
            self.end = self.end.max(last);
        }
    }

    /// Linux's rule for adding a page: a gather covers one contiguous range of one
    /// page size, so adding a disjoint range or a different size first needs a sync.
    #[inline]
    pub fn needs_sync_before(&self, iova: Iova, size: u64) -> bool {
        if self.is_empty() {
            return false;
        }
        let last = iova.0.saturating_add(size.saturating_sub(1));
        let disjoint = last.saturating_add(1) < self.start || iova.0 > self.end.saturating_add(1);
        disjoint || (self.pgsize != 0 && self.pgsize != size)
    }

    /// Reset the range after an invalidation, keeping `queued`. The freelist is
    /// returned for the caller to free (its invalidation has completed).
    pub fn reset(&mut self) -> Vec<FreedTable> {
        let queued = self.queued;
        let freed = core::mem::take(&mut self.freelist);
        *self = Self::new();
        self.queued = queued;
        freed
    }
}

/// TLB-maintenance callbacks a page-table format calls while it changes a table
/// (Linux `iommu_flush_ops`). Implemented by drivers (or by no-op test doubles).
pub trait FlushOps: Send + Sync {
    /// Invalidate every translation of the table's context (ASID/VMID), synchronously.
    fn tlb_flush_all(&self);

    /// Invalidate, synchronously and at all levels (walk caches included), the range
    /// `[iova, iova + size)` after a table entry covering it was removed. `granule` is
    /// the smallest page size of the format; it says nothing about the level of what
    /// was cached (seed 001).
    fn tlb_flush_walk(&self, iova: Iova, size: u64, granule: u64);

    /// Queue the invalidation of one leaf of `granule` bytes at `iova` into `gather`
    /// (the driver may issue a sync first when the gather cannot absorb it).
    fn tlb_add_page(&self, gather: &mut IotlbGather, iova: Iova, granule: u64);
}

/// Flush callbacks that do nothing (tests, benchmarks, and tables not yet live).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoFlush;

impl FlushOps for NoFlush {
    fn tlb_flush_all(&self) {}
    fn tlb_flush_walk(&self, _iova: Iova, _size: u64, _granule: u64) {}
    #[inline]
    fn tlb_add_page(&self, gather: &mut IotlbGather, iova: Iova, granule: u64) {
        gather.add_leaf(iova, granule);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_tracks_range_size_and_leafness() {
        let mut g = IotlbGather::new();
        assert!(g.is_empty());
        assert_eq!(g.size(), 0);
        g.add_leaf(Iova(0x2000), 0x1000);
        g.add_leaf(Iova(0x3000), 0x1000);
        assert_eq!(
            (g.start, g.end, g.pgsize, g.leaf_only),
            (0x2000, 0x3fff, 0x1000, true)
        );
        assert!(!g.needs_sync_before(Iova(0x4000), 0x1000));
        assert!(g.needs_sync_before(Iova(0x10_0000), 0x1000), "disjoint");
        assert!(g.needs_sync_before(Iova(0x4000), 0x20_0000), "other size");
        g.add_table(Iova(0x0), 0x20_0000);
        assert!(!g.leaf_only);
        assert_eq!(g.pgsize, 0);
        g.freelist.push(FreedTable {
            pa: PhysAddr(0x1000),
            bytes: 4096,
        });
        let mut q = IotlbGather::new_queued();
        q.add_leaf(Iova(0), 0x1000);
        assert!(q.reset().is_empty());
        assert!(q.queued && q.is_empty());
        assert_eq!(g.reset().len(), 1);
    }

    #[test]
    fn mixed_sizes_clear_pgsize() {
        let mut g = IotlbGather::new();
        g.add_leaf(Iova(0), 0x20_0000);
        assert_eq!(g.pgsize, 0x20_0000);
        g.add_leaf(Iova(0x20_0000), 0x1000);
        assert_eq!(g.pgsize, 0);
    }
}
