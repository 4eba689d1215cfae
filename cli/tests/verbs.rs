//! The imperative verbs against a real etcd: run states, the destroy annotation, cordon,
//! drain, migrate, node settings; and `get -l`, `completion`.

mod common;

use common::{Cluster, node_yaml, path_str, stderr, stdout, vm_yaml};
use herd_crds::migration::MigrationReason;
use herd_crds::{
    Migration, Node, RunState, VirtualMachine, VirtualMachineSpec, VirtualMachineStatus,
};
use herd_store::Store;
use herd_store::txn::Precondition;

async fn lab(cluster: &Cluster) -> Store {
    let manifests = [
        node_yaml("ferby"),
        node_yaml("gerby"),
        vm_yaml("a", 512, "app: web"),
        vm_yaml("b", 512, "app: db"),
        vm_yaml("c", 512, ""),
    ];
    let file = cluster.write("lab.yaml", &manifests.join("---\n"));
    cluster
        .herdctl()
        .args(["apply", "-f", path_str(&file)])
        .assert()
        .success();
    let store = cluster.store().await;
    for (vm, node) in [("a", "ferby"), ("b", "ferby"), ("c", "gerby")] {
        let status = VirtualMachineStatus {
            node_name: Some(node.into()),
            ..VirtualMachineStatus::default()
        };
        store
            .put_status::<VirtualMachineSpec>(vm, &status, Precondition::None)
            .await
            .unwrap();
    }
    store
}

fn ok(cluster: &Cluster, args: &[&str]) -> String {
    let output = cluster.run(args);
    assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    stdout(&output)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_state_verbs_edit_the_spec() {
    let cluster = Cluster::start();
    let store = lab(&cluster).await;
    let vm = |store: Store| async move { store.get_existing::<VirtualMachine>("a").await.unwrap() };

    assert_eq!(ok(&cluster, &["pause", "a"]), "virtualmachine/a paused\n");
    assert_eq!(vm(store.clone()).await.spec.run_state, RunState::Paused);
    assert_eq!(
        ok(&cluster, &["unpause", "a"]),
        "virtualmachine/a unpaused\n"
    );
    assert_eq!(
        ok(&cluster, &["start", "a"]),
        "virtualmachine/a unchanged (runState already Running)\n"
    );
    assert_eq!(
        ok(&cluster, &["destroy", "a"]),
        "virtualmachine/a destroyed\n"
    );
    let destroyed = vm(store.clone()).await;
    assert_eq!(destroyed.spec.run_state, RunState::Stopped);
    assert_eq!(
        destroyed.metadata.annotations["herd.dev/stop-mode"],
        "destroy"
    );
    assert_eq!(
        destroyed.metadata.generation, 4,
        "every run state change is a new generation"
    );

    let refused = cluster.run(&["pause", "a"]);
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(
        stderr(&refused),
        "error: virtualmachine/a is stopped; start it first (herdctl start a)\n"
    );
    assert_eq!(
        ok(&cluster, &["shutdown", "a"]),
        "virtualmachine/a shut down\n"
    );
    assert!(
        vm(store.clone()).await.metadata.annotations.is_empty(),
        "a graceful stop again"
    );
    assert_eq!(ok(&cluster, &["start", "a"]), "virtualmachine/a started\n");

    let missing = cluster.run(&["stop", "nope"]);
    assert_eq!(
        stderr(&missing),
        "error: virtualmachine \"nope\" not found\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_cordons_and_migrates_every_vm_of_the_node_once() {
    let cluster = Cluster::start();
    let store = lab(&cluster).await;

    let text = ok(&cluster, &["drain", "ferby"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "node/ferby cordoned");
    assert_eq!(lines.len(), 3, "{text}");
    for (line, vm) in lines[1..].iter().zip(["a", "b"]) {
        assert!(
            line.starts_with(&format!("migration/{vm}-")) && line.ends_with(" created"),
            "{line}"
        );
    }
    let node: Node = store.get_existing("ferby").await.unwrap();
    assert!(node.spec.unschedulable);
    let (migrations, _) = store.list::<Migration>().await.unwrap();
    assert_eq!(migrations.len(), 2);
    assert!(
        migrations
            .iter()
            .all(|m| m.spec.reason == MigrationReason::Drain && m.spec.target_node.is_none())
    );

    let again = ok(&cluster, &["drain", "ferby"]);
    assert!(
        again.starts_with("node/ferby already cordoned\n"),
        "{again}"
    );
    assert_eq!(again.matches("already in progress").count(), 2, "{again}");
    assert_eq!(
        store.list::<Migration>().await.unwrap().0.len(),
        2,
        "no duplicates"
    );

    assert_eq!(
        ok(&cluster, &["uncordon", "ferby"]),
        "node/ferby uncordoned\n"
    );
    assert_eq!(ok(&cluster, &["cordon", "gerby"]), "node/gerby cordoned\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_creates_a_manual_migration() {
    let cluster = Cluster::start();
    let store = lab(&cluster).await;
    let text = ok(&cluster, &["migrate", "c", "--to", "ferby"]);
    let name = text
        .strip_prefix("migration/")
        .and_then(|rest| rest.strip_suffix(" created\n"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(name.starts_with("c-") && name.len() == 7, "{name}");
    let migration: Migration = store.get_existing(name).await.unwrap();
    assert_eq!(migration.spec.vm, "c");
    assert_eq!(migration.spec.target_node.as_deref(), Some("ferby"));
    assert_eq!(migration.spec.reason, MigrationReason::Manual);

    for (args, problem) in [
        (
            &["migrate", "c", "--to", "gerby"][..],
            "virtualmachine/c already runs on gerby",
        ),
        (&["migrate", "c", "--to", "nope"], "node \"nope\" not found"),
        (&["migrate", "nope"], "virtualmachine \"nope\" not found"),
    ] {
        let output = cluster.run(args);
        assert_eq!(output.status.code(), Some(1));
        assert!(
            stderr(&output).contains(problem),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_settings_are_parsed_and_validated() {
    let cluster = Cluster::start();
    let store = lab(&cluster).await;
    let args = [
        "node",
        "ferby",
        "--accept-migrations=false",
        "--heartbeat-interval=5s",
    ];
    assert_eq!(ok(&cluster, &args), "node/ferby configured\n");
    assert_eq!(ok(&cluster, &args), "node/ferby unchanged\n");
    let node: Node = store.get_existing("ferby").await.unwrap();
    assert!(!node.spec.accept_migrations);
    assert_eq!(node.spec.heartbeat_interval_seconds, 5);

    let too_long = cluster.run(&["node", "ferby", "--heartbeat-interval=10m"]);
    assert_eq!(too_long.status.code(), Some(1));
    assert!(
        stderr(&too_long).contains("spec.heartbeatIntervalSeconds: must be at most 300 (got 600)")
    );
    let usage = cluster.run(&["node", "ferby", "--heartbeat-interval=5x"]);
    assert_eq!(
        usage.status.code(),
        Some(2),
        "a bad duration is a usage error"
    );
    assert!(
        stderr(&usage).contains("such as 30s, 5m or 1h30m"),
        "{}",
        stderr(&usage)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_selectors_filter_and_bad_ones_are_usage_errors() {
    let cluster = Cluster::start();
    lab(&cluster).await;
    assert_eq!(
        ok(&cluster, &["get", "vms", "-l", "app=web", "-o", "name"]),
        "virtualmachine/a\n"
    );
    assert_eq!(
        ok(&cluster, &["get", "vms", "-l", "app!=web", "-o", "name"]),
        "virtualmachine/b\nvirtualmachine/c\n"
    );
    assert_eq!(
        ok(&cluster, &["get", "vms", "-l", "!app", "-o", "name"]),
        "virtualmachine/c\n"
    );
    assert_eq!(
        ok(
            &cluster,
            &["get", "vms", "-l", "app in (db,web)", "-o", "name"]
        ),
        "virtualmachine/a\nvirtualmachine/b\n"
    );
    let none = cluster.run(&["get", "vms", "-l", "app=nope"]);
    assert!(none.status.success());
    assert_eq!(
        (stdout(&none), stderr(&none)),
        (String::new(), "No resources found.\n".to_owned())
    );
    let bad = cluster.run(&["get", "vms", "-l", "app=web,"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("requirement 2: is empty"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn completion_scripts_are_printed_without_etcd() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_herdctl"))
        .args(["--etcd", "http://127.0.0.1:1", "completion", "bash"])
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(stdout(&output).contains("_herdctl()"));
}
