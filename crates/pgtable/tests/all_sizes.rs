//! Every input size the architecture allows (25 bits up to 48, or 52 with 64K), for
//! every granule and both stages, with several output sizes: map the first and the last
//! page of the input range and a block near the top, then check io-pgtable's own
//! translation against the testkit's hand walker, which decodes the start level from
//! the register values (T0SZ/TG0 at stage 1, T0SZ/SL0/TG0 at stage 2).

use std::sync::Arc;

use io_pgtable::{
    Granule, HwConfig, IoPgtable, IotlbGather, LpaeConfig, LpaeTable, NoFlush, Stage,
};
use iommu_memory::SimMemory;
use iommu_testkit::lpae::{self as hand, WalkOutcome, WalkParams};
use iommu_types::{Iova, PhysAddr, Prot};

fn params(t: &dyn IoPgtable) -> (u64, WalkParams) {
    match t.hw_config() {
        HwConfig::LpaeS1(c) => {
            let h = c.tcr.ttbr0.unwrap();
            (
                c.ttbr(),
                WalkParams::stage1(h.tsz, hand::tg0_shift(h.tg).unwrap(), false).unwrap(),
            )
        }
        HwConfig::LpaeS2(c) => (
            c.vttbr,
            WalkParams::stage2(c.vtcr.t0sz, c.vtcr.sl0, c.vtcr.tg0).unwrap(),
        ),
        _ => unreachable!(),
    }
}

#[test]
fn every_input_size_walks_like_hardware() {
    let mem = SimMemory::new();
    let mut checked = 0;
    for stage in [Stage::S1, Stage::S2] {
        for g in Granule::ALL {
            for ias in 25..=g.max_addr_bits() {
                for oas in [32, 40, 42, 48, 52] {
                    let cfg = LpaeConfig::new(stage, g, ias, oas);
                    let Ok(geo) = cfg.geometry() else {
                        // Only stage-2 roots needing more than 16 concatenated tables, or a
                        // 52-bit oas without 64K, may be refused.
                        assert!(stage == Stage::S2 || oas == 52, "{cfg:?} refused");
                        continue;
                    };
                    if geo.oas != oas {
                        continue; // clamped duplicate
                    }
                    let t = LpaeTable::new(cfg, &mem, Arc::new(NoFlush)).unwrap();
                    let (root, p) = params(&t);
                    assert_eq!(p.start_level, geo.start_level, "{cfg:?}");
                    let gran = g.bytes();
                    let top = (1u64 << geo.ias) - gran;
                    let pa_top = (1u64 << oas) - gran;
                    let block = t
                        .pgsize_bitmap()
                        .iter()
                        .nth(1)
                        .filter(|&b| b < (1 << geo.ias) / 2);
                    let mut maps =
                        vec![(0u64, pa_top, gran), (top, 0x4000_0000 % (1 << oas), gran)];
                    if let Some(b) = block {
                        maps.push(((1u64 << geo.ias) - 2 * b, 0, b));
                    }
                    for &(iova, pa, size) in &maps {
                        let r = t.map_pages(Iova(iova), PhysAddr(pa), size, 1, Prot::RW);
                        assert_eq!(r, (size, Ok(())), "{cfg:?} map {iova:#x}");
                        let probe = iova + size / 2 + 8;
                        let want = pa + size / 2 + 8;
                        assert_eq!(t.iova_to_phys(Iova(probe)), Some(PhysAddr(want)), "{cfg:?}");
                        match hand::walk(&mem, root, &p, probe) {
                            WalkOutcome::Leaf { out, size: s, .. } => {
                                assert_eq!((out, s), (want, size), "{cfg:?}")
                            }
                            o => panic!("{cfg:?}: hand walk of {probe:#x}: {o:?}"),
                        }
                    }
                    // Just past the top of the input range is refused.
                    let over = t.map_pages(Iova(1u64 << geo.ias), PhysAddr(0), gran, 1, Prot::RW);
                    assert!(over.1.is_err());
                    for &(iova, _, size) in &maps {
                        assert_eq!(
                            t.unmap_pages(Iova(iova), size, 1, &mut IotlbGather::new()),
                            size
                        );
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 200, "{checked}");
    assert_eq!(mem.stats().pages_in_use, 0);
}
