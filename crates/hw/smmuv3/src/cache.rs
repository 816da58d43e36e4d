//! A generic tagged cache with an optional capacity (least-recently-used eviction)
//! and hit/miss counters, used for the TLB, walk cache, configuration cache and ATC
//! (reference `smmuv3.md` §6). With [`Capacity::Unbounded`] entries live until an
//! invalidation removes them, the most adversarial legal behaviour.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use crate::config::Capacity;

/// A fast multiplicative hasher for small integer keys (the model's cache tags).
#[derive(Default, Clone, Copy)]
pub struct FastHasher(u64);

impl Hasher for FastHasher {
    #[inline]
    fn finish(&self) -> u64 {
        // Final avalanche (MurmurHash3 fmix64) so that every input bit reaches the
        // low bits hashbrown uses as bucket index: page addresses have zero low bits.
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(*b as u64);
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.write_u64(i as u64)
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.write_u64(i as u64)
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.write_u64(i as u64)
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64)
    }
}

/// Hash map with [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// Hit and miss counters of one cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HitMiss {
    /// Lookups that found an entry.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
}

/// A cache of `V` tagged by `K`.
#[derive(Debug)]
pub struct Cache<K, V> {
    map: FastMap<K, (V, u64)>,
    capacity: Capacity,
    stamp: u64,
    /// Counters.
    pub counters: HitMiss,
}

impl<K: Hash + Eq + Clone, V> Cache<K, V> {
    /// An empty cache.
    pub fn new(capacity: Capacity) -> Self {
        Self {
            map: FastMap::default(),
            capacity,
            stamp: 0,
            counters: HitMiss::default(),
        }
    }

    /// Whether the cache stores anything.
    pub fn enabled(&self) -> bool {
        self.capacity.enabled()
    }

    /// Look up and count a hit or a miss.
    #[inline]
    pub fn lookup(&mut self, k: &K) -> Option<&mut V> {
        match self.map.get_mut(k) {
            Some(e) => {
                self.counters.hits += 1;
                if matches!(self.capacity, Capacity::Bounded(_)) {
                    self.stamp += 1;
                    e.1 = self.stamp;
                }
                Some(&mut e.0)
            }
            None => {
                self.counters.misses += 1;
                None
            }
        }
    }

    /// Look up (touching the LRU stamp) without counting a hit or a miss.
    #[inline]
    pub fn get_quiet(&mut self, k: &K) -> Option<&mut V> {
        let bounded = matches!(self.capacity, Capacity::Bounded(_));
        let e = self.map.get_mut(k)?;
        if bounded {
            self.stamp += 1;
            e.1 = self.stamp;
        }
        Some(&mut e.0)
    }

    /// Look up without counting or touching.
    #[inline]
    pub fn peek(&self, k: &K) -> Option<&V> {
        self.map.get(k).map(|e| &e.0)
    }

    /// Insert (evicting the least recently used entry if bounded and full).
    pub fn insert(&mut self, k: K, v: V) {
        match self.capacity {
            Capacity::Disabled | Capacity::Bounded(0) => return,
            Capacity::Bounded(n) if self.map.len() >= n && !self.map.contains_key(&k) => {
                if let Some(old) = self
                    .map
                    .iter()
                    .min_by_key(|(_, e)| e.1)
                    .map(|(k, _)| k.clone())
                {
                    self.map.remove(&old);
                }
            }
            _ => {}
        }
        self.stamp += 1;
        self.map.insert(k, (v, self.stamp));
    }

    /// Remove one entry.
    pub fn remove(&mut self, k: &K) -> Option<V> {
        self.map.remove(k).map(|e| e.0)
    }

    /// Keep only the entries for which `f` returns true.
    pub fn retain(&mut self, mut f: impl FnMut(&K, &V) -> bool) {
        self.map.retain(|k, e| f(k, &e.0));
    }

    /// Remove everything.
    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Iterate over entries.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter().map(|(k, e)| (k, &e.0))
    }

    /// Iterate mutably over entries.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> {
        self.map.iter_mut().map(|(k, e)| (k, &mut e.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_cache_evicts_least_recently_used() {
        let mut c: Cache<u32, u32> = Cache::new(Capacity::Bounded(2));
        c.insert(1, 10);
        c.insert(2, 20);
        assert!(c.lookup(&1).is_some());
        c.insert(3, 30);
        assert!(c.peek(&2).is_none(), "2 was least recently used");
        assert!(c.peek(&1).is_some() && c.peek(&3).is_some());
        assert_eq!(c.counters, HitMiss { hits: 1, misses: 0 });
        assert!(c.lookup(&2).is_none());
        assert_eq!(c.counters.misses, 1);
    }

    #[test]
    fn disabled_cache_stores_nothing() {
        let mut c: Cache<u32, u32> = Cache::new(Capacity::Disabled);
        c.insert(1, 1);
        assert!(c.is_empty());
    }
}
