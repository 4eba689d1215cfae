//! The storage role against the real tools: `qemu-img`, `qemu-nbd`, `qemu-io`, `mkfs.ext4`,
//! `debugfs`, `e2fsck`, `mkswap`, `ssh-keygen` (packages `qemu-utils`, `e2fsprogs`,
//! `util-linux`, `openssh-client`), QEMU for the migration test (`qemu-system-x86`), and a real
//! etcd for the loop. Nothing is skipped: a missing tool fails the test and says what to install.
//!
//! The base image of the clone tests is made from a small prepared tree
//! (`ImageCache::import_tree`: the same configuration, `mkfs.ext4 -d` and slot placement as a
//! debootstrap build, without the download). The debootstrap build itself, booted to
//! multi-user, is the ignored test at the end (`scripts/storage-e2e.sh`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use herd_agent::hypervisor::{DomainState, Hypervisor, MigrationParams, MigrationProgress};
use herd_agent::qemu::{QemuConfig, QemuDriver};
use herd_agent::storage::reconcile::Outcome;
use herd_agent::storage::{self, StorageEngine, StorageSettings};
use herd_crds::assignment::{DiskSource, DomainDisk, DomainSpec};
use herd_crds::virtual_machine::Boot;
use herd_crds::volume::{VolumePhase, VolumeSpec, VolumeStatus};
use herd_crds::{Volume, condition::find_condition};
use herd_store::Store;
use herd_store::objects::DeleteOutcome;
use herd_store::txn::Precondition;
use herd_tests::{EtcdServer, unique_prefix};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const MIB: u64 = 1024 * 1024;

/// A storage directory for one test; kills every process that mentions it when dropped.
struct Lab {
    dir: tempfile::TempDir,
    ports: u16,
}

impl Lab {
    /// `ports` picks a range of 50 ports of its own, so tests running at once do not compete.
    fn new(ports: u16) -> Self {
        for (program, package) in [
            ("qemu-img", "qemu-utils"),
            ("qemu-nbd", "qemu-utils"),
            ("qemu-io", "qemu-utils"),
            ("mkfs.ext4", "e2fsprogs"),
            ("ssh-keygen", "openssh-client"),
        ] {
            require(program, package);
        }
        // Short path: QEMU's QMP socket paths must fit in 107 bytes.
        let dir = tempfile::Builder::new()
            .prefix("herd-storage-")
            .tempdir_in("/tmp")
            .expect("temporary directory");
        Self { dir, ports }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn settings(&self) -> StorageSettings {
        let mut settings =
            StorageSettings::new("storage-1", self.path().join("storage"), LOCALHOST);
        let first = 41000 + self.ports * 50;
        settings.nbd_ports = first..=first + 49;
        settings.resync = Duration::from_millis(500);
        settings
    }

    fn engine(&self) -> StorageEngine {
        StorageEngine::new(&self.settings()).expect("the storage engine starts")
    }

    fn volumes(&self) -> Vec<String> {
        list(&self.path().join("storage/volumes"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        kill_processes_mentioning(self.path());
    }
}

fn require(program: &str, package: &str) {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .any(|dir| dir.join(program).is_file());
    assert!(
        found,
        "{program} is not installed: run `apt-get install -y {package}`"
    );
}

fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// SIGKILLs every process whose command line mentions `path` (qemu-nbd, QEMU).
fn kill_processes_mentioning(path: &Path) {
    for pid in pids_mentioning(&path.to_string_lossy()) {
        // SAFETY: kill(2) on a pid read from /proc; no memory is involved.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

fn pids_mentioning(needle: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != std::process::id() as i32)
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, s)| s.trim_start().starts_with('Z'));
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            !zombie && String::from_utf8_lossy(&cmdline).contains(needle)
        })
        .collect()
}

fn volume(name: &str, spec: &str) -> Volume {
    let text = format!(
        "apiVersion: herd.dev/v1alpha1\nkind: Volume\nmetadata: {{name: {name}}}\nspec: {spec}\n"
    );
    herd_crds::yaml::from_str(&text).expect("a test volume parses")
}

/// `qemu-io -f FORMAT -c COMMAND TARGET` (a file or an `nbd://` endpoint): writes or checks a
/// pattern; a read that finds other bytes fails.
fn qemu_io(format: &str, command: &str, target: &str) -> Result<String> {
    run("qemu-io", &["-f", format, "-c", command, target])
}

/// Runs a program and returns its stdout; fails with its stderr.
fn run(program: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    ensure!(
        output.status.success() && !stdout.contains("failed"),
        "{program} {args:?}: {}{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(stdout)
}

/// The virtual size `qemu-img info` reads over NBD.
fn nbd_size(endpoint: &str) -> Result<u64> {
    let json = run("qemu-img", &["info", "--output=json", endpoint])?;
    let info: serde_json::Value = serde_json::from_str(&json)?;
    info["virtual-size"].as_u64().context("no virtual-size")
}

fn ready(outcome: &Outcome) -> Result<String> {
    if let Some((reason, message)) = &outcome.error {
        bail!("{reason}: {message}");
    }
    let export = outcome.observed.export.as_ref().context("not exported")?;
    Ok(export.endpoint())
}

/// A small root tree with what the image builder configures (an sshd, host keys to remove).
fn fake_debian_tree(root: &Path) -> Result<()> {
    for dir in [
        "etc/ssh/sshd_config.d",
        "etc/network",
        "var/cache/apt/archives",
        "usr/bin",
    ] {
        std::fs::create_dir_all(root.join(dir))?;
    }
    std::fs::write(
        root.join("etc/ssh/sshd_config"),
        "Include /etc/ssh/sshd_config.d/*.conf\n",
    )?;
    std::fs::write(
        root.join("etc/ssh/ssh_host_rsa_key"),
        "shared by every clone: must go\n",
    )?;
    std::fs::write(root.join("etc/hostname"), "build-host\n")?;
    std::fs::write(
        root.join("var/cache/apt/archives/bash_5.2_amd64.deb"),
        vec![1u8; 4096],
    )?;
    std::fs::write(root.join("usr/bin/true"), vec![0x7fu8; 100_000])?;
    Ok(())
}

/// Copies the volume out over NBD and reads `path` from its filesystem with debugfs, after
/// e2fsck found the filesystem clean.
fn read_guest_file(endpoint: &str, path: &str, scratch: &Path) -> Result<String> {
    let raw = scratch.join("copy.raw");
    run(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "raw",
            endpoint,
            &raw.display().to_string(),
        ],
    )?;
    let raw = raw.display().to_string();
    run("e2fsck", &["-f", "-n", &raw]).context("the patched filesystem is not clean")?;
    run("debugfs", &["-R", &format!("cat {path}"), &raw])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_are_created_exported_grown_and_read_back_over_nbd() -> Result<()> {
    let lab = Lab::new(0);
    let engine = lab.engine();

    // An empty qcow2 volume, exported: qemu-img reads it over NBD.
    let mut data = volume("data-1", "{sizeMiB: 64, export: {protocol: nbd}}");
    let endpoint = ready(&engine.reconcile(&data).await)?;
    assert!(endpoint.starts_with("nbd://127.0.0.1:"), "{endpoint}");
    assert!(endpoint.ends_with("/data-1"));
    assert_eq!(nbd_size(&endpoint)?, 64 * MIB);
    qemu_io("raw", "write -P 0x5a 1M 64k", &endpoint)?;

    // Growing restarts the export on the same port; what was written is still there.
    data.spec.size_mib = 128;
    let grown = engine.reconcile(&data).await;
    assert_eq!(ready(&grown)?, endpoint, "the endpoint survives a resize");
    assert_eq!(nbd_size(&endpoint)?, 128 * MIB);
    qemu_io("raw", "read -P 0x5a 1M 64k", &endpoint)?;

    // Shrinking is refused and said so; the volume stays as it is.
    data.spec.size_mib = 32;
    let refused = engine.reconcile(&data).await;
    assert_eq!(refused.notes[0].reason, "ShrinkRefused");
    assert_eq!(nbd_size(&ready(&refused)?)?, 128 * MIB);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_library_image_is_copied_into_the_volume_and_the_original_left_alone() -> Result<()> {
    let lab = Lab::new(8);
    let engine = lab.engine();
    let library = engine.library().dir().to_path_buf();

    // Not in the library yet: said so, and retried (the operator may still copy it in).
    let disk = volume(
        "guest-disk",
        "{sizeMiB: 8, export: {}, image: {library: {name: golden.qcow2, format: qcow2}}}",
    );
    let missing = engine.reconcile(&disk).await;
    let (reason, message) = missing.error.clone().expect("an error");
    assert_eq!(reason, "LibraryImageMissing", "{message}");
    assert!(message.contains("copy the file there"), "{message}");
    assert!(!missing.permanent);
    assert_eq!(lab.volumes(), Vec::<String>::new());

    // A qcow2 golden image with a pattern at 1 MiB: the volume is a copy of it, grown to 8 MiB.
    let golden = library.join("golden.qcow2");
    run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            golden.to_str().unwrap(),
            "2M",
        ],
    )?;
    qemu_io("qcow2", "write -P 0x7e 1M 64k", golden.to_str().unwrap())?;
    let endpoint = ready(&engine.reconcile(&disk).await)?;
    assert_eq!(nbd_size(&endpoint)?, 8 * MIB);
    qemu_io("raw", "read -P 0x7e 1M 64k", &endpoint)?;

    // The guest's writes stay in the volume; the library image is unchanged.
    qemu_io("raw", "write -P 0x11 1M 64k", &endpoint)?;
    qemu_io("qcow2", "read -P 0x7e 1M 64k", golden.to_str().unwrap())?;

    // Bigger than the volume: refused before anything is made.
    let small = volume(
        "small",
        "{sizeMiB: 1, image: {library: {name: golden.qcow2, format: qcow2}}}",
    );
    let outcome = engine.reconcile(&small).await;
    assert_eq!(outcome.error.expect("an error").0, "VolumeTooSmall");
    assert_eq!(lab.volumes(), vec!["guest-disk.qcow2".to_owned()]);

    // A link out of the library is not followed.
    std::os::unix::fs::symlink("/etc/passwd", library.join("passwd.raw"))?;
    let stolen = volume(
        "stolen",
        "{sizeMiB: 8, image: {library: {name: passwd.raw}}}",
    );
    let outcome = engine.reconcile(&stolen).await;
    assert_eq!(outcome.error.expect("an error").0, "InvalidImage");
    assert_eq!(lab.volumes(), vec!["guest-disk.qcow2".to_owned()]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_of_a_base_image_are_ready_at_once_each_its_vms_own_and_deleted() -> Result<()> {
    let lab = Lab::new(7);
    let engine = lab.engine();
    // A clone of a base image is ready in well under a second and is that VM's own.
    let tree = lab.path().join("tree");
    fake_debian_tree(&tree)?;
    let base = engine.images().import_tree("bookworm", &[], &tree).await?;
    assert_eq!(base.slots.len(), 5, "{:?}", base.slots);
    assert!(
        !tree.join("etc/ssh/ssh_host_rsa_key").exists(),
        "the build host's keys are gone"
    );
    let disk = volume(
        "small-1-disk",
        "{sizeMiB: 512, image: {debootstrap: {suite: bookworm}, hostname: small-1}, export: {}}",
    );
    let started = Instant::now();
    let cloned = engine.reconcile(&disk).await;
    let took = started.elapsed();
    let disk_endpoint = ready(&cloned)?;
    println!("clone of a {} MiB base: {took:?}", base.size_mib);
    assert!(took < Duration::from_millis(900), "the clone took {took:?}");
    let backing = cloned.observed.backing.clone().context("no backing")?;
    let info = run(
        "qemu-img",
        &[
            "info",
            "-U",
            "--output=json",
            &backing.path.display().to_string(),
        ],
    )?;
    assert!(
        info.contains(&base.path.display().to_string()),
        "not an overlay of the base: {info}"
    );
    assert_eq!(nbd_size(&disk_endpoint)?, 512 * MIB);

    let scratch = tempfile::tempdir_in(lab.path())?;
    let hostname = read_guest_file(&disk_endpoint, "/etc/hostname", scratch.path())?;
    assert!(hostname.starts_with("small-1\n"), "{hostname:?}");
    let hosts = read_guest_file(&disk_endpoint, "/etc/hosts", scratch.path())?;
    assert!(hosts.contains("127.0.1.1\tsmall-1\n"), "{hosts}");
    let key = read_guest_file(
        &disk_endpoint,
        "/etc/ssh/ssh_host_ed25519_key.pub",
        scratch.path(),
    )?;
    assert!(key.starts_with("ssh-ed25519 "), "{key}");
    let fstab = read_guest_file(&disk_endpoint, "/etc/fstab", scratch.path())?;
    assert!(fstab.contains("LABEL=herd-root"), "{fstab}");
    let unit = "/etc/systemd/system/herd-boot-done.service";
    let boot_done = read_guest_file(&disk_endpoint, unit, scratch.path())?;
    assert!(
        boot_done.contains("reached multi-user.target"),
        "{boot_done}"
    );
    let raw = scratch.path().join("copy.raw").display().to_string();
    let link = "stat /etc/systemd/system/multi-user.target.wants/herd-boot-done.service";
    let link = run("debugfs", &["-R", link, &raw])?;
    assert!(link.contains(&format!("link dest: \"{unit}\"")), "{link}");

    // A second clone gets its own host key and machine id.
    let other = volume(
        "small-2-disk",
        "{sizeMiB: 512, image: {debootstrap: {suite: bookworm}, hostname: small-2}, export: {}}",
    );
    let other_endpoint = ready(&engine.reconcile(&other).await)?;
    let other_key = read_guest_file(
        &other_endpoint,
        "/etc/ssh/ssh_host_ed25519_key.pub",
        scratch.path(),
    )?;
    assert_ne!(key, other_key, "two VMs share a host key");
    let ids = [&disk_endpoint, &other_endpoint]
        .map(|e| read_guest_file(e, "/etc/machine-id", scratch.path()));
    assert_ne!(ids[0].as_ref().unwrap(), ids[1].as_ref().unwrap());

    // Deletion stops the export and removes the file.
    let pid = cloned.observed.export.as_ref().unwrap().pid;
    let mut deleting = disk.clone();
    deleting.metadata.deletion_timestamp = Some(chrono::Utc::now());
    let deleted = engine.reconcile(&deleting).await;
    assert!(deleted.error.is_none(), "{:?}", deleted.error);
    assert!(!backing.path.exists());
    assert!(
        nbd_size(&disk_endpoint).is_err(),
        "the export still answers"
    );
    let servers = pids_mentioning(&backing.path.display().to_string());
    assert!(
        servers.is_empty(),
        "qemu-nbd (pid {pid}) still runs: {servers:?}"
    );
    assert_eq!(lab.volumes(), ["small-2-disk.qcow2"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swap_volumes_carry_a_labelled_swap_header() -> Result<()> {
    let lab = Lab::new(1);
    require("mkswap", "util-linux");
    let engine = lab.engine();
    let swap = volume(
        "small-1-swap",
        "{sizeMiB: 64, format: raw, image: {swap: true}}",
    );
    let outcome = engine.reconcile(&swap).await;
    ensure!(outcome.error.is_none(), "{:?}", outcome.error);
    let path = outcome.observed.backing.context("no backing")?.path;
    let header = std::fs::read(&path)?;
    assert_eq!(&header[4086..4096], b"SWAPSPACE2");
    let probe = run("blkid", &["-o", "export", &path.display().to_string()])?;
    assert!(
        probe.contains("LABEL=herd-swap") && probe.contains("TYPE=swap"),
        "{probe}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_storage_agent_adopts_running_exports() -> Result<()> {
    let lab = Lab::new(2);
    let data = volume("data-1", "{sizeMiB: 16, export: {}}");
    let first = lab.engine().reconcile(&data).await;
    let endpoint = ready(&first)?;
    let pid = first.observed.export.as_ref().unwrap().pid;

    // A new engine on the same directory: same server, same endpoint, no second qemu-nbd.
    let again = lab.engine().reconcile(&data).await;
    assert_eq!(ready(&again)?, endpoint);
    assert_eq!(again.observed.export.as_ref().unwrap().pid, pid);
    let servers = pids_mentioning(
        &lab.path()
            .join("storage/volumes/data-1.qcow2")
            .display()
            .to_string(),
    );
    assert_eq!(servers, [pid as i32], "one qemu-nbd serves the volume");

    // A server that died is replaced, on the port the volume had.
    // SAFETY: kill(2) of the qemu-nbd this test started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let restarted = lab.engine().reconcile(&data).await;
    assert_eq!(ready(&restarted)?, endpoint);
    assert_ne!(restarted.observed.export.as_ref().unwrap().pid, pid);
    assert_eq!(nbd_size(&endpoint)?, 16 * MIB);
    Ok(())
}

/// The outcome's error reason, after checking nothing was left behind.
fn refused(lab: &Lab, outcome: &Outcome) -> String {
    assert!(outcome.permanent, "{:?}", outcome.error);
    assert_eq!(
        lab.volumes(),
        Vec::<String>::new(),
        "something was left behind"
    );
    assert_eq!(
        list(&lab.path().join("storage/exports")),
        Vec::<String>::new()
    );
    let (reason, message) = outcome.error.clone().expect("an error");
    println!("{reason}: {message}");
    reason.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_clearly_and_leaves_nothing_behind() -> Result<()> {
    let lab = Lab::new(3);
    let mut settings = lab.settings();
    settings.volume_group = Some("herd".into());
    let engine = StorageEngine::new(&settings)?;

    let huge = volume("huge", "{sizeMiB: 67108864, export: {}}");
    let outcome = engine.reconcile(&huge).await;
    assert_eq!(refused(&lab, &outcome), "InsufficientSpace");
    assert!(
        outcome
            .error
            .unwrap()
            .1
            .contains("67108864 MiB does not fit")
    );

    let reserved = volume("snapshot-1", "{sizeMiB: 64, backend: lvm, format: raw}");
    let outcome = engine.reconcile(&reserved).await;
    assert_eq!(refused(&lab, &outcome), "InvalidName");

    let mut escape = volume("data", "{sizeMiB: 64}");
    escape.metadata.name = "../../etc/passwd".into();
    assert_eq!(
        refused(&lab, &engine.reconcile(&escape).await),
        "InvalidName"
    );

    let suite = volume(
        "odd",
        "{sizeMiB: 1024, image: {debootstrap: {suite: nosuchsuite}}}",
    );
    assert_eq!(
        refused(&lab, &engine.reconcile(&suite).await),
        "UnknownSuite"
    );
    assert_eq!(
        list(&lab.path().join("storage/images")),
        Vec::<String>::new()
    );

    let lonely = volume("lonely", "{sizeMiB: 64, image: {hostname: lonely}}");
    assert_eq!(
        refused(&lab, &engine.reconcile(&lonely).await),
        "InvalidImage"
    );

    // Smaller than the base image: refused before the clone is made.
    let tree = lab.path().join("tree");
    fake_debian_tree(&tree)?;
    let base = engine.images().import_tree("bookworm", &[], &tree).await?;
    let small = volume(
        "small",
        "{sizeMiB: 64, image: {debootstrap: {suite: bookworm}}}",
    );
    assert_eq!(
        refused(&lab, &engine.reconcile(&small).await),
        "VolumeTooSmall"
    );
    assert!(base.size_mib > 64);

    // Without a volume group, lvm volumes say how to get one.
    let plain = StorageEngine::new(&lab.settings())?;
    let lv = volume("lv-1", "{sizeMiB: 64, backend: lvm, format: raw}");
    let outcome = plain.reconcile(&lv).await;
    assert_eq!(refused(&lab, &outcome), "BackendUnavailable");
    assert!(outcome.error.unwrap().1.contains("--storage-backend-vg"));
    Ok(())
}

async fn wait_status(
    store: &Store,
    name: &str,
    what: &str,
    done: impl Fn(&VolumeStatus) -> bool,
) -> Result<VolumeStatus> {
    let started = Instant::now();
    loop {
        let status = store.get_status::<VolumeSpec>(name).await?.map(|s| s.value);
        if let Some(status) = status.filter(|s| done(s)) {
            return Ok(status);
        }
        ensure!(
            started.elapsed() < Duration::from_secs(60),
            "{name} never became {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_storage_role_serves_volumes_from_etcd_and_removes_them_on_delete() -> Result<()> {
    let lab = Lab::new(4);
    let etcd = EtcdServer::start()?;
    let store = Store::connect(&etcd.endpoints(), &unique_prefix()).await?;
    let role = tokio::spawn(storage::run(store.clone(), lab.settings()));

    store
        .create(&volume("data-1", "{sizeMiB: 32, export: {protocol: nbd}}"))
        .await?;
    store
        .create(&volume("too-big", "{sizeMiB: 67108864}"))
        .await?;
    let status = wait_status(&store, "data-1", "Ready", |s| s.phase == VolumePhase::Ready).await?;
    let endpoint = status.endpoint.clone().context("no endpoint")?;
    assert_eq!(nbd_size(&endpoint)?, 32 * MIB);
    let path = PathBuf::from(status.path.clone().context("no path")?);
    assert!(path.exists());
    let claimed: Volume = store.get_existing("data-1").await?;
    assert_eq!(claimed.metadata.finalizers, [storage::FINALIZER]);
    assert_eq!(
        claimed.metadata.annotations[storage::CLAIM_ANNOTATION],
        "storage-1"
    );

    let failed = wait_status(&store, "too-big", "Failed", |s| {
        s.phase == VolumePhase::Failed
    })
    .await?;
    let condition = find_condition(&failed.conditions, "Ready").context("no Ready")?;
    assert_eq!(condition.reason, "InsufficientSpace");
    assert_eq!(failed.endpoint, None);

    // Deletion waits for the storage role, which stops the export and removes the file.
    let outcome = store.delete::<Volume>("data-1", Precondition::None).await?;
    assert_eq!(outcome, DeleteOutcome::Marked);
    let started = Instant::now();
    while store.get::<Volume>("data-1").await?.is_some() {
        ensure!(
            started.elapsed() < Duration::from_secs(30),
            "the volume was never removed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!path.exists(), "the file is left");
    assert!(nbd_size(&endpoint).is_err(), "the export still answers");
    assert!(store.get_status::<VolumeSpec>("data-1").await?.is_none());
    store
        .delete::<Volume>("too-big", Precondition::None)
        .await?;
    role.abort();
    Ok(())
}

/// A boot sector that writes its counter to the disk, through the BIOS, over and over:
/// sector 2 (byte 512) gets the counter (u32, little-endian) and `HERD`. Assembled with GNU as
/// from:
///
/// ```text
///   xor ax,ax; mov ds,ax; mov es,ax; mov ss,ax; mov sp,0x7c00
///   mov [0x508],dl                  ; the boot drive the BIOS passed
///   mov dword [0x500],0             ; the counter
///   mov dword [0x504],0x600DB007    ; "booted", as herd's test guests do
///   sti
/// again:
///   inc dword [0x500]
///   mov eax,[0x500]; mov [0x600],eax; mov dword [0x604],'HERD'
///   mov ax,0x0301; mov bx,0x600; mov cx,0x0002; xor dh,dh; mov dl,[0x508]
///   int 0x13                        ; write 1 sector from 0:0x600 to cylinder 0, sector 2
///   mov si,0x10                     ; 1M turns of `loop` between writes: where KVM emulates
///                                   ; real mode (nested KVM, as on herd's CI), each turn traps;
///                                   ; 16M turns took 10-20 s and the waits below timed out
/// outer: mov cx,0xffff
/// inner: loop inner
///   dec si; jnz outer
///   jmp again
/// ```
const DISK_WRITER: [u8; 86] = [
    0x31, 0xc0, 0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0, 0xbc, 0x00, 0x7c, 0x88, 0x16, 0x08, 0x05, 0x66,
    0xc7, 0x06, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x66, 0xc7, 0x06, 0x04, 0x05, 0x07, 0xb0, 0x0d,
    0x60, 0xfb, 0x66, 0xff, 0x06, 0x00, 0x05, 0x66, 0xa1, 0x00, 0x05, 0x66, 0xa3, 0x00, 0x06, 0x66,
    0xc7, 0x06, 0x04, 0x06, 0x48, 0x45, 0x52, 0x44, 0xb8, 0x01, 0x03, 0xbb, 0x00, 0x06, 0xb9, 0x02,
    0x00, 0x30, 0xf6, 0x8a, 0x16, 0x08, 0x05, 0xcd, 0x13, 0xbe, 0x10, 0x00, 0xb9, 0xff, 0xff, 0xe2,
    0xfe, 0x4e, 0x75, 0xf8, 0xeb, 0xcc,
];

/// The counter the disk-writer guest last wrote, read over NBD by another client.
fn disk_counter(endpoint: &str, scratch: &Path) -> Result<u32> {
    let copy = scratch.join("sector.raw");
    let copy_arg = copy.display().to_string();
    run(
        "qemu-img",
        &["convert", "-f", "raw", "-O", "raw", endpoint, &copy_arg],
    )?;
    let bytes = std::fs::read(&copy)?;
    ensure!(&bytes[516..520] == b"HERD", "the guest has not written yet");
    Ok(u32::from_le_bytes(bytes[512..516].try_into()?))
}

async fn wait_disk_counter_above(endpoint: &str, scratch: &Path, value: u32) -> Result<u32> {
    let started = Instant::now();
    loop {
        if let Ok(now) = disk_counter(endpoint, scratch)
            && now > value
        {
            return Ok(now);
        }
        ensure!(
            started.elapsed() < Duration::from_secs(60),
            "the disk counter stays at {value}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn writer_spec(endpoint: &str) -> DomainSpec {
    DomainSpec {
        name: "writer-1".into(),
        uid: "uid-writer-1".into(),
        vcpus: 1,
        memory_mib: 32,
        boot: Boot {
            disk: Some("root".into()),
            ..Boot::default()
        },
        disks: vec![DomainDisk {
            name: "root".into(),
            source: DiskSource::Nbd(endpoint.into()),
            target: None,
            read_only: false,
        }],
        networks: Vec::new(),
        migration: Default::default(),
    }
}

async fn migrate(source: &QemuDriver, target: &QemuDriver, spec: &DomainSpec) -> Result<u64> {
    let endpoint = target.prepare_incoming(spec).await?;
    let params = MigrationParams {
        max_downtime: Duration::from_millis(300),
        bandwidth: None,
    };
    source.migrate_out(&spec.name, &endpoint, &params).await?;
    let started = Instant::now();
    loop {
        match source.migration_progress(&spec.name).await? {
            MigrationProgress::Active { .. } => {}
            MigrationProgress::Completed {
                transferred_bytes, ..
            } => return Ok(transferred_bytes),
            other => bail!("the migration ended with {other:?}"),
        }
        ensure!(
            started.elapsed() < Duration::from_secs(120),
            "the migration did not complete"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn state(driver: &QemuDriver, name: &str) -> Result<DomainState> {
    let domains = driver.list().await?;
    Ok(domains
        .iter()
        .find(|d| d.name == name)
        .context("domain not listed")?
        .state)
}

/// What this proves: a volume made and exported by the storage code boots a guest under the
/// qemu driver; the guest writes to it through its virtio disk; after a live migration to a
/// second driver (both opened the one export at once — no disk was copied) the guest keeps
/// writing to the same volume from the target, its on-disk counter continues from where it was,
/// and data written into the volume before the migration reads back unchanged afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_boots_from_an_export_and_live_migrates_with_its_disk_shared() -> Result<()> {
    require("qemu-system-x86_64", "qemu-system-x86");
    let lab = Lab::new(5);
    let engine = lab.engine();
    let disk = volume("writer-1-disk", "{sizeMiB: 4, export: {protocol: nbd}}");
    let endpoint = ready(&engine.reconcile(&disk).await)?;
    let sector = lab.path().join("boot.bin");
    let mut boot = DISK_WRITER.to_vec();
    boot.resize(510, 0);
    boot.extend([0x55, 0xaa]);
    std::fs::write(&sector, &boot)?;
    let write_boot = format!("write -s {} 0 512", sector.display());
    run(
        "qemu-io",
        &[
            "-f",
            "raw",
            "-c",
            &write_boot,
            "-c",
            "write -P 0xa5 2M 64k",
            &endpoint,
        ],
    )?;

    let (source, target) = (
        QemuDriver::new(QemuConfig::new(lab.path().join("a"), LOCALHOST)).await?,
        QemuDriver::new(QemuConfig::new(lab.path().join("b"), LOCALHOST)).await?,
    );
    let spec = writer_spec(&endpoint);
    source.create(&spec, false).await?;
    let scratch = tempfile::tempdir_in(lab.path())?;
    let before = wait_disk_counter_above(&endpoint, scratch.path(), 3).await?;
    let moved = migrate(&source, &target, &spec).await?;
    let at_switch = disk_counter(&endpoint, scratch.path())?;
    println!("counter on disk {before} before, {at_switch} at the switch; {moved} bytes moved");
    ensure!(
        at_switch >= before,
        "the disk went back from {before} to {at_switch}"
    );
    ensure!(state(&target, "writer-1").await? == DomainState::Running);
    source.destroy("writer-1").await?;
    let after = wait_disk_counter_above(&endpoint, scratch.path(), at_switch).await?;
    println!("the target keeps writing: {after}");
    ensure!(
        target.read_guest_u32("writer-1", 0x500).await? >= after,
        "the guest restarted"
    );
    qemu_io("raw", "read -P 0xa5 2M 64k", &endpoint)?;
    target.destroy("writer-1").await?;
    Ok(())
}

/// The newest `/boot/vmlinuz-*-cloud-amd64` and its initrd (package `linux-image-cloud-amd64`).
fn cloud_kernel() -> Result<(String, String)> {
    let mut kernels: Vec<String> = list(Path::new("/boot"))
        .into_iter()
        .filter(|f| f.starts_with("vmlinuz-") && f.ends_with("-cloud-amd64"))
        .collect();
    kernels.sort();
    let kernel = kernels
        .pop()
        .context("no /boot/vmlinuz-*-cloud-amd64: apt-get install -y linux-image-cloud-amd64")?;
    let initrd = format!("/boot/initrd.img-{}", &kernel["vmlinuz-".len()..]);
    ensure!(Path::new(&initrd).exists(), "{initrd} is missing");
    Ok((format!("/boot/{kernel}"), initrd))
}

/// The VM and volumes of `manifests/examples/create-domain.yaml`.
fn create_domain_manifest() -> Result<(herd_crds::VirtualMachine, Vec<Volume>)> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/examples/create-domain.yaml");
    let documents = herd_crds::parse_manifests("create-domain.yaml", &std::fs::read(&path)?)
        .map_err(|errors| anyhow::anyhow!("{errors:?}"))?;
    let (mut vms, mut volumes) = (Vec::new(), Vec::new());
    for document in documents {
        match document.object {
            herd_crds::AnyObject::VirtualMachine(vm) => vms.push(vm),
            herd_crds::AnyObject::Volume(volume) => volumes.push(volume),
            other => bail!("unexpected {other:?}"),
        }
    }
    Ok((vms.pop().context("no VM")?, volumes))
}

/// Waits until every volume is Ready; returns their endpoints by name.
async fn wait_endpoints(store: &Store, volumes: &[Volume]) -> Result<HashMap<String, String>> {
    let mut endpoints = HashMap::new();
    let started = Instant::now();
    for volume in volumes {
        let name = &volume.metadata.name;
        let status = loop {
            let status = store.get_status::<VolumeSpec>(name).await?.map(|s| s.value);
            match status {
                Some(s) if s.phase == VolumePhase::Ready => break s,
                Some(s) if s.phase == VolumePhase::Failed => bail!("{name} failed: {s:?}"),
                _ => {}
            }
            ensure!(
                started.elapsed() < Duration::from_secs(1800),
                "{name} is not ready"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        endpoints.insert(name.clone(), status.endpoint.context("no endpoint")?);
    }
    Ok(endpoints)
}

/// Deletes the volumes and waits until the storage role removed them.
async fn delete_and_wait(store: &Store, volumes: &[Volume]) -> Result<()> {
    for volume in volumes {
        store
            .delete::<Volume>(&volume.metadata.name, Precondition::None)
            .await?;
    }
    let started = Instant::now();
    for volume in volumes {
        while store.get::<Volume>(&volume.metadata.name).await?.is_some() {
            ensure!(started.elapsed() < Duration::from_secs(60), "volumes stay");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// `vm` as a node would run it (what the controller renders), booting `kernel` and `initrd`;
/// without networks, as a test machine has no bridge.
fn domain_spec(
    vm: &herd_crds::VirtualMachine,
    endpoints: &HashMap<String, String>,
    kernel: &str,
    initrd: &str,
) -> DomainSpec {
    let mut boot = vm.spec.boot.clone();
    (boot.kernel, boot.ramdisk) = (Some(kernel.into()), Some(initrd.into()));
    let disks = vm.spec.disks.iter().map(|disk| DomainDisk {
        name: disk.name.clone(),
        source: DiskSource::Nbd(endpoints[disk.volume.as_ref().expect("a volume")].clone()),
        target: disk.target.clone(),
        read_only: false,
    });
    DomainSpec {
        name: vm.metadata.name.clone(),
        uid: "uid-domain-1".into(),
        vcpus: vm.spec.vcpus,
        memory_mib: vm.spec.memory_mib,
        boot,
        disks: disks.collect(),
        networks: Vec::new(),
        migration: Default::default(),
    }
}

/// Waits until the serial log has a line with `wanted`; returns the whole log.
async fn wait_serial(log: &Path, wanted: &str, limit: Duration) -> Result<String> {
    let started = Instant::now();
    loop {
        let text = String::from_utf8_lossy(&std::fs::read(log).unwrap_or_default()).into_owned();
        if text.contains(wanted) {
            return Ok(text);
        }
        if started.elapsed() > limit {
            let tail: String = text
                .chars()
                .rev()
                .take(3000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            bail!("no {wanted:?} on the serial console within {limit:?}; it ends with:\n{tail}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// End to end: the `create-domain.yaml` volumes applied to etcd, made by the storage role
/// (a real debootstrap of bookworm with openssh-server, from the host's Debian mirror), exported
/// over NBD, booted under QEMU with Debian's cloud kernel until the login prompt names the host
/// name the Volume asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow (debootstrap downloads Debian): run scripts/storage-e2e.sh"]
async fn a_debootstrap_image_boots_to_multi_user_with_its_hostname() -> Result<()> {
    require("debootstrap", "debootstrap");
    require("qemu-system-x86_64", "qemu-system-x86");
    let (kernel, initrd) = cloud_kernel()?;
    let lab = Lab::new(6);
    let mut settings = lab.settings();
    if let Some(dir) = std::env::var_os("HERD_STORAGE_E2E_DIR") {
        settings.dir = PathBuf::from(dir); // keeps the base image between runs
    }
    let _reaper = Reaper(settings.dir.clone());
    let etcd = EtcdServer::start()?;
    let store = Store::connect(&etcd.endpoints(), &unique_prefix()).await?;
    let role = tokio::spawn(storage::run(store.clone(), settings));
    let (vm, volumes) = create_domain_manifest()?;
    let started = Instant::now();
    for volume in &volumes {
        store.create(volume).await?;
    }
    let endpoints = wait_endpoints(&store, &volumes).await?;
    println!("volumes ready after {:?}: {endpoints:?}", started.elapsed());
    let spec = domain_spec(&vm, &endpoints, &kernel, &initrd);
    let booted = Instant::now();
    let (driver, log) = boot_linux(&lab, &spec).await?;
    wait_serial(&log, "domain-1 login:", Duration::from_secs(600)).await?;
    // systemd's own status lines stop once the serial getty starts, which under TCG can be
    // before the target is reached; the image's herd-boot-done.service reports it instead.
    let done = "herd: domain-1 reached multi-user.target";
    let text = wait_serial(&log, done, Duration::from_secs(300)).await?;
    println!(
        "{kernel} reached the login prompt in {:?}",
        booted.elapsed()
    );
    if let Some(dir) = std::env::var_os("HERD_STORAGE_E2E_DIR") {
        std::fs::write(Path::new(&dir).join("serial.log"), &text)?;
    }
    for line in text.lines().filter(|l| {
        ["Multi-User", "login:", "herd:", "swap", "Grow"]
            .iter()
            .any(|wanted| l.contains(wanted))
    }) {
        println!("serial: {}", line.trim());
    }
    ensure!(
        text.contains("Activated swap"),
        "the swap volume was not turned on"
    );
    driver.destroy("domain-1").await?;
    delete_and_wait(&store, &volumes).await?;
    println!("end to end: {:?}", started.elapsed());
    role.abort();
    Ok(())
}

/// Boots `spec` under KVM, or under TCG when KVM shows no kernel output within a minute (nested
/// KVM on some development machines runs boot sectors but hangs Linux) or `HERD_E2E_ACCEL=tcg`.
async fn boot_linux(lab: &Lab, spec: &DomainSpec) -> Result<(QemuDriver, PathBuf)> {
    let tcg_only = std::env::var("HERD_E2E_ACCEL").is_ok_and(|a| a == "tcg");
    if !tcg_only {
        let driver = QemuDriver::new(QemuConfig::new(lab.path().join("kvm"), LOCALHOST)).await?;
        driver.create(spec, false).await?;
        let log = driver.serial_log(&spec.name)?;
        match wait_serial(&log, "Linux version", Duration::from_secs(60)).await {
            Ok(_) => return Ok((driver, log)),
            Err(_) => {
                println!(
                    "no kernel output under {}: retrying under TCG",
                    driver.accel().description()
                );
                driver.destroy(&spec.name).await?;
            }
        }
    }
    let mut config = QemuConfig::new(lab.path().join("tcg"), LOCALHOST);
    config.accel = herd_agent::qemu::AccelChoice::Tcg;
    let driver = QemuDriver::new(config).await?;
    driver.create(spec, false).await?;
    let log = driver.serial_log(&spec.name)?;
    Ok((driver, log))
}

/// Kills the processes that mention a directory outside the lab (a kept storage directory).
struct Reaper(PathBuf);

impl Drop for Reaper {
    fn drop(&mut self) {
        kill_processes_mentioning(&self.0);
    }
}
