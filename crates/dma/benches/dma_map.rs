//! DMA API benchmarks (issue 6): map_page + unmap_page of 4 KiB in strict and lazy
//! mode from 1 and 2 threads, and map_sg + unmap_sg of a 64 KiB list of 16
//! segments.
//!
//! Two domains: the SMMUv3 driver on the SMMUv3 hardware model (`smmu/...`, real
//! LPAE tables, TLBI + CMD_SYNC through the model's command queue, IOVAs from
//! iommu-iova's magazines), and the crate's mock domain (`mock/...`) (a software table plus a modelled IOTLB),
//! with every invalidation (strict range sync, flush-queue flush) costing a
//! busy-wait of `SYNC_COST` to stand for the command-queue round trip of a real
//! SMMU (CMD_SYNC). Software costs are measured for real.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use iommu_dma::bind::CoreDomain;
use iommu_dma::mock::MockDomain;
use iommu_dma::{DeviceConfig, DmaAttrs, DmaCookie, DmaDevice, DmaDirection, SgEntry};
use iommu_iova::IovaDomain;
use iommu_memory::SimMemory;
use iommu_types::{Mmio, PhysAddr, PhysMem, ThreadCpuId};
use smmuv3::domain::{DomainStage, SmmuDomain};
use smmuv3::{DriverConfig, Smmu};
use smmuv3_model::{Smmu as Model, SmmuConfig};

/// Modelled cost of one invalidation + CMD_SYNC.
const SYNC_COST: Duration = Duration::from_micros(1);

type Dev = DmaDevice<Arc<MockDomain>, Arc<IovaDomain>>;
type SmmuDev = DmaDevice<CoreDomain<SmmuDomain>, Arc<IovaDomain>>;

/// The DMA API on the SMMUv3 driver over the hardware model (stream 0x10, S1).
fn setup_smmu(lazy: bool) -> (Arc<SimMemory>, Arc<SmmuDev>) {
    let mem = Arc::new(SimMemory::new());
    let hw = Arc::new(Model::new(
        SmmuConfig::default(),
        mem.clone() as Arc<dyn PhysMem>,
    ));
    let drv = Smmu::probe(
        hw as Arc<dyn Mmio>,
        mem.clone() as Arc<dyn PhysMem>,
        DriverConfig::default(),
    )
    .unwrap();
    drv.probe_stream(0x10, false).unwrap();
    let dom = SmmuDomain::new(&drv, DomainStage::S1, 4096, false).unwrap();
    dom.attach_sids(&[0x10], false).unwrap();
    let cpus = Arc::new(ThreadCpuId::new(2));
    let iova = Arc::new(
        IovaDomain::builder(4096, 1)
            .cpus(cpus.clone())
            .build()
            .unwrap(),
    );
    let cookie = Arc::new(DmaCookie::new(CoreDomain(dom), iova, cpus).unwrap());
    if lazy {
        cookie.enable_flush_queue().unwrap();
    }
    let dev = DmaDevice::new(cookie, mem.clone(), None, DeviceConfig::default()).unwrap();
    (mem, Arc::new(dev))
}

fn setup(lazy: bool) -> (Arc<SimMemory>, Arc<Dev>) {
    let mem = Arc::new(SimMemory::new());
    let domain = Arc::new(MockDomain::new(4096).with_sync_cost(SYNC_COST));
    let cpus = Arc::new(ThreadCpuId::new(2));
    let iova = Arc::new(
        IovaDomain::builder(4096, 1)
            .cpus(cpus.clone())
            .build()
            .unwrap(),
    );
    let cookie = Arc::new(DmaCookie::new(domain, iova, cpus).unwrap());
    if lazy {
        cookie.enable_flush_queue().unwrap();
    }
    let dev = DmaDevice::new(cookie, mem.clone(), None, DeviceConfig::default()).unwrap();
    (mem, Arc::new(dev))
}

fn map_unmap<D: iommu_dma::DmaDomain, A: iommu_dma::IovaAllocator>(
    dev: &DmaDevice<D, A>,
    buf: PhysAddr,
) {
    let d = dev
        .map_page(buf, 4096, DmaDirection::ToDevice, DmaAttrs::default())
        .unwrap();
    dev.unmap_page(d, 4096, DmaDirection::ToDevice, DmaAttrs::default())
        .unwrap();
}

fn run_map_unmap<D, A>(
    c: &mut Criterion,
    name: &str,
    setup: impl Fn(bool) -> (Arc<SimMemory>, Arc<DmaDevice<D, A>>),
) where
    D: iommu_dma::DmaDomain + 'static,
    A: iommu_dma::IovaAllocator + 'static,
{
    let mut group = c.benchmark_group(name);
    for lazy in [false, true] {
        let mode = if lazy { "lazy" } else { "strict" };
        let (mem, dev) = setup(lazy);
        let buf = mem.alloc_pages(4096, 4096).unwrap();
        ThreadCpuId::set_current(0);
        group.bench_function(format!("{mode}/1thread"), |b| {
            b.iter(|| map_unmap(&*dev, buf))
        });
        // Two threads each doing `iters` map+unmap pairs; the reported time is the
        // wall time per pair of concurrent operations.
        group.bench_function(format!("{mode}/2threads"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                std::thread::scope(|s| {
                    for cpu in 0..2 {
                        let dev = dev.clone();
                        s.spawn(move || {
                            ThreadCpuId::set_current(cpu);
                            for _ in 0..iters {
                                map_unmap(&*dev, buf);
                            }
                        });
                    }
                });
                start.elapsed()
            })
        });
        dev.cookie().flush_queue_timer().unwrap();
    }
    group.finish();
}

fn bench_map_page(c: &mut Criterion) {
    run_map_unmap(c, "smmu/map_unmap_4k", setup_smmu);
    run_map_unmap(c, "mock/map_unmap_4k", setup);
}

fn run_map_sg<D, A>(
    c: &mut Criterion,
    name: &str,
    setup: impl Fn(bool) -> (Arc<SimMemory>, Arc<DmaDevice<D, A>>),
) where
    D: iommu_dma::DmaDomain + 'static,
    A: iommu_dma::IovaAllocator + 'static,
{
    let mut group = c.benchmark_group(name);
    for lazy in [false, true] {
        let mode = if lazy { "lazy" } else { "strict" };
        let (mem, dev) = setup(lazy);
        let list: Vec<SgEntry> = (0..16)
            .map(|_| SgEntry {
                phys: mem.alloc_pages(4096, 4096).unwrap().0,
                len: 4096,
            })
            .collect();
        ThreadCpuId::set_current(0);
        group.bench_function(mode, |b| {
            b.iter(|| {
                let m = dev
                    .map_sg(&list, DmaDirection::Bidirectional, DmaAttrs::default())
                    .unwrap();
                dev.unmap_sg(m, DmaAttrs::default()).unwrap();
            })
        });
        dev.cookie().flush_queue_timer().unwrap();
    }
    group.finish();
}

fn bench_map_sg(c: &mut Criterion) {
    run_map_sg(c, "smmu/map_sg_64k_16seg", setup_smmu);
    run_map_sg(c, "mock/map_sg_64k_16seg", setup);
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_map_page, bench_map_sg
}
criterion_main!(benches);
