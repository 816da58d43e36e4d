//! Allocator properties against a reference model of live ranges: no overlap,
//! alignment, the limit and start pfn respected, no failure while a fitting gap
//! exists (after the caches are flushed), and everything freed returns.

use std::sync::Arc;

use iommu_iova::{IovaDomain, IovaRange};
use iommu_types::FixedCpuId;
use proptest::prelude::*;

/// 4 MiB granule (larger than any CPU page: Linux refuses it) so the 32-bit space
/// is only 1024 pfns and the tests reach "full" quickly.
const GRANULE: u64 = 1 << 22;
const PFN32: u64 = 1 << 10;
/// Above-4 GiB limit used by the tests (inclusive).
const LIMIT64: u64 = 2 * PFN32 - 1;
const START: u64 = 3;

#[derive(Clone, Debug)]
enum Op {
    /// Fast allocation of `size` from `cpu` under the limit `limit`: 0 = the 32-bit
    /// limit, 1 = the 64-bit one, anything else a limit inside the 32-bit space.
    Alloc { size: u64, limit: u64, cpu: usize },
    /// Fast free of the `idx`-th live range (modulo), from `cpu`.
    Free { idx: usize, cpu: usize },
    /// Return the caches to the tree.
    Flush,
    /// Shrink the depots.
    Shrink,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (prop_oneof![3 => 1u64..=4, 1 => 1u64..=80], prop_oneof![Just(0u64), Just(1), PFN32 - 9..PFN32 - 1, START..PFN32 - 1], 0usize..2)
            .prop_map(|(size, limit, cpu)| Op::Alloc { size, limit, cpu }),
        4 => (any::<usize>(), 0usize..2).prop_map(|(idx, cpu)| Op::Free { idx, cpu }),
        1 => Just(Op::Flush),
        1 => Just(Op::Shrink),
    ]
}

/// The size the fast path really allocates for a request.
fn rounded(size: u64) -> u64 {
    if size < 32 {
        size.next_power_of_two()
    } else {
        size
    }
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 <= b.1 && b.0 <= a.1
}

/// Whether an aligned range of `size` fits under `limit` next to `taken`.
fn fit_exists(taken: &[(u64, u64)], size: u64, limit: u64) -> bool {
    let align = size.next_power_of_two();
    let mut s = START.div_ceil(align) * align;
    while s + size - 1 <= limit {
        if !taken.iter().any(|&t| overlaps(t, (s, s + size - 1))) {
            return true;
        }
        s += align;
    }
    false
}

/// A CPU-id source the test switches between two CPUs.
struct Switch(std::sync::atomic::AtomicUsize);
impl iommu_types::CpuId for Switch {
    fn current(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
    fn count(&self) -> usize {
        2
    }
}

fn run(ops: Vec<Op>, reserved: Vec<(u64, u64)>, mag_size: usize) -> Result<(), TestCaseError> {
    let cpu = Arc::new(Switch(0.into()));
    let d = IovaDomain::builder(GRANULE, START)
        .cpus(cpu.clone())
        .magazine_size(mag_size)
        .build()
        .unwrap();
    let set_cpu = |c: usize| cpu.0.store(c, std::sync::atomic::Ordering::Relaxed);
    let mut fixed: Vec<(u64, u64)> = Vec::new();
    for (lo, len) in reserved {
        let hi = lo + len - 1;
        d.reserve_iova(lo, hi).unwrap();
        fixed.push((lo, hi));
    }
    // (pfn, requested size)
    let mut live: Vec<(u64, u64)> = Vec::new();
    // Linux's `max32_alloc_size` is shared by every limit at or below 4 GiB, so a
    // failure under a low limit makes later 32-bit requests of that size fail
    // fast even where room exists; completeness is only checked where it holds.
    let mut max32_quirk = false;
    for op in ops {
        match op {
            Op::Alloc { size, limit, cpu } => {
                set_cpu(cpu);
                let odd_limit = limit > 1;
                let limit = match limit {
                    0 => PFN32 - 1,
                    1 => LIMIT64,
                    l => l,
                };
                let rs = rounded(size);
                match d.alloc_iova_fast(size, limit, true) {
                    Ok(pfn) => {
                        let r = (pfn, pfn + rs - 1);
                        prop_assert!(pfn >= START, "below start: {pfn}");
                        prop_assert!(r.1 <= limit, "{r:?} above limit {limit}");
                        prop_assert_eq!(pfn % rs.next_power_of_two(), 0, "misaligned {:?}", r);
                        for &(p, s) in &live {
                            prop_assert!(
                                !overlaps(r, (p, p + rounded(s) - 1)),
                                "{r:?} overlaps live {p}+{s}"
                            );
                        }
                        for &f in &fixed {
                            prop_assert!(!overlaps(r, f), "{r:?} overlaps reserved {f:?}");
                        }
                        let node = d.find_iova(pfn).unwrap();
                        prop_assert!(node.pfn_lo <= pfn && node.pfn_hi >= r.1);
                        live.push((pfn, size));
                    }
                    Err(_) if odd_limit || (max32_quirk && limit < PFN32) => max32_quirk = true,
                    Err(_) => {
                        // The caches were flushed: the tree holds exactly live and
                        // reserved ranges, so no fitting gap may exist.
                        let mut taken: Vec<(u64, u64)> =
                            live.iter().map(|&(p, s)| (p, p + rounded(s) - 1)).collect();
                        taken.extend(fixed.iter().copied());
                        prop_assert!(
                            !fit_exists(&taken, rs, limit),
                            "failed {rs} under {limit} though a gap exists"
                        );
                    }
                }
            }
            Op::Free { idx, cpu } => {
                if !live.is_empty() {
                    set_cpu(cpu);
                    let (p, s) = live.swap_remove(idx % live.len());
                    d.free_iova_fast(p, s).unwrap();
                }
            }
            Op::Flush => d.flush_rcaches(),
            Op::Shrink => {
                d.shrink_depots();
            }
        }
    }
    // Everything freed returns.
    for (p, s) in live.drain(..) {
        d.free_iova_fast(p, s).unwrap();
    }
    d.flush_rcaches();
    let left: Vec<IovaRange> = d.ranges();
    for &f in &fixed {
        prop_assert!(
            d.find_iova(f.0).is_some() && d.find_iova(f.1).is_some(),
            "reservation {f:?} lost"
        );
    }
    for r in &left {
        prop_assert!(
            fixed.iter().any(|&f| overlaps(f, (r.pfn_lo, r.pfn_hi))),
            "leaked {r:?}"
        );
    }
    if fixed.is_empty() {
        prop_assert_eq!(d.tree_len(), 0);
        // The whole space is free again: a maximal allocation succeeds.
        let r = d.alloc_iova(LIMIT64 - START + 1, LIMIT64, false).unwrap();
        prop_assert_eq!(r.pfn_lo, START);
        d.free_iova(r.pfn_lo).unwrap();
        prop_assert_eq!(d.alloc_iova_fast(1024, LIMIT64, true), Ok(1024));
    }
    Ok(())
}

/// 64 cases normally, 4096 with `IOMMU_LONG_TESTS=1`.
fn cases() -> u32 {
    if std::env::var_os("IOMMU_LONG_TESTS").is_some_and(|v| v == "1") {
        4096
    } else {
        64
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn allocator_matches_the_model(ops in prop::collection::vec(op(), 1..300), mag in 1usize..4) {
        run(ops, Vec::new(), mag)?;
    }

    #[test]
    fn allocator_with_reserved_ranges(
        ops in prop::collection::vec(op(), 1..200),
        reserved in prop::collection::vec((START..LIMIT64 - 64, 1u64..64), 0..4),
    ) {
        run(ops, reserved, 127)?;
    }
}

#[test]
fn the_whole_space_returns_after_exhaustion() {
    let d = IovaDomain::builder(GRANULE, START)
        .cpus(Arc::new(FixedCpuId { id: 0, count: 1 }))
        .build()
        .unwrap();
    let mut got = Vec::new();
    while let Ok(p) = d.alloc_iova_fast(1, PFN32 - 1, true) {
        got.push(p);
    }
    assert_eq!(got.len() as u64, PFN32 - START);
    for p in got {
        d.free_iova_fast(p, 1).unwrap();
    }
    // All cached: an order-1 request only succeeds because the caches are flushed.
    assert!(d.alloc_iova_fast(2, PFN32 - 1, false).is_err());
    assert_eq!(d.alloc_iova_fast(512, PFN32 - 1, true), Ok(512));
}
