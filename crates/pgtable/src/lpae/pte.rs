//! LPAE descriptor bits and the `Prot` → descriptor translation (reference `lpae.md`
//! §1, §2 and §6).

use super::config::{Geometry, Granule, Quirks, Stage};
use iommu_types::Prot;

/// Descriptor type field, bits \[1:0\]: block at levels 0–2.
pub const TYPE_BLOCK: u64 = 0b01;
/// Descriptor type field: table at levels 0–2, page at level 3.
pub const TYPE_TABLE: u64 = 0b11;
/// Descriptor type field: page at level 3.
pub const TYPE_PAGE: u64 = 0b11;
/// Mask of the type field.
pub const TYPE_MASK: u64 = 0b11;

/// Stage-1 AttrIndx field shift (bits \[4:2\]).
pub const ATTRINDX_SHIFT: u32 = 2;
/// Stage-1 NS (bit 5).
pub const NS: u64 = 1 << 5;
/// Stage-1 AP\[1\]: unprivileged access allowed (bit 6).
pub const AP_UNPRIV: u64 = 1 << 6;
/// Stage-1 AP\[2\]: read-only (bit 7).
pub const AP_RDONLY: u64 = 1 << 7;
/// Stage-2 S2AP\[0\]: read allowed (bit 6).
pub const HAP_READ: u64 = 1 << 6;
/// Stage-2 S2AP\[1\]: write allowed (bit 7).
pub const HAP_WRITE: u64 = 1 << 7;
/// Stage-2 MemAttr shift (bits \[5:2\]).
pub const MEMATTR_SHIFT: u32 = 2;
/// Shareability field shift (bits \[9:8\]).
pub const SH_SHIFT: u32 = 8;
/// Outer shareable.
pub const SH_OS: u64 = 2 << SH_SHIFT;
/// Inner shareable.
pub const SH_IS: u64 = 3 << SH_SHIFT;
/// Access flag (bit 10).
pub const AF: u64 = 1 << 10;
/// Not global (bit 11), stage 1 only.
pub const NG: u64 = 1 << 11;
/// Dirty-bit modifier (bit 51).
pub const DBM: u64 = 1 << 51;
/// Contiguous hint (bit 52); io-pgtable never sets it.
pub const CONT: u64 = 1 << 52;
/// Execute-never as Linux writes it: bits 53 and 54.
pub const XN: u64 = 3 << 53;
/// Software bit 55: table entry cleaned to memory for a non-coherent walker.
pub const SW_SYNC: u64 = 1 << 55;
/// NSTable (bit 63) on stage-1 table descriptors.
pub const NSTABLE: u64 = 1 << 63;
/// Output-address field, bits \[47:12\].
pub const ADDR_MASK: u64 = 0x0000_ffff_ffff_f000;

/// MAIR index of Normal non-cacheable memory (§5).
pub const MAIR_IDX_NC: u64 = 0;
/// MAIR index of Normal write-back cacheable memory.
pub const MAIR_IDX_CACHE: u64 = 1;
/// MAIR index of Device-nGnRE memory.
pub const MAIR_IDX_DEV: u64 = 2;
/// MAIR index of inner-NC / outer-WB memory (defined, never chosen by `Prot`).
pub const MAIR_IDX_INC_OCACHE: u64 = 3;
/// The MAIR value of Linux IO page tables: attributes 0x44, 0xFF, 0x04, 0xF4.
pub const MAIR: u64 = 0x0000_0000_F404_FF44;

/// Stage-2 MemAttr: Normal outer+inner write-back.
pub const MEMATTR_OIWB: u64 = 0xf;
/// Stage-2 MemAttr: Normal non-cacheable.
pub const MEMATTR_NC: u64 = 0x5;
/// Stage-2 MemAttr: Device-nGnRE.
pub const MEMATTR_DEV: u64 = 0x1;
/// Stage-2 MemAttr with FWB: force write-back.
pub const MEMATTR_FWB_WB: u64 = 0x6;

/// One raw 64-bit LPAE descriptor with named field accessors.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct Pte(pub u64);

impl core::fmt::Debug for Pte {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Pte({:#018x})", self.0)
    }
}

impl Pte {
    /// The empty (invalid) descriptor Linux writes.
    pub const EMPTY: Pte = Pte(0);

    /// Whether the valid bit (bit 0) is set.
    #[inline(always)]
    pub const fn is_valid(self) -> bool {
        self.0 & 1 != 0
    }

    /// Whether this is a leaf at `level` (page at level 3, block above).
    #[inline(always)]
    pub const fn is_leaf(self, level: u32) -> bool {
        let t = self.0 & TYPE_MASK;
        if level == 3 {
            t == TYPE_PAGE
        } else {
            t == TYPE_BLOCK
        }
    }

    /// Whether this is a table descriptor at `level`.
    #[inline(always)]
    pub const fn is_table(self, level: u32) -> bool {
        level < 3 && self.0 & TYPE_MASK == TYPE_TABLE
    }

    /// The output (or next-table) address, undoing the 52-bit packing of 64K granules.
    #[inline(always)]
    pub const fn addr(self, granule: Granule) -> u64 {
        let pa = self.0 & ADDR_MASK;
        match granule {
            Granule::G64K => (pa | (pa << 36)) & 0x000f_ffff_ffff_0000,
            _ => pa,
        }
    }

    /// Pack an output (or table) address into the address field (§1: with 64K
    /// granules PA\[51:48\] goes to bits \[15:12\]).
    #[inline(always)]
    pub const fn addr_bits(pa: u64, granule: Granule) -> u64 {
        match granule {
            Granule::G64K => (pa | (pa >> 36)) & ADDR_MASK,
            _ => pa & ADDR_MASK,
        }
    }

    /// Stage-1 AttrIndx.
    pub const fn attr_index(self) -> u64 {
        (self.0 >> ATTRINDX_SHIFT) & 7
    }

    /// Stage-2 MemAttr.
    pub const fn mem_attr(self) -> u64 {
        (self.0 >> MEMATTR_SHIFT) & 0xf
    }

    /// Shareability field.
    pub const fn sh(self) -> u64 {
        (self.0 >> SH_SHIFT) & 3
    }

    /// Whether bit `mask` is set.
    pub const fn has(self, mask: u64) -> bool {
        self.0 & mask == mask
    }
}

/// Attribute bits (everything but type and address) of a leaf for `prot`, as Linux's
/// `arm_lpae_prot_to_pte` computes them (§6).
#[inline(always)]
pub fn prot_to_attrs(geo: &Geometry, prot: Prot) -> u64 {
    let mut pte = match geo.stage {
        Stage::S1 => {
            let mut p = NG;
            if prot.contains(Prot::READ) && !prot.contains(Prot::WRITE) {
                p |= AP_RDONLY;
            } else if geo.quirks.contains(Quirks::ARM_HD) {
                p |= DBM;
            }
            if !prot.contains(Prot::PRIV) {
                p |= AP_UNPRIV;
            }
            let idx = if prot.contains(Prot::MMIO) {
                MAIR_IDX_DEV
            } else if prot.contains(Prot::CACHE) {
                MAIR_IDX_CACHE
            } else {
                MAIR_IDX_NC
            };
            p | (idx << ATTRINDX_SHIFT)
        }
        Stage::S2 => {
            let mut p = 0;
            if prot.contains(Prot::READ) {
                p |= HAP_READ;
            }
            if prot.contains(Prot::WRITE) {
                p |= HAP_WRITE;
            }
            let attr = if prot.contains(Prot::MMIO) {
                MEMATTR_DEV
            } else if prot.contains(Prot::CACHE) {
                if geo.quirks.contains(Quirks::ARM_S2FWB) {
                    MEMATTR_FWB_WB
                } else {
                    MEMATTR_OIWB
                }
            } else {
                MEMATTR_NC
            };
            p | (attr << MEMATTR_SHIFT)
        }
    };
    pte |= if prot.contains(Prot::CACHE) {
        SH_IS
    } else {
        SH_OS
    };
    if prot.contains(Prot::NOEXEC) {
        pte |= XN;
    }
    if geo.quirks.contains(Quirks::ARM_NS) {
        pte |= NS;
    }
    pte | AF
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lpae::config::LpaeConfig;

    #[test]
    fn address_packing_round_trips_52_bit() {
        let pa = 0x000f_1234_5678_0000u64;
        let bits = Pte::addr_bits(pa, Granule::G64K);
        assert_eq!(bits & 0xf000, 0xf000, "PA[51:48] in bits 15:12");
        assert_eq!(bits >> 48, 0);
        assert_eq!(Pte(bits | 3).addr(Granule::G64K), pa);
        assert_eq!(Pte(0x8000_1003).addr(Granule::G4K), 0x8000_1000);
    }

    #[test]
    fn mair_bytes_are_the_linux_attributes() {
        let byte = |i: u64| (MAIR >> (8 * i)) & 0xff;
        assert_eq!(byte(MAIR_IDX_NC), 0x44);
        assert_eq!(byte(MAIR_IDX_CACHE), 0xff);
        assert_eq!(byte(MAIR_IDX_DEV), 0x04);
        assert_eq!(byte(MAIR_IDX_INC_OCACHE), 0xf4);
    }

    #[test]
    fn hd_adds_dbm_to_writable_only() {
        let g = LpaeConfig::new(Stage::S1, Granule::G4K, 48, 48)
            .with_quirks(Quirks::ARM_HD)
            .geometry()
            .unwrap();
        assert!(Pte(prot_to_attrs(&g, Prot::RW)).has(DBM));
        assert!(!Pte(prot_to_attrs(&g, Prot::READ)).has(DBM));
        assert!(Pte(prot_to_attrs(&g, Prot::READ)).has(AP_RDONLY));
    }
}
