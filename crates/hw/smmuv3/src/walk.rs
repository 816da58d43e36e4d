//! The VMSAv8-64 translation-table walker of the model (reference `lpae.md` §1–4 and
//! §9), decoding raw descriptors independently of `io-pgtable`.
//!
//! One call walks one stage. For nested translation the caller passes a closure that
//! translates every stage-1 table address (an IPA) through stage 2.

use iommu_types::{PhysAddr, PhysMem};

use crate::event::{EventClass, EventId};

/// Descriptor bits used by the walker (stage 1 and stage 2).
pub mod desc {
    /// Valid.
    pub const VALID: u64 = 1 << 0;
    /// Table (levels 0–2) or page (level 3).
    pub const TABLE_OR_PAGE: u64 = 1 << 1;
    /// Stage-1 AttrIndx [4:2] / stage-2 MemAttr [5:2] shift.
    pub const ATTR_SHIFT: u32 = 2;
    /// Stage-1 AP[1]: EL0 accessible. Stage 2: S2AP[0] read.
    pub const AP1_OR_S2_READ: u64 = 1 << 6;
    /// Stage-1 AP[2]: read-only. Stage 2: S2AP[1] write.
    pub const AP2_OR_S2_WRITE: u64 = 1 << 7;
    /// Shareability shift.
    pub const SH_SHIFT: u32 = 8;
    /// Access flag.
    pub const AF: u64 = 1 << 10;
    /// Not global.
    pub const NG: u64 = 1 << 11;
    /// Dirty bit modifier.
    pub const DBM: u64 = 1 << 51;
    /// Contiguous hint.
    pub const CONT: u64 = 1 << 52;
    /// Stage-1 PXN / stage-2 XN[0].
    pub const PXN: u64 = 1 << 53;
    /// Stage-1 UXN/XN / stage-2 XN[1].
    pub const UXN: u64 = 1 << 54;
    /// PXNTable.
    pub const PXN_TABLE: u64 = 1 << 59;
    /// UXNTable / XNTable.
    pub const UXN_TABLE: u64 = 1 << 60;
    /// APTable[0]: no EL0 access below.
    pub const AP_TABLE_NO_EL0: u64 = 1 << 61;
    /// APTable[1]: no write below.
    pub const AP_TABLE_RO: u64 = 1 << 62;
    /// Address field [47:12].
    pub const ADDR_MASK: u64 = 0x0000_FFFF_FFFF_F000;
}

/// Parameters of one stage's walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StageParams {
    /// Granule shift.
    pub granule_shift: u32,
    /// Starting level.
    pub start_level: u32,
    /// Input bits covered by the tables.
    pub ia_bits: u32,
    /// Effective output size.
    pub oas_bits: u32,
    /// Root table (IPA for a nested stage 1).
    pub root: u64,
    /// Stage 2.
    pub stage2: bool,
    /// Hierarchical attributes disabled.
    pub had: bool,
    /// Hardware access-flag update.
    pub ha: bool,
    /// Access-flag faults disabled.
    pub affd: bool,
}

/// Hierarchical attributes accumulated from stage-1 table descriptors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TableAttrs {
    /// APTable[0].
    pub no_el0: bool,
    /// APTable[1].
    pub ro: bool,
    /// PXNTable.
    pub pxn: bool,
    /// UXNTable.
    pub uxn: bool,
}

/// A leaf found by a walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// Output address of the block/page base.
    pub out_base: u64,
    /// log2 of the block/page size.
    pub shift: u32,
    /// Level of the leaf.
    pub level: u32,
    /// The descriptor (after any hardware AF update).
    pub desc: u64,
    /// Where it lives.
    pub desc_pa: u64,
    /// Hierarchical attributes.
    pub table: TableAttrs,
}

/// A fault found by a walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalkFault {
    /// Event ID.
    pub id: EventId,
    /// Fault at stage 2.
    pub stage2: bool,
    /// Stage-2 input address of a stage-2 fault.
    pub ipa: u64,
    /// Address whose fetch aborted.
    pub fetch_addr: u64,
    /// Class.
    pub class: EventClass,
    /// Level.
    pub level: u32,
}

/// One table descriptor seen during a walk (for the walk cache and the sanitizer).
#[derive(Clone, Copy, Debug)]
pub struct TableStep {
    /// Level of the table descriptor.
    pub level: u32,
    /// Input address aligned to the span of one descriptor at `level`.
    pub base: u64,
    /// log2 of that span.
    pub span_shift: u32,
    /// PA of the next-level table.
    pub next_pa: u64,
    /// Hierarchical attributes below this descriptor.
    pub attrs: TableAttrs,
}

/// log2 of the span of one descriptor at `level`.
pub fn level_shift(granule_shift: u32, level: u32) -> u32 {
    granule_shift + (granule_shift - 3) * (3 - level)
}

/// Output address of a descriptor.
pub fn desc_addr(d: u64, granule_shift: u32, oas_bits: u32) -> u64 {
    let mut a = d & desc::ADDR_MASK & !((1u64 << granule_shift) - 1);
    if granule_shift == 16 && oas_bits >= 52 {
        a |= ((d >> 12) & 0xf) << 48;
    }
    a
}

fn block_allowed(granule_shift: u32, level: u32, oas_bits: u32) -> bool {
    match granule_shift {
        12 => level == 1 || level == 2,
        14 => level == 2,
        _ => level == 2 || (level == 1 && oas_bits >= 52),
    }
}

impl StageParams {
    fn fault(&self, id: EventId, ia: u64, level: u32, fetch: u64, class: EventClass) -> WalkFault {
        WalkFault {
            id,
            stage2: self.stage2,
            ipa: if self.stage2 { ia } else { 0 },
            fetch_addr: fetch,
            class,
            level,
        }
    }

    /// Walk for input address `ia`, optionally resuming at a cached table
    /// (`(level, table_pa, attrs)`). `xlate_table` maps a table address from a
    /// descriptor (or the root) to a PA; `on_table` sees every table descriptor used;
    /// `on_desc` sees every descriptor read (PA, value).
    #[inline]
    pub fn walk<X, T, D>(
        &self,
        mem: &dyn PhysMem,
        ia: u64,
        resume: Option<(u32, u64, TableAttrs)>,
        xlate_table: &mut X,
        on_table: &mut T,
        on_desc: &mut D,
    ) -> Result<Leaf, WalkFault>
    where
        X: FnMut(u64) -> Result<u64, WalkFault>,
        T: FnMut(TableStep),
        D: FnMut(u64, u64),
    {
        let g = self.granule_shift;
        let bpl = g - 3;
        let class = EventClass::Input;
        if self.ia_bits < 64 && ia >> self.ia_bits != 0 {
            return Err(self.fault(
                EventId::FTranslation,
                ia,
                self.start_level,
                0,
                EventClass::Input,
            ));
        }
        let (mut level, mut table, mut attrs) = match resume {
            Some(r) => r,
            None => (
                self.start_level,
                xlate_table(self.root)?,
                TableAttrs::default(),
            ),
        };
        loop {
            let shift = level_shift(g, level);
            let idx_bits = if level == self.start_level {
                self.ia_bits - shift
            } else {
                bpl
            };
            let idx = (ia >> shift) & ((1u64 << idx_bits) - 1);
            let dpa = table + idx * 8;
            let mut d = match mem.read_u64(PhysAddr(dpa)) {
                Ok(d) => d,
                Err(_) => {
                    return Err(self.fault(
                        EventId::FWalkEabt,
                        ia,
                        level,
                        dpa,
                        EventClass::TableWalk,
                    ));
                }
            };
            on_desc(dpa, d);
            if d & desc::VALID == 0 {
                return Err(self.fault(EventId::FTranslation, ia, level, 0, class));
            }
            let is_table_or_page = d & desc::TABLE_OR_PAGE != 0;
            if level < 3 && is_table_or_page {
                let next = desc_addr(d, g, self.oas_bits);
                if next >> self.oas_bits != 0 {
                    return Err(self.fault(EventId::FAddrSize, ia, level, 0, class));
                }
                if !self.stage2 && !self.had {
                    attrs.no_el0 |= d & desc::AP_TABLE_NO_EL0 != 0;
                    attrs.ro |= d & desc::AP_TABLE_RO != 0;
                    attrs.pxn |= d & desc::PXN_TABLE != 0;
                    attrs.uxn |= d & desc::UXN_TABLE != 0;
                }
                let next_pa = xlate_table(next)?;
                on_table(TableStep {
                    level,
                    base: ia & !((1u64 << shift) - 1),
                    span_shift: shift,
                    next_pa,
                    attrs,
                });
                table = next_pa;
                level += 1;
                continue;
            }
            if level == 3 && !is_table_or_page {
                return Err(self.fault(EventId::FTranslation, ia, level, 0, class));
            }
            if level < 3 && !block_allowed(g, level, self.oas_bits) {
                return Err(self.fault(EventId::FTranslation, ia, level, 0, class));
            }
            let out_base = desc_addr(d, g, self.oas_bits) & !((1u64 << shift) - 1);
            if d & desc::AF == 0 && !self.affd {
                if !self.ha {
                    return Err(self.fault(EventId::FAccess, ia, level, 0, class));
                }
                // Hardware access-flag update: atomic, retried if software raced.
                match mem.compare_exchange_u64(PhysAddr(dpa), d, d | desc::AF) {
                    Ok(Ok(_)) => {
                        d |= desc::AF;
                        on_desc(dpa, d);
                    }
                    Ok(Err(_)) => {
                        return self.walk(mem, ia, resume, xlate_table, on_table, on_desc);
                    }
                    Err(_) => {
                        return Err(self.fault(
                            EventId::FWalkEabt,
                            ia,
                            level,
                            dpa,
                            EventClass::TableWalk,
                        ));
                    }
                }
            }
            if out_base >> self.oas_bits != 0 {
                return Err(self.fault(EventId::FAddrSize, ia, level, 0, class));
            }
            return Ok(Leaf {
                out_base,
                shift,
                level,
                desc: d,
                desc_pa: dpa,
                table: attrs,
            });
        }
    }
}

/// Permissions of a translation for the four privilege/access combinations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Perms {
    /// Privileged read.
    pub pr: bool,
    /// Privileged write.
    pub pw: bool,
    /// Privileged execute.
    pub px: bool,
    /// Unprivileged read.
    pub ur: bool,
    /// Unprivileged write.
    pub uw: bool,
    /// Unprivileged execute.
    pub ux: bool,
    /// Writes are allowed only after a hardware dirty update (DBM writable-clean).
    pub dirty_clean: bool,
}

impl Perms {
    /// Everything allowed (bypass).
    pub const ALL: Perms = Perms {
        pr: true,
        pw: true,
        px: true,
        ur: true,
        uw: true,
        ux: true,
        dirty_clean: false,
    };

    /// Intersection (nested).
    pub fn and(self, o: Perms) -> Perms {
        Perms {
            pr: self.pr && o.pr,
            pw: self.pw && o.pw,
            px: self.px && o.px,
            ur: self.ur && o.ur,
            uw: self.uw && o.uw,
            ux: self.ux && o.ux,
            dirty_clean: self.dirty_clean || o.dirty_clean,
        }
    }

    /// Stage-1 permissions of a leaf. `single_range` regimes (EL2 without E2H)
    /// ignore AP[1] and use a single XN bit.
    pub fn stage1(
        d: u64,
        t: TableAttrs,
        wxn: bool,
        uwxn: bool,
        hd: bool,
        single_priv: bool,
    ) -> Perms {
        let ro_bit = d & desc::AP2_OR_S2_WRITE != 0;
        let dbm_clean = hd && ro_bit && d & desc::DBM != 0;
        let ro = (ro_bit && !dbm_clean) || t.ro;
        if single_priv {
            let x = d & desc::UXN == 0 && !t.uxn;
            let w = !ro;
            let x = x && !(wxn && w);
            return Perms {
                pr: true,
                pw: w,
                px: x,
                ur: true,
                uw: w,
                ux: x,
                dirty_clean: dbm_clean && !t.ro,
            };
        }
        let el0 = d & desc::AP1_OR_S2_READ != 0 && !t.no_el0;
        let pw = !ro;
        let uw = el0 && !ro;
        let mut px = d & desc::PXN == 0 && !t.pxn && !uw;
        let mut ux = el0 && d & desc::UXN == 0 && !t.uxn;
        if wxn {
            px &= !pw;
            ux &= !uw;
        }
        if uwxn {
            px &= !uw;
        }
        Perms {
            pr: true,
            pw,
            px,
            ur: el0,
            uw,
            ux,
            dirty_clean: dbm_clean && !t.ro,
        }
    }

    /// Stage-2 permissions of a leaf.
    pub fn stage2(d: u64, xnx: bool, hd: bool) -> Perms {
        let r = d & desc::AP1_OR_S2_READ != 0;
        let w_bit = d & desc::AP2_OR_S2_WRITE != 0;
        let dbm_clean = hd && !w_bit && d & desc::DBM != 0;
        let w = w_bit || dbm_clean;
        let xn = (d >> 53) & 3;
        let (px, ux) = if xnx {
            match xn {
                0 => (true, true),
                1 => (false, true),
                2 => (false, false),
                _ => (true, false),
            }
        } else {
            let x = xn & 2 == 0;
            (x, x)
        };
        Perms {
            pr: r,
            pw: w,
            px: px && r,
            ur: r,
            uw: w,
            ux: ux && r,
            dirty_clean: dbm_clean,
        }
    }

    /// Whether `access` is allowed.
    #[inline]
    pub fn allows(&self, access: crate::Access) -> bool {
        use crate::AccessKind::*;
        match (access.kind, access.privileged) {
            (Read, true) => self.pr,
            (Write, true) => self.pw,
            (Exec, true) => self.px,
            (Read, false) => self.ur,
            (Write, false) => self.uw,
            (Exec, false) => self.ux,
        }
    }
}

/// Cacheability of one level of cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cacheability {
    /// Write-back (strongest caching).
    WriteBack,
    /// Write-through.
    WriteThrough,
    /// Non-cacheable.
    NonCacheable,
}

/// Memory attributes of a translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemAttrs {
    /// Device memory.
    pub device: bool,
    /// Inner cacheability (Normal memory).
    pub inner: Cacheability,
    /// Outer cacheability (Normal memory).
    pub outer: Cacheability,
    /// Shareability (0 NSH, 2 OSH, 3 ISH).
    pub sh: u8,
}

impl MemAttrs {
    /// Normal write-back inner-shareable (bypass default).
    pub const NORMAL_WB: MemAttrs = MemAttrs {
        device: false,
        inner: Cacheability::WriteBack,
        outer: Cacheability::WriteBack,
        sh: 3,
    };

    fn nibble(n: u64) -> Cacheability {
        match n >> 2 {
            0b01 if n & 3 == 0 => Cacheability::NonCacheable,
            0b11 | 0b01 => Cacheability::WriteBack,
            _ => Cacheability::WriteThrough,
        }
    }

    /// Stage-1 attributes from MAIR and the leaf.
    pub fn stage1(d: u64, mair: u64) -> MemAttrs {
        let idx = (d >> desc::ATTR_SHIFT) & 7;
        let a = (mair >> (idx * 8)) & 0xff;
        let sh = ((d >> desc::SH_SHIFT) & 3) as u8;
        if a >> 4 == 0 {
            return MemAttrs {
                device: true,
                inner: Cacheability::NonCacheable,
                outer: Cacheability::NonCacheable,
                sh: 2,
            };
        }
        let inner = Self::nibble(a & 0xf);
        let outer = Self::nibble(a >> 4);
        let sh = if inner == Cacheability::NonCacheable && outer == Cacheability::NonCacheable {
            2
        } else {
            sh
        };
        MemAttrs {
            device: false,
            inner,
            outer,
            sh,
        }
    }

    /// Stage-2 attributes (MemAttr field, FWB encoding when `fwb`).
    pub fn stage2(d: u64, fwb: bool) -> Option<MemAttrs> {
        let m = (d >> desc::ATTR_SHIFT) & 0xf;
        let sh = ((d >> desc::SH_SHIFT) & 3) as u8;
        let dev = MemAttrs {
            device: true,
            inner: Cacheability::NonCacheable,
            outer: Cacheability::NonCacheable,
            sh: 2,
        };
        if fwb {
            // MemAttr[2] = 0: Device. 0b110: force WB, 0b101: NC, 0b111: use stage 1.
            return match m & 0b111 {
                0b110 => Some(MemAttrs {
                    device: false,
                    inner: Cacheability::WriteBack,
                    outer: Cacheability::WriteBack,
                    sh,
                }),
                0b101 => Some(MemAttrs {
                    device: false,
                    inner: Cacheability::NonCacheable,
                    outer: Cacheability::NonCacheable,
                    sh: 2,
                }),
                0b111 => None,
                _ => Some(dev),
            };
        }
        let f = |v: u64| match v {
            0b01 => Cacheability::NonCacheable,
            0b10 => Cacheability::WriteThrough,
            _ => Cacheability::WriteBack,
        };
        if m >> 2 == 0 {
            return Some(dev);
        }
        Some(MemAttrs {
            device: false,
            inner: f(m & 3),
            outer: f(m >> 2),
            sh,
        })
    }

    /// Combine stage-1 and stage-2 attributes (the weaker wins).
    pub fn combine(s1: MemAttrs, s2: MemAttrs) -> MemAttrs {
        if s1.device || s2.device {
            return MemAttrs {
                device: true,
                inner: Cacheability::NonCacheable,
                outer: Cacheability::NonCacheable,
                sh: 2,
            };
        }
        MemAttrs {
            device: false,
            inner: s1.inner.max(s2.inner),
            outer: s1.outer.max(s2.outer),
            sh: s1.sh.max(s2.sh),
        }
    }

    /// Normal write-back at both levels (an IO-coherent access).
    pub fn coherent(&self) -> bool {
        !self.device
            && self.inner == Cacheability::WriteBack
            && self.outer == Cacheability::WriteBack
    }
}
