//! Criterion benchmarks of the simulator: the full stack's map/unmap (strict vs
//! lazy), a device read through the SMMU model, scenario parsing, and a short NIC
//! workload. Run with `cargo bench -p iommu-sim -- --warm-up-time 1 --measurement-time 3`.

use criterion::{Criterion, criterion_group, criterion_main};
use iommu_dma::{DmaAttrs, DmaDirection};
use iommu_sim::platform::Platform;
use iommu_sim::scenario::{DeviceDecl, Policy, SmmuDecl};
use iommu_sim::workload::{Limit, PolicyChoice, SimConfig, WorkloadKind};
use iommu_types::PhysMem;
use std::hint::black_box;

fn platform(policy: Policy) -> Platform {
    let smmu = SmmuDecl::bounded("smmu0", 4096);
    let dev = DeviceDecl::new("dev", 0x10, "smmu0");
    Platform::new(4096, policy, 1, &[smmu], &[dev], false).expect("platform")
}

fn map_unmap(c: &mut Criterion) {
    let mut g = c.benchmark_group("dma_map_unmap_2k");
    for (policy, name) in [(Policy::Strict, "strict"), (Policy::Lazy, "lazy")] {
        let p = platform(policy);
        let dma = p.devices[0].dma.clone().expect("dma");
        let buf = p.mem.alloc_pages(4096, 4096).expect("buffer");
        g.bench_function(name, |b| {
            b.iter(|| {
                let iova = dma
                    .map_page(buf, 2048, DmaDirection::Bidirectional, DmaAttrs::default())
                    .expect("map");
                dma.unmap_page(iova, 2048, DmaDirection::Bidirectional, DmaAttrs::default())
                    .expect("unmap");
                p.poll_timers();
            })
        });
    }
    g.finish();
}

fn device_read(c: &mut Criterion) {
    let p = platform(Policy::Strict);
    let dma = p.devices[0].dma.clone().expect("dma");
    let buf = p.mem.alloc_pages(4096, 4096).expect("buffer");
    let iova = dma
        .map_page(buf, 4096, DmaDirection::Bidirectional, DmaAttrs::default())
        .expect("map");
    let mut data = [0u8; 64];
    c.bench_function("device_read_64b_tlb_hit", |b| {
        b.iter(|| black_box(p.dma_read(0, iova, &mut data).is_ok()))
    });
}

fn parse(c: &mut Criterion) {
    let src = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scenarios/live_switch.scn"
    ))
    .expect("scenario");
    c.bench_function("parse_live_switch_scenario", |b| {
        b.iter(|| black_box(iommu_sim::scenario::parse("b", &src).is_ok()))
    });
}

fn workload(c: &mut Criterion) {
    let mut g = c.benchmark_group("nic_workload_500_ops");
    g.sample_size(10);
    for policy in [PolicyChoice::Strict, PolicyChoice::Lazy] {
        let cfg = SimConfig {
            workload: WorkloadKind::Nic,
            policy,
            limit: Limit::Ops(500),
            ..SimConfig::default()
        };
        g.bench_function(policy.name(), |b| {
            b.iter(|| iommu_sim::simulate(&cfg, &|_, _| {}).expect("run"))
        });
    }
    g.finish();
}

criterion_group!(benches, map_unmap, device_read, parse, workload);
criterion_main!(benches);
