//! The default-domain policy: which type a group's default domain must have,
//! its allocation with fallback and direct mappings, rebuilds, and the sysfs
//! `type` file with the live DMA → DMA-FQ switch (reference `software.md` §1.2,
//! §1.3, §1.4, §6.6).

use alloc::sync::Arc;

use iommu_types::{Iova, PhysAddr};

use super::IommuCore;
use crate::caps::Capability;
use crate::device::GroupId;
use crate::domain::{IommuDomain, Ops};
use crate::domain_type::{Credentials, DefaultPolicy, DomainType, TypeRequest};
use crate::driver::AllocFlags;
use crate::error::{Error, Result};
use crate::group::{Group, GroupState};
use crate::resv::{DmaResvAction, ReservedRegion};

impl IommuCore {
    /// The default type the group needs: (type, required). `required` means a
    /// device, driver or sysfs request fixed it, so no fallback to DMA is allowed.
    pub(super) fn default_type_for(
        g: &Group,
        gs: &GroupState,
        policy: DefaultPolicy,
        requested: Option<DomainType>,
    ) -> Result<(DomainType, bool)> {
        let mut driver_type: Option<DomainType> = None;
        for d in &gs.devices {
            if let Some(t) = g.driver.def_domain_type(&d.info) {
                driver_type = Some(match driver_type {
                    None => t,
                    Some(prev) if prev == t => t,
                    // Identity wins a conflict between devices.
                    Some(_) => DomainType::Identity,
                });
            }
        }
        if let Some(t) = driver_type {
            if !matches!(
                t,
                DomainType::Identity | DomainType::Dma | DomainType::DmaFq
            ) {
                return Err(Error::Invalid(
                    "driver asked for an impossible default type",
                ));
            }
        }
        let untrusted = gs.devices.iter().any(|d| d.info.desc.untrusted);
        let (ty, required) = if untrusted {
            if driver_type.is_some_and(|t| t != DomainType::Dma) {
                return Err(Error::Invalid(
                    "driver requires a non-strict default for an untrusted device",
                ));
            }
            if requested.is_some_and(|t| t != DomainType::Dma) {
                return Err(Error::Invalid(
                    "untrusted devices must use a strict DMA domain",
                ));
            }
            (DomainType::Dma, true)
        } else if let Some(t) = driver_type {
            if requested.is_some_and(|r| r != t) {
                return Err(Error::Invalid("driver requires another default type"));
            }
            (t, true)
        } else if let Some(r) = requested {
            (r, true)
        } else {
            (policy.domain_type(), false)
        };
        // Lazy mode needs every device to accept deferred flushing.
        if ty == DomainType::DmaFq
            && !gs
                .devices
                .iter()
                .all(|d| g.driver.capable(&d.info, Capability::DeferredFlush))
        {
            return Ok((DomainType::Dma, required));
        }
        Ok((ty, required))
    }

    fn alloc_default_of(g: &Group, gs: &GroupState, ty: DomainType) -> Result<Arc<IommuDomain>> {
        let first = gs.devices.first().ok_or(Error::NoDevice("empty group"))?;
        match ty {
            DomainType::Identity => {
                let ops = g
                    .driver
                    .identity_domain()
                    .ok_or(Error::NotSupported("no identity domain"))?;
                Ok(IommuDomain::new(
                    g.iommu,
                    Ops::Other(ops),
                    DomainType::Identity,
                    None,
                ))
            }
            DomainType::Dma | DomainType::DmaFq => {
                let ops = if first.info.desc.max_pasids != 0 {
                    match g.driver.domain_alloc_paging(&first.info, AllocFlags::PASID) {
                        Err(e) if e.errno() == iommu_types::Errno::EOPNOTSUPP => g
                            .driver
                            .domain_alloc_paging(&first.info, AllocFlags::NONE)?,
                        other => other?,
                    }
                } else {
                    g.driver
                        .domain_alloc_paging(&first.info, AllocFlags::NONE)?
                };
                Ok(IommuDomain::new(g.iommu, Ops::Paging(ops), ty, None))
            }
            _ => Err(Error::Invalid("not a default domain type")),
        }
    }

    /// Allocate a default domain of `ty` (falling back to DMA when not required) and
    /// identity-map every device's direct regions into it.
    fn alloc_default(
        g: &Group,
        gs: &GroupState,
        ty: DomainType,
        required: bool,
    ) -> Result<Arc<IommuDomain>> {
        let d = match Self::alloc_default_of(g, gs, ty) {
            Ok(d) => d,
            Err(_) if !required && ty != DomainType::Dma => {
                Self::alloc_default_of(g, gs, DomainType::Dma)?
            }
            Err(e) => return Err(e),
        };
        for dev in &gs.devices {
            map_direct_regions(&d, &dev.resv)?;
        }
        Ok(d)
    }

    pub(super) fn setup_default_domain(
        g: &Arc<Group>,
        gs: &mut GroupState,
        policy: DefaultPolicy,
        requested: Option<DomainType>,
    ) -> Result<()> {
        let (ty, required) = Self::default_type_for(g, gs, policy, requested)?;
        let d = Self::alloc_default(g, gs, ty, required)?;
        Self::set_group_domain(g, gs, &d)?;
        gs.default_domain = Some(d);
        Ok(())
    }

    /// Replace the default domain; the group moves to it if it was on the old one.
    pub(super) fn rebuild_default(
        g: &Arc<Group>,
        gs: &mut GroupState,
        ty: DomainType,
        required: bool,
    ) -> Result<()> {
        let d = Self::alloc_default(g, gs, ty, required)?;
        let move_group = gs.domain.is_none() || gs.on_default();
        if move_group {
            Self::set_group_domain(g, gs, &d)?;
        }
        gs.default_domain = Some(d);
        Ok(())
    }

    /// Read `/sys/kernel/iommu_groups/<n>/type`: the default domain's type.
    pub fn group_type(&self, group: GroupId) -> Result<&'static str> {
        let g = self.group(group)?;
        let gs = Self::live(&g)?;
        Ok(gs
            .default_domain
            .as_ref()
            .map_or("unknown", |d| d.domain_type().sysfs_name()))
    }

    /// Write `/sys/kernel/iommu_groups/<n>/type` (reference §1.3).
    ///
    /// * EACCES without `CAP_SYS_ADMIN` and `CAP_SYS_RAWIO`; EINVAL for a string
    ///   other than `identity`, `DMA`, `DMA-FQ`, `auto`.
    /// * `DMA-FQ` on a DMA default domain is done live, drivers bound: under the
    ///   group lock the DMA cookie's `init_flush_queue` runs first, and only then is
    ///   the type relabelled. Refused with EINVAL for a group with an untrusted
    ///   device, EOPNOTSUPP if a device lacks DEFERRED_FLUSH.
    /// * Any other change needs a non-empty group with `owner_cnt == 0` (EPERM
    ///   otherwise); the default domain is rebuilt and the group moved to it.
    pub fn set_group_type(&self, group: GroupId, s: &str, creds: Credentials) -> Result<()> {
        if !(creds.sys_admin && creds.sys_rawio) {
            return Err(Error::AccessDenied(
                "CAP_SYS_ADMIN and CAP_SYS_RAWIO needed",
            ));
        }
        let req = TypeRequest::parse(s)?;
        let policy = self.default_policy();
        let g = self.group(group)?;
        let mut gs = Self::live(&g)?;
        if gs.devices.is_empty() {
            return Err(Error::NotPermitted("empty group"));
        }
        let default = gs
            .default_domain
            .clone()
            .ok_or(Error::NoDevice("no default domain"))?;
        if req == TypeRequest::DmaFq && default.domain_type() == DomainType::Dma {
            if gs.devices.iter().any(|d| d.info.desc.untrusted) {
                return Err(Error::Invalid("untrusted devices must stay strict"));
            }
            if !gs
                .devices
                .iter()
                .all(|d| g.driver.capable(&d.info, Capability::DeferredFlush))
            {
                return Err(Error::NotSupported("a device cannot defer flushes"));
            }
            default.switch_to_lazy()?;
            gs.requested = Some(DomainType::DmaFq);
            return Ok(());
        }
        if gs.owner_cnt != 0 {
            return Err(Error::NotPermitted("unbind the drivers first"));
        }
        let (ty, required) = Self::default_type_for(&g, &gs, policy, req.domain_type())?;
        Self::rebuild_default(&g, &mut gs, ty, required)?;
        gs.requested = req.domain_type();
        Ok(())
    }
}

/// Whether a default domain of type `current` satisfies a need for `needed`.
pub(super) fn same_default(current: DomainType, needed: DomainType) -> bool {
    // A lazy default demoted to strict (no flush queue possible) still serves.
    current == needed || (needed == DomainType::DmaFq && current == DomainType::Dma)
}

/// Identity-map the DIRECT / DIRECT_RELAXABLE regions into a paging default domain
/// (Linux `iommu_create_device_direct_mappings`); pages already mapped are
/// skipped, and each run of unmapped pages is mapped with one call (so with the
/// largest page sizes alignment allows).
pub(super) fn map_direct_regions(
    domain: &Arc<IommuDomain>,
    regions: &[ReservedRegion],
) -> Result<()> {
    if !domain.domain_type().is_paging() {
        return Ok(());
    }
    let Some(pg) = domain.pgsize_bitmap().smallest() else {
        return Ok(());
    };
    for r in regions
        .iter()
        .filter(|r| r.kind.dma_action() == DmaResvAction::IdentityMap)
    {
        let last = r.last() | (pg - 1);
        let mut a = r.start & !(pg - 1);
        // Start of the current run of unmapped pages; each run is mapped with one
        // call so that it gets the largest pages alignment allows.
        let mut run: Option<u64> = None;
        loop {
            if domain.iova_to_phys(Iova(a)).is_none() {
                run.get_or_insert(a);
            } else if let Some(s) = run.take() {
                domain.map(Iova(s), PhysAddr(s), a - s, r.prot)?;
            }
            match a.checked_add(pg) {
                Some(n) if n <= last => a = n,
                _ => break,
            }
        }
        if let Some(s) = run {
            // `last` is the final byte of a page, so the length cannot wrap unless
            // the run is the whole 2^64 space, which `map` refuses anyway.
            let len = (last - s)
                .checked_add(1)
                .ok_or(Error::Overflow("direct region"))?;
            domain.map(Iova(s), PhysAddr(s), len, r.prot)?;
        }
    }
    Ok(())
}
