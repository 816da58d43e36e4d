//! Context Descriptors and L1 CD descriptors (reference `smmuv3.md` §3). [`Cd`] is the
//! raw form; [`Cd::decode`] validates it and produces a [`CdInfo`], or the reason for
//! C_BAD_CD.

use crate::config::{Httu, SmmuConfig};
use crate::field::Field;
use crate::regs::oas_bits;
use crate::ste::tg0_shift;

/// Size of a CD in bytes.
pub const CD_SIZE: u64 = 64;

/// CD field definitions.
pub mod fields {
    use super::Field;
    /// 64 − VA size for TTB0.
    pub const T0SZ: Field = Field::bits(0, 5, 0);
    /// TTB0 granule (0 4K, 1 64K, 2 16K).
    pub const TG0: Field = Field::bits(0, 7, 6);
    /// TTB0 walk inner cacheability.
    pub const IR0: Field = Field::bits(0, 9, 8);
    /// TTB0 walk outer cacheability.
    pub const OR0: Field = Field::bits(0, 11, 10);
    /// TTB0 walk shareability.
    pub const SH0: Field = Field::bits(0, 13, 12);
    /// Disable TTB0 walks.
    pub const EPD0: Field = Field::new(0, 14, 1);
    /// Big-endian tables.
    pub const ENDI: Field = Field::new(0, 15, 1);
    /// 64 − VA size for TTB1.
    pub const T1SZ: Field = Field::bits(0, 21, 16);
    /// TTB1 granule (1 16K, 2 4K, 3 64K).
    pub const TG1: Field = Field::bits(0, 23, 22);
    /// TTB1 walk inner cacheability.
    pub const IR1: Field = Field::bits(0, 25, 24);
    /// TTB1 walk outer cacheability.
    pub const OR1: Field = Field::bits(0, 27, 26);
    /// TTB1 walk shareability.
    pub const SH1: Field = Field::bits(0, 29, 28);
    /// Disable TTB1 walks.
    pub const EPD1: Field = Field::new(0, 30, 1);
    /// Valid.
    pub const V: Field = Field::new(0, 31, 1);
    /// Output size.
    pub const IPS: Field = Field::bits(0, 34, 32);
    /// Access flag fault disable.
    pub const AFFD: Field = Field::new(0, 35, 1);
    /// Write implies XN.
    pub const WXN: Field = Field::new(0, 36, 1);
    /// Unprivileged write implies privileged XN.
    pub const UWXN: Field = Field::new(0, 37, 1);
    /// Top byte ignore, TTB0 range.
    pub const TBI0: Field = Field::new(0, 38, 1);
    /// Top byte ignore, TTB1 range.
    pub const TBI1: Field = Field::new(0, 39, 1);
    /// Privileged access never.
    pub const PAN: Field = Field::new(0, 40, 1);
    /// AArch64 tables.
    pub const AA64: Field = Field::new(0, 41, 1);
    /// Hardware dirty update.
    pub const HD: Field = Field::new(0, 42, 1);
    /// Hardware access flag update.
    pub const HA: Field = Field::new(0, 43, 1);
    /// Stall faulting transactions.
    pub const S: Field = Field::new(0, 44, 1);
    /// Record faults.
    pub const R: Field = Field::new(0, 45, 1);
    /// Abort (1) or RAZ/WI (0) terminated transactions.
    pub const A: Field = Field::new(0, 46, 1);
    /// ASID set.
    pub const ASET: Field = Field::new(0, 47, 1);
    /// ASID.
    pub const ASID: Field = Field::bits(0, 63, 48);
    /// NS config for TTB0 walks.
    pub const NSCFG0: Field = Field::new(1, 0, 1);
    /// Hierarchical attributes disable, TTB0.
    pub const HAD0: Field = Field::new(1, 1, 1);
    /// TTB0 [51:4].
    pub const TTB0: Field = Field::bits(1, 51, 4);
    /// NS config for TTB1 walks.
    pub const NSCFG1: Field = Field::new(2, 0, 1);
    /// Hierarchical attributes disable, TTB1.
    pub const HAD1: Field = Field::new(2, 1, 1);
    /// TTB1 [51:4].
    pub const TTB1: Field = Field::bits(2, 51, 4);
    /// MAIR (both halves).
    pub const MAIR: Field = Field::new(3, 0, 64);
    /// AMAIR.
    pub const AMAIR: Field = Field::new(4, 0, 64);
}

/// L1 CD descriptor fields.
pub mod l1 {
    use super::Field;
    /// Valid.
    pub const V: Field = Field::new(0, 0, 1);
    /// L2 table pointer [51:12].
    pub const L2PTR: Field = Field::bits(0, 51, 12);
}

/// A raw CD.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Cd(pub [u64; 8]);

/// One of the two VA ranges of a CD.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TtbRange {
    /// Granule shift (12, 14, 16).
    pub granule_shift: u32,
    /// VA bits (64 − TxSZ).
    pub va_bits: u32,
    /// Starting level.
    pub start_level: u32,
    /// Table base.
    pub ttb: u64,
    /// Top byte ignored.
    pub tbi: bool,
    /// Hierarchical attributes disabled.
    pub had: bool,
}

/// A validated CD.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CdInfo {
    /// TTB0 range (None when EPD0 = 1).
    pub ttb0: Option<TtbRange>,
    /// TTB1 range (None when EPD1 = 1).
    pub ttb1: Option<TtbRange>,
    /// TBI0 (also needed when TTB0 walks are disabled).
    pub tbi0: bool,
    /// TBI1.
    pub tbi1: bool,
    /// Effective output size in bits.
    pub oas_bits: u32,
    /// ASID.
    pub asid: u16,
    /// Access flag fault disable.
    pub affd: bool,
    /// Hardware AF update.
    pub ha: bool,
    /// Hardware dirty update.
    pub hd: bool,
    /// Write implies XN.
    pub wxn: bool,
    /// Unprivileged-writable implies privileged XN.
    pub uwxn: bool,
    /// Record faults.
    pub record: bool,
    /// Abort (true) or RAZ/WI (false) on translation-related faults.
    pub abort: bool,
    /// MAIR.
    pub mair: u64,
}

/// Why a CD is illegal (C_BAD_CD).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BadCd(pub &'static str);

/// Stage-1 starting level for a VA size and granule (reference `lpae.md` §3.1).
pub fn s1_start_level(va_bits: u32, granule_shift: u32) -> u32 {
    let bpl = granule_shift - 3;
    let levels = (va_bits - granule_shift).div_ceil(bpl);
    4u32.saturating_sub(levels)
}

fn range(
    cfg: &SmmuConfig,
    tsz: u64,
    granule_shift: Option<u32>,
    ttb: u64,
    tbi: bool,
    had: bool,
) -> Result<TtbRange, BadCd> {
    let g = granule_shift.ok_or(BadCd("reserved TG"))?;
    if !cfg.granule_supported(g) {
        return Err(BadCd("unsupported granule"));
    }
    let min_tsz = if g == 16 && cfg.vax52 { 12 } else { 16 };
    if tsz < min_tsz || tsz > 39 {
        return Err(BadCd("TxSZ out of range"));
    }
    let va_bits = 64 - tsz as u32;
    let start_level = s1_start_level(va_bits, g);
    let bits = crate::ste::start_bits(va_bits, g, start_level).unwrap_or(1);
    let root_size = 1u64 << (bits + 3).max(3);
    Ok(TtbRange {
        granule_shift: g,
        va_bits,
        start_level,
        ttb: ttb & !(root_size - 1),
        tbi,
        had,
    })
}

impl Cd {
    /// Valid bit.
    pub fn valid(&self) -> bool {
        fields::V.is_set(&self.0)
    }

    /// Validate and decode against the features of `cfg`.
    pub fn decode(&self, cfg: &SmmuConfig) -> Result<CdInfo, BadCd> {
        use fields as f;
        let w = &self.0;
        if !self.valid() {
            return Err(BadCd("V=0"));
        }
        if !f::AA64.is_set(w) {
            return Err(BadCd("AA64=0 (AArch32 tables unsupported)"));
        }
        if f::ENDI.is_set(w) {
            return Err(BadCd("big-endian tables unsupported"));
        }
        if f::S.is_set(w) {
            return Err(BadCd("S=1 with a terminate-only stall model"));
        }
        let oas = oas_bits(f::IPS.get(w)).min(cfg.oas_bits);
        let had_ok = cfg.had;
        let ttb0 = if f::EPD0.is_set(w) {
            None
        } else {
            Some(range(
                cfg,
                f::T0SZ.get(w),
                tg0_shift(f::TG0.get(w)),
                f::TTB0.get(w) << 4,
                f::TBI0.is_set(w),
                had_ok && f::HAD0.is_set(w),
            )?)
        };
        let ttb1 = if f::EPD1.is_set(w) {
            None
        } else {
            let g = match f::TG1.get(w) {
                1 => Some(14),
                2 => Some(12),
                3 => Some(16),
                _ => None,
            };
            Some(range(
                cfg,
                f::T1SZ.get(w),
                g,
                f::TTB1.get(w) << 4,
                f::TBI1.is_set(w),
                had_ok && f::HAD1.is_set(w),
            )?)
        };
        for r in [ttb0, ttb1].into_iter().flatten() {
            if r.ttb >> oas != 0 {
                return Err(BadCd("TTB beyond IPS"));
            }
        }
        let asid_raw = f::ASID.get(w) as u16;
        let ha = cfg.httu != Httu::None && f::HA.is_set(w);
        Ok(CdInfo {
            ttb0,
            ttb1,
            tbi0: f::TBI0.is_set(w),
            tbi1: f::TBI1.is_set(w),
            oas_bits: oas,
            asid: if cfg.asid16 {
                asid_raw
            } else {
                asid_raw & 0xff
            },
            affd: f::AFFD.is_set(w),
            ha,
            hd: ha && cfg.httu == Httu::AccessDirty && f::HD.is_set(w),
            wxn: f::WXN.is_set(w),
            uwxn: f::UWXN.is_set(w),
            record: f::R.is_set(w),
            abort: f::A.is_set(w),
            mair: f::MAIR.get(w),
        })
    }

    /// Bits the SMMU consults given V and EPD0 (reference §8), for the sanitizer.
    pub fn used_mask(&self) -> [u64; 8] {
        let mut m = [0u64; 8];
        m[0] = fields::V.mask();
        if !self.valid() {
            return m;
        }
        m[0] = u64::MAX;
        m[1] = u64::MAX;
        m[2] = u64::MAX;
        m[3] = u64::MAX;
        if fields::EPD0.is_set(&self.0) {
            use fields as f;
            m[0] &=
                !(f::T0SZ.mask() | f::TG0.mask() | f::IR0.mask() | f::OR0.mask() | f::SH0.mask());
            m[1] &= !f::TTB0.mask();
        }
        m
    }
}
