//! Shared fixture for the conformance tests: memory, a model and a rig.
#![allow(dead_code)]

use std::sync::Arc;

use iommu_memory::SimMemory;
use iommu_testkit::smmu::{CdBits, SmmuRig, SteBits, Tables, pte};
use iommu_types::PhysMem;
use smmuv3_model::{Smmu, SmmuConfig};

pub struct Fx {
    pub mem: Arc<SimMemory>,
    pub smmu: Arc<Smmu>,
}

std::thread_local! {
    static FAST: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run `body` twice: with the sanitizer (slow, checked path) and without it (the
/// fast path with the resolved-configuration cache and the micro-TLB).
pub fn both(body: impl Fn()) {
    FAST.with(|f| f.set(false));
    body();
    FAST.with(|f| f.set(true));
    body();
    FAST.with(|f| f.set(false));
}

impl Fx {
    pub fn new() -> Self {
        let fast = FAST.with(|f| f.get());
        Self::with(SmmuConfig::builder().sanitizer(!fast).build())
    }
    pub fn with(cfg: SmmuConfig) -> Self {
        let mem = Arc::new(SimMemory::new());
        let smmu = Arc::new(Smmu::new(cfg, mem.clone()));
        Self { mem, smmu }
    }
    pub fn rig(&self) -> SmmuRig<'_> {
        SmmuRig::linear(&*self.smmu, &*self.mem, 6, 6, 6)
    }
    pub fn m(&self) -> &dyn PhysMem {
        &*self.mem
    }
    /// A page of data memory.
    pub fn page(&self) -> u64 {
        self.mem.alloc_pages(4096, 4096).unwrap().0
    }
    pub fn alloc(&self, bytes: u64) -> u64 {
        self.mem
            .alloc_pages(bytes, bytes.next_power_of_two())
            .unwrap()
            .0
    }
    /// Linear CD table of 2^cd_max CDs.
    pub fn cd_table(&self, cd_max: u32) -> u64 {
        self.alloc((64u64 << cd_max).max(4096))
    }
}

/// A stage-1 stream: STE at `sid` -> one CD (asid) -> 4K/48-bit tables.
pub fn s1_stream<'m>(fx: &'m Fx, rig: &SmmuRig<'_>, sid: u32, asid: u16) -> (Tables<'m>, u64) {
    let t = Tables::s1(fx.m(), 12, 48);
    let cd = fx.cd_table(0);
    CdBits::s1(asid, t.root, 48, 12).write(fx.m(), cd);
    rig.set_ste(sid, SteBits::s1(cd, 0, 0));
    (t, cd)
}

pub const RW: u64 = pte::S1_RW;
