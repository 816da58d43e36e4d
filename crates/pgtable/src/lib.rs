//! Software IO page-table formats written into [`iommu_types::PhysMem`]
//! (reference `lpae.md`; Linux `io-pgtable.h` / `io-pgtable-arm.c`).
//!
//! * [`IoPgtable`]: the object-safe interface the IOMMU core, the drivers and the DMA
//!   layer use (`map_pages`, `unmap_pages`, `iova_to_phys`, dirty tracking, the
//!   hardware configuration values);
//! * [`lpae`]: the ARM LPAE stage-1/stage-2 format ([`LpaeTable`]);
//! * [`FlushOps`] / [`IotlbGather`]: the TLB-maintenance interface.
#![no_std]

extern crate alloc;

mod error;
mod gather;
pub mod lpae;

pub use error::{Error, Result};
pub use gather::{FlushOps, FreedTable, IotlbGather, NoFlush};
pub use lpae::{Granule, HwConfig, LpaeConfig, LpaeTable, Quirks, Stage};

use iommu_types::{Iova, PgSizeBitmap, PhysAddr, Prot};

/// A page table as the IOMMU layers above see it (Linux `io_pgtable_ops`).
///
/// Object safe: domains hold it as `Box<dyn IoPgtable>` / `Arc<dyn IoPgtable>`.
pub trait IoPgtable: Send + Sync {
    /// Map `pgcount` pages of `pgsize` bytes (one size of [`IoPgtable::pgsize_bitmap`])
    /// from `iova` to `paddr`, both `pgsize`-aligned.
    ///
    /// Returns the bytes mapped and the outcome. Errors: `EINVAL` for a bad page size,
    /// misalignment or a `prot` without READ and WRITE; `ERANGE` when the range is
    /// outside the input or output size; `EEXIST` when a leaf already maps part of the
    /// range. In all these cases nothing is changed and 0 bytes are reported. Mapping a
    /// block where a next-level table sits frees that table (after `tlb_flush_walk`).
    /// Only a failure to allocate a next-level table (`ENOMEM`), or a concurrent caller
    /// breaking the no-overlap rule, can stop a multi-table range part way; the bytes
    /// mapped before the failure are then reported for the caller to unmap.
    fn map_pages(
        &self,
        iova: Iova,
        paddr: PhysAddr,
        pgsize: u64,
        pgcount: u64,
        prot: Prot,
    ) -> (u64, Result<()>);

    /// Unmap `pgcount` entries of `pgsize` bytes from `iova`; returns the bytes
    /// unmapped. Stops at the first empty entry; refuses (0 bytes, nothing changed) to
    /// unmap part of a larger block. Removing a table-level entry removes the whole
    /// sub-table: strict gathers get `tlb_flush_walk` and the pages are freed at once;
    /// queued gathers get the pages on their `freelist`. Either way the range is
    /// recorded with [`IotlbGather::add_table`]. Leaves go through
    /// [`FlushOps::tlb_add_page`] unless the gather is queued.
    fn unmap_pages(&self, iova: Iova, pgsize: u64, pgcount: u64, gather: &mut IotlbGather) -> u64;

    /// The output address `iova` translates to, or `None` if it is not mapped.
    fn iova_to_phys(&self, iova: Iova) -> Option<PhysAddr>;

    /// Call `record(leaf_iova, leaf_size)` for every dirty leaf overlapping
    /// `[iova, iova + size)` and, when `clear`, mark it clean again (hardware dirty
    /// tracking; needs the ARM_HD quirk).
    fn read_and_clear_dirty(
        &self,
        iova: Iova,
        size: u64,
        clear: bool,
        record: &mut dyn FnMut(Iova, u64),
    ) -> Result<()>;

    /// Page sizes this table can map.
    fn pgsize_bitmap(&self) -> PgSizeBitmap;

    /// Input address size in bits.
    fn ias(&self) -> u32;

    /// Output address size in bits.
    fn oas(&self) -> u32;

    /// Register values a driver programs for this table (never computed by hand).
    fn hw_config(&self) -> HwConfig;

    /// Return table pages from a gather's freelist to memory, once the invalidation
    /// that covers them has completed.
    fn free_tables(&self, tables: &[FreedTable]) -> Result<()>;
}
