//! Stream Table Entries and two-level stream-table descriptors (reference `smmuv3.md`
//! §2). [`Ste`] is the raw form (8 little-endian dwords); [`Ste::decode`] validates it
//! against what the model implements and produces a [`SteInfo`], or the reason for
//! C_BAD_STE.

use crate::config::SmmuConfig;
use crate::field::Field;
use crate::regs::oas_bits;

/// Size of an STE in bytes.
pub const STE_SIZE: u64 = 64;

/// STE field definitions.
pub mod fields {
    use super::Field;
    /// Valid.
    pub const V: Field = Field::new(0, 0, 1);
    /// Config (0b0xx abort, 0b100 bypass, 0b101 S1, 0b110 S2, 0b111 nested).
    pub const CONFIG: Field = Field::bits(0, 3, 1);
    /// CD table format.
    pub const S1FMT: Field = Field::bits(0, 5, 4);
    /// CD (table) pointer [51:6].
    pub const S1_CONTEXT_PTR: Field = Field::bits(0, 51, 6);
    /// log2 number of CDs.
    pub const S1CDMAX: Field = Field::bits(0, 63, 59);
    /// Default substream behaviour.
    pub const S1DSS: Field = Field::bits(1, 1, 0);
    /// CD fetch inner cacheability.
    pub const S1CIR: Field = Field::bits(1, 3, 2);
    /// CD fetch outer cacheability.
    pub const S1COR: Field = Field::bits(1, 5, 4);
    /// CD fetch shareability.
    pub const S1CSH: Field = Field::bits(1, 7, 6);
    /// Destructive reads enable.
    pub const DRE: Field = Field::new(1, 12, 1);
    /// Contiguous hint.
    pub const CONT: Field = Field::bits(1, 16, 13);
    /// Directed cache prefetch.
    pub const DCP: Field = Field::new(1, 17, 1);
    /// PRI auto-response.
    pub const PPAR: Field = Field::new(1, 18, 1);
    /// Merge events.
    pub const MEV: Field = Field::new(1, 19, 1);
    /// Stage-2 forced write-back.
    pub const S2FWB: Field = Field::new(1, 25, 1);
    /// Stage-1 MPAM.
    pub const S1MPAM: Field = Field::new(1, 26, 1);
    /// Stage-1 stall disable.
    pub const S1STALLD: Field = Field::new(1, 27, 1);
    /// ATS enable.
    pub const EATS: Field = Field::bits(1, 29, 28);
    /// Stream world.
    pub const STRW: Field = Field::bits(1, 31, 30);
    /// Memory attribute override.
    pub const MEMATTR: Field = Field::bits(1, 35, 32);
    /// Memory type config.
    pub const MTCFG: Field = Field::new(1, 36, 1);
    /// Allocation config.
    pub const ALLOCCFG: Field = Field::bits(1, 40, 37);
    /// Shareability config.
    pub const SHCFG: Field = Field::bits(1, 45, 44);
    /// NS config.
    pub const NSCFG: Field = Field::bits(1, 47, 46);
    /// Privilege config.
    pub const PRIVCFG: Field = Field::bits(1, 49, 48);
    /// Instruction config.
    pub const INSTCFG: Field = Field::bits(1, 51, 50);
    /// VMID.
    pub const S2VMID: Field = Field::bits(2, 15, 0);
    /// The VTCR block d2[50:32].
    pub const VTCR: Field = Field::bits(2, 50, 32);
    /// 64 − IPA size.
    pub const S2T0SZ: Field = Field::bits(2, 37, 32);
    /// Stage-2 starting level.
    pub const S2SL0: Field = Field::bits(2, 39, 38);
    /// Stage-2 walk inner cacheability.
    pub const S2IR0: Field = Field::bits(2, 41, 40);
    /// Stage-2 walk outer cacheability.
    pub const S2OR0: Field = Field::bits(2, 43, 42);
    /// Stage-2 walk shareability.
    pub const S2SH0: Field = Field::bits(2, 45, 44);
    /// Stage-2 granule (0 4K, 1 64K, 2 16K).
    pub const S2TG: Field = Field::bits(2, 47, 46);
    /// Stage-2 output size.
    pub const S2PS: Field = Field::bits(2, 50, 48);
    /// AArch64 stage-2 tables.
    pub const S2AA64: Field = Field::new(2, 51, 1);
    /// Big-endian stage-2 tables.
    pub const S2ENDI: Field = Field::new(2, 52, 1);
    /// Stage-2 access flag fault disable.
    pub const S2AFFD: Field = Field::new(2, 53, 1);
    /// Protected table walk.
    pub const S2PTW: Field = Field::new(2, 54, 1);
    /// Stage-2 hardware dirty update.
    pub const S2HD: Field = Field::new(2, 55, 1);
    /// Stage-2 hardware access flag update.
    pub const S2HA: Field = Field::new(2, 56, 1);
    /// Stall on stage-2 fault.
    pub const S2S: Field = Field::new(2, 57, 1);
    /// Record stage-2 faults.
    pub const S2R: Field = Field::new(2, 58, 1);
    /// Stage-2 table base [51:4].
    pub const S2TTB: Field = Field::bits(3, 51, 4);
}

/// Two-level stream table L1 descriptor fields.
pub mod l1 {
    use super::Field;
    /// SPAN: the L2 table holds 2^(SPAN−1) STEs (0 = invalid).
    pub const SPAN: Field = Field::bits(0, 4, 0);
    /// L2 table pointer [51:6].
    pub const L2PTR: Field = Field::bits(0, 51, 6);
}

/// Config field values.
pub mod config {
    /// Abort (values 0..=3).
    pub const ABORT: u64 = 0;
    /// Bypass.
    pub const BYPASS: u64 = 4;
    /// Stage-1 translate, stage-2 bypass.
    pub const S1_TRANS: u64 = 5;
    /// Stage-1 bypass, stage-2 translate.
    pub const S2_TRANS: u64 = 6;
    /// Nested.
    pub const NESTED: u64 = 7;
}

/// A raw STE.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Ste(pub [u64; 8]);

/// Default substream behaviour for traffic without a SubstreamID (STE.S1DSS).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum S1Dss {
    /// Terminate (F_STREAM_DISABLED); also the reserved value 3.
    Terminate,
    /// Bypass stage 1.
    Bypass,
    /// Use CD 0 (and then SubstreamID 0 is not allowed).
    Substream0,
}

/// CD table format (STE.S1Fmt).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CdTableFormat {
    /// Linear array of CDs.
    Linear,
    /// Two-level with leaf tables of 2^`split` CDs (6 or 10).
    TwoLevel {
        /// SSID bits resolved by the leaf table.
        split: u32,
    },
}

/// The translation regime a stage-1-only stream uses (STE.STRW).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamWorld {
    /// Non-secure EL1 (VMID + ASID tagged).
    NsEl1,
    /// Non-secure EL2 without E2H (single VA range, no ASID).
    El2,
    /// Non-secure EL2 with E2H (two VA ranges, ASID tagged).
    El2E2H,
}

/// Decoded stage-1 part of an STE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct S1Ste {
    /// CD table format.
    pub fmt: CdTableFormat,
    /// Address of the CD (table) (an IPA when stage 2 is also enabled).
    pub context_ptr: u64,
    /// log2 number of CDs (0 = one CD, no substreams).
    pub cd_max: u32,
    /// Default substream behaviour.
    pub dss: S1Dss,
    /// Translation regime.
    pub world: StreamWorld,
}

/// Decoded stage-2 translation parameters (STE d2/d3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct S2Ste {
    /// Granule shift (12, 14, 16).
    pub granule_shift: u32,
    /// Starting level.
    pub start_level: u32,
    /// IPA size in bits (64 − S2T0SZ).
    pub ia_bits: u32,
    /// Effective output size in bits (min(S2PS, OAS)).
    pub oas_bits: u32,
    /// Root table base (aligned down to the root size).
    pub ttb: u64,
    /// Access flag faults disabled.
    pub affd: bool,
    /// Hardware access flag update.
    pub ha: bool,
    /// Hardware dirty update.
    pub hd: bool,
    /// Record stage-2 faults.
    pub record: bool,
    /// Forced write-back.
    pub fwb: bool,
    /// Protected table walk.
    pub ptw: bool,
}

/// What an STE tells the SMMU to do with a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SteConfig {
    /// Abort without recording an event.
    Abort,
    /// Bypass both stages.
    Bypass,
    /// Translate with stage 1 and/or stage 2.
    Translate {
        /// Stage 1, if enabled.
        s1: Option<S1Ste>,
        /// Stage 2, if enabled.
        s2: Option<S2Ste>,
    },
}

/// A validated STE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SteInfo {
    /// What to do with the stream.
    pub config: SteConfig,
    /// S2VMID (tags stage-1-only entries too; 0 when not used).
    pub vmid: u16,
    /// ATS setting (0 = ATS requests aborted).
    pub eats: u8,
    /// Shareability override (1 = use incoming).
    pub shcfg: u8,
}

/// Why an STE is illegal (C_BAD_STE).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BadSte(pub &'static str);

/// Decode a granule encoding of TG0 / S2TG (0 4K, 1 64K, 2 16K) to a shift.
pub const fn tg0_shift(tg: u64) -> Option<u32> {
    match tg {
        0 => Some(12),
        1 => Some(16),
        2 => Some(14),
        _ => None,
    }
}

/// Stage-2 geometry check: returns the number of index bits at the start level, or
/// `None` if T0SZ and SL0 are inconsistent.
pub(crate) fn start_bits(ia_bits: u32, granule_shift: u32, start_level: u32) -> Option<u32> {
    let bpl = granule_shift - 3;
    let below = granule_shift + bpl * (3 - start_level);
    if ia_bits <= below {
        return None;
    }
    Some(ia_bits - below)
}

impl Ste {
    /// The raw words.
    pub fn words(&self) -> &[u64; 8] {
        &self.0
    }

    /// Valid bit.
    pub fn valid(&self) -> bool {
        fields::V.is_set(&self.0)
    }

    /// Validate and decode against the features of `cfg`.
    pub fn decode(&self, cfg: &SmmuConfig) -> Result<SteInfo, BadSte> {
        use fields as f;
        let w = &self.0;
        if !self.valid() {
            return Err(BadSte("V=0"));
        }
        let config = f::CONFIG.get(w);
        let vmid_raw = f::S2VMID.get(w) as u16;
        let vmid = if cfg.vmid16 {
            vmid_raw
        } else {
            vmid_raw & 0xff
        };
        let eats = if cfg.ats { f::EATS.get(w) as u8 } else { 0 };
        let shcfg = if cfg.attr_types_ovr {
            f::SHCFG.get(w) as u8
        } else {
            1
        };
        let mk = |config| SteInfo {
            config,
            vmid,
            eats,
            shcfg,
        };
        if config & 0b100 == 0 {
            return Ok(mk(SteConfig::Abort));
        }
        if config == config::BYPASS {
            return Ok(mk(SteConfig::Bypass));
        }
        let s1_en = config & 1 != 0;
        let s2_en = config & 2 != 0;
        if s1_en && !cfg.s1() {
            return Err(BadSte("stage 1 not implemented"));
        }
        if s2_en && !cfg.s2() {
            return Err(BadSte("stage 2 not implemented"));
        }
        if eats == 2 && !(s1_en && s2_en) {
            return Err(BadSte("split-stage ATS needs nesting"));
        }
        let s1 = if s1_en {
            let cd_max = f::S1CDMAX.get(w) as u32;
            if cd_max > cfg.ssid_bits {
                return Err(BadSte("S1CDMax exceeds SSIDSIZE"));
            }
            let fmt = if cd_max == 0 {
                CdTableFormat::Linear
            } else {
                match f::S1FMT.get(w) {
                    1 | 2 if !cfg.two_level_cd => {
                        return Err(BadSte("2-level CD table unsupported"));
                    }
                    1 => CdTableFormat::TwoLevel { split: 6 },
                    2 => CdTableFormat::TwoLevel { split: 10 },
                    _ => CdTableFormat::Linear,
                }
            };
            let context_ptr = f::S1_CONTEXT_PTR.get(w) << 6;
            if !s2_en && context_ptr >> cfg.oas_bits != 0 {
                return Err(BadSte("S1ContextPtr beyond OAS"));
            }
            let dss = match f::S1DSS.get(w) {
                1 => S1Dss::Bypass,
                2 => S1Dss::Substream0,
                _ => S1Dss::Terminate,
            };
            let world = if s2_en {
                StreamWorld::NsEl1
            } else {
                match f::STRW.get(w) {
                    0 => StreamWorld::NsEl1,
                    2 if cfg.hyp => StreamWorld::El2,
                    _ => return Err(BadSte("reserved STRW")),
                }
            };
            Some(S1Ste {
                fmt,
                context_ptr,
                cd_max,
                dss,
                world,
            })
        } else {
            None
        };
        let s2 = if s2_en {
            if !f::S2AA64.is_set(w) {
                return Err(BadSte("S2AA64=0 (AArch32 tables unsupported)"));
            }
            if f::S2ENDI.is_set(w) {
                return Err(BadSte("big-endian stage-2 tables unsupported"));
            }
            if f::S2S.is_set(w) {
                return Err(BadSte("S2S=1 with a terminate-only stall model"));
            }
            let granule_shift = tg0_shift(f::S2TG.get(w)).ok_or(BadSte("reserved S2TG"))?;
            if !cfg.granule_supported(granule_shift) {
                return Err(BadSte("unsupported stage-2 granule"));
            }
            let sl0 = f::S2SL0.get(w) as u32;
            let start_level = match (granule_shift, sl0) {
                (12, 0..=2) => 2 - sl0,
                (14 | 16, 0..=2) => 3 - sl0,
                _ => return Err(BadSte("reserved S2SL0")),
            };
            let t0sz = f::S2T0SZ.get(w) as u32;
            let max_ia = if granule_shift == 16 && cfg.oas_bits >= 52 {
                52
            } else {
                48
            };
            let ia_bits = 64u32.saturating_sub(t0sz);
            if !(16..=max_ia).contains(&ia_bits) {
                return Err(BadSte("S2T0SZ out of range"));
            }
            let bits = start_bits(ia_bits, granule_shift, start_level)
                .ok_or(BadSte("S2T0SZ inconsistent with S2SL0"))?;
            if bits > granule_shift - 3 + 4 {
                return Err(BadSte("more than 16 concatenated stage-2 tables"));
            }
            let oas = oas_bits(f::S2PS.get(w)).min(cfg.oas_bits);
            let root_size = 1u64 << (bits + 3).max(3);
            let ttb = (f::S2TTB.get(w) << 4) & !(root_size - 1);
            if ttb >> oas != 0 {
                return Err(BadSte("S2TTB beyond output size"));
            }
            let ha = cfg.httu != crate::config::Httu::None && f::S2HA.is_set(w);
            Some(S2Ste {
                granule_shift,
                start_level,
                ia_bits,
                oas_bits: oas,
                ttb,
                affd: f::S2AFFD.is_set(w),
                ha,
                hd: ha && cfg.httu == crate::config::Httu::AccessDirty && f::S2HD.is_set(w),
                record: f::S2R.is_set(w),
                fwb: cfg.fwb && f::S2FWB.is_set(w),
                ptw: f::S2PTW.is_set(w),
            })
        } else {
            None
        };
        Ok(mk(SteConfig::Translate { s1, s2 }))
    }

    /// The bits of this STE the SMMU consults given its own V/Config (reference §8
    /// "used bits"), used by the sanitizer's torn-update check.
    pub fn used_mask(&self) -> [u64; 8] {
        use fields as f;
        let mut m = [0u64; 8];
        m[0] |= f::V.mask();
        if !self.valid() {
            return m;
        }
        m[0] |= f::CONFIG.mask();
        let config = f::CONFIG.get(&self.0);
        if config & 0b100 == 0 {
            return m;
        }
        if config == config::BYPASS {
            m[1] |= f::SHCFG.mask();
            return m;
        }
        if config & 1 != 0 {
            m[0] |= f::S1FMT.mask() | f::S1_CONTEXT_PTR.mask() | f::S1CDMAX.mask();
            m[1] |= f::S1DSS.mask()
                | f::S1CIR.mask()
                | f::S1COR.mask()
                | f::S1CSH.mask()
                | f::S1STALLD.mask()
                | f::STRW.mask()
                | f::EATS.mask();
            m[2] |= f::S2VMID.mask();
            if f::S1DSS.get(&self.0) == 1 {
                m[1] |= f::SHCFG.mask();
            }
        }
        if config & 2 != 0 {
            m[1] |= f::EATS.mask() | f::SHCFG.mask() | f::S2FWB.mask();
            m[2] |= f::S2VMID.mask()
                | f::VTCR.mask()
                | f::S2AA64.mask()
                | f::S2ENDI.mask()
                | f::S2AFFD.mask()
                | f::S2PTW.mask()
                | f::S2HD.mask()
                | f::S2HA.mask()
                | f::S2S.mask()
                | f::S2R.mask();
            m[3] |= f::S2TTB.mask();
        }
        m
    }
}
