//! Minimum-of-batches latencies of the model's translation paths, for a machine
//! too loaded for criterion's mean to mean much: each figure is the fastest of
//! 3000 batches of 1000 translations. `cargo run --release -p smmuv3-model
//! --example latency [read|mmio|hit|chase|miss4|nested]`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use iommu_memory::SimMemory;
use iommu_testkit::smmu::{Tables, pte};
use iommu_types::{PhysAddr, PhysMem};
use smmuv3_model::{Access, SmmuConfig};

#[path = "../benches/common/mod.rs"]
mod common;
use common::{PAGES, VA_BASE, nested_setup, no_tlb, s1_setup};

fn min_batch(name: &str, mut f: impl FnMut(u64)) {
    let mut best = f64::MAX;
    for _ in 0..3000 {
        let t = Instant::now();
        for i in 0..1000u64 {
            f(i)
        }
        best = best.min(t.elapsed().as_nanos() as f64 / 1000.0);
    }
    println!("{name}: {best:.1} ns");
}

fn main() {
    let only = std::env::args().nth(1).unwrap_or_default();
    let run = |n: &str| only.is_empty() || only == n;
    let va = |i: u64| VA_BASE + (i % PAGES) * 4096 + 8;
    if run("read") {
        let (mem, _s) = s1_setup(no_tlb());
        let probe = mem.alloc_pages(4096, 4096).unwrap();
        min_batch("simmem read_u64", |_| {
            black_box(mem.read_u64(black_box(probe)).unwrap());
        });
    }
    if run("mmio") {
        use iommu_types::Mmio;
        let (_m, smmu) = s1_setup(no_tlb());
        min_batch("mmio read32 (lock + decode)", |_| {
            black_box(smmu.read32(black_box(0)));
        });
    }
    if run("hit") {
        let (_m, smmu) = s1_setup(SmmuConfig::builder().sanitizer(false).build());
        min_batch("tlb hit", |i| {
            black_box(smmu.translate(1, None, va(i), Access::READ).unwrap());
        });
    }
    if run("chase") {
        // The floor of a 4-level miss: the same four dependent descriptor loads
        // (one per table page) with nothing else, through `dyn PhysMem`.
        let mem = Arc::new(SimMemory::new());
        let mut t = Tables::s1(&*mem, 12, 48);
        let data = mem.alloc_pages(PAGES * 4096, 4096).unwrap().0;
        for i in 0..PAGES {
            t.map(VA_BASE + i * 4096, data + i * 4096, 3, pte::S1_RW);
        }
        let m: Arc<dyn PhysMem> = mem.clone();
        let root = t.root;
        min_batch("4 dependent simmem loads (bare walk)", |i| {
            let v = black_box(va(i));
            let mut table = root;
            for lvl in 0..4u32 {
                let idx = (v >> (39 - 9 * lvl)) & 511;
                let d = m.read_u64(PhysAddr(table + idx * 8)).unwrap();
                table = d & 0x0000_FFFF_FFFF_F000;
            }
            black_box(table);
        });
    }
    if run("miss4") {
        let (_m, smmu) = s1_setup(no_tlb());
        min_batch("4-level stage-1 miss", |i| {
            black_box(smmu.translate(1, None, va(i), Access::READ).unwrap());
        });
    }
    if run("nested") {
        let (_m, smmu) = nested_setup(no_tlb());
        min_batch("nested 4x4 miss", |i| {
            black_box(smmu.translate(1, None, va(i), Access::READ).unwrap());
        });
    }
}
