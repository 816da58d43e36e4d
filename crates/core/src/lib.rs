//! IOMMU core: devices, groups, domain types, attach rules, default-domain policy, capabilities, DMA ownership and the driver traits
//!
//! Skeleton: filled in by its issue.
#![no_std]
