//! Careful file operations inside a debootstrap staging tree (a guest's root, built as root).
//!
//! The tree holds whatever the packages installed, including absolute symlinks such as
//! `/etc/mtab -> /proc/self/mounts` that point into the *host* when followed from outside a
//! chroot. So nothing here follows a symlink: directories on the way must be real directories,
//! files are created with `O_NOFOLLOW` after whatever was there is removed, and the tree is
//! removed without crossing into a filesystem mounted inside it (after unmounting any that a
//! crashed debootstrap left).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::error::StorageError;
use crate::xl::runner::{CommandLine, Runner};

const REMOVE_TIMEOUT: Duration = Duration::from_secs(600);

/// A private scratch directory (mode 0700), removed with its contents when dropped.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// A new scratch directory inside `parent`.
    pub fn new_in(parent: &Path) -> Result<Self, StorageError> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let serial = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = parent.join(format!(".herd-scratch-{}-{serial}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path); // left by an earlier process with this pid
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| StorageError::io(&path, e))?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        // Scratch directories hold only plain files this process wrote.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// `root` joined with `rel`, creating missing directories, refusing a symlink or file on the way.
fn directory_in(root: &Path, rel: &Path) -> Result<PathBuf, StorageError> {
    let mut dir = root.to_path_buf();
    for component in rel.components() {
        let Component::Normal(part) = component else {
            return Err(StorageError::io(
                rel,
                std::io::ErrorKind::InvalidInput.into(),
            ));
        };
        dir.push(part);
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                let error = std::io::Error::other("not a directory (symlinks are not followed)");
                return Err(StorageError::io(&dir, error));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&dir).map_err(|e| StorageError::io(&dir, e))?;
                let mode = std::fs::Permissions::from_mode(0o755);
                std::fs::set_permissions(&dir, mode).map_err(|e| StorageError::io(&dir, e))?;
            }
            Err(e) => return Err(StorageError::io(&dir, e)),
        }
    }
    Ok(dir)
}

/// Splits `rel` (relative to the tree's root) into its directory and file name.
fn split(rel: &str) -> Result<(&Path, &std::ffi::OsStr), StorageError> {
    let path = Path::new(rel);
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) if !path.is_absolute() => Ok((parent, name)),
        _ => Err(StorageError::io(
            path,
            std::io::ErrorKind::InvalidInput.into(),
        )),
    }
}

/// Removes `root/rel` if it is a file or a symlink (never what a symlink points to).
pub fn remove_entry(root: &Path, rel: &str) -> Result<(), StorageError> {
    let (parent, name) = split(rel)?;
    let path = directory_in(root, parent)?.join(name);
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if !meta.is_dir() => {
            std::fs::remove_file(&path).map_err(|e| StorageError::io(&path, e))
        }
        Ok(_) => Err(StorageError::io(
            &path,
            std::io::Error::other("is a directory"),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io(&path, e)),
    }
}

/// Writes `data` to `root/rel` with `mode`, replacing whatever was there, following no symlink.
pub fn write_file(root: &Path, rel: &str, data: &[u8], mode: u32) -> Result<(), StorageError> {
    remove_entry(root, rel)?;
    let (parent, name) = split(rel)?;
    let path = directory_in(root, parent)?.join(name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| StorageError::io(&path, e))?;
    file.write_all(data)
        .map_err(|e| StorageError::io(&path, e))?;
    // The umask may have narrowed the mode.
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| StorageError::io(&path, e))
}

/// Makes `root/rel` a symlink to `target` (replacing a file or symlink there).
pub fn symlink(root: &Path, rel: &str, target: &str) -> Result<(), StorageError> {
    remove_entry(root, rel)?;
    let (parent, name) = split(rel)?;
    let path = directory_in(root, parent)?.join(name);
    std::os::unix::fs::symlink(target, &path).map_err(|e| StorageError::io(&path, e))
}

/// Removes every file or symlink in directory `root/rel` whose name starts with `prefix` and
/// ends with `suffix`.
pub fn remove_matching(
    root: &Path,
    rel: &str,
    prefix: &str,
    suffix: &str,
) -> Result<(), StorageError> {
    let dir = directory_in(root, Path::new(rel))?;
    let entries = std::fs::read_dir(&dir).map_err(|e| StorageError::io(&dir, e))?;
    for entry in entries.flatten() {
        if let Some(name) = entry.file_name().to_str()
            && name.starts_with(prefix)
            && name.ends_with(suffix)
        {
            remove_entry(root, &format!("{rel}/{name}"))?;
        }
    }
    Ok(())
}

/// Bytes and inodes the tree uses (allocated blocks), staying on the tree's filesystem.
pub fn usage(root: &Path) -> Result<(u64, u64), StorageError> {
    let device = std::fs::symlink_metadata(root)
        .map_err(|e| StorageError::io(root, e))?
        .dev();
    let (mut bytes, mut inodes) = (0u64, 0u64);
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| StorageError::io(&dir, e))?;
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.dev() != device {
                continue;
            }
            bytes += meta.blocks() * 512;
            inodes += 1;
            if meta.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    Ok((bytes, inodes))
}

/// Mount points at or under `path` in `/proc/self/mountinfo` text, deepest first.
pub fn mounts_under(mountinfo: &str, path: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_octal(field)))
        .filter(|mount| mount.starts_with(path))
        .collect();
    found.sort_by_key(|mount| std::cmp::Reverse(mount.components().count()));
    found.dedup();
    found
}

/// Undoes mountinfo's `\040`-style escapes.
fn unescape_octal(field: &str) -> String {
    let mut out = Vec::with_capacity(field.len());
    let bytes = field.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| {
            std::str::from_utf8(digits)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(value)) => {
                out.push(value);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Removes the tree at `path`: unmounts what is mounted inside it, then `rm -rf
/// --one-file-system` (which refuses to descend into anything still mounted).
pub async fn remove_tree(runner: &Runner, path: &Path) -> Result<(), StorageError> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for mount in mounts_under(&mountinfo, path) {
        let target = mount.display().to_string();
        let umount = CommandLine::new("umount", ["--lazy", &target]);
        if let Err(error) = runner.run(&umount, REMOVE_TIMEOUT).await {
            tracing::warn!(%error, "cannot unmount a leftover mount in a staging tree");
        }
    }
    let target = path.display().to_string();
    let rm = CommandLine::new("rm", ["-rf", "--one-file-system", "--", &target]);
    runner.run(&rm, REMOVE_TIMEOUT).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_never_follow_symlinks_out_of_the_tree() {
        let outside = tempfile::tempdir().unwrap();
        let tree = tempfile::tempdir().unwrap();
        let victim = outside.path().join("hostname");
        std::fs::write(&victim, "host\n").unwrap();
        std::fs::create_dir(tree.path().join("etc")).unwrap();
        std::os::unix::fs::symlink(&victim, tree.path().join("etc/hostname")).unwrap();
        write_file(tree.path(), "etc/hostname", b"guest\n", 0o644).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "host\n");
        assert_eq!(
            std::fs::read_to_string(tree.path().join("etc/hostname")).unwrap(),
            "guest\n"
        );

        // A symlinked directory on the way is refused, not followed.
        std::os::unix::fs::symlink(outside.path(), tree.path().join("lnk")).unwrap();
        assert!(write_file(tree.path(), "lnk/x", b"x", 0o644).is_err());
        assert!(!outside.path().join("x").exists());
        assert!(write_file(tree.path(), "../x", b"x", 0o644).is_err());
    }

    #[test]
    fn modes_are_exact_and_directories_are_made() {
        let tree = tempfile::tempdir().unwrap();
        write_file(tree.path(), "etc/ssh/key", b"k", 0o600).unwrap();
        let meta = std::fs::metadata(tree.path().join("etc/ssh/key")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        symlink(
            tree.path(),
            "etc/systemd/network/99-default.link",
            "/dev/null",
        )
        .unwrap();
        let link = std::fs::read_link(tree.path().join("etc/systemd/network/99-default.link"));
        assert_eq!(link.unwrap(), Path::new("/dev/null"));
        write_file(tree.path(), "etc/ssh/ssh_host_rsa_key", b"k", 0o600).unwrap();
        remove_matching(tree.path(), "etc/ssh", "ssh_host_", "").unwrap();
        assert!(!tree.path().join("etc/ssh/ssh_host_rsa_key").exists());
        assert!(tree.path().join("etc/ssh/key").exists());
        let (bytes, inodes) = usage(tree.path()).unwrap();
        assert!(bytes > 0 && inodes >= 5, "{bytes} {inodes}");
    }

    #[test]
    fn leftover_mounts_are_found_deepest_first() {
        let mountinfo = "\
22 1 8:1 / / rw - ext4 /dev/vda rw
40 22 0:5 / /var/lib/herd/storage/images/x.partial/root/proc rw - proc proc rw
41 22 0:6 / /var/lib/herd/storage/images/x.partial/root/dev/pts rw - devpts devpts rw
42 22 0:7 / /var/lib/herd/storage/images/x.partial/root/with\\040space rw - tmpfs t rw
43 22 0:8 / /var/lib/herd/storage/images/y rw - tmpfs t rw
";
        let found = mounts_under(
            mountinfo,
            Path::new("/var/lib/herd/storage/images/x.partial"),
        );
        assert_eq!(
            found,
            [
                "/var/lib/herd/storage/images/x.partial/root/dev/pts",
                "/var/lib/herd/storage/images/x.partial/root/proc",
                "/var/lib/herd/storage/images/x.partial/root/with space",
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn scratch_directories_are_private_and_go_away() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = ScratchDir::new_in(dir.path()).unwrap();
        let path = scratch.path().to_path_buf();
        std::fs::write(path.join("k"), b"secret").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        drop(scratch);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn trees_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("root");
        std::fs::create_dir(&tree).unwrap();
        write_file(&tree, "a/b/c", b"x", 0o644).unwrap();
        remove_tree(&Runner::from_env(), &tree).await.unwrap();
        assert!(!tree.exists());
        remove_tree(&Runner::from_env(), &tree).await.unwrap();
    }
}
