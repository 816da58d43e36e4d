//! Platform simulator of iommu-stack: the scenario language, oracles, metrics and
//! reports (ARCHITECTURE.md, "iommu-sim").
//!
//! * [`scenario`]: the scenario language (grammar in `docs/scenarios.md`): parser,
//!   AST and static checks.
//! * [`oracle`]: the shadow of what devices were given, which judges every access
//!   (stale windows, malicious successes).
//! * [`metrics`], [`stats`], [`cost`]: what a run reports and the modelled hardware
//!   cost table.
//! * [`workload`], [`mapbench`], [`micro`]: run configurations and benchmarks.
//! * [`interp`]: the scenario interpreter; [`report`]: the HTML report.

pub mod cost;
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

/// Run a workload on a simulated platform; `progress(done, total)` is called now and
/// then from worker threads.
pub fn simulate(
    cfg: &workload::SimConfig,
    _progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<metrics::RunMetrics> {
    cfg.validate()?;
    Err(Error::Unavailable(
        "workloads need the SMMUv3 driver, the IOMMU core and the DMA API wired into the simulator",
    ))
}

/// Run `iommu bench map` (Linux `dma_map_benchmark`).
pub fn map_bench(cfg: &mapbench::MapBenchConfig) -> Result<mapbench::MapBenchResult> {
    cfg.validate()?;
    Err(Error::Unavailable(
        "the map benchmark needs the DMA API (iommu-dma) wired into the simulator",
    ))
}
