//! Platform simulator of iommu-stack: the scenario language, oracles, metrics and
//! reports (ARCHITECTURE.md, "iommu-sim").
//!
//! * [`scenario`]: the scenario language (grammar in `docs/scenarios.md`): parser,
//!   AST and static checks.

pub mod scenario;
