//! Reserved regions per device (Linux `iommu_resv_region`; reference `software.md`
//! §6.6) and what a DMA domain must do with each kind.

use iommu_types::Prot;

/// The kind of a reserved IOVA region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResvKind {
    /// Firmware-required 1:1 window (RMRR): identity-mapped in DMA domains; the
    /// device then refuses blocking domains (`require_direct`).
    Direct,
    /// A 1:1 window that may be dropped when the device is assigned to a user.
    DirectRelaxable,
    /// Never usable as IOVA.
    Reserved,
    /// The hardware MSI window: reserved, MSI addresses pass through untranslated.
    Msi,
    /// Where software places MSI doorbell mappings (Arm): not reserved, mapped on
    /// demand.
    SwMsi,
}

/// What a DMA-API (default) domain does with a reserved region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaResvAction {
    /// Map IOVA == physical over the whole region, and keep it out of the IOVA
    /// allocator.
    IdentityMap,
    /// Keep it out of the IOVA allocator; map nothing.
    Reserve,
    /// Nothing up front (SW-MSI doorbells are mapped on demand).
    OnDemand,
}

impl ResvKind {
    /// The sysfs `reserved_regions` type string.
    pub const fn sysfs_name(self) -> &'static str {
        match self {
            ResvKind::Direct => "direct",
            ResvKind::DirectRelaxable => "direct-relaxable",
            ResvKind::Reserved => "reserved",
            ResvKind::Msi | ResvKind::SwMsi => "msi",
        }
    }

    /// What a DMA domain must do with a region of this kind.
    pub const fn dma_action(self) -> DmaResvAction {
        match self {
            ResvKind::Direct | ResvKind::DirectRelaxable => DmaResvAction::IdentityMap,
            ResvKind::Reserved | ResvKind::Msi => DmaResvAction::Reserve,
            ResvKind::SwMsi => DmaResvAction::OnDemand,
        }
    }

    /// Whether a user-owned (VFIO/iommufd) domain must keep this IOVA range free.
    pub const fn reserved_for_user(self) -> bool {
        matches!(self, ResvKind::Direct | ResvKind::Reserved | ResvKind::Msi)
    }
}

/// One reserved region `[start, start + length)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReservedRegion {
    /// First IOVA.
    pub start: u64,
    /// Length in bytes (non-zero).
    pub length: u64,
    /// Protection for identity mappings.
    pub prot: Prot,
    /// Kind.
    pub kind: ResvKind,
}

impl ReservedRegion {
    /// A region; `None` if it is empty or wraps past 2^64.
    pub fn new(start: u64, length: u64, prot: Prot, kind: ResvKind) -> Option<Self> {
        if length == 0 || start.checked_add(length - 1).is_none() {
            return None;
        }
        Some(Self {
            start,
            length,
            prot,
            kind,
        })
    }

    /// The last byte (inclusive).
    pub const fn last(&self) -> u64 {
        self.start.saturating_add(self.length.saturating_sub(1))
    }

    /// Whether the region is well formed (non-empty, does not wrap past 2^64): the
    /// fields are public, so a driver can build a bad one.
    pub const fn is_valid(&self) -> bool {
        self.length != 0 && self.start.checked_add(self.length - 1).is_some()
    }

    /// Whether `[start, last]` (inclusive) overlaps the region.
    pub const fn overlaps(&self, start: u64, last: u64) -> bool {
        start <= self.last() && last >= self.start
    }

    /// The Arm SW-MSI window: 1 MiB at `0x800_0000`.
    pub const ARM_SW_MSI: ReservedRegion = ReservedRegion {
        start: 0x800_0000,
        length: 0x10_0000,
        prot: Prot::from_bits_truncate(
            Prot::WRITE.bits() | Prot::NOEXEC.bits() | Prot::MMIO.bits(),
        ),
        kind: ResvKind::SwMsi,
    };

    /// The x86 hardware MSI window `0xfee00000..=0xfeefffff`.
    pub const X86_MSI: ReservedRegion = ReservedRegion {
        start: 0xfee0_0000,
        length: 0x10_0000,
        prot: Prot::from_bits_truncate(Prot::WRITE.bits() | Prot::MMIO.bits()),
        kind: ResvKind::Msi,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_follow_the_reference_table() {
        assert_eq!(ResvKind::Direct.dma_action(), DmaResvAction::IdentityMap);
        assert_eq!(
            ResvKind::DirectRelaxable.dma_action(),
            DmaResvAction::IdentityMap
        );
        assert_eq!(ResvKind::Reserved.dma_action(), DmaResvAction::Reserve);
        assert_eq!(ResvKind::Msi.dma_action(), DmaResvAction::Reserve);
        assert_eq!(ResvKind::SwMsi.dma_action(), DmaResvAction::OnDemand);
        assert!(!ResvKind::DirectRelaxable.reserved_for_user());
        assert!(ResvKind::Direct.reserved_for_user());
        assert!(!ResvKind::SwMsi.reserved_for_user());
    }

    #[test]
    fn region_bounds() {
        assert!(ReservedRegion::new(0, 0, Prot::READ, ResvKind::Reserved).is_none());
        assert!(ReservedRegion::new(u64::MAX, 2, Prot::READ, ResvKind::Reserved).is_none());
        let r = ReservedRegion::new(u64::MAX, 1, Prot::READ, ResvKind::Reserved).unwrap();
        assert_eq!(r.last(), u64::MAX);
        assert_eq!(ReservedRegion::X86_MSI.last(), 0xfeef_ffff);
        assert!(r.is_valid() && ReservedRegion::ARM_SW_MSI.is_valid());
        let bad = ReservedRegion {
            start: u64::MAX,
            length: 2,
            prot: Prot::READ,
            kind: ResvKind::Msi,
        };
        assert!(!bad.is_valid());
        assert_eq!(bad.last(), u64::MAX);
        assert!(!ReservedRegion { length: 0, ..bad }.is_valid());
        assert!(ReservedRegion::X86_MSI.overlaps(0xfeef_f000, 0xff00_0000));
        assert!(!ReservedRegion::X86_MSI.overlaps(0, 0xfedf_ffff));
    }
}
