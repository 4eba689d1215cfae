//! `herdctl wait` and `herdctl delete` against a real etcd: both watch (they return as soon
//! as another writer changes the object) and fail with a clear message on timeout.

mod common;

use std::process::{Child, Stdio};
use std::time::Duration;

use common::{Cluster, path_str, stderr, stdout, vm_yaml};
use herd_crds::virtual_machine::VmState;
use herd_crds::{Object, VirtualMachine, VirtualMachineSpec, VirtualMachineStatus};
use herd_store::objects::DeleteOutcome;
use herd_store::txn::Precondition;

fn spawn(cluster: &Cluster, args: &[&str]) -> Child {
    cluster
        .std_herdctl()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("herdctl starts")
}

/// Gives the child time to read and open its watch, and checks it is still waiting.
async fn still_waiting(child: &mut Child) {
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "herdctl returned before the change"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_returns_when_another_writer_makes_the_vm_run() {
    let cluster = Cluster::start();
    let file = cluster.write("vm.yaml", &vm_yaml("small-1", 512, ""));
    cluster
        .herdctl()
        .args(["apply", "-f", path_str(&file)])
        .assert()
        .success();
    let mut child = spawn(
        &cluster,
        &[
            "wait",
            "vm/small-1",
            "--for=condition=Running",
            "--timeout=30s",
        ],
    );
    still_waiting(&mut child).await;

    let store = cluster.store().await;
    let writer = tokio::spawn(async move {
        let status = VirtualMachineStatus {
            node_name: Some("ferby".into()),
            state: VmState::Running,
            ..VirtualMachineStatus::default()
        };
        store
            .put_status::<VirtualMachineSpec>("small-1", &status, Precondition::None)
            .await
    });
    writer.await.unwrap().unwrap();

    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "virtualmachine/small-1 condition met\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_fails_with_a_clear_message_on_timeout() {
    let cluster = Cluster::start();
    let file = cluster.write("vm.yaml", &vm_yaml("small-1", 512, ""));
    cluster
        .herdctl()
        .args(["apply", "-f", path_str(&file)])
        .assert()
        .success();
    let output = cluster.run(&[
        "wait",
        "vm",
        "small-1",
        "--for=condition=Running",
        "--timeout=1s",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        "error: timed out after 1s waiting for condition Running=True of virtualmachine/small-1; \
         it shows no status yet; no conditions\n"
    );
    let missing = cluster.run(&["wait", "vm/nope", "--for=condition=Running"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("virtualmachine/nope does not exist"));
    let gone = cluster.run(&["wait", "vm/nope", "--for=delete"]);
    assert!(gone.status.success());
}

/// A VM with the controller's finalizer, as the controller leaves it once placed.
async fn guarded_vm(cluster: &Cluster) -> herd_store::Store {
    let store = cluster.store().await;
    let mut vm: VirtualMachine = Object::new(
        "small-1",
        herd_crds::yaml::from_str("memoryMiB: 512").unwrap(),
    );
    vm.metadata.finalizers.push("herd.dev/domain".into());
    store.create(&vm).await.unwrap();
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_waits_until_the_finalizer_is_gone_unless_told_not_to() {
    let cluster = Cluster::start();
    let store = guarded_vm(&cluster).await;

    let marked = cluster
        .herdctl()
        .args(["delete", "vm", "small-1", "--wait=false"])
        .assert()
        .success();
    assert_eq!(
        stdout(marked.get_output()),
        "virtualmachine/small-1 marked for deletion (finalizers pending: herd.dev/domain)\n"
    );
    let vm: VirtualMachine = store.get_existing("small-1").await.unwrap();
    assert!(vm.metadata.deletion_timestamp.is_some());

    let timeout = cluster.run(&["delete", "vm/small-1", "--timeout=1s"]);
    assert_eq!(timeout.status.code(), Some(1));
    let message = stderr(&timeout);
    assert!(
        message.contains("timed out after 1s waiting for virtualmachine/small-1 to be deleted"),
        "{message}"
    );
    assert!(
        message.contains("finalizers (herd.dev/domain)"),
        "{message}"
    );

    let mut child = spawn(&cluster, &["delete", "vm", "small-1", "--timeout=30s"]);
    still_waiting(&mut child).await;
    // What the controller does once the agent confirmed the domain is gone.
    let mut vm: VirtualMachine = store.get_existing("small-1").await.unwrap();
    vm.metadata.finalizers.clear();
    store.update(&vm).await.unwrap();
    let outcome = store
        .delete::<VirtualMachine>("small-1", Precondition::None)
        .await
        .unwrap();
    assert_eq!(outcome, DeleteOutcome::Deleted);

    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "virtualmachine/small-1 deleted\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_by_file_and_missing_objects() {
    let cluster = Cluster::start();
    let file = cluster.write("vm.yaml", &vm_yaml("small-1", 512, ""));
    cluster
        .herdctl()
        .args(["apply", "-f", path_str(&file)])
        .assert()
        .success();
    let deleted = cluster
        .herdctl()
        .args(["delete", "-f", path_str(&file)])
        .assert()
        .success();
    assert_eq!(
        stdout(deleted.get_output()),
        "virtualmachine/small-1 deleted\n"
    );
    let again = cluster.run(&["delete", "-f", path_str(&file)]);
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(stderr(&again), "error: virtualmachine/small-1 not found\n");
    cluster
        .herdctl()
        .args(["delete", "-f", path_str(&file), "--ignore-not-found"])
        .assert()
        .success();
    let store = cluster.store().await;
    assert!(
        store
            .get::<VirtualMachine>("small-1")
            .await
            .unwrap()
            .is_none()
    );
}
