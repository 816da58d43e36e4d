//! Basic vocabulary of iommu-stack, shared by every other crate.
//!
//! * typed addresses ([`Iova`], [`PhysAddr`], [`Ipa`]) so that an IOVA can never be
//!   passed where a physical address is expected;
//! * [`Prot`], the Linux `IOMMU_*` protection flags (reference: `lpae.md` §6,
//!   `software.md` §1.1);
//! * [`PgSizeBitmap`], the set of page sizes a page-table format can map;
//! * [`Errno`] and [`Error`], errno-style error kinds as the Linux API uses them;
//! * the boundary traits of `ARCHITECTURE.md`: [`Mmio`] (registers), [`PhysMem`]
//!   (simulated physical memory holding tables, queues and DMA buffers), [`Clock`]
//!   (virtual or real time) and [`CpuId`] (which simulated CPU runs the caller).
//!
//! The crate is `#![no_std]`; the `std` feature (on by default) adds a thread-local
//! CPU-id source.
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod addr;
mod clock;
mod cpu;
mod error;
mod mem;
mod mmio;
mod pgsize;
mod prot;

pub use addr::{Iova, Ipa, PhysAddr};
pub use clock::{Clock, VirtualClock};
#[cfg(feature = "std")]
pub use cpu::ThreadCpuId;
pub use cpu::{CpuId, FixedCpuId};
pub use error::{Errno, Error, Result};
pub use mem::{PhysMem, PhysMemExt};
pub use mmio::Mmio;
pub use pgsize::PgSizeBitmap;
pub use prot::Prot;

/// 4 KiB.
pub const SZ_4K: u64 = 1 << 12;
/// 16 KiB.
pub const SZ_16K: u64 = 1 << 14;
/// 64 KiB.
pub const SZ_64K: u64 = 1 << 16;
/// 2 MiB.
pub const SZ_2M: u64 = 1 << 21;
/// 32 MiB.
pub const SZ_32M: u64 = 1 << 25;
/// 512 MiB.
pub const SZ_512M: u64 = 1 << 29;
/// 1 GiB.
pub const SZ_1G: u64 = 1 << 30;
/// 4 GiB.
pub const SZ_4G: u64 = 1 << 32;
