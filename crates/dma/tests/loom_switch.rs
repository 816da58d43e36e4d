//! Model check of the live strict → lazy switch (reference `software.md` §1.4,
//! seed 000) over the real code: this crate's cookie and unmap, iommu-iova's flush
//! queue and IOVA allocator, with loom's atomics and mutexes swapped in by both
//! crates' `sync` shims.
//!
//! Run with:
//! `RUSTFLAGS="--cfg loom" cargo test -p iommu-dma --release --test loom_switch`
//!
//! Property: no interleaving frees an IOVA (so it could be reused) while the
//! IOTLB may still hold a translation for it. The allocator below checks it on
//! every free (the flush queue releases through it), against a mock domain whose
//! IOTLB keeps entries until an invalidation. Two deliberately broken variants must be caught: the flag read
//! twice in the unmap path (the v2 bug of the seed), and the flag published before
//! the flush queue is initialised.
#![cfg(loom)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use iommu_dma::mock::MockDomain;
use iommu_dma::{DmaCookie, IovaAllocator};
use iommu_iova::IovaDomain;
use iommu_types::{FixedCpuId, Prot};

const G: u64 = 4096;

/// iommu-iova's allocator, checking every free and counting live ranges.
struct CheckedIova {
    inner: IovaDomain,
    domain: Arc<MockDomain>,
    live: AtomicU64,
}

impl IovaAllocator for CheckedIova {
    fn alloc(&self, pages: u64, limit_pfn: u64, flush: bool) -> Option<u64> {
        let pfn = self.inner.alloc(pages, limit_pfn, flush)?;
        self.live.fetch_add(1, Ordering::Relaxed);
        Some(pfn)
    }
    fn free(&self, pfn: u64, pages: u64) {
        assert!(
            !self.domain.tlb_holds(pfn * G, pages * G),
            "IOVA pfn {pfn:#x} freed while a stale IOTLB entry may still translate it"
        );
        self.live.fetch_sub(1, Ordering::Relaxed);
        self.inner.free(pfn, pages);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    Correct,
    DoubleRead,
    PublishFirst,
}

fn model(variant: Variant) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(move || {
        let domain = Arc::new(MockDomain::new(G));
        let iova = Arc::new(CheckedIova {
            inner: IovaDomain::builder(G, 1)
                .cpus(Arc::new(FixedCpuId { id: 0, count: 1 }))
                .magazine_size(2)
                .build()
                .unwrap(),
            domain: domain.clone(),
            live: AtomicU64::new(0),
        });
        let cookie = Arc::new(
            DmaCookie::with_fq_size(
                domain.clone(),
                iova.clone(),
                Arc::new(FixedCpuId { id: 0, count: 1 }),
                4,
            )
            .unwrap(),
        );
        // A live mapping the device has used: its translation sits in the IOTLB.
        let a = cookie.alloc_iova(G, u64::MAX, false).unwrap();
        cookie.map(a, 0x10_0000, G, Prot::RW).unwrap();
        domain.translate(a, false).unwrap();

        let c1 = cookie.clone();
        let unmapper = loom::thread::spawn(move || {
            let r = match variant {
                Variant::DoubleRead => c1.unmap_double_read(&[(a, G)], a, G),
                _ => c1.unmap(&[(a, G)], a, G),
            };
            r.unwrap();
        });
        let c2 = cookie.clone();
        let switcher = loom::thread::spawn(move || {
            match variant {
                Variant::PublishFirst => c2.enable_flush_queue_publish_first().unwrap(),
                _ => c2.enable_flush_queue().unwrap(),
            }
            c2.flush_queue_timer().unwrap();
        });
        // The device keeps accessing the buffer concurrently (it may refill the
        // IOTLB from the table until the entry is cleared).
        let d = domain.clone();
        let device = loom::thread::spawn(move || {
            let _ = d.translate(a, false);
        });
        unmapper.join().unwrap();
        switcher.join().unwrap();
        device.join().unwrap();
        // Whatever path was taken, the IOVA is free after one more timer flush,
        // and nothing stale remains.
        cookie.flush_queue_timer().unwrap();
        assert_eq!(iova.live.load(Ordering::Relaxed), 0);
        assert!(!domain.tlb_holds(a, G));
    });
}

#[test]
fn single_snapshot_never_frees_a_stale_iova() {
    model(Variant::Correct);
}

#[test]
#[should_panic(expected = "freed while a stale IOTLB entry")]
fn double_read_of_the_flag_is_caught() {
    model(Variant::DoubleRead);
}

#[test]
#[should_panic(expected = "flush queue used before it was initialised")]
fn publishing_before_init_is_caught() {
    model(Variant::PublishFirst);
}
