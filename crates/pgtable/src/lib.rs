//! Software IO page-table formats written into [`iommu_types::PhysMem`]
//! (reference `lpae.md`; Linux `io-pgtable.h` / `io-pgtable-arm.c`).
//!
//! Skeleton: the TLB-maintenance interface ([`FlushOps`], [`IotlbGather`]) is fixed
//! here first because the IOMMU core and the drivers build on it; the formats follow.
#![no_std]

extern crate alloc;

mod gather;

pub use gather::{FlushOps, FreedTable, IotlbGather, NoFlush};
