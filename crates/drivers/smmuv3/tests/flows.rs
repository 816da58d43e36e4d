//! Attach / map / DMA / unmap flows against the model (issue 4 "Domains and
//! attach", "Invalidation", seed 001).

mod common;

use common::*;
use io_pgtable::IotlbGather;
use iommu_core::{DomainOps, PagingDomainOps};
use iommu_types::{Iova, PhysAddr, Prot};
use smmuv3::domain::{DomainStage, SmmuDomain, StaticDomain};
use smmuv3::event::EventKind;
use smmuv3::inv::InvRequest;
use smmuv3::{DriverConfig, SyncPref};
use smmuv3_model::{Access, SmmuConfig};

const SID: u32 = 0x10;
const K4: u64 = 0x1000;
const M2: u64 = 0x20_0000;
const G1: u64 = 0x4000_0000;

fn read(r: &Rig, sid: u32, iova: u64) -> Result<u8, smmuv3_model::Error> {
    let mut b = [0u8; 1];
    r.hw.dma_read(sid, None, iova, &mut b, false).map(|_| b[0])
}

fn strict_unmap_faults_immediately(hw: SmmuConfig, sync: SyncPref, stage: DomainStage) {
    let r = rig_with(
        hw,
        DriverConfig {
            sync,
            ..own_asids()
        },
    );
    r.drv.probe_stream(SID, false).unwrap();
    let d = SmmuDomain::new(&r.drv, stage, K4, false).unwrap();
    d.attach_sids(&[SID], false).unwrap();
    let buf = r.buffer(K4, 0xa5);
    let iova = 0x4000_0000u64;
    let (n, res) = d.map_pages(Iova(iova), buf, K4, 1, Prot::RW);
    assert_eq!((n, res), (K4, Ok(())));
    assert_eq!(
        d.iova_to_phys(Iova(iova + 0x10)),
        Some(PhysAddr(buf.0 + 0x10))
    );
    assert_eq!(
        read(&r, SID, iova).unwrap(),
        0xa5,
        "DMA through the mapping"
    );
    assert_eq!(
        read(&r, SID, iova).unwrap(),
        0xa5,
        "second access (TLB hit)"
    );
    let mut g = IotlbGather::new();
    assert_eq!(d.unmap_pages(Iova(iova), K4, 1, &mut g), K4);
    d.iotlb_sync(&mut g).unwrap();
    assert!(g.is_empty());
    let e = read(&r, SID, iova).expect_err("very next access after unmap+sync must fault");
    assert!(matches!(e, smmuv3_model::Error::Fault(_)));
    let ev = r.drv.drain_events().unwrap();
    assert!(
        ev.iter()
            .any(|f| f.kind == EventKind::Translation && f.addr == iova && f.sid == SID),
        "{ev:?}"
    );
    assert_eq!(r.hw.pending_invalidations(), 0);
    r.sanitizer_silent();
}

#[test]
fn strict_s1_unmap_then_fault_msi_and_poll() {
    strict_unmap_faults_immediately(SmmuConfig::default(), SyncPref::Msi, DomainStage::S1);
    strict_unmap_faults_immediately(SmmuConfig::default(), SyncPref::PollCons, DomainStage::S1);
    let no_ril = SmmuConfig::builder().ril(false).build();
    strict_unmap_faults_immediately(no_ril, SyncPref::Auto, DomainStage::S1);
}

#[test]
fn strict_s2_unmap_then_fault() {
    strict_unmap_faults_immediately(SmmuConfig::default(), SyncPref::Auto, DomainStage::S2);
    let no_ril = SmmuConfig::builder().ril(false).build();
    strict_unmap_faults_immediately(no_ril, SyncPref::PollCons, DomainStage::S2);
}

#[test]
fn model_keeps_stale_translation_without_invalidation() {
    // Sanity check of the test rig: without the sync the model still translates.
    let r = rig();
    r.drv.probe_stream(SID, false).unwrap();
    let d = SmmuDomain::new(&r.drv, DomainStage::S1, K4, false).unwrap();
    d.attach_sids(&[SID], false).unwrap();
    let buf = r.buffer(K4, 0x5a);
    d.map_pages(Iova(0x1000), buf, K4, 1, Prot::RW).1.unwrap();
    assert_eq!(read(&r, SID, 0x1000).unwrap(), 0x5a);
    let mut g = IotlbGather::new_queued();
    assert_eq!(d.unmap_pages(Iova(0x1000), K4, 1, &mut g), K4);
    d.iotlb_sync(&mut g).unwrap(); // queued: no invalidation
    assert_eq!(
        read(&r, SID, 0x1000).unwrap(),
        0x5a,
        "stale TLB entry still used"
    );
    d.flush_iotlb_all().unwrap();
    assert!(
        read(&r, SID, 0x1000).is_err(),
        "gone after the domain-wide flush"
    );
    let _ = r.hw.take_sanitizer_reports();
}

fn map_1g_of_2m_blocks(r: &Rig, d: &SmmuDomain, base: u64) -> Vec<u64> {
    // Output at a fixed address outside the allocator; only probed pages are backed.
    let pa = PhysAddr(0x100_0000_0000);
    let (n, res) = d.map_pages(Iova(base), pa, M2, G1 / M2, Prot::RW);
    assert_eq!((n, res), (G1, Ok(())));
    // Touch a few blocks so the TLB holds 2M block entries.
    let probes: Vec<u64> = (0..8).map(|i| base + i * 61 * M2 + 0x123).collect();
    for &a in &probes {
        let _ = r.mem.place(PhysAddr(pa.0 + ((a - base) & !0xfff)), K4);
        read(r, SID, a).unwrap();
    }
    probes
}

#[test]
fn unmap_1g_of_2m_blocks_leaves_no_stale_entry() {
    for ril in [true, false] {
        let r = rig_with(SmmuConfig::builder().ril(ril).build(), own_asids());
        r.drv.probe_stream(SID, false).unwrap();
        let d = SmmuDomain::new(&r.drv, DomainStage::S1, K4, false).unwrap();
        d.attach_sids(&[SID], false).unwrap();
        let probes = map_1g_of_2m_blocks(&r, &d, G1);
        let mut g = IotlbGather::new();
        assert_eq!(
            d.unmap_pages(Iova(G1), G1, 1, &mut g),
            G1,
            "whole level-1 table removed"
        );
        assert!(!g.leaf_only);
        d.iotlb_sync(&mut g).unwrap();
        for &a in &probes {
            assert!(
                read(&r, SID, a).is_err(),
                "stale block entry at {a:#x} (ril={ril})"
            );
        }
        r.sanitizer_silent();
    }
}

#[test]
fn seed_001_flaw_ttl3_after_table_removal_leaves_stale_blocks() {
    // What the flawed design does: a level-1 table of 2M blocks is removed and the
    // range is invalidated with the last-level hint (TTL=3, leaf). The model honours
    // TTL, so the cached 2M blocks survive: this test fails if TTL were ignored or the
    // driver's correct path (TTL=0) were used.
    let r = rig();
    r.drv.probe_stream(SID, false).unwrap();
    let d = SmmuDomain::new(&r.drv, DomainStage::S1, K4, false).unwrap();
    d.attach_sids(&[SID], false).unwrap();
    let probes = map_1g_of_2m_blocks(&r, &d, G1);
    // Remove the table without invalidating (queued gather), then apply the flaw.
    let mut g = IotlbGather::new_queued();
    assert_eq!(d.unmap_pages(Iova(G1), G1, 1, &mut g), G1);
    let asid = d.ctx().asid();
    let flawed = InvRequest {
        iova: G1,
        size: G1,
        granule: K4,
        leaf: true,
        leaf_size: Some(K4),
    };
    let cmds = r.drv.tlb_inv_range_cmds(asid, 0, &flawed);
    assert!(
        cmds.iter()
            .all(|c| matches!(c, smmuv3::cmd::Cmd::TlbiNhVa { range, .. } if range.ttl == 3))
    );
    r.drv.submit(&cmds).unwrap();
    let stale = probes.iter().filter(|&&a| read(&r, SID, a).is_ok()).count();
    assert_eq!(
        stale,
        probes.len(),
        "TTL=3 does not remove level-2 block entries"
    );
    // The driver's own computation from the gather (table removed: TTL=0) fixes it.
    let correct = InvRequest {
        iova: G1,
        size: G1,
        granule: K4,
        leaf: g.leaf_only,
        leaf_size: None,
    };
    r.drv.tlb_inv_range(asid, 0, &correct).unwrap();
    for &a in &probes {
        assert!(read(&r, SID, a).is_err());
    }
    d.free_tables(std::mem::take(&mut g.freelist));
    let _ = r.hw.take_sanitizer_reports();
}

#[test]
fn identity_blocked_and_capabilities() {
    let r = rig();
    r.drv.probe_stream(SID, false).unwrap();
    let buf = r.buffer(K4, 0x77);
    StaticDomain::identity(&r.drv).attach_sids(&[SID]).unwrap();
    assert_eq!(read(&r, SID, buf.0).unwrap(), 0x77, "bypass");
    let blocked = StaticDomain::blocked(&r.drv);
    blocked.attach_sids(&[SID]).unwrap();
    assert!(read(&r, SID, buf.0).is_err());
    assert_eq!(blocked.kind(), iommu_core::DomainKind::Blocked);
    // Abort STE records no event.
    assert!(r.drv.drain_events().unwrap().is_empty());
    r.sanitizer_silent();
}

#[test]
fn permissions_and_exec() {
    let r = rig();
    r.drv.probe_stream(SID, false).unwrap();
    let d = SmmuDomain::new(&r.drv, DomainStage::S1, K4, false).unwrap();
    d.attach_sids(&[SID], false).unwrap();
    let buf = r.buffer(K4, 1);
    d.map_pages(Iova(0x8000), buf, K4, 1, Prot::READ).1.unwrap();
    assert!(r.hw.translate(SID, None, 0x8000, Access::READ).is_ok());
    assert!(r.hw.translate(SID, None, 0x8000, Access::WRITE).is_err());
    let ev = r.drv.drain_events().unwrap();
    assert!(
        ev.iter()
            .any(|f| f.kind == EventKind::Permission && !f.read),
        "{ev:?}"
    );
    // The attached master is not CANWBS: the domain cannot promise that all of its
    // DMA snoops (software.md §6.4, seed 004).
    assert!(!d.enforce_cache_coherency());
}

#[test]
fn strict_unmap_with_16k_and_64k_granules() {
    for (g, gran) in [(false, 0x4000u64), (true, 0x10000u64)] {
        let hw = SmmuConfig::builder()
            .gran4k(false)
            .gran16k(!g)
            .gran64k(g)
            .build();
        for stage in [DomainStage::S1, DomainStage::S2] {
            let r = rig_with(hw.clone(), own_asids());
            r.drv.probe_stream(SID, false).unwrap();
            let d = SmmuDomain::new(&r.drv, stage, gran, false).unwrap();
            assert!(
                SmmuDomain::new(&r.drv, stage, K4, false).is_err(),
                "4K not supported"
            );
            d.attach_sids(&[SID], false).unwrap();
            let buf = r.buffer(gran, 0x3c);
            let iova = 16 * gran;
            d.map_pages(Iova(iova), buf, gran, 1, Prot::RW).1.unwrap();
            assert_eq!(read(&r, SID, iova + gran - 1).unwrap(), 0x3c);
            let mut gth = IotlbGather::new();
            assert_eq!(d.unmap_pages(Iova(iova), gran, 1, &mut gth), gran);
            d.iotlb_sync(&mut gth).unwrap();
            assert!(
                read(&r, SID, iova + gran - 1).is_err(),
                "{gran:#x} {stage:?}"
            );
            r.sanitizer_silent();
        }
    }
}

#[test]
fn ats_masters_get_atc_invalidation_after_the_tlb() {
    let r = rig();
    r.drv.probe_stream(SID, true).unwrap();
    assert!(r.drv.stream_ats(SID));
    let d = SmmuDomain::new(&r.drv, DomainStage::S1, K4, false).unwrap();
    d.attach_sids(&[SID], false).unwrap();
    let buf = r.buffer(K4, 0x42);
    d.map_pages(Iova(0x9000), buf, K4, 1, Prot::RW).1.unwrap();
    // The device caches the translation in its ATC.
    let t = r.hw.ats_translate(SID, None, 0x9000, Access::READ).unwrap();
    assert_eq!(t.pa, buf);
    assert!(
        r.hw.ats_translate(SID, None, 0x9000, Access::READ)
            .unwrap()
            .cached
    );
    let before = r.hw.stats().commands[smmuv3::cmd::op::ATC_INV as usize];
    let mut g = IotlbGather::new();
    d.unmap_pages(Iova(0x9000), K4, 1, &mut g);
    d.iotlb_sync(&mut g).unwrap();
    assert_eq!(
        r.hw.stats().commands[smmuv3::cmd::op::ATC_INV as usize] - before,
        1
    );
    assert!(
        r.hw.ats_translate(SID, None, 0x9000, Access::READ).is_err(),
        "ATC entry gone"
    );
    // A non-ATS master gets no ATC_INV.
    r.drv.probe_stream(SID + 1, false).unwrap();
    d.attach_sids(&[SID + 1], false).unwrap();
    assert!(
        r.hw.ats_translate(SID + 1, None, 0x9000, Access::READ)
            .is_err(),
        "EATS=0"
    );
    let _ = r.hw.take_sanitizer_reports();
}

#[test]
fn faults_reach_the_core_as_typed_reports() {
    let r = rig_with(
        SmmuConfig::default(),
        DriverConfig {
            iommu_id: 7,
            ..own_asids()
        },
    );
    r.drv.probe_stream(SID, false).unwrap();
    let d = SmmuDomain::new(&r.drv, DomainStage::S1, K4, false).unwrap();
    d.attach_sids(&[SID], false).unwrap();
    let _ = r.hw.dma_write(SID, None, 0xdead_0000, &[1], false);
    let f = r.drv.drain_core_faults().unwrap();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].iommu, iommu_core::IommuId(7));
    assert_eq!(f[0].kind, iommu_core::FaultKind::Translation);
    assert_eq!((f[0].stream_id, f[0].iova), (SID, 0xdead_0000));
    assert!(f[0].access.write);
    assert!(r.drv.drain_core_faults().unwrap().is_empty(), "consumed");
}

#[test]
fn lazy_unmap_keeps_removed_tables_until_the_flush() {
    let r = rig();
    r.drv.probe_stream(SID, false).unwrap();
    let d = SmmuDomain::new(&r.drv, DomainStage::S1, K4, false).unwrap();
    d.attach_sids(&[SID], false).unwrap();
    // A 2 MiB region of 4K pages: unmapping it whole removes a level-3 table.
    let buf = r.buffer(M2, 0x19);
    d.map_pages(Iova(M2), buf, K4, M2 / K4, Prot::RW).1.unwrap();
    assert_eq!(read(&r, SID, M2 + 0x5000).unwrap(), 0x19);
    let before = r.hw.stats().total_commands();
    let mut g = IotlbGather::new_queued();
    assert_eq!(d.unmap_pages(Iova(M2), M2, 1, &mut g), M2);
    assert!(!g.leaf_only);
    d.iotlb_sync(&mut g).unwrap();
    assert_eq!(
        r.hw.stats().total_commands(),
        before,
        "lazy: nothing issued"
    );
    // The removed table stays allocated (a walk cache may still point at it).
    assert_eq!(g.freelist.len(), 1);
    let t = g.freelist[0];
    assert!(r.mem.is_present(t.pa));
    // The flush queue's domain-wide flush, then the tables are returned.
    d.flush_iotlb_all().unwrap();
    assert!(read(&r, SID, M2 + 0x5000).is_err());
    d.free_tables(std::mem::take(&mut g.freelist));
    assert!(!r.mem.is_present(t.pa));
    let _ = r.hw.take_sanitizer_reports();
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    for two_level in [false, true] {
        let hw = SmmuConfig::builder()
            .sid_bits(12)
            .two_level_strtab(two_level)
            .build();
        let r = rig_with(hw, own_asids());
        assert!(
            r.drv.probe_stream(1 << 12, false).is_err(),
            "SID beyond SIDSIZE"
        );
        assert!(r.drv.probe_stream(u32::MAX, false).is_err());
        if two_level {
            // No L2 table yet for an unprobed stream: nothing to write into.
            assert!(
                r.drv
                    .write_ste(5, &smmuv3::ste::Ste::bypass(false))
                    .is_err()
            );
        }
        r.drv.probe_stream(5, false).unwrap();
        let d = SmmuDomain::new(&r.drv, DomainStage::S1, K4, false).unwrap();
        assert!(d.attach_sids(&[6], false).is_err(), "unprobed stream");
        d.attach_sids(&[5], false).unwrap();
        let buf = r.buffer(K4, 1);
        // Outside the input range, misaligned, unsupported page size, no access.
        assert!(d.map_pages(Iova(1 << 50), buf, K4, 1, Prot::RW).1.is_err());
        assert!(d.map_pages(Iova(0x1234), buf, K4, 1, Prot::RW).1.is_err());
        assert!(
            d.map_pages(Iova(0x1000), buf, 0x3000, 1, Prot::RW)
                .1
                .is_err()
        );
        assert!(d.map_pages(Iova(0x1000), buf, K4, 1, Prot::NONE).1.is_err());
        // Nothing stored was corrupted: a valid mapping still works.
        d.map_pages(Iova(0x1000), buf, K4, 1, Prot::RW).1.unwrap();
        assert_eq!(read(&r, 5, 0x1000).unwrap(), 1);
        assert!(
            SmmuDomain::new(&r.drv, DomainStage::S1, 0x3000, false).is_err(),
            "bad granule"
        );
        r.sanitizer_silent();
    }
}
