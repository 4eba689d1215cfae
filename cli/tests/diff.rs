//! `herdctl diff` against a real etcd: exit 0 when the file matches what is stored, 1 with a
//! unified diff when it does not, 2 on errors.

mod common;

use common::{Cluster, node_yaml, path_str, stderr, stdout, vm_yaml};

#[test]
fn diff_exits_0_when_equal_1_when_different_2_on_error() {
    let cluster = Cluster::start();
    let file = cluster.write("small-1.yaml", &vm_yaml("small-1", 512, "app: web"));
    cluster
        .herdctl()
        .args(["apply", "-f", path_str(&file)])
        .assert()
        .success();

    let same = cluster.run(&["diff", "-f", path_str(&file)]);
    assert_eq!(same.status.code(), Some(0), "{}", stderr(&same));
    assert_eq!(stdout(&same), "");

    cluster.write("small-1.yaml", &vm_yaml("small-1", 1024, "app: web"));
    let changed = cluster.run(&["diff", "-f", path_str(&file)]);
    assert_eq!(changed.status.code(), Some(1), "{}", stderr(&changed));
    let text = stdout(&changed);
    let source = path_str(&file);
    assert!(
        text.starts_with(&format!(
            "--- virtualmachine/small-1 (stored)\n+++ virtualmachine/small-1 ({source})\n@@ "
        )),
        "{text}"
    );
    assert!(
        text.contains("\n-  memoryMiB: 512\n+  memoryMiB: 1024\n"),
        "{text}"
    );
    assert!(
        !text.contains("uid") && !text.contains("generation"),
        "only what apply writes: {text}"
    );

    let new = cluster.write("node.yaml", &node_yaml("ferby"));
    let added = cluster.run(&["diff", "-f", path_str(&new)]);
    assert_eq!(added.status.code(), Some(1));
    assert!(
        stdout(&added).contains("+kind: Node\n"),
        "{}",
        stdout(&added)
    );

    let broken = cluster.write("broken.yaml", "kind: VirtualMachine\n");
    let error = cluster.run(&["diff", "-f", path_str(&broken)]);
    assert_eq!(error.status.code(), Some(2));
    assert!(stderr(&error).contains("cannot diff"), "{}", stderr(&error));
    let missing = cluster.run(&["diff", "-f", path_str(&cluster.path("absent.yaml"))]);
    assert_eq!(missing.status.code(), Some(2));
}
