//! IOMMU core: devices, isolation groups, domain types, attach rules, the
//! default-domain policy, capabilities, DMA ownership, reserved regions, fault
//! routing, and the traits IOMMU drivers implement (reference `software.md` §1 and
//! §6; seeds 000 and 004).
//!
//! * Driver-facing traits: [`IommuDriver`] (Linux `iommu_ops`), [`DomainOps`] and
//!   [`PagingDomainOps`] (Linux `iommu_domain_ops`). These build without `std`.
//! * With the `std` feature (default): the core object model, [`IommuCore`], which
//!   registers IOMMU instances and devices, forms groups from the topology, attaches
//!   domains to whole groups, arbitrates DMA ownership and applies the default-domain
//!   policy; and [`IommuDomain`], the core's handle of a domain used by the DMA
//!   layer, VFIO and iommufd.
//!
//! Decisions worth knowing when using the API:
//!
//! * **Freelists.** A driver's `iotlb_sync` frees the gather's table pages itself
//!   once the invalidation has completed (it owns the table allocator); the flush
//!   queue instead keeps the freelist of a queued gather and returns it through
//!   `free_tables` after a later `flush_iotlb_all`.
//! * **Two attach paths.** [`IommuCore::attach_group`] is Linux's
//!   `iommu_attach_group`: EBUSY while the group is user-owned or while any
//!   non-core domain (even the same one) is attached. A user owner (VFIO, iommufd)
//!   uses [`IommuCore::replace_group_domain`] with its [`DmaOwner`] token, where
//!   setting the current domain again is a no-op, as are all internal switches to
//!   the domain already in use.
//! * **Live DMA → DMA-FQ.** [`IommuCore::set_group_type`] calls the registered
//!   [`DmaCookie::init_flush_queue`] under the group lock and publishes DMA-FQ
//!   (release) only after it returned Ok; readers use
//!   [`IommuDomain::domain_type`] (acquire) once per unmap. Unlike Linux's live path
//!   it refuses groups with untrusted devices (EINVAL) or a device without
//!   DEFERRED_FLUSH (EOPNOTSUPP).
//! * **Allocation device.** [`IommuCore::domain_alloc_paging`] resolves the IOMMU
//!   instance from the device; the domain records only that instance.
#![no_std]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod caps;
#[cfg(feature = "std")]
mod core_impl;
mod device;
#[cfg(feature = "std")]
mod domain;
mod domain_type;
mod driver;
mod error;
mod fault;
#[cfg(feature = "std")]
mod group;
mod resv;
mod topology;

pub use caps::Capability;
#[cfg(feature = "std")]
pub use core_impl::IommuCore;
pub use device::{Bdf, BridgeId, BusAddress, DeviceDesc, DeviceId, DeviceInfo, GroupId, IommuId};
#[cfg(feature = "std")]
pub use domain::{DmaCookie, IommuDomain};
pub use domain_type::{
    Credentials, DOMAIN_BIT_DMA_API, DOMAIN_BIT_DMA_FQ, DOMAIN_BIT_NESTED, DOMAIN_BIT_PAGING,
    DOMAIN_BIT_PT, DefaultPolicy, DomainType, TypeRequest,
};
pub use driver::{
    AllocFlags, DomainKind, DomainOps, Geometry, GroupHint, HwInfo, IommuDriver, NestedData,
    PagingDomainOps,
};
pub use error::{Error, Result};
pub use fault::{FaultAccess, FaultKind, FaultObserver, FaultReport};
#[cfg(feature = "std")]
pub use fault::{FaultLog, FaultRouter};
#[cfg(feature = "std")]
pub use group::DmaOwner;
pub use resv::{DmaResvAction, ReservedRegion, ResvKind};
pub use topology::{Acs, BridgeDesc, BridgeKind, GroupKey, Topology};

pub use io_pgtable::{FreedTable, IotlbGather};
