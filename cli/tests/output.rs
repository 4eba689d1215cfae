//! Snapshots of what `get` and `describe` print, against a real etcd holding a fixed scene:
//! two nodes (one reporting, with balancer points; one silent and cordoned), two VMs, a
//! migration, and events.
//! Times are fixed (objects are created with their timestamps, and `HERD_NOW` fixes "now"),
//! and resource versions are redacted, so the output is the same on every run.

mod common;

use chrono::{DateTime, TimeZone, Utc};
use common::{Cluster, stderr, stdout};
use herd_crds::balancing::{BalancerSample, NodeBalancerStatus};
use herd_crds::event::InvolvedObject;
use herd_crds::migration::{MigrationPhase, MigrationReason, MigrationSpec, MigrationStatus};
use herd_crds::node::{DomainStatus, NodeSpec};
use herd_crds::virtual_machine::{VcpuStatus, VmState};
use herd_crds::{
    Condition, ConditionStatus, Event, EventType, Migration, Node, NodeStatus, Object, Resource,
    VirtualMachine, VirtualMachineSpec, VirtualMachineStatus,
};
use herd_store::Store;
use herd_store::txn::Precondition;

const NOW: &str = "2026-01-01T01:00:00Z";

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, minute, 0).unwrap()
}

/// `object` as the store would have created it at `minute`, with a fixed uid.
fn born<R: Resource>(mut object: R, minute: u32) -> R {
    let meta = object.metadata_mut();
    meta.uid = Some(format!("00000000-0000-4000-8000-0000000000{minute:02}"));
    meta.creation_timestamp = Some(at(minute));
    object
}

fn condition(
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: &str,
    minute: u32,
) -> Condition {
    Condition::new(type_, status, reason, message, at(minute))
}

async fn nodes(store: &Store) {
    let mut ferby: Node = Object::new("ferby", NodeSpec::default());
    ferby.metadata.labels.insert("rack".into(), "a".into());
    store.create(&born(ferby, 0)).await.unwrap();
    let mut gerby: Node = Object::new("gerby", NodeSpec::default());
    gerby.spec.unschedulable = true;
    store.create(&born(gerby, 1)).await.unwrap();
    let ready = |status, reason, minute| NodeStatus {
        conditions: vec![condition("Ready", status, reason, "", minute)],
        ..NodeStatus::default()
    };
    // The controller's record of ferby also holds the balancer's points (three hot samples).
    let sample = |minute, points| BalancerSample {
        time: at(minute),
        points,
        hot: true,
        load_percent: 97.5,
        demand_percent: 125.0,
        busy_vcpus: 5,
        cpus: 4,
    };
    let mut ferby = ready(ConditionStatus::True, "HeartbeatReceived", 2);
    ferby.balancer = Some(NodeBalancerStatus {
        points: 3,
        points_to_trigger: 5,
        threshold_percent: 80.0,
        hot: true,
        overloaded: false,
        history: vec![sample(57, 1), sample(58, 2), sample(59, 3)],
        ..Default::default()
    });
    store
        .put_status::<NodeSpec>("ferby", &ferby, Precondition::None)
        .await
        .unwrap();
    store
        .put_status::<NodeSpec>(
            "gerby",
            &ready(ConditionStatus::Unknown, "HeartbeatLost", 40),
            Precondition::None,
        )
        .await
        .unwrap();
    let heartbeat = NodeStatus {
        ready: true,
        address: Some("10.0.0.1".into()),
        cpus: 4,
        cpu_load: vec![20.0, 40.0, 60.0, 80.0],
        memory_total_mib: 8192,
        memory_free_mib: 6144,
        domains: vec![DomainStatus {
            name: "small-1".into(),
            id: Some("3".into()),
            state: VmState::Running,
            cpu_percent: 12.5,
            ..DomainStatus::default()
        }],
        driver: "qemu".into(),
        agent_version: "0.1.0".into(),
        accepts_migrations: true,
        last_heartbeat: Some(at(59)),
        ..NodeStatus::default()
    };
    let key = store.keys().heartbeat("ferby").unwrap();
    let text = herd_crds::yaml::to_string(&heartbeat).unwrap();
    store
        .transaction()
        .put_raw(key, text, None, Precondition::None)
        .commit()
        .await
        .unwrap();
}

#[allow(
    clippy::needless_update,
    reason = "fields that herd-crds adds later keep their defaults"
)]
async fn vms(store: &Store) {
    let spec: VirtualMachineSpec = herd_crds::yaml::from_str(
        "vcpus: 2\nmemoryMiB: 512\nboot: {kernel: /boot/vmlinuz, root: /dev/vda1 ro}\n\
         disks: [{name: root, volume: small-1-disk, target: vda}]\n\
         networks: [{name: eth0, bridge: br0}]\n",
    )
    .unwrap();
    let mut small: VirtualMachine = Object::new("small-1", spec);
    small.metadata.labels.insert("app".into(), "web".into());
    small.metadata.finalizers.push("herd.dev/domain".into());
    store.create(&born(small, 10)).await.unwrap();
    let web: VirtualMachine = Object::new(
        "web-1",
        herd_crds::yaml::from_str("memoryMiB: 4096").unwrap(),
    );
    store.create(&born(web, 50)).await.unwrap();
    let status = VirtualMachineStatus {
        node_name: Some("ferby".into()),
        domain_id: Some("3".into()),
        state: VmState::Running,
        cpu_percent: 12.5,
        vcpus: vec![
            VcpuStatus {
                vcpu: 0,
                cpu: Some(1),
                percent: 10.0,
                wait_percent: 0.0,
            },
            VcpuStatus {
                vcpu: 1,
                cpu: Some(3),
                percent: 2.5,
                wait_percent: 0.0,
            },
        ],
        started_at: Some(at(11)),
        observed_generation: 1,
        conditions: vec![
            condition(
                "Scheduled",
                ConditionStatus::True,
                "Placed",
                "placed on ferby",
                10,
            ),
            condition(
                "Running",
                ConditionStatus::True,
                "DomainRunning",
                "domain 3 runs",
                11,
            ),
        ],
        ..VirtualMachineStatus::default()
    };
    store
        .put_status::<VirtualMachineSpec>("small-1", &status, Precondition::None)
        .await
        .unwrap();
}

async fn migration(store: &Store) {
    let spec = MigrationSpec {
        vm: "small-1".into(),
        target_node: Some("gerby".into()),
        reason: MigrationReason::Manual,
    };
    store
        .create(&born(Object::new("small-1-x7k2p", spec) as Migration, 55))
        .await
        .unwrap();
    let status = MigrationStatus {
        phase: MigrationPhase::Failed,
        source_node: Some("ferby".into()),
        target_node: Some("gerby".into()),
        start_time: Some(at(55)),
        end_time: Some(at(56)),
        total_time_ms: Some(61_500),
        bytes_transferred: 1_048_576,
        message: "target node gerby is not ready".into(),
        ..MigrationStatus::default()
    };
    store
        .put_status::<MigrationSpec>("small-1-x7k2p", &status, Precondition::None)
        .await
        .unwrap();
}

async fn events(store: &Store) {
    let about = |kind: &str, name: &str| InvolvedObject {
        kind: kind.into(),
        name: name.into(),
        uid: None,
    };
    let events = [
        (
            "e1",
            about("VirtualMachine", "small-1"),
            EventType::Normal,
            "Scheduled",
            "placed on ferby",
            10,
        ),
        (
            "e2",
            about("VirtualMachine", "web-1"),
            EventType::Warning,
            "FailedScheduling",
            "0/2 nodes are available: 1 unschedulable, 1 lacks memory",
            50,
        ),
        (
            "e3",
            about("Node", "gerby"),
            EventType::Warning,
            "NodeNotReady",
            "the node agent stopped reporting (its lease expired)",
            40,
        ),
        (
            "e4",
            about("Migration", "small-1-x7k2p"),
            EventType::Warning,
            "MigrationFailed",
            "target node gerby is not ready",
            56,
        ),
    ];
    for (name, object, type_, reason, message, minute) in events {
        let event = Event::new(
            name,
            object,
            type_,
            reason,
            message,
            "herd-controller",
            at(minute),
        );
        store.create(&event).await.unwrap();
    }
}

/// Runs herdctl at the fixed "now"; resource versions (etcd revisions) are redacted.
fn show(cluster: &Cluster, args: &[&str]) -> String {
    let output = cluster
        .std_herdctl()
        .env("HERD_NOW", NOW)
        .args(args)
        .output()
        .unwrap();
    assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    stdout(&output)
        .lines()
        .map(|line| {
            if line.starts_with("Resource Version:") {
                "Resource Version:  [revision]".to_owned()
            } else if line.trim_start().starts_with("resourceVersion:") {
                "  resourceVersion: [revision]".to_owned()
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_and_describe_print_stable_text() {
    let cluster = Cluster::start();
    let store = cluster.store().await;
    nodes(&store).await;
    vms(&store).await;
    migration(&store).await;
    events(&store).await;

    insta::assert_snapshot!("get_vms", show(&cluster, &["get", "vms"]));
    insta::assert_snapshot!(
        "get_vms_wide",
        show(&cluster, &["get", "vms", "-o", "wide"])
    );
    insta::assert_snapshot!("get_nodes", show(&cluster, &["get", "nodes"]));
    insta::assert_snapshot!(
        "get_nodes_wide",
        show(&cluster, &["get", "nodes", "-o", "wide"])
    );
    insta::assert_snapshot!(
        "get_migrations_wide",
        show(&cluster, &["get", "migrations", "-o", "wide"])
    );
    insta::assert_snapshot!("get_events", show(&cluster, &["get", "events"]));
    insta::assert_snapshot!(
        "describe_vm",
        show(&cluster, &["describe", "vm", "small-1"])
    );
    insta::assert_snapshot!("describe_node", show(&cluster, &["describe", "node/gerby"]));
    insta::assert_snapshot!(
        "describe_node_points",
        show(&cluster, &["describe", "node", "ferby"])
    );
    insta::assert_snapshot!(
        "describe_migration",
        show(&cluster, &["describe", "migration", "small-1-x7k2p"])
    );
    insta::assert_snapshot!(
        "get_node_yaml",
        show(&cluster, &["get", "node", "ferby", "-o", "yaml"])
    );
}
