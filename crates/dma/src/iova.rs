//! A simple top-down, size-aligned IOVA allocator (reference `software.md` §3.2)
//! for any granule, including granules larger than the CPU page that Linux's
//! allocator refuses, with a small LIFO cache of freed ranges per size (the role
//! of Linux's rcache, §3.3, without the per-CPU split). It stands in for
//! `iommu-iova` behind [`IovaAllocator`].

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::ops::IovaAllocator;

/// A mutex-protected map of allocated pfn ranges; allocation walks down from the
/// limit and takes the highest size-aligned gap (like Linux's `alloc_iova`).
#[derive(Debug)]
pub struct SimpleIova {
    start_pfn: u64,
    inner: Mutex<Inner>,
}

/// Ranges freed into the cache stay in `ranges` (as Linux's rcache keeps them in
/// the tree) until the cache overflows.
#[derive(Debug, Default)]
struct Inner {
    ranges: BTreeMap<u64, u64>,
    cache: BTreeMap<u64, Vec<u64>>,
    cached: usize,
}

/// Cached ranges per size.
const CACHE_PER_SIZE: usize = 128;

impl SimpleIova {
    /// An allocator whose lowest usable pfn is `start_pfn` (at least 1: pfn 0 is
    /// never handed out).
    pub fn new(start_pfn: u64) -> Self {
        Self {
            start_pfn: start_pfn.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of live (allocated, not freed) ranges.
    pub fn live(&self) -> usize {
        let g = self.lock();
        g.ranges.len() - g.cached
    }

    /// Whether any live range overlaps `[pfn, pfn + pages)`.
    pub fn overlaps(&self, pfn: u64, pages: u64) -> bool {
        let g = self.lock();
        g.ranges
            .range(..pfn + pages)
            .next_back()
            .is_some_and(|(&s, &l)| s + l > pfn && !g.cache.get(&l).is_some_and(|v| v.contains(&s)))
    }
}

impl IovaAllocator for SimpleIova {
    fn alloc(&self, pages: u64, limit_pfn: u64, _flush_rcache: bool) -> Option<u64> {
        if pages == 0 {
            return None;
        }
        let align = pages.checked_next_power_of_two()?;
        let fit = |lo: u64, hi: u64| -> Option<u64> {
            let c = hi.checked_sub(pages)? & !(align - 1);
            (c >= lo).then_some(c)
        };
        let mut g = self.lock();
        let inner = &mut *g;
        if let Some(v) = inner.cache.get_mut(&pages) {
            if let Some(i) = v.iter().rposition(|&p| p + pages - 1 <= limit_pfn) {
                inner.cached -= 1;
                return Some(v.swap_remove(i));
            }
        }
        let mut high = limit_pfn.checked_add(1)?;
        let mut found = None;
        for (&s, &l) in inner.ranges.range(..high).rev() {
            let e = s + l;
            if e < high {
                if let Some(c) = fit(e.max(self.start_pfn), high) {
                    found = Some(c);
                    break;
                }
            }
            high = high.min(s);
            if high <= self.start_pfn {
                break;
            }
        }
        let pfn = match found {
            Some(c) => c,
            None => fit(self.start_pfn, high)?,
        };
        inner.ranges.insert(pfn, pages);
        Some(pfn)
    }

    fn free(&self, pfn: u64, pages: u64) {
        let mut g = self.lock();
        let inner = &mut *g;
        if inner.ranges.get(&pfn) != Some(&pages) {
            return;
        }
        let v = inner.cache.entry(pages).or_default();
        if v.contains(&pfn) {
            return; // double free: ignore
        }
        if v.len() < CACHE_PER_SIZE {
            v.push(pfn);
            inner.cached += 1;
        } else {
            inner.ranges.remove(&pfn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_down_size_aligned_under_the_limit() {
        let a = SimpleIova::new(1);
        assert_eq!(a.alloc(1, 0xff, false), Some(0xff));
        assert_eq!(a.alloc(3, 0xff, false), Some(0xfc), "3 pages aligned to 4");
        assert_eq!(a.alloc(4, 0xff, false), Some(0xf8));
        assert!(a.overlaps(0xfd, 1));
        a.free(0xfc, 3);
        assert!(!a.overlaps(0xfd, 1));
        assert_eq!(a.live(), 2);
        assert_eq!(a.alloc(3, 0xff, false), Some(0xfc), "reused from the cache");
        assert_eq!(
            a.alloc(3, 0xfc, false),
            Some(0xf4),
            "cached range above the limit is skipped"
        );
        assert_eq!(a.alloc(0x100, 0xff, false), None);
        assert_eq!(
            a.alloc(0x80, 0xff, false),
            None,
            "aligned 0x80 block overlaps live ranges"
        );
        assert_eq!(a.alloc(0x40, 0xff, false), Some(0x80));
    }

    #[test]
    fn cache_overflow_returns_ranges_to_the_tree() {
        let a = SimpleIova::new(1);
        let pfns: Vec<u64> = (0..CACHE_PER_SIZE + 10)
            .map(|_| a.alloc(1, 0xffff, false).unwrap())
            .collect();
        for &p in &pfns {
            a.free(p, 1);
        }
        a.free(pfns[0], 1); // double free ignored
        assert_eq!(a.live(), 0);
        let g = a.lock();
        assert_eq!(g.ranges.len(), CACHE_PER_SIZE);
        assert_eq!(g.cached, CACHE_PER_SIZE);
    }

    #[test]
    fn never_hands_out_pfn_zero_and_exhausts_cleanly() {
        let a = SimpleIova::new(0);
        let mut got = Vec::new();
        while let Some(p) = a.alloc(1, 7, false) {
            got.push(p);
        }
        got.sort();
        assert_eq!(got, (1..=7).collect::<Vec<_>>());
        assert_eq!(a.live(), 7);
    }
}
