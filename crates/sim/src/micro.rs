//! Micro benchmarks for `iommu bench`: real-time ns/op of the hot paths of the layers
//! below the simulator and of the whole stack (DMA API through driver to model), measured with `std::time::Instant` on this machine (the
//! criterion benchmarks of each crate are the reference figures; these are a quick
//! look from the command line).

use crate::platform::Platform;
use crate::scenario::{self, DeviceDecl, Policy, SmmuDecl};
use iommu_dma::{DmaAttrs, DmaDirection};
use iommu_memory::SimMemory;
use iommu_types::{Iova, PhysAddr, PhysMem, Prot};
use serde::Serialize;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One benchmark's result.
#[derive(Clone, Debug, Serialize)]
pub struct MicroResult {
    /// What was measured.
    pub name: String,
    /// Mean real time per operation.
    pub ns_per_op: f64,
    /// Operations timed.
    pub iterations: u64,
}

/// The machine the figures come from.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// CPU model (from `/proc/cpuinfo` where available).
    pub cpu: String,
    /// Logical CPUs available to this process.
    pub logical_cpus: usize,
    /// `os-arch`.
    pub platform: String,
    /// Whether this binary was built with optimizations.
    pub optimized: bool,
}

impl Machine {
    /// Describe the current machine.
    pub fn current() -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        Self {
            cpu,
            logical_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            platform: format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
            optimized: !cfg!(debug_assertions),
        }
    }
}

/// Time `op` in batches until `budget` has passed; `op(i)` does one operation.
pub fn measure(name: &str, budget: Duration, mut op: impl FnMut(u64)) -> MicroResult {
    // Warm up.
    for i in 0..16 {
        op(i);
    }
    let mut iterations = 0u64;
    let mut batch = 64u64;
    let start = Instant::now();
    loop {
        for i in 0..batch {
            op(iterations + i);
        }
        iterations += batch;
        let el = start.elapsed();
        if el >= budget {
            return MicroResult {
                name: name.into(),
                ns_per_op: el.as_nanos() as f64 / iterations as f64,
                iterations,
            };
        }
        batch = (batch * 2).min(1 << 16);
    }
}

/// Run every micro benchmark, each for about `budget`.
pub fn run_all(budget: Duration) -> Vec<MicroResult> {
    let mut out = Vec::new();
    let mem = Arc::new(SimMemory::new());
    let buf = mem.alloc_pages(1 << 20, 4096).unwrap_or(PhysAddr(0));
    out.push(measure("memory: read_u64", budget, |i| {
        black_box(mem.read_u64(PhysAddr(buf.0 + (i & 0x1fff) * 8)).ok());
    }));
    out.push(measure("memory: write_u64", budget, |i| {
        black_box(mem.write_u64(PhysAddr(buf.0 + (i & 0x1fff) * 8), i).ok());
    }));
    out.push(measure("memory: write 2 KiB buffer", budget, |i| {
        let data = [i as u8; 2048];
        black_box(
            mem.write_bytes(PhysAddr(buf.0 + (i & 0xff) * 2048), &data)
                .ok(),
        );
    }));

    if let Ok(iovad) = iommu_iova::IovaDomain::new(4096, 1) {
        let limit = (1u64 << 32) >> 12;
        out.push(measure(
            "iova: alloc_iova_fast + free_iova_fast (1 page)",
            budget,
            |_| {
                if let Ok(pfn) = iovad.alloc_iova_fast(1, limit, true) {
                    black_box(iovad.free_iova_fast(pfn, 1).ok());
                }
            },
        ));
    }

    let cfg = io_pgtable::LpaeConfig::new(io_pgtable::Stage::S1, io_pgtable::Granule::G4K, 48, 48);
    if let Ok(table) = io_pgtable::LpaeTable::new(cfg, mem.clone(), Arc::new(io_pgtable::NoFlush)) {
        let pa = buf.0;
        out.push(measure(
            "io-pgtable: map 4 KiB + unmap (LPAE S1 4K)",
            budget,
            |i| {
                let iova = Iova(0x1000_0000 + (i & 0xff) * 4096);
                let (_, r) = table.map(iova, PhysAddr(pa), 4096, 1, Prot::RW);
                black_box(r.ok());
                let mut g = io_pgtable::IotlbGather::default();
                black_box(table.unmap(iova, 4096, 1, &mut g));
            },
        ));
        let _ = table.map(Iova(0x2000_0000), PhysAddr(pa), 4096, 1, Prot::RW);
        out.push(measure(
            "io-pgtable: iova_to_phys (4-level walk)",
            budget,
            |_| {
                black_box(table.translate(Iova(0x2000_0000)));
            },
        ));
    }

    for (policy, label) in [(Policy::Strict, "strict"), (Policy::Lazy, "lazy")] {
        let Ok(p) = bench_platform(policy) else {
            continue;
        };
        let Some(dma) = p.devices[0].dma.clone() else {
            continue;
        };
        let Ok(buf) = p.mem.alloc_pages(4096, 4096) else {
            continue;
        };
        out.push(measure(
            &format!("full stack: dma_map_page + dma_unmap_page 2 KiB ({label})"),
            budget,
            |_| {
                if let Ok(iova) =
                    dma.map_page(buf, 2048, DmaDirection::Bidirectional, DmaAttrs::default())
                {
                    black_box(
                        dma.unmap_page(
                            iova,
                            2048,
                            DmaDirection::Bidirectional,
                            DmaAttrs::default(),
                        )
                        .ok(),
                    );
                }
            },
        ));
        if policy == Policy::Strict {
            if let Ok(iova) =
                dma.map_page(buf, 4096, DmaDirection::Bidirectional, DmaAttrs::default())
            {
                let hw = p.smmus[0].hw.clone();
                let _ = hw.translate(0x10, None, iova, smmuv3_model::Access::READ);
                out.push(measure("SMMU model: translate (TLB hit)", budget, |_| {
                    black_box(
                        hw.translate(0x10, None, iova, smmuv3_model::Access::READ)
                            .is_ok(),
                    );
                }));
                let mut data = [0u8; 64];
                out.push(measure(
                    "SMMU model: 64-byte device read through the SMMU",
                    budget,
                    |_| {
                        black_box(p.dma_read(0, iova, &mut data).is_ok());
                    },
                ));
            }
        }
    }

    let line = "rx = map nic size=2k dir=from-device";
    out.push(measure("scenario: parse one statement", budget, |_| {
        black_box(scenario::parse("bench", line).is_ok());
    }));
    out
}

fn bench_platform(policy: Policy) -> crate::Result<Platform> {
    let smmu = SmmuDecl::bounded("smmu0", 4096);
    let dev = DeviceDecl::new("dev", 0x10, "smmu0");
    Platform::new(4096, policy, 1, &[smmu], &[dev], false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measure_counts_iterations_and_time() {
        let mut n = 0u64;
        let r = measure("x", Duration::from_millis(5), |_| n += 1);
        assert_eq!(n, r.iterations + 16);
        assert!(r.ns_per_op > 0.0);
    }

    #[test]
    fn every_benchmark_runs() {
        let r = run_all(Duration::from_millis(2));
        assert!(r.len() >= 11, "{r:?}");
        assert!(
            r.iter()
                .any(|m| m.name.contains("full stack") && m.name.contains("lazy"))
        );
        assert!(
            r.iter()
                .all(|m| m.iterations > 0 && m.ns_per_op.is_finite())
        );
        let m = Machine::current();
        assert!(m.logical_cpus >= 1);
    }
}
