//! Threads mapping and unmapping disjoint ranges of one table at the same time: the
//! next-level tables they share are installed with compare-and-swap, so no mapping is
//! lost, no table is installed twice (leaked) and every translation is right.

use std::sync::Arc;

use io_pgtable::{Granule, IoPgtable, IotlbGather, LpaeConfig, LpaeTable, NoFlush, Stage};
use iommu_memory::SimMemory;
use iommu_types::{Iova, PhysAddr, Prot, SZ_4K};

const THREADS: u64 = 4;
const PAGES: u64 = 4096; // 16 MiB of 4K pages: eight level-3 tables shared by all threads
/// Rounds, each in a fresh 4 GiB region: every round is a new chance for the threads
/// to race on installing the same tables (a lost race shows up in most runs).
const ROUNDS: u64 = 16;

#[test]
fn disjoint_concurrent_mappers_share_tables_safely() {
    let mem = Arc::new(SimMemory::new());
    let cfg = LpaeConfig::new(Stage::S1, Granule::G4K, 48, 48);
    let table = Arc::new(LpaeTable::new(cfg, mem.clone(), Arc::new(NoFlush)).unwrap());
    let start = mem.stats().pages_in_use;
    for round in 0..ROUNDS {
        // Interleaved pages: thread t owns pages t, t + THREADS, ... so the threads race
        // to install every intermediate table.
        let base = round << 32;
        // All threads start mapping together, so that they do race for the tables.
        let start_line = std::sync::Barrier::new(THREADS as usize);
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let table = table.clone();
                let start_line = &start_line;
                s.spawn(move || {
                    start_line.wait();
                    for i in (t..PAGES).step_by(THREADS as usize) {
                        let iova = base + i * SZ_4K;
                        let r = table.map_pages(
                            Iova(iova),
                            PhysAddr(0x1_0000_0000 + i * SZ_4K),
                            SZ_4K,
                            1,
                            Prot::RW,
                        );
                        assert_eq!(r, (SZ_4K, Ok(())));
                    }
                });
            }
        });
        for i in 0..PAGES {
            let iova = base + i * SZ_4K + 8;
            assert_eq!(
                table.iova_to_phys(Iova(iova)),
                Some(PhysAddr(0x1_0000_0000 + i * SZ_4K + 8))
            );
        }
        // One L1 table shared by all rounds, one L2 and eight L3 per round (emptied
        // tables stay, as in Linux).
        let expected = start + 1 + (round + 1) * 9;
        assert_eq!(
            mem.stats().pages_in_use,
            expected,
            "no duplicate table survived a race"
        );
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let table = table.clone();
                s.spawn(move || {
                    let mut g = IotlbGather::new();
                    for i in (t..PAGES).step_by(THREADS as usize) {
                        assert_eq!(
                            table.unmap_pages(Iova(base + i * SZ_4K), SZ_4K, 1, &mut g),
                            SZ_4K
                        );
                    }
                });
            }
        });
        for i in 0..PAGES {
            assert_eq!(table.iova_to_phys(Iova(base + i * SZ_4K)), None);
        }
    }
    drop(table);
    assert_eq!(mem.stats().pages_in_use, 0);
}
