//! Flush queues: deferred IOVA freeing for lazy (DMA-FQ) domains
//! (reference: `software.md` §2, §1.4).
//!
//! An unmapped range is not freed at once: it waits in a ring, stamped with the
//! flush-start counter, until a flush of the whole IOTLB that started after it was
//! queued has finished (`counter < finish_cnt`). Then its freed page-table pages
//! (the payload `P`) go to [`FqOps::free_payload`] and its pfns to the queue's
//! [`IovaSink`]: by default an [`IovaDomain`] (`free_iova_fast`), or anything else
//! that takes ranges back (the DMA layer passes its own allocator binding, so its
//! model checks observe every free).
//!
//! # Lifecycle
//!
//! A queue is usually ready when built. One that is built *inactive*
//! ([`FlushQueue::into_inactive`]) refuses entries until [`FlushQueue::activate`]
//! resets its counters and marks it ready: the DMA layer builds it with the
//! cookie and activates it in the live strict → lazy switch, before publishing its
//! lazy flag with Release (`iommu_dma_init_fq`).
//!
//! # Timer
//!
//! There is no timer thread. The queue arms a deadline on its [`Clock`] when an
//! entry is queued and no deadline is pending (one CPU wins the arming, as Linux's
//! `fq_timer_on` exchange); whoever drives time (the DMA layer, the simulator, a
//! test) calls [`FlushQueue::poll`], which, once the deadline has passed, disarms
//! it, flushes once and frees the completed entries of every ring
//! ([`FlushQueue::fire_timer`] does the same without looking at the clock). As in
//! Linux the timer is not re-armed by the timeout itself, only by the next queued
//! entry.
//!
//! # Failed invalidations
//!
//! [`FqOps::flush_iotlb_all`] may fail. Then `finish_cnt` does not advance, so
//! nothing is freed on that flush's account, its `start_cnt` increment is taken
//! back (so later entries do not wait for one extra flush per failure), and the
//! error is returned.
//!
//! # Callbacks and locks
//!
//! `flush_iotlb_all`, `free_payload` and [`IovaSink::release_range`] are called
//! with a ring lock held (a full ring flushes synchronously under its lock, as
//! Linux does), so they must not call back into the same queue.

use std::collections::VecDeque;
use std::sync::Arc;

use iommu_types::{Clock, CpuId, Errno};

use crate::domain::IovaDomain;
use crate::error::{Error, Result};
use crate::stats::FqStats;
use crate::sync::{AtomicBool, AtomicU64, CachePadded, Lock, Ordering, fence};

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

/// Largest ring accepted by [`FlushQueue`] (slots per ring); Linux's largest is the
/// 32768-entry single queue.
pub const MAX_FQ_SIZE: usize = 1 << 20;

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

/// What the queue needs from its domain's owner: the invalidation and the
/// release of the payload.
pub trait FqOps<P>: Send + Sync {
    /// Invalidate the whole IOTLB of the domain and wait for completion (the
    /// driver's `flush_iotlb_all`). May run on several CPUs at once. An error means
    /// the invalidation may not have completed: nothing is freed on its account.
    fn flush_iotlb_all(&self) -> core::result::Result<(), Errno>;
    /// Take back the freed page-table pages of an entry whose flush has completed.
    fn free_payload(&self, payload: P);
}

impl<P, T: FqOps<P> + ?Sized> FqOps<P> for Arc<T> {
    #[inline]
    fn flush_iotlb_all(&self) -> core::result::Result<(), Errno> {
        (**self).flush_iotlb_all()
    }
    #[inline]
    fn free_payload(&self, payload: P) {
        (**self).free_payload(payload)
    }
}

/// Where the pfns of a completed entry go: "free this `(pfn, pages)`".
///
/// [`IovaDomain`] implements it with `free_iova_fast`; another owner (the DMA
/// layer's allocator binding, a checking wrapper in a test) can take the ranges
/// back itself.
pub trait IovaSink: Send + Sync {
    /// Refuse, before anything is queued, a range this sink can never take back
    /// (the queue then drops the entry's payload instead of releasing it later).
    /// The default accepts everything.
    fn check_release(&self, pfn: u64, pages: u64) -> Result<()> {
        let _ = (pfn, pages);
        Ok(())
    }
    /// Take back `pages` pfns at `pfn`: their unmap has been invalidated, so the
    /// range may be handed out again.
    fn release_range(&self, pfn: u64, pages: u64);
}

impl IovaSink for IovaDomain {
    #[inline]
    fn check_release(&self, pfn: u64, pages: u64) -> Result<()> {
        self.check_fast_free(pfn, pages)
    }
    #[inline]
    fn release_range(&self, pfn: u64, pages: u64) {
        // Checked at queue time, so this cannot fail unless the caller queued a
        // range it never allocated; such a range is dropped rather than corrupting
        // the caches.
        let _ = self.free_iova_fast(pfn, pages);
    }
}

impl<T: IovaSink + ?Sized> IovaSink for Arc<T> {
    #[inline]
    fn check_release(&self, pfn: u64, pages: u64) -> Result<()> {
        (**self).check_release(pfn, pages)
    }
    #[inline]
    fn release_range(&self, pfn: u64, pages: u64) {
        (**self).release_range(pfn, pages)
    }
}

/// One deferred free.
#[derive(Debug)]
pub struct FqEntry<P> {
    /// First pfn of the range.
    pub iova_pfn: u64,
    /// Size in pfns, as passed to [`IovaSink::release_range`].
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

/// A flush queue, generic in the freed page-table payload `P` (the DMA layer uses
/// a list of freed tables; `()` works when there is none), in the owner's
/// callbacks `O` and in the [`IovaSink`] `S` the freed ranges go to. The defaults
/// are a shared `dyn` [`FqOps`] and an [`IovaDomain`].
pub struct FlushQueue<P: Send, O: FqOps<P> = Arc<dyn FqOps<P>>, S: IovaSink = Arc<IovaDomain>> {
    ops: O,
    sink: S,
    clock: Arc<dyn Clock>,
    cpus: Arc<dyn CpuId>,
    rings: Box<[CachePadded<Lock<Ring<P>>>]>,
    capacity: usize,
    timeout_ns: u64,
    active: AtomicBool,
    start_cnt: AtomicU64,
    finish_cnt: AtomicU64,
    deadline: AtomicU64,
    counters: Counters,
}

impl<P: Send, O: FqOps<P>, S: IovaSink> core::fmt::Debug for FlushQueue<P, O, S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FlushQueue")
            .field("rings", &self.rings.len())
            .field("capacity", &self.capacity)
            .field("timeout_ns", &self.timeout_ns)
            .field("active", &self.active.load(Ordering::Relaxed))
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
        let cpus = iovad.cpu_ids().clone();
        Self::with_parts(ops, iovad, clock, cpus, config)
    }

    /// The domain this queue frees into.
    pub fn domain(&self) -> &Arc<IovaDomain> {
        &self.sink
    }
}

impl<P: Send, O: FqOps<P>, S: IovaSink> FlushQueue<P, O, S> {
    /// A ready queue flushing through `ops`, releasing ranges to `sink`, timed by
    /// `clock`, with one ring per CPU of `cpus` (or one ring for
    /// [`FqKind::Single`]).
    pub fn with_parts(
        ops: O,
        sink: S,
        clock: Arc<dyn Clock>,
        cpus: Arc<dyn CpuId>,
        config: FqConfig,
    ) -> Result<Self> {
        if config.size < 2 || !config.size.is_power_of_two() || config.size > MAX_FQ_SIZE {
            return Err(Error::BadConfig(
                "flush queue size must be a power of two in 2..=2^20",
            ));
        }
        let nrings = match config.kind {
            FqKind::PerCpu => cpus.count().max(1),
            FqKind::Single => 1,
        };
        let capacity = config.size - 1;
        let rings = (0..nrings)
            .map(|_| {
                CachePadded(Lock::new(Ring {
                    // Grown on demand: a large single queue costs nothing until used.
                    entries: VecDeque::new(),
                }))
            })
            .collect();
        Ok(Self {
            ops,
            sink,
            clock,
            cpus,
            rings,
            capacity,
            timeout_ns: config.timeout_ns,
            active: AtomicBool::new(true),
            // Linux resets both counters at init.
            start_cnt: AtomicU64::new(0),
            finish_cnt: AtomicU64::new(0),
            deadline: AtomicU64::new(TIMER_OFF),
            counters: Counters::new(),
        })
    }

    /// This queue, but refusing entries ([`Error::FqInactive`]) until
    /// [`activate`](Self::activate) is called.
    pub fn into_inactive(self) -> Self {
        self.active.store(false, Ordering::Relaxed);
        self
    }

    /// Make an inactive queue ready (`iommu_dma_init_fq`): reset both counters,
    /// then mark it active. The stores are Relaxed: the caller publishes the queue
    /// afterwards with a Release store (its lazy flag) that users load with
    /// Acquire before queueing. A no-op on an active queue.
    pub fn activate(&self) {
        if self.active.load(Ordering::Relaxed) {
            return;
        }
        self.start_cnt.store(0, Ordering::Relaxed);
        self.finish_cnt.store(0, Ordering::Relaxed);
        self.active.store(true, Ordering::Relaxed);
    }

    /// Whether the queue accepts entries.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// Drive the timeout from another clock (before the queue is shared).
    pub fn set_clock(&mut self, clock: Arc<dyn Clock>) {
        self.clock = clock;
    }

    /// The owner's callbacks.
    pub fn ops(&self) -> &O {
        &self.ops
    }

    /// Where freed ranges go.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// Entries one ring can hold.
    pub fn ring_capacity(&self) -> usize {
        self.capacity
    }

    /// Number of rings (CPUs, or 1 for the single queue).
    pub fn rings(&self) -> usize {
        self.rings.len()
    }

    #[inline]
    fn ring(&self) -> &Lock<Ring<P>> {
        if self.rings.len() == 1 {
            &self.rings[0]
        } else {
            let c = self.cpus.current();
            let n = self.rings.len();
            &self.rings[if c < n { c } else { c % n }]
        }
    }

    /// Flush: `start_cnt++`, invalidate everything, `finish_cnt++`.
    ///
    /// A failed invalidation takes its `start_cnt++` back instead. That keeps the
    /// rule safe: an entry queued at `counter = c` has seen at most `c` started
    /// flushes that will succeed, so `finish_cnt > c` still proves one that
    /// started after it completed; and it keeps the queue live: without the
    /// rollback every later entry would wait for one more flush per failure.
    fn flush(&self, why: Reason) -> Result<()> {
        self.start_cnt.fetch_add(1, Ordering::SeqCst);
        if let Err(e) = self.ops.flush_iotlb_all() {
            self.start_cnt.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::Flush(e));
        }
        self.finish_cnt.fetch_add(1, Ordering::SeqCst);
        let c = match why {
            Reason::Full => &self.counters.full,
            Reason::Timeout => &self.counters.timeout,
            Reason::Explicit => &self.counters.explicit,
        };
        c.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Free, in ring order, every entry whose flush has completed.
    fn ring_free_locked(&self, ring: &mut Ring<P>) {
        let finish = self.finish_cnt.load(Ordering::SeqCst);
        let mut n = 0;
        while ring.entries.front().is_some_and(|e| e.counter < finish) {
            let Some(e) = ring.entries.pop_front() else {
                break;
            };
            self.ops.free_payload(e.payload);
            self.sink.release_range(e.iova_pfn, e.pages);
            n += 1;
        }
        if n > 0 {
            self.counters.freed.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Defer freeing `pages` pfns at `iova_pfn` and their freed page-table pages
    /// until a flush that starts after this call has completed (Linux's
    /// `queue_iova`). The caller must have cleared the PTEs before calling. A full
    /// ring is flushed synchronously first. Arms the timeout if it is not pending.
    ///
    /// Refused up front, with the payload dropped (never handed to
    /// `free_payload`, because the IOMMU may still walk those tables until a
    /// flush): a range the sink can never take back, any entry while the queue
    /// is inactive, and an entry whose ring was full and whose synchronous flush
    /// failed (its IOVA is then leaked on purpose: stale entries may remain).
    pub fn queue_iova(&self, iova_pfn: u64, pages: u64, payload: P) -> Result<()> {
        self.sink.check_release(iova_pfn, pages)?;
        if !self.active.load(Ordering::Relaxed) {
            // Only reachable if the queue was published before `activate` (the
            // bug §1.4 warns about): refuse rather than lose the range silently.
            return Err(Error::FqInactive);
        }
        // Order the caller's PTE clears before the counter sample (smp_mb).
        fence(Ordering::SeqCst);
        {
            let mut ring = self.ring().lock();
            self.ring_free_locked(&mut ring);
            if ring.entries.len() >= self.capacity {
                self.flush(Reason::Full)?;
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

    /// Whether the timeout is armed (an entry was queued since it last ran).
    pub fn timer_armed(&self) -> bool {
        self.deadline().is_some()
    }

    /// Run the timeout if it is due by the clock: disarm, flush once, free the
    /// completed entries of every ring. Returns whether it ran (an error if its
    /// flush failed; the timer is then disarmed until the next queued entry).
    pub fn poll(&self) -> Result<bool> {
        let d = self.deadline.load(Ordering::Acquire);
        if d == TIMER_OFF || self.clock.now_ns() < d {
            return Ok(false);
        }
        if self
            .deadline
            .compare_exchange(d, TIMER_OFF, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return Ok(false);
        }
        self.timeout_work().map(|()| true)
    }

    /// Run the timeout's work now, whatever the clock says: disarm, flush once,
    /// free the completed entries of every ring (for an owner with its own timer).
    pub fn fire_timer(&self) -> Result<()> {
        self.deadline.store(TIMER_OFF, Ordering::Release);
        self.timeout_work()
    }

    fn timeout_work(&self) -> Result<()> {
        self.flush(Reason::Timeout)?;
        self.free_all_rings();
        Ok(())
    }

    fn free_all_rings(&self) {
        for r in self.rings.iter() {
            self.ring_free_locked(&mut r.lock());
        }
    }

    /// Flush now and free every entry queued before this call (for a switch back
    /// to strict, or before tearing the domain down).
    pub fn flush_all(&self) -> Result<()> {
        self.flush(Reason::Explicit)?;
        self.free_all_rings();
        Ok(())
    }

    /// Entries waiting, over all rings.
    pub fn occupancy(&self) -> usize {
        self.rings.iter().map(|r| r.lock().entries.len()).sum()
    }

    /// Completed flushes (`finish_cnt`).
    pub fn flushes(&self) -> u64 {
        self.finish_cnt.load(Ordering::Relaxed)
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

impl<P: Send, O: FqOps<P>, S: IovaSink> Drop for FlushQueue<P, O, S> {
    /// Teardown: if anything is still queued, flush once and release it all, so
    /// that no page-table page and no IOVA is lost (Linux frees only the pages,
    /// because its IOVA domain dies with the queue; ours may outlive it). If that
    /// flush fails, the entries are dropped unreleased: leaked, never reused.
    fn drop(&mut self) {
        if self.rings.iter().any(|r| !r.lock().entries.is_empty()) {
            let _ = self.flush_all();
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
        fn flush_iotlb_all(&self) -> core::result::Result<(), Errno> {
            self.flushes.fetch_add(1, Ordering::SeqCst);
            Ok(())
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
    fn oversized_or_malformed_ring_sizes_are_refused_without_allocating() {
        let d = Arc::new(IovaDomain::builder(4096, 1).build().unwrap());
        let clock = Arc::new(VirtualClock::new(0));
        for size in [0, 1, 3, MAX_FQ_SIZE * 2, 1 << 62, usize::MAX] {
            let cfg = FqConfig {
                size,
                ..FqConfig::single()
            };
            let r =
                FlushQueue::<u32>::new(d.clone(), Arc::new(Recorder::new()), clock.clone(), cfg);
            assert!(matches!(r, Err(Error::BadConfig(_))), "size {size}");
        }
        let big = FqConfig {
            size: MAX_FQ_SIZE,
            ..FqConfig::single()
        };
        assert!(FlushQueue::<u32>::new(d, Arc::new(Recorder::new()), clock, big).is_ok());
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
        fq.flush_all().unwrap();
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
        fq.flush_all().unwrap();
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
        assert!(!fq.poll().unwrap());
        clock.advance(5_000_000 - 1);
        assert!(!fq.poll().unwrap());
        clock.advance(1);
        assert!(fq.poll().unwrap());
        assert_eq!(ops.freed.lock().len(), 2);
        assert_eq!(fq.deadline(), None);
        assert!(!fq.poll().unwrap(), "the timeout does not re-arm itself");
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
        assert!(fq.poll().unwrap());
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

    /// Fails the invalidation while `fail` is set; records every range released.
    struct Flaky {
        fail: AtomicBool,
        flushes: AtomicU64,
        released: Lock<Vec<(u64, u64)>>,
        payloads: Lock<Vec<u32>>,
    }

    impl Flaky {
        fn new() -> Self {
            Self {
                fail: AtomicBool::new(false),
                flushes: AtomicU64::new(0),
                released: Lock::new(Vec::new()),
                payloads: Lock::new(Vec::new()),
            }
        }
    }

    impl FqOps<u32> for Flaky {
        fn flush_iotlb_all(&self) -> core::result::Result<(), Errno> {
            if self.fail.load(Ordering::SeqCst) {
                return Err(Errno::EIO);
            }
            self.flushes.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn free_payload(&self, payload: u32) {
            self.payloads.lock().push(payload);
        }
    }

    impl IovaSink for Flaky {
        fn check_release(&self, pfn: u64, pages: u64) -> Result<()> {
            if pfn == 0 {
                return Err(Error::BadFastFree { pfn, size: pages });
            }
            Ok(())
        }
        fn release_range(&self, pfn: u64, pages: u64) {
            self.released.lock().push((pfn, pages));
        }
    }

    fn flaky(size: usize) -> (Arc<Flaky>, FlushQueue<u32, Arc<Flaky>, Arc<Flaky>>) {
        let f = Arc::new(Flaky::new());
        let cfg = FqConfig {
            kind: FqKind::PerCpu,
            size,
            timeout_ns: 10,
        };
        let fq = FlushQueue::with_parts(
            f.clone(),
            f.clone(),
            Arc::new(VirtualClock::new(0)),
            Arc::new(FixedCpuId { id: 0, count: 1 }),
            cfg,
        )
        .unwrap();
        (f, fq)
    }

    #[test]
    fn a_custom_sink_sees_every_release_in_order() {
        let (f, fq) = flaky(8);
        fq.queue_iova(8, 2, 1).unwrap();
        fq.queue_iova(3, 1, 2).unwrap();
        assert_eq!(
            fq.queue_iova(0, 1, 3),
            Err(Error::BadFastFree { pfn: 0, size: 1 })
        );
        assert!(f.released.lock().is_empty());
        fq.fire_timer().unwrap();
        assert_eq!(*f.released.lock(), vec![(8, 2), (3, 1)]);
        assert_eq!(*f.payloads.lock(), vec![1, 2]);
        assert!(!fq.timer_armed());
        assert_eq!((fq.flushes(), fq.stats().flushes_timeout), (1, 1));
    }

    #[test]
    fn a_failed_flush_frees_nothing() {
        let (f, fq) = flaky(4);
        fq.queue_iova(1, 1, 1).unwrap();
        f.fail.store(true, Ordering::SeqCst);
        assert_eq!(fq.flush_all(), Err(Error::Flush(Errno::EIO)));
        assert_eq!(fq.fire_timer(), Err(Error::Flush(Errno::EIO)));
        assert_eq!(fq.counters(), (0, 0), "failed flushes are taken back");
        fq.queue_iova(2, 1, 2).unwrap();
        fq.queue_iova(3, 1, 3).unwrap();
        // The ring is full: its synchronous flush fails, the entry is refused and
        // nothing queued earlier is released.
        assert_eq!(fq.queue_iova(4, 1, 4), Err(Error::Flush(Errno::EIO)));
        assert_eq!(fq.occupancy(), 3);
        assert!(f.released.lock().is_empty() && f.payloads.lock().is_empty());
        f.fail.store(false, Ordering::SeqCst);
        fq.flush_all().unwrap();
        assert_eq!(*f.released.lock(), vec![(1, 1), (2, 1), (3, 1)]);
        assert_eq!(*f.payloads.lock(), vec![1, 2, 3], "payload 4 was dropped");
        // One successful flush was enough for entries queued after the failures.
        assert_eq!((fq.counters(), fq.occupancy()), ((1, 1), 0));
    }

    #[test]
    fn an_inactive_queue_refuses_until_activated() {
        let (f, fq) = flaky(4);
        let fq = fq.into_inactive();
        assert!(!fq.is_active());
        assert_eq!(fq.queue_iova(1, 1, 1), Err(Error::FqInactive));
        assert_eq!((fq.occupancy(), fq.timer_armed()), (0, false));
        fq.activate();
        assert!(fq.is_active());
        assert_eq!(fq.counters(), (0, 0));
        fq.queue_iova(1, 1, 1).unwrap();
        assert!(fq.timer_armed());
        fq.activate(); // a no-op when active: the counters stay
        fq.flush_all().unwrap();
        assert_eq!(fq.counters(), (1, 1));
        assert_eq!(f.flushes.load(Ordering::SeqCst), 1);
        assert_eq!(*f.released.lock(), vec![(1, 1)]);
    }
}
