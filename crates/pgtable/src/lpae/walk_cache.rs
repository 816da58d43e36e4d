//! The walk cache of an [`LpaeTable`](super::LpaeTable): table addresses recently
//! reached by map/unmap walks (a software accelerator only; reference `lpae.md` §6 for
//! the table layout it shortcuts, seed 001 for why it must forget freed tables).

use core::sync::atomic::{AtomicU64, Ordering};

/// Tables recently reached by map/unmap walks, per level, so that calls in a region
/// already walked skip the descent from the root (most of the cost of a one-page map,
/// and half of a 4K lookup).
///
/// Direct mapped: [`CACHE_WAYS`] slots per level, chosen by the low bits of the region
/// number. A slot packs `VALID | region << 36 | table >> 12`, where `region` is the IOVA
/// (inside the input range) divided by the span of one table at that level (at most
/// 27 bits); tables at or above 2^48 are simply not cached.
///
/// Soundness: a table is freed only by an unmap or a block map covering its *whole*
/// region, and every slot is cleared before that happens; a later map/unmap in the
/// region would overlap the freeing call, which callers must not run concurrently (as
/// in Linux). Lookups read the cache but never fill it, so a lookup racing with an
/// unmap cannot leave a freed table behind in it. Only *table* addresses are cached:
/// leaves (which hardware may update: AF, dirty state) are always read from memory,
/// and table descriptors belong to this table alone (nobody else may rewrite them).
#[derive(Default)]
pub(super) struct WalkCache {
    slots: [[AtomicU64; CACHE_WAYS]; 4],
}

/// Slots per level.
const CACHE_WAYS: usize = 16;
/// Set in a slot that holds a table.
const CACHE_VALID: u64 = 1 << 63;
/// Bits of a slot holding the table address (in 4 KiB units).
const CACHE_PA_BITS: u32 = 36;
/// Table addresses are 4 KiB aligned (the smallest granule): the low bits are dropped.
const TABLE_ADDR_SHIFT: u32 = 12;
/// Mask of the region number stored in a slot (27 bits: the region of a level-3 table
/// in a 48-bit input range).
const CACHE_KEY_MASK: u64 = (1 << 27) - 1;

impl WalkCache {
    #[inline(always)]
    fn slot(&self, level: u32, key: u64) -> &AtomicU64 {
        &self.slots[level as usize & 3][key as usize % CACHE_WAYS]
    }

    /// The table cached for region `key` at `level`, if any.
    #[inline(always)]
    pub(super) fn get(&self, level: u32, key: u64) -> Option<u64> {
        let c = self.slot(level, key).load(Ordering::Acquire);
        (c & CACHE_VALID != 0 && (c >> CACHE_PA_BITS) & CACHE_KEY_MASK == key)
            .then_some((c & ((1 << CACHE_PA_BITS) - 1)) << TABLE_ADDR_SHIFT)
    }

    /// Remember `table` for region `key` at `level` (ignored when either does not fit a
    /// slot).
    #[inline(always)]
    pub(super) fn put(&self, level: u32, key: u64, table: u64) {
        if key <= CACHE_KEY_MASK && table >> (CACHE_PA_BITS + TABLE_ADDR_SHIFT) == 0 {
            let v = CACHE_VALID | key << CACHE_PA_BITS | table >> TABLE_ADDR_SHIFT;
            self.slot(level, key).store(v, Ordering::Release);
        }
    }

    /// Forget every table (before any table may be freed).
    pub(super) fn clear(&self) {
        for level in &self.slots {
            for s in level {
                s.store(0, Ordering::Release);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_only_the_same_level_and_region() {
        let c = WalkCache::default();
        assert_eq!(c.get(3, 5), None);
        c.put(3, 5, 0x8000_3000);
        assert_eq!(c.get(3, 5), Some(0x8000_3000));
        assert_eq!(c.get(2, 5), None, "other level");
        assert_eq!(
            c.get(3, 5 + CACHE_WAYS as u64),
            None,
            "same slot, other region"
        );
        c.put(3, 5 + CACHE_WAYS as u64, 0x9000_0000);
        assert_eq!(c.get(3, 5), None, "evicted by the colliding region");
        c.clear();
        assert_eq!(c.get(3, 5 + CACHE_WAYS as u64), None);
    }

    #[test]
    fn addresses_or_regions_too_large_are_not_cached() {
        let c = WalkCache::default();
        c.put(2, CACHE_KEY_MASK + 1, 0x1000);
        assert_eq!(c.get(2, CACHE_KEY_MASK + 1), None);
        c.put(2, 1, 1 << 48);
        assert_eq!(c.get(2, 1), None);
        c.put(2, CACHE_KEY_MASK, (1 << 48) - 0x1000);
        assert_eq!(c.get(2, CACHE_KEY_MASK), Some((1 << 48) - 0x1000));
    }
}
