//! Criterion benchmarks of the IOVA allocator: ns per alloc+free pair on the
//! cached fast path, the tree path (empty and with 10,000 live ranges), mixed sizes
//! 1..=64 (alone and with 256 outstanding), and the fast path from 2 threads.
//! Baselines (Linux `iova.c`, user space, gcc -O2, same machine kind) are in the
//! crate README.

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use iommu_iova::IovaDomain;
use iommu_types::{FixedCpuId, ThreadCpuId};

/// 4 KiB granule, 32-bit limit, as a 32-bit PCI device under dma-iommu.
const LIMIT: u64 = (1 << 20) - 1;

fn domain() -> IovaDomain {
    IovaDomain::builder(4096, 1)
        .cpus(Arc::new(FixedCpuId { id: 0, count: 1 }))
        .build()
        .unwrap()
}

/// A fixed pseudo-random sequence of sizes in 1..=64.
fn sizes(n: usize) -> Vec<u64> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            1 + x % 64
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("iova");

    g.bench_function("fast_path_1page", |b| {
        let d = domain();
        let p = d.alloc_iova_fast(1, LIMIT, true).unwrap();
        d.free_iova_fast(p, 1).unwrap();
        b.iter(|| {
            let p = d.alloc_iova_fast(black_box(1), LIMIT, true).unwrap();
            d.free_iova_fast(black_box(p), 1).unwrap();
        });
    });

    g.bench_function("tree_path_1page", |b| {
        let d = domain();
        b.iter(|| {
            let r = d.alloc_iova(black_box(1), LIMIT, true).unwrap();
            d.free_iova(black_box(r.pfn_lo)).unwrap();
        });
    });

    g.bench_function("tree_path_1page_10000_live", |b| {
        let d = domain();
        for _ in 0..10_000 {
            d.alloc_iova(1, LIMIT, true).unwrap();
        }
        b.iter(|| {
            let r = d.alloc_iova(black_box(1), LIMIT, true).unwrap();
            d.free_iova(black_box(r.pfn_lo)).unwrap();
        });
    });

    g.bench_function("mixed_1_64", |b| {
        let d = domain();
        let s = sizes(4096);
        let mut i = 0;
        b.iter(|| {
            let n = s[i & 4095];
            i += 1;
            let p = d.alloc_iova_fast(black_box(n), LIMIT, true).unwrap();
            d.free_iova_fast(black_box(p), n).unwrap();
        });
    });

    g.bench_function("mixed_1_64_256_outstanding", |b| {
        let d = domain();
        let s = sizes(4096);
        let mut ring: Vec<(u64, u64)> = s[..256]
            .iter()
            .map(|&n| (d.alloc_iova_fast(n, LIMIT, true).unwrap(), n))
            .collect();
        let mut i = 0;
        b.iter(|| {
            let slot = i & 255;
            let (p, n) = ring[slot];
            d.free_iova_fast(p, n).unwrap();
            let n = s[i & 4095];
            i += 1;
            ring[slot] = (d.alloc_iova_fast(black_box(n), LIMIT, true).unwrap(), n);
        });
    });

    g.bench_function("fast_path_2_threads_per_thread", |b| {
        let d = Arc::new(
            IovaDomain::builder(4096, 1)
                .cpus(Arc::new(ThreadCpuId::new(2)))
                .build()
                .unwrap(),
        );
        b.iter_custom(|iters| {
            let barrier = Arc::new(Barrier::new(2));
            let handles: Vec<_> = (0..2)
                .map(|cpu| {
                    let d = d.clone();
                    let barrier = barrier.clone();
                    std::thread::spawn(move || {
                        ThreadCpuId::set_current(cpu);
                        let p = d.alloc_iova_fast(1, LIMIT, true).unwrap();
                        d.free_iova_fast(p, 1).unwrap();
                        barrier.wait();
                        let t = Instant::now();
                        for _ in 0..iters {
                            let p = d.alloc_iova_fast(black_box(1), LIMIT, true).unwrap();
                            d.free_iova_fast(black_box(p), 1).unwrap();
                        }
                        t.elapsed()
                    })
                })
                .collect();
            let total: Duration = handles.into_iter().map(|h| h.join().unwrap()).sum();
            // Per thread: the mean of the two threads' times for `iters` pairs.
            total / 2
        });
    });

    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
