//! Noise-resistant companion to `benches/iova.rs`: the same scenarios, reporting
//! the best of 60 batches of 20,000 alloc+free pairs (ns per pair) and the ratio
//! to Linux's figures. On a shared machine the best batch filters out preemption,
//! which inflates criterion's means. Run:
//! `cargo run --release -p iommu-iova --example min_batch`.

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use iommu_iova::IovaDomain;
use iommu_types::{FixedCpuId, ThreadCpuId};

const LIMIT: u64 = (1 << 20) - 1;

fn domain() -> IovaDomain {
    IovaDomain::builder(4096, 1)
        .cpus(Arc::new(FixedCpuId { id: 0, count: 1 }))
        .build()
        .expect("valid domain")
}

fn best_ns(mut f: impl FnMut(usize)) -> f64 {
    let batch = 20_000;
    (0..60)
        .map(|_| {
            let t = Instant::now();
            f(batch);
            t.elapsed().as_nanos() as f64 / batch as f64
        })
        .fold(f64::MAX, f64::min)
}

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

fn report(name: &str, ns: f64, linux: f64) {
    println!(
        "{name:<34} {ns:>6.1} ns   Linux {linux:>5.1}   ratio {:.2}",
        ns / linux
    );
}

fn main() {
    let d = domain();
    report(
        "fast path, 1 page",
        best_ns(|n| {
            for _ in 0..n {
                let p = d.alloc_iova_fast(black_box(1), LIMIT, true).unwrap();
                d.free_iova_fast(p, 1).unwrap();
            }
        }),
        13.1,
    );
    let tree = |d: &IovaDomain| {
        best_ns(|n| {
            for _ in 0..n {
                let r = d.alloc_iova(black_box(1), LIMIT, true).unwrap();
                d.free_iova(r.pfn_lo).unwrap();
            }
        })
    };
    report("tree path, 1 page", tree(&domain()), 17.6);
    let d = domain();
    for _ in 0..10_000 {
        d.alloc_iova(1, LIMIT, true).unwrap();
    }
    report("tree path, 10,000 live", tree(&d), 22.3);
    let s = sizes(4096);
    let d = domain();
    let mut i = 0;
    report(
        "mixed 1..64",
        best_ns(|n| {
            for _ in 0..n {
                let k = s[i & 4095];
                i += 1;
                let p = d.alloc_iova_fast(black_box(k), LIMIT, true).unwrap();
                d.free_iova_fast(p, k).unwrap();
            }
        }),
        14.7,
    );
    let d = domain();
    let mut ring: Vec<(u64, u64)> = s[..256]
        .iter()
        .map(|&k| (d.alloc_iova_fast(k, LIMIT, true).unwrap(), k))
        .collect();
    let mut i = 0;
    report(
        "mixed 1..64, 256 outstanding",
        best_ns(|n| {
            for _ in 0..n {
                let slot = i & 255;
                let (p, k) = ring[slot];
                d.free_iova_fast(p, k).unwrap();
                let k = s[i & 4095];
                i += 1;
                ring[slot] = (d.alloc_iova_fast(black_box(k), LIMIT, true).unwrap(), k);
            }
        }),
        36.6,
    );
    let d = Arc::new(
        IovaDomain::builder(4096, 1)
            .cpus(Arc::new(ThreadCpuId::new(2)))
            .build()
            .expect("valid domain"),
    );
    let barrier = Arc::new(Barrier::new(2));
    let per_thread: Vec<f64> = (0..2)
        .map(|cpu| {
            let (d, barrier) = (d.clone(), barrier.clone());
            std::thread::spawn(move || {
                ThreadCpuId::set_current(cpu);
                barrier.wait();
                best_ns(|n| {
                    for _ in 0..n {
                        let p = d.alloc_iova_fast(black_box(1), LIMIT, true).unwrap();
                        d.free_iova_fast(p, 1).unwrap();
                    }
                })
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    report(
        "fast path, 2 threads (per thread)",
        per_thread[0].max(per_thread[1]),
        13.4,
    );
}
