//! Shared fixtures: a model SMMU in simulated memory and a probed driver.
#![allow(dead_code)]

use std::sync::Arc;

use iommu_memory::SimMemory;
use iommu_types::{Mmio, PhysMem};
use smmuv3::{DriverConfig, Smmu};
use smmuv3_model::{Smmu as Model, SmmuConfig};

pub struct Rig {
    pub mem: Arc<SimMemory>,
    pub hw: Arc<Model>,
    pub drv: Arc<Smmu>,
}

pub fn rig_with(hw_cfg: SmmuConfig, drv_cfg: DriverConfig) -> Rig {
    let mem = Arc::new(SimMemory::new());
    let hw = Arc::new(Model::new(hw_cfg, mem.clone() as Arc<dyn PhysMem>));
    let drv = Smmu::probe(
        hw.clone() as Arc<dyn Mmio>,
        mem.clone() as Arc<dyn PhysMem>,
        drv_cfg,
    )
    .expect("probe");
    Rig { mem, hw, drv }
}

pub fn rig() -> Rig {
    rig_with(SmmuConfig::default(), own_asids())
}

/// Driver config with a private ASID space (tests run in parallel).
pub fn own_asids() -> DriverConfig {
    DriverConfig {
        asids: Some(Arc::new(smmuv3::ids::IdAllocator::new("ASID", 16))),
        ..Default::default()
    }
}

impl Rig {
    pub fn sanitizer_silent(&self) {
        let r = self.hw.sanitizer_reports();
        assert!(r.is_empty(), "sanitizer reports: {r:#?}");
    }

    /// Like [`Rig::sanitizer_silent`] for tests with device traffic running *while*
    /// entries are rewritten. The architecture lets the SMMU keep using a cached STE/CD
    /// until the CFGI + CMD_SYNC that follows the store completes, so a translation in
    /// that window legitimately uses an entry that differs from memory; the model's
    /// `StaleConfig` check flags it anyway (reported to the model's owner). Every other
    /// report (torn updates, ASID/TLB conflicts, stale TLB use) must be absent.
    pub fn sanitizer_silent_concurrent(&self) {
        let r: Vec<_> = self
            .hw
            .sanitizer_reports()
            .into_iter()
            .filter(|r| !matches!(r, smmuv3_model::Report::StaleConfig { .. }))
            .collect();
        assert!(r.is_empty(), "sanitizer reports: {r:#?}");
    }

    /// A page of memory with a recognisable pattern.
    pub fn buffer(&self, bytes: u64, fill: u8) -> iommu_types::PhysAddr {
        let pa = self.mem.alloc_pages(bytes, bytes.max(4096)).unwrap();
        self.mem.fill_bytes(pa, bytes, fill).unwrap();
        pa
    }
}
