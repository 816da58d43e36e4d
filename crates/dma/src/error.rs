//! The error type of the DMA API and its errno mapping (reference `software.md` §4).

use iommu_types::Errno;

/// Why a DMA API call failed. Architectural events (a device fault) are not errors;
/// these are refusals of a call, each with the errno a Linux driver would see.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The swiotlb pool has no free run of slots for the request.
    #[error("swiotlb exhausted: no free run of {slots} slots for {bytes:#x} bytes")]
    SwiotlbFull {
        /// Bytes requested (including alignment padding).
        bytes: u64,
        /// Contiguous 2 KiB slots needed.
        slots: u64,
    },
    /// The request is larger than one swiotlb segment can hold.
    #[error("bounce of {bytes:#x} bytes exceeds the swiotlb maximum of {max:#x}")]
    SwiotlbTooLarge {
        /// Bytes requested.
        bytes: u64,
        /// Largest possible bounce.
        max: u64,
    },
    /// An address given to the swiotlb does not belong to a live bounce buffer.
    #[error("{pa:#x} is not inside a live swiotlb bounce buffer")]
    NotBounced {
        /// The address.
        pa: u64,
    },
    /// No IOVA range of the needed size exists below the device's mask.
    #[error("no IOVA space for {bytes:#x} bytes below {limit:#x}")]
    NoIovaSpace {
        /// Bytes requested.
        bytes: u64,
        /// Highest usable IOVA.
        limit: u64,
    },
    /// The IOMMU domain refused a map or unmap.
    #[error("IOMMU domain operation failed: {0}")]
    Domain(Errno),
    /// Simulated physical memory refused an access or allocation.
    #[error("physical memory: {0}")]
    Mem(#[from] iommu_types::Error),
    /// A DMA address given to unmap or sync is not a live mapping of this device.
    #[error("{addr:#x} is not a live DMA mapping")]
    NotMapped {
        /// The DMA address.
        addr: u64,
    },
    /// The operation cannot be expressed with this IOMMU granule and CPU page size
    /// (`get_sgtable` when the granule exceeds the CPU page).
    #[error("not representable: IOMMU granule {granule:#x} exceeds the CPU page {page:#x}")]
    GranuleTooLarge {
        /// IOMMU granule.
        granule: u64,
        /// CPU page size.
        page: u64,
    },
    /// The request conflicts with the domain's policy (lazy mode with an untrusted
    /// device).
    #[error("refused: {0}")]
    Refused(&'static str),
    /// A parameter is invalid (zero length, bad page size, mask too small, ...).
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
}

impl Error {
    /// The errno-style kind of this error.
    pub const fn errno(&self) -> Errno {
        match self {
            Error::SwiotlbFull { .. } | Error::NoIovaSpace { .. } => Errno::ENOMEM,
            Error::SwiotlbTooLarge { .. } => Errno::EINVAL,
            Error::NotBounced { .. } | Error::NotMapped { .. } => Errno::EINVAL,
            Error::Domain(e) => *e,
            Error::Mem(e) => e.errno(),
            Error::GranuleTooLarge { .. } => Errno::ENXIO,
            Error::Refused(_) => Errno::EPERM,
            Error::Invalid(_) => Errno::EINVAL,
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T> = core::result::Result<T, Error>;
