//! Page-size bitmaps (Linux `pgsize_bitmap`): bit n set means pages of 2^n bytes can be mapped
//! (reference `lpae.md` §3 for the sizes of each granule, `software.md` §4 and §6.7 for how
//! dma-iommu and the core use the bitmap).

use core::fmt;

/// The set of page sizes a page-table format (or domain) can map in one entry.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct PgSizeBitmap(pub u64);

impl PgSizeBitmap {
    /// An empty set.
    pub const EMPTY: PgSizeBitmap = PgSizeBitmap(0);

    /// Whether `size` (a power of two) is one of the sizes.
    pub const fn contains(self, size: u64) -> bool {
        size.is_power_of_two() && self.0 & size != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The smallest size (the granule), if any.
    pub const fn smallest(self) -> Option<u64> {
        if self.0 == 0 {
            None
        } else {
            Some(1 << self.0.trailing_zeros())
        }
    }

    /// The largest size, if any.
    pub const fn largest(self) -> Option<u64> {
        if self.0 == 0 {
            None
        } else {
            Some(1 << (63 - self.0.leading_zeros()))
        }
    }

    /// Intersection of two sets.
    pub const fn and(self, other: PgSizeBitmap) -> PgSizeBitmap {
        PgSizeBitmap(self.0 & other.0)
    }

    /// Iterate the sizes, smallest first.
    pub fn iter(self) -> impl Iterator<Item = u64> {
        let mut bits = self.0;
        core::iter::from_fn(move || {
            if bits == 0 {
                None
            } else {
                let low = bits & bits.wrapping_neg();
                bits &= !low;
                Some(low)
            }
        })
    }

    /// Choose the page size and count for the next chunk of a mapping, with the
    /// semantics of Linux's `iommu_pgsize`: the largest size allowed by `size` and by
    /// the alignment of both `iova` and `paddr`; the count covers all of `size`
    /// unless a larger size becomes usable later in the range (same offset of `iova`
    /// and `paddr` in it, and room for at least one), in which case it stops at that
    /// boundary.
    ///
    /// Returns `None` when no size fits (misaligned addresses or `size` below the
    /// smallest page).
    pub fn pick(self, iova: u64, paddr: u64, size: u64) -> Option<(u64, u64)> {
        if size == 0 {
            return None;
        }
        let addr_merge = iova | paddr;
        let fls = 63 - size.leading_zeros();
        let mut pgsizes = self.0 & (u64::MAX >> (63 - fls));
        if addr_merge != 0 {
            let ffs = addr_merge.trailing_zeros();
            pgsizes &= u64::MAX >> (63 - ffs);
        }
        if pgsizes == 0 {
            return None;
        }
        let idx = 63 - pgsizes.leading_zeros();
        let pgsize = 1u64 << idx;
        let mut span = size;
        let larger = self.0 & !(u64::MAX >> (63 - idx));
        if larger != 0 {
            let next = 1u64 << larger.trailing_zeros();
            if (iova ^ paddr) & (next - 1) == 0 {
                let offset = next - (addr_merge & (next - 1));
                if offset.checked_add(next).is_some_and(|end| end <= size) {
                    span = offset;
                }
            }
        }
        Some((pgsize, span >> idx))
    }
}

impl fmt::Debug for PgSizeBitmap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PgSizeBitmap[")?;
        let mut first = true;
        for s in self.iter() {
            if !first {
                f.write_str("|")?;
            }
            first = false;
            if s >= 1 << 30 {
                write!(f, "{}G", s >> 30)?;
            } else if s >= 1 << 20 {
                write!(f, "{}M", s >> 20)?;
            } else if s >= 1 << 10 {
                write!(f, "{}K", s >> 10)?;
            } else {
                write!(f, "{s}")?;
            }
        }
        f.write_str("]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SZ_1G, SZ_2M, SZ_4K};

    const ARM4K: PgSizeBitmap = PgSizeBitmap(SZ_4K | SZ_2M | SZ_1G);

    #[test]
    fn smallest_largest_iter() {
        assert_eq!(ARM4K.smallest(), Some(SZ_4K));
        assert_eq!(ARM4K.largest(), Some(SZ_1G));
        extern crate alloc;
        let v: alloc::vec::Vec<u64> = ARM4K.iter().collect();
        assert_eq!(v, [SZ_4K, SZ_2M, SZ_1G]);
        assert!(ARM4K.contains(SZ_2M));
        assert!(!ARM4K.contains(3));
        assert_eq!(PgSizeBitmap::EMPTY.smallest(), None);
    }

    #[test]
    fn pick_prefers_blocks_when_aligned() {
        assert_eq!(ARM4K.pick(0, 0, SZ_2M * 3), Some((SZ_2M, 3)));
        assert_eq!(ARM4K.pick(0x1000, 0x1000, SZ_2M), Some((SZ_4K, 512)));
        // Room for a 2M block after the unaligned head: stop at the boundary.
        assert_eq!(ARM4K.pick(0x1000, 0x1000, SZ_2M * 2), Some((SZ_4K, 511)));
        // iova and paddr disagree modulo 2M: only 4K pages, all of them.
        assert_eq!(ARM4K.pick(0x1000, 0x2000, SZ_2M), Some((SZ_4K, 512)));
        assert_eq!(ARM4K.pick(0x200, 0, SZ_4K), None);
        assert_eq!(ARM4K.pick(0, 0, 0x800), None);
    }
}
