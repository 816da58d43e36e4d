//! ARM SMMUv3 driver reaching the hardware only through Mmio and PhysMem
//!
//! Skeleton: filled in by its issue.
#![no_std]
