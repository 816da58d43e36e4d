//! The address-ordered set of allocated and reserved IOVA ranges, with Linux's
//! top-down, cached-node allocation (reference: `software.md` §3.1, §3.2).
//!
//! Linux keeps `struct iova` nodes in an rbtree; here a sorted two-level array
//! from `pfn_lo` to `pfn_hi` ([`RangeMap`]) plays that role. The "cached nodes" are kept as keys of that map, and an
//! anchor entry at pfn `u64::MAX` plays the part of Linux's sentinel so that every
//! walk has a node to start from. This structure is not thread-safe on its own; the
//! domain wraps it in a lock.

use crate::error::{Error, Result};
use crate::rangemap::{Pos, RangeMap};

/// The sentinel node's pfn: never allocated, always present.
pub(crate) const ANCHOR_PFN: u64 = u64::MAX;

/// One allocated or reserved IOVA range, in granules, both ends inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IovaRange {
    /// First pfn of the range.
    pub pfn_lo: u64,
    /// Last pfn of the range (inclusive).
    pub pfn_hi: u64,
}

impl IovaRange {
    /// Number of granules in the range.
    pub const fn size(&self) -> u64 {
        self.pfn_hi - self.pfn_lo + 1
    }

    /// Whether `pfn` lies inside the range.
    pub const fn contains(&self, pfn: u64) -> bool {
        self.pfn_lo <= pfn && pfn <= self.pfn_hi
    }
}

/// Counters kept under the tree lock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TreeCounters {
    pub(crate) allocs: u64,
    pub(crate) frees: u64,
    pub(crate) failures: u64,
    pub(crate) fast_fails: u64,
}

/// `fls_long(x)`: the 1-based index of the highest set bit, 0 for 0.
#[inline]
pub(crate) const fn fls(x: u64) -> u32 {
    64 - x.leading_zeros()
}

/// The allocator's tree and the state Linux keeps beside it in `struct iova_domain`.
#[derive(Debug)]
pub(crate) struct IovaTree {
    /// `pfn_lo -> pfn_hi` of every node, anchor included.
    nodes: RangeMap,
    /// Key of `cached_node` (allocations with a limit above 4 GiB start here).
    cached: u64,
    /// Key of `cached32_node` (allocations with a limit at or below 4 GiB start here).
    cached32: u64,
    start_pfn: u64,
    dma_32bit_pfn: u64,
    /// Sizes at least this large fail at once for 32-bit limits (a previous failure).
    max32_alloc_size: u64,
    pub(crate) counters: TreeCounters,
    /// Recently learnt `(pfn_lo, position)` pairs (the last inserted node, the
    /// node after the last freed one): checked before searching, so the usual
    /// alloc/free pattern near the cached nodes skips the lookups.
    recent: [(u64, Pos); 2],
}

impl IovaTree {
    /// An empty tree for pfns from `start_pfn`, with the 4 GiB boundary at
    /// `dma_32bit_pfn` (exclusive).
    pub(crate) fn new(start_pfn: u64, dma_32bit_pfn: u64) -> Self {
        let mut nodes = RangeMap::new();
        nodes.insert(ANCHOR_PFN, ANCHOR_PFN);
        Self {
            nodes,
            cached: ANCHOR_PFN,
            cached32: ANCHOR_PFN,
            start_pfn,
            dma_32bit_pfn,
            max32_alloc_size: dma_32bit_pfn,
            counters: TreeCounters::default(),
            recent: [(ANCHOR_PFN, Pos::default()); 2],
        }
    }

    /// Number of ranges in the tree (the anchor not counted).
    pub(crate) fn len(&self) -> usize {
        self.nodes.len() - 1
    }

    /// Every range in address order.
    pub(crate) fn ranges(&self) -> impl Iterator<Item = IovaRange> + '_ {
        self.nodes
            .iter()
            .filter(|&(lo, _)| lo != ANCHOR_PFN)
            .map(|(pfn_lo, pfn_hi)| IovaRange { pfn_lo, pfn_hi })
    }

    /// The current `max32_alloc_size` (for tests and statistics).
    pub(crate) fn max32_alloc_size(&self) -> u64 {
        self.max32_alloc_size
    }

    /// Walk down from the node keyed `start` looking for a gap of `size` under
    /// `*high` and at or above `low`; returns the candidate pfn and the `pfn_hi` of
    /// the start node (Linux's do/while loop over `rb_prev`).
    #[inline]
    fn walk(
        &self,
        start: u64,
        high: &mut u64,
        low: u64,
        size: u64,
        align_mask: u64,
    ) -> (u64, u64, Option<Pos>) {
        let hint = self.recent.iter().find(|r| r.0 == start).map(|r| r.1);
        self.nodes
            .walk_down(start, hint, high, low, size, align_mask)
    }

    /// Position of the node keyed exactly `pfn_lo`, from the recent hints.
    #[inline]
    fn recent_pos(&self, pfn_lo: u64) -> Option<Pos> {
        self.recent
            .iter()
            .find(|r| r.0 == pfn_lo && self.nodes.is_at(r.1, pfn_lo))
            .map(|r| r.1)
    }

    /// The node a retry starts from: the anchor for limits above 4 GiB, otherwise
    /// the lowest node starting at or above the (exclusive) limit.
    fn find_limit(&self, limit: u64) -> u64 {
        if limit > self.dma_32bit_pfn {
            return ANCHOR_PFN;
        }
        self.nodes
            .succ_or_eq(limit)
            .map_or(ANCHOR_PFN, |p| self.nodes.entry(p).0)
    }

    /// Allocate `size` granules ending at or below `limit_pfn` (inclusive), top-down;
    /// with `size_aligned` the start is aligned to the next power of two ≥ `size`.
    pub(crate) fn alloc(&mut self, size: u64, limit_pfn: u64, size_aligned: bool) -> Option<u64> {
        debug_assert!(size > 0);
        // Exclusive limit, kept below the anchor.
        let limit = limit_pfn.min(ANCHOR_PFN - 1) + 1;
        let align_mask = if size_aligned {
            (!0u64).checked_shl(fls(size - 1)).unwrap_or(0)
        } else {
            !0u64
        };
        if limit <= self.dma_32bit_pfn && size >= self.max32_alloc_size {
            self.counters.fast_fails += 1;
            self.counters.failures += 1;
            return None;
        }
        let start = if limit <= self.dma_32bit_pfn {
            self.cached32
        } else {
            self.cached
        };
        let mut high = limit;
        let mut low = self.start_pfn;
        let (mut new_pfn, retry_pfn, mut at) = self.walk(start, &mut high, low, size, align_mask);
        if high < size || new_pfn < low {
            // Retry once over the part above where the first walk started.
            if retry_pfn < limit {
                high = limit;
                low = retry_pfn + 1;
                let from = self.find_limit(limit);
                (new_pfn, _, at) = self.walk(from, &mut high, low, size, align_mask);
            }
            if high < size || new_pfn < low {
                self.max32_alloc_size = size;
                self.counters.failures += 1;
                return None;
            }
        }
        let pfn_hi = new_pfn + size - 1;
        match at {
            Some(at) => {
                self.nodes.insert_below(at, new_pfn, pfn_hi);
                self.recent[0] = (new_pfn, RangeMap::below(at));
            }
            None => self.nodes.insert(new_pfn, pfn_hi),
        }
        if pfn_hi < self.dma_32bit_pfn {
            self.cached32 = new_pfn;
        } else {
            self.cached = new_pfn;
        }
        self.counters.allocs += 1;
        Some(new_pfn)
    }

    /// The range containing `pfn`, if any.
    pub(crate) fn find(&self, pfn: u64) -> Option<IovaRange> {
        let (pfn_lo, pfn_hi) = self.nodes.entry(self.nodes.pred_or_eq(pfn)?);
        (pfn_lo != ANCHOR_PFN && pfn_hi >= pfn).then_some(IovaRange { pfn_lo, pfn_hi })
    }

    /// Remove the range containing `pfn` and return it.
    #[inline]
    pub(crate) fn remove(&mut self, pfn: u64) -> Option<IovaRange> {
        let p = match self.recent_pos(pfn) {
            Some(p) => p,
            None => self.nodes.pred_or_eq(pfn)?,
        };
        let (pfn_lo, pfn_hi) = self.nodes.entry(p);
        if pfn_lo == ANCHOR_PFN || pfn_hi < pfn {
            return None;
        }
        let r = IovaRange { pfn_lo, pfn_hi };
        let next_pos = self.nodes.next(p);
        let next = next_pos.map_or(ANCHOR_PFN, |q| self.nodes.entry(q).0);
        if let Some(q) = next_pos {
            // Removing `p` does not move its address-successor (stored before it).
            self.recent[1] = (next, q);
        }
        // Move the cached nodes past the freed one as Linux does.
        if r.pfn_lo == self.cached32 || (r.pfn_hi < self.dma_32bit_pfn && r.pfn_lo >= self.cached32)
        {
            self.cached32 = next;
        }
        if r.pfn_lo >= self.cached {
            self.cached = next;
        }
        if r.pfn_lo < self.dma_32bit_pfn {
            self.max32_alloc_size = self.dma_32bit_pfn;
        }
        self.nodes.remove_at(p);
        self.counters.frees += 1;
        Some(r)
    }

    /// Re-key a node to start lower (reserve merging), keeping the cached keys valid.
    fn extend_down(&mut self, old_lo: u64, new_lo: u64) {
        if let Some(hi) = self.nodes.remove(old_lo) {
            self.nodes.insert(new_lo, hi);
            if self.cached == old_lo {
                self.cached = new_lo;
            }
            if self.cached32 == old_lo {
                self.cached32 = new_lo;
            }
        }
    }

    /// Mark `pfn_lo..=pfn_hi` as not allocatable. Ranges that overlap existing
    /// nodes merge with them the way Linux's `reserve_iova` does: the first
    /// overlapping node grows down to cover the request's start, and whatever is
    /// left above the last overlapping node becomes a new node. Returns the node
    /// covering the top of the request. `max_pfn` is the highest pfn the domain can
    /// represent.
    pub(crate) fn reserve(&mut self, pfn_lo: u64, pfn_hi: u64, max_pfn: u64) -> Result<IovaRange> {
        if pfn_lo > pfn_hi || pfn_hi > max_pfn || pfn_hi == ANCHOR_PFN {
            return Err(Error::BadRange {
                lo: pfn_lo,
                hi: pfn_hi,
            });
        }
        let mut overlapping: Vec<(u64, u64)> = Vec::new();
        let mut pos = match self.nodes.pred_or_eq(pfn_lo) {
            Some(p) => {
                let (lo, hi) = self.nodes.entry(p);
                if hi >= pfn_lo && lo != ANCHOR_PFN {
                    overlapping.push((lo, hi));
                }
                self.nodes.next(p)
            }
            None => self.nodes.succ_or_eq(pfn_lo),
        };
        while let Some(p) = pos {
            let (lo, hi) = self.nodes.entry(p);
            if lo > pfn_hi || lo == ANCHOR_PFN {
                break;
            }
            overlapping.push((lo, hi));
            pos = self.nodes.next(p);
        }
        let mut lo = pfn_lo;
        for (node_lo, node_hi) in overlapping {
            let mut node_lo = node_lo;
            if lo < node_lo {
                self.extend_down(node_lo, lo);
                node_lo = lo;
            }
            if pfn_hi > node_hi {
                lo = node_hi + 1;
            } else {
                return Ok(IovaRange {
                    pfn_lo: node_lo,
                    pfn_hi: node_hi,
                });
            }
        }
        self.nodes.insert(lo, pfn_hi);
        Ok(IovaRange { pfn_lo: lo, pfn_hi })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> IovaTree {
        // 4 KiB granule: the 32-bit boundary is pfn 1 << 20.
        IovaTree::new(1, 1 << 20)
    }

    #[test]
    fn allocates_top_down_under_the_limit() {
        let mut t = tree();
        assert_eq!(t.alloc(1, 0xff, true), Some(0xff));
        assert_eq!(t.alloc(1, 0xff, true), Some(0xfe));
        assert_eq!(t.alloc(4, 0xff, true), Some(0xf8));
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn size_alignment_is_the_next_power_of_two() {
        let mut t = tree();
        // 5 granules align to 8: highest start with start + 5 <= 0x100 aligned to 8.
        assert_eq!(t.alloc(5, 0xff, true), Some(0xf8));
        // Unaligned: packed right under the previous one.
        assert_eq!(t.alloc(3, 0xff, false), Some(0xf5));
    }

    #[test]
    fn respects_start_pfn_and_fails_cleanly() {
        let mut t = IovaTree::new(0x10, 1 << 20);
        assert_eq!(t.alloc(0x10, 0x1f, true), Some(0x10));
        assert_eq!(t.alloc(1, 0x1f, true), None);
        assert_eq!(t.counters.failures, 1);
        // The limit below start_pfn can never be satisfied.
        assert_eq!(t.alloc(1, 0x5, false), None);
    }

    #[test]
    fn max32_fast_fail_and_reset_on_free() {
        let mut t = IovaTree::new(1, 16);
        // Fill 1..=15 completely.
        let mut got = Vec::new();
        while let Some(p) = t.alloc(1, 15, true) {
            got.push(p);
        }
        assert_eq!(got.len(), 15);
        assert_eq!(t.max32_alloc_size(), 1);
        let fails = t.counters.fast_fails;
        assert_eq!(t.alloc(1, 15, true), None);
        assert_eq!(t.counters.fast_fails, fails + 1);
        assert!(t.remove(7).is_some());
        assert_eq!(t.max32_alloc_size(), 16);
        assert_eq!(t.alloc(1, 15, true), Some(7));
    }

    #[test]
    fn retry_from_the_top_finds_space_above_the_cached_node() {
        let mut t = tree();
        let a = t.alloc(1, 0xff, false).unwrap();
        let b = t.alloc(1, 0xff, false).unwrap();
        let c = t.alloc(1, 0xff, false).unwrap();
        assert_eq!((a, b, c), (0xff, 0xfe, 0xfd));
        // Free the top one: the cached node moves above it, so the next walk starts
        // from the top again.
        t.remove(a).unwrap();
        assert_eq!(t.alloc(1, 0xff, false), Some(0xff));
        // Now fill the bottom so the walk below the cached node fails, and free a
        // hole above it: only the retry can find it.
        let mut t = IovaTree::new(0xfa, 1 << 20);
        for want in [0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0xfa] {
            assert_eq!(t.alloc(1, 0xff, false), Some(want));
        }
        // Freeing 0xfe leaves the cached node at 0xfa (free is above it → moves to
        // next of 0xfe, i.e. 0xff). Allocate with the cached node pointing low.
        t.remove(0xfe).unwrap();
        assert_eq!(t.alloc(1, 0xff, false), Some(0xfe));
        assert_eq!(t.alloc(1, 0xff, false), None);
    }

    #[test]
    fn retry_path_covers_the_region_above_a_low_cached_node() {
        // Limits above the 32-bit boundary (pfn 1 here) use `cached`. Fill 1..=50
        // under a limit of 50: the cached node ends at pfn 1.
        let mut t = IovaTree::new(1, 1);
        for want in (1..=50).rev() {
            assert_eq!(t.alloc(1, 50, false), Some(want));
        }
        assert_eq!(t.cached, 1);
        // A higher limit: the walk down from the cached node finds nothing, the retry
        // from the top finds the gap right under the limit.
        assert_eq!(t.alloc(1, 100, false), Some(100));
        assert_eq!(t.alloc(2, 100, true), Some(98));
    }

    #[test]
    fn find_and_remove_by_containment() {
        let mut t = tree();
        let p = t.alloc(8, 0xfff, true).unwrap();
        assert_eq!(
            t.find(p + 3),
            Some(IovaRange {
                pfn_lo: p,
                pfn_hi: p + 7
            })
        );
        assert_eq!(t.find(p + 8), None);
        assert_eq!(t.remove(p + 5).map(|r| r.size()), Some(8));
        assert_eq!(t.remove(p), None);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn reserve_merges_overlaps_like_linux() {
        let mut t = tree();
        t.reserve(10, 20, u64::MAX >> 12).unwrap();
        t.reserve(30, 40, u64::MAX >> 12).unwrap();
        // Fully inside an existing node: nothing new.
        assert_eq!(
            t.reserve(12, 15, u64::MAX >> 12),
            Ok(IovaRange {
                pfn_lo: 10,
                pfn_hi: 20
            })
        );
        assert_eq!(t.len(), 2);
        // Spanning both and beyond: each overlapping node grows down to where the
        // request is still uncovered (the first to 5, the second over the gap
        // 21..=29) and the tail 41..=50 becomes a new node.
        t.reserve(5, 50, u64::MAX >> 12).unwrap();
        let ranges: Vec<_> = t.ranges().map(|r| (r.pfn_lo, r.pfn_hi)).collect();
        assert_eq!(ranges, vec![(5, 20), (21, 40), (41, 50)]);
        // Nothing from 5..=50 is ever handed out.
        let mut t2 = t;
        while let Some(p) = t2.alloc(1, 60, false) {
            assert!(!(5..=50).contains(&p));
        }
        assert!(t2.reserve(9, 3, 100).is_err());
        assert!(t2.reserve(1, 101, 100).is_err());
    }

    #[test]
    fn reserve_updates_cached_keys_when_rekeying() {
        let mut t = tree();
        let p = t.alloc(4, 0xff, true).unwrap(); // 0xfc..=0xff, cached32 = 0xfc
        t.reserve(0xf0, 0xfd, u64::MAX >> 12).unwrap();
        assert_eq!(
            t.find(0xf0),
            Some(IovaRange {
                pfn_lo: 0xf0,
                pfn_hi: 0xff
            })
        );
        assert_eq!(t.cached32, 0xf0);
        // Allocation still works and stays below.
        assert_eq!(t.alloc(1, 0xff, true), Some(0xef));
        assert!(t.remove(p).is_some());
    }
}
