//! Reserved-region queries of the core: per device, per group (merged), the
//! ranges a DMA-API domain keeps out of its allocator, and the sysfs
//! `reserved_regions` file (reference `software.md` §6.6).

use alloc::vec::Vec;

use super::IommuCore;
use crate::device::{DeviceId, GroupId};
use crate::error::{Error, Result};
use crate::resv::{DmaResvAction, ReservedRegion};

impl IommuCore {
    /// A device's reserved regions, as the driver reported them at probe.
    pub fn device_resv_regions(&self, dev: DeviceId) -> Result<Vec<ReservedRegion>> {
        let (g, _) = self.group_of(dev)?;
        let gs = Self::live(&g)?;
        let i = gs
            .find(dev)
            .ok_or(Error::NoDevice("device left its group"))?;
        Ok(gs.devices[i].resv.clone())
    }

    /// The union of the group's reserved regions, sorted by start (the sysfs
    /// `reserved_regions` file; overlapping regions of the same kind are merged).
    pub fn group_resv_regions(&self, group: GroupId) -> Result<Vec<ReservedRegion>> {
        let g = self.group(group)?;
        let gs = Self::live(&g)?;
        let mut all: Vec<ReservedRegion> = gs
            .devices
            .iter()
            .flat_map(|d| d.resv.iter().copied())
            .collect();
        all.sort_by_key(|r| (r.start, r.last()));
        let mut out: Vec<ReservedRegion> = Vec::new();
        for r in all {
            if let Some(last) = out.last_mut() {
                if last.kind == r.kind && r.start <= last.last().saturating_add(1) {
                    let (prev_end, end) = (last.last(), last.last().max(r.last()));
                    match (end - last.start).checked_add(1) {
                        Some(length) => last.length = length,
                        // All 2^64 bytes: (start, length) cannot say it, so the
                        // tail past the previous end stays a region of its own.
                        None => out.push(ReservedRegion {
                            start: prev_end + 1,
                            length: end - prev_end,
                            ..r
                        }),
                    }
                    continue;
                }
            }
            out.push(r);
        }
        Ok(out)
    }

    /// The IOVA ranges `(start, last)` (inclusive, sorted, merged) a DMA-API domain of
    /// the group must keep out of its IOVA allocator: RESERVED and MSI windows, and
    /// the identity-mapped DIRECT / DIRECT_RELAXABLE windows (rounded out to
    /// `granule`, a power of two). SW-MSI is not included: it is mapped on demand.
    pub fn group_dma_reserved_ranges(
        &self,
        group: GroupId,
        granule: u64,
    ) -> Result<Vec<(u64, u64)>> {
        if !granule.is_power_of_two() {
            return Err(Error::Invalid("granule must be a power of two"));
        }
        let mut v: Vec<(u64, u64)> = self
            .group_resv_regions(group)?
            .iter()
            .filter(|r| r.kind.dma_action() != DmaResvAction::OnDemand)
            .map(|r| (r.start & !(granule - 1), r.last() | (granule - 1)))
            .collect();
        v.sort_unstable();
        let mut out: Vec<(u64, u64)> = Vec::new();
        for (s, e) in v {
            match out.last_mut() {
                Some(last) if s <= last.1.saturating_add(1) => last.1 = last.1.max(e),
                _ => out.push((s, e)),
            }
        }
        Ok(out)
    }

    /// The sysfs `reserved_regions` file: one `0x<start> 0x<end> <type>` line per
    /// region (16 hex digits, inclusive end).
    pub fn group_resv_regions_sysfs(&self, group: GroupId) -> Result<alloc::string::String> {
        use core::fmt::Write;
        let mut s = alloc::string::String::new();
        for r in self.group_resv_regions(group)? {
            let _ = writeln!(
                s,
                "0x{:016x} 0x{:016x} {}",
                r.start,
                r.last(),
                r.kind.sysfs_name()
            );
        }
        Ok(s)
    }
}
