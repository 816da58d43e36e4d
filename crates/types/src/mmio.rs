//! The register boundary (ARCHITECTURE.md: "registers through an `Mmio` trait").

/// A block of memory-mapped registers, addressed by byte offset from its base.
///
/// Drivers hold an `Mmio` and nothing else of the hardware; hardware models implement
/// it. Accesses take `&self` because real registers are shared, side-effecting state:
/// an implementation uses interior mutability. Unimplemented offsets must behave as
/// the architecture says (typically read-as-zero, writes ignored), never panic.
pub trait Mmio: Send + Sync {
    /// Read a 32-bit register.
    fn read32(&self, offset: u64) -> u32;
    /// Write a 32-bit register.
    fn write32(&self, offset: u64, value: u32);
    /// Read a 64-bit register (single-copy atomic if the hardware says so).
    ///
    /// The default reads two 32-bit halves, low first.
    fn read64(&self, offset: u64) -> u64 {
        let lo = self.read32(offset) as u64;
        let hi = self.read32(offset + 4) as u64;
        lo | (hi << 32)
    }
    /// Write a 64-bit register.
    ///
    /// The default writes two 32-bit halves, low first.
    fn write64(&self, offset: u64, value: u64) {
        self.write32(offset, value as u32);
        self.write32(offset + 4, (value >> 32) as u32);
    }
}

impl<T: Mmio + ?Sized> Mmio for &T {
    fn read32(&self, offset: u64) -> u32 {
        (**self).read32(offset)
    }
    fn write32(&self, offset: u64, value: u32) {
        (**self).write32(offset, value)
    }
    fn read64(&self, offset: u64) -> u64 {
        (**self).read64(offset)
    }
    fn write64(&self, offset: u64, value: u64) {
        (**self).write64(offset, value)
    }
}
