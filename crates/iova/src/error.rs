//! The error type of the IOVA allocator and the flush queues.

use iommu_types::Errno;

/// Why an allocator or flush-queue call was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The granule is zero, not a power of two, or larger than 4 GiB.
    #[error("IOVA granule {0:#x} is not a power of two between 1 byte and 4 GiB")]
    BadGranule(u64),
    /// A size of zero granules was requested or freed.
    #[error("IOVA size of zero granules")]
    ZeroSize,
    /// No free range of the requested size (and alignment) exists under the limit.
    #[error("no free IOVA range of {size} granules at or below pfn {limit_pfn:#x}")]
    NoSpace {
        /// Requested size in granules (after rounding for the caches).
        size: u64,
        /// Highest pfn the range could end at.
        limit_pfn: u64,
    },
    /// No allocated or reserved range contains this pfn.
    #[error("no IOVA range contains pfn {0:#x}")]
    NotFound(u64),
    /// A range is empty, inverted or outside what the domain can represent.
    #[error("invalid IOVA range {lo:#x}..={hi:#x}")]
    BadRange {
        /// First pfn.
        lo: u64,
        /// Last pfn (inclusive).
        hi: u64,
    },
    /// A fast-path free named a pfn the fast path can never have handed out for
    /// that size (below the start pfn, or not aligned to the size's power of two).
    #[error("pfn {pfn:#x} with {size} granules cannot come from the fast path")]
    BadFastFree {
        /// The pfn given.
        pfn: u64,
        /// The size given.
        size: u64,
    },
    /// The flush queue's invalidation failed; nothing was freed on its account.
    #[error("flush-queue invalidation failed: {0}")]
    Flush(Errno),
    /// An entry was queued on a flush queue that was not activated yet.
    #[error("flush queue used before it was initialised")]
    FqInactive,
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    BadConfig(&'static str),
}

impl Error {
    /// The errno-style kind of this error.
    pub const fn errno(&self) -> Errno {
        match self {
            Error::BadGranule(_) | Error::ZeroSize | Error::BadRange { .. } => Errno::EINVAL,
            Error::BadFastFree { .. } | Error::BadConfig(_) => Errno::EINVAL,
            Error::NoSpace { .. } => Errno::ENOSPC,
            Error::NotFound(_) => Errno::ENOENT,
            Error::Flush(e) => *e,
            Error::FqInactive => Errno::EINVAL,
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T> = core::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_kinds() {
        assert_eq!(
            Error::NoSpace {
                size: 1,
                limit_pfn: 2
            }
            .errno(),
            Errno::ENOSPC
        );
        assert_eq!(Error::NotFound(3).errno(), Errno::ENOENT);
        assert_eq!(Error::BadGranule(3).errno(), Errno::EINVAL);
    }
}
