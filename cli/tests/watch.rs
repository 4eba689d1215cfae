//! `herdctl get -w` against a real etcd: a running watch prints the changes other
//! processes make, and SIGTERM ends it with exit code 0.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use common::{Cluster, path_str, vm_yaml};
use herd_crds::virtual_machine::VmState;
use herd_crds::{VirtualMachineSpec, VirtualMachineStatus};
use herd_store::txn::Precondition;

/// Reads lines from `lines` until one contains every one of `parts`; returns it.
fn expect_line(lines: &mpsc::Receiver<String>, parts: &[&str]) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if parts.iter().all(|p| line.contains(p)) => return line,
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    panic!("no line with {parts:?}; saw {seen:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_prints_changes_made_by_other_processes_until_sigterm() {
    let cluster = Cluster::start();
    let file = cluster.write("vm.yaml", &vm_yaml("small-1", 512, ""));
    cluster
        .herdctl()
        .args(["apply", "-f", path_str(&file)])
        .assert()
        .success();

    let mut child = cluster
        .std_herdctl()
        .args(["get", "vms", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("herdctl starts");
    let stdout = child.stdout.take().unwrap();
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                return;
            }
        }
    });

    expect_line(&lines, &["NAME", "STATE", "MEMORY"]);
    expect_line(&lines, &["small-1", "Pending", "512Mi"]);

    // A spec change from another herdctl process…
    cluster.write("vm.yaml", &vm_yaml("small-1", 768, ""));
    cluster
        .herdctl()
        .args(["apply", "-f", path_str(&file)])
        .assert()
        .success();
    expect_line(&lines, &["small-1", "Pending", "768Mi"]);

    // …and a status written by another writer (as the agent would) both show.
    let store = cluster.store().await;
    let status = VirtualMachineStatus {
        node_name: Some("ferby".into()),
        state: VmState::Running,
        ..VirtualMachineStatus::default()
    };
    store
        .put_status::<VirtualMachineSpec>("small-1", &status, Precondition::None)
        .await
        .unwrap();
    expect_line(&lines, &["small-1", "Running", "ferby", "768Mi"]);

    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: sends SIGTERM to our own child process, which is still running.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM ends the watch with exit code 0"
    );
}
