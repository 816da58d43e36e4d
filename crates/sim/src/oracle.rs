//! The access oracle: a shadow of what each device was *given* by the DMA API,
//! independent of the IOMMU stack, that judges every device access the SMMU model let
//! through or stopped (issue 7, "Oracles").
//!
//! The oracle works at IOMMU-granule granularity within an address space (one space
//! per domain: devices in one group share it). A grant is live from the completion of
//! the map until the unmap *returns*; an access that starts after that and still
//! succeeds went through a stale translation, and its **stale window** is the time
//! from the unmap's return to the access. In strict mode the window must be zero (no
//! such access succeeds); in lazy mode it is bounded by the flush-queue timeout.
//! Accesses to pages the device was never given (probes) or that now belong to
//! another device (replays after reuse) are counted as malicious.

use crate::metrics::{MaliciousStats, StaleStats};
use std::collections::BTreeMap;

/// Identifies one grant (one mapping handed to one device).
pub type GrantId = u64;

#[derive(Clone, Copy, Debug)]
struct Live {
    grant: GrantId,
    device: u32,
}

#[derive(Clone, Copy, Debug)]
struct Released {
    device: u32,
    at_ns: u64,
}

/// How the oracle judged one access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within what the device currently holds, and it succeeded.
    Allowed,
    /// Within what the device holds, but the SMMU refused it (a bug of the stack
    /// unless the scenario expects it).
    WronglyBlocked,
    /// Outside what the device holds and refused: the protection worked.
    Blocked,
    /// Succeeded through a stale entry, `window_ns` after the unmap returned.
    Stale {
        /// Time since the unmap returned.
        window_ns: u64,
    },
    /// Succeeded on a page now granted to a different device.
    Misdirected,
    /// Succeeded on a page never granted in this space (a probe).
    Exposed,
}

impl Verdict {
    /// Whether this is an access outside what the device holds that the SMMU let
    /// through (what [`MaliciousStats::successes`] counts).
    pub fn is_malicious_success(self) -> bool {
        matches!(
            self,
            Verdict::Stale { .. } | Verdict::Misdirected | Verdict::Exposed
        )
    }
}

/// The oracle.
#[derive(Debug)]
pub struct Oracle {
    shift: u32,
    next_grant: GrantId,
    live: BTreeMap<(u32, u64), Live>,
    released: BTreeMap<(u32, u64), Released>,
    stale: StaleStats,
    malicious: MaliciousStats,
    wrongly_blocked: u64,
}

impl Oracle {
    /// An oracle for a granule of `granule` bytes (a power of two).
    pub fn new(granule: u64) -> Self {
        Self {
            shift: granule.max(1).trailing_zeros(),
            next_grant: 1,
            live: BTreeMap::new(),
            released: BTreeMap::new(),
            stale: StaleStats::default(),
            malicious: MaliciousStats::default(),
            wrongly_blocked: 0,
        }
    }

    fn pages(&self, iova: u64, len: u64) -> impl Iterator<Item = u64> + use<> {
        let first = iova >> self.shift;
        let last = iova.saturating_add(len.max(1) - 1) >> self.shift;
        first..=last
    }

    /// `device` was given `[iova, iova+len)` in address space `space`.
    pub fn grant(&mut self, space: u32, device: u32, iova: u64, len: u64) -> GrantId {
        let grant = self.next_grant;
        self.next_grant += 1;
        for p in self.pages(iova, len) {
            self.released.remove(&(space, p));
            self.live.insert((space, p), Live { grant, device });
        }
        grant
    }

    /// The unmap of `[iova, iova+len)` returned at `now_ns`.
    pub fn revoke(&mut self, space: u32, iova: u64, len: u64, now_ns: u64) {
        for p in self.pages(iova, len) {
            if let Some(l) = self.live.remove(&(space, p)) {
                self.released.insert(
                    (space, p),
                    Released {
                        device: l.device,
                        at_ns: now_ns,
                    },
                );
            }
        }
    }

    /// Judge an access by `device` of `[iova, iova+len)` that started at `now_ns` and
    /// `succeeded` or not; statistics are updated.
    pub fn access(
        &mut self,
        space: u32,
        device: u32,
        iova: u64,
        len: u64,
        succeeded: bool,
        now_ns: u64,
    ) -> Verdict {
        let mut verdict = Verdict::Allowed;
        for p in self.pages(iova, len) {
            let v = match self.live.get(&(space, p)) {
                Some(l) if l.device == device => continue,
                Some(_) => Verdict::Misdirected,
                None => match self.released.get(&(space, p)) {
                    Some(r) if r.device == device => Verdict::Stale {
                        window_ns: now_ns.saturating_sub(r.at_ns),
                    },
                    _ => Verdict::Exposed,
                },
            };
            verdict = v;
            break;
        }
        if verdict == Verdict::Allowed {
            if !succeeded {
                self.wrongly_blocked += 1;
                return Verdict::WronglyBlocked;
            }
            return Verdict::Allowed;
        }
        self.malicious.attempts += 1;
        if !succeeded {
            return Verdict::Blocked;
        }
        self.malicious.successes += 1;
        match verdict {
            Verdict::Stale { window_ns } => {
                self.stale.windows_ns.add(window_ns);
                self.stale.histogram.add(window_ns);
            }
            Verdict::Misdirected => self.malicious.misdirected += 1,
            _ => {}
        }
        verdict
    }

    /// Stale windows so far.
    pub fn stale(&self) -> &StaleStats {
        &self.stale
    }

    /// Malicious-access counts so far.
    pub fn malicious(&self) -> MaliciousStats {
        self.malicious
    }

    /// Accesses to granted pages that the SMMU refused.
    pub fn wrongly_blocked(&self) -> u64 {
        self.wrongly_blocked
    }

    /// Which device and grant currently hold the page containing `iova`.
    pub fn holder(&self, space: u32, iova: u64) -> Option<(u32, GrantId)> {
        self.live
            .get(&(space, iova >> self.shift))
            .map(|l| (l.device, l.grant))
    }

    /// Pages currently granted.
    pub fn live_pages(&self) -> usize {
        self.live.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_live_pages_are_allowed() {
        let mut o = Oracle::new(4096);
        o.grant(0, 1, 0x1000, 0x2000);
        assert_eq!(o.access(0, 1, 0x1ff0, 0x20, true, 0), Verdict::Allowed);
        assert_eq!(o.access(0, 1, 0x1000, 4, false, 0), Verdict::WronglyBlocked);
        assert_eq!(o.wrongly_blocked(), 1);
        assert_eq!(o.malicious().attempts, 0);
    }

    #[test]
    fn replay_after_unmap_measures_the_window() {
        let mut o = Oracle::new(4096);
        o.grant(0, 1, 0x1000, 0x800);
        o.revoke(0, 0x1000, 0x800, 100);
        assert_eq!(o.access(0, 1, 0x1000, 4, false, 150), Verdict::Blocked);
        assert_eq!(
            o.access(0, 1, 0x1000, 4, true, 1100),
            Verdict::Stale { window_ns: 1000 }
        );
        assert_eq!(
            o.access(0, 1, 0x1000, 4, true, 400),
            Verdict::Stale { window_ns: 300 }
        );
        let m = o.malicious();
        assert_eq!((m.attempts, m.successes), (3, 2));
        assert_eq!(o.stale().windows_ns.max, 1000);
        assert_eq!(o.stale().windows_ns.count, 2);
    }

    #[test]
    fn reuse_by_another_device_is_misdirection_and_spaces_are_separate() {
        let mut o = Oracle::new(4096);
        o.grant(0, 1, 0x1000, 0x1000);
        o.revoke(0, 0x1000, 0x1000, 5);
        o.grant(0, 2, 0x1000, 0x1000);
        assert_eq!(o.access(0, 1, 0x1000, 4, true, 6), Verdict::Misdirected);
        assert_eq!(o.access(0, 2, 0x1000, 4, true, 6), Verdict::Allowed);
        // Same IOVA in another domain is a different page.
        assert_eq!(o.access(1, 2, 0x1000, 4, true, 6), Verdict::Exposed);
        assert_eq!(o.malicious().misdirected, 1);
    }

    #[test]
    fn probes_next_to_a_buffer_and_ranges_crossing_pages() {
        let mut o = Oracle::new(16384);
        o.grant(0, 1, 0x4000, 0x4000);
        assert_eq!(o.access(0, 1, 0x8000, 1, false, 0), Verdict::Blocked);
        assert_eq!(o.access(0, 1, 0x7ffc, 8, true, 0), Verdict::Exposed);
        assert_eq!(o.access(0, 1, 0x3fff, 1, true, 0), Verdict::Exposed);
        // A regrant clears the released record.
        o.revoke(0, 0x4000, 0x4000, 0);
        o.grant(0, 1, 0x4000, 0x4000);
        assert_eq!(o.access(0, 1, 0x4000, 1, true, 9), Verdict::Allowed);
        assert_eq!(o.live_pages(), 1);
        assert_eq!(o.holder(0, 0x5000).map(|h| h.0), Some(1));
        assert_eq!(o.holder(0, 0x8000), None);
    }
}
