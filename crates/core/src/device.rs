//! Device descriptions as the IOMMU core and drivers see them (reference
//! `software.md` §1.2 untrusted devices and PASIDs, §6.1 groups, §6.4 canwbs, §8.4).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Handle of one IOMMU instance (one SMMU, one DMAR unit) registered with the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IommuId(pub u32);

/// Handle of a device registered with the core, unique for the core's lifetime
/// (never reused after a hot-unplug).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId(pub u64);

/// Handle of an isolation group (the number in `/sys/kernel/iommu_groups/<n>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId(pub u32);

/// Handle of a bridge or downstream port in the PCI [`crate::Topology`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BridgeId(pub u32);

/// A PCI bus/device/function number within a segment.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Bdf {
    /// PCI segment (domain).
    pub segment: u16,
    /// Bus number.
    pub bus: u8,
    /// Device (slot) number, 0..32.
    pub dev: u8,
    /// Function number, 0..8.
    pub func: u8,
}

impl Bdf {
    /// A BDF in segment 0. `dev` and `func` are masked to their 5 and 3 bits.
    pub const fn new(bus: u8, dev: u8, func: u8) -> Self {
        Self {
            segment: 0,
            bus,
            dev: dev & 0x1f,
            func: func & 0x7,
        }
    }

    /// The 16-bit PCI requester ID (`bus << 8 | dev << 3 | func`), which SMMUv3
    /// platforms commonly use as the StreamID.
    pub const fn requester_id(self) -> u16 {
        ((self.bus as u16) << 8) | ((self.dev as u16 & 0x1f) << 3) | (self.func as u16 & 0x7)
    }

    /// Whether `other` is another function of the same slot (same segment, bus, dev).
    pub const fn same_slot(self, other: Bdf) -> bool {
        self.segment == other.segment && self.bus == other.bus && self.dev == other.dev
    }
}

impl fmt::Debug for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{}",
            self.segment, self.bus, self.dev, self.func
        )
    }
}

/// Where a device sits, which decides how groups are formed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BusAddress {
    /// A PCI function.
    Pci {
        /// Its address.
        bdf: Bdf,
        /// The bridge or downstream port above it (`None` for a root-complex
        /// integrated endpoint on the root bus).
        parent: Option<BridgeId>,
        /// Whether the function belongs to a multifunction device.
        multifunction: bool,
        /// Whether the function itself provides ACS isolation from its siblings.
        acs: bool,
        /// Requester IDs the function also uses (Linux DMA aliases, quirks): any
        /// device with one of these BDFs shares its group.
        dma_aliases: Vec<Bdf>,
    },
    /// A platform (non-PCI) device: one group per device unless the driver's
    /// [`crate::GroupHint`] says otherwise.
    Platform {
        /// A platform-unique number (for example the firmware node index).
        id: u32,
    },
}

/// Everything a bus/firmware layer knows about a device before the IOMMU probes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceDesc {
    /// A human-readable name for reports.
    pub name: String,
    /// Bus position.
    pub bus: BusAddress,
    /// The IOMMU instance translating this device's DMA.
    pub iommu: IommuId,
    /// StreamIDs the device emits (SMMUv3; at least one for a translated device).
    pub stream_ids: Vec<u32>,
    /// External-facing (Thunderbolt and similar): never trusted, always strict DMA.
    pub untrusted: bool,
    /// DMA is cache-coherent with the CPU (firmware `dma-coherent`, IORT CCA).
    pub dma_coherent: bool,
    /// The device can be made fully coherent: it never issues No-Snoop / non-cacheable
    /// writes once told not to (IORT CANWBS). Needed for `ENFORCE_CACHE_COHERENCY` on
    /// SMMUv3.
    pub canwbs: bool,
    /// PCIe ATS capable.
    pub ats: bool,
    /// Number of PASIDs / SubstreamIDs the device supports (0 = none).
    pub max_pasids: u32,
    /// Streaming DMA mask (all ones for 64 bits).
    pub dma_mask: u64,
    /// Coherent-allocation DMA mask.
    pub coherent_dma_mask: u64,
}

impl DeviceDesc {
    /// A trusted, coherent PCI function at `bdf` with no parent bridge, StreamID =
    /// requester ID, 64-bit masks, no ATS or PASID. Adjust fields as needed.
    pub fn pci(name: &str, iommu: IommuId, bdf: Bdf) -> Self {
        Self {
            name: String::from(name),
            bus: BusAddress::Pci {
                bdf,
                parent: None,
                multifunction: false,
                acs: false,
                dma_aliases: Vec::new(),
            },
            iommu,
            stream_ids: alloc::vec![u32::from(bdf.requester_id())],
            untrusted: false,
            dma_coherent: true,
            canwbs: false,
            ats: false,
            max_pasids: 0,
            dma_mask: u64::MAX,
            coherent_dma_mask: u64::MAX,
        }
    }

    /// A trusted, coherent platform device with the given StreamIDs.
    pub fn platform(name: &str, iommu: IommuId, id: u32, stream_ids: &[u32]) -> Self {
        Self {
            name: String::from(name),
            bus: BusAddress::Platform { id },
            iommu,
            stream_ids: stream_ids.to_vec(),
            untrusted: false,
            dma_coherent: true,
            canwbs: false,
            ats: false,
            max_pasids: 0,
            dma_mask: u64::MAX,
            coherent_dma_mask: u64::MAX,
        }
    }

    /// The PCI address, if this is a PCI function.
    pub fn bdf(&self) -> Option<Bdf> {
        match &self.bus {
            BusAddress::Pci { bdf, .. } => Some(*bdf),
            BusAddress::Platform { .. } => None,
        }
    }

    /// Whether the description is usable: at least one StreamID, no duplicate
    /// StreamIDs, non-zero masks.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.stream_ids.is_empty() {
            return Err("device has no StreamID");
        }
        for (i, s) in self.stream_ids.iter().enumerate() {
            if self.stream_ids[..i].contains(s) {
                return Err("duplicate StreamID");
            }
        }
        if self.dma_mask == 0 || self.coherent_dma_mask == 0 {
            return Err("zero DMA mask");
        }
        Ok(())
    }
}

/// A registered device as drivers see it: the core's handle plus the description.
///
/// Drivers key their per-device state (Linux `dev_iommu_priv`) by [`DeviceInfo::id`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The core's handle.
    pub id: DeviceId,
    /// The description given at registration.
    pub desc: DeviceDesc,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requester_id_layout() {
        assert_eq!(Bdf::new(0x12, 0x3, 0x4).requester_id(), 0x121c);
        assert_eq!(Bdf::new(0xff, 0x1f, 0x7).requester_id(), 0xffff);
        assert_eq!(Bdf::new(1, 0x20, 9), Bdf::new(1, 0, 1), "fields are masked");
        assert!(Bdf::new(1, 2, 0).same_slot(Bdf::new(1, 2, 5)));
        assert!(!Bdf::new(1, 2, 0).same_slot(Bdf::new(1, 3, 0)));
        assert_eq!(alloc::format!("{:?}", Bdf::new(3, 4, 5)), "0000:03:04.5");
    }

    #[test]
    fn validate_rejects_bad_descriptions() {
        let mut d = DeviceDesc::pci("nic", IommuId(0), Bdf::new(1, 0, 0));
        assert_eq!(d.stream_ids, [0x100]);
        assert!(d.validate().is_ok());
        d.stream_ids.push(0x100);
        assert!(d.validate().is_err());
        d.stream_ids.clear();
        assert!(d.validate().is_err());
        let mut p = DeviceDesc::platform("gpu", IommuId(0), 7, &[3, 4]);
        assert!(p.validate().is_ok());
        p.dma_mask = 0;
        assert!(p.validate().is_err());
    }
}
