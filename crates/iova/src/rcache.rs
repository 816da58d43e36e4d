//! Per-CPU caches of recently freed IOVA ranges in magazines, with a depot of full
//! magazines per size order (reference: `software.md` §3.3; Peleg et al., USENIX
//! ATC 2015, after Bonwick's slab magazines).
//!
//! Each cached pfn still owns its node in the tree; the cache only saves the tree
//! walk and the tree lock. Lock order: a CPU's lock, then the depot lock, then the
//! tree lock; nothing takes them the other way round.

use crate::sync::{CachePadded, Lock};
use crate::tree::IovaTree;

/// Number of pfns one magazine holds (Linux's `IOVA_MAG_SIZE`).
pub const IOVA_MAG_SIZE: usize = 127;

/// Number of cached size orders: 0..=5, i.e. 1 to 32 granules
/// (Linux's `IOVA_RANGE_CACHE_MAX_SIZE`).
pub const IOVA_RANGE_CACHE_MAX_SIZE: usize = 6;

/// Delay of the depot-shrinking work after a magazine goes to the depot
/// (Linux's `IOVA_DEPOT_DELAY`, 100 ms), in nanoseconds.
pub const IOVA_DEPOT_DELAY_NS: u64 = 100_000_000;

/// A stack of cached pfns of one size order.
#[derive(Debug)]
pub(crate) struct Magazine {
    size: usize,
    pfns: [u64; IOVA_MAG_SIZE],
}

impl Magazine {
    pub(crate) fn new_boxed() -> Box<Self> {
        Box::new(Self {
            size: 0,
            pfns: [0; IOVA_MAG_SIZE],
        })
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.size == 0
    }

    #[inline]
    pub(crate) fn is_full(&self, capacity: usize) -> bool {
        self.size >= capacity
    }

    #[inline]
    pub(crate) fn push(&mut self, pfn: u64) {
        self.pfns[self.size] = pfn;
        self.size += 1;
    }

    /// Take a pfn whose range of `size` granules ends at or below `limit_pfn`,
    /// scanning from the top and filling the hole with the last element.
    #[inline]
    pub(crate) fn pop_fit(&mut self, size: u64, limit_pfn: u64) -> Option<u64> {
        let max_start = limit_pfn.checked_sub(size - 1)?;
        let mut i = self.size;
        while i > 0 {
            i -= 1;
            let pfn = self.pfns[i];
            if pfn <= max_start {
                self.size -= 1;
                self.pfns[i] = self.pfns[self.size];
                return Some(pfn);
            }
        }
        None
    }

    /// Hand every pfn to `tree` (freeing their nodes) and empty the magazine.
    pub(crate) fn free_to_tree(&mut self, tree: &mut IovaTree) {
        for &pfn in &self.pfns[..self.size] {
            // A cached pfn always has its node; a miss would mean a caller freed a
            // range twice, which the tree tolerates by ignoring it.
            let _ = tree.remove(pfn);
        }
        self.size = 0;
    }

    pub(crate) fn len(&self) -> usize {
        self.size
    }
}

/// One CPU's pair of magazines for one order, plus its fast-path counters.
#[derive(Debug)]
pub(crate) struct CpuRcache {
    pub(crate) loaded: Box<Magazine>,
    pub(crate) prev: Box<Magazine>,
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    pub(crate) inserts: u64,
}

/// The shared part of one order's cache.
#[derive(Debug, Default)]
pub(crate) struct Depot {
    // Boxed so a magazine moves between a CPU and the depot as a pointer, not as
    // a 1 KiB copy under the locks.
    #[allow(clippy::vec_box)]
    pub(crate) mags: Vec<Box<Magazine>>,
    /// When the shrinking work is due (Linux's delayed work); `None` = not pending.
    pub(crate) work_due: Option<u64>,
    /// Magazines pushed to the depot so far.
    pub(crate) pushes: u64,
}

/// The cache for one size order: a lock per CPU and a depot.
#[derive(Debug)]
pub(crate) struct Rcache {
    pub(crate) cpus: Box<[CachePadded<Lock<CpuRcache>>]>,
    pub(crate) depot: Lock<Depot>,
}

impl Rcache {
    pub(crate) fn new(ncpus: usize) -> Self {
        let cpus = (0..ncpus)
            .map(|_| {
                CachePadded(Lock::new(CpuRcache {
                    loaded: Magazine::new_boxed(),
                    prev: Magazine::new_boxed(),
                    hits: 0,
                    misses: 0,
                    inserts: 0,
                }))
            })
            .collect();
        Self {
            cpus,
            depot: Lock::new(Depot::default()),
        }
    }

    /// Take a cached pfn for `size` granules ending at or below `limit_pfn` from
    /// CPU `cpu`'s magazines: `loaded`, else `prev` (swapped in), else a full
    /// magazine from the depot. Only the first non-empty one is searched.
    #[inline]
    pub(crate) fn get(&self, cpu: usize, size: u64, limit_pfn: u64) -> Option<u64> {
        let mut c = self.cpus[cpu].lock();
        let c = &mut *c;
        let has = if !c.loaded.is_empty() {
            true
        } else if !c.prev.is_empty() {
            core::mem::swap(&mut c.loaded, &mut c.prev);
            true
        } else {
            let mut depot = self.depot.lock();
            match depot.mags.pop() {
                Some(full) => {
                    c.loaded = full;
                    true
                }
                None => false,
            }
        };
        let got = if has {
            c.loaded.pop_fit(size, limit_pfn)
        } else {
            None
        };
        if got.is_some() {
            c.hits += 1;
        } else {
            c.misses += 1;
        }
        got
    }

    /// Cache `pfn` on CPU `cpu`: into `loaded`, else swap with a non-full `prev`,
    /// else move `loaded` to the depot and start a new magazine. Returns whether
    /// the depot grew (so the caller arms the shrinking work).
    #[inline]
    pub(crate) fn insert(&self, cpu: usize, pfn: u64, capacity: usize) -> bool {
        let mut c = self.cpus[cpu].lock();
        let c = &mut *c;
        let mut pushed = false;
        if c.loaded.is_full(capacity) {
            if !c.prev.is_full(capacity) {
                core::mem::swap(&mut c.loaded, &mut c.prev);
            } else {
                let full = core::mem::replace(&mut c.loaded, Magazine::new_boxed());
                let mut depot = self.depot.lock();
                depot.mags.push(full);
                depot.pushes += 1;
                pushed = true;
            }
        }
        c.loaded.push(pfn);
        c.inserts += 1;
        pushed
    }

    /// Return CPU `cpu`'s cached pfns to the tree.
    pub(crate) fn flush_cpu(&self, cpu: usize, tree: &Lock<IovaTree>) {
        let mut c = self.cpus[cpu].lock();
        if c.loaded.is_empty() && c.prev.is_empty() {
            return;
        }
        let mut t = tree.lock();
        c.loaded.free_to_tree(&mut t);
        c.prev.free_to_tree(&mut t);
    }

    /// Return every depot magazine's pfns to the tree.
    pub(crate) fn flush_depot(&self, tree: &Lock<IovaTree>) {
        let mags = core::mem::take(&mut self.depot.lock().mags);
        if mags.is_empty() {
            return;
        }
        let mut t = tree.lock();
        for mut m in mags {
            m.free_to_tree(&mut t);
        }
    }

    /// One run of the depot work: free one magazine to the tree if the depot holds
    /// more than one per CPU. Returns whether one was freed (then the work re-arms).
    pub(crate) fn shrink_one(&self, tree: &Lock<IovaTree>) -> bool {
        let ncpus = self.cpus.len();
        let mag = {
            let mut d = self.depot.lock();
            if d.mags.len() > ncpus {
                d.mags.pop()
            } else {
                None
            }
        };
        match mag {
            Some(mut m) => {
                m.free_to_tree(&mut tree.lock());
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magazine_pop_scans_from_the_top_and_respects_the_limit() {
        let mut m = Magazine::new_boxed();
        for p in [10, 200, 30, 400] {
            m.push(p);
        }
        // 400 ends above 250; 30 is the highest-index fit.
        assert_eq!(m.pop_fit(1, 250), Some(30));
        assert_eq!(m.len(), 3);
        // Size counts: a 4-granule range at 200 ends at 203 > 202.
        assert_eq!(m.pop_fit(4, 202), Some(10));
        assert_eq!(m.pop_fit(4, 203), Some(200));
        assert_eq!(m.pop_fit(1, 399), None);
        assert_eq!(m.pop_fit(1, 400), Some(400));
        assert!(m.is_empty());
        assert_eq!(m.pop_fit(1, u64::MAX), None);
    }

    #[test]
    fn insert_swaps_then_spills_to_the_depot() {
        let r = Rcache::new(1);
        // Capacity 2: two fill loaded, the third swaps to the empty prev, the fifth
        // finds both full and pushes loaded to the depot.
        let pushed: Vec<bool> = (1..=5).map(|p| r.insert(0, p, 2)).collect();
        assert_eq!(pushed, vec![false, false, false, false, true]);
        assert_eq!(r.depot.lock().mags.len(), 1);
        {
            let c = r.cpus[0].lock();
            assert_eq!((c.loaded.len(), c.prev.len()), (1, 2));
        }
        // Gets drain loaded, then prev, then the depot: 5, (prev) 2, 1, (depot) 4, 3.
        let got: Vec<_> = (0..5).map(|_| r.get(0, 1, u64::MAX).unwrap()).collect();
        assert_eq!(got, vec![5, 2, 1, 4, 3]);
        assert_eq!(r.get(0, 1, u64::MAX), None);
        let c = r.cpus[0].lock();
        assert_eq!((c.hits, c.misses), (5, 1));
    }
}
