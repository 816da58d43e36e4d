//! Each sanitizer report triggered by a crafted bad sequence and silent on the
//! correct one.

use iommu_testkit::smmu::cmd::{self, Range};
use iommu_testkit::smmu::{CdBits, SteBits, Tables};
use iommu_types::PhysAddr;
use smmuv3_model::{Access, Report, TornKind};

use crate::common::*;

fn read(fx: &Fx, sid: u32, va: u64) -> u64 {
    fx.smmu.translate(sid, None, va, Access::READ).unwrap().pa.0
}

fn leaf_tlbi(asid: u16, va: u64) -> [u64; 2] {
    cmd::tlbi_nh_va(
        0,
        asid,
        va,
        Range {
            leaf: true,
            ..Default::default()
        },
    )
}

#[test]
fn stale_tlb_use_in_window_before_sync_is_silent() {
    let fx = Fx::new();
    let mut rig = fx.rig();
    let (mut t, _) = s1_stream(&fx, &rig, 1, 5);
    let (a, b) = (fx.page(), fx.page());
    t.map(0x1000, a, 3, RW);
    assert_eq!(read(&fx, 1, 0x1000), a);
    // Store, then translations before any sync: the cached old value is legal.
    t.map(0x1000, b, 3, RW);
    assert_eq!(read(&fx, 1, 0x1000), a, "old value still cached");
    assert_eq!(read(&fx, 1, 0x1000), a);
    // Invalidate + sync: the new value, and nothing reported.
    rig.submit_sync(&[leaf_tlbi(5, 0x1000)]);
    assert_eq!(read(&fx, 1, 0x1000), b);
    assert_eq!(fx.smmu.sanitizer_reports(), vec![]);
    // Same page unmapped and remapped repeatedly (same value each time): every
    // window is judged on its own, not on an earlier one's record.
    for _ in 0..3 {
        t.map(0x1000, a, 3, RW);
        assert_eq!(read(&fx, 1, 0x1000), b);
        rig.submit_sync(&[leaf_tlbi(5, 0x1000)]);
        assert_eq!(read(&fx, 1, 0x1000), a);
        t.map(0x1000, b, 3, RW);
        assert_eq!(read(&fx, 1, 0x1000), a);
        rig.submit_sync(&[leaf_tlbi(5, 0x1000)]);
        assert_eq!(read(&fx, 1, 0x1000), b);
    }
    assert_eq!(fx.smmu.sanitizer_reports(), vec![]);
}

#[test]
fn stale_tlb_use_after_sync_without_invalidation_reported() {
    let fx = Fx::new();
    let mut rig = fx.rig();
    let (mut t, _) = s1_stream(&fx, &rig, 1, 5);
    let (a, b) = (fx.page(), fx.page());
    let slot = t.map(0x1000, a, 3, RW);
    assert_eq!(read(&fx, 1, 0x1000), a);
    // Bad: change, use (legal so far), sync WITHOUT the TLBI, use again.
    t.map(0x1000, b, 3, RW);
    assert_eq!(read(&fx, 1, 0x1000), a);
    assert_eq!(fx.smmu.sanitizer_reports(), vec![]);
    let before = fx.smmu.stats().syncs;
    rig.submit_sync(&[]);
    assert_eq!(read(&fx, 1, 0x1000), a, "stale");
    let r = fx.smmu.take_sanitizer_reports();
    assert!(
        matches!(r.as_slice(), [Report::StaleTlb { sid: 1, asid: 5, vmid: 0, addr: 0x1000, desc_pa, cached, current, observed_sync, sync, .. }]
            if *desc_pa == slot && cached & !0xFFF == a && current & !0xFFF == b && *observed_sync == before && *sync == before + 1),
        "{r:?}"
    );
}

#[test]
fn stale_tlb_store_then_sync_then_use_reported() {
    // No translation between the store and the sync: the sync itself observes that
    // a surviving entry's descriptor changed.
    let fx = Fx::new();
    let mut rig = fx.rig();
    let (mut t, _) = s1_stream(&fx, &rig, 1, 5);
    let (a, b) = (fx.page(), fx.page());
    t.map(0x1000, a, 3, RW);
    assert_eq!(read(&fx, 1, 0x1000), a);
    t.map(0x1000, b, 3, RW);
    rig.submit_sync(&[]);
    assert_eq!(read(&fx, 1, 0x1000), a, "stale");
    let r = fx.smmu.take_sanitizer_reports();
    assert!(
        matches!(
            r.as_slice(),
            [Report::StaleTlb {
                sid: 1,
                addr: 0x1000,
                ..
            }]
        ),
        "{r:?}"
    );
    // A TLBI for another address does not help either.
    t.map(0x1000, fx.page(), 3, RW);
    rig.submit_sync(&[leaf_tlbi(5, 0x9000)]);
    read(&fx, 1, 0x1000);
    let r = fx.smmu.take_sanitizer_reports();
    assert!(
        matches!(
            r.as_slice(),
            [Report::StaleTlb {
                sid: 1,
                addr: 0x1000,
                ..
            }]
        ),
        "{r:?}"
    );
}

#[test]
fn stale_config_reported_only_after_a_sync() {
    let fx = Fx::new();
    let mut rig = fx.rig();
    rig.set_ste(2, SteBits::bypass());
    fx.smmu.translate(2, None, 0, Access::READ).unwrap();
    // Unused bits of a live STE may change without invalidation: silent, even
    // across syncs.
    rig.set_ste(2, SteBits::bypass().strw(2).vmid(3));
    fx.smmu.translate(2, None, 0, Access::READ).unwrap();
    rig.submit_sync(&[]);
    fx.smmu.translate(2, None, 0, Access::READ).unwrap();
    assert_eq!(fx.smmu.sanitizer_reports(), vec![]);
    // Config changes (bypass -> abort): before any sync the cached STE is legal.
    rig.set_ste(2, SteBits::abort());
    assert!(
        fx.smmu.translate(2, None, 0, Access::READ).is_ok(),
        "stale bypass STE"
    );
    assert_eq!(fx.smmu.sanitizer_reports(), vec![]);
    // A sync without CFGI_STE: the next use is reported.
    let before = fx.smmu.stats().syncs;
    rig.submit_sync(&[cmd::cfgi_ste(3, true)]);
    assert!(fx.smmu.translate(2, None, 0, Access::READ).is_ok());
    let r = fx.smmu.take_sanitizer_reports();
    assert!(
        matches!(
            r.as_slice(),
            [Report::StaleConfig {
                sid: 2,
                ssid: None,
                observed_sync,
                sync,
                ..
            }] if *observed_sync == before && *sync == before + 1
        ),
        "{r:?}"
    );
    rig.submit_sync(&[cmd::cfgi_ste(2, true)]);
    assert!(fx.smmu.translate(2, None, 0, Access::READ).is_err());
    assert_eq!(fx.smmu.sanitizer_reports(), vec![]);
}

#[test]
fn stale_config_store_then_sync_without_cfgi_reported() {
    let fx = Fx::new();
    let mut rig = fx.rig();
    rig.set_ste(2, SteBits::bypass());
    fx.smmu.translate(2, None, 0, Access::READ).unwrap();
    rig.set_ste(2, SteBits::abort());
    rig.submit_sync(&[]);
    assert!(fx.smmu.translate(2, None, 0, Access::READ).is_ok());
    let r = fx.smmu.take_sanitizer_reports();
    assert!(
        matches!(r.as_slice(), [Report::StaleConfig { sid: 2, .. }]),
        "{r:?}"
    );
}

#[test]
fn config_update_with_translations_between_stores_is_silent() {
    // Correct sequence: several 64-bit stores with translations interleaved, then
    // CFGI + SYNC. Every translation before the sync may use the old STE.
    let fx = Fx::new();
    let mut rig = fx.rig();
    rig.set_ste(2, SteBits::bypass());
    fx.smmu.translate(2, None, 0, Access::READ).unwrap();
    let pa = rig.ste_addr(2);
    let new = SteBits::abort();
    let mut words = [0u64; 8];
    new.write(fx.m(), pa);
    fx.m().read_words(PhysAddr(pa), &mut words).unwrap();
    rig.set_ste(2, SteBits::bypass());
    for (i, w) in words.iter().enumerate().rev() {
        fx.m().write_u64(PhysAddr(pa + 8 * i as u64), *w).unwrap();
        let _ = fx.smmu.translate(2, None, 0, Access::READ);
    }
    rig.submit_sync(&[cmd::cfgi_ste(2, true)]);
    assert!(fx.smmu.translate(2, None, 0, Access::READ).is_err());
    assert_eq!(fx.smmu.sanitizer_reports(), vec![]);
}

#[test]
fn tlb_conflict_when_table_replaced_by_block_without_invalidation() {
    // Without a walk cache (which would otherwise keep using the old level-3 table).
    let cfg = smmuv3_model::SmmuConfig::builder()
        .walk_cache(smmuv3_model::Capacity::Disabled)
        .sanitizer(true)
        .build();
    let fx = Fx::with(cfg);
    let rig = fx.rig();
    let (mut t, _) = s1_stream(&fx, &rig, 1, 5);
    let pa = fx.page();
    t.map(0x20_1000, pa, 3, RW);
    fx.smmu.translate(1, None, 0x20_1000, Access::READ).unwrap();
    // Replace the level-2 table descriptor by a 2M block (different output) without TLBI.
    let l2 = t.slot(0x20_0000, 2, 0);
    fx.m()
        .write_u64(PhysAddr(l2), 0x4000_0000 | RW | 1)
        .unwrap();
    fx.smmu.translate(1, None, 0x20_5000, Access::READ).unwrap(); // walks: the block
    let r = fx.smmu.take_sanitizer_reports();
    assert!(
        r.iter().any(|x| matches!(
            x,
            Report::TlbConflict {
                sid: 1,
                vmid: 0,
                asid: 5,
                addr: 0x20_1000,
                ..
            }
        )),
        "{r:?}"
    );
    // Correct: invalidate (non-leaf, since a table went) and sync first.
    let fx = Fx::new();
    let mut rig = fx.rig();
    let (mut t, _) = s1_stream(&fx, &rig, 1, 5);
    t.map(0x20_1000, pa, 3, RW);
    fx.smmu.translate(1, None, 0x20_1000, Access::READ).unwrap();
    let l2 = t.slot(0x20_0000, 2, 0);
    fx.m()
        .write_u64(PhysAddr(l2), 0x4000_0000 | RW | 1)
        .unwrap();
    rig.submit_sync(&[cmd::tlbi_nh_va(
        0,
        5,
        0x20_0000,
        Range {
            tg: 1,
            scale: 9,
            num: 0,
            ttl: 0,
            leaf: false,
        },
    )]);
    fx.smmu.translate(1, None, 0x20_5000, Access::READ).unwrap();
    assert_eq!(fx.smmu.sanitizer_reports(), vec![]);
}

#[test]
fn asid_conflict_between_live_cds() {
    let fx = Fx::new();
    let rig = fx.rig();
    let (_t1, _) = s1_stream(&fx, &rig, 1, 7);
    let (_t2, _) = s1_stream(&fx, &rig, 2, 7); // same ASID, other tables
    fx.smmu.translate(1, None, 0, Access::READ).unwrap_err();
    fx.smmu.translate(2, None, 0, Access::READ).unwrap_err();
    let r = fx.smmu.take_sanitizer_reports();
    assert!(
        matches!(
            r.as_slice(),
            [Report::AsidConflict {
                vmid: 0,
                asid: 7,
                a: (1, 0),
                b: (2, 0),
                ..
            }]
        ),
        "{r:?}"
    );
    // Sharing an ASID for the same tables (one domain, two devices) is fine.
    let fx = Fx::new();
    let rig = fx.rig();
    let t = Tables::s1(fx.m(), 12, 48);
    for sid in [1, 2] {
        let cd = fx.cd_table(0);
        CdBits::s1(7, t.root, 48, 12).write(fx.m(), cd);
        rig.set_ste(sid, SteBits::s1(cd, 0, 0));
        fx.smmu.translate(sid, None, 0, Access::READ).unwrap_err();
    }
    assert_eq!(fx.smmu.sanitizer_reports(), vec![]);
}

#[test]
fn torn_ste_update_reported_and_hitless_update_silent() {
    let fx = Fx::new();
    let mut rig = fx.rig();
    let (_t, cd) = s1_stream(&fx, &rig, 1, 5);
    let t2 = Tables::new(fx.m(), 12, 1, 40);
    fx.smmu.translate(1, None, 0, Access::READ).unwrap_err();
    // Bad: S1 -> S2 by plain dword stores, a command consumed in the middle.
    let target = SteBits::s2(4, 12, 1, 40, 5, t2.root);
    let pa = rig.ste_addr(1);
    fx.m().write_u64(PhysAddr(pa), target.0[0]).unwrap(); // Config now S2, d2/d3 still old
    rig.submit_sync(&[cmd::cfgi_ste(1, true)]);
    for i in 1..8 {
        fx.m()
            .write_u64(PhysAddr(pa + 8 * i), target.0[i as usize])
            .unwrap();
    }
    rig.submit_sync(&[cmd::cfgi_ste(1, true)]);
    let r = fx.smmu.take_sanitizer_reports();
    assert!(
        r.iter().any(|x| matches!(
            x,
            Report::TornUpdate {
                sid: 1,
                ssid: None,
                kind: TornKind::Illegal(_),
                ..
            }
        )),
        "{r:?}"
    );
    // Correct breaking update: V=0, sync; dwords 1..7, sync; dword 0, sync.
    let fx = Fx::new();
    let mut rig = fx.rig();
    let (_t, _cd) = s1_stream(&fx, &rig, 1, 5);
    let t2 = Tables::new(fx.m(), 12, 1, 40);
    fx.smmu.translate(1, None, 0, Access::READ).unwrap_err();
    let target = SteBits::s2(4, 12, 1, 40, 5, t2.root);
    let pa = rig.ste_addr(1);
    fx.m().write_u64(PhysAddr(pa), 0).unwrap();
    rig.submit_sync(&[cmd::cfgi_ste(1, true)]);
    for i in 1..8 {
        fx.m()
            .write_u64(PhysAddr(pa + 8 * i), target.0[i as usize])
            .unwrap();
    }
    rig.submit_sync(&[cmd::cfgi_ste(1, true)]);
    fx.m().write_u64(PhysAddr(pa), target.0[0]).unwrap();
    rig.submit_sync(&[cmd::cfgi_ste(1, true)]);
    fx.smmu.translate(1, None, 0, Access::READ).unwrap_err();
    assert_eq!(fx.smmu.sanitizer_reports(), vec![]);
    let _ = cd;
}

#[test]
fn torn_multi_dword_change_of_live_cd() {
    let fx = Fx::new();
    let mut rig = fx.rig();
    let (_t, cd) = s1_stream(&fx, &rig, 1, 5);
    let t2 = Tables::s1(fx.m(), 12, 48);
    fx.smmu.translate(1, None, 0, Access::READ).unwrap_err();
    // Changing ASID (d0) and TTB0 (d1) of a live CD in place: two used dwords.
    let new = CdBits::s1(6, t2.root, 48, 12);
    fx.m().write_u64(PhysAddr(cd + 8), new.0[1]).unwrap();
    fx.m().write_u64(PhysAddr(cd), new.0[0]).unwrap();
    rig.submit_sync(&[cmd::cfgi_cd(1, 0, true)]);
    let r = fx.smmu.take_sanitizer_reports();
    assert!(
        r.iter().any(|x| matches!(
            x,
            Report::TornUpdate {
                sid: 1,
                ssid: Some(0),
                kind: TornKind::MultiDword { dwords: 0b11 },
                ..
            }
        )),
        "{r:?}"
    );
    // Hitless single-dword change (TTB0 only) is silent.
    let fx = Fx::new();
    let mut rig = fx.rig();
    let (_t, cd) = s1_stream(&fx, &rig, 1, 5);
    fx.smmu.translate(1, None, 0, Access::READ).unwrap_err();
    let t2 = Tables::s1(fx.m(), 12, 48);
    fx.m()
        .write_u64(PhysAddr(cd + 8), CdBits::s1(5, t2.root, 48, 12).0[1])
        .unwrap();
    rig.submit_sync(&[cmd::cfgi_cd(1, 0, true), cmd::tlbi_nh_asid(0, 5)]);
    fx.smmu.translate(1, None, 0, Access::READ).unwrap_err();
    assert_eq!(fx.smmu.sanitizer_reports(), vec![]);
}

#[test]
fn stale_grace_counts_syncs_and_audit_catches_a_missing_invalidation() {
    let cfg = smmuv3_model::SmmuConfig::builder()
        .sanitizer(true)
        .stale_grace_syncs(2)
        .build();
    let fx = Fx::with(cfg);
    let mut rig = fx.rig();
    let (mut t, _) = s1_stream(&fx, &rig, 1, 5);
    let (a, b) = (fx.page(), fx.page());
    let slot = t.map(0x1000, a, 3, RW);
    assert_eq!(read(&fx, 1, 0x1000), a);
    t.map(0x1000, b, 3, RW);
    read(&fx, 1, 0x1000);
    rig.submit_sync(&[]);
    read(&fx, 1, 0x1000);
    assert_eq!(
        fx.smmu.sanitizer_reports(),
        vec![],
        "one sync is within the grace"
    );
    rig.submit_sync(&[]);
    read(&fx, 1, 0x1000);
    let r = fx.smmu.take_sanitizer_reports();
    assert!(
        matches!(
            r.as_slice(),
            [Report::StaleTlb {
                sid: 1,
                addr: 0x1000,
                ..
            }]
        ),
        "{r:?}"
    );
    // The audit sees the surviving stale entry without any further use.
    let r = fx.smmu.sanitizer_audit();
    assert!(
        matches!(r.as_slice(), [Report::StaleTlb { sid: u32::MAX, asid: 5, addr: 0x1000, desc_pa, .. }] if *desc_pa == slot),
        "{r:?}"
    );
    // After the invalidation the audit is silent.
    fx.smmu.take_sanitizer_reports();
    rig.submit_sync(&[leaf_tlbi(5, 0x1000)]);
    assert_eq!(read(&fx, 1, 0x1000), b);
    assert_eq!(fx.smmu.sanitizer_audit(), vec![]);
    assert_eq!(fx.smmu.sanitizer_reports(), vec![]);
}
