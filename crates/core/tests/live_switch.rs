//! The live DMA → DMA-FQ switch while other threads keep mapping and unmapping
//! through the domain (reference `software.md` §1.3, §1.4; seed 000): the DMA
//! cookie's `init_flush_queue` runs before DMA-FQ is published, nothing is
//! detached or rebuilt, and every unmap decides strict-or-lazy from one snapshot.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use common::*;
use iommu_core::*;
use iommu_types::{Iova, PhysAddr, Prot};

/// A DMA-layer stand-in: its own "flush queue ready" flag is what unmappers consult.
struct MockCookie {
    domain: Weak<IommuDomain>,
    fq_ready: AtomicBool,
    calls: AtomicU32,
    type_at_init: Mutex<Vec<DomainType>>,
    /// How long setting up the queue takes (widens the race window).
    delay: Duration,
}

impl DmaCookie for MockCookie {
    fn init_flush_queue(&self) -> Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(d) = self.domain.upgrade() {
            self.type_at_init.lock().unwrap().push(d.domain_type());
        }
        std::thread::sleep(self.delay);
        self.fq_ready.store(true, Ordering::Release);
        Ok(())
    }
}

#[test]
fn dma_to_dma_fq_is_live_and_ordered() {
    let (core, drv, mmu) = setup(DefaultPolicy::Strict);
    let dev = core.add_device(pci("nic", mmu, 1, 0, 0, None)).unwrap();
    let g = core.device_group(dev).unwrap();
    let dom = core.device_use_default_domain(dev).unwrap();
    assert_eq!(dom.domain_type(), DomainType::Dma);
    let cookie = Arc::new(MockCookie {
        domain: Arc::downgrade(&dom),
        fq_ready: AtomicBool::new(false),
        calls: AtomicU32::new(0),
        type_at_init: Mutex::new(Vec::new()),
        delay: Duration::from_millis(30),
    });
    assert_eq!(dom.set_dma_cookie(cookie.clone()).unwrap(), DomainType::Dma);
    let events_before = drv.shared.events.lock().unwrap().len();

    const THREADS: u64 = 3;
    let stop = Arc::new(AtomicBool::new(false));
    let iters: Arc<Vec<AtomicU64>> = Arc::new((0..THREADS).map(|_| AtomicU64::new(0)).collect());
    let mut handles = Vec::new();
    for t in 0..THREADS {
        let (dom, cookie, stop, iters) = (dom.clone(), cookie.clone(), stop.clone(), iters.clone());
        handles.push(std::thread::spawn(move || {
            let (mut strict, mut lazy, mut bad) = (0u64, 0u64, 0u64);
            let base = 0x1000_0000 + t * 0x100_0000;
            let mut i = 0u64;
            while !stop.load(Ordering::Acquire) {
                let iova = base + (i % 64) * 0x4000;
                dom.map(Iova(iova), PhysAddr(0x8_0000_0000 + iova), 0x4000, Prot::RW)
                    .unwrap();
                assert_eq!(
                    dom.iova_to_phys(Iova(iova + 0x10)),
                    Some(PhysAddr(0x8_0000_0000 + iova + 0x10))
                );
                // One snapshot drives every decision of this unmap (§1.4).
                let lazy_now = dom.domain_type() == DomainType::DmaFq;
                if lazy_now && !cookie.fq_ready.load(Ordering::Acquire) {
                    bad += 1; // DMA-FQ visible before the queue exists
                }
                let mut gather = if lazy_now {
                    IotlbGather::new_queued()
                } else {
                    IotlbGather::new()
                };
                assert_eq!(
                    dom.unmap_fast(Iova(iova), 0x4000, &mut gather).unwrap(),
                    0x4000
                );
                if lazy_now {
                    lazy += 1; // the flush queue would take the IOVA
                } else {
                    dom.iotlb_sync(&mut gather).unwrap();
                    strict += 1;
                }
                i += 1;
                iters[t as usize].store(i, Ordering::Release);
            }
            (strict, lazy, bad)
        }));
    }

    let wait_all = |n: u64| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while iters.iter().any(|c| c.load(Ordering::Acquire) < n) {
            assert!(Instant::now() < deadline, "workers stalled");
            std::thread::yield_now();
        }
    };
    wait_all(50);
    let before: Vec<u64> = iters.iter().map(|c| c.load(Ordering::Acquire)).collect();
    core.set_group_type(g, "DMA-FQ", Credentials::ROOT).unwrap();
    let at_switch: Vec<u64> = iters.iter().map(|c| c.load(Ordering::Acquire)).collect();
    wait_all(at_switch.iter().max().unwrap() + 50);
    stop.store(true, Ordering::Release);
    let results: Vec<(u64, u64, u64)> = handles.into_iter().map(|h| h.join().unwrap()).collect();

    // Mapping continued during the switch (the hook took 30 ms).
    assert!(
        at_switch.iter().zip(&before).any(|(a, b)| a > b),
        "no progress during the switch"
    );
    for (strict, lazy, bad) in &results {
        assert_eq!(
            *bad, 0,
            "a thread saw DMA-FQ before the flush queue was ready"
        );
        assert!(
            *strict > 0 && *lazy > 0,
            "each thread saw both modes: {strict} strict, {lazy} lazy"
        );
    }
    // The hook ran once, while the domain was still labelled DMA.
    assert_eq!(cookie.calls.load(Ordering::SeqCst), 1);
    assert_eq!(*cookie.type_at_init.lock().unwrap(), vec![DomainType::Dma]);
    // Same domain, nothing detached or re-attached, the driver stays bound.
    assert!(Arc::ptr_eq(
        &core.group_default_domain(g).unwrap().unwrap(),
        &dom
    ));
    assert!(Arc::ptr_eq(&core.group_domain(g).unwrap().unwrap(), &dom));
    assert_eq!(drv.shared.events.lock().unwrap().len(), events_before);
    assert_eq!(core.group_owner_count(g).unwrap(), 1);
    assert_eq!(dom.domain_type(), DomainType::DmaFq);
    assert!(mock_of(&dom).ptes.lock().unwrap().is_empty());
    assert_clean(&drv);
}

#[test]
fn switching_without_a_cookie_relabels_and_a_later_cookie_sees_dma_fq() {
    let (core, drv, mmu) = setup(DefaultPolicy::Strict);
    let dev = core.add_device(pci("nic", mmu, 1, 0, 0, None)).unwrap();
    let g = core.device_group(dev).unwrap();
    let dom = core.group_default_domain(g).unwrap().unwrap();
    core.set_group_type(g, "DMA-FQ", Credentials::ROOT).unwrap();
    let cookie = Arc::new(MockCookie {
        domain: Arc::downgrade(&dom),
        fq_ready: AtomicBool::new(false),
        calls: AtomicU32::new(0),
        type_at_init: Mutex::new(Vec::new()),
        delay: Duration::ZERO,
    });
    // The DMA layer learns it must set the queue up itself.
    assert_eq!(
        dom.set_dma_cookie(cookie.clone()).unwrap(),
        DomainType::DmaFq
    );
    assert_eq!(cookie.calls.load(Ordering::SeqCst), 0);
    assert_clean(&drv);
}
