//! Hitless STE/CD updates, ASID lifecycle (seed 002) and concurrency against the
//! model, with its torn-update sanitizer watching.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::*;
use io_pgtable::IotlbGather;
use iommu_core::PagingDomainOps;
use iommu_types::{Iova, Prot};
use smmuv3::domain::{DomainStage, NestedDomain, SmmuDomain, StaticDomain, VSte};
use smmuv3::ids::IdAllocator;
use smmuv3::ste::S1Cfg;
use smmuv3::{DriverConfig, Error};
use smmuv3_model::{Access, SmmuConfig};

const K4: u64 = 0x1000;

#[derive(Clone)]
enum T {
    Abort,
    Bypass,
    Paging(Arc<SmmuDomain>),
    Nested(Arc<NestedDomain>),
}

fn apply(r: &Rig, t: &T, sid: u32) {
    match t {
        T::Abort => StaticDomain::blocked(&r.drv).attach_sids(&[sid]).unwrap(),
        T::Bypass => StaticDomain::identity(&r.drv).attach_sids(&[sid]).unwrap(),
        T::Paging(d) => d.attach_sids(&[sid], false).unwrap(),
        T::Nested(n) => n.attach_sids(&[sid]).unwrap(),
    }
}

/// A device hammering `sid` (with and without a SubstreamID) until stopped.
fn traffic(r: &Rig, sid: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    let hw = r.hw.clone();
    let started = Arc::new(AtomicBool::new(false));
    let s2 = started.clone();
    let h = std::thread::spawn(move || {
        let mut n = 0u64;
        loop {
            let _ = hw.translate(sid, None, 0x1000, Access::READ);
            let _ = hw.translate(sid, Some(1), 0x1000, Access::READ);
            n += 1;
            s2.store(true, Ordering::Release);
            if stop.load(Ordering::Relaxed) {
                return n;
            }
        }
    });
    while !started.load(Ordering::Acquire) {
        std::thread::yield_now();
    }
    h
}

#[test]
fn hitless_matrix_sanitizer_silent() {
    for ssid_bits in [0, 20] {
        let r = rig_with(
            SmmuConfig::builder().ssid_bits(ssid_bits).build(),
            own_asids(),
        );
        let sid = 3;
        r.drv.probe_stream(sid, false).unwrap();
        let a = SmmuDomain::new(&r.drv, DomainStage::S1, K4, false).unwrap();
        let b = SmmuDomain::new(&r.drv, DomainStage::S1, K4, false).unwrap();
        let p = SmmuDomain::new(&r.drv, DomainStage::S2, K4, true).unwrap();
        let buf = r.buffer(K4, 9);
        for d in [&a, &b, &p] {
            d.map_pages(Iova(0x1000), buf, K4, 1, Prot::RW).1.unwrap();
        }
        let n1 = NestedDomain::new(
            p.clone(),
            VSte::S1(S1Cfg {
                cd_table: 0x10_0000,
                fmt: 0,
                cdmax: 0,
                dss: 0,
            }),
        )
        .unwrap();
        let n2 = NestedDomain::new(
            p.clone(),
            VSte::S1(S1Cfg {
                cd_table: 0x20_0000,
                fmt: 0,
                cdmax: 3,
                dss: 2,
            }),
        );
        if ssid_bits == 0 {
            // A vSTE with substreams is refused on hardware without them.
            assert!(matches!(n2, Err(Error::Invalid(_))));
        }
        let n2 = n2.unwrap_or_else(|_| n1.clone());
        let targets = [
            T::Abort,
            T::Bypass,
            T::Paging(a.clone()),
            T::Paging(b.clone()),
            T::Paging(p.clone()),
            T::Nested(n1),
            T::Nested(n2),
        ];
        // Without concurrent traffic: the sanitizer must stay completely silent.
        for x in &targets {
            for y in &targets {
                apply(&r, x, sid);
                let _ = r.hw.translate(sid, None, 0x1000, Access::READ);
                apply(&r, y, sid);
                let _ = r.hw.translate(sid, Some(1), 0x1000, Access::READ);
            }
        }
        r.sanitizer_silent();
        // With a device hammering the stream during every update.
        let stop = Arc::new(AtomicBool::new(false));
        let h = traffic(&r, sid, stop.clone());
        for _ in 0..3 {
            for x in &targets {
                for y in &targets {
                    apply(&r, x, sid);
                    apply(&r, y, sid);
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        assert!(h.join().unwrap() > 0);
        let _ = r.drv.drain_events();
        r.sanitizer_silent();
        // Every translating target really translates once attached.
        apply(&r, &T::Paging(a.clone()), sid);
        let t = r.hw.translate(sid, None, 0x1000, Access::READ).unwrap();
        assert_eq!(t.pa, buf);
        apply(&r, &T::Paging(p.clone()), sid);
        assert_eq!(
            r.hw.translate(sid, None, 0x1000, Access::READ).unwrap().pa,
            buf
        );
        apply(&r, &T::Abort, sid);
    }
}

#[test]
fn update_sequences_seen_by_the_hardware() {
    use smmuv3::cmd::op;
    let r = rig();
    let sid = 4;
    r.drv.probe_stream(sid, false).unwrap();
    let s1 = SmmuDomain::new(&r.drv, DomainStage::S1, K4, false).unwrap();
    let s1b = SmmuDomain::new(&r.drv, DomainStage::S1, K4, false).unwrap();
    let s2 = SmmuDomain::new(&r.drv, DomainStage::S2, K4, false).unwrap();
    let s2b = SmmuDomain::new(&r.drv, DomainStage::S2, K4, false).unwrap();
    let count = |o: u8| r.hw.stats().commands[o as usize];
    s1.attach_sids(&[sid], false).unwrap();
    // S1 -> other S1: the STE is unchanged; CD 0 changes ASID and TTB0 (two
    // critical dwords) -> breaking CD update: 3 CFGI_CD steps, no CFGI_STE.
    let (ste0, cd0) = (count(op::CFGI_STE), count(op::CFGI_CD));
    s1b.attach_sids(&[sid], false).unwrap();
    assert_eq!(
        (count(op::CFGI_STE) - ste0, count(op::CFGI_CD) - cd0),
        (0, 3)
    );
    // S1 -> S2: breaking STE update (3 steps), then CD 0 cleared: V=0 first (the
    // one critical dword), then the now-unused dwords zeroed (2 steps).
    let (ste0, cd0) = (count(op::CFGI_STE), count(op::CFGI_CD));
    s2.attach_sids(&[sid], false).unwrap();
    assert_eq!(
        (count(op::CFGI_STE) - ste0, count(op::CFGI_CD) - cd0),
        (3, 2)
    );
    // S2 -> other S2: VMID (d2) and S2TTB (d3) differ -> breaking, 3 steps.
    let ste0 = count(op::CFGI_STE);
    s2b.attach_sids(&[sid], false).unwrap();
    assert_eq!(count(op::CFGI_STE) - ste0, 3);
    // S2 -> same S2 again: nothing to write.
    let ste0 = count(op::CFGI_STE);
    s2b.attach_sids(&[sid], false).unwrap();
    assert_eq!(count(op::CFGI_STE) - ste0, 0);
    // S2 -> bypass: only d0 is critical (Config) -> 1 step + clean-up of unused bits.
    let ste0 = count(op::CFGI_STE);
    StaticDomain::identity(&r.drv).attach_sids(&[sid]).unwrap();
    assert_eq!(count(op::CFGI_STE) - ste0, 2);
    r.sanitizer_silent();
}

#[test]
fn asid_is_not_freed_while_referenced_and_is_invalidated_before_reuse() {
    // A 2-bit ASID space: 3 ASIDs, so reuse happens quickly.
    let asids = Arc::new(IdAllocator::new("ASID", 2));
    let r = rig_with(
        SmmuConfig::default(),
        DriverConfig {
            asids: Some(asids.clone()),
            ..Default::default()
        },
    );
    r.drv.probe_stream(1, false).unwrap();
    let d = SmmuDomain::new(&r.drv, DomainStage::S1, K4, false).unwrap();
    let asid = d.ctx().asid().unwrap();
    d.attach_sids(&[1], false).unwrap();
    assert_eq!(asids.refs(asid), 1);
    assert_eq!(
        asids.free(asid, |_| Ok(())),
        Err(Error::Busy("ID still referenced by an entry"))
    );
    let nh_asid = smmuv3::cmd::op::TLBI_NH_ASID as usize;
    let before = r.hw.stats().commands[nh_asid];
    drop(d); // still attached: the stream keeps the domain alive
    assert!(asids.is_allocated(asid));
    StaticDomain::blocked(&r.drv).attach_sids(&[1]).unwrap();
    // Detached and dropped: invalidated, then freed.
    assert!(!asids.is_allocated(asid));
    assert_eq!(r.hw.stats().commands[nh_asid] - before, 1);
}

#[test]
fn seed_002_race_detach_while_another_user_installs() {
    let asids = Arc::new(IdAllocator::new("ASID", 2));
    let r = rig_with(
        multi_cpu(),
        DriverConfig {
            asids: Some(asids),
            ..Default::default()
        },
    );
    let (sa, sb) = (0x20, 0x21);
    r.drv.probe_stream(sa, false).unwrap();
    r.drv.probe_stream(sb, false).unwrap();
    let iova = 0x7000u64;
    let stop = Arc::new(AtomicBool::new(false));
    let wrong = Arc::new(AtomicU64::new(0));
    let ok_reads = Arc::new(AtomicU64::new(0));
    let mut devs = Vec::new();
    for (sid, want) in [(sa, 0x11u8), (sb, 0x22u8)] {
        let (hw, stop, wrong, okr) = (r.hw.clone(), stop.clone(), wrong.clone(), ok_reads.clone());
        devs.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::yield_now();
                let mut b = [0u8; 1];
                if hw.dma_read(sid, None, iova, &mut b, false).is_ok() {
                    okr.fetch_add(1, Ordering::Relaxed);
                    if b[0] != want {
                        wrong.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let users: Vec<_> = [(sa, 0x11u8), (sb, 0x22u8)]
        .into_iter()
        .map(|(sid, fill)| {
            let drv = r.drv.clone();
            let buf = r.buffer(K4, fill);
            std::thread::spawn(move || {
                let blocked = StaticDomain::blocked(&drv);
                for _ in 0..60 {
                    let d = loop {
                        match SmmuDomain::new(&drv, DomainStage::S1, K4, false) {
                            Ok(d) => break d,
                            Err(Error::NoSpace(_)) => std::thread::yield_now(),
                            Err(e) => panic!("{e}"),
                        }
                    };
                    d.map_pages(Iova(iova), buf, K4, 1, Prot::RW).1.unwrap();
                    d.attach_sids(&[sid], false).unwrap();
                    std::thread::yield_now();
                    blocked.attach_sids(&[sid]).unwrap(); // detach
                    drop(d); // ASID invalidated and freed, possibly reused at once
                }
            })
        })
        .collect();
    for u in users {
        u.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for d in devs {
        d.join().unwrap();
    }
    assert_eq!(
        wrong.load(Ordering::Relaxed),
        0,
        "a device saw another user's translation"
    );
    assert!(ok_reads.load(Ordering::Relaxed) > 0);
    let _ = r.drv.drain_events();
    r.sanitizer_silent();
}

#[test]
fn concurrent_map_unmap_in_distinct_domains_with_dma() {
    let r = rig_with(multi_cpu(), own_asids());
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    let mut devs = Vec::new();
    for t in 0..2u32 {
        let sid = 0x40 + t;
        r.drv.probe_stream(sid, false).unwrap();
        let d = SmmuDomain::new(&r.drv, DomainStage::S1, K4, false).unwrap();
        d.attach_sids(&[sid], false).unwrap();
        let hw = r.hw.clone();
        let buf = r.buffer(16 * K4, 0x30 + t as u8);
        // A stable page next to the churned ones (same leaf table): the device
        // DMAs it all along and must always see it. A second device DMAs the pages
        // being mapped and unmapped: a read may succeed or fault while the page is
        // in flux, but whenever it succeeds it sees that page's own data.
        let stable = r.buffer(K4, 0x50 + t as u8);
        d.map_pages(Iova(0x10_0000 + 16 * K4), stable, K4, 1, Prot::RW)
            .1
            .unwrap();
        let dev_stop = stop.clone();
        let hw2 = r.hw.clone();
        let started = Arc::new(AtomicBool::new(false));
        let st2 = started.clone();
        devs.push(std::thread::spawn(move || {
            let mut n = 0u64;
            while !dev_stop.load(Ordering::Relaxed) {
                let mut b = [0u8; 1];
                hw2.dma_read(sid, None, 0x10_0000 + 16 * K4, &mut b, false)
                    .unwrap();
                assert_eq!(b[0], 0x50 + t as u8);
                n += 1;
                st2.store(true, Ordering::Release);
            }
            assert!(n > 0);
        }));
        let (churn_stop, hw3) = (stop.clone(), r.hw.clone());
        devs.push(std::thread::spawn(move || {
            let mut i = 0u64;
            while !churn_stop.load(Ordering::Relaxed) {
                let page = i % 16;
                i += 1;
                let mut b = [0u8; 1];
                if hw3
                    .dma_read(sid, None, 0x10_0000 + page * K4, &mut b, false)
                    .is_ok()
                {
                    assert_eq!(b[0], 0x30 + t as u8, "page {page}");
                }
            }
        }));
        while !started.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        workers.push(std::thread::spawn(move || {
            for round in 0..100u64 {
                let page = round % 16;
                let iova = 0x10_0000 + page * K4;
                let pa = iommu_types::PhysAddr(buf.0 + page * K4);
                d.map_pages(Iova(iova), pa, K4, 1, Prot::RW).1.unwrap();
                let mut b = [0u8; 1];
                hw.dma_read(sid, None, iova, &mut b, false).unwrap();
                assert_eq!(b[0], 0x30 + t as u8);
                let mut g = IotlbGather::new();
                assert_eq!(d.unmap_pages(Iova(iova), K4, 1, &mut g), K4);
                d.iotlb_sync(&mut g).unwrap();
                assert!(hw.dma_read(sid, None, iova, &mut b, false).is_err());
            }
        }));
    }
    for w in workers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for d in devs {
        d.join().unwrap();
    }
    let _ = r.drv.drain_events();
    r.sanitizer_silent();
}

#[test]
fn seed_002_flaw_reusing_an_uninvalidated_asid_shows_the_old_translation() {
    // The broken lifecycle: an ASID goes back to the pool without TLBI_NH_ASID.
    // The next domain that gets it sees the previous owner's cached translation —
    // exactly what the driver's `IdAllocator::free(.., invalidate)` path prevents
    // (see `asid_is_not_freed_while_referenced_and_is_invalidated_before_reuse`).
    let asids = Arc::new(IdAllocator::new("ASID", 1)); // a single ASID
    let r = rig_with(
        SmmuConfig::default(),
        DriverConfig {
            asids: Some(asids.clone()),
            ..Default::default()
        },
    );
    let (sa, sb) = (1, 2);
    r.drv.probe_stream(sa, false).unwrap();
    r.drv.probe_stream(sb, false).unwrap();
    let iova = 0x5000;
    let a = SmmuDomain::new(&r.drv, DomainStage::S1, K4, false).unwrap();
    let asid = a.ctx().asid().unwrap();
    a.map_pages(Iova(iova), r.buffer(K4, 0xaa), K4, 1, Prot::RW)
        .1
        .unwrap();
    a.attach_sids(&[sa], false).unwrap();
    let mut b = [0u8; 1];
    r.hw.dma_read(sa, None, iova, &mut b, false).unwrap();
    assert_eq!(b[0], 0xaa);
    StaticDomain::blocked(&r.drv).attach_sids(&[sa]).unwrap();
    // Flawed free: no invalidation. (`a`'s own drop later finds it already free.)
    asids.free(asid, |_| Ok(())).unwrap();
    let c = SmmuDomain::new(&r.drv, DomainStage::S1, K4, false).unwrap();
    assert_eq!(
        c.ctx().asid(),
        Some(asid),
        "the same ASID is handed out again"
    );
    c.map_pages(Iova(iova), r.buffer(K4, 0xcc), K4, 1, Prot::RW)
        .1
        .unwrap();
    c.attach_sids(&[sb], false).unwrap();
    r.hw.dma_read(sb, None, iova, &mut b, false).unwrap();
    assert_eq!(b[0], 0xaa, "stale translation of the previous ASID owner");
    let _ = r.hw.take_sanitizer_reports();
    drop(a);
}

#[test]
fn pasid_cds_translate_per_substream() {
    let r = rig();
    let sid = 7;
    r.drv.probe_stream(sid, false).unwrap();
    let a = SmmuDomain::new(&r.drv, DomainStage::S1, K4, false).unwrap();
    let b = SmmuDomain::new(&r.drv, DomainStage::S1, K4, false).unwrap();
    let (pa, pb) = (r.buffer(K4, 0xa1), r.buffer(K4, 0xb2));
    a.map_pages(Iova(0x3000), pa, K4, 1, Prot::RW).1.unwrap();
    b.map_pages(Iova(0x3000), pb, K4, 1, Prot::RW).1.unwrap();
    // PASIDs need a stage-1 RID domain first.
    assert!(matches!(b.attach_pasid(sid, 1), Err(Error::Invalid(_))));
    a.attach_sids(&[sid], false).unwrap();
    b.attach_pasid(sid, 1).unwrap();
    a.attach_pasid(sid, 2).unwrap(); // same domain, same ASID, same translation
    let at = |ssid| {
        r.hw.translate(sid, ssid, 0x3000, Access::READ)
            .map(|t| t.pa)
    };
    assert_eq!(at(None).unwrap(), pa);
    assert_eq!(at(Some(1)).unwrap(), pb);
    assert_eq!(at(Some(2)).unwrap(), pa);
    assert!(matches!(
        b.attach_pasid(sid, 1 << 20),
        Err(Error::Invalid(_))
    ));
    // The RID cannot leave stage 1 while PASIDs use the CD table.
    assert!(matches!(
        StaticDomain::identity(&r.drv).attach_sids(&[sid]),
        Err(Error::Busy(_))
    ));
    smmuv3::domain::detach_pasid(&r.drv, sid, 1).unwrap();
    assert!(at(Some(1)).is_err());
    let ev = r.drv.drain_events().unwrap();
    assert!(
        ev.iter().any(|e| e.kind == smmuv3::event::EventKind::BadCd),
        "{ev:?}"
    );
    smmuv3::domain::detach_pasid(&r.drv, sid, 2).unwrap();
    StaticDomain::identity(&r.drv).attach_sids(&[sid]).unwrap();
    r.sanitizer_silent();
}

#[test]
fn seed_002_race_with_pasid_users_and_rid_switches() {
    // The seed's scenario: while one stream's RID domain is switched, other users
    // keep installing and removing PASID CDs with recycled ASIDs.
    let asids = Arc::new(IdAllocator::new("ASID", 3)); // 7 ASIDs
    let r = rig_with(
        multi_cpu(),
        DriverConfig {
            asids: Some(asids),
            ..Default::default()
        },
    );
    let (sx, sy) = (0x30, 0x31);
    for s in [sx, sy] {
        r.drv.probe_stream(s, false).unwrap();
    }
    let rid_a = SmmuDomain::new(&r.drv, DomainStage::S1, K4, false).unwrap();
    let rid_b = SmmuDomain::new(&r.drv, DomainStage::S1, K4, false).unwrap();
    let rid_page = r.buffer(K4, 0x77);
    for d in [&rid_a, &rid_b] {
        d.map_pages(Iova(0x6000), rid_page, K4, 1, Prot::RW)
            .1
            .unwrap();
    }
    rid_a.attach_sids(&[sx, sy], false).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let wrong = Arc::new(AtomicU64::new(0));
    let mut devs = Vec::new();
    for (sid, want) in [(sx, 0x11u8), (sy, 0x22u8)] {
        let (hw, stop, wrong) = (r.hw.clone(), stop.clone(), wrong.clone());
        devs.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::yield_now();
                let mut b = [0u8; 1];
                if hw.dma_read(sid, Some(1), 0x6000, &mut b, false).is_ok() && b[0] != want {
                    wrong.fetch_add(1, Ordering::Relaxed);
                }
                if hw.dma_read(sid, None, 0x6000, &mut b, false).is_ok() && b[0] != 0x77 {
                    wrong.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let mut users = Vec::new();
    for (sid, fill) in [(sx, 0x11u8), (sy, 0x22u8)] {
        let drv = r.drv.clone();
        let page = r.buffer(K4, fill);
        users.push(std::thread::spawn(move || {
            for _ in 0..50 {
                let d = loop {
                    match SmmuDomain::new(&drv, DomainStage::S1, K4, false) {
                        Ok(d) => break d,
                        Err(Error::NoSpace(_)) => std::thread::yield_now(),
                        Err(e) => panic!("{e}"),
                    }
                };
                d.map_pages(Iova(0x6000), page, K4, 1, Prot::RW).1.unwrap();
                d.attach_pasid(sid, 1).unwrap();
                std::thread::yield_now();
                smmuv3::domain::detach_pasid(&drv, sid, 1).unwrap();
                drop(d);
            }
        }));
    }
    for i in 0..50 {
        let d = if i % 2 == 0 { &rid_b } else { &rid_a };
        d.attach_sids(&[sx], false).unwrap();
    }
    for u in users {
        u.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for d in devs {
        d.join().unwrap();
    }
    assert_eq!(
        wrong.load(Ordering::Relaxed),
        0,
        "a device saw another translation"
    );
    let _ = r.drv.drain_events();
    r.sanitizer_silent();
}

#[test]
fn two_level_cd_table_serves_high_pasids() {
    // Default model: CD2L and 20 SSID bits, more than the linear limit.
    let r = rig();
    let sid = 9;
    r.drv.probe_stream(sid, false).unwrap();
    let a = SmmuDomain::new(&r.drv, DomainStage::S1, K4, false).unwrap();
    let b = SmmuDomain::new(&r.drv, DomainStage::S1, K4, false).unwrap();
    let (pa, pb) = (r.buffer(K4, 0xa1), r.buffer(K4, 0xb2));
    a.map_pages(Iova(0x3000), pa, K4, 1, Prot::RW).1.unwrap();
    b.map_pages(Iova(0x3000), pb, K4, 1, Prot::RW).1.unwrap();
    a.attach_sids(&[sid], false).unwrap();
    let at = |ssid| {
        r.hw.translate(sid, ssid, 0x3000, Access::READ)
            .map(|t| t.pa)
    };
    let high = 0xA_BCDE;
    // Before the PASID exists the SMMU fetches (and may cache) the invalid L1
    // descriptor of its leaf; installing the leaf must invalidate it (CFGI_CD,
    // Leaf = 0) or the PASID would keep faulting.
    assert!(at(Some(high)).is_err());
    let cfgi_cd = r.hw.stats().commands[0x05];
    b.attach_pasid(sid, high).unwrap();
    let first = r.hw.stats().commands[0x05] - cfgi_cd;
    assert_eq!(at(Some(high)).unwrap(), pb);
    // A second PASID in the same leaf needs no leaf install: one CFGI_CD fewer.
    let cfgi_cd = r.hw.stats().commands[0x05];
    a.attach_pasid(sid, high + 1).unwrap();
    assert_eq!(r.hw.stats().commands[0x05] - cfgi_cd, first - 1);
    // Other leaves, the first and the last SSID of the space.
    b.attach_pasid(sid, 1).unwrap();
    a.attach_pasid(sid, (1 << 20) - 1).unwrap();
    assert_eq!(at(None).unwrap(), pa);
    assert_eq!(at(Some(high + 1)).unwrap(), pa);
    assert_eq!(at(Some(1)).unwrap(), pb);
    assert_eq!(at(Some((1 << 20) - 1)).unwrap(), pa);
    // A PASID in a leaf never installed still faults.
    assert!(at(Some(0x5_0000)).is_err());
    for s in [high, high + 1, 1, (1 << 20) - 1] {
        smmuv3::domain::detach_pasid(&r.drv, sid, s).unwrap();
        assert!(at(Some(s)).is_err());
    }
    let _ = r.drv.drain_events();
    r.sanitizer_silent();
    // Detaching a PASID whose leaf was never installed is not an error path.
    assert!(smmuv3::domain::detach_pasid(&r.drv, sid, 0x7_0000).is_err());
}

#[test]
fn linear_cd_table_without_cd2l() {
    let r = rig_with(
        SmmuConfig::builder().two_level_cd(false).build(),
        own_asids(),
    );
    let sid = 9;
    r.drv.probe_stream(sid, false).unwrap();
    let a = SmmuDomain::new(&r.drv, DomainStage::S1, K4, false).unwrap();
    let pa = r.buffer(K4, 0xa1);
    a.map_pages(Iova(0x3000), pa, K4, 1, Prot::RW).1.unwrap();
    a.attach_sids(&[sid], false).unwrap();
    let last = (1 << smmuv3::domain::MAX_CD_BITS) - 1;
    a.attach_pasid(sid, last).unwrap();
    assert_eq!(
        r.hw.translate(sid, Some(last), 0x3000, Access::READ)
            .unwrap()
            .pa,
        pa
    );
    assert!(matches!(
        a.attach_pasid(sid, last + 1),
        Err(Error::Invalid(_))
    ));
    smmuv3::domain::detach_pasid(&r.drv, sid, last).unwrap();
    r.sanitizer_silent();
}
