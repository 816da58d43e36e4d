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
