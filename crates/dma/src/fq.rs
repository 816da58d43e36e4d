//! Flush queues for lazy (DMA-FQ) unmapping (reference `software.md` §2).
//!
//! Unmapped IOVAs (and table pages freed by the unmap) wait in a per-CPU ring with
//! the value of the flush *start* counter they saw; a flush increments the start
//! counter, invalidates the whole domain, then increments the *finish* counter. An
//! entry may be freed once `counter < finish`: at least one complete invalidation
//! started after it was queued.

use std::collections::VecDeque;

use io_pgtable::FreedTable;

use crate::error::{Error, Result};
use crate::ops::{DmaDomain, IovaAllocator};
use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, Mutex, Ordering, fence, lock};

/// Entries per CPU ring (Linux `IOVA_DEFAULT_FQ_SIZE`).
pub const FQ_DEFAULT_SIZE: usize = 256;
/// Timeout after which a queued entry is flushed (Linux `IOVA_DEFAULT_FQ_TIMEOUT`),
/// in nanoseconds. There is no timer thread: queueing arms a deadline on the
/// cookie's clock and whoever drives time calls `DmaCookie::poll_flush_queue`.
pub const FQ_DEFAULT_TIMEOUT_NS: u64 = 10_000_000;

/// `deadline` value meaning "timer not armed".
const TIMER_OFF: u64 = u64::MAX;

/// An unmapped IOVA range (in pfns) and the table pages its unmap removed.
#[derive(Debug)]
pub(crate) struct Unmapped {
    pub(crate) pfn: u64,
    pub(crate) pages: u64,
    pub(crate) freelist: Vec<FreedTable>,
}

#[derive(Debug)]
struct Entry {
    pfn: u64,
    pages: u64,
    freelist: Vec<FreedTable>,
    counter: u64,
}

/// Per-CPU rings of IOVAs waiting for a domain-wide invalidation.
///
/// Created empty with the cookie; [`FlushQueue::init`] sizes it before the lazy
/// flag is published, so a user that observed the flag (Acquire) sees a ready queue.
#[derive(Debug)]
pub struct FlushQueue {
    rings: Vec<Mutex<VecDeque<Entry>>>,
    size: AtomicUsize,
    start_cnt: AtomicU64,
    finish_cnt: AtomicU64,
    timer_on: AtomicBool,
    deadline: AtomicU64,
}

impl FlushQueue {
    /// An uninitialised queue with one ring per CPU.
    pub(crate) fn new(cpus: usize) -> Self {
        Self {
            rings: (0..cpus.max(1))
                .map(|_| Mutex::new(VecDeque::new()))
                .collect(),
            size: AtomicUsize::new(0),
            start_cnt: AtomicU64::new(0),
            finish_cnt: AtomicU64::new(0),
            timer_on: AtomicBool::new(false),
            deadline: AtomicU64::new(TIMER_OFF),
        }
    }

    /// Reset the counters and size the rings (`iommu_dma_init_fq` steps 2-4). The
    /// stores are Relaxed: the Release store of the lazy flag publishes them.
    pub(crate) fn init(&self, size: usize) {
        self.start_cnt.store(0, Ordering::Relaxed);
        self.finish_cnt.store(0, Ordering::Relaxed);
        self.size.store(size.max(1), Ordering::Relaxed);
    }

    /// Whether a timer flush is pending (an entry was queued since the last one).
    pub fn timer_armed(&self) -> bool {
        self.timer_on.load(Ordering::Relaxed)
    }

    /// When the armed timer expires (ns on the cookie's clock), if armed with a clock.
    pub fn deadline(&self) -> Option<u64> {
        let d = self.deadline.load(Ordering::Relaxed);
        (d != TIMER_OFF).then_some(d)
    }

    /// Entries waiting on all rings.
    pub fn pending(&self) -> usize {
        self.rings.iter().map(|r| lock(r).len()).sum()
    }

    /// Completed flushes.
    pub fn flushes(&self) -> u64 {
        self.finish_cnt.load(Ordering::Relaxed)
    }

    /// Invalidate the whole domain between the two counter increments. A failed
    /// invalidation does not advance `finish`, so nothing is freed on its account.
    pub(crate) fn flush<D: DmaDomain>(&self, domain: &D) -> Result<()> {
        self.start_cnt.fetch_add(1, Ordering::SeqCst);
        domain.flush_iotlb_all().map_err(Error::Domain)?;
        self.finish_cnt.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn free_completed<D: DmaDomain, A: IovaAllocator>(
        &self,
        ring: &mut VecDeque<Entry>,
        domain: &D,
        iova: &A,
    ) {
        let finish = self.finish_cnt.load(Ordering::SeqCst);
        while ring.front().is_some_and(|e| e.counter < finish) {
            if let Some(e) = ring.pop_front() {
                if !e.freelist.is_empty() {
                    domain.free_tables(e.freelist);
                }
                iova.free(e.pfn, e.pages);
            }
        }
    }

    /// Queue an unmapped range (`queue_iova`): full barrier (orders the caller's
    /// table clears before the counter sample), free what has completed, flush
    /// synchronously if the ring is still full, append, arm the timer.
    pub(crate) fn queue<D: DmaDomain, A: IovaAllocator>(
        &self,
        cpu: usize,
        range: Unmapped,
        domain: &D,
        iova: &A,
        now_ns: Option<u64>,
    ) -> Result<()> {
        let Unmapped {
            pfn,
            pages,
            freelist,
        } = range;
        fence(Ordering::SeqCst);
        let size = self.size.load(Ordering::Relaxed);
        if size == 0 {
            // Only reachable if the flag was published before `init` (the bug
            // §1.4 warns about); refuse rather than lose the range silently.
            return Err(Error::Invalid("flush queue used before it was initialised"));
        }
        let ring = &self.rings[cpu % self.rings.len()];
        {
            let mut r = lock(ring);
            self.free_completed(&mut r, domain, iova);
            if r.len() >= size {
                self.flush(domain)?;
                self.free_completed(&mut r, domain, iova);
            }
            let counter = self.start_cnt.load(Ordering::SeqCst);
            r.push_back(Entry {
                pfn,
                pages,
                freelist,
                counter,
            });
        }
        // Arm the timer once: only the CPU whose exchange sets the flag does.
        if !self.timer_on.load(Ordering::Relaxed) && !self.timer_on.swap(true, Ordering::AcqRel) {
            if let Some(now) = now_ns {
                self.deadline
                    .store(now.saturating_add(FQ_DEFAULT_TIMEOUT_NS), Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// The timer's work: clear the armed flag, flush once, free completed entries
    /// on every ring.
    pub(crate) fn timer<D: DmaDomain, A: IovaAllocator>(&self, domain: &D, iova: &A) -> Result<()> {
        self.timer_on.store(false, Ordering::Relaxed);
        self.deadline.store(TIMER_OFF, Ordering::Relaxed);
        self.flush(domain)?;
        for ring in &self.rings {
            let mut r = lock(ring);
            self.free_completed(&mut r, domain, iova);
        }
        Ok(())
    }
}
