//! The error type of the IOMMU core, with its errno mapping (reference `software.md`
//! §1.3, §6.2, §6.3: every refusal of the Linux core has a defined errno).

use iommu_types::Errno;

/// Errors of the IOMMU core and of the driver callbacks it defines.
///
/// Drivers return these from [`crate::IommuDriver`] and [`crate::DomainOps`]
/// methods too; the errno kinds carry the Linux contract (for example
/// [`Error::Incompatible`] from `attach_dev` means "try another domain", while
/// [`Error::NoMemory`] is a hard failure).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The object is in a state that forbids the operation (EBUSY).
    #[error("busy: {0}")]
    Busy(&'static str),
    /// The caller may not do this now (EPERM).
    #[error("not permitted: {0}")]
    NotPermitted(&'static str),
    /// The caller lacks the privilege (EACCES).
    #[error("access denied: {0}")]
    AccessDenied(&'static str),
    /// A parameter is malformed or out of range (EINVAL).
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    /// The domain cannot be used with this device (EINVAL, the soft attach failure).
    #[error("domain incompatible with device: {0}")]
    Incompatible(&'static str),
    /// The driver or hardware does not support the request (EOPNOTSUPP).
    #[error("not supported: {0}")]
    NotSupported(&'static str),
    /// No such device, or the device has no IOMMU / default domain (ENODEV).
    #[error("no such device: {0}")]
    NoDevice(&'static str),
    /// No such object (ENOENT).
    #[error("not found: {0}")]
    NotFound(&'static str),
    /// Memory (or table memory) could not be allocated (ENOMEM).
    #[error("out of memory: {0}")]
    NoMemory(&'static str),
    /// A resource pool (ASIDs, VMIDs, IOVA space) is exhausted (ENOSPC).
    #[error("no space: {0}")]
    NoSpace(&'static str),
    /// An address or size is outside what the domain can translate (ERANGE).
    #[error("out of range: {0}")]
    OutOfRange(&'static str),
    /// An address computation overflowed (EOVERFLOW).
    #[error("overflow: {0}")]
    Overflow(&'static str),
    /// The range is already mapped (EEXIST).
    #[error("already exists: {0}")]
    Exists(&'static str),
    /// The hardware did not respond (ETIMEDOUT), for instance a CMD_SYNC that never
    /// completed.
    #[error("timed out: {0}")]
    TimedOut(&'static str),
    /// Any other driver failure, with its errno kind.
    #[error("driver error {errno}: {what}")]
    Driver {
        /// The errno kind.
        errno: Errno,
        /// What failed.
        what: &'static str,
    },
}

impl Error {
    /// The errno-style kind of this error.
    pub const fn errno(&self) -> Errno {
        match self {
            Error::Busy(_) => Errno::EBUSY,
            Error::NotPermitted(_) => Errno::EPERM,
            Error::AccessDenied(_) => Errno::EACCES,
            Error::Invalid(_) | Error::Incompatible(_) => Errno::EINVAL,
            Error::NotSupported(_) => Errno::EOPNOTSUPP,
            Error::NoDevice(_) => Errno::ENODEV,
            Error::NotFound(_) => Errno::ENOENT,
            Error::NoMemory(_) => Errno::ENOMEM,
            Error::NoSpace(_) => Errno::ENOSPC,
            Error::OutOfRange(_) => Errno::ERANGE,
            Error::Overflow(_) => Errno::EOVERFLOW,
            Error::Exists(_) => Errno::EEXIST,
            Error::TimedOut(_) => Errno::ETIMEDOUT,
            Error::Driver { errno, .. } => *errno,
        }
    }
}

impl From<iommu_types::Error> for Error {
    fn from(e: iommu_types::Error) -> Self {
        Error::Driver {
            errno: e.errno(),
            what: "physical memory access",
        }
    }
}

/// Result with the core's [`Error`].
pub type Result<T> = core::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_mapping() {
        assert_eq!(Error::Busy("x").errno(), Errno::EBUSY);
        assert_eq!(Error::NotPermitted("x").errno(), Errno::EPERM);
        assert_eq!(Error::Incompatible("x").errno(), Errno::EINVAL);
        assert_eq!(Error::NotSupported("x").errno(), Errno::EOPNOTSUPP);
        assert_eq!(
            Error::Driver {
                errno: Errno::ENOSPC,
                what: "asid"
            }
            .errno(),
            Errno::ENOSPC
        );
        let m: Error = iommu_types::Error::NoMemory { bytes: 4096 }.into();
        assert_eq!(m.errno(), Errno::ENOMEM);
    }
}
