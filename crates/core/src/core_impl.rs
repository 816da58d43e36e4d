//! The IOMMU core object model (Linux `drivers/iommu/iommu.c`; reference
//! `software.md` §6.1, §6.2): instance and device registration, hotplug, group
//! formation, whole-group attach with revert, and domain allocation. The
//! default-domain policy and sysfs `type` (§1.2–§1.4) are in `policy`, DMA
//! ownership (§6.3) in `ownership`, reserved-region queries (§6.6) in `resv`.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use std::sync::{Mutex, MutexGuard};

use crate::caps::Capability;
use crate::device::{BridgeId, DeviceDesc, DeviceId, DeviceInfo, GroupId, IommuId};
use crate::domain::{IommuDomain, Ops};
use crate::domain_type::{DefaultPolicy, DomainType};
use crate::driver::{AllocFlags, GroupHint, HwInfo, IommuDriver, NestedData};
use crate::error::{Error, Result};
use crate::fault::FaultRouter;
use crate::group::{DmaOwner, Group, GroupDev, GroupState};
use crate::resv::{ReservedRegion, ResvKind};
use crate::topology::{BridgeDesc, GroupKey, Topology, aliases};

mod ownership;
mod policy;
mod resv;

use policy::{map_direct_regions, same_default};

struct DevEntry {
    info: Arc<DeviceInfo>,
    group: GroupId,
}

struct Registry {
    policy: DefaultPolicy,
    instances: BTreeMap<IommuId, Arc<dyn IommuDriver>>,
    topology: Topology,
    devices: BTreeMap<DeviceId, DevEntry>,
    groups: BTreeMap<GroupId, Arc<Group>>,
    next_device: u64,
    next_group: u32,
}

/// The IOMMU subsystem: registered IOMMU instances, devices and groups.
///
/// Locking: the registry lock (hotplug, lookups) is taken before a group's lock,
/// which is taken before a domain's internal lock. Group operations look the group
/// up, drop the registry lock, then work under the group lock.
pub struct IommuCore {
    reg: Mutex<Registry>,
    faults: Arc<FaultRouter>,
}

impl core::fmt::Debug for IommuCore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IommuCore").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl IommuCore {
    /// A core with the given global default-domain policy.
    pub fn new(policy: DefaultPolicy) -> Self {
        Self {
            reg: Mutex::new(Registry {
                policy,
                instances: BTreeMap::new(),
                topology: Topology::new(),
                devices: BTreeMap::new(),
                groups: BTreeMap::new(),
                next_device: 1,
                next_group: 0,
            }),
            faults: Arc::new(FaultRouter::new()),
        }
    }

    /// The fault router drivers report into and observers subscribe to.
    pub fn fault_router(&self) -> Arc<FaultRouter> {
        self.faults.clone()
    }

    /// The global policy for groups created (or rebuilt with `auto`) from now on.
    pub fn default_policy(&self) -> DefaultPolicy {
        lock(&self.reg).policy
    }

    /// Change the global policy (boot parameters); existing groups keep their
    /// default domains.
    pub fn set_default_policy(&self, policy: DefaultPolicy) {
        lock(&self.reg).policy = policy;
    }

    /// Register an IOMMU instance.
    pub fn register_iommu(&self, driver: Arc<dyn IommuDriver>) -> IommuId {
        let mut r = lock(&self.reg);
        let id = IommuId(r.instances.keys().next_back().map_or(0, |k| k.0 + 1));
        r.instances.insert(id, driver);
        id
    }

    /// Add a bridge or port to the PCI topology.
    pub fn add_bridge(&self, desc: BridgeDesc) -> Result<BridgeId> {
        lock(&self.reg).topology.add_bridge(desc)
    }

    // ----- lookups -------------------------------------------------------------

    fn group_of(&self, dev: DeviceId) -> Result<(Arc<Group>, Arc<DeviceInfo>)> {
        let r = lock(&self.reg);
        let e = r
            .devices
            .get(&dev)
            .ok_or(Error::NoDevice("unknown device"))?;
        let g = r
            .groups
            .get(&e.group)
            .ok_or(Error::NoDevice("device has no group"))?;
        Ok((g.clone(), e.info.clone()))
    }

    fn group(&self, id: GroupId) -> Result<Arc<Group>> {
        lock(&self.reg)
            .groups
            .get(&id)
            .cloned()
            .ok_or(Error::NotFound("unknown group"))
    }

    fn live<'a>(g: &'a Group) -> Result<MutexGuard<'a, GroupState>> {
        let gs = g.lock();
        if gs.dead {
            return Err(Error::NoDevice("group was removed"));
        }
        Ok(gs)
    }

    /// The description of a registered device.
    pub fn device_info(&self, dev: DeviceId) -> Result<Arc<DeviceInfo>> {
        lock(&self.reg)
            .devices
            .get(&dev)
            .map(|e| e.info.clone())
            .ok_or(Error::NoDevice("unknown device"))
    }

    /// The group of a device.
    pub fn device_group(&self, dev: DeviceId) -> Result<GroupId> {
        lock(&self.reg)
            .devices
            .get(&dev)
            .map(|e| e.group)
            .ok_or(Error::NoDevice("unknown device"))
    }

    /// Every group, in id order.
    pub fn groups(&self) -> Vec<GroupId> {
        lock(&self.reg).groups.keys().copied().collect()
    }

    /// The devices of a group, in join order.
    pub fn group_devices(&self, group: GroupId) -> Result<Vec<DeviceId>> {
        let g = self.group(group)?;
        let gs = Self::live(&g)?;
        Ok(gs.devices.iter().map(|d| d.info.id).collect())
    }

    /// The domain the group currently uses.
    pub fn group_domain(&self, group: GroupId) -> Result<Option<Arc<IommuDomain>>> {
        let g = self.group(group)?;
        Ok(Self::live(&g)?.domain.clone())
    }

    /// The domain a device currently uses (Linux `iommu_get_domain_for_dev`).
    pub fn device_domain(&self, dev: DeviceId) -> Result<Option<Arc<IommuDomain>>> {
        let (g, _) = self.group_of(dev)?;
        Ok(Self::live(&g)?.domain.clone())
    }

    /// The default domain of a device's group (Linux `iommu_get_dma_domain`).
    pub fn device_default_domain(&self, dev: DeviceId) -> Result<Option<Arc<IommuDomain>>> {
        let (g, _) = self.group_of(dev)?;
        Ok(Self::live(&g)?.default_domain.clone())
    }

    /// Hardware information for user space about the IOMMU serving `dev`.
    pub fn device_hw_info(&self, dev: DeviceId) -> Result<Option<HwInfo>> {
        let (driver, info) = self.driver_for(dev)?;
        Ok(driver.hw_info(&info))
    }

    /// The group's default domain.
    pub fn group_default_domain(&self, group: GroupId) -> Result<Option<Arc<IommuDomain>>> {
        let g = self.group(group)?;
        Ok(Self::live(&g)?.default_domain.clone())
    }

    /// The group's owner count (bound kernel drivers, or user claims).
    pub fn group_owner_count(&self, group: GroupId) -> Result<u32> {
        let g = self.group(group)?;
        Ok(Self::live(&g)?.owner_cnt)
    }

    /// Whether the group is claimed by a user owner.
    pub fn group_is_user_owned(&self, group: GroupId) -> Result<bool> {
        let g = self.group(group)?;
        Ok(Self::live(&g)?.owner.is_some())
    }

    /// Linux `device_iommu_capable`: false for an unknown device.
    pub fn device_capable(&self, dev: DeviceId, cap: Capability) -> bool {
        match self.group_of(dev) {
            Ok((g, info)) => g.driver.capable(&info, cap),
            Err(_) => false,
        }
    }

    /// Whether every device of the group has isolated MSIs (interrupt remapping);
    /// VFIO and iommufd refuse a group without it (EPERM) unless told otherwise.
    pub fn group_has_isolated_msi(&self, group: GroupId) -> Result<bool> {
        let g = self.group(group)?;
        let gs = Self::live(&g)?;
        Ok(gs
            .devices
            .iter()
            .all(|d| g.driver.capable(&d.info, Capability::IntrRemap)))
    }

    // ----- device hotplug ------------------------------------------------------

    /// Probe a new device: the driver's `probe_device`, group formation, and the
    /// group's default domain (allocated and attached when the group is new; a
    /// device joining a group is attached to the group's current domain).
    pub fn add_device(&self, desc: DeviceDesc) -> Result<DeviceId> {
        desc.validate().map_err(Error::Invalid)?;
        let mut r = lock(&self.reg);
        let driver = r
            .instances
            .get(&desc.iommu)
            .cloned()
            .ok_or(Error::NoDevice("unknown IOMMU instance"))?;
        for e in r.devices.values() {
            if e.info.desc.iommu == desc.iommu
                && e.info
                    .desc
                    .stream_ids
                    .iter()
                    .any(|s| desc.stream_ids.contains(s))
            {
                return Err(Error::Exists("StreamID already used by another device"));
            }
        }
        let id = DeviceId(r.next_device);
        let info = Arc::new(DeviceInfo { id, desc });
        let key = match driver.device_group(&info) {
            GroupHint::Topology => r.topology.group_key(&info)?,
            GroupHint::PerDevice => GroupKey::Single(info.desc.iommu, id.0),
            GroupHint::PerInstance => GroupKey::Instance(info.desc.iommu),
        };
        // Existing group: same key, or a DMA alias of one of its devices.
        let existing = r
            .groups
            .values()
            .find(|g| g.key == key)
            .cloned()
            .or_else(|| {
                r.devices
                    .values()
                    .find(|e| aliases(&e.info, &info))
                    .and_then(|e| r.groups.get(&e.group).cloned())
            });
        driver.probe_device(&info)?;
        let resv = driver.get_resv_regions(&info);
        if !resv.iter().all(ReservedRegion::is_valid) {
            driver.release_device(&info);
            return Err(Error::Invalid(
                "driver reported a malformed reserved region",
            ));
        }
        let require_direct = resv.iter().any(|x| x.kind == ResvKind::Direct);
        let gdev = GroupDev {
            info: info.clone(),
            bound: false,
            user_claims: 0,
            resv,
            require_direct,
        };
        let joined = match existing {
            Some(g) => Self::join_group(&g, gdev, r.policy).map(|()| g),
            None => {
                let gid = GroupId(r.next_group);
                let g = Arc::new(Group {
                    id: gid,
                    key,
                    iommu: info.desc.iommu,
                    driver: driver.clone(),
                    state: Mutex::new(GroupState {
                        devices: alloc::vec![gdev],
                        default_domain: None,
                        blocking_domain: None,
                        domain: None,
                        owner_cnt: 0,
                        owner: None,
                        requested: None,
                        dead: false,
                    }),
                });
                let mut gs = g.lock();
                let res = Self::setup_default_domain(&g, &mut gs, r.policy, None);
                drop(gs);
                res.map(|()| {
                    r.next_group += 1;
                    r.groups.insert(gid, g.clone());
                    g
                })
            }
        };
        match joined {
            Ok(g) => {
                r.next_device += 1;
                r.devices.insert(
                    id,
                    DevEntry {
                        info: info.clone(),
                        group: g.id,
                    },
                );
                self.faults
                    .add_streams(info.desc.iommu, &info.desc.stream_ids, id);
                Ok(id)
            }
            Err(e) => {
                driver.release_device(&info);
                Err(e)
            }
        }
    }

    fn join_group(g: &Arc<Group>, gdev: GroupDev, policy: DefaultPolicy) -> Result<()> {
        let mut gs = Self::live(g)?;
        let info = gdev.info.clone();
        let require_direct = gdev.require_direct;
        let regions = gdev.resv.clone();
        gs.devices.push(gdev);
        let res = (|| {
            // The newcomer may change what the default must be (an untrusted device
            // forces strict DMA; a driver quirk may force a type).
            let requested = gs.requested;
            let (ty, _) = Self::default_type_for(g, &gs, policy, requested)?;
            let current = gs.default_domain.as_ref().map(|d| d.domain_type());
            if current.is_some_and(|c| !same_default(c, ty)) {
                if gs.owner_cnt == 0 && gs.owner.is_none() && gs.current_is_core_domain() {
                    // Rebuild first without the newcomer attached, then attach it.
                    let newcomer = gs.devices.pop();
                    let r = Self::rebuild_default(g, &mut gs, ty, true);
                    gs.devices.extend(newcomer);
                    r?;
                } else {
                    return Err(Error::Busy("group in use cannot change its default domain"));
                }
            }
            if let Some(d) = gs.default_domain.clone() {
                map_direct_regions(&d, &regions)?;
            }
            if let Some(cur) = gs.domain.clone() {
                if require_direct && Self::is_blocking(&gs, &cur) {
                    return Err(Error::Incompatible("device requires direct mappings"));
                }
                cur.attach_device(&*g.driver, &info)?;
            }
            Ok(())
        })();
        if res.is_err() {
            gs.devices.retain(|d| d.info.id != info.id);
        }
        res
    }

    /// Hot-unplug a device. A bound kernel driver is unbound and the device's user
    /// claims are dropped; the device leaves its group (the group is removed when it
    /// becomes empty) and the driver's `release_device` runs. Domains the device was
    /// attached to, or was used to allocate, stay alive for their other users.
    ///
    /// The device is always removed. If its departure drops the last user claim
    /// and the group then fails to return to its default domain, the error is
    /// returned and the owner keeps the group (on its domain) until
    /// [`IommuCore::group_release_dma_owner`].
    pub fn remove_device(&self, dev: DeviceId) -> Result<()> {
        let mut r = lock(&self.reg);
        let e = r
            .devices
            .get(&dev)
            .ok_or(Error::NoDevice("unknown device"))?;
        let gid = e.group;
        let g = r
            .groups
            .get(&gid)
            .cloned()
            .ok_or(Error::NoDevice("device has no group"))?;
        let mut gs = g.lock();
        let i = gs
            .find(dev)
            .ok_or(Error::NoDevice("device left its group"))?;
        let gd = gs.devices.remove(i);
        let drop_cnt = u32::from(gd.bound).saturating_add(gd.user_claims);
        gs.owner_cnt = gs.owner_cnt.saturating_sub(drop_cnt);
        if let Some(cur) = &gs.domain {
            cur.note_detached(dev);
        }
        g.driver.release_device(&gd.info);
        let mut result = Ok(());
        if gs.devices.is_empty() {
            gs.dead = true;
            gs.domain = None;
            gs.default_domain = None;
            gs.blocking_domain = None;
            gs.owner = None;
            gs.owner_cnt = 0;
            r.groups.remove(&gid);
        } else if gs.owner.is_some() && gs.owner_cnt == 0 {
            // The last user claim went with the device: back to the default domain.
            result = Self::release_owner_locked(&g, &mut gs);
            if result.is_err() {
                // The group stays on the owner's domain: the owner keeps it (one
                // group-level claim) until it releases it, so no kernel driver can
                // bind to a group that is not on its default domain.
                gs.owner_cnt = 1;
            }
        }
        drop(gs);
        // The device is gone whatever happened to its group.
        self.faults
            .remove_streams(gd.info.desc.iommu, &gd.info.desc.stream_ids);
        r.devices.remove(&dev);
        result
    }

    // ----- attach ---------------------------------------------------------------

    fn is_blocking(gs: &GroupState, d: &Arc<IommuDomain>) -> bool {
        d.domain_type() == DomainType::Blocked
            || gs
                .blocking_domain
                .as_ref()
                .is_some_and(|b| Arc::ptr_eq(b, d))
    }

    /// Switch every device of the group to `new`; on a failure the devices already
    /// switched go back to the previous domain. Setting the current domain again is
    /// a no-op.
    fn set_group_domain(g: &Group, gs: &mut GroupState, new: &Arc<IommuDomain>) -> Result<()> {
        if gs.is_current(new) {
            return Ok(());
        }
        if new.iommu() != g.iommu {
            return Err(Error::Incompatible(
                "domain belongs to another IOMMU instance",
            ));
        }
        if Self::is_blocking(gs, new) && gs.devices.iter().any(|d| d.require_direct) {
            return Err(Error::Incompatible("a device requires direct mappings"));
        }
        let old = gs.domain.clone();
        for (i, d) in gs.devices.iter().enumerate() {
            if let Err(e) = new.attach_device(&*g.driver, &d.info) {
                for done in &gs.devices[..i] {
                    new.note_detached(done.info.id);
                    if let Some(o) = &old {
                        // Going back to a domain the device just used; a failure
                        // here leaves the driver's blocked state (Linux WARNs).
                        let _ = o.attach_device(&*g.driver, &done.info);
                    }
                }
                return Err(e);
            }
        }
        if let Some(o) = &old {
            for d in &gs.devices {
                o.note_detached(d.info.id);
            }
        }
        gs.domain = Some(new.clone());
        Ok(())
    }

    /// Attach `domain` to every device of the group (Linux `iommu_attach_group`).
    ///
    /// EBUSY when the group is user-owned (use [`IommuCore::replace_group_domain`]
    /// with the owner token) or when a domain other than the default or blocking
    /// one is attached — including `domain` itself: only one external domain can
    /// be attached. EINVAL when the domain belongs to another IOMMU instance, is the
    /// DMA-API default domain of another group, or a device is incompatible; the
    /// group is then left on its previous domain. Attaching the group's own default
    /// domain while it is current is a no-op.
    pub fn attach_group(&self, domain: &Arc<IommuDomain>, group: GroupId) -> Result<()> {
        let g = self.group(group)?;
        let mut gs = Self::live(&g)?;
        if gs.owner.is_some() {
            return Err(Error::Busy("group is owned by a user"));
        }
        if !gs.current_is_core_domain() {
            return Err(Error::Busy("another domain is already attached"));
        }
        Self::check_not_foreign_dma_api(&gs, domain)?;
        Self::set_group_domain(&g, &mut gs, domain)
    }

    /// A DMA-API (DMA / DMA-FQ) domain belongs to the DMA layer of the group it is
    /// the default of: its IOVA allocator knows only that group's reserved regions,
    /// so attaching it to another group is refused (EINVAL). Linux never hands such
    /// a domain out; here [`IommuCore::device_default_domain`] does, so the core
    /// checks.
    fn check_not_foreign_dma_api(gs: &GroupState, domain: &Arc<IommuDomain>) -> Result<()> {
        let own_default = gs
            .default_domain
            .as_ref()
            .is_some_and(|d| Arc::ptr_eq(d, domain));
        if domain.domain_type().is_dma_api() && !own_default {
            return Err(Error::Incompatible(
                "a DMA-API domain serves only the group it is the default of",
            ));
        }
        Ok(())
    }

    /// Return the group to its core domain (Linux `iommu_detach_group`): the
    /// blocking domain when user-owned, the default domain otherwise. EINVAL if
    /// `domain` is not the current domain.
    pub fn detach_group(&self, domain: &Arc<IommuDomain>, group: GroupId) -> Result<()> {
        let g = self.group(group)?;
        let mut gs = Self::live(&g)?;
        if !gs.is_current(domain) {
            return Err(Error::Invalid("domain is not attached to the group"));
        }
        let core = if gs.owner.is_some() {
            Self::blocking_domain(&g, &mut gs)?
        } else {
            gs.default_domain
                .clone()
                .ok_or(Error::NoDevice("group has no default domain"))?
        };
        Self::set_group_domain(&g, &mut gs, &core)
    }

    /// [`IommuCore::attach_group`] for a device alone in its group (EINVAL if the
    /// group holds other devices).
    pub fn attach_device(&self, domain: &Arc<IommuDomain>, dev: DeviceId) -> Result<()> {
        let gid = self.single_device_group(dev)?;
        self.attach_group(domain, gid)
    }

    /// [`IommuCore::detach_group`] for a device alone in its group.
    pub fn detach_device(&self, domain: &Arc<IommuDomain>, dev: DeviceId) -> Result<()> {
        let gid = self.single_device_group(dev)?;
        self.detach_group(domain, gid)
    }

    fn single_device_group(&self, dev: DeviceId) -> Result<GroupId> {
        let (g, _) = self.group_of(dev)?;
        let gs = Self::live(&g)?;
        if gs.devices.len() != 1 {
            return Err(Error::Invalid("device shares its group"));
        }
        Ok(g.id)
    }

    /// Owner path (iommufd/VFIO): switch a user-owned group to `domain` directly,
    /// without passing through blocking. Setting the current domain again is a
    /// no-op. EPERM if `owner` does not own the group; EINVAL for the DMA-API
    /// default domain of another group.
    pub fn replace_group_domain(
        &self,
        group: GroupId,
        domain: &Arc<IommuDomain>,
        owner: DmaOwner,
    ) -> Result<()> {
        let g = self.group(group)?;
        let mut gs = Self::live(&g)?;
        if gs.owner != Some(owner) {
            return Err(Error::NotPermitted("caller does not own the group"));
        }
        Self::check_not_foreign_dma_api(&gs, domain)?;
        Self::set_group_domain(&g, &mut gs, domain)
    }

    // ----- domain allocation -----------------------------------------------------

    fn driver_for(&self, dev: DeviceId) -> Result<(Arc<dyn IommuDriver>, Arc<DeviceInfo>)> {
        let r = lock(&self.reg);
        let e = r
            .devices
            .get(&dev)
            .ok_or(Error::NoDevice("unknown device"))?;
        let d = r
            .instances
            .get(&e.info.desc.iommu)
            .ok_or(Error::NoDevice("no IOMMU"))?;
        Ok((d.clone(), e.info.clone()))
    }

    /// Allocate an unmanaged paging domain on the IOMMU serving `dev` (Linux
    /// `iommu_paging_domain_alloc_flags`). `dev` only selects the instance: the
    /// domain keeps no reference to it and may be attached to any compatible group.
    pub fn domain_alloc_paging(
        &self,
        dev: DeviceId,
        flags: AllocFlags,
    ) -> Result<Arc<IommuDomain>> {
        let (driver, info) = self.driver_for(dev)?;
        let ops = driver.domain_alloc_paging(&info, flags)?;
        Ok(IommuDomain::new(
            info.desc.iommu,
            Ops::Paging(ops),
            DomainType::Unmanaged,
            None,
        ))
    }

    /// Allocate a nested domain on `parent` (a paging domain of the same instance).
    pub fn domain_alloc_nested(
        &self,
        dev: DeviceId,
        parent: &Arc<IommuDomain>,
        data: NestedData<'_>,
    ) -> Result<Arc<IommuDomain>> {
        let (driver, info) = self.driver_for(dev)?;
        if parent.iommu() != info.desc.iommu {
            return Err(Error::Invalid("parent on another IOMMU instance"));
        }
        let p = parent
            .paging()
            .ok_or(Error::Invalid("parent is not a paging domain"))?;
        let ops = driver.domain_alloc_nested(&info, &**p, data)?;
        Ok(IommuDomain::new(
            info.desc.iommu,
            Ops::Other(ops),
            DomainType::Nested,
            Some(parent.clone()),
        ))
    }

    /// The identity domain of the IOMMU serving `dev` (EOPNOTSUPP without one).
    pub fn domain_alloc_identity(&self, dev: DeviceId) -> Result<Arc<IommuDomain>> {
        let (driver, info) = self.driver_for(dev)?;
        let ops = driver
            .identity_domain()
            .ok_or(Error::NotSupported("no identity domain"))?;
        Ok(IommuDomain::new(
            info.desc.iommu,
            Ops::Other(ops),
            DomainType::Identity,
            None,
        ))
    }

    fn blocking_domain(g: &Group, gs: &mut GroupState) -> Result<Arc<IommuDomain>> {
        if let Some(b) = &gs.blocking_domain {
            return Ok(b.clone());
        }
        let b = match g.driver.blocked_domain() {
            Some(ops) => IommuDomain::new(g.iommu, Ops::Other(ops), DomainType::Blocked, None),
            None => {
                // An empty paging domain blocks everything; labelled Blocked so that
                // nobody can map into it through the core.
                let first = gs.devices.first().ok_or(Error::NoDevice("empty group"))?;
                let ops = g
                    .driver
                    .domain_alloc_paging(&first.info, AllocFlags::NONE)?;
                IommuDomain::new(g.iommu, Ops::Paging(ops), DomainType::Blocked, None)
            }
        };
        gs.blocking_domain = Some(b.clone());
        Ok(b)
    }
}
