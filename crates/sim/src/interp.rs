//! The scenario interpreter: executes a checked [`Scenario`] on a simulated platform
//! and evaluates its expectations (`docs/scenarios.md`, "Meaning").

use crate::error::{Error, Result};
use crate::scenario::{Pos, Scenario};
use serde::Serialize;

/// A failed expectation or an action that could not be carried out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// Where.
    pub pos: Pos,
    /// Why, in words.
    pub message: String,
}

/// The result of executing one scenario.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioOutcome {
    /// File name.
    pub file: String,
    /// Statements executed.
    pub executed: usize,
    /// Expectations evaluated.
    pub expectations: usize,
    /// Failures; execution stops at the first one.
    pub failures: Vec<Failure>,
}

impl ScenarioOutcome {
    /// Whether every expectation held.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Execute a scenario.
pub fn run_scenario(_s: &Scenario) -> Result<ScenarioOutcome> {
    Err(Error::Unavailable(
        "executing scenarios needs the SMMUv3 driver, the IOMMU core and the DMA API wired into the simulator",
    ))
}

/// Execute a scenario and describe the final STEs, CDs and page tables field by field.
pub fn inspect_scenario(_s: &Scenario) -> Result<String> {
    Err(Error::Unavailable(
        "inspecting scenarios needs the SMMUv3 driver, the IOMMU core and the DMA API wired into the simulator",
    ))
}
