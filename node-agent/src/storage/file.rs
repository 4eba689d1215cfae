//! The `file` backend: one raw or qcow2 image per volume in `<storage dir>/volumes/`, made and
//! measured with `qemu-img` (`create`, `convert`, `resize`, `info --output=json`).
//!
//! A volume built from a base image is a qcow2 overlay whose backing file is the raw base
//! (`qemu-img create -b BASE -F raw`): it is ready in milliseconds whatever its size, and only
//! what the guest changes takes space. A raw volume is a sparse copy of the base instead.
//! While a volume is being made it is `<name>.<format>.partial`; [`Backend::commit`] renames it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use herd_crds::volume::{VolumeBackend, VolumeFormat};
use serde::Deserialize;

use super::backend::{Backend, Backing, MIB, Source, Staged, check_dns_label, size_arg};
use super::error::StorageError;
use crate::xl::runner::{CommandLine, Runner};

/// How long `qemu-img` may take for metadata operations.
const QUICK: Duration = Duration::from_secs(60);
/// How long copying a base image may take.
const COPY: Duration = Duration::from_secs(3600);
const FORMATS: [VolumeFormat; 2] = [VolumeFormat::Qcow2, VolumeFormat::Raw];

/// Image files in one directory.
#[derive(Clone, Debug)]
pub struct FileBackend {
    dir: PathBuf,
    runner: Runner,
}

/// The `qemu-img` name of a format.
pub fn format_name(format: VolumeFormat) -> &'static str {
    match format {
        VolumeFormat::Raw => "raw",
        VolumeFormat::Qcow2 => "qcow2",
    }
}

fn path_arg(path: &Path) -> String {
    path.display().to_string()
}

/// `qemu-img create` of an empty image.
pub fn create_empty(path: &Path, format: VolumeFormat, size_mib: u64) -> CommandLine {
    let format = format_name(format);
    CommandLine::new(
        "qemu-img",
        [
            "create",
            "-q",
            "-f",
            format,
            &path_arg(path),
            &size_arg(size_mib),
        ],
    )
}

/// `qemu-img create` of a qcow2 overlay over a raw `base`.
pub fn create_overlay(path: &Path, base: &Path, size_mib: u64) -> CommandLine {
    let (path, base) = (path_arg(path), path_arg(base));
    CommandLine::new(
        "qemu-img",
        [
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            "raw",
            "-b",
            &base,
            &path,
            &size_arg(size_mib),
        ],
    )
}

/// `qemu-img convert` of a raw `base` into a new sparse raw file.
pub fn copy_raw(base: &Path, path: &Path) -> CommandLine {
    convert(base, VolumeFormat::Raw, path, VolumeFormat::Raw)
}

/// `qemu-img convert` of `source` (read as `source_format`, never probed) into a new `path`.
pub fn convert(
    source: &Path,
    source_format: VolumeFormat,
    path: &Path,
    format: VolumeFormat,
) -> CommandLine {
    CommandLine::new(
        "qemu-img",
        [
            "convert",
            "-q",
            "-f",
            format_name(source_format),
            "-O",
            format_name(format),
            &path_arg(source),
            &path_arg(path),
        ],
    )
}

/// `qemu-img resize` to `size_mib`.
pub fn resize(path: &Path, format: VolumeFormat, size_mib: u64) -> CommandLine {
    let format = format_name(format);
    CommandLine::new(
        "qemu-img",
        [
            "resize",
            "-q",
            "-f",
            format,
            &path_arg(path),
            &size_arg(size_mib),
        ],
    )
}

/// `qemu-img info` as JSON; `-U` because `qemu-nbd` may hold the image's write lock.
pub fn info(path: &Path, format: VolumeFormat) -> CommandLine {
    let format = format_name(format);
    CommandLine::new(
        "qemu-img",
        ["info", "-U", "--output=json", "-f", format, &path_arg(path)],
    )
}

/// What `qemu-img info --output=json` says of an image (the fields herd reads).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ImageInfo {
    #[serde(rename = "virtual-size")]
    pub virtual_size: u64,
    pub format: String,
    #[serde(rename = "backing-filename", default)]
    pub backing_filename: Option<String>,
}

/// Parses `qemu-img info --output=json`.
pub fn parse_info(json: &str) -> Result<ImageInfo, StorageError> {
    serde_json::from_str(json).map_err(|error| StorageError::Parse {
        what: "qemu-img info".into(),
        message: error.to_string(),
    })
}

/// Free bytes for an unprivileged writer on the filesystem holding `path`.
pub fn available_bytes(path: &Path) -> Result<u64, StorageError> {
    use std::os::unix::ffi::OsStrExt;
    let text = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| StorageError::io(path, std::io::ErrorKind::InvalidInput.into()))?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `text` is a NUL-terminated path and `stats` is a writable statvfs buffer.
    let rc = unsafe { libc::statvfs(text.as_ptr(), stats.as_mut_ptr()) };
    if rc != 0 {
        return Err(StorageError::io(path, std::io::Error::last_os_error()));
    }
    // SAFETY: statvfs returned 0, so it filled the buffer.
    let stats = unsafe { stats.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between libc targets
    Ok(stats.f_bavail as u64 * stats.f_frsize as u64)
}

impl FileBackend {
    /// Volumes in `dir` (created if missing; made absolute so no path reads as an option or a
    /// `qemu-img` protocol prefix).
    pub fn new(dir: impl Into<PathBuf>, runner: Runner) -> Result<Self, StorageError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| StorageError::io(&dir, e))?;
        let dir = std::path::absolute(&dir).map_err(|e| StorageError::io(&dir, e))?;
        Ok(Self { dir, runner })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the complete volume `name` of `format` is.
    pub fn path(&self, name: &str, format: VolumeFormat) -> PathBuf {
        self.dir.join(format!("{name}.{}", format_name(format)))
    }

    fn partial(&self, name: &str, format: VolumeFormat) -> PathBuf {
        self.dir
            .join(format!("{name}.{}.partial", format_name(format)))
    }

    /// The names of every volume file here, complete or not.
    pub fn names(&self) -> Result<Vec<String>, StorageError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| StorageError::io(&self.dir, e))?;
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|entry| {
                let file = entry.file_name().to_str()?.to_owned();
                let stem = file.strip_suffix(".partial").unwrap_or(&file);
                let (name, ext) = stem.rsplit_once('.')?;
                matches!(ext, "raw" | "qcow2").then(|| name.to_owned())
            })
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn run(&self, command: &CommandLine, limit: Duration) -> Result<(), StorageError> {
        self.runner.run(command, limit).await?;
        Ok(())
    }

    async fn fill(
        &self,
        path: &Path,
        format: VolumeFormat,
        size_mib: u64,
        source: Source<'_>,
    ) -> Result<(), StorageError> {
        match (source, format) {
            (Source::Empty, _) => self.run(&create_empty(path, format, size_mib), QUICK).await,
            (Source::Base(base), VolumeFormat::Qcow2) => {
                self.run(&create_overlay(path, base, size_mib), QUICK).await
            }
            (Source::Base(base), VolumeFormat::Raw) => {
                self.run(&copy_raw(base, path), COPY).await?;
                self.run(&resize(path, format, size_mib), QUICK).await
            }
            (Source::Copy(source, source_format), _) => {
                self.run(&convert(source, source_format, path, format), COPY)
                    .await?;
                self.run(&resize(path, format, size_mib), QUICK).await
            }
        }
    }
}

fn remove_file(path: &Path) -> Result<(), StorageError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StorageError::io(path, e)),
        _ => Ok(()),
    }
}

impl Backend for FileBackend {
    fn kind(&self) -> VolumeBackend {
        VolumeBackend::File
    }

    fn check_name(&self, name: &str) -> Result<(), StorageError> {
        check_dns_label(name, "file")
    }

    async fn check_space(&self, size_mib: u64) -> Result<(), StorageError> {
        let available_mib = available_bytes(&self.dir)? / MIB;
        if size_mib > available_mib {
            return Err(StorageError::InsufficientSpace {
                requested_mib: size_mib,
                available_mib,
                location: format!("the filesystem of {}", self.dir.display()),
            });
        }
        Ok(())
    }

    async fn inspect(&self, name: &str) -> Result<Option<Backing>, StorageError> {
        for format in FORMATS {
            let path = self.path(name, format);
            if !path.exists() {
                continue;
            }
            let output = self.runner.run(&info(&path, format), QUICK).await?;
            let info = parse_info(&output.stdout)?;
            return Ok(Some(Backing {
                backend: VolumeBackend::File,
                path,
                format,
                size_bytes: info.virtual_size,
                complete: true,
            }));
        }
        Ok(FORMATS.into_iter().find_map(|format| {
            let path = self.partial(name, format);
            path.exists().then_some(Backing {
                backend: VolumeBackend::File,
                path,
                format,
                size_bytes: 0,
                complete: false,
            })
        }))
    }

    async fn prepare(
        &self,
        name: &str,
        format: VolumeFormat,
        size_mib: u64,
        source: Source<'_>,
    ) -> Result<Staged, StorageError> {
        check_dns_label(name, "file")?;
        let path = self.partial(name, format);
        remove_file(&path)?;
        if let Err(error) = self.fill(&path, format, size_mib, source).await {
            remove_file(&path)?;
            return Err(error);
        }
        Ok(Staged { path, format })
    }

    async fn commit(&self, name: &str) -> Result<Backing, StorageError> {
        for format in FORMATS {
            let partial = self.partial(name, format);
            if partial.exists() {
                let path = self.path(name, format);
                std::fs::rename(&partial, &path).map_err(|e| StorageError::io(&partial, e))?;
            }
        }
        self.inspect(name)
            .await?
            .filter(|backing| backing.complete)
            .ok_or_else(|| {
                StorageError::io(
                    &self.path(name, VolumeFormat::Qcow2),
                    std::io::ErrorKind::NotFound.into(),
                )
            })
    }

    async fn grow(&self, backing: &Backing, size_mib: u64) -> Result<(), StorageError> {
        self.run(&resize(&backing.path, backing.format, size_mib), QUICK)
            .await
    }

    async fn remove(&self, name: &str) -> Result<(), StorageError> {
        check_dns_label(name, "file")?;
        for format in FORMATS {
            remove_file(&self.path(name, format))?;
            remove_file(&self.partial(name, format))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `qemu-img info -U --output=json -f qcow2` of an overlay, from qemu-img 7.2 (Debian 12).
    const OVERLAY_INFO: &str = r#"{
    "backing-filename-format": "raw",
    "virtual-size": 67108864,
    "filename": "o.qcow2",
    "cluster-size": 65536,
    "format": "qcow2",
    "actual-size": 200704,
    "format-specific": {
        "type": "qcow2",
        "data": {
            "compat": "1.1",
            "compression-type": "zlib",
            "lazy-refcounts": false,
            "refcount-bits": 16,
            "corrupt": false,
            "extended-l2": false
        }
    },
    "full-backing-filename": "/tmp/kt/base.raw",
    "backing-filename": "/tmp/kt/base.raw",
    "dirty-flag": false
}"#;

    #[test]
    fn info_is_read_from_real_qemu_img_output() {
        let info = parse_info(OVERLAY_INFO).unwrap();
        assert_eq!(info.virtual_size, 64 * MIB);
        assert_eq!(info.format, "qcow2");
        assert_eq!(info.backing_filename.as_deref(), Some("/tmp/kt/base.raw"));
        assert!(parse_info("qemu-img: Could not open").is_err());
    }

    #[test]
    fn command_lines() {
        let (path, base) = (Path::new("/s/v/a.qcow2"), Path::new("/s/i/b/base.raw"));
        assert_eq!(
            create_overlay(path, base, 4096).to_string(),
            "qemu-img create -q -f qcow2 -F raw -b /s/i/b/base.raw /s/v/a.qcow2 4096m"
        );
        assert_eq!(
            convert(
                Path::new("/s/library/cloud.qcow2"),
                VolumeFormat::Qcow2,
                path,
                VolumeFormat::Raw
            )
            .to_string(),
            "qemu-img convert -q -f qcow2 -O raw /s/library/cloud.qcow2 /s/v/a.qcow2",
            "the source's format is stated, never probed"
        );
        assert_eq!(
            create_empty(path, VolumeFormat::Raw, 512).to_string(),
            "qemu-img create -q -f raw /s/v/a.qcow2 512m"
        );
        assert_eq!(
            resize(path, VolumeFormat::Qcow2, 8192).to_string(),
            "qemu-img resize -q -f qcow2 /s/v/a.qcow2 8192m"
        );
        assert_eq!(
            info(path, VolumeFormat::Qcow2).to_string(),
            "qemu-img info -U --output=json -f qcow2 /s/v/a.qcow2"
        );
    }

    #[test]
    fn names_are_found_whatever_their_state() {
        let dir = tempfile::tempdir().unwrap();
        let backend = FileBackend::new(dir.path(), Runner::from_env()).unwrap();
        for file in ["a.qcow2", "b.raw.partial", "c.txt", "a.raw"] {
            std::fs::write(dir.path().join(file), b"").unwrap();
        }
        assert_eq!(backend.names().unwrap(), ["a", "b"]);
        assert!(available_bytes(dir.path()).unwrap() > 0);
    }
}
