//! The DMA API over IOMMU domains (reference `software.md` §1.4, §2, §3.4, §4, §5;
//! seeds 000 and 003): map/unmap of pages and scatterlists, coherent and
//! non-contiguous allocations, swiotlb bouncing, strict and lazy (flush-queue)
//! invalidation and the live strict → lazy switch.
//!
//! Layers, bottom up: [`layout`] (pure mapping arithmetic), [`swiotlb`] (bounce
//! pool), [`ops`] (the domain and IOVA-allocator traits consumed), [`cookie`]
//! (the strict/lazy protocol over `iommu-iova`'s flush queue, model-checked with
//! loom), [`device`] (the per-device API), [`bind`] (the real crates behind the
//! traits: iommu-core domains and `iommu_iova::IovaDomain`). [`mock`] is a
//! software domain with a modelled IOTLB for tests and benchmarks.

pub mod bind;
pub mod cookie;
pub mod device;
pub mod dir;
pub mod error;
pub mod layout;
pub mod mock;
pub mod ops;
pub mod swiotlb;
mod sync;

pub use cookie::{CookieFlushQueue, DmaCookie, FQ_DEFAULT_SIZE, FQ_DEFAULT_TIMEOUT_NS};
pub use device::{DeviceConfig, DmaAlloc, DmaAttrs, DmaDevice, SgMapping};
pub use dir::DmaDirection;
pub use error::{Error, Result};
pub use layout::{DmaSegment, Granule, SgEntry};
pub use ops::{DmaDomain, IovaAllocator};
pub use swiotlb::Swiotlb;
