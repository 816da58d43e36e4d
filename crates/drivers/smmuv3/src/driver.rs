//! [`iommu_core::IommuDriver`] for one SMMUv3 instance: device probe/release,
//! capabilities, domain allocation (stage 1 by default, stage 2 for nesting
//! parents or stage-2-only hardware), identity/blocked domains and nesting.

use alloc::string::String;
use alloc::sync::Arc;
use iommu_core::{
    AllocFlags, Capability, DeviceInfo, DomainOps, IommuDriver, NestedData, PagingDomainOps,
};

use crate::domain::{self, DomainStage, NestedDomain, SmmuDomain, StaticDomain, VSte};
use crate::smmu::Smmu;

/// `IOMMU_HWPT_DATA_ARM_SMMUV3`: nested data = the user's STE words.
pub const HWPT_DATA_ARM_SMMUV3: u32 = 2;

/// The SMMUv3 driver object registered with the core.
pub struct SmmuDriver {
    smmu: Arc<Smmu>,
    name: String,
    identity: Arc<StaticDomain>,
    blocked: Arc<StaticDomain>,
}

impl core::fmt::Debug for SmmuDriver {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SmmuDriver")
            .field("name", &self.name)
            .finish()
    }
}

impl SmmuDriver {
    /// Wrap a probed SMMU.
    pub fn new(smmu: Arc<Smmu>, name: &str) -> Arc<SmmuDriver> {
        Arc::new(SmmuDriver {
            identity: StaticDomain::identity(&smmu),
            blocked: StaticDomain::blocked(&smmu),
            smmu,
            name: name.into(),
        })
    }

    /// The SMMU instance.
    pub fn smmu(&self) -> &Arc<Smmu> {
        &self.smmu
    }

    /// The smallest granule this SMMU supports (4K preferred).
    pub fn default_granule(&self) -> u64 {
        let b = self.smmu.features().pgsize_bitmap;
        [0x1000u64, 0x4000, 0x10000]
            .into_iter()
            .find(|g| b & g != 0)
            .unwrap_or(0x1000)
    }
}

impl IommuDriver for SmmuDriver {
    fn name(&self) -> &str {
        &self.name
    }

    fn capable(&self, dev: &DeviceInfo, cap: Capability) -> bool {
        let f = self.smmu.features();
        match cap {
            Capability::CacheCoherency => f.coherent,
            Capability::NoExec => true,
            Capability::DeferredFlush => true,
            Capability::EnforceCacheCoherency => f.coherent && dev.desc.canwbs,
            _ => false,
        }
    }

    fn probe_device(&self, dev: &DeviceInfo) -> iommu_core::Result<()> {
        for &sid in &dev.desc.stream_ids {
            self.smmu
                .probe_master_stream(sid, dev.desc.ats, dev.desc.canwbs)?;
        }
        Ok(())
    }

    fn release_device(&self, dev: &DeviceInfo) {
        for &sid in &dev.desc.stream_ids {
            let _ = domain::release(&self.smmu, sid);
        }
    }

    fn domain_alloc_paging(
        &self,
        _dev: &DeviceInfo,
        flags: AllocFlags,
    ) -> iommu_core::Result<Arc<dyn PagingDomainOps>> {
        let f = self.smmu.features();
        if flags.contains(AllocFlags::DIRTY_TRACKING) {
            return Err(iommu_core::Error::NotSupported("dirty tracking"));
        }
        let nest = flags.contains(AllocFlags::NEST_PARENT);
        let stage = if nest || !f.s1 {
            DomainStage::S2
        } else {
            DomainStage::S1
        };
        let d = SmmuDomain::new(&self.smmu, stage, self.default_granule(), nest)?;
        Ok(d)
    }

    fn domain_alloc_nested(
        &self,
        _dev: &DeviceInfo,
        parent: &dyn PagingDomainOps,
        data: NestedData<'_>,
    ) -> iommu_core::Result<Arc<dyn DomainOps>> {
        if data.data_type != HWPT_DATA_ARM_SMMUV3 || data.data.len() < 16 {
            return Err(iommu_core::Error::Invalid("nested data"));
        }
        let p = domain::as_smmu_domain(parent).ok_or(iommu_core::Error::Incompatible("parent"))?;
        let me = p.self_arc().ok_or(iommu_core::Error::NotFound("parent"))?;
        let w = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&data.data[i * 8..i * 8 + 8]);
            u64::from_le_bytes(b)
        };
        let vste = VSte::decode(w(0), w(1))?;
        Ok(NestedDomain::new(me, vste)?)
    }

    fn identity_domain(&self) -> Option<Arc<dyn DomainOps>> {
        Some(self.identity.clone())
    }

    fn blocked_domain(&self) -> Option<Arc<dyn DomainOps>> {
        Some(self.blocked.clone())
    }
}
