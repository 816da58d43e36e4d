//! A software IOMMU domain with a modelled IOTLB, for tests and benchmarks while a
//! real driver is not attached (it implements [`DmaDomain`]).
//!
//! The model is adversarial in the way that matters for unmapping: a device access
//! fills the IOTLB, clearing a table entry does NOT remove the cached translation,
//! and only [`DmaDomain::iotlb_sync`] (for the gathered range) or
//! [`DmaDomain::flush_iotlb_all`] does. A device can therefore keep reaching an
//! unmapped page through a stale entry until the invalidation completes, exactly the
//! hazard the strict/lazy protocol must respect. An optional busy-wait per
//! invalidation models the cost of a command-queue sync.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering as StdOrdering};
use std::time::{Duration, Instant};

use io_pgtable::{FreedTable, IotlbGather};
use iommu_types::{Errno, Iova, PgSizeBitmap, PhysAddr, PhysMem, Prot};

use crate::ops::DmaDomain;
use crate::sync::{Mutex, lock};

#[derive(Debug, Default)]
struct State {
    table: BTreeMap<u64, (u64, Prot)>,
    tlb: BTreeMap<u64, (u64, Prot)>,
}

/// Counters of what the mock domain was asked to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MockStats {
    /// Successful map calls.
    pub maps: u64,
    /// Range invalidations (`iotlb_sync` with a non-empty gather).
    pub syncs: u64,
    /// Domain-wide invalidations.
    pub flushes: u64,
}

/// A device access that the IOMMU refused (the would-be event record).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MockFault {
    /// The faulting IOVA.
    pub iova: u64,
    /// Whether it was a write.
    pub write: bool,
}

/// A BTreeMap-backed translating domain with a modelled IOTLB.
#[derive(Debug)]
pub struct MockDomain {
    granule: u64,
    aperture: (u64, u64),
    state: Mutex<State>,
    sync_cost: Duration,
    fail_after: AtomicU64,
    maps: AtomicU64,
    syncs: AtomicU64,
    flushes: AtomicU64,
}

impl MockDomain {
    /// A domain of `granule`-sized pages (4K, 16K or 64K) over a 48-bit aperture.
    pub fn new(granule: u64) -> Self {
        Self {
            granule,
            aperture: (0, (1u64 << 48) - 1),
            state: Mutex::new(State::default()),
            sync_cost: Duration::ZERO,
            fail_after: AtomicU64::new(u64::MAX),
            maps: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
        }
    }

    /// Restrict the aperture to `[start, end]`.
    pub fn with_aperture(mut self, start: u64, end: u64) -> Self {
        self.aperture = (start, end);
        self
    }

    /// Busy-wait `cost` on each invalidation (range sync or full flush), modelling
    /// the command-queue round trip of real hardware.
    pub fn with_sync_cost(mut self, cost: Duration) -> Self {
        self.sync_cost = cost;
        self
    }

    /// Let the next `granules` granule maps succeed and fail every later one with
    /// ENOMEM (failure injection for unwinding tests); `u64::MAX` disables it.
    pub fn fail_maps_after(&self, granules: u64) {
        self.fail_after.store(granules, StdOrdering::SeqCst);
    }

    /// Counters.
    pub fn stats(&self) -> MockStats {
        MockStats {
            maps: self.maps.load(StdOrdering::Relaxed),
            syncs: self.syncs.load(StdOrdering::Relaxed),
            flushes: self.flushes.load(StdOrdering::Relaxed),
        }
    }

    /// Granules mapped in the table.
    pub fn mapped_granules(&self) -> usize {
        lock(&self.state).table.len()
    }

    /// Whether the IOTLB still holds a translation for any granule of
    /// `[iova, iova + len)`.
    pub fn tlb_holds(&self, iova: u64, len: u64) -> bool {
        let s = lock(&self.state);
        s.tlb
            .range(iova / self.granule..(iova + len).div_ceil(self.granule))
            .next()
            .is_some()
    }

    /// The table entry for `iova` (physical address and protection), ignoring the
    /// IOTLB.
    pub fn lookup(&self, iova: u64) -> Option<(PhysAddr, Prot)> {
        let g = self.granule;
        lock(&self.state)
            .table
            .get(&(iova / g))
            .map(|&(pa, p)| (PhysAddr(pa + iova % g), p))
    }

    /// A device access at `iova`: IOTLB first, else a table walk that fills the
    /// IOTLB. Returns the physical address or the fault.
    pub fn translate(&self, iova: u64, write: bool) -> Result<PhysAddr, MockFault> {
        let pfn = iova / self.granule;
        let off = iova % self.granule;
        let mut s = lock(&self.state);
        let hit = match s.tlb.get(&pfn) {
            Some(&e) => Some(e),
            None => {
                let e = s.table.get(&pfn).copied();
                if let Some(e) = e {
                    s.tlb.insert(pfn, e);
                }
                e
            }
        };
        match hit {
            Some((pa, prot)) if prot.contains(if write { Prot::WRITE } else { Prot::READ }) => {
                Ok(PhysAddr(pa + off))
            }
            _ => Err(MockFault { iova, write }),
        }
    }

    /// The device reads `buf.len()` bytes at `iova` through the IOMMU.
    pub fn dma_read(&self, mem: &dyn PhysMem, iova: u64, buf: &mut [u8]) -> Result<(), MockFault> {
        self.dma_walk(iova, buf.len() as u64, false, |pa, at, n| {
            mem.read_bytes(pa, &mut buf[at..at + n]).map_err(|_| ())
        })
    }

    /// The device writes `data` at `iova` through the IOMMU.
    pub fn dma_write(&self, mem: &dyn PhysMem, iova: u64, data: &[u8]) -> Result<(), MockFault> {
        self.dma_walk(iova, data.len() as u64, true, |pa, at, n| {
            mem.write_bytes(pa, &data[at..at + n]).map_err(|_| ())
        })
    }

    fn dma_walk(
        &self,
        iova: u64,
        len: u64,
        write: bool,
        mut f: impl FnMut(PhysAddr, usize, usize) -> Result<(), ()>,
    ) -> Result<(), MockFault> {
        let mut done = 0u64;
        while done < len {
            let a = iova + done;
            let pa = self.translate(a, write)?;
            let n = (self.granule - a % self.granule).min(len - done);
            f(pa, done as usize, n as usize).map_err(|()| MockFault { iova: a, write })?;
            done += n;
        }
        Ok(())
    }

    fn spin(&self) {
        if !self.sync_cost.is_zero() {
            let t = Instant::now();
            while t.elapsed() < self.sync_cost {
                core::hint::spin_loop();
            }
        }
    }
}

impl DmaDomain for MockDomain {
    fn pgsize_bitmap(&self) -> PgSizeBitmap {
        PgSizeBitmap(self.granule)
    }

    fn aperture(&self) -> (u64, u64) {
        self.aperture
    }

    fn map(&self, iova: Iova, pa: PhysAddr, size: u64, prot: Prot) -> Result<(), Errno> {
        let g = self.granule;
        if iova.0 % g != 0 || pa.0 % g != 0 || size % g != 0 || size == 0 {
            return Err(Errno::EINVAL);
        }
        if iova.0 < self.aperture.0 || iova.0 + (size - 1) > self.aperture.1 {
            return Err(Errno::EINVAL);
        }
        let n = size / g;
        let mut s = lock(&self.state);
        let first = iova.0 / g;
        if s.table.range(first..first + n).next().is_some() {
            return Err(Errno::EEXIST);
        }
        let budget = self.fail_after.load(StdOrdering::SeqCst);
        if budget != u64::MAX {
            if budget < n {
                self.fail_after.store(0, StdOrdering::SeqCst);
                return Err(Errno::ENOMEM);
            }
            self.fail_after.store(budget - n, StdOrdering::SeqCst);
        }
        for i in 0..n {
            s.table.insert(first + i, (pa.0 + i * g, prot));
        }
        self.maps.fetch_add(1, StdOrdering::Relaxed);
        Ok(())
    }

    fn unmap(&self, iova: Iova, size: u64, gather: &mut IotlbGather) -> u64 {
        let g = self.granule;
        let first = iova.0 / g;
        let mut s = lock(&self.state);
        let mut unmapped = 0;
        for pfn in first..first + size.div_ceil(g) {
            if s.table.remove(&pfn).is_some() {
                gather.add_leaf(Iova(pfn * g), g);
                unmapped += g;
            }
        }
        unmapped
    }

    fn iotlb_sync(&self, gather: &mut IotlbGather) -> Result<(), Errno> {
        if !gather.is_empty() {
            self.spin();
            let g = self.granule;
            let mut s = lock(&self.state);
            let keys: Vec<u64> = s
                .tlb
                .range(gather.start / g..=gather.end / g)
                .map(|(k, _)| *k)
                .collect();
            for k in keys {
                s.tlb.remove(&k);
            }
            self.syncs.fetch_add(1, StdOrdering::Relaxed);
        }
        gather.reset();
        Ok(())
    }

    fn flush_iotlb_all(&self) -> Result<(), Errno> {
        self.spin();
        lock(&self.state).tlb.clear();
        self.flushes.fetch_add(1, StdOrdering::Relaxed);
        Ok(())
    }

    fn free_tables(&self, _tables: Vec<FreedTable>) {}

    fn iova_to_phys(&self, iova: Iova) -> Option<PhysAddr> {
        let g = self.granule;
        lock(&self.state)
            .table
            .get(&(iova.0 / g))
            .map(|&(pa, _)| PhysAddr(pa + iova.0 % g))
    }
}
