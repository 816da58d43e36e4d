//! The modelled hardware cost table (ARCHITECTURE.md, "Time and determinism").
//!
//! Hardware work is counted as events by the SMMU model (MMIO accesses, commands
//! consumed, CMD_SYNCs, descriptor reads of table walks, configuration fetches, fault
//! records). The simulator prices those counts with this table to give a *modelled*
//! hardware time next to the *measured* software time. The defaults are round,
//! order-of-magnitude assumptions for a server-class SoC, not measurements of any
//! part; load a JSON file with `iommu simulate --cost-table FILE` to use other numbers:
//!
//! | event | default | reasoning |
//! |---|---|---|
//! | `mmio_read_ns` | 300 | non-posted read across the interconnect to the SMMU |
//! | `mmio_write_ns` | 50 | posted write |
//! | `command_ns` | 20 | one 16-byte command fetched and decoded |
//! | `cmd_sync_ns` | 600 | completion: drain of earlier invalidations plus the poll |
//! | `descriptor_read_ns` | 90 | one table-walk descriptor read from DRAM |
//! | `config_fetch_ns` | 150 | one STE or CD fetched on a configuration-cache miss |
//! | `tlb_hit_ns` | 2 | TLB or ATC lookup that hits |
//! | `event_ns` | 200 | an event record written to the event queue |

use crate::metrics::HwCounters;
use serde::{Deserialize, Serialize};

/// Price of each counted hardware event, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CostTable {
    /// One MMIO register read.
    pub mmio_read_ns: u64,
    /// One MMIO register write.
    pub mmio_write_ns: u64,
    /// One command consumed from the command queue (CMD_SYNC included).
    pub command_ns: u64,
    /// Extra completion cost of one CMD_SYNC.
    pub cmd_sync_ns: u64,
    /// One descriptor read by a table walk.
    pub descriptor_read_ns: u64,
    /// One STE or CD fetched on a configuration-cache miss.
    pub config_fetch_ns: u64,
    /// One TLB or ATC hit.
    pub tlb_hit_ns: u64,
    /// One event record written.
    pub event_ns: u64,
}

impl Default for CostTable {
    fn default() -> Self {
        Self {
            mmio_read_ns: 300,
            mmio_write_ns: 50,
            command_ns: 20,
            cmd_sync_ns: 600,
            descriptor_read_ns: 90,
            config_fetch_ns: 150,
            tlb_hit_ns: 2,
            event_ns: 200,
        }
    }
}

impl CostTable {
    /// Modelled hardware time of `c`, in nanoseconds (saturating).
    pub fn price(&self, c: &HwCounters) -> u64 {
        let terms = [
            (c.mmio_reads, self.mmio_read_ns),
            (c.mmio_writes, self.mmio_write_ns),
            (c.commands.values().sum::<u64>(), self.command_ns),
            (c.cmd_syncs, self.cmd_sync_ns),
            (c.walk_reads, self.descriptor_read_ns),
            (
                c.ste_cache.misses.saturating_add(c.cd_cache.misses),
                self.config_fetch_ns,
            ),
            (c.tlb.hits.saturating_add(c.atc.hits), self.tlb_hit_ns),
            (c.events_recorded, self.event_ns),
        ];
        terms
            .iter()
            .fold(0u64, |acc, (n, p)| acc.saturating_add(n.saturating_mul(*p)))
    }

    /// Parse a table from JSON; missing fields keep their defaults, unknown ones are
    /// an error.
    pub fn from_json(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| format!("cost table: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_each_event_class() {
        let t = CostTable::default();
        let mut c = HwCounters::default();
        assert_eq!(t.price(&c), 0);
        c.mmio_reads = 2;
        c.mmio_writes = 3;
        c.commands.insert("CMD_SYNC".into(), 1);
        c.commands.insert("TLBI_NH_VA".into(), 4);
        c.cmd_syncs = 1;
        c.walk_reads = 3;
        c.ste_cache.misses = 1;
        c.cd_cache.misses = 1;
        c.tlb.hits = 10;
        c.events_recorded = 1;
        let want = 2 * 300 + 3 * 50 + 5 * 20 + 600 + 3 * 90 + 2 * 150 + 10 * 2 + 200;
        assert_eq!(t.price(&c), want);
    }

    #[test]
    fn json_overrides_and_rejects_unknown_fields() {
        let t = CostTable::from_json(r#"{"cmd_sync_ns": 5}"#).expect("valid");
        assert_eq!(t.cmd_sync_ns, 5);
        assert_eq!(t.mmio_read_ns, CostTable::default().mmio_read_ns);
        assert!(CostTable::from_json(r#"{"cmd_sink_ns": 5}"#).is_err());
        assert!(CostTable::from_json("nope").is_err());
    }
}
