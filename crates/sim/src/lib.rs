//! Platform simulator of iommu-stack: the scenario language, oracles, metrics and
//! reports (ARCHITECTURE.md, "iommu-sim").
//!
//! * [`scenario`]: the scenario language (grammar in `docs/scenarios.md`): parser,
//!   AST and static checks.
//! * [`oracle`]: the shadow of what devices were given, which judges every access
//!   (stale windows, malicious successes).
//! * [`metrics`], [`stats`], [`cost`]: what a run reports and the modelled hardware
//!   cost table.
//! * [`platform`]: the SMMUv3 models, the driver, the IOMMU core and the DMA API
//!   wired together; [`engine`]: device models and workloads on OS threads.
//! * [`workload`], [`mapbench`], [`micro`]: run configurations and benchmarks.
//! * [`interp`]: the scenario interpreter; [`report`]: the HTML report.

pub mod cost;
pub mod engine;
mod error;
pub mod inspect;
pub mod interp;
pub mod mapbench;
pub mod metrics;
pub mod micro;
pub mod oracle;
pub mod platform;
pub mod report;
pub mod scenario;
pub mod stats;
pub mod workload;

pub use error::{Error, Result};

pub use engine::simulate;
pub use mapbench::map_bench;
