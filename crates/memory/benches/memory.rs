//! Hot descriptor-load and store cost of `SimMemory` (issue "Foundation": "a descriptor
//! load must be a few nanoseconds when hot").

use criterion::{Criterion, criterion_group, criterion_main};
use iommu_memory::SimMemory;
use iommu_types::{PhysAddr, PhysMem};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let m = SimMemory::new();
    let pages: Vec<PhysAddr> = (0..64)
        .map(|_| m.alloc_pages(4096, 4096).unwrap())
        .collect();
    let mut g = c.benchmark_group("simmemory");
    g.bench_function("read_u64_hot", |b| {
        let pa = pages[3];
        b.iter(|| black_box(m.read_u64(black_box(pa)).unwrap()))
    });
    g.bench_function("read_u64_64_pages_round_robin", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) & 63;
            black_box(
                m.read_u64(black_box(PhysAddr(pages[i].0 + 8 * (i as u64))))
                    .unwrap(),
            )
        })
    });
    g.bench_function("write_u64_hot", |b| {
        let pa = pages[5];
        b.iter(|| m.write_u64(black_box(pa), black_box(7)).unwrap())
    });
    g.bench_function("cmpxchg_u64_hot", |b| {
        let pa = pages[6];
        b.iter(|| black_box(m.compare_exchange_u64(black_box(pa), 0, 0).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
