//! An executable ARM SMMUv3 hardware model driven through Mmio registers and PhysMem structures
//!
//! Skeleton: filled in by its issue.
#![no_std]
