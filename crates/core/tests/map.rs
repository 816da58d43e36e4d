//! The core's map/unmap helpers over a driver's paging domain (Linux `iommu_map`,
//! `iommu_unmap`, `iommu_iotlb_sync`; reference `software.md` §6.7): page-size
//! splitting, refusals, unwinding, and a proptest against a page-level model.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use iommu_core::*;
use iommu_types::{Errno, Iova, PhysAddr, Prot, SZ_2M, SZ_4K};
use proptest::prelude::*;

fn domain() -> (IommuCore, Arc<MockDriver>, Arc<IommuDomain>) {
    let (core, drv, mmu) = setup(DefaultPolicy::Strict);
    let d = core.add_device(pci("a", mmu, 1, 0, 0, None)).unwrap();
    let dom = core.domain_alloc_paging(d, AllocFlags::NONE).unwrap();
    (core, drv, dom)
}

fn sizes(dom: &IommuDomain) -> Vec<(u64, u64)> {
    mock_of(dom)
        .ptes
        .lock()
        .unwrap()
        .iter()
        .map(|(k, p)| (*k, p.size))
        .collect()
}

#[test]
fn map_uses_the_largest_aligned_pages() {
    let (_c, drv, dom) = domain();
    // 4K head up to the 2M boundary, one 2M block, 4K tail.
    dom.map(
        Iova(SZ_2M - 0x2000),
        PhysAddr(0x4000_0000 + SZ_2M - 0x2000),
        SZ_2M + 0x3000,
        Prot::RW,
    )
    .unwrap();
    assert_eq!(
        sizes(&dom),
        vec![
            (SZ_2M - 0x2000, SZ_4K),
            (SZ_2M - 0x1000, SZ_4K),
            (SZ_2M, SZ_2M),
            (2 * SZ_2M, SZ_4K)
        ]
    );
    assert_eq!(
        mock_of(&dom)
            .sync_maps
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // iova and paddr disagree modulo 2M: 4K pages only.
    dom.map(Iova(0x1000_0000), PhysAddr(0x1000), SZ_2M, Prot::READ)
        .unwrap();
    assert_eq!(
        sizes(&dom)
            .iter()
            .filter(|(k, _)| *k >= 0x1000_0000)
            .count(),
        512
    );
    assert_clean(&drv);
}

#[test]
fn bad_requests_are_refused_without_changes() {
    let (core, drv, dom) = domain();
    dom.map(Iova(0x10_0000), PhysAddr(0x10_0000), 0x1000, Prot::RW)
        .unwrap();
    let before = sizes(&dom);
    let cases: [(u64, u64, u64, Errno); 6] = [
        (0x20_0800, 0x20_0000, 0x1000, Errno::EINVAL), // misaligned iova
        (0x20_0000, 0x20_0010, 0x1000, Errno::EINVAL), // misaligned paddr
        (0x20_0000, 0x20_0000, 0x1800, Errno::EINVAL), // size not a page multiple
        (0x20_0000, 0x20_0000, 0, Errno::EINVAL),
        (u64::MAX - 0xfff, 0, 0x2000, Errno::EOVERFLOW),
        (1 << 48, 0, 0x1000, Errno::ERANGE), // outside the 48-bit aperture
    ];
    for (iova, pa, size, want) in cases {
        assert_eq!(
            dom.map(Iova(iova), PhysAddr(pa), size, Prot::RW)
                .unwrap_err()
                .errno(),
            want,
            "{iova:#x}"
        );
    }
    // Overlap with an existing mapping: EEXIST, the partial new part is unwound
    // and the old mapping is intact.
    let e = dom
        .map(Iova(0xf_e000), PhysAddr(0x9_0000_0000), 0x4000, Prot::RW)
        .unwrap_err();
    assert_eq!(e.errno(), Errno::EEXIST);
    assert_eq!(sizes(&dom), before);
    assert_eq!(dom.iova_to_phys(Iova(0x10_0000)), Some(PhysAddr(0x10_0000)));
    // Non-paging domains refuse map/unmap.
    let d = core.groups()[0];
    let id_dom = core
        .domain_alloc_identity(core.group_devices(d).unwrap()[0])
        .unwrap();
    assert_eq!(
        id_dom
            .map(Iova(0), PhysAddr(0), 0x1000, Prot::RW)
            .unwrap_err()
            .errno(),
        Errno::EINVAL
    );
    assert_eq!(
        id_dom.unmap(Iova(0), 0x1000).unwrap_err().errno(),
        Errno::EINVAL
    );
    assert_eq!(id_dom.iova_to_phys(Iova(0x5000)), Some(PhysAddr(0x5000)));
    assert_clean(&drv);
}

#[test]
fn a_driver_failure_midway_unwinds_the_whole_map() {
    let (_c, drv, dom) = domain();
    *mock_of(&dom).fail_map_at.lock().unwrap() = Some(0x40_5000);
    let e = dom
        .map(Iova(0x40_0000), PhysAddr(0x40_0000), 0x8000, Prot::RW)
        .unwrap_err();
    assert_eq!(e.errno(), Errno::ENOMEM);
    assert!(
        sizes(&dom).is_empty(),
        "the pages mapped before the failure were removed"
    );
    assert!(
        mock_of(&dom)
            .syncs
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1,
        "and invalidated"
    );
    assert_clean(&drv);
}

#[test]
fn unmap_stops_at_holes_and_does_not_split_blocks() {
    let (_c, drv, dom) = domain();
    dom.map(Iova(0), PhysAddr(0), 0x3000, Prot::RW).unwrap();
    assert_eq!(dom.unmap(Iova(0), 0x5000).unwrap(), 0x3000);
    dom.map(Iova(SZ_2M), PhysAddr(SZ_2M), SZ_2M, Prot::RW)
        .unwrap();
    assert_eq!(
        dom.unmap(Iova(SZ_2M + 0x1000), 0x1000).unwrap(),
        0,
        "inside a block"
    );
    assert_eq!(
        dom.unmap(Iova(SZ_2M), 0x1000).unwrap(),
        0,
        "smaller than the block"
    );
    assert_eq!(dom.unmap(Iova(SZ_2M), SZ_2M).unwrap(), SZ_2M);
    assert!(sizes(&dom).is_empty());
    assert_clean(&drv);
}

#[test]
fn iotlb_sync_skips_empty_gathers_and_hands_back_leftover_tables() {
    let (_c, drv, dom) = domain();
    let m = mock_of(&dom);
    let mut g = IotlbGather::new();
    dom.iotlb_sync(&mut g).unwrap();
    assert_eq!(m.syncs.load(std::sync::atomic::Ordering::Relaxed), 0);
    dom.map(Iova(0), PhysAddr(0), 0x1000, Prot::RW).unwrap();
    dom.unmap_fast(Iova(0), 0x1000, &mut g).unwrap();
    g.freelist.push(FreedTable {
        pa: PhysAddr(0x7000),
        bytes: 4096,
    });
    dom.iotlb_sync(&mut g).unwrap();
    assert_eq!(m.syncs.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert!(g.is_empty() && g.freelist.is_empty() && !g.queued);
    assert_eq!(
        *m.freed.lock().unwrap(),
        vec![FreedTable {
            pa: PhysAddr(0x7000),
            bytes: 4096
        }]
    );
    // A queued gather stays queued after the reset.
    let mut q = IotlbGather::new_queued();
    dom.map(Iova(0), PhysAddr(0), 0x1000, Prot::RW).unwrap();
    dom.unmap_fast(Iova(0), 0x1000, &mut q).unwrap();
    dom.iotlb_sync(&mut q).unwrap();
    assert!(q.queued && q.is_empty());
    dom.flush_iotlb_all().unwrap();
    dom.free_tables(vec![FreedTable {
        pa: PhysAddr(0x9000),
        bytes: 4096,
    }])
    .unwrap();
    assert_eq!(m.flushes.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(m.freed.lock().unwrap().len(), 2);
    assert_clean(&drv);
}

#[derive(Clone, Debug)]
enum Op {
    Map {
        page: u64,
        pages: u64,
        pa_shift: u64,
    },
    Unmap {
        page: u64,
        pages: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    // 2048 pages (8 MiB) so 2M blocks occur when the alignment allows.
    prop_oneof![
        (0u64..2048, 1u64..700, prop_oneof![Just(0u64), Just(1u64)]).prop_map(
            |(page, pages, pa_shift)| Op::Map {
                page,
                pages,
                pa_shift
            }
        ),
        (0u64..2048, 1u64..700).prop_map(|(page, pages)| Op::Unmap { page, pages }),
    ]
}

const BASE: u64 = 0x4000_0000;
const PA_BASE: u64 = 0x10_0000_0000;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Against a page-level model: a map succeeds iff every page was free and then
    /// maps each page to its address (a failed map changes nothing); an unmap
    /// removes exactly a prefix of mapped pages; `iova_to_phys` always agrees.
    #[test]
    fn map_unmap_match_a_page_model(ops in proptest::collection::vec(op(), 1..24)) {
        let (_c, drv, dom) = domain();
        let mut model: BTreeMap<u64, u64> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Map { page, pages, pa_shift } => {
                    let pages = pages.min(2048 - page);
                    let iova = BASE + page * SZ_4K;
                    let pa = PA_BASE + page * SZ_4K + pa_shift * SZ_4K;
                    let free = (page..page + pages).all(|p| !model.contains_key(&p));
                    let r = dom.map(Iova(iova), PhysAddr(pa), pages * SZ_4K, Prot::RW);
                    prop_assert_eq!(r.is_ok(), free, "map {:#x}+{} pages: {:?}", iova, pages, r);
                    if free {
                        for k in 0..pages {
                            model.insert(page + k, pa + k * SZ_4K);
                        }
                    }
                }
                Op::Unmap { page, pages } => {
                    let pages = pages.min(2048 - page);
                    let n = dom.unmap(Iova(BASE + page * SZ_4K), pages * SZ_4K).unwrap();
                    prop_assert_eq!(n % SZ_4K, 0);
                    prop_assert!(n <= pages * SZ_4K);
                    for k in 0..n / SZ_4K {
                        prop_assert!(model.remove(&(page + k)).is_some(), "unmapped a hole");
                    }
                    if n < pages * SZ_4K {
                        // It stopped at a hole or at a block it would have to split.
                        let next = page + n / SZ_4K;
                        let at = dom.iova_to_phys(Iova(BASE + next * SZ_4K));
                        prop_assert!(at.is_none() || model.contains_key(&next));
                    }
                }
            }
            for p in (0..2048).step_by(7) {
                let got = dom.iova_to_phys(Iova(BASE + p * SZ_4K + 0x18));
                prop_assert_eq!(got, model.get(&p).map(|pa| PhysAddr(pa + 0x18)), "page {}", p);
            }
        }
        prop_assert!(drv.shared.violations.lock().unwrap().is_empty());
    }
}
