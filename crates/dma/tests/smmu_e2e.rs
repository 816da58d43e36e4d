//! End to end on the SMMUv3 driver and the SMMUv3 hardware model: the DMA API maps
//! through a real driver domain (LPAE tables in simulated memory, TLBI + CMD_SYNC on
//! the command queue) and the device's accesses go through the model's walker and
//! TLB. IOVAs come from iommu-iova's magazine allocator.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::pattern;
use iommu_dma::bind::CoreDomain;
use iommu_dma::layout::SgEntry;
use iommu_dma::{
    DeviceConfig, DmaAttrs, DmaCookie, DmaDevice, DmaDirection, IovaAllocator, Swiotlb,
};
use iommu_iova::IovaDomain;
use iommu_memory::SimMemory;
use iommu_types::{FixedCpuId, Mmio, PhysAddr, PhysMem};
use smmuv3::domain::{DomainStage, SmmuDomain};
use smmuv3::{DriverConfig, Smmu};
use smmuv3_model::{Smmu as Model, SmmuConfig};

const SID: u32 = 0x20;
const K: u64 = 1024;
const NA: DmaAttrs = DmaAttrs {
    skip_cpu_sync: false,
    privileged: false,
};

/// Frees into iommu-iova after checking, through the hardware model, that the
/// device can no longer reach the range (no stale IOTLB entry left).
struct HwCheckedIova {
    inner: IovaDomain,
    hw: Arc<Model>,
    shift: u32,
    checks: AtomicUsize,
    allocs: AtomicUsize,
}

impl IovaAllocator for HwCheckedIova {
    fn alloc(&self, pages: u64, limit_pfn: u64, flush: bool) -> Option<u64> {
        let r = self.inner.alloc(pages, limit_pfn, flush);
        if r.is_some() {
            self.allocs.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
    fn free(&self, pfn: u64, pages: u64) {
        for p in pfn..pfn + pages.min(64) {
            let iova = p << self.shift;
            let mut b = [0u8; 1];
            assert!(
                self.hw.dma_read(SID, None, iova, &mut b, false).is_err(),
                "IOVA {iova:#x} freed while the SMMU still translates it"
            );
        }
        self.checks.fetch_add(1, Ordering::Relaxed);
        self.inner.free(pfn, pages);
    }
}

type Dom = CoreDomain<SmmuDomain>;
type Cookie = DmaCookie<Dom, Arc<HwCheckedIova>>;

struct Rig {
    mem: Arc<SimMemory>,
    hw: Arc<Model>,
    drv: Arc<Smmu>,
    cookie: Arc<Cookie>,
    iova: Arc<HwCheckedIova>,
    pool: Arc<Swiotlb>,
}

impl Rig {
    fn new(granule: u64, cpu_page: u64) -> Rig {
        let mem = Arc::new(SimMemory::new());
        let hw = Arc::new(Model::new(
            SmmuConfig::default(),
            mem.clone() as Arc<dyn PhysMem>,
        ));
        let cfg = DriverConfig {
            asids: Some(Arc::new(smmuv3::ids::IdAllocator::new("ASID", 16))),
            ..Default::default()
        };
        let drv = Smmu::probe(
            hw.clone() as Arc<dyn Mmio>,
            mem.clone() as Arc<dyn PhysMem>,
            cfg,
        )
        .unwrap();
        drv.probe_stream(SID, false).unwrap();
        let dom = SmmuDomain::new(&drv, DomainStage::S1, granule, false).unwrap();
        dom.attach_sids(&[SID], false).unwrap();
        let iova = Arc::new(HwCheckedIova {
            inner: IovaDomain::new(granule, 1).unwrap(),
            hw: hw.clone(),
            shift: granule.trailing_zeros(),
            checks: AtomicUsize::new(0),
            allocs: AtomicUsize::new(0),
        });
        let cookie = Arc::new(
            DmaCookie::with_fq_size(
                CoreDomain(dom),
                iova.clone(),
                Arc::new(FixedCpuId { id: 0, count: 1 }),
                16,
            )
            .unwrap(),
        );
        let pool = Arc::new(Swiotlb::new(mem.clone(), 2 << 20, cpu_page).unwrap());
        Rig {
            mem,
            hw,
            drv,
            cookie,
            iova,
            pool,
        }
    }

    fn device(&self, cfg: DeviceConfig) -> DmaDevice<Dom, Arc<HwCheckedIova>> {
        DmaDevice::new(
            self.cookie.clone(),
            self.mem.clone(),
            Some(self.pool.clone()),
            cfg,
        )
        .unwrap()
    }

    fn buffer(&self, offset: u64, bytes: u64, seed: u8) -> PhysAddr {
        let region = (offset + bytes).next_multiple_of(65536) + 65536;
        let base = self.mem.alloc_pages(region, 65536).unwrap();
        self.mem.fill_bytes(base, region, 0xee).unwrap();
        let pa = PhysAddr(base.0 + offset);
        self.mem
            .write_bytes(pa, &pattern(bytes as usize, seed))
            .unwrap();
        pa
    }

    fn read(&self, iova: u64, len: u64) -> Result<Vec<u8>, smmuv3_model::Error> {
        let mut b = vec![0; len as usize];
        self.hw.dma_read(SID, None, iova, &mut b, false).map(|()| b)
    }

    fn write(&self, iova: u64, data: &[u8]) -> Result<(), smmuv3_model::Error> {
        self.hw.dma_write(SID, None, iova, data, false)
    }

    fn sanitizer_silent(&self) {
        let r = self.hw.sanitizer_reports();
        assert!(r.is_empty(), "sanitizer reports: {r:#?}");
    }
}

fn cases() -> Vec<(u64, u64)> {
    vec![
        (4 * K, 4 * K),
        (16 * K, 4 * K),
        (64 * K, 4 * K),
        (64 * K, 16 * K),
    ]
}

#[test]
fn every_api_through_driver_and_model() {
    for (g, page) in cases() {
        for trusted in [true, false] {
            let rig = Rig::new(g, page);
            let dev = rig.device(DeviceConfig {
                trusted,
                cpu_page: page,
                ..DeviceConfig::default()
            });
            let ctx = format!("g={g:#x} page={page:#x} trusted={trusted}");
            // map_page, unaligned in the granule.
            let buf = rig.buffer(page + 0x40, 3 * page, 1);
            let dma = dev
                .map_page(buf, 3 * page, DmaDirection::Bidirectional, NA)
                .unwrap();
            assert_eq!(
                rig.read(dma, 3 * page).unwrap(),
                pattern(3 * page as usize, 1),
                "{ctx}"
            );
            rig.write(dma + 8, &[0x77; 16]).unwrap();
            if trusted {
                assert!(dev.exposed_bytes() > 0, "{ctx}");
            } else {
                assert_eq!(dev.exposed_bytes(), 0, "{ctx}");
                let head = rig.read(dma - dma % g, dma % g).unwrap();
                assert!(
                    head.iter().all(|&b| b == 0),
                    "{ctx}: only zeros before the buffer"
                );
            }
            dev.unmap_page(dma, 3 * page, DmaDirection::Bidirectional, NA)
                .unwrap();
            assert!(
                rig.read(dma, 1).is_err(),
                "{ctx}: strict unmap leaves no translation"
            );
            let mut got = vec![0; 16];
            rig.mem.read_bytes(PhysAddr(buf.0 + 8), &mut got).unwrap();
            assert_eq!(got, vec![0x77; 16], "{ctx}");
            // map_sg.
            let list: Vec<SgEntry> = (0..5u8)
                .map(|i| SgEntry {
                    phys: rig.buffer(u64::from(i) * page % g, page + 100, i + 10).0,
                    len: page + 100,
                })
                .collect();
            let m = dev.map_sg(&list, DmaDirection::ToDevice, NA).unwrap();
            let mut seen = Vec::new();
            for s in &m.segments {
                seen.extend(rig.read(s.addr, s.len).unwrap());
            }
            let want: Vec<u8> = (0..5u8)
                .flat_map(|i| pattern(page as usize + 100, i + 10))
                .collect();
            assert_eq!(seen, want, "{ctx}");
            let first = m.segments[0].addr;
            dev.unmap_sg(m, NA).unwrap();
            assert!(rig.read(first, 1).is_err(), "{ctx}");
            // Coherent and non-contiguous allocations.
            let a = dev.alloc_coherent(5000).unwrap();
            rig.write(a.dma, &[5; 5000]).unwrap();
            let mut cpu = vec![0; 5000];
            rig.mem
                .read_bytes(a.cpu_addr(0).unwrap(), &mut cpu[..100])
                .unwrap();
            assert_eq!(&cpu[..100], &[5; 100][..], "{ctx}");
            let n = dev.alloc_noncontiguous(3 * g).unwrap();
            rig.write(n.dma, &pattern(3 * g as usize, 9)).unwrap();
            assert_eq!(
                rig.read(n.dma, 3 * g).unwrap(),
                pattern(3 * g as usize, 9),
                "{ctx}"
            );
            assert_eq!(dev.get_sgtable(&a).is_err(), g > page, "{ctx}");
            dev.free(a).unwrap();
            dev.free(n).unwrap();
            assert_eq!(dev.exposed_bytes(), 0, "{ctx}");
            assert!(rig.iova.checks.load(Ordering::Relaxed) >= 4);
            rig.sanitizer_silent();
        }
    }
}

#[test]
fn bounce_directions_and_sync_through_the_model() {
    for dir in [
        DmaDirection::ToDevice,
        DmaDirection::FromDevice,
        DmaDirection::Bidirectional,
    ] {
        let rig = Rig::new(16 * K, 4 * K);
        let dev = rig.device(DeviceConfig {
            trusted: false,
            ..DeviceConfig::default()
        });
        let buf = rig.buffer(0x1000, 0x300, 3);
        let dma = dev.map_page(buf, 0x300, dir, NA).unwrap();
        // LPAE has no write-only permission, so only TO_DEVICE is checked: the
        // device must not write through it.
        if dir == DmaDirection::ToDevice {
            assert!(
                rig.write(dma, &[1]).is_err(),
                "TO_DEVICE mapping is read-only"
            );
        }
        if dir != DmaDirection::ToDevice {
            rig.write(dma, &[0x42; 0x300]).unwrap();
            dev.sync_single_for_cpu(dma, 0x10, dir).unwrap();
            let mut b = [0u8; 0x11];
            rig.mem.read_bytes(buf, &mut b).unwrap();
            assert_eq!(&b[..0x10], &[0x42; 0x10]);
            assert_ne!(b[0x10], 0x42, "only the synced part");
        } else {
            rig.mem.write_bytes(buf, &[0x24; 8]).unwrap();
            dev.sync_single_for_device(dma, 8, dir).unwrap();
            assert_eq!(rig.read(dma, 8).unwrap(), vec![0x24; 8]);
        }
        dev.unmap_page(dma, 0x300, dir, NA).unwrap();
        let mut b = vec![0u8; 0x300];
        rig.mem.read_bytes(buf, &mut b).unwrap();
        assert_eq!(
            b.iter().all(|&x| x == 0x42),
            dir != DmaDirection::ToDevice,
            "{dir:?}"
        );
        assert_eq!(rig.pool.stats().used_slots, 0);
        rig.sanitizer_silent();
    }
}

#[test]
fn lazy_unmap_never_reuses_an_iova_before_its_flush() {
    let rig = Rig::new(4 * K, 4 * K);
    let dev = rig.device(DeviceConfig {
        pci_32bit_workaround: false,
        ..DeviceConfig::default()
    });
    rig.cookie.enable_flush_queue().unwrap();
    let buf = rig.buffer(0, 4096, 1);
    let mut queued = Vec::new();
    for _ in 0..10 {
        let d = dev.map_page(buf, 4096, DmaDirection::ToDevice, NA).unwrap();
        assert!(
            !queued.contains(&d),
            "IOVA {d:#x} reused while still queued"
        );
        rig.read(d, 64).unwrap();
        dev.unmap_page(d, 4096, DmaDirection::ToDevice, NA).unwrap();
        queued.push(d);
    }
    // Lazy: the model may still hold the old translations until the flush, so
    // nothing may have been freed yet.
    assert_eq!(
        rig.iova.checks.load(Ordering::Relaxed),
        0,
        "an IOVA was freed before its flush"
    );
    assert_eq!(rig.cookie.flush_queue().occupancy(), 10);
    rig.cookie.flush_queue_timer().unwrap();
    for &d in &queued {
        assert!(rig.read(d, 1).is_err(), "no translation after the flush");
    }
    assert_eq!(rig.cookie.flush_queue().occupancy(), 0);
    assert_eq!(
        rig.iova.checks.load(Ordering::Relaxed),
        10,
        "every IOVA freed once, after its flush"
    );
    let _ = rig.drv.drain_events();
}

#[test]
fn live_switch_under_load_on_the_driver() {
    let rig = Arc::new(Rig::new(4 * K, 4 * K));
    let dev = Arc::new(rig.device(DeviceConfig::default()));
    let done = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for t in 0..2u8 {
        let (rig, dev, done) = (rig.clone(), dev.clone(), done.clone());
        workers.push(std::thread::spawn(move || {
            let buf = rig.buffer(0x10 * u64::from(t), 5000, t);
            for i in 0..150 {
                let d = dev.map_page(buf, 5000, DmaDirection::ToDevice, NA).unwrap();
                assert_eq!(rig.read(d, 5000).unwrap(), pattern(5000, t));
                dev.unmap_page(d, 5000, DmaDirection::ToDevice, NA).unwrap();
                done.fetch_add(1, Ordering::Relaxed);
                // Hold until the switch, so the run surely has strict unmaps
                // before it and lazy ones after it.
                if i == 75 {
                    while !rig.cookie.is_lazy() {
                        std::thread::yield_now();
                    }
                }
            }
        }));
    }
    while done.load(Ordering::Relaxed) < 60 {
        std::thread::yield_now();
    }
    rig.cookie.enable_flush_queue().unwrap();
    for w in workers {
        w.join().unwrap();
    }
    let queued = rig.cookie.flush_queue().stats().queued;
    assert!(
        (2 * 74..=300 - 60).contains(&queued),
        "strict unmaps before the switch, lazy after: {queued} queued"
    );
    rig.cookie.flush_queue_timer().unwrap();
    assert_eq!(rig.iova.checks.load(Ordering::Relaxed), 300);
    let _ = rig.drv.drain_events();
}

#[test]
fn masks_and_unwinding_on_the_driver() {
    let rig = Rig::new(4 * K, 4 * K);
    let dev32 = rig.device(DeviceConfig {
        dma_mask: 0xffff_ffff,
        ..DeviceConfig::default()
    });
    let buf = rig.buffer(0, 8192, 1);
    let d = dev32
        .map_page(buf, 8192, DmaDirection::ToDevice, NA)
        .unwrap();
    assert!(d + 8191 <= 0xffff_ffff);
    assert_eq!(rig.read(d, 8192).unwrap(), pattern(8192, 1));
    dev32
        .unmap_page(d, 8192, DmaDirection::ToDevice, NA)
        .unwrap();
    // A list whose 3rd element cannot be mapped (an address beyond the output
    // size): the whole call fails and nothing stays mapped.
    let mut list: Vec<SgEntry> = (0..4)
        .map(|i| SgEntry {
            phys: rig.buffer(0, 4096, i).0,
            len: 4096,
        })
        .collect();
    list[2].phys = 1 << 60;
    let err = dev32.map_sg(&list, DmaDirection::ToDevice, NA).unwrap_err();
    assert_eq!(err.errno(), iommu_types::Errno::EINVAL);
    assert_eq!(
        rig.iova.checks.load(Ordering::Relaxed),
        2,
        "the failed list's IOVA was freed, after checking none of it translates"
    );
    let again = dev32
        .map_page(buf, 4096, DmaDirection::ToDevice, NA)
        .unwrap();
    assert!(rig.read(again, 1).is_ok());
    dev32
        .unmap_page(again, 4096, DmaDirection::ToDevice, NA)
        .unwrap();
    rig.sanitizer_silent();
}

/// Issue 6 on the driver and the hardware model: an untrusted device's unaligned
/// scatterlist takes ONE IOVA allocation (counted at the allocator), every segment
/// lies inside it, and the device reading each segment's whole granule window
/// through the SMMU sees the list's data and zeros only (bounced heads and tails,
/// zero padding); its writes come back per element on unmap and nothing else is
/// touched.
#[test]
fn untrusted_map_sg_one_allocation_through_the_model() {
    for (g, page) in cases().into_iter().filter(|&(g, p)| g > p) {
        let rig = Rig::new(g, page);
        let (pool_base, pool_len) = rig.pool.range();
        rig.mem.fill_bytes(pool_base, pool_len, 0xdd).unwrap();
        let dev = rig.device(DeviceConfig {
            trusted: false,
            cpu_page: page,
            max_seg_size: u64::MAX,
            ..DeviceConfig::default()
        });
        let shapes = [
            (page, 2 * g + page),
            (page, g - page),
            (0, g),
            (g - 8, 16),
            (100, 3 * g),
        ];
        let list: Vec<SgEntry> = shapes
            .iter()
            .enumerate()
            .map(|(i, &(off, len))| SgEntry {
                phys: rig.buffer(off, len, 20 + i as u8).0,
                len,
            })
            .collect();
        let want: Vec<u8> = list
            .iter()
            .enumerate()
            .flat_map(|(i, e)| pattern(e.len as usize, 20 + i as u8))
            .collect();
        let ctx = format!("g={g:#x} page={page:#x}");
        let before = rig.iova.allocs.load(Ordering::Relaxed);
        let m = dev.map_sg(&list, DmaDirection::Bidirectional, NA).unwrap();
        assert_eq!(
            rig.iova.allocs.load(Ordering::Relaxed) - before,
            1,
            "{ctx}: ONE IOVA allocation for the whole list"
        );
        assert_eq!(m.exposed, 0);
        assert_eq!(m.segments.len(), 4, "{ctx}: elements 1 and 2 merge");
        let (lo, size) = m.iova_range();
        let mut got = Vec::new();
        for s in &m.segments {
            assert!(
                s.addr >= lo && s.addr + s.len <= lo + size,
                "{ctx}: segment {s:x?} outside {lo:#x}+{size:#x}"
            );
            let wlo = s.addr - s.addr % g;
            let whi = (s.addr + s.len).next_multiple_of(g);
            let win = rig.read(wlo, whi - wlo).unwrap();
            let (a, b) = ((s.addr - wlo) as usize, (s.addr - wlo + s.len) as usize);
            assert!(
                win[..a].iter().all(|&x| x == 0),
                "{ctx}: head padding {s:x?}"
            );
            assert!(
                win[b..].iter().all(|&x| x == 0),
                "{ctx}: tail padding {s:x?}"
            );
            got.extend_from_slice(&win[a..b]);
            rig.write(s.addr, &vec![0x5a; s.len as usize]).unwrap();
        }
        assert_eq!(got, want, "{ctx}: data in list order");
        dev.unmap_sg(m, NA).unwrap();
        for (e, &(off, _)) in list.iter().zip(&shapes) {
            let mut b = vec![0u8; (off + e.len + g) as usize];
            rig.mem.read_bytes(PhysAddr(e.phys - off), &mut b).unwrap();
            let (a, z) = (off as usize, (off + e.len) as usize);
            assert!(b[a..z].iter().all(|&x| x == 0x5a), "{ctx}: copied back");
            assert!(b[..a].iter().all(|&x| x == 0xee), "{ctx}: before untouched");
            assert!(b[z..].iter().all(|&x| x == 0xee), "{ctx}: after untouched");
        }
        assert_eq!(rig.pool.stats().used_slots, 0);
        assert!(rig.read(lo, 1).is_err(), "{ctx}: unmapped");
        rig.sanitizer_silent();
    }
}
