//! Flush queues: deferred IOVA freeing for lazy (DMA-FQ) domains
//! (reference: `software.md` §2, §1.4).
//!
//! An unmapped range is not freed at once: it waits in a ring, stamped with the
//! flush-start counter, until a flush of the whole IOTLB that started after it was
//! queued has finished (`counter < finish_cnt`). Then its freed page-table pages
//! (the payload `P`) go to [`FqOps::free_payload`] and its pfns back through
//! [`IovaDomain::free_iova_fast`].
//!
//! # Timer
//!
//! There is no timer thread. The queue arms a deadline on its [`Clock`] when an
//! entry is queued and no deadline is pending (one CPU wins the arming, as Linux's
//! `fq_timer_on` exchange); whoever drives time (the DMA layer, the simulator, a
//! test) calls [`FlushQueue::poll`], which, once the deadline has passed, disarms
//! it, flushes once and frees the completed entries of every ring. As in Linux the
//! timer is not re-armed by the timeout itself, only by the next queued entry.
//!
//! # Callbacks and locks
//!
//! `flush_iotlb_all` and `free_payload` are called with a ring lock held (a full
//! ring flushes synchronously under its lock, as Linux does), so they must not call
//! back into the same queue.

use std::collections::VecDeque;
use std::sync::Arc;

use iommu_types::Clock;

use crate::domain::IovaDomain;
use crate::error::{Error, Result};
use crate::stats::FqStats;
use crate::sync::{AtomicU64, CachePadded, Lock, Ordering, fence};

/// Entries per CPU ring in the default per-CPU variant (`IOVA_DEFAULT_FQ_SIZE`).
pub const IOVA_DEFAULT_FQ_SIZE: usize = 256;
/// Timeout of the per-CPU variant (`IOVA_DEFAULT_FQ_TIMEOUT`, 10 ms), in ns.
pub const IOVA_DEFAULT_FQ_TIMEOUT_NS: u64 = 10_000_000;
/// Entries of the single-queue variant (`IOVA_SINGLE_FQ_SIZE`).
pub const IOVA_SINGLE_FQ_SIZE: usize = 32768;
/// Timeout of the single-queue variant (`IOVA_SINGLE_FQ_TIMEOUT`, 1 s), in ns.
pub const IOVA_SINGLE_FQ_TIMEOUT_NS: u64 = 1_000_000_000;

/// Deadline value meaning "timer not armed".
const TIMER_OFF: u64 = u64::MAX;

/// Which ring layout a queue uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FqKind {
    /// One ring per CPU (the default).
    PerCpu,
    /// One large shared ring, for IOMMUs whose global invalidation is expensive
    /// (Linux selects it with `shadow_on_flush`: s390, virtio-iommu).
    Single,
}

/// Size and timing of a flush queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FqConfig {
    /// Ring layout.
    pub kind: FqKind,
    /// Slots per ring, a power of two ≥ 2. As Linux's ring (full when
    /// `tail + 1 == head`), a ring holds at most `size - 1` entries.
    pub size: usize,
    /// Time from the first queued entry to the timeout flush, in ns.
    pub timeout_ns: u64,
}

impl FqConfig {
    /// The default per-CPU queue: 256 entries per CPU, 10 ms.
    pub const fn per_cpu() -> Self {
        Self {
            kind: FqKind::PerCpu,
            size: IOVA_DEFAULT_FQ_SIZE,
            timeout_ns: IOVA_DEFAULT_FQ_TIMEOUT_NS,
        }
    }

    /// The single large queue: 32768 entries, 1 s.
    pub const fn single() -> Self {
        Self {
            kind: FqKind::Single,
            size: IOVA_SINGLE_FQ_SIZE,
            timeout_ns: IOVA_SINGLE_FQ_TIMEOUT_NS,
        }
    }
}

/// What the queue needs from its domain's owner.
pub trait FqOps<P>: Send + Sync {
    /// Invalidate the whole IOTLB of the domain and wait for completion (the
    /// driver's `flush_iotlb_all`). May run on several CPUs at once.
    fn flush_iotlb_all(&self);
    /// Take back the freed page-table pages of an entry whose flush has completed.
    fn free_payload(&self, payload: P);
}

/// One deferred free.
#[derive(Debug)]
pub struct FqEntry<P> {
    /// First pfn of the range.
    pub iova_pfn: u64,
    /// Size in pfns, as passed to [`IovaDomain::free_iova_fast`].
    pub pages: u64,
    /// Freed page-table pages.
    pub payload: P,
    /// `start_cnt` when the entry was queued.
    pub counter: u64,
}

#[derive(Debug)]
struct Ring<P> {
    entries: VecDeque<FqEntry<P>>,
}

#[derive(Debug)]
struct Counters {
    queued: AtomicU64,
    freed: AtomicU64,
    full: AtomicU64,
    timeout: AtomicU64,
    explicit: AtomicU64,
    arms: AtomicU64,
    max_occupancy: AtomicU64,
}

impl Counters {
    fn new() -> Self {
        Self {
            queued: AtomicU64::new(0),
            freed: AtomicU64::new(0),
            full: AtomicU64::new(0),
            timeout: AtomicU64::new(0),
            explicit: AtomicU64::new(0),
            arms: AtomicU64::new(0),
            max_occupancy: AtomicU64::new(0),
        }
    }
}

/// Why a flush happened (for the statistics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reason {
    Full,
    Timeout,
    Explicit,
}

/// A flush queue over an [`IovaDomain`], generic in the freed page-table payload
/// `P` (the DMA layer uses a list of freed tables; `()` works when there is none).
pub struct FlushQueue<P: Send> {
    iovad: Arc<IovaDomain>,
    ops: Arc<dyn FqOps<P>>,
    clock: Arc<dyn Clock>,
    rings: Box<[CachePadded<Lock<Ring<P>>>]>,
    capacity: usize,
    timeout_ns: u64,
    start_cnt: AtomicU64,
    finish_cnt: AtomicU64,
    deadline: AtomicU64,
    counters: Counters,
}

impl<P: Send> core::fmt::Debug for FlushQueue<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FlushQueue")
            .field("rings", &self.rings.len())
            .field("capacity", &self.capacity)
            .field("timeout_ns", &self.timeout_ns)
            .finish_non_exhaustive()
    }
}

impl<P: Send> FlushQueue<P> {
    /// A queue freeing into `iovad`, flushing through `ops`, timed by `clock`.
    /// Per-CPU rings are indexed with the domain's CPU ids.
    pub fn new(
        iovad: Arc<IovaDomain>,
        ops: Arc<dyn FqOps<P>>,
        clock: Arc<dyn Clock>,
        config: FqConfig,
    ) -> Result<Self> {
        if config.size < 2 || !config.size.is_power_of_two() {
            return Err(Error::BadConfig(
                "flush queue size must be a power of two >= 2",
            ));
        }
        let nrings = match config.kind {
            FqKind::PerCpu => iovad.ncpus(),
            FqKind::Single => 1,
        };
        let capacity = config.size - 1;
        let rings = (0..nrings)
            .map(|_| {
                CachePadded(Lock::new(Ring {
                    entries: VecDeque::with_capacity(capacity),
                }))
            })
            .collect();
        Ok(Self {
            iovad,
            ops,
            clock,
            rings,
            capacity,
            timeout_ns: config.timeout_ns,
            // Linux resets both counters at init.
            start_cnt: AtomicU64::new(0),
            finish_cnt: AtomicU64::new(0),
            deadline: AtomicU64::new(TIMER_OFF),
            counters: Counters::new(),
        })
    }

    /// The domain this queue frees into.
    pub fn domain(&self) -> &Arc<IovaDomain> {
        &self.iovad
    }

    /// Entries one ring can hold.
    pub fn ring_capacity(&self) -> usize {
        self.capacity
    }

    /// Number of rings (CPUs, or 1 for the single queue).
    pub fn rings(&self) -> usize {
        self.rings.len()
    }

    fn ring(&self) -> &Lock<Ring<P>> {
        if self.rings.len() == 1 {
            &self.rings[0]
        } else {
            &self.rings[self.iovad.current_cpu() % self.rings.len()]
        }
    }

    /// Flush: `start_cnt++`, invalidate everything, `finish_cnt++`.
    fn flush(&self, why: Reason) {
        self.start_cnt.fetch_add(1, Ordering::SeqCst);
        self.ops.flush_iotlb_all();
        self.finish_cnt.fetch_add(1, Ordering::SeqCst);
        let c = match why {
            Reason::Full => &self.counters.full,
            Reason::Timeout => &self.counters.timeout,
            Reason::Explicit => &self.counters.explicit,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Free, in ring order, every entry whose flush has completed.
    fn ring_free_locked(&self, ring: &mut Ring<P>) {
        let finish = self.finish_cnt.load(Ordering::SeqCst);
        let mut n = 0;
        while ring.entries.front().is_some_and(|e| e.counter < finish) {
            let Some(e) = ring.entries.pop_front() else {
                break;
            };
            self.release(e);
            n += 1;
        }
        if n > 0 {
            self.counters.freed.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn release(&self, e: FqEntry<P>) {
        self.ops.free_payload(e.payload);
        // The pfn came from `alloc_iova_fast` for `pages`, so this cannot fail
        // unless the caller queued a range it never allocated; such a range is
        // dropped rather than corrupting the caches.
        let _ = self.iovad.free_iova_fast(e.iova_pfn, e.pages);
    }

    /// Defer freeing `pages` pfns at `iova_pfn` and their freed page-table pages
    /// until a flush that starts after this call has completed (Linux's
    /// `queue_iova`). The caller must have cleared the PTEs before calling. A full
    /// ring is flushed synchronously first. Arms the timeout if it is not pending.
    /// A range the fast path cannot have handed out is refused up front; its
    /// payload is then dropped, never handed to `free_payload`, because the
    /// IOMMU may still walk those tables until a flush.
    pub fn queue_iova(&self, iova_pfn: u64, pages: u64, payload: P) -> Result<()> {
        self.iovad.check_fast_free(iova_pfn, pages)?;
        // Order the caller's PTE clears before the counter sample (smp_mb).
        fence(Ordering::SeqCst);
        {
            let mut ring = self.ring().lock();
            self.ring_free_locked(&mut ring);
            if ring.entries.len() >= self.capacity {
                self.flush(Reason::Full);
                self.ring_free_locked(&mut ring);
            }
            let counter = self.start_cnt.load(Ordering::SeqCst);
            ring.entries.push_back(FqEntry {
                iova_pfn,
                pages,
                payload,
                counter,
            });
            self.counters.queued.fetch_add(1, Ordering::Relaxed);
            let len = ring.entries.len() as u64;
            if len > self.counters.max_occupancy.load(Ordering::Relaxed) {
                self.counters
                    .max_occupancy
                    .fetch_max(len, Ordering::Relaxed);
            }
        }
        if self.deadline.load(Ordering::Relaxed) == TIMER_OFF {
            let due = self
                .clock
                .now_ns()
                .saturating_add(self.timeout_ns)
                .min(TIMER_OFF - 1);
            if self
                .deadline
                .compare_exchange(TIMER_OFF, due, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                self.counters.arms.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// When the armed timeout fires, if armed.
    pub fn deadline(&self) -> Option<u64> {
        match self.deadline.load(Ordering::Acquire) {
            TIMER_OFF => None,
            d => Some(d),
        }
    }

    /// Run the timeout if it is due by the clock: disarm, flush once, free the
    /// completed entries of every ring. Returns whether it ran.
    pub fn poll(&self) -> bool {
        let d = self.deadline.load(Ordering::Acquire);
        if d == TIMER_OFF || self.clock.now_ns() < d {
            return false;
        }
        if self
            .deadline
            .compare_exchange(d, TIMER_OFF, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        self.flush(Reason::Timeout);
        self.free_all_rings();
        true
    }

    fn free_all_rings(&self) {
        for r in self.rings.iter() {
            self.ring_free_locked(&mut r.lock());
        }
    }

    /// Flush now and free every entry queued before this call (for a switch back
    /// to strict, or before tearing the domain down).
    pub fn flush_all(&self) {
        self.flush(Reason::Explicit);
        self.free_all_rings();
    }

    /// Entries waiting, over all rings.
    pub fn occupancy(&self) -> usize {
        self.rings.iter().map(|r| r.lock().entries.len()).sum()
    }

    /// The flush counters `(start_cnt, finish_cnt)`.
    pub fn counters(&self) -> (u64, u64) {
        (
            self.start_cnt.load(Ordering::SeqCst),
            self.finish_cnt.load(Ordering::SeqCst),
        )
    }

    /// A snapshot of the statistics.
    pub fn stats(&self) -> FqStats {
        let c = &self.counters;
        FqStats {
            queued: c.queued.load(Ordering::Relaxed),
            freed: c.freed.load(Ordering::Relaxed),
            flushes_full: c.full.load(Ordering::Relaxed),
            flushes_timeout: c.timeout.load(Ordering::Relaxed),
            flushes_explicit: c.explicit.load(Ordering::Relaxed),
            timer_arms: c.arms.load(Ordering::Relaxed),
            max_occupancy: c.max_occupancy.load(Ordering::Relaxed),
            occupancy: self.occupancy() as u64,
        }
    }
}

impl<P: Send> Drop for FlushQueue<P> {
    /// Teardown: if anything is still queued, flush once and release it all, so
    /// that no page-table page and no IOVA is lost (Linux frees only the pages,
    /// because its IOVA domain dies with the queue; ours may outlive it).
    fn drop(&mut self) {
        if self.rings.iter().any(|r| !r.lock().entries.is_empty()) {
            self.flush_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::Lock;
    use iommu_types::{FixedCpuId, VirtualClock};

    struct Recorder {
        flushes: AtomicU64,
        freed: Lock<Vec<u32>>,
    }

    impl Recorder {
        fn new() -> Self {
            Self {
                flushes: AtomicU64::new(0),
                freed: Lock::new(Vec::new()),
            }
        }
    }

    impl FqOps<u32> for Recorder {
        fn flush_iotlb_all(&self) {
            self.flushes.fetch_add(1, Ordering::SeqCst);
        }
        fn free_payload(&self, payload: u32) {
            self.freed.lock().push(payload);
        }
    }

    fn setup(
        cfg: FqConfig,
        ncpus: usize,
    ) -> (
        Arc<IovaDomain>,
        Arc<Recorder>,
        Arc<VirtualClock>,
        FlushQueue<u32>,
    ) {
        let d = Arc::new(
            IovaDomain::builder(4096, 1)
                .cpus(Arc::new(FixedCpuId {
                    id: 0,
                    count: ncpus,
                }))
                .build()
                .unwrap(),
        );
        let ops = Arc::new(Recorder::new());
        let clock = Arc::new(VirtualClock::new(1_000));
        let fq = FlushQueue::new(d.clone(), ops.clone(), clock.clone(), cfg).unwrap();
        (d, ops, clock, fq)
    }

    #[test]
    fn config_constants_match_linux() {
        assert_eq!(FqConfig::per_cpu().size, 256);
        assert_eq!(FqConfig::per_cpu().timeout_ns, 10_000_000);
        assert_eq!(FqConfig::single().size, 32768);
        assert_eq!(FqConfig::single().timeout_ns, 1_000_000_000);
        let (d, _, _, fq) = setup(FqConfig::per_cpu(), 4);
        assert_eq!((fq.rings(), fq.ring_capacity()), (4, 255));
        let fq1 = FlushQueue::new(
            d.clone(),
            Arc::new(Recorder::new()),
            Arc::new(VirtualClock::new(0)),
            FqConfig::single(),
        )
        .unwrap();
        assert_eq!((fq1.rings(), fq1.ring_capacity()), (1, 32767));
        let bad = FqConfig {
            size: 100,
            ..FqConfig::per_cpu()
        };
        assert!(
            FlushQueue::<u32>::new(
                d,
                Arc::new(Recorder::new()),
                Arc::new(VirtualClock::new(0)),
                bad
            )
            .is_err()
        );
    }

    #[test]
    fn entries_wait_for_a_flush_that_started_after_them() {
        let (d, ops, _, fq) = setup(FqConfig::per_cpu(), 1);
        let p = d.alloc_iova_fast(1, 1000, true).unwrap();
        fq.queue_iova(p, 1, 7).unwrap();
        // Still allocated: the next allocation must not get it.
        assert_ne!(d.alloc_iova_fast(1, 1000, true).unwrap(), p);
        assert!(ops.freed.lock().is_empty());
        fq.flush_all();
        assert_eq!(*ops.freed.lock(), vec![7]);
        assert_eq!(
            d.alloc_iova_fast(1, 1000, true),
            Ok(p),
            "back through the rcache"
        );
        let s = fq.stats();
        assert_eq!(
            (s.queued, s.freed, s.flushes_explicit, s.occupancy),
            (1, 1, 1, 0)
        );
    }

    #[test]
    fn the_free_rule_is_counter_below_finish() {
        let (d, _, _, fq) = setup(FqConfig::per_cpu(), 1);
        // Simulate a flush in progress: started, not finished.
        fq.start_cnt.fetch_add(1, Ordering::SeqCst);
        let p = d.alloc_iova_fast(1, 1000, true).unwrap();
        fq.queue_iova(p, 1, 1).unwrap(); // counter = 1
        // The in-progress flush finishes: finish_cnt = 1, not > 1: must stay queued.
        fq.finish_cnt.fetch_add(1, Ordering::SeqCst);
        let q = d.alloc_iova_fast(1, 1000, true).unwrap();
        fq.queue_iova(q, 1, 2).unwrap();
        assert_eq!(fq.occupancy(), 2);
        // A full flush starting now frees both.
        fq.flush_all();
        assert_eq!(fq.occupancy(), 0);
    }

    #[test]
    fn a_full_ring_flushes_synchronously() {
        let cfg = FqConfig {
            kind: FqKind::PerCpu,
            size: 4,
            timeout_ns: 1_000_000,
        };
        let (d, ops, _, fq) = setup(cfg, 1);
        let pfns: Vec<_> = (0..4)
            .map(|_| d.alloc_iova_fast(1, 1000, true).unwrap())
            .collect();
        for (i, &p) in pfns.iter().take(3).enumerate() {
            fq.queue_iova(p, 1, i as u32).unwrap();
        }
        assert_eq!(ops.flushes.load(Ordering::SeqCst), 0);
        fq.queue_iova(pfns[3], 1, 3).unwrap();
        assert_eq!(ops.flushes.load(Ordering::SeqCst), 1);
        assert_eq!(*ops.freed.lock(), vec![0, 1, 2]);
        let s = fq.stats();
        assert_eq!((s.flushes_full, s.occupancy, s.max_occupancy), (1, 1, 3));
    }

    #[test]
    fn timeout_runs_on_the_clock_and_arms_once() {
        let (d, ops, clock, fq) = setup(FqConfig::per_cpu(), 2);
        assert_eq!(fq.deadline(), None);
        let a = d.alloc_iova_fast(1, 1000, true).unwrap();
        let b = d.alloc_iova_fast(1, 1000, true).unwrap();
        fq.queue_iova(a, 1, 1).unwrap();
        assert_eq!(fq.deadline(), Some(1_000 + IOVA_DEFAULT_FQ_TIMEOUT_NS));
        clock.advance(5_000_000);
        fq.queue_iova(b, 1, 2).unwrap();
        // Not re-armed by the second entry.
        assert_eq!(fq.deadline(), Some(1_000 + IOVA_DEFAULT_FQ_TIMEOUT_NS));
        assert!(!fq.poll());
        clock.advance(5_000_000 - 1);
        assert!(!fq.poll());
        clock.advance(1);
        assert!(fq.poll());
        assert_eq!(ops.freed.lock().len(), 2);
        assert_eq!(fq.deadline(), None);
        assert!(!fq.poll(), "the timeout does not re-arm itself");
        let s = fq.stats();
        assert_eq!((s.flushes_timeout, s.timer_arms), (1, 1));
    }

    #[test]
    fn single_queue_variant_shares_one_ring() {
        let cfg = FqConfig {
            size: 8,
            ..FqConfig::single()
        };
        let (d, ops, clock, fq) = setup(cfg, 4);
        for i in 0..7 {
            let p = d.alloc_iova_fast(1, 1000, true).unwrap();
            fq.queue_iova(p, 1, i).unwrap();
        }
        assert_eq!(fq.occupancy(), 7);
        assert_eq!(fq.deadline(), Some(1_000 + IOVA_SINGLE_FQ_TIMEOUT_NS));
        clock.advance(IOVA_SINGLE_FQ_TIMEOUT_NS);
        assert!(fq.poll());
        assert_eq!(ops.freed.lock().len(), 7);
    }

    #[test]
    fn bogus_ranges_are_refused_at_queue_time() {
        let (_, ops, _, fq) = setup(FqConfig::per_cpu(), 1);
        assert_eq!(
            fq.queue_iova(0, 1, 1),
            Err(Error::BadFastFree { pfn: 0, size: 1 })
        );
        assert_eq!(
            fq.queue_iova(3, 2, 1),
            Err(Error::BadFastFree { pfn: 3, size: 2 })
        );
        assert_eq!(fq.queue_iova(4, 0, 1), Err(Error::ZeroSize));
        assert_eq!(fq.occupancy(), 0);
        assert_eq!(fq.deadline(), None);
        assert!(ops.freed.lock().is_empty());
    }

    #[test]
    fn drop_flushes_and_returns_everything() {
        let (d, ops, _, fq) = setup(FqConfig::per_cpu(), 1);
        let p = d.alloc_iova_fast(2, 1000, true).unwrap();
        fq.queue_iova(p, 2, 9).unwrap();
        drop(fq);
        assert_eq!(ops.flushes.load(Ordering::SeqCst), 1);
        assert_eq!(*ops.freed.lock(), vec![9]);
        d.flush_rcaches();
        assert_eq!(d.tree_len(), 0);
    }
}
