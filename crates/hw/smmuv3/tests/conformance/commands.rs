//! Command effects, CMD_SYNC semantics, range invalidation and command errors.

use iommu_testkit::smmu::cmd::{self, Range};
use iommu_testkit::smmu::{CdBits, SteBits, Tables, pte, reg};
use iommu_types::{Mmio, PhysAddr};
use smmuv3_model::{Access, SmmuConfig};

use crate::common::*;

/// Map `n` pages at 0 → `old`, warm the TLB, then remap them to `new` without
/// invalidation. Returns (tables, old base, new base).
fn warm_and_remap<'m>(fx: &'m Fx, t: &mut Tables<'m>, sid: u32, n: u64) -> (u64, u64) {
    let old = fx.alloc(n * 4096);
    let new = fx.alloc(n * 4096);
    for i in 0..n {
        t.map(i << 12, old + (i << 12), 3, RW);
    }
    for i in 0..n {
        assert_eq!(
            fx.smmu
                .translate(sid, None, i << 12, Access::READ)
                .unwrap()
                .pa
                .0,
            old + (i << 12)
        );
    }
    for i in 0..n {
        t.map(i << 12, new + (i << 12), 3, RW);
    }
    (old, new)
}

/// Which of pages 0..n now translate to the new output.
fn fresh_pages(fx: &Fx, sid: u32, n: u64, new: u64) -> Vec<u64> {
    (0..n)
        .filter(|i| {
            fx.smmu
                .translate(sid, None, i << 12, Access::READ)
                .unwrap()
                .pa
                .0
                == new + (i << 12)
        })
        .collect()
}

#[test]
fn tlbi_takes_effect_only_at_cmd_sync() {
    both(tlbi_takes_effect_only_at_cmd_sync_body);
}

fn tlbi_takes_effect_only_at_cmd_sync_body() {
    let fx = Fx::new();
    let mut rig = fx.rig();
    let (mut t, _) = s1_stream(&fx, &rig, 1, 5);
    let (old, new) = warm_and_remap(&fx, &mut t, 1, 1);
    rig.submit(&[cmd::tlbi_nh_va(
        0,
        5,
        0,
        Range {
            leaf: true,
            ..Default::default()
        },
    )]);
    assert_eq!(rig.cons(), rig.prod, "consumed");
    assert_eq!(fx.smmu.pending_invalidations(), 1);
    assert_eq!(
        fx.smmu.translate(1, None, 0, Access::READ).unwrap().pa.0,
        old,
        "not visible before CMD_SYNC"
    );
    rig.submit(&[cmd::sync(0, 0, 0)]);
    assert_eq!(
        fx.smmu.translate(1, None, 0, Access::READ).unwrap().pa.0,
        new
    );
    let s = fx.smmu.stats();
    assert_eq!((s.syncs, s.commands[0x12], s.commands[0x46]), (1, 1, 1));
    fx.smmu.take_sanitizer_reports();
}

#[test]
fn cmd_sync_msi_completion() {
    let fx = Fx::new();
    let mut rig = fx.rig();
    let slot = fx.page();
    fx.m().write_u32(PhysAddr(slot), 0xFFFF_FFFF).unwrap();
    rig.submit(&[cmd::sync(1, slot, 0)]);
    assert_eq!(fx.m().read_u32(PhysAddr(slot)).unwrap(), 0);
    rig.submit(&[cmd::sync(1, slot + 8, 0x1234_5678)]);
    assert_eq!(fx.m().read_u32(PhysAddr(slot + 8)).unwrap(), 0x1234_5678);
    // MSI to unbacked memory: GERROR.MSI_CMDQ_ABT_ERR.
    rig.submit(&[cmd::sync(1, 0x10, 1)]);
    assert_ne!(fx.smmu.read32(reg::GERROR) & (1 << 4), 0);
}

fn asid_fixture(fx: &Fx) -> (iommu_testkit::smmu::SmmuRig<'_>, Vec<(u64, u64)>) {
    // Streams 1 (ASID 1, VMID 0), 2 (ASID 2, VMID 0), 3 (ASID 1, VMID 4).
    let rig = fx.rig();
    let mut outs = Vec::new();
    for (sid, asid, vmid) in [(1u32, 1u16, 0u16), (2, 2, 0), (3, 1, 4)] {
        let mut t = Tables::s1(fx.m(), 12, 48);
        let cd = fx.cd_table(0);
        CdBits::s1(asid, t.root, 48, 12).write(fx.m(), cd);
        rig.set_ste(sid, SteBits::s1(cd, 0, 0).vmid(vmid));
        let (old, new) = warm_and_remap(fx, &mut t, sid, 2);
        outs.push((old, new));
    }
    (rig, outs)
}

fn states(fx: &Fx, outs: &[(u64, u64)]) -> Vec<bool> {
    // true = fresh (invalidated) for page 0 of each stream.
    (0..3)
        .map(|i| {
            fx.smmu
                .translate(i as u32 + 1, None, 0, Access::READ)
                .unwrap()
                .pa
                .0
                == outs[i].1
        })
        .collect()
}

#[test]
fn tlbi_scopes_asid_vmid_all() {
    both(tlbi_scopes_asid_vmid_all_body);
}

fn tlbi_scopes_asid_vmid_all_body() {
    let fx = Fx::new();
    let (mut rig, outs) = asid_fixture(&fx);
    rig.submit_sync(&[cmd::tlbi_nh_asid(0, 1)]);
    assert_eq!(states(&fx, &outs), [true, false, false]);
    rig.submit_sync(&[cmd::tlbi_nh_all(4)]);
    assert_eq!(states(&fx, &outs), [true, false, true]);
    rig.submit_sync(&[cmd::tlbi_nsnh_all()]);
    assert_eq!(states(&fx, &outs), [true, true, true]);

    let fx = Fx::new();
    let (mut rig, outs) = asid_fixture(&fx);
    rig.submit_sync(&[cmd::tlbi_s12_vmall(0)]);
    assert_eq!(states(&fx, &outs), [true, true, false]);

    let fx = Fx::new();
    let (mut rig, outs) = asid_fixture(&fx);
    rig.submit_sync(&[cmd::tlbi_nh_vaa(0, 0, Range::default())]);
    assert_eq!(states(&fx, &outs), [true, true, false]);
    // Page 1 of stream 1 is still stale after a VAA of page 0.
    assert_eq!(
        fx.smmu
            .translate(1, None, 0x1000, Access::READ)
            .unwrap()
            .pa
            .0,
        outs[0].0 + 0x1000
    );

    let fx = Fx::new();
    let (mut rig, outs) = asid_fixture(&fx);
    rig.submit_sync(&[cmd::tlbi_nh_va(0, 2, 0, Range::default())]);
    assert_eq!(states(&fx, &outs), [false, true, false]);
    rig.submit_sync(&[
        cmd::tlbi_el2_all(),
        cmd::tlbi_el2_asid(1),
        cmd::tlbi_el2_va(1, 0, Range::default()),
    ]);
    assert_eq!(
        states(&fx, &outs),
        [false, true, false],
        "EL2 TLBIs leave NS-EL1 entries alone"
    );
    rig.submit_sync(&[cmd::tlbi_el2_vaa(0, Range::default())]);
    assert_eq!(states(&fx, &outs), [false, true, false]);
}

#[test]
fn range_invalidation_covers_exactly_the_encoded_range() {
    both(range_invalidation_covers_exactly_the_encoded_range_body);
}

fn range_invalidation_covers_exactly_the_encoded_range_body() {
    // (TG, SCALE, NUM, start page) -> pages covered = (NUM+1) << SCALE granules (4K).
    let cases: &[(u64, u64, u64, u64)] = &[
        (1, 0, 1, 3),
        (1, 0, 4, 0),
        (1, 1, 2, 2),
        (1, 2, 0, 4),
        (1, 3, 0, 8),
        (1, 0, 31, 0),
    ];
    for &(tg, scale, num, start) in cases {
        let fx = Fx::new();
        let mut rig = fx.rig();
        let (mut t, _) = s1_stream(&fx, &rig, 1, 5);
        let n = 40;
        let (_, new) = warm_and_remap(&fx, &mut t, 1, n);
        let r = Range {
            tg,
            scale,
            num,
            ttl: 3,
            leaf: true,
        };
        rig.submit_sync(&[cmd::tlbi_nh_va(0, 5, start << 12, r)]);
        let count = (num + 1) << scale;
        let want: Vec<u64> = (start..(start + count).min(n)).collect();
        assert_eq!(
            fresh_pages(&fx, 1, n, new),
            want,
            "tg={tg} scale={scale} num={num}"
        );
        fx.smmu.take_sanitizer_reports();
    }
}

#[test]
fn range_invalidation_with_16k_and_64k_granules() {
    both(range_invalidation_with_16k_and_64k_granules_body);
}

fn range_invalidation_with_16k_and_64k_granules_body() {
    for (g, tg) in [(14u32, 2u64), (16, 3)] {
        let fx = Fx::new();
        let mut rig = fx.rig();
        let mut t = Tables::s1(fx.m(), g, 48);
        let cd = fx.cd_table(0);
        CdBits::s1(5, t.root, 48, g).write(fx.m(), cd);
        rig.set_ste(1, SteBits::s1(cd, 0, 0));
        let gs = 1u64 << g;
        let old = fx.alloc(8 * gs);
        let new = fx.alloc(8 * gs);
        for i in 0..8 {
            t.map(i * gs, old + i * gs, 3, RW);
            fx.smmu.translate(1, None, i * gs, Access::READ).unwrap();
            t.map(i * gs, new + i * gs, 3, RW);
        }
        // NUM = 1, SCALE = 1: 4 granules from granule 2.
        rig.submit_sync(&[cmd::tlbi_nh_va(
            0,
            5,
            2 * gs,
            Range {
                tg,
                scale: 1,
                num: 1,
                ttl: 0,
                leaf: false,
            },
        )]);
        let fresh: Vec<u64> = (0..8)
            .filter(|i| {
                fx.smmu
                    .translate(1, None, i * gs, Access::READ)
                    .unwrap()
                    .pa
                    .0
                    == new + i * gs
            })
            .collect();
        assert_eq!(fresh, vec![2, 3, 4, 5], "granule {g}");
        fx.smmu.take_sanitizer_reports();
    }
}

#[test]
fn tg0_single_address_invalidation_is_honoured() {
    both(tg0_single_address_invalidation_is_honoured_body);
}

fn tg0_single_address_invalidation_is_honoured_body() {
    // Seed 001: a TG=0 invalidation is legal and must not be ignored.
    let fx = Fx::new();
    let mut rig = fx.rig();
    let (mut t, _) = s1_stream(&fx, &rig, 1, 5);
    let (_, new) = warm_and_remap(&fx, &mut t, 1, 4);
    rig.submit_sync(&[cmd::tlbi_nh_va(0, 5, 0x2000, Range::default())]);
    assert_eq!(fresh_pages(&fx, 1, 4, new), vec![2]);
    // TG = 0 with a block: the whole block entry containing the address goes.
    let fx = Fx::new();
    let mut rig = fx.rig();
    let (mut t, _) = s1_stream(&fx, &rig, 1, 5);
    t.map(0x20_0000, 0x4000_0000, 2, RW);
    fx.smmu.translate(1, None, 0x20_0000, Access::READ).unwrap();
    t.map(0x20_0000, 0x4020_0000, 2, RW);
    rig.submit_sync(&[cmd::tlbi_nh_va(0, 5, 0x2F_F000, Range::default())]);
    assert_eq!(
        fx.smmu
            .translate(1, None, 0x20_0010, Access::READ)
            .unwrap()
            .pa
            .0,
        0x4020_0010
    );
    fx.smmu.take_sanitizer_reports();
}

#[test]
fn ttl_hint_filters_by_level() {
    both(ttl_hint_filters_by_level_body);
}

fn ttl_hint_filters_by_level_body() {
    let fx = Fx::new();
    let mut rig = fx.rig();
    let (mut t, _) = s1_stream(&fx, &rig, 1, 5);
    t.map(0x20_0000, 0x4000_0000, 2, RW); // 2M block: level 2
    fx.smmu.translate(1, None, 0x20_0000, Access::READ).unwrap();
    t.map(0x20_0000, 0x4020_0000, 2, RW);
    // TTL = 3 (level-3 leaves only) does not remove a level-2 block.
    rig.submit_sync(&[cmd::tlbi_nh_va(
        0,
        5,
        0x20_0000,
        Range {
            tg: 1,
            scale: 9,
            num: 0,
            ttl: 3,
            leaf: true,
        },
    )]);
    assert_eq!(
        fx.smmu
            .translate(1, None, 0x20_0000, Access::READ)
            .unwrap()
            .pa
            .0,
        0x4000_0000
    );
    rig.submit_sync(&[cmd::tlbi_nh_va(
        0,
        5,
        0x20_0000,
        Range {
            tg: 1,
            scale: 9,
            num: 0,
            ttl: 2,
            leaf: true,
        },
    )]);
    assert_eq!(
        fx.smmu
            .translate(1, None, 0x20_0000, Access::READ)
            .unwrap()
            .pa
            .0,
        0x4020_0000
    );
    fx.smmu.take_sanitizer_reports();
}

#[test]
fn reserved_range_encoding_raises_cerror_ill_and_resumes_after_ack() {
    both(reserved_range_encoding_raises_cerror_ill_and_resumes_after_ack_body);
}

fn reserved_range_encoding_raises_cerror_ill_and_resumes_after_ack_body() {
    let fx = Fx::new();
    let mut rig = fx.rig();
    let (mut t, _) = s1_stream(&fx, &rig, 1, 5);
    let (_, new) = warm_and_remap(&fx, &mut t, 1, 2);
    let bad = cmd::tlbi_nh_va(
        0,
        5,
        0,
        Range {
            tg: 1,
            scale: 0,
            num: 0,
            ttl: 0,
            leaf: false,
        },
    );
    rig.submit(&[
        cmd::tlbi_nh_va(0, 5, 0x1000, Range::default()),
        bad,
        cmd::sync(0, 0, 0),
    ]);
    let cons = rig.cons();
    assert_eq!(cons & 0xFF, 1, "CONS points at the bad command");
    assert_eq!((cons >> 24) & 0x7F, 1, "CERROR_ILL");
    let gerror = fx.smmu.read32(reg::GERROR);
    assert_eq!(gerror & 1, 1, "GERROR.CMDQ_ERR toggled");
    assert!(fx.smmu.cmdq_error_active());
    // Nothing after the bad command ran: the first TLBI is still pending.
    assert_eq!(fresh_pages(&fx, 1, 2, new), Vec::<u64>::new());
    // Further PROD writes do nothing while the error is active.
    rig.submit(&[cmd::sync(0, 0, 0)]);
    assert_eq!(rig.cons() & 0xFF, 1);
    // Software replaces the bad command with a CMD_SYNC and acknowledges.
    let base = rig.cmdq.0;
    fx.m()
        .write_words(PhysAddr(base + 16), &cmd::sync(0, 0, 0))
        .unwrap();
    fx.smmu.write32(reg::GERRORN, gerror);
    assert!(!fx.smmu.cmdq_error_active());
    assert_eq!(rig.cons(), rig.prod, "queue drained after the ack");
    assert_eq!(fresh_pages(&fx, 1, 2, new), vec![1]);
    assert_eq!(fx.smmu.stats().command_errors, 1);
    fx.smmu.take_sanitizer_reports();
}

#[test]
fn illegal_commands_raise_cerror_ill() {
    let cases: Vec<[u64; 2]> = vec![
        cmd::raw(0x77),
        cmd::tlbi_nh_va(
            0,
            1,
            0,
            Range {
                tg: 1,
                scale: 0,
                num: 1,
                ttl: 0,
                leaf: false,
            },
        ),
        cmd::atc_inv(1, None, 0, 0),
        {
            let mut c = cmd::sync(0, 0, 0);
            c[0] |= 3 << 12;
            c
        },
        cmd::raw(0x44),
        cmd::raw(0x07),
        cmd::raw(0x18),
        {
            let mut c = cmd::cfgi_ste(1, true);
            c[0] |= 1 << 10; // SSec from the non-secure queue
            c
        },
    ];
    for (i, c) in cases.into_iter().enumerate() {
        // RIL and ATS not implemented: range TLBIs and ATC_INV are illegal.
        let fx = Fx::with(SmmuConfig::builder().ril(false).ats(false).build());
        let mut rig = fx.rig();
        rig.submit(&[cmd::sync(0, 0, 0), c, cmd::sync(0, 0, 0)]);
        assert_eq!(rig.cons() & 0xFF, 1, "case {i}");
        assert_eq!((rig.cons() >> 24) & 0x7F, 1, "case {i}: CERROR_ILL");
        assert_eq!(fx.smmu.read32(reg::GERROR) & 1, 1, "case {i}");
        assert_eq!(
            fx.smmu.stats().syncs,
            1,
            "case {i}: the sync after the bad command waits"
        );
    }
}

#[test]
fn cfgi_ste_and_cd_commands() {
    both(cfgi_ste_and_cd_commands_body);
}

fn cfgi_ste_and_cd_commands_body() {
    let fx = Fx::new();
    let mut rig = fx.rig();
    let (mut t, cd) = s1_stream(&fx, &rig, 1, 5);
    let pa = fx.page();
    t.map(0x1000, pa, 3, RW);
    fx.smmu.translate(1, None, 0x1000, Access::READ).unwrap();
    // Switch the STE to bypass without invalidation: still translating (cached STE).
    rig.set_ste(1, SteBits::bypass());
    assert_eq!(
        fx.smmu
            .translate(1, None, 0x1000, Access::READ)
            .unwrap()
            .pa
            .0,
        pa
    );
    rig.submit(&[cmd::cfgi_ste(1, true)]);
    assert_eq!(
        fx.smmu
            .translate(1, None, 0x1000, Access::READ)
            .unwrap()
            .pa
            .0,
        pa,
        "no sync yet"
    );
    rig.submit(&[cmd::sync(0, 0, 0)]);
    assert_eq!(
        fx.smmu
            .translate(1, None, 0x1000, Access::READ)
            .unwrap()
            .pa
            .0,
        0x1000
    );
    // CFGI_STE_RANGE covering SIDs 0..4 and CFGI_ALL.
    rig.set_ste(2, SteBits::bypass());
    rig.set_ste(9, SteBits::bypass());
    fx.smmu.translate(2, None, 0, Access::READ).unwrap();
    fx.smmu.translate(9, None, 0, Access::READ).unwrap();
    rig.set_ste(2, SteBits::abort());
    rig.set_ste(9, SteBits::abort());
    rig.submit_sync(&[cmd::cfgi_ste_range(0, 1)]); // 4 SIDs: 0..=3
    assert!(fx.smmu.translate(2, None, 0, Access::READ).is_err());
    assert!(
        fx.smmu.translate(9, None, 0, Access::READ).is_ok(),
        "SID 9 outside the range"
    );
    rig.submit_sync(&[cmd::cfgi_all()]);
    assert!(fx.smmu.translate(9, None, 0, Access::READ).is_err());
    // CD change: CFGI_CD / CFGI_CD_ALL.
    rig.set_ste(1, SteBits::s1(cd, 0, 0));
    rig.submit_sync(&[cmd::cfgi_ste(1, true)]);
    fx.smmu.translate(1, None, 0x1000, Access::READ).unwrap();
    let t2 = Tables::s1(fx.m(), 12, 48);
    CdBits::s1(6, t2.root, 48, 12).write(fx.m(), cd);
    assert!(
        fx.smmu.translate(1, None, 0x1000, Access::READ).is_ok(),
        "cached CD (and TLB)"
    );
    rig.submit_sync(&[cmd::cfgi_cd(1, 0, true)]);
    assert!(
        fx.smmu.translate(1, None, 0x1000, Access::READ).is_err(),
        "new CD: ASID 6 with empty tables"
    );
    CdBits::s1(5, t.root, 48, 12).write(fx.m(), cd);
    rig.submit_sync(&[cmd::cfgi_cd_all(1)]);
    assert!(fx.smmu.translate(1, None, 0x1000, Access::READ).is_ok());
    fx.smmu.take_sanitizer_reports();
}

#[test]
fn prefetch_config_fetches_speculatively() {
    both(prefetch_config_fetches_speculatively_body);
}

fn prefetch_config_fetches_speculatively_body() {
    let fx = Fx::new();
    let mut rig = fx.rig();
    rig.set_ste(3, SteBits::bypass());
    rig.submit_sync(&[cmd::prefetch_config(3)]);
    // The STE changes without invalidation after the prefetch: the cached one is used.
    rig.set_ste(3, SteBits::abort());
    // (With the sanitizer, speculation may have cached it before the prefetch
    // ran, so the prefetch itself may count a hit: compare around the use.)
    let hits = fx.smmu.stats().ste_cache.hits;
    assert!(fx.smmu.translate(3, None, 0, Access::READ).is_ok());
    assert_eq!(fx.smmu.stats().ste_cache.hits, hits + 1);
    fx.smmu.take_sanitizer_reports();
}

#[test]
fn s2_ipa_invalidation_and_walk_cache_leaf_semantics() {
    both(s2_ipa_invalidation_and_walk_cache_leaf_semantics_body);
}

fn s2_ipa_invalidation_and_walk_cache_leaf_semantics_body() {
    let fx = Fx::new();
    let mut rig = fx.rig();
    let mut t = Tables::new(fx.m(), 12, 1, 40);
    rig.set_ste(1, SteBits::s2(3, 12, 1, 40, 5, t.root));
    let (old, new) = (fx.alloc(8192), fx.alloc(8192));
    t.map(0x1000, old, 3, pte::S2_RW);
    t.map(0x2000, old + 0x1000, 3, pte::S2_RW);
    fx.smmu.translate(1, None, 0x1000, Access::READ).unwrap();
    fx.smmu.translate(1, None, 0x2000, Access::READ).unwrap();
    t.map(0x1000, new, 3, pte::S2_RW);
    t.map(0x2000, new + 0x1000, 3, pte::S2_RW);
    rig.submit_sync(&[cmd::tlbi_s2_ipa(
        3,
        0x1000,
        Range {
            leaf: true,
            ..Default::default()
        },
    )]);
    assert_eq!(
        fx.smmu
            .translate(1, None, 0x1000, Access::READ)
            .unwrap()
            .pa
            .0,
        new
    );
    assert_eq!(
        fx.smmu
            .translate(1, None, 0x2000, Access::READ)
            .unwrap()
            .pa
            .0,
        old + 0x1000
    );
    // Replace the whole level-3 table (a table change): a leaf-only TLBI keeps the
    // walk cache, so the old table is still used; a non-leaf one drops it.
    let new_l3 = fx.alloc(4096);
    fx.m()
        .write_u64(PhysAddr(new_l3 + 8 * 2), (new + 0x5000) | pte::S2_RW | 3)
        .unwrap();
    let l2slot = t.slot(0x2000, 2, 0);
    fx.m().write_u64(PhysAddr(l2slot), new_l3 | 3).unwrap();
    rig.submit_sync(&[cmd::tlbi_s2_ipa(
        3,
        0x2000,
        Range {
            leaf: true,
            ..Default::default()
        },
    )]);
    assert_eq!(
        fx.smmu
            .translate(1, None, 0x2000, Access::READ)
            .unwrap()
            .pa
            .0,
        new + 0x1000,
        "walk cache kept"
    );
    rig.submit_sync(&[cmd::tlbi_s2_ipa(3, 0x2000, Range::default())]);
    assert_eq!(
        fx.smmu
            .translate(1, None, 0x2000, Access::READ)
            .unwrap()
            .pa
            .0,
        new + 0x5000
    );
    fx.smmu.take_sanitizer_reports();
}

#[test]
fn atc_inv_and_sync() {
    both(atc_inv_and_sync_body);
}

fn atc_inv_and_sync_body() {
    let fx = Fx::new();
    let mut rig = fx.rig();
    let (mut t, cd) = s1_stream(&fx, &rig, 1, 1);
    rig.set_ste(2, SteBits::s1(cd, 0, 0).eats(1));
    let (a, b) = (fx.page(), fx.page());
    t.map(0x1000, a, 3, RW);
    t.map(0x3000, a, 3, RW);
    fx.smmu
        .ats_translate(2, None, 0x1000, Access::READ)
        .unwrap();
    fx.smmu
        .ats_translate(2, None, 0x3000, Access::READ)
        .unwrap();
    t.map(0x1000, b, 3, RW);
    t.map(0x3000, b, 3, RW);
    rig.submit_sync(&[cmd::tlbi_nh_asid(0, 1)]);
    assert_eq!(
        fx.smmu
            .ats_translate(2, None, 0x1000, Access::READ)
            .unwrap()
            .pa
            .0,
        a,
        "ATC still holds it"
    );
    rig.submit(&[cmd::atc_inv(2, None, 0x0, 1)]); // 2 pages: 0x0..0x2000
    assert_eq!(
        fx.smmu
            .ats_translate(2, None, 0x1000, Access::READ)
            .unwrap()
            .pa
            .0,
        a,
        "before sync"
    );
    rig.submit(&[cmd::sync(0, 0, 0)]);
    assert_eq!(
        fx.smmu
            .ats_translate(2, None, 0x1000, Access::READ)
            .unwrap()
            .pa
            .0,
        b
    );
    assert_eq!(
        fx.smmu
            .ats_translate(2, None, 0x3000, Access::READ)
            .unwrap()
            .pa
            .0,
        a,
        "outside the span"
    );
    rig.submit_sync(&[cmd::atc_inv(2, None, 0, 52)]);
    assert_eq!(
        fx.smmu
            .ats_translate(2, None, 0x3000, Access::READ)
            .unwrap()
            .pa
            .0,
        b
    );
}

#[test]
fn command_queue_wraps() {
    let fx = Fx::new();
    let mut rig = fx.rig(); // 64-entry queue
    for _ in 0..200 {
        rig.submit(&[cmd::sync(0, 0, 0)]);
    }
    assert_eq!(rig.cons(), rig.prod);
    assert_eq!(fx.smmu.stats().syncs, 200);
    assert_eq!(rig.prod, 200 % 128);
}

#[test]
fn cfgi_leaf_keeps_l1_descriptors_non_leaf_drops_them() {
    both(cfgi_leaf_body);
}

fn cfgi_leaf_body() {
    let fx = Fx::new();
    let mut rig = iommu_testkit::smmu::SmmuRig::two_level(&*fx.smmu, fx.m(), 16, 8);
    let (l2a, l2b) = (fx.alloc(64 * 256), fx.alloc(64 * 256));
    let l1 = rig.strtab + 8 * 3;
    fx.m()
        .write_u64(PhysAddr(l1), iommu_testkit::smmu::l1_std(9, l2a))
        .unwrap();
    SteBits::bypass().write(fx.m(), l2a + 64 * 7);
    SteBits::abort().write(fx.m(), l2b + 64 * 7);
    let sid = (3 << 8) | 7;
    assert!(fx.smmu.translate(sid, None, 0, Access::READ).is_ok());
    // Point the L1 descriptor at another L2 table.
    fx.m()
        .write_u64(PhysAddr(l1), iommu_testkit::smmu::l1_std(9, l2b))
        .unwrap();
    rig.submit_sync(&[cmd::cfgi_ste(sid, true)]);
    assert!(
        fx.smmu.translate(sid, None, 0, Access::READ).is_ok(),
        "leaf CFGI keeps the cached L1 descriptor"
    );
    rig.submit_sync(&[cmd::cfgi_ste(sid, false)]);
    assert!(
        fx.smmu.translate(sid, None, 0, Access::READ).is_err(),
        "non-leaf CFGI refetches it"
    );
    fx.smmu.take_sanitizer_reports();

    // Same for the L1 CD descriptor of a two-level CD table.
    let fx = Fx::new();
    let mut rig = fx.rig();
    let t = Tables::s1(fx.m(), 12, 48);
    let l1cd = fx.alloc(4096);
    let (leaf_a, leaf_b) = (fx.alloc(4096), fx.alloc(4096));
    fx.m()
        .write_u64(PhysAddr(l1cd), iommu_testkit::smmu::l1_cd(true, leaf_a))
        .unwrap();
    CdBits::s1(1, t.root, 48, 12).write(fx.m(), leaf_a + 64 * 5);
    rig.set_ste(1, SteBits::s1(l1cd, 8, 1));
    let id = |r: Result<_, smmuv3_model::Fault>| r.err().and_then(|f: smmuv3_model::Fault| f.id());
    assert_eq!(
        id(fx.smmu.translate(1, Some(5), 0, Access::READ)),
        Some(smmuv3_model::EventId::FTranslation)
    );
    fx.m()
        .write_u64(PhysAddr(l1cd), iommu_testkit::smmu::l1_cd(true, leaf_b))
        .unwrap();
    rig.submit_sync(&[cmd::cfgi_cd(1, 5, true)]);
    assert_eq!(
        id(fx.smmu.translate(1, Some(5), 0, Access::READ)),
        Some(smmuv3_model::EventId::FTranslation),
        "leaf CFGI_CD keeps the L1CD: the CD is refetched from the old leaf table"
    );
    rig.submit_sync(&[cmd::cfgi_cd(1, 5, false)]);
    assert_eq!(
        id(fx.smmu.translate(1, Some(5), 0, Access::READ)),
        Some(smmuv3_model::EventId::CBadCd)
    );
    fx.smmu.take_sanitizer_reports();
}

#[test]
fn el2_e2h_tlbis_by_asid_and_va() {
    both(el2_e2h_body);
}

fn el2_e2h_body() {
    let fx = Fx::new();
    let mut rig = fx.rig();
    fx.smmu.write32(reg::CR2, reg::CR2_RECINVSID | 1); // E2H
    let mut outs = Vec::new();
    for (sid, asid) in [(1u32, 1u16), (2, 2)] {
        let mut t = Tables::s1(fx.m(), 12, 48);
        let cd = fx.cd_table(0);
        CdBits::s1(asid, t.root, 48, 12).write(fx.m(), cd);
        rig.set_ste(sid, SteBits::s1(cd, 0, 0).strw(2));
        outs.push(warm_and_remap(&fx, &mut t, sid, 2));
    }
    let fresh = |sid: u32, page: u64| {
        fx.smmu
            .translate(sid, None, page << 12, Access::READ)
            .unwrap()
            .pa
            .0
            == outs[sid as usize - 1].1 + (page << 12)
    };
    rig.submit_sync(&[cmd::tlbi_nh_all(0), cmd::tlbi_nsnh_all()]);
    assert!(
        !fresh(1, 0) && !fresh(2, 0),
        "NS-EL1 invalidations leave EL2-E2H entries"
    );
    rig.submit_sync(&[cmd::tlbi_el2_asid(1)]);
    assert!(fresh(1, 0) && fresh(1, 1) && !fresh(2, 0));
    rig.submit_sync(&[cmd::tlbi_el2_va(2, 0x1000, Range::default())]);
    assert!(fresh(2, 1) && !fresh(2, 0));
    rig.submit_sync(&[cmd::tlbi_el2_vaa(0, Range::default())]);
    assert!(fresh(2, 0));
    fx.smmu.take_sanitizer_reports();
}
