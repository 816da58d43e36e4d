//! Workload configuration: which device models run, under which policy, for how long,
//! on how many simulated CPUs (issue 7, "Workloads").

use crate::cost::CostTable;
use crate::error::{Error, Result};
use serde::Serialize;

/// Which device models generate DMA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum WorkloadKind {
    /// A NIC: RX/TX rings of 2 KiB buffers mapped and unmapped per packet.
    Nic,
    /// An NVMe-like controller: scatter-gather reads and writes.
    Nvme,
    /// A GPU-like device: large coherent and non-contiguous buffers.
    Gpu,
    /// NIC, NVMe and GPU together.
    Mixed,
    /// A NIC plus a malicious device that replays IOVAs after unmap and probes memory
    /// next to its buffers.
    Attack,
}

impl WorkloadKind {
    /// All kinds, in the order `--help` lists them.
    pub const ALL: [WorkloadKind; 5] = [
        WorkloadKind::Nic,
        WorkloadKind::Nvme,
        WorkloadKind::Gpu,
        WorkloadKind::Mixed,
        WorkloadKind::Attack,
    ];

    /// Command-line name.
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Nic => "nic",
            WorkloadKind::Nvme => "nvme",
            WorkloadKind::Gpu => "gpu",
            WorkloadKind::Mixed => "mixed",
            WorkloadKind::Attack => "attack",
        }
    }
}

/// Invalidation policy of the default domains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum PolicyChoice {
    /// `DMA`: invalidate and sync before every IOVA is freed.
    Strict,
    /// `DMA_FQ`: queue IOVAs, flush in batches (timer or full queue).
    Lazy,
    /// Start strict and switch DMA → DMA-FQ live halfway through.
    Switch,
}

impl PolicyChoice {
    /// Command-line name.
    pub fn name(self) -> &'static str {
        match self {
            PolicyChoice::Strict => "strict",
            PolicyChoice::Lazy => "lazy",
            PolicyChoice::Switch => "switch",
        }
    }
}

/// How long a run lasts.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Limit {
    /// This many DMA operations per simulated CPU (deterministic).
    Ops(u64),
    /// This much wall-clock time (not deterministic in the operation count).
    Seconds(f64),
}

/// A complete simulation request.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SimConfig {
    /// Device models.
    pub workload: WorkloadKind,
    /// Policy.
    pub policy: PolicyChoice,
    /// IOMMU page-table granule in bytes.
    pub granule: u64,
    /// CPU page size in bytes.
    pub cpu_page: u64,
    /// Simulated CPUs, each an OS thread.
    pub cpus: u32,
    /// Duration.
    pub limit: Limit,
    /// Seed of every random choice.
    pub seed: u64,
    /// SMMU TLB entries (0: no TLB).
    pub tlb: u32,
    /// Run the CPUs' threads in strict turns (one step each, fixed order) so that
    /// runs with several CPUs are reproducible too.
    pub lockstep: bool,
    /// Prices of hardware events.
    pub cost: CostTable,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            workload: WorkloadKind::Nic,
            policy: PolicyChoice::Strict,
            granule: 4096,
            cpu_page: 4096,
            cpus: 1,
            limit: Limit::Ops(20_000),
            seed: 1,
            tlb: 2048,
            lockstep: false,
            cost: CostTable::default(),
        }
    }
}

impl SimConfig {
    /// Check ranges; the error says which value is wrong and what is allowed.
    pub fn validate(&self) -> Result<()> {
        for (what, v) in [("granule", self.granule), ("cpu page", self.cpu_page)] {
            if !matches!(v, 0x1000 | 0x4000 | 0x10000) {
                return Err(Error::Config(format!(
                    "{what} must be 4k, 16k or 64k, got {v}"
                )));
            }
        }
        if self.tlb > 1 << 20 {
            return Err(Error::Config(format!(
                "tlb must be at most {} entries, got {}",
                1 << 20,
                self.tlb
            )));
        }
        if self.cpus == 0 || self.cpus > 64 {
            return Err(Error::Config(format!(
                "cpus must be 1..=64, got {}",
                self.cpus
            )));
        }
        match self.limit {
            Limit::Ops(0) => return Err(Error::Config("ops must be at least 1".into())),
            Limit::Seconds(s) if !(s > 0.0 && s <= 3600.0) => {
                return Err(Error::Config(format!(
                    "seconds must be in (0, 3600], got {s}"
                )));
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert!(SimConfig::default().validate().is_ok());
        let bad = [
            SimConfig {
                granule: 8192,
                ..Default::default()
            },
            SimConfig {
                cpu_page: 0,
                ..Default::default()
            },
            SimConfig {
                cpus: 0,
                ..Default::default()
            },
            SimConfig {
                limit: Limit::Ops(0),
                ..Default::default()
            },
            SimConfig {
                limit: Limit::Seconds(f64::NAN),
                ..Default::default()
            },
            SimConfig {
                limit: Limit::Seconds(-1.0),
                ..Default::default()
            },
        ];
        for c in bad {
            assert!(matches!(c.validate(), Err(Error::Config(_))), "{c:?}");
        }
    }
}
