//! Per-volume bytes written into a new volume at fixed offsets: what makes a clone of a base
//! image one particular VM, and the header that makes a volume swap.
//!
//! - A guest's slots (`guest_files.rs`): host name, `/etc/hosts`, a fresh machine id and an SSH
//!   host key pair made by `ssh-keygen` for this volume only, each the exact size of the slot's
//!   placeholder and written over it at the offset the base image recorded.
//! - A swap header: `mkswap -L herd-swap` on a sparse scratch file of the volume's size; its
//!   first page is the whole header.
//!
//! Patches are written with `qemu-io -c "write -s FILE OFFSET LENGTH"`, which opens any format
//! (a qcow2 overlay, a raw file, an LV) without mounting anything and without a kernel NBD
//! device.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::backend::Staged;
use super::error::StorageError;
use super::file::format_name;
use super::guest_files::{self, SSH_HOST_KEY, SSH_KEY_COMMENT, SWAP_LABEL};
use super::image::BaseImage;
use super::staging::ScratchDir;
use crate::xl::runner::{CommandLine, Runner};

const QUICK: Duration = Duration::from_secs(120);
/// The swap header's size: one page.
const SWAP_HEADER: u64 = 4096;

/// Bytes to write at an offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Patch {
    pub offset: u64,
    pub data: Vec<u8>,
    /// What it is, for messages.
    pub what: String,
}

/// `ssh-keygen` of an ed25519 key pair with herd's fixed comment at `path` (and `path.pub`).
pub fn ssh_keygen(path: &Path) -> CommandLine {
    let path = path.display().to_string();
    CommandLine::new(
        "ssh-keygen",
        [
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            SSH_KEY_COMMENT,
            "-f",
            &path,
        ],
    )
}

/// Makes a key pair in scratch directory `dir`; returns (private, public) key file contents.
async fn make_key(runner: &Runner, dir: &Path) -> Result<(Vec<u8>, Vec<u8>), StorageError> {
    let key = dir.join("ssh_host_ed25519_key");
    runner.run(&ssh_keygen(&key), QUICK).await?;
    let read = |path: PathBuf| std::fs::read(&path).map_err(|e| StorageError::io(&path, e));
    Ok((read(key.clone())?, read(key.with_extension("pub"))?))
}

/// The sizes of an ed25519 key pair's files as herd makes them (fixed for a fixed comment).
pub async fn ssh_key_sizes(
    runner: &Runner,
    scratch_parent: &Path,
) -> Result<(u64, u64), StorageError> {
    let dir = scratch(scratch_parent)?;
    let (private, public) = make_key(runner, dir.path()).await?;
    Ok((private.len() as u64, public.len() as u64))
}

/// A private scratch directory in `parent`.
fn scratch(parent: &Path) -> Result<ScratchDir, StorageError> {
    ScratchDir::new_in(parent)
}

fn random_bytes() -> Result<[u8; 16], StorageError> {
    let path = Path::new("/dev/urandom");
    let mut bytes = [0; 16];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| StorageError::io(path, e))?;
    Ok(bytes)
}

/// The patches that make a clone of `base` the guest `hostname`.
pub async fn guest_patches(
    runner: &Runner,
    base: &BaseImage,
    hostname: &str,
    scratch_parent: &Path,
) -> Result<Vec<Patch>, StorageError> {
    let dir = scratch(scratch_parent)?;
    let mut key = None;
    let mut patches = Vec::new();
    for placed in &base.slots {
        let path = placed.slot.path.as_str();
        let data = match path {
            "etc/hostname" => pad(
                &guest_files::hostname_file(hostname),
                placed.slot.size,
                path,
            )?,
            "etc/hosts" => pad(&guest_files::hosts_file(hostname), placed.slot.size, path)?,
            "etc/machine-id" => guest_files::machine_id(random_bytes()?).into_bytes(),
            _ if path.starts_with(SSH_HOST_KEY) => {
                if key.is_none() {
                    key = Some(make_key(runner, dir.path()).await?);
                }
                let (private, public) = key.clone().expect("made above");
                if path.ends_with(".pub") {
                    public
                } else {
                    private
                }
            }
            other => {
                return Err(StorageError::InvalidImage(format!(
                    "the base image {} has a slot /{other} this version does not fill; rebuild it",
                    base.describe()
                )));
            }
        };
        if data.len() as u64 != placed.slot.size {
            return Err(StorageError::InvalidImage(format!(
                "/{path} is {} bytes but its slot in {} holds {}",
                data.len(),
                base.describe(),
                placed.slot.size
            )));
        }
        patches.push(Patch {
            offset: placed.offset,
            data,
            what: format!("/{path}"),
        });
    }
    Ok(patches)
}

fn pad(content: &str, size: u64, path: &str) -> Result<Vec<u8>, StorageError> {
    guest_files::pad(content, size)
        .ok_or_else(|| StorageError::InvalidImage(format!("/{path} does not fit in {size} bytes")))
}

/// The swap header of a volume of `size_mib`, labelled `herd-swap`.
pub async fn swap_patch(
    runner: &Runner,
    size_mib: u64,
    scratch_parent: &Path,
) -> Result<Patch, StorageError> {
    let dir = scratch(scratch_parent)?;
    let file = dir.path().join("swap");
    let scratch_file = std::fs::File::create(&file).map_err(|e| StorageError::io(&file, e))?;
    scratch_file
        .set_len(size_mib * super::backend::MIB)
        .map_err(|e| StorageError::io(&file, e))?;
    let command = CommandLine::new("mkswap", ["-L", SWAP_LABEL, &file.display().to_string()]);
    runner.run(&command, QUICK).await?;
    Ok(Patch {
        offset: 0,
        data: super::image::read_at(&file, 0, SWAP_HEADER)?,
        what: "the swap header".into(),
    })
}

/// The `qemu-io` command writing each `(file, patch)` into `target`.
pub fn qemu_io(target: &Staged, writes: &[(PathBuf, &Patch)]) -> Result<CommandLine, StorageError> {
    let mut args = vec!["-f".to_owned(), format_name(target.format).to_owned()];
    for (file, patch) in writes {
        let file = file.display().to_string();
        // qemu-io splits its -c text on spaces itself.
        if file.contains(char::is_whitespace) {
            return Err(StorageError::io(
                Path::new(&file),
                std::io::ErrorKind::InvalidInput.into(),
            ));
        }
        let write = format!("write -q -s {file} {} {}", patch.offset, patch.data.len());
        args.extend(["-c".to_owned(), write]);
    }
    args.push(target.path.display().to_string());
    Ok(CommandLine::new("qemu-io", args))
}

/// Writes `patches` into the staged volume.
pub async fn apply(
    runner: &Runner,
    target: &Staged,
    patches: &[Patch],
    scratch_parent: &Path,
) -> Result<(), StorageError> {
    if patches.is_empty() {
        return Ok(());
    }
    let dir = scratch(scratch_parent)?;
    let mut writes = Vec::with_capacity(patches.len());
    for (index, patch) in patches.iter().enumerate() {
        let file = dir.path().join(format!("patch-{index}"));
        std::fs::write(&file, &patch.data).map_err(|e| StorageError::io(&file, e))?;
        writes.push((file, patch));
    }
    let output = runner.run(&qemu_io(target, &writes)?, QUICK).await?;
    // qemu-io reports a failed command on stdout and still exits 0.
    let said = format!("{}{}", output.stdout, output.stderr);
    if said.contains("error") || said.contains("failed") {
        return Err(StorageError::Parse {
            what: "qemu-io".into(),
            message: said.trim().to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use herd_crds::volume::VolumeFormat;

    use super::*;

    #[test]
    fn qemu_io_writes_each_patch_at_its_offset() {
        let target = Staged {
            path: PathBuf::from("/s/volumes/a.qcow2.partial"),
            format: VolumeFormat::Qcow2,
        };
        let patch = Patch {
            offset: 8192,
            data: vec![b'x'; 512],
            what: "/etc/hostname".into(),
        };
        let command = qemu_io(
            &target,
            &[(PathBuf::from("/s/.herd-scratch-1/patch-0"), &patch)],
        )
        .unwrap();
        assert_eq!(
            command.to_string(),
            "qemu-io -f qcow2 -c 'write -q -s /s/.herd-scratch-1/patch-0 8192 512' /s/volumes/a.qcow2.partial"
        );
        assert!(qemu_io(&target, &[(PathBuf::from("/a b/p"), &patch)]).is_err());
        assert_eq!(
            ssh_keygen(Path::new("/t/k")).to_string(),
            "ssh-keygen -q -t ed25519 -N '' -C root@herd-guest -f /t/k"
        );
    }
}
