//! Address newtypes with checked arithmetic (style: rust-vmm `GuestAddress`).

use core::fmt;

macro_rules! address_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The raw 64-bit value.
            #[inline]
            pub const fn raw(self) -> u64 {
                self.0
            }

            /// `self + off`, or `None` on overflow.
            #[inline]
            pub const fn checked_add(self, off: u64) -> Option<Self> {
                match self.0.checked_add(off) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }

            /// `self - off`, or `None` on underflow.
            #[inline]
            pub const fn checked_sub(self, off: u64) -> Option<Self> {
                match self.0.checked_sub(off) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }

            /// `self + off`, wrapping at 2^64 (for hardware-style address arithmetic).
            #[inline]
            pub const fn wrapping_add(self, off: u64) -> Self {
                Self(self.0.wrapping_add(off))
            }

            /// Round down to a power-of-two `align`.
            #[inline]
            pub const fn align_down(self, align: u64) -> Self {
                debug_assert!(align.is_power_of_two());
                Self(self.0 & !(align - 1))
            }

            /// Round up to a power-of-two `align`, or `None` on overflow or when
            /// `align` is not a power of two.
            #[inline]
            pub const fn checked_align_up(self, align: u64) -> Option<Self> {
                if !align.is_power_of_two() {
                    return None;
                }
                match self.0.checked_add(align - 1) {
                    Some(v) => Some(Self(v & !(align - 1))),
                    None => None,
                }
            }

            /// Whether the address is a multiple of the power-of-two `align`.
            #[inline]
            pub const fn is_aligned(self, align: u64) -> bool {
                self.0 & (align.wrapping_sub(1)) == 0
            }

            /// The offset of the address inside a power-of-two `align` block.
            #[inline]
            pub const fn offset_in(self, align: u64) -> u64 {
                self.0 & (align.wrapping_sub(1))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:#x})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }

        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }

        impl From<$name> for u64 {
            fn from(a: $name) -> u64 {
                a.0
            }
        }
    };
}

address_type!(
    /// An I/O virtual address: what a device puts on the bus and the IOMMU translates
    /// (stage-1 input, or stage-2 input when there is no stage 1).
    Iova
);
address_type!(
    /// A physical address in (simulated) system memory: a translation's final output,
    /// and where tables, queues and buffers live.
    PhysAddr
);
address_type!(
    /// An intermediate physical address: stage-1 output and stage-2 input in a nested
    /// (two-stage) translation, i.e. a guest-physical address.
    Ipa
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_arithmetic_refuses_overflow() {
        assert_eq!(Iova(u64::MAX).checked_add(1), None);
        assert_eq!(Iova(0).checked_sub(1), None);
        assert_eq!(
            PhysAddr(0x1001).checked_align_up(0x1000),
            Some(PhysAddr(0x2000))
        );
        assert_eq!(PhysAddr(u64::MAX - 2).checked_align_up(0x1000), None);
        assert_eq!(PhysAddr(0x1001).checked_align_up(0), None);
        assert_eq!(PhysAddr(0x1001).checked_align_up(0x3000), None);
        assert_eq!(Ipa(0x1fff).align_down(0x1000), Ipa(0x1000));
        assert!(Iova(0x4000).is_aligned(0x4000));
        assert!(!Iova(0x4001).is_aligned(0x2));
        assert_eq!(Iova(0x12345).offset_in(0x1000), 0x345);
    }

    #[test]
    fn formats_as_hex() {
        extern crate alloc;
        use alloc::format;
        assert_eq!(format!("{:?}", Iova(0x1000)), "Iova(0x1000)");
        assert_eq!(format!("{}", PhysAddr(255)), "0xff");
    }
}
