//! The `qemu` driver against real QEMU guests (KVM when the host allows it, TCG otherwise).
//!
//! Nothing here is skipped: without `qemu-system-x86_64` (package `qemu-system-x86`) or, for
//! the migration test, `qemu-nbd` (package `qemu-utils`), the tests fail and say what to install.
//! Tests run one at a time (CPU measurements need the host's cores), and every test kills the
//! processes of its lab directory when it ends, also when it fails.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use herd_agent::hypervisor::{
    DomainInfo, DomainState, HostInfo, HostSample, Hypervisor, HypervisorError, IncomingEndpoint,
    MigrationParams, MigrationProgress,
};
use herd_agent::qemu::{AccelChoice, QemuConfig, QemuDriver, RunStatus};
use herd_agent::test_guests::{self, BOOTED_ADDRESS, BOOTED_MAGIC, COUNTER_ADDRESS, TestGuest};
use herd_crds::assignment::{DiskSource, DomainSpec};
use herd_crds::virtual_machine::Network;

/// One test at a time: a spinning guest of one test must not skew another's CPU numbers.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);

/// A temporary directory for state dirs and images; kills every process that mentions it on drop.
struct Lab {
    dir: tempfile::TempDir,
}

impl Lab {
    fn new() -> Self {
        require_program("qemu-system-x86_64", "qemu-system-x86");
        // Short path: QMP socket paths must fit in 107 bytes.
        let dir = tempfile::Builder::new()
            .prefix("herd-qemu-")
            .tempdir_in("/tmp")
            .expect("temporary directory");
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    async fn driver(&self, node: &str) -> QemuDriver {
        let config = QemuConfig::new(self.path().join(node), LOCALHOST);
        QemuDriver::new(config)
            .await
            .expect("the QEMU driver starts")
    }

    fn image(&self, guest: TestGuest) -> PathBuf {
        guest
            .write_image(self.path())
            .expect("write the guest image")
    }

    fn spec(&self, guest: TestGuest, name: &str) -> DomainSpec {
        let image = self.image(guest).display().to_string();
        test_guests::domain_spec(name, &format!("uid-{name}"), DiskSource::Path(image))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        kill_processes_mentioning(self.path());
    }
}

fn require_program(program: &str, package: &str) {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|dir| dir.join(program).is_file());
    assert!(
        found,
        "{program} is not installed: run `apt-get install -y {package}` (these tests need real QEMU)"
    );
}

/// SIGKILLs every process whose command line mentions `path` (QEMU, qemu-nbd).
fn kill_processes_mentioning(path: &Path) {
    let needle = path.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() as i32 {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            // SAFETY: kill(2) on a pid read from /proc; no memory is involved.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Whether `pid` runs (a zombie left by a killed daemon counts as gone).
fn process_runs(pid: &str) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    matches!(state, Some(s) if s != 'Z' && s != 'X')
}

fn domain<'a>(domains: &'a [DomainInfo], name: &str) -> &'a DomainInfo {
    domains
        .iter()
        .find(|d| d.name == name)
        .unwrap_or_else(|| panic!("{name} is not listed: {domains:?}"))
}

/// Waits until the guest wrote its boot marker (it left the BIOS and runs its own code).
async fn wait_booted(driver: &QemuDriver, name: &str) {
    let start = Instant::now();
    while driver
        .read_guest_u32(name, BOOTED_ADDRESS)
        .await
        .expect("read guest memory")
        != BOOTED_MAGIC
    {
        assert!(
            start.elapsed() < BOOT_TIMEOUT,
            "{name} did not boot within {BOOT_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_state(driver: &QemuDriver, name: &str, state: DomainState) {
    let start = Instant::now();
    loop {
        let domains = driver.list().await.expect("list");
        if domain(&domains, name).state == state {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{name} never became {state:?}: {domains:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Samples twice, `wait` apart, and returns the second sample.
async fn sample_over(driver: &QemuDriver, wait: Duration) -> HostSample {
    driver.sample().await.unwrap();
    tokio::time::sleep(wait).await;
    driver.sample().await.unwrap()
}

/// The spin guest uses most of a CPU, the idle one almost none.
async fn check_cpu_use(driver: &QemuDriver, host: &HostInfo) {
    let sample = sample_over(driver, Duration::from_millis(1500)).await;
    assert_eq!(sample.cpu_load.len(), host.cpus as usize);
    let (spun, idled) = (
        domain(&sample.domains, "spin-1"),
        domain(&sample.domains, "idle-1"),
    );
    println!("spin: {spun:?}\nidle: {idled:?}");
    assert!(
        spun.cpu_percent > 50.0,
        "the spin guest uses {:.1} %",
        spun.cpu_percent
    );
    assert!(
        idled.cpu_percent < 20.0,
        "the idle guest uses {:.1} %",
        idled.cpu_percent
    );
    assert_eq!(spun.vcpus.len(), 1);
    assert!(
        spun.vcpus[0].cpu.is_some_and(|cpu| cpu < host.cpus),
        "{:?}",
        spun.vcpus
    );
}

/// A paused spin guest is `Paused` for QEMU and the trait, and uses no CPU; it resumes.
async fn check_pause(driver: &QemuDriver) {
    driver.pause("spin-1").await.unwrap();
    assert_eq!(
        driver.qemu_status("spin-1").await.unwrap(),
        RunStatus::Paused
    );
    let sample = sample_over(driver, Duration::from_millis(1000)).await;
    let paused = domain(&sample.domains, "spin-1");
    assert_eq!(paused.state, DomainState::Paused);
    assert!(
        paused.cpu_percent < 10.0,
        "a paused guest uses {:.1} %",
        paused.cpu_percent
    );
    driver.unpause("spin-1").await.unwrap();
    assert_eq!(
        domain(&driver.list().await.unwrap(), "spin-1").state,
        DomainState::Running
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_report_cpu_use_pause_resume_and_are_destroyed() {
    let _serial = SERIAL.lock().await;
    let lab = Lab::new();
    let driver = lab.driver("node").await;
    let host = driver.host_info().await.unwrap();
    println!("host: {host:?}");
    assert!(host.cpus > 0 && host.memory_total_mib > 0);
    assert!(
        host.description.contains("KVM") || host.description.contains("TCG"),
        "{}",
        host.description
    );

    let (spin, idle) = (
        lab.spec(TestGuest::Spin, "spin-1"),
        lab.spec(TestGuest::Idle, "idle-1"),
    );
    let created = driver.create(&spin, false).await.unwrap();
    assert_eq!(
        (created.state, created.uid.as_deref()),
        (DomainState::Running, Some("uid-spin-1"))
    );
    driver.create(&idle, false).await.unwrap();
    let domains = driver.list().await.unwrap();
    assert_eq!(domain(&domains, "spin-1").state, DomainState::Running);
    assert_eq!(domain(&domains, "idle-1").state, DomainState::Running);
    assert_eq!(
        driver.kvm_enabled("spin-1").await.unwrap(),
        driver.accel().is_kvm(),
        "query-kvm agrees"
    );
    wait_booted(&driver, "spin-1").await;
    wait_booted(&driver, "idle-1").await;
    check_cpu_use(&driver, &host).await;
    check_pause(&driver).await;

    driver.destroy("spin-1").await.unwrap();
    assert!(
        !process_runs(&created.id),
        "QEMU pid {} still runs after destroy",
        created.id
    );
    assert!(
        driver
            .list()
            .await
            .unwrap()
            .iter()
            .all(|d| d.name != "spin-1")
    );
    driver
        .destroy("spin-1")
        .await
        .expect("destroying what is gone succeeds");
    assert!(matches!(
        driver.pause("spin-1").await,
        Err(HypervisorError::NotFound(_))
    ));
    driver.destroy("idle-1").await.unwrap();
    assert!(driver.list().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creation_is_idempotent_and_a_restarted_driver_adopts_running_guests() {
    let _serial = SERIAL.lock().await;
    let lab = Lab::new();
    let (spin, idle) = (
        lab.spec(TestGuest::Spin, "spin-1"),
        lab.spec(TestGuest::Idle, "idle-1"),
    );
    let driver = lab.driver("node").await;
    let first = driver.create(&spin, false).await.unwrap();
    let again = driver.create(&spin, false).await.unwrap();
    assert_eq!(
        first.id, again.id,
        "a second create returns the running domain"
    );
    let mut other_uid = spin.clone();
    other_uid.uid = "uid-someone-else".into();
    let refused = driver.create(&other_uid, false).await.unwrap_err();
    assert!(
        matches!(refused, HypervisorError::Refused { .. }),
        "{refused}"
    );
    let idle_first = driver.create(&idle, true).await.unwrap();
    assert_eq!(idle_first.state, DomainState::Paused, "created paused (-S)");

    drop(driver);
    let restarted = lab.driver("node").await;
    let domains = restarted.list().await.unwrap();
    let (spin_now, idle_now) = (domain(&domains, "spin-1"), domain(&domains, "idle-1"));
    assert_eq!(
        (spin_now.id.as_str(), spin_now.state),
        (first.id.as_str(), DomainState::Running)
    );
    assert_eq!(
        (idle_now.id.as_str(), idle_now.state),
        (idle_first.id.as_str(), DomainState::Paused)
    );
    assert_eq!(spin_now.uid.as_deref(), Some("uid-spin-1"));
    assert_eq!(
        restarted.create(&spin, false).await.unwrap().id,
        first.id,
        "no second copy after a restart"
    );

    restarted.unpause("idle-1").await.unwrap();
    assert_eq!(
        domain(&restarted.list().await.unwrap(), "idle-1").state,
        DomainState::Running
    );
    restarted.destroy("spin-1").await.unwrap();
    restarted.destroy("idle-1").await.unwrap();
    assert!(!process_runs(&first.id) && !process_runs(&idle_first.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_destroys_a_guest_that_ignores_acpi_after_the_timeout() {
    let _serial = SERIAL.lock().await;
    let lab = Lab::new();
    let driver = lab.driver("node").await;
    let created = driver
        .create(&lab.spec(TestGuest::Spin, "spin-1"), false)
        .await
        .unwrap();
    wait_booted(&driver, "spin-1").await;
    let start = Instant::now();
    driver
        .shutdown("spin-1", Duration::from_secs(2))
        .await
        .unwrap();
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "gave up after {took:?}, before the timeout"
    );
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert!(!process_runs(&created.id));
    assert!(driver.list().await.unwrap().is_empty());
    driver
        .shutdown("spin-1", Duration::from_secs(2))
        .await
        .expect("shutting down what is gone succeeds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_and_leave_nothing_behind() {
    let _serial = SERIAL.lock().await;
    let lab = Lab::new();
    let driver = lab.driver("node").await;
    let mut bridged = lab.spec(TestGuest::Idle, "bridged-1");
    bridged.networks.push(Network {
        name: "eth0".into(),
        bridge: "herdnobr0".into(),
        mac: None,
    });
    let error = driver.create(&bridged, false).await.unwrap_err();
    assert!(
        matches!(error, HypervisorError::Refused { .. }) && error.to_string().contains("herdnobr0"),
        "{error}"
    );

    let mut missing = lab.spec(TestGuest::Idle, "missing-1");
    missing.disks[0].source = DiskSource::Path(lab.path().join("nope.img").display().to_string());
    let error = driver.create(&missing, false).await.unwrap_err();
    assert!(
        matches!(error, HypervisorError::Command { .. }) && error.to_string().contains("nope.img"),
        "{error}"
    );

    let local = lab.spec(TestGuest::Spin, "local-1");
    let error = driver.prepare_incoming(&local).await.unwrap_err();
    assert!(error.to_string().contains("local paths"), "{error}");
    driver.create(&local, false).await.unwrap();
    let endpoint = IncomingEndpoint {
        uri: "tcp:127.0.0.1:1".into(),
    };
    let params = MigrationParams {
        max_downtime: Duration::from_millis(300),
        bandwidth: None,
    };
    let error = driver
        .migrate_out("local-1", &endpoint, &params)
        .await
        .unwrap_err();
    assert!(
        matches!(error, HypervisorError::Refused { .. }) && error.to_string().contains("boot"),
        "{error}"
    );
    assert!(matches!(
        driver.migration_progress("nobody").await,
        Err(HypervisorError::NotFound(_))
    ));
    driver.destroy("local-1").await.unwrap();
    assert!(driver.list().await.unwrap().is_empty());
    assert_eq!(
        std::fs::read_dir(driver.state_dir()).unwrap().count(),
        0,
        "no run directory is left"
    );
}

/// `qemu-nbd` serving `image` as export `name` on a free port of 127.0.0.1. With `--fork` it
/// returns once it listens; the lab kills it (its command line names the image).
async fn serve_nbd(image: &Path, name: &str) -> String {
    require_program("qemu-nbd", "qemu-utils");
    let port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let status = tokio::process::Command::new("qemu-nbd")
        .args([
            "--fork",
            "--persistent",
            "--shared=4",
            "--format=raw",
            "--bind=127.0.0.1",
        ])
        .arg(format!("--port={port}"))
        .arg(format!("--export-name={name}"))
        .arg(image)
        .status()
        .await
        .expect("run qemu-nbd");
    assert!(status.success(), "qemu-nbd failed: {status}");
    format!("nbd://127.0.0.1:{port}/{name}")
}

async fn wait_migrated(source: &QemuDriver, name: &str) -> MigrationProgress {
    let start = Instant::now();
    loop {
        match source.migration_progress(name).await.unwrap() {
            MigrationProgress::Active { .. } => {}
            done @ MigrationProgress::Completed { .. } => return done,
            other => panic!("the migration ended with {other:?}"),
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the migration did not complete"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn counter(driver: &QemuDriver, name: &str) -> u32 {
    driver
        .read_guest_u32(name, COUNTER_ADDRESS)
        .await
        .expect("read the counter")
}

/// Waits until the counter guest's counter exceeds `value`.
async fn wait_counter_above(driver: &QemuDriver, name: &str, value: u32) {
    let start = Instant::now();
    while counter(driver, name).await <= value {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{name} does not count past {value}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Prepares the target, migrates, and checks the source ends paused in `postmigrate`.
/// Returns the counter read on the source just before the migration.
async fn migrate(source: &QemuDriver, target: &QemuDriver, spec: &DomainSpec) -> u32 {
    let name = spec.name.as_str();
    let endpoint = target.prepare_incoming(spec).await.unwrap();
    assert!(endpoint.uri.starts_with("tcp:127.0.0.1:"), "{endpoint:?}");
    let again = target.prepare_incoming(spec).await.unwrap();
    assert_eq!(again, endpoint, "preparing twice gives the same endpoint");
    assert_eq!(
        domain(&target.list().await.unwrap(), name).state,
        DomainState::Incoming
    );

    let before = counter(source, name).await;
    let params = MigrationParams {
        max_downtime: Duration::from_millis(300),
        bandwidth: None,
    };
    source.migrate_out(name, &endpoint, &params).await.unwrap();
    source
        .migrate_out(name, &endpoint, &params)
        .await
        .expect("asking twice is harmless");
    let done = wait_migrated(source, name).await;
    println!("migration: {done:?}");
    assert!(
        matches!(done, MigrationProgress::Completed { transferred_bytes, .. } if transferred_bytes > 0)
    );
    assert_eq!(
        source.qemu_status(name).await.unwrap(),
        RunStatus::Postmigrate
    );
    assert_eq!(
        domain(&source.list().await.unwrap(), name).state,
        DomainState::Paused
    );
    before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_migration_moves_the_counter_guest_without_restarting_it() {
    let _serial = SERIAL.lock().await;
    let lab = Lab::new();
    let uri = serve_nbd(&lab.image(TestGuest::Counter), "counter").await;
    let spec = test_guests::domain_spec("counter-1", "uid-counter-1", DiskSource::Nbd(uri));
    let (source, target) = (lab.driver("source").await, lab.driver("target").await);
    source.create(&spec, false).await.unwrap();
    wait_booted(&source, "counter-1").await;
    wait_counter_above(&source, "counter-1", 0).await;

    let before = migrate(&source, &target, &spec).await;
    wait_state(&target, "counter-1", DomainState::Running).await;
    let after = counter(&target, "counter-1").await;
    println!("counter: {before} on the source before, {after} on the target after");
    assert!(after >= before, "the guest restarted: {after} < {before}");
    wait_counter_above(&target, "counter-1", after).await;

    source.destroy("counter-1").await.unwrap();
    assert_eq!(
        domain(&target.list().await.unwrap(), "counter-1").state,
        DomainState::Running
    );
    target.destroy("counter-1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tcg_fallback_runs_guests_too() {
    let _serial = SERIAL.lock().await;
    let lab = Lab::new();
    let mut config = QemuConfig::new(lab.path().join("node"), LOCALHOST);
    config.accel = AccelChoice::Tcg;
    let driver = QemuDriver::new(config).await.unwrap();
    let host = driver.host_info().await.unwrap();
    assert!(host.description.contains("TCG"), "{}", host.description);
    driver
        .create(&lab.spec(TestGuest::Counter, "counter-1"), false)
        .await
        .unwrap();
    assert!(!driver.kvm_enabled("counter-1").await.unwrap());
    wait_booted(&driver, "counter-1").await;
    wait_counter_above(&driver, "counter-1", 0).await;
    driver.destroy("counter-1").await.unwrap();
}
