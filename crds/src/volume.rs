//! `Volume`: a disk created by the storage role, optionally built from an image and exported.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::object::{Object, Spec};
use crate::validation::{FieldErrors, FieldPath, Validate};
use crate::virtual_machine::check_text;

/// A volume object.
pub type Volume = Object<VolumeSpec>;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeSpec {
    /// Size in MiB.
    #[serde(rename = "sizeMiB")]
    pub size_mib: u64,
    #[serde(default)]
    pub backend: VolumeBackend,
    /// Image format for the `file` backend.
    #[serde(default)]
    pub format: VolumeFormat,
    /// What to build into the volume; empty when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Image>,
    /// How other hosts reach it; absent means local only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<Export>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum VolumeBackend {
    Lvm,
    #[default]
    File,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum VolumeFormat {
    Raw,
    #[default]
    Qcow2,
}

/// A guest image built into the volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Image {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debootstrap: Option<Debootstrap>,
    /// Host name written into the guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Format swap instead of a filesystem.
    #[serde(default)]
    pub swap: bool,
    /// Copy a disk image from the storage host's library instead of building one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub library: Option<LibraryImage>,
}

/// A disk image file in the storage host's library directory (`<storage-dir>/library/`), put
/// there by its operator. Named, never a path: a Volume's author cannot reach other files of
/// the host (a path would let anyone who may write a Volume export, say, `/etc/shadow`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LibraryImage {
    /// File name in the library, such as `debian-12.qcow2`.
    pub name: String,
    /// The file's format, as written (never guessed from its contents).
    #[serde(default = "raw")]
    pub format: VolumeFormat,
}

fn raw() -> VolumeFormat {
    VolumeFormat::Raw
}

/// Whether `name` can be a file name in the library: letters, digits, `.`, `_`, `-`, not
/// starting with `.` (so neither `..` nor hidden files), at most 255 bytes.
pub fn is_library_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Debootstrap {
    /// Debian suite, such as `bookworm`.
    pub suite: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
}

/// Network export of the volume.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Export {
    #[serde(default)]
    pub protocol: ExportProtocol,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportProtocol {
    #[default]
    Nbd,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum VolumePhase {
    #[default]
    Pending,
    Creating,
    Ready,
    Failed,
    Deleting,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeStatus {
    #[serde(default)]
    pub phase: VolumePhase,
    /// Path of the backing file or device on the storage host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Where to reach the export, such as `nbd://10.0.0.1:10809/small-1-disk`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl Spec for VolumeSpec {
    const KIND: &'static str = "Volume";
    const PLURAL: &'static str = "volumes";
    type Status = VolumeStatus;
}

fn is_hostname(value: &str) -> bool {
    value.len() <= 253 && value.split('.').all(crate::names::is_dns_label)
}

fn is_package_name(value: &str) -> bool {
    let bytes = value.as_bytes();
    bytes.len() >= 2
        && bytes[0].is_ascii_alphanumeric()
        && bytes.iter().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.')
        })
}

impl Validate for VolumeSpec {
    fn validate_into(&self, path: &FieldPath, errors: &mut FieldErrors) {
        errors.at_least(self.size_mib, 1, path.child("sizeMiB"));
        errors.at_most(self.size_mib, 64 * 1024 * 1024, path.child("sizeMiB"));
        if self.backend == VolumeBackend::Lvm && self.format == VolumeFormat::Qcow2 {
            errors.push(path.child("format"), "must be raw for the lvm backend");
        }
        let Some(image) = &self.image else { return };
        let at = path.child("image");
        if let Some(hostname) = &image.hostname {
            check_text(hostname, at.child("hostname"), errors);
            errors.check(
                is_hostname(hostname),
                at.child("hostname"),
                "must be a DNS host name",
            );
        }
        if let Some(library) = &image.library {
            let at = at.child("library");
            errors.check(
                is_library_name(&library.name),
                at.child("name"),
                "must be a file name in the storage host's library (letters, digits, '.', '_', \
                 '-'; no '/', not starting with '.')",
            );
            errors.check(
                image.debootstrap.is_none() && !image.swap && image.hostname.is_none(),
                at.clone(),
                "a library image is copied as it is: remove debootstrap, swap and hostname",
            );
        }
        if let Some(debootstrap) = &image.debootstrap {
            let at = at.child("debootstrap");
            let suite_ok = crate::names::is_dns_label(&debootstrap.suite);
            errors.check(
                suite_ok,
                at.child("suite"),
                "must be a Debian suite such as bookworm",
            );
            for (index, package) in debootstrap.packages.iter().enumerate() {
                let ok = is_package_name(package);
                errors.check(
                    ok,
                    at.child("packages").index(index),
                    "must be a Debian package name",
                );
            }
            errors.check(
                !image.swap,
                at.clone(),
                "a swap volume cannot hold a debootstrap image",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_names_cannot_leave_the_library() {
        for good in ["spin.raw", "debian-12_generic.qcow2", "a"] {
            assert!(is_library_name(good), "{good:?}");
        }
        let long = "a".repeat(256);
        for bad in [
            "",
            "..",
            ".hidden",
            "../x",
            "a/b",
            "/etc/shadow",
            "a b",
            "é",
            &long,
        ] {
            assert!(!is_library_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_library_image_is_raw_unless_it_says_otherwise() {
        let spec: VolumeSpec =
            crate::yaml::from_str("sizeMiB: 8\nimage: {library: {name: spin.raw}}").unwrap();
        let library = spec.image.unwrap().library.unwrap();
        assert_eq!(library.format, VolumeFormat::Raw);
    }
}
