//! ARM VMSAv8-64 long-descriptor (LPAE) IO page tables, stage 1 and stage 2, with
//! 4K/16K/64K granules (reference `lpae.md`).
//!
//! * [`config`]: what a caller asks for and the validated [`Geometry`] (§3, §4);
//! * [`pte`]: descriptor bits and the `Prot` translation (§1, §2, §6);
//! * [`hwcfg`]: TTBR/TCR/MAIR and VTTBR/VTCR values (§4.3, §5);
//! * [`table`]: [`LpaeTable`], the table in `PhysMem` (§6);
//! * `walk_cache`: the table-address cache that lets map/unmap skip the descent.

pub mod config;
pub mod hwcfg;
pub mod pte;
pub mod table;
mod walk_cache;

pub use config::{Geometry, Granule, LpaeConfig, Quirks, Stage};
pub use hwcfg::{
    Cacheability, HwConfig, S1HwConfig, S2HwConfig, Shareability, Tcr, Vtcr, WalkAttrs,
};
pub use pte::Pte;
pub use table::LpaeTable;
