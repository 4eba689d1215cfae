//! The `lvm` backend: one logical volume per volume in one volume group (`--storage-backend-vg`),
//! as the seed's configuration agent made them: `lvcreate -L … -n … VG`, `lvextend`,
//! `lvremove`, state from `lvs --reportformat json`.
//!
//! Every LV herd makes carries the tag `herd`; while it is being filled it also carries
//! `herd_incomplete`, removed by [`Backend::commit`]. A base image is copied in with
//! `qemu-img convert -n` (LVM has no cheap clone short of thin snapshots; see `docs/storage.md`).
//!
//! LVM cannot run where herd is developed (no device-mapper). The command lines and parsers here
//! are unit-tested on output captured from LVM 2.03.16 with activation disabled
//! (`fixtures/README.md`); the backend has not run against a live volume group.

use std::path::PathBuf;
use std::time::Duration;

use herd_crds::volume::{VolumeBackend, VolumeFormat};
use serde::Deserialize;

use super::backend::{Backend, Backing, MIB, Source, Staged, check_dns_label, size_arg};
use super::error::StorageError;
use crate::xl::runner::{CommandLine, Runner};

/// The tag on every LV herd made.
pub const TAG: &str = "herd";
/// The tag on an LV that is still being filled.
pub const INCOMPLETE_TAG: &str = "herd_incomplete";
/// How long an LVM command may take.
const QUICK: Duration = Duration::from_secs(120);
/// How long copying a base image onto an LV may take.
const COPY: Duration = Duration::from_secs(3600);
/// Strings LVM refuses inside LV names (`lvm(8)`, "VALID NAMES").
const RESERVED_PARTS: [&str; 11] = [
    "_cdata", "_cmeta", "_corig", "_mimage", "_mlog", "_pmspare", "_rimage", "_rmeta", "_tdata",
    "_tmeta", "_vorigin",
];

/// Logical volumes in one volume group.
#[derive(Clone, Debug)]
pub struct LvmBackend {
    vg: String,
    runner: Runner,
}

/// Why LVM refuses `name` as a new LV name, if it does.
pub fn lv_name_problem(name: &str) -> Option<String> {
    if name.starts_with("snapshot") || name.starts_with("pvmove") {
        return Some("LVM reserves names starting with \"snapshot\" or \"pvmove\"".into());
    }
    if let Some(part) = RESERVED_PARTS.iter().find(|part| name.contains(*part)) {
        return Some(format!("LVM reserves names containing {part:?}"));
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'_' | b'.' | b'-');
    if name.is_empty() || name.len() > 127 || name.starts_with('-') || !name.bytes().all(allowed) {
        return Some("use up to 127 of a-z A-Z 0-9 + _ . -, not starting with '-'".into());
    }
    None
}

/// `lvcreate` of an incomplete LV (the seed's `lvcreate -L … -n … VG`).
pub fn lvcreate(vg: &str, name: &str, size_mib: u64) -> CommandLine {
    let size = size_arg(size_mib);
    CommandLine::new(
        "lvcreate",
        [
            "--yes",
            "--wipesignatures",
            "y",
            "-L",
            &size,
            "-n",
            name,
            "--addtag",
            TAG,
            "--addtag",
            INCOMPLETE_TAG,
            vg,
        ],
    )
}

/// `lvchange --deltag herd_incomplete`: the LV is complete.
pub fn lvchange_complete(vg: &str, name: &str) -> CommandLine {
    let lv = format!("{vg}/{name}");
    CommandLine::new("lvchange", ["--deltag", INCOMPLETE_TAG, &lv])
}

/// `lvextend -L`.
pub fn lvextend(vg: &str, name: &str, size_mib: u64) -> CommandLine {
    let (lv, size) = (format!("{vg}/{name}"), size_arg(size_mib));
    CommandLine::new("lvextend", ["-L", &size, &lv])
}

/// `lvremove`.
pub fn lvremove(vg: &str, name: &str) -> CommandLine {
    let lv = format!("{vg}/{name}");
    CommandLine::new("lvremove", ["--yes", &lv])
}

/// `lvs` as JSON with sizes in bytes.
pub fn lvs(vg: &str) -> CommandLine {
    CommandLine::new(
        "lvs",
        [
            "--reportformat",
            "json",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            "lv_name,vg_name,lv_size,lv_tags,lv_path",
            vg,
        ],
    )
}

/// `vgs` as JSON with sizes in bytes.
pub fn vgs(vg: &str) -> CommandLine {
    CommandLine::new(
        "vgs",
        [
            "--reportformat",
            "json",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            "vg_name,vg_size,vg_free,vg_extent_size",
            vg,
        ],
    )
}

/// `qemu-img convert -n` of a raw base onto an existing LV.
pub fn copy_onto(
    source: &std::path::Path,
    source_format: VolumeFormat,
    device: &std::path::Path,
) -> CommandLine {
    let (source, device) = (source.display().to_string(), device.display().to_string());
    let from = super::file::format_name(source_format);
    CommandLine::new(
        "qemu-img",
        [
            "convert", "-n", "-q", "-f", from, "-O", "raw", &source, &device,
        ],
    )
}

/// One row of `lvs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogicalVolume {
    pub name: String,
    pub vg: String,
    pub size_bytes: u64,
    pub tags: Vec<String>,
    pub path: String,
}

/// One row of `vgs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeGroup {
    pub name: String,
    pub size_bytes: u64,
    pub free_bytes: u64,
    pub extent_bytes: u64,
}

#[derive(Deserialize)]
struct Report<T> {
    report: Vec<ReportSection<T>>,
}

#[derive(Deserialize)]
struct ReportSection<T> {
    #[serde(alias = "lv", alias = "vg")]
    rows: Vec<T>,
}

#[derive(Deserialize)]
struct LvRow {
    lv_name: String,
    vg_name: String,
    lv_size: String,
    lv_tags: String,
    lv_path: String,
}

#[derive(Deserialize)]
struct VgRow {
    vg_name: String,
    vg_size: String,
    vg_free: String,
    vg_extent_size: String,
}

fn parse_error(what: &str, message: impl ToString) -> StorageError {
    StorageError::Parse {
        what: what.into(),
        message: message.to_string(),
    }
}

fn bytes(what: &str, value: &str) -> Result<u64, StorageError> {
    value
        .trim()
        .parse()
        .map_err(|_| parse_error(what, format!("{value:?} is not a size in bytes")))
}

fn rows<T: serde::de::DeserializeOwned>(what: &str, json: &str) -> Result<Vec<T>, StorageError> {
    let report: Report<T> = serde_json::from_str(json).map_err(|e| parse_error(what, e))?;
    Ok(report.report.into_iter().flat_map(|s| s.rows).collect())
}

/// Parses `lvs --reportformat json --units b --nosuffix -o lv_name,vg_name,lv_size,lv_tags,lv_path`.
pub fn parse_lvs(json: &str) -> Result<Vec<LogicalVolume>, StorageError> {
    rows::<LvRow>("lvs", json)?
        .into_iter()
        .map(|row| {
            Ok(LogicalVolume {
                size_bytes: bytes("lvs", &row.lv_size)?,
                tags: row
                    .lv_tags
                    .split(',')
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect(),
                name: row.lv_name,
                vg: row.vg_name,
                path: row.lv_path,
            })
        })
        .collect()
}

/// Parses `vgs --reportformat json --units b --nosuffix -o vg_name,vg_size,vg_free,vg_extent_size`.
pub fn parse_vgs(json: &str) -> Result<Vec<VolumeGroup>, StorageError> {
    rows::<VgRow>("vgs", json)?
        .into_iter()
        .map(|row| {
            Ok(VolumeGroup {
                size_bytes: bytes("vgs", &row.vg_size)?,
                free_bytes: bytes("vgs", &row.vg_free)?,
                extent_bytes: bytes("vgs", &row.vg_extent_size)?,
                name: row.vg_name,
            })
        })
        .collect()
}

/// Refuses `size_mib` unless it fits in `vg`'s free extents (LVM rounds up to whole extents).
pub fn check_fits(vg: &VolumeGroup, size_mib: u64) -> Result<(), StorageError> {
    let extent = vg.extent_bytes.max(1);
    let needed = (size_mib * MIB).div_ceil(extent) * extent;
    if needed > vg.free_bytes {
        return Err(StorageError::InsufficientSpace {
            requested_mib: size_mib,
            available_mib: vg.free_bytes / MIB,
            location: format!("volume group {}", vg.name),
        });
    }
    Ok(())
}

impl LvmBackend {
    /// LVs in volume group `vg`.
    pub fn new(vg: impl Into<String>, runner: Runner) -> Result<Self, StorageError> {
        let vg = vg.into();
        let valid = !vg.is_empty()
            && vg != "."
            && vg != ".."
            && !vg.starts_with('-')
            && vg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+_.-".contains(&b));
        if !valid {
            return Err(StorageError::BackendUnavailable {
                backend: "lvm",
                why: format!("{vg:?} is not a volume group name"),
            });
        }
        Ok(Self { vg, runner })
    }

    pub fn volume_group(&self) -> &str {
        &self.vg
    }

    /// The device of LV `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("/dev/{}/{name}", self.vg))
    }

    /// Every LV herd made in the group.
    pub async fn list(&self) -> Result<Vec<LogicalVolume>, StorageError> {
        let output = self.runner.run(&lvs(&self.vg), QUICK).await?;
        let all = parse_lvs(&output.stdout)?;
        Ok(all
            .into_iter()
            .filter(|lv| lv.tags.iter().any(|t| t == TAG))
            .collect())
    }

    async fn group(&self) -> Result<VolumeGroup, StorageError> {
        let output = self.runner.run(&vgs(&self.vg), QUICK).await?;
        parse_vgs(&output.stdout)?
            .into_iter()
            .find(|vg| vg.name == self.vg)
            .ok_or_else(|| StorageError::BackendUnavailable {
                backend: "lvm",
                why: format!("volume group {} not found", self.vg),
            })
    }
}

impl Backend for LvmBackend {
    fn kind(&self) -> VolumeBackend {
        VolumeBackend::Lvm
    }

    fn check_name(&self, name: &str) -> Result<(), StorageError> {
        check_dns_label(name, "lvm")?;
        match lv_name_problem(name) {
            Some(why) => Err(StorageError::InvalidName {
                name: name.to_owned(),
                backend: "lvm",
                why,
            }),
            None => Ok(()),
        }
    }

    async fn check_space(&self, size_mib: u64) -> Result<(), StorageError> {
        check_fits(&self.group().await?, size_mib)
    }

    async fn inspect(&self, name: &str) -> Result<Option<Backing>, StorageError> {
        Ok(self
            .list()
            .await?
            .into_iter()
            .find(|lv| lv.name == name)
            .map(|lv| Backing {
                backend: VolumeBackend::Lvm,
                path: self.path(name),
                format: VolumeFormat::Raw,
                size_bytes: lv.size_bytes,
                complete: !lv.tags.iter().any(|t| t == INCOMPLETE_TAG),
            }))
    }

    async fn prepare(
        &self,
        name: &str,
        format: VolumeFormat,
        size_mib: u64,
        source: Source<'_>,
    ) -> Result<Staged, StorageError> {
        self.check_name(name)?;
        if format != VolumeFormat::Raw {
            return Err(StorageError::InvalidImage(
                "the lvm backend holds raw volumes only".into(),
            ));
        }
        self.runner
            .run(&lvcreate(&self.vg, name, size_mib), QUICK)
            .await?;
        let path = self.path(name);
        let copy = match source {
            Source::Empty => None,
            Source::Base(base) => Some(copy_onto(base, VolumeFormat::Raw, &path)),
            Source::Copy(source, source_format) => Some(copy_onto(source, source_format, &path)),
        };
        if let Some(copy) = copy
            && let Err(error) = self.runner.run(&copy, COPY).await
        {
            self.remove(name).await?;
            return Err(error.into());
        }
        Ok(Staged { path, format })
    }

    async fn commit(&self, name: &str) -> Result<Backing, StorageError> {
        self.runner
            .run(&lvchange_complete(&self.vg, name), QUICK)
            .await?;
        self.inspect(name)
            .await?
            .ok_or_else(|| StorageError::Parse {
                what: "lvs".into(),
                message: format!("{name} is missing after lvchange"),
            })
    }

    async fn grow(&self, backing: &Backing, size_mib: u64) -> Result<(), StorageError> {
        let name = backing
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        self.check_space(size_mib.saturating_sub(backing.size_mib()))
            .await?;
        self.runner
            .run(&lvextend(&self.vg, name, size_mib), QUICK)
            .await?;
        Ok(())
    }

    async fn remove(&self, name: &str) -> Result<(), StorageError> {
        if self.inspect(name).await?.is_some() {
            self.runner.run(&lvremove(&self.vg, name), QUICK).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LVS: &str = include_str!("fixtures/lvs.json");
    const VGS: &str = include_str!("fixtures/vgs.json");
    const LVS_NO_VG: &str = include_str!("fixtures/lvs-no-vg.json");

    #[test]
    fn lvs_json_from_lvm_is_parsed() {
        let lvs = parse_lvs(LVS).unwrap();
        assert_eq!(lvs.len(), 3);
        assert_eq!(
            lvs[1],
            LogicalVolume {
                name: "small-1-disk".into(),
                vg: "herd".into(),
                size_bytes: 64 * MIB,
                tags: vec!["herd".into(), "herd_incomplete".into()],
                path: "/dev/herd/small-1-disk".into(),
            }
        );
        assert_eq!(
            lvs[0].tags,
            Vec::<String>::new(),
            "an untagged LV is not ours"
        );
        assert_eq!(lvs[2].size_bytes, 100 * MIB);
        assert!(parse_lvs(LVS_NO_VG).unwrap().is_empty());
        assert!(parse_lvs("  Volume group \"x\" not found").is_err());
    }

    #[test]
    fn vgs_json_from_lvm_is_parsed_and_sizes_are_checked_in_extents() {
        let vg = parse_vgs(VGS).unwrap().remove(0);
        assert_eq!(vg.name, "herd");
        assert_eq!((vg.free_bytes, vg.extent_bytes), (72 * MIB, 4 * MIB));
        assert!(check_fits(&vg, 72).is_ok());
        // 70 MiB rounds up to 18 extents = 72 MiB: fits; 73 MiB needs 19 extents: does not.
        assert!(check_fits(&vg, 70).is_ok());
        let error = check_fits(&vg, 73).unwrap_err();
        assert_eq!(
            error.to_string(),
            "73 MiB does not fit: volume group herd has 72 MiB free"
        );
        assert!(error.is_permanent());
    }

    #[test]
    fn command_lines_are_the_seeds() {
        assert_eq!(
            lvcreate("herd", "small-1-disk", 4096).to_string(),
            "lvcreate --yes --wipesignatures y -L 4096m -n small-1-disk --addtag herd --addtag herd_incomplete herd"
        );
        assert_eq!(
            lvextend("herd", "small-1-disk", 8192).to_string(),
            "lvextend -L 8192m herd/small-1-disk"
        );
        assert_eq!(
            lvremove("herd", "small-1-disk").to_string(),
            "lvremove --yes herd/small-1-disk"
        );
        assert_eq!(
            lvchange_complete("herd", "a").to_string(),
            "lvchange --deltag herd_incomplete herd/a"
        );
        assert_eq!(
            lvs("herd").to_string(),
            "lvs --reportformat json --units b --nosuffix -o lv_name,vg_name,lv_size,lv_tags,lv_path herd"
        );
        assert_eq!(
            copy_onto(
                "/s/base.raw".as_ref(),
                VolumeFormat::Raw,
                "/dev/herd/a".as_ref()
            )
            .to_string(),
            "qemu-img convert -n -q -f raw -O raw /s/base.raw /dev/herd/a"
        );
    }

    #[test]
    fn lvm_reserved_names_are_refused() {
        // The message LVM itself gives: fixtures/README.md.
        for bad in ["snapshot-1", "pvmove", "a_tmeta", "-a", ""] {
            assert!(lv_name_problem(bad).is_some(), "{bad:?}");
        }
        assert_eq!(lv_name_problem("small-1-disk"), None);
        let backend = LvmBackend::new("herd", Runner::from_env()).unwrap();
        let error = backend.check_name("snapshot-1").unwrap_err();
        assert_eq!(error.reason(), "InvalidName");
        assert!(LvmBackend::new("../x", Runner::from_env()).is_err());
    }
}
