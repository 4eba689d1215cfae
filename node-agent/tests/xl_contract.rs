//! Contract test of the xl driver: the real driver and command runner against a fake `xl` and a
//! fake `nbd-client` (bash scripts that log their argv and answer with the Xen 4.17 fixtures in
//! `tests/fixtures/xl/`). It checks the exact commands each operation runs, in order, and the
//! config file handed to `xl create`.
//!
//! This is evidence that the driver speaks xl's command line and reads xl's output formats as
//! written from the 4.17 sources — not that it works on a live Xen host; see `docs/xen.md`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use herd_agent::hypervisor::{
    DomainState, Hypervisor, HypervisorError, IncomingEndpoint, MigrationParams, MigrationProgress,
};
use herd_agent::xl::{XlDriver, XlSettings};
use herd_crds::assignment::{DiskSource, DomainDisk, DomainSpec};
use herd_crds::virtual_machine::{Boot, MigrationPolicy, Network};
use tempfile::TempDir;

const UID: &str = "6f1c2a4e-93b0-4d5e-8a7f-0c1d2e3f4a5b";

/// The fake `xl`. A domain exists while `$ROOT/domains/<name>` does (`web-1` and `batch-2`, the
/// fixture's other guests, always do); `small-1` rows are filtered out of the fixtures while it
/// does not. The fixture's disk link directory is rewritten to the one this host is configured
/// with. `migrate` to `slow.lab`, and `shutdown` while `$ROOT/stubborn` exists, hang. While
/// `$ROOT/domains/small-1--incoming` exists, `xl list` shows that copy of an arriving migration.
const FAKE_XL: &str = r#"#!/bin/bash
root=@ROOT@
fixtures=@FIXTURES@
echo "xl $*" >> "$root/calls.log"
exists() { [ "$1" = web-1 ] || [ "$1" = batch-2 ] || [ -e "$root/domains/$1" ]; }
present() {
    if [ -e "$root/domains/small-1" ]; then cat; else grep -v '^small-1 '; fi
}
need() {
    exists "$1" || { echo "$1 is an invalid domain identifier (rc=-6)" >&2; exit 1; }
}
case "$1" in
    list)
        if [ "${2:-}" = -l ]; then
            if [ -e "$root/domains/small-1" ]; then
                sed "s#/run/herd-agent/xl-disks#$root/disks#g" "$fixtures/list-l.json"
            else
                printf '[\n]\n'
            fi
        else
            present < "$fixtures/list.txt"
            if [ -e "$root/domains/small-1--incoming" ]; then
                printf '%-40s %5d %5lu %5d     %s  %8.1f\n' small-1--incoming 21 512 1 --p--- 0.4
            fi
        fi ;;
    vcpu-list) present < "$fixtures/vcpu-list.txt" ;;
    info) cat "$fixtures/info.txt" ;;
    create) cp "${!#}" "$root/created.cfg"; touch "$root/domains/small-1" ;;
    pause|unpause) need "$2" ;;
    destroy) need "$2"; rm -f "$root/domains/$2" ;;
    shutdown)
        need "${!#}"
        [ -e "$root/stubborn" ] && exec sleep 30
        rm -f "$root/domains/${!#}" ;;
    migrate)
        need "$4"
        [ "$5" = slow.lab ] && exec sleep 30
        rm -f "$root/domains/$4" ;;
    *) echo "fake xl: unexpected $*" >&2; exit 2 ;;
esac
"#;

/// The fake `nbd-client`: connecting creates the device's sysfs `pid`, `-d` removes it.
const FAKE_NBD_CLIENT: &str = r#"#!/bin/bash
root=@ROOT@
echo "nbd-client $*" >> "$root/calls.log"
if [ "$1" = -d ]; then
    rm -f "$root/sys/block/${2##*/}/pid"
else
    echo $$ > "$root/sys/block/${3##*/}/pid"
fi
"#;

/// A directory that looks like a Xen dom0 to the driver.
struct FakeHost {
    dir: TempDir,
}

impl FakeHost {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let host = Self { dir };
        for sub in [
            "bin",
            "proc-xen",
            "dev",
            "domains",
            "sys/block/nbd0",
            "sys/block/nbd1",
            "sys/block/nbd2",
            "sys/block/nbd3",
        ] {
            std::fs::create_dir_all(host.path(sub)).unwrap();
        }
        std::fs::write(host.path("proc-xen/capabilities"), "control_d\n").unwrap();
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/xl");
        host.script(
            "xl",
            &FAKE_XL.replace("@FIXTURES@", fixtures.to_str().unwrap()),
        );
        host.script("nbd-client", FAKE_NBD_CLIENT);
        host
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    fn root(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    fn script(&self, name: &str, text: &str) {
        let path = self.path("bin").join(name);
        std::fs::write(&path, text.replace("@ROOT@", self.root())).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// The driver pointed at this directory through its settings (no global `PATH` change).
    fn settings(&self) -> XlSettings {
        XlSettings {
            search_path: Some(vec![self.path("bin")]),
            proc_xen: self.path("proc-xen"),
            state_dir: self.path("state"),
            disk_link_dir: self.path("disks"),
            sys_block: self.path("sys/block"),
            dev_dir: self.path("dev"),
            migration_host: Some("xen-a.lab".into()),
            ..XlSettings::default()
        }
    }

    fn driver(&self) -> XlDriver {
        XlDriver::probe(self.settings()).expect("the fake host passes the probe")
    }

    /// Every command run so far, with this directory written as `$ROOT`.
    fn calls(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.path("calls.log")).unwrap_or_default();
        log.lines()
            .map(|l| l.replace(self.root(), "$ROOT"))
            .collect()
    }

    fn take_calls(&self) -> Vec<String> {
        let calls = self.calls();
        let _ = std::fs::remove_file(self.path("calls.log"));
        calls
    }

    /// Makes `name` exist, as if it had been created or had migrated here.
    fn arrive(&self, name: &str) {
        std::fs::write(self.path("domains").join(name), "").unwrap();
    }

    fn link(&self, disk: &str) -> Option<PathBuf> {
        std::fs::read_link(self.path("disks/small-1").join(disk)).ok()
    }
}

/// The manifest's small-1: both disks NBD volumes, so it can migrate.
fn small_1() -> DomainSpec {
    let nbd = |name: &str, export: &str, target: &str| DomainDisk {
        name: name.into(),
        source: DiskSource::Nbd(format!("nbd://10.0.0.1:10809/{export}")),
        target: Some(target.into()),
        read_only: false,
    };
    DomainSpec {
        name: "small-1".into(),
        uid: UID.into(),
        vcpus: 1,
        memory_mib: 512,
        boot: Boot {
            kernel: Some("/boot/vmlinuz-6.1.0-amd64".into()),
            root: Some("/dev/xvda1 ro".into()),
            ..Boot::default()
        },
        disks: vec![
            nbd("root", "small-1-disk", "xvda1"),
            nbd("swap", "small-1-swap", "xvda2"),
        ],
        networks: vec![Network {
            name: "eth0".into(),
            bridge: "xenbr0".into(),
            mac: None,
        }],
        migration: MigrationPolicy::default(),
    }
}

const EXPECTED_CFG: &str = r#"# xl.cfg of VM small-1, written by herd-agent (xl driver). Do not edit: herd rewrites it.
# herd-uid: 6f1c2a4e-93b0-4d5e-8a7f-0c1d2e3f4a5b
name = "small-1"
uuid = "6f1c2a4e-93b0-4d5e-8a7f-0c1d2e3f4a5b"
type = "pv"
kernel = "/boot/vmlinuz-6.1.0-amd64"
root = "/dev/xvda1 ro"
memory = 512
vcpus = 1
disk = [ "format=raw, vdev=xvda1, access=rw, target=$ROOT/disks/small-1/root", "format=raw, vdev=xvda2, access=rw, target=$ROOT/disks/small-1/swap" ]
vif = [ "mac=00:16:3e:4f:b1:57, bridge=xenbr0" ]
on_poweroff = "destroy"
on_reboot = "restart"
on_crash = "destroy"
"#;

fn params() -> MigrationParams {
    MigrationParams {
        max_downtime: Duration::from_millis(300),
        bandwidth: None,
    }
}

async fn wait_for_migration(driver: &XlDriver, name: &str) -> MigrationProgress {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let progress = driver.migration_progress(name).await.unwrap();
        if !matches!(progress, MigrationProgress::Active { .. }) || Instant::now() > deadline {
            return progress;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn strings(lines: &[&str]) -> Vec<String> {
    lines.iter().map(|l| l.to_string()).collect()
}

#[tokio::test]
async fn create_list_pause_unpause_migrate_receive_destroy() {
    let host = FakeHost::new();
    let driver = host.driver();
    let spec = small_1();

    let created = driver.create(&spec, false).await.unwrap();
    assert_eq!(
        (
            created.name.as_str(),
            created.id.as_str(),
            created.uid.as_deref()
        ),
        ("small-1", "7", Some(UID))
    );
    assert_eq!(created.state, DomainState::Running);
    assert_eq!(
        std::fs::read_to_string(host.path("created.cfg"))
            .unwrap()
            .replace(host.root(), "$ROOT"),
        EXPECTED_CFG
    );
    assert_eq!(host.link("root"), Some(host.path("dev/nbd0")));
    assert_eq!(host.link("swap"), Some(host.path("dev/nbd1")));

    let listed = driver.list().await.unwrap();
    let names: Vec<(&str, DomainState)> =
        listed.iter().map(|d| (d.name.as_str(), d.state)).collect();
    assert_eq!(
        names,
        [
            ("web-1", DomainState::Running),
            ("small-1", DomainState::Running),
            ("batch-2", DomainState::Paused)
        ]
    );
    assert_eq!(listed[1].vcpus[0].cpu, Some(4));

    driver.pause("small-1").await.unwrap();
    driver.unpause("small-1").await.unwrap();

    let target = IncomingEndpoint {
        uri: "xl:xen-b.lab".into(),
    };
    driver
        .migrate_out("small-1", &target, &params())
        .await
        .unwrap();
    assert!(matches!(
        wait_for_migration(&driver, "small-1").await,
        MigrationProgress::Completed { .. }
    ));
    assert_eq!(
        (host.link("root"), host.link("swap")),
        (None, None),
        "the disks are detached after migrating away"
    );
    assert!(!host.path("state/small-1.cfg").exists());

    let endpoint = driver.prepare_incoming(&spec).await.unwrap();
    assert_eq!(endpoint.uri, "xl:xen-a.lab");
    assert_eq!(
        host.link("root"),
        Some(host.path("dev/nbd0")),
        "the target attaches the same exports"
    );
    host.arrive("small-1");

    driver.destroy("small-1").await.unwrap();
    assert_eq!((host.link("root"), host.link("swap")), (None, None));

    assert_eq!(
        host.calls(),
        strings(&[
            // create: is it already there? attach the disks, start it, read it back
            "xl list",
            "nbd-client 10.0.0.1 10809 $ROOT/dev/nbd0 -N small-1-disk",
            "nbd-client 10.0.0.1 10809 $ROOT/dev/nbd1 -N small-1-swap",
            "xl create $ROOT/state/small-1.cfg",
            "xl list",
            "xl list -l",
            "xl vcpu-list",
            // list
            "xl list",
            "xl list -l",
            "xl vcpu-list",
            "xl pause small-1",
            "xl unpause small-1",
            // migrate_out: only shared disks may move; then xl migrate; then detach here
            "xl list -l",
            "xl migrate -s ssh small-1 xen-b.lab",
            "nbd-client -d $ROOT/dev/nbd0",
            "nbd-client -d $ROOT/dev/nbd1",
            // prepare_incoming: nothing of that name here; attach the disks
            "xl list",
            "nbd-client 10.0.0.1 10809 $ROOT/dev/nbd0 -N small-1-disk",
            "nbd-client 10.0.0.1 10809 $ROOT/dev/nbd1 -N small-1-swap",
            // destroy
            "xl list",
            "xl destroy small-1",
            "nbd-client -d $ROOT/dev/nbd0",
            "nbd-client -d $ROOT/dev/nbd1",
        ])
    );
}

#[tokio::test]
async fn hostile_names_and_values_are_refused_before_any_command_runs() {
    let host = FakeHost::new();
    let driver = host.driver();
    let refused =
        |result: Result<_, HypervisorError>| matches!(result, Err(HypervisorError::Refused { .. }));

    let mut spec = small_1();
    spec.name = "x; rm -rf /".into();
    assert!(refused(driver.create(&spec, false).await.map(drop)));
    let mut spec = small_1();
    spec.boot.cmdline = Some("quiet\"\nkernel = \"/tmp/evil".into());
    assert!(refused(driver.create(&spec, false).await.map(drop)));
    let mut spec = small_1();
    spec.boot.cmdline = Some("quiet\" kernel=\"/tmp/evil".into());
    assert!(refused(driver.create(&spec, false).await.map(drop)));
    let mut spec = small_1();
    spec.disks[0].source = DiskSource::Nbd("nbd://10.0.0.1/x,target=/etc/shadow".into());
    assert!(refused(driver.create(&spec, false).await.map(drop)));
    let mut spec = small_1();
    spec.disks[0].source = DiskSource::Path("/srv/a,b.img".into());
    assert!(refused(driver.prepare_incoming(&spec).await.map(drop)));
    let mut spec = small_1();
    spec.name = "42".into();
    assert!(refused(driver.create(&spec, false).await.map(drop)));

    assert!(refused(driver.pause("0").await));
    assert!(refused(driver.destroy("-a").await));
    assert!(refused(
        driver
            .shutdown("small-1--incoming", Duration::from_secs(1))
            .await
    ));
    let evil = IncomingEndpoint {
        uri: "xl:-oProxyCommand=touch /tmp/pwned".into(),
    };
    assert!(refused(
        driver.migrate_out("small-1", &evil, &params()).await
    ));
    let evil = IncomingEndpoint {
        uri: "xl:xen-b;reboot".into(),
    };
    assert!(refused(
        driver.migrate_out("small-1", &evil, &params()).await
    ));

    assert_eq!(
        host.calls(),
        Vec::<String>::new(),
        "nothing may run for a hostile request"
    );
}

#[tokio::test]
async fn an_unknown_domain_is_not_found_and_destroying_it_succeeds() {
    let host = FakeHost::new();
    let driver = host.driver();
    assert!(
        matches!(driver.pause("ghost").await, Err(HypervisorError::NotFound(name)) if name == "ghost")
    );
    driver.destroy("ghost").await.unwrap();
    assert_eq!(host.calls(), strings(&["xl pause ghost", "xl list"]));
}

#[tokio::test]
async fn creating_again_returns_the_running_domain_and_a_foreign_one_is_refused() {
    let host = FakeHost::new();
    let driver = host.driver();
    driver.create(&small_1(), true).await.unwrap();
    assert!(
        host.take_calls()
            .contains(&"xl create -p $ROOT/state/small-1.cfg".to_string())
    );

    let again = driver.create(&small_1(), false).await.unwrap();
    assert_eq!(again.uid.as_deref(), Some(UID));
    assert_eq!(
        host.take_calls(),
        strings(&["xl list", "xl list", "xl list -l", "xl vcpu-list"])
    );

    let mut other = small_1();
    other.uid = "0b-2".into();
    assert!(matches!(
        driver.create(&other, false).await,
        Err(HypervisorError::Refused { .. })
    ));
}

#[tokio::test]
async fn a_domain_with_a_local_disk_is_not_migrated() {
    let host = FakeHost::new();
    let driver = host.driver();
    host.arrive("small-1");
    let target = IncomingEndpoint {
        uri: "xl:xen-b.lab".into(),
    };
    let result = driver.migrate_out("web-1", &target, &params()).await;
    assert!(
        matches!(result, Err(HypervisorError::Refused { reason, .. }) if reason.contains("/dev/vg0/web-1"))
    );
    assert_eq!(host.calls(), strings(&["xl list -l"]));
}

#[tokio::test]
async fn a_running_migration_is_active_until_cancelled_and_the_domain_stays() {
    let host = FakeHost::new();
    let driver = host.driver();
    host.arrive("small-1");
    let slow = IncomingEndpoint {
        uri: "xl:slow.lab".into(),
    };
    driver
        .migrate_out("small-1", &slow, &params())
        .await
        .unwrap();
    assert!(matches!(
        driver.migration_progress("small-1").await.unwrap(),
        MigrationProgress::Active { .. }
    ));
    assert!(matches!(
        driver.migrate_out("small-1", &slow, &params()).await,
        Err(HypervisorError::Refused { .. })
    ));
    let migrating = "xl migrate -s ssh small-1 slow.lab".to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !host.calls().contains(&migrating) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    driver.cancel_migration("small-1").await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the hung xl migrate was killed"
    );
    assert_eq!(
        driver.migration_progress("small-1").await.unwrap(),
        MigrationProgress::Cancelled
    );
    assert!(host.path("domains/small-1").exists());
    let calls = host.calls();
    assert_eq!(calls.first().map(String::as_str), Some("xl list -l"));
    assert!(calls.contains(&migrating));
    assert_eq!(calls.last().map(String::as_str), Some("xl list"));
}

#[tokio::test]
async fn a_guest_that_ignores_shutdown_is_destroyed_after_the_timeout() {
    let host = FakeHost::new();
    let driver = host.driver();
    host.arrive("small-1");
    std::fs::write(host.path("stubborn"), "").unwrap();
    let started = Instant::now();
    driver
        .shutdown("small-1", Duration::from_millis(300))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        host.calls(),
        strings(&["xl shutdown -w -F small-1", "xl list", "xl destroy small-1"])
    );
    assert!(!host.path("domains/small-1").exists());
}

#[tokio::test]
async fn host_info_and_samples_come_from_xl_info_and_vcpu_list() {
    let host = FakeHost::new();
    let driver = host.driver();
    let info = driver.host_info().await.unwrap();
    assert_eq!(
        (info.cpus, info.memory_total_mib, info.memory_free_mib),
        (8, 32657, 24690)
    );
    assert_eq!(info.description, "Xen 4.17.3 (credit2)");
    let sample = driver.sample().await.unwrap();
    assert_eq!(sample.cpu_load.len(), 8);
    assert_eq!(sample.memory_free_mib, 24690);
    assert_eq!(
        sample.domains.len(),
        2,
        "web-1 and batch-2; Domain-0 is the host"
    );
    assert_eq!(driver.driver(), "xl");
    assert_eq!(
        host.calls(),
        strings(&[
            "xl info",
            "xl list",
            "xl list -l",
            "xl vcpu-list",
            "xl info"
        ])
    );
}

#[tokio::test]
async fn a_migration_copy_blocks_create_and_keeps_the_disks_on_destroy() {
    let host = FakeHost::new();
    let driver = host.driver();
    host.arrive("small-1--incoming");
    let listed = driver.list().await.unwrap();
    let incoming = listed.iter().find(|d| d.name == "small-1").unwrap();
    assert_eq!(
        (incoming.id.as_str(), incoming.state),
        ("21", DomainState::Incoming)
    );
    host.take_calls();

    let result = driver.create(&small_1(), false).await;
    assert!(
        matches!(result, Err(HypervisorError::Refused { reason, .. }) if reason.contains("small-1--incoming"))
    );
    assert!(matches!(
        driver.prepare_incoming(&small_1()).await,
        Err(HypervisorError::Refused { .. })
    ));
    assert!(matches!(
        driver.destroy("small-1").await,
        Err(HypervisorError::Refused { .. })
    ));
    assert_eq!(
        host.calls(),
        strings(&["xl list", "xl list", "xl list"]),
        "no disk attached or detached, nothing destroyed"
    );
}
