//! Loom model of flush-queue ordering: no IOVA is handed out again before a flush
//! that started after it was queued has finished, whatever the interleaving of
//! queueing, allocation, explicit flushes, full-ring flushes and the timeout.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p iommu-iova --release --test loom_fq`
#![cfg(loom)]

use std::sync::Arc;

use iommu_iova::{FlushQueue, FqConfig, FqKind, FqOps, IovaDomain};
use iommu_types::{FixedCpuId, VirtualClock};
use loom::sync::atomic::{AtomicU64, Ordering};
use loom::thread;

/// Records which flush generations have completed.
struct Ops {
    started: AtomicU64,
    completed: AtomicU64,
}

impl FqOps<()> for Ops {
    fn flush_iotlb_all(&self) -> Result<(), iommu_types::Errno> {
        let g = self.started.fetch_add(1, Ordering::SeqCst);
        // The invalidation is in progress between these two steps.
        self.completed.fetch_or(1 << g, Ordering::SeqCst);
        Ok(())
    }
    fn free_payload(&self, _: ()) {}
}

impl Ops {
    /// Whether a flush numbered `from` or later has completed.
    fn completed_since(&self, from: u64) -> bool {
        self.completed.load(Ordering::SeqCst) >> from != 0
    }
}

struct Setup {
    d: Arc<IovaDomain>,
    ops: Arc<Ops>,
    clock: Arc<VirtualClock>,
    fq: Arc<FlushQueue<()>>,
}

fn setup(size: usize) -> Setup {
    // One CPU for everybody, so a released pfn is visible to every allocator.
    let d = Arc::new(
        IovaDomain::builder(4096, 1)
            .cpus(Arc::new(FixedCpuId { id: 0, count: 1 }))
            .magazine_size(2)
            .build()
            .unwrap(),
    );
    let ops = Arc::new(Ops {
        started: AtomicU64::new(0),
        completed: AtomicU64::new(0),
    });
    let clock = Arc::new(VirtualClock::new(0));
    let cfg = FqConfig {
        kind: FqKind::PerCpu,
        size,
        timeout_ns: 10,
    };
    let fq = Arc::new(FlushQueue::new(d.clone(), ops.clone(), clock.clone(), cfg).unwrap());
    Setup { d, ops, clock, fq }
}

/// Unmap `pfn` (the "PTE clear" is the moment `before` is sampled), queue it, then
/// allocate; if the allocation returns the same pfn, a flush that started after the
/// unmap must have completed.
fn unmap_then_reuse(s: &Setup, pfn: u64) {
    let before = s.ops.started.load(Ordering::SeqCst);
    s.fq.queue_iova(pfn, 1, ()).unwrap();
    let again = s.d.alloc_iova_fast(1, 16, false).unwrap();
    if again == pfn {
        assert!(
            s.ops.completed_since(before),
            "pfn {pfn} reused before a flush started after its unmap completed"
        );
    }
}

#[test]
fn queued_iova_not_reused_before_its_flush() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(4);
    b.check(|| {
        let s = Arc::new(setup(16));
        let x = s.d.alloc_iova_fast(1, 16, false).unwrap();
        let flusher = {
            let s = s.clone();
            thread::spawn(move || s.fq.flush_all().unwrap())
        };
        unmap_then_reuse(&s, x);
        flusher.join().unwrap();
    });
}

#[test]
fn full_ring_flush_and_timeout_race() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(|| {
        // Two slots: one entry fits, the second queue flushes synchronously.
        let s = Arc::new(setup(2));
        let x = s.d.alloc_iova_fast(1, 16, false).unwrap();
        let y = s.d.alloc_iova_fast(1, 16, false).unwrap();
        let other = {
            let s = s.clone();
            thread::spawn(move || unmap_then_reuse(&s, y))
        };
        let timer = {
            let s = s.clone();
            thread::spawn(move || {
                s.clock.advance(10);
                s.fq.poll().unwrap();
            })
        };
        unmap_then_reuse(&s, x);
        other.join().unwrap();
        timer.join().unwrap();
    });
}
