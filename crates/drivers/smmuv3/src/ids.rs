//! ASID and VMID allocators with the lifecycle rules of seed 002 (`smmuv3.md` §7).
//!
//! 1. every live STE/CD using an ID points at one translation (the ID is owned by
//!    exactly one domain);
//! 2. an ID is returned to the pool only after every entry referencing it is gone
//!    (reference count zero) **and** it has been invalidated;
//! 3. an ID is invalidated before it is handed to a new translation — guaranteed
//!    by 2: every ID in the pool is clean.
//!
//! ASIDs come from one space shared by all SMMUs (as Linux's global xarray);
//! VMIDs are per SMMU. ID 0 is never handed out.

use crate::lock::Mutex;
use crate::{Error, Result};
use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

struct Inner {
    /// One bit per ID: allocated.
    bitmap: Vec<u64>,
    /// Live entry references per allocated ID.
    refs: BTreeMap<u32, u32>,
    /// Next ID to try (round robin keeps recently freed IDs cold).
    next: u32,
}

/// An allocator over `[1, 2^bits − 1]` with per-ID entry reference counts.
pub struct IdAllocator {
    what: &'static str,
    max: u32,
    inner: Mutex<Inner>,
}

impl core::fmt::Debug for IdAllocator {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IdAllocator")
            .field("what", &self.what)
            .field("max", &self.max)
            .finish()
    }
}

impl IdAllocator {
    /// IDs `1 ..= 2^bits − 1`; `what` names the space in errors ("ASID", "VMID").
    pub fn new(what: &'static str, bits: u32) -> Self {
        let max = ((1u64 << bits.min(16)) - 1) as u32;
        Self {
            what,
            max,
            inner: Mutex::new(Inner {
                bitmap: vec![0; (max as usize + 1).div_ceil(64)],
                refs: BTreeMap::new(),
                next: 1,
            }),
        }
    }

    /// Largest ID of the space.
    pub fn max(&self) -> u32 {
        self.max
    }

    /// Allocate a clean ID not above `limit` (the SMMU's own width, e.g. 255 for
    /// 8-bit ASIDs).
    pub fn alloc(&self, limit: u32) -> Result<u16> {
        let limit = limit.min(self.max);
        let mut g = self.inner.lock();
        if limit == 0 {
            return Err(Error::NoSpace(self.what));
        }
        let start = if g.next == 0 || g.next > limit {
            1
        } else {
            g.next
        };
        let mut id = start;
        loop {
            let (w, b) = ((id / 64) as usize, id % 64);
            if g.bitmap[w] & (1 << b) == 0 {
                g.bitmap[w] |= 1 << b;
                g.refs.insert(id, 0);
                g.next = if id >= limit { 1 } else { id + 1 };
                return Ok(id as u16);
            }
            id = if id >= limit { 1 } else { id + 1 };
            if id == start {
                return Err(Error::NoSpace(self.what));
            }
        }
    }

    /// Whether `id` is allocated.
    pub fn is_allocated(&self, id: u16) -> bool {
        let id = id as u32;
        let g = self.inner.lock();
        id != 0 && id <= self.max && g.bitmap[(id / 64) as usize] & (1 << (id % 64)) != 0
    }

    /// An STE/CD referencing `id` was installed.
    pub fn get(&self, id: u16) -> Result<()> {
        let mut g = self.inner.lock();
        let r = g
            .refs
            .get_mut(&(id as u32))
            .ok_or(Error::NotFound(self.what))?;
        *r += 1;
        Ok(())
    }

    /// An STE/CD referencing `id` was removed (and its removal synced).
    pub fn put(&self, id: u16) -> Result<()> {
        let mut g = self.inner.lock();
        let r = g
            .refs
            .get_mut(&(id as u32))
            .ok_or(Error::NotFound(self.what))?;
        if *r == 0 {
            return Err(Error::Invalid("ID reference count underflow"));
        }
        *r -= 1;
        Ok(())
    }

    /// Live entry references of `id`.
    pub fn refs(&self, id: u16) -> u32 {
        self.inner
            .lock()
            .refs
            .get(&(id as u32))
            .copied()
            .unwrap_or(0)
    }

    /// Return `id` to the pool: refused with `Busy` while an entry still references
    /// it; otherwise `invalidate(id)` runs first (TLBI by ASID/VMID + CMD_SYNC) and
    /// the ID is freed only if it succeeded.
    pub fn free(&self, id: u16, invalidate: impl FnOnce(u16) -> Result<()>) -> Result<()> {
        {
            let g = self.inner.lock();
            match g.refs.get(&(id as u32)) {
                None => return Err(Error::NotFound(self.what)),
                Some(&n) if n > 0 => return Err(Error::Busy("ID still referenced by an entry")),
                _ => {}
            }
        }
        invalidate(id)?;
        let mut g = self.inner.lock();
        if g.refs.get(&(id as u32)).copied() != Some(0) {
            return Err(Error::Busy("ID referenced again during invalidation"));
        }
        g.refs.remove(&(id as u32));
        let id = id as u32;
        g.bitmap[(id / 64) as usize] &= !(1 << (id % 64));
        Ok(())
    }
}

/// The ASID space shared by every SMMU in the system (16-bit; each SMMU caps its
/// allocations at its own width).
pub static GLOBAL_ASIDS: spin::Lazy<IdAllocator> = spin::Lazy::new(|| IdAllocator::new("ASID", 16));

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::Cell;

    #[test]
    fn ids_start_at_one_and_exhaust() {
        let a = IdAllocator::new("VMID", 2);
        let ids: Vec<u16> = (0..3).map(|_| a.alloc(u32::MAX).unwrap()).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(a.alloc(u32::MAX), Err(Error::NoSpace("VMID")));
        a.free(2, |_| Ok(())).unwrap();
        assert_eq!(a.alloc(u32::MAX).unwrap(), 2);
        let b = IdAllocator::new("ASID", 16);
        assert!(b.alloc(255).unwrap() <= 255);
    }

    #[test]
    fn free_waits_for_references_and_invalidates_first() {
        let a = IdAllocator::new("ASID", 8);
        let id = a.alloc(255).unwrap();
        a.get(id).unwrap();
        let called = Cell::new(false);
        assert_eq!(
            a.free(id, |_| {
                called.set(true);
                Ok(())
            }),
            Err(Error::Busy("ID still referenced by an entry"))
        );
        assert!(!called.get(), "no invalidation while referenced");
        assert!(a.is_allocated(id));
        a.put(id).unwrap();
        // A failing invalidation keeps the ID out of the pool.
        assert!(a.free(id, |_| Err(Error::Timeout("sync"))).is_err());
        assert!(a.is_allocated(id));
        let seen = Cell::new(0);
        a.free(id, |i| {
            seen.set(i);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen.get(), id);
        assert!(!a.is_allocated(id));
        assert!(a.put(id).is_err());
    }
}
