//! Test helpers shared by the crates of iommu-stack (dev-dependency only).
//!
//! * [`lpae`]: build ARM LPAE tables from raw bits and decode them by hand;
//! * [`reference`](crate::reference): a plain `BTreeMap` reference IOMMU used as an oracle;
//! * [`smmu`]: build SMMUv3 stream tables, CDs and queue entries from raw bits;
//! * [`mmio`]: a recording [`iommu_types::Mmio`] wrapper.

pub mod lpae;
pub mod mmio;
pub mod reference;
pub mod smmu;
