//! The live strict → lazy switch under load (seed 000): worker threads map, let the
//! device use, and unmap buffers while another thread switches the domain to
//! DMA-FQ and runs the flush-queue timer. The allocator asserts on every free that
//! the IOTLB holds no translation for the freed range, so an IOVA can never be
//! reused while a stale entry exists.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::*;
use iommu_dma::{DmaAttrs, DmaDirection};

#[test]
fn switch_to_lazy_while_mapping_on_other_threads() {
    let rig = Arc::new(Rig::new(4096, 4096));
    let dev = Arc::new(rig.device(trusted(4096)));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for t in 0..3u8 {
        let (rig, dev, done) = (rig.clone(), dev.clone(), done.clone());
        workers.push(std::thread::spawn(move || {
            let buf = rig.buffer(0x80 * u64::from(t), 6000);
            let want = pattern(6000, 1);
            for i in 0..400 {
                let dir = if i % 2 == 0 {
                    DmaDirection::ToDevice
                } else {
                    DmaDirection::Bidirectional
                };
                let dma = dev.map_page(buf, 6000, dir, DmaAttrs::default()).unwrap();
                let mut seen = vec![0; 6000];
                rig.domain.dma_read(&*rig.mem, dma, &mut seen).unwrap();
                assert_eq!(seen, want, "device sees the buffer it was given");
                dev.unmap_page(dma, 6000, dir, DmaAttrs::default()).unwrap();
                done.fetch_add(1, Ordering::Relaxed);
                // Hold at iteration 150 until the switch, so the run is guaranteed
                // to have strict unmaps before and lazy ones after, while the other
                // workers are still mapping when it happens.
                if i == 150 {
                    while !rig.cookie.is_lazy() {
                        std::thread::yield_now();
                    }
                }
            }
        }));
    }
    let switcher = {
        let (rig, stop, done) = (rig.clone(), stop.clone(), done.clone());
        std::thread::spawn(move || {
            while done.load(Ordering::Relaxed) < 200 {
                std::thread::yield_now();
            }
            rig.cookie.enable_flush_queue().unwrap();
            while !stop.load(Ordering::Relaxed) {
                rig.cookie.flush_queue_timer().unwrap();
                std::thread::yield_now();
            }
        })
    };
    for w in workers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    switcher.join().unwrap();
    assert!(rig.cookie.is_lazy());
    let under_load = rig.domain.stats();
    assert!(
        under_load.syncs >= 200 && under_load.syncs < 1200,
        "strict before, lazy after: {under_load:?}"
    );
    assert!(under_load.flushes > 0);
    rig.cookie.flush_queue_timer().unwrap();
    assert_eq!(rig.iova.live(), 0, "every IOVA came back");
    assert_eq!(rig.domain.mapped_granules(), 0);
    let s = rig.domain.stats();
    assert!(
        s.syncs > 0 && s.flushes > 0,
        "both strict and lazy unmaps happened: {s:?}"
    );
}
