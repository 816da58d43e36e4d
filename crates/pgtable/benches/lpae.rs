//! Criterion benchmarks of the LPAE table hot paths (issue 2 "Performance"): stage 1,
//! 48-bit, 4K granule, coherent walk, no-op flush ops ([`NoFlush`]).
//!
//! * map / unmap of 1,000,000 distinct 4K pages, one call per page, ascending IOVA;
//! * `iova_to_phys` over those pages in random order;
//! * map / unmap / random lookup of 131,072 2M blocks.
//! * the 4K map / unmap loops again through `&dyn IoPgtable` (group `_dyn`).
//!
//! One criterion iteration covers all N operations (throughput = N elements), so the
//! time per operation is the reported time divided by N. On a shared, loaded machine
//! set `IOMMU_BENCH_CPU_TIME=1` to time the map/unmap loops by the thread's on-CPU
//! time (`/proc/thread-self/schedstat`) instead of wall-clock time, so that time spent
//! descheduled is not counted. Table pages come from one
//! `SimMemory` reused across iterations (freed pages are recycled, like the free list
//! of the C baseline).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use io_pgtable::{Granule, IoPgtable, IotlbGather, LpaeConfig, LpaeTable, NoFlush, Stage};
use iommu_memory::SimMemory;
use iommu_types::{Iova, PhysAddr, Prot, SZ_2M, SZ_4K};
use rand::SeedableRng;
use rand::seq::SliceRandom;

const PAGES_4K: u64 = 1_000_000;
const BLOCKS_2M: u64 = 131_072;
const IOVA_BASE: u64 = 1 << 40;
const PA_BASE: u64 = 1 << 36;

fn cfg() -> LpaeConfig {
    LpaeConfig::new(Stage::S1, Granule::G4K, 48, 48)
}

fn table(mem: &SimMemory) -> LpaeTable<&SimMemory> {
    LpaeTable::new(cfg(), mem, Arc::new(NoFlush)).unwrap()
}

fn map_all(t: &LpaeTable<&SimMemory>, size: u64, n: u64) {
    for i in 0..n {
        let (m, r) = t.map(
            Iova(IOVA_BASE + i * size),
            PhysAddr(PA_BASE + i * size),
            size,
            1,
            Prot::RW,
        );
        debug_assert!(r.is_ok() && m == size);
        black_box(m);
    }
}

fn unmap_all(t: &LpaeTable<&SimMemory>, size: u64, n: u64) {
    let mut g = IotlbGather::new();
    for i in 0..n {
        let u = t.unmap(Iova(IOVA_BASE + i * size), size, 1, &mut g);
        debug_assert_eq!(u, size);
        black_box(u);
        if i % 512 == 511 {
            g.reset();
        }
    }
}

/// A start point of a timed section: wall clock, or on-CPU time of this thread.
enum Stamp {
    Wall(Instant),
    Cpu(u64),
}

fn cpu_time_mode() -> bool {
    std::env::var("IOMMU_BENCH_CPU_TIME").is_ok_and(|v| v == "1")
}

fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

impl Stamp {
    fn now() -> Stamp {
        if cpu_time_mode() {
            if let Some(ns) = thread_cpu_ns() {
                return Stamp::Cpu(ns);
            }
        }
        Stamp::Wall(Instant::now())
    }

    fn elapsed(&self) -> Duration {
        match self {
            Stamp::Wall(i) => i.elapsed(),
            Stamp::Cpu(start) => Duration::from_nanos(thread_cpu_ns().unwrap_or(*start) - start),
        }
    }
}

fn bench_size(c: &mut Criterion, name: &str, size: u64, n: u64) {
    let mem = SimMemory::new();
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(n));
    group.sample_size(10);
    group.bench_function("map", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = table(&mem);
                let start = Stamp::now();
                map_all(&t, size, n);
                total += start.elapsed();
            }
            total
        })
    });
    group.bench_function("unmap", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = table(&mem);
                map_all(&t, size, n);
                let start = Stamp::now();
                unmap_all(&t, size, n);
                total += start.elapsed();
            }
            total
        })
    });
    let t = table(&mem);
    map_all(&t, size, n);
    let mut order: Vec<u64> = (0..n)
        .map(|i| IOVA_BASE + i * size + (i * 64) % size)
        .collect();
    order.shuffle(&mut rand::rngs::SmallRng::seed_from_u64(42));
    group.bench_function("lookup_random", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Stamp::now();
                for &iova in &order {
                    black_box(t.translate(Iova(iova)));
                }
                total += start.elapsed();
            }
            total
        })
    });
    group.finish();
}

/// Calibration: the cost of the `PhysMem` calls the hot paths are made of, measured in
/// the same run (sequential 64-bit loads and stores over one 4 KiB table page).
fn bench_physmem(c: &mut Criterion) {
    use iommu_types::PhysMem;
    const N: u64 = 1_000_000;
    let mem = SimMemory::new();
    let page = mem.alloc_pages(SZ_4K, SZ_4K).unwrap().0;
    let mut group = c.benchmark_group("simmemory_calibration_1M");
    group.throughput(Throughput::Elements(N));
    group.sample_size(10);
    group.bench_function("read_u64", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Stamp::now();
                for i in 0..N {
                    black_box(mem.read_u64(PhysAddr(page + (i % 512) * 8)).unwrap());
                }
                total += start.elapsed();
            }
            total
        })
    });
    group.bench_function("write_u64", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Stamp::now();
                for i in 0..N {
                    mem.write_u64(PhysAddr(page + (i % 512) * 8), i).unwrap();
                }
                total += start.elapsed();
            }
            total
        })
    });
    group.finish();
}

/// The same 4K map/unmap loops through `&dyn IoPgtable` (how the IOMMU core calls
/// the table): no inlining into the caller, page size and count not known at compile
/// time.
fn bench_dyn(c: &mut Criterion) {
    const N: u64 = PAGES_4K;
    let mem = SimMemory::new();
    let mut group = c.benchmark_group("lpae_s1_4k_pages_1M_dyn");
    group.throughput(Throughput::Elements(N));
    group.sample_size(10);
    let map = |t: &dyn IoPgtable| {
        for i in 0..N {
            let iova = Iova(IOVA_BASE + i * SZ_4K);
            let (m, r) = t.map_pages(iova, PhysAddr(PA_BASE + i * SZ_4K), SZ_4K, 1, Prot::RW);
            debug_assert!(r.is_ok() && m == SZ_4K);
            black_box(m);
        }
    };
    group.bench_function("map", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = table(&mem);
                let start = Stamp::now();
                map(black_box(&t));
                total += start.elapsed();
            }
            total
        })
    });
    group.bench_function("unmap", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = table(&mem);
                map(&t);
                let d: &dyn IoPgtable = black_box(&t);
                let mut g = IotlbGather::new();
                let start = Stamp::now();
                for i in 0..N {
                    let u = d.unmap_pages(Iova(IOVA_BASE + i * SZ_4K), SZ_4K, 1, &mut g);
                    debug_assert_eq!(u, SZ_4K);
                    black_box(u);
                    if i % 512 == 511 {
                        g.reset();
                    }
                }
                total += start.elapsed();
            }
            total
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    bench_physmem(c);
    bench_dyn(c);
    bench_size(c, "lpae_s1_4k_pages_1M", SZ_4K, PAGES_4K);
    bench_size(c, "lpae_s1_2m_blocks_128K", SZ_2M, BLOCKS_2M);
}

criterion_group!(lpae, benches);
criterion_main!(lpae);
