//! Golden descriptors: for each mapping, the exact 64-bit descriptor and its level,
//! each derived in a comment from the reference (`lpae.md` §1 types, §2 attribute
//! bits, §3 levels, §5 MAIR indices, §6 prot translation). The descriptor is found
//! by the testkit's hand walker (not io-pgtable's), starting from the register values.

use std::sync::Arc;

use io_pgtable::{Granule, HwConfig, IoPgtable, LpaeConfig, LpaeTable, NoFlush, Quirks, Stage};
use iommu_memory::SimMemory;
use iommu_testkit::lpae::{WalkOutcome, WalkParams, walk};
use iommu_types::{Iova, PhysAddr, Prot};

// Bit names used in the derivations (lpae.md §2):
// type: block 0b01, page/table 0b11; AttrIndx [4:2]; NS 5; AP[1] (unpriv) 6;
// AP[2] (read-only) 7; SH [9:8] (2 outer, 3 inner); AF 10; nG 11; DBM 51; XN 53+54.
// Stage 2: MemAttr [5:2]; S2AP read 6, write 7.

/// Map one page and return (level, raw descriptor) found by the hand walker.
fn golden(cfg: LpaeConfig, iova: u64, pa: u64, size: u64, prot: Prot) -> (u32, u64) {
    let mem = SimMemory::new();
    let t = LpaeTable::new(cfg, &mem, Arc::new(NoFlush)).unwrap();
    assert_eq!(
        t.map_pages(Iova(iova), PhysAddr(pa), size, 1, prot),
        (size, Ok(()))
    );
    let (root, params) = params_of(&t);
    match walk(&mem, root, &params, iova) {
        WalkOutcome::Leaf {
            level,
            raw,
            size: s,
            out,
        } => {
            assert_eq!((s, out), (size, pa));
            (level, raw)
        }
        o => panic!("no leaf: {o:?}"),
    }
}

fn params_of(t: &dyn IoPgtable) -> (u64, WalkParams) {
    match t.hw_config() {
        HwConfig::LpaeS1(c) => {
            let h = c.tcr.ttbr0.unwrap();
            (
                c.ttbr(),
                WalkParams::stage1(h.tsz, iommu_testkit::lpae::tg0_shift(h.tg).unwrap(), false)
                    .unwrap(),
            )
        }
        HwConfig::LpaeS2(c) => (
            c.vttbr,
            WalkParams::stage2(c.vtcr.t0sz, c.vtcr.sl0, c.vtcr.tg0).unwrap(),
        ),
        _ => unreachable!(),
    }
}

fn s1(g: Granule) -> LpaeConfig {
    LpaeConfig::new(Stage::S1, g, 48, 48)
}

fn s2(g: Granule) -> LpaeConfig {
    LpaeConfig::new(Stage::S2, g, 48, 48)
}

#[test]
fn page_4k_rw_noncacheable() {
    // Level 3 (4K page). nG 0x800 | AF 0x400 | SH outer 2<<8 = 0x200 | AP[1] unpriv 0x40
    // | AttrIndx 0 (NC) | type page 0b11 = 0xe43; output address 0x4000_1000.
    assert_eq!(
        golden(s1(Granule::G4K), 0x1000, 0x4000_1000, 0x1000, Prot::RW),
        (3, 0x0000_0000_4000_1e43)
    );
}

#[test]
fn block_2m_cacheable() {
    // Level 2 (2M block). nG 0x800 | AF 0x400 | SH inner 3<<8 = 0x300 (CACHE) | AP[1] 0x40
    // | AttrIndx 1 << 2 = 0x4 | type block 0b01 = 0xf45.
    assert_eq!(
        golden(
            s1(Granule::G4K),
            0x4020_0000,
            0x8020_0000,
            0x20_0000,
            Prot::RW | Prot::CACHE
        ),
        (2, 0x0000_0000_8020_0f45)
    );
}

#[test]
fn block_1g() {
    // Level 1 (1G block, 4K granule). nG|AF|SH outer|AP[1]|block = 0xe41.
    assert_eq!(
        golden(
            s1(Granule::G4K),
            0x1_4000_0000,
            0x1_c000_0000,
            1 << 30,
            Prot::RW
        ),
        (1, 0x0000_0001_c000_0e41)
    );
}

#[test]
fn page_16k_read_only() {
    // Level 3 (16K page). nG 0x800 | AF 0x400 | SH outer 0x200 | AP[2] read-only 0x80
    // | AP[1] 0x40 | page 0b11 = 0xec3.
    assert_eq!(
        golden(s1(Granule::G16K), 0x4000, 0x1_0000_4000, 0x4000, Prot::READ),
        (3, 0x0000_0001_0000_4ec3)
    );
}

#[test]
fn block_32m_16k() {
    // Level 2 (32M block, 16K granule). nG|AF|SH outer|AP[1]|block = 0xe41.
    assert_eq!(
        golden(
            s1(Granule::G16K),
            0x200_0000,
            0x2_0200_0000,
            1 << 25,
            Prot::RW
        ),
        (2, 0x0000_0002_0200_0e41)
    );
}

#[test]
fn page_64k_noexec() {
    // Level 3 (64K page). XN = 3<<53 = 0x0060_0000_0000_0000 | 0xe43 (as the 4K page).
    assert_eq!(
        golden(
            s1(Granule::G64K),
            0x1_0000,
            0x3_0001_0000,
            0x1_0000,
            Prot::RW | Prot::NOEXEC
        ),
        (3, 0x0060_0003_0001_0e43)
    );
}

#[test]
fn block_512m_64k_cacheable() {
    // Level 2 (512M block, 64K granule). 0xf45 as the cacheable 2M block.
    assert_eq!(
        golden(
            s1(Granule::G64K),
            0x2000_0000,
            0x4000_0000,
            1 << 29,
            Prot::RW | Prot::CACHE
        ),
        (2, 0x0000_0000_4000_0f45)
    );
}

#[test]
fn mmio_uses_device_attr_index() {
    // AttrIndx 2 (Device-nGnRE) << 2 = 0x8 | nG|AF|SH outer|AP[1]|page = 0xe4b.
    assert_eq!(
        golden(
            s1(Granule::G4K),
            0x3000,
            0x900_0000,
            0x1000,
            Prot::RW | Prot::MMIO
        ),
        (3, 0x0000_0000_0900_0e4b)
    );
}

#[test]
fn priv_clears_ap1() {
    // PRIV: AP[1] stays 0 → nG 0x800 | AF 0x400 | SH outer 0x200 | page 3 = 0xe03.
    assert_eq!(
        golden(
            s1(Granule::G4K),
            0x5000,
            0x7000,
            0x1000,
            Prot::RW | Prot::PRIV
        ),
        (3, 0x0000_0000_0000_7e03)
    );
}

#[test]
fn ns_quirk_sets_ns_and_nstable() {
    // NS bit 5 = 0x20 on the leaf: 0xe43 | 0x20 = 0xe63; table entries carry NSTable (bit 63).
    let cfg = s1(Granule::G4K).with_quirks(Quirks::ARM_NS);
    assert_eq!(
        golden(cfg, 0x1000, 0x4000_1000, 0x1000, Prot::RW),
        (3, 0x0000_0000_4000_1e63)
    );
    let mem = SimMemory::new();
    let t = LpaeTable::new(cfg, &mem, Arc::new(NoFlush)).unwrap();
    t.map_pages(Iova(0x1000), PhysAddr(0x1000), 0x1000, 1, Prot::RW)
        .1
        .unwrap();
    let l0 = mem.read_u64_checked(t.root().0);
    assert_eq!(
        l0 & 0x8000_0000_0000_0003,
        0x8000_0000_0000_0003,
        "NSTable | table type: {l0:#x}"
    );
}

#[test]
fn hd_quirk_sets_dbm() {
    // DBM bit 51 = 0x0008_0000_0000_0000 on writable leaves: | 0xe43.
    let cfg = s1(Granule::G4K).with_quirks(Quirks::ARM_HD);
    assert_eq!(
        golden(cfg, 0x1000, 0x4000_1000, 0x1000, Prot::RW),
        (3, 0x0008_0000_4000_1e43)
    );
}

#[test]
fn stage2_s2ap_read_only() {
    // AF 0x400 | SH outer 0x200 | S2AP read 0x40 | MemAttr NC 0x5<<2 = 0x14 | page 3 = 0x657.
    assert_eq!(
        golden(s2(Granule::G4K), 0x5000, 0x5000, 0x1000, Prot::READ),
        (3, 0x0000_0000_0000_5657)
    );
}

#[test]
fn stage2_s2ap_write_only() {
    // AF 0x400 | SH outer 0x200 | S2AP write 0x80 | MemAttr NC 0x14 | page 3 = 0x697.
    assert_eq!(
        golden(s2(Granule::G4K), 0x5000, 0x5000, 0x1000, Prot::WRITE),
        (3, 0x0000_0000_0000_5697)
    );
}

#[test]
fn stage2_s2ap_read_write_cacheable() {
    // AF 0x400 | SH inner 0x300 | S2AP rw 0xc0 | MemAttr 0xF<<2 = 0x3c | page 3 = 0x7ff.
    assert_eq!(
        golden(
            s2(Granule::G4K),
            0x6000,
            0x6000,
            0x1000,
            Prot::RW | Prot::CACHE
        ),
        (3, 0x0000_0000_0000_67ff)
    );
}

#[test]
fn stage2_fwb_cacheable() {
    // S2FWB: MemAttr 0x6<<2 = 0x18 → 0x400 | 0x300 | 0xc0 | 0x18 | 3 = 0x7db.
    let cfg = s2(Granule::G4K).with_quirks(Quirks::ARM_S2FWB);
    assert_eq!(
        golden(cfg, 0x6000, 0x6000, 0x1000, Prot::RW | Prot::CACHE),
        (3, 0x0000_0000_0000_67db)
    );
}

#[test]
fn stage2_noexec_block_and_mmio() {
    // 2M block: XN 3<<53 | AF 0x400 | SH outer 0x200 | S2AP rw 0xc0 | NC 0x14 | block 1 = 0x6d5.
    assert_eq!(
        golden(
            s2(Granule::G4K),
            0x20_0000,
            0x20_0000,
            0x20_0000,
            Prot::RW | Prot::NOEXEC
        ),
        (2, 0x0060_0000_0020_06d5)
    );
    // MMIO: MemAttr Device 0x1<<2 = 0x4 → 0x400 | 0x200 | 0xc0 | 0x4 | 3 = 0x6c7.
    assert_eq!(
        golden(
            s2(Granule::G4K),
            0x7000,
            0x900_0000,
            0x1000,
            Prot::RW | Prot::MMIO
        ),
        (3, 0x0000_0000_0900_06c7)
    );
}

/// `read_u64` that panics with the address on failure (test helper).
trait ReadChecked {
    fn read_u64_checked(&self, pa: u64) -> u64;
}

impl ReadChecked for SimMemory {
    fn read_u64_checked(&self, pa: u64) -> u64 {
        use iommu_types::PhysMem;
        self.read_u64(PhysAddr(pa))
            .unwrap_or_else(|e| panic!("read {pa:#x}: {e}"))
    }
}
