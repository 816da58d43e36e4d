//! Loom model of the per-CPU magazine exchange with the depot: one CPU frees
//! until a full magazine moves to the depot while another CPU allocates (taking
//! that magazine from the depot or falling back to the tree) and a third context
//! flushes every cache back to the tree. No pfn may be handed out twice or while
//! still live, and everything must return.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p iommu-iova --release --test loom_magazine`
#![cfg(loom)]

use std::sync::Arc;

use iommu_iova::IovaDomain;
use iommu_types::CpuId;
use loom::cell::Cell;
use loom::thread;

loom::thread_local! {
    static CPU: Cell<usize> = Cell::new(0);
}

/// CPU ids from a loom thread-local, set by each model thread.
struct LoomCpu(usize);
impl CpuId for LoomCpu {
    fn current(&self) -> usize {
        CPU.with(|c| c.get())
    }
    fn count(&self) -> usize {
        self.0
    }
}

fn domain() -> Arc<IovaDomain> {
    Arc::new(
        IovaDomain::builder(4096, 1)
            .cpus(Arc::new(LoomCpu(2)))
            .magazine_size(1)
            .build()
            .unwrap(),
    )
}

#[test]
fn magazine_exchange_with_the_depot() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(5);
    b.check(|| {
        let d = domain();
        // Four ranges from the tree; the last stays live throughout.
        let pfns: Vec<u64> = (0..4)
            .map(|_| d.alloc_iova_fast(1, 64, false).unwrap())
            .collect();
        let freer = {
            let d = d.clone();
            let pfns = pfns.clone();
            thread::spawn(move || {
                CPU.with(|c| c.set(0));
                // Magazines of one: loaded, then prev, then the depot.
                for &p in &pfns[..3] {
                    d.free_iova_fast(p, 1).unwrap();
                }
            })
        };
        let taker = {
            let d = d.clone();
            thread::spawn(move || {
                CPU.with(|c| c.set(1));
                let a = d.alloc_iova_fast(1, 64, false).unwrap();
                let b = d.alloc_iova_fast(1, 64, false).unwrap();
                (a, b)
            })
        };
        freer.join().unwrap();
        let (a, b) = taker.join().unwrap();
        assert_ne!(a, b, "one pfn handed out twice");
        assert!(a != pfns[3] && b != pfns[3], "a live pfn was handed out");
        // Everything returns: free the rest and flush.
        d.free_iova_fast(a, 1).unwrap();
        d.free_iova_fast(b, 1).unwrap();
        d.free_iova_fast(pfns[3], 1).unwrap();
        d.flush_rcaches();
        assert_eq!(d.tree_len(), 0);
        assert_eq!(d.stats().cached_pfns, 0);
    });
}

#[test]
fn depot_pop_races_a_full_flush() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(4);
    b.check(|| {
        let d = domain();
        let pfns: Vec<u64> = (0..3)
            .map(|_| d.alloc_iova_fast(1, 64, false).unwrap())
            .collect();
        // CPU 0 caches all three; the third moves a magazine to the depot.
        for &p in &pfns {
            d.free_iova_fast(p, 1).unwrap();
        }
        assert_eq!(d.depot_len(0), 1);
        let taker = {
            let d = d.clone();
            thread::spawn(move || {
                CPU.with(|c| c.set(1));
                d.alloc_iova_fast(1, 64, false).unwrap()
            })
        };
        let flusher = {
            let d = d.clone();
            thread::spawn(move || d.flush_rcaches())
        };
        let got = taker.join().unwrap();
        flusher.join().unwrap();
        // Whatever the order, the pfn is allocated exactly once: its node is in
        // the tree and no cache still holds it.
        assert!(d.find_iova(got).is_some());
        d.flush_rcaches();
        assert_eq!(d.ranges().len(), 1);
        assert_eq!(d.ranges()[0].pfn_lo, got);
    });
}
