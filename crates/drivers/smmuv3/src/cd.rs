//! Context Descriptor and level-1 descriptors (`smmuv3.md` §3, §3.1, §2.2, used bits §8).

use crate::field::Field;

/// Number of 64-bit words in a CD.
pub const CD_DWORDS: usize = 8;
/// Size of a CD in bytes.
pub const CD_BYTES: u64 = 64;

/// CD fields (§3).
pub mod f {
    use super::Field;
    /// 64 − VA size.
    pub const T0SZ: Field = Field::bits(0, 5, 0);
    /// TTB0 granule: 0 4K, 1 64K, 2 16K.
    pub const TG0: Field = Field::bits(0, 7, 6);
    /// Walk inner cacheability.
    pub const IR0: Field = Field::bits(0, 9, 8);
    /// Walk outer cacheability.
    pub const OR0: Field = Field::bits(0, 11, 10);
    /// Walk shareability.
    pub const SH0: Field = Field::bits(0, 13, 12);
    /// Disable TTB0 walks.
    pub const EPD0: Field = Field::bit(0, 14);
    /// Big-endian tables.
    pub const ENDI: Field = Field::bit(0, 15);
    /// TTB1 size.
    pub const T1SZ: Field = Field::bits(0, 21, 16);
    /// TTB1 granule.
    pub const TG1: Field = Field::bits(0, 23, 22);
    /// Disable TTB1 walks.
    pub const EPD1: Field = Field::bit(0, 30);
    /// Valid.
    pub const V: Field = Field::bit(0, 31);
    /// Output size.
    pub const IPS: Field = Field::bits(0, 34, 32);
    /// Access flag fault disable.
    pub const AFFD: Field = Field::bit(0, 35);
    /// Write implies XN.
    pub const WXN: Field = Field::bit(0, 36);
    /// Top byte ignore (TTB0).
    pub const TBI0: Field = Field::bit(0, 38);
    /// AArch64 tables.
    pub const AA64: Field = Field::bit(0, 41);
    /// HW dirty update.
    pub const HD: Field = Field::bit(0, 42);
    /// HW access flag update.
    pub const HA: Field = Field::bit(0, 43);
    /// Stall faults.
    pub const S: Field = Field::bit(0, 44);
    /// Record faults.
    pub const R: Field = Field::bit(0, 45);
    /// Abort terminated transactions.
    pub const A: Field = Field::bit(0, 46);
    /// Non-shared ASID set.
    pub const ASET: Field = Field::bit(0, 47);
    /// ASID.
    pub const ASID: Field = Field::bits(0, 63, 48);
    /// Hierarchical attribute disable (TTB0).
    pub const HAD0: Field = Field::bit(1, 1);
    /// TTB0 bits 51:4.
    pub const TTB0: Field = Field::bits(1, 51, 4);
    /// TTB1 bits 51:4.
    pub const TTB1: Field = Field::bits(2, 51, 4);
    /// MAIR (both halves).
    pub const MAIR: Field = Field::new(3, 0, 64);
    /// AMAIR.
    pub const AMAIR: Field = Field::new(4, 0, 64);
}

/// Every CD field this driver names, for the driver/model cross-check.
pub const FIELDS: &[(&str, Field)] = &[
    ("T0SZ", f::T0SZ),
    ("TG0", f::TG0),
    ("IR0", f::IR0),
    ("OR0", f::OR0),
    ("SH0", f::SH0),
    ("EPD0", f::EPD0),
    ("ENDI", f::ENDI),
    ("T1SZ", f::T1SZ),
    ("TG1", f::TG1),
    ("EPD1", f::EPD1),
    ("V", f::V),
    ("IPS", f::IPS),
    ("AFFD", f::AFFD),
    ("WXN", f::WXN),
    ("TBI0", f::TBI0),
    ("AA64", f::AA64),
    ("HD", f::HD),
    ("HA", f::HA),
    ("S", f::S),
    ("R", f::R),
    ("A", f::A),
    ("ASET", f::ASET),
    ("ASID", f::ASID),
    ("HAD0", f::HAD0),
    ("TTB0", f::TTB0),
    ("TTB1", f::TTB1),
    ("MAIR", f::MAIR),
    ("AMAIR", f::AMAIR),
];

/// The stage-1 translation a CD points at (from the page table's configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CdCfg {
    /// ASID.
    pub asid: u16,
    /// TTB0 (table base).
    pub ttb0: u64,
    /// 64 − VA size.
    pub t0sz: u8,
    /// Granule encoding (0 4K, 1 64K, 2 16K).
    pub tg0: u8,
    /// Walk inner cacheability.
    pub ir0: u8,
    /// Walk outer cacheability.
    pub or0: u8,
    /// Walk shareability.
    pub sh0: u8,
    /// Output size encoding.
    pub ips: u8,
    /// MAIR value.
    pub mair: u64,
    /// Stall faulting transactions.
    pub stall: bool,
}

impl CdCfg {
    /// TG0 encoding of a granule size in bytes.
    pub const fn tg0_of(granule: u64) -> Option<u8> {
        match granule {
            0x1000 => Some(0),
            0x10000 => Some(1),
            0x4000 => Some(2),
            _ => None,
        }
    }
}

/// A raw CD (8 little-endian dwords).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cd(pub [u64; CD_DWORDS]);

impl Cd {
    /// An invalid CD (V=0): substream traffic gets C_BAD_CD.
    pub const fn invalid() -> Cd {
        Cd([0; CD_DWORDS])
    }

    /// A stage-1 CD as Linux builds it (`smmuv3.md` §3): EPD1, V, AA64, R, A, ASET.
    pub fn s1(c: &CdCfg) -> Cd {
        let mut d = Cd::invalid();
        let w = &mut d.0;
        f::T0SZ.set(w, c.t0sz as u64);
        f::TG0.set(w, c.tg0 as u64);
        f::IR0.set(w, c.ir0 as u64);
        f::OR0.set(w, c.or0 as u64);
        f::SH0.set(w, c.sh0 as u64);
        f::IPS.set(w, c.ips as u64);
        f::EPD1.set(w, 1);
        f::V.set(w, 1);
        f::AA64.set(w, 1);
        f::R.set(w, 1);
        f::A.set(w, 1);
        f::ASET.set(w, 1);
        f::S.set(w, c.stall as u64);
        f::ASID.set(w, c.asid as u64);
        f::TTB0.set(w, c.ttb0 >> 4);
        f::MAIR.set(w, c.mair);
        d
    }

    /// Bits the SMMU consults for this CD value (§8 step 1).
    pub fn used(&self) -> [u64; CD_DWORDS] {
        let w = &self.0;
        let mut u = [0u64; CD_DWORDS];
        f::V.set_all(&mut u);
        if f::V.get(w) == 0 {
            return u;
        }
        u = [u64::MAX; CD_DWORDS];
        if f::EPD0.get(w) == 1 {
            for fl in [f::T0SZ, f::TG0, f::IR0, f::OR0, f::SH0, f::TTB0] {
                u[fl.word] &= !fl.mask();
            }
        }
        u
    }

    /// The ASID of a valid CD.
    pub fn asid(&self) -> Option<u16> {
        (f::V.get(&self.0) == 1).then(|| f::ASID.get(&self.0) as u16)
    }

    /// Decode a CD; fails with the C_BAD_CD reason.
    pub fn decode(&self) -> Result<CdCfg, crate::Error> {
        let w = &self.0;
        let bad = |reason| crate::Error::Malformed {
            what: "CD (C_BAD_CD)",
            reason,
        };
        if f::V.get(w) == 0 {
            return Err(bad("V=0"));
        }
        if f::AA64.get(w) == 0 {
            return Err(bad("AA64=0"));
        }
        if f::TG0.get(w) == 3 {
            return Err(bad("reserved TG0"));
        }
        Ok(CdCfg {
            asid: f::ASID.get(w) as u16,
            ttb0: f::TTB0.get(w) << 4,
            t0sz: f::T0SZ.get(w) as u8,
            tg0: f::TG0.get(w) as u8,
            ir0: f::IR0.get(w) as u8,
            or0: f::OR0.get(w) as u8,
            sh0: f::SH0.get(w) as u8,
            ips: f::IPS.get(w) as u8,
            mair: f::MAIR.get(w),
            stall: f::S.get(w) == 1,
        })
    }
}

/// Level-1 stream-table descriptor fields (§2.2).
pub mod l1_ste {
    use crate::field::Field;
    /// log2(STEs in the L2 table) + 1; 0 = invalid.
    pub const SPAN: Field = Field::bits(0, 4, 0);
    /// L2 table pointer bits 51:6.
    pub const L2PTR: Field = Field::bits(0, 51, 6);

    /// The descriptor for an L2 table of `1 << split` STEs at `l2`.
    pub fn encode(l2: u64, split: u32) -> u64 {
        let mut w = [0u64];
        SPAN.set(&mut w, split as u64 + 1);
        L2PTR.set(&mut w, l2 >> 6);
        w[0]
    }

    /// `(l2 table address, number of STEs)` of a valid descriptor.
    pub fn decode(d: u64) -> Option<(u64, u64)> {
        let span = SPAN.get_word(d);
        (1..=11)
            .contains(&span)
            .then(|| (L2PTR.get_word(d) << 6, 1u64 << (span - 1)))
    }
}

/// Level-1 CD-table descriptor fields (§3.1).
pub mod l1_cd {
    use crate::field::Field;
    /// Valid.
    pub const V: Field = Field::bit(0, 0);
    /// L2 CD table pointer bits 51:12.
    pub const L2PTR: Field = Field::bits(0, 51, 12);

    /// A valid descriptor pointing at `l2` (4 KiB aligned).
    pub fn encode(l2: u64) -> u64 {
        let mut w = [0u64];
        V.set(&mut w, 1);
        L2PTR.set(&mut w, l2 >> 12);
        w[0]
    }

    /// The L2 table address of a valid descriptor.
    pub fn decode(d: u64) -> Option<u64> {
        (V.get_word(d) == 1).then(|| L2PTR.get_word(d) << 12)
    }
}

/// L1 descriptor fields for the cross-check (prefixed by table kind).
pub const L1_FIELDS: &[(&str, Field)] = &[
    ("L1STD.SPAN", l1_ste::SPAN),
    ("L1STD.L2PTR", l1_ste::L2PTR),
    ("L1CD.V", l1_cd::V),
    ("L1CD.L2PTR", l1_cd::L2PTR),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> CdCfg {
        CdCfg {
            asid: 0x1234,
            ttb0: 0x8765_4000,
            t0sz: 16,
            tg0: 0,
            ir0: 1,
            or0: 1,
            sh0: 3,
            ips: 5,
            mair: 0x0004_4fff,
            stall: false,
        }
    }

    #[test]
    fn golden_s1_cd() {
        let d = Cd::s1(&cfg());
        // d0: T0SZ=16 | IR0=1<<8 | OR0=1<<10 | SH0=3<<12 | EPD1 bit30 | V bit31 | IPS=5<<32
        //     | AA64 bit41 | R bit45 | A bit46 | ASET bit47 | ASID<<48
        let d0 = 16
            | (1 << 8)
            | (1 << 10)
            | (3 << 12)
            | (1 << 30)
            | (1 << 31)
            | (5u64 << 32)
            | (1 << 41)
            | (1 << 45)
            | (1 << 46)
            | (1 << 47)
            | (0x1234u64 << 48);
        assert_eq!(d.0[0], d0);
        assert_eq!(d.0[1], 0x8765_4000);
        assert_eq!(d.0[3], 0x0004_4fff);
        assert_eq!(d.decode().unwrap(), cfg());
        assert_eq!(d.asid(), Some(0x1234));
    }

    #[test]
    fn used_bits_follow_v_and_epd0() {
        assert_eq!(Cd::invalid().used()[0], 1 << 31);
        assert_eq!(Cd::invalid().used()[1], 0);
        let mut d = Cd::s1(&cfg());
        assert_eq!(d.used(), [u64::MAX; 8]);
        f::EPD0.set(&mut d.0, 1);
        let u = d.used();
        assert_eq!(u[1] & f::TTB0.mask(), 0);
        assert_eq!(u[0] & f::T0SZ.mask(), 0);
        assert_ne!(u[0] & f::ASID.mask(), 0);
        assert!(Cd::invalid().decode().is_err());
    }

    #[test]
    fn l1_descriptors() {
        let d = l1_ste::encode(0x4000_0000, 8);
        assert_eq!(d, 0x4000_0000 | 9);
        assert_eq!(l1_ste::decode(d), Some((0x4000_0000, 256)));
        assert_eq!(l1_ste::decode(0x4000_0000), None);
        assert_eq!(l1_ste::decode(0x4000_0000 | 12), None, "reserved span");
        let c = l1_cd::encode(0x5555_5000);
        assert_eq!(c, 0x5555_5001);
        assert_eq!(l1_cd::decode(c), Some(0x5555_5000));
        assert_eq!(l1_cd::decode(0x5555_5000), None);
    }
}
