//! One SMMUv3 instance: probe (ID registers → [`Features`]), the reset and enable
//! sequence of `smmuv3.md` §1.8, stream management, hitless STE writes and the
//! invalidation primitives the domains use (§4.4, §6, §7).

use crate::lock::Mutex;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use iommu_types::{Mmio, PhysAddr, PhysMem};

use crate::cmd::{Cmd, TlbiRange};
use crate::cmdq::{Cmdq, SyncMode};
use crate::event::FaultReport;
use crate::evtq::Evtq;
use crate::ids::{GLOBAL_ASIDS, IdAllocator};
use crate::inv::{self, InvPlan, InvRequest};
use crate::regs::{Features, StLevels, cr0, cr1, cr2, gbpa, off};
use crate::ste::Ste;
use crate::strtab::{Strtab, StrtabFormat};
use crate::writer::{ENTRY_DWORDS, EntryIo, SteKind, write_entry};
use crate::{Error, Result};

/// Stream-table layout request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrtabPref {
    /// Linear when the SID space is small (≤ 8 bits) or 2-level is unsupported.
    Auto,
    /// Force linear.
    Linear,
    /// Force two-level (error if unsupported).
    TwoLevel,
}

/// CMD_SYNC completion request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncPref {
    /// MSI when the SMMU is coherent and has MSIs, else poll CONS.
    Auto,
    /// Force MSI (error if unsupported).
    Msi,
    /// Force CONS polling.
    PollCons,
}

/// Driver configuration.
#[derive(Clone, Debug)]
pub struct DriverConfig {
    /// Stream table layout.
    pub strtab: StrtabPref,
    /// CMD_SYNC completion.
    pub sync: SyncPref,
    /// Upper bound on log2 command-queue entries.
    pub cmdq_log2: u32,
    /// Upper bound on log2 event-queue entries.
    pub evtq_log2: u32,
    /// Polls before a wait is declared timed out.
    pub poll_limit: u32,
    /// Stage 1 is required.
    pub need_s1: bool,
    /// Stage 2 is required.
    pub need_s2: bool,
    /// Range-invalidation commands before falling back to a context-wide flush.
    pub max_inv_cmds: usize,
    /// ASID space to use (default: the global one shared by all SMMUs).
    pub asids: Option<Arc<IdAllocator>>,
    /// Identifier reported to the core in fault reports.
    pub iommu_id: u32,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            strtab: StrtabPref::Auto,
            sync: SyncPref::Auto,
            cmdq_log2: 8,
            evtq_log2: 7,
            poll_limit: 1_000_000,
            need_s1: false,
            need_s2: false,
            max_inv_cmds: inv::DEFAULT_MAX_RANGE_CMDS,
            asids: None,
            iommu_id: 0,
        }
    }
}

/// Per-stream state.
#[derive(Default)]
pub(crate) struct StreamState {
    /// ATS enabled for this stream's function.
    pub ats: bool,
    /// The master's DMA is always snooped (IORT CANWBS): it may join a domain that
    /// enforces cache coherency.
    pub canwbs: bool,
    /// The stream's CD table, once it has been attached to a stage-1 domain.
    pub cd_table: Option<crate::domain::CdTable>,
    /// What the stream is attached to.
    pub attached: Option<crate::domain::Attached>,
    /// Substreams (PASIDs) attached to stage-1 domains.
    pub pasids: BTreeMap<u32, crate::domain::Attached>,
}

/// One SMMUv3.
pub struct Smmu {
    pub(crate) mmio: Arc<dyn Mmio>,
    pub(crate) mem: Arc<dyn PhysMem>,
    features: Features,
    cfg: DriverConfig,
    pub(crate) cmdq: Cmdq,
    evtq: Evtq,
    strtab: Strtab,
    pub(crate) vmids: IdAllocator,
    asids: Option<Arc<IdAllocator>>,
    pub(crate) streams: Mutex<BTreeMap<u32, StreamState>>,
    /// Held across a whole attach so stream records and entries stay consistent.
    pub(crate) attach_lock: Mutex<()>,
}

impl core::fmt::Debug for Smmu {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Smmu")
            .field("features", &self.features)
            .finish_non_exhaustive()
    }
}

fn poll_until(limit: u32, what: &'static str, mut f: impl FnMut() -> bool) -> Result<()> {
    for _ in 0..limit {
        if f() {
            return Ok(());
        }
        core::hint::spin_loop();
    }
    Err(Error::Timeout(what))
}

impl Smmu {
    /// Probe the SMMU behind `mmio`, allocate its tables and queues in `mem`, and
    /// run the reset/enable sequence (§1.8). Unknown streams abort (GBPA.ABORT and
    /// abort STEs).
    pub fn probe(
        mmio: Arc<dyn Mmio>,
        mem: Arc<dyn PhysMem>,
        cfg: DriverConfig,
    ) -> Result<Arc<Smmu>> {
        let f = Features::decode(
            mmio.read32(off::IDR0),
            mmio.read32(off::IDR1),
            mmio.read32(off::IDR3),
            mmio.read32(off::IDR5),
        );
        if !f.aarch64 {
            return Err(Error::Unsupported("AArch64 table format"));
        }
        if f.preset {
            return Err(Error::Unsupported("preset/relative table and queue bases"));
        }
        if !f.s1 && !f.s2 {
            return Err(Error::Unsupported("any translation stage"));
        }
        if cfg.need_s1 && !f.s1 {
            return Err(Error::Unsupported("stage 1"));
        }
        if cfg.need_s2 && !f.s2 {
            return Err(Error::Unsupported("stage 2"));
        }
        if f.pgsize_bitmap == 0 {
            return Err(Error::Unsupported("any translation granule"));
        }
        let fmt = match (cfg.strtab, f.st_levels) {
            (StrtabPref::TwoLevel, StLevels::Linear) => {
                return Err(Error::Unsupported("two-level stream tables"));
            }
            (StrtabPref::TwoLevel, _) => StrtabFormat::TwoLevel,
            (StrtabPref::Linear, _) | (StrtabPref::Auto, StLevels::Linear) => StrtabFormat::Linear,
            (StrtabPref::Auto, StLevels::TwoLevel) if f.sid_bits <= 8 => StrtabFormat::Linear,
            (StrtabPref::Auto, StLevels::TwoLevel) => StrtabFormat::TwoLevel,
        };
        let mode = match cfg.sync {
            SyncPref::Msi if !f.msi => return Err(Error::Unsupported("MSI CMD_SYNC completion")),
            SyncPref::Msi => SyncMode::Msi,
            SyncPref::PollCons => SyncMode::PollCons,
            SyncPref::Auto if f.msi && f.coherent => SyncMode::Msi,
            SyncPref::Auto => SyncMode::PollCons,
        };
        let cmdq_log2 = cfg.cmdq_log2.min(f.cmdq_log2);
        if cmdq_log2 < 1 {
            return Err(Error::Unsupported("a command queue of at least 2 entries"));
        }
        let evtq_log2 = cfg.evtq_log2.min(f.evtq_log2);
        let poll = cfg.poll_limit;

        // 1. Abort incoming traffic while disabled; disable everything.
        let g = mmio.read32(off::GBPA);
        mmio.write32(off::GBPA, g | gbpa::ABORT | gbpa::UPDATE);
        poll_until(poll, "GBPA.UPDATE", || {
            mmio.read32(off::GBPA) & gbpa::UPDATE == 0
        })?;
        Self::write_cr0(&*mmio, 0, poll)?;
        // 2. Memory attributes and private TLB maintenance.
        let mut c1 = [0u64];
        for fl in [cr1::QUEUE_IC, cr1::QUEUE_OC, cr1::TABLE_IC, cr1::TABLE_OC] {
            fl.set(&mut c1, cr1::CACHE_WB);
        }
        cr1::QUEUE_SH.set(&mut c1, cr1::SH_ISH);
        cr1::TABLE_SH.set(&mut c1, cr1::SH_ISH);
        mmio.write32(off::CR1, c1[0] as u32);
        mmio.write32(off::CR2, cr2::PTM | cr2::RECINVSID);
        // 3. Stream table.
        let strtab = Strtab::new(&*mmio, mem.clone(), fmt, f.sid_bits)?;
        // 4. Command queue, enabled.
        let cmdq = Cmdq::new(mmio.clone(), mem.clone(), cmdq_log2, mode, poll)?;
        let mut en = cr0::CMDQEN;
        Self::write_cr0(&*mmio, en, poll)?;
        // 5. Invalidate all configuration and TLBs.
        cmdq.submit(&[Cmd::CfgiAll])?;
        if f.hyp {
            cmdq.submit(&[Cmd::TlbiEl2All])?;
        }
        cmdq.submit(&[Cmd::TlbiNsnhAll])?;
        // 6. Event queue.
        let evtq = Evtq::new(mmio.clone(), mem.clone(), evtq_log2)?;
        en |= cr0::EVTQEN;
        Self::write_cr0(&*mmio, en, poll)?;
        // 7. ATS checking, then translation on.
        if f.ats {
            en |= cr0::ATSCHK;
            Self::write_cr0(&*mmio, en, poll)?;
        }
        en |= cr0::SMMUEN;
        Self::write_cr0(&*mmio, en, poll)?;
        Ok(Arc::new(Smmu {
            vmids: IdAllocator::new("VMID", f.vmid_bits),
            asids: cfg.asids.clone(),
            mmio,
            mem,
            features: f,
            cfg,
            cmdq,
            evtq,
            strtab,
            streams: Mutex::new(BTreeMap::new()),
            attach_lock: Mutex::new(()),
        }))
    }

    fn write_cr0(mmio: &dyn Mmio, v: u32, poll: u32) -> Result<()> {
        mmio.write32(off::CR0, v);
        poll_until(poll, "CR0ACK", || mmio.read32(off::CR0ACK) == v)
    }

    /// Disable translation (CR0 = 0); incoming traffic then follows GBPA (abort).
    pub fn disable(&self) -> Result<()> {
        Self::write_cr0(&*self.mmio, 0, self.cfg.poll_limit)
    }

    /// Decoded hardware features.
    pub fn features(&self) -> &Features {
        &self.features
    }

    /// The driver configuration.
    pub fn config(&self) -> &DriverConfig {
        &self.cfg
    }

    /// The command queue.
    pub fn cmdq(&self) -> &Cmdq {
        &self.cmdq
    }

    /// The stream table.
    pub fn strtab(&self) -> &Strtab {
        &self.strtab
    }

    /// The simulated/physical memory this SMMU's structures live in.
    pub fn mem(&self) -> &Arc<dyn PhysMem> {
        &self.mem
    }

    /// The ASID space this SMMU allocates from.
    pub fn asids(&self) -> &IdAllocator {
        self.asids.as_deref().unwrap_or(&GLOBAL_ASIDS)
    }

    /// The largest ASID this SMMU supports.
    pub fn asid_limit(&self) -> u32 {
        (1u32 << self.features.asid_bits) - 1
    }

    /// Submit commands (batched, each batch ending with CMD_SYNC) and wait.
    pub fn submit(&self, cmds: &[Cmd]) -> Result<()> {
        self.cmdq.submit(cmds)
    }

    /// Take a stream under the driver: its STE exists (abort) and, for a new L2
    /// table, the L1 descriptor is invalidated. `ats` records that the function has
    /// ATS enabled (ignored when the SMMU lacks ATS).
    pub fn probe_stream(&self, sid: u32, ats: bool) -> Result<()> {
        self.probe_master_stream(sid, ats, false)
    }

    /// [`Smmu::probe_stream`] for a master whose DMA is always snooped or not
    /// (`canwbs`), which decides whether it may join a coherency-enforcing domain.
    pub fn probe_master_stream(&self, sid: u32, ats: bool, canwbs: bool) -> Result<()> {
        if self.strtab.ensure(sid)? {
            self.submit(&[Cmd::CfgiSte { sid, leaf: false }])?;
        }
        let mut st = self.streams.lock();
        let e = st.entry(sid).or_default();
        e.ats = ats && self.features.ats;
        e.canwbs = canwbs;
        Ok(())
    }

    /// Whether ATS is enabled for `sid`.
    pub fn stream_ats(&self, sid: u32) -> bool {
        self.streams.lock().get(&sid).is_some_and(|s| s.ats)
    }

    /// The STE of `sid` as stored in memory.
    pub fn read_ste(&self, sid: u32) -> Result<Ste> {
        let mut w = [0u64; 8];
        self.mem.read_words(self.strtab.ste_addr(sid)?, &mut w)?;
        Ok(Ste(w))
    }

    /// Move the STE of `sid` to `target` with the hitless algorithm (§8), issuing
    /// CFGI_STE + CMD_SYNC after every step. Returns the number of steps.
    pub fn write_ste(&self, sid: u32, target: &Ste) -> Result<usize> {
        let pa = self.strtab.ste_addr(sid)?;
        let mut io = EntryInMemory {
            smmu: self,
            pa,
            inval: Cmd::CfgiSte { sid, leaf: true },
        };
        let n = write_entry::<SteKind, _>(&mut io, &target.0)?;
        if n > 0 && target.vmid().is_some() {
            // As Linux: let the SMMU fetch the new configuration ahead of traffic.
            self.submit(&[Cmd::PrefetchConfig { sid, ssid: None }])?;
        }
        Ok(n)
    }

    /// Drain the event queue into typed fault reports.
    pub fn drain_events(&self) -> Result<Vec<FaultReport>> {
        self.evtq.drain()
    }

    /// Drain the event queue into the core's fault reports (tagged with
    /// [`DriverConfig::iommu_id`]).
    pub fn drain_core_faults(&self) -> Result<Vec<iommu_core::FaultReport>> {
        let id = iommu_core::IommuId(self.cfg.iommu_id);
        Ok(self.evtq.drain()?.iter().map(|f| f.to_core(id)).collect())
    }

    /// Event-queue overflows seen so far.
    pub fn event_overflows(&self) -> u64 {
        self.evtq.overflows()
    }

    /// Invalidate `[iova, iova+size)` for an S1 context (`asid`, `vmid`) or, with
    /// `asid == None`, an S2 context (`vmid`). Falls back to ASID/VMID-wide
    /// invalidation above the configured threshold. Ends with CMD_SYNC.
    pub fn tlb_inv_range(&self, asid: Option<u16>, vmid: u16, req: &InvRequest) -> Result<usize> {
        let cmds = self.tlb_inv_range_cmds(asid, vmid, req);
        let n = cmds.len();
        self.submit(&cmds)?;
        Ok(n)
    }

    /// The commands [`Smmu::tlb_inv_range`] would issue (without the sync).
    pub fn tlb_inv_range_cmds(&self, asid: Option<u16>, vmid: u16, req: &InvRequest) -> Vec<Cmd> {
        match inv::plan(req, self.features.ril, self.cfg.max_inv_cmds) {
            InvPlan::All => alloc::vec![self.ctx_inv_cmd(asid, vmid)],
            InvPlan::Ranges(rs) => rs
                .into_iter()
                .map(|range: TlbiRange| match asid {
                    Some(asid) => Cmd::TlbiNhVa { vmid, asid, range },
                    None => Cmd::TlbiS2Ipa { vmid, range },
                })
                .collect(),
        }
    }

    /// The command invalidating a whole context.
    pub fn ctx_inv_cmd(&self, asid: Option<u16>, vmid: u16) -> Cmd {
        match asid {
            Some(asid) => Cmd::TlbiNhAsid { vmid, asid },
            None => Cmd::TlbiS12Vmall { vmid },
        }
    }

    /// ATC_INV for every `(sid, ssid)` after the TLB invalidation has completed.
    pub fn atc_inv(&self, targets: &[(u32, Option<u32>)], iova: u64, size: u64) -> Result<()> {
        if targets.is_empty() {
            return Ok(());
        }
        let (addr, sz) = inv::atc_span(iova, size);
        let cmds: Vec<Cmd> = targets
            .iter()
            .map(|&(sid, ssid)| Cmd::AtcInv {
                sid,
                ssid,
                global: false,
                addr,
                size: sz,
            })
            .collect();
        self.submit(&cmds)
    }

    /// Physical address of the STE of `sid`.
    pub fn ste_addr(&self, sid: u32) -> Result<PhysAddr> {
        self.strtab.ste_addr(sid)
    }
}

/// A 64-byte STE or CD in memory as the hitless writer sees it: 64-bit stores, and
/// `inval` (the CFGI_STE or CFGI_CD that makes the SMMU re-fetch it) + CMD_SYNC
/// between steps.
pub(crate) struct EntryInMemory<'a> {
    pub smmu: &'a Smmu,
    pub pa: PhysAddr,
    pub inval: Cmd,
}

impl EntryIo for EntryInMemory<'_> {
    fn read(&mut self) -> Result<[u64; ENTRY_DWORDS]> {
        let mut w = [0u64; ENTRY_DWORDS];
        self.smmu.mem.read_words(self.pa, &mut w)?;
        Ok(w)
    }
    fn write_word(&mut self, i: usize, value: u64) -> Result<()> {
        Ok(self
            .smmu
            .mem
            .write_u64(PhysAddr(self.pa.0 + 8 * i as u64), value)?)
    }
    fn sync(&mut self) -> Result<()> {
        self.smmu.submit(&[self.inval])
    }
}
