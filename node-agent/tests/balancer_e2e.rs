//! The balancer on real VMs: three agents driving QEMU, each node declaring a capacity of one
//! CPU; three guests that keep a vCPU 100 % busy start on ferby; the policy (`seed`, and
//! `forecast`) moves them by live migration until each node has one, and then nothing more
//! moves.
//!
//! The nodes share this machine's CPUs, so each declares one CPU (`capacity.cpus: 1`) and the
//! balancer judges it by its own guests' use on that one CPU (see
//! `herd_controller::balancer::observe::host_view`).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use common::{
    Process, Reaper, eventually, qemu_of, serve_nbd, start_agent, start_controller, status_in,
    wait_heartbeats,
};
use herd_agent::test_guests::TestGuest;
use herd_crds::balancing::{BalancerDecision, BalancerMoveReason};
use herd_crds::migration::MigrationPhase;
use herd_crds::node::{Capacity, NodeSpec};
use herd_crds::virtual_machine::VmState;
use herd_crds::{
    ClusterPolicy, Event, MigrationSpec, Node, Object, VirtualMachine, VirtualMachineSpec,
};
use herd_store::Store;
use herd_tests::{EtcdServer, unique_prefix};

const NODES: [&str; 3] = ["ferby", "gerby", "herby"];
const VMS: [&str; 3] = ["spin-1", "spin-2", "spin-3"];

/// The seed's knobs at the lab's pace for `policy`: 2 s samples, 5 points; three 1-vCPU
/// guests fit one declared CPU only with an overcommit of 3.
fn cluster_policy(policy: &str) -> String {
    format!(
        "balancer: {{enabled: true, policy: {policy}, thresholdPercent: 80, \
         pointsToTrigger: 5, sampleIntervalSeconds: 2}}\n\
         scheduling: {{cpuOvercommitRatio: 4}}\n"
    )
}

async fn declare_nodes(store: &Store, policy: &str) -> Result<()> {
    for node in NODES {
        let spec = NodeSpec {
            heartbeat_interval_seconds: 2,
            capacity: Some(Capacity {
                cpus: Some(1),
                memory_mib: Some(2048),
            }),
            ..Default::default()
        };
        store.create::<Node>(&Object::new(node, spec)).await?;
    }
    let policy = herd_crds::yaml::from_str(&cluster_policy(policy))?;
    store
        .create::<ClusterPolicy>(&Object::new("default", policy))
        .await?;
    Ok(())
}

/// One spin image served by qemu-nbd, shared read-only by all three guests (they never write).
async fn spin_disk(store: &Store, dir: &std::path::Path) -> Result<()> {
    let image = TestGuest::Spin.write_image(dir)?;
    let endpoint = serve_nbd(&image, "spin-disk")?;
    herd_tests::ready_volume(store, "spin-disk", &image, &endpoint).await?;
    Ok(())
}

async fn spin_vm(store: &Store, name: &str) -> Result<()> {
    let text = format!(
        "apiVersion: herd.dev/v1alpha1\nkind: VirtualMachine\nmetadata: {{name: {name}}}\nspec:\n  \
         vcpus: 1\n  memoryMiB: 32\n  boot: {{disk: root}}\n  \
         disks:\n  - {{name: root, volume: spin-disk, readOnly: true}}\n"
    );
    store
        .create(&herd_crds::yaml::from_str::<VirtualMachine>(&text)?)
        .await?;
    Ok(())
}

/// Where each VM runs, by its status.
async fn placement(store: &Store) -> Result<BTreeMap<String, String>> {
    let mut placed = BTreeMap::new();
    for vm in VMS {
        if let Some(status) = store.get_status::<VirtualMachineSpec>(vm).await?
            && status.value.state == VmState::Running
            && let Some(node) = status.value.node_name
        {
            placed.insert(vm.to_owned(), node);
        }
    }
    Ok(placed)
}

/// Completed migrations as (vm, from, to); panics on a failed one.
async fn completed_moves(store: &Store) -> Result<Vec<(String, String, String)>> {
    let mut moves = Vec::new();
    for migration in store.list_with_status::<MigrationSpec>().await? {
        let Some(status) = &migration.status else {
            continue;
        };
        assert_ne!(
            status.phase,
            MigrationPhase::Failed,
            "{}: {}",
            migration.metadata.name,
            status.message
        );
        if status.phase == MigrationPhase::Completed {
            moves.push((
                migration.spec.vm.clone(),
                status.source_node.clone().unwrap_or_default(),
                status.target_node.clone().unwrap_or_default(),
            ));
        }
    }
    Ok(moves)
}

/// The balancer's events, oldest first, to explain a failure.
async fn balancer_events(store: &Store) -> Result<String> {
    let (mut events, _) = store.list::<Event>().await?;
    events.sort_by_key(|event| event.first_timestamp);
    Ok(events
        .iter()
        .map(|e| {
            format!(
                "{} x{} {}/{}: {}",
                e.reason, e.count, e.involved_object.kind, e.involved_object.name, e.message
            )
        })
        .collect::<Vec<_>>()
        .join("\n"))
}

#[tokio::test(flavor = "multi_thread")]
async fn three_spinning_guests_on_one_node_end_one_per_node_and_stay() -> Result<()> {
    settle_and_stay("seed", |decision| {
        // The seed's help protocol: ferby's points up to the trigger, who offered.
        assert_eq!(
            decision.points_history.last().map(|s| s.points),
            Some(5),
            "{decision:?}"
        );
        assert!(!decision.offers.is_empty(), "{decision:?}");
        assert!(decision.predicted.source_before.hot, "{decision:?}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn forecast_spreads_three_spinning_guests_and_they_stay() -> Result<()> {
    settle_and_stay("forecast", |decision| {
        // Judged on the guests' predicted demand, not on points.
        assert_eq!(
            decision.reason,
            BalancerMoveReason::PredictedOverload,
            "{decision:?}"
        );
        assert!(decision.points_history.is_empty(), "{decision:?}");
    })
    .await
}

/// Three spinning guests start on ferby; under `policy` they end one per node with exactly two
/// live migrations (each decision also passing `check_decision`), and stay.
async fn settle_and_stay(policy: &str, check_decision: impl Fn(&BalancerDecision)) -> Result<()> {
    let etcd = EtcdServer::start()?;
    let prefix = unique_prefix();
    let store = Store::connect(&etcd.endpoints(), &prefix).await?;
    let work = tempfile::tempdir()?;
    let _reaper = Reaper(work.path().to_owned());
    declare_nodes(&store, policy).await?;
    spin_disk(&store, work.path()).await?;
    let _controller = start_controller(&etcd, &prefix)?;

    // Only ferby is up while the guests are placed, so all three start there.
    let state = |node: &str| work.path().join(node);
    let mut agents: Vec<Process> = vec![start_agent(&etcd, &prefix, "ferby", &state("ferby"))?];
    wait_heartbeats(&store, &["ferby"]).await?;
    for vm in VMS {
        spin_vm(&store, vm).await?;
    }
    for vm in VMS {
        let status = status_in(&store, vm, VmState::Running, 60).await?;
        assert_eq!(status.node_name.as_deref(), Some("ferby"));
    }
    for node in &NODES[1..] {
        agents.push(start_agent(&etcd, &prefix, node, &state(node))?);
    }
    wait_heartbeats(&store, &NODES).await?;

    // Ferby is hot (3 busy vCPUs on 1 CPU): one move per overload, until one guest per node.
    let spread = eventually(120, "one guest per node", || async {
        let placed = placement(&store).await?;
        let nodes: std::collections::BTreeSet<&String> = placed.values().collect();
        Ok((placed.len() == 3 && nodes.len() == 3).then_some(placed))
    })
    .await;
    let spread = match spread {
        Ok(spread) => spread,
        Err(error) => panic!("{error}\n{}", balancer_events(&store).await?),
    };
    let moves = completed_moves(&store).await?;
    assert_eq!(
        moves.len(),
        2,
        "two live migrations, the minimum: {moves:?}"
    );
    assert!(
        moves.iter().all(|(_, from, _)| from == "ferby"),
        "{moves:?}"
    );
    assert_ne!(moves[0].0, moves[1].0, "no guest moved twice: {moves:?}");

    // Each move keeps its decision: the policy's reasons, the predicted effect (never a hot
    // target), and the VMs considered.
    for migration in store.list_with_status::<MigrationSpec>().await? {
        let status = migration.status.expect("a status");
        let decision = status
            .decision
            .expect("a balancer migration keeps its decision");
        let decided_by = format!("{:?}", decision.policy).to_lowercase();
        assert_eq!(decided_by, policy, "{decision:?}");
        check_decision(&decision);
        assert!(!decision.predicted.target_after.hot, "{decision:?}");
        assert!(
            decision
                .candidates
                .iter()
                .any(|c| c.vm == migration.spec.vm),
            "{decision:?}"
        );
    }

    // Each guest really runs once, on the node its status names (a source's QEMU process
    // quits a moment after its migration completed, so this may take a few seconds).
    let processes = || {
        let mut found = Vec::new();
        for vm in spread.keys() {
            for candidate in NODES {
                let count = qemu_of(&state(candidate), vm).len();
                found.extend(std::iter::repeat_n((vm.clone(), candidate), count));
            }
        }
        found
    };
    let expected: Vec<(String, &str)> = spread
        .iter()
        .map(|(vm, node)| (vm.clone(), node.as_str()))
        .collect();
    let once = eventually(15, "each guest running once, on its node", || async {
        Ok((processes() == expected).then_some(()))
    })
    .await;
    assert!(
        once.is_ok(),
        "QEMU processes {:?}, expected {expected:?}",
        processes()
    );

    // And then they stay put: no node is hot with one busy guest on its one CPU.
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(placement(&store).await?, spread, "nothing moved again");
    assert_eq!(completed_moves(&store).await?.len(), 2);
    assert!(
        store
            .list_with_status::<MigrationSpec>()
            .await?
            .iter()
            .all(|m| m.status.as_ref().map(|s| s.phase) == Some(MigrationPhase::Completed)),
        "no migration under way"
    );
    drop(agents);
    Ok(())
}
