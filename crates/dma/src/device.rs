//! The DMA API of one device over a DMA domain (reference `software.md` §3.4, §4;
//! seed 003 for granules larger than the CPU page).
//!
//! * Streaming: [`DmaDevice::map_page`], [`DmaDevice::unmap_page`],
//!   [`DmaDevice::map_sg`] (one contiguous IOVA allocation, Linux's merge rules),
//!   [`DmaDevice::unmap_sg`], the `sync_*` calls, [`DmaDevice::map_resource`].
//! * Allocations: [`DmaDevice::alloc_coherent`], [`DmaDevice::alloc_noncontiguous`],
//!   [`DmaDevice::free`], [`DmaDevice::get_sgtable`].
//! * The CPU page size is a platform parameter independent of the IOMMU granule.
//!   With a granule larger than the CPU page, the IOVA carries the buffer's offset in
//!   its granule. A *trusted* device then reaches the rest of those granules (counted
//!   by [`DmaDevice::exposed_bytes`]) and its allocations are rounded only to the CPU
//!   page. An *untrusted* device reaches nothing but its buffers and zeros: the
//!   unaligned head and tail granules of a streaming mapping are bounced through
//!   swiotlb into granule-aligned, zero-padded slots, the aligned middle is mapped in
//!   place, and its allocations are rounded to the granule.
//! * Masks: IOVAs are allocated below the streaming or coherent mask; with the PCI
//!   32-bit workaround a 64-bit device first tries below 4 GiB (without flushing the
//!   IOVA caches) and stops trying after the first failure.
//! * Every failure unwinds what the call had already mapped, bounced or allocated.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use iommu_iova::Pci32BitWorkaround;
use iommu_types::{Errno, Iova, PhysAddr, PhysMem, Prot};

use crate::cookie::DmaCookie;
use crate::dir::DmaDirection;
use crate::error::{Error, Result};
use crate::layout::{
    DmaSegment, Granule, SgEntry, exposed_bytes, finalise_sg, plan_sg, plan_single,
};
use crate::ops::{DmaDomain, IovaAllocator};
use crate::swiotlb::{Bounce, BounceAlign, Swiotlb};

/// Properties of a device that shape its DMA mappings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceConfig {
    /// CPU page size of the platform: 4K, 16K or 64K.
    pub cpu_page: u64,
    /// False for an untrusted (external-facing) device: strict only, bounced
    /// unaligned streaming mappings, granule-rounded allocations.
    pub trusted: bool,
    /// Cache-coherent DMA (adds `IOMMU_CACHE` to mappings).
    pub coherent: bool,
    /// Highest streaming DMA address (e.g. `0xffff_ffff` for a 32-bit device).
    pub dma_mask: u64,
    /// Highest coherent DMA address.
    pub coherent_dma_mask: u64,
    /// Longest DMA segment the device accepts (Linux default 64 KiB).
    pub max_seg_size: u64,
    /// Segments must not cross a multiple of `seg_boundary_mask + 1` (Linux default
    /// 4 GiB - 1).
    pub seg_boundary_mask: u64,
    /// Low address bits a bounce buffer must preserve (e.g. NVMe 4 KiB - 1).
    pub min_align_mask: u64,
    /// PCI SAC-first: try IOVAs below 4 GiB first (cleared by `iommu.forcedac`).
    pub pci_32bit_workaround: bool,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        Self {
            cpu_page: 4096,
            trusted: true,
            coherent: true,
            dma_mask: u64::MAX,
            coherent_dma_mask: u64::MAX,
            max_seg_size: 64 * 1024,
            seg_boundary_mask: 0xffff_ffff,
            min_align_mask: 0,
            pci_32bit_workaround: true,
        }
    }
}

/// Per-call attributes (`DMA_ATTR_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DmaAttrs {
    /// `DMA_ATTR_SKIP_CPU_SYNC`: no bounce copy on map/unmap beyond what map must do.
    pub skip_cpu_sync: bool,
    /// `DMA_ATTR_PRIVILEGED`: the mapping is for privileged accesses only.
    pub privileged: bool,
}

/// A mapped scatterlist, to be given back to [`DmaDevice::unmap_sg`].
///
/// The whole list lives in ONE IOVA allocation (trusted and untrusted devices
/// alike); [`SgMapping::iova_range`] returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SgMapping {
    /// The DMA segments for the device, in order.
    pub segments: Vec<DmaSegment>,
    /// Bytes the device can reach through this mapping outside the list's buffers.
    pub exposed: u64,
    dir: DmaDirection,
    /// Start of the single IOVA allocation.
    iova: u64,
    /// Bytes of the allocation (mapped windows plus boundary padding).
    size: u64,
    /// The mapped windows `(iova, len)`, one per element.
    ranges: Vec<(u64, u64)>,
    /// Each element's data in IOVA space `(dma, len)`, for per-element bounce
    /// release and sync.
    elems: Vec<(u64, u64)>,
}

impl SgMapping {
    /// The single IOVA allocation `(start, bytes)` holding every element.
    pub fn iova_range(&self) -> (u64, u64) {
        (self.iova, self.size)
    }
}

/// Memory from [`DmaDevice::alloc_coherent`] or [`DmaDevice::alloc_noncontiguous`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmaAlloc {
    /// The DMA address of byte 0 for the device.
    pub dma: u64,
    /// Bytes requested.
    pub size: u64,
    /// The physical pieces backing it, in DMA order: `(pa, bytes)`.
    pub chunks: Vec<(PhysAddr, u64)>,
    /// Bytes the device can reach through this allocation's mapping beyond it.
    pub exposed: u64,
    iova: u64,
    map_len: u64,
    ranges: Vec<(u64, u64)>,
}

impl DmaAlloc {
    /// The CPU's view of byte `off` (the physical address: the simulation has no
    /// separate kernel virtual mapping).
    pub fn cpu_addr(&self, off: u64) -> Option<PhysAddr> {
        let mut at = 0;
        for &(pa, len) in &self.chunks {
            if off < at + len {
                return Some(PhysAddr(pa.0 + (off - at)));
            }
            at += len;
        }
        None
    }
}

/// The DMA API for one device attached to a DMA domain.
pub struct DmaDevice<D: DmaDomain, A: IovaAllocator> {
    cookie: Arc<DmaCookie<D, A>>,
    mem: Arc<dyn PhysMem>,
    swiotlb: Option<Arc<Swiotlb>>,
    cfg: DeviceConfig,
    sac: Pci32BitWorkaround,
    exposed: AtomicU64,
}

impl<D: DmaDomain, A: IovaAllocator> core::fmt::Debug for DmaDevice<D, A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DmaDevice").field("cfg", &self.cfg).finish()
    }
}

impl<D: DmaDomain, A: IovaAllocator> DmaDevice<D, A> {
    /// Set up DMA for a device on `cookie`'s domain. An untrusted device makes the
    /// domain strict for good (EPERM if it is already lazy).
    pub fn new(
        cookie: Arc<DmaCookie<D, A>>,
        mem: Arc<dyn PhysMem>,
        swiotlb: Option<Arc<Swiotlb>>,
        cfg: DeviceConfig,
    ) -> Result<Self> {
        if ![4096, 16384, 65536].contains(&cfg.cpu_page) {
            return Err(Error::Invalid("CPU page size must be 4K, 16K or 64K"));
        }
        let g = cookie.granule();
        if cfg.dma_mask < g.mask() || cfg.coherent_dma_mask < g.mask() {
            return Err(Error::Invalid("DMA mask smaller than one IOMMU granule"));
        }
        if cfg.max_seg_size == 0 {
            return Err(Error::Invalid("max segment size must be non-zero"));
        }
        if !cfg.seg_boundary_mask.wrapping_add(1).is_power_of_two()
            && cfg.seg_boundary_mask != u64::MAX
        {
            return Err(Error::Invalid(
                "segment boundary mask must be a power of two minus one",
            ));
        }
        if !cfg.trusted {
            cookie.set_strict_only()?;
        }
        Ok(Self {
            sac: Pci32BitWorkaround::new(cfg.pci_32bit_workaround),
            cookie,
            mem,
            swiotlb,
            cfg,
            exposed: AtomicU64::new(0),
        })
    }

    /// The device's configuration.
    pub fn config(&self) -> &DeviceConfig {
        &self.cfg
    }

    /// The cookie (domain, allocator, flush queue) the device maps through.
    pub fn cookie(&self) -> &Arc<DmaCookie<D, A>> {
        &self.cookie
    }

    /// Bytes currently reachable by the device through its live mappings that
    /// belong to none of its buffers (always 0 for an untrusted device).
    pub fn exposed_bytes(&self) -> u64 {
        self.exposed.load(Ordering::Relaxed)
    }

    /// Whether the next allocation above 4 GiB will first try below 4 GiB.
    pub fn sac_first(&self) -> bool {
        self.sac.is_enabled()
    }

    /// The device's PCI 32-bit workaround state (iommu-iova's, shared with
    /// `IovaDomain::alloc_iova_dma`): on until a 32-bit-first attempt fails, then
    /// the address width used from then on.
    pub fn pci_32bit_workaround(&self) -> &Pci32BitWorkaround {
        &self.sac
    }

    fn granule(&self) -> Granule {
        self.cookie.granule()
    }

    fn prot(&self, dir: DmaDirection, attrs: DmaAttrs) -> Prot {
        dir.prot(self.cfg.coherent, attrs.privileged)
    }

    /// IOVA below `limit`, 32-bit first for PCI devices (`software.md` §3.4).
    fn alloc_iova(&self, size: u64, limit: u64) -> Result<u64> {
        const LIMIT_32: u64 = 0xffff_ffff;
        let bits = 64 - limit.leading_zeros();
        let alloc = |limit, flush| self.cookie.alloc_iova(size, limit, flush);
        self.sac.alloc_32bit_first(limit, LIMIT_32, bits, alloc).0
    }

    fn account(&self, exposed: u64, add: bool) {
        if add {
            self.exposed.fetch_add(exposed, Ordering::Relaxed);
        } else {
            self.exposed.fetch_sub(exposed, Ordering::Relaxed);
        }
    }

    fn swiotlb(&self) -> Result<&Arc<Swiotlb>> {
        self.swiotlb.as_ref().ok_or(Error::Invalid(
            "untrusted unaligned mapping needs a swiotlb pool",
        ))
    }

    /// Map one buffer for streaming DMA; returns the DMA address.
    pub fn map_page(
        &self,
        phys: PhysAddr,
        len: u64,
        dir: DmaDirection,
        attrs: DmaAttrs,
    ) -> Result<u64> {
        let g = self.granule();
        if self.cfg.min_align_mask > g.mask() {
            return Err(Error::Invalid(
                "min_align_mask larger than the IOMMU granule",
            ));
        }
        let plan = plan_single(g, phys.0, len)?;
        let prot = self.prot(dir, attrs);
        let iova = self.alloc_iova(plan.map_len, self.cfg.dma_mask)?;
        if let Err(e) = self.map_at(iova, phys.0, len, dir, prot) {
            self.cookie.free_iova_now(iova, plan.map_len);
            return Err(e);
        }
        if self.cfg.trusted {
            self.account(plan.padding(len), true);
        }
        Ok(iova + plan.offset)
    }

    /// Map one buffer `[phys, phys + len)` at the granule-aligned `iova` (its
    /// window: `plan_single`'s `map_len` bytes, the data at `iova + offset`). For
    /// an untrusted device the partial head and tail granules are bounced and the
    /// aligned middle is mapped in place; otherwise the whole window is mapped in
    /// place. Shared by `map_page` and `map_sg`. Returns the bounces made; on error
    /// everything done here is undone (the caller owns the IOVA).
    fn map_at(
        &self,
        iova: u64,
        phys: u64,
        len: u64,
        dir: DmaDirection,
        prot: Prot,
    ) -> Result<Vec<Bounce>> {
        let plan = plan_single(self.granule(), phys, len)?;
        if !self.cfg.trusted && (plan.bounce_head || plan.bounce_tail) {
            self.map_bounced(iova, phys, len, dir, prot)
        } else {
            self.cookie
                .map(iova, plan.map_phys, plan.map_len, prot)
                .map(|()| Vec::new())
        }
    }

    /// Bounce one partial granule into a zero-padded, granule-aligned slot run.
    fn bounce_granule(&self, orig: u64, size: u64, dir: DmaDirection) -> Result<Bounce> {
        let g = self.granule();
        let align = BounceAlign {
            alloc_align_mask: g.mask(),
            min_align_mask: g.mask(),
        };
        let pool = self.swiotlb()?;
        let b = pool.map(PhysAddr(orig), size, dir, align)?;
        let zero = self
            .mem
            .fill_bytes(b.run, b.tlb.0 - b.run.0, 0)
            .and_then(|()| {
                self.mem.fill_bytes(
                    PhysAddr(b.tlb.0 + size),
                    b.run.0 + b.run_bytes - b.tlb.0 - size,
                    0,
                )
            });
        if let Err(e) = zero {
            let _ = pool.unmap(b.tlb, dir, true);
            return Err(e.into());
        }
        Ok(b)
    }

    /// Untrusted streaming map: bounce the head and tail granules, map the aligned
    /// middle in place. On error everything done here is undone (the caller frees
    /// the IOVA).
    fn map_bounced(
        &self,
        iova: u64,
        phys: u64,
        len: u64,
        dir: DmaDirection,
        prot: Prot,
    ) -> Result<Vec<Bounce>> {
        let g = self.granule();
        let gs = g.size();
        let plan = plan_single(g, phys, len)?;
        let n = plan.granules(g);
        let end = phys + len;
        let mut bounces: Vec<Bounce> = Vec::new();
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        let tail_alone = plan.bounce_tail && !(n == 1 && plan.bounce_head);
        let mut step = || -> Result<()> {
            if plan.bounce_head {
                let head_end = end.min(plan.map_phys + gs);
                let b = self.bounce_granule(phys, head_end - phys, dir)?;
                bounces.push(b);
                self.cookie.map(iova, b.run.0, gs, prot)?;
                ranges.push((iova, gs));
            }
            let lo = u64::from(plan.bounce_head);
            let hi = if tail_alone { n - 1 } else { n };
            if hi > lo {
                self.cookie.map(
                    iova + lo * gs,
                    plan.map_phys + lo * gs,
                    (hi - lo) * gs,
                    prot,
                )?;
                ranges.push((iova + lo * gs, (hi - lo) * gs));
            }
            if tail_alone {
                let tail_start = plan.map_phys + (n - 1) * gs;
                let b = self.bounce_granule(tail_start, end - tail_start, dir)?;
                bounces.push(b);
                self.cookie.map(iova + (n - 1) * gs, b.run.0, gs, prot)?;
                ranges.push((iova + (n - 1) * gs, gs));
            }
            Ok(())
        };
        if let Err(e) = step() {
            let _ = self.cookie.unmap_unwind(&ranges);
            self.release_bounces(&bounces, dir);
            return Err(e);
        }
        Ok(bounces)
    }

    /// Give bounce slots back without copying (error unwinding).
    fn release_bounces(&self, bounces: &[Bounce], dir: DmaDirection) {
        if let Some(pool) = &self.swiotlb {
            for b in bounces {
                let _ = pool.unmap(b.tlb, dir, true);
            }
        }
    }

    /// The bounces behind the first and last granule of `[iova, iova + len)`.
    fn bounces_of(&self, iova: u64, len: u64) -> Result<Vec<(u64, Bounce)>> {
        let g = self.granule();
        let end = range_end(iova, len)?;
        let first = g.align_down(iova);
        let last = g.align_down(end - 1);
        let mut out = Vec::new();
        for gi in if first == last {
            vec![first]
        } else {
            vec![first, last]
        } {
            let pa = self
                .cookie
                .domain()
                .iova_to_phys(Iova(gi))
                .ok_or(Error::NotMapped { addr: gi })?;
            if let Some(pool) = &self.swiotlb {
                if pool.contains(pa) {
                    let b = pool.find(pa).ok_or(Error::NotBounced { pa: pa.0 })?;
                    out.push((gi, b));
                }
            }
        }
        Ok(out)
    }

    /// Unmap a buffer mapped by [`DmaDevice::map_page`] with the same length and
    /// direction; copies bounced data back for FROM_DEVICE and BIDIRECTIONAL.
    pub fn unmap_page(&self, dma: u64, len: u64, dir: DmaDirection, attrs: DmaAttrs) -> Result<()> {
        let g = self.granule();
        let plan = plan_single(g, dma, len)?;
        // Only untrusted devices bounce; a trusted device's bad unmap is caught by
        // the cookie (nothing unmapped, nothing freed).
        let bounces = if self.cfg.trusted {
            Vec::new()
        } else {
            self.bounces_of(dma, len)?
        };
        self.cookie.unmap(
            &[(plan.map_phys, plan.map_len)],
            plan.map_phys,
            plan.map_len,
        )?;
        let mut res = Ok(());
        if let Some(pool) = &self.swiotlb {
            for (_, b) in bounces {
                if let Err(e) = pool.unmap(b.tlb, dir, attrs.skip_cpu_sync) {
                    res = Err(e);
                }
            }
        }
        if self.cfg.trusted {
            self.account(plan.padding(len), false);
        }
        res
    }

    fn sync_single(&self, dma: u64, len: u64, dir: DmaDirection, for_cpu: bool) -> Result<()> {
        // Only untrusted devices bounce; caches are coherent in the simulation.
        if len == 0 || self.cfg.trusted {
            return Ok(());
        }
        let Some(pool) = &self.swiotlb else {
            return Ok(());
        };
        let end = range_end(dma, len)?;
        for (gi, b) in self.bounces_of(dma, len)? {
            // IOVA range of the bounced data in this granule.
            let data_lo = gi + (b.tlb.0 - b.run.0);
            let data_hi = data_lo + b.size;
            let lo = dma.max(data_lo);
            let hi = end.min(data_hi);
            if lo < hi {
                let pa = PhysAddr(b.tlb.0 + (lo - data_lo));
                if for_cpu {
                    pool.sync_for_cpu(pa, hi - lo, dir)?;
                } else {
                    pool.sync_for_device(pa, hi - lo, dir)?;
                }
            }
        }
        Ok(())
    }

    /// Give `[dma, dma + len)` back to the CPU (copies bounced data out for
    /// FROM_DEVICE and BIDIRECTIONAL). Caches are coherent in the simulation.
    pub fn sync_single_for_cpu(&self, dma: u64, len: u64, dir: DmaDirection) -> Result<()> {
        self.sync_single(dma, len, dir, true)
    }

    /// Give `[dma, dma + len)` to the device (copies into bounce buffers for
    /// TO_DEVICE and BIDIRECTIONAL).
    pub fn sync_single_for_device(&self, dma: u64, len: u64, dir: DmaDirection) -> Result<()> {
        self.sync_single(dma, len, dir, false)
    }

    /// Map a scatterlist into ONE IOVA allocation holding every element (merged
    /// segments, max segment size and boundary respected), for trusted and
    /// untrusted devices alike. Each element's granule window is mapped by the same
    /// routine as `map_page` (an untrusted device's partial head and tail granules
    /// bounced and zero-padded). A failure part way unmaps and unbounces
    /// everything already done and frees the IOVA.
    pub fn map_sg(
        &self,
        list: &[SgEntry],
        dir: DmaDirection,
        attrs: DmaAttrs,
    ) -> Result<SgMapping> {
        if list.is_empty() {
            return Err(Error::Invalid("empty scatterlist"));
        }
        let g = self.granule();
        if !self.cfg.trusted && self.cfg.min_align_mask > g.mask() {
            return Err(Error::Invalid(
                "min_align_mask larger than the IOMMU granule",
            ));
        }
        let plan = plan_sg(g, list, self.cfg.seg_boundary_mask)?;
        let iova = self.alloc_iova(plan.total, self.cfg.dma_mask)?;
        let prot = self.prot(dir, attrs);
        let mut ranges: Vec<(u64, u64)> = Vec::with_capacity(plan.slots.len());
        let mut bounces: Vec<Bounce> = Vec::new();
        for (s, e) in plan.slots.iter().zip(list) {
            let at = iova + s.iova_off;
            match self.map_at(at, e.phys, e.len, dir, prot) {
                Ok(b) => bounces.extend(b),
                Err(err) => {
                    let _ = self.cookie.unmap_unwind(&ranges);
                    self.release_bounces(&bounces, dir);
                    self.cookie.free_iova_now(iova, plan.total);
                    // Like Linux: ENOMEM passes through, anything else is EINVAL.
                    return Err(match err.errno() {
                        Errno::ENOMEM => err,
                        _ => Error::Domain(Errno::EINVAL),
                    });
                }
            }
            ranges.push((at, s.map_len));
        }
        let segments = finalise_sg(
            &plan,
            iova,
            self.cfg.max_seg_size,
            self.cfg.seg_boundary_mask,
        );
        let exposed = if self.cfg.trusted {
            let mapped: Vec<(u64, u64)> =
                plan.slots.iter().map(|s| (s.map_phys, s.map_len)).collect();
            let buffers: Vec<(u64, u64)> = list.iter().map(|e| (e.phys, e.len)).collect();
            exposed_bytes(&mapped, &buffers)
        } else {
            0
        };
        self.account(exposed, true);
        let elems = plan
            .slots
            .iter()
            .map(|s| (iova + s.iova_off + s.data_off, s.data_len))
            .collect();
        Ok(SgMapping {
            segments,
            exposed,
            dir,
            iova,
            size: plan.total,
            ranges,
            elems,
        })
    }

    /// Unmap a scatterlist mapped by [`DmaDevice::map_sg`]; an untrusted device's
    /// bounced heads and tails are copied back per element (FROM_DEVICE and
    /// BIDIRECTIONAL) and released, as `unmap_page` does.
    pub fn unmap_sg(&self, m: SgMapping, attrs: DmaAttrs) -> Result<()> {
        let mut bounces: Vec<Bounce> = Vec::new();
        if !self.cfg.trusted {
            for &(dma, len) in &m.elems {
                bounces.extend(self.bounces_of(dma, len)?.into_iter().map(|(_, b)| b));
            }
        }
        self.cookie.unmap(&m.ranges, m.iova, m.size)?;
        self.account(m.exposed, false);
        let mut res = Ok(());
        if let Some(pool) = &self.swiotlb {
            for b in bounces {
                if let Err(e) = pool.unmap(b.tlb, m.dir, attrs.skip_cpu_sync) {
                    res = Err(e);
                }
            }
        }
        res
    }

    /// [`DmaDevice::sync_single_for_cpu`] over every element of a mapped list.
    pub fn sync_sg_for_cpu(&self, m: &SgMapping) -> Result<()> {
        for &(dma, len) in &m.elems {
            self.sync_single_for_cpu(dma, len, m.dir)?;
        }
        Ok(())
    }

    /// [`DmaDevice::sync_single_for_device`] over every element of a mapped list.
    pub fn sync_sg_for_device(&self, m: &SgMapping) -> Result<()> {
        for &(dma, len) in &m.elems {
            self.sync_single_for_device(dma, len, m.dir)?;
        }
        Ok(())
    }

    /// Map an MMIO range (a peer's BAR) for the device: `MMIO` attributes, no
    /// bouncing and no cache maintenance. An untrusted device may only map
    /// granule-aligned resources (a partial granule would expose its neighbours).
    pub fn map_resource(
        &self,
        phys: PhysAddr,
        len: u64,
        dir: DmaDirection,
        attrs: DmaAttrs,
    ) -> Result<u64> {
        let plan = plan_single(self.granule(), phys.0, len)?;
        if !self.cfg.trusted && (plan.bounce_head || plan.bounce_tail) {
            return Err(Error::Invalid(
                "untrusted devices may only map granule-aligned resources",
            ));
        }
        let prot = self
            .prot(dir, attrs)
            .union(Prot::MMIO)
            .difference(Prot::CACHE);
        let iova = self.alloc_iova(plan.map_len, self.cfg.dma_mask)?;
        if let Err(e) = self.cookie.map(iova, plan.map_phys, plan.map_len, prot) {
            self.cookie.free_iova_now(iova, plan.map_len);
            return Err(e);
        }
        self.account(plan.padding(len), true);
        Ok(iova + plan.offset)
    }

    /// Unmap a range mapped by [`DmaDevice::map_resource`].
    pub fn unmap_resource(&self, dma: u64, len: u64) -> Result<()> {
        let plan = plan_single(self.granule(), dma, len)?;
        self.cookie.unmap(
            &[(plan.map_phys, plan.map_len)],
            plan.map_phys,
            plan.map_len,
        )?;
        self.account(plan.padding(len), false);
        Ok(())
    }

    /// Allocate zeroed, physically contiguous memory mapped for the device below the
    /// coherent mask. Trusted: rounded to the CPU page (the mapping may reach the
    /// rest of its granules, counted as exposed). Untrusted: rounded and aligned to
    /// the granule, nothing else reachable.
    pub fn alloc_coherent(&self, size: u64) -> Result<DmaAlloc> {
        if size == 0 {
            return Err(Error::Invalid("zero-size allocation"));
        }
        let g = self.granule();
        let unit = if self.cfg.trusted {
            self.cfg.cpu_page
        } else {
            self.cfg.cpu_page.max(g.size())
        };
        let bytes = size
            .checked_next_multiple_of(unit)
            .ok_or(Error::Invalid("allocation too large"))?;
        let pa = self.mem.alloc_pages(bytes, unit)?;
        match self.map_chunks(&[(pa, bytes)]) {
            Ok(mut a) => {
                a.size = size;
                Ok(a)
            }
            Err(e) => {
                let _ = self.mem.free_pages(pa, bytes);
                Err(e)
            }
        }
    }

    /// Allocate zeroed memory in separately allocated chunks (one per
    /// `max(CPU page, granule)`), mapped behind ONE contiguous IOVA range. Trusted
    /// devices: the total is rounded to the CPU page and the last chunk's granule
    /// may reach foreign memory (exposed). Untrusted: rounded to the granule.
    pub fn alloc_noncontiguous(&self, size: u64) -> Result<DmaAlloc> {
        if size == 0 {
            return Err(Error::Invalid("zero-size allocation"));
        }
        let g = self.granule();
        let unit = self.cfg.cpu_page.max(g.size());
        let round = if self.cfg.trusted {
            self.cfg.cpu_page
        } else {
            unit
        };
        let total = size
            .checked_next_multiple_of(round)
            .ok_or(Error::Invalid("allocation too large"))?;
        // Refuse what could never fit below the coherent mask before allocating
        // one chunk per unit (a huge size would otherwise exhaust host memory).
        let (ap_lo, ap_hi) = self.cookie.domain().aperture();
        let limit = self.cfg.coherent_dma_mask.min(ap_hi);
        if total > limit.saturating_sub(ap_lo).saturating_add(1) {
            return Err(Error::NoIovaSpace {
                bytes: total,
                limit,
            });
        }
        let mut chunks: Vec<(PhysAddr, u64)> = Vec::new();
        let mut left = total;
        while left > 0 {
            let c = left.min(unit);
            match self.mem.alloc_pages(c, unit) {
                Ok(pa) => chunks.push((pa, c)),
                Err(e) => {
                    self.free_chunks(&chunks);
                    return Err(e.into());
                }
            }
            left -= c;
        }
        match self.map_chunks(&chunks) {
            Ok(mut a) => {
                a.size = size;
                Ok(a)
            }
            Err(e) => {
                self.free_chunks(&chunks);
                Err(e)
            }
        }
    }

    fn free_chunks(&self, chunks: &[(PhysAddr, u64)]) {
        for &(pa, len) in chunks {
            let _ = self.mem.free_pages(pa, len);
        }
    }

    /// Map physical chunks back to back in one IOVA allocation under the coherent
    /// mask. Only the first chunk may start inside a granule.
    fn map_chunks(&self, chunks: &[(PhysAddr, u64)]) -> Result<DmaAlloc> {
        let g = self.granule();
        let plans = chunks
            .iter()
            .map(|&(pa, len)| plan_single(g, pa.0, len))
            .collect::<Result<Vec<_>>>()?;
        let map_len: u64 = plans.iter().map(|p| p.map_len).sum();
        let iova = self.alloc_iova(map_len, self.cfg.coherent_dma_mask)?;
        let prot = self.prot(DmaDirection::Bidirectional, DmaAttrs::default());
        let mut ranges = Vec::with_capacity(plans.len());
        let mut at = iova;
        for p in &plans {
            if let Err(e) = self.cookie.map(at, p.map_phys, p.map_len, prot) {
                let _ = self.cookie.unmap_unwind(&ranges);
                self.cookie.free_iova_now(iova, map_len);
                return Err(e);
            }
            ranges.push((at, p.map_len));
            at += p.map_len;
        }
        let mapped: Vec<(u64, u64)> = plans.iter().map(|p| (p.map_phys, p.map_len)).collect();
        let own: Vec<(u64, u64)> = chunks.iter().map(|&(pa, len)| (pa.0, len)).collect();
        let exposed = exposed_bytes(&mapped, &own);
        self.account(exposed, true);
        Ok(DmaAlloc {
            dma: iova + plans[0].offset,
            size: 0,
            chunks: chunks.to_vec(),
            exposed,
            iova,
            map_len,
            ranges,
        })
    }

    /// Unmap and free an allocation from [`DmaDevice::alloc_coherent`] or
    /// [`DmaDevice::alloc_noncontiguous`].
    pub fn free(&self, a: DmaAlloc) -> Result<()> {
        self.cookie.unmap(&a.ranges, a.iova, a.map_len)?;
        self.account(a.exposed, false);
        self.free_chunks(&a.chunks);
        Ok(())
    }

    /// The allocation's pages as a scatterlist (`dma_get_sgtable`). ENXIO when the
    /// IOMMU granule exceeds the CPU page: the pieces could not be described as CPU
    /// pages faithfully.
    pub fn get_sgtable(&self, a: &DmaAlloc) -> Result<Vec<SgEntry>> {
        let g = self.granule().size();
        if g > self.cfg.cpu_page {
            return Err(Error::GranuleTooLarge {
                granule: g,
                page: self.cfg.cpu_page,
            });
        }
        Ok(a.chunks
            .iter()
            .map(|&(pa, len)| SgEntry { phys: pa.0, len })
            .collect())
    }
}

/// The end of `[start, start + len)`: an error for an empty range or one that
/// wraps the address space (bad caller input, never a panic).
fn range_end(start: u64, len: u64) -> Result<u64> {
    if len == 0 {
        return Err(Error::Invalid("zero-length range"));
    }
    start
        .checked_add(len)
        .ok_or(Error::Invalid("range wraps the address space"))
}
