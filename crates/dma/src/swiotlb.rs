//! swiotlb: a bounce-buffer pool in simulated physical memory (reference
//! `software.md` §5).
//!
//! * Slots of [`IO_TLB_SIZE`] (2 KiB); a bounce is a run of slots that never crosses
//!   a segment of [`IO_TLB_SEGSIZE`] (128) slots, so the largest bounce is 256 KiB.
//! * The slot run honours the caller's `alloc_align_mask` (any power of two up to a
//!   segment, e.g. a 16K or 64K IOMMU granule, which Linux's swiotlb cannot do for
//!   more than a page), and its size is rounded up to that alignment.
//! * The original address's bits under `min_align_mask` are kept in the bounce
//!   address: low bits as an offset into the run, higher bits by picking a run whose
//!   address agrees with them.
//! * Copies: map **always** copies original → bounce (even FROM_DEVICE, so a partial
//!   device write leaks no old bounce data and does not clobber the caller's tail);
//!   unmap copies back for FROM_DEVICE and BIDIRECTIONAL; `sync_for_device` copies in
//!   for TO_DEVICE and BIDIRECTIONAL; `sync_for_cpu` copies out for FROM_DEVICE and
//!   BIDIRECTIONAL.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use iommu_types::{PhysAddr, PhysMem};

use crate::dir::DmaDirection;
use crate::error::{Error, Result};

/// log2 of the slot size.
pub const IO_TLB_SHIFT: u32 = 11;
/// Size of one slot: 2 KiB.
pub const IO_TLB_SIZE: u64 = 1 << IO_TLB_SHIFT;
/// Slots per segment; a bounce never crosses a segment boundary.
pub const IO_TLB_SEGSIZE: u64 = 128;
/// Bytes per segment (256 KiB), the largest possible bounce.
pub const IO_TLB_SEGBYTES: u64 = IO_TLB_SIZE * IO_TLB_SEGSIZE;
/// Linux's default pool size, 64 MiB.
pub const IO_TLB_DEFAULT_SIZE: u64 = 64 << 20;

/// Alignment constraints of one bounce request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BounceAlign {
    /// The slot run must start on a multiple of `alloc_align_mask + 1` (0 = no
    /// constraint beyond the slot). Must be a power of two minus one.
    pub alloc_align_mask: u64,
    /// Bits of the original address to reproduce in the bounce address (the
    /// device's `min_align_mask`, e.g. NVMe's 4 KiB - 1).
    pub min_align_mask: u64,
}

/// One live bounce buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounce {
    /// The caller's buffer.
    pub orig: PhysAddr,
    /// Where the data sits in the pool (what gets mapped for the device).
    pub tlb: PhysAddr,
    /// Bytes of data.
    pub size: u64,
    /// Start of the slot run (aligned to `alloc_align_mask + 1`).
    pub run: PhysAddr,
    /// Bytes of the slot run.
    pub run_bytes: u64,
}

impl Bounce {
    fn contains(&self, pa: u64, len: u64) -> bool {
        pa >= self.tlb.0 && pa.saturating_add(len) <= self.tlb.0 + self.size
    }
}

/// Usage figures of a pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SwiotlbStats {
    /// Slots in the pool.
    pub total_slots: u64,
    /// Slots currently allocated.
    pub used_slots: u64,
    /// Highest `used_slots` seen.
    pub peak_slots: u64,
    /// Live bounce buffers.
    pub live: u64,
}

struct Inner {
    used: Vec<bool>,
    /// Live bounces by run start.
    live: BTreeMap<u64, Bounce>,
    hint: u64,
    used_slots: u64,
    peak_slots: u64,
}

/// A bounce-buffer pool carved out of [`PhysMem`].
pub struct Swiotlb {
    mem: Arc<dyn PhysMem>,
    base: u64,
    nslabs: u64,
    cpu_page: u64,
    inner: Mutex<Inner>,
}

impl core::fmt::Debug for Swiotlb {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Swiotlb")
            .field("base", &format_args!("{:#x}", self.base))
            .field("stats", &self.stats())
            .finish()
    }
}

impl Swiotlb {
    /// A pool of `bytes` (a multiple of one 256 KiB segment) allocated from `mem`,
    /// for a platform whose CPU page is `cpu_page` bytes. The pool is aligned to a
    /// segment so slot alignment and address alignment agree.
    pub fn new(mem: Arc<dyn PhysMem>, bytes: u64, cpu_page: u64) -> Result<Self> {
        if bytes == 0 || bytes % IO_TLB_SEGBYTES != 0 {
            return Err(Error::Invalid(
                "swiotlb size must be a non-zero multiple of 256 KiB",
            ));
        }
        if !cpu_page.is_power_of_two() || cpu_page < IO_TLB_SIZE {
            return Err(Error::Invalid(
                "CPU page size must be a power of two >= 2 KiB",
            ));
        }
        let base = mem.alloc_pages(bytes, IO_TLB_SEGBYTES)?;
        let nslabs = bytes / IO_TLB_SIZE;
        Ok(Self {
            mem,
            base: base.0,
            nslabs,
            cpu_page,
            inner: Mutex::new(Inner {
                used: vec![false; nslabs as usize],
                live: BTreeMap::new(),
                hint: 0,
                used_slots: 0,
                peak_slots: 0,
            }),
        })
    }

    /// Physical range of the pool.
    pub fn range(&self) -> (PhysAddr, u64) {
        (PhysAddr(self.base), self.nslabs * IO_TLB_SIZE)
    }

    /// Whether `pa` lies inside the pool (Linux `is_swiotlb_buffer`).
    pub fn contains(&self, pa: PhysAddr) -> bool {
        pa.0 >= self.base && pa.0 - self.base < self.nslabs * IO_TLB_SIZE
    }

    /// Largest bounce for a device with this `min_align_mask`
    /// (`256 KiB - roundup(min_align_mask, 2 KiB)`).
    pub fn max_mapping_size(min_align_mask: u64) -> u64 {
        let pad = min_align_mask.div_ceil(IO_TLB_SIZE) * IO_TLB_SIZE;
        IO_TLB_SEGBYTES.saturating_sub(pad)
    }

    /// Current usage.
    pub fn stats(&self) -> SwiotlbStats {
        let g = self.lock();
        SwiotlbStats {
            total_slots: self.nslabs,
            used_slots: g.used_slots,
            peak_slots: g.peak_slots,
            live: g.live.len() as u64,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bounce `size` bytes at `orig`: allocate a slot run meeting `align`, copy the
    /// original into it (whatever the direction) and return where the data sits.
    pub fn map(
        &self,
        orig: PhysAddr,
        size: u64,
        _dir: DmaDirection,
        align: BounceAlign,
    ) -> Result<Bounce> {
        if size == 0 {
            return Err(Error::Invalid("zero-length bounce"));
        }
        let mut amask = align.alloc_align_mask;
        if !(amask.wrapping_add(1)).is_power_of_two() {
            return Err(Error::Invalid(
                "alloc_align_mask must be a power of two minus one",
            ));
        }
        // Legacy rule: a buffer of at least a page with no other constraint is
        // page aligned.
        if amask == 0 && align.min_align_mask == 0 && size >= self.cpu_page {
            amask = self.cpu_page - 1;
        }
        let offset = orig.0 & align.min_align_mask & (amask | (IO_TLB_SIZE - 1));
        // Address bits the run itself must agree on with the original.
        let run_match = align.min_align_mask & !(amask | (IO_TLB_SIZE - 1));
        let unit = (amask + 1).max(IO_TLB_SIZE);
        let run_bytes = offset
            .checked_add(size)
            .and_then(|b| b.checked_next_multiple_of(unit))
            .ok_or(Error::Invalid("bounce size overflows"))?;
        let max = Self::max_mapping_size(align.min_align_mask);
        if run_bytes > IO_TLB_SEGBYTES || size > max {
            return Err(Error::SwiotlbTooLarge { bytes: size, max });
        }
        let nslots = run_bytes / IO_TLB_SIZE;
        let stride = (unit / IO_TLB_SIZE).max(1);
        let bounce = {
            let mut g = self.lock();
            let start =
                self.find_run(&g, nslots, stride, run_match, orig.0)
                    .ok_or(Error::SwiotlbFull {
                        bytes: run_bytes,
                        slots: nslots,
                    })?;
            for s in start..start + nslots {
                g.used[s as usize] = true;
            }
            g.used_slots += nslots;
            g.peak_slots = g.peak_slots.max(g.used_slots);
            g.hint = (start + nslots) % self.nslabs;
            let run = self.base + start * IO_TLB_SIZE;
            let b = Bounce {
                orig,
                tlb: PhysAddr(run + offset),
                size,
                run: PhysAddr(run),
                run_bytes,
            };
            g.live.insert(b.run.0, b);
            b
        };
        if let Err(e) = copy_phys(&*self.mem, bounce.tlb, orig, size) {
            self.release(bounce.run.0);
            return Err(e);
        }
        Ok(bounce)
    }

    fn find_run(
        &self,
        g: &Inner,
        nslots: u64,
        stride: u64,
        run_match: u64,
        orig: u64,
    ) -> Option<u64> {
        let n = self.nslabs;
        let first = (g.hint / stride) * stride;
        let candidates = n.div_ceil(stride);
        for k in 0..candidates {
            let start = (first + k * stride) % (candidates * stride);
            if start + nslots > n {
                continue;
            }
            if start / IO_TLB_SEGSIZE != (start + nslots - 1) / IO_TLB_SEGSIZE {
                continue;
            }
            let addr = self.base + start * IO_TLB_SIZE;
            if (addr ^ orig) & run_match != 0 {
                continue;
            }
            if g.used[start as usize..(start + nslots) as usize]
                .iter()
                .all(|u| !u)
            {
                return Some(start);
            }
        }
        None
    }

    fn release(&self, run: u64) -> Option<Bounce> {
        let mut g = self.lock();
        let b = g.live.remove(&run)?;
        let start = (b.run.0 - self.base) / IO_TLB_SIZE;
        let nslots = b.run_bytes / IO_TLB_SIZE;
        for s in start..start + nslots {
            g.used[s as usize] = false;
        }
        g.used_slots -= nslots;
        Some(b)
    }

    /// The live bounce containing `pa`, if any.
    pub fn find(&self, pa: PhysAddr) -> Option<Bounce> {
        let g = self.lock();
        g.live
            .range(..=pa.0)
            .next_back()
            .map(|(_, b)| *b)
            .filter(|b| pa.0 >= b.run.0 && pa.0 < b.run.0 + b.run_bytes)
    }

    /// End a bounce whose data starts at `tlb`: copy back for FROM_DEVICE and
    /// BIDIRECTIONAL (unless `skip_cpu_sync`), then free the slots.
    pub fn unmap(&self, tlb: PhysAddr, dir: DmaDirection, skip_cpu_sync: bool) -> Result<Bounce> {
        let b = self
            .find(tlb)
            .filter(|b| b.tlb == tlb)
            .ok_or(Error::NotBounced { pa: tlb.0 })?;
        let copied = if dir.device_writes() && !skip_cpu_sync {
            copy_phys(&*self.mem, b.orig, b.tlb, b.size)
        } else {
            Ok(())
        };
        self.release(b.run.0);
        copied.map(|()| b)
    }

    /// Make the CPU see what the device wrote to `[pa, pa + len)` of a bounce
    /// (copies for FROM_DEVICE and BIDIRECTIONAL).
    pub fn sync_for_cpu(&self, pa: PhysAddr, len: u64, dir: DmaDirection) -> Result<()> {
        let b = self.find_data(pa, len)?;
        if dir.device_writes() {
            copy_phys(&*self.mem, PhysAddr(b.orig.0 + (pa.0 - b.tlb.0)), pa, len)?;
        }
        Ok(())
    }

    /// Make the device see what the CPU wrote to the original of `[pa, pa + len)`
    /// (copies for TO_DEVICE and BIDIRECTIONAL).
    pub fn sync_for_device(&self, pa: PhysAddr, len: u64, dir: DmaDirection) -> Result<()> {
        let b = self.find_data(pa, len)?;
        if dir.device_reads() {
            copy_phys(&*self.mem, pa, PhysAddr(b.orig.0 + (pa.0 - b.tlb.0)), len)?;
        }
        Ok(())
    }

    fn find_data(&self, pa: PhysAddr, len: u64) -> Result<Bounce> {
        self.find(pa)
            .filter(|b| b.contains(pa.0, len))
            .ok_or(Error::NotBounced { pa: pa.0 })
    }
}

impl Drop for Swiotlb {
    fn drop(&mut self) {
        let _ = self
            .mem
            .free_pages(PhysAddr(self.base), self.nslabs * IO_TLB_SIZE);
    }
}

/// Copy `len` bytes from `src` to `dst` in simulated physical memory.
pub(crate) fn copy_phys(mem: &dyn PhysMem, dst: PhysAddr, src: PhysAddr, len: u64) -> Result<()> {
    let mut buf = [0u8; 4096];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(buf.len() as u64);
        let chunk = &mut buf[..n as usize];
        mem.read_bytes(PhysAddr(src.0 + done), chunk)?;
        mem.write_bytes(PhysAddr(dst.0 + done), chunk)?;
        done += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use iommu_memory::SimMemory;

    fn setup(bytes: u64) -> (Arc<SimMemory>, Swiotlb) {
        let mem = Arc::new(SimMemory::new());
        let pool = Swiotlb::new(mem.clone(), bytes, 4096).unwrap();
        (mem, pool)
    }

    fn buffer(mem: &SimMemory, bytes: u64, fill: u8) -> PhysAddr {
        let pa = mem.alloc_pages(bytes.max(4096), 4096).unwrap();
        mem.fill_bytes(pa, bytes, fill).unwrap();
        pa
    }

    fn read(mem: &SimMemory, pa: PhysAddr, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        mem.read_bytes(pa, &mut v).unwrap();
        v
    }

    #[test]
    fn constants_match_linux() {
        assert_eq!(IO_TLB_SIZE, 2048);
        assert_eq!(IO_TLB_SEGBYTES, 256 * 1024);
        assert_eq!(Swiotlb::max_mapping_size(0), 256 * 1024);
        assert_eq!(Swiotlb::max_mapping_size(0xfff), 256 * 1024 - 4096);
        assert_eq!(Swiotlb::max_mapping_size(1), 256 * 1024 - 2048);
    }

    #[test]
    fn map_copies_even_for_from_device_and_unmap_copies_back() {
        let (mem, pool) = setup(IO_TLB_SEGBYTES);
        let buf = buffer(&mem, 100, 0xaa);
        let b = pool
            .map(buf, 100, DmaDirection::FromDevice, BounceAlign::default())
            .unwrap();
        assert!(pool.contains(b.tlb));
        assert_eq!(
            read(&mem, b.tlb, 100),
            vec![0xaa; 100],
            "map always copies in"
        );
        mem.fill_bytes(b.tlb, 40, 0x55).unwrap(); // device writes a prefix
        pool.unmap(b.tlb, DmaDirection::FromDevice, false).unwrap();
        let got = read(&mem, buf, 100);
        assert_eq!(&got[..40], &[0x55; 40]);
        assert_eq!(&got[40..], &[0xaa; 60], "tail keeps the caller's data");
        assert_eq!(pool.stats().used_slots, 0);
    }

    #[test]
    fn to_device_unmap_does_not_copy_back_and_skip_sync_is_honoured() {
        let (mem, pool) = setup(IO_TLB_SEGBYTES);
        let buf = buffer(&mem, 64, 1);
        let b = pool
            .map(buf, 64, DmaDirection::ToDevice, BounceAlign::default())
            .unwrap();
        mem.fill_bytes(b.tlb, 64, 9).unwrap();
        pool.unmap(b.tlb, DmaDirection::ToDevice, false).unwrap();
        assert_eq!(read(&mem, buf, 64), vec![1; 64]);
        let b = pool
            .map(buf, 64, DmaDirection::Bidirectional, BounceAlign::default())
            .unwrap();
        mem.fill_bytes(b.tlb, 64, 9).unwrap();
        pool.unmap(b.tlb, DmaDirection::Bidirectional, true)
            .unwrap();
        assert_eq!(read(&mem, buf, 64), vec![1; 64], "SKIP_CPU_SYNC");
    }

    #[test]
    fn sync_copies_per_direction() {
        let (mem, pool) = setup(IO_TLB_SEGBYTES);
        let buf = buffer(&mem, 256, 1);
        for dir in [
            DmaDirection::ToDevice,
            DmaDirection::FromDevice,
            DmaDirection::Bidirectional,
        ] {
            mem.fill_bytes(buf, 256, 1).unwrap();
            let b = pool.map(buf, 256, dir, BounceAlign::default()).unwrap();
            // CPU updates its buffer, then hands it to the device.
            mem.fill_bytes(buf, 256, 2).unwrap();
            pool.sync_for_device(PhysAddr(b.tlb.0 + 16), 32, dir)
                .unwrap();
            let seen = read(&mem, PhysAddr(b.tlb.0 + 16), 32);
            assert_eq!(
                seen,
                vec![if dir.device_reads() { 2 } else { 1 }; 32],
                "{dir:?}"
            );
            // Device writes, CPU syncs.
            mem.fill_bytes(b.tlb, 256, 3).unwrap();
            pool.sync_for_cpu(b.tlb, 8, dir).unwrap();
            let cpu = read(&mem, buf, 9);
            assert_eq!(cpu[0], if dir.device_writes() { 3 } else { 2 }, "{dir:?}");
            assert_eq!(cpu[8], 2, "only the synced range is copied");
            pool.unmap(b.tlb, dir, true).unwrap();
        }
        assert!(pool.sync_for_cpu(buf, 1, DmaDirection::FromDevice).is_err());
    }

    #[test]
    fn alignment_to_a_large_granule_and_min_align_mask() {
        let (mem, pool) = setup(4 * IO_TLB_SEGBYTES);
        let buf = PhysAddr(buffer(&mem, 0x10000, 0).0 + 0x1234);
        // A 64K granule: run aligned to 64K and sized in 64K units.
        let align = BounceAlign {
            alloc_align_mask: 0xffff,
            min_align_mask: 0xffff,
        };
        let b = pool.map(buf, 0x100, DmaDirection::ToDevice, align).unwrap();
        assert_eq!(b.run.0 % 0x10000, 0);
        assert_eq!(b.run_bytes, 0x10000);
        assert_eq!(
            b.tlb.0 & 0xffff,
            buf.0 & 0xffff,
            "offset in the granule kept"
        );
        // NVMe-like min_align_mask without alloc alignment: bits 11..0 kept.
        let b2 = pool
            .map(
                buf,
                0x100,
                DmaDirection::ToDevice,
                BounceAlign {
                    alloc_align_mask: 0,
                    min_align_mask: 0xfff,
                },
            )
            .unwrap();
        assert_eq!(b2.tlb.0 & 0xfff, buf.0 & 0xfff);
        assert_eq!(b2.run.0 % IO_TLB_SIZE, 0);
        // Legacy: >= one page, no constraint, page aligned.
        let b3 = pool
            .map(
                PhysAddr(buf.0 - 0x234),
                0x2000,
                DmaDirection::ToDevice,
                BounceAlign::default(),
            )
            .unwrap();
        assert_eq!(b3.tlb.0 % 4096, 0);
        for b in [b, b2, b3] {
            pool.unmap(b.tlb, DmaDirection::ToDevice, false).unwrap();
        }
    }

    #[test]
    fn runs_never_cross_a_segment_and_exhaustion_is_an_error() {
        let (mem, pool) = setup(2 * IO_TLB_SEGBYTES);
        let buf = buffer(&mem, IO_TLB_SEGBYTES, 7);
        // 100 slots, then 100 slots: the second cannot fit in the rest of segment 0.
        let a = pool
            .map(
                buf,
                100 * IO_TLB_SIZE,
                DmaDirection::ToDevice,
                BounceAlign::default(),
            )
            .unwrap();
        let b = pool
            .map(
                buf,
                100 * IO_TLB_SIZE,
                DmaDirection::ToDevice,
                BounceAlign::default(),
            )
            .unwrap();
        for x in [a, b] {
            let first = (x.run.0 - pool.range().0.0) / IO_TLB_SEGBYTES;
            let last = (x.run.0 + x.run_bytes - 1 - pool.range().0.0) / IO_TLB_SEGBYTES;
            assert_eq!(first, last);
        }
        let err = pool
            .map(
                buf,
                100 * IO_TLB_SIZE,
                DmaDirection::ToDevice,
                BounceAlign::default(),
            )
            .unwrap_err();
        assert!(
            matches!(err, Error::SwiotlbFull { slots: 100, .. }),
            "{err:?}"
        );
        assert_eq!(err.errno(), iommu_types::Errno::ENOMEM);
        let big = pool
            .map(
                buf,
                IO_TLB_SEGBYTES + 1,
                DmaDirection::ToDevice,
                BounceAlign::default(),
            )
            .unwrap_err();
        assert!(matches!(big, Error::SwiotlbTooLarge { .. }));
        // Nothing live was disturbed by the failures.
        assert_eq!(pool.stats().live, 2);
        assert_eq!(read(&mem, a.tlb, 16), vec![7; 16]);
        pool.unmap(a.tlb, DmaDirection::ToDevice, false).unwrap();
        pool.unmap(b.tlb, DmaDirection::ToDevice, false).unwrap();
        assert_eq!(pool.stats().used_slots, 0);
        assert!(
            pool.unmap(a.tlb, DmaDirection::ToDevice, false).is_err(),
            "double unmap"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        #[test]
        fn random_bounces_respect_alignment_segments_and_never_overlap(
            ops in proptest::collection::vec(
                (0u64..0x20000, 1u64..0x9000, 0usize..5, 0usize..3, proptest::bool::ANY), 1..40)
        ) {
            let (mem, pool) = setup(4 * IO_TLB_SEGBYTES);
            let src = mem.alloc_pages(0x40000, 0x10000).unwrap();
            mem.write_bytes(src, &(0..0x40000u32).map(|i| (i * 7 + 3) as u8).collect::<Vec<_>>()).unwrap();
            let aligns = [0u64, 0xfff, 0x3fff, 0xffff, 0x3ffff];
            let mins = [0u64, 0x7ff, 0xfff];
            let mut live: Vec<Bounce> = Vec::new();
            for (off, len, a, m, unmap) in ops {
                if unmap && !live.is_empty() {
                    let b = live.remove(off as usize % live.len());
                    pool.unmap(b.tlb, DmaDirection::ToDevice, false).unwrap();
                    continue;
                }
                let align = BounceAlign { alloc_align_mask: aligns[a], min_align_mask: mins[m] };
                let orig = PhysAddr(src.0 + off);
                match pool.map(orig, len, DmaDirection::ToDevice, align) {
                    Ok(b) => {
                        proptest::prop_assert_eq!(b.run.0 & aligns[a], 0);
                        proptest::prop_assert_eq!(b.tlb.0 & mins[m], orig.0 & mins[m]);
                        proptest::prop_assert!(b.tlb.0 + len <= b.run.0 + b.run_bytes);
                        let base = pool.range().0.0;
                        proptest::prop_assert_eq!((b.run.0 - base) / IO_TLB_SEGBYTES, (b.run.0 + b.run_bytes - 1 - base) / IO_TLB_SEGBYTES);
                        for o in &live {
                            proptest::prop_assert!(b.run.0 + b.run_bytes <= o.run.0 || o.run.0 + o.run_bytes <= b.run.0, "overlap");
                        }
                        let n = len.min(64) as usize;
                        proptest::prop_assert_eq!(read(&mem, b.tlb, n), read(&mem, orig, n));
                        live.push(b);
                    }
                    Err(Error::SwiotlbFull { .. }) | Err(Error::SwiotlbTooLarge { .. }) => {}
                    Err(e) => proptest::prop_assert!(false, "unexpected {e:?}"),
                }
                let used: u64 = live.iter().map(|b| b.run_bytes / IO_TLB_SIZE).sum();
                proptest::prop_assert_eq!(pool.stats().used_slots, used);
            }
        }
    }
}
