//! Mapping set shared by the criterion bench (`benches/translate.rs`) and the
//! minimum-of-batches example (`examples/latency.rs`): one stream with 256 read/write
//! 4 KiB pages, as stage 1 or nested over stage 2.
#![allow(dead_code)]

use std::sync::Arc;

use iommu_memory::SimMemory;
use iommu_testkit::smmu::{CdBits, SmmuRig, SteBits, Tables, pte};
use iommu_types::{PhysAddr, PhysMem};
use smmuv3_model::{Capacity, Smmu, SmmuConfig};

/// Pages mapped.
pub const PAGES: u64 = 256;
pub const VA_BASE: u64 = 0x0000_4000_0000_0000;

/// A model over fresh simulated memory.
pub fn model(cfg: SmmuConfig) -> (Arc<SimMemory>, Arc<Smmu>) {
    let mem = Arc::new(SimMemory::new());
    let smmu = Arc::new(Smmu::new(cfg, mem.clone()));
    (mem, smmu)
}

/// Stage-1 stream 1 with PAGES pages at VA_BASE.
pub fn s1_setup(cfg: SmmuConfig) -> (Arc<SimMemory>, Arc<Smmu>) {
    let (mem, smmu) = model(cfg);
    {
        let rig = SmmuRig::linear(&*smmu, &*mem, 4, 8, 6);
        let mut t = Tables::s1(&*mem, 12, 48);
        let data = mem.alloc_pages(PAGES * 4096, 4096).unwrap().0;
        for i in 0..PAGES {
            t.map(VA_BASE + i * 4096, data + i * 4096, 3, pte::S1_RW);
        }
        let cd = mem.alloc_pages(4096, 4096).unwrap().0;
        CdBits::s1(1, t.root, 48, 12).write(&*mem, cd);
        rig.set_ste(1, SteBits::s1(cd, 0, 0));
    }
    (mem, smmu)
}

/// Nested stream 1: stage-1 tables (4 levels) in guest memory, stage 2 with 4
/// levels (4K, start level 0, 48-bit IPA) mapping guest RAM.
pub fn nested_setup(cfg: SmmuConfig) -> (Arc<SimMemory>, Arc<Smmu>) {
    let (mem, smmu) = model(cfg);
    {
        let rig = SmmuRig::linear(&*smmu, &*mem, 4, 8, 6);
        let guest = 0x0000_0100_0000_0000u64; // guest RAM IPA
        let host = mem.alloc_pages(8 << 20, 4096).unwrap().0;
        let mut s2 = Tables::new(&*mem, 12, 0, 48);
        for i in 0..(8u64 << 20) / 4096 {
            s2.map(guest + i * 4096, host + i * 4096, 3, pte::S2_RW);
        }
        let g2h = |g: u64| host + (g - guest);
        // Stage-1 tables at guest pages 0..3 (one path), data at guest pages 16...
        let l = [guest, guest + 0x1000, guest + 0x2000, guest + 0x3000];
        for lvl in 0..3 {
            let idx = (VA_BASE >> (39 - 9 * lvl)) & 511;
            mem.write_u64(
                PhysAddr(g2h(l[lvl as usize]) + idx * 8),
                l[lvl as usize + 1] | 3,
            )
            .unwrap();
        }
        for i in 0..PAGES {
            let va = VA_BASE + i * 4096;
            let d = (guest + 0x10_0000 + i * 4096) | pte::S1_RW | 3;
            mem.write_u64(PhysAddr(g2h(l[3]) + ((va >> 12) & 511) * 8), d)
                .unwrap();
        }
        let cd_g = guest + 0xF000;
        CdBits::s1(1, l[0], 48, 12).write(&*mem, g2h(cd_g));
        rig.set_ste(1, SteBits::s1(cd_g, 0, 0).with_s2(1, 12, 0, 48, 5, s2.root));
    }
    (mem, smmu)
}

/// No TLB, no walk cache, no sanitizer: every translation walks.
pub fn no_tlb() -> SmmuConfig {
    SmmuConfig::builder()
        .tlb(Capacity::Disabled)
        .walk_cache(Capacity::Disabled)
        .sanitizer(false)
        .build()
}
