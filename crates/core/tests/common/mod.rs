//! A mock IOMMU driver that checks the core honours its side of the driver
//! contract (no use of released devices, page sizes and alignment as advertised,
//! one probe and one release per device), and records what it was asked to do.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use iommu_core::*;
use iommu_types::{Iova, PgSizeBitmap, PhysAddr, Prot, SZ_2M, SZ_4K};

/// What the mock saw, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ev {
    Probe(DeviceId),
    Release(DeviceId),
    Attach(DeviceId, u64),
    AllocPaging(DeviceId, AllocFlags),
}

#[derive(Default)]
pub struct DevState {
    pub name: String,
    pub alive: bool,
    pub attached_to: Option<u64>,
    pub canwbs: bool,
}

#[derive(Default)]
pub struct Shared {
    pub devices: Mutex<BTreeMap<DeviceId, DevState>>,
    pub violations: Mutex<Vec<String>>,
    pub events: Mutex<Vec<Ev>>,
    /// Devices (by name) whose attach fails with EINVAL.
    pub fail_attach: Mutex<BTreeSet<String>>,
    /// Devices (by name) without DEFERRED_FLUSH.
    pub no_deferred_flush: Mutex<BTreeSet<String>>,
    /// Devices (by name) without MSI isolation.
    pub no_msi_isolation: Mutex<BTreeSet<String>>,
    /// def_domain_type answers by name.
    pub def_types: Mutex<BTreeMap<String, DomainType>>,
    /// Reserved regions by name.
    pub resv: Mutex<BTreeMap<String, Vec<ReservedRegion>>>,
    pub next_domain: AtomicU64,
}

impl Shared {
    pub fn violate(&self, s: String) {
        self.violations.lock().unwrap().push(s);
    }
    fn ev(&self, e: Ev) {
        self.events.lock().unwrap().push(e);
    }
    fn check_alive(&self, dev: &DeviceInfo, what: &str) -> bool {
        let alive = self
            .devices
            .lock()
            .unwrap()
            .get(&dev.id)
            .is_some_and(|d| d.alive);
        if !alive {
            self.violate(format!(
                "{what} on a device that is not probed: {:?}",
                dev.id
            ));
        }
        alive
    }
    fn attach(&self, dev: &DeviceInfo, dom: u64) {
        if let Some(d) = self.devices.lock().unwrap().get_mut(&dev.id) {
            d.attached_to = Some(dom);
        }
        self.ev(Ev::Attach(dev.id, dom));
    }
    /// The mock domain id a device is attached to.
    pub fn attached_to(&self, dev: DeviceId) -> Option<u64> {
        self.devices
            .lock()
            .unwrap()
            .get(&dev)
            .and_then(|d| d.attached_to)
    }
}

pub struct MockDriver {
    pub shared: Arc<Shared>,
    pub identity: bool,
    pub blocked: bool,
    pub pasid_domains: bool,
    pub ias: u32,
    identity_dom: Arc<MockStatic>,
    blocked_dom: Arc<MockStatic>,
}

impl MockDriver {
    pub fn new() -> Self {
        Self::with(true, true, true)
    }
    pub fn with(identity: bool, blocked: bool, pasid_domains: bool) -> Self {
        let shared = Arc::new(Shared::default());
        shared.next_domain.store(10, Ordering::Relaxed);
        Self {
            identity_dom: Arc::new(MockStatic {
                id: 1,
                kind: DomainKind::Identity,
                shared: shared.clone(),
            }),
            blocked_dom: Arc::new(MockStatic {
                id: 2,
                kind: DomainKind::Blocked,
                shared: shared.clone(),
            }),
            shared,
            identity,
            blocked,
            pasid_domains,
            ias: 48,
        }
    }
}

impl IommuDriver for MockDriver {
    fn name(&self) -> &str {
        "mock"
    }

    fn capable(&self, dev: &DeviceInfo, cap: Capability) -> bool {
        let name = &dev.desc.name;
        match cap {
            Capability::CacheCoherency => dev.desc.dma_coherent,
            Capability::NoExec => true,
            Capability::EnforceCacheCoherency => dev.desc.canwbs,
            Capability::DeferredFlush => {
                !self.shared.no_deferred_flush.lock().unwrap().contains(name)
            }
            Capability::IntrRemap => !self.shared.no_msi_isolation.lock().unwrap().contains(name),
            Capability::PreBootProtection | Capability::DirtyTracking => false,
        }
    }

    fn probe_device(&self, dev: &DeviceInfo) -> Result<()> {
        let mut devs = self.shared.devices.lock().unwrap();
        if devs.get(&dev.id).is_some_and(|d| d.alive) {
            self.shared.violate(format!("double probe {:?}", dev.id));
        }
        devs.insert(
            dev.id,
            DevState {
                name: dev.desc.name.clone(),
                alive: true,
                attached_to: None,
                canwbs: dev.desc.canwbs,
            },
        );
        drop(devs);
        self.shared.ev(Ev::Probe(dev.id));
        Ok(())
    }

    fn release_device(&self, dev: &DeviceInfo) {
        let mut devs = self.shared.devices.lock().unwrap();
        match devs.get_mut(&dev.id) {
            Some(d) if d.alive => {
                d.alive = false;
                d.attached_to = None;
            }
            _ => self
                .shared
                .violate(format!("release of unprobed {:?}", dev.id)),
        }
        drop(devs);
        self.shared.ev(Ev::Release(dev.id));
    }

    fn def_domain_type(&self, dev: &DeviceInfo) -> Option<DomainType> {
        self.shared
            .def_types
            .lock()
            .unwrap()
            .get(&dev.desc.name)
            .copied()
    }

    fn get_resv_regions(&self, dev: &DeviceInfo) -> Vec<ReservedRegion> {
        self.shared
            .resv
            .lock()
            .unwrap()
            .get(&dev.desc.name)
            .cloned()
            .unwrap_or_default()
    }

    fn domain_alloc_paging(
        &self,
        dev: &DeviceInfo,
        flags: AllocFlags,
    ) -> Result<Arc<dyn PagingDomainOps>> {
        self.shared.check_alive(dev, "domain_alloc_paging");
        self.shared.ev(Ev::AllocPaging(dev.id, flags));
        if flags.contains(AllocFlags::PASID) && !self.pasid_domains {
            return Err(Error::NotSupported("PASID domains"));
        }
        Ok(Arc::new(MockPaging::new(self.shared.clone(), self.ias)))
    }

    fn identity_domain(&self) -> Option<Arc<dyn DomainOps>> {
        self.identity
            .then(|| self.identity_dom.clone() as Arc<dyn DomainOps>)
    }

    fn blocked_domain(&self) -> Option<Arc<dyn DomainOps>> {
        self.blocked
            .then(|| self.blocked_dom.clone() as Arc<dyn DomainOps>)
    }
}

pub struct MockStatic {
    pub id: u64,
    pub kind: DomainKind,
    shared: Arc<Shared>,
}

impl DomainOps for MockStatic {
    fn kind(&self) -> DomainKind {
        self.kind
    }
    fn attach_dev(&self, dev: &DeviceInfo) -> Result<()> {
        self.shared.check_alive(dev, "attach_dev");
        self.shared.attach(dev, self.id);
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pte {
    pub pa: u64,
    pub size: u64,
    pub prot: Prot,
}

pub struct MockPaging {
    pub id: u64,
    shared: Arc<Shared>,
    ias: u32,
    pub ptes: Mutex<BTreeMap<u64, Pte>>,
    pub enforce: AtomicBool,
    pub syncs: AtomicU64,
    pub sync_maps: AtomicU64,
    pub flushes: AtomicU64,
    pub freed: Mutex<Vec<FreedTable>>,
    /// Fail a map_pages call touching this IOVA.
    pub fail_map_at: Mutex<Option<u64>>,
}

impl MockPaging {
    pub const PGSIZE: PgSizeBitmap = PgSizeBitmap(SZ_4K | SZ_2M);

    fn new(shared: Arc<Shared>, ias: u32) -> Self {
        let id = shared.next_domain.fetch_add(1, Ordering::Relaxed);
        Self {
            id,
            shared,
            ias,
            ptes: Mutex::new(BTreeMap::new()),
            enforce: AtomicBool::new(false),
            syncs: AtomicU64::new(0),
            sync_maps: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            freed: Mutex::new(Vec::new()),
            fail_map_at: Mutex::new(None),
        }
    }

    fn lookup(ptes: &BTreeMap<u64, Pte>, iova: u64) -> Option<(u64, Pte)> {
        ptes.range(..=iova)
            .next_back()
            .filter(|(k, p)| iova < *k + p.size)
            .map(|(k, p)| (*k, *p))
    }
}

/// The mock paging object behind a core domain.
pub fn mock_of(d: &IommuDomain) -> &MockPaging {
    let ops: &dyn DomainOps = d.base();
    (ops as &dyn std::any::Any)
        .downcast_ref::<MockPaging>()
        .expect("a mock paging domain")
}

/// The mock id of the domain object behind a core domain (paging or static).
pub fn mock_id(d: &IommuDomain) -> u64 {
    let any = d.base() as &dyn std::any::Any;
    if let Some(p) = any.downcast_ref::<MockPaging>() {
        p.id
    } else {
        any.downcast_ref::<MockStatic>().expect("a mock domain").id
    }
}

impl DomainOps for MockPaging {
    fn kind(&self) -> DomainKind {
        DomainKind::Paging
    }

    fn attach_dev(&self, dev: &DeviceInfo) -> Result<()> {
        self.shared.check_alive(dev, "attach_dev");
        if self
            .shared
            .fail_attach
            .lock()
            .unwrap()
            .contains(&dev.desc.name)
        {
            return Err(Error::Incompatible("injected"));
        }
        if self.enforce.load(Ordering::Acquire) && !dev.desc.canwbs {
            return Err(Error::Incompatible("not canwbs"));
        }
        self.shared.attach(dev, self.id);
        Ok(())
    }

    fn enforce_cache_coherency(&self) -> bool {
        let devs = self.shared.devices.lock().unwrap();
        let ok = devs
            .values()
            .filter(|d| d.attached_to == Some(self.id))
            .all(|d| d.canwbs);
        if ok {
            self.enforce.store(true, Ordering::Release);
        }
        ok
    }
}

impl PagingDomainOps for MockPaging {
    fn pgsize_bitmap(&self) -> PgSizeBitmap {
        Self::PGSIZE
    }

    fn geometry(&self) -> Geometry {
        Geometry::from_ias(self.ias)
    }

    fn map_pages(
        &self,
        iova: Iova,
        paddr: PhysAddr,
        pgsize: u64,
        pgcount: u64,
        prot: Prot,
    ) -> (u64, Result<()>) {
        if !Self::PGSIZE.contains(pgsize)
            || iova.0 % pgsize != 0
            || paddr.0 % pgsize != 0
            || pgcount == 0
        {
            self.shared.violate(format!(
                "bad map_pages {iova:?} {paddr:?} {pgsize:#x} x{pgcount}"
            ));
            return (0, Err(Error::Invalid("contract")));
        }
        let fail = *self.fail_map_at.lock().unwrap();
        let mut ptes = self.ptes.lock().unwrap();
        let mut done = 0;
        for k in 0..pgcount {
            let i = iova.0 + k * pgsize;
            if fail.is_some_and(|f| f >= i && f < i + pgsize) {
                return (done, Err(Error::NoMemory("injected")));
            }
            let overlaps = ptes
                .range(..i + pgsize)
                .next_back()
                .is_some_and(|(a, p)| a + p.size > i);
            if overlaps {
                return (done, Err(Error::Exists("mapped")));
            }
            ptes.insert(
                i,
                Pte {
                    pa: paddr.0 + k * pgsize,
                    size: pgsize,
                    prot,
                },
            );
            done += pgsize;
        }
        (done, Ok(()))
    }

    fn unmap_pages(&self, iova: Iova, pgsize: u64, pgcount: u64, gather: &mut IotlbGather) -> u64 {
        let mut ptes = self.ptes.lock().unwrap();
        let mut done = 0;
        for k in 0..pgcount {
            let i = iova.0 + k * pgsize;
            match ptes.get(&i) {
                Some(p) if p.size <= pgsize => {
                    let size = p.size;
                    if gather.needs_sync_before(Iova(i), size) {
                        self.syncs.fetch_add(1, Ordering::Relaxed);
                        gather.reset();
                    }
                    ptes.remove(&i);
                    gather.add_leaf(Iova(i), size);
                    done += size;
                    if size != pgsize {
                        break;
                    }
                }
                _ => break,
            }
        }
        done
    }

    fn iotlb_sync(&self, gather: &mut IotlbGather) -> Result<()> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        let f: Vec<FreedTable> = gather.freelist.drain(..).collect();
        self.freed.lock().unwrap().extend(f);
        Ok(())
    }

    fn iotlb_sync_map(&self, _iova: Iova, _size: u64) -> Result<()> {
        self.sync_maps.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn flush_iotlb_all(&self) -> Result<()> {
        self.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn free_tables(&self, tables: Vec<FreedTable>) {
        self.freed.lock().unwrap().extend(tables);
    }

    fn iova_to_phys(&self, iova: Iova) -> Option<PhysAddr> {
        let ptes = self.ptes.lock().unwrap();
        Self::lookup(&ptes, iova.0).map(|(k, p)| PhysAddr(p.pa + (iova.0 - k)))
    }
}

/// A core with one mock IOMMU.
pub fn setup(policy: DefaultPolicy) -> (IommuCore, Arc<MockDriver>, IommuId) {
    setup_with(policy, MockDriver::new())
}

pub fn setup_with(policy: DefaultPolicy, drv: MockDriver) -> (IommuCore, Arc<MockDriver>, IommuId) {
    let core = IommuCore::new(policy);
    let drv = Arc::new(drv);
    let id = core.register_iommu(drv.clone());
    (core, drv, id)
}

/// A PCI device description under `parent`.
pub fn pci(
    name: &str,
    iommu: IommuId,
    bus: u8,
    dev: u8,
    func: u8,
    parent: Option<BridgeId>,
) -> DeviceDesc {
    let mut d = DeviceDesc::pci(name, iommu, Bdf::new(bus, dev, func));
    if let BusAddress::Pci { parent: p, .. } = &mut d.bus {
        *p = parent;
    }
    d
}

/// Assert no contract violation was recorded.
pub fn assert_clean(drv: &MockDriver) {
    let v = drv.shared.violations.lock().unwrap();
    assert!(v.is_empty(), "driver contract violations: {v:#?}");
}

/// A root port without ACS: every device below it shares one group.
pub fn non_acs_root_port(core: &IommuCore) -> BridgeId {
    core.add_bridge(BridgeDesc {
        bdf: Bdf::new(0, 1, 0),
        parent: None,
        kind: BridgeKind::RootPort,
        acs: Acs::NONE,
    })
    .unwrap()
}
