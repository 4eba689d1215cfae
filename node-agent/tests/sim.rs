//! The `sim` driver through the `Hypervisor` trait: load models, contention, placement,
//! pause, live migration between hosts of one fabric, and PlanetLab traces (a real file from
//! `../shared/traces/planetlab/20110306/` and broken ones).
//!
//! Time is tokio's paused clock (`start_paused`), moved with `tokio::time::advance`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use herd_agent::hypervisor::{
    DomainInfo, DomainState, Hypervisor, HypervisorError, MigrationParams, MigrationProgress,
};
use herd_agent::sim::{SimConfig, SimDriver, SimFabric, Trace, TraceError};
use herd_crds::assignment::{DiskSource, DomainDisk, DomainSpec};
use tokio::time::advance;

const GIB: u64 = 1024 * 1024 * 1024;

/// The day of PlanetLab traces the tests replay.
fn planetlab_day() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/traces/planetlab/20110306")
}

/// The first trace file of the day, by sorted name.
fn first_planetlab_trace() -> PathBuf {
    let day = planetlab_day();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&day)
        .unwrap_or_else(|e| panic!("the PlanetLab traces should be in {}: {e}", day.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files.into_iter().next().expect("at least one trace file")
}

fn spec(name: &str, vcpus: u32, cmdline: &str) -> DomainSpec {
    DomainSpec {
        name: name.into(),
        uid: format!("uid-{name}"),
        vcpus,
        memory_mib: 1024,
        boot: herd_crds::virtual_machine::Boot {
            kernel: Some("/boot/vmlinuz".into()),
            cmdline: Some(format!("console=ttyS0 {cmdline}")),
            ..Default::default()
        },
        disks: vec![DomainDisk {
            name: "root".into(),
            source: DiskSource::Nbd(format!("nbd://10.0.0.1:10809/{name}-disk")),
            target: None,
            read_only: false,
        }],
        networks: Vec::new(),
        migration: Default::default(),
    }
}

fn busy(name: &str) -> DomainSpec {
    spec(name, 1, "herd.sim.load=constant:100")
}

async fn domain(driver: &SimDriver, name: &str) -> DomainInfo {
    let sample = driver.sample().await.expect("sample");
    sample
        .domains
        .into_iter()
        .find(|d| d.name == name)
        .unwrap_or_else(|| panic!("domain {name} should be listed"))
}

async fn cpu_percent(driver: &SimDriver, name: &str) -> f64 {
    domain(driver, name).await.cpu_percent
}

async fn host_load(driver: &SimDriver) -> Vec<f64> {
    driver.sample().await.expect("sample").cpu_load
}

fn assert_near(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() < 1e-6,
        "expected {expected}, got {actual}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_simulated_host_says_it_is_simulated() {
    let fabric = SimFabric::new();
    let ferby = fabric.host("ferby", 2, 4096).unwrap();
    assert_eq!(ferby.driver(), "sim");
    let info = ferby.host_info().await.unwrap();
    assert_eq!(
        (info.cpus, info.memory_total_mib, info.memory_free_mib),
        (2, 4096, 4096)
    );
    assert!(
        info.description.starts_with("simulated host"),
        "{}",
        info.description
    );
    ferby.create(&busy("a"), false).await.unwrap();
    assert_eq!(ferby.host_info().await.unwrap().memory_free_mib, 3072);
}

#[tokio::test(start_paused = true)]
async fn constant_and_step_models_follow_time() {
    let fabric = SimFabric::new();
    let ferby = fabric.host("ferby", 4, 8192).unwrap();
    ferby
        .create(&spec("flat", 2, "herd.sim.load=constant:80"), false)
        .await
        .unwrap();
    ferby
        .create(&spec("steps", 1, "herd.sim.load=step:10,90,60"), false)
        .await
        .unwrap();
    ferby.create(&spec("idle", 1, ""), false).await.unwrap();
    advance(Duration::from_secs(59)).await;
    assert_near(cpu_percent(&ferby, "flat").await, 160.0);
    assert_near(cpu_percent(&ferby, "steps").await, 10.0);
    let idle = cpu_percent(&ferby, "idle").await;
    assert!((0.0..=1.0).contains(&idle), "idle at {idle}%");
    advance(Duration::from_secs(1)).await;
    assert_near(cpu_percent(&ferby, "steps").await, 90.0);
    let flat = domain(&ferby, "flat").await;
    assert_eq!(flat.vcpus.len(), 2);
    assert!(
        flat.vcpus
            .iter()
            .all(|v| v.percent == 80.0 && v.cpu.is_some())
    );
}

#[tokio::test(start_paused = true)]
async fn two_busy_domains_share_one_cpu_and_not_two() {
    let fabric = SimFabric::new();
    let one = fabric.host("one", 1, 4096).unwrap();
    let two = fabric.host("two", 2, 4096).unwrap();
    for host in [&one, &two] {
        host.create(&busy("a"), false).await.unwrap();
        host.create(&busy("b"), false).await.unwrap();
    }
    advance(Duration::from_secs(1)).await;
    assert_near(cpu_percent(&one, "a").await, 50.0);
    assert_near(cpu_percent(&one, "b").await, 50.0);
    assert_eq!(host_load(&one).await, [100.0]);
    assert_near(cpu_percent(&two, "a").await, 100.0);
    assert_near(cpu_percent(&two, "b").await, 100.0);
    assert_eq!(host_load(&two).await, [100.0, 100.0]);
    // The pure model also tells what was asked for: twice what one CPU gives.
    let load = one.load().unwrap();
    assert_eq!(load.demand_percent(), 200.0);
    assert_eq!(load.busy_vcpus(80.0), 2);
    assert_eq!(load.domain("a").unwrap().demand, 100.0);
}

/// vCPU → CPU for every domain, by name.
async fn placements(driver: &SimDriver) -> Vec<(String, Vec<Option<u32>>)> {
    driver
        .sample()
        .await
        .unwrap()
        .domains
        .into_iter()
        .map(|d| (d.name, d.vcpus.iter().map(|v| v.cpu).collect()))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn placement_does_not_depend_on_creation_order() {
    let fabric = SimFabric::new();
    let domains = [
        spec("web", 2, "herd.sim.load=constant:60"),
        spec("db", 1, "herd.sim.load=constant:90"),
        spec("batch", 2, "herd.sim.load=constant:30"),
        spec("idle", 1, ""),
    ];
    let forward = fabric.host("forward", 3, 16384).unwrap();
    let backward = fabric.host("backward", 3, 16384).unwrap();
    for domain in &domains {
        forward.create(domain, false).await.unwrap();
    }
    for domain in domains.iter().rev() {
        backward.create(domain, false).await.unwrap();
    }
    let placed = placements(&forward).await;
    assert_eq!(placed, placements(&backward).await);
    // Most demanding first, each on the least loaded CPU: db 90 → 0, web 60 → 1 and 2,
    // batch 30 → 1 and 2 (90 each), idle → 0.
    let expected = [
        ("batch", vec![Some(1), Some(2)]),
        ("db", vec![Some(0)]),
        ("idle", vec![Some(0)]),
        ("web", vec![Some(1), Some(2)]),
    ];
    let expected: Vec<(String, Vec<Option<u32>>)> = expected
        .into_iter()
        .map(|(n, c)| (n.to_owned(), c))
        .collect();
    assert_eq!(placed, expected);
    // The same instant always gives the same answer.
    assert_eq!(placed, placements(&forward).await);
}

#[tokio::test(start_paused = true)]
async fn pause_grants_nothing_until_unpaused() {
    let fabric = SimFabric::new();
    let ferby = fabric.host("ferby", 1, 4096).unwrap();
    ferby.create(&busy("a"), false).await.unwrap();
    ferby.create(&busy("b"), false).await.unwrap();
    ferby.pause("a").await.unwrap();
    ferby.pause("a").await.unwrap();
    let a = domain(&ferby, "a").await;
    assert_eq!((a.state, a.cpu_percent), (DomainState::Paused, 0.0));
    assert_near(cpu_percent(&ferby, "b").await, 100.0);
    ferby.unpause("a").await.unwrap();
    assert_near(cpu_percent(&ferby, "a").await, 50.0);
    let started_paused = ferby.create(&busy("c"), true).await.unwrap();
    assert_eq!(started_paused.state, DomainState::Paused);
    assert!(matches!(
        ferby.pause("nope").await,
        Err(HypervisorError::NotFound(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn create_is_idempotent_and_refuses_another_uid() {
    let fabric = SimFabric::new();
    let ferby = fabric.host("ferby", 1, 4096).unwrap();
    let first = ferby.create(&busy("a"), false).await.unwrap();
    let again = ferby.create(&busy("a"), false).await.unwrap();
    assert_eq!((first.id, first.uid.as_deref()), (again.id, Some("uid-a")));
    assert_eq!(ferby.list().await.unwrap().len(), 1);
    let mut other = busy("a");
    other.uid = "uid-b".into();
    let error = ferby.create(&other, false).await.unwrap_err().to_string();
    assert!(
        error.contains("uid \"uid-a\" runs here; destroy it first"),
        "{error}"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_is_immediate_and_destroy_reaps() {
    let fabric = SimFabric::new();
    let ferby = fabric.host("ferby", 1, 4096).unwrap();
    ferby.create(&busy("a"), false).await.unwrap();
    ferby
        .shutdown("a", Duration::from_secs(3600))
        .await
        .unwrap();
    let a = domain(&ferby, "a").await;
    assert_eq!((a.state, a.cpu_percent), (DomainState::Shutdown, 0.0));
    assert_eq!(host_load(&ferby).await, [0.0]);
    ferby.destroy("a").await.unwrap();
    ferby.destroy("a").await.unwrap();
    assert!(ferby.list().await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_bad_command_line_is_refused_with_the_token() {
    let fabric = SimFabric::new();
    let ferby = fabric.host("ferby", 1, 4096).unwrap();
    let error = ferby
        .create(&spec("a", 1, "herd.sim.load=constant:180"), false)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "domain \"a\" cannot start: kernel command line token \"herd.sim.load=constant:180\": \
         \"180\" is not a CPU percentage from 0 to 100"
    );
    assert!(ferby.list().await.unwrap().is_empty());
}

fn params() -> MigrationParams {
    MigrationParams {
        max_downtime: Duration::from_millis(300),
        bandwidth: None,
    }
}

#[tokio::test(start_paused = true)]
async fn a_migration_moves_the_load_to_the_target_host() {
    let fabric = SimFabric::new();
    let ferby = fabric.host("ferby", 1, 8192).unwrap();
    let gerby = fabric.host("gerby", 1, 8192).unwrap();
    let mut vm = spec("vm", 1, "herd.sim.load=step:80,30,100");
    vm.memory_mib = 2048;
    ferby.create(&vm, false).await.unwrap();
    advance(Duration::from_secs(10)).await;
    let endpoint = gerby.prepare_incoming(&vm).await.unwrap();
    assert_eq!(endpoint.uri, "sim://gerby/vm");
    assert_eq!(gerby.prepare_incoming(&vm).await.unwrap(), endpoint);
    assert_eq!(domain(&gerby, "vm").await.state, DomainState::Incoming);
    ferby.migrate_out("vm", &endpoint, &params()).await.unwrap();
    ferby.migrate_out("vm", &endpoint, &params()).await.unwrap();

    // 2 GiB at the default 1 GiB/s: 2 s. Halfway, the source still carries the load.
    advance(Duration::from_secs(1)).await;
    assert_eq!(
        ferby.migration_progress("vm").await.unwrap(),
        MigrationProgress::Active {
            transferred_bytes: GIB,
            remaining_bytes: GIB
        }
    );
    assert_eq!(
        (host_load(&ferby).await, host_load(&gerby).await),
        (vec![80.0], vec![0.0])
    );

    advance(Duration::from_secs(1)).await;
    assert_eq!(
        ferby.migration_progress("vm").await.unwrap(),
        MigrationProgress::Completed {
            total: Duration::from_secs(2),
            downtime: Duration::from_millis(20),
            transferred_bytes: 2 * GIB
        }
    );
    assert_eq!(
        (host_load(&ferby).await, host_load(&gerby).await),
        (vec![0.0], vec![80.0])
    );
    // The source waits, paused, to be destroyed; it cannot run a second copy.
    assert_eq!(domain(&ferby, "vm").await.state, DomainState::Paused);
    assert!(ferby.unpause("vm").await.is_err());
    assert_eq!(domain(&gerby, "vm").await.state, DomainState::Running);
    ferby.destroy("vm").await.unwrap();

    // The guest clock came along: 12 s at switch-over, so the step at 100 s comes 88 s later.
    advance(Duration::from_secs(87)).await;
    assert_eq!(host_load(&gerby).await, [80.0]);
    advance(Duration::from_secs(1)).await;
    assert_eq!(host_load(&gerby).await, [30.0]);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_migration_leaves_the_vm_on_the_source() {
    let fabric = SimFabric::with_config(SimConfig {
        bandwidth: GIB / 4,
        downtime: Duration::from_millis(50),
    });
    let ferby = fabric.host("ferby", 1, 8192).unwrap();
    let gerby = fabric.host("gerby", 1, 8192).unwrap();
    ferby.create(&busy("vm"), false).await.unwrap();
    let endpoint = gerby.prepare_incoming(&busy("vm")).await.unwrap();
    ferby.migrate_out("vm", &endpoint, &params()).await.unwrap();
    advance(Duration::from_secs(2)).await;
    assert!(matches!(
        ferby.migration_progress("vm").await.unwrap(),
        MigrationProgress::Active { transferred_bytes, remaining_bytes }
            if transferred_bytes == GIB / 2 && remaining_bytes == GIB / 2
    ));
    ferby.cancel_migration("vm").await.unwrap();
    advance(Duration::from_secs(60)).await;
    assert_eq!(
        ferby.migration_progress("vm").await.unwrap(),
        MigrationProgress::Cancelled
    );
    assert_eq!(domain(&ferby, "vm").await.state, DomainState::Running);
    assert_eq!(host_load(&ferby).await, [100.0]);
    assert_eq!(domain(&gerby, "vm").await.state, DomainState::Incoming);
}

#[tokio::test(start_paused = true)]
async fn a_vm_with_a_local_disk_cannot_migrate() {
    let fabric = SimFabric::new();
    let ferby = fabric.host("ferby", 1, 8192).unwrap();
    let gerby = fabric.host("gerby", 1, 8192).unwrap();
    let mut vm = busy("vm");
    vm.disks[0].source = DiskSource::Path("/var/lib/herd/vm.img".into());
    ferby.create(&vm, false).await.unwrap();
    let error = gerby.prepare_incoming(&vm).await.unwrap_err().to_string();
    assert!(error.contains("local paths"), "{error}");
}

#[test]
fn a_real_planetlab_trace_parses() {
    let path = first_planetlab_trace();
    let trace = Trace::read(&path).unwrap();
    assert_eq!(trace.samples().len(), 288, "{}", path.display());
    assert!(trace.samples().iter().all(|percent| *percent <= 100));
    assert_eq!(trace.source(), path);
}

#[tokio::test(start_paused = true)]
async fn a_trace_replays_one_sample_per_step_and_wraps_around() {
    let path = first_planetlab_trace();
    let samples = Trace::read(&path).unwrap().samples().to_vec();
    let fabric = SimFabric::new();
    let ferby = fabric.host("ferby", 1, 4096).unwrap();
    let cmdline = format!("herd.sim.load=trace:{} herd.sim.step=2", path.display());
    ferby
        .create(&spec("replay", 1, &cmdline), false)
        .await
        .unwrap();
    for index in [0, 1, 2, 100, 287] {
        let at = fabric.now();
        advance(Duration::from_secs(2 * index) - Duration::from_secs_f64(at)).await;
        advance(Duration::from_millis(500)).await;
        let expected = f64::from(samples[index as usize]);
        assert_near(cpu_percent(&ferby, "replay").await, expected);
    }
    // 288 samples of 2 s: at 576 s the day starts again.
    let at = fabric.now();
    advance(Duration::from_secs(576) - Duration::from_secs_f64(at)).await;
    assert_near(cpu_percent(&ferby, "replay").await, f64::from(samples[0]));
}

/// Writes `text` as a trace file and tries to start a domain replaying it.
async fn start_with_trace(text: &str) -> (PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken-vm");
    std::fs::write(&path, text).unwrap();
    let fabric = SimFabric::new();
    let ferby = fabric.host("ferby", 1, 4096).unwrap();
    let cmdline = format!("herd.sim.load=trace:{}", path.display());
    let error = ferby
        .create(&spec("replay", 1, &cmdline), false)
        .await
        .unwrap_err()
        .to_string();
    assert!(ferby.list().await.unwrap().is_empty());
    (path, error)
}

#[tokio::test(start_paused = true)]
async fn broken_trace_files_are_refused_naming_file_and_line() {
    let cases = [
        (
            "12\n7.5\n",
            "line 2: \"7.5\" is not an integer CPU percentage (0-100)",
        ),
        ("12\n13\n101\n", "line 3: CPU percentage 101 is above 100"),
        ("", "holds no samples"),
    ];
    for (text, problem) in cases {
        let (path, error) = start_with_trace(text).await;
        let expected_start = format!(
            "domain \"replay\" cannot start: trace file {}",
            path.display()
        );
        assert!(error.starts_with(&expected_start), "{error}");
        assert!(error.contains(problem), "{error}");
    }
    let missing = Trace::read(Path::new("/nonexistent/trace")).unwrap_err();
    assert!(matches!(missing, TraceError::Read { .. }), "{missing}");
}
