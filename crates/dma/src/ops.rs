//! The two services the DMA layer consumes, as small traits so the strict/lazy
//! protocol can be written once and model-checked (reference `software.md` §1.4,
//! §3): a translating IOMMU domain ([`DmaDomain`], the subset of iommu-core's
//! paging-domain operations dma-iommu uses) and an IOVA allocator
//! ([`IovaAllocator`], Linux `alloc_iova_fast`/`free_iova_fast`).

use std::sync::Arc;

use io_pgtable::{FreedTable, IotlbGather};
use iommu_types::{Errno, Iova, PgSizeBitmap, PhysAddr, Prot};

/// A translating IOMMU domain as the DMA layer uses it.
///
/// Invalidation contract (the same as iommu-core's `PagingDomainOps`):
/// [`DmaDomain::unmap`] only clears entries and records them in the gather
/// (skipping per-page invalidation when `gather.queued`); [`DmaDomain::iotlb_sync`]
/// invalidates the gathered range, waits, then frees the gather's freelist; in lazy
/// mode the freelist travels in the flush queue and comes back through
/// [`DmaDomain::free_tables`] after a completed [`DmaDomain::flush_iotlb_all`].
pub trait DmaDomain: Send + Sync {
    /// Page sizes the domain maps; the smallest is the IOVA granule.
    fn pgsize_bitmap(&self) -> PgSizeBitmap;
    /// First and last (inclusive) translatable IOVA.
    fn aperture(&self) -> (u64, u64);
    /// Map `[iova, iova + size)` to `[pa, pa + size)`, all granule aligned. On error
    /// nothing of the range stays mapped.
    fn map(&self, iova: Iova, pa: PhysAddr, size: u64, prot: Prot) -> Result<(), Errno>;
    /// Clear the entries of `[iova, iova + size)`, recording them in `gather`.
    /// Returns the bytes unmapped.
    fn unmap(&self, iova: Iova, size: u64, gather: &mut IotlbGather) -> u64;
    /// Invalidate what `gather` recorded, wait for completion, free its freelist.
    fn iotlb_sync(&self, gather: &mut IotlbGather) -> Result<(), Errno>;
    /// Invalidate every translation of the domain and wait for completion.
    fn flush_iotlb_all(&self) -> Result<(), Errno>;
    /// Free table pages whose invalidation has completed.
    fn free_tables(&self, tables: Vec<FreedTable>);
    /// What `iova` translates to in the tables, if mapped.
    fn iova_to_phys(&self, iova: Iova) -> Option<PhysAddr>;
}

/// An IOVA allocator in granule units (pfns).
pub trait IovaAllocator: Send + Sync {
    /// Allocate `pages` pfns, aligned to the next power of two of `pages`, ending at
    /// or below `limit_pfn` (inclusive). `flush_rcache` lets the allocator drain its
    /// caches before giving up. Returns the first pfn.
    fn alloc(&self, pages: u64, limit_pfn: u64, flush_rcache: bool) -> Option<u64>;
    /// Free a range obtained from [`IovaAllocator::alloc`] with the same `pages`.
    fn free(&self, pfn: u64, pages: u64);
}

impl<T: DmaDomain + ?Sized> DmaDomain for Arc<T> {
    fn pgsize_bitmap(&self) -> PgSizeBitmap {
        (**self).pgsize_bitmap()
    }
    fn aperture(&self) -> (u64, u64) {
        (**self).aperture()
    }
    fn map(&self, iova: Iova, pa: PhysAddr, size: u64, prot: Prot) -> Result<(), Errno> {
        (**self).map(iova, pa, size, prot)
    }
    fn unmap(&self, iova: Iova, size: u64, gather: &mut IotlbGather) -> u64 {
        (**self).unmap(iova, size, gather)
    }
    fn iotlb_sync(&self, gather: &mut IotlbGather) -> Result<(), Errno> {
        (**self).iotlb_sync(gather)
    }
    fn flush_iotlb_all(&self) -> Result<(), Errno> {
        (**self).flush_iotlb_all()
    }
    fn free_tables(&self, tables: Vec<FreedTable>) {
        (**self).free_tables(tables)
    }
    fn iova_to_phys(&self, iova: Iova) -> Option<PhysAddr> {
        (**self).iova_to_phys(iova)
    }
}

impl<T: IovaAllocator + ?Sized> IovaAllocator for Arc<T> {
    fn alloc(&self, pages: u64, limit_pfn: u64, flush_rcache: bool) -> Option<u64> {
        (**self).alloc(pages, limit_pfn, flush_rcache)
    }
    fn free(&self, pfn: u64, pages: u64) {
        (**self).free(pfn, pages)
    }
}
