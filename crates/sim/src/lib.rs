//! Platform simulator of iommu-stack: the scenario language, oracles, metrics and
//! reports (ARCHITECTURE.md, "iommu-sim").
//!
//! * [`scenario`]: the scenario language (grammar in `docs/scenarios.md`): parser,
//!   AST and static checks.
//! * [`oracle`]: the shadow of what devices were given, which judges every access
//!   (stale windows, malicious successes).
//! * [`metrics`], [`stats`], [`cost`]: what a run reports and the modelled hardware
//!   cost table.

pub mod cost;
mod error;
pub mod metrics;
pub mod oracle;
pub mod scenario;
pub mod stats;

pub use error::{Error, Result};
