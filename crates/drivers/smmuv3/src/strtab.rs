//! Stream table: linear, or two-level with SPLIT=8 and level-2 tables allocated on
//! demand when a device appears (`smmuv3.md` §1.5, §2.2).

use crate::lock::Mutex;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use iommu_types::{Mmio, PhysAddr, PhysMem};

use crate::cd::l1_ste;
use crate::regs::{off, strtab};
use crate::ste::{STE_BYTES, Ste};
use crate::{Error, Result};

/// StreamID bits resolved by a level-2 table (256 STEs, 16 KiB).
pub const STRTAB_SPLIT: u32 = 8;
/// Largest linear table this driver allocates (in SID bits).
pub const MAX_LINEAR_BITS: u32 = 16;
/// Largest number of L1 descriptors (Linux `STRTAB_MAX_L1_ENTRIES`).
pub const MAX_L1_BITS: u32 = 17;

/// Layout of the stream table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrtabFormat {
    /// One array of `1 << sid_bits` STEs.
    Linear,
    /// L1 descriptors, each covering `1 << STRTAB_SPLIT` STEs.
    TwoLevel,
}

/// The stream table of one SMMU.
pub struct Strtab {
    mem: Arc<dyn PhysMem>,
    fmt: StrtabFormat,
    base: PhysAddr,
    sid_bits: u32,
    /// L2 tables by L1 index.
    l2: Mutex<BTreeMap<u32, PhysAddr>>,
}

impl core::fmt::Debug for Strtab {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Strtab")
            .field("fmt", &self.fmt)
            .field("base", &self.base)
            .finish()
    }
}

fn fill_abort(mem: &dyn PhysMem, at: PhysAddr, count: u64) -> Result<()> {
    let ste = Ste::abort();
    for i in 0..count {
        mem.write_words(PhysAddr(at.0 + i * STE_BYTES), &ste.0)?;
    }
    Ok(())
}

impl Strtab {
    /// Allocate a table for `sid_bits` StreamIDs and program STRTAB_BASE(_CFG).
    /// Every STE starts as abort (V=1, Config=0).
    pub fn new(
        mmio: &dyn Mmio,
        mem: Arc<dyn PhysMem>,
        fmt: StrtabFormat,
        sid_bits: u32,
    ) -> Result<Strtab> {
        let (base, log2size, cfg_fmt, split) = match fmt {
            StrtabFormat::Linear => {
                if sid_bits > MAX_LINEAR_BITS {
                    return Err(Error::Unsupported("linear stream table this large"));
                }
                let bytes = (1u64 << sid_bits) * STE_BYTES;
                let base = mem.alloc_pages(bytes, bytes.next_power_of_two().max(4096))?;
                fill_abort(&*mem, base, 1 << sid_bits)?;
                (base, sid_bits, strtab::FMT_LINEAR, 0)
            }
            StrtabFormat::TwoLevel => {
                let l1_bits = sid_bits.saturating_sub(STRTAB_SPLIT).min(MAX_L1_BITS);
                let bytes = (1u64 << l1_bits) * 8;
                let base = mem.alloc_pages(bytes, bytes.next_power_of_two().max(4096))?;
                (
                    base,
                    (l1_bits + STRTAB_SPLIT).min(sid_bits.max(STRTAB_SPLIT)),
                    strtab::FMT_2LVL,
                    STRTAB_SPLIT,
                )
            }
        };
        let mut b = [0u64];
        strtab::BASE_ADDR.set(&mut b, base.0 >> 6);
        strtab::BASE_RA.set(&mut b, 1);
        mmio.write64(off::STRTAB_BASE, b[0]);
        let mut c = [0u64];
        strtab::CFG_LOG2SIZE.set(&mut c, log2size as u64);
        strtab::CFG_SPLIT.set(&mut c, split as u64);
        strtab::CFG_FMT.set(&mut c, cfg_fmt);
        mmio.write32(off::STRTAB_BASE_CFG, c[0] as u32);
        Ok(Strtab {
            mem,
            fmt,
            base,
            sid_bits: log2size,
            l2: Mutex::new(BTreeMap::new()),
        })
    }

    /// The layout.
    pub fn format(&self) -> StrtabFormat {
        self.fmt
    }

    /// Number of StreamID bits the table covers.
    pub fn sid_bits(&self) -> u32 {
        self.sid_bits
    }

    /// Make sure the STE of `sid` exists (allocating its L2 table, filled with abort
    /// STEs, before publishing it with one 64-bit store of the L1 descriptor).
    /// Returns true when a new L1 descriptor was installed (the caller must then
    /// invalidate it: CFGI_STE with Leaf=0).
    pub fn ensure(&self, sid: u32) -> Result<bool> {
        if self.sid_bits < 32 && sid >> self.sid_bits != 0 {
            return Err(Error::Invalid("StreamID beyond the stream table"));
        }
        if self.fmt == StrtabFormat::Linear {
            return Ok(false);
        }
        let l1 = sid >> STRTAB_SPLIT;
        let mut g = self.l2.lock();
        if g.contains_key(&l1) {
            return Ok(false);
        }
        let bytes = (1u64 << STRTAB_SPLIT) * STE_BYTES;
        let l2 = self.mem.alloc_pages(bytes, bytes)?;
        fill_abort(&*self.mem, l2, 1 << STRTAB_SPLIT)?;
        self.mem.write_u64(
            PhysAddr(self.base.0 + l1 as u64 * 8),
            l1_ste::encode(l2.0, STRTAB_SPLIT),
        )?;
        g.insert(l1, l2);
        Ok(true)
    }

    /// Physical address of the STE of `sid` (which must have been [`Strtab::ensure`]d).
    pub fn ste_addr(&self, sid: u32) -> Result<PhysAddr> {
        match self.fmt {
            StrtabFormat::Linear => {
                if self.sid_bits < 32 && sid >> self.sid_bits != 0 {
                    return Err(Error::Invalid("StreamID beyond the stream table"));
                }
                Ok(PhysAddr(self.base.0 + sid as u64 * STE_BYTES))
            }
            StrtabFormat::TwoLevel => {
                let g = self.l2.lock();
                let l2 = g
                    .get(&(sid >> STRTAB_SPLIT))
                    .ok_or(Error::NotFound("stream not probed"))?;
                Ok(PhysAddr(
                    l2.0 + (sid & ((1 << STRTAB_SPLIT) - 1)) as u64 * STE_BYTES,
                ))
            }
        }
    }

    /// Number of L2 tables allocated so far.
    pub fn l2_tables(&self) -> usize {
        self.l2.lock().len()
    }
}
