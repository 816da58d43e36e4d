//! The mapping arithmetic of dma-iommu as pure functions (reference `software.md`
//! §4.2, §4.3, §4.4; seed 003).
//!
//! * [`Granule`]: IOVA granule helpers (`iova_offset`, `iova_align`, ...).
//! * [`plan_single`]: the IOVA window of one buffer when the buffer is not aligned
//!   to the granule (the IOVA carries the offset), and which head/tail granules an
//!   untrusted device must get through a bounce buffer.
//! * [`plan_sg`] and [`finalise_sg`]: a whole scatterlist in ONE contiguous IOVA
//!   allocation: stash each element's offset, round it to the granule, pad for the
//!   segment boundary, then emit DMA segments with Linux's merge rules. A granule
//!   larger than the CPU page needs nothing else: the unaligned part of each element
//!   simply becomes its offset.
//! * [`exposed_bytes`]: bytes a device can reach through its mappings that belong to
//!   none of its buffers.

use crate::error::{Error, Result};

/// An IOMMU granule (the smallest page size of the domain), a power of two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Granule(u64);

impl Granule {
    /// A granule of `size` bytes (a power of two, at least 4 KiB).
    pub fn new(size: u64) -> Result<Self> {
        if size.is_power_of_two() && size >= 4096 {
            Ok(Self(size))
        } else {
            Err(Error::Invalid("granule must be a power of two >= 4 KiB"))
        }
    }

    /// Bytes per granule.
    pub const fn size(self) -> u64 {
        self.0
    }

    /// The granule mask (`size - 1`, Linux `iova_mask`).
    pub const fn mask(self) -> u64 {
        self.0 - 1
    }

    /// log2 of the size (`iova_shift`).
    pub const fn shift(self) -> u32 {
        self.0.trailing_zeros()
    }

    /// Offset of `addr` inside its granule (`iova_offset`).
    pub const fn offset(self, addr: u64) -> u64 {
        addr & self.mask()
    }

    /// `addr` rounded down to the granule.
    pub const fn align_down(self, addr: u64) -> u64 {
        addr & !self.mask()
    }

    /// `len` rounded up to the granule (`iova_align`), `None` on overflow.
    pub const fn align_up(self, len: u64) -> Option<u64> {
        match len.checked_add(self.mask()) {
            Some(v) => Some(v & !self.mask()),
            None => None,
        }
    }

    /// Whether `addr` is granule aligned.
    pub const fn is_aligned(self, addr: u64) -> bool {
        addr & self.mask() == 0
    }
}

/// How one physical buffer `[phys, phys + len)` is laid out in IOVA space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SinglePlan {
    /// Offset of the buffer inside its first granule; the DMA address is
    /// `iova + offset`.
    pub offset: u64,
    /// Physical start of the mapped window (granule aligned).
    pub map_phys: u64,
    /// Bytes of IOVA to allocate and map (granule multiple).
    pub map_len: u64,
    /// For an untrusted device: the first granule holds bytes outside the buffer and
    /// must be bounced (`offset != 0`).
    pub bounce_head: bool,
    /// For an untrusted device: the last granule holds bytes outside the buffer and
    /// must be bounced (the buffer does not end on a granule boundary). When the
    /// window is one granule, head and tail are the same granule.
    pub bounce_tail: bool,
}

impl SinglePlan {
    /// Number of granules in the window.
    pub fn granules(&self, g: Granule) -> u64 {
        self.map_len >> g.shift()
    }

    /// Bytes the window maps that are not the buffer (what a trusted device may
    /// reach beyond its buffer).
    pub fn padding(&self, len: u64) -> u64 {
        self.map_len - len
    }
}

/// The IOVA window of one buffer (Linux `__iommu_dma_map`: `size = iova_align(size
/// + offset)`, DMA address `iova + offset`).
pub fn plan_single(g: Granule, phys: u64, len: u64) -> Result<SinglePlan> {
    if len == 0 {
        return Err(Error::Invalid("zero-length mapping"));
    }
    let offset = g.offset(phys);
    let end = phys
        .checked_add(len)
        .ok_or(Error::Invalid("buffer wraps the address space"))?;
    let map_len = g
        .align_up(offset + len)
        .ok_or(Error::Invalid("mapping too large"))?;
    Ok(SinglePlan {
        offset,
        map_phys: g.align_down(phys),
        map_len,
        bounce_head: offset != 0,
        bounce_tail: !g.is_aligned(end),
    })
}

/// One element of a scatterlist: `len` bytes at physical `phys`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SgEntry {
    /// Physical address of the data.
    pub phys: u64,
    /// Bytes of data.
    pub len: u64,
}

/// The layout of one scatterlist element inside the single allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SgSlot {
    /// The stashed offset of the data inside its first granule.
    pub data_off: u64,
    /// The data length.
    pub data_len: u64,
    /// Physical start of what gets mapped (granule aligned).
    pub map_phys: u64,
    /// Bytes mapped for this element (granule multiple).
    pub map_len: u64,
    /// Offset of this element's window from the start of the allocation.
    pub iova_off: u64,
    /// IOVA bytes this element occupies: `map_len` plus boundary padding after it
    /// (the padding is reserved IOVA, never mapped).
    pub span: u64,
}

/// A scatterlist planned into one IOVA allocation of `total` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SgPlan {
    /// Per element, in list order.
    pub slots: Vec<SgSlot>,
    /// Bytes of IOVA to allocate.
    pub total: u64,
}

/// Plan a scatterlist (first pass of Linux `iommu_dma_map_sg`): stash each element's
/// offset and length, round it to the granule, and pad the previous element so
/// that an element that would cross a `seg_boundary_mask` boundary starts on one
/// instead (padding `(mask - len + 1) & mask` when non-zero and `< new_len - 1`).
/// The padding is correct because the allocation is aligned to its power-of-two
/// size, so boundary positions follow from offsets alone.
pub fn plan_sg(g: Granule, list: &[SgEntry], seg_boundary_mask: u64) -> Result<SgPlan> {
    if list.is_empty() {
        return Err(Error::Invalid("empty scatterlist"));
    }
    let mut slots: Vec<SgSlot> = Vec::with_capacity(list.len());
    let mut total = 0u64;
    for e in list {
        let p = plan_single(g, e.phys, e.len)?;
        let pad = seg_boundary_mask.wrapping_sub(total).wrapping_add(1) & seg_boundary_mask;
        if let Some(prev) = slots.last_mut() {
            if pad != 0 && pad < p.map_len - 1 {
                prev.span += pad;
                total = total
                    .checked_add(pad)
                    .ok_or(Error::Invalid("scatterlist too large"))?;
            }
        }
        slots.push(SgSlot {
            data_off: p.offset,
            data_len: e.len,
            map_phys: p.map_phys,
            map_len: p.map_len,
            iova_off: total,
            span: p.map_len,
        });
        total = total
            .checked_add(p.map_len)
            .ok_or(Error::Invalid("scatterlist too large"))?;
    }
    Ok(SgPlan { slots, total })
}

/// One DMA segment handed to the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaSegment {
    /// DMA (IOVA) address.
    pub addr: u64,
    /// Bytes.
    pub len: u64,
}

/// Emit the DMA segments of a mapped plan whose allocation starts at `base`
/// (Linux `__finalise_sg`). An element is appended to the open segment only if a
/// segment is open, the element starts on a granule boundary (stashed offset 0),
/// the current address is not on a segment boundary, and the merged length stays
/// within `max_seg_size`. An element whose data ends before its IOVA span ends
/// (unaligned tail, or boundary padding) closes the run.
pub fn finalise_sg(
    plan: &SgPlan,
    base: u64,
    max_seg_size: u64,
    seg_boundary_mask: u64,
) -> Vec<DmaSegment> {
    let mut out: Vec<DmaSegment> = Vec::new();
    let mut open = false;
    for s in &plan.slots {
        let at = base + s.iova_off;
        let can_merge = open
            && s.data_off == 0
            && at & seg_boundary_mask != 0
            && out
                .last()
                .is_some_and(|c| max_seg_size.saturating_sub(c.len) >= s.data_len);
        match out.last_mut() {
            Some(cur) if can_merge => cur.len += s.data_len,
            _ => out.push(DmaSegment {
                addr: at + s.data_off,
                len: s.data_len,
            }),
        }
        open = s.data_off + s.data_len == s.span;
    }
    out
}

/// Bytes of `mapped` (physical ranges reachable by a device) not covered by any of
/// `buffers` (the device's own buffers). Ranges are `(start, len)`.
pub fn exposed_bytes(mapped: &[(u64, u64)], buffers: &[(u64, u64)]) -> u64 {
    let m = union(mapped);
    let b = union(buffers);
    let covered: u64 = m
        .iter()
        .map(|&(ms, me)| {
            b.iter()
                .map(|&(bs, be)| me.min(be).saturating_sub(ms.max(bs)))
                .sum::<u64>()
        })
        .sum();
    m.iter().map(|(s, e)| e - s).sum::<u64>() - covered
}

fn union(ranges: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = ranges
        .iter()
        .filter(|r| r.1 > 0)
        .map(|&(s, l)| (s, s.saturating_add(l)))
        .collect();
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
    for (s, e) in v {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const K: u64 = 1024;

    fn g(sz: u64) -> Granule {
        Granule::new(sz).unwrap()
    }

    #[test]
    fn granule_helpers() {
        let g16 = g(16 * K);
        assert_eq!(g16.offset(0x1_5123), 0x1123);
        assert_eq!(g16.align_down(0x1_5123), 0x1_4000);
        assert_eq!(g16.align_up(1), Some(0x4000));
        assert_eq!(g16.align_up(u64::MAX), None);
        assert!(Granule::new(3 * K).is_err());
        assert!(Granule::new(2 * K).is_err());
    }

    #[test]
    fn single_buffer_unaligned_to_a_16k_granule() {
        // A 4 KiB CPU page at 0x1_5000 under a 16 KiB granule.
        let p = plan_single(g(16 * K), 0x1_5000, 4 * K).unwrap();
        assert_eq!(p.offset, 0x1000);
        assert_eq!(p.map_phys, 0x1_4000);
        assert_eq!(p.map_len, 16 * K);
        assert!(p.bounce_head && p.bounce_tail);
        assert_eq!(p.padding(4 * K), 12 * K);
        // Spanning three granules.
        let p = plan_single(g(16 * K), 0x1_7000, 36 * K).unwrap();
        assert_eq!(
            (p.offset, p.map_phys, p.map_len),
            (0x3000, 0x1_4000, 48 * K)
        );
        assert_eq!(p.granules(g(16 * K)), 3);
        let p = plan_single(g(4 * K), 0x2000, 8 * K).unwrap();
        assert!(!p.bounce_head && !p.bounce_tail);
        assert!(plan_single(g(4 * K), 0, 0).is_err());
        assert!(plan_single(g(4 * K), u64::MAX - 10, 100).is_err());
    }

    #[test]
    fn sg_merges_aligned_neighbours_and_stashes_offsets() {
        let gr = g(4 * K);
        let list = [
            SgEntry {
                phys: 0x10_0200,
                len: 0xe00,
            }, // ends on a granule boundary
            SgEntry {
                phys: 0x20_0000,
                len: 0x1000,
            }, // aligned: merges
            SgEntry {
                phys: 0x30_0000,
                len: 0x800,
            }, // aligned: merges, but ends early
            SgEntry {
                phys: 0x40_0000,
                len: 0x1000,
            }, // after an early end: new segment
        ];
        let plan = plan_sg(gr, &list, u64::MAX).unwrap();
        assert_eq!(plan.total, 4 * 4 * K);
        assert_eq!(plan.slots[0].data_off, 0x200);
        let segs = finalise_sg(&plan, 0x8000_0000, u64::MAX, u64::MAX);
        assert_eq!(
            segs,
            vec![
                DmaSegment {
                    addr: 0x8000_0200,
                    len: 0xe00 + 0x1000 + 0x800
                },
                DmaSegment {
                    addr: 0x8000_3000,
                    len: 0x1000
                },
            ]
        );
    }

    #[test]
    fn sg_respects_max_segment_size() {
        let gr = g(4 * K);
        let list: Vec<SgEntry> = (0..4)
            .map(|i| SgEntry {
                phys: 0x10_0000 * (i + 1),
                len: 4 * K,
            })
            .collect();
        let plan = plan_sg(gr, &list, u64::MAX).unwrap();
        let segs = finalise_sg(&plan, 0x1_0000, 8 * K, u64::MAX);
        assert_eq!(segs.len(), 2);
        assert!(segs.iter().all(|s| s.len == 8 * K));
    }

    #[test]
    fn sg_boundary_padding_and_no_merge_across_boundary() {
        let gr = g(4 * K);
        // 64 KiB boundary; elements of 12K, 12K, ... the 6th would cross 64K.
        let list: Vec<SgEntry> = (0..6)
            .map(|i| SgEntry {
                phys: 0x100_0000 * (i + 1),
                len: 12 * K,
            })
            .collect();
        let mask = 64 * K - 1;
        let plan = plan_sg(gr, &list, mask).unwrap();
        // 5 * 12K = 60K; the 6th (12K) is padded to start at 64K.
        assert_eq!(plan.slots[5].iova_off, 64 * K);
        assert_eq!(plan.slots[4].span, 16 * K);
        assert_eq!(plan.total, 76 * K);
        let base = 0x4_0000_0000; // aligned to the allocation's power-of-two size
        let segs = finalise_sg(&plan, base, u64::MAX, mask);
        for s in &segs {
            assert_eq!(
                s.addr / (64 * K),
                (s.addr + s.len - 1) / (64 * K),
                "crosses boundary: {s:?}"
            );
        }
        assert_eq!(segs.len(), 2);
        assert_eq!(segs[1].addr, base + 64 * K);
    }

    #[test]
    fn sg_with_granule_larger_than_cpu_page_moves_offset() {
        // 16K granule, 4K CPU pages: pages at odd 4K positions.
        let gr = g(16 * K);
        let list = [
            SgEntry {
                phys: 0x10_3000,
                len: 4 * K,
            }, // last page of a granule
            SgEntry {
                phys: 0x20_0000,
                len: 16 * K,
            },
            SgEntry {
                phys: 0x30_1000,
                len: 4 * K,
            }, // unaligned: new segment
        ];
        let plan = plan_sg(gr, &list, u64::MAX).unwrap();
        assert_eq!(plan.slots[0].data_off, 0x3000);
        assert_eq!(plan.slots[0].map_phys, 0x10_0000);
        assert_eq!(plan.slots[2].data_off, 0x1000);
        assert_eq!(plan.total, 48 * K);
        let segs = finalise_sg(&plan, 0x100_0000, u64::MAX, u64::MAX);
        assert_eq!(
            segs,
            vec![
                DmaSegment {
                    addr: 0x100_3000,
                    len: 20 * K
                },
                DmaSegment {
                    addr: 0x100_9000,
                    len: 4 * K
                },
            ]
        );
    }

    #[test]
    fn exposed_bytes_counts_only_foreign_memory() {
        assert_eq!(exposed_bytes(&[(0, 16 * K)], &[(4 * K, 4 * K)]), 12 * K);
        assert_eq!(
            exposed_bytes(&[(0, 16 * K), (8 * K, 16 * K)], &[(0, 24 * K)]),
            0
        );
        assert_eq!(
            exposed_bytes(&[(0, 8 * K)], &[(0, 2 * K), (K, 2 * K), (100 * K, 1)]),
            5 * K
        );
        assert_eq!(exposed_bytes(&[], &[(0, 8)]), 0);
    }

    /// Walk the DMA segments back to the data bytes they address, through the
    /// mappings of the plan, and compare with the scatterlist's bytes in order.
    fn resolve(plan: &SgPlan, base: u64, segs: &[DmaSegment]) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        for s in segs {
            let mut a = s.addr;
            let end = s.addr + s.len;
            while a < end {
                let slot = plan
                    .slots
                    .iter()
                    .find(|sl| a >= base + sl.iova_off && a < base + sl.iova_off + sl.map_len)
                    .expect("segment byte is not mapped");
                let within = a - (base + slot.iova_off);
                let n = (slot.map_len - within).min(end - a);
                out.push((slot.map_phys + within, n));
                a += n;
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn sg_segments_cover_exactly_the_data(
            shift in prop::sample::select(vec![12u32, 14, 16]),
            elems in prop::collection::vec((0u64..64, 0u64..0x4000, 1u64..0x9000), 1..12),
            bmask_shift in prop::sample::select(vec![16u32, 17, 20, 64]),
            max_seg in prop::sample::select(vec![0x1_0000u64, 0x2_0000, u64::MAX]),
        ) {
            let gr = g(1 << shift);
            let list: Vec<SgEntry> = elems.iter().map(|&(i, off, len)| SgEntry { phys: (i + 1) * 0x10_0000 + off, len }).collect();
            let mask = if bmask_shift == 64 { u64::MAX } else { (1u64 << bmask_shift) - 1 };
            prop_assume!(mask == u64::MAX || list.iter().all(|e| gr.align_up(gr.offset(e.phys) + e.len).unwrap() <= mask + 1));
            let plan = plan_sg(gr, &list, mask).unwrap();
            let base = plan.total.next_power_of_two() * 4;
            let segs = finalise_sg(&plan, base, max_seg, mask);
            // Data bytes, in order.
            let want: Vec<(u64, u64)> = list.iter().map(|e| (e.phys, e.len)).collect();
            let got = resolve(&plan, base, &segs);
            // Flatten both into byte runs and compare.
            let flat = |v: &[(u64, u64)]| { let mut o: Vec<(u64,u64)> = Vec::new(); for &(s,l) in v { match o.last_mut() { Some(x) if x.0 + x.1 == s => x.1 += l, _ => o.push((s,l)) } } o };
            prop_assert_eq!(flat(&got), flat(&want));
            for s in &segs {
                prop_assert!(s.len <= max_seg.max(list.iter().map(|e| e.len).max().unwrap()));
                if mask != u64::MAX {
                    prop_assert_eq!(s.addr & !mask, (s.addr + s.len - 1) & !mask, "segment crosses the boundary");
                }
            }
            prop_assert!(segs.len() <= list.len());
        }
    }
}
