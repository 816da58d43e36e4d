//! The DMA API over IOMMU domains (reference `software.md` §1.4, §2, §3.4, §4, §5;
//! seeds 000 and 003): map/unmap of pages and scatterlists, coherent and
//! non-contiguous allocations, swiotlb bouncing, strict and lazy (flush-queue)
//! invalidation and the live strict → lazy switch.
#![cfg_attr(not(test), warn(missing_docs))]

pub mod dir;
pub mod error;
pub mod layout;

pub mod swiotlb;

pub use dir::DmaDirection;
pub use error::{Error, Result};
