//! The error type of the SMMUv3 driver.
//!
//! A Rust `Err` means an API was misused or the hardware cannot do what was asked
//! (missing feature, queue timeout); architectural faults are data (event records,
//! see [`crate::event`]).

use iommu_types::Errno;

/// Errors of the SMMUv3 driver.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Simulated/physical memory access or allocation failed.
    #[error("memory: {0}")]
    Mem(#[from] iommu_types::Error),
    /// The hardware lacks a feature the configuration needs.
    #[error("hardware does not support {0}")]
    Unsupported(&'static str),
    /// A parameter is out of range or malformed.
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    /// A command field does not fit its encoding, or the combination is reserved.
    #[error("bad command: {0}")]
    BadCommand(&'static str),
    /// A structure read back from memory is malformed (the architectural reason).
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// Which structure (STE, CD, ...).
        what: &'static str,
        /// Why it is illegal.
        reason: &'static str,
    },
    /// The hardware did not respond within the bounded number of polls.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The command queue reported an error that could not be recovered.
    #[error("command queue error code {0}")]
    CmdqError(u8),
    /// An identifier space (ASID, VMID) is exhausted.
    #[error("no free {0}")]
    NoSpace(&'static str),
    /// The object is in use (device still attached, ID still referenced).
    #[error("busy: {0}")]
    Busy(&'static str),
    /// No such object (unknown stream, domain not attached).
    #[error("not found: {0}")]
    NotFound(&'static str),
    /// A page-table operation failed.
    #[error("page table: {0}")]
    PgTable(&'static str),
}

impl Error {
    /// The errno-style kind of this error.
    pub fn errno(&self) -> Errno {
        match self {
            Error::Mem(e) => e.errno(),
            Error::Unsupported(_) => Errno::EOPNOTSUPP,
            Error::Invalid(_) | Error::BadCommand(_) => Errno::EINVAL,
            Error::Malformed { .. } => Errno::EIO,
            Error::Timeout(_) => Errno::ETIMEDOUT,
            Error::CmdqError(_) => Errno::EIO,
            Error::NoSpace(_) => Errno::ENOSPC,
            Error::Busy(_) => Errno::EBUSY,
            Error::NotFound(_) => Errno::ENOENT,
            Error::PgTable(_) => Errno::EINVAL,
        }
    }
}

/// Result with the driver's [`Error`].
pub type Result<T> = core::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_mapping() {
        assert_eq!(Error::Timeout("sync").errno(), Errno::ETIMEDOUT);
        assert_eq!(Error::NoSpace("asid").errno(), Errno::ENOSPC);
        assert_eq!(Error::Unsupported("stage 2").errno(), Errno::EOPNOTSUPP);
        assert_eq!(
            Error::Mem(iommu_types::Error::NoMemory { bytes: 1 }).errno(),
            Errno::ENOMEM
        );
    }
}
