//! Bad API arguments (addresses and sizes near `u64::MAX`, zero lengths, lists
//! that wrap) give a clear error, never a panic, and leave nothing mapped.

mod common;

use common::*;
use iommu_dma::layout::SgEntry;
use iommu_dma::{DmaAttrs, DmaDirection};
use iommu_types::PhysAddr;

const K: u64 = 1024;
const NA: DmaAttrs = DmaAttrs {
    skip_cpu_sync: false,
    privileged: false,
};

fn check_clean(rig: &Rig) {
    assert_eq!(rig.domain.mapped_granules(), 0);
    assert_eq!(rig.iova.live(), 0);
    assert_eq!(rig.pool.stats().used_slots, 0);
}

#[test]
fn addresses_and_sizes_near_the_top_are_errors() {
    let dir = DmaDirection::Bidirectional;
    for (g, page) in [(4 * K, 4 * K), (16 * K, 4 * K), (64 * K, 16 * K)] {
        for cfg in [trusted(page), untrusted(page)] {
            let rig = Rig::new(g, page);
            let dev = rig.device(cfg);
            for (addr, len) in [
                (u64::MAX - 10, 100),
                (u64::MAX, 1),
                (0, u64::MAX),
                (g, u64::MAX - g + 1),
                (0x1000, 0),
            ] {
                assert!(dev.map_page(PhysAddr(addr), len, dir, NA).is_err());
                assert!(dev.unmap_page(addr, len, dir, NA).is_err());
                assert!(dev.map_resource(PhysAddr(addr), len, dir, NA).is_err());
                assert!(dev.unmap_resource(addr, len).is_err());
                // Syncing an address range that is not mapped: an error or a
                // no-op, never a panic or a copy.
                let _ = dev.sync_single_for_cpu(addr, len, dir);
                let _ = dev.sync_single_for_device(addr, len, dir);
                let list = [
                    SgEntry {
                        phys: 0x10_0000,
                        len: 4096,
                    },
                    SgEntry { phys: addr, len },
                ];
                assert!(dev.map_sg(&list, dir, NA).is_err());
                check_clean(&rig);
            }
            for size in [u64::MAX, u64::MAX - g, 1 << 63] {
                assert!(dev.alloc_coherent(size).is_err());
                assert!(dev.alloc_noncontiguous(size).is_err());
            }
            check_clean(&rig);
            // A valid mapping still works afterwards.
            let buf = rig.buffer(page, page);
            let dma = dev.map_page(buf, page, dir, NA).unwrap();
            dev.unmap_page(dma, page, dir, NA).unwrap();
            check_clean(&rig);
        }
    }
}

#[test]
fn sync_of_a_wrapping_range_on_a_live_untrusted_mapping_is_an_error() {
    let (g, page) = (16 * K, 4 * K);
    let rig = Rig::new(g, page);
    let dev = rig.device(untrusted(page));
    let buf = rig.buffer(100, 5000);
    let dir = DmaDirection::Bidirectional;
    let dma = dev.map_page(buf, 5000, dir, NA).unwrap();
    assert!(dev.sync_single_for_cpu(dma, u64::MAX, dir).is_err());
    assert!(
        dev.sync_single_for_device(dma, u64::MAX - dma + 1, dir)
            .is_err()
    );
    dev.unmap_page(dma, 5000, dir, NA).unwrap();
    check_clean(&rig);
}

#[test]
fn cookie_allocation_limits_below_one_granule_or_wrapping_are_errors() {
    let rig = Rig::new(16 * K, 4 * K);
    for limit in [0, 1, 16 * K - 2] {
        assert!(
            rig.cookie.alloc_iova(16 * K, limit, false).is_err(),
            "limit {limit:#x}"
        );
    }
    for size in [0, 100, u64::MAX, u64::MAX - 16 * K + 1] {
        assert!(
            rig.cookie.alloc_iova(size, u64::MAX, false).is_err(),
            "size {size:#x}"
        );
    }
    let iova = rig.cookie.alloc_iova(16 * K, 32 * K - 1, false).unwrap();
    assert_eq!(
        iova,
        16 * K,
        "the only granule below the limit (pfn 0 is never used)"
    );
    rig.cookie.free_iova_now(iova, 16 * K);
    check_clean(&rig);
}
