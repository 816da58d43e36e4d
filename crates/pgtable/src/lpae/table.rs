//! The LPAE table itself: map, unmap, translate and dirty tracking over descriptors
//! stored in [`PhysMem`] (reference `lpae.md` §6; Linux `io-pgtable-arm.c` semantics).
//!
//! Concurrency: every operation takes `&self`. Next-level tables are installed with a
//! compare-and-swap, so threads mapping disjoint ranges can race on the same empty
//! entry (the loser frees its table and uses the winner's). Leaves are written with
//! plain stores: two callers never own the same leaf slot. As in Linux, mapping and
//! unmapping *overlapping* ranges concurrently is a caller bug.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ops::Deref;
use core::sync::atomic::Ordering;

use iommu_types::{Iova, PgSizeBitmap, PhysAddr, PhysMem, Prot};

use super::config::{Geometry, LpaeConfig, Quirks, Stage};
use super::hwcfg::{self, HwConfig, S1HwConfig, S2HwConfig};
use super::pte::{self, Pte};
use super::walk_cache::WalkCache;
use crate::IoPgtable;
use crate::error::{Error, Result};
use crate::gather::{FlushOps, FreedTable, IotlbGather};

/// An ARM VMSAv8-64 LPAE stage-1 or stage-2 IO page table.
///
/// `M` is a handle to the memory holding the descriptors (`&SimMemory`,
/// `Arc<SimMemory>`, `Arc<dyn PhysMem>`, ...); the hot path is monomorphised over it.
/// Dropping the table first calls [`FlushOps::tlb_flush_all`] (as Linux's
/// `free_io_pgtable_ops` does), then frees every table page it still owns (not the
/// pages handed out through an [`IotlbGather::freelist`], which belong to whoever
/// completes the flush).
pub struct LpaeTable<M>
where
    M: Deref<Target: PhysMem> + Send + Sync,
{
    mem: M,
    geo: Geometry,
    root: u64,
    flush: Arc<dyn FlushOps>,
    cache: WalkCache,
}

impl<M> core::fmt::Debug for LpaeTable<M>
where
    M: Deref<Target: PhysMem> + Send + Sync,
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LpaeTable")
            .field("geometry", &self.geo)
            .field("root", &format_args!("{:#x}", self.root))
            .finish()
    }
}

impl<M> LpaeTable<M>
where
    M: Deref<Target: PhysMem> + Send + Sync,
{
    /// Validate `cfg`, allocate the (empty) root table in `mem` and return the table.
    pub fn new(cfg: LpaeConfig, mem: M, flush: Arc<dyn FlushOps>) -> Result<Self> {
        let geo = cfg.geometry()?;
        let bytes = geo.table_bytes(geo.start_level);
        let root = mem.alloc_pages(bytes, bytes.max(64))?;
        Ok(Self {
            mem,
            geo,
            root: root.0,
            flush,
            cache: WalkCache::default(),
        })
    }

    /// The validated geometry.
    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }

    /// Physical address of the root table.
    pub fn root(&self) -> PhysAddr {
        PhysAddr(self.root)
    }

    /// The memory the table lives in.
    pub fn mem(&self) -> &M::Target {
        &self.mem
    }

    /// Stage-1 register values (`None` for a stage-2 table).
    pub fn s1_config(&self) -> Option<S1HwConfig> {
        (self.geo.stage == Stage::S1).then(|| hwcfg::s1_config(&self.geo, self.root))
    }

    /// Stage-2 register values (`None` for a stage-1 table).
    pub fn s2_config(&self) -> Option<S2HwConfig> {
        (self.geo.stage == Stage::S2).then(|| hwcfg::s2_config(&self.geo, self.root))
    }

    #[inline(always)]
    fn read(&self, pa: u64) -> Result<u64> {
        Ok(self.mem.read_u64(PhysAddr(pa))?)
    }

    #[inline(always)]
    fn write(&self, pa: u64, v: u64) -> Result<()> {
        Ok(self.mem.write_u64(PhysAddr(pa), v)?)
    }

    fn table_desc(&self, table: u64) -> u64 {
        let mut d = Pte::addr_bits(table, self.geo.granule) | pte::TYPE_TABLE;
        if self.geo.quirks.contains(Quirks::ARM_NS) {
            d |= pte::NSTABLE;
        }
        if !self.geo.coherent_walk {
            // Linux marks table entries of non-coherent walkers once cleaned to memory;
            // simulated memory is always clean, so the mark is set at install time.
            d |= pte::SW_SYNC;
        }
        d
    }

    /// The walk-cache key of the table at `level` (> start level) covering `iova`.
    #[inline(always)]
    fn cache_key(&self, iova: u64, level: u32) -> u64 {
        let in_range = iova & ((1u64 << self.geo.ias) - 1);
        in_range >> self.geo.level_shift(level - 1)
    }

    /// The deepest table covering `iova` known to the walk cache (or the root), and its
    /// level. Read-only: lookups never fill the cache.
    #[inline(always)]
    fn cached_start(&self, iova: u64) -> (u64, u32) {
        self.cached_at_or_above(iova, 3)
    }

    /// The deepest table at level `max` or above covering `iova` that the walk cache
    /// knows (or the root), and its level.
    #[inline(always)]
    fn cached_at_or_above(&self, iova: u64, max: u32) -> (u64, u32) {
        let start = self.geo.start_level;
        let mut level = max;
        while level > start {
            if let Some(t) = self.cache.get(level, self.cache_key(iova, level)) {
                return (t, level);
            }
            level -= 1;
        }
        (self.root, start)
    }

    /// Put the tables a successful walk went through into the walk cache.
    #[inline]
    fn remember(&self, iova: u64, found: &[u64; 4]) {
        for (level, &t) in found.iter().enumerate() {
            if t != 0 {
                self.cache
                    .put(level as u32, self.cache_key(iova, level as u32), t);
            }
        }
    }

    /// Walk to the table at `target` level covering `iova`: from the walk cache when it
    /// knows that table, otherwise down from the deepest table it knows (or the root).
    ///
    /// With `ALLOC`, missing tables are created (a leaf in the way is `Exists`) and the
    /// answer is always `Some`. Without, nothing is written: an empty entry or a leaf in
    /// the way (a larger block: partial unmap) gives `Ok(None)`.
    #[inline]
    fn walk<const ALLOC: bool>(&self, iova: u64, target: u32) -> Result<Option<u64>> {
        if target == self.geo.start_level {
            return Ok(Some(self.root));
        }
        if let Some(t) = self.cache.get(target, self.cache_key(iova, target)) {
            return Ok(Some(t));
        }
        self.walk_slow::<ALLOC>(iova, target)
    }

    fn walk_slow<const ALLOC: bool>(&self, iova: u64, target: u32) -> Result<Option<u64>> {
        let g = &self.geo;
        let (mut table, mut level) = self.cached_at_or_above(iova, target - 1);
        let mut found = [0u64; 4];
        while level < target {
            let slot = table + 8 * g.index(iova, level);
            let mut p = self.read(slot)?;
            if p == 0 && ALLOC {
                p = self.install_table(slot)?;
            }
            if !Pte(p).is_table(level) {
                return if ALLOC {
                    Err(Error::Exists(iova))
                } else {
                    Ok(None)
                };
            }
            table = Pte(p).addr(g.granule);
            level += 1;
            found[level as usize] = table;
        }
        // Only a walk that reached its target fills the cache: one that stopped part
        // way may have met a bad descriptor.
        self.remember(iova, &found);
        Ok(Some(table))
    }

    /// Allocate a next-level table and install it in the empty entry `slot`; returns
    /// the descriptor now there (another mapper's table if it won the race).
    fn install_table(&self, slot: u64) -> Result<u64> {
        let bytes = self.geo.granule.bytes();
        let new = self.mem.alloc_pages(bytes, bytes)?;
        let desc = self.table_desc(new.0);
        match self.mem.compare_exchange_u64(PhysAddr(slot), 0, desc)? {
            Ok(_) => Ok(desc),
            Err(actual) => {
                // Another mapper installed a table first: use theirs.
                self.mem.free_pages(new, bytes)?;
                Ok(actual)
            }
        }
    }

    /// `Exists` if a leaf already maps part of `pgcount` entries of `pgsize` from
    /// `iova` (a leaf at `level`, or a larger block above it). Allocates nothing.
    fn check_free(&self, iova: u64, pgsize: u64, pgcount: u64, level: u32) -> Result<()> {
        let g = &self.geo;
        let mut done = 0;
        while done < pgcount {
            let cur = iova.wrapping_add(done * pgsize);
            let idx = g.index(cur, level);
            let n = (pgcount - done).min(g.entries(level) - idx);
            // Descend as far as tables exist.
            let mut table = self.root;
            let mut l = g.start_level;
            let mut reached = true;
            while l < level {
                let p = self.read(table + 8 * g.index(cur, l))?;
                if p == 0 {
                    reached = false;
                    break;
                }
                if !Pte(p).is_table(l) {
                    return Err(Error::Exists(cur));
                }
                table = Pte(p).addr(g.granule);
                l += 1;
            }
            if reached {
                for i in 0..n {
                    let p = self.read(table + 8 * (idx + i))?;
                    if p != 0 && !Pte(p).is_table(level) {
                        return Err(Error::Exists(cur.wrapping_add(i * pgsize)));
                    }
                }
            }
            done += n;
        }
        Ok(())
    }

    /// Write `n` consecutive leaves into one table, starting at `idx`.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn install_leaves(
        &self,
        table: u64,
        idx: u64,
        n: u64,
        iova: u64,
        paddr: u64,
        pgsize: u64,
        level: u32,
        attrs: u64,
    ) -> Result<()> {
        let base = table + 8 * idx;
        if let Some(words) = self.mem.words_in_page(PhysAddr(base), n as usize) {
            // Fast path: the run was checked once (present, inside one table page).
            // Same accesses as below: Acquire loads, Release stores.
            let mut any_table = false;
            for (i, w) in words.iter().enumerate() {
                let p = w.load(Ordering::Acquire);
                if p != 0 {
                    if Pte(p).is_table(level) {
                        any_table = true;
                    } else {
                        return Err(Error::Exists(iova.wrapping_add(i as u64 * pgsize)));
                    }
                }
            }
            if !any_table {
                let granule = self.geo.granule;
                let mut pa = paddr;
                for w in words {
                    w.store(attrs | Pte::addr_bits(pa, granule), Ordering::Release);
                    pa = pa.wrapping_add(pgsize);
                }
                return Ok(());
            }
            // Tables to replace: the general path below (rare).
        }
        let mut any_table = false;
        for i in 0..n {
            let p = self.read(base + 8 * i)?;
            if p != 0 {
                if Pte(p).is_table(level) {
                    any_table = true;
                } else {
                    return Err(Error::Exists(iova.wrapping_add(i * pgsize)));
                }
            }
        }
        let granule = self.geo.granule;
        for i in 0..n {
            let slot = base + 8 * i;
            if any_table {
                let p = self.read(slot)?;
                if Pte(p).is_table(level) {
                    // A block replaces a table: unmap and free everything below it.
                    self.write(slot, 0)?;
                    self.cache.clear();
                    let at = iova.wrapping_add(i * pgsize);
                    self.flush.tlb_flush_walk(Iova(at), pgsize, granule.bytes());
                    self.free_subtree(Pte(p).addr(granule), level + 1);
                }
            }
            self.write(slot, attrs | Pte::addr_bits(paddr + i * pgsize, granule))?;
        }
        Ok(())
    }

    /// Free a table and every table below it (errors are ignored: the memory is gone
    /// from the table either way).
    fn free_subtree(&self, table: u64, level: u32) {
        let mut list = Vec::new();
        self.collect_subtree(table, level, &mut list);
        for t in list {
            let _ = self.mem.free_pages(t.pa, t.bytes);
        }
    }

    /// Append a non-root table and every table below it to `out`.
    fn collect_subtree(&self, table: u64, level: u32, out: &mut Vec<FreedTable>) {
        if level < 3 {
            for i in 0..self.geo.entries(level) {
                if let Ok(p) = self.read(table + 8 * i) {
                    if Pte(p).is_table(level) {
                        self.collect_subtree(Pte(p).addr(self.geo.granule), level + 1, out);
                    }
                }
            }
        }
        out.push(FreedTable {
            pa: PhysAddr(table),
            bytes: self.geo.granule.bytes(),
        });
    }

    /// Clear up to `n` entries from `idx` (stopping at the first empty one) and tell
    /// the flush ops; returns how many were cleared.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn clear_entries(
        &self,
        table: u64,
        idx: u64,
        n: u64,
        iova: u64,
        pgsize: u64,
        level: u32,
        gather: &mut IotlbGather,
    ) -> u64 {
        let base = table + 8 * idx;
        if let Some(words) = self.mem.words_in_page(PhysAddr(base), n as usize) {
            // Fast path: the run was checked once (present, inside one table page).
            // Same accesses as below: an Acquire load, then a Release store of zero.
            for (i, w) in words.iter().enumerate() {
                let p = w.load(Ordering::Acquire);
                if p == 0 {
                    return i as u64;
                }
                w.store(0, Ordering::Release);
                let at = Iova(iova.wrapping_add(i as u64 * pgsize));
                self.cleared(p, at, pgsize, level, gather);
            }
            return n;
        }
        for i in 0..n {
            let slot = base + 8 * i;
            let Ok(p) = self.read(slot) else { return i };
            if p == 0 || self.write(slot, 0).is_err() {
                return i;
            }
            let at = Iova(iova.wrapping_add(i * pgsize));
            self.cleared(p, at, pgsize, level, gather);
        }
        n
    }

    /// Tell the flush ops (or the gather) that entry `p` covering `pgsize` bytes at
    /// `at` was cleared; a table entry's sub-tables are freed or queued for freeing.
    #[inline(always)]
    fn cleared(&self, p: u64, at: Iova, pgsize: u64, level: u32, gather: &mut IotlbGather) {
        if Pte(p).is_table(level) {
            self.table_cleared(p, at, pgsize, level, gather);
        } else if !gather.queued {
            self.flush.tlb_add_page(gather, at, pgsize);
        }
    }

    /// [`Self::cleared`] for a table entry: a whole sub-table went away.
    #[cold]
    fn table_cleared(&self, p: u64, at: Iova, pgsize: u64, level: u32, gather: &mut IotlbGather) {
        let granule = self.geo.granule;
        self.cache.clear();
        // A whole sub-table goes: the walk caches must forget it, at every level
        // (seed 001), before its pages may be reused.
        gather.add_table(at, pgsize);
        if gather.queued {
            self.collect_subtree(Pte(p).addr(granule), level + 1, &mut gather.freelist);
        } else {
            self.flush.tlb_flush_walk(at, pgsize, granule.bytes());
            self.free_subtree(Pte(p).addr(granule), level + 1);
        }
    }

    /// Map `pgcount` pages of `pgsize` bytes from `iova` to `paddr` (see [`IoPgtable`]).
    #[inline]
    pub fn map(
        &self,
        iova: Iova,
        paddr: PhysAddr,
        pgsize: u64,
        pgcount: u64,
        prot: Prot,
    ) -> (u64, Result<()>) {
        let g = &self.geo;
        let Some(level) = g.level_of_size(pgsize) else {
            return (0, Err(Error::BadPageSize(pgsize)));
        };
        if !prot.is_accessible() {
            return (0, Err(Error::NoAccess));
        }
        if pgcount == 0 {
            return (0, Ok(()));
        }
        let (iova, paddr) = (iova.0, paddr.0);
        let Some(len) = pgsize.checked_mul(pgcount) else {
            return (
                0,
                Err(Error::IovaOutOfRange {
                    iova,
                    len: u64::MAX,
                }),
            );
        };
        if (iova | paddr) & (pgsize - 1) != 0 {
            return (
                0,
                Err(Error::Misaligned {
                    iova,
                    paddr,
                    pgsize,
                }),
            );
        }
        if !g.iova_range_ok(iova, len) {
            return (0, Err(Error::IovaOutOfRange { iova, len }));
        }
        if !g.paddr_range_ok(paddr, len) {
            return (0, Err(Error::PaddrOutOfRange { paddr, len }));
        }
        if g.index(iova, level) + pgcount > g.entries(level) {
            // The range spans several tables: refuse it whole before writing any.
            if let Err(e) = self.check_free(iova, pgsize, pgcount, level) {
                return (0, Err(e));
            }
        }
        let attrs = pte::prot_to_attrs(g, prot)
            | if level == 3 {
                pte::TYPE_PAGE
            } else {
                pte::TYPE_BLOCK
            };
        let mut done = 0;
        while done < pgcount {
            let cur = iova.wrapping_add(done * pgsize);
            let idx = g.index(cur, level);
            let n = (pgcount - done).min(g.entries(level) - idx);
            let res = self.walk::<true>(cur, level).and_then(|t| {
                let t = t.ok_or(Error::Exists(cur))?;
                self.install_leaves(t, idx, n, cur, paddr + done * pgsize, pgsize, level, attrs)
            });
            if let Err(e) = res {
                return (done * pgsize, Err(e));
            }
            done += n;
        }
        (len, Ok(()))
    }

    /// Unmap `pgcount` entries of `pgsize` bytes from `iova` (see [`IoPgtable`]).
    #[inline]
    pub fn unmap(&self, iova: Iova, pgsize: u64, pgcount: u64, gather: &mut IotlbGather) -> u64 {
        let g = &self.geo;
        let Some(level) = g.level_of_size(pgsize) else {
            return 0;
        };
        let iova = iova.0;
        let Some(len) = pgsize.checked_mul(pgcount) else {
            return 0;
        };
        if pgcount == 0 || iova & (pgsize - 1) != 0 || !g.iova_range_ok(iova, len) {
            return 0;
        }
        let mut done = 0;
        while done < pgcount {
            let cur = iova.wrapping_add(done * pgsize);
            let Ok(Some(table)) = self.walk::<false>(cur, level) else {
                break;
            };
            let idx = g.index(cur, level);
            let n = (pgcount - done).min(g.entries(level) - idx);
            let k = self.clear_entries(table, idx, n, cur, pgsize, level, gather);
            done += k;
            if k < n {
                break;
            }
        }
        done * pgsize
    }

    /// Translate `iova` by walking the table (see [`IoPgtable`]).
    #[inline]
    pub fn translate(&self, iova: Iova) -> Option<PhysAddr> {
        let g = &self.geo;
        let iova = iova.0;
        if !g.iova_ok(iova) {
            return None;
        }
        let (mut table, mut level) = self.cached_start(iova);
        loop {
            let p = Pte(self.read(table + 8 * g.index(iova, level)).ok()?);
            if !p.is_valid() {
                return None;
            }
            if p.is_leaf(level) {
                let size = g.block_size(level);
                return Some(PhysAddr(p.addr(g.granule) | (iova & (size - 1))));
            }
            if level == 3 {
                return None;
            }
            table = p.addr(g.granule);
            level += 1;
        }
    }

    /// Report (and optionally clean) dirty leaves in `[iova, iova + size)`.
    pub fn dirty(
        &self,
        iova: Iova,
        size: u64,
        clear: bool,
        record: &mut dyn FnMut(Iova, u64),
    ) -> Result<()> {
        let g = &self.geo;
        if g.stage != Stage::S1 || !g.quirks.contains(Quirks::ARM_HD) {
            return Err(Error::NotSupported(
                "dirty tracking needs a stage-1 table with the ARM_HD quirk",
            ));
        }
        let gran = g.granule.bytes();
        if size == 0 || (iova.0 | size) & (gran - 1) != 0 {
            return Err(Error::Misaligned {
                iova: iova.0,
                paddr: 0,
                pgsize: gran,
            });
        }
        if !g.iova_range_ok(iova.0, size) {
            return Err(Error::IovaOutOfRange {
                iova: iova.0,
                len: size,
            });
        }
        self.dirty_walk(
            self.root,
            g.start_level,
            iova.0,
            iova.0 + (size - 1),
            clear,
            record,
        )
    }

    fn dirty_walk(
        &self,
        table: u64,
        level: u32,
        start: u64,
        last: u64,
        clear: bool,
        record: &mut dyn FnMut(Iova, u64),
    ) -> Result<()> {
        let g = &self.geo;
        let size = g.block_size(level);
        let mut cur = start;
        loop {
            let slot = table + 8 * g.index(cur, level);
            let p = self.read(slot)?;
            let entry_base = cur & !(size - 1);
            let sub_last = last.min(entry_base + (size - 1));
            if Pte(p).is_table(level) {
                self.dirty_walk(
                    Pte(p).addr(g.granule),
                    level + 1,
                    cur,
                    sub_last,
                    clear,
                    record,
                )?;
            } else if Pte(p).is_leaf(level) && is_writable_dirty(p) {
                record(Iova(entry_base), size);
                if clear {
                    let mut old = p;
                    // The walker may clear AP[2] concurrently: retry on a changed word.
                    while let Err(actual) =
                        self.mem
                            .compare_exchange_u64(PhysAddr(slot), old, old | pte::AP_RDONLY)?
                    {
                        if !Pte(actual).is_leaf(level) || !is_writable_dirty(actual) {
                            break;
                        }
                        old = actual;
                    }
                }
            }
            if sub_last == last {
                return Ok(());
            }
            cur = sub_last + 1;
        }
    }

    /// Return table pages that an unmap in queued mode put on a gather's freelist,
    /// once the invalidation covering them has completed.
    pub fn release(&self, tables: &[FreedTable]) -> Result<()> {
        for t in tables {
            self.mem.free_pages(t.pa, t.bytes)?;
        }
        Ok(())
    }
}

#[inline(always)]
fn is_writable_dirty(p: u64) -> bool {
    p & (pte::DBM | pte::AP_RDONLY) == pte::DBM
}

impl<M> Drop for LpaeTable<M>
where
    M: Deref<Target: PhysMem> + Send + Sync,
{
    fn drop(&mut self) {
        // As Linux's `free_io_pgtable_ops`: the context's TLB and walk caches must
        // forget every entry before the table pages go back to memory.
        self.flush.tlb_flush_all();
        let g = self.geo;
        let mut list = Vec::new();
        for i in 0..g.entries(g.start_level) {
            if let Ok(p) = self.read(self.root + 8 * i) {
                if Pte(p).is_table(g.start_level) {
                    self.collect_subtree(Pte(p).addr(g.granule), g.start_level + 1, &mut list);
                }
            }
        }
        list.push(FreedTable {
            pa: PhysAddr(self.root),
            bytes: g.table_bytes(g.start_level),
        });
        let _ = self.release(&list);
    }
}

impl<M> IoPgtable for LpaeTable<M>
where
    M: Deref<Target: PhysMem> + Send + Sync,
{
    fn map_pages(
        &self,
        iova: Iova,
        paddr: PhysAddr,
        pgsize: u64,
        pgcount: u64,
        prot: Prot,
    ) -> (u64, Result<()>) {
        self.map(iova, paddr, pgsize, pgcount, prot)
    }

    fn unmap_pages(&self, iova: Iova, pgsize: u64, pgcount: u64, gather: &mut IotlbGather) -> u64 {
        self.unmap(iova, pgsize, pgcount, gather)
    }

    fn iova_to_phys(&self, iova: Iova) -> Option<PhysAddr> {
        self.translate(iova)
    }

    fn read_and_clear_dirty(
        &self,
        iova: Iova,
        size: u64,
        clear: bool,
        record: &mut dyn FnMut(Iova, u64),
    ) -> Result<()> {
        self.dirty(iova, size, clear, record)
    }

    fn pgsize_bitmap(&self) -> PgSizeBitmap {
        self.geo.pgsize_bitmap
    }

    fn ias(&self) -> u32 {
        self.geo.ias
    }

    fn oas(&self) -> u32 {
        self.geo.oas
    }

    fn hw_config(&self) -> HwConfig {
        match self.geo.stage {
            Stage::S1 => HwConfig::LpaeS1(hwcfg::s1_config(&self.geo, self.root)),
            Stage::S2 => HwConfig::LpaeS2(hwcfg::s2_config(&self.geo, self.root)),
        }
    }

    fn free_tables(&self, tables: &[FreedTable]) -> Result<()> {
        self.release(tables)
    }
}
