//! DMA ownership: kernel DMA API users against a user owner (VFIO, iommufd)
//! claiming a group exclusively (Linux `iommu_device_use_default_domain`,
//! `iommu_*_claim_dma_owner`; reference `software.md` §6.3).

use alloc::sync::Arc;

use super::IommuCore;
use crate::device::{DeviceId, GroupId};
use crate::domain::IommuDomain;
use crate::error::{Error, Result};
use crate::group::{DmaOwner, Group, GroupState};

impl IommuCore {
    /// A kernel driver binds to `dev` and will use the DMA API (Linux
    /// `iommu_device_use_default_domain`). Returns the default domain. ENODEV when
    /// the group has no default domain; EBUSY when the group is user-owned or not on
    /// its default domain (checked only when someone already holds the group, as
    /// Linux does); EBUSY if a driver is already bound to `dev`.
    pub fn device_use_default_domain(&self, dev: DeviceId) -> Result<Arc<IommuDomain>> {
        let (g, _) = self.group_of(dev)?;
        let mut gs = Self::live(&g)?;
        let default = gs
            .default_domain
            .clone()
            .ok_or(Error::NoDevice("no default domain yet"))?;
        let i = gs
            .find(dev)
            .ok_or(Error::NoDevice("device left its group"))?;
        if gs.devices[i].bound {
            return Err(Error::Busy("a driver is already bound"));
        }
        if gs.owner_cnt > 0 && (gs.owner.is_some() || !gs.on_default()) {
            return Err(Error::Busy(
                "group is owned by a user or not on its default domain",
            ));
        }
        gs.owner_cnt += 1;
        gs.devices[i].bound = true;
        Ok(default)
    }

    /// The kernel driver of `dev` unbinds (Linux `iommu_device_unuse_default_domain`).
    pub fn device_unuse_default_domain(&self, dev: DeviceId) -> Result<()> {
        let (g, _) = self.group_of(dev)?;
        let mut gs = Self::live(&g)?;
        let i = gs
            .find(dev)
            .ok_or(Error::NoDevice("device left its group"))?;
        if !gs.devices[i].bound {
            return Err(Error::Invalid("no driver bound"));
        }
        gs.devices[i].bound = false;
        gs.owner_cnt = gs.owner_cnt.saturating_sub(1);
        Ok(())
    }

    fn claim_locked(g: &Group, gs: &mut GroupState, owner: DmaOwner) -> Result<()> {
        if !gs.on_default() && !gs.current_is_core_domain() {
            return Err(Error::Busy("a foreign domain is attached"));
        }
        let b = Self::blocking_domain(g, gs)?;
        Self::set_group_domain(g, gs, &b)?;
        gs.owner = Some(owner);
        Ok(())
    }

    pub(super) fn release_owner_locked(g: &Group, gs: &mut GroupState) -> Result<()> {
        let d = gs
            .default_domain
            .clone()
            .ok_or(Error::NoDevice("no default domain"))?;
        Self::set_group_domain(g, gs, &d)?;
        gs.owner = None;
        gs.owner_cnt = 0;
        for dev in &mut gs.devices {
            dev.user_claims = 0;
        }
        Ok(())
    }

    /// A user (VFIO group) claims the whole group (Linux
    /// `iommu_group_claim_dma_owner`): EPERM if a kernel driver or another claim
    /// holds it; EBUSY if a foreign domain is attached. The group moves to the
    /// blocking domain.
    pub fn group_claim_dma_owner(&self, group: GroupId, owner: DmaOwner) -> Result<()> {
        let g = self.group(group)?;
        let mut gs = Self::live(&g)?;
        if gs.owner_cnt != 0 {
            return Err(Error::NotPermitted("group is in use"));
        }
        Self::claim_locked(&g, &mut gs, owner)?;
        gs.owner_cnt = 1;
        Ok(())
    }

    /// Release a group claim: back to the default domain, whatever the user had
    /// attached. EPERM if `owner` does not own the group.
    pub fn group_release_dma_owner(&self, group: GroupId, owner: DmaOwner) -> Result<()> {
        let g = self.group(group)?;
        let mut gs = Self::live(&g)?;
        if gs.owner != Some(owner) {
            return Err(Error::NotPermitted("caller does not own the group"));
        }
        Self::release_owner_locked(&g, &mut gs)
    }

    /// A user (iommufd cdev) claims the group through one device (Linux
    /// `iommu_device_claim_dma_owner`): the same owner just counts another claim;
    /// a different owner or a bound kernel driver gives EPERM; EBUSY if a foreign
    /// domain is attached; EOVERFLOW if the claim count would wrap.
    pub fn device_claim_dma_owner(&self, dev: DeviceId, owner: DmaOwner) -> Result<()> {
        let (g, _) = self.group_of(dev)?;
        let mut gs = Self::live(&g)?;
        let i = gs
            .find(dev)
            .ok_or(Error::NoDevice("device left its group"))?;
        if gs.owner_cnt > 0 {
            if gs.owner != Some(owner) {
                return Err(Error::NotPermitted(
                    "group is in use by another owner or a driver",
                ));
            }
            if gs.owner_cnt == u32::MAX || gs.devices[i].user_claims == u32::MAX {
                return Err(Error::Overflow("too many claims on the group"));
            }
        } else {
            Self::claim_locked(&g, &mut gs, owner)?;
        }
        gs.owner_cnt += 1;
        gs.devices[i].user_claims += 1;
        Ok(())
    }

    /// Drop one device-level claim; the last one returns the group to its default
    /// domain. EPERM for a foreign owner, EINVAL if the device holds no claim.
    pub fn device_release_dma_owner(&self, dev: DeviceId, owner: DmaOwner) -> Result<()> {
        let (g, _) = self.group_of(dev)?;
        let mut gs = Self::live(&g)?;
        if gs.owner != Some(owner) {
            return Err(Error::NotPermitted("caller does not own the group"));
        }
        let i = gs
            .find(dev)
            .ok_or(Error::NoDevice("device left its group"))?;
        if gs.devices[i].user_claims == 0 {
            return Err(Error::Invalid("device holds no claim"));
        }
        if gs.owner_cnt <= 1 {
            // The last claim: back to the default domain (clears every claim).
            Self::release_owner_locked(&g, &mut gs)
        } else {
            gs.owner_cnt -= 1;
            gs.devices[i].user_claims -= 1;
            Ok(())
        }
    }
}
