//! Base images: a Debian system built once per suite and package set, then cloned per VM.
//!
//! Building one (as root, which debootstrap needs for its chroot):
//!
//! 1. `debootstrap --include=PACKAGES SUITE STAGING MIRROR` from the host's Debian mirror
//!    (`mirror.rs`) into a staging directory;
//! 2. the shared configuration (`guest_files.rs`): fstab, network, sshd drop-in, resolv.conf,
//!    kernel interface names; the host keys the openssh-server package generated are removed
//!    (every clone gets its own) and each per-VM file becomes a placeholder *slot*;
//! 3. `mkfs.ext4 -d STAGING` fills a new raw ext4 image from the directory (no loop mount;
//!    e2fsprogs ≥ 1.43, Debian 12 has 1.47), sized after the tree with room to spare — the guest
//!    grows it to its volume at boot;
//! 4. `debugfs -R "blocks /etc/hostname"` (and so on) finds the one data block of each slot, and
//!    the builder reads the placeholder back at that offset to prove the mapping.
//!
//! The result is `<storage dir>/images/<suite>-<hash of the sorted packages>/base.raw` with
//! `base.json` describing it. A build happens in `….partial` and is renamed when complete, so a
//! crash leaves nothing that looks like a base; leftovers are removed at the next build.
//! Builds of one key are serialised; different keys build in parallel.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::backend::MIB;
use super::error::StorageError;
use super::guest_files::{self, BLOCK_SIZE, ROOT_LABEL, Slot};
use super::mirror;
use super::staging;
use crate::xl::runner::{CommandLine, RunError, Runner};

/// How long debootstrap may take (it downloads a few hundred MiB).
const DEBOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(3600);
/// How long `mkfs.ext4 -d` may take.
const MKFS_TIMEOUT: Duration = Duration::from_secs(1800);
const QUICK: Duration = Duration::from_secs(120);
/// Where debootstrap keeps its per-suite scripts.
const SCRIPTS: &str = "/usr/share/debootstrap/scripts";

/// A per-VM slot of a base image and where its data block is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlacedSlot {
    #[serde(flatten)]
    pub slot: Slot,
    /// Byte offset of the slot's data in the image.
    pub offset: u64,
}

/// A built base image (`base.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BaseImage {
    pub suite: String,
    pub packages: Vec<String>,
    pub mirror: String,
    /// The raw ext4 image.
    pub path: PathBuf,
    #[serde(rename = "sizeMiB")]
    pub size_mib: u64,
    pub slots: Vec<PlacedSlot>,
    pub built_at: DateTime<Utc>,
    pub build_seconds: u64,
}

impl BaseImage {
    /// `bookworm (openssh-server, nginx)`, for messages.
    pub fn describe(&self) -> String {
        describe(&self.suite, &self.packages)
    }
}

fn describe(suite: &str, packages: &[String]) -> String {
    if packages.is_empty() {
        suite.to_owned()
    } else {
        format!("{suite} ({})", packages.join(", "))
    }
}

/// What a base image is cached by: the suite and the sorted, de-duplicated packages.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BaseKey {
    pub suite: String,
    pub packages: Vec<String>,
}

impl BaseKey {
    pub fn new(suite: &str, packages: &[String]) -> Self {
        let mut packages = packages.to_vec();
        packages.sort();
        packages.dedup();
        Self {
            suite: suite.to_owned(),
            packages,
        }
    }

    /// The cache directory name: `<suite>-<16 hex digits of FNV-1a over the key>`.
    pub fn dir_name(&self) -> String {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let text =
            std::iter::once(self.suite.as_str()).chain(self.packages.iter().map(String::as_str));
        for byte in text.flat_map(|part| part.bytes().chain([0])) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{}-{hash:016x}", self.suite)
    }
}

/// Whether `name` is a Debian package name debootstrap can be given.
pub fn is_package_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.len() >= 2
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(b))
}

/// The debootstrap command line.
pub fn debootstrap(key: &BaseKey, root: &Path, mirror: &str) -> CommandLine {
    let mut args = vec!["--components=main".to_owned()];
    if !key.packages.is_empty() {
        args.push(format!("--include={}", key.packages.join(",")));
    }
    args.extend([
        key.suite.clone(),
        root.display().to_string(),
        mirror.to_owned(),
    ]);
    CommandLine::new("debootstrap", args)
}

/// The `mkfs.ext4 -d` command line: 4 KiB blocks (one per slot), no inline data (a slot's
/// bytes must sit in a data block), labelled for fstab.
pub fn mkfs(root: &Path, image: &Path, size_mib: u64) -> CommandLine {
    CommandLine::new(
        "mkfs.ext4",
        [
            "-q",
            "-F",
            "-T",
            "default",
            "-b",
            &BLOCK_SIZE.to_string(),
            "-O",
            "^inline_data",
            "-L",
            ROOT_LABEL,
            "-d",
            &root.display().to_string(),
            &image.display().to_string(),
            &format!("{size_mib}M"),
        ],
    )
}

/// Filesystem size for a tree of `bytes` and `inodes`: a quarter spare plus 128 MiB for the
/// journal and metadata, and at least 24 KiB per inode (ext4's default ratio is one inode per
/// 16 KiB), rounded up to 64 MiB.
pub fn filesystem_mib(bytes: u64, inodes: u64) -> u64 {
    let wanted = (bytes + bytes / 4 + 128 * MIB).max(inodes * 24 * 1024);
    wanted.div_ceil(64 * MIB) * 64
}

/// Parses `debugfs -R "blocks PATH"`: the file's data blocks.
pub fn parse_blocks(output: &str) -> Vec<u64> {
    output
        .split_whitespace()
        .map_while(|word| word.parse().ok())
        .collect()
}

/// Refuses a suite or package name debootstrap could not be given.
fn check_names(key: &BaseKey) -> Result<(), StorageError> {
    if !herd_crds::names::is_dns_label(&key.suite) {
        return Err(StorageError::UnknownSuite {
            suite: key.suite.clone(),
        });
    }
    match key.packages.iter().find(|p| !is_package_name(p)) {
        Some(bad) => Err(StorageError::InvalidImage(format!(
            "{bad:?} is not a Debian package name"
        ))),
        None => Ok(()),
    }
}

/// Maps debootstrap's complaints to what the Volume's author must fix.
fn debootstrap_error(key: &BaseKey, error: RunError) -> StorageError {
    let stderr = error.stderr().unwrap_or_default().to_owned();
    if let Some(rest) = stderr.split("Couldn't find these debs:").nth(1) {
        let packages = rest.lines().next().unwrap_or_default().trim().to_owned();
        return StorageError::UnknownPackages { packages };
    }
    if stderr.contains("Failed getting release file") || stderr.contains("No such script") {
        return StorageError::UnknownSuite {
            suite: key.suite.clone(),
        };
    }
    StorageError::ImageBuild {
        suite: key.suite.clone(),
        message: error.to_string(),
    }
}

/// Where a base image's root tree comes from.
#[derive(Debug)]
enum TreeSource<'a> {
    /// debootstrap from this mirror.
    Debootstrap(&'a str),
    /// A tree that is already there.
    Tree(&'a Path),
}

/// The base image cache in one directory.
#[derive(Debug)]
pub struct ImageCache {
    dir: PathBuf,
    runner: Runner,
    mirror: Option<String>,
    building: Mutex<HashMap<BaseKey, Arc<tokio::sync::Mutex<()>>>>,
}

impl ImageCache {
    /// A cache in `dir`; `mirror` overrides the host's apt configuration.
    pub fn new(
        dir: impl Into<PathBuf>,
        runner: Runner,
        mirror: Option<String>,
    ) -> Result<Self, StorageError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| StorageError::io(&dir, e))?;
        let dir = std::path::absolute(&dir).map_err(|e| StorageError::io(&dir, e))?;
        Ok(Self {
            dir,
            runner,
            mirror,
            building: Mutex::new(HashMap::new()),
        })
    }

    /// The base image for `suite` and `packages`, built if it is not cached.
    pub async fn ensure(
        &self,
        suite: &str,
        packages: &[String],
    ) -> Result<BaseImage, StorageError> {
        let key = BaseKey::new(suite, packages);
        check_names(&key)?;
        let lock = self.lock(&key);
        let _building = lock.lock().await;
        if let Some(base) = self.cached(&key)? {
            return Ok(base);
        }
        if !Path::new(SCRIPTS).join(&key.suite).exists() {
            return Err(StorageError::UnknownSuite { suite: key.suite });
        }
        let mirror = self.mirror()?;
        self.build(&key, TreeSource::Debootstrap(&mirror)).await
    }

    /// Makes (or remakes) the base image for `suite` and `packages` from a root tree prepared
    /// another way than by debootstrap here — a tree from another build host, or a test's.
    /// The tree is configured in place and kept.
    pub async fn import_tree(
        &self,
        suite: &str,
        packages: &[String],
        tree: &Path,
    ) -> Result<BaseImage, StorageError> {
        let key = BaseKey::new(suite, packages);
        let lock = self.lock(&key);
        let _building = lock.lock().await;
        self.build(&key, TreeSource::Tree(tree)).await
    }

    fn lock(&self, key: &BaseKey) -> Arc<tokio::sync::Mutex<()>> {
        let mut building = self.building.lock().expect("image lock");
        building.entry(key.clone()).or_default().clone()
    }

    /// The cached base image for `key`, if one was built.
    pub fn cached(&self, key: &BaseKey) -> Result<Option<BaseImage>, StorageError> {
        let manifest = self.dir.join(key.dir_name()).join("base.json");
        let text = match std::fs::read_to_string(&manifest) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io(&manifest, e)),
        };
        let base: BaseImage = serde_json::from_str(&text).map_err(|e| StorageError::Parse {
            what: manifest.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(base.path.exists().then_some(base))
    }

    fn mirror(&self) -> Result<String, StorageError> {
        let mirror = self
            .mirror
            .clone()
            .or_else(|| mirror::host_mirror(Path::new("/etc/apt")))
            .ok_or_else(|| StorageError::BackendUnavailable {
                backend: "debootstrap",
                why: "no Debian mirror in /etc/apt/sources.list(.d); pass --debian-mirror".into(),
            })?;
        if !mirror::is_mirror_uri(&mirror) {
            return Err(StorageError::BackendUnavailable {
                backend: "debootstrap",
                why: format!("{mirror:?} is not an http(s):// or file:/// mirror URL"),
            });
        }
        Ok(mirror)
    }

    async fn build(&self, key: &BaseKey, from: TreeSource<'_>) -> Result<BaseImage, StorageError> {
        let name = key.dir_name();
        let (work, done) = (
            self.dir.join(format!("{name}.partial")),
            self.dir.join(&name),
        );
        staging::remove_tree(&self.runner, &work).await?;
        staging::remove_tree(&self.runner, &done).await?;
        std::fs::create_dir_all(&work).map_err(|e| StorageError::io(&work, e))?;
        tracing::info!(image = %describe(&key.suite, &key.packages), ?from, "building a base image");
        let started = Instant::now();
        let built = match from {
            TreeSource::Debootstrap(mirror) => self.bootstrap(key, &work, mirror).await,
            TreeSource::Tree(tree) => {
                let source = format!("file://{}", tree.display());
                self.image_from_tree(key, tree, &work, &source).await
            }
        };
        let result = built.and_then(|mut base| {
            base.build_seconds = started.elapsed().as_secs();
            base.path = done.join("base.raw");
            self.finish(&work, &done, &base)
        });
        if result.is_err() {
            staging::remove_tree(&self.runner, &work).await?;
        }
        let base = result?;
        tracing::info!(image = %base.describe(), seconds = base.build_seconds, "base image built");
        Ok(base)
    }

    /// Writes `base.json` into `work` and renames it to `done`.
    fn finish(
        &self,
        work: &Path,
        done: &Path,
        base: &BaseImage,
    ) -> Result<BaseImage, StorageError> {
        let json = serde_json::to_string_pretty(base).expect("a base image serializes");
        let manifest = work.join("base.json");
        std::fs::write(&manifest, json).map_err(|e| StorageError::io(&manifest, e))?;
        std::fs::rename(work, done).map_err(|e| StorageError::io(work, e))?;
        Ok(base.clone())
    }

    /// debootstrap into `work/root`, then the image from that tree (which is removed after).
    async fn bootstrap(
        &self,
        key: &BaseKey,
        work: &Path,
        mirror: &str,
    ) -> Result<BaseImage, StorageError> {
        let root = work.join("root");
        self.runner
            .run(&debootstrap(key, &root, mirror), DEBOOTSTRAP_TIMEOUT)
            .await
            .map_err(|error| debootstrap_error(key, error))?;
        let base = self.image_from_tree(key, &root, work, mirror).await?;
        staging::remove_tree(&self.runner, &root).await?;
        Ok(base)
    }

    /// Configures the tree at `root` (in place), makes `work/base.raw` from it and places the
    /// slots.
    async fn image_from_tree(
        &self,
        key: &BaseKey,
        root: &Path,
        work: &Path,
        source: &str,
    ) -> Result<BaseImage, StorageError> {
        let slots = self.configure(root).await?;
        let (bytes, inodes) = staging::usage(root)?;
        let size_mib = filesystem_mib(bytes, inodes);
        let image = work.join("base.raw");
        self.runner
            .run(&mkfs(root, &image, size_mib), MKFS_TIMEOUT)
            .await?;
        let slots = self.place(&key.suite, &image, slots).await?;
        Ok(BaseImage {
            suite: key.suite.clone(),
            packages: key.packages.clone(),
            mirror: source.to_owned(),
            path: image,
            size_mib,
            slots,
            built_at: Utc::now(),
            build_seconds: 0,
        })
    }

    /// Writes the shared configuration and the slot placeholders; returns the slots.
    async fn configure(&self, root: &Path) -> Result<Vec<Slot>, StorageError> {
        write_shared_files(root)?;
        // The downloaded packages: 50 MiB no guest needs.
        staging::remove_matching(root, "var/cache/apt/archives", "", ".deb")?;
        let mut slots = guest_files::text_slots();
        if std::fs::symlink_metadata(root.join("etc/ssh/sshd_config")).is_ok() {
            staging::remove_matching(root, "etc/ssh", "ssh_host_", "")?;
            let conf = guest_files::sshd_host_key_conf();
            let drop_in = "etc/ssh/sshd_config.d/herd.conf";
            staging::write_file(root, drop_in, conf.as_bytes(), 0o644)?;
            let scratch = root.parent().unwrap_or(root);
            let (private, public) = super::patch::ssh_key_sizes(&self.runner, scratch).await?;
            slots.extend(guest_files::ssh_slots(private, public));
        }
        for slot in &slots {
            staging::write_file(root, &slot.path, &guest_files::placeholder(slot), slot.mode)?;
        }
        Ok(slots)
    }

    /// Finds each slot's data block in `image` and checks the placeholder is there.
    async fn place(
        &self,
        suite: &str,
        image: &Path,
        slots: Vec<Slot>,
    ) -> Result<Vec<PlacedSlot>, StorageError> {
        let mut placed = Vec::with_capacity(slots.len());
        for slot in slots {
            let request = format!("blocks /{}", slot.path);
            let command =
                CommandLine::new("debugfs", ["-R", &request, &image.display().to_string()]);
            let output = self.runner.run(&command, QUICK).await?;
            let blocks = parse_blocks(&output.stdout);
            let [block] = blocks[..] else {
                return Err(StorageError::ImageBuild {
                    suite: suite.to_owned(),
                    message: format!(
                        "/{} has blocks {blocks:?}, not one: {}",
                        slot.path,
                        output.stderr.trim()
                    ),
                });
            };
            let offset = block * BLOCK_SIZE;
            let found = read_at(image, offset, slot.size)?;
            if found != guest_files::placeholder(&slot) {
                return Err(StorageError::ImageBuild {
                    suite: suite.to_owned(),
                    message: format!(
                        "block {block} does not hold the placeholder of /{}",
                        slot.path
                    ),
                });
            }
            placed.push(PlacedSlot { slot, offset });
        }
        Ok(placed)
    }
}

/// Writes the configuration every VM of a base image shares (`guest_files.rs`).
fn write_shared_files(root: &Path) -> Result<(), StorageError> {
    let files = [
        ("etc/fstab".to_owned(), guest_files::fstab()),
        (
            "etc/network/interfaces".to_owned(),
            guest_files::interfaces(),
        ),
        ("etc/resolv.conf".to_owned(), guest_files::resolv_conf()),
        (unit_path(guest_files::SWAP_UNIT), guest_files::swap_unit()),
        (
            unit_path(guest_files::BOOT_DONE_UNIT),
            guest_files::boot_done_unit(),
        ),
    ];
    for (path, text) in &files {
        staging::write_file(root, path, text.as_bytes(), 0o644)?;
    }
    // Kernel interface names: the first NIC is eth0.
    staging::symlink(root, "etc/systemd/network/99-default.link", "/dev/null")?;
    let swap = format!("/{}", unit_path(guest_files::SWAP_UNIT));
    staging::symlink(root, &guest_files::swap_unit_wants_link(), &swap)?;
    let boot_done = unit_path(guest_files::BOOT_DONE_UNIT);
    let wants = format!(
        "etc/systemd/system/multi-user.target.wants/{}",
        guest_files::BOOT_DONE_UNIT
    );
    staging::symlink(root, &wants, &format!("/{boot_done}"))
}

fn unit_path(unit: &str) -> String {
    format!("etc/systemd/system/{unit}")
}

/// `len` bytes of `path` at `offset`.
pub fn read_at(path: &Path, offset: u64, len: u64) -> Result<Vec<u8>, StorageError> {
    let mut file = std::fs::File::open(path).map_err(|e| StorageError::io(path, e))?;
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| StorageError::io(path, e))?;
    let mut data = vec![0; len as usize];
    file.read_exact(&mut data)
        .map_err(|e| StorageError::io(path, e))?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_key_ignores_package_order_and_repeats() {
        let a = BaseKey::new("bookworm", &["openssh-server".into(), "nginx".into()]);
        let b = BaseKey::new(
            "bookworm",
            &["nginx".into(), "openssh-server".into(), "nginx".into()],
        );
        assert_eq!(a, b);
        assert_eq!(a.dir_name(), b.dir_name());
        assert!(a.dir_name().starts_with("bookworm-"));
        assert_eq!(a.dir_name().len(), "bookworm-".len() + 16);
        let c = BaseKey::new("bookworm", &["openssh-server".into()]);
        assert_ne!(a.dir_name(), c.dir_name());
        // A package list is not confused with a suite: the parts are separated.
        assert_ne!(
            BaseKey::new("ab", &[]).dir_name()[3..],
            BaseKey::new("a", &["b".into()]).dir_name()[2..]
        );
    }

    #[test]
    fn command_lines() {
        let key = BaseKey::new("bookworm", &["openssh-server".into(), "curl".into()]);
        assert_eq!(
            debootstrap(
                &key,
                Path::new("/s/images/x.partial/root"),
                "http://deb.debian.org/debian"
            )
            .to_string(),
            "debootstrap --components=main --include=curl,openssh-server bookworm \
             /s/images/x.partial/root http://deb.debian.org/debian"
        );
        assert_eq!(
            mkfs(Path::new("/w/root"), Path::new("/w/base.raw"), 640).to_string(),
            "mkfs.ext4 -q -F -T default -b 4096 -O '^inline_data' -L herd-root -d /w/root /w/base.raw 640M"
        );
    }

    #[test]
    fn filesystems_leave_room_and_inodes() {
        assert_eq!(filesystem_mib(0, 0), 128);
        // 300 MiB of files: 375 + 128 = 503 → 512.
        assert_eq!(filesystem_mib(300 * MIB, 10_000), 512);
        // Many small files need inodes more than bytes.
        assert_eq!(filesystem_mib(MIB, 100_000), 2368);
    }

    #[test]
    fn debugfs_blocks_are_parsed() {
        assert_eq!(parse_blocks("2066 \n"), [2066]);
        assert_eq!(parse_blocks("10 11 12\n"), [10, 11, 12]);
        assert!(parse_blocks("").is_empty());
        assert!(parse_blocks("/etc/nope: File not found by ext2_lookup\n").is_empty());
    }

    #[test]
    fn debootstrap_failures_name_what_to_fix() {
        let key = BaseKey::new("bookworm", &[]);
        let failed = |stderr: &str| RunError::Failed {
            command: "debootstrap".into(),
            status: "status 1".into(),
            stderr: stderr.into(),
        };
        let error = debootstrap_error(&key, failed("E: Couldn't find these debs: nosuchpkg\n"));
        assert_eq!(error.reason(), "UnknownPackages");
        assert!(error.to_string().contains("nosuchpkg"), "{error}");
        let error = debootstrap_error(
            &key,
            failed("E: Failed getting release file http://x/dists/foo/Release"),
        );
        assert_eq!(error.reason(), "UnknownSuite");
        let error = debootstrap_error(&key, failed("W: Failure trying to run: chroot"));
        assert_eq!(error.reason(), "ImageBuildFailed");
        assert!(!error.is_permanent());
    }

    #[tokio::test]
    async fn unknown_suites_and_bad_packages_are_refused_before_anything_is_made() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ImageCache::new(dir.path(), Runner::from_env(), None).unwrap();
        let error = cache.ensure("nosuchsuite", &[]).await.unwrap_err();
        assert_eq!(error.reason(), "UnknownSuite");
        assert!(cache.ensure("../bookworm", &[]).await.is_err());
        let error = cache.ensure("bookworm", &["a b".into()]).await.unwrap_err();
        assert_eq!(error.reason(), "InvalidImage");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
