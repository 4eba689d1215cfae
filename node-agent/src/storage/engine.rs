//! `StorageEngine`: what the storage host does for one Volume, without etcd — observe it,
//! plan (`reconcile.rs`), carry the plan out, and report the outcome for its status.
//!
//! Creation never leaves a half-made volume behind: bad input (a name the backend cannot use, a
//! size that does not fit, an unknown suite, an inconsistent image) is refused before anything
//! is made, and a volume that fails while being filled is removed again (`backend.rs`).
//!
//! Layout of the storage directory: `volumes/` (the `file` backend), `images/` (base images),
//! `exports/` (records of running `qemu-nbd` servers), and short-lived `.herd-scratch-*`
//! directories.

use std::path::{Path, PathBuf};

use herd_crds::Resource;
use herd_crds::volume::{Image, LibraryImage, VolumeBackend};
use herd_crds::{Validate, VirtualMachine, Volume};

use super::StorageSettings;
use super::backend::{Backend, Backing, Source};
use super::error::StorageError;
use super::export::Exporter;
use super::file::FileBackend;
use super::image::ImageCache;
use super::library::Library;
use super::lvm::LvmBackend;
use super::patch;
use super::reconcile::{Observed, Outcome, Step, plan};
use crate::xl::runner::Runner;

/// The storage host's volumes, images and exports.
#[derive(Debug)]
pub struct StorageEngine {
    dir: PathBuf,
    file: FileBackend,
    lvm: Option<LvmBackend>,
    images: ImageCache,
    library: Library,
    exporter: Exporter,
    runner: Runner,
}

/// What a volume is built from.
enum Content<'a> {
    Empty,
    Swap,
    Debian {
        suite: &'a str,
        packages: &'a [String],
        hostname: String,
    },
    Library(&'a LibraryImage),
}

/// The host name a volume's guest gets: the image's, else the owning VM's, else the volume's.
pub fn guest_hostname(volume: &Volume) -> String {
    let image_name = volume.spec.image.as_ref().and_then(|i| i.hostname.clone());
    let owner = volume
        .metadata
        .owner_references
        .iter()
        .find(|o| o.kind == VirtualMachine::KIND)
        .map(|o| o.name.clone());
    image_name
        .or(owner)
        .unwrap_or_else(|| volume.metadata.name.clone())
}

fn content(volume: &Volume) -> Result<Content<'_>, StorageError> {
    let Some(image) = &volume.spec.image else {
        return Ok(Content::Empty);
    };
    match image {
        Image {
            library: Some(library),
            debootstrap: None,
            swap: false,
            hostname: None,
        } => Ok(Content::Library(library)),
        Image {
            library: Some(_), ..
        } => Err(StorageError::InvalidImage(
            "a library image is copied as it is: remove debootstrap, swap and hostname".into(),
        )),
        Image {
            debootstrap: Some(d),
            swap: false,
            ..
        } => Ok(Content::Debian {
            suite: &d.suite,
            packages: &d.packages,
            hostname: guest_hostname(volume),
        }),
        Image {
            debootstrap: None,
            swap: true,
            hostname: None,
            ..
        } => Ok(Content::Swap),
        Image { swap: true, .. } => Err(StorageError::InvalidImage(
            "a swap volume has neither debootstrap nor hostname".into(),
        )),
        Image {
            hostname: Some(_), ..
        } => Err(StorageError::InvalidImage(
            "image.hostname needs image.debootstrap: there is no system to name".into(),
        )),
        Image { .. } => Ok(Content::Empty),
    }
}

impl StorageEngine {
    /// The engine for `settings` (creates the directories it needs).
    pub fn new(settings: &StorageSettings) -> Result<Self, StorageError> {
        let runner = Runner::from_env();
        let dir = &settings.dir;
        std::fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
        let dir = std::path::absolute(dir).map_err(|e| StorageError::io(dir, e))?;
        let lvm = match &settings.volume_group {
            Some(vg) => Some(LvmBackend::new(vg, runner.clone())?),
            None => None,
        };
        Ok(Self {
            file: FileBackend::new(dir.join("volumes"), runner.clone())?,
            library: Library::new(dir.join("library"), runner.clone())?,
            images: ImageCache::new(
                dir.join("images"),
                runner.clone(),
                settings.debian_mirror.clone(),
            )?,
            exporter: Exporter::new(
                dir.join("exports"),
                settings.nbd_address,
                settings.nbd_ports.clone(),
                runner.clone(),
            )?,
            dir,
            lvm,
            runner,
        })
    }

    pub fn file_backend(&self) -> &FileBackend {
        &self.file
    }

    pub fn images(&self) -> &ImageCache {
        &self.images
    }

    pub fn library(&self) -> &Library {
        &self.library
    }

    pub fn exporter(&self) -> &Exporter {
        &self.exporter
    }

    fn lvm(&self) -> Result<&LvmBackend, StorageError> {
        self.lvm
            .as_ref()
            .ok_or_else(|| StorageError::BackendUnavailable {
                backend: "lvm",
                why: "this storage agent has no volume group (start it with --storage-backend-vg)"
                    .into(),
            })
    }

    /// Observes, plans, acts and observes again: the outcome the status is written from.
    pub async fn reconcile(&self, volume: &Volume) -> Outcome {
        let deleting = volume.metadata.deletion_timestamp.is_some();
        let mut outcome = Outcome {
            wants_export: volume.spec.export.is_some(),
            deleting,
            ..Outcome::default()
        };
        if !deleting && let Err(error) = self.check_name(volume) {
            outcome.error = Some((error.reason(), error.to_string()));
            outcome.permanent = true;
            return outcome;
        }
        let invalid = volume.validate().first().map(ToString::to_string);
        if let (Some(problem), false) = (invalid, deleting) {
            outcome.error = Some(("InvalidSpec", problem));
            outcome.permanent = true;
            outcome.observed = self.observe(volume).await.unwrap_or_default();
            return outcome;
        }
        let result = match self.observe(volume).await {
            Ok(observed) => {
                let plan = plan(&volume.spec, deleting, &observed);
                outcome.notes = plan.notes;
                self.carry_out(volume, &observed, &plan.steps).await
            }
            Err(error) => Err(error),
        };
        if let Err(error) = result {
            tracing::warn!(volume = %volume.metadata.name, %error, "volume step failed");
            outcome.error = Some((error.reason(), error.to_string()));
            outcome.permanent = error.is_permanent();
        }
        match self.observe(volume).await {
            Ok(observed) => outcome.observed = observed,
            Err(error) if outcome.error.is_none() => {
                outcome.error = Some((error.reason(), error.to_string()));
            }
            Err(_) => {}
        }
        outcome
    }

    /// Refuses a name the spec's backend cannot use.
    fn check_name(&self, volume: &Volume) -> Result<(), StorageError> {
        let name = volume.metadata.name.as_str();
        match volume.spec.backend {
            VolumeBackend::File => self.file.check_name(name),
            VolumeBackend::Lvm => self.lvm()?.check_name(name),
        }
    }

    /// The volume's backing in each backend and its export.
    pub async fn observe(&self, volume: &Volume) -> Result<Observed, StorageError> {
        let name = volume.metadata.name.as_str();
        if !herd_crds::names::is_dns_label(name) {
            return Ok(Observed::default()); // nothing of this name can exist
        }
        let in_file = self.file.inspect(name).await?;
        let in_lvm = match &self.lvm {
            Some(lvm) => lvm.inspect(name).await,
            None => Ok(None),
        };
        let (backing, elsewhere) = match volume.spec.backend {
            VolumeBackend::File => (
                in_file,
                in_lvm.unwrap_or_else(|error| {
                    tracing::warn!(%error, "cannot list logical volumes");
                    None
                }),
            ),
            VolumeBackend::Lvm => (in_lvm?, in_file),
        };
        Ok(Observed {
            backing,
            elsewhere,
            export: self.exporter.running(name),
        })
    }

    async fn carry_out(
        &self,
        volume: &Volume,
        observed: &Observed,
        steps: &[Step],
    ) -> Result<(), StorageError> {
        let name = volume.metadata.name.as_str();
        let mut backing = observed.effective().cloned();
        for step in steps {
            match step {
                Step::Discard => self.remove(name).await?,
                Step::Create => backing = Some(self.create(volume).await?),
                Step::Grow { to_mib } => {
                    let current = backing.as_ref().expect("grow follows an observed volume");
                    self.grow(current, *to_mib).await?;
                }
                Step::Export => {
                    let current = backing.as_ref().expect("export follows a volume");
                    self.exporter
                        .ensure(name, &current.path, current.format)
                        .await?;
                }
                Step::Unexport => self.exporter.stop(name).await?,
                Step::Remove => self.remove(name).await?,
            }
        }
        Ok(())
    }

    async fn grow(&self, backing: &Backing, to_mib: u64) -> Result<(), StorageError> {
        match backing.backend {
            VolumeBackend::File => {
                self.file.check_space(to_mib - backing.size_mib()).await?;
                self.file.grow(backing, to_mib).await
            }
            VolumeBackend::Lvm => self.lvm()?.grow(backing, to_mib).await,
        }
    }

    /// Stops the export of `name` and removes it from every backend.
    pub async fn remove(&self, name: &str) -> Result<(), StorageError> {
        self.exporter.stop(name).await?;
        if herd_crds::names::is_dns_label(name) {
            self.file.remove(name).await?;
        }
        if let Some(lvm) = &self.lvm {
            lvm.remove(name).await?;
        }
        Ok(())
    }

    /// Creates and fills `volume` in the backend its spec names.
    pub async fn create(&self, volume: &Volume) -> Result<Backing, StorageError> {
        match volume.spec.backend {
            VolumeBackend::File => self.create_on(&self.file, volume).await,
            VolumeBackend::Lvm => self.create_on(self.lvm()?, volume).await,
        }
    }

    async fn create_on<B: Backend>(
        &self,
        backend: &B,
        volume: &Volume,
    ) -> Result<Backing, StorageError> {
        let (name, spec) = (volume.metadata.name.as_str(), &volume.spec);
        backend.check_name(name)?;
        let content = content(volume)?;
        backend.check_space(spec.size_mib).await?;
        let library = match &content {
            Content::Library(image) => Some(self.library.open(image).await?),
            _ => None,
        };
        if let Some(file) = &library
            && spec.size_mib < file.size_mib
        {
            return Err(StorageError::TooSmall {
                what: format!("library {}", file.path.display()),
                needed_mib: file.size_mib,
                size_mib: spec.size_mib,
            });
        }
        let (base, patches) = match &content {
            Content::Debian {
                suite, packages, ..
            } => {
                let base = self.images.ensure(suite, packages).await?;
                if spec.size_mib < base.size_mib {
                    return Err(StorageError::TooSmall {
                        what: base.describe(),
                        needed_mib: base.size_mib,
                        size_mib: spec.size_mib,
                    });
                }
                (Some(base), Vec::new())
            }
            Content::Swap => (
                None,
                vec![patch::swap_patch(&self.runner, spec.size_mib, &self.dir).await?],
            ),
            Content::Empty | Content::Library(_) => (None, Vec::new()),
        };
        let source = match (&base, &library) {
            (Some(base), _) => Source::Base(&base.path),
            (None, Some(file)) => Source::Copy(&file.path, file.format),
            (None, None) => Source::Empty,
        };
        let staged = backend
            .prepare(name, spec.format, spec.size_mib, source)
            .await?;
        let filled = async {
            let mut patches = patches;
            if let (Some(base), Content::Debian { hostname, .. }) = (&base, &content) {
                patches = patch::guest_patches(&self.runner, base, hostname, &self.dir).await?;
            }
            patch::apply(&self.runner, &staged, &patches, &self.dir).await?;
            backend.commit(name).await
        };
        match filled.await {
            Ok(backing) => {
                tracing::info!(volume = %name, path = %backing.path.display(), "volume created");
                Ok(backing)
            }
            Err(error) => {
                backend.remove(name).await?;
                Err(error)
            }
        }
    }

    /// The storage directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use herd_crds::meta::OwnerReference;
    use herd_crds::volume::{Debootstrap, VolumeSpec};

    use super::*;

    fn volume(image: Option<Image>) -> Volume {
        let spec = VolumeSpec {
            size_mib: 64,
            backend: VolumeBackend::File,
            format: Default::default(),
            image,
            export: None,
        };
        Volume::new("small-1-disk", spec)
    }

    fn debian(hostname: Option<&str>) -> Image {
        Image {
            debootstrap: Some(Debootstrap {
                suite: "bookworm".into(),
                packages: vec![],
            }),
            hostname: hostname.map(str::to_owned),
            swap: false,
            library: None,
        }
    }

    #[test]
    fn the_hostname_is_the_images_then_the_owners_then_the_volumes() {
        let mut volume = volume(Some(debian(None)));
        assert_eq!(guest_hostname(&volume), "small-1-disk");
        volume.metadata.owner_references.push(OwnerReference {
            kind: "VirtualMachine".into(),
            name: "small-1".into(),
            uid: None,
        });
        assert_eq!(guest_hostname(&volume), "small-1");
        volume.spec.image = Some(debian(Some("web-1")));
        assert_eq!(guest_hostname(&volume), "web-1");
    }

    #[test]
    fn inconsistent_images_are_refused() {
        let only_hostname = Image {
            debootstrap: None,
            hostname: Some("x".into()),
            swap: false,
            library: None,
        };
        assert_eq!(
            content(&volume(Some(only_hostname)))
                .err()
                .unwrap()
                .reason(),
            "InvalidImage"
        );
        let swap = Image {
            debootstrap: None,
            hostname: None,
            swap: true,
            library: None,
        };
        assert!(matches!(content(&volume(Some(swap))), Ok(Content::Swap)));
        let library = LibraryImage {
            name: "spin.raw".into(),
            format: herd_crds::volume::VolumeFormat::Raw,
        };
        let named = Image {
            debootstrap: None,
            hostname: Some("x".into()),
            swap: false,
            library: Some(library.clone()),
        };
        assert_eq!(
            content(&volume(Some(named))).err().unwrap().reason(),
            "InvalidImage",
            "a copied image has no system herd would name"
        );
        let copied = Image {
            hostname: None,
            library: Some(library),
            ..debian(None)
        };
        assert_eq!(
            content(&volume(Some(copied))).err().unwrap().reason(),
            "InvalidImage",
            "a library image and debootstrap at once"
        );
        assert!(matches!(content(&volume(None)), Ok(Content::Empty)));
    }
}
