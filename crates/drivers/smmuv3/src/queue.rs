//! Queue pointer arithmetic (`smmuv3.md` §1.6): an index of `log2size` bits plus a
//! wrap bit above it, as in the PROD/CONS registers.

/// Geometry of a circular queue of `1 << log2size` entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueGeom {
    /// log2 number of entries (0..=19).
    pub log2size: u32,
}

impl QueueGeom {
    /// A queue of `1 << log2size` entries.
    pub const fn new(log2size: u32) -> Self {
        Self { log2size }
    }

    /// Number of entries.
    pub const fn entries(self) -> u32 {
        1 << self.log2size
    }

    /// Mask of the index bits.
    pub const fn idx_mask(self) -> u32 {
        self.entries() - 1
    }

    /// Mask of the wrap bit.
    pub const fn wrap_bit(self) -> u32 {
        1 << self.log2size
    }

    /// Mask of index + wrap (the part of a PROD/CONS register that is a pointer).
    pub const fn ptr_mask(self) -> u32 {
        (self.wrap_bit() << 1) - 1
    }

    /// Entry index of a pointer.
    pub const fn idx(self, p: u32) -> u32 {
        p & self.idx_mask()
    }

    /// Wrap bit of a pointer.
    pub const fn wrap(self, p: u32) -> bool {
        p & self.wrap_bit() != 0
    }

    /// Empty: same index and same wrap.
    pub const fn is_empty(self, prod: u32, cons: u32) -> bool {
        prod & self.ptr_mask() == cons & self.ptr_mask()
    }

    /// Full: same index, different wrap.
    pub const fn is_full(self, prod: u32, cons: u32) -> bool {
        self.idx(prod) == self.idx(cons) && self.wrap(prod) != self.wrap(cons)
    }

    /// Number of used entries between `cons` and `prod`.
    pub const fn used(self, prod: u32, cons: u32) -> u32 {
        (prod.wrapping_sub(cons)) & self.ptr_mask()
    }

    /// Number of free entries.
    pub const fn space(self, prod: u32, cons: u32) -> u32 {
        self.entries() - self.used(prod, cons)
    }

    /// `p` advanced by `n` entries (wrap toggles each lap).
    pub const fn add(self, p: u32, n: u32) -> u32 {
        (p & self.ptr_mask()).wrapping_add(n) & self.ptr_mask()
    }

    /// Whether pointer `p` has been consumed when the consumer is at `cons`, given
    /// that `p` was produced no more than one lap before `prod_now`. True when
    /// `cons` is strictly past `p`.
    pub const fn passed(self, p: u32, cons: u32) -> bool {
        let d = cons.wrapping_sub(p) & self.ptr_mask();
        d != 0 && d <= self.entries()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn full_empty_space() {
        let q = QueueGeom::new(2); // 4 entries, wrap bit 4
        assert!(q.is_empty(0, 0));
        assert_eq!(q.space(0, 0), 4);
        assert_eq!(q.add(3, 1), 4, "index wraps to 0 with wrap bit set");
        assert!(q.is_full(4, 0));
        assert_eq!(q.space(4, 0), 0);
        assert!(!q.is_empty(4, 0));
        assert_eq!(q.add(7, 1), 0, "second lap returns to wrap 0");
        assert_eq!(q.used(1, 6), 3); // prod idx1 wrap0, cons idx2 wrap1
        assert!(q.passed(5, 6));
        assert!(!q.passed(6, 6));
        assert!(!q.passed(7, 6));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn pointers_match_a_counter(log2 in 0u32..8, start in 0u64..1000, pushes in 0u64..300, pops_frac in 0u64..=100) {
            let q = QueueGeom::new(log2);
            let size = 1u64 << log2;
            let pushes = pushes.min(size);
            let pops = pushes * pops_frac / 100;
            let c0 = start;
            let prod = q.add(0, ((c0 + pushes) % (2 * size)) as u32);
            let cons = q.add(0, ((c0 + pops) % (2 * size)) as u32);
            prop_assert_eq!(q.used(prod, cons) as u64, pushes - pops);
            prop_assert_eq!(q.is_empty(prod, cons), pushes == pops);
            prop_assert_eq!(q.is_full(prod, cons), pushes - pops == size);
            prop_assert_eq!(q.space(prod, cons) as u64, size - (pushes - pops));
        }
    }
}
