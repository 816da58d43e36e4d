//! The memory boundary (ARCHITECTURE.md: "memory through a `PhysMem` trait").
//!
//! Page tables, stream tables, context descriptors, queues and DMA buffers all live in
//! a `PhysMem` as raw little-endian words, bit-exact to the architecture. Software
//! writes them; hardware models read (and sometimes write) them concurrently.
//!
//! # Memory ordering
//!
//! Word accesses are single-copy atomic 64-bit (or 32-bit) accesses. Loads have
//! `Acquire` semantics, stores `Release`, compare-exchange `AcqRel`: a driver that
//! fills a next-level table and then publishes it with one store of the table
//! descriptor guarantees that a walker which observes the descriptor also observes
//! the table's contents, as on a coherent system with a DMB before the publishing
//! store. Byte accesses (DMA data) are not atomic as a whole.

use core::sync::atomic::AtomicU64;

use crate::{Error, PhysAddr, Result};

/// Simulated (or real) physical memory shared by software and hardware models.
pub trait PhysMem: Send + Sync {
    /// Load a naturally aligned 64-bit little-endian word (`Acquire`).
    fn read_u64(&self, pa: PhysAddr) -> Result<u64>;

    /// Store a naturally aligned 64-bit word (`Release`).
    fn write_u64(&self, pa: PhysAddr, value: u64) -> Result<()>;

    /// Atomically replace the 64-bit word at `pa` with `new` if it equals `current`
    /// (`AcqRel`). Returns `Ok(Ok(current))` on success and `Ok(Err(actual))` if the
    /// word held something else.
    fn compare_exchange_u64(
        &self,
        pa: PhysAddr,
        current: u64,
        new: u64,
    ) -> Result<core::result::Result<u64, u64>>;

    /// Load a naturally aligned 32-bit word (`Acquire`).
    fn read_u32(&self, pa: PhysAddr) -> Result<u32>;

    /// Store a naturally aligned 32-bit word (`Release`), e.g. an MSI write.
    fn write_u32(&self, pa: PhysAddr, value: u32) -> Result<()>;

    /// Copy bytes out of memory (DMA read, CPU read of a buffer).
    fn read_bytes(&self, pa: PhysAddr, buf: &mut [u8]) -> Result<()>;

    /// Copy bytes into memory (DMA write, CPU write of a buffer).
    fn write_bytes(&self, pa: PhysAddr, buf: &[u8]) -> Result<()>;

    /// Set `len` bytes at `pa` to `byte`.
    fn fill_bytes(&self, pa: PhysAddr, len: u64, byte: u8) -> Result<()> {
        let chunk = [byte; 256];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(chunk.len() as u64);
            let at = pa
                .checked_add(done)
                .ok_or(Error::OutOfRange { pa: pa.0, len })?;
            self.write_bytes(at, &chunk[..n as usize])?;
            done += n;
        }
        Ok(())
    }

    /// Allocate `bytes` of zeroed, physically contiguous memory aligned to `align`
    /// (a power of two). Implementations round both up to their page size (4 KiB).
    fn alloc_pages(&self, bytes: u64, align: u64) -> Result<PhysAddr>;

    /// Return memory obtained from [`PhysMem::alloc_pages`] with the same size.
    fn free_pages(&self, pa: PhysAddr, bytes: u64) -> Result<()>;

    /// Load `out.len()` consecutive 64-bit words starting at `pa` (each one atomic,
    /// the group not).
    fn read_words(&self, pa: PhysAddr, out: &mut [u64]) -> Result<()> {
        for (i, w) in out.iter_mut().enumerate() {
            *w = self.read_u64(word_at(pa, i)?)?;
        }
        Ok(())
    }

    /// Store consecutive 64-bit words starting at `pa`, lowest address first.
    fn write_words(&self, pa: PhysAddr, words: &[u64]) -> Result<()> {
        for (i, w) in words.iter().enumerate() {
            self.write_u64(word_at(pa, i)?, *w)?;
        }
        Ok(())
    }

    /// Direct access to the `n` consecutive 64-bit words from `pa`, when they lie in
    /// one present 4 KiB page of an implementation that keeps memory as host atomics:
    /// a run of descriptors of one table is then checked once, not once per word.
    ///
    /// `None` (the default, and the answer for a misaligned, unmapped or
    /// page-crossing run) means "use the word methods", which report the error if
    /// there is one. Callers must keep the ordering rules of this trait on the words
    /// (`Acquire` loads, `Release` stores, `AcqRel` compare-exchange) unless they
    /// document why a weaker ordering is enough. The slice is valid memory for as
    /// long as `self` is borrowed, but the page may be freed meanwhile: hold it only
    /// for the duration of one operation on memory the caller owns.
    #[inline]
    fn words_in_page(&self, pa: PhysAddr, n: usize) -> Option<&[AtomicU64]> {
        let _ = (pa, n);
        None
    }
}

fn word_at(pa: PhysAddr, i: usize) -> Result<PhysAddr> {
    pa.checked_add(8 * i as u64).ok_or(Error::OutOfRange {
        pa: pa.0,
        len: 8 * i as u64,
    })
}

/// Convenience wrappers available on every [`PhysMem`] (including `dyn PhysMem`).
pub trait PhysMemExt: PhysMem {
    /// Allocate zeroed memory of `bytes`, aligned to its own size rounded up to a
    /// power of two (what tables and queues need).
    fn alloc_naturally_aligned(&self, bytes: u64) -> Result<PhysAddr> {
        let align = bytes
            .max(1)
            .checked_next_power_of_two()
            .ok_or(Error::OutOfRange { pa: 0, len: bytes })?;
        self.alloc_pages(bytes, align)
    }
}

impl<T: PhysMem + ?Sized> PhysMemExt for T {}

/// Forward every `PhysMem` method through a pointer-like wrapper.
macro_rules! forward_physmem {
    ($($ptr:ty),* $(,)?) => {$(
        impl<T: PhysMem + ?Sized> PhysMem for $ptr {
            fn read_u64(&self, pa: PhysAddr) -> Result<u64> {
                (**self).read_u64(pa)
            }
            fn write_u64(&self, pa: PhysAddr, value: u64) -> Result<()> {
                (**self).write_u64(pa, value)
            }
            fn compare_exchange_u64(
                &self,
                pa: PhysAddr,
                current: u64,
                new: u64,
            ) -> Result<core::result::Result<u64, u64>> {
                (**self).compare_exchange_u64(pa, current, new)
            }
            fn read_u32(&self, pa: PhysAddr) -> Result<u32> {
                (**self).read_u32(pa)
            }
            fn write_u32(&self, pa: PhysAddr, value: u32) -> Result<()> {
                (**self).write_u32(pa, value)
            }
            fn read_bytes(&self, pa: PhysAddr, buf: &mut [u8]) -> Result<()> {
                (**self).read_bytes(pa, buf)
            }
            fn write_bytes(&self, pa: PhysAddr, buf: &[u8]) -> Result<()> {
                (**self).write_bytes(pa, buf)
            }
            fn fill_bytes(&self, pa: PhysAddr, len: u64, byte: u8) -> Result<()> {
                (**self).fill_bytes(pa, len, byte)
            }
            fn alloc_pages(&self, bytes: u64, align: u64) -> Result<PhysAddr> {
                (**self).alloc_pages(bytes, align)
            }
            fn free_pages(&self, pa: PhysAddr, bytes: u64) -> Result<()> {
                (**self).free_pages(pa, bytes)
            }
            fn read_words(&self, pa: PhysAddr, out: &mut [u64]) -> Result<()> {
                (**self).read_words(pa, out)
            }
            fn write_words(&self, pa: PhysAddr, words: &[u64]) -> Result<()> {
                (**self).write_words(pa, words)
            }
            #[inline]
            fn words_in_page(&self, pa: PhysAddr, n: usize) -> Option<&[AtomicU64]> {
                (**self).words_in_page(pa, n)
            }
        }
    )*};
}

forward_physmem!(&T, alloc::boxed::Box<T>, alloc::sync::Arc<T>);
