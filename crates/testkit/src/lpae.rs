//! ARM LPAE tables from raw bits: a builder that writes descriptors by hand, and a
//! decoder/walker written independently of `io-pgtable` (reference `lpae.md` §1–§4,
//! §9). The walker starts from the *register values* (T0SZ/TG0, or VTCR SL0) the way
//! hardware does, so a test comparing it with `io-pgtable` checks both the descriptors
//! and the computed configuration.

use iommu_types::{PhysAddr, PhysMem};

/// Descriptor bit: valid.
pub const VALID: u64 = 1;
/// Descriptor bit 1: table (levels 0–2) or page (level 3) when set with VALID.
pub const TABLE_OR_PAGE: u64 = 1 << 1;
/// Stage-1 AP\[2\] (read-only).
pub const S1_RDONLY: u64 = 1 << 7;
/// Stage-1 AP\[1\] (unprivileged).
pub const S1_USER: u64 = 1 << 6;
/// Stage-2 S2AP read.
pub const S2_READ: u64 = 1 << 6;
/// Stage-2 S2AP write.
pub const S2_WRITE: u64 = 1 << 7;
/// Access flag.
pub const ACCESS_FLAG: u64 = 1 << 10;
/// Dirty-bit modifier.
pub const DIRTY_BIT_MODIFIER: u64 = 1 << 51;

/// What a walk needs to know, as hardware learns it from TCR/VTCR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalkParams {
    /// log2 of the granule (12, 14 or 16).
    pub granule_shift: u32,
    /// Input address size (64 − T0SZ).
    pub ias: u32,
    /// Level of the root table.
    pub start_level: u32,
    /// The table serves the upper (TTBR1) range: input bits above `ias` are all ones.
    pub upper: bool,
}

/// Granule shift from a TG0 encoding (0 4K, 1 64K, 2 16K).
pub fn tg0_shift(tg0: u8) -> Option<u32> {
    match tg0 {
        0 => Some(12),
        1 => Some(16),
        2 => Some(14),
        _ => None,
    }
}

/// Granule shift from a TG1 encoding (1 16K, 2 4K, 3 64K).
pub fn tg1_shift(tg1: u8) -> Option<u32> {
    match tg1 {
        1 => Some(14),
        2 => Some(12),
        3 => Some(16),
        _ => None,
    }
}

/// Largest input size a granule can translate (48 bits; 52 with 64K, FEAT_LPA).
fn max_ias(granule_shift: u32) -> Option<u32> {
    match granule_shift {
        12 | 14 => Some(48),
        16 => Some(52),
        _ => None,
    }
}

impl WalkParams {
    /// Stage-1 parameters from TnSZ and a granule shift: the start level is the one
    /// whose region covers the input size (Arm ARM lookup-level tables).
    /// `None` for a granule that does not exist or an input size above what the
    /// granule can translate (48 bits; 52 with 64K).
    pub fn stage1(tsz: u8, granule_shift: u32, upper: bool) -> Option<WalkParams> {
        let ias = 64u32.checked_sub(tsz as u32)?;
        if ias > max_ias(granule_shift)? {
            return None;
        }
        // Largest input size each level can resolve from, per granule.
        let start_level = match granule_shift {
            12 => match ias {
                40..=48 => 0,
                31..=39 => 1,
                22..=30 => 2,
                _ => 3,
            },
            14 => match ias {
                48 => 0,
                37..=47 => 1,
                26..=36 => 2,
                _ => 3,
            },
            16 => match ias {
                43..=52 => 1,
                30..=42 => 2,
                _ => 3,
            },
            _ => return None,
        };
        Some(WalkParams {
            granule_shift,
            ias,
            start_level,
            upper,
        })
    }

    /// Stage-2 parameters from VTCR T0SZ, SL0 and TG0 (QEMU's decoding, §4.1).
    /// `None` for a reserved TG0 or SL0, an input size above what the granule can
    /// translate, or a start level above the input size.
    pub fn stage2(t0sz: u8, sl0: u8, tg0: u8) -> Option<WalkParams> {
        let granule_shift = tg0_shift(tg0)?;
        let ias = 64u32.checked_sub(t0sz as u32)?;
        if ias > max_ias(granule_shift)? {
            return None;
        }
        let start_level = if granule_shift == 12 {
            2u32.checked_sub(sl0 as u32)?
        } else {
            3u32.checked_sub(sl0 as u32)?
        };
        let p = WalkParams {
            granule_shift,
            ias,
            start_level,
            upper: false,
        };
        // A start level whose entries are larger than the whole input range resolves
        // no bit at all (an inconsistent SL0/T0SZ pair).
        (ias > p.low_bit(start_level)).then_some(p)
    }

    /// Lowest input bit a table entry at `level` resolves.
    pub fn low_bit(&self, level: u32) -> u32 {
        let per = self.granule_shift - 3;
        let mut bit = self.granule_shift;
        let mut l = 3;
        while l > level {
            bit += per;
            l -= 1;
        }
        bit
    }

    /// Index bits of the table at `level`: everything up to `ias` at the root (this
    /// covers concatenated stage-2 roots), one level's worth below.
    pub fn index_of(&self, iova: u64, level: u32) -> u64 {
        let low = self.low_bit(level);
        let high = if level == self.start_level {
            self.ias
        } else {
            low + self.granule_shift - 3
        };
        (iova >> low) & ((1u64 << (high - low)) - 1)
    }

    /// Whether `iova` is inside the input range.
    pub fn in_range(&self, iova: u64) -> bool {
        let top = if self.ias >= 64 { 0 } else { iova >> self.ias };
        if self.upper {
            top == (u64::MAX >> self.ias)
        } else {
            top == 0
        }
    }
}

/// One decoded descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Desc {
    /// Bit 0 clear, or a reserved encoding (type 01 at level 3).
    Invalid,
    /// A next-level table.
    Table {
        /// Address of the next table.
        next: u64,
        /// NSTable (bit 63).
        ns_table: bool,
    },
    /// A block or page.
    Leaf {
        /// Output address of the leaf's first byte.
        out: u64,
        /// Bytes the leaf maps.
        size: u64,
    },
}

/// Output-address bits of a descriptor: bits 47 down to the granule shift and, with 64K, PA\[51:48\] from
/// bits \[15:12\].
pub fn out_addr(raw: u64, granule_shift: u32) -> u64 {
    let top = (1u64 << 48) - 1;
    let mut pa = raw & top & !((1u64 << granule_shift) - 1);
    if granule_shift == 16 {
        pa |= ((raw >> 12) & 0xf) << 48;
    }
    pa
}

/// Decode `raw` found at `level`.
pub fn decode(raw: u64, level: u32, p: &WalkParams) -> Desc {
    if raw & VALID == 0 {
        return Desc::Invalid;
    }
    let is_11 = raw & TABLE_OR_PAGE != 0;
    let size = 1u64 << p.low_bit(level);
    if level == 3 {
        if is_11 {
            Desc::Leaf {
                out: out_addr(raw, p.granule_shift),
                size,
            }
        } else {
            Desc::Invalid
        }
    } else if is_11 {
        Desc::Table {
            next: out_addr(raw, p.granule_shift),
            ns_table: raw >> 63 == 1,
        }
    } else {
        Desc::Leaf {
            out: out_addr(raw, p.granule_shift),
            size,
        }
    }
}

/// The result of a hand walk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalkOutcome {
    /// Translation fault at `level` (invalid descriptor or out-of-range input).
    Fault {
        /// Level of the faulting lookup (the start level for out-of-range input).
        level: u32,
    },
    /// The descriptor at `phys` could not be read (walk external abort).
    Abort {
        /// Address of the descriptor.
        phys: u64,
    },
    /// A leaf was found.
    Leaf {
        /// Level of the leaf.
        level: u32,
        /// Raw descriptor.
        raw: u64,
        /// Bytes the leaf maps.
        size: u64,
        /// Translated address of the input.
        out: u64,
    },
}

/// Walk from `root` for `iova` by reading raw descriptors from `mem`.
pub fn walk(mem: &dyn PhysMem, root: u64, p: &WalkParams, iova: u64) -> WalkOutcome {
    if !p.in_range(iova) {
        return WalkOutcome::Fault {
            level: p.start_level,
        };
    }
    let mut table = root;
    for level in p.start_level..=3 {
        let at = table + 8 * p.index_of(iova, level);
        let Ok(raw) = mem.read_u64(PhysAddr(at)) else {
            return WalkOutcome::Abort { phys: at };
        };
        match decode(raw, level, p) {
            Desc::Invalid => return WalkOutcome::Fault { level },
            Desc::Table { next, .. } => table = next,
            Desc::Leaf { out, size } => {
                return WalkOutcome::Leaf {
                    level,
                    raw,
                    size,
                    out: out + (iova & (size - 1)),
                };
            }
        }
    }
    WalkOutcome::Fault { level: 3 }
}

/// One leaf found by [`leaves`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafEntry {
    /// First input address it maps.
    pub iova: u64,
    /// Level.
    pub level: u32,
    /// Bytes mapped.
    pub size: u64,
    /// Output address.
    pub out: u64,
    /// Raw descriptor.
    pub raw: u64,
}

/// One table found by [`tables`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableEntry {
    /// Physical address of the table.
    pub pa: u64,
    /// Level of its entries.
    pub level: u32,
    /// First input address it covers.
    pub iova: u64,
}

fn visit(
    mem: &dyn PhysMem,
    p: &WalkParams,
    table: u64,
    level: u32,
    base: u64,
    leaves: &mut Vec<LeafEntry>,
    tables: &mut Vec<TableEntry>,
) {
    tables.push(TableEntry {
        pa: table,
        level,
        iova: base,
    });
    let low = p.low_bit(level);
    let bits = if level == p.start_level {
        p.ias - low
    } else {
        p.granule_shift - 3
    };
    for i in 0..(1u64 << bits) {
        let Ok(raw) = mem.read_u64(PhysAddr(table + 8 * i)) else {
            continue;
        };
        let iova = base | (i << low);
        match decode(raw, level, p) {
            Desc::Invalid => {}
            Desc::Table { next, .. } => visit(mem, p, next, level + 1, iova, leaves, tables),
            Desc::Leaf { out, size } => leaves.push(LeafEntry {
                iova,
                level,
                size,
                out,
                raw,
            }),
        }
    }
}

fn upper_base(p: &WalkParams) -> u64 {
    if p.upper { !((1u64 << p.ias) - 1) } else { 0 }
}

/// Every valid leaf reachable from `root`, in input-address order.
pub fn leaves(mem: &dyn PhysMem, root: u64, p: &WalkParams) -> Vec<LeafEntry> {
    let (mut l, mut t) = (Vec::new(), Vec::new());
    visit(mem, p, root, p.start_level, upper_base(p), &mut l, &mut t);
    l
}

/// Every table reachable from `root` (the root first).
pub fn tables(mem: &dyn PhysMem, root: u64, p: &WalkParams) -> Vec<TableEntry> {
    let (mut l, mut t) = (Vec::new(), Vec::new());
    visit(mem, p, root, p.start_level, upper_base(p), &mut l, &mut t);
    t
}

/// Writes LPAE tables descriptor by descriptor, for tests of walkers and decoders.
#[derive(Debug)]
pub struct TableBuilder<'a, M: PhysMem + ?Sized> {
    mem: &'a M,
    granule_shift: u32,
}

impl<'a, M: PhysMem + ?Sized> TableBuilder<'a, M> {
    /// A builder for tables of the given granule in `mem`.
    pub fn new(mem: &'a M, granule_shift: u32) -> Self {
        Self { mem, granule_shift }
    }

    /// Allocate a zeroed table of `entries` descriptors, aligned to its size.
    pub fn table(&self, entries: u64) -> u64 {
        let bytes = entries * 8;
        self.mem
            .alloc_pages(bytes, bytes.max(64))
            .expect("test memory for a table")
            .0
    }

    /// Store `raw` at entry `index` of `table`.
    pub fn set(&self, table: u64, index: u64, raw: u64) {
        self.mem
            .write_u64(PhysAddr(table + 8 * index), raw)
            .expect("table entry store");
    }

    /// Read entry `index` of `table`.
    pub fn get(&self, table: u64, index: u64) -> u64 {
        self.mem
            .read_u64(PhysAddr(table + 8 * index))
            .expect("table entry load")
    }

    fn addr_field(&self, pa: u64) -> u64 {
        let mut f = pa & ((1u64 << 48) - 1);
        if self.granule_shift == 16 {
            f |= ((pa >> 48) & 0xf) << 12;
        }
        f
    }

    /// A table descriptor pointing at `next`.
    pub fn table_desc(&self, next: u64) -> u64 {
        self.addr_field(next) | VALID | TABLE_OR_PAGE
    }

    /// A level-3 page descriptor for `pa` with extra attribute bits.
    pub fn page_desc(&self, pa: u64, attrs: u64) -> u64 {
        self.addr_field(pa) | VALID | TABLE_OR_PAGE | attrs
    }

    /// A block descriptor (levels 1–2) for `pa` with extra attribute bits.
    pub fn block_desc(&self, pa: u64, attrs: u64) -> u64 {
        self.addr_field(pa) | VALID | attrs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iommu_memory::SimMemory;

    #[test]
    fn start_levels_from_tcr() {
        assert_eq!(WalkParams::stage1(16, 12, false).unwrap().start_level, 0);
        assert_eq!(WalkParams::stage1(25, 12, false).unwrap().start_level, 1);
        assert_eq!(WalkParams::stage1(32, 12, false).unwrap().start_level, 1);
        assert_eq!(WalkParams::stage1(16, 14, false).unwrap().start_level, 0);
        assert_eq!(WalkParams::stage1(17, 14, false).unwrap().start_level, 1);
        assert_eq!(WalkParams::stage1(28, 14, false).unwrap().start_level, 2);
        assert_eq!(WalkParams::stage1(12, 16, false).unwrap().start_level, 1);
        assert_eq!(WalkParams::stage1(22, 16, false).unwrap().start_level, 2);
        assert_eq!(WalkParams::stage2(24, 1, 0).unwrap().start_level, 1);
        assert_eq!(WalkParams::stage2(24, 0, 2).unwrap().start_level, 3);
    }

    #[test]
    fn inconsistent_register_values_are_refused_not_panics() {
        // T0SZ above 64, input sizes a granule cannot translate, bad TG/SL0 pairs.
        assert_eq!(WalkParams::stage1(200, 12, false), None);
        assert_eq!(WalkParams::stage1(0, 12, true), None);
        assert_eq!(WalkParams::stage1(12, 12, false), None, "52 bits need 64K");
        assert_eq!(WalkParams::stage1(16, 13, false), None);
        assert_eq!(WalkParams::stage2(200, 0, 0), None);
        assert_eq!(WalkParams::stage2(0, 0, 1), None);
        assert_eq!(WalkParams::stage2(24, 3, 0), None);
        assert_eq!(WalkParams::stage2(39, 2, 0), None, "level 0 above 25 bits");
        assert_eq!(WalkParams::stage2(24, 0, 3), None, "reserved TG0");
        assert!(WalkParams::stage1(12, 16, true).unwrap().in_range(u64::MAX));
    }

    #[test]
    fn hand_built_4k_table_walks() {
        let mem = SimMemory::new();
        let b = TableBuilder::new(&mem, 12);
        let p = WalkParams::stage1(25, 12, false).unwrap(); // 39-bit, start L1
        let l1 = b.table(512);
        let l2 = b.table(512);
        let l3 = b.table(512);
        b.set(l1, 0, b.table_desc(l2));
        b.set(l2, 1, b.table_desc(l3));
        b.set(l3, 5, b.page_desc(0x1234_5000, ACCESS_FLAG));
        b.set(l2, 2, b.block_desc(0x4000_0000, ACCESS_FLAG));
        b.set(l1, 3, b.block_desc(0x8000_0000, ACCESS_FLAG));
        let iova = (1 << 21) | (5 << 12) | 0x42;
        match walk(&mem, l1, &p, iova) {
            WalkOutcome::Leaf {
                level, out, size, ..
            } => assert_eq!((level, out, size), (3, 0x1234_5042, 4096)),
            o => panic!("{o:?}"),
        }
        match walk(&mem, l1, &p, (2 << 21) | 0x1_2345) {
            WalkOutcome::Leaf { level, out, .. } => assert_eq!((level, out), (2, 0x4001_2345)),
            o => panic!("{o:?}"),
        }
        match walk(&mem, l1, &p, (3 << 30) | 0x42) {
            WalkOutcome::Leaf { level, out, .. } => assert_eq!((level, out), (1, 0x8000_0042)),
            o => panic!("{o:?}"),
        }
        assert_eq!(walk(&mem, l1, &p, 6 << 12), WalkOutcome::Fault { level: 2 });
        assert_eq!(
            walk(&mem, l1, &p, (1 << 21) | (7 << 12)),
            WalkOutcome::Fault { level: 3 }
        );
        assert_eq!(walk(&mem, l1, &p, 1 << 39), WalkOutcome::Fault { level: 1 });
        // Type 01 at level 3 is reserved.
        b.set(l3, 6, 0x5000 | VALID);
        assert_eq!(
            walk(&mem, l1, &p, (1 << 21) | (6 << 12)),
            WalkOutcome::Fault { level: 3 }
        );
        let all = leaves(&mem, l1, &p);
        assert_eq!(all.iter().map(|l| l.level).collect::<Vec<_>>(), [3, 2, 1]);
        assert_eq!(tables(&mem, l1, &p).len(), 3);
    }

    #[test]
    fn pa_52_bits_with_64k() {
        let mem = SimMemory::new();
        let b = TableBuilder::new(&mem, 16);
        let raw = b.page_desc(0x000f_0000_1234_0000, 0);
        assert_eq!(raw & 0xf000, 0xf000);
        assert_eq!(out_addr(raw, 16), 0x000f_0000_1234_0000);
    }
}
