//! A plain reference IOMMU: a `BTreeMap` of byte ranges, each with an output address
//! and a [`Prot`]. It knows nothing about tables, page sizes or levels, so it can judge
//! any page-table format (or a whole IOMMU) by what it translates.

use std::collections::BTreeMap;

use iommu_types::{Iova, PhysAddr, Prot};

/// One mapping of the reference model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefMapping {
    /// First IOVA.
    pub iova: u64,
    /// Length in bytes (non-zero).
    pub len: u64,
    /// Output address of `iova`.
    pub pa: u64,
    /// Permissions and attributes.
    pub prot: Prot,
}

impl RefMapping {
    /// Last IOVA (inclusive).
    pub fn last(&self) -> u64 {
        self.iova + (self.len - 1)
    }
}

/// Why the reference refused an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefError {
    /// The range is empty or wraps around.
    BadRange,
    /// Part of the range is already mapped.
    Overlap,
    /// An unmap would cut a mapping in two (partial unmap).
    Partial,
}

/// A reference IOMMU over byte ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefIommu {
    map: BTreeMap<u64, RefMapping>,
}

impl RefIommu {
    /// An empty model.
    pub fn new() -> Self {
        Self::default()
    }

    fn last_of(iova: u64, len: u64) -> Result<u64, RefError> {
        if len == 0 {
            return Err(RefError::BadRange);
        }
        iova.checked_add(len - 1).ok_or(RefError::BadRange)
    }

    /// Mappings overlapping `[iova, last]`, in order (none when `last < iova`).
    pub fn overlapping(&self, iova: u64, last: u64) -> impl Iterator<Item = &RefMapping> {
        let valid = iova <= last;
        let first = self
            .map
            .range(..=iova)
            .next_back()
            .filter(|(_, m)| valid && m.last() >= iova)
            .map(|(_, m)| m);
        let rest = self
            .map
            .range(iova..=last.max(iova))
            .map(|(_, m)| m)
            .filter(move |m| valid && (m.iova != iova || first.is_none()));
        first.into_iter().chain(rest)
    }

    /// Whether no byte of `[iova, iova + len)` is mapped.
    pub fn is_free(&self, iova: u64, len: u64) -> bool {
        match Self::last_of(iova, len) {
            Ok(last) => self.overlapping(iova, last).next().is_none(),
            Err(_) => false,
        }
    }

    /// Map `[iova, iova + len)` to `pa`; refused if any byte is mapped already.
    pub fn map(&mut self, iova: u64, pa: u64, len: u64, prot: Prot) -> Result<(), RefError> {
        let last = Self::last_of(iova, len)?;
        pa.checked_add(len - 1).ok_or(RefError::BadRange)?;
        if self.overlapping(iova, last).next().is_some() {
            return Err(RefError::Overlap);
        }
        self.map.insert(
            iova,
            RefMapping {
                iova,
                len,
                pa,
                prot,
            },
        );
        Ok(())
    }

    /// Remove every mapping inside `[iova, iova + len)`; refused (nothing changed) if
    /// a mapping straddles either end. Returns the bytes removed.
    pub fn unmap(&mut self, iova: u64, len: u64) -> Result<u64, RefError> {
        let last = Self::last_of(iova, len)?;
        let hits: Vec<RefMapping> = self.overlapping(iova, last).copied().collect();
        if hits.iter().any(|m| m.iova < iova || m.last() > last) {
            return Err(RefError::Partial);
        }
        let mut bytes = 0;
        for m in hits {
            self.map.remove(&m.iova);
            bytes += m.len;
        }
        Ok(bytes)
    }

    /// The mapping containing `iova`.
    pub fn mapping_at(&self, iova: u64) -> Option<&RefMapping> {
        self.map
            .range(..=iova)
            .next_back()
            .map(|(_, m)| m)
            .filter(|m| m.last() >= iova)
    }

    /// Output address and permissions of `iova`.
    pub fn translate(&self, iova: Iova) -> Option<(PhysAddr, Prot)> {
        self.mapping_at(iova.0)
            .map(|m| (PhysAddr(m.pa + (iova.0 - m.iova)), m.prot))
    }

    /// All mappings in IOVA order.
    pub fn iter(&self) -> impl Iterator<Item = &RefMapping> {
        self.map.values()
    }

    /// Number of mappings.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Total bytes mapped.
    pub fn mapped_bytes(&self) -> u64 {
        self.map.values().map(|m| m.len).sum()
    }

    /// Interesting addresses to probe: first, last and a middle byte of every mapping,
    /// and the bytes just outside it.
    pub fn probe_points(&self) -> Vec<u64> {
        let mut v = Vec::new();
        for m in self.map.values() {
            v.extend([m.iova, m.iova + m.len / 2, m.last()]);
            v.extend(m.iova.checked_sub(1));
            v.extend(m.last().checked_add(1));
        }
        v
    }
}

/// Proptest strategies for tests run against [`RefIommu`].
pub mod strategy {
    use iommu_types::Prot;
    use proptest::prelude::*;

    /// A `Prot` that grants access (READ and/or WRITE) with any mix of the other flags.
    pub fn prot() -> impl Strategy<Value = Prot> {
        (0u32..64).prop_map(|bits| {
            let p = Prot::from_bits_truncate(bits);
            if p.is_accessible() { p } else { p | Prot::READ }
        })
    }

    /// An `(iova, size)` pair: one of `sizes`, naturally aligned, inside `[0, window)`
    /// (`window` must be a multiple of the largest size).
    pub fn aligned_chunk(sizes: Vec<u64>, window: u64) -> impl Strategy<Value = (u64, u64)> {
        (proptest::sample::select(sizes), any::<u64>()).prop_map(move |(size, r)| {
            let slots = (window / size).max(1);
            ((r % slots) * size, size)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_translate_unmap() {
        let mut r = RefIommu::new();
        r.map(0x1000, 0x9000, 0x2000, Prot::RW).unwrap();
        assert_eq!(r.map(0x2000, 0, 0x1000, Prot::READ), Err(RefError::Overlap));
        assert_eq!(r.map(0x0, 0, 0x1001, Prot::READ), Err(RefError::Overlap));
        r.map(0x3000, 0x1000, 0x1000, Prot::READ).unwrap();
        assert_eq!(
            r.translate(Iova(0x2042)),
            Some((PhysAddr(0xa042), Prot::RW))
        );
        assert_eq!(r.translate(Iova(0x4000)), None);
        assert_eq!(r.unmap(0x1000, 0x1000), Err(RefError::Partial));
        assert_eq!(r.unmap(0x0, 0x10000), Ok(0x3000));
        assert!(r.is_empty());
        assert_eq!(r.map(u64::MAX, 0, 2, Prot::READ), Err(RefError::BadRange));
    }

    #[test]
    fn reversed_and_wrapping_ranges_are_refused_not_panics() {
        let mut r = RefIommu::new();
        r.map(0x1000, 0, 0x1000, Prot::RW).unwrap();
        assert_eq!(r.overlapping(0x1fff, 0x1000).count(), 0);
        assert_eq!(r.overlapping(0x1000, 0x1000).count(), 1);
        assert_eq!(r.map(u64::MAX, 0, 2, Prot::RW), Err(RefError::BadRange));
        assert_eq!(r.map(0, u64::MAX, 2, Prot::RW), Err(RefError::BadRange));
        assert_eq!(r.map(0, 0, 0, Prot::RW), Err(RefError::BadRange));
        assert_eq!(r.unmap(u64::MAX, 2), Err(RefError::BadRange));
        assert!(!r.is_free(u64::MAX, 2));
        assert_eq!(r.mapped_bytes(), 0x1000);
    }

    #[test]
    fn overlap_detection_is_exact() {
        let mut r = RefIommu::new();
        r.map(0x10_0000, 0, 0x1000, Prot::READ).unwrap();
        assert!(r.is_free(0xf_f000, 0x1000));
        assert!(!r.is_free(0xf_f000, 0x1001));
        assert!(r.is_free(0x10_1000, 0x1000));
        assert_eq!(r.probe_points().len(), 5);
    }

    proptest::proptest! {
        #[test]
        fn strategies_stay_in_bounds(
            p in strategy::prot(),
            (iova, size) in strategy::aligned_chunk(vec![0x1000, 0x20_0000], 0x40_0000),
        ) {
            proptest::prop_assert!(p.is_accessible());
            proptest::prop_assert!(iova % size == 0 && iova + size <= 0x40_0000);
        }
    }
}
