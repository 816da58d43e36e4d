//! The simulated platform: SMMUv3 hardware models in simulated memory, the real
//! SMMUv3 driver probed through MMIO, the IOMMU core with its groups and default
//! domains, and the DMA API per device (ARCHITECTURE.md, "Data flow of one DMA").
//!
//! The simulator only wires the layers together; each adapter here is a thin
//! translation between two crates' interfaces:
//! * [`CoreDomain`]: iommu-core's domain handle as the DMA layer's `DmaDomain`;
//! * iommu-iova's `IovaDomain` is the DMA layer's `IovaAllocator` directly (the
//!   binding lives in iommu-dma);
//! * the cookie hook that lets the core's live DMA → DMA-FQ switch set up the DMA
//!   layer's flush queue before the new type is published.

use crate::error::{Error, Result};
use crate::metrics::{HitMissCount, HwCounters};
use crate::scenario::{DeviceDecl, Policy, SmmuDecl};
use io_pgtable::{FreedTable, IotlbGather};
use iommu_core::{
    Bdf, DefaultPolicy, DeviceDesc, DeviceId, DomainType, IommuCore, IommuDomain, IommuId,
};
use iommu_dma::{DeviceConfig, DmaDevice, Swiotlb};
use iommu_memory::SimMemory;
use iommu_types::{
    Errno, Iova, Mmio, PgSizeBitmap, PhysAddr, PhysMem, Prot, ThreadCpuId, VirtualClock,
};
use smmuv3_model::{Capacity, SmmuConfig};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Flush-queue timeout (`IOVA_DEFAULT_FQ_TIMEOUT`, reference `software.md` §2): the
/// DMA layer's own constant, re-exported for the simulator's users.
pub const FQ_TIMEOUT_NS: u64 = iommu_dma::FQ_DEFAULT_TIMEOUT_NS;

/// Bytes of the swiotlb pool.
const SWIOTLB_BYTES: u64 = 8 << 20;

/// iommu-core's domain as the DMA layer's [`iommu_dma::DmaDomain`].
#[derive(Clone)]
pub struct CoreDomain(pub Arc<IommuDomain>);

impl iommu_dma::DmaDomain for CoreDomain {
    fn pgsize_bitmap(&self) -> PgSizeBitmap {
        self.0.pgsize_bitmap()
    }
    fn aperture(&self) -> (u64, u64) {
        let g = self.0.geometry();
        (g.aperture_start, g.aperture_end)
    }
    fn map(
        &self,
        iova: Iova,
        pa: PhysAddr,
        size: u64,
        prot: Prot,
    ) -> core::result::Result<(), Errno> {
        self.0.map(iova, pa, size, prot).map_err(|e| e.errno())
    }
    fn unmap(&self, iova: Iova, size: u64, gather: &mut IotlbGather) -> u64 {
        self.0.unmap_fast(iova, size, gather).unwrap_or(0)
    }
    fn iotlb_sync(&self, gather: &mut IotlbGather) -> core::result::Result<(), Errno> {
        self.0.iotlb_sync(gather).map_err(|e| e.errno())
    }
    fn flush_iotlb_all(&self) -> core::result::Result<(), Errno> {
        self.0.flush_iotlb_all().map_err(|e| e.errno())
    }
    fn free_tables(&self, tables: Vec<FreedTable>) {
        let _ = self.0.free_tables(tables);
    }
    fn iova_to_phys(&self, iova: Iova) -> Option<PhysAddr> {
        self.0.iova_to_phys(iova)
    }
}

/// The DMA layer's per-domain state, as the simulator builds it.
pub type Cookie = iommu_dma::DmaCookie<CoreDomain, Arc<iommu_iova::IovaDomain>>;
/// The DMA API of one simulated device.
pub type SimDma = DmaDevice<CoreDomain, Arc<iommu_iova::IovaDomain>>;

/// The hook the core calls for the live switch.
struct CookieHook(Arc<Cookie>);

impl iommu_core::DmaCookie for CookieHook {
    fn init_flush_queue(&self) -> iommu_core::Result<()> {
        self.0
            .enable_flush_queue()
            .map_err(|_| iommu_core::Error::NoMemory("flush queue setup failed"))
    }
}

/// One SMMUv3 instance: the hardware model and the driver bound to it.
pub struct SmmuUnit {
    /// Scenario name.
    pub name: String,
    /// The hardware model.
    pub hw: Arc<smmuv3_model::Smmu>,
    /// The driver's instance.
    pub drv: Arc<smmuv3::Smmu>,
    /// The core's id of it.
    pub id: IommuId,
}

/// One device.
pub struct DeviceUnit {
    /// Its declaration.
    pub decl: DeviceDecl,
    /// Index into [`Platform::smmus`].
    pub smmu: usize,
    /// The core's id.
    pub id: DeviceId,
    /// A kernel driver is bound (uses the DMA API).
    pub bound: bool,
    /// The DMA API over the current default domain (None for identity/blocked).
    pub dma: Option<Arc<SimDma>>,
    /// Serial of the domain `dma` maps through.
    pub dma_domain: u64,
}

/// A whole platform.
pub struct Platform {
    /// Simulated physical memory.
    pub mem: Arc<SimMemory>,
    /// Virtual time.
    pub clock: Arc<VirtualClock>,
    /// Simulated CPU ids (one per worker thread).
    pub cpus: Arc<ThreadCpuId>,
    /// CPU page size.
    pub cpu_page: u64,
    /// The IOMMU core.
    pub core: IommuCore,
    /// SMMUs, in declaration order.
    pub smmus: Vec<SmmuUnit>,
    /// Devices, in declaration order.
    pub devices: Vec<DeviceUnit>,
    swiotlb: Arc<Swiotlb>,
    cookies: Mutex<BTreeMap<u64, Arc<Cookie>>>,
}

fn capacity(n: Option<u32>) -> Capacity {
    match n {
        None => Capacity::Unbounded,
        Some(0) => Capacity::Disabled,
        Some(n) => Capacity::Bounded(n as usize),
    }
}

fn perr(what: &str, e: impl core::fmt::Display) -> Error {
    Error::Platform(format!("{what}: {e}"))
}

impl Platform {
    /// Build a platform: probe every SMMU, then add (and bind) every device. The
    /// models run their architectural sanitizer when `sanitizer` is set (it re-walks
    /// memory on every cached translation, so benchmarks leave it off).
    pub fn new(
        cpu_page: u64,
        policy: Policy,
        cpus: u32,
        smmus: &[SmmuDecl],
        devices: &[DeviceDecl],
        sanitizer: bool,
    ) -> Result<Self> {
        let mem = Arc::new(SimMemory::new());
        let core = IommuCore::new(match policy {
            Policy::Strict => DefaultPolicy::Strict,
            Policy::Lazy => DefaultPolicy::Lazy,
            Policy::Passthrough => DefaultPolicy::Passthrough,
        });
        let swiotlb = Arc::new(
            Swiotlb::new(mem.clone() as Arc<dyn PhysMem>, SWIOTLB_BYTES, cpu_page)
                .map_err(|e| perr("swiotlb", e))?,
        );
        let asids = Arc::new(smmuv3::ids::IdAllocator::new("ASID", 16));
        let mut p = Platform {
            mem,
            clock: Arc::new(VirtualClock::new(0)),
            cpus: Arc::new(ThreadCpuId::new(cpus.max(1) as usize)),
            cpu_page,
            core,
            smmus: Vec::new(),
            devices: Vec::new(),
            swiotlb,
            cookies: Mutex::new(BTreeMap::new()),
        };
        for (i, s) in smmus.iter().enumerate() {
            let f = s.features;
            let cfg = SmmuConfig {
                stages: match (f.s1, f.s2) {
                    (true, true) => smmuv3_model::Stages::Both,
                    (false, true) => smmuv3_model::Stages::S2,
                    _ => smmuv3_model::Stages::S1,
                },
                ats: f.ats,
                coherent: f.coherent,
                fwb: f.fwb,
                ril: f.ril,
                gran4k: s.granule <= 0x1000,
                gran16k: s.granule <= 0x4000,
                gran64k: true,
                tlb: capacity(s.tlb),
                walk_cache: capacity(s.walk_cache),
                config_cache: capacity(s.cfg_cache),
                cmdq_log2: s.cmdq_log2,
                sanitizer,
                ..SmmuConfig::default()
            };
            let hw = Arc::new(smmuv3_model::Smmu::new(
                cfg,
                p.mem.clone() as Arc<dyn PhysMem>,
            ));
            let drv = smmuv3::Smmu::probe(
                hw.clone() as Arc<dyn Mmio>,
                p.mem.clone() as Arc<dyn PhysMem>,
                smmuv3::DriverConfig {
                    cmdq_log2: s.cmdq_log2,
                    asids: Some(asids.clone()),
                    iommu_id: i as u32,
                    ..Default::default()
                },
            )
            .map_err(|e| perr(&format!("probing SMMU {}", s.name), e))?;
            let id = p
                .core
                .register_iommu(smmuv3::SmmuDriver::new(drv.clone(), &s.name));
            p.smmus.push(SmmuUnit {
                name: s.name.clone(),
                hw,
                drv,
                id,
            });
        }
        for d in devices {
            p.add_device(d)?;
        }
        Ok(p)
    }

    /// Add (hot-plug) a device and bind a kernel driver to it.
    pub fn add_device(&mut self, d: &DeviceDecl) -> Result<usize> {
        let smmu = self
            .smmus
            .iter()
            .position(|s| s.name == d.smmu)
            .ok_or_else(|| Error::Platform(format!("unknown SMMU {}", d.smmu)))?;
        // Requester IDs 1..=0xfeff: bus 1..=255 (bus 0 is the root complex's).
        let rid = u16::try_from(self.devices.len() + 1)
            .ok()
            .filter(|&r| r < 0xff00)
            .ok_or_else(|| Error::Platform("too many devices (at most 65279)".into()))?;
        let mut desc = DeviceDesc::pci(
            &d.name,
            self.smmus[smmu].id,
            Bdf::new(
                (rid >> 8) as u8 + 1,
                ((rid >> 3) & 31) as u8,
                (rid & 7) as u8,
            ),
        );
        desc.stream_ids = vec![d.sid];
        desc.untrusted = d.untrusted;
        desc.dma_coherent = d.coherent;
        desc.canwbs = d.canwbs;
        desc.ats = d.ats;
        let mask = if d.dma_bits >= 64 {
            u64::MAX
        } else {
            (1u64 << d.dma_bits) - 1
        };
        desc.dma_mask = mask;
        desc.coherent_dma_mask = mask;
        let id = self
            .core
            .add_device(desc)
            .map_err(|e| perr(&format!("adding device {}", d.name), e))?;
        self.devices.push(DeviceUnit {
            decl: d.clone(),
            smmu,
            id,
            bound: false,
            dma: None,
            dma_domain: 0,
        });
        let idx = self.devices.len() - 1;
        self.bind(idx)
            .map_err(|e| perr(&format!("binding device {}", d.name), e.1))?;
        Ok(idx)
    }

    /// Bind a kernel driver (`iommu_device_use_default_domain`) and set up its DMA API.
    pub fn bind(&mut self, idx: usize) -> core::result::Result<(), (Errno, String)> {
        let dev = self.devices[idx].id;
        self.core
            .device_use_default_domain(dev)
            .map_err(|e| (e.errno(), e.to_string()))?;
        self.devices[idx].bound = true;
        self.refresh_dma(idx)
    }

    /// Unbind the kernel driver.
    pub fn unbind(&mut self, idx: usize) -> core::result::Result<(), (Errno, String)> {
        let dev = self.devices[idx].id;
        self.core
            .device_unuse_default_domain(dev)
            .map_err(|e| (e.errno(), e.to_string()))?;
        self.devices[idx].bound = false;
        self.devices[idx].dma = None;
        Ok(())
    }

    /// (Re)build the device's DMA API if its default domain changed.
    pub fn refresh_dma(&mut self, idx: usize) -> core::result::Result<(), (Errno, String)> {
        let dev = self.devices[idx].id;
        let dom = self
            .core
            .device_default_domain(dev)
            .map_err(|e| (e.errno(), e.to_string()))?
            .ok_or((Errno::ENODEV, "no default domain".to_string()))?;
        if self.devices[idx].dma.is_some() && self.devices[idx].dma_domain == dom.serial() {
            return Ok(());
        }
        let ty = dom.domain_type();
        if !matches!(ty, DomainType::Dma | DomainType::DmaFq) {
            self.devices[idx].dma = None;
            self.devices[idx].dma_domain = dom.serial();
            return Ok(());
        }
        let cookie = self
            .cookie_for(&dom)
            .map_err(|e| (Errno::ENOMEM, e.to_string()))?;
        let d = &self.devices[idx].decl;
        let mask = if d.dma_bits >= 64 {
            u64::MAX
        } else {
            (1u64 << d.dma_bits) - 1
        };
        let cfg = DeviceConfig {
            cpu_page: self.cpu_page,
            trusted: !d.untrusted,
            coherent: d.coherent,
            dma_mask: mask,
            coherent_dma_mask: mask,
            ..DeviceConfig::default()
        };
        let dma = SimDma::new(
            cookie,
            self.mem.clone() as Arc<dyn PhysMem>,
            Some(self.swiotlb.clone()),
            cfg,
        )
        .map_err(|e| (e.errno(), e.to_string()))?;
        self.devices[idx].dma = Some(Arc::new(dma));
        self.devices[idx].dma_domain = dom.serial();
        Ok(())
    }

    fn cookie_for(&self, dom: &Arc<IommuDomain>) -> Result<Arc<Cookie>> {
        let mut c = self
            .cookies
            .lock()
            .map_err(|_| Error::Platform("cookie lock".into()))?;
        if let Some(k) = c.get(&dom.serial()) {
            return Ok(k.clone());
        }
        let granule = dom.pgsize_bitmap().smallest().unwrap_or(4096);
        let iovad = iommu_iova::IovaDomain::builder(granule, 1)
            .cpus(self.cpus.clone())
            .clock(self.clock.clone())
            .build()
            .map_err(|e| perr("IOVA domain", e))?;
        let cookie = Arc::new(
            Cookie::new(CoreDomain(dom.clone()), Arc::new(iovad), self.cpus.clone())
                .map_err(|e| perr("DMA cookie", e))?
                // The flush queue arms its timeout on the virtual clock.
                .with_clock(self.clock.clone()),
        );
        let ty = dom
            .set_dma_cookie(Arc::new(CookieHook(cookie.clone())))
            .map_err(|e| perr("DMA cookie", e))?;
        if ty == DomainType::DmaFq && cookie.enable_flush_queue().is_err() {
            dom.demote_to_strict();
        }
        c.insert(dom.serial(), cookie.clone());
        Ok(cookie)
    }

    /// Every DMA cookie, by domain serial.
    pub fn cookies(&self) -> Vec<(u64, Arc<Cookie>)> {
        self.cookies
            .lock()
            .map(|c| c.iter().map(|(k, v)| (*k, v.clone())).collect())
            .unwrap_or_default()
    }

    /// Index of the device named `name`.
    pub fn device(&self, name: &str) -> Option<usize> {
        self.devices.iter().position(|d| d.decl.name == name)
    }

    /// Fire the flush-queue timers whose deadline (armed by the queue on the virtual
    /// clock when it took its first entry) has passed. Returns the timers fired.
    pub fn poll_timers(&self) -> usize {
        self.cookies()
            .iter()
            .filter(|(_, cookie)| cookie.poll_flush_queue().unwrap_or(false))
            .count()
    }

    /// Flush every flush queue now (or only the one of `domain`).
    pub fn flush_all(&self, domain: Option<u64>) {
        for (serial, cookie) in self.cookies() {
            if domain.is_none_or(|d| d == serial) {
                let _ = cookie.flush_queue_timer();
            }
        }
    }

    /// Hardware counters summed over all SMMUs.
    pub fn counters(&self) -> HwCounters {
        let mut total = HwCounters::default();
        for s in &self.smmus {
            total.merge(&counters_of(&s.hw.stats()));
        }
        total
    }

    /// Sanitizer reports of all SMMUs, rendered.
    pub fn sanitizer_reports(&self) -> Vec<String> {
        self.smmus
            .iter()
            .flat_map(|s| {
                s.hw.sanitizer_reports()
                    .into_iter()
                    .map(move |r| format!("{}: {r:?}", s.name))
            })
            .collect()
    }

    /// Bytes exposed by every device's live mappings.
    pub fn exposed_bytes(&self) -> u64 {
        self.devices
            .iter()
            .filter_map(|d| d.dma.as_ref())
            .map(|d| d.exposed_bytes())
            .sum()
    }

    /// Serial of the domain a device is currently attached to (its oracle space).
    pub fn space_of(&self, idx: usize) -> u32 {
        self.core
            .device_domain(self.devices[idx].id)
            .ok()
            .flatten()
            .map_or(0, |d| d.serial() as u32)
    }

    /// A device DMA read through its SMMU. A device declared with ATS on an SMMU
    /// with ATS translates through its ATC (PCIe ATS translation requests) and then
    /// issues translated transactions; others send untranslated transactions.
    pub fn dma_read(
        &self,
        idx: usize,
        iova: u64,
        buf: &mut [u8],
    ) -> core::result::Result<(), smmuv3_model::Error> {
        let d = &self.devices[idx];
        let hw = &self.smmus[d.smmu].hw;
        if !self.uses_ats(idx) {
            return hw.dma_read(d.decl.sid, None, iova, buf, false);
        }
        let mut done = 0usize;
        while done < buf.len() {
            let a = iova.wrapping_add(done as u64);
            let t = hw
                .ats_translate(d.decl.sid, None, a, smmuv3_model::Access::READ)
                .map_err(smmuv3_model::Error::Fault)?;
            let n = (t.remaining(a).min(4096 - (a & 4095)) as usize).min(buf.len() - done);
            self.mem
                .read_bytes(t.pa, &mut buf[done..done + n])
                .map_err(smmuv3_model::Error::Memory)?;
            done += n;
        }
        Ok(())
    }

    /// A device DMA write through its SMMU (see [`Platform::dma_read`]).
    pub fn dma_write(
        &self,
        idx: usize,
        iova: u64,
        buf: &[u8],
    ) -> core::result::Result<(), smmuv3_model::Error> {
        let d = &self.devices[idx];
        let hw = &self.smmus[d.smmu].hw;
        if !self.uses_ats(idx) {
            return hw.dma_write(d.decl.sid, None, iova, buf, false);
        }
        let mut done = 0usize;
        while done < buf.len() {
            let a = iova.wrapping_add(done as u64);
            let t = hw
                .ats_translate(d.decl.sid, None, a, smmuv3_model::Access::WRITE)
                .map_err(smmuv3_model::Error::Fault)?;
            let n = (t.remaining(a).min(4096 - (a & 4095)) as usize).min(buf.len() - done);
            self.mem
                .write_bytes(t.pa, &buf[done..done + n])
                .map_err(smmuv3_model::Error::Memory)?;
            done += n;
        }
        Ok(())
    }

    /// Whether device `idx` uses PCIe ATS (it declares it and its SMMU has it).
    pub fn uses_ats(&self, idx: usize) -> bool {
        let d = &self.devices[idx];
        d.decl.ats && self.smmus[d.smmu].hw.config().ats
    }
}

/// Name of a command opcode (`smmuv3.md` §4).
pub fn opcode_name(op: u8) -> Option<&'static str> {
    use smmuv3_model::cmd::op;
    Some(match op {
        op::PREFETCH_CONFIG => "CMD_PREFETCH_CONFIG",
        op::PREFETCH_ADDR => "CMD_PREFETCH_ADDR",
        op::CFGI_STE => "CFGI_STE",
        op::CFGI_STE_RANGE => "CFGI_STE_RANGE",
        op::CFGI_CD => "CFGI_CD",
        op::CFGI_CD_ALL => "CFGI_CD_ALL",
        op::CFGI_VMS_PIDM => "CFGI_VMS_PIDM",
        op::TLBI_NH_ALL => "TLBI_NH_ALL",
        op::TLBI_NH_ASID => "TLBI_NH_ASID",
        op::TLBI_NH_VA => "TLBI_NH_VA",
        op::TLBI_NH_VAA => "TLBI_NH_VAA",
        op::TLBI_EL3_ALL => "TLBI_EL3_ALL",
        op::TLBI_EL3_VA => "TLBI_EL3_VA",
        op::TLBI_EL2_ALL => "TLBI_EL2_ALL",
        op::TLBI_EL2_ASID => "TLBI_EL2_ASID",
        op::TLBI_EL2_VA => "TLBI_EL2_VA",
        op::TLBI_EL2_VAA => "TLBI_EL2_VAA",
        op::TLBI_S12_VMALL => "TLBI_S12_VMALL",
        op::TLBI_S2_IPA => "TLBI_S2_IPA",
        op::TLBI_NSNH_ALL => "TLBI_NSNH_ALL",
        op::ATC_INV => "ATC_INV",
        op::PRI_RESP => "CMD_PRI_RESP",
        op::RESUME => "CMD_RESUME",
        op::STALL_TERM => "CMD_STALL_TERM",
        op::SYNC => "CMD_SYNC",
        _ => return None,
    })
}

/// The model's statistics as the simulator's counters.
pub fn counters_of(s: &smmuv3_model::Stats) -> HwCounters {
    let hm = |h: smmuv3_model::HitMiss| HitMissCount {
        hits: h.hits,
        misses: h.misses,
    };
    let mut commands = BTreeMap::new();
    for (op, &n) in s.commands.iter().enumerate() {
        if n != 0 {
            let name =
                opcode_name(op as u8).map_or_else(|| format!("OP_{op:#04x}"), str::to_string);
            commands.insert(name, n);
        }
    }
    HwCounters {
        mmio_reads: s.mmio_reads,
        mmio_writes: s.mmio_writes,
        commands,
        cmd_syncs: s.syncs,
        command_errors: s.command_errors,
        translations: s.translations,
        faults: s.faults,
        events_recorded: s.events_recorded,
        events_dropped: s.events_dropped,
        walk_reads: s.walk_reads,
        tlb: hm(s.tlb),
        walk_cache: hm(s.walk_cache),
        ste_cache: hm(s.ste_cache),
        cd_cache: hm(s.cd_cache),
        atc: hm(s.atc),
    }
}
