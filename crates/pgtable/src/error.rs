//! The error type of io-pgtable and its errno mapping (reference `lpae.md` §6).

use iommu_types::Errno;

/// Why a page-table operation or configuration was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration cannot describe a valid table (`EINVAL`).
    #[error("invalid page-table configuration: {0}")]
    InvalidConfig(&'static str),
    /// A quirk was requested that this format (or stage) does not accept (`EINVAL`).
    #[error("quirks {0:#x} are not accepted by this format")]
    UnsupportedQuirks(u32),
    /// The page size is not a single size of the table's page-size bitmap (`EINVAL`).
    #[error("page size {0:#x} is not supported by this table")]
    BadPageSize(u64),
    /// The protection grants neither READ nor WRITE (`EINVAL`, current Linux).
    #[error("protection grants neither read nor write access")]
    NoAccess,
    /// The IOVA or physical address is not aligned to the page size (`EINVAL`).
    #[error("iova {iova:#x} / paddr {paddr:#x} not aligned to page size {pgsize:#x}")]
    Misaligned {
        /// Requested IOVA.
        iova: u64,
        /// Requested output address.
        paddr: u64,
        /// Requested page size.
        pgsize: u64,
    },
    /// The IOVA range does not fit the input address size (`ERANGE`).
    #[error("iova range {iova:#x}+{len:#x} is outside the input address space")]
    IovaOutOfRange {
        /// First IOVA.
        iova: u64,
        /// Length in bytes.
        len: u64,
    },
    /// The output range does not fit the output address size (`ERANGE`).
    #[error("output range {paddr:#x}+{len:#x} is outside the output address size")]
    PaddrOutOfRange {
        /// First output address.
        paddr: u64,
        /// Length in bytes.
        len: u64,
    },
    /// A valid leaf already maps (part of) the range (`EEXIST`); nothing was changed.
    #[error("iova {0:#x} is already mapped")]
    Exists(u64),
    /// The operation needs a quirk or stage the table was not created with (`EINVAL`).
    #[error("operation not supported by this table: {0}")]
    NotSupported(&'static str),
    /// Table memory could not be allocated or accessed.
    #[error("table memory: {0}")]
    Memory(#[from] iommu_types::Error),
}

impl Error {
    /// The errno-style kind of this error.
    pub const fn errno(&self) -> Errno {
        match self {
            Error::InvalidConfig(_)
            | Error::UnsupportedQuirks(_)
            | Error::BadPageSize(_)
            | Error::NoAccess
            | Error::Misaligned { .. }
            | Error::NotSupported(_) => Errno::EINVAL,
            Error::IovaOutOfRange { .. } | Error::PaddrOutOfRange { .. } => Errno::ERANGE,
            Error::Exists(_) => Errno::EEXIST,
            Error::Memory(e) => match e {
                iommu_types::Error::NoMemory { .. } => Errno::ENOMEM,
                other => other.errno(),
            },
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T> = core::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_mapping() {
        assert_eq!(Error::Exists(0).errno(), Errno::EEXIST);
        assert_eq!(
            Error::IovaOutOfRange { iova: 0, len: 1 }.errno(),
            Errno::ERANGE
        );
        assert_eq!(Error::NoAccess.errno(), Errno::EINVAL);
        assert_eq!(
            Error::Memory(iommu_types::Error::NoMemory { bytes: 1 }).errno(),
            Errno::ENOMEM
        );
    }
}
