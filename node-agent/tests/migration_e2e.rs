//! Live migration end to end: etcd, the controller and agents driving real QEMU guests whose
//! disks are NBD exports; every outcome is checked on the QEMU processes themselves.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use common::{
    Process, Reaper, eventually, qemu_of, read_guest_u32, serve_nbd, start_agent, start_controller,
    status_in, wait_heartbeats,
};
use herd_agent::test_guests::{COUNTER_ADDRESS, TestGuest};
use herd_crds::cluster_policy::ClusterPolicySpec;
use herd_crds::migration::{MigrationPhase, MigrationSpec, MigrationStatus};
use herd_crds::node::NodeSpec;
use herd_crds::virtual_machine::VmState;
use herd_crds::{
    ClusterPolicy, Migration, Node, Object, VirtualMachine, VirtualMachineSpec, Volume,
};
use herd_store::Store;
use herd_store::txn::Precondition;
use herd_tests::{EtcdServer, unique_prefix};

/// A lab: etcd, the controller, and a work directory for state dirs and images.
struct Lab {
    etcd: EtcdServer,
    prefix: String,
    store: Store,
    work: tempfile::TempDir,
    _controller: Process,
    _reaper: Reaper,
}

impl Lab {
    async fn start() -> Result<Self> {
        let etcd = EtcdServer::start()?;
        let prefix = unique_prefix();
        let store = Store::connect(&etcd.endpoints(), &prefix).await?;
        let work = tempfile::tempdir()?;
        let reaper = Reaper(work.path().to_owned());
        let controller = start_controller(&etcd, &prefix)?;
        Ok(Self {
            etcd,
            prefix,
            store,
            work,
            _controller: controller,
            _reaper: reaper,
        })
    }

    fn state(&self, node: &str) -> PathBuf {
        self.work.path().join(node)
    }

    fn agent(&self, node: &str) -> Result<Process> {
        start_agent(&self.etcd, &self.prefix, node, &self.state(node))
    }

    /// A Volume named `name` whose export is `guest`'s image served by qemu-nbd (the storage
    /// role is another issue: here the test plays it, writing the Volume's status itself).
    async fn volume(&self, name: &str, guest: TestGuest) -> Result<()> {
        let images = self.work.path().join("images").join(name);
        std::fs::create_dir_all(&images)?;
        let image = guest.write_image(&images)?;
        let endpoint = serve_nbd(&image, name)?;
        herd_tests::ready_volume(&self.store, name, &image, &endpoint).await?;
        Ok(())
    }

    async fn vm(&self, name: &str, volume: &str) -> Result<()> {
        self.vm_with(name, volume, 300).await
    }

    /// A VM whose migration accepts at most `max_downtime_ms` of pause.
    async fn vm_with(&self, name: &str, volume: &str, max_downtime_ms: u32) -> Result<()> {
        let text = format!(
            "apiVersion: herd.dev/v1alpha1\nkind: VirtualMachine\nmetadata: {{name: {name}}}\nspec:\n  memoryMiB: 32\n  \
             boot: {{disk: root}}\n  disks:\n  - {{name: root, volume: {volume}, readOnly: true}}\n  \
             migration: {{maxDowntimeMs: {max_downtime_ms}}}\n"
        );
        self.store
            .create(&herd_crds::yaml::from_str::<VirtualMachine>(&text)?)
            .await?;
        Ok(())
    }

    async fn migrate(&self, name: &str, vm: &str, target: Option<&str>) -> Result<()> {
        let spec = MigrationSpec {
            vm: vm.to_owned(),
            target_node: target.map(str::to_owned),
            reason: Default::default(),
        };
        self.store
            .create::<Migration>(&Object::new(name, spec))
            .await?;
        Ok(())
    }

    async fn migration_ends(&self, name: &str, seconds: u64) -> Result<MigrationStatus> {
        eventually(seconds, &format!("migration {name} to end"), || async {
            let status = self.store.get_status::<MigrationSpec>(name).await?;
            Ok(status.map(|s| s.value).filter(|s| s.phase.is_final()))
        })
        .await
    }

    async fn phase_reaches(&self, name: &str, phase: MigrationPhase, seconds: u64) -> Result<()> {
        eventually(seconds, &format!("migration {name} {phase:?}"), || async {
            let status = self.store.get_status::<MigrationSpec>(name).await?;
            Ok(status.filter(|s| s.value.phase == phase).map(|_| ()))
        })
        .await
    }

    /// The live QEMU processes of `vm` on each of `nodes`.
    fn processes(&self, vm: &str, nodes: &[&str]) -> Vec<(String, Vec<u32>)> {
        nodes
            .iter()
            .map(|node| (node.to_string(), qemu_of(&self.state(node), vm)))
            .collect()
    }

    /// Asserts `vm` runs as exactly one QEMU process, on `node`.
    fn runs_only_on(&self, vm: &str, node: &str, nodes: &[&str]) {
        let processes = self.processes(vm, nodes);
        let total: usize = processes.iter().map(|(_, pids)| pids.len()).sum();
        let here = processes
            .iter()
            .find(|(n, _)| n == node)
            .map_or(0, |(_, pids)| pids.len());
        assert_eq!(
            (total, here),
            (1, 1),
            "{vm} must run once, on {node}: {processes:?}"
        );
    }

    async fn policy(&self, yaml: &str) -> Result<()> {
        let spec: ClusterPolicySpec = herd_crds::yaml::from_str(yaml)?;
        self.store
            .create::<ClusterPolicy>(&Object::new("default", spec))
            .await?;
        Ok(())
    }
}

/// Waits until the incoming QEMU process exits or is destroyed (it may take a moment).
async fn settle(lab: &Lab, vm: &str, node: &str, nodes: &[&str]) -> Result<()> {
    eventually(30, &format!("{vm} to run only on {node}"), || async {
        let processes = lab.processes(vm, nodes);
        let total: usize = processes.iter().map(|(_, pids)| pids.len()).sum();
        let here = processes
            .iter()
            .find(|(n, _)| n == node)
            .map_or(0, |(_, p)| p.len());
        Ok((total == 1 && here == 1).then_some(()))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_vm_moves_keeps_counting_and_refusals_leave_it_in_place() -> Result<()> {
    let lab = Lab::start().await?;
    let _ferby = lab.agent("ferby")?;
    wait_heartbeats(&lab.store, &["ferby"]).await?;
    lab.volume("counter-disk", TestGuest::Counter).await?;
    lab.vm("counter", "counter-disk").await?;
    status_in(&lab.store, "counter", VmState::Running, 90).await?;
    let ferby_state = lab.state("ferby");
    eventually(60, "the guest counting", || async {
        Ok((read_guest_u32(&ferby_state, "counter", COUNTER_ADDRESS).await? > 0).then_some(()))
    })
    .await?;

    let _herby = lab.agent("herby")?;
    let _gerby = lab.agent("gerby")?;
    wait_heartbeats(&lab.store, &["herby", "gerby"]).await?;
    let mut gerby: Node = lab.store.get_existing("gerby").await?;
    gerby.spec = NodeSpec {
        accept_migrations: false,
        ..gerby.spec
    };
    lab.store.update(&gerby).await?;
    let nodes = ["ferby", "gerby", "herby"];

    // A target that refuses migrations: the migration fails, the VM stays.
    lab.migrate("to-gerby", "counter", Some("gerby")).await?;
    let refused = lab.migration_ends("to-gerby", 20).await?;
    assert_eq!(refused.phase, MigrationPhase::Failed);
    assert!(
        refused.message.contains("does not accept migrations"),
        "{}",
        refused.message
    );
    lab.runs_only_on("counter", "ferby", &nodes);

    // The real move, with no target named: herby is the only node that accepts.
    let before = read_guest_u32(&ferby_state, "counter", COUNTER_ADDRESS).await?;
    lab.migrate("move-1", "counter", None).await?;
    let done = lab.migration_ends("move-1", 90).await?;
    assert_eq!(done.phase, MigrationPhase::Completed, "{}", done.message);
    assert_eq!(
        (done.source_node.as_deref(), done.target_node.as_deref()),
        (Some("ferby"), Some("herby"))
    );
    assert!(
        done.total_time_ms.is_some() && done.downtime_ms.is_some(),
        "{done:?}"
    );
    settle(&lab, "counter", "herby", &nodes).await?;
    let after = read_guest_u32(&lab.state("herby"), "counter", COUNTER_ADDRESS).await?;
    assert!(
        after >= before,
        "the guest kept counting ({before} before, {after} after): it was moved, not restarted"
    );
    let status = status_in(&lab.store, "counter", VmState::Running, 30).await?;
    assert_eq!(status.node_name.as_deref(), Some("herby"));

    // And back: a domain that arrived by migration can leave again.
    let before = read_guest_u32(&lab.state("herby"), "counter", COUNTER_ADDRESS).await?;
    lab.migrate("move-2", "counter", Some("ferby")).await?;
    let back = lab.migration_ends("move-2", 90).await?;
    assert_eq!(back.phase, MigrationPhase::Completed, "{}", back.message);
    settle(&lab, "counter", "ferby", &nodes).await?;
    let after = read_guest_u32(&ferby_state, "counter", COUNTER_ADDRESS).await?;
    assert!(
        after >= before,
        "still counting after the second move ({before} -> {after})"
    );

    let (events, _) = lab.store.list::<herd_crds::Event>().await?;
    for (kind, name) in [
        ("VirtualMachine", "counter"),
        ("Node", "ferby"),
        ("Node", "herby"),
    ] {
        assert!(
            events.iter().any(|e| e.reason == "MigrationCompleted"
                && e.involved_object.kind == kind
                && e.involved_object.name == name),
            "a MigrationCompleted event on {kind} {name}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_dead_agents_cancel_and_the_vm_stays_on_its_source() -> Result<()> {
    let lab = Lab::start().await?;
    // Throttled to 1 MiB/s, a guest that keeps dirtying a page cannot be stopped for less than
    // the 4 ms one page takes: with a 1 ms downtime limit its migration never converges.
    lab.policy("migration: {bandwidthMiBps: 0.05, completionTimeoutPerGibSeconds: 1}")
        .await?;
    let _ferby = lab.agent("ferby")?;
    wait_heartbeats(&lab.store, &["ferby"]).await?;
    lab.volume("dirty-disk", TestGuest::Dirty).await?;
    lab.vm_with("dirty", "dirty-disk", 1).await?;
    status_in(&lab.store, "dirty", VmState::Running, 90).await?;
    let mut herby = lab.agent("herby")?;
    wait_heartbeats(&lab.store, &["herby"]).await?;
    let nodes = ["ferby", "herby"];

    // 1. Timeout: aborted, the source keeps running.
    let started = Instant::now();
    lab.migrate("slow", "dirty", Some("herby")).await?;
    let aborted = lab.migration_ends("slow", 60).await?;
    assert_eq!(aborted.phase, MigrationPhase::Aborted, "{aborted:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "aborted at the timeout, not before"
    );
    settle(&lab, "dirty", "ferby", &nodes).await?;
    status_in(&lab.store, "dirty", VmState::Running, 30).await?;

    // 2. The target agent dies mid-migration.
    lab.store
        .delete::<ClusterPolicy>("default", Precondition::None)
        .await?;
    lab.policy("migration: {bandwidthMiBps: 0.05}").await?;
    lab.migrate("target-dies", "dirty", Some("herby")).await?;
    lab.phase_reaches("target-dies", MigrationPhase::Running, 30)
        .await?;
    herby.kill();
    let failed = lab.migration_ends("target-dies", 60).await?;
    assert_eq!(failed.phase, MigrationPhase::Failed, "{}", failed.message);
    assert!(failed.message.contains("herby"), "{}", failed.message);
    settle(&lab, "dirty", "ferby", &nodes).await?;
    let _herby = lab.agent("herby")?;
    wait_heartbeats(&lab.store, &["herby"]).await?;

    // 3. The source agent dies mid-migration.
    lab.migrate("source-dies", "dirty", Some("herby")).await?;
    lab.phase_reaches("source-dies", MigrationPhase::Running, 30)
        .await?;
    drop(_ferby);
    let failed = lab.migration_ends("source-dies", 60).await?;
    assert_eq!(failed.phase, MigrationPhase::Failed, "{}", failed.message);
    assert!(failed.message.contains("ferby"), "{}", failed.message);
    settle(&lab, "dirty", "ferby", &nodes).await?;
    let _ferby = lab.agent("ferby")?;
    let status = status_in(&lab.store, "dirty", VmState::Running, 30).await?;
    assert_eq!(status.node_name.as_deref(), Some("ferby"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_moves_every_vm_away_at_most_two_at_a_time() -> Result<()> {
    let lab = Lab::start().await?;
    let _ferby = lab.agent("ferby")?;
    wait_heartbeats(&lab.store, &["ferby"]).await?;
    lab.volume("shared-disk", TestGuest::Idle).await?;
    for i in 0..3 {
        lab.vm(&format!("vm-{i}"), "shared-disk").await?;
    }
    for i in 0..3 {
        status_in(&lab.store, &format!("vm-{i}"), VmState::Running, 90).await?;
    }
    let _gerby = lab.agent("gerby")?;
    let _herby = lab.agent("herby")?;
    wait_heartbeats(&lab.store, &["gerby", "herby"]).await?;

    // What `herdctl drain ferby` does: cordon, then one Drain migration per VM.
    let mut ferby: Node = lab.store.get_existing("ferby").await?;
    ferby.spec.unschedulable = true;
    lab.store.update(&ferby).await?;
    for i in 0..3 {
        let spec = MigrationSpec {
            vm: format!("vm-{i}"),
            target_node: None,
            reason: herd_crds::migration::MigrationReason::Drain,
        };
        lab.store
            .create::<Migration>(&Object::new(format!("drain-{i}"), spec))
            .await?;
    }
    let mut most_in_flight = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        // One read at one revision: reading the three one by one could see a finished
        // migration still running and its successor already started.
        let (mut in_flight, mut ended) = (0, 0);
        for migration in lab.store.list_with_status::<MigrationSpec>().await? {
            match migration.status.map(|s| s.phase) {
                Some(MigrationPhase::PreparingTarget | MigrationPhase::Running) => in_flight += 1,
                Some(phase) if phase.is_final() => ended += 1,
                _ => {}
            }
        }
        most_in_flight = most_in_flight.max(in_flight);
        if ended == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "the drain did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        most_in_flight <= 2,
        "at most 2 outbound migrations per node; saw {most_in_flight}"
    );
    for i in 0..3 {
        let vm = format!("vm-{i}");
        let status = lab
            .store
            .get_status::<MigrationSpec>(&format!("drain-{i}"))
            .await?
            .context("status")?
            .value;
        assert_eq!(
            status.phase,
            MigrationPhase::Completed,
            "{vm}: {}",
            status.message
        );
        let target = status.target_node.clone().context("target")?;
        assert_ne!(target, "ferby");
        settle(&lab, &vm, &target, &["ferby", "gerby", "herby"]).await?;
    }
    assert!(
        qemu_of(&lab.state("ferby"), "").is_empty()
            || lab.processes("vm-0", &["ferby"])[0].1.is_empty()
    );
    let _ = Path::new("");
    Ok(())
}

#[allow(dead_code)]
fn unused(_: &Volume, _: &VirtualMachineSpec) {}
