//! Reading the manifests of a commit straight from the object database: no work tree.
//!
//! Everything read is hostile until checked: only regular files ending in `.yaml`/`.yml`
//! under the spec's path are read (symlinks and submodules are skipped, never followed), each
//! path must be plain UTF-8 without `.`/`..` segments, and sizes are capped per file, in
//! total and in count before a blob is loaded.

use std::path::Path;

use gix::bstr::ByteSlice;

use crate::error::SyncError;

/// Caps on what one commit may hold.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest manifest file (the manifest reader refuses larger ones anyway).
    pub file_bytes: u64,
    /// Largest sum of all manifest files.
    pub total_bytes: u64,
    /// Most manifest files.
    pub files: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            file_bytes: herd_crds::yaml::MAX_INPUT_BYTES as u64,
            total_bytes: 256 * 1024 * 1024,
            files: 20_000,
        }
    }
}

/// One manifest file of the commit: its path in the repository and its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoFile {
    pub path: String,
    pub bytes: Vec<u8>,
}

/// The manifest files below `dir` (the whole tree when empty) in commit `commit`, in path order.
pub fn manifest_files(
    repo: &gix::Repository,
    commit: &str,
    dir: &str,
    limits: Limits,
) -> Result<Vec<RepoFile>, SyncError> {
    let git = |e: gix::Error| SyncError::Tree(e.to_string());
    let id =
        gix::ObjectId::from_hex(commit.as_bytes()).map_err(|e| SyncError::Tree(e.to_string()))?;
    let root = repo.find_commit(id).and_then(|c| c.tree()).map_err(git)?;
    let dir = dir.trim_end_matches('/');
    let tree = if dir.is_empty() {
        root
    } else {
        let entry = root.lookup_entry_by_path(Path::new(dir)).map_err(git)?;
        let entry = entry
            .filter(|e| e.mode().is_tree())
            .ok_or_else(|| SyncError::PathNotFound(dir.to_owned()))?;
        entry
            .object()
            .and_then(|o| o.try_into_tree())
            .map_err(git)?
    };
    let mut recorder = gix::traverse::tree::Recorder::default();
    tree.traverse().breadthfirst(&mut recorder).map_err(git)?;
    let mut entries: Vec<_> = recorder
        .records
        .into_iter()
        .filter(|entry| entry.mode.is_blob() && is_manifest_name(entry.filepath.as_bstr()))
        .collect();
    entries.sort_by(|a, b| a.filepath.cmp(&b.filepath));
    read_blobs(repo, dir, entries, limits)
}

/// Loads the blobs, checking each path and the size caps before reading.
fn read_blobs(
    repo: &gix::Repository,
    dir: &str,
    entries: Vec<gix::traverse::tree::recorder::Entry>,
    limits: Limits,
) -> Result<Vec<RepoFile>, SyncError> {
    if entries.len() > limits.files {
        return Err(SyncError::TooLarge(format!(
            "{} manifest files (at most {}); split the repository",
            entries.len(),
            limits.files
        )));
    }
    let mut total = 0u64;
    let mut files = Vec::with_capacity(entries.len());
    for entry in entries {
        let relative = checked_path(entry.filepath.as_bstr())?;
        let path = if dir.is_empty() {
            relative
        } else {
            format!("{dir}/{relative}")
        };
        let size = repo
            .find_header(entry.oid)
            .map_err(|e| SyncError::Tree(e.to_string()))?
            .size();
        if size > limits.file_bytes {
            return Err(SyncError::TooLarge(format!(
                "{path} is {size} bytes (at most {}); split it into smaller files",
                limits.file_bytes
            )));
        }
        total += size;
        if total > limits.total_bytes {
            return Err(SyncError::TooLarge(format!(
                "the manifests pass {} bytes in all; split the repository",
                limits.total_bytes
            )));
        }
        let blob = repo
            .find_blob(entry.oid)
            .map_err(|e| SyncError::Tree(e.to_string()))?;
        files.push(RepoFile {
            path,
            bytes: blob.data.clone(),
        });
    }
    Ok(files)
}

/// Whether a tree path names a manifest file by its extension.
fn is_manifest_name(path: &gix::bstr::BStr) -> bool {
    path.ends_with(b".yaml") || path.ends_with(b".yml")
}

/// A tree path as text, refused when it is not UTF-8 or has an empty, `.` or `..` segment or a
/// control character (git itself refuses most of these; a hand-made tree need not).
pub fn checked_path(path: &gix::bstr::BStr) -> Result<String, SyncError> {
    let text = path
        .to_str()
        .map_err(|_| SyncError::BadPath(format!("{path:?} is not UTF-8")))?;
    let plain = text
        .split('/')
        .all(|segment| !segment.is_empty() && segment != "." && segment != "..")
        && !text.chars().any(char::is_control);
    if plain {
        Ok(text.to_owned())
    } else {
        Err(SyncError::BadPath(format!(
            "{text:?} has an empty, '.' or '..' segment or a control character"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gix::bstr::BStr;

    #[test]
    fn only_plain_utf8_paths_pass() {
        assert_eq!(checked_path(BStr::new("vms/a.yaml")).unwrap(), "vms/a.yaml");
        for bad in ["../a.yaml", "a/./b.yaml", "a//b.yaml", "a\n.yaml"] {
            assert!(checked_path(BStr::new(bad)).is_err(), "{bad}");
        }
        assert!(checked_path(BStr::new(b"\xff.yaml".as_slice())).is_err());
    }

    #[test]
    fn manifests_are_known_by_their_extension() {
        assert!(is_manifest_name(BStr::new("a.yaml")) && is_manifest_name(BStr::new("b/c.yml")));
        assert!(!is_manifest_name(BStr::new("README.md")));
    }
}
