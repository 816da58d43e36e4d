//! Simulated physical memory (ARCHITECTURE.md "The one rule"; issue "Foundation").
//!
//! [`SimMemory`] implements [`iommu_types::PhysMem`]:
//!
//! * **Sparse.** Memory is made of 64 KiB chunks created on first touch, so a 48-bit
//!   space costs memory only for the chunks in use. The chunks of the allocator's
//!   region (its first 16 GiB) are found through one flat index (4 MiB of host
//!   memory per `SimMemory`, one directory load on the hot path); everything else in
//!   the 52-bit space through a three-level radix tree (about 100 KiB per touched
//!   directory node).
//! * **Thread-safe.** Every 8-byte word is an [`AtomicU64`]: a hardware walker can
//!   read descriptors while a driver writes them. Loads are `Acquire`, stores
//!   `Release`, compare-exchange `AcqRel` (see the ordering notes of
//!   [`iommu_types::PhysMem`]). Byte copies are made of atomic word accesses, so
//!   concurrent writers of different bytes of one word never lose each other's bytes.
//! * **Checked.** Every access must fall into allocated (or explicitly placed) 4 KiB
//!   pages; anything else is [`Error::Unmapped`], the simulated equivalent of an
//!   external abort. Freed pages become unmapped again, so a hardware walk of a freed
//!   table is caught.
//! * **Accounted.** [`SimMemory::stats`] reports pages in use, the peak and the
//!   backing memory actually used.
//!
//! Chunks are never returned to the host allocator while the `SimMemory` lives
//! (freed pages are only marked absent and zeroed before reuse), which keeps the hot
//! path free of reclamation: a descriptor load is three directory loads plus the
//! word load.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

pub use iommu_types::{Error, PhysAddr, PhysMem, Result};

/// Size of the simulated page: the unit of allocation and presence tracking.
pub const PAGE_SIZE: u64 = 4096;
const PAGE_SHIFT: u32 = 12;
const CHUNK_SHIFT: u32 = 16;
const CHUNK_SIZE: u64 = 1 << CHUNK_SHIFT;
const WORDS_PER_CHUNK: usize = (CHUNK_SIZE / 8) as usize;
const LEVEL_BITS: u32 = 12;
const LEVEL_ENTRIES: usize = 1 << LEVEL_BITS;
/// How much of the allocator's region is indexed by the flat fast-path window
/// (16 GiB: a 4 MiB index); the rest, and memory placed outside the region, goes
/// through the three-level radix tree.
pub const MAX_WINDOW_BYTES: u64 = 16 << 30;
/// Largest physical address width supported (52 bits, as with FEAT_LPA).
pub const MAX_PA_BITS: u32 = CHUNK_SHIFT + 3 * LEVEL_BITS;
/// Most pages of one alignment gap kept for reuse by later 4 KiB allocations.
const MAX_GAP_PAGES: u64 = 512;

struct Chunk {
    /// Bit i set: page i (4 KiB) of the chunk is allocated.
    present: AtomicU16,
    /// The words, inline so that reaching one costs no extra dependent load.
    words: [AtomicU64; WORDS_PER_CHUNK],
}

impl Chunk {
    fn new_boxed() -> Box<Self> {
        Box::new(Self {
            present: AtomicU16::new(0),
            words: [const { AtomicU64::new(0) }; WORDS_PER_CHUNK],
        })
    }
}

type Leaf = Box<[OnceLock<Box<Chunk>>]>;
type Mid = Box<[OnceLock<Leaf>]>;

fn new_level<T>() -> Box<[OnceLock<T>]> {
    (0..LEVEL_ENTRIES).map(|_| OnceLock::new()).collect()
}

/// Where [`SimMemory`]'s allocator takes memory from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemConfig {
    /// First physical address the allocator hands out (4 KiB aligned).
    pub base: u64,
    /// Size of the allocatable region in bytes.
    pub size: u64,
}

impl Default for MemConfig {
    /// 64 GiB of allocatable address space starting at 2 GiB (nothing is backed until
    /// allocated).
    fn default() -> Self {
        Self {
            base: 0x8000_0000,
            size: 64 << 30,
        }
    }
}

/// Allocation and backing statistics of a [`SimMemory`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemStats {
    /// 4 KiB pages currently allocated (or placed).
    pub pages_in_use: u64,
    /// Highest value `pages_in_use` has reached.
    pub peak_pages: u64,
    /// Number of successful allocations.
    pub allocs: u64,
    /// Number of successful frees.
    pub frees: u64,
    /// Host memory backing the simulation (chunks plus directory nodes), in bytes.
    pub backing_bytes: u64,
}

#[derive(Default)]
struct Allocator {
    /// Next never-used address.
    bump: u64,
    /// Freed runs by size in bytes (addresses are reused only at the same size).
    free: BTreeMap<u64, Vec<u64>>,
    /// Live allocations: start -> size, to validate frees.
    live: BTreeMap<u64, u64>,
}

/// Sparse, thread-safe simulated physical memory. See the crate documentation.
pub struct SimMemory {
    top: Box<[OnceLock<Mid>]>,
    /// Flat index of the chunks of the allocator's region (its first
    /// [`MAX_WINDOW_BYTES`]): one directory load instead of three on the hot path.
    window: Box<[OnceLock<Box<Chunk>>]>,
    /// First chunk number covered by `window`.
    window_first_chunk: u64,
    config: MemConfig,
    alloc: Mutex<Allocator>,
    pages_in_use: AtomicU64,
    peak_pages: AtomicU64,
    allocs: AtomicU64,
    frees: AtomicU64,
    backing: AtomicU64,
}

impl std::fmt::Debug for SimMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimMemory")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Default for SimMemory {
    fn default() -> Self {
        Self::new()
    }
}

impl SimMemory {
    /// Memory with the default [`MemConfig`].
    pub fn new() -> Self {
        Self::with_config(MemConfig::default()).expect("default config is valid")
    }

    /// Memory whose allocator hands out `config.size` bytes from `config.base`.
    pub fn with_config(config: MemConfig) -> Result<Self> {
        let end = config.base.checked_add(config.size);
        if config.base % PAGE_SIZE != 0
            || config.size % PAGE_SIZE != 0
            || end.is_none_or(|e| e > 1u64 << MAX_PA_BITS)
        {
            return Err(Error::InvalidArgument(
                "memory region must be 4 KiB aligned and below 2^52",
            ));
        }
        let window_first_chunk = config.base >> CHUNK_SHIFT;
        let window_end = (config.base + config.size.min(MAX_WINDOW_BYTES)).div_ceil(CHUNK_SIZE);
        let window_len = (window_end - window_first_chunk) as usize;
        Ok(Self {
            top: new_level(),
            window: (0..window_len).map(|_| OnceLock::new()).collect(),
            window_first_chunk,
            config,
            alloc: Mutex::new(Allocator {
                bump: config.base,
                ..Default::default()
            }),
            pages_in_use: AtomicU64::new(0),
            peak_pages: AtomicU64::new(0),
            allocs: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            backing: AtomicU64::new(
                ((LEVEL_ENTRIES * std::mem::size_of::<OnceLock<Mid>>())
                    + window_len * std::mem::size_of::<OnceLock<Box<Chunk>>>())
                    as u64,
            ),
        })
    }

    /// The allocator's region.
    pub fn config(&self) -> MemConfig {
        self.config
    }

    /// Current statistics.
    pub fn stats(&self) -> MemStats {
        MemStats {
            pages_in_use: self.pages_in_use.load(Ordering::Relaxed),
            peak_pages: self.peak_pages.load(Ordering::Relaxed),
            allocs: self.allocs.load(Ordering::Relaxed),
            frees: self.frees.load(Ordering::Relaxed),
            backing_bytes: self.backing.load(Ordering::Relaxed),
        }
    }

    /// Whether the byte at `pa` is in allocated (or placed) memory.
    pub fn is_present(&self, pa: PhysAddr) -> bool {
        self.lookup(pa.0)
            .is_some_and(|c| c.present.load(Ordering::Acquire) & page_bit(pa.0) != 0)
    }

    /// Make `[pa, pa + bytes)` present at a fixed address, zero-filled, outside the
    /// allocator (for tests that build tables by hand at chosen addresses, or to model
    /// firmware-reserved memory). Fails if any page of it is already present or if the
    /// range overlaps the allocator's region.
    pub fn place(&self, pa: PhysAddr, bytes: u64) -> Result<()> {
        let (start, end) = page_span(pa.0, bytes)?;
        let region_end = self.config.base + self.config.size;
        if start < region_end && end > self.config.base {
            return Err(Error::InvalidArgument(
                "placed range overlaps the allocator region",
            ));
        }
        let _guard = self.alloc.lock().unwrap_or_else(|e| e.into_inner());
        for p in (start..end).step_by(PAGE_SIZE as usize) {
            if self.is_present(PhysAddr(p)) {
                return Err(Error::InvalidArgument(
                    "placed range overlaps present memory",
                ));
            }
        }
        self.set_present(start, end, true);
        Ok(())
    }

    /// Undo [`SimMemory::place`].
    pub fn unplace(&self, pa: PhysAddr, bytes: u64) -> Result<()> {
        let (start, end) = page_span(pa.0, bytes)?;
        let _guard = self.alloc.lock().unwrap_or_else(|e| e.into_inner());
        for p in (start..end).step_by(PAGE_SIZE as usize) {
            if !self.is_present(PhysAddr(p)) {
                return Err(Error::BadFree { pa: pa.0, bytes });
            }
        }
        self.zero_range(start, end);
        self.set_present(start, end, false);
        Ok(())
    }

    #[inline(always)]
    fn lookup(&self, pa: u64) -> Option<&Chunk> {
        let c = pa >> CHUNK_SHIFT;
        if let Some(slot) = self
            .window
            .get(c.wrapping_sub(self.window_first_chunk) as usize)
        {
            return slot.get().map(|b| &**b);
        }
        if pa >> MAX_PA_BITS != 0 {
            return None;
        }
        let i0 = (c >> (2 * LEVEL_BITS)) as usize;
        let i1 = ((c >> LEVEL_BITS) as usize) & (LEVEL_ENTRIES - 1);
        let i2 = (c as usize) & (LEVEL_ENTRIES - 1);
        let mid = self.top[i0].get()?;
        let leaf = mid[i1].get()?;
        leaf[i2].get().map(|b| &**b)
    }

    fn chunk_or_create(&self, pa: u64) -> &Chunk {
        let c = pa >> CHUNK_SHIFT;
        if let Some(slot) = self
            .window
            .get(c.wrapping_sub(self.window_first_chunk) as usize)
        {
            return slot.get_or_init(|| {
                self.backing.fetch_add(CHUNK_SIZE + 16, Ordering::Relaxed);
                Chunk::new_boxed()
            });
        }
        let i0 = (c >> (2 * LEVEL_BITS)) as usize;
        let i1 = ((c >> LEVEL_BITS) as usize) & (LEVEL_ENTRIES - 1);
        let i2 = (c as usize) & (LEVEL_ENTRIES - 1);
        let dir_bytes = (LEVEL_ENTRIES * std::mem::size_of::<OnceLock<Leaf>>()) as u64;
        let mid = self.top[i0].get_or_init(|| {
            self.backing.fetch_add(dir_bytes, Ordering::Relaxed);
            new_level()
        });
        let leaf = mid[i1].get_or_init(|| {
            self.backing.fetch_add(dir_bytes, Ordering::Relaxed);
            new_level()
        });
        leaf[i2].get_or_init(|| {
            self.backing.fetch_add(CHUNK_SIZE + 16, Ordering::Relaxed);
            Chunk::new_boxed()
        })
    }

    /// The chunk holding `pa` if the page of `pa` is present.
    #[inline(always)]
    fn present_chunk(&self, pa: u64) -> Option<&Chunk> {
        let chunk = self.lookup(pa)?;
        (chunk.present.load(Ordering::Relaxed) & page_bit(pa) != 0).then_some(chunk)
    }

    /// The atomic word holding `pa` (which must be 8-byte aligned and present).
    #[inline(always)]
    fn word(&self, pa: u64) -> Result<&AtomicU64> {
        let chunk = self.present_chunk(pa).ok_or(Error::Unmapped { pa })?;
        Ok(&chunk.words[((pa & (CHUNK_SIZE - 1)) >> 3) as usize])
    }

    fn set_present(&self, start: u64, end: u64, present: bool) {
        let mut p = start;
        while p < end {
            let chunk = self.chunk_or_create(p);
            let chunk_end = (p | (CHUNK_SIZE - 1)) + 1;
            let stop = end.min(chunk_end);
            let mut mask = 0u16;
            let mut q = p;
            while q < stop {
                mask |= page_bit(q);
                q += PAGE_SIZE;
            }
            if present {
                chunk.present.fetch_or(mask, Ordering::AcqRel);
            } else {
                chunk.present.fetch_and(!mask, Ordering::AcqRel);
            }
            p = stop;
        }
        let pages = (end - start) / PAGE_SIZE;
        if present {
            let now = self.pages_in_use.fetch_add(pages, Ordering::Relaxed) + pages;
            self.peak_pages.fetch_max(now, Ordering::Relaxed);
        } else {
            self.pages_in_use.fetch_sub(pages, Ordering::Relaxed);
        }
    }

    fn zero_range(&self, start: u64, end: u64) {
        let mut p = start;
        while p < end {
            let chunk_end = (p | (CHUNK_SIZE - 1)) + 1;
            let stop = end.min(chunk_end);
            if let Some(chunk) = self.lookup(p) {
                let first = ((p & (CHUNK_SIZE - 1)) >> 3) as usize;
                let last = first + ((stop - p) >> 3) as usize;
                for w in &chunk.words[first..last] {
                    w.store(0, Ordering::Relaxed);
                }
            }
            p = stop;
        }
    }

    /// Apply `f` to each (word, first byte index in word, byte count, offset in
    /// buffer) piece of `[pa, pa + len)`.
    fn for_each_piece(
        &self,
        pa: PhysAddr,
        len: usize,
        mut f: impl FnMut(&AtomicU64, usize, usize, usize),
    ) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        let start = pa.0;
        let end = start.checked_add(len as u64).ok_or(Error::OutOfRange {
            pa: start,
            len: len as u64,
        })?;
        // Validate the whole range first so that a failing copy changes nothing.
        let mut p = start & !(PAGE_SIZE - 1);
        while p < end {
            self.word(p)?;
            p += PAGE_SIZE;
        }
        let mut cur = start;
        let mut off = 0usize;
        while cur < end {
            let word_addr = cur & !7;
            let in_word = (cur - word_addr) as usize;
            let n = (8 - in_word).min((end - cur) as usize);
            f(self.word(word_addr)?, in_word, n, off);
            cur += n as u64;
            off += n;
        }
        Ok(())
    }
}

#[inline(always)]
fn page_bit(pa: u64) -> u16 {
    1u16 << ((pa >> PAGE_SHIFT) & 15)
}

fn page_span(pa: u64, bytes: u64) -> Result<(u64, u64)> {
    if bytes == 0 || pa % PAGE_SIZE != 0 {
        return Err(Error::InvalidArgument(
            "range must be non-empty and 4 KiB aligned",
        ));
    }
    let end = pa
        .checked_add(bytes.div_ceil(PAGE_SIZE) * PAGE_SIZE)
        .filter(|e| *e <= 1u64 << MAX_PA_BITS)
        .ok_or(Error::OutOfRange { pa, len: bytes })?;
    Ok((pa, end))
}

impl PhysMem for SimMemory {
    #[inline]
    fn read_u64(&self, pa: PhysAddr) -> Result<u64> {
        if pa.0 & 7 != 0 {
            return Err(Error::Misaligned { pa: pa.0, align: 8 });
        }
        Ok(self.word(pa.0)?.load(Ordering::Acquire))
    }

    #[inline]
    fn write_u64(&self, pa: PhysAddr, value: u64) -> Result<()> {
        if pa.0 & 7 != 0 {
            return Err(Error::Misaligned { pa: pa.0, align: 8 });
        }
        self.word(pa.0)?.store(value, Ordering::Release);
        Ok(())
    }

    #[inline]
    fn compare_exchange_u64(
        &self,
        pa: PhysAddr,
        current: u64,
        new: u64,
    ) -> Result<std::result::Result<u64, u64>> {
        if pa.0 & 7 != 0 {
            return Err(Error::Misaligned { pa: pa.0, align: 8 });
        }
        Ok(self
            .word(pa.0)?
            .compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire))
    }

    fn read_u32(&self, pa: PhysAddr) -> Result<u32> {
        if pa.0 & 3 != 0 {
            return Err(Error::Misaligned { pa: pa.0, align: 4 });
        }
        let w = self.word(pa.0 & !7)?.load(Ordering::Acquire);
        Ok((w >> ((pa.0 & 4) * 8)) as u32)
    }

    fn write_u32(&self, pa: PhysAddr, value: u32) -> Result<()> {
        if pa.0 & 3 != 0 {
            return Err(Error::Misaligned { pa: pa.0, align: 4 });
        }
        let shift = (pa.0 & 4) * 8;
        let mask = 0xffff_ffffu64 << shift;
        let word = self.word(pa.0 & !7)?;
        let _ = word.fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
            Some((w & !mask) | ((value as u64) << shift))
        });
        Ok(())
    }

    fn read_bytes(&self, pa: PhysAddr, buf: &mut [u8]) -> Result<()> {
        let len = buf.len();
        self.for_each_piece(pa, len, |word, in_word, n, off| {
            let bytes = word.load(Ordering::Acquire).to_le_bytes();
            buf[off..off + n].copy_from_slice(&bytes[in_word..in_word + n]);
        })
    }

    fn write_bytes(&self, pa: PhysAddr, buf: &[u8]) -> Result<()> {
        self.for_each_piece(pa, buf.len(), |word, in_word, n, off| {
            if n == 8 {
                let v = u64::from_le_bytes(buf[off..off + 8].try_into().expect("8 bytes"));
                word.store(v, Ordering::Release);
            } else {
                let _ = word.fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                    let mut b = w.to_le_bytes();
                    b[in_word..in_word + n].copy_from_slice(&buf[off..off + n]);
                    Some(u64::from_le_bytes(b))
                });
            }
        })
    }

    fn fill_bytes(&self, pa: PhysAddr, len: u64, byte: u8) -> Result<()> {
        let len = usize::try_from(len).map_err(|_| Error::OutOfRange { pa: pa.0, len })?;
        let pattern = [byte; 8];
        self.for_each_piece(pa, len, |word, in_word, n, _| {
            if n == 8 {
                word.store(u64::from_le_bytes(pattern), Ordering::Release);
            } else {
                let _ = word.fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                    let mut b = w.to_le_bytes();
                    b[in_word..in_word + n].fill(byte);
                    Some(u64::from_le_bytes(b))
                });
            }
        })
    }

    /// The words of a run inside one present page, checked once (presence, alignment,
    /// bounds) instead of once per word.
    #[inline(always)]
    fn words_in_page(&self, pa: PhysAddr, n: usize) -> Option<&[AtomicU64]> {
        let pa = pa.0;
        let first_off = pa & (PAGE_SIZE - 1);
        if pa & 7 != 0 || n as u64 > (PAGE_SIZE - first_off) >> 3 {
            return None;
        }
        let first = ((pa & (CHUNK_SIZE - 1)) >> 3) as usize;
        self.present_chunk(pa)
            .map(|chunk| &chunk.words[first..first + n])
    }

    fn alloc_pages(&self, bytes: u64, align: u64) -> Result<PhysAddr> {
        if bytes == 0 || !align.is_power_of_two() {
            return Err(Error::InvalidArgument(
                "allocation size must be non-zero and alignment a power of two",
            ));
        }
        let size = bytes
            .checked_next_multiple_of(PAGE_SIZE)
            .ok_or(Error::NoMemory { bytes })?;
        let align = align.max(PAGE_SIZE);
        let mut a = self.alloc.lock().unwrap_or_else(|e| e.into_inner());
        let reused = a.free.get_mut(&size).and_then(|list| {
            let pos = list.iter().rposition(|pa| pa % align == 0)?;
            Some(list.swap_remove(pos))
        });
        let pa = match reused {
            Some(pa) => {
                self.zero_range(pa, pa + size);
                pa
            }
            None => {
                let start = a
                    .bump
                    .checked_next_multiple_of(align)
                    .ok_or(Error::NoMemory { bytes })?;
                let end = start.checked_add(size).ok_or(Error::NoMemory { bytes })?;
                if end > self.config.base + self.config.size {
                    return Err(Error::NoMemory { bytes });
                }
                // Alignment gaps become reusable 4 KiB pages, at most
                // `MAX_GAP_PAGES` of them: a huge alignment must not cost time and
                // host memory in proportion to the address space it skips (the rest
                // of such a gap simply stays unused).
                let gap_end = start.min(a.bump.saturating_add(MAX_GAP_PAGES * PAGE_SIZE));
                let mut gap = a.bump;
                while gap < gap_end {
                    a.free.entry(PAGE_SIZE).or_default().push(gap);
                    gap += PAGE_SIZE;
                }
                a.bump = end;
                start
            }
        };
        a.live.insert(pa, size);
        self.set_present(pa, pa + size, true);
        self.allocs.fetch_add(1, Ordering::Relaxed);
        Ok(PhysAddr(pa))
    }

    fn free_pages(&self, pa: PhysAddr, bytes: u64) -> Result<()> {
        let size = bytes
            .checked_next_multiple_of(PAGE_SIZE)
            .ok_or(Error::BadFree { pa: pa.0, bytes })?;
        let mut a = self.alloc.lock().unwrap_or_else(|e| e.into_inner());
        match a.live.get(&pa.0) {
            Some(&s) if s == size => {}
            _ => return Err(Error::BadFree { pa: pa.0, bytes }),
        }
        a.live.remove(&pa.0);
        self.set_present(pa.0, pa.0 + size, false);
        a.free.entry(size).or_default().push(pa.0);
        self.frees.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
