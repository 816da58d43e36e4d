//! Behaviour of map/unmap that the reference (`lpae.md` §6, §7) and the seeds insist
//! on: EEXIST changes nothing, blocks replace tables, partial block unmaps are refused,
//! table-level unmaps free sub-tables through the right TLB maintenance (strict and
//! queued gathers), argument errors, and each quirk.

mod common;

use std::sync::Arc;

use common::{FlushCall, RecordingFlush};
use io_pgtable::lpae::pte;
use io_pgtable::{
    Error, Granule, IoPgtable, IotlbGather, LpaeConfig, LpaeTable, NoFlush, Quirks, Stage,
};
use iommu_memory::SimMemory;
use iommu_testkit::lpae::{self as hand, WalkOutcome, WalkParams};
use iommu_types::{Errno, Iova, PhysAddr, PhysMem, Prot, SZ_1G, SZ_2M, SZ_4K};

fn s1_4k() -> LpaeConfig {
    LpaeConfig::new(Stage::S1, Granule::G4K, 48, 48)
}

fn params(t: &LpaeTable<&SimMemory>) -> WalkParams {
    let h = t.s1_config().unwrap().tcr;
    match (h.ttbr0, h.ttbr1) {
        (Some(a), _) => WalkParams::stage1(a.tsz, hand::tg0_shift(a.tg).unwrap(), false).unwrap(),
        (None, Some(a)) => WalkParams::stage1(a.tsz, hand::tg1_shift(a.tg).unwrap(), true).unwrap(),
        _ => unreachable!(),
    }
}

fn snapshot(mem: &SimMemory, t: &LpaeTable<&SimMemory>) -> Vec<hand::LeafEntry> {
    hand::leaves(mem, t.root().0, &params(t))
}

#[test]
fn eexist_over_a_leaf_changes_nothing() {
    let mem = SimMemory::new();
    let t = LpaeTable::new(s1_4k(), &mem, Arc::new(NoFlush)).unwrap();
    t.map_pages(Iova(0x3000), PhysAddr(0x9_3000), SZ_4K, 1, Prot::RW)
        .1
        .unwrap();
    let before = snapshot(&mem, &t);
    let pages = mem.stats().pages_in_use;
    // Four pages from 0: the fourth slot is taken, so nothing of the four is written.
    let (mapped, r) = t.map_pages(Iova(0), PhysAddr(0x10_0000), SZ_4K, 4, Prot::READ);
    assert_eq!(
        (mapped, r.as_ref().map_err(Error::errno)),
        (0, Err(Errno::EEXIST))
    );
    assert_eq!(snapshot(&mem, &t), before);
    assert_eq!(t.iova_to_phys(Iova(0)), None);
    // A page under an existing 2M block: the block is a leaf on the way.
    t.map_pages(Iova(SZ_2M), PhysAddr(0x4000_0000), SZ_2M, 1, Prot::RW)
        .1
        .unwrap();
    let before = snapshot(&mem, &t);
    let (mapped, r) = t.map_pages(Iova(SZ_2M + 0x1000), PhysAddr(0), SZ_4K, 1, Prot::RW);
    assert_eq!((mapped, r), (0, Err(Error::Exists(SZ_2M + 0x1000))));
    assert_eq!(snapshot(&mem, &t), before);
    assert_eq!(
        mem.stats().pages_in_use,
        pages,
        "no table allocated under the block"
    );
}

#[test]
fn block_over_table_frees_the_table_after_a_walk_flush() {
    let mem = SimMemory::new();
    let flush = Arc::new(RecordingFlush::default());
    let t = LpaeTable::new(s1_4k(), &mem, flush.clone()).unwrap();
    t.map_pages(Iova(0x1000), PhysAddr(0x1000), SZ_4K, 3, Prot::RW)
        .1
        .unwrap();
    let pages = mem.stats().pages_in_use;
    let l3 = match hand::walk(&mem, t.root().0, &params(&t), 0x1000) {
        WalkOutcome::Leaf { .. } => {
            hand::tables(&mem, t.root().0, &params(&t))
                .last()
                .unwrap()
                .pa
        }
        o => panic!("{o:?}"),
    };
    assert_eq!(
        t.map_pages(Iova(0), PhysAddr(0x4000_0000), SZ_2M, 1, Prot::RW),
        (SZ_2M, Ok(()))
    );
    assert_eq!(flush.take(), [FlushCall::Walk(0, SZ_2M, SZ_4K)]);
    assert_eq!(
        mem.stats().pages_in_use,
        pages - 1,
        "the level-3 table went back to memory"
    );
    assert!(!mem.is_present(PhysAddr(l3)));
    assert_eq!(t.iova_to_phys(Iova(0x1042)), Some(PhysAddr(0x4000_1042)));
}

#[test]
fn partial_block_unmap_is_refused() {
    let mem = SimMemory::new();
    let flush = Arc::new(RecordingFlush::default());
    let t = LpaeTable::new(s1_4k(), &mem, flush.clone()).unwrap();
    t.map_pages(Iova(SZ_1G), PhysAddr(SZ_1G), SZ_1G, 1, Prot::RW)
        .1
        .unwrap();
    let before = snapshot(&mem, &t);
    let mut g = IotlbGather::new();
    assert_eq!(t.unmap_pages(Iova(SZ_1G + SZ_2M), SZ_2M, 1, &mut g), 0);
    assert_eq!(t.unmap_pages(Iova(SZ_1G), SZ_4K, 1, &mut g), 0);
    assert_eq!(snapshot(&mem, &t), before);
    assert!(g.is_empty() && flush.take().is_empty());
    assert_eq!(t.unmap_pages(Iova(SZ_1G), SZ_1G, 1, &mut g), SZ_1G);
    assert_eq!(flush.take(), [FlushCall::AddPage(SZ_1G, SZ_1G)]);
    assert!(g.leaf_only && g.pgsize == SZ_1G);
}

#[test]
fn strict_table_unmap_flushes_walks_then_frees() {
    let mem = SimMemory::new();
    let flush = Arc::new(RecordingFlush::default());
    let t = LpaeTable::new(s1_4k(), &mem, flush.clone()).unwrap();
    let start = mem.stats().pages_in_use;
    // 4K pages under one L2 table under one L1 entry: unmapping the 1G entry removes
    // the L2 table and its L3 table.
    t.map_pages(Iova(SZ_1G), PhysAddr(0), SZ_4K, 2, Prot::RW)
        .1
        .unwrap();
    assert_eq!(mem.stats().pages_in_use, start + 3, "L1, L2 and L3 tables");
    let mut g = IotlbGather::new();
    assert_eq!(t.unmap_pages(Iova(SZ_1G), SZ_1G, 1, &mut g), SZ_1G);
    assert_eq!(flush.take(), [FlushCall::Walk(SZ_1G, SZ_1G, SZ_4K)]);
    assert!(
        !g.leaf_only,
        "a table went: the driver must not assume a leaf level"
    );
    assert_eq!((g.start, g.end, g.pgsize), (SZ_1G, 2 * SZ_1G - 1, 0));
    assert!(g.freelist.is_empty());
    assert_eq!(
        mem.stats().pages_in_use,
        start + 1,
        "only the L1 table stays"
    );
    assert_eq!(t.iova_to_phys(Iova(SZ_1G)), None);
}

#[test]
fn queued_table_unmap_defers_freeing_to_the_gather() {
    let mem = SimMemory::new();
    let flush = Arc::new(RecordingFlush::default());
    let t = LpaeTable::new(s1_4k(), &mem, flush.clone()).unwrap();
    t.map_pages(Iova(SZ_1G), PhysAddr(0), SZ_4K, 2, Prot::RW)
        .1
        .unwrap();
    t.map_pages(Iova(0), PhysAddr(0), SZ_4K, 1, Prot::RW)
        .1
        .unwrap();
    let pages = mem.stats().pages_in_use;
    let mut g = IotlbGather::new_queued();
    assert_eq!(t.unmap_pages(Iova(SZ_1G), SZ_1G, 1, &mut g), SZ_1G);
    assert_eq!(t.unmap_pages(Iova(0), SZ_4K, 1, &mut g), SZ_4K);
    assert!(
        flush.take().is_empty(),
        "queued: no per-range maintenance at all"
    );
    assert!(!g.leaf_only);
    assert_eq!(
        g.freelist.len(),
        2,
        "L2 and L3 tables wait for the flush queue"
    );
    assert_eq!(
        mem.stats().pages_in_use,
        pages,
        "nothing freed before the flush"
    );
    for f in &g.freelist {
        assert!(mem.is_present(f.pa));
        assert_eq!(f.bytes, SZ_4K);
    }
    let freed = g.reset();
    t.free_tables(&freed).unwrap();
    assert_eq!(mem.stats().pages_in_use, pages - 2);
}

#[test]
fn strict_leaf_unmaps_add_pages_and_stop_at_holes() {
    let mem = SimMemory::new();
    let flush = Arc::new(RecordingFlush::default());
    let t = LpaeTable::new(s1_4k(), &mem, flush.clone()).unwrap();
    t.map_pages(Iova(0), PhysAddr(0), SZ_4K, 2, Prot::RW)
        .1
        .unwrap();
    t.map_pages(Iova(0x3000), PhysAddr(0x3000), SZ_4K, 1, Prot::RW)
        .1
        .unwrap();
    let mut g = IotlbGather::new();
    assert_eq!(t.unmap_pages(Iova(0), SZ_4K, 4, &mut g), 0x2000);
    assert_eq!(
        flush.take(),
        [
            FlushCall::AddPage(0, SZ_4K),
            FlushCall::AddPage(0x1000, SZ_4K)
        ]
    );
    assert_eq!(
        (g.start, g.end, g.pgsize, g.leaf_only),
        (0, 0x1fff, SZ_4K, true)
    );
    assert_eq!(t.iova_to_phys(Iova(0x3000)), Some(PhysAddr(0x3000)));
    assert_eq!(
        t.unmap_pages(Iova(0x2000), SZ_4K, 1, &mut g),
        0,
        "empty entry"
    );
}

#[test]
fn eexist_in_a_later_table_changes_nothing_either() {
    let mem = SimMemory::new();
    let t = LpaeTable::new(s1_4k(), &mem, Arc::new(NoFlush)).unwrap();
    // 1024 pages across three level-3 tables; a page in the third one is taken, and the
    // second 2M region does not even have a table yet.
    let iova = SZ_2M - 256 * SZ_4K;
    t.map_pages(Iova(iova + 1000 * SZ_4K), PhysAddr(0), SZ_4K, 1, Prot::RW)
        .1
        .unwrap();
    let before = snapshot(&mem, &t);
    let pages = mem.stats().pages_in_use;
    let (mapped, r) = t.map_pages(Iova(iova), PhysAddr(0x8000_0000), SZ_4K, 1024, Prot::RW);
    assert_eq!((mapped, r), (0, Err(Error::Exists(iova + 1000 * SZ_4K))));
    assert_eq!(snapshot(&mem, &t), before);
    assert_eq!(mem.stats().pages_in_use, pages, "no table allocated");
    // A block in a later 1G region is in the way of 2M entries too.
    t.map_pages(Iova(2 * SZ_1G), PhysAddr(0), SZ_1G, 1, Prot::RW)
        .1
        .unwrap();
    let (mapped, r) = t.map_pages(Iova(SZ_1G + 510 * SZ_2M), PhysAddr(0), SZ_2M, 4, Prot::RW);
    assert_eq!((mapped, r), (0, Err(Error::Exists(2 * SZ_1G))));
    assert_eq!(t.iova_to_phys(Iova(SZ_1G + 510 * SZ_2M)), None);
}

#[test]
fn ranges_crossing_tables_are_mapped_in_one_call() {
    let mem = SimMemory::new();
    let t = LpaeTable::new(s1_4k(), &mem, Arc::new(NoFlush)).unwrap();
    // 1024 pages starting half-way into an L3 table span three L3 tables.
    let iova = SZ_2M - 256 * SZ_4K;
    assert_eq!(
        t.map_pages(Iova(iova), PhysAddr(0x8000_0000), SZ_4K, 1024, Prot::RW),
        (1024 * SZ_4K, Ok(()))
    );
    for i in [0u64, 255, 256, 767, 768, 1023] {
        assert_eq!(
            t.iova_to_phys(Iova(iova + i * SZ_4K + 1)),
            Some(PhysAddr(0x8000_0000 + i * SZ_4K + 1))
        );
    }
    assert_eq!(
        t.unmap_pages(Iova(iova), SZ_4K, 1024, &mut IotlbGather::new()),
        1024 * SZ_4K
    );
    assert_eq!(t.iova_to_phys(Iova(iova)), None);
}

#[test]
fn argument_errors() {
    let mem = SimMemory::new();
    let t = LpaeTable::new(
        LpaeConfig::new(Stage::S1, Granule::G4K, 39, 40),
        &mem,
        Arc::new(NoFlush),
    )
    .unwrap();
    let e = |r: (u64, io_pgtable::Result<()>)| r.1.map_err(|e| e.errno());
    assert_eq!(
        e(t.map_pages(Iova(0), PhysAddr(0), SZ_4K, 1, Prot::CACHE)),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        e(t.map_pages(Iova(0), PhysAddr(0), 0x8000, 1, Prot::RW)),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        e(t.map_pages(Iova(0), PhysAddr(0), 0, 1, Prot::RW)),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        e(t.map_pages(Iova(0x800), PhysAddr(0), SZ_4K, 1, Prot::RW)),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        e(t.map_pages(Iova(1 << 39), PhysAddr(0), SZ_4K, 1, Prot::RW)),
        Err(Errno::ERANGE)
    );
    assert_eq!(
        e(t.map_pages(Iova((1 << 39) - SZ_4K), PhysAddr(0), SZ_4K, 2, Prot::RW)),
        Err(Errno::ERANGE)
    );
    assert_eq!(
        e(t.map_pages(Iova(0), PhysAddr(1 << 40), SZ_4K, 1, Prot::RW)),
        Err(Errno::ERANGE)
    );
    assert_eq!(
        e(t.map_pages(Iova(0), PhysAddr(0), SZ_4K, u64::MAX, Prot::RW)),
        Err(Errno::ERANGE)
    );
    assert_eq!(t.iova_to_phys(Iova(1 << 39)), None);
    assert_eq!(
        t.unmap_pages(Iova(1 << 39), SZ_4K, 1, &mut IotlbGather::new()),
        0
    );
    assert_eq!(
        t.unmap_pages(Iova(0), 0x3000, 1, &mut IotlbGather::new()),
        0
    );
    assert_eq!(
        mem.stats().pages_in_use,
        1,
        "no failed call allocated a table"
    );
}

#[test]
fn no_perms_is_not_accepted_by_lpae() {
    let mem = SimMemory::new();
    for stage in [Stage::S1, Stage::S2] {
        let cfg = LpaeConfig::new(stage, Granule::G4K, 48, 48).with_quirks(Quirks::NO_PERMS);
        let err = LpaeTable::new(cfg, &mem, Arc::new(NoFlush)).unwrap_err();
        assert_eq!(err, Error::UnsupportedQuirks(Quirks::NO_PERMS.0));
        assert_eq!(err.errno(), Errno::EINVAL);
    }
    assert_eq!(mem.stats().pages_in_use, 0);
}

#[test]
fn ttbr1_maps_the_upper_range() {
    let mem = SimMemory::new();
    let cfg = s1_4k().with_quirks(Quirks::ARM_TTBR1);
    let t = LpaeTable::new(cfg, &mem, Arc::new(NoFlush)).unwrap();
    let c = t.s1_config().unwrap();
    assert_eq!((c.ttbr0, c.ttbr1), (None, Some(t.root().0)));
    let top = 0xffff_ffff_ffe0_0000u64;
    let low = 0xffff_0000_0000_0000u64;
    assert_eq!(
        t.map_pages(Iova(top), PhysAddr(0x8000_0000), SZ_2M, 1, Prot::RW),
        (SZ_2M, Ok(()))
    );
    assert_eq!(
        t.map_pages(Iova(low), PhysAddr(0x1000), SZ_4K, 1, Prot::RW),
        (SZ_4K, Ok(()))
    );
    assert_eq!(t.iova_to_phys(Iova(u64::MAX)), Some(PhysAddr(0x801f_ffff)));
    assert_eq!(t.iova_to_phys(Iova(low + 5)), Some(PhysAddr(0x1005)));
    // Lower-range addresses are outside this table.
    let r = t.map_pages(Iova(0x1000), PhysAddr(0x1000), SZ_4K, 1, Prot::RW);
    assert_eq!(r.1.unwrap_err().errno(), Errno::ERANGE);
    assert_eq!(t.iova_to_phys(Iova(0x1000 | (low & !(1 << 63)))), None);
    // The hand walker, configured from TTBR1/T1SZ/TG1, agrees.
    let leaves = snapshot(&mem, &t);
    assert_eq!(
        leaves.iter().map(|l| (l.iova, l.size)).collect::<Vec<_>>(),
        [(low, SZ_4K), (top, SZ_2M)]
    );
    assert_eq!(
        t.unmap_pages(Iova(top), SZ_2M, 1, &mut IotlbGather::new()),
        SZ_2M
    );
}

#[test]
fn hd_dirty_tracking_reads_and_clears() {
    let mem = SimMemory::new();
    let cfg = s1_4k().with_quirks(Quirks::ARM_HD);
    let t = LpaeTable::new(cfg, &mem, Arc::new(NoFlush)).unwrap();
    t.map_pages(Iova(0x1000), PhysAddr(0x1000), SZ_4K, 1, Prot::RW)
        .1
        .unwrap();
    t.map_pages(Iova(0x2000), PhysAddr(0x2000), SZ_4K, 1, Prot::READ)
        .1
        .unwrap();
    t.map_pages(Iova(SZ_2M), PhysAddr(SZ_2M), SZ_2M, 1, Prot::RW)
        .1
        .unwrap();
    let collect = |clear: bool| {
        let mut v = Vec::new();
        t.read_and_clear_dirty(Iova(0), 2 * SZ_2M, clear, &mut |i, s| v.push((i.0, s)))
            .unwrap();
        v
    };
    // Writable leaves start dirty (DBM=1, AP[2]=0).
    assert_eq!(collect(false), [(0x1000, SZ_4K), (SZ_2M, SZ_2M)]);
    assert_eq!(collect(true), [(0x1000, SZ_4K), (SZ_2M, SZ_2M)]);
    assert_eq!(
        collect(true),
        [],
        "cleaned: writable-clean (AP[2]=1, DBM=1)"
    );
    let p = params(&t);
    let WalkOutcome::Leaf { raw, .. } = hand::walk(&mem, t.root().0, &p, 0x1000) else {
        panic!()
    };
    assert_eq!(raw & (pte::DBM | pte::AP_RDONLY), pte::DBM | pte::AP_RDONLY);
    // The SMMU writes the page: it clears AP[2] in the descriptor.
    let slot = hand::tables(&mem, t.root().0, &p).last().unwrap().pa + 8;
    assert_eq!(mem.read_u64(PhysAddr(slot)).unwrap(), raw);
    mem.write_u64(PhysAddr(slot), raw & !pte::AP_RDONLY)
        .unwrap();
    assert_eq!(collect(true), [(0x1000, SZ_4K)]);
    // Still translates, and the read-only page never became dirty.
    assert_eq!(t.iova_to_phys(Iova(0x2000)), Some(PhysAddr(0x2000)));
    // Without the quirk the operation is refused.
    let plain = LpaeTable::new(s1_4k(), &mem, Arc::new(NoFlush)).unwrap();
    let r = plain.read_and_clear_dirty(Iova(0), SZ_4K, true, &mut |_, _| {});
    assert_eq!(r.unwrap_err().errno(), Errno::EINVAL);
}

#[test]
fn pa_52_bit_with_64k_granule() {
    let mem = SimMemory::new();
    let t = LpaeTable::new(
        LpaeConfig::new(Stage::S1, Granule::G64K, 48, 52),
        &mem,
        Arc::new(NoFlush),
    )
    .unwrap();
    let pa = 0x000f_0000_0001_0000u64;
    assert_eq!(
        t.map_pages(Iova(0x1_0000), PhysAddr(pa), 0x1_0000, 1, Prot::RW),
        (0x1_0000, Ok(()))
    );
    assert_eq!(t.iova_to_phys(Iova(0x1_0042)), Some(PhysAddr(pa + 0x42)));
    let h = t.s1_config().unwrap().tcr.ttbr0.unwrap();
    let p = WalkParams::stage1(h.tsz, hand::tg0_shift(h.tg).unwrap(), false).unwrap();
    let WalkOutcome::Leaf { raw, out, .. } = hand::walk(&mem, t.root().0, &p, 0x1_0042) else {
        panic!()
    };
    assert_eq!(
        (raw >> 12) & 0xf,
        0xf,
        "PA[51:48] in descriptor bits [15:12]"
    );
    assert_eq!(out, pa + 0x42);
    assert_eq!(t.s1_config().unwrap().tcr.ips, 6);
    // 48-bit output: the same address is out of range.
    let t48 = LpaeTable::new(
        LpaeConfig::new(Stage::S1, Granule::G64K, 48, 48),
        &mem,
        Arc::new(NoFlush),
    )
    .unwrap();
    let r = t48.map_pages(Iova(0x1_0000), PhysAddr(pa), 0x1_0000, 1, Prot::RW);
    assert_eq!(r.1.unwrap_err().errno(), Errno::ERANGE);
}

#[test]
fn non_coherent_tables_carry_the_sync_mark() {
    let mem = SimMemory::new();
    let cfg = s1_4k().with_coherent_walk(false);
    let t = LpaeTable::new(cfg, &mem, Arc::new(NoFlush)).unwrap();
    t.map_pages(Iova(0), PhysAddr(0), SZ_4K, 1, Prot::RW)
        .1
        .unwrap();
    let l0 = mem.read_u64(t.root()).unwrap();
    assert_eq!(l0 & (pte::SW_SYNC | 3), pte::SW_SYNC | 3);
    assert_eq!(t.iova_to_phys(Iova(0)), Some(PhysAddr(0)));
}

#[test]
fn stage2_concatenated_root_is_used() {
    let mem = SimMemory::new();
    let t = LpaeTable::new(
        LpaeConfig::new(Stage::S2, Granule::G4K, 40, 40),
        &mem,
        Arc::new(NoFlush),
    )
    .unwrap();
    let c = t.s2_config().unwrap();
    assert_eq!(c.vtcr.sl0, 1, "start at level 1");
    assert_eq!(
        c.vttbr % 0x2000,
        0,
        "aligned to the two concatenated tables"
    );
    // The second concatenated table holds the top half of the IPA space.
    let ipa = (1u64 << 40) - SZ_1G;
    t.map_pages(Iova(ipa), PhysAddr(0x40_0000_0000), SZ_1G, 1, Prot::RW)
        .1
        .unwrap();
    let idx = ipa >> 30;
    assert_eq!(idx, 1023);
    let raw = mem.read_u64(PhysAddr(c.vttbr + 8 * idx)).unwrap();
    assert_eq!(raw & 3, 1, "1G block in the root");
    let p = WalkParams::stage2(c.vtcr.t0sz, c.vtcr.sl0, c.vtcr.tg0).unwrap();
    assert!(matches!(
        hand::walk(&mem, c.vttbr, &p, ipa + 7),
        WalkOutcome::Leaf { level: 1, .. }
    ));
}

#[test]
fn walk_cache_forgets_freed_tables() {
    // Map a page in region A (its level-3 table T is remembered by the walk cache),
    // remove A's level-3 table, map a 2M block in a new 1G region B (whose new level-2
    // table reuses T's page), then map in A again: a stale cache would write A's page
    // descriptor into B's level-2 table.
    let mem = SimMemory::new();
    let t = LpaeTable::new(s1_4k(), &mem, Arc::new(NoFlush)).unwrap();
    let a = 0x4000_0000u64;
    let b = 0x8000_0000u64;
    t.map_pages(Iova(a + 0x5000), PhysAddr(0x1_0000), SZ_4K, 1, Prot::RW)
        .1
        .unwrap();
    assert_eq!(
        t.unmap_pages(Iova(a), SZ_2M, 1, &mut IotlbGather::new()),
        SZ_2M
    );
    t.map_pages(Iova(b), PhysAddr(0x20_0000), SZ_2M, 1, Prot::RW)
        .1
        .unwrap();
    t.map_pages(Iova(a + 0x7000), PhysAddr(0x3_0000), SZ_4K, 1, Prot::RW)
        .1
        .unwrap();
    assert_eq!(t.iova_to_phys(Iova(a + 0x7000)), Some(PhysAddr(0x3_0000)));
    assert_eq!(t.iova_to_phys(Iova(b + 7 * SZ_2M)), None);
    assert_eq!(t.iova_to_phys(Iova(b + 0x42)), Some(PhysAddr(0x20_0042)));
    // Same with a block mapped over the table.
    let c = 0xc000_0000u64;
    t.map_pages(Iova(a), PhysAddr(0x4000_0000), SZ_2M, 1, Prot::RW)
        .1
        .unwrap();
    t.map_pages(Iova(c), PhysAddr(0x60_0000), SZ_2M, 1, Prot::RW)
        .1
        .unwrap();
    assert_eq!(
        t.unmap_pages(Iova(a), SZ_2M, 1, &mut IotlbGather::new()),
        SZ_2M
    );
    t.map_pages(Iova(a + 0x1000), PhysAddr(0x6_0000), SZ_4K, 1, Prot::RW)
        .1
        .unwrap();
    assert_eq!(t.iova_to_phys(Iova(a + 0x1000)), Some(PhysAddr(0x6_0000)));
    assert_eq!(t.iova_to_phys(Iova(c + 0x42)), Some(PhysAddr(0x60_0042)));
}

#[test]
fn works_over_dyn_physmem_and_as_a_trait_object() {
    let mem: Arc<dyn PhysMem> = Arc::new(SimMemory::new());
    let t: Box<dyn IoPgtable> =
        Box::new(LpaeTable::new(s1_4k(), mem.clone(), Arc::new(NoFlush)).unwrap());
    assert_eq!(
        t.map_pages(Iova(0x1000), PhysAddr(0x2000), SZ_4K, 1, Prot::RW),
        (SZ_4K, Ok(()))
    );
    assert_eq!(t.iova_to_phys(Iova(0x1fff)), Some(PhysAddr(0x2fff)));
    fn assert_send_sync<T: Send + Sync>(_: &T) {}
    assert_send_sync(&t);
}

#[test]
fn removing_a_table_with_blocks_never_claims_a_leaf_level() {
    // Seed 001: a level-1 table entry is removed while level-2 blocks sit below it; a
    // driver deriving TTL from "the granule" would miss the 2M block entries.
    let mem = SimMemory::new();
    let flush = Arc::new(RecordingFlush::default());
    let t = LpaeTable::new(s1_4k(), &mem, flush.clone()).unwrap();
    t.map_pages(Iova(SZ_1G), PhysAddr(0), SZ_2M, 2, Prot::RW)
        .1
        .unwrap();
    t.map_pages(Iova(SZ_1G + 8 * SZ_2M), PhysAddr(0), SZ_4K, 1, Prot::RW)
        .1
        .unwrap();
    let mut g = IotlbGather::new();
    assert_eq!(t.unmap_pages(Iova(SZ_1G), SZ_1G, 1, &mut g), SZ_1G);
    assert!(!g.leaf_only);
    assert_eq!((g.start, g.end, g.pgsize), (SZ_1G, 2 * SZ_1G - 1, 0));
    assert_eq!(flush.take(), [FlushCall::Walk(SZ_1G, SZ_1G, SZ_4K)]);
    assert_eq!(t.iova_to_phys(Iova(SZ_1G + SZ_2M)), None);
}

#[test]
fn strictness_is_decided_per_call_by_the_gather() {
    // Seed 000: no table-wide "non-strict" state; each unmap follows its own gather,
    // so a flush queue switched on (or off) between calls is always observed.
    let mem = SimMemory::new();
    let flush = Arc::new(RecordingFlush::default());
    let t = LpaeTable::new(s1_4k(), &mem, flush.clone()).unwrap();
    t.map_pages(Iova(0), PhysAddr(0), SZ_4K, 4, Prot::RW)
        .1
        .unwrap();
    let mut strict = IotlbGather::new();
    let mut queued = IotlbGather::new_queued();
    assert_eq!(t.unmap_pages(Iova(0), SZ_4K, 1, &mut strict), SZ_4K);
    assert_eq!(flush.take(), [FlushCall::AddPage(0, SZ_4K)]);
    assert_eq!(t.unmap_pages(Iova(0x1000), SZ_4K, 1, &mut queued), SZ_4K);
    assert!(flush.take().is_empty() && queued.is_empty());
    assert_eq!(t.unmap_pages(Iova(0x2000), SZ_4K, 1, &mut strict), SZ_4K);
    assert_eq!(flush.take(), [FlushCall::AddPage(0x2000, SZ_4K)]);
    // Table removal: strict flushes the walk and frees; queued defers the pages.
    let pages = mem.stats().pages_in_use;
    assert_eq!(t.unmap_pages(Iova(0), SZ_2M, 1, &mut queued), SZ_2M);
    assert!(flush.take().is_empty());
    assert_eq!(
        (queued.freelist.len(), mem.stats().pages_in_use),
        (1, pages)
    );
    t.map_pages(Iova(0), PhysAddr(0), SZ_4K, 1, Prot::RW)
        .1
        .unwrap();
    assert_eq!(t.unmap_pages(Iova(0), SZ_2M, 1, &mut strict), SZ_2M);
    assert_eq!(flush.take(), [FlushCall::Walk(0, SZ_2M, SZ_4K)]);
    assert!(strict.freelist.is_empty());
    t.free_tables(&queued.reset()).unwrap();
    assert_eq!(mem.stats().pages_in_use, pages - 1);
}

#[test]
fn corrupted_descriptors_give_errors_not_panics() {
    let mem = SimMemory::new();
    let t = LpaeTable::new(s1_4k(), &mem, Arc::new(NoFlush)).unwrap();
    t.map_pages(Iova(0), PhysAddr(0), SZ_4K, 1, Prot::RW)
        .1
        .unwrap();
    // Removing a table empties the walk cache, so the walks below start from the root.
    t.map_pages(Iova(SZ_1G), PhysAddr(0), SZ_4K, 1, Prot::RW)
        .1
        .unwrap();
    assert_eq!(
        t.unmap_pages(Iova(SZ_1G), SZ_2M, 1, &mut IotlbGather::new()),
        SZ_2M
    );
    // Point the root's first entry at memory that does not exist (a walk abort).
    let good = mem.read_u64(t.root()).unwrap();
    mem.write_u64(t.root(), 0x7_0000_0000 | 3).unwrap();
    assert_eq!(t.iova_to_phys(Iova(0)), None);
    let (mapped, r) = t.map_pages(Iova(0x1000), PhysAddr(0), SZ_4K, 1, Prot::RW);
    assert_eq!((mapped, r.map_err(|e| e.errno())), (0, Err(Errno::EFAULT)));
    assert_eq!(t.unmap_pages(Iova(0), SZ_4K, 1, &mut IotlbGather::new()), 0);
    // A reserved type-01 entry at level 3 is not a translation and blocks a map.
    mem.write_u64(t.root(), good).unwrap();
    let l3 = hand::tables(&mem, t.root().0, &params(&t))
        .into_iter()
        .find(|t| t.level == 3)
        .unwrap()
        .pa;
    mem.write_u64(PhysAddr(l3 + 8), 0x5000 | 1).unwrap();
    assert_eq!(t.iova_to_phys(Iova(0x1000)), None);
    assert_eq!(
        t.map_pages(Iova(0x1000), PhysAddr(0), SZ_4K, 1, Prot::RW)
            .1
            .unwrap_err()
            .errno(),
        Errno::EEXIST
    );
    assert_eq!(t.iova_to_phys(Iova(0)), Some(PhysAddr(0)));
}

#[test]
fn dropping_the_table_flushes_everything_before_freeing() {
    let mem = SimMemory::new();
    let flush = Arc::new(RecordingFlush::default());
    let t = LpaeTable::new(s1_4k(), &mem, flush.clone()).unwrap();
    t.map_pages(Iova(0), PhysAddr(0), SZ_4K, 1, Prot::RW)
        .1
        .unwrap();
    assert!(flush.take().is_empty());
    drop(t);
    assert_eq!(flush.take(), [FlushCall::All]);
    assert_eq!(mem.stats().pages_in_use, 0);
}

#[test]
fn table_pages_are_freed_only_after_the_walk_caches_were_told() {
    // Seed 001: a walk cache may hold any level of a removed sub-table, so its pages
    // may go back to memory only once `tlb_flush_walk` (or, when the table dies,
    // `tlb_flush_all`) has been issued. Count the pages in use at each callback.
    let mem = Arc::new(SimMemory::new());
    let flush = Arc::new(common::PagesAtFlush::new(mem.clone()));
    let t = LpaeTable::new(s1_4k(), mem.clone(), flush.clone()).unwrap();
    let base = mem.stats().pages_in_use;

    // Strict unmap of a 1G entry over an L2 and an L3 table.
    t.map_pages(Iova(SZ_1G), PhysAddr(0), SZ_4K, 2, Prot::RW)
        .1
        .unwrap();
    let full = mem.stats().pages_in_use;
    assert_eq!(full, base + 3, "L1, L2 and L3 tables");
    assert_eq!(
        t.unmap_pages(Iova(SZ_1G), SZ_1G, 1, &mut IotlbGather::new()),
        SZ_1G
    );
    assert_eq!(
        flush.take(),
        [(FlushCall::Walk(SZ_1G, SZ_1G, SZ_4K), full)],
        "the walk flush came before any table page was freed"
    );
    assert_eq!(mem.stats().pages_in_use, full - 2);

    // A 2M block mapped over an L3 table.
    t.map_pages(Iova(0x1000), PhysAddr(0x1000), SZ_4K, 1, Prot::RW)
        .1
        .unwrap();
    let full = mem.stats().pages_in_use;
    assert_eq!(
        t.map_pages(Iova(0), PhysAddr(0x4000_0000), SZ_2M, 1, Prot::RW),
        (SZ_2M, Ok(()))
    );
    assert_eq!(flush.take(), [(FlushCall::Walk(0, SZ_2M, SZ_4K), full)]);
    assert_eq!(mem.stats().pages_in_use, full - 1);

    // Dropping the table: flush everything, then free.
    let full = mem.stats().pages_in_use;
    drop(t);
    assert_eq!(flush.take(), [(FlushCall::All, full)]);
    assert_eq!(mem.stats().pages_in_use, 0);
}

#[test]
fn arguments_at_the_top_of_the_address_space_never_panic() {
    // TTBR1 tables live at the very top of the 64-bit space, where `iova + size`
    // overflows: every entry point must answer with a result, not an overflow panic.
    let mem = SimMemory::new();
    let cfg = s1_4k().with_quirks(Quirks::ARM_TTBR1 | Quirks::ARM_HD);
    let t = LpaeTable::new(cfg, &mem, Arc::new(NoFlush)).unwrap();
    let top_page = !(SZ_4K - 1);
    let top_1g = !(SZ_1G - 1);
    assert_eq!(
        t.map_pages(Iova(top_page), PhysAddr(0x1000), SZ_4K, 1, Prot::RW),
        (SZ_4K, Ok(()))
    );
    let e = |r: (u64, io_pgtable::Result<()>)| (r.0, r.1.map_err(|e| e.errno()));
    // One page past the top, a count that overflows, a paddr at the top.
    assert_eq!(
        e(t.map_pages(Iova(top_page), PhysAddr(0x2000), SZ_4K, 2, Prot::RW)),
        (0, Err(Errno::ERANGE))
    );
    assert_eq!(
        e(t.map_pages(Iova(top_1g), PhysAddr(0), SZ_4K, u64::MAX / 2, Prot::RW)),
        (0, Err(Errno::ERANGE))
    );
    assert_eq!(
        e(t.map_pages(Iova(top_1g), PhysAddr(top_page), SZ_4K, 1, Prot::RW)),
        (0, Err(Errno::ERANGE))
    );
    // Dirty tracking over the last page and over sizes that would wrap.
    let mut seen = Vec::new();
    t.read_and_clear_dirty(Iova(top_page), SZ_4K, true, &mut |i, s| seen.push((i.0, s)))
        .unwrap();
    assert_eq!(seen, [(top_page, SZ_4K)], "a fresh writable leaf is dirty");
    let wrap = t.read_and_clear_dirty(Iova(top_page), 2 * SZ_4K, false, &mut |_, _| {});
    assert_eq!(wrap.unwrap_err().errno(), Errno::ERANGE);
    let huge = t.read_and_clear_dirty(Iova(0), !(SZ_4K - 1), false, &mut |_, _| {});
    assert!(huge.is_err());
    // Unmaps: a wrapping count, then the whole top 1G entry (a table-level removal
    // whose gather range ends at u64::MAX), strict and queued.
    let mut g = IotlbGather::new();
    assert_eq!(t.unmap_pages(Iova(top_page), SZ_4K, u64::MAX, &mut g), 0);
    assert_eq!(t.unmap_pages(Iova(top_page), SZ_4K, 2, &mut g), 0);
    assert!(g.is_empty());
    assert_eq!(t.unmap_pages(Iova(top_1g), SZ_1G, 1, &mut g), SZ_1G);
    assert_eq!((g.start, g.end, g.leaf_only), (top_1g, u64::MAX, false));
    assert_eq!(g.size(), SZ_1G);
    t.map_pages(Iova(top_page), PhysAddr(0x1000), SZ_4K, 1, Prot::RW)
        .1
        .unwrap();
    let mut q = IotlbGather::new_queued();
    assert_eq!(t.unmap_pages(Iova(top_1g), SZ_1G, 1, &mut q), SZ_1G);
    assert_eq!(q.end, u64::MAX);
    t.free_tables(&q.reset()).unwrap();
    assert_eq!(t.iova_to_phys(Iova(u64::MAX)), None);
    assert_eq!(mem.stats().pages_in_use, 2, "root and the level-1 table");
}
