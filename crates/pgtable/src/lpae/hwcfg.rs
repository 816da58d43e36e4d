//! Register values a table base needs, computed by the format (reference `lpae.md`
//! §4.3 and §5): TTBR/TCR/MAIR for stage 1, VTTBR/VTCR for stage 2. They are kept as
//! separate typed fields (like newer Linux), never as one packed CD/STE word: the
//! SMMUv3 CD repacks TG0/EPD0/EPD1, so a driver places each field itself.

use super::config::{Geometry, Granule, Quirks, pa_size_encoding};

/// Cacheability of table walks (TCR/VTCR IRGN/ORGN encodings).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Cacheability {
    /// Non-cacheable (0).
    NonCacheable = 0,
    /// Write-back, read-allocate, write-allocate (1).
    WriteBackWa = 1,
    /// Write-through (2).
    WriteThrough = 2,
    /// Write-back, no write-allocate (3).
    WriteBack = 3,
}

/// Shareability of table walks (TCR/VTCR SH encodings).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Shareability {
    /// Non-shareable (0).
    Non = 0,
    /// Outer shareable (2).
    Outer = 2,
    /// Inner shareable (3).
    Inner = 3,
}

/// TG0 encoding of a granule (4K 0, 64K 1, 16K 2).
pub const fn tg0_bits(g: Granule) -> u8 {
    match g {
        Granule::G4K => 0,
        Granule::G64K => 1,
        Granule::G16K => 2,
    }
}

/// TG1 encoding of a granule (16K 1, 4K 2, 64K 3).
pub const fn tg1_bits(g: Granule) -> u8 {
    match g {
        Granule::G16K => 1,
        Granule::G4K => 2,
        Granule::G64K => 3,
    }
}

/// The walk attributes of one translation-table base (one half of TCR).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WalkAttrs {
    /// TnSZ: 64 − input size.
    pub tsz: u8,
    /// TGn raw encoding (TG0 or TG1 numbering, depending on the half).
    pub tg: u8,
    /// Inner cacheability of walks.
    pub irgn: Cacheability,
    /// Outer cacheability of walks.
    pub orgn: Cacheability,
    /// Shareability of walks.
    pub sh: Shareability,
}

/// Stage-1 TCR fields, one half per table base. The half this table does not use is
/// `None` and should be disabled (EPDn = 1) by the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tcr {
    /// TTBR0 half: T0SZ, TG0, IRGN0, ORGN0, SH0 (`None` with the TTBR1 quirk).
    pub ttbr0: Option<WalkAttrs>,
    /// TTBR1 half: T1SZ, TG1, IRGN1, ORGN1, SH1 (only with the TTBR1 quirk).
    pub ttbr1: Option<WalkAttrs>,
    /// IPS: output size encoding (0 32, 1 36, 2 40, 3 42, 4 44, 5 48, 6 52 bits).
    pub ips: u8,
}

impl Tcr {
    /// EPD0: walks through TTBR0 disabled.
    pub const fn epd0(&self) -> bool {
        self.ttbr0.is_none()
    }

    /// EPD1: walks through TTBR1 disabled.
    pub const fn epd1(&self) -> bool {
        self.ttbr1.is_none()
    }

    /// The fields at their CPU `TCR_EL1` bit positions (D24.2.194), for tests and logs.
    /// A CD does *not* use this layout (see the module documentation).
    pub fn to_tcr_el1(&self) -> u64 {
        let half = |a: &WalkAttrs, shift: u32| {
            ((a.tsz as u64)
                | (a.irgn as u64) << 8
                | (a.orgn as u64) << 10
                | (a.sh as u64) << 12
                | (a.tg as u64) << 14)
                << shift
        };
        let mut v = (self.ips as u64) << 32;
        match &self.ttbr0 {
            Some(a) => v |= half(a, 0),
            None => v |= 1 << 7,
        }
        match &self.ttbr1 {
            Some(a) => v |= half(a, 16),
            None => v |= 1 << 23,
        }
        v
    }
}

/// Hardware configuration of a stage-1 table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct S1HwConfig {
    /// TTBR0 value (table base), `None` with the TTBR1 quirk.
    pub ttbr0: Option<u64>,
    /// TTBR1 value, only with the TTBR1 quirk.
    pub ttbr1: Option<u64>,
    /// TCR fields.
    pub tcr: Tcr,
    /// MAIR value (`0x00000000F404FF44`).
    pub mair: u64,
}

impl S1HwConfig {
    /// The table base, whichever TTBR it goes to.
    pub fn ttbr(&self) -> u64 {
        self.ttbr0.or(self.ttbr1).unwrap_or(0)
    }
}

/// Stage-2 VTCR fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Vtcr {
    /// T0SZ: 64 − input size.
    pub t0sz: u8,
    /// SL0: starting level encoding (§4.1).
    pub sl0: u8,
    /// Inner cacheability of walks.
    pub irgn0: Cacheability,
    /// Outer cacheability of walks.
    pub orgn0: Cacheability,
    /// Shareability of walks.
    pub sh0: Shareability,
    /// TG0 encoding.
    pub tg0: u8,
    /// PS: output size encoding.
    pub ps: u8,
}

impl Vtcr {
    /// VTCR bits \[18:0\] (the layout an SMMUv3 STE keeps in d2\[50:32\]).
    pub fn to_bits(&self) -> u64 {
        (self.t0sz as u64)
            | (self.sl0 as u64) << 6
            | (self.irgn0 as u64) << 8
            | (self.orgn0 as u64) << 10
            | (self.sh0 as u64) << 12
            | (self.tg0 as u64) << 14
            | (self.ps as u64) << 16
    }
}

/// Hardware configuration of a stage-2 table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct S2HwConfig {
    /// VTTBR value (root table base; aligned to the concatenated root size).
    pub vttbr: u64,
    /// VTCR fields.
    pub vtcr: Vtcr,
}

/// The hardware configuration of a page table, per format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HwConfig {
    /// ARM LPAE stage 1.
    LpaeS1(S1HwConfig),
    /// ARM LPAE stage 2.
    LpaeS2(S2HwConfig),
}

fn walk_attrs(geo: &Geometry) -> (Cacheability, Cacheability, Shareability) {
    if geo.coherent_walk {
        (
            Cacheability::WriteBackWa,
            Cacheability::WriteBackWa,
            Shareability::Inner,
        )
    } else {
        let orgn = if geo.quirks.contains(Quirks::ARM_OUTER_WBWA) {
            Cacheability::WriteBackWa
        } else {
            Cacheability::NonCacheable
        };
        (Cacheability::NonCacheable, orgn, Shareability::Outer)
    }
}

/// Stage-1 values for a table rooted at `root`.
pub fn s1_config(geo: &Geometry, root: u64) -> S1HwConfig {
    let (irgn, orgn, sh) = walk_attrs(geo);
    let tsz = (64 - geo.ias) as u8;
    let ips = pa_size_encoding(geo.oas).unwrap_or(0);
    if geo.ttbr1() {
        let half = WalkAttrs {
            tsz,
            tg: tg1_bits(geo.granule),
            irgn,
            orgn,
            sh,
        };
        S1HwConfig {
            ttbr0: None,
            ttbr1: Some(root),
            tcr: Tcr {
                ttbr0: None,
                ttbr1: Some(half),
                ips,
            },
            mair: super::pte::MAIR,
        }
    } else {
        let half = WalkAttrs {
            tsz,
            tg: tg0_bits(geo.granule),
            irgn,
            orgn,
            sh,
        };
        S1HwConfig {
            ttbr0: Some(root),
            ttbr1: None,
            tcr: Tcr {
                ttbr0: Some(half),
                ttbr1: None,
                ips,
            },
            mair: super::pte::MAIR,
        }
    }
}

/// Stage-2 values for a table rooted at `root`.
pub fn s2_config(geo: &Geometry, root: u64) -> S2HwConfig {
    let (irgn0, orgn0, sh0) = walk_attrs(geo);
    let mut sl = geo.start_level;
    if geo.granule == Granule::G4K {
        sl += 1;
    }
    S2HwConfig {
        vttbr: root,
        vtcr: Vtcr {
            t0sz: (64 - geo.ias) as u8,
            sl0: (!sl & 3) as u8,
            irgn0,
            orgn0,
            sh0,
            tg0: tg0_bits(geo.granule),
            ps: pa_size_encoding(geo.oas).unwrap_or(0),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lpae::config::{LpaeConfig, Stage};

    #[test]
    fn sl0_decodes_back_to_start_level() {
        for g in Granule::ALL {
            for ias in [32, 36, 40, 42, 44, 48] {
                let Ok(geo) = LpaeConfig::new(Stage::S2, g, ias, 48).geometry() else {
                    continue;
                };
                let v = s2_config(&geo, 0).vtcr;
                // QEMU's decoding (§4.1): 2 − SL0 for 4K, 3 − SL0 otherwise.
                let start = match g {
                    Granule::G4K => 2 - v.sl0 as u32,
                    _ => 3 - v.sl0 as u32,
                };
                assert_eq!(start, geo.start_level, "{g:?} ias {ias}");
            }
        }
    }

    #[test]
    fn stage1_tcr_fields() {
        let geo = LpaeConfig::new(Stage::S1, Granule::G16K, 40, 44)
            .geometry()
            .unwrap();
        let c = s1_config(&geo, 0x8000_0000);
        let h = c.tcr.ttbr0.unwrap();
        assert_eq!(
            (h.tsz, h.tg, h.irgn, h.orgn, h.sh, c.tcr.ips),
            (
                24,
                2,
                Cacheability::WriteBackWa,
                Cacheability::WriteBackWa,
                Shareability::Inner,
                4
            )
        );
        assert!(c.tcr.epd1() && !c.tcr.epd0());
        assert_eq!(c.mair, 0x0000_0000_F404_FF44);
        assert_eq!(
            c.tcr.to_tcr_el1(),
            24 | 1 << 8 | 1 << 10 | 3 << 12 | 2 << 14 | 1 << 23 | 4 << 32
        );
    }

    #[test]
    fn non_coherent_and_outer_wbwa() {
        let base = LpaeConfig::new(Stage::S1, Granule::G4K, 48, 48).with_coherent_walk(false);
        let h = s1_config(&base.geometry().unwrap(), 0).tcr.ttbr0.unwrap();
        assert_eq!(
            (h.irgn, h.orgn, h.sh),
            (
                Cacheability::NonCacheable,
                Cacheability::NonCacheable,
                Shareability::Outer
            )
        );
        let q = base.with_quirks(Quirks::ARM_OUTER_WBWA);
        let h = s1_config(&q.geometry().unwrap(), 0).tcr.ttbr0.unwrap();
        assert_eq!(
            (h.irgn, h.orgn, h.sh),
            (
                Cacheability::NonCacheable,
                Cacheability::WriteBackWa,
                Shareability::Outer
            )
        );
    }

    #[test]
    fn ttbr1_uses_the_upper_half() {
        let geo = LpaeConfig::new(Stage::S1, Granule::G4K, 48, 48)
            .with_quirks(Quirks::ARM_TTBR1)
            .geometry()
            .unwrap();
        let c = s1_config(&geo, 0x9000_0000);
        assert_eq!((c.ttbr0, c.ttbr1), (None, Some(0x9000_0000)));
        assert!(c.tcr.epd0() && !c.tcr.epd1());
        assert_eq!(c.tcr.ttbr1.unwrap().tg, 2, "TG1 encodes 4K as 2");
        assert_eq!(c.tcr.ttbr1.unwrap().tsz, 16);
    }

    #[test]
    fn vtcr_bits() {
        let geo = LpaeConfig::new(Stage::S2, Granule::G4K, 40, 40)
            .geometry()
            .unwrap();
        let v = s2_config(&geo, 0).vtcr;
        // Concatenated: start level 1 → SL0 = 1; PS 40 bits = 2.
        assert_eq!(
            v.to_bits(),
            24 | 1 << 6 | 1 << 8 | 1 << 10 | 3 << 12 | 2 << 16
        );
    }
}
