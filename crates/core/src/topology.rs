//! A simple PCI topology description and the isolation rules that form groups from
//! it (Linux `pci_device_group`; reference `software.md` §6.1): devices below a
//! bridge or downstream port without ACS isolation, below a PCIe-to-PCI bridge
//! (whose requester ID they all alias to), functions of a multifunction device
//! without ACS, and devices with DMA aliases share a group.

use alloc::vec::Vec;

use crate::device::{Bdf, BridgeId, BusAddress, DeviceInfo, IommuId};
use crate::error::{Error, Result};

/// ACS capability bits of a port (PCIe ACS control register layout).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Acs(pub u16);

impl Acs {
    /// No ACS.
    pub const NONE: Acs = Acs(0);
    /// Source Validation.
    pub const SV: Acs = Acs(1 << 0);
    /// P2P Request Redirect.
    pub const RR: Acs = Acs(1 << 2);
    /// P2P Completion Redirect.
    pub const CR: Acs = Acs(1 << 3);
    /// Upstream Forwarding.
    pub const UF: Acs = Acs(1 << 4);
    /// What isolation requires (Linux `REQ_ACS_FLAGS`): SV, RR, CR and UF.
    pub const REQUIRED: Acs = Acs(Self::SV.0 | Self::RR.0 | Self::CR.0 | Self::UF.0);

    /// Whether every required bit is enabled.
    pub const fn isolates(self) -> bool {
        self.0 & Self::REQUIRED.0 == Self::REQUIRED.0
    }
}

/// The kind of a bridge in the topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BridgeKind {
    /// A PCIe root port.
    RootPort,
    /// A downstream port of a PCIe switch.
    SwitchDownstream,
    /// A PCIe-to-PCI(-X) bridge: every device below it reaches the IOMMU with the
    /// bridge's requester ID, so they can never be told apart.
    PcieToPci,
}

/// A bridge or port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BridgeDesc {
    /// Its own address.
    pub bdf: Bdf,
    /// The bridge above it (`None` on the root bus).
    pub parent: Option<BridgeId>,
    /// Kind.
    pub kind: BridgeKind,
    /// ACS capabilities enabled on it.
    pub acs: Acs,
}

impl BridgeDesc {
    /// Whether devices below this bridge are isolated from each other by it.
    pub const fn isolates(&self) -> bool {
        !matches!(self.kind, BridgeKind::PcieToPci) && self.acs.isolates()
    }
}

/// What ties devices to the same group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupKey {
    /// Everything below this (topmost non-isolating) bridge.
    Bridge(IommuId, BridgeId),
    /// The non-ACS functions of one multifunction slot.
    Slot(IommuId, u16, u8, u8),
    /// A group of its own.
    Single(IommuId, u64),
    /// One group per IOMMU instance.
    Instance(IommuId),
}

/// The bridges of the platform.
#[derive(Clone, Debug, Default)]
pub struct Topology {
    bridges: Vec<BridgeDesc>,
}

impl Topology {
    /// An empty topology (every device on the root bus).
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a bridge; its parent must already exist.
    pub fn add_bridge(&mut self, desc: BridgeDesc) -> Result<BridgeId> {
        if let Some(p) = desc.parent {
            if self.get(p).is_none() {
                return Err(Error::NotFound("parent bridge"));
            }
        }
        let id = u32::try_from(self.bridges.len()).map_err(|_| Error::NoSpace("bridge ids"))?;
        self.bridges.push(desc);
        Ok(BridgeId(id))
    }

    /// A bridge by id.
    pub fn get(&self, id: BridgeId) -> Option<&BridgeDesc> {
        self.bridges.get(id.0 as usize)
    }

    /// The topmost bridge on the path from `parent` to the root that fails to
    /// isolate (no full ACS, or a PCIe-to-PCI bridge), if any. Every device below it
    /// shares one group.
    pub fn isolation_point(&self, parent: Option<BridgeId>) -> Result<Option<BridgeId>> {
        let mut top = None;
        let mut cur = parent;
        let mut steps = 0usize;
        while let Some(id) = cur {
            let b = self.get(id).ok_or(Error::NotFound("bridge"))?;
            if !b.isolates() {
                top = Some(id);
            }
            cur = b.parent;
            steps += 1;
            if steps > self.bridges.len() {
                return Err(Error::Invalid("bridge cycle"));
            }
        }
        Ok(top)
    }

    /// The group key of a PCI or platform device under the topology rules.
    pub fn group_key(&self, dev: &DeviceInfo) -> Result<GroupKey> {
        let iommu = dev.desc.iommu;
        match &dev.desc.bus {
            BusAddress::Platform { .. } => Ok(GroupKey::Single(iommu, dev.id.0)),
            BusAddress::Pci {
                bdf,
                parent,
                multifunction,
                acs,
                ..
            } => {
                if let Some(b) = self.isolation_point(*parent)? {
                    Ok(GroupKey::Bridge(iommu, b))
                } else if *multifunction && !*acs {
                    Ok(GroupKey::Slot(iommu, bdf.segment, bdf.bus, bdf.dev))
                } else {
                    Ok(GroupKey::Single(iommu, dev.id.0))
                }
            }
        }
    }
}

/// Whether two PCI devices alias each other (either lists the other's BDF).
#[cfg_attr(not(feature = "std"), allow(dead_code))]
pub(crate) fn aliases(a: &DeviceInfo, b: &DeviceInfo) -> bool {
    let lists = |x: &DeviceInfo, y: Option<Bdf>| match (&x.desc.bus, y) {
        (BusAddress::Pci { dma_aliases, .. }, Some(bdf)) => dma_aliases.contains(&bdf),
        _ => false,
    };
    a.desc.iommu == b.desc.iommu && (lists(a, b.desc.bdf()) || lists(b, a.desc.bdf()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(parent: Option<BridgeId>, acs: Acs, kind: BridgeKind) -> BridgeDesc {
        BridgeDesc {
            bdf: Bdf::new(0, 1, 0),
            parent,
            kind,
            acs,
        }
    }

    #[test]
    fn isolation_point_is_the_topmost_non_isolating_bridge() {
        let mut t = Topology::new();
        let root_ok = t
            .add_bridge(port(None, Acs::REQUIRED, BridgeKind::RootPort))
            .unwrap();
        let root_bad = t
            .add_bridge(port(None, Acs::SV, BridgeKind::RootPort))
            .unwrap();
        let sw_ok = t
            .add_bridge(port(
                Some(root_bad),
                Acs::REQUIRED,
                BridgeKind::SwitchDownstream,
            ))
            .unwrap();
        let sw_bad = t
            .add_bridge(port(Some(root_ok), Acs::NONE, BridgeKind::SwitchDownstream))
            .unwrap();
        let pci = t
            .add_bridge(port(Some(sw_bad), Acs::REQUIRED, BridgeKind::PcieToPci))
            .unwrap();
        let legacy = t
            .add_bridge(port(Some(root_ok), Acs::NONE, BridgeKind::PcieToPci))
            .unwrap();
        assert_eq!(t.isolation_point(None).unwrap(), None);
        assert_eq!(t.isolation_point(Some(root_ok)).unwrap(), None);
        assert_eq!(t.isolation_point(Some(sw_ok)).unwrap(), Some(root_bad));
        assert_eq!(t.isolation_point(Some(pci)).unwrap(), Some(sw_bad));
        assert_eq!(t.isolation_point(Some(legacy)).unwrap(), Some(legacy));
        assert!(
            t.add_bridge(port(Some(BridgeId(99)), Acs::NONE, BridgeKind::RootPort))
                .is_err()
        );
        assert!(t.isolation_point(Some(BridgeId(99))).is_err());
        assert!(!Acs(Acs::SV.0 | Acs::RR.0 | Acs::CR.0).isolates());
        assert!(Acs(0xffff).isolates());
    }
}
