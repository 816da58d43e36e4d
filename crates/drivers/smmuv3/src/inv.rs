//! TLB range-invalidation planning and ATC_INV size encoding (`smmuv3.md` §4.4, §6,
//! seed 001).
//!
//! The plan is pure arithmetic: which address ranges to put in TLBI commands, with
//! which TG/SCALE/NUM/TTL, or whether to invalidate the whole ASID/VMID instead.

use crate::cmd::TlbiRange;
use alloc::vec::Vec;

/// Linux's limit on per-range commands before falling back to a context-wide flush.
pub const DEFAULT_MAX_RANGE_CMDS: usize = 512;

/// What to invalidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvRequest {
    /// First address.
    pub iova: u64,
    /// Size in bytes (> 0).
    pub size: u64,
    /// Smallest page size of the table format (its granule).
    pub granule: u64,
    /// Only leaf entries were removed (walk caches may be kept).
    pub leaf: bool,
    /// Size of every removed leaf when all removed entries are leaves of that one
    /// size (`gather.leaf_only && gather.pgsize != 0`); `None` when unknown, and in
    /// particular whenever a table was removed (seed 001).
    pub leaf_size: Option<u64>,
}

/// The result of planning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvPlan {
    /// Address commands to issue, in order.
    Ranges(Vec<TlbiRange>),
    /// Too many commands: invalidate the whole ASID/VMID instead.
    All,
}

fn log2(x: u64) -> u32 {
    63 - x.leading_zeros()
}

/// TG field for a granule (4K→1, 16K→2, 64K→3).
pub fn tg_of(granule: u64) -> Option<u8> {
    match granule {
        0x1000 => Some(1),
        0x4000 => Some(2),
        0x10000 => Some(3),
        _ => None,
    }
}

/// TTL (level hint) of a leaf of `leaf_size` in a table of `granule`:
/// 4 − (log2(leaf) − 3)/(log2(granule) − 3); e.g. 4K: 4K→3, 2M→2, 1G→1.
pub fn ttl_of(leaf_size: u64, granule: u64) -> u8 {
    if tg_of(granule).is_none() || !leaf_size.is_power_of_two() || leaf_size < granule {
        return 0;
    }
    let bits = log2(granule) - 3;
    let lvl = (log2(leaf_size) - 3) / bits;
    // Only exact level sizes give a hint; TTL=1 with 16K granule is reserved.
    if (log2(leaf_size) - 3) % bits != 0 || lvl > 3 || lvl == 0 {
        return 0;
    }
    let ttl = 4 - lvl as u8;
    if granule == 0x4000 && ttl == 1 {
        0
    } else {
        ttl
    }
}

/// Plan the TLBI commands for `req`.
///
/// * With RIL: TG from the granule, commands of (NUM+1)·2^SCALE granules taken from
///   the low bits of the granule count upward (one command per 5-bit group of the
///   count); TTL only when `leaf_size` is known; never the reserved
///   NUM=0/SCALE=0/TTL=0 (a lone first granule is widened to two).
/// * Without RIL: one single-address command per `leaf_size` (or granule) step.
/// * More than `max_cmds` commands: [`InvPlan::All`].
pub fn plan(req: &InvRequest, ril: bool, max_cmds: usize) -> InvPlan {
    if tg_of(req.granule).is_none() {
        return InvPlan::All; // not a translation granule: invalidate everything
    }
    let gshift = log2(req.granule);
    let start = req.iova & !(req.granule - 1);
    let end = req.iova.saturating_add(req.size.max(1) - 1);
    let mut out = Vec::new();
    if ril && let Some(tg) = tg_of(req.granule) {
        let ttl = req
            .leaf_size
            .filter(|_| req.leaf)
            .map_or(0, |s| ttl_of(s, req.granule));
        let mut pages = ((end - start) >> gshift) + 1;
        if ttl == 0 && pages & 31 == 1 {
            pages += 1;
        }
        let mut addr = start;
        while pages != 0 {
            let scale = pages.trailing_zeros();
            if scale > 31 {
                return InvPlan::All;
            }
            let num = (pages >> scale) & 31;
            out.push(TlbiRange {
                addr,
                leaf: req.leaf,
                tg,
                ttl,
                num: (num - 1) as u8,
                scale: scale as u8,
            });
            if out.len() > max_cmds {
                return InvPlan::All;
            }
            pages -= num << scale;
            addr = addr.wrapping_add(num << (scale + gshift));
        }
        return InvPlan::Ranges(out);
    }
    let step = req
        .leaf_size
        .filter(|_| req.leaf)
        .unwrap_or(req.granule)
        .max(req.granule);
    let first = req.iova & !(step - 1);
    let count = ((end - first) / step) + 1;
    if count > max_cmds as u64 {
        return InvPlan::All;
    }
    for i in 0..count {
        out.push(TlbiRange {
            addr: first + i * step,
            leaf: req.leaf,
            ..Default::default()
        });
    }
    InvPlan::Ranges(out)
}

/// ATC_INV `(addr, size)` covering `[iova, iova+size)`: the smallest naturally
/// aligned power-of-two number of 4 KiB pages; `size == 0` means the whole ATC
/// (Size=52, Addr=0).
pub fn atc_span(iova: u64, size: u64) -> (u64, u8) {
    if size == 0 {
        return (0, 52);
    }
    let first = iova >> 12;
    let last = iova.saturating_add(size - 1) >> 12;
    let log2_span = 64 - (first ^ last).leading_zeros();
    if log2_span >= 52 {
        return (0, 52);
    }
    let mask = (1u64 << log2_span) - 1;
    ((first & !mask) << 12, log2_span as u8)
}

/// Sum of bytes covered by a planned range command.
pub fn range_bytes(r: &TlbiRange, granule: u64) -> u64 {
    if r.tg == 0 {
        granule
    } else {
        ((r.num as u64) + 1) << (r.scale as u32 + log2(granule))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const K4: u64 = 0x1000;
    const M2: u64 = 0x20_0000;
    const G1: u64 = 0x4000_0000;

    fn req(iova: u64, size: u64, leaf: bool, leaf_size: Option<u64>) -> InvRequest {
        InvRequest {
            iova,
            size,
            granule: K4,
            leaf,
            leaf_size,
        }
    }

    #[test]
    fn ttl_values() {
        assert_eq!(ttl_of(K4, K4), 3);
        assert_eq!(ttl_of(M2, K4), 2);
        assert_eq!(ttl_of(G1, K4), 1);
        assert_eq!(ttl_of(0x10000, 0x10000), 3);
        assert_eq!(ttl_of(0x2000_0000, 0x10000), 2);
        assert_eq!(ttl_of(0x4000, 0x4000), 3);
        assert_eq!(ttl_of(0x200_0000, 0x4000), 2);
        assert_eq!(ttl_of(0x3000, K4), 0);
        assert_eq!(ttl_of(K4, 0), 0, "bad granule: no hint, no panic");
        assert_eq!(
            plan(
                &InvRequest {
                    granule: 0,
                    ..req(0, K4, true, None)
                },
                true,
                512
            ),
            InvPlan::All
        );
    }

    #[test]
    fn one_page_leaf_uses_ttl3() {
        let InvPlan::Ranges(r) = plan(&req(0x5000, K4, true, Some(K4)), true, 512) else {
            panic!()
        };
        assert_eq!(
            r,
            [TlbiRange {
                addr: 0x5000,
                leaf: true,
                tg: 1,
                ttl: 3,
                num: 0,
                scale: 0
            }]
        );
    }

    #[test]
    fn table_removed_never_gets_a_level_hint() {
        // Seed 001: a 1 GiB table of 2M blocks removed: TTL must be 0 (all levels),
        // even though the granule is 4K.
        let InvPlan::Ranges(r) = plan(&req(G1, G1, false, None), true, 512) else {
            panic!()
        };
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].ttl, 0);
        assert!(!r[0].leaf);
        // 2^18 granules = NUM 0, SCALE 18.
        assert_eq!((r[0].tg, r[0].num, r[0].scale), (1, 0, 18));
        // 1 GiB unmap of 2M leaves: TTL=2.
        let InvPlan::Ranges(r) = plan(&req(G1, G1, true, Some(M2)), true, 512) else {
            panic!()
        };
        assert_eq!(r[0].ttl, 2);
        // leaf_size ignored when not leaf-only.
        let InvPlan::Ranges(r) = plan(&req(G1, G1, false, Some(M2)), true, 512) else {
            panic!()
        };
        assert_eq!(r[0].ttl, 0);
    }

    #[test]
    fn reserved_single_granule_is_widened() {
        let InvPlan::Ranges(r) = plan(&req(0x5000, K4, false, None), true, 512) else {
            panic!()
        };
        assert_eq!(r.len(), 1);
        assert_eq!(
            (r[0].num, r[0].scale, r[0].ttl),
            (0, 1, 0),
            "covers 2 granules"
        );
        let InvPlan::Ranges(r) = plan(&req(0, 33 * K4, false, None), true, 512) else {
            panic!()
        };
        assert_eq!(r.len(), 1, "34 granules in one command");
        assert!(
            r.iter()
                .all(|c| !(c.tg != 0 && c.num == 0 && c.scale == 0 && c.ttl == 0))
        );
    }

    #[test]
    fn without_ril_one_command_per_step_then_fallback() {
        let InvPlan::Ranges(r) = plan(&req(0x1000, 3 * K4, true, Some(K4)), false, 512) else {
            panic!()
        };
        assert_eq!(
            r.iter().map(|c| c.addr).collect::<Vec<_>>(),
            [0x1000, 0x2000, 0x3000]
        );
        assert!(
            r.iter()
                .all(|c| c.tg == 0 && c.ttl == 0 && c.num == 0 && c.leaf)
        );
        // 1 GiB of 2M leaves: 512 block-sized steps.
        let InvPlan::Ranges(r) = plan(&req(0, G1, true, Some(M2)), false, 512) else {
            panic!()
        };
        assert_eq!(r.len(), 512);
        // table removed: granule steps -> above threshold -> whole context.
        assert_eq!(plan(&req(0, G1, false, None), false, 512), InvPlan::All);
    }

    #[test]
    fn atc_span_encoding() {
        assert_eq!(atc_span(0x5000, 0x1000), (0x5000, 0));
        assert_eq!(
            atc_span(0x5000, 0x2000),
            (0x4000, 2),
            "pages 5,6 -> span 4 aligned"
        );
        assert_eq!(atc_span(0x0, 0x10000), (0, 4));
        assert_eq!(atc_span(0, 0), (0, 52));
        assert_eq!(atc_span(0x1000, u64::MAX), (0, 52));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn ril_plan_covers_exactly(start_pg in 0u64..1 << 20, pages in 1u64..1 << 16, leaf in any::<bool>()) {
            let iova = start_pg * K4;
            let size = pages * K4;
            let r = plan(&req(iova, size, leaf, leaf.then_some(K4)), true, usize::MAX);
            let InvPlan::Ranges(cmds) = r else { panic!() };
            let mut at = iova;
            for c in &cmds {
                prop_assert_eq!(c.addr, at, "contiguous");
                prop_assert!(!(c.num == 0 && c.scale == 0 && c.ttl == 0), "reserved encoding");
                at += range_bytes(c, K4);
            }
            let covered = at - iova;
            prop_assert!(covered == size || (covered == size + K4 && !leaf));
            // one command per 5-bit group of the granule count (at most 4 here)
            prop_assert!(cmds.len() <= 4);
        }

        #[test]
        fn atc_span_covers(iova in 0u64..1 << 40, size in 1u64..1 << 30) {
            let (addr, sz) = atc_span(iova, size);
            let span = 1u64 << (12 + sz as u32);
            prop_assert_eq!(addr % span, 0);
            prop_assert!(addr <= iova && iova + size <= addr + span);
            if sz > 0 {
                // not coverable by half the span
                let half = span / 2;
                let a2 = iova & !(half - 1);
                prop_assert!(iova + size > a2 + half);
            }
        }
    }
}
