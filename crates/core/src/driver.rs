//! The driver-facing traits: what an IOMMU driver implements for the core (Linux
//! `iommu_ops`) and for each domain (Linux `iommu_domain_ops`). Reference
//! `software.md` §6.2 (attach contract, device at allocation), §6.4 (capabilities,
//! `enforce_cache_coherency`), §6.6 (reserved regions), §6.7 (gather and flush ops).
//!
//! All traits are object-safe and `Send + Sync`: the core keeps drivers as
//! `Arc<dyn IommuDriver>` and domains as `Arc<dyn PagingDomainOps>` /
//! `Arc<dyn DomainOps>`. A driver recovers its own domain type from a `&dyn
//! DomainOps` (for example a nesting parent) by upcasting to `&dyn Any` and
//! downcasting, since [`DomainOps`] has `Any` as a supertrait.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::any::Any;

use io_pgtable::{FreedTable, IotlbGather};
use iommu_types::{Iova, PgSizeBitmap, PhysAddr, Prot};

use crate::caps::Capability;
use crate::device::DeviceInfo;
use crate::domain_type::DomainType;
use crate::error::{Error, Result};
use crate::resv::ReservedRegion;

/// What kind of domain a driver object implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DomainKind {
    /// Refuses all DMA (SMMUv3: abort STE).
    Blocked,
    /// Passes DMA through untranslated (SMMUv3: bypass STE).
    Identity,
    /// Translates through page tables (a [`PagingDomainOps`]).
    Paging,
    /// A user stage 1 nested on a paging parent.
    Nested,
}

/// The IOVA window a paging domain can translate (Linux `iommu_domain_geometry`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// First translatable IOVA.
    pub aperture_start: u64,
    /// Last translatable IOVA (inclusive).
    pub aperture_end: u64,
    /// DMA outside the aperture faults (so IOVAs must stay inside it).
    pub force_aperture: bool,
}

impl Geometry {
    /// An aperture of `ias` input-address bits starting at 0, enforced.
    pub const fn from_ias(ias: u32) -> Self {
        let end = if ias >= 64 {
            u64::MAX
        } else {
            (1u64 << ias) - 1
        };
        Self {
            aperture_start: 0,
            aperture_end: end,
            force_aperture: true,
        }
    }

    /// Whether `[iova, iova + size)` lies inside the aperture (`size` > 0).
    pub const fn contains(&self, iova: u64, size: u64) -> bool {
        if size == 0 {
            return false;
        }
        match iova.checked_add(size - 1) {
            Some(last) => iova >= self.aperture_start && last <= self.aperture_end,
            None => false,
        }
    }
}

/// Flags of a paging-domain allocation (Linux `IOMMU_HWPT_ALLOC_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct AllocFlags(pub u32);

impl AllocFlags {
    /// No flags.
    pub const NONE: AllocFlags = AllocFlags(0);
    /// The domain will be a stage-2 parent of nested domains.
    pub const NEST_PARENT: AllocFlags = AllocFlags(1 << 0);
    /// The domain must support dirty tracking.
    pub const DIRTY_TRACKING: AllocFlags = AllocFlags(1 << 1);
    /// The domain must be attachable to PASIDs.
    pub const PASID: AllocFlags = AllocFlags(1 << 3);

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: AllocFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// `self` with the flags of `other` added.
    pub const fn union(self, other: AllocFlags) -> AllocFlags {
        AllocFlags(self.0 | other.0)
    }

    /// `self` without the flags of `other`.
    pub const fn without(self, other: AllocFlags) -> AllocFlags {
        AllocFlags(self.0 & !other.0)
    }
}

/// How a driver wants its devices grouped (Linux `device_group` op).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum GroupHint {
    /// PCI devices by topology (ACS, aliases, multifunction), platform devices one
    /// group each (Linux `pci_device_group` / `generic_device_group`).
    #[default]
    Topology,
    /// One group per device whatever the topology.
    PerDevice,
    /// One group per IOMMU instance (`generic_single_device_group`).
    PerInstance,
}

/// Raw driver data describing a nested (user stage-1) domain, typed by its uAPI
/// data type (iommufd `IOMMU_HWPT_DATA_*`). Interpreted by the iommufd issue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NestedData<'a> {
    /// `IOMMU_HWPT_DATA_*` (for example 2 = ARM_SMMUV3, two STE words).
    pub data_type: u32,
    /// The user's bytes.
    pub data: &'a [u8],
}

/// What a driver reports about an IOMMU instance for user space (iommufd
/// `GET_HW_INFO`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct HwInfo {
    /// `IOMMU_HW_INFO_TYPE_*` (2 = ARM_SMMUV3).
    pub hw_type: u32,
    /// The driver's raw info struct (for SMMUv3 `idr[6]`, `iidr`, `aidr`).
    pub data: Vec<u8>,
    /// `IOMMU_HW_CAP_*` bits.
    pub capabilities: u64,
    /// log2 of the number of PASIDs (0 = none).
    pub max_pasid_log2: u8,
}

/// Operations every domain object of a driver provides (Linux `iommu_domain_ops`
/// minus the paging ones, which are in [`PagingDomainOps`]).
pub trait DomainOps: Any + Send + Sync {
    /// What the domain does.
    fn kind(&self) -> DomainKind;

    /// Make `dev` translate through this domain, replacing whatever it used before
    /// (there is no detach: the core always attaches another domain instead).
    ///
    /// Contract: `Err(Error::Incompatible)` (EINVAL) means "this domain cannot serve
    /// this device" and leaves the device on its previous domain; the caller may try
    /// another domain. `NoMemory`, `NoSpace`, `Busy`, `NoDevice` are hard failures,
    /// and must also leave the device on its previous domain. The domain must not
    /// keep a reference to `dev` beyond what it needs to invalidate the device's
    /// caches (ATC) while attached.
    fn attach_dev(&self, dev: &DeviceInfo) -> Result<()>;

    /// Make every device attached now or later snoop the CPU caches (block
    /// No-Snoop). Permanent once it returned true; a device that cannot comply must
    /// then be refused at attach with `Error::Incompatible`. Returns false when the
    /// domain cannot provide it (the default).
    fn enforce_cache_coherency(&self) -> bool {
        false
    }
}

/// Operations of a translating (paging) domain.
///
/// Invalidation contract:
/// * [`PagingDomainOps::unmap_pages`] only clears entries and records them in the
///   gather (the driver may sync early when the gather cannot absorb a page, and
///   skips per-page invalidation when `gather.queued`).
/// * [`PagingDomainOps::iotlb_sync`] invalidates the gathered range, waits for
///   completion and **then frees the gather's freelist itself** (the table memory
///   belongs to the driver's page-table allocator); on return the freelist is empty.
///   If the invalidation failed, it must keep (leak) the tables rather than free
///   memory a walker may still cache, and return the error.
/// * In lazy mode the flush queue keeps the freelist of a queued gather and, after a
///   [`PagingDomainOps::flush_iotlb_all`] that started after the unmap has completed,
///   hands it back through [`PagingDomainOps::free_tables`].
pub trait PagingDomainOps: DomainOps {
    /// Page sizes this domain can map.
    fn pgsize_bitmap(&self) -> PgSizeBitmap;

    /// The translatable IOVA window.
    fn geometry(&self) -> Geometry;

    /// Map `pgcount` pages of `pgsize` bytes at `iova` to `paddr` onwards.
    ///
    /// Returns the number of bytes mapped (a prefix, possibly short) together with
    /// the outcome. `pgsize` is in [`PagingDomainOps::pgsize_bitmap`] and both
    /// addresses are aligned to it (the core guarantees this). Mapping over a valid
    /// entry fails with `Error::Exists` and changes nothing at that page.
    fn map_pages(
        &self,
        iova: Iova,
        paddr: PhysAddr,
        pgsize: u64,
        pgcount: u64,
        prot: Prot,
    ) -> (u64, Result<()>);

    /// Unmap up to `pgcount` pages of `pgsize` bytes at `iova`, recording what was
    /// removed in `gather`. Returns the bytes unmapped (0 if nothing was mapped at
    /// `iova`; a block larger than `pgsize` is not split and also gives 0).
    fn unmap_pages(&self, iova: Iova, pgsize: u64, pgcount: u64, gather: &mut IotlbGather) -> u64;

    /// Invalidate what `gather` recorded, wait for completion, then free its
    /// freelist (see the trait documentation).
    fn iotlb_sync(&self, gather: &mut IotlbGather) -> Result<()>;

    /// Make new mappings of `[iova, iova + size)` visible (for IOMMUs that cache
    /// non-present entries). The default does nothing.
    fn iotlb_sync_map(&self, iova: Iova, size: u64) -> Result<()> {
        let _ = (iova, size);
        Ok(())
    }

    /// Invalidate every translation of the domain and wait for completion (the
    /// flush-queue flush).
    fn flush_iotlb_all(&self) -> Result<()>;

    /// Free table pages whose invalidation has completed (handed back by a flush
    /// queue after [`PagingDomainOps::flush_iotlb_all`]).
    fn free_tables(&self, tables: Vec<FreedTable>);

    /// The physical address `iova` translates to, if mapped.
    fn iova_to_phys(&self, iova: Iova) -> Option<PhysAddr>;

    /// Turn hardware dirty tracking on or off. The default: not supported.
    fn set_dirty_tracking(&self, enable: bool) -> Result<()> {
        let _ = enable;
        Err(Error::NotSupported("dirty tracking"))
    }

    /// Report dirty pages of `[iova, iova + size)` to `dirty(iova, len)`, clearing
    /// the dirty state unless `keep` is set. The default: not supported.
    fn read_and_clear_dirty(
        &self,
        iova: Iova,
        size: u64,
        keep: bool,
        dirty: &mut dyn FnMut(Iova, u64),
    ) -> Result<()> {
        let _ = (iova, size, keep, dirty);
        Err(Error::NotSupported("dirty tracking"))
    }
}

/// An IOMMU driver instance as the core uses it (Linux `iommu_ops`). One object
/// per IOMMU instance.
pub trait IommuDriver: Send + Sync {
    /// A short name for reports ("smmuv3.0").
    fn name(&self) -> &str;

    /// Whether the capability holds for `dev` behind this IOMMU.
    fn capable(&self, dev: &DeviceInfo, cap: Capability) -> bool;

    /// Take a new device under this IOMMU (validate StreamIDs, allocate per-device
    /// state). Until a domain is attached the device must not translate (abort).
    fn probe_device(&self, dev: &DeviceInfo) -> Result<()>;

    /// The device is going away: stop its DMA (blocked) and drop its state. Called
    /// exactly once after a successful probe; the device is no longer attached to
    /// any domain from the core's point of view.
    fn release_device(&self, dev: &DeviceInfo);

    /// How to group this device. The default follows the PCI topology.
    fn device_group(&self, dev: &DeviceInfo) -> GroupHint {
        let _ = dev;
        GroupHint::Topology
    }

    /// A default-domain type the driver requires for `dev` (quirks), if any.
    fn def_domain_type(&self, dev: &DeviceInfo) -> Option<DomainType> {
        let _ = dev;
        None
    }

    /// The device's reserved regions (MSI window, firmware direct maps, SW-MSI).
    fn get_resv_regions(&self, dev: &DeviceInfo) -> Vec<ReservedRegion> {
        let _ = dev;
        Vec::new()
    }

    /// Allocate a paging domain on the IOMMU instance serving `dev`.
    ///
    /// `dev` only selects the instance and its properties (page sizes, address
    /// sizes, PASID support): the domain must not store it, because it may be
    /// attached to other compatible devices and outlive `dev` (seed 000).
    fn domain_alloc_paging(
        &self,
        dev: &DeviceInfo,
        flags: AllocFlags,
    ) -> Result<Arc<dyn PagingDomainOps>>;

    /// Allocate a nested domain on `parent` (a NEST_PARENT paging domain of this
    /// driver). The default: not supported.
    fn domain_alloc_nested(
        &self,
        dev: &DeviceInfo,
        parent: &dyn PagingDomainOps,
        data: NestedData<'_>,
    ) -> Result<Arc<dyn DomainOps>> {
        let _ = (dev, parent, data);
        Err(Error::NotSupported("nested domains"))
    }

    /// The driver's static identity domain, if it supports passthrough.
    fn identity_domain(&self) -> Option<Arc<dyn DomainOps>> {
        None
    }

    /// The driver's static blocked domain. Without one the core uses an empty
    /// paging domain to block DMA.
    fn blocked_domain(&self) -> Option<Arc<dyn DomainOps>> {
        None
    }

    /// Hardware information for user space, if the driver reports any.
    fn hw_info(&self, dev: &DeviceInfo) -> Option<HwInfo> {
        let _ = dev;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_bounds() {
        let g = Geometry::from_ias(48);
        assert_eq!(g.aperture_end, (1 << 48) - 1);
        assert!(g.contains(0, 4096));
        assert!(g.contains((1 << 48) - 4096, 4096));
        assert!(!g.contains((1 << 48) - 4096, 8192));
        assert!(!g.contains(u64::MAX, 2));
        assert!(!g.contains(0, 0));
        assert_eq!(Geometry::from_ias(64).aperture_end, u64::MAX);
    }

    #[test]
    fn alloc_flags() {
        let f = AllocFlags::PASID.union(AllocFlags::NEST_PARENT);
        assert!(f.contains(AllocFlags::PASID));
        assert!(!f.without(AllocFlags::PASID).contains(AllocFlags::PASID));
        assert_eq!(AllocFlags::PASID.0, 8);
    }
}
