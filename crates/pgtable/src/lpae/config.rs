//! Configuration and geometry of an LPAE table (reference `lpae.md` §3, §4.1, §4.2, §7).

use crate::error::{Error, Result};
use iommu_types::PgSizeBitmap;

/// Translation stage of a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Stage 1 (Linux `ARM_64_LPAE_S1`): IOVA → IPA/PA, MAIR attributes, AP bits.
    S1,
    /// Stage 2 (Linux `ARM_64_LPAE_S2`): IPA → PA, MemAttr and S2AP bits.
    S2,
}

/// Translation granule (smallest page size).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Granule {
    /// 4 KiB pages, 9 bits resolved per level.
    G4K,
    /// 16 KiB pages, 11 bits per level.
    G16K,
    /// 64 KiB pages, 13 bits per level.
    G64K,
}

impl Granule {
    /// Every granule, smallest first.
    pub const ALL: [Granule; 3] = [Granule::G4K, Granule::G16K, Granule::G64K];

    /// log2 of the granule size.
    pub const fn shift(self) -> u32 {
        match self {
            Granule::G4K => 12,
            Granule::G16K => 14,
            Granule::G64K => 16,
        }
    }

    /// Granule size in bytes.
    pub const fn bytes(self) -> u64 {
        1 << self.shift()
    }

    /// Index bits resolved per level (`log2(granule) - 3`).
    pub const fn bits_per_level(self) -> u32 {
        self.shift() - 3
    }

    /// The granule of size `bytes`, if it is one.
    pub const fn from_bytes(bytes: u64) -> Option<Granule> {
        match bytes {
            0x1000 => Some(Granule::G4K),
            0x4000 => Some(Granule::G16K),
            0x1_0000 => Some(Granule::G64K),
            _ => None,
        }
    }

    /// Pick the granule from the page sizes an IOMMU offers, as Linux's
    /// `arm_lpae_restrict_pgsizes` does (§3): the CPU page size if offered, otherwise
    /// the largest offered size below it, otherwise the smallest above it; `None` if
    /// that size is not a granule.
    pub fn choose(offered: PgSizeBitmap, cpu_page_size: u64) -> Option<Granule> {
        let below = offered.0 & cpu_page_size.wrapping_sub(1);
        let above = offered.0 & !cpu_page_size.wrapping_sub(1);
        let size = if offered.contains(cpu_page_size) {
            cpu_page_size
        } else if below != 0 {
            1 << (63 - below.leading_zeros())
        } else if above != 0 {
            1 << above.trailing_zeros()
        } else {
            return None;
        };
        Granule::from_bytes(size)
    }

    /// Largest input/output address size without LPA2 (§3.1: 48, or 52 with 64K).
    pub const fn max_addr_bits(self) -> u32 {
        match self {
            Granule::G64K => 52,
            _ => 48,
        }
    }
}

/// io-pgtable quirks with Linux's bit numbers (reference `lpae.md` §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Quirks(pub u32);

impl Quirks {
    /// No quirk.
    pub const NONE: Quirks = Quirks(0);
    /// `IO_PGTABLE_QUIRK_ARM_NS`: NS on leaves, NSTable on table entries (stage 1).
    pub const ARM_NS: Quirks = Quirks(1 << 0);
    /// `IO_PGTABLE_QUIRK_NO_PERMS`: v7s only; LPAE refuses it.
    pub const NO_PERMS: Quirks = Quirks(1 << 1);
    /// `IO_PGTABLE_QUIRK_ARM_TTBR1`: the table covers the upper (TTBR1) range.
    pub const ARM_TTBR1: Quirks = Quirks(1 << 5);
    /// `IO_PGTABLE_QUIRK_ARM_OUTER_WBWA`: outer write-back walks for a non-coherent walker.
    pub const ARM_OUTER_WBWA: Quirks = Quirks(1 << 6);
    /// `IO_PGTABLE_QUIRK_ARM_HD`: hardware dirty tracking (DBM on writable leaves).
    pub const ARM_HD: Quirks = Quirks(1 << 7);
    /// `IO_PGTABLE_QUIRK_ARM_S2FWB`: stage-2 forced write-back (MemAttr 0x6 when cacheable).
    pub const ARM_S2FWB: Quirks = Quirks(1 << 8);
    /// `IO_PGTABLE_QUIRK_NO_WARN`: expected failures are not warned about (no-op here).
    pub const NO_WARN: Quirks = Quirks(1 << 9);

    /// Quirks accepted by stage 1.
    pub const S1_ACCEPTED: Quirks = Quirks(
        Self::ARM_NS.0
            | Self::ARM_TTBR1.0
            | Self::ARM_OUTER_WBWA.0
            | Self::ARM_HD.0
            | Self::NO_WARN.0,
    );
    /// Quirks accepted by stage 2.
    pub const S2_ACCEPTED: Quirks = Quirks(Self::ARM_S2FWB.0 | Self::NO_WARN.0);

    /// Whether every quirk of `other` is set.
    pub const fn contains(self, other: Quirks) -> bool {
        self.0 & other.0 == other.0
    }

    /// Union.
    pub const fn with(self, other: Quirks) -> Quirks {
        Quirks(self.0 | other.0)
    }
}

impl core::ops::BitOr for Quirks {
    type Output = Quirks;
    fn bitor(self, rhs: Quirks) -> Quirks {
        self.with(rhs)
    }
}

/// What a caller asks for when creating an LPAE table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LpaeConfig {
    /// Stage 1 or stage 2.
    pub stage: Stage,
    /// Translation granule.
    pub granule: Granule,
    /// Input address size in bits (clamped to 48, or 52 with 64K, as Linux does).
    pub ias: u32,
    /// Output address size in bits (clamped like `ias`, then one of 32/36/40/42/44/48/52).
    pub oas: u32,
    /// io-pgtable quirks.
    pub quirks: Quirks,
    /// Whether the walker snoops CPU caches (selects the walk attributes of TCR/VTCR).
    pub coherent_walk: bool,
}

impl LpaeConfig {
    /// A coherent-walk configuration without quirks.
    pub const fn new(stage: Stage, granule: Granule, ias: u32, oas: u32) -> Self {
        Self {
            stage,
            granule,
            ias,
            oas,
            quirks: Quirks::NONE,
            coherent_walk: true,
        }
    }

    /// The same configuration with `quirks` added.
    pub const fn with_quirks(mut self, quirks: Quirks) -> Self {
        self.quirks = self.quirks.with(quirks);
        self
    }

    /// The same configuration with the given walk coherency.
    pub const fn with_coherent_walk(mut self, coherent: bool) -> Self {
        self.coherent_walk = coherent;
        self
    }

    /// Check the configuration and compute the table geometry.
    pub fn geometry(&self) -> Result<Geometry> {
        Geometry::new(self)
    }
}

/// The encoding of an output (physical) address size in TCR.IPS / VTCR.PS.
pub(crate) const fn pa_size_encoding(bits: u32) -> Option<u8> {
    match bits {
        32 => Some(0),
        36 => Some(1),
        40 => Some(2),
        42 => Some(3),
        44 => Some(4),
        48 => Some(5),
        52 => Some(6),
        _ => None,
    }
}

/// Smallest input size accepted: T0SZ at most 39 (no FEAT_TTST).
pub const MIN_IAS: u32 = 25;
/// Most next-level tables a stage-2 root may concatenate (§4.2).
pub const MAX_CONCAT_TABLES: u32 = 16;

/// Validated shape of an LPAE table (Linux `arm_lpae_io_pgtable` geometry, §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Geometry {
    /// Stage.
    pub stage: Stage,
    /// Granule.
    pub granule: Granule,
    /// Effective input address size (after clamping).
    pub ias: u32,
    /// Effective output address size (after clamping).
    pub oas: u32,
    /// Level of the root table (0..=3).
    pub start_level: u32,
    /// Index bits of the root table (widened by concatenation at stage 2).
    pub pgd_bits: u32,
    /// Number of concatenated tables forming the stage-2 root (1 when none).
    pub concat_tables: u32,
    /// Sizes this table can map in one entry.
    pub pgsize_bitmap: PgSizeBitmap,
    /// Quirks.
    pub quirks: Quirks,
    /// Walk coherency.
    pub coherent_walk: bool,
    /// `level_shift` of levels 0..=3, computed once (the map/unmap hot path uses it
    /// several times per call).
    level_shifts: [u32; 4],
}

impl Geometry {
    fn new(cfg: &LpaeConfig) -> Result<Geometry> {
        let g = cfg.granule;
        let accepted = match cfg.stage {
            Stage::S1 => Quirks::S1_ACCEPTED,
            Stage::S2 => Quirks::S2_ACCEPTED,
        };
        let refused = cfg.quirks.0 & !accepted.0;
        if refused != 0 {
            return Err(Error::UnsupportedQuirks(refused));
        }
        let max = g.max_addr_bits();
        let ias = cfg.ias.min(max);
        let oas = cfg.oas.min(max);
        if ias < MIN_IAS {
            return Err(Error::InvalidConfig("input address size below 25 bits"));
        }
        if pa_size_encoding(oas).is_none() {
            return Err(Error::InvalidConfig(
                "output size must be 32, 36, 40, 42, 44, 48 or 52 bits",
            ));
        }
        let pg_shift = g.shift();
        let bpl = g.bits_per_level();
        let va_bits = ias - pg_shift;
        let levels = va_bits.div_ceil(bpl);
        let mut start_level = 4 - levels;
        let mut pgd_bits = va_bits - bpl * (levels - 1);
        let mut concat_tables = 1;
        if cfg.stage == Stage::S2 && concat_mandatory(g, start_level, ias, oas) {
            if pgd_bits > MAX_CONCAT_TABLES.trailing_zeros() {
                return Err(Error::InvalidConfig(
                    "stage-2 root would need more than 16 concatenated tables",
                ));
            }
            concat_tables = 1 << pgd_bits;
            pgd_bits += bpl;
            start_level += 1;
        }
        if cfg.stage == Stage::S2 {
            // VTCR.SL0 can encode levels 0..=2 (4K) or 1..=3 (16K/64K) without TTST/LPA2.
            let ok = match g {
                Granule::G4K => start_level <= 2,
                _ => start_level >= 1,
            };
            if !ok {
                return Err(Error::InvalidConfig(
                    "stage-2 start level not encodable in VTCR.SL0",
                ));
            }
        }
        let mut bitmap = 0u64;
        for level in start_level.max(1)..=3 {
            let size_shift = pg_shift + bpl * (3 - level);
            let allowed = match (g, level) {
                (_, 3) | (_, 2) => true,
                (Granule::G4K, 1) => true,
                // 4 TiB blocks need 52-bit output addresses (newer Linux).
                (Granule::G64K, 1) => oas > 48,
                _ => false,
            };
            if allowed {
                bitmap |= 1 << size_shift;
            }
        }
        Ok(Geometry {
            stage: cfg.stage,
            granule: g,
            ias,
            oas,
            start_level,
            pgd_bits,
            concat_tables,
            pgsize_bitmap: PgSizeBitmap(bitmap),
            quirks: cfg.quirks,
            coherent_walk: cfg.coherent_walk,
            level_shifts: [0, 1, 2, 3].map(|l| g.shift() + g.bits_per_level() * (3 - l)),
        })
    }

    /// log2 of the size mapped by one entry at `level`.
    #[inline(always)]
    pub const fn level_shift(&self, level: u32) -> u32 {
        self.level_shifts[level as usize & 3]
    }

    /// Bytes mapped by one entry at `level` (block or page size).
    #[inline(always)]
    pub const fn block_size(&self, level: u32) -> u64 {
        1 << self.level_shift(level)
    }

    /// Index bits of a table at `level`.
    #[inline(always)]
    pub const fn table_bits(&self, level: u32) -> u32 {
        if level == self.start_level {
            self.pgd_bits
        } else {
            self.granule.bits_per_level()
        }
    }

    /// Number of entries of a table at `level`.
    #[inline(always)]
    pub const fn entries(&self, level: u32) -> u64 {
        1 << self.table_bits(level)
    }

    /// Bytes of a table at `level`.
    #[inline(always)]
    pub const fn table_bytes(&self, level: u32) -> u64 {
        8 << self.table_bits(level)
    }

    /// Index of `iova` in the table at `level`.
    #[inline(always)]
    pub const fn index(&self, iova: u64, level: u32) -> u64 {
        (iova >> self.level_shift(level)) & (self.entries(level) - 1)
    }

    /// The level whose entries map `size` bytes, if `size` is a mappable size.
    #[inline(always)]
    pub fn level_of_size(&self, size: u64) -> Option<u32> {
        if !self.pgsize_bitmap.contains(size) {
            return None;
        }
        // Every size in the bitmap is the entry size of a level at or below the root.
        let above_page = size.trailing_zeros() - self.granule.shift();
        let bpl = self.granule.bits_per_level();
        Some(if above_page == 0 {
            3
        } else if above_page == bpl {
            2
        } else if above_page == 2 * bpl {
            1
        } else {
            0
        })
    }

    /// Whether the table serves the upper (TTBR1) address range.
    pub const fn ttbr1(&self) -> bool {
        self.quirks.contains(Quirks::ARM_TTBR1)
    }

    /// Whether `[iova, iova + len)` is inside the input range (lower range, or with
    /// the TTBR1 quirk the upper range whose bits above `ias` are all ones).
    pub fn iova_range_ok(&self, iova: u64, len: u64) -> bool {
        if len == 0 {
            return self.iova_ok(iova);
        }
        let Some(last) = iova.checked_add(len - 1) else {
            return false;
        };
        self.iova_ok(iova) && self.iova_ok(last)
    }

    /// Whether `iova` is inside the input range.
    #[inline(always)]
    pub const fn iova_ok(&self, iova: u64) -> bool {
        let ext = (iova as i64) >> self.ias;
        if self.ttbr1() { ext == -1 } else { ext == 0 }
    }

    /// Whether `[pa, pa + len)` fits the output address size.
    pub fn paddr_range_ok(&self, pa: u64, len: u64) -> bool {
        match pa.checked_add(len) {
            Some(end) => end <= 1u64 << self.oas,
            None => false,
        }
    }
}

/// Stage-2 concatenation required by the architecture (current Linux rule, §4.2).
const fn concat_mandatory(g: Granule, start_level: u32, ias: u32, oas: u32) -> bool {
    match (g, start_level) {
        (Granule::G16K, 0) => oas == 48 || ias == 48,
        (Granule::G4K, 0) => oas == 40 || oas == 42,
        (Granule::G16K, 1) => oas == 40,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geo(stage: Stage, g: Granule, ias: u32, oas: u32) -> Geometry {
        LpaeConfig::new(stage, g, ias, oas).geometry().unwrap()
    }

    #[test]
    fn stage1_layouts_match_reference_table() {
        // (granule, ias, start level, root entries) from lpae.md §3.2.
        let rows = [
            (Granule::G4K, 32, 1, 4),
            (Granule::G4K, 36, 1, 64),
            (Granule::G4K, 39, 1, 512),
            (Granule::G4K, 40, 0, 2),
            (Granule::G4K, 42, 0, 8),
            (Granule::G4K, 44, 0, 32),
            (Granule::G4K, 48, 0, 512),
            (Granule::G16K, 32, 2, 128),
            (Granule::G16K, 36, 2, 2048),
            (Granule::G16K, 39, 1, 8),
            (Granule::G16K, 40, 1, 16),
            (Granule::G16K, 42, 1, 64),
            (Granule::G16K, 44, 1, 256),
            (Granule::G16K, 48, 0, 2),
            (Granule::G64K, 32, 2, 8),
            (Granule::G64K, 36, 2, 128),
            (Granule::G64K, 39, 2, 1024),
            (Granule::G64K, 40, 2, 2048),
            (Granule::G64K, 42, 2, 8192),
            (Granule::G64K, 44, 1, 4),
            (Granule::G64K, 48, 1, 64),
            (Granule::G64K, 52, 1, 1024),
        ];
        for (g, ias, start, entries) in rows {
            let oas = if ias == 52 { 52 } else { 48 };
            let geo = geo(Stage::S1, g, ias, oas);
            assert_eq!(
                (geo.start_level, geo.entries(geo.start_level)),
                (start, entries),
                "{g:?} {ias}"
            );
            assert_eq!(geo.concat_tables, 1);
        }
    }

    #[test]
    fn stage2_concatenation_follows_mandatory_rule() {
        // 4K start L0 with oas 40: two concatenated L1 tables.
        let g = geo(Stage::S2, Granule::G4K, 40, 40);
        assert_eq!((g.start_level, g.concat_tables, g.entries(1)), (1, 2, 1024));
        let g = geo(Stage::S2, Granule::G4K, 42, 42);
        assert_eq!((g.start_level, g.concat_tables), (1, 8));
        // 4K start L0 with oas 48: not mandatory, stays at L0.
        let g = geo(Stage::S2, Granule::G4K, 40, 48);
        assert_eq!((g.start_level, g.concat_tables), (0, 1));
        // 16K ias 48: always two L1 tables.
        let g = geo(Stage::S2, Granule::G16K, 48, 48);
        assert_eq!(
            (g.start_level, g.concat_tables, g.table_bytes(1)),
            (1, 2, 2 * 16384)
        );
        // 16K start L1 with oas 40: 16 concatenated L2 tables for ias 40.
        let g = geo(Stage::S2, Granule::G16K, 40, 40);
        assert_eq!((g.start_level, g.concat_tables), (2, 16));
        // Too many tables: 4K ias 48 with oas 40 would need 512.
        assert!(
            LpaeConfig::new(Stage::S2, Granule::G4K, 48, 40)
                .geometry()
                .is_err()
        );
    }

    #[test]
    fn bitmaps_and_clamping() {
        assert_eq!(
            geo(Stage::S1, Granule::G4K, 48, 48).pgsize_bitmap.0,
            (1 << 12) | (1 << 21) | (1 << 30)
        );
        assert_eq!(
            geo(Stage::S1, Granule::G16K, 48, 48).pgsize_bitmap.0,
            (1 << 14) | (1 << 25)
        );
        assert_eq!(
            geo(Stage::S1, Granule::G64K, 48, 48).pgsize_bitmap.0,
            (1 << 16) | (1 << 29)
        );
        assert_eq!(
            geo(Stage::S1, Granule::G64K, 52, 52).pgsize_bitmap.0,
            (1 << 16) | (1 << 29) | (1 << 42)
        );
        // Clamped like Linux: 4K with ias 52 becomes 48.
        assert_eq!(geo(Stage::S1, Granule::G4K, 52, 52).ias, 48);
        assert!(
            LpaeConfig::new(Stage::S1, Granule::G4K, 48, 34)
                .geometry()
                .is_err()
        );
        assert!(
            LpaeConfig::new(Stage::S1, Granule::G4K, 20, 48)
                .geometry()
                .is_err()
        );
    }

    #[test]
    fn precomputed_level_shifts_match_the_granule() {
        for g in Granule::ALL {
            let geo = geo(Stage::S1, g, 48, 48);
            for l in 0..=3u32 {
                assert_eq!(geo.level_shift(l), g.shift() + (g.shift() - 3) * (3 - l));
            }
            assert_eq!(geo.block_size(3), g.bytes());
        }
    }

    #[test]
    fn level_of_size_matches_block_sizes() {
        for stage in [Stage::S1, Stage::S2] {
            for g in Granule::ALL {
                for ias in [32, 36, 39, 40, 42, 44, 48, 52] {
                    for oas in [40, 48, 52] {
                        let Ok(geo) = LpaeConfig::new(stage, g, ias, oas).geometry() else {
                            continue;
                        };
                        for l in geo.start_level..=3 {
                            let size = geo.block_size(l);
                            let want = geo.pgsize_bitmap.contains(size).then_some(l);
                            assert_eq!(
                                geo.level_of_size(size),
                                want,
                                "{stage:?} {g:?} {ias} {oas} L{l}"
                            );
                        }
                        assert_eq!(geo.level_of_size(3 << 12), None);
                        assert_eq!(geo.level_of_size(0), None);
                    }
                }
            }
        }
    }

    #[test]
    fn granule_choice_follows_linux() {
        let smmu = PgSizeBitmap(
            (1 << 12) | (1 << 21) | (1 << 30) | (1 << 14) | (1 << 25) | (1 << 16) | (1 << 29),
        );
        assert_eq!(Granule::choose(smmu, 4096), Some(Granule::G4K));
        assert_eq!(Granule::choose(smmu, 16384), Some(Granule::G16K));
        assert_eq!(Granule::choose(smmu, 65536), Some(Granule::G64K));
        // 16K CPU pages, IOMMU without 16K: the largest smaller size (4K) wins.
        let no16k = PgSizeBitmap((1 << 12) | (1 << 21) | (1 << 16));
        assert_eq!(Granule::choose(no16k, 16384), Some(Granule::G4K));
        // Only larger sizes: the smallest of them.
        assert_eq!(
            Granule::choose(PgSizeBitmap((1 << 16) | (1 << 29)), 4096),
            Some(Granule::G64K)
        );
        // 2M is not a granule.
        assert_eq!(Granule::choose(PgSizeBitmap(1 << 21), 4096), None);
        assert_eq!(Granule::choose(PgSizeBitmap(0), 4096), None);
    }

    #[test]
    fn quirks_are_checked_per_stage() {
        let s1 = LpaeConfig::new(Stage::S1, Granule::G4K, 48, 48);
        assert_eq!(
            s1.with_quirks(Quirks::NO_PERMS).geometry(),
            Err(Error::UnsupportedQuirks(2))
        );
        assert!(s1.with_quirks(Quirks::ARM_S2FWB).geometry().is_err());
        assert!(
            s1.with_quirks(Quirks::ARM_NS | Quirks::ARM_HD | Quirks::ARM_TTBR1)
                .geometry()
                .is_ok()
        );
        let s2 = LpaeConfig::new(Stage::S2, Granule::G4K, 48, 48);
        assert!(s2.with_quirks(Quirks::ARM_NS).geometry().is_err());
        assert!(s2.with_quirks(Quirks::NO_PERMS).geometry().is_err());
        assert!(s2.with_quirks(Quirks::ARM_S2FWB).geometry().is_ok());
    }

    #[test]
    fn ttbr1_range_check_uses_sign_extension() {
        let g = LpaeConfig::new(Stage::S1, Granule::G4K, 48, 48)
            .with_quirks(Quirks::ARM_TTBR1)
            .geometry()
            .unwrap();
        assert!(g.iova_ok(0xffff_0000_0000_0000));
        assert!(g.iova_ok(u64::MAX));
        assert!(!g.iova_ok(0x1000));
        assert!(!g.iova_ok(0xfffe_ffff_ffff_f000));
        let g0 = LpaeConfig::new(Stage::S1, Granule::G4K, 39, 48)
            .geometry()
            .unwrap();
        assert!(g0.iova_range_ok((1 << 39) - 4096, 4096));
        assert!(!g0.iova_range_ok((1 << 39) - 4096, 8192));
    }
}
