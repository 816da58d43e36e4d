//! Errno-style error kinds and the error type of this crate (reference `software.md`
//! "errno X means the call returns -X": the kinds are the Linux errno values).

use core::fmt;

/// Errno-style error kinds, as the Linux IOMMU and DMA APIs return them.
///
/// Every crate of iommu-stack has its own `Error` type; each maps to one of these kinds
/// through an `errno()` method so that callers can reason like kernel code does
/// (for instance "EINVAL from attach means incompatible, try another domain").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Errno {
    /// Operation not permitted.
    EPERM,
    /// No such object.
    ENOENT,
    /// I/O error (also the SMMUv3 vSTE/command rejection code).
    EIO,
    /// No such device or address.
    ENXIO,
    /// Argument list too long (non-zero tail of a uAPI struct).
    E2BIG,
    /// Out of memory.
    ENOMEM,
    /// Permission denied.
    EACCES,
    /// Bad address.
    EFAULT,
    /// Device or resource busy.
    EBUSY,
    /// Already exists.
    EEXIST,
    /// No such device.
    ENODEV,
    /// Invalid argument.
    EINVAL,
    /// No space left (IOVA space, ASIDs, ...).
    ENOSPC,
    /// Result out of range.
    ERANGE,
    /// Inappropriate ioctl.
    ENOTTY,
    /// Message too long.
    EMSGSIZE,
    /// Operation not supported.
    EOPNOTSUPP,
    /// Address already in use.
    EADDRINUSE,
    /// Timed out.
    ETIMEDOUT,
    /// Value too large (arithmetic overflow).
    EOVERFLOW,
}

impl Errno {
    /// The positive Linux errno number.
    pub const fn code(self) -> i32 {
        match self {
            Errno::EPERM => 1,
            Errno::ENOENT => 2,
            Errno::EIO => 5,
            Errno::ENXIO => 6,
            Errno::E2BIG => 7,
            Errno::ENOMEM => 12,
            Errno::EACCES => 13,
            Errno::EFAULT => 14,
            Errno::EBUSY => 16,
            Errno::EEXIST => 17,
            Errno::ENODEV => 19,
            Errno::EINVAL => 22,
            Errno::ENOSPC => 28,
            Errno::ERANGE => 34,
            Errno::ENOTTY => 25,
            Errno::EMSGSIZE => 90,
            Errno::EOPNOTSUPP => 95,
            Errno::EADDRINUSE => 98,
            Errno::ETIMEDOUT => 110,
            Errno::EOVERFLOW => 75,
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Errors of the boundary traits (mostly simulated physical memory).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An access touched a physical address that is not allocated memory.
    #[error("physical address {pa:#x} is not backed by allocated memory")]
    Unmapped {
        /// The first unbacked byte.
        pa: u64,
    },
    /// A word access was not naturally aligned.
    #[error("physical address {pa:#x} is not {align}-byte aligned")]
    Misaligned {
        /// The address.
        pa: u64,
        /// The required alignment.
        align: u64,
    },
    /// An address or length is outside what the memory can represent.
    #[error("address range {pa:#x}+{len:#x} is out of range")]
    OutOfRange {
        /// Start.
        pa: u64,
        /// Length.
        len: u64,
    },
    /// The allocator could not satisfy a request.
    #[error("out of physical memory allocating {bytes:#x} bytes")]
    NoMemory {
        /// Requested size.
        bytes: u64,
    },
    /// A free did not match an allocation.
    #[error("free of {bytes:#x} bytes at {pa:#x} does not match an allocation")]
    BadFree {
        /// Address freed.
        pa: u64,
        /// Size given.
        bytes: u64,
    },
    /// A parameter was invalid.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
}

impl Error {
    /// The errno-style kind of this error.
    pub const fn errno(&self) -> Errno {
        match self {
            Error::Unmapped { .. } => Errno::EFAULT,
            Error::Misaligned { .. } => Errno::EINVAL,
            Error::OutOfRange { .. } => Errno::ERANGE,
            Error::NoMemory { .. } => Errno::ENOMEM,
            Error::BadFree { .. } => Errno::EINVAL,
            Error::InvalidArgument(_) => Errno::EINVAL,
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T> = core::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_codes_match_linux() {
        assert_eq!(Errno::EINVAL.code(), 22);
        assert_eq!(Errno::EEXIST.code(), 17);
        assert_eq!(Errno::ENXIO.code(), 6);
        assert_eq!(Errno::EBUSY.code(), 16);
        assert_eq!(Error::NoMemory { bytes: 1 }.errno(), Errno::ENOMEM);
    }
}
