//! Bindings of the DMA layer's two traits to the real crates: any iommu-core
//! [`PagingDomainOps`] (for example the SMMUv3 driver's domain) as a [`DmaDomain`],
//! and iommu-iova's [`IovaDomain`] (per-CPU magazines) as an [`IovaAllocator`].

use std::sync::Arc;

use io_pgtable::{FreedTable, IotlbGather};
use iommu_core::PagingDomainOps;
use iommu_iova::IovaDomain;
use iommu_types::{Errno, Iova, PgSizeBitmap, PhysAddr, Prot};

use crate::ops::{DmaDomain, IovaAllocator};

/// A core paging domain seen by the DMA layer. Maps split the range into the
/// largest page sizes allowed (Linux `iommu_map` with `iommu_pgsize`); a failing
/// map unwinds its own prefix strictly so nothing of the range stays mapped.
#[derive(Debug)]
pub struct CoreDomain<T: ?Sized>(pub Arc<T>);

impl<T: ?Sized> Clone for CoreDomain<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T: PagingDomainOps + ?Sized> CoreDomain<T> {
    fn unmap_all(&self, iova: u64, size: u64, gather: &mut IotlbGather) -> u64 {
        let bitmap = self.0.pgsize_bitmap();
        let mut done = 0;
        while done < size {
            let at = iova + done;
            let Some((pgsize, count)) = bitmap.pick(at, at, size - done) else {
                break;
            };
            let n = self.0.unmap_pages(Iova(at), pgsize, count, gather);
            if n == 0 {
                // Hole (e.g. boundary padding): skip one smallest page.
                done += bitmap.smallest().unwrap_or(size);
                continue;
            }
            done += n;
        }
        done.min(size)
    }
}

impl<T: PagingDomainOps + ?Sized> DmaDomain for CoreDomain<T> {
    fn pgsize_bitmap(&self) -> PgSizeBitmap {
        self.0.pgsize_bitmap()
    }

    fn aperture(&self) -> (u64, u64) {
        let g = self.0.geometry();
        (g.aperture_start, g.aperture_end)
    }

    fn map(&self, iova: Iova, pa: PhysAddr, size: u64, prot: Prot) -> Result<(), Errno> {
        let bitmap = self.0.pgsize_bitmap();
        let mut done = 0;
        while done < size {
            let (pgsize, count) = bitmap
                .pick(iova.0 + done, pa.0 + done, size - done)
                .ok_or(Errno::EINVAL)?;
            let (n, r) = self.0.map_pages(
                Iova(iova.0 + done),
                PhysAddr(pa.0 + done),
                pgsize,
                count,
                prot,
            );
            done += n;
            if let Err(e) = r {
                if done > 0 {
                    let mut g = IotlbGather::new();
                    self.unmap_all(iova.0, done, &mut g);
                    let _ = self.0.iotlb_sync(&mut g);
                }
                return Err(e.errno());
            }
            if n == 0 {
                return Err(Errno::EINVAL);
            }
        }
        self.0.iotlb_sync_map(iova, size).map_err(|e| e.errno())
    }

    fn unmap(&self, iova: Iova, size: u64, gather: &mut IotlbGather) -> u64 {
        self.unmap_all(iova.0, size, gather)
    }

    fn iotlb_sync(&self, gather: &mut IotlbGather) -> Result<(), Errno> {
        self.0.iotlb_sync(gather).map_err(|e| e.errno())
    }

    fn flush_iotlb_all(&self) -> Result<(), Errno> {
        self.0.flush_iotlb_all().map_err(|e| e.errno())
    }

    fn free_tables(&self, tables: Vec<FreedTable>) {
        self.0.free_tables(tables)
    }

    fn iova_to_phys(&self, iova: Iova) -> Option<PhysAddr> {
        self.0.iova_to_phys(iova)
    }
}

impl IovaAllocator for IovaDomain {
    fn alloc(&self, pages: u64, limit_pfn: u64, flush_rcache: bool) -> Option<u64> {
        self.alloc_iova_fast(pages, limit_pfn.min(self.max_pfn()), flush_rcache)
            .ok()
    }

    fn free(&self, pfn: u64, pages: u64) {
        let _ = self.free_iova_fast(pfn, pages);
    }
}
