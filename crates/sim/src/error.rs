//! Errors of the simulator (the crate's one `Error` type, with its errno mapping).

use crate::scenario::Diagnostic;
use iommu_types::Errno;

/// What can go wrong running the simulator (a failed expectation is a result, not an
/// error).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A scenario did not parse or check.
    #[error("{} error(s) in scenario", .0.len())]
    Scenario(Vec<Diagnostic>),
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A part of the stack the request needs is not available in this build.
    #[error("not available yet: {0}")]
    Unavailable(&'static str),
    /// The simulated platform failed in a way that is not an architectural outcome.
    #[error("platform error: {0}")]
    Platform(String),
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl Error {
    /// The errno-style kind.
    pub fn errno(&self) -> Errno {
        match self {
            Error::Scenario(_) | Error::Config(_) => Errno::EINVAL,
            Error::Unavailable(_) => Errno::EOPNOTSUPP,
            Error::Platform(_) => Errno::EIO,
            Error::Io { .. } => Errno::EIO,
        }
    }
}

/// Result with the simulator's [`Error`].
pub type Result<T> = core::result::Result<T, Error>;
