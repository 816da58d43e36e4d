//! The DMA API end to end over the mock domain (modelled IOTLB) and simulated
//! memory: the device model reads and writes through the IOMMU and must see
//! exactly the right bytes.

mod common;

use common::*;
use iommu_dma::layout::SgEntry;
use iommu_dma::{DeviceConfig, DmaAttrs, DmaDirection, DmaDomain, Error};
use iommu_types::{Errno, PhysAddr, PhysMem, Prot};

const K: u64 = 1024;
const NA: DmaAttrs = DmaAttrs {
    skip_cpu_sync: false,
    privileged: false,
};

#[test]
fn map_page_device_reads_and_writes_the_buffer_then_strict_unmap_faults() {
    let rig = Rig::new(4 * K, 4 * K);
    let dev = rig.device(trusted(4 * K));
    let buf = rig.buffer(0x340, 3000);
    let dma = dev
        .map_page(buf, 3000, DmaDirection::Bidirectional, NA)
        .unwrap();
    assert_eq!(dma & 0xfff, 0x340, "IOVA carries the offset");
    let mut seen = vec![0; 3000];
    rig.domain.dma_read(&*rig.mem, dma, &mut seen).unwrap();
    assert_eq!(seen, pattern(3000, 1));
    rig.domain.dma_write(&*rig.mem, dma + 10, &[7; 20]).unwrap();
    assert_eq!(rig.read(PhysAddr(buf.0 + 10), 20), vec![7; 20]);
    assert!(rig.domain.tlb_holds(dma, 1));
    dev.unmap_page(dma, 3000, DmaDirection::Bidirectional, NA)
        .unwrap();
    assert!(!rig.domain.tlb_holds(dma, 1), "strict unmap invalidated");
    assert!(
        rig.domain.dma_read(&*rig.mem, dma, &mut [0; 4]).is_err(),
        "next access faults"
    );
    assert_eq!(rig.iova.live(), 0);
    assert!(matches!(
        dev.unmap_page(dma, 3000, DmaDirection::Bidirectional, NA),
        Err(Error::NotMapped { .. })
    ));
}

#[test]
fn direction_sets_the_permission() {
    let rig = Rig::new(4 * K, 4 * K);
    let dev = rig.device(trusted(4 * K));
    let buf = rig.buffer(0, 4096);
    let dma = dev.map_page(buf, 4096, DmaDirection::ToDevice, NA).unwrap();
    assert!(
        rig.domain.dma_write(&*rig.mem, dma, &[1]).is_err(),
        "TO_DEVICE is read-only for the device"
    );
    rig.domain.dma_read(&*rig.mem, dma, &mut [0; 8]).unwrap();
    dev.unmap_page(dma, 4096, DmaDirection::ToDevice, NA)
        .unwrap();
}

#[test]
fn lazy_unmap_keeps_the_iova_until_a_flush_completes() {
    let rig = Rig::new(4 * K, 4 * K);
    let dev = rig.device(trusted(4 * K));
    rig.cookie.enable_flush_queue().unwrap();
    let buf = rig.buffer(0, 8192);
    let dma = dev
        .map_page(buf, 8192, DmaDirection::FromDevice, NA)
        .unwrap();
    rig.domain.dma_write(&*rig.mem, dma, &[1; 8]).unwrap();
    dev.unmap_page(dma, 8192, DmaDirection::FromDevice, NA)
        .unwrap();
    assert_eq!(
        rig.domain.stats().syncs,
        0,
        "no per-unmap invalidation in lazy mode"
    );
    assert!(
        rig.domain.tlb_holds(dma, 1),
        "stale entry remains until the flush"
    );
    assert!(
        rig.iova.overlaps(dma >> 12, 2),
        "IOVA not free before the flush"
    );
    // New mappings cannot land on the queued IOVA.
    for _ in 0..4 {
        let d2 = dev.map_page(buf, 4096, DmaDirection::ToDevice, NA).unwrap();
        assert!(d2 >> 12 != dma >> 12 && d2 >> 12 != (dma >> 12) + 1);
        dev.unmap_page(d2, 4096, DmaDirection::ToDevice, NA)
            .unwrap();
    }
    rig.cookie.flush_queue_timer().unwrap();
    assert!(!rig.domain.tlb_holds(dma, 8192));
    assert_eq!(rig.iova.live(), 0);
    assert_eq!(rig.cookie.flush_queue().occupancy(), 0);
}

#[test]
fn full_flush_queue_flushes_synchronously() {
    let rig = Rig::new(4 * K, 4 * K); // 8 slots per ring: 7 entries
    let dev = rig.device(trusted(4 * K));
    rig.cookie.enable_flush_queue().unwrap();
    let buf = rig.buffer(0, 4096);
    for _ in 0..20 {
        let d = dev.map_page(buf, 4096, DmaDirection::ToDevice, NA).unwrap();
        rig.domain.dma_read(&*rig.mem, d, &mut [0; 4]).unwrap();
        dev.unmap_page(d, 4096, DmaDirection::ToDevice, NA).unwrap();
        assert!(rig.cookie.flush_queue().occupancy() <= 7);
    }
    assert!(rig.domain.stats().flushes >= 2);
    assert!(rig.cookie.flush_queue().timer_armed());
}

#[test]
fn untrusted_device_forces_strict() {
    let rig = Rig::new(4 * K, 4 * K);
    let _dev = rig.device(untrusted(4 * K));
    assert_eq!(
        rig.cookie.enable_flush_queue().unwrap_err().errno(),
        Errno::EPERM
    );
    let rig2 = Rig::new(4 * K, 4 * K);
    rig2.cookie.enable_flush_queue().unwrap();
    let err = iommu_dma::DmaDevice::new(
        rig2.cookie.clone(),
        rig2.mem.clone(),
        None,
        untrusted(4 * K),
    )
    .unwrap_err();
    assert_eq!(err.errno(), Errno::EPERM);
}

fn granule_cases() -> Vec<(u64, u64)> {
    vec![
        (4 * K, 4 * K),
        (16 * K, 4 * K),
        (64 * K, 4 * K),
        (64 * K, 16 * K),
    ]
}

#[test]
fn trusted_large_granule_offsets_and_reports_exposure() {
    for (g, page) in granule_cases() {
        let rig = Rig::new(g, page);
        let dev = rig.device(trusted(page));
        let off = page; // a CPU page that is not the first of its granule (when g > page)
        let buf = rig.buffer(off, page);
        let dma = dev
            .map_page(buf, page, DmaDirection::Bidirectional, NA)
            .unwrap();
        assert_eq!(dma % g, off % g, "g={g:#x}");
        let mut seen = vec![0; page as usize];
        rig.domain.dma_read(&*rig.mem, dma, &mut seen).unwrap();
        assert_eq!(seen, pattern(page as usize, 1));
        let want_exposed = g.max(2 * page).next_multiple_of(g) - page;
        let want_exposed = if g > page { want_exposed } else { 0 };
        assert_eq!(dev.exposed_bytes(), want_exposed, "g={g:#x} page={page:#x}");
        dev.unmap_page(dma, page, DmaDirection::Bidirectional, NA)
            .unwrap();
        assert_eq!(dev.exposed_bytes(), 0);
    }
}

#[test]
fn untrusted_large_granule_sees_only_its_buffer_and_zeros() {
    for (g, page) in granule_cases() {
        for (off, len) in [
            (page, page),
            (100, 3 * g + 5),
            (g - 8, 16),
            (0, g),
            (g / 2, g),
        ] {
            let rig = Rig::new(g, page);
            dirty_bounce_pool(&rig);
            let dev = rig.device(untrusted(page));
            let buf = rig.buffer(off, len);
            let dma = dev
                .map_page(buf, len, DmaDirection::Bidirectional, NA)
                .unwrap();
            assert_eq!(dma % g, buf.0 % g);
            assert_eq!(dev.exposed_bytes(), 0);
            // The device reads its whole IOVA window: buffer bytes and zeros, never 0xee.
            let win = (dma - dma % g, (dma % g + len).next_multiple_of(g));
            let mut all = vec![0; win.1 as usize];
            rig.domain.dma_read(&*rig.mem, win.0, &mut all).unwrap();
            let lo = (dma - win.0) as usize;
            assert_eq!(
                &all[lo..lo + len as usize],
                &pattern(len as usize, 1)[..],
                "g={g:#x} off={off:#x}"
            );
            assert!(all[..lo].iter().all(|&b| b == 0), "head padding is zero");
            assert!(
                all[lo + len as usize..].iter().all(|&b| b == 0),
                "tail padding is zero"
            );
            // Device writes over the whole window; only the buffer changes after unmap.
            rig.domain
                .dma_write(&*rig.mem, win.0, &vec![0x5a; win.1 as usize])
                .unwrap();
            dev.unmap_page(dma, len, DmaDirection::Bidirectional, NA)
                .unwrap();
            assert_eq!(rig.read(buf, len as usize), vec![0x5a; len as usize]);
            let before = rig.read(PhysAddr(buf.0 - off), off as usize);
            assert!(
                before.iter().all(|&b| b == 0xee),
                "memory before the buffer untouched"
            );
            assert!(
                rig.read(PhysAddr(buf.0 + len), 64)
                    .iter()
                    .all(|&b| b == 0xee),
                "after untouched"
            );
            assert_eq!(rig.pool.stats().used_slots, 0);
            assert_eq!(rig.domain.mapped_granules(), 0);
        }
    }
}

#[test]
fn bounce_copies_for_every_direction_and_sync() {
    let g = 16 * K;
    for dir in [
        DmaDirection::ToDevice,
        DmaDirection::FromDevice,
        DmaDirection::Bidirectional,
    ] {
        let rig = Rig::new(g, 4 * K);
        let dev = rig.device(untrusted(4 * K));
        let buf = rig.buffer(0x100, 0x200);
        let dma = dev.map_page(buf, 0x200, dir, NA).unwrap();
        let readable = dir != DmaDirection::FromDevice;
        let writable = dir != DmaDirection::ToDevice;
        if readable {
            let mut s = vec![0; 0x200];
            rig.domain.dma_read(&*rig.mem, dma, &mut s).unwrap();
            assert_eq!(s, pattern(0x200, 1));
        }
        // CPU rewrites its buffer; the device sees it only after sync_for_device
        // (and only when the device reads).
        rig.mem.write_bytes(buf, &[0x33; 0x20]).unwrap();
        dev.sync_single_for_device(dma, 0x20, dir).unwrap();
        if readable {
            let mut s = vec![0; 0x20];
            rig.domain.dma_read(&*rig.mem, dma, &mut s).unwrap();
            assert_eq!(s, vec![0x33; 0x20], "{dir:?}");
        }
        if writable {
            rig.domain
                .dma_write(&*rig.mem, dma + 0x40, &[0x44; 0x10])
                .unwrap();
            assert_ne!(
                rig.read(PhysAddr(buf.0 + 0x40), 1)[0],
                0x44,
                "not visible before sync"
            );
            dev.sync_single_for_cpu(dma + 0x40, 0x10, dir).unwrap();
            assert_eq!(rig.read(PhysAddr(buf.0 + 0x40), 0x10), vec![0x44; 0x10]);
            rig.domain
                .dma_write(&*rig.mem, dma + 0x100, &[0x55; 4])
                .unwrap();
        }
        dev.unmap_page(dma, 0x200, dir, NA).unwrap();
        let at = rig.read(PhysAddr(buf.0 + 0x100), 4);
        assert_eq!(
            at == vec![0x55; 4],
            writable,
            "{dir:?}: unmap copies back iff the device writes"
        );
    }
}

#[test]
fn swiotlb_exhaustion_is_a_clear_error_and_leaves_nothing_mapped() {
    let rig = Rig::new(64 * K, 4 * K); // 4 MiB pool = 64 granule-sized bounces
    let dev = rig.device(untrusted(4 * K));
    let buf = rig.buffer(8, 64);
    let mut live = Vec::new();
    let err = loop {
        match dev.map_page(buf, 64, DmaDirection::ToDevice, NA) {
            Ok(d) => live.push(d),
            Err(e) => break e,
        }
    };
    assert_eq!(live.len(), 64);
    assert!(matches!(err, Error::SwiotlbFull { .. }), "{err:?}");
    assert_eq!(err.errno(), Errno::ENOMEM);
    assert_eq!(rig.iova.live(), 64, "failed call released its IOVA");
    for d in live {
        dev.unmap_page(d, 64, DmaDirection::ToDevice, NA).unwrap();
    }
    assert_eq!(rig.pool.stats().used_slots, 0);
}

#[test]
fn map_sg_one_allocation_merged_segments_device_sees_the_list() {
    for (g, page) in granule_cases() {
        let rig = Rig::new(g, page);
        let dev = rig.device(DeviceConfig {
            max_seg_size: 1 << 20,
            ..trusted(page)
        });
        let offs = [
            (page, page),
            (0, 2 * g),
            (0, page),
            (3 * page % g + 16, 100),
        ];
        let mut list = Vec::new();
        let mut want = Vec::new();
        for (i, &(off, len)) in offs.iter().enumerate() {
            let pa = rig.buffer(off, len);
            let p = pattern(len as usize, i as u8 * 7);
            rig.mem.write_bytes(pa, &p).unwrap();
            want.extend(p);
            list.push(SgEntry { phys: pa.0, len });
        }
        let m = dev.map_sg(&list, DmaDirection::ToDevice, NA).unwrap();
        assert!(
            m.segments.len() < list.len() || g == page,
            "g={g:#x} page={page:#x}: merged {:x?}",
            m.segments
        );
        let mut got = Vec::new();
        for s in &m.segments {
            assert!(s.len <= dev.config().max_seg_size);
            let mut b = vec![0; s.len as usize];
            rig.domain.dma_read(&*rig.mem, s.addr, &mut b).unwrap();
            got.extend(b);
        }
        assert_eq!(got, want, "g={g:#x} page={page:#x}");
        assert_eq!(dev.exposed_bytes(), m.exposed);
        assert_eq!(rig.iova.live(), 1, "one IOVA allocation");
        dev.unmap_sg(m, NA).unwrap();
        assert_eq!(rig.domain.mapped_granules(), 0);
        assert_eq!(rig.iova.live(), 0);
        assert_eq!(dev.exposed_bytes(), 0);
    }
}

#[test]
fn map_sg_failure_midway_unwinds_everything() {
    let rig = Rig::new(4 * K, 4 * K);
    let dev = rig.device(trusted(4 * K));
    let list: Vec<SgEntry> = (0..6)
        .map(|_| SgEntry {
            phys: rig.buffer(0, 8192).0,
            len: 8192,
        })
        .collect();
    rig.domain.fail_maps_after(7); // elements 0..2 map, the 4th fails half way
    let err = dev
        .map_sg(&list, DmaDirection::Bidirectional, NA)
        .unwrap_err();
    assert_eq!(err.errno(), Errno::ENOMEM);
    assert_eq!(rig.domain.mapped_granules(), 0);
    assert_eq!(rig.iova.live(), 0);
    assert_eq!(dev.exposed_bytes(), 0);
    rig.domain.fail_maps_after(u64::MAX);
    let m = dev.map_sg(&list, DmaDirection::Bidirectional, NA).unwrap();
    dev.unmap_sg(m, NA).unwrap();
    // Untrusted (per-element, bounced) lists unwind bounces too.
    let rig = Rig::new(16 * K, 4 * K);
    let dev = rig.device(untrusted(4 * K));
    let list: Vec<SgEntry> = (0..5)
        .map(|i| SgEntry {
            phys: rig.buffer(4096 * (i % 3), 5000).0,
            len: 5000,
        })
        .collect();
    rig.domain.fail_maps_after(3);
    assert!(dev.map_sg(&list, DmaDirection::FromDevice, NA).is_err());
    assert_eq!(rig.domain.mapped_granules(), 0);
    assert_eq!(rig.iova.live(), 0);
    assert_eq!(rig.pool.stats().used_slots, 0);
    rig.domain.fail_maps_after(u64::MAX);
    let m = dev.map_sg(&list, DmaDirection::FromDevice, NA).unwrap();
    assert_eq!(m.segments.len(), 5);
    for (i, s) in m.segments.iter().enumerate() {
        rig.domain
            .dma_write(&*rig.mem, s.addr, &vec![i as u8 + 1; s.len as usize])
            .unwrap();
    }
    dev.unmap_sg(m, NA).unwrap();
    for (i, e) in list.iter().enumerate() {
        assert_eq!(
            rig.read(PhysAddr(e.phys), e.len as usize),
            vec![i as u8 + 1; e.len as usize]
        );
    }
    assert_eq!(rig.pool.stats().used_slots, 0);
}

#[test]
fn masks_32bit_device_and_sac_first() {
    let rig = Rig::with_domain(
        iommu_dma::mock::MockDomain::new(4 * K).with_aperture(0, (1 << 33) - 1),
        4 * K,
    );
    let dev32 = rig.device(DeviceConfig {
        dma_mask: 0xffff_ffff,
        ..trusted(4 * K)
    });
    let dev64 = rig.device(trusted(4 * K));
    let buf = rig.buffer(0, 4096);
    // Half of the 32-bit space is taken; the rest is fragmented by small maps.
    let big = rig.cookie.alloc_iova(1 << 31, 0xffff_ffff, false).unwrap();
    assert_eq!(big, 0x8000_0000);
    let a = dev32
        .map_page(buf, 4096, DmaDirection::ToDevice, NA)
        .unwrap();
    assert!(a + 4095 <= 0xffff_ffff);
    let b = dev64
        .map_page(buf, 4096, DmaDirection::ToDevice, NA)
        .unwrap();
    assert!(b <= 0xffff_ffff, "SAC first");
    assert!(dev64.sac_first());
    let c = dev64
        .map_page(buf, 1 << 31, DmaDirection::ToDevice, NA)
        .unwrap();
    assert!(c > 0xffff_ffff);
    assert!(!dev64.sac_first(), "SAC disabled after the first failure");
    assert_eq!(
        dev64.pci_32bit_workaround().dac_bits(),
        Some(64 - dev64.config().dma_mask.leading_zeros()),
        "the width now used is recorded"
    );
    assert_eq!(dev32.pci_32bit_workaround().dac_bits(), None);
    let d = dev64
        .map_page(buf, 4096, DmaDirection::ToDevice, NA)
        .unwrap();
    assert!(d > 0xffff_ffff, "no more 32-bit attempts");
    assert!(
        dev32
            .map_page(buf, 1 << 31, DmaDirection::ToDevice, NA)
            .is_err(),
        "32-bit device never goes above"
    );
    dev64
        .unmap_page(d, 4096, DmaDirection::ToDevice, NA)
        .unwrap();
    rig.cookie.free_iova_now(big, 1 << 31);
    for (d, dev, len) in [(a, &dev32, 4096), (b, &dev64, 4096), (c, &dev64, 1 << 31)] {
        dev.unmap_page(d, len, DmaDirection::ToDevice, NA).unwrap();
    }
}

#[test]
fn coherent_and_noncontiguous_allocations() {
    for (g, page) in granule_cases() {
        for trusted_dev in [true, false] {
            let rig = Rig::new(g, page);
            let cfg = if trusted_dev {
                trusted(page)
            } else {
                untrusted(page)
            };
            let dev = rig.device(cfg);
            let a = dev.alloc_coherent(3000).unwrap();
            let rounded = if trusted_dev { page } else { page.max(g) };
            assert_eq!(
                a.chunks[0].1, rounded,
                "g={g:#x} page={page:#x} trusted={trusted_dev}"
            );
            assert_eq!(a.exposed, if trusted_dev { g.max(page) - page } else { 0 });
            let mut z = vec![1; 3000];
            rig.domain.dma_read(&*rig.mem, a.dma, &mut z).unwrap();
            assert!(z.iter().all(|&b| b == 0), "zeroed");
            rig.domain.dma_write(&*rig.mem, a.dma, &[9; 16]).unwrap();
            assert_eq!(rig.read(a.cpu_addr(0).unwrap(), 16), vec![9; 16]);
            let sgt = dev.get_sgtable(&a);
            if g > page {
                assert_eq!(sgt.unwrap_err().errno(), Errno::ENXIO);
            } else {
                assert_eq!(
                    sgt.unwrap(),
                    vec![SgEntry {
                        phys: a.chunks[0].0.0,
                        len: rounded
                    }]
                );
            }
            let n = dev.alloc_noncontiguous(5 * g + page).unwrap();
            assert!(n.chunks.len() >= 2);
            let total = 5 * g + page;
            let data = pattern(total as usize, 3);
            rig.domain.dma_write(&*rig.mem, n.dma, &data).unwrap();
            let mut back = Vec::new();
            for &(pa, len) in &n.chunks {
                back.extend(rig.read(pa, len as usize));
            }
            assert_eq!(&back[..total as usize], &data[..]);
            assert_eq!(n.exposed == 0, !trusted_dev || g <= page);
            assert_eq!(dev.exposed_bytes(), a.exposed + n.exposed);
            dev.free(a).unwrap();
            dev.free(n).unwrap();
            assert_eq!(dev.exposed_bytes(), 0);
            assert_eq!(rig.domain.mapped_granules(), 0);
        }
    }
}

#[test]
fn map_resource_uses_mmio_attributes_without_bouncing() {
    let rig = Rig::new(4 * K, 4 * K);
    let dev = rig.device(trusted(4 * K));
    let bar = PhysAddr(0x40_0000_0000);
    let dma = dev
        .map_resource(
            PhysAddr(bar.0 + 0x10),
            0x20,
            DmaDirection::Bidirectional,
            NA,
        )
        .unwrap();
    assert_eq!(dma & 0xfff, 0x10);
    let (pa, prot) = rig.domain.lookup(dma).unwrap();
    assert_eq!(pa.0, bar.0 + 0x10);
    assert!(prot.contains(Prot::MMIO | Prot::RW) && !prot.contains(Prot::CACHE));
    dev.unmap_resource(dma, 0x20).unwrap();
    let udev = Rig::new(16 * K, 4 * K);
    let u = udev.device(untrusted(4 * K));
    assert!(
        u.map_resource(PhysAddr(bar.0 + 0x1000), 0x1000, DmaDirection::ToDevice, NA)
            .is_err()
    );
    let d = u
        .map_resource(bar, 16 * K, DmaDirection::ToDevice, NA)
        .unwrap();
    u.unmap_resource(d, 16 * K).unwrap();
}

#[test]
fn flush_queue_timer_fires_on_the_clock_deadline() {
    use std::sync::Arc;
    let mem = Arc::new(iommu_memory::SimMemory::new());
    let domain = Arc::new(iommu_dma::mock::MockDomain::new(4 * K));
    let clock = Arc::new(iommu_types::VirtualClock::default());
    let cookie = Arc::new(
        iommu_dma::DmaCookie::new(
            domain.clone(),
            Arc::new(iommu_iova::IovaDomain::new(4 * K, 1).unwrap()),
            Arc::new(iommu_types::FixedCpuId { id: 0, count: 1 }),
        )
        .unwrap()
        .with_clock(clock.clone()),
    );
    cookie.enable_flush_queue().unwrap();
    let dev = iommu_dma::DmaDevice::new(cookie.clone(), mem.clone(), None, trusted(4 * K)).unwrap();
    let buf = mem.alloc_pages(4096, 4096).unwrap();
    assert_eq!(cookie.flush_queue().deadline(), None);
    clock.advance(1_000);
    let d = dev.map_page(buf, 4096, DmaDirection::ToDevice, NA).unwrap();
    dev.unmap_page(d, 4096, DmaDirection::ToDevice, NA).unwrap();
    let deadline = cookie.flush_queue().deadline().unwrap();
    assert_eq!(deadline, 1_000 + iommu_dma::FQ_DEFAULT_TIMEOUT_NS);
    clock.advance(iommu_dma::FQ_DEFAULT_TIMEOUT_NS - 1);
    assert!(!cookie.poll_flush_queue().unwrap(), "not yet");
    assert_eq!(cookie.flush_queue().occupancy(), 1);
    clock.advance(1);
    assert!(cookie.poll_flush_queue().unwrap());
    assert_eq!(cookie.flush_queue().occupancy(), 0);
    assert_eq!(cookie.flush_queue().deadline(), None);
    assert_eq!(domain.stats().flushes, 1);
}

/// The mock domain whose whole-domain invalidation can be made to fail.
struct FlakyFlush {
    inner: std::sync::Arc<iommu_dma::mock::MockDomain>,
    fail: std::sync::atomic::AtomicBool,
}

impl DmaDomain for FlakyFlush {
    fn pgsize_bitmap(&self) -> iommu_types::PgSizeBitmap {
        self.inner.pgsize_bitmap()
    }
    fn aperture(&self) -> (u64, u64) {
        self.inner.aperture()
    }
    fn map(
        &self,
        iova: iommu_types::Iova,
        pa: PhysAddr,
        size: u64,
        prot: Prot,
    ) -> Result<(), Errno> {
        self.inner.map(iova, pa, size, prot)
    }
    fn unmap(&self, iova: iommu_types::Iova, size: u64, g: &mut io_pgtable::IotlbGather) -> u64 {
        self.inner.unmap(iova, size, g)
    }
    fn iotlb_sync(&self, g: &mut io_pgtable::IotlbGather) -> Result<(), Errno> {
        self.inner.iotlb_sync(g)
    }
    fn flush_iotlb_all(&self) -> Result<(), Errno> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Errno::EIO);
        }
        self.inner.flush_iotlb_all()
    }
    fn free_tables(&self, tables: Vec<io_pgtable::FreedTable>) {
        self.inner.free_tables(tables)
    }
    fn iova_to_phys(&self, iova: iommu_types::Iova) -> Option<PhysAddr> {
        self.inner.iova_to_phys(iova)
    }
}

#[test]
fn a_failed_flush_in_lazy_mode_frees_nothing() {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    let mem = Arc::new(iommu_memory::SimMemory::new());
    let mock = Arc::new(iommu_dma::mock::MockDomain::new(4 * K));
    let domain = Arc::new(FlakyFlush {
        inner: mock.clone(),
        fail: false.into(),
    });
    let iova = Arc::new(CheckedIova::new(mock.clone(), 4 * K));
    let cookie = Arc::new(
        iommu_dma::DmaCookie::with_fq_size(
            domain.clone(),
            iova.clone(),
            Arc::new(iommu_types::FixedCpuId { id: 0, count: 1 }),
            4, // 3 entries
        )
        .unwrap(),
    );
    cookie.enable_flush_queue().unwrap();
    let dev = iommu_dma::DmaDevice::new(cookie.clone(), mem.clone(), None, trusted(4 * K)).unwrap();
    let buf = mem.alloc_pages(4096, 4096).unwrap();
    let mut dmas = Vec::new();
    for _ in 0..4 {
        let d = dev.map_page(buf, 4096, DmaDirection::ToDevice, NA).unwrap();
        mock.dma_read(&*mem, d, &mut [0; 4]).unwrap();
        dmas.push(d);
    }
    for &d in &dmas[..3] {
        dev.unmap_page(d, 4096, DmaDirection::ToDevice, NA).unwrap();
    }
    assert_eq!(cookie.flush_queue().occupancy(), 3);
    domain.fail.store(true, Ordering::SeqCst);
    // The ring is full: the synchronous flush fails, so nothing is freed and the
    // fourth range is refused (its IOVA leaked on purpose).
    assert_eq!(
        dev.unmap_page(dmas[3], 4096, DmaDirection::ToDevice, NA),
        Err(Error::Domain(Errno::EIO))
    );
    assert_eq!(cookie.flush_queue_timer(), Err(Error::Domain(Errno::EIO)));
    assert_eq!(iova.live(), 4, "no IOVA freed without a completed flush");
    assert!(mock.tlb_holds(dmas[0], 4096), "stale entries remain");
    domain.fail.store(false, Ordering::SeqCst);
    cookie.flush_queue_timer().unwrap();
    assert_eq!(cookie.flush_queue().occupancy(), 0);
    assert_eq!(iova.live(), 1, "only the refused range stays allocated");
    assert!(!mock.tlb_holds(dmas[0], 4 * 4096));
}

/// Seed 003 for scatterlists: an untrusted device reading the whole IOVA window of
/// every segment (all the granules it can reach) sees its data and zeros only,
/// and writing the whole window changes nothing outside its buffers. Fails if the
/// head or tail of an element is mapped in place or the bounce padding is stale.
#[test]
fn untrusted_map_sg_reaches_only_its_buffers_and_zeros() {
    for (g, page) in granule_cases().into_iter().filter(|&(g, p)| g > p) {
        let rig = Rig::new(g, page);
        dirty_bounce_pool(&rig);
        let dev = rig.device(untrusted(page));
        let shapes = [(page, page), (100, 2 * g + 5), (g - 8, 16), (0, g + page)];
        let list: Vec<SgEntry> = shapes
            .iter()
            .map(|&(off, len)| SgEntry {
                phys: rig.buffer(off, len).0,
                len,
            })
            .collect();
        let dir = DmaDirection::Bidirectional;
        let m = dev.map_sg(&list, dir, NA).unwrap();
        assert_eq!(m.exposed, 0);
        assert_eq!(dev.exposed_bytes(), 0);
        for (s, e) in m.segments.iter().zip(&list) {
            let ctx = format!("g={g:#x} page={page:#x} seg={s:x?}");
            assert_eq!(s.len, e.len, "{ctx}");
            let lo = s.addr - s.addr % g;
            let hi = (s.addr + s.len).next_multiple_of(g);
            let mut win = vec![0xff; (hi - lo) as usize];
            rig.domain.dma_read(&*rig.mem, lo, &mut win).unwrap();
            let (a, b) = ((s.addr - lo) as usize, (s.addr - lo + s.len) as usize);
            assert_eq!(&win[a..b], &pattern(e.len as usize, 1)[..], "{ctx}");
            assert!(win[..a].iter().all(|&x| x == 0), "{ctx}: head padding");
            assert!(win[b..].iter().all(|&x| x == 0), "{ctx}: tail padding");
            rig.domain
                .dma_write(&*rig.mem, lo, &vec![0x5a; win.len()])
                .unwrap();
        }
        dev.unmap_sg(m, NA).unwrap();
        for (e, &(off, _)) in list.iter().zip(&shapes) {
            assert_eq!(
                rig.read(PhysAddr(e.phys), e.len as usize),
                vec![0x5a; e.len as usize]
            );
            let before = rig.read(PhysAddr(e.phys - off), off as usize);
            assert!(before.iter().all(|&x| x == 0xee), "before untouched");
            let after = rig.read(PhysAddr(e.phys + e.len), g as usize);
            assert!(after.iter().all(|&x| x == 0xee), "after untouched");
        }
        assert_eq!(rig.pool.stats().used_slots, 0);
        assert_eq!(rig.domain.mapped_granules(), 0);
    }
}

/// Seed 003 for coherent memory: every granule of an untrusted device's coherent
/// window translates into the allocation itself (rounded to the granule), so
/// nothing foreign is reachable.
#[test]
fn untrusted_coherent_window_lies_inside_the_allocation() {
    for (g, page) in granule_cases().into_iter().filter(|&(g, p)| g > p) {
        let rig = Rig::new(g, page);
        let dev = rig.device(untrusted(page));
        for size in [100, page, g + 1] {
            let a = dev.alloc_coherent(size).unwrap();
            let (pa, len) = a.chunks[0];
            let lo = a.dma - a.dma % g;
            let hi = (a.dma + size).next_multiple_of(g);
            for gi in (lo..hi).step_by(g as usize) {
                let t = rig
                    .domain
                    .iova_to_phys(iommu_types::Iova(gi))
                    .expect("window mapped");
                assert!(
                    t.0 >= pa.0 && t.0 + g <= pa.0 + len,
                    "g={g:#x} page={page:#x} size={size}: granule {gi:#x} -> {t:x?} outside {pa:x?}+{len:#x}"
                );
            }
            dev.free(a).unwrap();
        }
        assert_eq!(rig.domain.mapped_granules(), 0);
    }
}

/// Fill the whole bounce pool with stale bytes (what earlier users of the slots
/// left), so that a bounce whose padding is not zeroed shows it.
fn dirty_bounce_pool(rig: &Rig) {
    let (base, len) = rig.pool.range();
    rig.mem.fill_bytes(base, len, 0xdd).unwrap();
}

/// Element shapes `(offset, len)` for the one-allocation tests: a 3-granule element
/// with unaligned head and tail, one whose tail ends on a granule (so the next,
/// aligned, element merges into its segment), an aligned whole granule, a tiny
/// element straddling a granule boundary, an aligned 2-granule element and an
/// unaligned 3-granule one.
fn one_alloc_shapes(g: u64, page: u64) -> Vec<(u64, u64)> {
    vec![
        (page, 2 * g + page),
        (page, g - page),
        (0, g),
        (g - 8, 16),
        (0, 2 * g),
        (100, 3 * g),
    ]
}

/// Issue 6: an untrusted device's scatterlist goes through the single-allocation
/// path: ONE IOVA allocation holds every segment; each element's partial head and
/// tail granules are bounced (zero padding), the middle granules map the original
/// pages; sync_sg and unmap_sg copy back per element. Fails if the list is mapped
/// per element (several allocations), if a head or tail is mapped in place
/// (foreign 0xee bytes reachable) or if the bounce padding is not zeroed (stale
/// 0xdd bytes).
#[test]
fn untrusted_map_sg_uses_one_iova_allocation() {
    for (g, page) in granule_cases().into_iter().filter(|&(g, p)| g > p) {
        let rig = Rig::new(g, page);
        dirty_bounce_pool(&rig);
        let dev = rig.device(DeviceConfig {
            max_seg_size: u64::MAX,
            ..untrusted(page)
        });
        let shapes = one_alloc_shapes(g, page);
        let list: Vec<SgEntry> = shapes
            .iter()
            .enumerate()
            .map(|(i, &(off, len))| {
                let pa = rig.buffer(off, len);
                rig.mem
                    .write_bytes(pa, &pattern(len as usize, 10 + i as u8))
                    .unwrap();
                SgEntry { phys: pa.0, len }
            })
            .collect();
        let want: Vec<u8> = list
            .iter()
            .enumerate()
            .flat_map(|(i, e)| pattern(e.len as usize, 10 + i as u8))
            .collect();
        let dir = DmaDirection::Bidirectional;
        assert_eq!(rig.iova.live(), 0);
        let m = dev.map_sg(&list, dir, NA).unwrap();
        let ctx = format!("g={g:#x} page={page:#x}");
        assert_eq!(rig.iova.live(), 1, "{ctx}: ONE IOVA allocation");
        assert_eq!(m.exposed, 0);
        assert_eq!(dev.exposed_bytes(), 0);
        // Bounced granules: element 0 head and tail, 1 head, 3 both granules (16
        // bytes across a boundary), 5 head and tail; 2 and 4 are aligned.
        assert_eq!(
            rig.pool.stats().live,
            7,
            "{ctx}: one bounce per partial granule"
        );
        let (lo, size) = m.iova_range();
        assert_eq!(m.segments.len(), 5, "{ctx}: elements 1 and 2 merge");
        let mut got = Vec::new();
        for s in &m.segments {
            assert!(
                s.addr >= lo && s.addr + s.len <= lo + size,
                "{ctx}: segment {s:x?} outside the allocation {lo:#x}+{size:#x}"
            );
            let wlo = s.addr - s.addr % g;
            let whi = (s.addr + s.len).next_multiple_of(g);
            let mut win = vec![0xff; (whi - wlo) as usize];
            rig.domain.dma_read(&*rig.mem, wlo, &mut win).unwrap();
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
        }
        assert_eq!(got, want, "{ctx}: the device sees the list's data in order");
        // The fully covered middle granule of element 0 maps its original page.
        let mid = m.segments[0].addr - m.segments[0].addr % g + g;
        assert_eq!(
            rig.domain.iova_to_phys(iommu_types::Iova(mid)),
            Some(PhysAddr(list[0].phys - page + g)),
            "{ctx}: middle granule in place"
        );
        // Device writes every segment; sync_sg_for_cpu brings it to the buffers.
        for s in &m.segments {
            rig.domain
                .dma_write(&*rig.mem, s.addr, &vec![0x5a; s.len as usize])
                .unwrap();
        }
        dev.sync_sg_for_cpu(&m).unwrap();
        for e in &list {
            assert_eq!(
                rig.read(PhysAddr(e.phys), e.len as usize),
                vec![0x5a; e.len as usize],
                "{ctx}"
            );
        }
        // CPU writes; sync_sg_for_device makes the device see it.
        for e in &list {
            rig.mem.fill_bytes(PhysAddr(e.phys), e.len, 0x77).unwrap();
        }
        dev.sync_sg_for_device(&m).unwrap();
        for s in &m.segments {
            let mut b = vec![0; s.len as usize];
            rig.domain.dma_read(&*rig.mem, s.addr, &mut b).unwrap();
            assert!(b.iter().all(|&x| x == 0x77), "{ctx}: synced for device");
        }
        // Device writes again; unmap_sg copies back per element.
        for s in &m.segments {
            rig.domain
                .dma_write(&*rig.mem, s.addr, &vec![0x3c; s.len as usize])
                .unwrap();
        }
        dev.unmap_sg(m, NA).unwrap();
        for (e, &(off, _)) in list.iter().zip(&shapes) {
            assert_eq!(
                rig.read(PhysAddr(e.phys), e.len as usize),
                vec![0x3c; e.len as usize],
                "{ctx}"
            );
            let before = rig.read(PhysAddr(e.phys - off), off as usize);
            assert!(before.iter().all(|&x| x == 0xee), "{ctx}: before untouched");
            let after = rig.read(PhysAddr(e.phys + e.len), g as usize);
            assert!(after.iter().all(|&x| x == 0xee), "{ctx}: after untouched");
        }
        assert_eq!(rig.iova.live(), 0);
        assert_eq!(rig.pool.stats().used_slots, 0);
        assert_eq!(rig.domain.mapped_granules(), 0);
    }
}

/// A bounce failing part way through an untrusted list (pool exhausted at the
/// second element) unwinds everything: no IOVA, mapping or bounce slot is left.
#[test]
fn untrusted_map_sg_failure_unwinds_iova_mappings_and_bounces() {
    for (g, page) in granule_cases().into_iter().filter(|&(g, p)| g > p) {
        let rig = Rig::new(g, page);
        let dev = rig.device(untrusted(page));
        let small = rig.buffer(page, 8);
        let mut held = Vec::new();
        // Bounded: each map takes one granule run of the 4 MiB pool.
        for _ in 0..(4 << 20) / g + 1 {
            match dev.map_page(small, 8, DmaDirection::ToDevice, NA) {
                Ok(d) => held.push(d),
                Err(_) => break,
            }
        }
        assert!(
            rig.pool.stats().used_slots > 0,
            "g={g:#x}: pool filled by bounces"
        );
        // Leave room for exactly one granule-sized bounce run.
        let d = held.pop().unwrap();
        dev.unmap_page(d, 8, DmaDirection::ToDevice, NA).unwrap();
        let (live, slots, mapped) = (
            rig.iova.live(),
            rig.pool.stats().used_slots,
            rig.domain.mapped_granules(),
        );
        let list = [
            SgEntry {
                phys: rig.buffer(page, 2 * g - page).0,
                len: 2 * g - page,
            }, // head bounce only: fits
            SgEntry {
                phys: rig.buffer(page, page).0,
                len: page,
            }, // needs another run: fails
        ];
        let err = dev
            .map_sg(&list, DmaDirection::ToDevice, NA)
            .expect_err("pool exhausted");
        assert_eq!(err.errno(), Errno::ENOMEM, "g={g:#x}");
        assert_eq!(rig.iova.live(), live, "IOVA freed");
        assert_eq!(rig.pool.stats().used_slots, slots, "bounce slots freed");
        assert_eq!(rig.domain.mapped_granules(), mapped, "mappings removed");
        for d in held {
            dev.unmap_page(d, 8, DmaDirection::ToDevice, NA).unwrap();
        }
        assert_eq!(rig.pool.stats().used_slots, 0);
    }
}
