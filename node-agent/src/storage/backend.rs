//! The `Backend` trait: where a volume's bytes live (`file`: an image file; `lvm`: a logical
//! volume), and the few operations the storage role needs of it.
//!
//! Creation is two-phase so that a failure or a crash never leaves a volume that looks done:
//! [`Backend::prepare`] makes an *incomplete* volume (a `.partial` file, an LV tagged
//! `herd_incomplete`) that the caller fills (image patches, a swap header), then
//! [`Backend::commit`] marks it complete. [`Backend::inspect`] reports an incomplete volume as
//! such, and the reconciler removes it and starts again. Every operation is idempotent.

use std::future::Future;
use std::path::{Path, PathBuf};

use herd_crds::volume::{VolumeBackend, VolumeFormat};

use super::error::StorageError;

/// One MiB.
pub const MIB: u64 = 1024 * 1024;

/// A volume as the backend sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backing {
    pub backend: VolumeBackend,
    /// The file or block device, as `qemu-nbd` and `qemu-io` open it.
    pub path: PathBuf,
    pub format: VolumeFormat,
    /// Size the guest sees, in bytes.
    pub size_bytes: u64,
    /// False while creation is under way (or was cut short by a crash).
    pub complete: bool,
}

impl Backing {
    /// The size in MiB, rounded down.
    pub fn size_mib(&self) -> u64 {
        self.size_bytes / MIB
    }
}

/// What a new volume starts as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source<'a> {
    /// Zeros.
    Empty,
    /// A copy (or, for qcow2 files, a copy-on-write overlay) of this raw base image.
    Base(&'a Path),
    /// A full copy of this image file of this format (a library image), converted as needed.
    Copy(&'a Path, VolumeFormat),
}

/// An incomplete volume, ready to be written to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Staged {
    pub path: PathBuf,
    pub format: VolumeFormat,
}

/// A place volumes are kept.
pub trait Backend: Send + Sync {
    fn kind(&self) -> VolumeBackend;

    /// Refuses a name this backend cannot use (the name becomes a file or LV name).
    fn check_name(&self, name: &str) -> Result<(), StorageError>;

    /// Refuses a size that does not fit in the free space now.
    fn check_space(&self, size_mib: u64) -> impl Future<Output = Result<(), StorageError>> + Send;

    /// The volume `name`, complete or not, if it exists.
    fn inspect(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Backing>, StorageError>> + Send;

    /// Creates volume `name` incomplete, holding `source`, of `size_mib`.
    fn prepare(
        &self,
        name: &str,
        format: VolumeFormat,
        size_mib: u64,
        source: Source<'_>,
    ) -> impl Future<Output = Result<Staged, StorageError>> + Send;

    /// Marks the prepared volume `name` complete.
    fn commit(&self, name: &str) -> impl Future<Output = Result<Backing, StorageError>> + Send;

    /// Grows `backing` to `size_mib` (never shrinks).
    fn grow(
        &self,
        backing: &Backing,
        size_mib: u64,
    ) -> impl Future<Output = Result<(), StorageError>> + Send;

    /// Removes volume `name`, complete or not; nothing to remove is not an error.
    fn remove(&self, name: &str) -> impl Future<Output = Result<(), StorageError>> + Send;
}

/// The `--size` argument both `qemu-img` and `lvcreate` understand: MiB with an `m` suffix.
pub fn size_arg(size_mib: u64) -> String {
    format!("{size_mib}m")
}

/// Checks that `name` is a DNS label, which every backend needs (it becomes a path segment).
pub fn check_dns_label(name: &str, backend: &'static str) -> Result<(), StorageError> {
    if herd_crds::names::is_dns_label(name) {
        Ok(())
    } else {
        Err(StorageError::InvalidName {
            name: name.to_owned(),
            backend,
            why: "use at most 63 lower-case letters, digits and '-', starting and ending with a \
                  letter or digit"
                .into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_leave_the_directory_are_refused() {
        for bad in ["", "../etc", "a/b", "A", "-x", "x.partial", &"a".repeat(64)] {
            assert!(check_dns_label(bad, "file").is_err(), "{bad:?}");
        }
        assert!(check_dns_label("small-1-disk", "file").is_ok());
        assert_eq!(size_arg(4096), "4096m");
    }
}
