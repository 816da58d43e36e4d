//! Translations and faults for every configuration, granule and start level.

use iommu_testkit::smmu::{CdBits, SteBits, Tables, l1_cd, l1_std, pte};
use iommu_types::{Mmio, PhysAddr};
use smmuv3_model::{
    Access, AccessKind, Capacity, EventClass, EventId, FaultResponse, SmmuConfig, TranslationKind,
};

use crate::common::*;

#[test]
fn smoke_s1_page_then_tlb_hit() {
    both(smoke_s1_page_then_tlb_hit_body);
}

fn smoke_s1_page_then_tlb_hit_body() {
    let fx = Fx::new();
    let rig = fx.rig();
    let (mut t, _) = s1_stream(&fx, &rig, 1, 5);
    let pa = fx.page();
    t.map(0x1234_5000, pa, 3, RW);
    let tr = fx
        .smmu
        .translate(1, None, 0x1234_5678, Access::READ)
        .unwrap();
    assert_eq!(tr.pa.0, pa + 0x678);
    assert_eq!(
        (tr.kind, tr.size, tr.cached),
        (TranslationKind::Stage1, 4096, false)
    );
    assert!(tr.coherent);
    let tr = fx
        .smmu
        .translate(1, None, 0x1234_5678, Access::WRITE)
        .unwrap();
    assert!(tr.cached);
    let s = fx.smmu.stats();
    assert_eq!((s.tlb.hits, s.tlb.misses), (1, 1));
    assert_eq!(s.walk_reads, 4, "4-level walk reads four descriptors");
    assert!(fx.smmu.sanitizer_reports().is_empty());
}

#[test]
fn global_bypass_and_abort_when_disabled() {
    let fx = Fx::new();
    let m = &*fx.smmu;
    let t = m.translate(3, None, 0x4000_1234, Access::WRITE).unwrap();
    assert_eq!(
        (t.pa.0, t.kind),
        (0x4000_1234, TranslationKind::GlobalBypass)
    );
    // GBPA write without UPDATE is ignored; with UPDATE it takes effect and UPDATE clears.
    m.write32(0x44, 1 << 20);
    assert!(m.translate(3, None, 0, Access::READ).is_ok());
    m.write32(0x44, (1 << 20) | (1 << 31));
    assert_eq!(m.read32(0x44) >> 31, 0);
    let f = m.translate(3, None, 0, Access::READ).unwrap_err();
    assert_eq!((f.event, f.recorded), (None, false));
}

#[test]
fn ste_configs_abort_bypass_invalid_and_bad_sid() {
    both(ste_configs_abort_bypass_invalid_and_bad_sid_body);
}

fn ste_configs_abort_bypass_invalid_and_bad_sid_body() {
    let fx = Fx::new();
    let mut rig = fx.rig();
    rig.set_ste(1, SteBits::abort());
    rig.set_ste(2, SteBits::bypass());
    rig.set_ste(3, SteBits::abort().config(2)); // reserved: behaves as abort
    let f = fx
        .smmu
        .translate(1, None, 0x1000, Access::READ)
        .unwrap_err();
    assert_eq!(f.event, None, "Config=abort records no event");
    let f = fx
        .smmu
        .translate(3, None, 0x1000, Access::READ)
        .unwrap_err();
    assert_eq!(f.event, None);
    let t = fx
        .smmu
        .translate(2, None, 0xdead_b000, Access::WRITE)
        .unwrap();
    assert_eq!((t.pa.0, t.kind), (0xdead_b000, TranslationKind::Bypass));
    // Bypass with a SubstreamID: C_BAD_SUBSTREAMID.
    let f = fx.smmu.translate(2, Some(1), 0, Access::READ).unwrap_err();
    assert_eq!(f.id(), Some(EventId::CBadSubstreamId));
    // V=0: C_BAD_STE.
    let f = fx.smmu.translate(4, None, 0, Access::READ).unwrap_err();
    assert_eq!(f.id(), Some(EventId::CBadSte));
    assert!(f.recorded);
    // SID beyond STRTAB_BASE_CFG.LOG2SIZE (6 bits): C_BAD_STREAMID, recorded with RECINVSID.
    let f = fx.smmu.translate(64, None, 0, Access::READ).unwrap_err();
    assert_eq!(f.id(), Some(EventId::CBadStreamId));
    assert!(f.recorded);
    let ev = rig.events();
    assert_eq!(ev.len(), 3);
    // Illegal STE combination (S2 with S2AA64 = 0): C_BAD_STE.
    let mut s = SteBits::s2(1, 12, 1, 40, 5, fx.alloc(8192));
    s.0[2] &= !(1 << 51);
    rig.set_ste(5, s);
    assert_eq!(
        fx.smmu
            .translate(5, None, 0, Access::READ)
            .unwrap_err()
            .id(),
        Some(EventId::CBadSte)
    );
}

/// (granule shift, VA bits) covering every stage-1 start level of each granule.
const S1_GEOMETRIES: &[(u32, u32, u32)] = &[
    (12, 48, 0),
    (12, 39, 1),
    (12, 30, 2),
    (14, 48, 0),
    (14, 47, 1),
    (14, 36, 2),
    (14, 25, 3),
    (16, 48, 1),
    (16, 42, 2),
    (16, 29, 3),
];

#[test]
fn s1_every_granule_and_start_level_pages_and_blocks() {
    for &(g, va_bits, start) in S1_GEOMETRIES {
        let fx = Fx::with(SmmuConfig::builder().sanitizer(true).build());
        let rig = fx.rig();
        let mut t = Tables::s1(fx.m(), g, va_bits);
        assert_eq!(t.start_level, start, "geometry g={g} va={va_bits}");
        let cd = fx.cd_table(0);
        CdBits::s1(9, t.root, va_bits, g).write(fx.m(), cd);
        rig.set_ste(1, SteBits::s1(cd, 0, 0));
        let gsz = 1u64 << g;
        // A page near the top of the VA range.
        let top = (1u64 << va_bits) - gsz;
        let pa = fx.alloc(gsz);
        t.map(top, pa, 3, RW);
        let tr = fx.smmu.translate(1, None, top + 42, Access::READ).unwrap();
        assert_eq!((tr.pa.0, tr.size), (pa + 42, gsz), "g={g} va={va_bits}");
        // A block at level 2 (when the table reaches level 2 with blocks allowed).
        if start <= 2 {
            let bsz = t.size_at(2);
            let ia = bsz; // second block-sized slot
            let out = 0x40_0000_0000u64 & !(bsz - 1);
            t.map(ia, out, 2, RW);
            let tr = fx
                .smmu
                .translate(1, None, ia + 0x1234, Access::WRITE)
                .unwrap();
            assert_eq!(
                (tr.pa.0, tr.size),
                (out + 0x1234, bsz),
                "block g={g} va={va_bits}"
            );
        }
        // 4K level-1 blocks (1 GiB).
        if g == 12 && start <= 1 {
            let out = 0x80_0000_0000u64;
            t.map(3 << 30, out, 1, RW);
            let tr = fx
                .smmu
                .translate(1, None, (3 << 30) + 0x5000, Access::READ)
                .unwrap();
            assert_eq!((tr.pa.0, tr.size), (out + 0x5000, 1 << 30));
        }
        // Unmapped address: F_TRANSLATION; beyond T0SZ: F_TRANSLATION (input class).
        let f = fx
            .smmu
            .translate(1, None, gsz * 7, Access::READ)
            .unwrap_err();
        assert_eq!(f.id(), Some(EventId::FTranslation));
        let f = fx
            .smmu
            .translate(1, None, 1u64 << va_bits, Access::READ)
            .unwrap_err();
        assert_eq!(f.id(), Some(EventId::FTranslation));
        assert!(fx.smmu.sanitizer_reports().is_empty());
    }
}

#[test]
fn s1_block_at_illegal_level_faults() {
    let fx = Fx::new();
    let rig = fx.rig();
    let (mut t, _) = s1_stream(&fx, &rig, 1, 1);
    // A level-0 block with the 4K granule is not allowed.
    t.set_raw(1 << 39, 0, (2 << 39) | RW | 1);
    let f = fx
        .smmu
        .translate(1, None, (1 << 39) + 5, Access::READ)
        .unwrap_err();
    assert_eq!(f.id(), Some(EventId::FTranslation));
    // Type 01 at level 3 is reserved.
    t.set_raw(0x5000, 3, 0x9000_0000 | RW | 1);
    let f = fx
        .smmu
        .translate(1, None, 0x5000, Access::READ)
        .unwrap_err();
    assert_eq!(f.id(), Some(EventId::FTranslation));
}

/// (granule, SL0-derived start level, IPA bits): every stage-2 start level, and
/// concatenated roots (bits at the start level beyond one table).
const S2_GEOMETRIES: &[(u32, u32, u32)] = &[
    (12, 2, 30),
    (12, 2, 34), // 16 concatenated L2 tables
    (12, 1, 39),
    (12, 1, 40), // 2 concatenated L1 tables
    (12, 1, 42), // 8
    (12, 0, 48),
    (14, 3, 25),
    (14, 2, 36),
    (14, 1, 47),
    (14, 1, 48), // 2 concatenated L1 tables
    (16, 3, 29),
    (16, 2, 42),
    (16, 2, 44), // 4 concatenated L2 tables
    (16, 1, 48),
];

#[test]
fn s2_every_granule_start_level_and_concatenation() {
    for &(g, sl, ias) in S2_GEOMETRIES {
        let fx = Fx::new();
        let rig = fx.rig();
        let mut t = Tables::new(fx.m(), g, sl, ias);
        rig.set_ste(2, SteBits::s2(7, g, sl, ias, 5, t.root));
        let gsz = 1u64 << g;
        let top = (1u64 << ias) - gsz;
        let pa = fx.alloc(gsz);
        t.map(top, pa, 3, pte::S2_RW);
        let tr = fx.smmu.translate(2, None, top + 8, Access::WRITE).unwrap();
        assert_eq!(
            (tr.pa.0, tr.kind),
            (pa + 8, TranslationKind::Stage2),
            "g={g} sl={sl} ias={ias}"
        );
        t.map(0, pa, 3, pte::S2_RW);
        assert_eq!(
            fx.smmu.translate(2, None, 0x10, Access::READ).unwrap().pa.0,
            pa + 0x10
        );
        let f = fx
            .smmu
            .translate(2, None, gsz * 3, Access::READ)
            .unwrap_err();
        assert_eq!(f.id(), Some(EventId::FTranslation));
        let ev = f.event.unwrap();
        assert!(ev.s2 && ev.ipa == gsz * 3, "stage-2 fault reports the IPA");
        if ias < 48 {
            let f = fx
                .smmu
                .translate(2, None, 1 << ias, Access::READ)
                .unwrap_err();
            assert_eq!(f.id(), Some(EventId::FTranslation));
        }
    }
}

#[test]
fn s2_inconsistent_sl0_is_bad_ste() {
    let fx = Fx::new();
    let rig = fx.rig();
    // 4K, start level 2 with 40 IPA bits would need 1024 concatenated tables.
    rig.set_ste(1, SteBits::s2(1, 12, 2, 40, 5, fx.alloc(1 << 16)));
    assert_eq!(
        fx.smmu
            .translate(1, None, 0, Access::READ)
            .unwrap_err()
            .id(),
        Some(EventId::CBadSte)
    );
    // Reserved SL0 = 3 with 4K.
    let mut s = SteBits::s2(1, 12, 2, 32, 5, fx.alloc(1 << 14));
    s.0[2] |= 3 << 38;
    rig.set_ste(2, s);
    assert_eq!(
        fx.smmu
            .translate(2, None, 0, Access::READ)
            .unwrap_err()
            .id(),
        Some(EventId::CBadSte)
    );
}

#[test]
fn ttbr1_range_translates_upper_addresses() {
    both(ttbr1_range_translates_upper_addresses_body);
}

fn ttbr1_range_translates_upper_addresses_body() {
    let fx = Fx::new();
    let rig = fx.rig();
    let t0 = Tables::s1(fx.m(), 12, 48);
    let mut t1 = Tables::s1(fx.m(), 12, 39);
    let cd = fx.cd_table(0);
    CdBits::s1(3, t0.root, 48, 12)
        .ttb1(t1.root, 39, 12)
        .write(fx.m(), cd);
    rig.set_ste(1, SteBits::s1(cd, 0, 0));
    let pa = fx.page();
    let va: u64 = 0xFFFF_FF80_0000_3000; // top 25 bits ones, 39-bit range
    t1.map(va & ((1 << 39) - 1), pa, 3, RW);
    assert_eq!(
        fx.smmu
            .translate(1, None, va + 4, Access::READ)
            .unwrap()
            .pa
            .0,
        pa + 4
    );
    // Upper bits not all ones: translation fault.
    let f = fx
        .smmu
        .translate(1, None, 0xFFFF_0F80_0000_3000, Access::READ)
        .unwrap_err();
    assert_eq!(f.id(), Some(EventId::FTranslation));
    // EPD1 (TTB1 disabled) → fault on upper addresses.
    let cd2 = fx.cd_table(0);
    CdBits::s1(4, t0.root, 48, 12).write(fx.m(), cd2);
    rig.set_ste(2, SteBits::s1(cd2, 0, 0));
    assert_eq!(
        fx.smmu
            .translate(2, None, va, Access::READ)
            .unwrap_err()
            .id(),
        Some(EventId::FTranslation)
    );
}

#[test]
fn tbi_ignores_top_byte() {
    both(tbi_ignores_top_byte_body);
}

fn tbi_ignores_top_byte_body() {
    let fx = Fx::new();
    let rig = fx.rig();
    let mut t = Tables::s1(fx.m(), 12, 48);
    let cd = fx.cd_table(0);
    CdBits::s1(3, t.root, 48, 12).tbi0(true).write(fx.m(), cd);
    rig.set_ste(1, SteBits::s1(cd, 0, 0));
    let pa = fx.page();
    t.map(0x7000, pa, 3, RW);
    assert_eq!(
        fx.smmu
            .translate(1, None, 0xAB00_0000_0000_7010, Access::READ)
            .unwrap()
            .pa
            .0,
        pa + 0x10
    );
    // Without TBI the same address faults.
    let (mut t2, _) = s1_stream(&fx, &rig, 2, 4);
    t2.map(0x7000, pa, 3, RW);
    assert!(
        fx.smmu
            .translate(2, None, 0xAB00_0000_0000_7010, Access::READ)
            .is_err()
    );
}

#[test]
fn permissions_ap_xn_and_privilege() {
    both(permissions_ap_xn_and_privilege_body);
}

fn permissions_ap_xn_and_privilege_body() {
    let fx = Fx::new();
    let rig = fx.rig();
    let (mut t, _) = s1_stream(&fx, &rig, 1, 1);
    let pa = fx.page();
    let base = pte::AF | pte::NG | pte::S1_ATTR_WB | pte::SH_IS;
    t.map(0x1000, pa, 3, base | pte::S1_USER | pte::S1_RDONLY); // RO, user
    t.map(0x2000, pa, 3, base); // privileged only RW
    t.map(0x3000, pa, 3, base | pte::S1_USER | pte::UXN | pte::PXN); // no exec
    t.map(0x4000, pa, 3, base | pte::S1_USER); // user RW: implicitly PXN
    let tr = |a, acc| fx.smmu.translate(1, None, a, acc);
    assert!(tr(0x1000, Access::READ).is_ok());
    let f = tr(0x1000, Access::WRITE).unwrap_err();
    assert_eq!(f.id(), Some(EventId::FPermission));
    let ev = f.event.unwrap();
    assert!(!ev.rnw && !ev.s2 && !ev.pnu);
    assert_eq!(
        tr(0x2000, Access::READ).unwrap_err().id(),
        Some(EventId::FPermission)
    );
    assert!(tr(0x2000, Access::WRITE.privileged()).is_ok());
    assert!(tr(0x2000, Access::EXEC.privileged()).is_ok());
    let f = tr(0x3000, Access::EXEC).unwrap_err();
    assert!(f.event.unwrap().ind);
    assert!(tr(0x3000, Access::READ).is_ok());
    assert!(tr(0x4000, Access::EXEC).is_ok());
    assert_eq!(
        tr(0x4000, Access::EXEC.privileged()).unwrap_err().id(),
        Some(EventId::FPermission)
    );
    // APTable[1] (no write below) on the path.
    let mut t2 = Tables::s1(fx.m(), 12, 48);
    let slot = t2.slot(0x8000, 3, 0);
    let _ = slot;
    let l2 = t2.slot(0x8000, 2, 0);
    let d = fx.m().read_u64(PhysAddr(l2)).unwrap();
    fx.m()
        .write_u64(PhysAddr(l2), d | pte::AP_TABLE_RO)
        .unwrap();
    t2.map(0x8000, pa, 3, RW);
    let cd = fx.cd_table(0);
    CdBits::s1(2, t2.root, 48, 12).write(fx.m(), cd);
    rig.set_ste(2, SteBits::s1(cd, 0, 0));
    assert!(fx.smmu.translate(2, None, 0x8000, Access::READ).is_ok());
    assert_eq!(
        fx.smmu
            .translate(2, None, 0x8000, Access::WRITE)
            .unwrap_err()
            .id(),
        Some(EventId::FPermission)
    );
}

#[test]
fn access_flag_fault_hw_update_and_affd() {
    let fx = Fx::new();
    let rig = fx.rig();
    let pa = fx.page();
    // No HA: AF = 0 faults (F_ACCESS before F_PERMISSION).
    let (mut t, _) = s1_stream(&fx, &rig, 1, 1);
    t.map(0x1000, pa, 3, (RW & !pte::AF) | pte::S1_RDONLY);
    assert_eq!(
        fx.smmu
            .translate(1, None, 0x1000, Access::WRITE)
            .unwrap_err()
            .id(),
        Some(EventId::FAccess)
    );
    // HA: the SMMU sets AF in memory.
    let mut t2 = Tables::s1(fx.m(), 12, 48);
    let slot = t2.map(0x1000, pa, 3, RW & !pte::AF);
    let cd = fx.cd_table(0);
    CdBits::s1(2, t2.root, 48, 12)
        .hw(true, false)
        .write(fx.m(), cd);
    rig.set_ste(2, SteBits::s1(cd, 0, 0));
    assert!(fx.smmu.translate(2, None, 0x1000, Access::READ).is_ok());
    assert_ne!(fx.m().read_u64(PhysAddr(slot)).unwrap() & pte::AF, 0);
    // AFFD: no fault, no update.
    let mut t3 = Tables::s1(fx.m(), 12, 48);
    let slot3 = t3.map(0x1000, pa, 3, RW & !pte::AF);
    let cd3 = fx.cd_table(0);
    CdBits::s1(3, t3.root, 48, 12).affd(true).write(fx.m(), cd3);
    rig.set_ste(3, SteBits::s1(cd3, 0, 0));
    assert!(fx.smmu.translate(3, None, 0x1000, Access::READ).is_ok());
    assert_eq!(fx.m().read_u64(PhysAddr(slot3)).unwrap() & pte::AF, 0);
    assert!(
        fx.smmu.sanitizer_reports().is_empty(),
        "{:?}",
        fx.smmu.sanitizer_reports()
    );
}

#[test]
fn dirty_state_update_with_dbm() {
    both(dirty_state_update_with_dbm_body);
}

fn dirty_state_update_with_dbm_body() {
    let fx = Fx::new();
    let rig = fx.rig();
    let pa = fx.page();
    let mut t = Tables::s1(fx.m(), 12, 48);
    // Writable-clean: DBM = 1, AP[2] = 1.
    let slot = t.map(0x1000, pa, 3, RW | pte::DBM | pte::S1_RDONLY);
    let cd = fx.cd_table(0);
    CdBits::s1(2, t.root, 48, 12)
        .hw(true, true)
        .write(fx.m(), cd);
    rig.set_ste(1, SteBits::s1(cd, 0, 0));
    assert!(fx.smmu.translate(1, None, 0x1000, Access::READ).is_ok());
    assert_ne!(
        fx.m().read_u64(PhysAddr(slot)).unwrap() & pte::S1_RDONLY,
        0,
        "a read leaves it clean"
    );
    assert!(fx.smmu.translate(1, None, 0x1000, Access::WRITE).is_ok());
    assert_eq!(
        fx.m().read_u64(PhysAddr(slot)).unwrap() & pte::S1_RDONLY,
        0,
        "a write marks it dirty"
    );
    // Without HD the same descriptor is read-only.
    let mut t2 = Tables::s1(fx.m(), 12, 48);
    t2.map(0x1000, pa, 3, RW | pte::DBM | pte::S1_RDONLY);
    let cd2 = fx.cd_table(0);
    CdBits::s1(3, t2.root, 48, 12).write(fx.m(), cd2);
    rig.set_ste(2, SteBits::s1(cd2, 0, 0));
    assert_eq!(
        fx.smmu
            .translate(2, None, 0x1000, Access::WRITE)
            .unwrap_err()
            .id(),
        Some(EventId::FPermission)
    );
    assert!(
        fx.smmu.sanitizer_reports().is_empty(),
        "{:?}",
        fx.smmu.sanitizer_reports()
    );
}

#[test]
fn s2_permissions_and_dirty() {
    both(s2_permissions_and_dirty_body);
}

fn s2_permissions_and_dirty_body() {
    let fx = Fx::new();
    let rig = fx.rig();
    let pa = fx.page();
    let mut t = Tables::new(fx.m(), 12, 1, 40);
    t.map(
        0x1000,
        pa,
        3,
        pte::AF | pte::S2_WB | pte::S2_READ | pte::S2_XN,
    );
    let slot = t.map(
        0x2000,
        pa,
        3,
        pte::AF | pte::S2_WB | pte::S2_READ | pte::DBM,
    );
    rig.set_ste(1, SteBits::s2(3, 12, 1, 40, 5, t.root).s2hw(true, true));
    let f = fx
        .smmu
        .translate(1, None, 0x1000, Access::WRITE)
        .unwrap_err();
    assert_eq!(f.id(), Some(EventId::FPermission));
    assert!(f.event.unwrap().s2);
    assert_eq!(f.event.unwrap().ipa, 0x1000);
    assert_eq!(
        fx.smmu
            .translate(1, None, 0x1000, Access::EXEC)
            .unwrap_err()
            .id(),
        Some(EventId::FPermission)
    );
    assert!(fx.smmu.translate(1, None, 0x2000, Access::WRITE).is_ok());
    assert_ne!(fx.m().read_u64(PhysAddr(slot)).unwrap() & pte::S2_WRITE, 0);
}

#[test]
fn nested_walk_translates_table_addresses_through_stage2() {
    both(nested_walk_translates_table_addresses_through_stage2_body);
}

fn nested_walk_translates_table_addresses_through_stage2_body() {
    let fx = Fx::new();
    let rig = fx.rig();
    // Stage 2: identity-ish map of a guest RAM window [0x1000_0000, +16 MiB) to host memory.
    let mut s2 = Tables::new(fx.m(), 12, 1, 40);
    let host = fx.alloc(16 << 20);
    let gpa = 0x1000_0000u64;
    for i in 0..(16 << 20) / 4096u64 {
        s2.map(gpa + i * 4096, host + i * 4096, 3, pte::S2_RW);
    }
    // Stage-1 tables live in guest RAM: build them in host memory at the matching offsets.
    let g2h = |g: u64| host + (g - gpa);
    // CD at gpa + 0x0, L0..L3 tables at gpa + 0x1000.. 0x4000, data page at gpa + 0x10000.
    let cd_g = gpa;
    let tbl = [gpa + 0x1000, gpa + 0x2000, gpa + 0x3000, gpa + 0x4000];
    let va = 0x0000_1234_5678_9000u64;
    for lvl in 0..3 {
        let idx = (va >> (39 - 9 * lvl)) & 511;
        fx.m()
            .write_u64(
                PhysAddr(g2h(tbl[lvl as usize]) + idx * 8),
                tbl[lvl as usize + 1] | 3,
            )
            .unwrap();
    }
    let data_g = gpa + 0x10000;
    fx.m()
        .write_u64(
            PhysAddr(g2h(tbl[3]) + ((va >> 12) & 511) * 8),
            data_g | RW | 3,
        )
        .unwrap();
    CdBits::s1(7, tbl[0], 48, 12).write(fx.m(), g2h(cd_g));
    rig.set_ste(1, SteBits::s1(cd_g, 0, 0).with_s2(9, 12, 1, 40, 5, s2.root));
    let tr = fx
        .smmu
        .translate(1, None, va + 0x10, Access::WRITE)
        .unwrap();
    assert_eq!(
        (tr.pa.0, tr.kind),
        (g2h(data_g) + 0x10, TranslationKind::Nested)
    );
    assert!(
        fx.smmu
            .translate(1, None, va + 0x10, Access::READ)
            .unwrap()
            .cached
    );
    // Stage-2 fault on a stage-1 table fetch: S2 = 1, CLASS = TT, IPA = table address.
    let va2 = 0x0000_0000_4000_0000u64;
    let idx0 = (va2 >> 39) & 511;
    let idx1 = (va2 >> 30) & 511;
    let bad_table = 0x7000_0000u64; // IPA not mapped by stage 2
    fx.m()
        .write_u64(PhysAddr(g2h(tbl[0]) + idx0 * 8), tbl[1] | 3)
        .unwrap();
    fx.m()
        .write_u64(PhysAddr(g2h(tbl[1]) + idx1 * 8), bad_table | 3)
        .unwrap();
    let f = fx.smmu.translate(1, None, va2, Access::READ).unwrap_err();
    let ev = f.event.unwrap();
    assert_eq!(ev.id, EventId::FTranslation);
    assert!(ev.s2);
    assert_eq!(ev.class, EventClass::TableWalk);
    assert_eq!(ev.ipa, bad_table + ((va2 >> 21) & 511) * 8);
    // Stage-2 fault on the final IPA: CLASS = IN.
    let va3 = va + 0x1000;
    fx.m()
        .write_u64(
            PhysAddr(g2h(tbl[3]) + ((va3 >> 12) & 511) * 8),
            0x7100_0000 | RW | 3,
        )
        .unwrap();
    let ev = fx
        .smmu
        .translate(1, None, va3, Access::READ)
        .unwrap_err()
        .event
        .unwrap();
    assert!(ev.s2 && ev.class == EventClass::Input && ev.ipa == 0x7100_0000);
    // CD fetch through an unmapped IPA: S2 fault with CLASS = CD.
    rig.set_ste(
        2,
        SteBits::s1(0x7200_0000, 0, 0).with_s2(9, 12, 1, 40, 5, s2.root),
    );
    let ev = fx
        .smmu
        .translate(2, None, va, Access::READ)
        .unwrap_err()
        .event
        .unwrap();
    assert!(
        ev.s2 && ev.class == EventClass::Cd && ev.ipa == 0x7200_0000,
        "{ev:?}"
    );
}

#[test]
fn substreams_linear_and_two_level_cd_tables() {
    both(substreams_linear_and_two_level_cd_tables_body);
}

fn substreams_linear_and_two_level_cd_tables_body() {
    let fx = Fx::new();
    let rig = fx.rig();
    let pa = fx.page();
    let mut ta = Tables::s1(fx.m(), 12, 48);
    ta.map(0x1000, pa, 3, RW);
    // Linear CD table with 4 SSID bits.
    let cdt = fx.cd_table(4);
    CdBits::s1(11, ta.root, 48, 12).write(fx.m(), cdt + 3 * 64);
    rig.set_ste(1, SteBits::s1(cdt, 4, 0).s1dss(0));
    assert_eq!(
        fx.smmu
            .translate(1, Some(3), 0x1000, Access::READ)
            .unwrap()
            .pa
            .0,
        pa
    );
    // SSID beyond S1CDMax: C_BAD_SUBSTREAMID; no SSID with S1DSS = terminate: F_STREAM_DISABLED.
    assert_eq!(
        fx.smmu
            .translate(1, Some(16), 0x1000, Access::READ)
            .unwrap_err()
            .id(),
        Some(EventId::CBadSubstreamId)
    );
    assert_eq!(
        fx.smmu
            .translate(1, None, 0x1000, Access::READ)
            .unwrap_err()
            .id(),
        Some(EventId::FStreamDisabled)
    );
    // Invalid CD: C_BAD_CD.
    assert_eq!(
        fx.smmu
            .translate(1, Some(2), 0x1000, Access::READ)
            .unwrap_err()
            .id(),
        Some(EventId::CBadCd)
    );
    // S1DSS = bypass: no-SSID traffic bypasses stage 1.
    rig.set_ste(2, SteBits::s1(cdt, 4, 0).s1dss(1));
    assert_eq!(
        fx.smmu
            .translate(2, None, 0x5000, Access::READ)
            .unwrap()
            .kind,
        TranslationKind::Bypass
    );
    // S1DSS = substream 0: no-SSID uses CD 0, SSID 0 itself is F_STREAM_DISABLED.
    CdBits::s1(12, ta.root, 48, 12).write(fx.m(), cdt);
    rig.set_ste(3, SteBits::s1(cdt, 4, 0).s1dss(2));
    assert_eq!(
        fx.smmu
            .translate(3, None, 0x1000, Access::READ)
            .unwrap()
            .pa
            .0,
        pa
    );
    assert_eq!(
        fx.smmu
            .translate(3, Some(0), 0x1000, Access::READ)
            .unwrap_err()
            .id(),
        Some(EventId::FStreamDisabled)
    );
    // Substream on a stream with S1CDMax = 0: C_BAD_SUBSTREAMID.
    let (_, _) = s1_stream(&fx, &rig, 4, 13);
    assert_eq!(
        fx.smmu
            .translate(4, Some(1), 0x1000, Access::READ)
            .unwrap_err()
            .id(),
        Some(EventId::CBadSubstreamId)
    );
    // Two-level CD table (S1Fmt = 1: 64 CDs per leaf), 8 SSID bits.
    let l1 = fx.alloc(4096);
    let leaf = fx.alloc(4096);
    fx.m()
        .write_u64(PhysAddr(l1 + 8 * 2), l1_cd(true, leaf))
        .unwrap();
    CdBits::s1(14, ta.root, 48, 12).write(fx.m(), leaf + 5 * 64);
    rig.set_ste(5, SteBits::s1(l1, 8, 1));
    assert_eq!(
        fx.smmu
            .translate(5, Some(2 * 64 + 5), 0x1000, Access::READ)
            .unwrap()
            .pa
            .0,
        pa
    );
    // Invalid L1CD: C_BAD_SUBSTREAMID.
    assert_eq!(
        fx.smmu
            .translate(5, Some(64 + 5), 0x1000, Access::READ)
            .unwrap_err()
            .id(),
        Some(EventId::CBadSubstreamId)
    );
}

#[test]
fn two_level_stream_table() {
    let fx = Fx::new();
    let mut rig = iommu_testkit::smmu::SmmuRig::two_level(&*fx.smmu, fx.m(), 16, 8);
    let l2 = fx.alloc(64 * 256);
    fx.m()
        .write_u64(PhysAddr(rig.strtab + 8 * 3), l1_std(9, l2))
        .unwrap();
    SteBits::bypass().write(fx.m(), l2 + 64 * 7);
    let sid = (3 << 8) | 7;
    assert_eq!(
        fx.smmu
            .translate(sid, None, 0x1234, Access::READ)
            .unwrap()
            .kind,
        TranslationKind::Bypass
    );
    // SPAN = 0 in another L1: C_BAD_STREAMID.
    assert_eq!(
        fx.smmu
            .translate(4 << 8, None, 0, Access::READ)
            .unwrap_err()
            .id(),
        Some(EventId::CBadStreamId)
    );
    // SPAN = 2 covers only 2 STEs: SID index 7 is beyond the span.
    fx.m()
        .write_u64(PhysAddr(rig.strtab + 8 * 5), l1_std(2, l2))
        .unwrap();
    assert_eq!(
        fx.smmu
            .translate((5 << 8) | 7, None, 0, Access::READ)
            .unwrap_err()
            .id(),
        Some(EventId::CBadStreamId)
    );
    assert_eq!(rig.events().len(), 2);
}

#[test]
fn raz_wi_response_and_suppressed_records() {
    let fx = Fx::new();
    let mut rig = fx.rig();
    let t = Tables::s1(fx.m(), 12, 48);
    let cd = fx.cd_table(0);
    CdBits::s1(1, t.root, 48, 12)
        .record(false)
        .abort_on_fault(false)
        .write(fx.m(), cd);
    rig.set_ste(1, SteBits::s1(cd, 0, 0));
    let f = fx
        .smmu
        .translate(1, None, 0x1000, Access::READ)
        .unwrap_err();
    assert_eq!((f.response, f.recorded), (FaultResponse::RazWi, false));
    let mut buf = [0xAAu8; 16];
    fx.smmu.dma_read(1, None, 0x1000, &mut buf, false).unwrap();
    assert_eq!(buf, [0u8; 16]);
    assert!(rig.events().is_empty());
    // STE.S2R = 0 suppresses stage-2 fault records.
    let t2 = Tables::new(fx.m(), 12, 1, 40);
    rig.set_ste(2, SteBits::s2(1, 12, 1, 40, 5, t2.root).s2r(false));
    let f = fx
        .smmu
        .translate(2, None, 0x1000, Access::READ)
        .unwrap_err();
    assert!(!f.recorded && f.response == FaultResponse::Abort);
    assert!(rig.events().is_empty());
}

#[test]
fn dma_helpers_split_at_page_boundaries() {
    let fx = Fx::new();
    let rig = fx.rig();
    let (mut t, _) = s1_stream(&fx, &rig, 1, 1);
    let (p1, p2) = (fx.page(), fx.page());
    t.map(0x10_0000, p2, 3, RW); // deliberately not contiguous
    t.map(0x10_1000, p1, 3, RW);
    let data: Vec<u8> = (0..64u8).collect();
    fx.smmu.dma_write(1, None, 0x10_0FE0, &data, false).unwrap();
    let mut a = [0u8; 32];
    fx.m().read_bytes(PhysAddr(p2 + 0xFE0), &mut a).unwrap();
    assert_eq!(&a[..], &data[..32]);
    fx.m().read_bytes(PhysAddr(p1), &mut a).unwrap();
    assert_eq!(&a[..], &data[32..]);
    let mut back = [0u8; 64];
    fx.smmu
        .dma_read(1, None, 0x10_0FE0, &mut back, false)
        .unwrap();
    assert_eq!(&back[..], &data[..]);
    let e = fx
        .smmu
        .dma_read(1, None, 0x10_1FF0, &mut back, false)
        .unwrap_err();
    assert_eq!(e.errno(), iommu_types::Errno::EFAULT);
}

#[test]
fn attributes_coherent_and_no_snoop() {
    let fx = Fx::new();
    let rig = fx.rig();
    let (mut t, _) = s1_stream(&fx, &rig, 1, 1);
    let pa = fx.page();
    t.map(0x1000, pa, 3, RW);
    t.map(0x2000, pa, 3, (RW & !pte::S1_ATTR_WB) | pte::S1_ATTR_DEV);
    t.map(0x3000, pa, 3, RW & !pte::S1_ATTR_WB); // AttrIndx 0 = NC
    let a = |x| fx.smmu.translate(1, None, x, Access::READ).unwrap();
    assert!(a(0x1000).coherent && a(0x1000).no_snoop_allowed);
    assert!(a(0x2000).attrs.device && !a(0x2000).coherent);
    assert!(!a(0x3000).coherent);
    // S2FWB forces write-back and blocks no-snoop.
    let mut t2 = Tables::new(fx.m(), 12, 1, 40);
    t2.map(0x1000, pa, 3, (pte::S2_RW & !pte::S2_WB) | (0x6 << 2));
    rig.set_ste(2, SteBits::s2(1, 12, 1, 40, 5, t2.root).s2fwb(true));
    let tr = fx.smmu.translate(2, None, 0x1000, Access::READ).unwrap();
    assert!(tr.coherent && !tr.no_snoop_allowed);
}

#[test]
fn ats_translation_requests_fill_the_atc() {
    let fx = Fx::new();
    let rig = fx.rig();
    let (mut t, cd) = s1_stream(&fx, &rig, 1, 1);
    let pa = fx.page();
    t.map(0x1000, pa, 3, RW);
    // EATS = 0: F_BAD_ATS_TREQ.
    assert_eq!(
        fx.smmu
            .ats_translate(1, None, 0x1000, Access::READ)
            .unwrap_err()
            .id(),
        Some(EventId::FBadAtsTreq)
    );
    rig.set_ste(2, SteBits::s1(cd, 0, 0).eats(1));
    assert!(
        !fx.smmu
            .ats_translate(2, None, 0x1000, Access::READ)
            .unwrap()
            .cached
    );
    assert!(
        fx.smmu
            .ats_translate(2, None, 0x1010, Access::READ)
            .unwrap()
            .cached
    );
    let s = fx.smmu.stats();
    assert_eq!((s.atc.hits, s.atc.misses), (1, 2));
}

#[test]
fn bounded_and_disabled_caches_still_translate() {
    for cap in [Capacity::Disabled, Capacity::Bounded(2)] {
        let fx = Fx::with(
            SmmuConfig::builder()
                .all_caches(cap)
                .sanitizer(true)
                .build(),
        );
        let rig = fx.rig();
        let (mut t, _) = s1_stream(&fx, &rig, 1, 1);
        let pa = fx.page();
        for i in 0..8u64 {
            t.map(i << 12, pa, 3, RW);
        }
        for _ in 0..2 {
            for i in 0..8u64 {
                assert_eq!(
                    fx.smmu
                        .translate(1, None, (i << 12) | 4, Access::READ)
                        .unwrap()
                        .pa
                        .0,
                    pa + 4
                );
            }
        }
        assert!(fx.smmu.tlb_len() <= 2);
    }
}

#[test]
fn el2_stream_world() {
    both(el2_stream_world_body);
}

fn el2_stream_world_body() {
    let fx = Fx::new();
    let mut rig = fx.rig();
    let (mut t, cd) = s1_stream(&fx, &rig, 1, 1);
    let pa = fx.page();
    t.map(0x1000, pa, 3, RW);
    rig.set_ste(2, SteBits::s1(cd, 0, 0).strw(2));
    let tr = fx
        .smmu
        .translate(
            2,
            None,
            0x1000,
            Access {
                kind: AccessKind::Read,
                privileged: true,
            },
        )
        .unwrap();
    assert_eq!(tr.pa.0, pa);
    // EL2 TLBIs drop it, NH TLBIs do not.
    t.map(0x1000, pa, 3, RW | pte::S1_RDONLY);
    rig.submit_sync(&[iommu_testkit::smmu::cmd::tlbi_nh_all(0)]);
    assert!(
        fx.smmu.translate(2, None, 0x1000, Access::WRITE).is_ok(),
        "stale EL2 entry survives NH_ALL"
    );
    rig.submit_sync(&[iommu_testkit::smmu::cmd::tlbi_el2_all()]);
    assert!(fx.smmu.translate(2, None, 0x1000, Access::WRITE).is_err());
    fx.smmu.take_sanitizer_reports();
}

#[test]
fn address_size_faults_and_ste_fetch_abort() {
    both(address_size_body);
}

fn address_size_body() {
    let fx = Fx::new();
    let rig = fx.rig();
    // CD.IPS = 32 bits: a leaf output above 4 GiB is an address size fault.
    let mut t = Tables::s1(fx.m(), 12, 48);
    t.map(0x1000, 0x1_0000_0000, 3, RW);
    t.map(0x2000, 0x8000_0000, 3, RW);
    let cd = fx.cd_table(0);
    CdBits::s1(1, t.root, 48, 12).ips(0).write(fx.m(), cd);
    rig.set_ste(1, SteBits::s1(cd, 0, 0));
    assert_eq!(
        fx.smmu
            .translate(1, None, 0x1000, Access::READ)
            .unwrap_err()
            .id(),
        Some(EventId::FAddrSize)
    );
    assert_eq!(
        fx.smmu
            .translate(1, None, 0x2000, Access::READ)
            .unwrap()
            .pa
            .0,
        0x8000_0000
    );
    // IPS above IDR5.OAS is capped to OAS: with a 40-bit OAS, CD.IPS = 48 bits
    // still faults an output at 2^40.
    {
        let fx = Fx::with(SmmuConfig::builder().oas_bits(40).sanitizer(true).build());
        let rig = fx.rig();
        let mut t2 = Tables::s1(fx.m(), 12, 48);
        t2.map(0x1000, 1 << 40, 3, RW);
        let cd2 = fx.cd_table(0);
        CdBits::s1(2, t2.root, 48, 12).ips(5).write(fx.m(), cd2);
        rig.set_ste(2, SteBits::s1(cd2, 0, 0));
        assert_eq!(
            fx.smmu
                .translate(2, None, 0x1000, Access::READ)
                .unwrap_err()
                .id(),
            Some(EventId::FAddrSize)
        );
    }
    // Stream table in unbacked memory: F_STE_FETCH with the STE address.
    fx.smmu.write64(0x80, 0x20_0000_0000);
    fx.smmu.write32(0x88, 6);
    let f = fx.smmu.translate(9, None, 0, Access::READ).unwrap_err();
    assert_eq!(f.id(), Some(EventId::FSteFetch));
    assert_eq!(f.event.unwrap().fetch_addr, 0x20_0000_0000 + 9 * 64);
    fx.smmu.take_sanitizer_reports();
}
