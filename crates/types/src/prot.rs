//! `IOMMU_*` protection flags (Linux `include/linux/iommu.h`; reference `lpae.md` §6).

use core::fmt;
use core::ops::{BitAnd, BitOr, BitOrAssign, Not};

/// Access permissions and memory attributes requested for a mapping.
///
/// The bit values are Linux's, so a value can be compared with kernel traces.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct Prot(u32);

impl Prot {
    /// No access.
    pub const NONE: Prot = Prot(0);
    /// Device may read (`IOMMU_READ`, bit 0).
    pub const READ: Prot = Prot(1 << 0);
    /// Device may write (`IOMMU_WRITE`, bit 1).
    pub const WRITE: Prot = Prot(1 << 1);
    /// Cache-coherent normal memory (`IOMMU_CACHE`, bit 2).
    pub const CACHE: Prot = Prot(1 << 2);
    /// Never executable (`IOMMU_NOEXEC`, bit 3).
    pub const NOEXEC: Prot = Prot(1 << 3);
    /// Device-memory attributes, for MMIO targets such as MSI doorbells (`IOMMU_MMIO`, bit 4).
    pub const MMIO: Prot = Prot(1 << 4);
    /// Privileged accesses only (`IOMMU_PRIV`, bit 5).
    pub const PRIV: Prot = Prot(1 << 5);
    /// READ | WRITE.
    pub const RW: Prot = Prot(0b11);
    /// Every defined bit.
    pub const ALL: Prot = Prot(0x3f);

    /// Build from raw bits; undefined bits are dropped.
    pub const fn from_bits_truncate(bits: u32) -> Prot {
        Prot(bits & Self::ALL.0)
    }

    /// The raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Whether every bit of `other` is set in `self`.
    pub const fn contains(self, other: Prot) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any bit of `other` is set in `self`.
    pub const fn intersects(self, other: Prot) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether the mapping grants any access at all (READ or WRITE).
    pub const fn is_accessible(self) -> bool {
        self.intersects(Prot::RW)
    }

    /// `self` with the bits of `other` added.
    pub const fn union(self, other: Prot) -> Prot {
        Prot(self.0 | other.0)
    }

    /// `self` with the bits of `other` removed.
    pub const fn difference(self, other: Prot) -> Prot {
        Prot(self.0 & !other.0)
    }
}

impl BitOr for Prot {
    type Output = Prot;
    fn bitor(self, rhs: Prot) -> Prot {
        self.union(rhs)
    }
}

impl BitOrAssign for Prot {
    fn bitor_assign(&mut self, rhs: Prot) {
        self.0 |= rhs.0;
    }
}

impl BitAnd for Prot {
    type Output = Prot;
    fn bitand(self, rhs: Prot) -> Prot {
        Prot(self.0 & rhs.0)
    }
}

impl Not for Prot {
    type Output = Prot;
    fn not(self) -> Prot {
        Prot(!self.0 & Self::ALL.0)
    }
}

impl fmt::Debug for Prot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(Prot, &str); 6] = [
            (Prot::READ, "READ"),
            (Prot::WRITE, "WRITE"),
            (Prot::CACHE, "CACHE"),
            (Prot::NOEXEC, "NOEXEC"),
            (Prot::MMIO, "MMIO"),
            (Prot::PRIV, "PRIV"),
        ];
        let mut first = true;
        for (p, name) in NAMES {
            if self.contains(p) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("NONE")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_match_linux() {
        assert_eq!(Prot::READ.bits(), 1);
        assert_eq!(Prot::WRITE.bits(), 2);
        assert_eq!(Prot::CACHE.bits(), 4);
        assert_eq!(Prot::NOEXEC.bits(), 8);
        assert_eq!(Prot::MMIO.bits(), 16);
        assert_eq!(Prot::PRIV.bits(), 32);
    }

    #[test]
    fn set_operations() {
        let p = Prot::READ | Prot::CACHE;
        assert!(p.contains(Prot::READ));
        assert!(!p.contains(Prot::RW));
        assert!(p.is_accessible());
        assert!(!Prot::CACHE.is_accessible());
        assert_eq!(p.difference(Prot::READ), Prot::CACHE);
        assert_eq!(Prot::from_bits_truncate(0xffff_ffff), Prot::ALL);
        assert_eq!(!Prot::ALL, Prot::NONE);
    }
}
