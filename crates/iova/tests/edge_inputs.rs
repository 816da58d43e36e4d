//! Bad arguments to the allocator (sizes and pfns near `u64::MAX`, zero sizes,
//! frees of ranges never allocated) give an error, never a panic, and leave the
//! allocator usable.

use std::sync::Arc;

use iommu_iova::IovaDomain;
use iommu_types::FixedCpuId;

fn domain() -> IovaDomain {
    IovaDomain::builder(4096, 1)
        .cpus(Arc::new(FixedCpuId { id: 0, count: 1 }))
        .build()
        .unwrap()
}

#[test]
fn huge_and_zero_sizes_and_bogus_frees_are_errors() {
    let d = domain();
    for size in [
        0,
        u64::MAX,
        u64::MAX - 1,
        1 << 63,
        d.max_pfn(),
        d.max_pfn() + 1,
    ] {
        for limit in [0, 1, u64::MAX, d.max_pfn()] {
            for aligned in [false, true] {
                let _ = d.alloc_iova(size, limit, aligned);
            }
            let _ = d.alloc_iova_fast(size, limit, true);
            let _ = d.alloc_iova_dma(size, limit, None);
        }
        for pfn in [0, 1, u64::MAX, u64::MAX - 1, 1 << 40] {
            let _ = d.free_iova_fast(pfn, size);
        }
    }
    assert!(d.alloc_iova(0, u64::MAX, false).is_err());
    assert!(d.free_iova(u64::MAX).is_err());
    assert!(d.free_iova_fast(u64::MAX, 1).is_err());
    assert!(d.free_iova_fast(0, 1).is_err());
    for (lo, hi) in [
        (u64::MAX, u64::MAX),
        (5, 4),
        (0, u64::MAX),
        (u64::MAX - 1, u64::MAX),
    ] {
        let _ = d.reserve_iova(lo, hi);
    }
    // Still usable.
    let fresh = domain();
    let pfn = fresh.alloc_iova_fast(4, u64::MAX, false).unwrap();
    fresh.free_iova_fast(pfn, 4).unwrap();
    assert!(IovaDomain::new(0, 1).is_err());
    assert!(IovaDomain::new(3000, 1).is_err());
    assert!(IovaDomain::new(4096, u64::MAX).is_err());
}
