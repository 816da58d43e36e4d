//! Bit fields of raw hardware words (registers, STE, CD, commands, events).
//!
//! Every architectural field the model decodes is a `pub const` [`Field`] naming the
//! 64-bit word it lives in, its lowest bit and its width, so that a test can compare
//! the model's reading of the specification with the driver's independent one
//! (ARCHITECTURE.md "Two readings of one spec").

/// A bit field `[shift + width - 1 : shift]` of 64-bit word `word` of a structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Field {
    /// Index of the 64-bit word (dword) holding the field.
    pub word: usize,
    /// Lowest bit of the field inside the word.
    pub shift: u32,
    /// Width in bits (1..=64).
    pub width: u32,
}

impl Field {
    /// A field of `width` bits starting at bit `shift` of dword `word`.
    pub const fn new(word: usize, shift: u32, width: u32) -> Self {
        Self { word, shift, width }
    }

    /// A field given by its bit range `hi:lo` inside dword `word`.
    pub const fn bits(word: usize, hi: u32, lo: u32) -> Self {
        Self {
            word,
            shift: lo,
            width: hi - lo + 1,
        }
    }

    /// The absolute bit offset used by the architecture document (64·word + shift).
    pub const fn abs_offset(&self) -> u32 {
        self.word as u32 * 64 + self.shift
    }

    /// The mask of the field in place inside its word.
    pub const fn mask(&self) -> u64 {
        if self.width >= 64 {
            u64::MAX
        } else {
            ((1u64 << self.width) - 1) << self.shift
        }
    }

    /// Extract the field from one word (ignores `self.word`).
    #[inline]
    pub const fn get_in(&self, w: u64) -> u64 {
        (w & self.mask()) >> self.shift
    }

    /// Extract the field from a structure's words (0 if the structure is too short).
    #[inline]
    pub fn get(&self, words: &[u64]) -> u64 {
        words.get(self.word).map_or(0, |w| self.get_in(*w))
    }

    /// Whether a one-bit field is set.
    #[inline]
    pub fn is_set(&self, words: &[u64]) -> bool {
        self.get(words) != 0
    }

    /// Return `w` with the field replaced by `value` (truncated to the width).
    #[inline]
    pub const fn set_in(&self, w: u64, value: u64) -> u64 {
        (w & !self.mask()) | ((value << self.shift) & self.mask())
    }

    /// Replace the field inside a structure's words (no-op if too short).
    pub fn set(&self, words: &mut [u64], value: u64) {
        if let Some(w) = words.get_mut(self.word) {
            *w = self.set_in(*w, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_and_set_round_trip() {
        let f = Field::bits(1, 51, 4);
        let mut w = [0u64; 2];
        f.set(&mut w, 0xdead_beef_1234);
        assert_eq!(w[1], 0xdead_beef_1234 << 4);
        assert_eq!(f.get(&w), 0xdead_beef_1234);
        assert_eq!(f.abs_offset(), 68);
        let full = Field::new(0, 0, 64);
        assert_eq!(full.mask(), u64::MAX);
        assert_eq!(full.set_in(0, 5), 5);
        // Truncation to the field width.
        assert_eq!(Field::new(0, 4, 2).set_in(0, 0xff), 0x30);
    }
}
