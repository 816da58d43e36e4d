//! DMA transfer direction and the protection it implies (reference `software.md`
//! §4.2, `dma_info_to_prot`).

use iommu_types::Prot;

/// Direction of a streaming DMA transfer, as seen from memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DmaDirection {
    /// The device may read and write the buffer.
    Bidirectional,
    /// The device reads the buffer (memory to device).
    ToDevice,
    /// The device writes the buffer (device to memory).
    FromDevice,
}

impl DmaDirection {
    /// IOMMU protection for this direction: TO_DEVICE → READ, FROM_DEVICE → WRITE,
    /// BIDIRECTIONAL → both; plus `CACHE` for a coherent device and `PRIV` for a
    /// privileged mapping.
    pub const fn prot(self, coherent: bool, privileged: bool) -> Prot {
        let mut p = match self {
            DmaDirection::Bidirectional => Prot::RW,
            DmaDirection::ToDevice => Prot::READ,
            DmaDirection::FromDevice => Prot::WRITE,
        };
        if coherent {
            p = p.union(Prot::CACHE);
        }
        if privileged {
            p = p.union(Prot::PRIV);
        }
        p
    }

    /// Whether data flows from the device into memory (unmap and `sync_for_cpu`
    /// must copy a bounce buffer back).
    pub const fn device_writes(self) -> bool {
        matches!(self, DmaDirection::Bidirectional | DmaDirection::FromDevice)
    }

    /// Whether data flows from memory to the device (`sync_for_device` must copy
    /// into a bounce buffer).
    pub const fn device_reads(self) -> bool {
        matches!(self, DmaDirection::Bidirectional | DmaDirection::ToDevice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prot_follows_direction() {
        assert_eq!(DmaDirection::ToDevice.prot(false, false), Prot::READ);
        assert_eq!(DmaDirection::FromDevice.prot(false, false), Prot::WRITE);
        assert_eq!(DmaDirection::Bidirectional.prot(false, false), Prot::RW);
        let p = DmaDirection::ToDevice.prot(true, true);
        assert!(p.contains(Prot::READ | Prot::CACHE | Prot::PRIV));
        assert!(!p.contains(Prot::WRITE));
    }
}
