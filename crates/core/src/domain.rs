//! The core's handle of a domain (Linux `struct iommu_domain` plus the
//! `iommu_map`/`iommu_unmap` helpers), the DMA layer's cookie hook, and the live
//! DMA → DMA-FQ relabelling protocol (reference `software.md` §1.3, §1.4, §6.4,
//! §6.7; seeds 000 and 004).

use alloc::collections::BTreeSet;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use io_pgtable::{FreedTable, IotlbGather};
use iommu_types::{Iova, PgSizeBitmap, PhysAddr, Prot};

use crate::caps::Capability;
use crate::device::{DeviceId, DeviceInfo, IommuId};
use crate::domain_type::DomainType;
use crate::driver::{DomainKind, DomainOps, Geometry, IommuDriver, PagingDomainOps};
use crate::error::{Error, Result};

/// The hook the DMA layer registers on a default (DMA-API) domain.
///
/// The core calls [`DmaCookie::init_flush_queue`] under the group lock **before** it
/// relabels a live DMA domain as DMA-FQ, and publishes the new type only if it
/// succeeded. The DMA layer must have its flush queue (rings, timer) fully set up
/// and its own "lazy" flag published (release) when the call returns, so that no
/// thread can see DMA-FQ, or the DMA layer's flag, before the queue exists.
pub trait DmaCookie: Send + Sync {
    /// Set up the flush queue and publish the DMA layer's lazy flag. Idempotent.
    /// An error keeps the domain strict. Runs under the group lock: it must not call
    /// the core's group, ownership or attach APIs (the domain's own map/unmap and
    /// type queries are fine).
    fn init_flush_queue(&self) -> Result<()>;
}

pub(crate) enum Ops {
    Paging(Arc<dyn PagingDomainOps>),
    Other(Arc<dyn DomainOps>),
}

struct DomainState {
    enforce_coherency: bool,
    attached: BTreeSet<DeviceId>,
}

/// A domain as the core and its users (DMA layer, VFIO, iommufd) hold it.
///
/// It names the IOMMU instance that owns it but never the device used to allocate
/// it, so it outlives that device (seed 000).
pub struct IommuDomain {
    serial: u64,
    iommu: IommuId,
    ops: Ops,
    ty: AtomicU8,
    pgsize: PgSizeBitmap,
    geometry: Geometry,
    parent: Option<Arc<IommuDomain>>,
    state: Mutex<DomainState>,
    cookie: Mutex<Option<Arc<dyn DmaCookie>>>,
}

impl fmt::Debug for IommuDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IommuDomain")
            .field("serial", &self.serial)
            .field("iommu", &self.iommu)
            .field("type", &self.domain_type())
            .field("pgsize", &self.pgsize)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

static SERIAL: AtomicU64 = AtomicU64::new(1);

impl IommuDomain {
    pub(crate) fn new(
        iommu: IommuId,
        ops: Ops,
        ty: DomainType,
        parent: Option<Arc<IommuDomain>>,
    ) -> Arc<Self> {
        let (pgsize, geometry) = match &ops {
            Ops::Paging(p) => (p.pgsize_bitmap(), p.geometry()),
            Ops::Other(_) => (
                PgSizeBitmap::EMPTY,
                Geometry {
                    aperture_start: 0,
                    aperture_end: 0,
                    force_aperture: false,
                },
            ),
        };
        Arc::new(Self {
            serial: SERIAL.fetch_add(1, Ordering::Relaxed),
            iommu,
            ops,
            ty: AtomicU8::new(ty.to_u8()),
            pgsize,
            geometry,
            parent,
            state: Mutex::new(DomainState {
                enforce_coherency: false,
                attached: BTreeSet::new(),
            }),
            cookie: Mutex::new(None),
        })
    }

    /// The domain's current type label. DMA may become DMA-FQ at run time (and
    /// DMA-FQ may be demoted to DMA by the DMA layer); read with acquire ordering,
    /// so a thread that sees DMA-FQ also sees everything the cookie's
    /// `init_flush_queue` did.
    pub fn domain_type(&self) -> DomainType {
        DomainType::from_u8(self.ty.load(Ordering::Acquire))
    }

    /// The IOMMU instance the domain belongs to.
    pub fn iommu(&self) -> IommuId {
        self.iommu
    }

    /// A number unique to this domain, for reports.
    pub fn serial(&self) -> u64 {
        self.serial
    }

    /// What the driver object does.
    pub fn kind(&self) -> DomainKind {
        self.base().kind()
    }

    /// The driver's domain object.
    pub fn base(&self) -> &dyn DomainOps {
        match &self.ops {
            Ops::Paging(p) => &**p,
            Ops::Other(o) => &**o,
        }
    }

    /// The driver's paging operations, if this is a paging domain.
    pub fn paging(&self) -> Option<&Arc<dyn PagingDomainOps>> {
        match &self.ops {
            Ops::Paging(p) => Some(p),
            Ops::Other(_) => None,
        }
    }

    /// The parent of a nested domain.
    pub fn parent(&self) -> Option<&Arc<IommuDomain>> {
        self.parent.as_ref()
    }

    /// Page sizes (empty for non-paging domains).
    pub fn pgsize_bitmap(&self) -> PgSizeBitmap {
        self.pgsize
    }

    /// The translatable window (empty for non-paging domains).
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// Devices currently attached (through their groups).
    pub fn attached_devices(&self) -> Vec<DeviceId> {
        lock(&self.state).attached.iter().copied().collect()
    }

    fn paging_or_err(&self) -> Result<&Arc<dyn PagingDomainOps>> {
        if !self.domain_type().is_paging() {
            return Err(Error::Invalid("not a paging domain"));
        }
        self.paging().ok_or(Error::Invalid("not a paging domain"))
    }

    fn check_range(&self, iova: u64, other: u64, size: u64) -> Result<u64> {
        let min = self
            .pgsize
            .smallest()
            .ok_or(Error::Invalid("domain has no page sizes"))?;
        if size == 0 {
            return Err(Error::Invalid("zero size"));
        }
        if (iova | other | size) & (min - 1) != 0 {
            return Err(Error::Invalid(
                "address or size not aligned to the smallest page",
            ));
        }
        if iova.checked_add(size - 1).is_none() || other.checked_add(size - 1).is_none() {
            return Err(Error::Overflow("range wraps"));
        }
        if self.geometry.force_aperture && !self.geometry.contains(iova, size) {
            return Err(Error::OutOfRange("IOVA range outside the aperture"));
        }
        Ok(min)
    }

    /// Map `[iova, iova + size)` to `paddr` onwards with `prot` (Linux `iommu_map`):
    /// split into the largest page sizes alignment allows, then `iotlb_sync_map`.
    /// On failure everything this call mapped is unmapped again (and invalidated),
    /// so the domain is left as before.
    pub fn map(&self, iova: Iova, paddr: PhysAddr, size: u64, prot: Prot) -> Result<()> {
        let ops = self.paging_or_err()?;
        self.check_range(iova.0, paddr.0, size)?;
        let mut done = 0u64;
        let mut result = Ok(());
        while done < size {
            let (i, p) = (iova.0 + done, paddr.0 + done);
            let Some((pgsize, count)) = self.pgsize.pick(i, p, size - done) else {
                result = Err(Error::Invalid("no page size fits"));
                break;
            };
            let (mapped, r) = ops.map_pages(Iova(i), PhysAddr(p), pgsize, count, prot);
            done += mapped.min(size - done);
            if let Err(e) = r {
                result = Err(e);
                break;
            }
            if mapped == 0 {
                result = Err(Error::Driver {
                    errno: iommu_types::Errno::EIO,
                    what: "map_pages made no progress",
                });
                break;
            }
        }
        if result.is_ok() {
            result = ops.iotlb_sync_map(iova, size);
        }
        if let Err(e) = result {
            if done > 0 {
                // Best effort: the range was ours (map never overwrites).
                let _ = self.unmap(iova, done);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Unmap `[iova, iova + size)`, recording into `gather` without syncing (Linux
    /// `iommu_unmap_fast`). Returns the bytes unmapped; it stops at the first hole.
    pub fn unmap_fast(&self, iova: Iova, size: u64, gather: &mut IotlbGather) -> Result<u64> {
        let ops = self.paging_or_err()?;
        self.check_range(iova.0, iova.0, size)?;
        let mut done = 0u64;
        while done < size {
            let i = iova.0 + done;
            let Some((pgsize, count)) = self.pgsize.pick(i, i, size - done) else {
                break;
            };
            let n = ops.unmap_pages(Iova(i), pgsize, count, gather);
            if n == 0 {
                break;
            }
            done += n.min(size - done);
        }
        Ok(done)
    }

    /// Unmap and invalidate synchronously (Linux `iommu_unmap`). Returns the bytes
    /// unmapped.
    pub fn unmap(&self, iova: Iova, size: u64) -> Result<u64> {
        let mut gather = IotlbGather::new();
        let n = self.unmap_fast(iova, size, &mut gather)?;
        self.iotlb_sync(&mut gather)?;
        Ok(n)
    }

    /// Invalidate what `gather` recorded and wait (Linux `iommu_iotlb_sync`); the
    /// driver frees the freelist once the invalidation completed. The gather is
    /// reset (keeping `queued`). Does nothing for an empty gather.
    pub fn iotlb_sync(&self, gather: &mut IotlbGather) -> Result<()> {
        let ops = self.paging_or_err()?;
        if gather.is_empty() && gather.freelist.is_empty() {
            return Ok(());
        }
        let r = ops.iotlb_sync(gather);
        let leftover = gather.reset();
        match r {
            Ok(()) => {
                if !leftover.is_empty() {
                    ops.free_tables(leftover);
                }
                Ok(())
            }
            // A failed invalidation: the tables may still be cached, leak them.
            Err(e) => Err(e),
        }
    }

    /// Invalidate the whole domain and wait (the flush-queue flush).
    pub fn flush_iotlb_all(&self) -> Result<()> {
        self.paging_or_err()?.flush_iotlb_all()
    }

    /// Return table pages whose invalidation has completed (flush queue).
    pub fn free_tables(&self, tables: Vec<FreedTable>) -> Result<()> {
        self.paging_or_err()?.free_tables(tables);
        Ok(())
    }

    /// Translate `iova` in software (Linux `iommu_iova_to_phys`). Identity domains
    /// return `iova`; blocked and nested domains return `None`.
    pub fn iova_to_phys(&self, iova: Iova) -> Option<PhysAddr> {
        match self.domain_type() {
            DomainType::Identity => Some(PhysAddr(iova.0)),
            t if t.is_paging() => self.paging().and_then(|p| p.iova_to_phys(iova)),
            _ => None,
        }
    }

    /// Make the domain block No-Snoop for every device attached now or later
    /// (seed 004). Permanent: once true, a later attach of a device without
    /// [`Capability::EnforceCacheCoherency`] fails with EINVAL. Returns false when
    /// the driver cannot provide it.
    pub fn enforce_cache_coherency(&self) -> bool {
        let mut st = lock(&self.state);
        if st.enforce_coherency {
            return true;
        }
        if self.base().enforce_cache_coherency() {
            st.enforce_coherency = true;
            true
        } else {
            false
        }
    }

    /// Whether `enforce_cache_coherency` has succeeded on this domain.
    pub fn is_coherency_enforced(&self) -> bool {
        lock(&self.state).enforce_coherency
    }

    /// Register the DMA layer's cookie on a DMA-API domain. Returns the type at
    /// registration: if it is already DMA-FQ the DMA layer sets its flush queue up
    /// itself (or calls [`IommuDomain::demote_to_strict`]); a later live switch calls
    /// the cookie. EINVAL for a non-DMA domain, EBUSY if a cookie is registered.
    pub fn set_dma_cookie(&self, cookie: Arc<dyn DmaCookie>) -> Result<DomainType> {
        let mut c = lock(&self.cookie);
        let ty = self.domain_type();
        if !ty.is_dma_api() {
            return Err(Error::Invalid("cookie on a non-DMA domain"));
        }
        if c.is_some() {
            return Err(Error::Busy("domain already has a DMA cookie"));
        }
        *c = Some(cookie);
        Ok(ty)
    }

    /// The registered DMA cookie.
    pub fn dma_cookie(&self) -> Option<Arc<dyn DmaCookie>> {
        lock(&self.cookie).clone()
    }

    /// Relabel DMA-FQ as DMA (the DMA layer could not set up a flush queue, or a
    /// device lacks DEFERRED_FLUSH). No effect on other types.
    pub fn demote_to_strict(&self) {
        let _c = lock(&self.cookie);
        let _ = self.ty.compare_exchange(
            DomainType::DmaFq.to_u8(),
            DomainType::Dma.to_u8(),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// The live strict → lazy switch (§1.4): call the cookie's `init_flush_queue`
    /// first, then publish DMA-FQ with release ordering. Called under the group lock.
    pub(crate) fn switch_to_lazy(&self) -> Result<()> {
        let c = lock(&self.cookie);
        match self.domain_type() {
            DomainType::DmaFq => return Ok(()),
            DomainType::Dma => {}
            _ => return Err(Error::Invalid("only a DMA domain can become DMA-FQ")),
        }
        if let Some(cookie) = c.as_ref() {
            cookie.init_flush_queue()?;
        }
        self.ty.store(DomainType::DmaFq.to_u8(), Ordering::Release);
        Ok(())
    }

    /// Attach one device: instance, enforced-coherency and driver checks.
    pub(crate) fn attach_device(&self, driver: &dyn IommuDriver, dev: &DeviceInfo) -> Result<()> {
        if dev.desc.iommu != self.iommu {
            return Err(Error::Incompatible(
                "domain belongs to another IOMMU instance",
            ));
        }
        let mut st = lock(&self.state);
        if st.enforce_coherency && !driver.capable(dev, Capability::EnforceCacheCoherency) {
            return Err(Error::Incompatible(
                "domain enforces cache coherency, device cannot",
            ));
        }
        self.base().attach_dev(dev)?;
        st.attached.insert(dev.id);
        Ok(())
    }

    pub(crate) fn note_detached(&self, dev: DeviceId) {
        lock(&self.state).attached.remove(&dev);
    }
}
