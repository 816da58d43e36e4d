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
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use iommu_memory::SimMemory;
use iommu_testkit::smmu::cmd::{self, Range};
use iommu_testkit::smmu::{CdBits, SmmuRig, SteBits, Tables, pte};
use iommu_types::{PhysAddr, PhysMem};
use smmuv3_model::{Access, Capacity, Smmu, SmmuConfig};

const PAGES: u64 = 256;
const VA_BASE: u64 = 0x0000_4000_0000_0000;

fn model(cfg: SmmuConfig) -> (Arc<SimMemory>, Arc<Smmu>) {
    let mem = Arc::new(SimMemory::new());
    let smmu = Arc::new(Smmu::new(cfg, mem.clone()));
    (mem, smmu)
}

/// Stage-1 stream 1 with PAGES pages at VA_BASE.
fn s1_setup(cfg: SmmuConfig) -> (Arc<SimMemory>, Arc<Smmu>) {
    let (mem, smmu) = model(cfg);
    {
        let rig = SmmuRig::linear(&*smmu, &*mem, 4, 8, 6);
        let mut t = Tables::s1(&*mem, 12, 48);
        let data = mem.alloc_pages(PAGES * 4096, 4096).unwrap().0;
        for i in 0..PAGES {
            t.map(VA_BASE + i * 4096, data + i * 4096, 3, pte::S1_RW);
        }
        let cd = mem.alloc_pages(4096, 4096).unwrap().0;
        CdBits::s1(1, t.root, 48, 12).write(&*mem, cd);
        rig.set_ste(1, SteBits::s1(cd, 0, 0));
    }
    (mem, smmu)
}

/// Nested stream 1: stage-1 tables (4 levels) in guest memory, stage 2 with 4
/// levels (4K, start level 0, 48-bit IPA) mapping guest RAM.
fn nested_setup(cfg: SmmuConfig) -> (Arc<SimMemory>, Arc<Smmu>) {
    let (mem, smmu) = model(cfg);
    {
        let rig = SmmuRig::linear(&*smmu, &*mem, 4, 8, 6);
        let guest = 0x0000_0100_0000_0000u64; // guest RAM IPA
        let host = mem.alloc_pages(8 << 20, 4096).unwrap().0;
        let mut s2 = Tables::new(&*mem, 12, 0, 48);
        for i in 0..(8u64 << 20) / 4096 {
            s2.map(guest + i * 4096, host + i * 4096, 3, pte::S2_RW);
        }
        let g2h = |g: u64| host + (g - guest);
        // Stage-1 tables at guest pages 0..3 (one path), data at guest pages 16...
        let l = [guest, guest + 0x1000, guest + 0x2000, guest + 0x3000];
        for lvl in 0..3 {
            let idx = (VA_BASE >> (39 - 9 * lvl)) & 511;
            mem.write_u64(
                PhysAddr(g2h(l[lvl as usize]) + idx * 8),
                l[lvl as usize + 1] | 3,
            )
            .unwrap();
        }
        for i in 0..PAGES {
            let va = VA_BASE + i * 4096;
            let d = (guest + 0x10_0000 + i * 4096) | pte::S1_RW | 3;
            mem.write_u64(PhysAddr(g2h(l[3]) + ((va >> 12) & 511) * 8), d)
                .unwrap();
        }
        let cd_g = guest + 0xF000;
        CdBits::s1(1, l[0], 48, 12).write(&*mem, g2h(cd_g));
        rig.set_ste(1, SteBits::s1(cd_g, 0, 0).with_s2(1, 12, 0, 48, 5, s2.root));
    }
    (mem, smmu)
}

fn no_tlb() -> SmmuConfig {
    SmmuConfig::builder()
        .tlb(Capacity::Disabled)
        .walk_cache(Capacity::Disabled)
        .sanitizer(false)
        .build()
}

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
