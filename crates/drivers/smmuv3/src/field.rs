//! Bit fields of multi-dword hardware structures (`smmuv3.md` conventions: dword N,
//! bit range inside the word, little-endian in memory).
//!
//! Every format module of this crate describes its fields with [`Field`] constants and
//! lists them in a `FIELDS` table, so that a cross-check test can compare this
//! driver's reading of the specification with the hardware model's, field by field.

/// A field of `width` bits starting at bit `lsb` of 64-bit word `word`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Field {
    /// Index of the 64-bit word holding the field.
    pub word: usize,
    /// Lowest bit inside that word.
    pub lsb: u32,
    /// Number of bits (1..=64).
    pub width: u32,
}

impl Field {
    /// A field in word `word`, bits `lsb + width - 1 : lsb`.
    pub const fn new(word: usize, lsb: u32, width: u32) -> Self {
        assert!(width >= 1 && lsb + width <= 64);
        Self { word, lsb, width }
    }

    /// A field given as the architecture's `hi:lo` range inside word `word`.
    pub const fn bits(word: usize, hi: u32, lo: u32) -> Self {
        Self::new(word, lo, hi - lo + 1)
    }

    /// A single-bit field.
    pub const fn bit(word: usize, bit: u32) -> Self {
        Self::new(word, bit, 1)
    }

    /// Absolute bit number of the lowest bit (64·word + lsb), as the spec numbers them.
    pub const fn abs_lsb(self) -> u32 {
        self.word as u32 * 64 + self.lsb
    }

    /// The largest value the field can hold.
    pub const fn max(self) -> u64 {
        if self.width == 64 {
            u64::MAX
        } else {
            (1u64 << self.width) - 1
        }
    }

    /// The mask of the field inside its word.
    pub const fn mask(self) -> u64 {
        self.max() << self.lsb
    }

    /// Extract the field from a word array.
    pub const fn get(self, words: &[u64]) -> u64 {
        (words[self.word] >> self.lsb) & self.max()
    }

    /// Extract the field from its own word.
    pub const fn get_word(self, word: u64) -> u64 {
        (word >> self.lsb) & self.max()
    }

    /// Whether `value` fits in the field.
    pub const fn fits(self, value: u64) -> bool {
        value <= self.max()
    }

    /// Insert `value` (truncated to the field width) into a word array.
    pub fn set(self, words: &mut [u64], value: u64) {
        words[self.word] = self.set_word(words[self.word], value);
    }

    /// `word` with this field replaced by `value` (truncated to the field width).
    pub const fn set_word(self, word: u64, value: u64) -> u64 {
        (word & !self.mask()) | ((value & self.max()) << self.lsb)
    }

    /// Set every bit of the field in a mask array (used-bit computation).
    pub fn set_all(self, words: &mut [u64]) {
        words[self.word] |= self.mask();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_set_roundtrip_and_masks() {
        let f = Field::bits(1, 51, 4);
        assert_eq!(f.lsb, 4);
        assert_eq!(f.width, 48);
        assert_eq!(f.abs_lsb(), 68);
        assert_eq!(f.mask(), 0x000f_ffff_ffff_fff0);
        let mut w = [u64::MAX; 2];
        f.set(&mut w, 0x1234);
        assert_eq!(w[1], 0xfff0_0000_0001_234f);
        assert_eq!(f.get(&w), 0x1234);
        assert_eq!(w[0], u64::MAX, "other word untouched");
        let full = Field::new(0, 0, 64);
        assert_eq!(full.mask(), u64::MAX);
        assert!(Field::bit(0, 3).fits(1) && !Field::bit(0, 3).fits(2));
    }
}
