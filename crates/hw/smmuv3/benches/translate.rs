//! Translation and command-consumption benchmarks of the SMMUv3 model, compared in
//! the same run with the `smmu` crate from crates.io on the same mapping set
//! (256 read/write 4 KiB pages of one stream).
//!
//! * `tlb_hit`: the model with its TLB warm (sanitizer off), vs `smmu::SMMU::translate`.
//! * `s1_4level_miss`: the model with TLB and walk cache disabled, so every
//!   translation walks four stage-1 levels from `SimMemory` (baseline:
//!   `simmem_read_u64`, one hot descriptor load).
//! * `nested_4x4_miss`: 4-level stage 1 over 4-level stage 2, nothing cached but the
//!   configuration: 4 × 4 + 4 + 4 = 24 descriptor loads per translation.
//! * `cmdq`: consumption of a batch of 63 TLBI_NH_VA + CMD_SYNC per CMDQ_PROD write.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

mod common;
use common::{PAGES, VA_BASE, nested_setup, no_tlb, s1_setup};
use iommu_testkit::smmu::SmmuRig;
use iommu_testkit::smmu::cmd::{self, Range};
use iommu_types::PhysMem;
use smmuv3_model::{Access, SmmuConfig};

fn bench_translate(c: &mut Criterion) {
    let mut g = c.benchmark_group("translate");

    let (mem, _smmu) = s1_setup(no_tlb());
    let probe = mem.alloc_pages(4096, 4096).unwrap();
    g.bench_function("simmem_read_u64", |b| {
        b.iter(|| black_box(mem.read_u64(black_box(probe)).unwrap()))
    });

    let (_mem, smmu) = s1_setup(SmmuConfig::builder().sanitizer(false).build());
    for i in 0..PAGES {
        smmu.translate(1, None, VA_BASE + i * 4096, Access::READ)
            .unwrap();
    }
    let mut i = 0u64;
    g.bench_function("tlb_hit/model", |b| {
        b.iter(|| {
            i = (i + 1) % PAGES;
            black_box(
                smmu.translate(1, None, VA_BASE + i * 4096 + 8, Access::READ)
                    .unwrap(),
            )
        })
    });

    let (_mem, smmu) = s1_setup(no_tlb());
    g.bench_function("s1_4level_miss/model", |b| {
        b.iter(|| {
            i = (i + 1) % PAGES;
            black_box(
                smmu.translate(1, None, VA_BASE + i * 4096 + 8, Access::READ)
                    .unwrap(),
            )
        })
    });

    let (_mem, smmu) = nested_setup(no_tlb());
    g.bench_function("nested_4x4_miss/model", |b| {
        b.iter(|| {
            i = (i + 1) % PAGES;
            black_box(
                smmu.translate(1, None, VA_BASE + i * 4096 + 8, Access::READ)
                    .unwrap(),
            )
        })
    });

    // The smmu crate: same stream, same 256 pages, read translations.
    {
        use smmu::prelude::*;
        let s = SMMU::new();
        let sid = StreamID::new(1).unwrap();
        let cfg = StreamConfig::builder()
            .translation_enabled(true)
            .stage1_enabled(true)
            .pasid_enabled(true)
            .max_pasid(256)
            .build()
            .unwrap();
        s.configure_stream(sid, cfg).unwrap();
        let pasid = PASID::new(0).unwrap();
        s.create_pasid(sid, pasid).unwrap();
        for i in 0..PAGES {
            let va = IOVA::new(VA_BASE + i * 4096).unwrap();
            let pa = PA::new(0x8000_0000 + i * 4096).unwrap();
            s.map_page(
                sid,
                pasid,
                va,
                pa,
                PagePermissions::read_write(),
                SecurityState::NonSecure,
            )
            .unwrap();
        }
        g.bench_function("tlb_hit/smmu_crate", |b| {
            b.iter(|| {
                i = (i + 1) % PAGES;
                let va = IOVA::new(VA_BASE + i * 4096 + 8).unwrap();
                black_box(
                    s.translate(sid, pasid, va, AccessType::Read, SecurityState::NonSecure)
                        .unwrap(),
                )
            })
        });
    }
    g.finish();
}

fn bench_cmdq(c: &mut Criterion) {
    let mut g = c.benchmark_group("cmdq");
    let (mem, smmu) = s1_setup(SmmuConfig::builder().sanitizer(false).build());
    let mut rig = SmmuRig::linear(&*smmu, &*mem, 4, 8, 6);
    let mut batch: Vec<[u64; 2]> = (0..63u64)
        .map(|i| {
            cmd::tlbi_nh_va(
                0,
                1,
                VA_BASE + i * 4096,
                Range {
                    leaf: true,
                    ..Default::default()
                },
            )
        })
        .collect();
    batch.push(cmd::sync(0, 0, 0));
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.bench_function("tlbi_va_x63_plus_sync", |b| {
        b.iter(|| rig.submit(black_box(&batch)))
    });
    g.finish();
}

criterion_group!(benches, bench_translate, bench_cmdq);
criterion_main!(benches);
