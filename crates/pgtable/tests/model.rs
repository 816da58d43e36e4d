//! Property tests against the plain reference IOMMU (`iommu_testkit::reference`):
//! random map/unmap sequences of mixed page sizes; after every step the table's
//! translations agree with the model at probed addresses, byte counts agree, an
//! independent hand walk of the raw descriptors (`iommu_testkit::lpae`, configured
//! from the register values) agrees with `iova_to_phys`, and after unmapping
//! everything the memory accounting is back at its starting level.
//!
//! Cases: 64 per granule by default; `IOMMU_LONG_TESTS=1` runs 2048.

use std::sync::Arc;

use io_pgtable::{
    Granule, HwConfig, IoPgtable, IotlbGather, LpaeConfig, LpaeTable, NoFlush, Quirks, Stage,
};
use iommu_memory::SimMemory;
use iommu_testkit::lpae::{self as hand, WalkOutcome, WalkParams};
use iommu_testkit::reference::{RefIommu, strategy};
use iommu_types::{Iova, PhysAddr, Prot};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// Map `count` pages of size index `size` at slot `slot` (a multiple of the size).
    Map {
        size: usize,
        slot: u64,
        count: u64,
        pa_slot: u64,
        prot: Prot,
    },
    /// Unmap `count` entries with size index `size` at `slot`.
    Unmap {
        size: usize,
        slot: u64,
        count: u64,
        queued: bool,
    },
    /// Unmap an existing mapping (chosen by index) with its own size.
    UnmapExisting { pick: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 0..64u64, 1..5u64, 0..64u64, strategy::prot())
            .prop_map(|(size, slot, count, pa_slot, prot)| Op::Map { size, slot, count, pa_slot, prot }),
        2 => (0..3usize, 0..64u64, 1..5u64, any::<bool>())
            .prop_map(|(size, slot, count, queued)| Op::Unmap { size, slot, count, queued }),
        2 => any::<usize>().prop_map(|pick| Op::UnmapExisting { pick }),
    ]
}

fn cases() -> u32 {
    if std::env::var("IOMMU_LONG_TESTS").is_ok_and(|v| v == "1") {
        2048
    } else {
        64
    }
}

/// A configuration whose root entries are of the largest page size, so that unmapping
/// every root entry frees every table.
fn config(g: Granule, stage: Stage) -> LpaeConfig {
    let ias = match g {
        Granule::G4K => 39,
        Granule::G16K => 36,
        Granule::G64K => 42,
    };
    LpaeConfig::new(stage, g, ias, 48)
}

/// Where the IOVA window of a table starts: 0, or the bottom of the upper range.
fn window_base(cfg: &LpaeConfig) -> u64 {
    if cfg.quirks.contains(Quirks::ARM_TTBR1) {
        !((1u64 << cfg.ias) - 1)
    } else {
        0
    }
}

fn walk_params(t: &dyn IoPgtable) -> (u64, WalkParams) {
    match t.hw_config() {
        HwConfig::LpaeS1(c) => {
            let p = match (c.tcr.ttbr0, c.tcr.ttbr1) {
                (Some(h), _) => WalkParams::stage1(h.tsz, hand::tg0_shift(h.tg).unwrap(), false),
                (None, Some(h)) => WalkParams::stage1(h.tsz, hand::tg1_shift(h.tg).unwrap(), true),
                _ => None,
            };
            (c.ttbr(), p.unwrap())
        }
        HwConfig::LpaeS2(c) => (
            c.vttbr,
            WalkParams::stage2(c.vtcr.t0sz, c.vtcr.sl0, c.vtcr.tg0).unwrap(),
        ),
        _ => unreachable!(),
    }
}

fn check_agreement(
    mem: &SimMemory,
    t: &dyn IoPgtable,
    model: &RefIommu,
    extra: &[u64],
) -> Result<(), TestCaseError> {
    let (root, p) = walk_params(t);
    let mut probes = model.probe_points();
    probes.extend_from_slice(extra);
    for iova in probes {
        let want = model.translate(Iova(iova)).map(|(pa, _)| pa);
        prop_assert_eq!(
            t.iova_to_phys(Iova(iova)),
            want,
            "iova_to_phys({:#x})",
            iova
        );
        let hand = match hand::walk(mem, root, &p, iova) {
            WalkOutcome::Leaf { out, .. } => Some(PhysAddr(out)),
            _ => None,
        };
        prop_assert_eq!(hand, want, "hand walk of {:#x}", iova);
    }
    // Every leaf the hand walker finds is one page of the model, with the model's size.
    let leaves = hand::leaves(mem, root, &p);
    prop_assert_eq!(leaves.len(), model.len());
    for (leaf, m) in leaves.iter().zip(model.iter()) {
        prop_assert_eq!((leaf.iova, leaf.size, leaf.out), (m.iova, m.len, m.pa));
    }
    Ok(())
}

fn run(cfg: LpaeConfig, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mem = SimMemory::new();
    let start = mem.stats().pages_in_use;
    let base = window_base(&cfg);
    let t = LpaeTable::new(cfg, &mem, Arc::new(NoFlush)).unwrap();
    let root_pages = mem.stats().pages_in_use - start;
    let sizes: Vec<u64> = t.pgsize_bitmap().iter().collect();
    let largest = *sizes.last().unwrap();
    // IOVA window: four root entries; slots are spread so sizes interleave.
    let window = 4 * largest;
    let mut model = RefIommu::new();
    let mut extra = Vec::new();
    for op in ops {
        match op {
            Op::Map {
                size,
                slot,
                count,
                pa_slot,
                prot,
            } => {
                let size = sizes[size % sizes.len()];
                let iova = base + (slot * size * 7) % window;
                let count = count.min((window - (iova - base)) / size).max(1);
                let len = size * count;
                let pa = pa_slot * largest + (iova % largest);
                let (mapped, r) = t.map_pages(Iova(iova), PhysAddr(pa), size, count, prot);
                if model.is_free(iova, len) {
                    prop_assert!(r.is_ok(), "map {:#x}+{:#x}: {:?}", iova, len, r);
                    prop_assert_eq!(mapped, len);
                    for i in 0..count {
                        model
                            .map(iova + i * size, pa + i * size, size, prot)
                            .unwrap();
                    }
                } else {
                    // A leaf of this size or larger in the way is EEXIST and nothing
                    // changes; if only smaller leaves are there, tables sit at this
                    // level and are replaced by the new entries (with what they map).
                    let blocking = model
                        .iter()
                        .any(|m| m.iova < iova + len && m.last() >= iova && m.len >= size);
                    if blocking {
                        prop_assert!(
                            r.is_err() && mapped == 0,
                            "expected EEXIST at {:#x}+{:#x}: {:?}",
                            iova,
                            len,
                            r
                        );
                    } else {
                        prop_assert!(
                            r.is_ok() && mapped == len,
                            "blocks over tables at {:#x}+{:#x}: {:?}",
                            iova,
                            len,
                            r
                        );
                        model.unmap(iova, len).unwrap();
                        for i in 0..count {
                            model
                                .map(iova + i * size, pa + i * size, size, prot)
                                .unwrap();
                        }
                    }
                }
                extra.push(iova);
            }
            Op::Unmap {
                size,
                slot,
                count,
                queued,
            } => {
                let size = sizes[size % sizes.len()];
                let iova = base + (slot * size * 7) % window;
                let count = count.min((window - (iova - base)) / size).max(1);
                // Expected, entry by entry (Linux semantics): a larger block over the
                // entry refuses it and stops; a leaf of this size, or a table under the
                // entry (whatever it maps, even nothing), is removed; an empty entry
                // stops. Tables are seen by the hand walker, not by io-pgtable.
                let (root, p) = walk_params(&t);
                let level = (p.start_level..=3)
                    .find(|&l| 1u64 << p.low_bit(l) == size)
                    .unwrap();
                let tables = hand::tables(&mem, root, &p);
                let mut want = 0;
                for i in 0..count {
                    let at = iova + i * size;
                    if model.mapping_at(at).is_some_and(|m| m.len > size) {
                        break;
                    }
                    let table_under = tables.iter().any(|tb| tb.iova == at && tb.level > level);
                    if !table_under && model.is_free(at, size) {
                        break;
                    }
                    model.unmap(at, size).unwrap();
                    want += size;
                }
                let mut gather = if queued {
                    IotlbGather::new_queued()
                } else {
                    IotlbGather::new()
                };
                let got = t.unmap_pages(Iova(iova), size, count, &mut gather);
                prop_assert_eq!(got, want, "unmap {:#x} x {} at {:#x}", size, count, iova);
                t.free_tables(&gather.reset()).unwrap();
                extra.push(iova);
            }
            Op::UnmapExisting { pick } => {
                if model.is_empty() {
                    continue;
                }
                let m = *model.iter().nth(pick % model.len()).unwrap();
                let mut gather = IotlbGather::new();
                prop_assert_eq!(t.unmap_pages(Iova(m.iova), m.len, 1, &mut gather), m.len);
                prop_assert!(gather.leaf_only && gather.pgsize == m.len);
                model.unmap(m.iova, m.len).unwrap();
            }
        }
        check_agreement(&mem, &t, &model, &extra)?;
    }
    // Unmap everything, root entry by root entry: every table must go back.
    let mut unmapped = 0;
    for i in 0..4 {
        unmapped += t.unmap_pages(
            Iova(base + i * largest),
            largest,
            1,
            &mut IotlbGather::new(),
        );
    }
    prop_assert!(unmapped >= model.mapped_bytes());
    let model = RefIommu::new();
    check_agreement(&mem, &t, &model, &extra)?;
    prop_assert_eq!(
        mem.stats().pages_in_use - start,
        root_pages,
        "table pages leaked"
    );
    drop(t);
    prop_assert_eq!(mem.stats().pages_in_use, start);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn random_ops_4k_s1(ops in prop::collection::vec(op(), 1..40)) {
        run(config(Granule::G4K, Stage::S1), ops)?;
    }

    #[test]
    fn random_ops_16k_s2(ops in prop::collection::vec(op(), 1..40)) {
        run(config(Granule::G16K, Stage::S2), ops)?;
    }

    #[test]
    fn random_ops_64k_s1(ops in prop::collection::vec(op(), 1..40)) {
        run(config(Granule::G64K, Stage::S1), ops)?;
    }

    #[test]
    fn random_ops_4k_s1_ttbr1(ops in prop::collection::vec(op(), 1..40)) {
        run(config(Granule::G4K, Stage::S1).with_quirks(Quirks::ARM_TTBR1), ops)?;
    }

    #[test]
    fn random_ops_16k_s2_concatenated(ops in prop::collection::vec(op(), 1..40)) {
        // 16K, 40-bit IPA and PA: sixteen concatenated level-2 tables form the root.
        let cfg = LpaeConfig::new(Stage::S2, Granule::G16K, 40, 40);
        prop_assert_eq!(cfg.geometry().unwrap().concat_tables, 16);
        run(cfg, ops)?;
    }
}
