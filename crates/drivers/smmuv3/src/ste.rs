//! Stream Table Entry: raw layout, builders, used-bit masks and decode
//! (`smmuv3.md` §2.1, used bits §8).

use crate::field::Field;

/// Number of 64-bit words in an STE.
pub const STE_DWORDS: usize = 8;
/// Size of an STE in bytes.
pub const STE_BYTES: u64 = 64;

/// STE fields (dword, bit range) as in §2.1.
pub mod f {
    use super::Field;
    /// Valid.
    pub const V: Field = Field::bit(0, 0);
    /// Config: 0 abort, 4 bypass, 5 S1, 6 S2, 7 nested.
    pub const CONFIG: Field = Field::bits(0, 3, 1);
    /// CD table format.
    pub const S1FMT: Field = Field::bits(0, 5, 4);
    /// CD (table) pointer bits 51:6.
    pub const S1CTXPTR: Field = Field::bits(0, 51, 6);
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
    /// Destructive reads.
    pub const DRE: Field = Field::bit(1, 12);
    /// Merge events.
    pub const MEV: Field = Field::bit(1, 19);
    /// Stage-2 forced write-back.
    pub const S2FWB: Field = Field::bit(1, 25);
    /// Stage-1 stall disable.
    pub const S1STALLD: Field = Field::bit(1, 27);
    /// ATS behaviour.
    pub const EATS: Field = Field::bits(1, 29, 28);
    /// Stream world.
    pub const STRW: Field = Field::bits(1, 31, 30);
    /// Shareability override.
    pub const SHCFG: Field = Field::bits(1, 45, 44);
    /// VMID.
    pub const S2VMID: Field = Field::bits(2, 15, 0);
    /// The VTCR block d2[50:32].
    pub const VTCR: Field = Field::bits(2, 50, 32);
    /// 64 − IPA size.
    pub const S2T0SZ: Field = Field::bits(2, 37, 32);
    /// Starting level.
    pub const S2SL0: Field = Field::bits(2, 39, 38);
    /// Walk inner cacheability.
    pub const S2IR0: Field = Field::bits(2, 41, 40);
    /// Walk outer cacheability.
    pub const S2OR0: Field = Field::bits(2, 43, 42);
    /// Walk shareability.
    pub const S2SH0: Field = Field::bits(2, 45, 44);
    /// Granule: 0 4K, 1 64K, 2 16K.
    pub const S2TG: Field = Field::bits(2, 47, 46);
    /// Output size.
    pub const S2PS: Field = Field::bits(2, 50, 48);
    /// AArch64 tables.
    pub const S2AA64: Field = Field::bit(2, 51);
    /// Big-endian tables.
    pub const S2ENDI: Field = Field::bit(2, 52);
    /// Access-flag fault disable.
    pub const S2AFFD: Field = Field::bit(2, 53);
    /// Protected table walk.
    pub const S2PTW: Field = Field::bit(2, 54);
    /// HW dirty update.
    pub const S2HD: Field = Field::bit(2, 55);
    /// HW access update.
    pub const S2HA: Field = Field::bit(2, 56);
    /// Stall S2 faults.
    pub const S2S: Field = Field::bit(2, 57);
    /// Record S2 faults.
    pub const S2R: Field = Field::bit(2, 58);
    /// S2 table base bits 51:4.
    pub const S2TTB: Field = Field::bits(3, 51, 4);
}

/// Every STE field this driver names, for the driver/model cross-check.
pub const FIELDS: &[(&str, Field)] = &[
    ("V", f::V),
    ("Config", f::CONFIG),
    ("S1Fmt", f::S1FMT),
    ("S1ContextPtr", f::S1CTXPTR),
    ("S1CDMax", f::S1CDMAX),
    ("S1DSS", f::S1DSS),
    ("S1CIR", f::S1CIR),
    ("S1COR", f::S1COR),
    ("S1CSH", f::S1CSH),
    ("DRE", f::DRE),
    ("MEV", f::MEV),
    ("S2FWB", f::S2FWB),
    ("S1STALLD", f::S1STALLD),
    ("EATS", f::EATS),
    ("STRW", f::STRW),
    ("SHCFG", f::SHCFG),
    ("S2VMID", f::S2VMID),
    ("S2T0SZ", f::S2T0SZ),
    ("S2SL0", f::S2SL0),
    ("S2IR0", f::S2IR0),
    ("S2OR0", f::S2OR0),
    ("S2SH0", f::S2SH0),
    ("S2TG", f::S2TG),
    ("S2PS", f::S2PS),
    ("S2AA64", f::S2AA64),
    ("S2ENDI", f::S2ENDI),
    ("S2AFFD", f::S2AFFD),
    ("S2PTW", f::S2PTW),
    ("S2HD", f::S2HD),
    ("S2HA", f::S2HA),
    ("S2S", f::S2S),
    ("S2R", f::S2R),
    ("S2TTB", f::S2TTB),
];

/// STE.Config values.
pub mod config {
    /// Abort, no event.
    pub const ABORT: u64 = 0;
    /// Bypass both stages.
    pub const BYPASS: u64 = 4;
    /// Stage 1 translate, stage 2 bypass.
    pub const S1_TRANS: u64 = 5;
    /// Stage 1 bypass, stage 2 translate.
    pub const S2_TRANS: u64 = 6;
    /// Nested.
    pub const NESTED: u64 = 7;
}

/// STE.S1DSS values.
pub mod s1dss {
    /// Terminate non-substream traffic.
    pub const TERMINATE: u64 = 0;
    /// Bypass stage 1 for non-substream traffic.
    pub const BYPASS: u64 = 1;
    /// Non-substream traffic uses CD 0.
    pub const SSID0: u64 = 2;
}

/// STE.EATS values.
pub mod eats {
    /// ATS requests aborted.
    pub const ABT: u64 = 0;
    /// Full ATS translation.
    pub const TRANS: u64 = 1;
    /// Split-stage ATS.
    pub const S1CHK: u64 = 2;
}

/// Stage-1 part of an STE: where the context descriptors are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct S1Cfg {
    /// Physical address of the CD (table), 64-byte aligned.
    pub cd_table: u64,
    /// S1Fmt (0 linear, 1/2 two-level).
    pub fmt: u8,
    /// S1CDMax (log2 number of CDs; 0 = a single CD).
    pub cdmax: u8,
    /// S1DSS (see [`s1dss`]).
    pub dss: u8,
}

/// Stage-2 part of an STE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct S2Cfg {
    /// VMID.
    pub vmid: u16,
    /// The VTCR block (d2[50:32]) as produced by the stage-2 page table.
    pub vtcr: u64,
    /// Stage-2 table base (16-byte aligned, aligned to the table size).
    pub ttb: u64,
}

/// Decoded STE configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SteConfig {
    /// Abort (also V=1 with reserved Config 1..3).
    Abort,
    /// Bypass.
    Bypass,
    /// Stage 1 only.
    S1 {
        /// Stage-1 configuration.
        s1: S1Cfg,
        /// EATS.
        eats: u8,
    },
    /// Stage 2 only.
    S2 {
        /// Stage-2 configuration.
        s2: S2Cfg,
        /// EATS.
        eats: u8,
    },
    /// Stage 1 nested in stage 2.
    Nested {
        /// Stage-1 configuration.
        s1: S1Cfg,
        /// Stage-2 configuration.
        s2: S2Cfg,
        /// EATS.
        eats: u8,
    },
}

/// A raw STE (8 little-endian dwords).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ste(pub [u64; STE_DWORDS]);

impl Ste {
    /// An invalid entry (V=0): traffic gets C_BAD_STE.
    pub const fn invalid() -> Ste {
        Ste([0; STE_DWORDS])
    }

    /// V=1, Config=abort: traffic is terminated without an event.
    pub fn abort() -> Ste {
        let mut s = Ste::invalid();
        f::V.set(&mut s.0, 1);
        f::CONFIG.set(&mut s.0, config::ABORT);
        s
    }

    /// V=1, Config=bypass; SHCFG = use incoming when the SMMU supports overrides.
    pub fn bypass(attr_ovr: bool) -> Ste {
        let mut s = Ste::invalid();
        f::V.set(&mut s.0, 1);
        f::CONFIG.set(&mut s.0, config::BYPASS);
        if attr_ovr {
            f::SHCFG.set(&mut s.0, 1);
        }
        s
    }

    fn set_s1(&mut self, s1: &S1Cfg, attr_ovr: bool) {
        let w = &mut self.0;
        f::S1FMT.set(w, s1.fmt as u64);
        f::S1CTXPTR.set(w, s1.cd_table >> 6);
        f::S1CDMAX.set(w, s1.cdmax as u64);
        f::S1DSS.set(w, s1.dss as u64);
        f::S1CIR.set(w, 1);
        f::S1COR.set(w, 1);
        f::S1CSH.set(w, 3);
        if attr_ovr && s1.dss as u64 == s1dss::BYPASS {
            f::SHCFG.set(w, 1);
        }
    }

    fn set_s2(&mut self, s2: &S2Cfg, attr_ovr: bool) {
        let w = &mut self.0;
        if attr_ovr {
            f::SHCFG.set(w, 1);
        }
        f::S2VMID.set(w, s2.vmid as u64);
        f::VTCR.set(w, s2.vtcr);
        f::S2AA64.set(w, 1);
        f::S2PTW.set(w, 1);
        f::S2R.set(w, 1);
        f::S2TTB.set(w, s2.ttb >> 4);
    }

    /// Stage-1 translate (Config 5); S2VMID stays 0.
    pub fn s1(s1: &S1Cfg, eats: u8, attr_ovr: bool) -> Ste {
        let mut s = Ste::invalid();
        f::V.set(&mut s.0, 1);
        f::CONFIG.set(&mut s.0, config::S1_TRANS);
        s.set_s1(s1, attr_ovr);
        f::EATS.set(&mut s.0, eats as u64);
        s
    }

    /// Stage-2 translate (Config 6).
    pub fn s2(s2: &S2Cfg, eats: u8, attr_ovr: bool) -> Ste {
        let mut s = Ste::invalid();
        f::V.set(&mut s.0, 1);
        f::CONFIG.set(&mut s.0, config::S2_TRANS);
        s.set_s2(s2, attr_ovr);
        f::EATS.set(&mut s.0, eats as u64);
        s
    }

    /// Nested stage 1 + stage 2 (Config 7).
    pub fn nested(s1: &S1Cfg, s2: &S2Cfg, eats: u8, attr_ovr: bool) -> Ste {
        let mut s = Ste::invalid();
        f::V.set(&mut s.0, 1);
        f::CONFIG.set(&mut s.0, config::NESTED);
        s.set_s1(s1, attr_ovr);
        s.set_s2(s2, attr_ovr);
        f::EATS.set(&mut s.0, eats as u64);
        s
    }

    /// Build the entry for a decoded configuration.
    pub fn from_config(cfg: &SteConfig, attr_ovr: bool) -> Ste {
        match cfg {
            SteConfig::Abort => Ste::abort(),
            SteConfig::Bypass => Ste::bypass(attr_ovr),
            SteConfig::S1 { s1, eats } => Ste::s1(s1, *eats, attr_ovr),
            SteConfig::S2 { s2, eats } => Ste::s2(s2, *eats, attr_ovr),
            SteConfig::Nested { s1, s2, eats } => Ste::nested(s1, s2, *eats, attr_ovr),
        }
    }

    /// Bits the SMMU consults for this entry value (§8 step 1).
    pub fn used(&self) -> [u64; STE_DWORDS] {
        let w = &self.0;
        let mut u = [0u64; STE_DWORDS];
        f::V.set_all(&mut u);
        if f::V.get(w) == 0 {
            return u;
        }
        f::CONFIG.set_all(&mut u);
        let cfg = f::CONFIG.get(w);
        if cfg == config::BYPASS {
            f::SHCFG.set_all(&mut u);
            return u;
        }
        if cfg & 4 == 0 {
            return u; // abort (and reserved values behaving as abort)
        }
        if cfg & 1 != 0 {
            for fl in [
                f::S1FMT,
                f::S1CTXPTR,
                f::S1CDMAX,
                f::S1DSS,
                f::S1CIR,
                f::S1COR,
                f::S1CSH,
                f::S1STALLD,
                f::STRW,
                f::EATS,
                f::S2VMID,
            ] {
                fl.set_all(&mut u);
            }
            if f::S1DSS.get(w) == s1dss::BYPASS {
                f::SHCFG.set_all(&mut u);
            }
        }
        if cfg & 2 != 0 {
            for fl in [
                f::EATS,
                f::SHCFG,
                f::S2VMID,
                f::VTCR,
                f::S2AA64,
                f::S2ENDI,
                f::S2PTW,
                f::S2S,
                f::S2R,
                f::S2FWB,
                f::S2TTB,
            ] {
                fl.set_all(&mut u);
            }
        }
        u
    }

    /// The VMID this entry tags its translations with, if it translates.
    pub fn vmid(&self) -> Option<u16> {
        let w = &self.0;
        (f::V.get(w) == 1 && f::CONFIG.get(w) & 4 != 0 && f::CONFIG.get(w) != config::BYPASS)
            .then(|| f::S2VMID.get(w) as u16)
    }
}

impl TryFrom<&Ste> for SteConfig {
    type Error = crate::Error;

    /// Decode an entry; fails with the C_BAD_STE reason for illegal entries.
    fn try_from(s: &Ste) -> Result<SteConfig, crate::Error> {
        let w = &s.0;
        let bad = |reason| crate::Error::Malformed {
            what: "STE (C_BAD_STE)",
            reason,
        };
        if f::V.get(w) == 0 {
            return Err(bad("V=0"));
        }
        let cfg = f::CONFIG.get(w);
        let s1 = S1Cfg {
            cd_table: f::S1CTXPTR.get(w) << 6,
            fmt: f::S1FMT.get(w) as u8,
            cdmax: f::S1CDMAX.get(w) as u8,
            dss: f::S1DSS.get(w) as u8,
        };
        let s2 = S2Cfg {
            vmid: f::S2VMID.get(w) as u16,
            vtcr: f::VTCR.get(w),
            ttb: f::S2TTB.get(w) << 4,
        };
        let eats = f::EATS.get(w) as u8;
        if cfg & 2 != 0 && f::S2AA64.get(w) == 0 {
            return Err(bad("S2AA64=0 (AArch32 stage 2 unsupported)"));
        }
        if cfg & 1 != 0 && s1.cdmax != 0 && s1.fmt == 3 {
            return Err(bad("reserved S1Fmt"));
        }
        Ok(match cfg {
            config::BYPASS => SteConfig::Bypass,
            config::S1_TRANS => SteConfig::S1 { s1, eats },
            config::S2_TRANS => SteConfig::S2 { s2, eats },
            config::NESTED => SteConfig::Nested { s1, s2, eats },
            _ => SteConfig::Abort,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s1cfg() -> S1Cfg {
        S1Cfg {
            cd_table: 0x8000_1000,
            fmt: 0,
            cdmax: 0,
            dss: 0,
        }
    }
    fn s2cfg() -> S2Cfg {
        S2Cfg {
            vmid: 7,
            vtcr: 0x2_5590 | 24,
            ttb: 0x9000_0000,
        }
    }

    #[test]
    fn golden_encodings() {
        // abort: V=1, Config=0 -> d0 = 0b0001.
        assert_eq!(Ste::abort().0[0], 0x1);
        // bypass: V | Config=4<<1 = 0x9; SHCFG=1 at d1[45:44].
        let b = Ste::bypass(true);
        assert_eq!(b.0[0], 0x9);
        assert_eq!(b.0[1], 1 << 44);
        // S1: Config=5 -> 0xB; ctx ptr at bits 51:6 = address itself (64-byte aligned);
        // S1CIR=S1COR=1, S1CSH=3 -> d1 = 0b11_01_01_00 = 0xD4 with S1DSS=0.
        let s = Ste::s1(&s1cfg(), 1, false);
        assert_eq!(s.0[0], 0x8000_1000 | 0xB);
        assert_eq!(s.0[1], 0xD4 | (1 << 28));
        // S2: Config=6 -> 0xD; VMID in d2[15:0]; VTCR at 32; AA64 bit51, PTW bit54, R bit58.
        let t = Ste::s2(&s2cfg(), 0, false);
        assert_eq!(t.0[0], 0xD);
        assert_eq!(
            t.0[2],
            7 | ((0x2_5590u64 | 24) << 32) | (1 << 51) | (1 << 54) | (1 << 58)
        );
        assert_eq!(t.0[3], 0x9000_0000);
    }

    #[test]
    fn builders_stay_inside_used_bits_and_decode_back() {
        let cfgs = [
            SteConfig::Abort,
            SteConfig::Bypass,
            SteConfig::S1 {
                s1: s1cfg(),
                eats: 1,
            },
            SteConfig::S1 {
                s1: S1Cfg {
                    dss: 1,
                    cdmax: 4,
                    ..s1cfg()
                },
                eats: 0,
            },
            SteConfig::S2 {
                s2: s2cfg(),
                eats: 0,
            },
            SteConfig::Nested {
                s1: s1cfg(),
                s2: s2cfg(),
                eats: 0,
            },
        ];
        for c in cfgs {
            for ovr in [false, true] {
                let s = Ste::from_config(&c, ovr);
                let u = s.used();
                for (i, (w, m)) in s.0.iter().zip(u).enumerate() {
                    assert_eq!(w & !m, 0, "{c:?} dword {i} sets unused bits");
                }
                assert_eq!(SteConfig::try_from(&s).unwrap(), c);
            }
        }
        assert!(SteConfig::try_from(&Ste::invalid()).is_err());
        assert_eq!(Ste::invalid().used()[0], 1);
    }

    #[test]
    fn vmid_reported_only_for_translating_entries() {
        assert_eq!(Ste::abort().vmid(), None);
        assert_eq!(Ste::bypass(false).vmid(), None);
        assert_eq!(Ste::s1(&s1cfg(), 0, false).vmid(), Some(0));
        assert_eq!(Ste::s2(&s2cfg(), 0, false).vmid(), Some(7));
    }
}
