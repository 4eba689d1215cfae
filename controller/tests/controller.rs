//! The controller process against a real etcd, with hollow nodes standing in for agents.

use std::time::Duration;

use anyhow::Result;
use herd_crds::assignment::Assignment;
use herd_crds::condition::{ConditionStatus, find_condition};
use herd_crds::node::{DomainStatus, NodeSpec};
use herd_crds::virtual_machine::{VcpuStatus, VmState};
use herd_crds::{Event, Node, NodeStatus, Object, RunState, VirtualMachine, VirtualMachineSpec};
use herd_store::codec::decode_value;
use herd_store::txn::Precondition;
use herd_store::{Store, Versioned};
use herd_tests::hollow::{HollowNode, start_leased_fleet};
use herd_tests::{ControllerProcess, EtcdServer, eventually, free_listen, unique_prefix};
use tokio::task::JoinSet;

fn vm(name: &str, memory: u64) -> VirtualMachine {
    let spec: VirtualMachineSpec =
        herd_crds::yaml::from_str(&format!("memoryMiB: {memory}")).unwrap();
    Object::new(name, spec)
}

/// Every assignment as (node, vm).
async fn assignments(store: &Store) -> Result<Vec<(String, String, Assignment)>> {
    let prefix = store.keys().assignments();
    let (entries, _) = store.list_raw(&prefix, None).await?;
    let mut out = Vec::new();
    for (key, value, _) in entries {
        let (node, vm) = key
            .strip_prefix(&prefix)
            .and_then(|r| r.split_once('/'))
            .expect("node/vm key");
        out.push((node.to_owned(), vm.to_owned(), decode_value(&key, &value)?));
    }
    Ok(out)
}

struct Lab {
    etcd: EtcdServer,
    prefix: String,
    store: Store,
    hollow: JoinSet<()>,
}

async fn lab(nodes: &[(&str, u32, u64)]) -> Result<Lab> {
    let etcd = EtcdServer::start()?;
    let prefix = unique_prefix();
    let store = Store::connect(&etcd.endpoints(), &prefix).await?;
    let mut hollow = JoinSet::new();
    let fleet = nodes
        .iter()
        .map(|(name, cpus, memory)| HollowNode::new(name, *cpus, *memory))
        .collect();
    // One lease for the fleet, renewed by the test; dropping `hollow` stops the renewal too.
    let lease = store.grant_lease(Duration::from_secs(6)).await?;
    start_leased_fleet(
        &store,
        fleet,
        Duration::from_millis(300),
        lease,
        &mut hollow,
    );
    let expected = nodes.len();
    eventually(10, "every hollow node's heartbeat", || async {
        let (beats, _) = store.list_raw(&store.keys().heartbeats(), None).await?;
        Ok((beats.len() == expected).then_some(()))
    })
    .await?;
    Ok(Lab {
        etcd,
        prefix,
        store,
        hollow,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vms_are_placed_run_state_flows_and_deletion_waits_for_the_node() -> Result<()> {
    let lab = lab(&[("ferby", 4, 4096), ("gerby", 4, 4096)]).await?;
    let listen = free_listen();
    let _controller = ControllerProcess::start(&lab.etcd, &lab.prefix, "c1", &listen)?;
    for i in 0..6 {
        lab.store.create(&vm(&format!("vm-{i}"), 512)).await?;
    }
    let placed = eventually(20, "6 assignments", || async {
        let all = assignments(&lab.store).await?;
        Ok((all.len() == 6).then_some(all))
    })
    .await?;
    let on_ferby = placed.iter().filter(|(node, _, _)| node == "ferby").count();
    assert_eq!(on_ferby, 3, "spread evenly: {placed:?}");

    let status = lab
        .store
        .get_status::<VirtualMachineSpec>("vm-0")
        .await?
        .expect("status written");
    let scheduled =
        find_condition(&status.value.conditions, "Scheduled").expect("Scheduled condition");
    assert_eq!(scheduled.status, ConditionStatus::True);
    let stored: VirtualMachine = lab.store.get_existing("vm-0").await?;
    assert!(
        stored
            .metadata
            .finalizers
            .contains(&"herd.dev/domain".to_owned())
    );

    // runState flows to the assignment.
    let mut paused = stored.clone();
    paused.spec.run_state = RunState::Paused;
    lab.store.update(&paused).await?;
    eventually(10, "the assignment to say Paused", || async {
        let all = assignments(&lab.store).await?;
        Ok(all
            .iter()
            .any(|(_, vm, a)| vm == "vm-0" && a.run_state == RunState::Paused)
            .then_some(()))
    })
    .await?;

    // Volumes: the one vm-0 owns goes with it, the other stays.
    let spec: herd_crds::VolumeSpec = herd_crds::yaml::from_str("sizeMiB: 8")?;
    let mut owned: herd_crds::Volume = Object::new("vm-0-disk", spec.clone());
    owned
        .metadata
        .owner_references
        .push(herd_crds::OwnerReference {
            kind: "VirtualMachine".into(),
            name: "vm-0".into(),
            uid: stored.metadata.uid.clone(),
        });
    lab.store.create(&owned).await?;
    lab.store
        .create(&Object::<herd_crds::VolumeSpec>::new("shared-disk", spec))
        .await?;

    // Deletion: the assignment goes, then the object once the node confirmed.
    lab.store
        .delete::<VirtualMachine>("vm-0", Precondition::None)
        .await?;
    eventually(15, "vm-0 to be gone", || async {
        let gone = lab.store.get::<VirtualMachine>("vm-0").await?.is_none();
        let unassigned = !assignments(&lab.store)
            .await?
            .iter()
            .any(|(_, vm, _)| vm == "vm-0");
        Ok((gone && unassigned).then_some(()))
    })
    .await?;
    assert!(
        lab.store
            .get_status::<VirtualMachineSpec>("vm-0")
            .await?
            .is_none()
    );
    eventually(10, "the owned volume to go", || async {
        Ok(lab
            .store
            .get::<herd_crds::Volume>("vm-0-disk")
            .await?
            .is_none()
            .then_some(()))
    })
    .await?;
    assert!(
        lab.store
            .get::<herd_crds::Volume>("shared-disk")
            .await?
            .is_some(),
        "a volume the VM does not own stays"
    );

    let metrics = reqwest_like_get(&listen, "/metrics").await?;
    assert!(
        metrics.contains("herd_controller_placements_total 6"),
        "{metrics}"
    );
    assert_eq!(reqwest_like_get(&listen, "/healthz").await?.trim(), "ok");
    Ok(())
}

/// A minimal HTTP/1.1 GET over a TCP socket (the test avoids an HTTP client dependency).
async fn reqwest_like_get(address: &str, path: &str) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cordoned_node_gets_nothing_new_and_failure_is_explained() -> Result<()> {
    let lab = lab(&[("ferby", 2, 2048), ("gerby", 2, 2048)]).await?;
    let mut cordoned: Node = eventually(10, "gerby registered", || async {
        Ok(lab.store.get::<Node>("gerby").await?)
    })
    .await?;
    cordoned.spec.unschedulable = true;
    lab.store.update(&cordoned).await?;
    let _controller = ControllerProcess::start(&lab.etcd, &lab.prefix, "c1", &free_listen())?;
    for i in 0..3 {
        lab.store.create(&vm(&format!("vm-{i}"), 512)).await?;
    }
    lab.store.create(&vm("huge", 4096)).await?;
    eventually(20, "3 assignments", || async {
        Ok((assignments(&lab.store).await?.len() == 3).then_some(()))
    })
    .await?;
    assert!(
        assignments(&lab.store)
            .await?
            .iter()
            .all(|(node, _, _)| node == "ferby")
    );

    let event = eventually(15, "a FailedScheduling event", || async {
        let (events, _) = lab.store.list::<Event>().await?;
        Ok(events
            .into_iter()
            .find(|e| e.reason == "FailedScheduling" && e.involved_object.name == "huge"))
    })
    .await?;
    assert_eq!(
        event.message,
        "0/2 nodes are available: 1 unschedulable, 1 lack memory"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_becomes_not_ready_and_its_vms_unknown() -> Result<()> {
    let mut lab = lab(&[("ferby", 4, 4096)]).await?;
    let _controller = ControllerProcess::start(&lab.etcd, &lab.prefix, "c1", &free_listen())?;
    lab.store.create(&vm("vm-0", 256)).await?;
    eventually(20, "vm-0 placed", || async {
        Ok((!assignments(&lab.store).await?.is_empty()).then_some(()))
    })
    .await?;
    eventually(10, "ferby Ready", || async {
        let status = lab.store.get_status::<NodeSpec>("ferby").await?;
        Ok(status
            .filter(|s: &Versioned<NodeStatus>| s.value.ready)
            .map(|_| ()))
    })
    .await?;

    lab.hollow.shutdown().await; // the agent dies: its lease runs out
    eventually(25, "ferby NotReady", || async {
        let status = lab
            .store
            .get_status::<NodeSpec>("ferby")
            .await?
            .expect("status");
        Ok((!status.value.ready).then_some(()))
    })
    .await?;
    let vm_status = eventually(10, "vm-0 Unknown", || async {
        let status = lab
            .store
            .get_status::<VirtualMachineSpec>("vm-0")
            .await?
            .expect("status");
        Ok((status.value.state == VmState::Unknown).then_some(status))
    })
    .await?;
    assert_eq!(
        vm_status.value.node_name.as_deref(),
        Some("ferby"),
        "not moved anywhere"
    );
    assert_eq!(
        assignments(&lab.store).await?.len(),
        1,
        "the assignment stays: nothing is started twice"
    );
    let (events, _) = lab.store.list::<Event>().await?;
    assert!(
        events
            .iter()
            .any(|e| e.reason == "NodeNotReady" && e.involved_object.name == "ferby")
    );

    // Deleting a VM of a silent node does not complete: nobody can confirm the domain is gone.
    lab.store
        .delete::<VirtualMachine>("vm-0", Precondition::None)
        .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(lab.store.get::<VirtualMachine>("vm-0").await?.is_some());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_leader_is_killed_the_follower_takes_over_without_duplicates() -> Result<()> {
    let lab = lab(&[("ferby", 8, 16384), ("gerby", 8, 16384)]).await?;
    let mut first = ControllerProcess::start(&lab.etcd, &lab.prefix, "c1", &free_listen())?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _second = ControllerProcess::start(&lab.etcd, &lab.prefix, "c2", &free_listen())?;
    for i in 0..10 {
        lab.store.create(&vm(&format!("before-{i}"), 256)).await?;
    }
    eventually(20, "10 assignments", || async {
        Ok((assignments(&lab.store).await?.len() == 10).then_some(()))
    })
    .await?;

    first.kill(); // SIGKILL: no resignation, the lease must expire (3 s here)
    let killed = tokio::time::Instant::now();
    for i in 0..10 {
        lab.store.create(&vm(&format!("after-{i}"), 256)).await?;
    }
    eventually(20, "20 assignments", || async {
        Ok((assignments(&lab.store).await?.len() == 20).then_some(()))
    })
    .await?;
    assert!(
        killed.elapsed() < Duration::from_secs(3 + 5),
        "took over within the lease TTL: {:?}",
        killed.elapsed()
    );

    tokio::time::sleep(Duration::from_secs(2)).await;
    let all = assignments(&lab.store).await?;
    let mut vms: Vec<&str> = all.iter().map(|(_, vm, _)| vm.as_str()).collect();
    vms.sort();
    vms.dedup();
    assert_eq!(
        (all.len(), vms.len()),
        (20, 20),
        "every VM exactly once: {all:?}"
    );
    Ok(())
}

/// A heartbeat of a node without an agent: two saturated CPUs shared by four vCPUs (two per
/// CPU, each granted half of it), so the balancer judges it hot.
fn saturated_heartbeat() -> NodeStatus {
    let vcpus = (0..4)
        .map(|vcpu| VcpuStatus {
            vcpu,
            cpu: Some(vcpu / 2),
            percent: 50.0,
            wait_percent: 0.0,
        })
        .collect();
    NodeStatus {
        ready: true,
        cpus: 2,
        cpu_load: vec![100.0, 100.0],
        memory_total_mib: 4096,
        memory_free_mib: 4096,
        domains: vec![DomainStatus {
            name: "busy".into(),
            state: VmState::Running,
            vcpus,
            ..DomainStatus::default()
        }],
        driver: "hollow".into(),
        last_heartbeat: Some(chrono::Utc::now()),
        ..NodeStatus::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_balancer_publishes_each_nodes_points_in_its_status() -> Result<()> {
    let lab = lab(&[("ferby", 4, 4096)]).await?;
    let herby: Node = Object::new("herby", NodeSpec::default());
    lab.store.create(&herby).await?;
    let lease = lab.store.grant_lease(Duration::from_secs(30)).await?;
    let beat = herd_store::codec::encode_value(&saturated_heartbeat()).expect("encodes");
    lab.store
        .transaction()
        .put_raw(
            lab.store.keys().heartbeat("herby")?,
            beat,
            Some(lease.id()),
            Precondition::None,
        )
        .commit()
        .await?;
    let _controller = ControllerProcess::start(&lab.etcd, &lab.prefix, "c1", &free_listen())?;

    let hot = eventually(40, "herby's points at 3", || async {
        let status = lab.store.get_status::<NodeSpec>("herby").await?;
        Ok(status.filter(|s| s.value.balancer.as_ref().is_some_and(|b| b.points >= 3)))
    })
    .await?;
    let points = hot.value.balancer.clone().expect("points");
    assert!(points.hot);
    assert_eq!(
        (points.points_to_trigger, points.threshold_percent),
        (5, 80.0)
    );
    let trail: Vec<u32> = points.history.iter().map(|s| s.points).collect();
    assert!(
        trail.windows(2).all(|w| w[1] == w[0] + 1),
        "each point was published: {trail:?}"
    );
    let last = points.history.last().expect("a sample");
    assert_eq!(
        (last.load_percent, last.busy_vcpus, last.cpus),
        (100.0, 4, 2)
    );
    let ready = find_condition(&hot.value.conditions, "Ready").expect("Ready kept");
    assert_eq!(
        ready.status,
        ConditionStatus::True,
        "the readiness writer's field is kept"
    );

    // A quiet node is written once, then left alone.
    let quiet = eventually(20, "ferby's points", || async {
        let status = lab.store.get_status::<NodeSpec>("ferby").await?;
        Ok(status.filter(|s| s.value.balancer.is_some()))
    })
    .await?;
    let points = quiet.value.balancer.clone().expect("points");
    assert_eq!(
        (points.points, points.hot, points.history.len()),
        (0, false, 1)
    );
    assert_eq!(quiet.value.cpus, 4, "the heartbeat's observations are kept");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let later = lab
        .store
        .get_status::<NodeSpec>("ferby")
        .await?
        .expect("status");
    assert_eq!(
        later.revision, quiet.revision,
        "nothing changed, nothing written"
    );
    drop(lease);
    Ok(())
}
