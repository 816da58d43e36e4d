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

/// Model configuration for tests where several threads drive the SMMU at once.
/// The sanitizer cannot tell which CPU issued a CMD_SYNC: unrelated syncs of other
/// threads may complete between one thread's descriptor store and its own
/// invalidation (a preempted thread can see dozens), which is legal. So the
/// per-use rule is relaxed to [`MULTI_CPU_GRACE`] syncs, and
/// [`Rig::sanitizer_silent`]'s final audit (every thread done and synced) catches
/// any entry that was never invalidated, whatever the sync count.
pub fn multi_cpu() -> SmmuConfig {
    SmmuConfig::builder()
        .stale_grace_syncs(MULTI_CPU_GRACE)
        .build()
}

/// See [`multi_cpu`]: no sync count is safe against preemption, so the per-use
/// rule is off and the audit decides.
pub const MULTI_CPU_GRACE: u32 = u32::MAX;

impl Rig {
    /// No sanitizer report so far, and none from an audit now (the caller is at a
    /// quiescent point: every update was followed by its invalidation and sync).
    pub fn sanitizer_silent(&self) {
        let audit = self.hw.sanitizer_audit();
        assert!(audit.is_empty(), "sanitizer audit: {audit:#?}");
        let r = self.hw.sanitizer_reports();
        assert!(r.is_empty(), "sanitizer reports: {r:#?}");
    }

    /// A page of memory with a recognisable pattern.
    pub fn buffer(&self, bytes: u64, fill: u8) -> iommu_types::PhysAddr {
        let pa = self.mem.alloc_pages(bytes, bytes.max(4096)).unwrap();
        self.mem.fill_bytes(pa, bytes, fill).unwrap();
        pa
    }
}
