//! Domains and attach (`smmuv3.md` §2.1 STE contents, §3 CD, §6 invalidation,
//! §7 ASID/VMID lifecycle, §8 hitless update; seeds 001 and 002).
//!
//! * [`SmmuDomain`]: a paging domain, stage 1 (ASID, CD from the page table's
//!   configuration values) or stage 2 (VMID, STE S2 fields), optionally a nesting
//!   parent;
//! * [`StaticDomain`]: identity (bypass STE) and blocked (abort STE);
//! * [`NestedDomain`]: a user stage 1 (vSTE words) nested on a stage-2 parent.
//!
//! Attach takes the SMMU's attach lock for the whole update, so the per-stream
//! records (which domain, which ASID/VMID each STE/CD references) and the entries
//! in memory are always consistent (seed 002). IDs are reference-counted by the
//! entries that hold them and freed only after the last entry is gone and the ID
//! has been invalidated.

use alloc::collections::BTreeMap;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::any::Any;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::lock::Mutex;
use crate::smmu::EntryInMemory;
use io_pgtable::lpae::{Granule, Stage};
use io_pgtable::{FlushOps, FreedTable, IoPgtable, IotlbGather, LpaeConfig, LpaeTable};
use iommu_core::{DeviceInfo, DomainKind, DomainOps, Geometry, PagingDomainOps};
use iommu_types::{Iova, PgSizeBitmap, PhysAddr, PhysMem, Prot};

use crate::cd::{CD_BYTES, Cd, CdCfg, l1_cd};
use crate::cmd::Cmd;
use crate::inv::InvRequest;
use crate::smmu::Smmu;
use crate::ste::{S1Cfg, S2Cfg, Ste, eats, s1dss};
use crate::writer::{CdKind, write_entry};
use crate::{Error, Result};

/// Largest number of SSID bits of a per-stream CD table (linear).
pub const MAX_CD_BITS: u32 = 8;

impl From<Error> for iommu_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::NoSpace(w) => iommu_core::Error::NoSpace(w),
            Error::Busy(w) => iommu_core::Error::Busy(w),
            Error::Timeout(w) => iommu_core::Error::TimedOut(w),
            Error::Unsupported(w) => iommu_core::Error::NotSupported(w),
            Error::NotFound(w) => iommu_core::Error::NotFound(w),
            Error::Invalid(w) => iommu_core::Error::Invalid(w),
            other => iommu_core::Error::Driver {
                errno: other.errno(),
                what: "smmuv3",
            },
        }
    }
}

fn pgt_err(e: io_pgtable::Error) -> iommu_core::Error {
    match e {
        io_pgtable::Error::Exists(_) => iommu_core::Error::Exists("mapping"),
        io_pgtable::Error::IovaOutOfRange { .. } | io_pgtable::Error::PaddrOutOfRange { .. } => {
            iommu_core::Error::OutOfRange("mapping")
        }
        other => iommu_core::Error::Driver {
            errno: other.errno(),
            what: "io-pgtable",
        },
    }
}

/// The translation context of a paging domain: what its TLB entries are tagged
/// with, and which streams use it (for ATC invalidation).
pub struct DomainCtx {
    smmu: Arc<Smmu>,
    /// ASID (stage 1) or `None` (stage 2).
    asid: Option<u16>,
    /// VMID (0 for stage 1).
    vmid: u16,
    granule: u64,
    nest_parent: bool,
    /// Attached `(stream, substream)` pairs and whether each has ATS enabled.
    devices: Mutex<BTreeMap<(u32, Option<u32>), bool>>,
    /// The ASID/VMID has been invalidated and returned to its allocator (domain
    /// teardown): the table's own final `tlb_flush_all` must not invalidate an ID
    /// that may already belong to another domain.
    released: AtomicBool,
}

impl core::fmt::Debug for DomainCtx {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DomainCtx")
            .field("asid", &self.asid)
            .field("vmid", &self.vmid)
            .finish()
    }
}

impl DomainCtx {
    fn ats_targets(&self) -> Vec<(u32, Option<u32>)> {
        self.devices
            .lock()
            .iter()
            .filter(|(_, ats)| **ats)
            .map(|(k, _)| *k)
            .collect()
    }

    /// Invalidate a range (TLB, then ATC of ATS masters), waiting for completion.
    fn inv_range(&self, req: &InvRequest) -> Result<()> {
        let mut cmds = self.smmu.tlb_inv_range_cmds(self.asid, self.vmid, req);
        if self.asid.is_none() && self.nest_parent {
            // Combined S1+S2 entries are not found by IPA (§6).
            cmds.push(Cmd::TlbiNhAll { vmid: self.vmid });
        }
        self.smmu.submit(&cmds)?;
        self.smmu.atc_inv(&self.ats_targets(), req.iova, req.size)
    }

    /// Invalidate everything of the context (TLB, then ATC).
    fn inv_all(&self) -> Result<()> {
        self.smmu
            .submit(&[self.smmu.ctx_inv_cmd(self.asid, self.vmid)])?;
        self.smmu.atc_inv(&self.ats_targets(), 0, 0)
    }

    /// The ASID (stage 1).
    pub fn asid(&self) -> Option<u16> {
        self.asid
    }

    /// The VMID.
    pub fn vmid(&self) -> u16 {
        self.vmid
    }
}

impl FlushOps for DomainCtx {
    fn tlb_flush_all(&self) {
        if self.released.load(Ordering::Acquire) {
            // Teardown: `release_ids` already invalidated the whole ID.
            return;
        }
        let _ = self.inv_all();
    }

    fn tlb_flush_walk(&self, iova: Iova, size: u64, granule: u64) {
        let req = InvRequest {
            iova: iova.0,
            size,
            granule,
            leaf: false,
            leaf_size: None,
        };
        let _ = self.inv_range(&req);
    }

    fn tlb_add_page(&self, gather: &mut IotlbGather, iova: Iova, granule: u64) {
        if gather.needs_sync_before(iova, granule) {
            let _ = self.sync_gather(gather);
            let freed = gather.reset();
            gather.freelist = freed;
        }
        gather.add_leaf(iova, granule);
    }
}

impl DomainCtx {
    /// Invalidate what `gather` recorded (strict), not touching its freelist.
    fn sync_gather(&self, gather: &IotlbGather) -> Result<()> {
        if gather.is_empty() || gather.queued {
            return Ok(());
        }
        let leaf_size = (gather.leaf_only && gather.pgsize != 0).then_some(gather.pgsize);
        let req = InvRequest {
            iova: gather.start,
            size: gather.size(),
            granule: self.granule,
            leaf: gather.leaf_only,
            leaf_size,
        };
        self.inv_range(&req)
    }
}

/// Stage of a paging domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainStage {
    /// Stage 1 (ASID-tagged, CD).
    S1,
    /// Stage 2 (VMID-tagged, STE S2 fields).
    S2,
}

/// A paging domain of one SMMU.
pub struct SmmuDomain {
    me: Weak<SmmuDomain>,
    ctx: Arc<DomainCtx>,
    table: LpaeTable<Arc<dyn PhysMem>>,
    stage: DomainStage,
    coherency: AtomicBool,
}

impl core::fmt::Debug for SmmuDomain {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SmmuDomain")
            .field("stage", &self.stage)
            .field("ctx", &self.ctx)
            .finish()
    }
}

impl SmmuDomain {
    /// Allocate a paging domain: allocate its ASID (stage 1, from the global space)
    /// or VMID (stage 2, per SMMU) and an LPAE table of `granule`.
    pub fn new(
        smmu: &Arc<Smmu>,
        stage: DomainStage,
        granule: u64,
        nest_parent: bool,
    ) -> Result<Arc<SmmuDomain>> {
        let f = smmu.features();
        let ok = match stage {
            DomainStage::S1 => f.s1,
            DomainStage::S2 => f.s2,
        };
        if !ok {
            return Err(Error::Unsupported("requested translation stage"));
        }
        if nest_parent && (stage != DomainStage::S2 || !f.s1) {
            return Err(Error::Unsupported(
                "nesting (needs stage 2 parent and both stages)",
            ));
        }
        let g = Granule::from_bytes(granule).ok_or(Error::Invalid("granule"))?;
        if f.pgsize_bitmap & granule == 0 {
            return Err(Error::Unsupported("translation granule"));
        }
        let (asid, vmid) = match stage {
            DomainStage::S1 => (Some(smmu.asids().alloc(smmu.asid_limit())?), 0u16),
            DomainStage::S2 => (None, smmu.vmids.alloc(u32::MAX)?),
        };
        let ctx = Arc::new(DomainCtx {
            smmu: smmu.clone(),
            asid,
            vmid,
            granule,
            nest_parent,
            devices: Mutex::new(BTreeMap::new()),
            released: AtomicBool::new(false),
        });
        let oas = f.oas.min(48);
        let ias = match stage {
            DomainStage::S1 => 48.min(f.vax_bits),
            DomainStage::S2 => oas,
        };
        let pstage = match stage {
            DomainStage::S1 => Stage::S1,
            DomainStage::S2 => Stage::S2,
        };
        let cfg = LpaeConfig::new(pstage, g, ias, oas).with_coherent_walk(f.coherent);
        let table = match LpaeTable::new(cfg, smmu.mem().clone(), ctx.clone() as Arc<dyn FlushOps>)
        {
            Ok(t) => t,
            Err(_) => {
                release_ids(&ctx);
                return Err(Error::PgTable("cannot create the page table"));
            }
        };
        Ok(Arc::new_cyclic(|me| SmmuDomain {
            me: me.clone(),
            ctx,
            table,
            stage,
            coherency: AtomicBool::new(false),
        }))
    }

    /// A strong reference to this domain, if it is still alive.
    pub fn self_arc(&self) -> Option<Arc<SmmuDomain>> {
        self.me.upgrade()
    }

    /// The translation context.
    pub fn ctx(&self) -> &Arc<DomainCtx> {
        &self.ctx
    }

    /// The stage.
    pub fn stage(&self) -> DomainStage {
        self.stage
    }

    /// The page table.
    pub fn table(&self) -> &LpaeTable<Arc<dyn PhysMem>> {
        &self.table
    }

    fn cd_cfg(&self) -> Result<CdCfg> {
        let hw = self
            .table
            .s1_config()
            .ok_or(Error::Invalid("not a stage-1 table"))?;
        let t = hw.tcr.ttbr0.ok_or(Error::Unsupported("TTBR1 tables"))?;
        Ok(CdCfg {
            asid: self.ctx.asid.unwrap_or(0),
            ttb0: hw.ttbr(),
            t0sz: t.tsz,
            tg0: t.tg,
            ir0: t.irgn as u8,
            or0: t.orgn as u8,
            sh0: t.sh as u8,
            ips: hw.tcr.ips,
            mair: hw.mair,
            stall: false,
        })
    }

    pub(crate) fn s2_cfg(&self) -> Result<S2Cfg> {
        let hw = self
            .table
            .s2_config()
            .ok_or(Error::Invalid("not a stage-2 table"))?;
        Ok(S2Cfg {
            vmid: self.ctx.vmid,
            vtcr: hw.vtcr.to_bits(),
            ttb: hw.vttbr,
        })
    }

    /// Attach every StreamID of a device. `canwbs` says whether the master's DMA is
    /// always snooped (IORT CANWBS); it is recorded for its streams and decides
    /// whether they may join a domain that enforces cache coherency (refused with
    /// [`Error::Invalid`] otherwise, checked under the attach lock).
    pub fn attach_sids(&self, sids: &[u32], canwbs: bool) -> Result<()> {
        {
            let mut st = self.ctx.smmu.streams.lock();
            for sid in sids {
                if let Some(s) = st.get_mut(sid) {
                    s.canwbs = canwbs;
                }
            }
        }
        let me = self.me.upgrade().ok_or(Error::NotFound("domain"))?;
        let target = match self.stage {
            DomainStage::S1 => AttachTarget::S1 {
                dom: me.clone(),
                cd: self.cd_cfg()?,
            },
            DomainStage::S2 => AttachTarget::S2 {
                dom: me.clone(),
                s2: self.s2_cfg()?,
            },
        };
        for &sid in sids {
            attach(&self.ctx.smmu, sid, &target)?;
        }
        Ok(())
    }
}

fn release_ids(ctx: &DomainCtx) {
    ctx.released.store(true, Ordering::Release);
    let smmu = &ctx.smmu;
    match ctx.asid {
        Some(asid) => {
            let _ = smmu.asids().free(asid, |a| {
                smmu.submit(&[Cmd::TlbiNhAsid { vmid: 0, asid: a }])
            });
        }
        None => {
            let _ = smmu
                .vmids
                .free(ctx.vmid, |v| smmu.submit(&[Cmd::TlbiS12Vmall { vmid: v }]));
        }
    }
}

impl Drop for SmmuDomain {
    fn drop(&mut self) {
        // No entry references the domain any more (streams hold it alive while
        // attached): invalidate the ID, then free it; the table memory is freed
        // after this, once nothing can be cached from it.
        release_ids(&self.ctx);
    }
}

impl DomainOps for SmmuDomain {
    fn kind(&self) -> DomainKind {
        DomainKind::Paging
    }

    fn attach_dev(&self, dev: &DeviceInfo) -> iommu_core::Result<()> {
        self.attach_sids(&dev.desc.stream_ids, dev.desc.canwbs)
            .map_err(|e| match e {
                Error::Invalid(w) => iommu_core::Error::Incompatible(w),
                other => other.into(),
            })
    }

    /// Linux `arm_smmu_enforce_cache_coherency`: possible only on a coherent SMMU and
    /// only while every attached master is CANWBS; once set, later attaches of
    /// non-CANWBS masters are refused (both sides hold the attach lock, so no attach
    /// can slip between the check and the flag).
    fn enforce_cache_coherency(&self) -> bool {
        let smmu = &self.ctx.smmu;
        if !smmu.features().coherent {
            return false;
        }
        let _g = smmu.attach_lock.lock();
        let sids: Vec<u32> = self
            .ctx
            .devices
            .lock()
            .keys()
            .map(|(sid, _)| *sid)
            .collect();
        let streams = smmu.streams.lock();
        if sids
            .iter()
            .any(|sid| !streams.get(sid).is_some_and(|s| s.canwbs))
        {
            return false;
        }
        self.coherency.store(true, Ordering::Release);
        true
    }
}

impl PagingDomainOps for SmmuDomain {
    fn pgsize_bitmap(&self) -> PgSizeBitmap {
        self.table.pgsize_bitmap()
    }

    fn geometry(&self) -> Geometry {
        Geometry::from_ias(self.table.ias())
    }

    fn map_pages(
        &self,
        iova: Iova,
        paddr: PhysAddr,
        pgsize: u64,
        pgcount: u64,
        prot: Prot,
    ) -> (u64, iommu_core::Result<()>) {
        let (n, r) = self.table.map_pages(iova, paddr, pgsize, pgcount, prot);
        (n, r.map_err(pgt_err))
    }

    fn unmap_pages(&self, iova: Iova, pgsize: u64, pgcount: u64, gather: &mut IotlbGather) -> u64 {
        self.table.unmap_pages(iova, pgsize, pgcount, gather)
    }

    fn iotlb_sync(&self, gather: &mut IotlbGather) -> iommu_core::Result<()> {
        if gather.queued {
            // Lazy: the leaf invalidation is left to a later flush_iotlb_all, and the
            // freelist stays with the flush queue (walk-cache safety).
            return Ok(());
        }
        self.ctx.sync_gather(gather)?;
        let freed = gather.reset();
        self.table.free_tables(&freed).map_err(pgt_err)
    }

    fn flush_iotlb_all(&self) -> iommu_core::Result<()> {
        Ok(self.ctx.inv_all()?)
    }

    fn free_tables(&self, tables: Vec<FreedTable>) {
        let _ = self.table.free_tables(&tables);
    }

    fn iova_to_phys(&self, iova: Iova) -> Option<PhysAddr> {
        self.table.iova_to_phys(iova)
    }
}

/// Identity (bypass) or blocked (abort) domain of one SMMU.
pub struct StaticDomain {
    smmu: Arc<Smmu>,
    kind: DomainKind,
}

impl core::fmt::Debug for StaticDomain {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StaticDomain")
            .field("kind", &self.kind)
            .finish()
    }
}

impl StaticDomain {
    /// The identity domain (bypass STE).
    pub fn identity(smmu: &Arc<Smmu>) -> Arc<StaticDomain> {
        Arc::new(StaticDomain {
            smmu: smmu.clone(),
            kind: DomainKind::Identity,
        })
    }

    /// The blocked domain (abort STE).
    pub fn blocked(smmu: &Arc<Smmu>) -> Arc<StaticDomain> {
        Arc::new(StaticDomain {
            smmu: smmu.clone(),
            kind: DomainKind::Blocked,
        })
    }

    /// Attach streams.
    pub fn attach_sids(&self, sids: &[u32]) -> Result<()> {
        let t = if self.kind == DomainKind::Identity {
            AttachTarget::Bypass
        } else {
            AttachTarget::Abort
        };
        for &sid in sids {
            attach(&self.smmu, sid, &t)?;
        }
        Ok(())
    }
}

impl DomainOps for StaticDomain {
    fn kind(&self) -> DomainKind {
        self.kind
    }
    fn attach_dev(&self, dev: &DeviceInfo) -> iommu_core::Result<()> {
        Ok(self.attach_sids(&dev.desc.stream_ids)?)
    }
}

/// A user stage 1 nested on a stage-2 nesting parent.
pub struct NestedDomain {
    parent: Arc<SmmuDomain>,
    /// The user's stage-1 configuration (CD table address is an IPA).
    vste: VSte,
}

impl core::fmt::Debug for NestedDomain {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NestedDomain")
            .field("vste", &self.vste)
            .finish()
    }
}

/// What a user's virtual STE asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VSte {
    /// Abort.
    Abort,
    /// Stage 1 bypass (stage 2 only).
    Bypass,
    /// Stage 1 through the user's CD table.
    S1(S1Cfg),
}

impl VSte {
    /// Decode the two user STE words (d0, d1); only the stage-1 fields are taken.
    pub fn decode(d0: u64, d1: u64) -> Result<VSte> {
        use crate::ste::{config, f};
        let w = [d0, d1, 0, 0, 0, 0, 0, 0];
        if f::V.get(&w) == 0 {
            return Ok(VSte::Abort);
        }
        match f::CONFIG.get(&w) {
            config::BYPASS | config::S2_TRANS => Ok(VSte::Bypass),
            config::S1_TRANS | config::NESTED => {
                let fmt = f::S1FMT.get(&w) as u8;
                let cdmax = f::S1CDMAX.get(&w) as u8;
                if cdmax != 0 && fmt == 3 {
                    return Err(Error::Invalid("reserved S1Fmt"));
                }
                Ok(VSte::S1(S1Cfg {
                    cd_table: f::S1CTXPTR.get(&w) << 6,
                    fmt,
                    cdmax,
                    dss: f::S1DSS.get(&w) as u8,
                }))
            }
            _ => Ok(VSte::Abort),
        }
    }
}

impl NestedDomain {
    /// A nested domain on `parent` (which must be a stage-2 nesting parent).
    pub fn new(parent: Arc<SmmuDomain>, vste: VSte) -> Result<Arc<NestedDomain>> {
        if parent.stage != DomainStage::S2 || !parent.ctx.nest_parent {
            return Err(Error::Invalid("parent is not a stage-2 nesting parent"));
        }
        if let VSte::S1(s1) = vste {
            let f = parent.ctx.smmu.features();
            if s1.cdmax as u32 > f.ssid_bits {
                return Err(Error::Invalid("vSTE S1CDMax exceeds the SMMU's SSID bits"));
            }
            if s1.cdmax != 0 && s1.fmt != 0 && !f.cd2l {
                return Err(Error::Invalid("vSTE asks for two-level CD tables"));
            }
        }
        Ok(Arc::new(NestedDomain { parent, vste }))
    }

    /// Attach streams.
    pub fn attach_sids(&self, sids: &[u32]) -> Result<()> {
        let s2 = self.parent.s2_cfg()?;
        let t = match self.vste {
            VSte::Abort => AttachTarget::Abort,
            VSte::Bypass => AttachTarget::S2 {
                dom: self.parent.clone(),
                s2,
            },
            VSte::S1(s1) => AttachTarget::Nested {
                dom: self.parent.clone(),
                s1,
                s2,
            },
        };
        for &sid in sids {
            attach(&self.parent.ctx.smmu, sid, &t)?;
        }
        Ok(())
    }
}

impl DomainOps for NestedDomain {
    fn kind(&self) -> DomainKind {
        DomainKind::Nested
    }
    fn attach_dev(&self, dev: &DeviceInfo) -> iommu_core::Result<()> {
        Ok(self.attach_sids(&dev.desc.stream_ids)?)
    }
}

/// What a stream is being attached to.
enum AttachTarget {
    Abort,
    Bypass,
    S1 {
        dom: Arc<SmmuDomain>,
        cd: CdCfg,
    },
    S2 {
        dom: Arc<SmmuDomain>,
        s2: S2Cfg,
    },
    Nested {
        dom: Arc<SmmuDomain>,
        s1: S1Cfg,
        s2: S2Cfg,
    },
}

impl AttachTarget {
    /// The paging domain whose translation the stream will use (the stage-2 parent
    /// for nested targets).
    fn domain(&self) -> Option<&Arc<SmmuDomain>> {
        match self {
            AttachTarget::Abort | AttachTarget::Bypass => None,
            AttachTarget::S1 { dom, .. }
            | AttachTarget::S2 { dom, .. }
            | AttachTarget::Nested { dom, .. } => Some(dom),
        }
    }
}

/// What a stream is attached to now (held in the SMMU's stream records).
pub(crate) struct Attached {
    /// Keeps the domain (and its table) alive while an entry points at it.
    pub dom: Option<Arc<SmmuDomain>>,
    /// ASID referenced by the stream's CD 0.
    pub asid: Option<u16>,
    /// VMID referenced by the STE.
    pub vmid: Option<u16>,
}

/// log2 of the CDs in one leaf table of a two-level CD table (S1Fmt = 2: 64 KiB
/// leaves of 1024 CDs, `smmuv3.md` §3.1).
pub const CD_LEAF_BITS: u32 = 10;
/// STE.S1Fmt of a two-level CD table with 64 KiB leaves.
const S1FMT_2LVL_64K: u8 = 2;

/// Per-stream CD table: linear (`1 << bits` CDs at `pa`) or, when the SMMU has
/// CD2L and the stream needs more than [`MAX_CD_BITS`] SSID bits, two-level (an L1
/// table of `1 << (bits - CD_LEAF_BITS)` descriptors at `pa`, leaves installed on
/// first use).
#[derive(Clone, Copy, Debug)]
pub(crate) struct CdTable {
    pub pa: PhysAddr,
    pub bits: u32,
    pub two_level: bool,
}

impl CdTable {
    /// Allocate the table for a stream of `smmu` (zeroed: every CD / L1 descriptor
    /// invalid).
    fn alloc(smmu: &Smmu) -> Result<Self> {
        let f = smmu.features();
        let two_level = f.cd2l && f.ssid_bits > MAX_CD_BITS;
        let bits = if two_level {
            f.ssid_bits
        } else {
            f.ssid_bits.min(MAX_CD_BITS)
        };
        let t = CdTable {
            pa: PhysAddr(0),
            bits,
            two_level,
        };
        let bytes = t.bytes();
        Ok(CdTable {
            pa: smmu.mem.alloc_pages(bytes, bytes.max(4096))?,
            ..t
        })
    }

    /// Bytes of the linear table or of the L1 table.
    fn bytes(&self) -> u64 {
        if self.two_level {
            (1u64 << self.bits.saturating_sub(CD_LEAF_BITS)) * 8
        } else {
            (1u64 << self.bits) * CD_BYTES
        }
    }

    /// STE.S1Fmt for this table.
    fn s1fmt(&self) -> u8 {
        if self.two_level { S1FMT_2LVL_64K } else { 0 }
    }

    /// Address of CD `ssid`. For a two-level table whose leaf is absent: None if
    /// `!install`, else a zeroed leaf is allocated, its L1 descriptor written (one
    /// 64-bit store) and CFGI_CD with Leaf = 0 + CMD_SYNC issued so that no cached
    /// invalid L1 descriptor survives (§3.1).
    fn cd_addr(&self, smmu: &Smmu, sid: u32, ssid: u32, install: bool) -> Result<Option<PhysAddr>> {
        if !self.two_level {
            return Ok(Some(PhysAddr(self.pa.0 + ssid as u64 * CD_BYTES)));
        }
        let l1 = PhysAddr(self.pa.0 + (ssid >> CD_LEAF_BITS) as u64 * 8);
        let leaf_off = (ssid as u64 & ((1 << CD_LEAF_BITS) - 1)) * CD_BYTES;
        if let Some(leaf) = l1_cd::decode(smmu.mem.read_u64(l1)?) {
            return Ok(Some(PhysAddr(leaf + leaf_off)));
        }
        if !install {
            return Ok(None);
        }
        let bytes = CD_BYTES << CD_LEAF_BITS;
        let leaf = smmu.mem.alloc_pages(bytes, bytes)?;
        if let Err(e) = smmu
            .mem
            .write_u64(l1, l1_cd::encode(leaf.0))
            .map_err(Error::from)
            .and_then(|_| {
                smmu.submit(&[Cmd::CfgiCd {
                    sid,
                    ssid,
                    leaf: false,
                }])
            })
        {
            // Nothing can use a leaf of invalid CDs: undo what was done.
            let _ = smmu.mem.write_u64(l1, 0);
            let _ = smmu.mem.free_pages(leaf, bytes);
            return Err(e);
        }
        Ok(Some(PhysAddr(leaf.0 + leaf_off)))
    }

    /// Free the table and its leaves (the stream no longer uses it).
    fn free(&self, smmu: &Smmu) {
        if self.two_level {
            for i in 0..1u64 << self.bits.saturating_sub(CD_LEAF_BITS) {
                if let Ok(d) = smmu.mem.read_u64(PhysAddr(self.pa.0 + i * 8))
                    && let Some(leaf) = l1_cd::decode(d)
                {
                    let _ = smmu
                        .mem
                        .free_pages(PhysAddr(leaf), CD_BYTES << CD_LEAF_BITS);
                }
            }
        }
        let bytes = self.bytes();
        let _ = smmu.mem.free_pages(self.pa, bytes.max(4096));
    }
}

fn write_cd(smmu: &Smmu, sid: u32, t: CdTable, ssid: u32, cd: &Cd) -> Result<usize> {
    // An invalid CD in an absent leaf is already what memory says.
    let Some(pa) = t.cd_addr(smmu, sid, ssid, crate::cd::f::V.get(&cd.0) != 0)? else {
        return Ok(0);
    };
    write_entry::<CdKind, _>(
        &mut EntryInMemory {
            smmu,
            pa,
            inval: Cmd::CfgiCd {
                sid,
                ssid,
                leaf: true,
            },
        },
        &cd.0,
    )
}

/// Point `sid` at `target`, hitlessly, keeping ID references exact.
fn attach(smmu: &Arc<Smmu>, sid: u32, target: &AttachTarget) -> Result<()> {
    let _g = smmu.attach_lock.lock();
    let (ats, cdt, old) = {
        let mut st = smmu.streams.lock();
        let s = st
            .get_mut(&sid)
            .ok_or(Error::NotFound("stream not probed"))?;
        if !s.pasids.is_empty() && !matches!(target, AttachTarget::S1 { .. }) {
            return Err(Error::Busy("PASIDs attached: the stream must stay stage 1"));
        }
        if target
            .domain()
            .is_some_and(|d| d.coherency.load(Ordering::Acquire))
            && !s.canwbs
        {
            return Err(Error::Invalid("device cannot enforce cache coherency"));
        }
        (s.ats, s.cd_table, s.attached.take())
    };
    let attr = smmu.features().attr_types_ovr;
    let eats_v = if ats {
        eats::TRANS as u8
    } else {
        eats::ABT as u8
    };
    // Make sure a CD table exists before an S1 STE needs it.
    let cdt = match (target, cdt) {
        (AttachTarget::S1 { .. }, None) => {
            let t = CdTable::alloc(smmu)?;
            smmu.streams
                .lock()
                .get_mut(&sid)
                .ok_or(Error::NotFound("stream"))?
                .cd_table = Some(t);
            Some(t)
        }
        (_, c) => c,
    };
    let mut new = Attached {
        dom: None,
        asid: None,
        vmid: None,
    };
    let result = (|| -> Result<()> {
        let ste = match target {
            AttachTarget::Abort => Ste::abort(),
            AttachTarget::Bypass => Ste::bypass(attr),
            AttachTarget::S1 { dom, cd } => {
                let t = cdt.ok_or(Error::NotFound("CD table"))?;
                let asid = cd.asid;
                smmu.asids().get(asid)?;
                new.asid = Some(asid);
                new.dom = Some(dom.clone());
                write_cd(smmu, sid, t, 0, &Cd::s1(cd))?;
                let dss = if t.bits > 0 {
                    s1dss::SSID0 as u8
                } else {
                    s1dss::TERMINATE as u8
                };
                Ste::s1(
                    &S1Cfg {
                        cd_table: t.pa.0,
                        fmt: t.s1fmt(),
                        cdmax: t.bits as u8,
                        dss,
                    },
                    eats_v,
                    attr,
                )
            }
            AttachTarget::S2 { dom, s2 } => {
                smmu.vmids.get(s2.vmid)?;
                new.vmid = Some(s2.vmid);
                new.dom = Some(dom.clone());
                Ste::s2(s2, eats_v, attr)
            }
            AttachTarget::Nested { dom, s1, s2 } => {
                smmu.vmids.get(s2.vmid)?;
                new.vmid = Some(s2.vmid);
                new.dom = Some(dom.clone());
                Ste::nested(s1, s2, eats_v, attr)
            }
        };
        smmu.write_ste(sid, &ste)?;
        // The stream no longer uses CD 0 unless the target is stage 1.
        if !matches!(target, AttachTarget::S1 { .. })
            && let (Some(t), Some(_)) = (cdt, old.as_ref().and_then(|o| o.asid))
        {
            write_cd(smmu, sid, t, 0, &Cd::invalid())?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        // Undo the references taken for the target; what is in memory is whatever
        // the last completed step left (always a legal entry).
        if let Some(a) = new.asid {
            let _ = smmu.asids().put(a);
        }
        if let Some(v) = new.vmid {
            let _ = smmu.vmids.put(v);
        }
        if let Some(s) = smmu.streams.lock().get_mut(&sid) {
            s.attached = old;
        }
        return Err(e);
    }
    // Old references go away only now that no entry holds them.
    if let Some(o) = &old {
        if let Some(a) = o.asid {
            let _ = smmu.asids().put(a);
        }
        if let Some(v) = o.vmid {
            let _ = smmu.vmids.put(v);
        }
        if let Some(d) = &o.dom {
            d.ctx.devices.lock().remove(&(sid, None));
            if ats {
                // The device may hold translations of the old domain in its ATC.
                let _ = smmu.atc_inv(&[(sid, None)], 0, 0);
            }
        }
    }
    if let Some(d) = &new.dom {
        d.ctx.devices.lock().insert((sid, None), ats);
    }
    if let Some(s) = smmu.streams.lock().get_mut(&sid) {
        s.attached = Some(new);
    }
    // `old` (and possibly the last reference to its domain) drops here, outside
    // the stream lock but inside the attach lock.
    drop(old);
    Ok(())
}

impl SmmuDomain {
    /// Attach this stage-1 domain to substream `ssid` (PASID) of `sid`: CD `ssid` of
    /// the stream's CD table points at this domain (same ASID as every other CD of
    /// the domain: one translation per ASID). The stream's RID must be attached to a
    /// stage-1 domain (its STE then has the CD table and S1DSS = SSID0).
    pub fn attach_pasid(&self, sid: u32, ssid: u32) -> Result<()> {
        let smmu = &self.ctx.smmu;
        if self.stage != DomainStage::S1 {
            return Err(Error::Invalid("PASIDs need a stage-1 domain"));
        }
        let cd = Cd::s1(&self.cd_cfg()?);
        let me = self.me.upgrade().ok_or(Error::NotFound("domain"))?;
        let _g = smmu.attach_lock.lock();
        let (ats, t, old) = {
            let mut st = smmu.streams.lock();
            let s = st
                .get_mut(&sid)
                .ok_or(Error::NotFound("stream not probed"))?;
            let t = match (&s.attached, s.cd_table) {
                (Some(a), Some(t)) if a.asid.is_some() => t,
                _ => return Err(Error::Invalid("PASIDs need a stage-1 RID domain")),
            };
            if ssid == 0 || ssid >> t.bits != 0 {
                return Err(Error::Invalid("SubstreamID out of the CD table"));
            }
            (s.ats, t, s.pasids.remove(&ssid))
        };
        let asid = self.ctx.asid.unwrap_or(0);
        let r = smmu.asids().get(asid).and_then(|_| {
            write_cd(smmu, sid, t, ssid, &cd).inspect_err(|_| {
                let _ = smmu.asids().put(asid);
            })
        });
        if let Err(e) = r {
            if let Some(o) = old
                && let Some(s) = smmu.streams.lock().get_mut(&sid)
            {
                s.pasids.insert(ssid, o);
            }
            return Err(e);
        }
        finish_pasid_change(smmu, sid, ssid, ats, old);
        self.ctx.devices.lock().insert((sid, Some(ssid)), ats);
        let new = Attached {
            dom: Some(me),
            asid: Some(asid),
            vmid: None,
        };
        if let Some(s) = smmu.streams.lock().get_mut(&sid) {
            s.pasids.insert(ssid, new);
        }
        Ok(())
    }
}

/// Drop what an old PASID attachment held, now that its CD no longer exists.
fn finish_pasid_change(smmu: &Arc<Smmu>, sid: u32, ssid: u32, ats: bool, old: Option<Attached>) {
    if let Some(o) = old {
        if let Some(a) = o.asid {
            let _ = smmu.asids().put(a);
        }
        if let Some(d) = &o.dom {
            d.ctx.devices.lock().remove(&(sid, Some(ssid)));
        }
        if ats {
            let _ = smmu.atc_inv(&[(sid, Some(ssid))], 0, 0);
        }
        drop(o);
    }
}

/// Detach substream `ssid` of `sid`: its CD becomes invalid (substream traffic then
/// gets C_BAD_CD) and the ASID reference is dropped once the CD is gone.
pub fn detach_pasid(smmu: &Arc<Smmu>, sid: u32, ssid: u32) -> Result<()> {
    let _g = smmu.attach_lock.lock();
    let (ats, t, old) = {
        let mut st = smmu.streams.lock();
        let s = st
            .get_mut(&sid)
            .ok_or(Error::NotFound("stream not probed"))?;
        let t = s.cd_table.ok_or(Error::NotFound("CD table"))?;
        let old = s
            .pasids
            .remove(&ssid)
            .ok_or(Error::NotFound("PASID not attached"))?;
        (s.ats, t, old)
    };
    if let Err(e) = write_cd(smmu, sid, t, ssid, &Cd::invalid()) {
        if let Some(s) = smmu.streams.lock().get_mut(&sid) {
            s.pasids.insert(ssid, old);
        }
        return Err(e);
    }
    finish_pasid_change(smmu, sid, ssid, ats, Some(old));
    Ok(())
}

/// Detach `sid` to abort and forget the stream (device release).
pub(crate) fn release(smmu: &Arc<Smmu>, sid: u32) -> Result<()> {
    let pasids: Vec<u32> = smmu
        .streams
        .lock()
        .get(&sid)
        .map(|s| s.pasids.keys().copied().collect())
        .unwrap_or_default();
    for ssid in pasids {
        detach_pasid(smmu, sid, ssid)?;
    }
    attach(smmu, sid, &AttachTarget::Abort)?;
    let _g = smmu.attach_lock.lock();
    let rec = smmu.streams.lock().remove(&sid);
    if let Some(t) = rec.and_then(|r| r.cd_table) {
        t.free(smmu);
    }
    Ok(())
}

/// Recover this driver's domain from the core's trait object.
pub(crate) fn as_smmu_domain(d: &dyn PagingDomainOps) -> Option<&SmmuDomain> {
    (d as &dyn Any).downcast_ref::<SmmuDomain>()
}
