//! The storage host's image library: disk image files an operator puts in
//! `<storage dir>/library/` (a cloud image, a golden VM, a test guest) that a Volume names with
//! `image.library` to start as a copy of.
//!
//! A Volume names a file, never a path, and only plain files directly in the library are used:
//! whoever may write a Volume must not be able to export other files of the host. An image with a
//! backing file is refused too (it would pull in a file outside the library); flatten it first
//! with `qemu-img convert`. The format is the one the Volume states, never guessed, so a raw
//! file that happens to look like qcow2 cannot make `qemu-img` open a file it names.

use std::path::{Path, PathBuf};
use std::time::Duration;

use herd_crds::volume::{LibraryImage, VolumeFormat, is_library_name};

use super::backend::MIB;
use super::error::StorageError;
use super::file::{info, parse_info};
use crate::xl::runner::Runner;

/// How long `qemu-img info` may take.
const QUICK: Duration = Duration::from_secs(60);

/// The library directory of one storage host.
#[derive(Clone, Debug)]
pub struct Library {
    dir: PathBuf,
    runner: Runner,
}

/// A library image checked and ready to copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LibraryFile {
    pub path: PathBuf,
    pub format: VolumeFormat,
    /// The size the guest sees, rounded up to whole MiB.
    pub size_mib: u64,
}

impl Library {
    /// The library in `dir` (created if missing).
    pub fn new(dir: PathBuf, runner: Runner) -> Result<Self, StorageError> {
        std::fs::create_dir_all(&dir).map_err(|e| StorageError::io(&dir, e))?;
        Ok(Self { dir, runner })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Finds and measures `image`: a plain file of that name here, of the stated format, with
    /// no backing file.
    pub async fn open(&self, image: &LibraryImage) -> Result<LibraryFile, StorageError> {
        let path = self.path_of(&image.name)?;
        let output = self.runner.run(&info(&path, image.format), QUICK).await?;
        let info = parse_info(&output.stdout)?;
        if let Some(backing) = info.backing_filename {
            return Err(StorageError::InvalidImage(format!(
                "library image {} has a backing file ({backing}); flatten it with qemu-img convert",
                image.name
            )));
        }
        Ok(LibraryFile {
            path,
            format: image.format,
            size_mib: info.virtual_size.div_ceil(MIB),
        })
    }

    /// The path of library file `name`, if it is a plain file here.
    fn path_of(&self, name: &str) -> Result<PathBuf, StorageError> {
        if !is_library_name(name) {
            return Err(StorageError::InvalidImage(format!(
                "{name:?} cannot name a library image: use a file name, no '/'"
            )));
        }
        let path = self.dir.join(name);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_file() => Ok(path),
            Ok(_) => Err(StorageError::InvalidImage(format!(
                "library image {name} is not a plain file (symbolic links and directories are \
                 not used)"
            ))),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Err(StorageError::LibraryImageMissing {
                    name: name.to_owned(),
                    dir: self.dir.display().to_string(),
                })
            }
            Err(error) => Err(StorageError::io(&path, error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn library() -> (tempfile::TempDir, Library) {
        let dir = tempfile::tempdir().unwrap();
        let library = Library::new(dir.path().join("library"), Runner::from_env()).unwrap();
        (dir, library)
    }

    #[test]
    fn only_plain_files_directly_in_the_library_are_found() {
        let (dir, library) = library();
        std::fs::write(library.dir().join("spin.raw"), [0u8; 512]).unwrap();
        std::fs::write(dir.path().join("secret"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), library.dir().join("link.raw"))
            .unwrap();
        std::fs::create_dir(library.dir().join("sub")).unwrap();

        assert_eq!(
            library.path_of("spin.raw").unwrap(),
            library.dir().join("spin.raw")
        );
        let missing = library.path_of("nothing.raw").unwrap_err();
        assert_eq!(missing.reason(), "LibraryImageMissing");
        assert!(!missing.is_permanent(), "the operator may still add it");
        for refused in ["link.raw", "sub", "../secret", "/etc/shadow"] {
            let error = library.path_of(refused).unwrap_err();
            assert_eq!(error.reason(), "InvalidImage", "{refused}: {error}");
        }
    }
}
