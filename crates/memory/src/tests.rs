use super::*;
use iommu_types::PhysMemExt;
use proptest::prelude::*;
use std::sync::Arc;

#[test]
fn allocation_is_zeroed_aligned_and_accounted() {
    let m = SimMemory::new();
    let a = m.alloc_pages(3 * PAGE_SIZE, 0x4000).unwrap();
    assert!(a.is_aligned(0x4000));
    assert_eq!(m.stats().pages_in_use, 3);
    for off in (0..3 * PAGE_SIZE).step_by(8) {
        assert_eq!(m.read_u64(PhysAddr(a.0 + off)).unwrap(), 0);
    }
    m.write_u64(a, 0xdead_beef).unwrap();
    m.free_pages(a, 3 * PAGE_SIZE).unwrap();
    assert_eq!(m.stats().pages_in_use, 0);
    assert_eq!(m.stats().peak_pages, 3);
    // Reuse returns zeroed memory.
    let b = m.alloc_pages(3 * PAGE_SIZE, 0x4000).unwrap();
    assert_eq!(b, a);
    assert_eq!(m.read_u64(b).unwrap(), 0);
}

#[test]
fn access_outside_allocated_memory_is_an_error() {
    let m = SimMemory::new();
    assert_eq!(
        m.read_u64(PhysAddr(0x9000_0000)),
        Err(Error::Unmapped { pa: 0x9000_0000 })
    );
    let a = m.alloc_pages(PAGE_SIZE, PAGE_SIZE).unwrap();
    // Next page of the same chunk is not allocated.
    let next = PhysAddr(a.0 + PAGE_SIZE);
    assert!(matches!(m.write_u64(next, 1), Err(Error::Unmapped { .. })));
    // A byte copy that straddles into unallocated memory fails and writes nothing.
    let buf = [0xaau8; 16];
    assert!(m.write_bytes(PhysAddr(a.0 + PAGE_SIZE - 8), &buf).is_err());
    assert_eq!(m.read_u64(PhysAddr(a.0 + PAGE_SIZE - 8)).unwrap(), 0);
    // Freed memory becomes unmapped again (use-after-free by a walker is caught).
    m.free_pages(a, PAGE_SIZE).unwrap();
    assert!(matches!(m.read_u64(a), Err(Error::Unmapped { .. })));
    // Beyond 2^52.
    assert!(m.read_u64(PhysAddr(1 << 60)).is_err());
}

#[test]
fn misaligned_word_access_is_an_error() {
    let m = SimMemory::new();
    let a = m.alloc_pages(PAGE_SIZE, PAGE_SIZE).unwrap();
    assert_eq!(
        m.read_u64(PhysAddr(a.0 + 4)),
        Err(Error::Misaligned {
            pa: a.0 + 4,
            align: 8
        })
    );
    assert!(m.write_u32(PhysAddr(a.0 + 2), 0).is_err());
}

#[test]
fn bad_frees_are_refused_and_change_nothing() {
    let m = SimMemory::new();
    let a = m.alloc_pages(2 * PAGE_SIZE, PAGE_SIZE).unwrap();
    assert!(m.free_pages(a, PAGE_SIZE).is_err());
    assert!(m.free_pages(PhysAddr(a.0 + PAGE_SIZE), PAGE_SIZE).is_err());
    assert_eq!(m.stats().pages_in_use, 2);
    m.free_pages(a, 2 * PAGE_SIZE).unwrap();
    assert!(m.free_pages(a, 2 * PAGE_SIZE).is_err(), "double free");
}

#[test]
fn u32_and_byte_views_share_words_little_endian() {
    let m = SimMemory::new();
    let a = m.alloc_pages(PAGE_SIZE, PAGE_SIZE).unwrap();
    m.write_u64(a, 0x1122_3344_5566_7788).unwrap();
    assert_eq!(m.read_u32(a).unwrap(), 0x5566_7788);
    assert_eq!(m.read_u32(PhysAddr(a.0 + 4)).unwrap(), 0x1122_3344);
    m.write_u32(PhysAddr(a.0 + 4), 0xaabb_ccdd).unwrap();
    assert_eq!(m.read_u64(a).unwrap(), 0xaabb_ccdd_5566_7788);
    let mut b = [0u8; 3];
    m.read_bytes(PhysAddr(a.0 + 1), &mut b).unwrap();
    assert_eq!(b, [0x77, 0x66, 0x55]);
    m.fill_bytes(PhysAddr(a.0 + 3), 10, 0xee).unwrap();
    assert_eq!(m.read_u64(a).unwrap(), 0xeeee_eeee_ee66_7788);
    assert_eq!(
        m.read_u64(PhysAddr(a.0 + 8)).unwrap(),
        0x0000_00ee_eeee_eeee
    );
}

#[test]
fn compare_exchange_reports_the_actual_value() {
    let m = SimMemory::new();
    let a = m.alloc_pages(PAGE_SIZE, PAGE_SIZE).unwrap();
    assert_eq!(m.compare_exchange_u64(a, 0, 5).unwrap(), Ok(0));
    assert_eq!(m.compare_exchange_u64(a, 0, 7).unwrap(), Err(5));
    assert_eq!(m.read_u64(a).unwrap(), 5);
}

#[test]
fn sparse_48bit_space_costs_only_touched_chunks() {
    let m = SimMemory::with_config(MemConfig {
        base: 0xffff_0000_0000,
        size: 1 << 30,
    })
    .unwrap();
    let before = m.stats().backing_bytes;
    let a = m.alloc_pages(PAGE_SIZE, PAGE_SIZE).unwrap();
    assert!(a.0 >= 0xffff_0000_0000);
    m.write_u64(a, 1).unwrap();
    let grown = m.stats().backing_bytes - before;
    // One 64 KiB chunk plus two ~100 KiB directory nodes, not gigabytes.
    assert!(grown < 512 * 1024, "grew by {grown}");
}

#[test]
fn place_puts_memory_at_fixed_addresses_outside_the_allocator() {
    let m = SimMemory::new();
    m.place(PhysAddr(0x1000), 2 * PAGE_SIZE).unwrap();
    m.write_u64(PhysAddr(0x1ff8), 9).unwrap();
    assert!(
        m.place(PhysAddr(0x2000), PAGE_SIZE).is_err(),
        "overlaps placed memory"
    );
    assert!(
        m.place(PhysAddr(0x8000_0000), PAGE_SIZE).is_err(),
        "inside the allocator region"
    );
    m.unplace(PhysAddr(0x1000), 2 * PAGE_SIZE).unwrap();
    assert!(m.read_u64(PhysAddr(0x1ff8)).is_err());
}

#[test]
fn exhaustion_is_a_clear_error() {
    let m = SimMemory::with_config(MemConfig {
        base: 0x10_0000,
        size: 4 * PAGE_SIZE,
    })
    .unwrap();
    m.alloc_pages(4 * PAGE_SIZE, PAGE_SIZE).unwrap();
    assert_eq!(m.alloc_pages(1, 1), Err(Error::NoMemory { bytes: 1 }));
    assert!(m.alloc_pages(0, 4096).is_err());
    assert!(m.alloc_pages(4096, 3).is_err());
}

#[test]
fn huge_alignments_and_sizes_are_cheap_errors_or_successes() {
    // A 2^50-byte region: an allocation aligned to 2^49 skips ~2^37 pages of address
    // space; that must neither take time nor host memory per skipped page.
    let m = SimMemory::with_config(MemConfig {
        base: PAGE_SIZE,
        size: 1 << 50,
    })
    .unwrap();
    let before = m.stats().backing_bytes;
    let t = std::time::Instant::now();
    let pa = m.alloc_pages(PAGE_SIZE, 1 << 49).unwrap();
    assert_eq!(pa, PhysAddr(1 << 49));
    assert!(t.elapsed() < std::time::Duration::from_secs(1));
    assert_eq!(m.stats().pages_in_use, 1);
    // Pages of the gap are still handed out for small allocations.
    let small = m.alloc_pages(PAGE_SIZE, PAGE_SIZE).unwrap();
    assert!(small.0 < 1 << 49);
    m.write_u64(small, 7).unwrap();
    assert!(m.stats().backing_bytes - before < 1 << 20);
    // Sizes and alignments at the edge of u64 are clear errors.
    assert!(matches!(
        m.alloc_pages(u64::MAX, PAGE_SIZE),
        Err(Error::NoMemory { .. })
    ));
    assert!(matches!(
        m.alloc_pages(PAGE_SIZE, 1 << 63),
        Err(Error::NoMemory { .. })
    ));
    assert!(m.free_pages(PhysAddr(!0xfff), u64::MAX).is_err());
    assert!(m.read_u64(PhysAddr(!7)).is_err());
    let mut buf = [0u8; 16];
    assert!(m.read_bytes(PhysAddr(u64::MAX - 7), &mut buf).is_err());
    assert!(m.fill_bytes(PhysAddr(small.0), u64::MAX, 0).is_err());
    assert_eq!(m.read_u64(small), Ok(7), "failed calls changed nothing");
}

#[test]
fn naturally_aligned_helper() {
    let m = SimMemory::new();
    let a = m.alloc_naturally_aligned(64 * 1024).unwrap();
    assert!(a.is_aligned(64 * 1024));
}

#[test]
fn concurrent_byte_writers_of_one_word_do_not_lose_bytes() {
    let m = Arc::new(SimMemory::new());
    let a = m.alloc_pages(PAGE_SIZE, PAGE_SIZE).unwrap();
    let handles: Vec<_> = (0..8u8)
        .map(|i| {
            let m = m.clone();
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    m.write_bytes(PhysAddr(a.0 + i as u64), &[i + 1]).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(
        m.read_u64(a).unwrap(),
        u64::from_le_bytes([1, 2, 3, 4, 5, 6, 7, 8])
    );
}

proptest! {
    #[test]
    fn bytes_round_trip(off in 0u64..4000, data in proptest::collection::vec(any::<u8>(), 0..96)) {
        let m = SimMemory::new();
        let a = m.alloc_pages(PAGE_SIZE, PAGE_SIZE).unwrap();
        let pa = PhysAddr(a.0 + off);
        m.write_bytes(pa, &data).unwrap();
        let mut back = vec![0u8; data.len()];
        m.read_bytes(pa, &mut back).unwrap();
        prop_assert_eq!(back, data);
    }

    #[test]
    fn alloc_free_sequences_never_overlap_and_return_to_zero(
        sizes in proptest::collection::vec((1u64..5, 0u32..3), 1..40)
    ) {
        let m = SimMemory::new();
        let mut live: Vec<(u64, u64)> = Vec::new();
        for (i, (pages, align_lg)) in sizes.iter().enumerate() {
            let bytes = pages * PAGE_SIZE;
            let align = PAGE_SIZE << align_lg;
            let pa = m.alloc_pages(bytes, align).unwrap().0;
            prop_assert_eq!(pa % align, 0);
            for (s, l) in &live {
                prop_assert!(pa + bytes <= *s || *s + *l <= pa, "overlap");
            }
            live.push((pa, bytes));
            if i % 3 == 2 {
                let (s, l) = live.remove(0);
                m.free_pages(PhysAddr(s), l).unwrap();
            }
        }
        for (s, l) in live.drain(..) {
            m.free_pages(PhysAddr(s), l).unwrap();
        }
        prop_assert_eq!(m.stats().pages_in_use, 0);
    }
}

#[test]
fn words_in_page_gives_the_same_words_and_refuses_bad_runs() {
    let m = SimMemory::new();
    let a = m.alloc_pages(2 * PAGE_SIZE, PAGE_SIZE).unwrap();
    m.write_u64(PhysAddr(a.0 + 16), 0x1234).unwrap();
    let run = m.words_in_page(PhysAddr(a.0 + 16), 4).expect("present run");
    assert_eq!(run.len(), 4);
    assert_eq!(run[0].load(Ordering::Acquire), 0x1234);
    run[3].store(0x55, Ordering::Release);
    assert_eq!(m.read_u64(PhysAddr(a.0 + 40)).unwrap(), 0x55);
    // A whole page is one run; one word more crosses into the next page.
    assert!(m.words_in_page(a, 512).is_some());
    assert!(m.words_in_page(PhysAddr(a.0 + 8), 512).is_none());
    assert!(
        m.words_in_page(PhysAddr(a.0 + 4), 1).is_none(),
        "misaligned"
    );
    // Through a forwarding handle too.
    let shared: Arc<dyn PhysMem> = Arc::new(SimMemory::new());
    let b = shared.alloc_pages(PAGE_SIZE, PAGE_SIZE).unwrap();
    assert!(shared.words_in_page(b, 1).is_some());
    // Freed or never-allocated pages give no access.
    m.free_pages(a, 2 * PAGE_SIZE).unwrap();
    assert!(m.words_in_page(a, 1).is_none());
    assert!(m.words_in_page(PhysAddr(0x10), 1).is_none());
    assert!(m.words_in_page(PhysAddr(!7), 1).is_none());
}
