//! Shared fixtures: simulated memory, a mock domain with a modelled IOTLB, and an
//! IOVA allocator that checks, on every free, that no stale translation remains.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use iommu_dma::mock::MockDomain;
use iommu_dma::{DeviceConfig, DmaCookie, DmaDevice, IovaAllocator, Swiotlb};
use iommu_iova::IovaDomain;
use iommu_memory::SimMemory;
use iommu_types::{FixedCpuId, PhysAddr, PhysMem};

/// Frees IOVAs into iommu-iova's [`IovaDomain`] after asserting the IOTLB no
/// longer holds any translation for them (the property the strict/lazy protocol
/// must keep) and that the range is live (no double or foreign free). Keeps the
/// set of live allocations.
pub struct CheckedIova {
    pub inner: IovaDomain,
    pub domain: Arc<MockDomain>,
    pub shift: u32,
    live: Mutex<BTreeMap<u64, u64>>,
}

impl CheckedIova {
    pub fn new(domain: Arc<MockDomain>, granule: u64) -> Self {
        let inner = IovaDomain::builder(granule, 1)
            .cpus(Arc::new(FixedCpuId { id: 0, count: 1 }))
            .build()
            .unwrap();
        Self {
            inner,
            domain,
            shift: granule.trailing_zeros(),
            live: Mutex::new(BTreeMap::new()),
        }
    }

    /// Allocations handed out and not freed yet.
    pub fn live(&self) -> usize {
        self.live.lock().unwrap().len()
    }

    /// Whether a live allocation overlaps `[pfn, pfn + pages)`.
    pub fn overlaps(&self, pfn: u64, pages: u64) -> bool {
        let live = self.live.lock().unwrap();
        live.range(..pfn + pages)
            .next_back()
            .is_some_and(|(&s, &l)| s + l > pfn)
    }
}

impl IovaAllocator for CheckedIova {
    fn alloc(&self, pages: u64, limit_pfn: u64, flush: bool) -> Option<u64> {
        let pfn = self.inner.alloc(pages, limit_pfn, flush)?;
        assert!(
            !self.overlaps(pfn, pages),
            "pfn {pfn:#x}+{pages} handed out while still live"
        );
        self.live.lock().unwrap().insert(pfn, pages);
        Some(pfn)
    }
    fn free(&self, pfn: u64, pages: u64) {
        let (iova, len) = (pfn << self.shift, pages << self.shift);
        assert!(
            !self.domain.tlb_holds(iova, len),
            "IOVA {iova:#x}+{len:#x} freed while the IOTLB still translates it"
        );
        let was = self.live.lock().unwrap().remove(&pfn);
        assert_eq!(was, Some(pages), "free of pfn {pfn:#x}+{pages} not live");
        self.inner.free(pfn, pages);
    }
}

pub type Dev = DmaDevice<Arc<MockDomain>, Arc<CheckedIova>>;

pub struct Rig {
    pub mem: Arc<SimMemory>,
    pub domain: Arc<MockDomain>,
    pub iova: Arc<CheckedIova>,
    pub cookie: Arc<DmaCookie<Arc<MockDomain>, Arc<CheckedIova>>>,
    pub pool: Arc<Swiotlb>,
}

impl Rig {
    pub fn new(granule: u64, cpu_page: u64) -> Self {
        Self::with_domain(MockDomain::new(granule), cpu_page)
    }

    pub fn with_domain(domain: MockDomain, cpu_page: u64) -> Self {
        let mem = Arc::new(SimMemory::new());
        let domain = Arc::new(domain);
        let granule = iommu_dma::DmaDomain::pgsize_bitmap(&*domain)
            .smallest()
            .unwrap();
        let iova = Arc::new(CheckedIova::new(domain.clone(), granule));
        let cookie = Arc::new(
            DmaCookie::with_fq_size(
                domain.clone(),
                iova.clone(),
                Arc::new(FixedCpuId { id: 0, count: 1 }),
                8,
            )
            .unwrap(),
        );
        let pool = Arc::new(Swiotlb::new(mem.clone(), 4 << 20, cpu_page).unwrap());
        Self {
            mem,
            domain,
            iova,
            cookie,
            pool,
        }
    }

    pub fn device(&self, cfg: DeviceConfig) -> Dev {
        DmaDevice::new(
            self.cookie.clone(),
            self.mem.clone(),
            Some(self.pool.clone()),
            cfg,
        )
        .unwrap()
    }

    /// Allocate `bytes` at `offset` into a fresh 64 KiB-aligned region filled with
    /// `0xee` (foreign data), then write `pattern(i)` into the buffer.
    pub fn buffer(&self, offset: u64, bytes: u64) -> PhysAddr {
        let region = (offset + bytes).next_multiple_of(65536) + 65536;
        let base = self.mem.alloc_pages(region, 65536).unwrap();
        self.mem.fill_bytes(base, region, 0xee).unwrap();
        let pa = PhysAddr(base.0 + offset);
        self.mem
            .write_bytes(pa, &pattern(bytes as usize, 1))
            .unwrap();
        pa
    }

    pub fn read(&self, pa: PhysAddr, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem.read_bytes(pa, &mut v).unwrap();
        v
    }
}

pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
        .collect()
}

pub fn untrusted(cpu_page: u64) -> DeviceConfig {
    DeviceConfig {
        trusted: false,
        cpu_page,
        ..DeviceConfig::default()
    }
}

pub fn trusted(cpu_page: u64) -> DeviceConfig {
    DeviceConfig {
        cpu_page,
        ..DeviceConfig::default()
    }
}
