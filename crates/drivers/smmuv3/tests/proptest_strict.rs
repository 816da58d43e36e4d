//! Random map/unmap sequences in strict mode, checked after every step against a
//! plain reference map *through the hardware model* (its TLB and walk caches keep
//! whatever the driver forgets to invalidate).

mod common;

use std::collections::BTreeMap;

use common::*;
use io_pgtable::IotlbGather;
use iommu_core::PagingDomainOps;
use iommu_types::{Iova, PhysAddr, Prot};
use proptest::prelude::*;
use smmuv3::domain::{DomainStage, SmmuDomain};
use smmuv3_model::{Access, SmmuConfig};

const K4: u64 = 0x1000;
const M2: u64 = 0x20_0000;
/// 4 slots of 2 MiB: each may hold 4K pages or one 2M block.
const SLOTS: u64 = 4;
const BASE: u64 = 0x4000_0000;
const OUT: u64 = 0x200_0000_0000;
/// Pages used by the page-granular operations (and probed) in each slot.
const PAGES: u64 = 16;

#[derive(Clone, Debug)]
enum Op {
    /// Map `n` 4K pages at page index `p` of slot `s`.
    MapPages(u64, u64, u64),
    /// Map the whole slot as a 2M block.
    MapBlock(u64),
    /// Unmap `n` 4K pages at page `p` of slot `s`.
    UnmapPages(u64, u64, u64),
    /// Unmap the slot with one 2M-sized call (a block, or the whole leaf table).
    UnmapSlot(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..SLOTS, 0..PAGES, 1..8u64).prop_map(|(s, p, n)| Op::MapPages(s, p, n)),
        (0..SLOTS).prop_map(Op::MapBlock),
        (0..SLOTS, 0..PAGES, 1..8u64).prop_map(|(s, p, n)| Op::UnmapPages(s, p, n)),
        (0..SLOTS).prop_map(Op::UnmapSlot),
    ]
}

fn run(ops: &[Op], ril: bool, stage: DomainStage) -> Result<(), TestCaseError> {
    let r = rig_with(SmmuConfig::builder().ril(ril).build(), own_asids());
    let sid = 9;
    r.drv.probe_stream(sid, false).unwrap();
    let d = SmmuDomain::new(&r.drv, stage, K4, false).unwrap();
    d.attach_sids(&[sid], false).unwrap();
    // Reference: page iova -> output pa.
    let mut model: BTreeMap<u64, u64> = BTreeMap::new();
    // Probe addresses: a few pages per slot, touched after every step so the TLB
    // always holds whatever translation was live.
    let probes: Vec<u64> = (0..SLOTS)
        .flat_map(|s| {
            (0..PAGES)
                .chain([300, 511])
                .map(move |p| BASE + s * M2 + p * K4)
        })
        .collect();
    let check = |model: &BTreeMap<u64, u64>| -> Result<(), TestCaseError> {
        for &a in &probes {
            let hw =
                r.hw.translate(sid, None, a + 0x10, Access::READ)
                    .ok()
                    .map(|t| t.pa.0);
            let want = model.get(&a).map(|pa| pa + 0x10);
            prop_assert_eq!(hw, want, "iova {:#x}", a);
        }
        Ok(())
    };
    let mut hits = 0usize;
    for o in ops {
        match *o {
            Op::MapPages(s, p, n) => {
                let n = n.min(512 - p);
                let iova = BASE + s * M2 + p * K4;
                let pa = OUT + s * M2 + p * K4;
                let free = (0..n).all(|i| !model.contains_key(&(iova + i * K4)));
                let (done, res) = d.map_pages(Iova(iova), PhysAddr(pa), K4, n, Prot::RW);
                if free {
                    prop_assert_eq!(done, n * K4);
                    prop_assert!(res.is_ok());
                }
                for i in 0..done / K4 {
                    model.insert(iova + i * K4, pa + i * K4);
                }
            }
            Op::MapBlock(s) => {
                let iova = BASE + s * M2;
                let empty = !model.keys().any(|&k| k >= iova && k < iova + M2);
                let (done, _) = d.map_pages(Iova(iova), PhysAddr(OUT + s * M2), M2, 1, Prot::RW);
                if empty {
                    prop_assert_eq!(done, M2);
                }
                if done == M2 {
                    // A block may replace an empty leaf table (freed after a walk flush).
                    for i in 0..512 {
                        model.insert(iova + i * K4, OUT + s * M2 + i * K4);
                    }
                }
            }
            Op::UnmapPages(s, p, n) => {
                let n = n.min(512 - p);
                let iova = BASE + s * M2 + p * K4;
                let mut g = IotlbGather::new();
                let done = d.unmap_pages(Iova(iova), K4, n, &mut g);
                d.iotlb_sync(&mut g).unwrap();
                for i in 0..done / K4 {
                    model.remove(&(iova + i * K4));
                }
            }
            Op::UnmapSlot(s) => {
                let iova = BASE + s * M2;
                let mut g = IotlbGather::new();
                let done = d.unmap_pages(Iova(iova), M2, 1, &mut g);
                d.iotlb_sync(&mut g).unwrap();
                if done == M2 {
                    for i in 0..512 {
                        model.remove(&(iova + i * K4));
                    }
                }
            }
        }
        check(&model)?;
        hits += probes.iter().filter(|a| model.contains_key(a)).count();
    }
    // The sequence must actually exercise live translations most of the time.
    prop_assert!(
        hits > 0
            || ops
                .iter()
                .all(|o| matches!(o, Op::UnmapPages(..) | Op::UnmapSlot(_)))
    );
    let reports = r.hw.sanitizer_reports();
    prop_assert!(reports.is_empty(), "{:?}", reports);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        if std::env::var("IOMMU_LONG_TESTS").is_ok() { 1024 } else { 24 }
    ))]
    #[test]
    fn strict_s1_matches_reference(ops in proptest::collection::vec(op(), 1..40), ril in any::<bool>()) {
        run(&ops, ril, DomainStage::S1)?;
    }

    #[test]
    fn strict_s2_matches_reference(ops in proptest::collection::vec(op(), 1..40), ril in any::<bool>()) {
        run(&ops, ril, DomainStage::S2)?;
    }
}
