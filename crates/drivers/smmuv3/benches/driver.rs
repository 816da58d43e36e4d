//! Driver benchmarks against the model (issue 4 "Performance"):
//! * map + unmap + iotlb_sync of one 4 KiB page in strict mode (the TLBI and
//!   CMD_SYNC are built, submitted and consumed by the model);
//! * commands per second through the queue from 1 and 2 threads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use io_pgtable::IotlbGather;
use iommu_core::PagingDomainOps;
use iommu_memory::SimMemory;
use iommu_types::{Iova, Mmio, PhysMem, Prot};
use smmuv3::cmd::Cmd;
use smmuv3::domain::{DomainStage, SmmuDomain};
use smmuv3::{DriverConfig, Smmu, SyncPref};
use smmuv3_model::{Smmu as Model, SmmuConfig};

fn rig(sync: SyncPref) -> (Arc<SimMemory>, Arc<Model>, Arc<Smmu>) {
    let mem = Arc::new(SimMemory::new());
    // The sanitizer re-reads watched structures on every command: off for timing.
    let hw = Arc::new(Model::new(
        SmmuConfig::builder().sanitizer(false).cmdq_log2(10).build(),
        mem.clone() as Arc<dyn PhysMem>,
    ));
    let cfg = DriverConfig {
        sync,
        cmdq_log2: 10,
        asids: Some(Arc::new(smmuv3::ids::IdAllocator::new("ASID", 16))),
        ..Default::default()
    };
    let drv = Smmu::probe(
        hw.clone() as Arc<dyn Mmio>,
        mem.clone() as Arc<dyn PhysMem>,
        cfg,
    )
    .unwrap();
    (mem, hw, drv)
}

fn map_unmap_sync(c: &mut Criterion) {
    let mut g = c.benchmark_group("strict_4k");
    for sync in [SyncPref::Msi, SyncPref::PollCons] {
        let (mem, hw, drv) = rig(sync);
        drv.probe_stream(1, false).unwrap();
        let d = SmmuDomain::new(&drv, DomainStage::S1, 0x1000, false).unwrap();
        d.attach_sids(&[1], false).unwrap();
        let pa = mem.alloc_pages(0x1000, 0x1000).unwrap();
        // Keep the intermediate tables alive (a neighbour page stays mapped).
        d.map_pages(Iova(0x10_1000), pa, 0x1000, 1, Prot::RW)
            .1
            .unwrap();
        // One round must reach the hardware: a TLBI by VA and a CMD_SYNC consumed.
        let before = hw.stats();
        d.map_pages(Iova(0x10_0000), pa, 0x1000, 1, Prot::RW)
            .1
            .unwrap();
        let mut gather = IotlbGather::new();
        d.unmap_pages(Iova(0x10_0000), 0x1000, 1, &mut gather);
        d.iotlb_sync(&mut gather).unwrap();
        let after = hw.stats();
        let va = smmuv3::cmd::op::TLBI_NH_VA as usize;
        assert_eq!(after.commands[va] - before.commands[va], 1);
        assert_eq!(after.syncs - before.syncs, 1);
        g.bench_function(format!("map_unmap_sync_{sync:?}"), |b| {
            b.iter(|| {
                d.map_pages(Iova(0x10_0000), pa, 0x1000, 1, Prot::RW)
                    .1
                    .unwrap();
                let mut gather = IotlbGather::new();
                d.unmap_pages(Iova(0x10_0000), 0x1000, 1, &mut gather);
                d.iotlb_sync(&mut gather).unwrap();
            })
        });
    }
    g.finish();
}

const BATCH: usize = 32;

fn run_threads(drv: &Arc<Smmu>, threads: usize, batches_per_thread: u64) -> Duration {
    let cmds: Vec<Cmd> = (0..BATCH as u16)
        .map(|i| Cmd::TlbiNhAsid {
            vmid: 0,
            asid: i + 1,
        })
        .collect();
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let d = drv.clone();
            let cmds = &cmds;
            s.spawn(move || {
                for _ in 0..batches_per_thread {
                    d.submit(cmds).unwrap();
                }
            });
        }
    });
    start.elapsed()
}

fn cmdq_throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("cmdq");
    let (_mem, _hw, drv) = rig(SyncPref::Msi);
    for threads in [1usize, 2] {
        // Elements = commands (each batch: BATCH commands + one CMD_SYNC).
        g.throughput(Throughput::Elements((BATCH * threads) as u64));
        g.bench_function(format!("batch{BATCH}_threads{threads}"), |b| {
            b.iter_custom(|iters| run_threads(&drv, threads, iters))
        });
    }
    g.finish();
}

criterion_group!(benches, map_unmap_sync, cmdq_throughput);
criterion_main!(benches);
