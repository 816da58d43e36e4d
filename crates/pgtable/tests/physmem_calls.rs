//! The hot paths are designed around the cost of `PhysMem` calls (issue 2,
//! "Performance"): these tests count the calls, so a change that re-walks from the
//! root, or reads what it already knows, shows up here rather than as benchmark noise.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use io_pgtable::{Granule, IoPgtable, IotlbGather, LpaeConfig, LpaeTable, NoFlush, Stage};
use iommu_memory::SimMemory;
use iommu_types::{Iova, PhysAddr, PhysMem, Prot, Result, SZ_2M, SZ_4K};

/// A `PhysMem` that counts word loads, stores and compare-exchanges.
#[derive(Default)]
struct Counting {
    mem: SimMemory,
    reads: AtomicU64,
    writes: AtomicU64,
    cas: AtomicU64,
    allocs: AtomicU64,
}

impl Counting {
    fn take(&self) -> (u64, u64, u64, u64) {
        (
            self.reads.swap(0, Ordering::Relaxed),
            self.writes.swap(0, Ordering::Relaxed),
            self.cas.swap(0, Ordering::Relaxed),
            self.allocs.swap(0, Ordering::Relaxed),
        )
    }
}

impl PhysMem for Counting {
    fn read_u64(&self, pa: PhysAddr) -> Result<u64> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.mem.read_u64(pa)
    }
    fn write_u64(&self, pa: PhysAddr, value: u64) -> Result<()> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.mem.write_u64(pa, value)
    }
    fn compare_exchange_u64(
        &self,
        pa: PhysAddr,
        current: u64,
        new: u64,
    ) -> Result<core::result::Result<u64, u64>> {
        self.cas.fetch_add(1, Ordering::Relaxed);
        self.mem.compare_exchange_u64(pa, current, new)
    }
    fn read_u32(&self, pa: PhysAddr) -> Result<u32> {
        self.mem.read_u32(pa)
    }
    fn write_u32(&self, pa: PhysAddr, value: u32) -> Result<()> {
        self.mem.write_u32(pa, value)
    }
    fn read_bytes(&self, pa: PhysAddr, buf: &mut [u8]) -> Result<()> {
        self.mem.read_bytes(pa, buf)
    }
    fn write_bytes(&self, pa: PhysAddr, buf: &[u8]) -> Result<()> {
        self.mem.write_bytes(pa, buf)
    }
    fn alloc_pages(&self, bytes: u64, align: u64) -> Result<PhysAddr> {
        self.allocs.fetch_add(1, Ordering::Relaxed);
        self.mem.alloc_pages(bytes, align)
    }
    fn free_pages(&self, pa: PhysAddr, bytes: u64) -> Result<()> {
        self.mem.free_pages(pa, bytes)
    }
}

const BASE: u64 = 1 << 40;

#[test]
fn one_page_maps_cost_one_load_and_one_store() {
    let mem = Counting::default();
    let t = LpaeTable::new(
        LpaeConfig::new(Stage::S1, Granule::G4K, 48, 48),
        &mem,
        Arc::new(NoFlush),
    )
    .unwrap();
    mem.take();
    // First page: walk from the root, allocating L1, L2 and L3 tables.
    t.map_pages(Iova(BASE), PhysAddr(0), SZ_4K, 1, Prot::RW)
        .1
        .unwrap();
    assert_eq!(mem.take(), (4, 1, 3, 3));
    // The other 511 pages of that level-3 table: one load (is it empty?) and one store.
    for i in 1..512 {
        t.map_pages(
            Iova(BASE + i * SZ_4K),
            PhysAddr(i * SZ_4K),
            SZ_4K,
            1,
            Prot::RW,
        )
        .1
        .unwrap();
    }
    assert_eq!(mem.take(), (511, 511, 0, 0));
    // Next level-3 table: the walk starts at the cached level-2 table.
    t.map_pages(Iova(BASE + SZ_2M), PhysAddr(0), SZ_4K, 1, Prot::RW)
        .1
        .unwrap();
    assert_eq!(mem.take(), (2, 1, 1, 1));
    // Unmaps of pages in a walked region: one load and one store each.
    let mut g = IotlbGather::new();
    for i in 0..512 {
        assert_eq!(
            t.unmap_pages(Iova(BASE + i * SZ_4K), SZ_4K, 1, &mut g),
            SZ_4K
        );
    }
    let (reads, writes, cas, _) = mem.take();
    assert!(
        reads <= 512 + 3 && writes == 512 && cas == 0,
        "{reads} loads, {writes} stores"
    );
}

#[test]
fn lookups_start_from_the_cached_table() {
    let mem = Counting::default();
    let t = LpaeTable::new(
        LpaeConfig::new(Stage::S1, Granule::G4K, 48, 48),
        &mem,
        Arc::new(NoFlush),
    )
    .unwrap();
    t.map_pages(Iova(BASE), PhysAddr(0), SZ_4K, 4, Prot::RW)
        .1
        .unwrap();
    mem.take();
    assert_eq!(t.iova_to_phys(Iova(BASE + 0x3008)), Some(PhysAddr(0x3008)));
    assert_eq!(mem.take().0, 1, "the level-3 table is known: one load");
    // A page in another 2M region of the same 1G: from the cached level-2 table.
    assert_eq!(t.iova_to_phys(Iova(BASE + 5 * SZ_2M)), None);
    assert_eq!(mem.take().0, 1);
}
