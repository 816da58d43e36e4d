//! `iommu bench map`: a mirror of Linux's `dma_map_benchmark` (reference
//! `software.md` §4.7). Threads map and unmap a `granule × PAGE_SIZE` buffer in a
//! loop, optionally waiting `dma_trans_ns` between the two to imitate a transfer, and
//! report the average map and unmap latency with their standard deviations, computed
//! like the kernel: integer samples in **100 ns units**, mean and
//! `isqrt(E[x²] − mean²)`; the user tool prints them divided by 10, in µs.

use crate::error::{Error, Result};
use crate::scenario::Dir;
use crate::stats::Summary;
use serde::Serialize;

/// Inputs, with the kernel's names and limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MapBenchConfig {
    /// Threads (1..=1024).
    pub threads: u32,
    /// Seconds (1..=300).
    pub seconds: u32,
    /// NUMA node, −1 for any; ignored (the simulator has no NUMA).
    pub node: i32,
    /// DMA mask bits (20..=64 in the user tool).
    pub dma_bits: u32,
    /// Direction: 0 BIDIR, 1 TO_DEVICE, 2 FROM_DEVICE.
    pub dma_dir: u32,
    /// Delay between map and unmap, ns (≤ 10 ms).
    pub dma_trans_ns: u32,
    /// Pages per map (1..=1024).
    pub granule: u32,
    /// Lazy (flush queue) rather than strict.
    pub lazy: bool,
}

impl Default for MapBenchConfig {
    fn default() -> Self {
        Self {
            threads: 1,
            seconds: 20,
            node: -1,
            dma_bits: 32,
            dma_dir: 0,
            dma_trans_ns: 0,
            granule: 1,
            lazy: false,
        }
    }
}

impl MapBenchConfig {
    /// The kernel's and the user tool's checks, with their messages' meaning.
    pub fn validate(&self) -> Result<()> {
        let err = |m: String| Err(Error::Config(m));
        if !(1..=1024).contains(&self.threads) {
            return err(format!(
                "invalid thread number {}: must be 1..=1024",
                self.threads
            ));
        }
        if !(1..=300).contains(&self.seconds) {
            return err(format!(
                "invalid duration {}: seconds must be 1..=300",
                self.seconds
            ));
        }
        if self.node < -1 {
            return err(format!("invalid numa node {}", self.node));
        }
        if !(20..=64).contains(&self.dma_bits) {
            return err(format!(
                "invalid dma mask bit {}: must be 20..=64",
                self.dma_bits
            ));
        }
        if self.dma_dir > 2 {
            return err(format!(
                "invalid dma direction {}: 0 BIDIR, 1 TO_DEVICE, 2 FROM_DEVICE",
                self.dma_dir
            ));
        }
        if self.dma_trans_ns > 10_000_000 {
            return err(format!(
                "invalid transmit delay {} ns: at most 10 ms",
                self.dma_trans_ns
            ));
        }
        if !(1..=1024).contains(&self.granule) {
            return err(format!(
                "invalid granule size {}: must be 1..=1024 pages",
                self.granule
            ));
        }
        Ok(())
    }

    /// The direction as the DMA API's.
    pub fn dir(&self) -> Dir {
        match self.dma_dir {
            1 => Dir::ToDevice,
            2 => Dir::FromDevice,
            _ => Dir::Bidirectional,
        }
    }
}

/// Outputs, in the kernel struct's 100 ns units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MapBenchResult {
    /// Mean map latency, 100 ns units.
    pub avg_map_100ns: u64,
    /// Standard deviation of map latency, 100 ns units.
    pub map_stddev: u64,
    /// Mean unmap latency, 100 ns units.
    pub avg_unmap_100ns: u64,
    /// Standard deviation of unmap latency, 100 ns units.
    pub unmap_stddev: u64,
    /// Map/unmap pairs measured (all threads).
    pub loops: u64,
}

impl MapBenchResult {
    /// From per-sample sums that were accumulated in 100 ns units.
    pub fn from_summaries(map: &Summary, unmap: &Summary) -> Self {
        Self {
            avg_map_100ns: map.mean(),
            map_stddev: map.stddev(),
            avg_unmap_100ns: unmap.mean(),
            unmap_stddev: unmap.stddev(),
            loops: map.count,
        }
    }

    /// The user tool's two result lines (µs with one decimal).
    pub fn render(&self) -> String {
        format!(
            "average map latency(us):{:.1} standard deviation:{:.1}\naverage unmap latency(us):{:.1} standard deviation:{:.1}\n",
            self.avg_map_100ns as f64 / 10.0,
            self.map_stddev as f64 / 10.0,
            self.avg_unmap_100ns as f64 / 10.0,
            self.unmap_stddev as f64 / 10.0
        )
    }
}

/// Run the benchmark on a fresh platform: one SMMUv3 (4 KiB granule, 4 KiB CPU
/// pages), one trusted device with a `dma_bits` mask, `threads` OS threads each
/// mapping and unmapping its own `granule × 4 KiB` buffer for `seconds`.
pub fn map_bench(cfg: &MapBenchConfig) -> Result<MapBenchResult> {
    use crate::platform::Platform;
    use crate::scenario::{DeviceDecl, Policy, SmmuDecl};
    use iommu_dma::{DmaAttrs, DmaDirection};
    use iommu_types::{PhysMem, ThreadCpuId};
    use std::time::{Duration, Instant};

    cfg.validate()?;
    const PAGE: u64 = 4096;
    let smmu = SmmuDecl::bounded("smmu0", PAGE);
    let dev = DeviceDecl {
        dma_bits: cfg.dma_bits,
        ..DeviceDecl::new("bench", 0x10, "smmu0")
    };
    let policy = if cfg.lazy {
        Policy::Lazy
    } else {
        Policy::Strict
    };
    let p = Platform::new(PAGE, policy, cfg.threads, &[smmu], &[dev], false)?;
    let dma = p.devices[0]
        .dma
        .clone()
        .ok_or_else(|| Error::Platform("benchmark device has no DMA API".into()))?;
    let dir = DmaDirection::from(cfg.dir());
    let len = u64::from(cfg.granule) * PAGE;
    let stop = Instant::now() + Duration::from_secs(u64::from(cfg.seconds));
    let results: Vec<core::result::Result<(Summary, Summary), String>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..cfg.threads as usize)
            .map(|cpu| {
                let (p, dma) = (&p, dma.clone());
                s.spawn(move || {
                    ThreadCpuId::set_current(cpu);
                    let buf = p.mem.alloc_pages(len, PAGE).map_err(|e| e.to_string())?;
                    let (mut map, mut unmap) = (Summary::default(), Summary::default());
                    while Instant::now() < stop {
                        if dir != DmaDirection::FromDevice {
                            let _ = p.mem.fill_bytes(buf, len, 0x66);
                        }
                        let t0 = Instant::now();
                        let iova = dma
                            .map_page(buf, len, dir, DmaAttrs::default())
                            .map_err(|e| format!("dma_map_single failed: {e}"))?;
                        map.add(to_100ns(t0.elapsed().as_nanos() as u64));
                        let wait = Instant::now();
                        while (wait.elapsed().as_nanos() as u64) < u64::from(cfg.dma_trans_ns) {
                            core::hint::spin_loop();
                        }
                        let t1 = Instant::now();
                        dma.unmap_page(iova, len, dir, DmaAttrs::default())
                            .map_err(|e| format!("dma_unmap_single failed: {e}"))?;
                        unmap.add(to_100ns(t1.elapsed().as_nanos() as u64));
                        p.poll_timers();
                    }
                    Ok((map, unmap))
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into())))
            .collect()
    });
    let (mut map, mut unmap) = (Summary::default(), Summary::default());
    for r in results {
        let (m, u) = r.map_err(Error::Platform)?;
        map.merge(&m);
        unmap.merge(&u);
    }
    Ok(MapBenchResult::from_summaries(&map, &unmap))
}

/// A nanosecond measurement as the kernel records it: whole 100 ns units.
pub fn to_100ns(ns: u64) -> u64 {
    ns / 100
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_limits() {
        assert!(MapBenchConfig::default().validate().is_ok());
        let d = MapBenchConfig::default();
        for bad in [
            MapBenchConfig { threads: 0, ..d },
            MapBenchConfig { threads: 1025, ..d },
            MapBenchConfig { seconds: 0, ..d },
            MapBenchConfig { seconds: 301, ..d },
            MapBenchConfig { node: -2, ..d },
            MapBenchConfig { dma_bits: 19, ..d },
            MapBenchConfig { dma_bits: 65, ..d },
            MapBenchConfig { dma_dir: 3, ..d },
            MapBenchConfig {
                dma_trans_ns: 10_000_001,
                ..d
            },
            MapBenchConfig { granule: 0, ..d },
            MapBenchConfig { granule: 1025, ..d },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        assert_eq!(MapBenchConfig { dma_dir: 2, ..d }.dir(), Dir::FromDevice);
    }

    #[test]
    fn output_in_microseconds_from_100ns_units() {
        let mut m = Summary::default();
        let mut u = Summary::default();
        for ns in [1_000, 1_099, 3_000] {
            m.add(to_100ns(ns));
        }
        for ns in [250, 250, 250] {
            u.add(to_100ns(ns));
        }
        let r = MapBenchResult::from_summaries(&m, &u);
        // samples 10, 10, 30 → mean 16, E[x²] = 366, var = 366 − 256 = 110, sd = 10.
        assert_eq!(
            (
                r.avg_map_100ns,
                r.map_stddev,
                r.avg_unmap_100ns,
                r.unmap_stddev
            ),
            (16, 10, 2, 0)
        );
        assert_eq!(
            r.render(),
            "average map latency(us):1.6 standard deviation:1.0\naverage unmap latency(us):0.2 standard deviation:0.0\n"
        );
    }
}
