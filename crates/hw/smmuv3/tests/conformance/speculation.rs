//! Speculative configuration fetch: STEs, CDs and L1 descriptors that no traffic
//! used are cached anyway, so the sanitizer judges their updates too (issue 3
//! "configuration may be fetched speculatively").

use iommu_testkit::smmu::{SmmuRig, SteBits, Tables, cmd, l1_std};
use iommu_types::PhysAddr;
use smmuv3_model::{Access, Report, SmmuConfig, TornKind};

use crate::common::*;

/// Sanitizer on, speculation with `slots` per point (0 = off) and `seed`.
fn fx(slots: u32, seed: u64) -> Fx {
    Fx::with(
        SmmuConfig::builder()
            .sanitizer(true)
            .speculative_fetch(slots)
            .speculation_seed(seed)
            .build(),
    )
}

const SEEDS: [u64; 3] = [1, 0xDEAD_BEEF, 0x5EED_5EED_0000_0003];

/// A stage-2 STE for the rewrite target.
fn s2_target(fx: &Fx) -> SteBits {
    let t2 = Tables::new(fx.m(), 12, 1, 40);
    SteBits::s2(4, 12, 1, 40, 5, t2.root)
}

/// (a) Live stage-1 STE of SID 3 (never used by traffic) rewritten to stage 2
/// dword by dword, then CFGI + SYNC: torn. Without speculation the model never
/// looked at SID 3, so the same sequence goes unnoticed.
fn non_hitless_rewrite(slots: u32, seed: u64) -> Vec<Report> {
    let fx = fx(slots, seed);
    let mut rig = fx.rig();
    let _ = s1_stream(&fx, &rig, 3, 5);
    rig.submit_sync(&[cmd::cfgi_ste(3, true)]);
    // 64-slot table, >= 8 slots per point: 8 points cover it.
    rig.idle_syncs(8);
    s2_target(&fx).write_dword_by_dword(fx.m(), rig.ste_addr(3));
    rig.submit_sync(&[cmd::cfgi_ste(3, true)]);
    fx.smmu.take_sanitizer_reports()
}

#[test]
fn non_hitless_ste_rewrite_without_traffic_is_torn() {
    for seed in SEEDS {
        let r = non_hitless_rewrite(8, seed);
        assert!(
            r.iter().any(|x| matches!(
                x,
                Report::TornUpdate {
                    sid: 3,
                    ssid: None,
                    kind: TornKind::MultiDword { .. },
                    ..
                }
            )),
            "seed {seed:#x}: {r:?}"
        );
    }
    assert_eq!(non_hitless_rewrite(0, 1), vec![], "speculation off: unseen");
}

#[test]
fn speculation_is_on_by_default_with_the_sanitizer() {
    let c = SmmuConfig::builder().sanitizer(true).build();
    assert!(c.speculative_fetch > 0);
    let fx = Fx::with(c);
    let mut rig = fx.rig();
    let _ = s1_stream(&fx, &rig, 3, 5);
    rig.submit_sync(&[cmd::cfgi_ste(3, true)]);
    rig.idle_syncs(8);
    s2_target(&fx).write_dword_by_dword(fx.m(), rig.ste_addr(3));
    rig.submit_sync(&[cmd::cfgi_ste(3, true)]);
    assert!(
        fx.smmu
            .take_sanitizer_reports()
            .iter()
            .any(|x| matches!(x, Report::TornUpdate { sid: 3, .. }))
    );
}

/// (b) The breaking update done right: V=0, CFGI + SYNC; body, CFGI + SYNC;
/// V=1, CFGI + SYNC, with speculation points everywhere in between.
#[test]
fn hitless_sequence_stays_silent_under_speculation() {
    for seed in SEEDS {
        let fx = fx(8, seed);
        let mut rig = fx.rig();
        let (_t, _cd) = s1_stream(&fx, &rig, 3, 5);
        rig.submit_sync(&[cmd::cfgi_ste(3, true)]);
        rig.idle_syncs(8);
        let target = s2_target(&fx);
        let pa = rig.ste_addr(3);
        fx.m().write_u64(PhysAddr(pa), 0).unwrap();
        rig.submit_sync(&[cmd::cfgi_ste(3, true)]);
        rig.idle_syncs(8);
        for i in 1..8 {
            fx.m()
                .write_u64(PhysAddr(pa + 8 * i), target.0[i as usize])
                .unwrap();
        }
        rig.submit_sync(&[cmd::cfgi_ste(3, true)]);
        rig.idle_syncs(8);
        fx.m().write_u64(PhysAddr(pa), target.0[0]).unwrap();
        rig.submit_sync(&[cmd::cfgi_ste(3, true)]);
        rig.idle_syncs(8);
        // The new configuration is the one in use (stage 2, nothing mapped).
        let f = fx
            .smmu
            .translate(3, None, 0x1000, Access::READ)
            .unwrap_err();
        assert!(f.event.is_some(), "{f:?}");
        assert_eq!(fx.smmu.sanitizer_reports(), vec![], "seed {seed:#x}");
    }
}

/// (c) Bypass STE of SID 3 cached only by speculation; the driver turns it to
/// abort (one dword, hitless) but forgets CFGI_STE. After the next completed
/// CMD_SYNC the first translation uses the stale bypass: reported.
fn stale_without_cfgi(slots: u32, seed: u64) -> (bool, Vec<Report>) {
    let fx = fx(slots, seed);
    let mut rig = fx.rig();
    rig.set_ste(3, SteBits::bypass());
    rig.submit_sync(&[cmd::cfgi_ste(3, true)]);
    rig.idle_syncs(8);
    rig.set_ste(3, SteBits::abort());
    rig.submit_sync(&[]); // no CFGI
    let ok = fx.smmu.translate(3, None, 0x1000, Access::READ).is_ok();
    (ok, fx.smmu.take_sanitizer_reports())
}

#[test]
fn stale_speculatively_cached_ste_used_after_missing_cfgi() {
    for seed in SEEDS {
        let (bypassed, r) = stale_without_cfgi(8, seed);
        assert!(bypassed, "the stale bypass STE is used");
        assert!(
            r.iter().any(|x| matches!(
                x,
                Report::StaleConfig {
                    sid: 3,
                    ssid: None,
                    observed_sync,
                    sync,
                    ..
                } if sync > observed_sync
            )),
            "seed {seed:#x}: {r:?}"
        );
    }
    // Without speculation the STE was never cached: fresh fetch, abort, silent.
    let (bypassed, r) = stale_without_cfgi(0, 1);
    assert!(!bypassed);
    assert_eq!(r, vec![]);
}

/// Two-level table: L1 descriptor 0 → L2 table A (SID 3 bypass), never used by
/// traffic. The driver moves SID 0–63 to a new L2 table B (SID 3 abort) and
/// invalidates with CFGI_STE Leaf=1 only (relying on "the SMMU has not looked
/// at the L1 descriptor yet"): the speculatively cached L1 descriptor is used
/// stale. With CFGI_STE Leaf=0 it is silent and B is used.
fn l1_replaced(slots: u32, leaf: bool) -> (bool, u64, Vec<Report>) {
    let fx = fx(slots, 7);
    let mut rig = SmmuRig::two_level(&*fx.smmu, &*fx.mem, 8, 6);
    let (a, b) = (fx.alloc(4096), fx.alloc(4096));
    SteBits::bypass().write(fx.m(), a + 3 * 64);
    rig.set_l1(0, l1_std(7, a));
    rig.submit_sync(&[cmd::cfgi_ste(0, false)]);
    rig.idle_syncs(8);
    SteBits::abort().write(fx.m(), b + 3 * 64);
    rig.set_l1(0, l1_std(7, b));
    rig.submit_sync(&[cmd::cfgi_ste(3, leaf)]);
    rig.idle_syncs(1);
    let ok = fx.smmu.translate(3, None, 0x1000, Access::READ).is_ok();
    (ok, rig.l1_addr(0), fx.smmu.take_sanitizer_reports())
}

#[test]
fn l1_descriptor_replaced_without_leaf0_cfgi_is_stale() {
    let (bypassed, l1pa, r) = l1_replaced(8, true);
    assert!(bypassed, "stale L1 descriptor still leads to table A");
    assert!(
        r.iter()
            .any(|x| matches!(x, Report::StaleConfig { pa, ssid: None, .. } if *pa == l1pa)),
        "{r:?}"
    );
    // Correct: Leaf=0 drops the L1 descriptor.
    let (bypassed, _, r) = l1_replaced(8, false);
    assert!(!bypassed);
    assert_eq!(r, vec![]);
    // Without speculation nothing had looked: silent (the bug goes unseen).
    let (bypassed, _, r) = l1_replaced(0, true);
    assert!(!bypassed);
    assert_eq!(r, vec![]);
}

/// A speculative CD fetch too: CD 0 of an unused stage-1 stream rewritten in
/// two used dwords is torn.
#[test]
fn speculatively_fetched_cd_is_watched() {
    let fx = fx(8, 3);
    let mut rig = fx.rig();
    let (_t, cd) = s1_stream(&fx, &rig, 3, 5);
    rig.submit_sync(&[cmd::cfgi_ste(3, true)]);
    rig.idle_syncs(8);
    let t2 = Tables::s1(fx.m(), 12, 48);
    let new = iommu_testkit::smmu::CdBits::s1(6, t2.root, 48, 12);
    fx.m().write_u64(PhysAddr(cd + 8), new.0[1]).unwrap();
    fx.m().write_u64(PhysAddr(cd), new.0[0]).unwrap();
    rig.submit_sync(&[cmd::cfgi_cd(3, 0, true)]);
    let r = fx.smmu.take_sanitizer_reports();
    assert!(
        r.iter().any(|x| matches!(
            x,
            Report::TornUpdate {
                sid: 3,
                ssid: Some(0),
                ..
            }
        )),
        "{r:?}"
    );
}

/// Speculation leaves the traffic counters alone.
#[test]
fn speculation_does_not_count_as_lookups() {
    let fx = fx(8, 1);
    let mut rig = fx.rig();
    let _ = s1_stream(&fx, &rig, 3, 5);
    rig.idle_syncs(16);
    let s = fx.smmu.stats();
    assert_eq!(s.ste_cache.hits + s.ste_cache.misses, 0, "{s:?}");
}

/// A huge slot count sweeps the table once per point (no wrap-around loops):
/// fast, and everything valid is seen at the first point.
#[test]
fn huge_slot_count_sweeps_once_per_point() {
    let fx = fx(u32::MAX, 9);
    let mut rig = fx.rig();
    let _ = s1_stream(&fx, &rig, 40, 5);
    rig.idle_syncs(64);
    s2_target(&fx).write_dword_by_dword(fx.m(), rig.ste_addr(40));
    rig.idle_syncs(1);
    assert!(
        fx.smmu
            .take_sanitizer_reports()
            .iter()
            .any(|x| matches!(x, Report::TornUpdate { sid: 40, .. }))
    );
}
