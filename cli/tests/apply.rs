//! `herdctl apply` against a real etcd: directories, unchanged/configured, all-or-nothing
//! validation, output that re-applies unchanged, dry runs, and two applies racing.

mod common;

use std::process::Stdio;

use common::{Cluster, node_yaml, path_str, stderr, stdout, vm_yaml};
use herd_crds::virtual_machine::VmState;
use herd_crds::{Node, VirtualMachine, VirtualMachineSpec, VirtualMachineStatus};
use herd_store::txn::Precondition;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_is_created_then_unchanged_then_configured() {
    let cluster = Cluster::start();
    cluster.write("lab/nodes.yaml", &node_yaml("ferby"));
    cluster.write("lab/vms/small-1.yaml", &vm_yaml("small-1", 512, "app: web"));
    cluster.write("lab/README.md", "not a manifest");
    let dir = cluster.path("lab");

    let first = cluster
        .herdctl()
        .args(["apply", "-R", "-f", path_str(&dir)])
        .assert()
        .success();
    assert_eq!(
        stdout(first.get_output()),
        "node/ferby created\nvirtualmachine/small-1 created\n"
    );
    let again = cluster
        .herdctl()
        .args(["apply", "-R", "-f", path_str(&dir)])
        .assert()
        .success();
    assert_eq!(
        stdout(again.get_output()),
        "node/ferby unchanged\nvirtualmachine/small-1 unchanged\n"
    );
    let without_recursion = cluster.run(&["apply", "-f", path_str(&dir)]);
    assert_eq!(stdout(&without_recursion), "node/ferby unchanged\n");

    cluster.write(
        "lab/vms/small-1.yaml",
        &vm_yaml("small-1", 1024, "app: web"),
    );
    let changed = cluster
        .herdctl()
        .args(["apply", "-R", "-f", path_str(&dir)])
        .assert()
        .success();
    assert_eq!(
        stdout(changed.get_output()),
        "node/ferby unchanged\nvirtualmachine/small-1 configured\n"
    );
    let store = cluster.store().await;
    let vm: VirtualMachine = store.get_existing("small-1").await.unwrap();
    assert_eq!(vm.spec.memory_mib, 1024);
    assert_eq!(
        vm.metadata.generation, 2,
        "a spec change bumps the generation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_invalid_file_among_valid_ones_writes_nothing_and_names_the_problem() {
    let cluster = Cluster::start();
    cluster.write("lab/a-node.yaml", &node_yaml("ferby"));
    cluster.write("lab/b-vm.yaml", &vm_yaml("small-1", 512, ""));
    let broken = vm_yaml("small-2", 512, "").replace("vcpus: 1", "vcpus: 0");
    cluster.write("lab/c-broken.yaml", &broken);

    let output = cluster.run(&["apply", "-f", path_str(&cluster.path("lab"))]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("nothing was applied"), "{message}");
    assert!(
        message.contains("c-broken.yaml"),
        "the file is named: {message}"
    );
    assert!(
        message.contains("spec.vcpus: must be at least 1 (got 0)"),
        "{message}"
    );
    assert!(message.contains("(document 1)"), "{message}");
    assert_eq!(stdout(&output), "");

    let store = cluster.store().await;
    let (nodes, _) = store.list::<Node>().await.unwrap();
    let (vms, _) = store.list::<VirtualMachine>().await.unwrap();
    assert!(nodes.is_empty() && vms.is_empty(), "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_output_in_yaml_and_json_re_applies_unchanged() {
    let cluster = Cluster::start();
    let file = cluster.write(
        "vms.yaml",
        &format!(
            "{}---\n{}",
            vm_yaml("small-1", 512, "app: web"),
            vm_yaml("small-2", 256, "")
        ),
    );
    cluster
        .herdctl()
        .args(["apply", "-f", path_str(&file)])
        .assert()
        .success();
    let store = cluster.store().await;
    let status = VirtualMachineStatus {
        node_name: Some("ferby".into()),
        state: VmState::Running,
        cpu_percent: 12.5,
        ..VirtualMachineStatus::default()
    };
    store
        .put_status::<VirtualMachineSpec>("small-1", &status, Precondition::None)
        .await
        .unwrap();

    for (format, name) in [("yaml", "one.yaml"), ("json", "one.json")] {
        let output = cluster
            .herdctl()
            .args(["get", "vm", "small-1", "-o", format])
            .assert()
            .success();
        let text = stdout(output.get_output());
        assert!(text.contains("Running"), "the status is shown: {text}");
        let saved = cluster.write(name, &text);
        let reapplied = cluster
            .herdctl()
            .args(["apply", "-f", path_str(&saved)])
            .assert()
            .success();
        assert_eq!(
            stdout(reapplied.get_output()),
            "virtualmachine/small-1 unchanged\n",
            "{format}"
        );
    }
    let all = cluster
        .herdctl()
        .args(["get", "vms", "-o", "yaml"])
        .assert()
        .success();
    let saved = cluster.write("all.yaml", &stdout(all.get_output()));
    let reapplied = cluster
        .herdctl()
        .args(["apply", "-f", path_str(&saved)])
        .assert()
        .success();
    assert_eq!(
        stdout(reapplied.get_output()),
        "virtualmachine/small-1 unchanged\nvirtualmachine/small-2 unchanged\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_runs_write_nothing() {
    let cluster = Cluster::start();
    let file = cluster.write("vm.yaml", &vm_yaml("small-1", 512, ""));
    let client = cluster
        .herdctl()
        .args(["apply", "--dry-run=client", "-f", path_str(&file)])
        .assert()
        .success();
    assert_eq!(
        stdout(client.get_output()),
        "virtualmachine/small-1 valid (dry run)\n"
    );
    let server = cluster
        .herdctl()
        .args(["apply", "--dry-run=server", "-f", path_str(&file)])
        .assert()
        .success();
    assert_eq!(
        stdout(server.get_output()),
        "virtualmachine/small-1 created (server dry run)\n"
    );
    let store = cluster.store().await;
    assert!(
        store
            .get::<VirtualMachine>("small-1")
            .await
            .unwrap()
            .is_none()
    );
}

/// Two applies read the same version (the test-only pause holds both between reading and
/// writing), then both write: the compare-and-swap lets exactly one through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_racing_applies_one_wins_and_the_other_is_told_to_re_run() {
    let cluster = Cluster::start();
    let original = cluster.write("small-1.yaml", &vm_yaml("small-1", 512, ""));
    cluster
        .herdctl()
        .args(["apply", "-f", path_str(&original)])
        .assert()
        .success();
    let a = cluster.write("a.yaml", &vm_yaml("small-1", 1024, ""));
    let b = cluster.write("b.yaml", &vm_yaml("small-1", 2048, ""));

    let spawn = |file: &std::path::Path| {
        cluster
            .std_herdctl()
            .args(["apply", "-f", path_str(file)])
            .env("HERD_TEST_PAUSE_BEFORE_WRITE_MS", "1500")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("herdctl starts")
    };
    let (first, second) = (spawn(&a), spawn(&b));
    let outputs = [
        (1024, first.wait_with_output().unwrap()),
        (2048, second.wait_with_output().unwrap()),
    ];

    let winners: Vec<_> = outputs.iter().filter(|(_, o)| o.status.success()).collect();
    let losers: Vec<_> = outputs
        .iter()
        .filter(|(_, o)| !o.status.success())
        .collect();
    assert_eq!((winners.len(), losers.len()), (1, 1), "exactly one wins");
    let (winning_memory, winner) = winners[0];
    assert_eq!(stdout(winner), "virtualmachine/small-1 configured\n");
    let (_, loser) = losers[0];
    assert_eq!(loser.status.code(), Some(1));
    let message = stderr(loser);
    assert!(
        message.contains("virtualmachine/small-1 was changed by someone else"),
        "{message}"
    );
    assert!(
        message.contains("nothing was written. Re-run herdctl apply"),
        "{message}"
    );

    let store = cluster.store().await;
    let stored: VirtualMachine = store.get_existing("small-1").await.unwrap();
    assert_eq!(
        stored.spec.memory_mib, *winning_memory,
        "the winner's write stands"
    );
    assert_eq!(stored.metadata.generation, 2, "exactly one write happened");
}
