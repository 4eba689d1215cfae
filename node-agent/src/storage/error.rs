//! `StorageError`: why a volume could not be created, exported, resized or removed.
//!
//! Each error knows the `reason` it shows in the Volume's `Ready` condition and whether it is
//! the volume's own fault ([`StorageError::is_permanent`]: retrying the same spec cannot help,
//! so the storage role waits for the spec to change) or the host's (retried with backoff).

use std::io;
use std::path::Path;

use crate::xl::runner::RunError;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{name:?} cannot name a volume of the {backend} backend: {why}")]
    InvalidName {
        name: String,
        backend: &'static str,
        why: String,
    },
    #[error("The {backend} backend is not available on this storage host: {why}")]
    BackendUnavailable { backend: &'static str, why: String },
    #[error("{requested_mib} MiB does not fit: {location} has {available_mib} MiB free")]
    InsufficientSpace {
        requested_mib: u64,
        available_mib: u64,
        location: String,
    },
    #[error(
        "Debian suite {suite:?} is unknown to debootstrap (no script in /usr/share/debootstrap/scripts); use a suite such as bookworm"
    )]
    UnknownSuite { suite: String },
    #[error("The package mirror has no package(s) {packages}: check image.debootstrap.packages")]
    UnknownPackages { packages: String },
    #[error("The {what} image needs at least {needed_mib} MiB; the volume asks for {size_mib} MiB")]
    TooSmall {
        what: String,
        needed_mib: u64,
        size_mib: u64,
    },
    #[error("The storage host's library ({dir}) has no image {name}: copy the file there")]
    LibraryImageMissing { name: String, dir: String },
    #[error("Invalid image: {0}")]
    InvalidImage(String),
    #[error("Building the {suite} image failed: {message}")]
    ImageBuild { suite: String, message: String },
    #[error("Exporting {name} over NBD failed: {message}")]
    Export { name: String, message: String },
    #[error("Cannot read {what}: {message}")]
    Parse { what: String, message: String },
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error(transparent)]
    Command(#[from] RunError),
    #[error(transparent)]
    Store(#[from] herd_store::StoreError),
}

impl StorageError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// The `reason` of the Volume's `Ready` condition (CamelCase, machine-readable).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidName { .. } => "InvalidName",
            Self::BackendUnavailable { .. } => "BackendUnavailable",
            Self::InsufficientSpace { .. } => "InsufficientSpace",
            Self::UnknownSuite { .. } => "UnknownSuite",
            Self::UnknownPackages { .. } => "UnknownPackages",
            Self::TooSmall { .. } => "VolumeTooSmall",
            Self::InvalidImage(_) => "InvalidImage",
            Self::LibraryImageMissing { .. } => "LibraryImageMissing",
            Self::ImageBuild { .. } => "ImageBuildFailed",
            Self::Export { .. } => "ExportFailed",
            Self::Parse { .. } | Self::Io { .. } | Self::Command(_) => "StorageError",
            Self::Store(_) => "StoreError",
        }
    }

    /// Whether the spec itself is at fault: the same spec would fail the same way again.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Self::InvalidName { .. }
                | Self::BackendUnavailable { .. }
                | Self::InsufficientSpace { .. }
                | Self::UnknownSuite { .. }
                | Self::UnknownPackages { .. }
                | Self::TooSmall { .. }
                | Self::InvalidImage(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_errors_are_permanent_and_host_errors_are_not() {
        let bad = StorageError::UnknownSuite {
            suite: "nosuch".into(),
        };
        assert!(bad.is_permanent());
        assert_eq!(bad.reason(), "UnknownSuite");
        let host = StorageError::io(Path::new("/x"), io::Error::other("disk on fire"));
        assert!(!host.is_permanent());
        assert_eq!(host.to_string(), "/x: disk on fire");
    }
}
