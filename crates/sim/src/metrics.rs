//! What a simulation run measures (issue 7, "Oracles and metrics"): real-time
//! throughput, DMA bytes, the SMMU model's counters and cache hit rates, the modelled
//! hardware cost, the oracle's stale-window and malicious-access results, exposure,
//! allocator statistics and page-table memory.

use crate::stats::{Log2Histogram, Summary, hit_rate};
use serde::Serialize;
use std::collections::BTreeMap;

/// Hits and misses of one cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HitMissCount {
    /// Lookups that hit.
    pub hits: u64,
    /// Lookups that missed.
    pub misses: u64,
}

impl HitMissCount {
    /// Hit rate, `None` without lookups.
    pub fn rate(&self) -> Option<f64> {
        hit_rate(self.hits, self.misses)
    }

    /// `self − earlier`, for counters sampled before and after a phase.
    pub fn since(&self, earlier: &HitMissCount) -> HitMissCount {
        HitMissCount {
            hits: self.hits.saturating_sub(earlier.hits),
            misses: self.misses.saturating_sub(earlier.misses),
        }
    }
}

/// Hardware event counts of one run, summed over the platform's SMMUs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HwCounters {
    /// MMIO register reads.
    pub mmio_reads: u64,
    /// MMIO register writes.
    pub mmio_writes: u64,
    /// Commands consumed, by opcode name (`CMD_SYNC`, `TLBI_NH_VA`, ...).
    pub commands: BTreeMap<String, u64>,
    /// CMD_SYNCs completed.
    pub cmd_syncs: u64,
    /// Command errors raised.
    pub command_errors: u64,
    /// Translations requested by devices.
    pub translations: u64,
    /// Terminated transactions.
    pub faults: u64,
    /// Event records written.
    pub events_recorded: u64,
    /// Event records lost.
    pub events_dropped: u64,
    /// Descriptors read by table walks.
    pub walk_reads: u64,
    /// TLB.
    pub tlb: HitMissCount,
    /// Walk cache.
    pub walk_cache: HitMissCount,
    /// STE cache.
    pub ste_cache: HitMissCount,
    /// CD cache.
    pub cd_cache: HitMissCount,
    /// ATC.
    pub atc: HitMissCount,
}

impl HwCounters {
    /// Add another SMMU's counters.
    pub fn merge(&mut self, o: &HwCounters) {
        self.mmio_reads += o.mmio_reads;
        self.mmio_writes += o.mmio_writes;
        for (k, v) in &o.commands {
            *self.commands.entry(k.clone()).or_default() += v;
        }
        self.cmd_syncs += o.cmd_syncs;
        self.command_errors += o.command_errors;
        self.translations += o.translations;
        self.faults += o.faults;
        self.events_recorded += o.events_recorded;
        self.events_dropped += o.events_dropped;
        self.walk_reads += o.walk_reads;
        for (a, b) in [
            (&mut self.tlb, &o.tlb),
            (&mut self.walk_cache, &o.walk_cache),
            (&mut self.ste_cache, &o.ste_cache),
            (&mut self.cd_cache, &o.cd_cache),
            (&mut self.atc, &o.atc),
        ] {
            a.hits += b.hits;
            a.misses += b.misses;
        }
    }

    /// A counter by the name scenarios use (`expect counter NAME ...`): a command
    /// opcode name, or one of `cmd-syncs`, `commands`, `command-errors`, `mmio-reads`,
    /// `mmio-writes`, `translations`, `faults`, `events`, `events-dropped`,
    /// `walk-reads`, `tlb-hits`, `tlb-misses`, `walk-cache-hits`, `walk-cache-misses`,
    /// `ste-cache-hits`, `ste-cache-misses`, `cd-cache-hits`, `cd-cache-misses`,
    /// `atc-hits`, `atc-misses`. Unknown opcode names read as 0 if they look like
    /// an opcode (upper case), otherwise `None`.
    pub fn get(&self, name: &str) -> Option<u64> {
        Some(match name {
            "cmd-syncs" => self.cmd_syncs,
            "commands" => self.commands.values().sum(),
            "command-errors" => self.command_errors,
            "mmio-reads" => self.mmio_reads,
            "mmio-writes" => self.mmio_writes,
            "translations" => self.translations,
            "faults" => self.faults,
            "events" => self.events_recorded,
            "events-dropped" => self.events_dropped,
            "walk-reads" => self.walk_reads,
            "tlb-hits" => self.tlb.hits,
            "tlb-misses" => self.tlb.misses,
            "walk-cache-hits" => self.walk_cache.hits,
            "walk-cache-misses" => self.walk_cache.misses,
            "ste-cache-hits" => self.ste_cache.hits,
            "ste-cache-misses" => self.ste_cache.misses,
            "cd-cache-hits" => self.cd_cache.hits,
            "cd-cache-misses" => self.cd_cache.misses,
            "atc-hits" => self.atc.hits,
            "atc-misses" => self.atc.misses,
            op if op.starts_with("CMD_")
                || op.starts_with("TLBI_")
                || op.starts_with("CFGI_")
                || op.starts_with("ATC_") =>
            {
                self.commands.get(op).copied().unwrap_or(0)
            }
            _ => return None,
        })
    }
}

/// Stale-translation windows observed by the oracle.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StaleStats {
    /// One sample per successful access through a stale entry: ns since the unmap.
    pub windows_ns: Summary,
    /// Distribution of those samples.
    pub histogram: Log2Histogram,
}

/// Malicious-device results.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MaliciousStats {
    /// Accesses outside what the device was given (replays after unmap, probes next
    /// to its buffers).
    pub attempts: u64,
    /// Of those, accesses the SMMU let through.
    pub successes: u64,
    /// Successful replays that reached a buffer since given to someone else.
    pub misdirected: u64,
    /// Replays the malicious device issued on purpose (IOVAs it was given, after
    /// their unmap), counted by the device model itself, independently of the oracle.
    pub replays: u64,
    /// Of those, the ones the SMMU let through.
    pub replay_successes: u64,
}

/// Everything one run reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RunMetrics {
    /// Workload name.
    pub workload: String,
    /// Policy name.
    pub policy: String,
    /// IOMMU granule.
    pub granule: u64,
    /// CPU page size.
    pub cpu_page: u64,
    /// Simulated CPUs (OS threads).
    pub cpus: u32,
    /// Seed.
    pub seed: u64,
    /// DMA API operations performed (map + unmap + alloc + free).
    pub ops: u64,
    /// Wall-clock duration (not part of the deterministic metrics).
    pub real_ns: u64,
    /// Operations per real second.
    pub ops_per_sec: f64,
    /// Bytes moved by device DMA.
    pub dma_bytes: u64,
    /// SMMU model counters.
    pub hw: HwCounters,
    /// Modelled hardware time of `hw` (cost table).
    pub modelled_hw_ns: u64,
    /// Map latency, real ns.
    pub map_latency_ns: Summary,
    /// Map latency distribution.
    pub map_latency_hist: Log2Histogram,
    /// Unmap latency, real ns.
    pub unmap_latency_ns: Summary,
    /// Unmap latency distribution.
    pub unmap_latency_hist: Log2Histogram,
    /// Stale windows (virtual ns).
    pub stale: StaleStats,
    /// Malicious device.
    pub malicious: MaliciousStats,
    /// Bytes reachable by devices beyond their buffers (and not zero-filled).
    pub exposed_bytes: u64,
    /// IOVA allocator and flush-queue statistics, by name.
    pub iova: BTreeMap<String, u64>,
    /// Bytes of page-table memory at the end of the run.
    pub pgtable_bytes: u64,
    /// DMA API calls that failed (a workload never expects one).
    pub dma_api_errors: u64,
    /// Accesses to memory a device held that the SMMU refused (a stack bug).
    pub wrongly_blocked: u64,
    /// Reports of the SMMU models' architectural sanitizer (run in debug builds,
    /// i.e. tests; 0 when it is off).
    pub sanitizer_reports: u64,
}

impl RunMetrics {
    /// The metrics that must be identical for two runs with the same seed (everything
    /// except real-time measurements), as JSON.
    pub fn deterministic_view(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let Some(o) = v.as_object_mut() {
            for k in [
                "real_ns",
                "ops_per_sec",
                "map_latency_ns",
                "map_latency_hist",
                "unmap_latency_ns",
                "unmap_latency_hist",
            ] {
                o.remove(k);
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_by_name_and_merge() {
        let mut a = HwCounters::default();
        a.commands.insert("CMD_SYNC".into(), 2);
        a.tlb = HitMissCount { hits: 3, misses: 1 };
        let mut b = a.clone();
        b.commands.insert("TLBI_NH_ASID".into(), 1);
        a.merge(&b);
        assert_eq!(a.get("CMD_SYNC"), Some(4));
        assert_eq!(a.get("TLBI_NH_ASID"), Some(1));
        assert_eq!(a.get("CFGI_STE"), Some(0));
        assert_eq!(a.get("commands"), Some(5));
        assert_eq!(a.get("tlb-hits"), Some(6));
        assert_eq!(a.get("bogus"), None);
        assert_eq!(a.tlb.rate(), Some(0.75));
    }

    #[test]
    fn deterministic_view_drops_real_time() {
        let m = RunMetrics {
            real_ns: 5,
            ops: 3,
            ..Default::default()
        };
        let v = m.deterministic_view();
        assert!(v.get("real_ns").is_none());
        assert_eq!(v["ops"], 3);
    }
}
