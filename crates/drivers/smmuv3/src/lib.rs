//! ARM SMMUv3 driver reaching the hardware only through [`iommu_types::Mmio`] and
//! [`iommu_types::PhysMem`] (`ARCHITECTURE.md`; formats in `smmuv3.md`).
//!
//! Layers, bottom to top:
//! * formats, this driver's own reading of the specification: [`field`], [`regs`],
//!   [`ste`], [`cd`], [`cmd`], [`event`];
//! * pure logic: [`queue`] pointer arithmetic, the hitless entry writer
//!   ([`writer`]), ASID/VMID allocators ([`ids`]), range-invalidation planning
//!   ([`inv`]).
#![no_std]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod cd;
pub mod cmd;
pub mod cmdq;
pub mod domain;
pub mod driver;
mod error;
pub mod event;
pub mod evtq;
pub mod field;
pub mod ids;
pub mod inv;
mod lock;
pub mod queue;
pub mod regs;
pub mod smmu;
pub mod ste;
pub mod strtab;
pub mod writer;

pub use driver::SmmuDriver;
pub use error::{Error, Result};
pub use smmu::{DriverConfig, Smmu, StrtabPref, SyncPref};
