//! A sorted map from `pfn_lo` to `pfn_hi` tuned for the allocator's access
//! pattern: a two-level array (sorted chunks of at most [`CHUNK`] entries plus an
//! index of each chunk's first key). Lookups are two binary searches (usually one,
//! thanks to a hint), neighbours are an index step, and inserts or removes move at
//! most one chunk's tail. Entries are stored in *descending* address order (the
//! stored key is `!pfn_lo`), so the allocator's top-down pattern, which inserts and
//! frees just below the lowest recent range, works at the end of a chunk and moves
//! nothing. No `unsafe` (the workspace forbids it).

/// Most entries a chunk holds before it splits in two.
const CHUNK: usize = 16;

/// Where an entry sits: (chunk, index in chunk). Valid until the next change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Pos {
    chunk: usize,
    idx: usize,
}

/// The map. Never empty once the tree has inserted its anchor.
#[derive(Debug, Default)]
pub(crate) struct RangeMap {
    /// First key of each chunk.
    firsts: Vec<u64>,
    /// Sorted `(pfn_lo, pfn_hi)` entries, each chunk non-empty.
    chunks: Vec<Vec<(u64, u64)>>,
    len: usize,
    /// The chunk the last lookup landed in: allocation and freeing stay near the
    /// cached nodes, so this usually saves the binary search over `firsts`.
    hint: core::cell::Cell<usize>,
}

impl RangeMap {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Whether the entry at `p` (possibly a stale position) has key `key`.
    #[inline]
    pub(crate) fn is_at(&self, p: Pos, key: u64) -> bool {
        self.chunks
            .get(p.chunk)
            .and_then(|c| c.get(p.idx))
            .is_some_and(|e| e.0 == !key)
    }

    /// Position of the entry right below `at` after [`insert_below`](Self::insert_below)
    /// (a hint: it is wrong if the insert split the chunk, which `is_at` detects).
    #[inline]
    pub(crate) fn below(at: Pos) -> Pos {
        Pos {
            chunk: at.chunk,
            idx: at.idx + 1,
        }
    }

    /// `(pfn_lo, pfn_hi)` at `p`.
    #[inline]
    pub(crate) fn entry(&self, p: Pos) -> (u64, u64) {
        let (k, v) = self.raw_entry(p);
        (!k, v)
    }

    /// The last entry with `pfn_lo <= key`.
    #[inline]
    pub(crate) fn pred_or_eq(&self, key: u64) -> Option<Pos> {
        self.raw_succ_or_eq(!key)
    }

    /// The first entry with `pfn_lo >= key`.
    #[inline]
    pub(crate) fn succ_or_eq(&self, key: u64) -> Option<Pos> {
        self.raw_pred_or_eq(!key)
    }

    /// The entry before `p` in address order.
    #[cfg(test)]
    pub(crate) fn prev(&self, p: Pos) -> Option<Pos> {
        self.raw_next(p)
    }

    /// The entry after `p` in address order.
    #[inline]
    pub(crate) fn next(&self, p: Pos) -> Option<Pos> {
        self.raw_prev(p)
    }

    /// Insert or replace `key -> value`.
    #[inline]
    pub(crate) fn insert(&mut self, key: u64, value: u64) {
        self.raw_insert(!key, value);
    }

    /// Remove `key`, returning its value.
    #[inline]
    pub(crate) fn remove(&mut self, key: u64) -> Option<u64> {
        self.raw_remove(!key)
    }

    /// Remove the entry at `p`, returning its value.
    #[inline]
    pub(crate) fn remove_at(&mut self, p: Pos) -> u64 {
        self.raw_remove_at(p)
    }

    /// Linux's allocation walk over this map: starting at the entry keyed
    /// `start` (or the one below it) and going down, lower `*high` to each
    /// entry's `pfn_lo` and take the candidate `(*high - size) & align_mask`;
    /// step to the next lower entry while the candidate collides with it and is
    /// still `>= low`. Returns the last candidate, the start entry's `pfn_hi`
    /// (`u64::MAX` if there is no start entry) and the position of the entry the
    /// candidate sits right below (for [`insert_below`](Self::insert_below)).
    /// Iterates the chunk slices directly: this is the allocator's innermost loop.
    #[inline]
    pub(crate) fn walk_down(
        &self,
        start: u64,
        hint: Option<Pos>,
        high: &mut u64,
        low: u64,
        size: u64,
        align_mask: u64,
    ) -> (u64, u64, Option<Pos>) {
        let found = match hint {
            Some(h) if self.is_at(h, start) => Some(h),
            _ => self.pred_or_eq(start),
        };
        let Some(p) = found else {
            return (high.wrapping_sub(size) & align_mask, u64::MAX, None);
        };
        let (mut curr_lo, start_hi) = self.entry(p);
        let mut curr = p;
        let mut from = p.idx + 1;
        for (ci, chunk) in self.chunks[p.chunk..].iter().enumerate() {
            for (i, &(k, hi)) in chunk.get(from..).unwrap_or(&[]).iter().enumerate() {
                *high = (*high).min(curr_lo);
                let new_pfn = high.wrapping_sub(size) & align_mask;
                if new_pfn <= hi && new_pfn >= low {
                    curr_lo = !k;
                    curr = Pos {
                        chunk: p.chunk + ci,
                        idx: from + i,
                    };
                } else {
                    return (new_pfn, start_hi, Some(curr));
                }
            }
            from = 0;
        }
        *high = (*high).min(curr_lo);
        (high.wrapping_sub(size) & align_mask, start_hi, Some(curr))
    }

    /// Insert `key -> value` right below the entry at `at` in address order;
    /// `key` must lie between that entry's key and the next lower one (as the
    /// walk guarantees). Saves the lookup of [`insert`](Self::insert).
    #[inline]
    pub(crate) fn insert_below(&mut self, at: Pos, key: u64, value: u64) {
        debug_assert!(
            key < self.entry(at).0 && self.raw_next(at).is_none_or(|q| self.entry(q).1 < key)
        );
        let c = &mut self.chunks[at.chunk];
        c.insert(at.idx + 1, (!key, value));
        self.len += 1;
        self.split_if_full(at.chunk);
    }

    /// Every entry in address order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.chunks
            .iter()
            .rev()
            .flat_map(|c| c.iter().rev())
            .map(|&(k, v)| (!k, v))
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn raw_entry(&self, p: Pos) -> (u64, u64) {
        self.chunks[p.chunk][p.idx]
    }

    /// Chunk whose first key is the last at or below `key`.
    #[inline]
    fn chunk_for(&self, key: u64) -> Option<usize> {
        let h = self.hint.get();
        if let Some(&first) = self.firsts.get(h) {
            if first <= key && self.firsts.get(h + 1).is_none_or(|&next| next > key) {
                return Some(h);
            }
        }
        if self.firsts.first().is_none_or(|&f| key < f) {
            return None;
        }
        let c = self.firsts.partition_point(|&f| f <= key) - 1;
        self.hint.set(c);
        Some(c)
    }

    /// The last entry with `pfn_lo <= key`.
    #[inline]
    fn raw_pred_or_eq(&self, key: u64) -> Option<Pos> {
        let chunk = self.chunk_for(key)?;
        let idx = self.chunks[chunk].partition_point(|e| e.0 <= key) - 1;
        Some(Pos { chunk, idx })
    }

    /// The first entry with `pfn_lo >= key`.
    #[inline]
    fn raw_succ_or_eq(&self, key: u64) -> Option<Pos> {
        match self.raw_pred_or_eq(key) {
            Some(p) if self.raw_entry(p).0 == key => Some(p),
            Some(p) => self.raw_next(p),
            None if self.len > 0 => Some(Pos { chunk: 0, idx: 0 }),
            None => None,
        }
    }

    /// The entry before `p`.
    #[inline]
    fn raw_prev(&self, p: Pos) -> Option<Pos> {
        if p.idx > 0 {
            Some(Pos {
                chunk: p.chunk,
                idx: p.idx - 1,
            })
        } else if p.chunk > 0 {
            let chunk = p.chunk - 1;
            Some(Pos {
                chunk,
                idx: self.chunks[chunk].len() - 1,
            })
        } else {
            None
        }
    }

    /// The entry after `p`.
    #[inline]
    fn raw_next(&self, p: Pos) -> Option<Pos> {
        if p.idx + 1 < self.chunks[p.chunk].len() {
            Some(Pos {
                chunk: p.chunk,
                idx: p.idx + 1,
            })
        } else if p.chunk + 1 < self.chunks.len() {
            Some(Pos {
                chunk: p.chunk + 1,
                idx: 0,
            })
        } else {
            None
        }
    }

    /// The value stored under exactly `key`.
    #[cfg(test)]
    pub(crate) fn get(&self, key: u64) -> Option<u64> {
        let p = self.pred_or_eq(key)?;
        let (lo, hi) = self.entry(p);
        (lo == key).then_some(hi)
    }

    /// Insert or replace `key -> value`.
    fn raw_insert(&mut self, key: u64, value: u64) {
        let Some(chunk) = self.chunk_for(key) else {
            // Below every key (or empty): goes first.
            if self.chunks.is_empty() {
                self.firsts.push(key);
                self.chunks.push(vec![(key, value)]);
                self.len = 1;
                return;
            }
            self.chunks[0].insert(0, (key, value));
            self.firsts[0] = key;
            self.len += 1;
            self.split_if_full(0);
            return;
        };
        let c = &mut self.chunks[chunk];
        let idx = c.partition_point(|e| e.0 < key);
        if idx < c.len() && c[idx].0 == key {
            c[idx].1 = value;
            return;
        }
        c.insert(idx, (key, value));
        self.len += 1;
        self.split_if_full(chunk);
    }

    fn split_if_full(&mut self, chunk: usize) {
        if self.chunks[chunk].len() > CHUNK {
            let upper = self.chunks[chunk].split_off(CHUNK / 2);
            self.firsts.insert(chunk + 1, upper[0].0);
            self.chunks.insert(chunk + 1, upper);
        }
    }

    /// Remove `key`, returning its value.
    fn raw_remove(&mut self, key: u64) -> Option<u64> {
        let p = self.raw_pred_or_eq(key)?;
        if self.raw_entry(p).0 != key {
            return None;
        }
        Some(self.raw_remove_at(p))
    }

    /// Remove the entry at `p`, returning its value.
    fn raw_remove_at(&mut self, p: Pos) -> u64 {
        let c = &mut self.chunks[p.chunk];
        let (_, value) = c.remove(p.idx);
        self.len -= 1;
        if c.is_empty() {
            self.chunks.remove(p.chunk);
            self.firsts.remove(p.chunk);
        } else if p.idx == 0 {
            self.firsts[p.chunk] = c[0].0;
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u64, u64),
        Remove(u64),
        Query(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u64..400, any::<u64>()).prop_map(|(k, v)| Op::Insert(k, v)),
            2 => (0u64..400).prop_map(Op::Remove),
            2 => (0u64..400).prop_map(Op::Query),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn behaves_like_a_btreemap(ops in prop::collection::vec(op(), 1..600)) {
            let mut m = RangeMap::new();
            let mut model = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => {
                        m.insert(k, v);
                        model.insert(k, v);
                    }
                    Op::Remove(k) => prop_assert_eq!(m.remove(k), model.remove(&k)),
                    Op::Query(k) => {
                        let pred = m.pred_or_eq(k).map(|p| m.entry(p));
                        prop_assert_eq!(pred, model.range(..=k).next_back().map(|(&a, &b)| (a, b)));
                        let succ = m.succ_or_eq(k).map(|p| m.entry(p));
                        prop_assert_eq!(succ, model.range(k..).next().map(|(&a, &b)| (a, b)));
                        if let Some(p) = m.pred_or_eq(k) {
                            let before = m.prev(p).map(|q| m.entry(q));
                            let key = m.entry(p).0;
                            prop_assert_eq!(before, model.range(..key).next_back().map(|(&a, &b)| (a, b)));
                            let after = m.next(p).map(|q| m.entry(q));
                            prop_assert_eq!(after, model.range(key + 1..).next().map(|(&a, &b)| (a, b)));
                        }
                        prop_assert_eq!(m.get(k), model.get(&k).copied());
                    }
                }
                prop_assert_eq!(m.len(), model.len());
            }
            let all: Vec<_> = m.iter().collect();
            let want: Vec<_> = model.into_iter().collect();
            prop_assert_eq!(all, want);
            prop_assert!(m.chunks.iter().all(|c| !c.is_empty() && c.len() <= CHUNK));
            prop_assert!(m.chunks.iter().zip(&m.firsts).all(|(c, &f)| c[0].0 == f));
        }
    }
}
