//! Isolation groups and their state (Linux `struct iommu_group`; reference
//! `software.md` §6.1–§6.3).

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::num::NonZeroU64;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::device::{DeviceInfo, GroupId, IommuId};
use crate::domain::IommuDomain;
use crate::domain_type::DomainType;
use crate::driver::IommuDriver;
use crate::resv::ReservedRegion;
use crate::topology::GroupKey;

/// The identity of a user DMA owner (a VFIO group, an iommufd context). A token
/// cannot be null, so Linux's "NULL owner → EINVAL" cannot happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DmaOwner(NonZeroU64);

static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);

impl DmaOwner {
    /// A new owner identity, different from every other.
    pub fn new() -> Self {
        let v = NEXT_OWNER.fetch_add(1, Ordering::Relaxed);
        Self(NonZeroU64::new(v).unwrap_or(NonZeroU64::MIN))
    }
}

impl Default for DmaOwner {
    fn default() -> Self {
        Self::new()
    }
}

pub(crate) struct GroupDev {
    pub(crate) info: Arc<DeviceInfo>,
    /// A kernel driver uses the default domain through the DMA API.
    pub(crate) bound: bool,
    /// Device-level user ownership claims.
    pub(crate) user_claims: u32,
    pub(crate) resv: Vec<ReservedRegion>,
    pub(crate) require_direct: bool,
}

pub(crate) struct GroupState {
    pub(crate) devices: Vec<GroupDev>,
    pub(crate) default_domain: Option<Arc<IommuDomain>>,
    pub(crate) blocking_domain: Option<Arc<IommuDomain>>,
    pub(crate) domain: Option<Arc<IommuDomain>>,
    pub(crate) owner_cnt: u32,
    pub(crate) owner: Option<DmaOwner>,
    pub(crate) requested: Option<DomainType>,
    pub(crate) dead: bool,
}

impl GroupState {
    pub(crate) fn is_current(&self, d: &Arc<IommuDomain>) -> bool {
        self.domain.as_ref().is_some_and(|c| Arc::ptr_eq(c, d))
    }

    pub(crate) fn current_is_core_domain(&self) -> bool {
        match &self.domain {
            None => true,
            Some(c) => {
                self.default_domain
                    .as_ref()
                    .is_some_and(|d| Arc::ptr_eq(c, d))
                    || self
                        .blocking_domain
                        .as_ref()
                        .is_some_and(|b| Arc::ptr_eq(c, b))
            }
        }
    }

    pub(crate) fn on_default(&self) -> bool {
        match (&self.domain, &self.default_domain) {
            (Some(c), Some(d)) => Arc::ptr_eq(c, d),
            _ => false,
        }
    }

    pub(crate) fn find(&self, dev: crate::device::DeviceId) -> Option<usize> {
        self.devices.iter().position(|d| d.info.id == dev)
    }
}

pub(crate) struct Group {
    pub(crate) id: GroupId,
    pub(crate) key: GroupKey,
    pub(crate) iommu: IommuId,
    pub(crate) driver: Arc<dyn IommuDriver>,
    pub(crate) state: std::sync::Mutex<GroupState>,
}

impl Group {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
