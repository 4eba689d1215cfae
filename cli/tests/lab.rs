//! The quickstart end to end: `herdctl up --driver sim` starts a lab of separate processes,
//! the seed's demo makes ferby ask for help and one VM move to herby, and `herdctl down`
//! leaves no process of the lab running. On the way, every command of the README's tour runs
//! against the lab, as the README shows it, and does what its comment there says.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod lab_common;

use lab_common::{Down, command, herdctl, herdctl_in, processes_with, text};

#[test]
fn up_runs_the_seed_demo_to_one_migration_and_down_leaves_nothing_running() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let _down = Down(root);
    let up = herdctl(root, &["up", "--driver", "sim", "--nodes", "3"]);
    assert!(up.status.success(), "{}", text(&up));
    assert!(text(&up).contains("All 3 nodes are ready"), "{}", text(&up));
    let again = herdctl(root, &["up", "--driver", "sim"]);
    assert!(
        again.status.success() && text(&again).contains("already running"),
        "up twice is harmless: {}",
        text(&again)
    );

    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/examples/seed-demo");
    let apply = herdctl(root, &["apply", "-f", demo.to_str().unwrap()]);
    assert!(apply.status.success(), "{}", text(&apply));

    // The seed's start: all five busy VMs on ferby, placed by the node specs applied with them.
    let deadline = Instant::now() + Duration::from_secs(30);
    let placed = loop {
        let vms = text(&herdctl(root, &["get", "vms", "-l", "demo=seed"]));
        let nodes: Vec<&str> = vms
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(2))
            .collect();
        if nodes.len() == 5 && nodes.iter().all(|n| *n != "<none>" && *n != "-") {
            break (nodes.iter().all(|n| *n == "ferby"), vms);
        }
        assert!(Instant::now() < deadline, "not all placed: {vms}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(placed.0, "every busy VM starts on ferby:\n{}", placed.1);

    // The seed's story: ferby asks for help, herby offers, ferby accepts, one VM moves.
    let deadline = Instant::now() + Duration::from_secs(90);
    let migrations = loop {
        let get = herdctl(root, &["get", "migrations", "-o", "name"]);
        let done = herdctl(root, &["get", "migrations"]);
        if text(&done).contains("Completed") {
            break text(&get);
        }
        assert!(
            Instant::now() < deadline,
            "no migration completed: {}",
            text(&done)
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(
        migrations.lines().count(),
        1,
        "exactly one VM moved: {migrations}"
    );
    let events = text(&herdctl(root, &["get", "events"]));
    for reason in [
        "RequestHelp",
        "OfferHelp",
        "AcceptHelp",
        "MigrationCompleted",
    ] {
        assert!(events.contains(reason), "{reason} missing from:\n{events}");
    }
    assert!(
        events
            .lines()
            .any(|l| l.contains("OfferHelp") && l.contains("node/herby")),
        "{events}"
    );
    assert!(
        !events
            .lines()
            .any(|l| l.contains("OfferHelp") && l.contains("node/gerby")),
        "gerby refuses migrations: {events}"
    );
    let vms = text(&herdctl(root, &["get", "vms"]));
    assert_eq!(
        vms.lines().filter(|l| l.contains(" herby ")).count(),
        1,
        "{vms}"
    );
    // Once every busy VM has a CPU of its own, nothing more moves (the seed's rule).
    std::thread::sleep(Duration::from_secs(14));
    let later = text(&herdctl(root, &["get", "migrations", "-o", "name"]));
    assert_eq!(
        later.lines().count(),
        1,
        "still exactly one migration: {later}"
    );

    run_the_readme_tour(root);
    std::thread::sleep(Duration::from_millis(500));
    let left = processes_with(&[&root.display().to_string()]);
    assert!(left.is_empty(), "processes of the lab still run: {left:#?}");
}

/// The commands of the README's "A short tour" block, without their comments, in order.
fn readme_tour() -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let tour = readme
        .split("## A short tour")
        .nth(1)
        .expect("the README has a tour");
    let block = tour
        .split("```sh")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the tour shows its commands in a sh block");
    block
        .lines()
        .map(|line| line.split(" #").next().unwrap_or("").trim().to_owned())
        .filter(|line| !line.is_empty())
        .collect()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs each tour command against the lab (from the repository, as a reader would) and
/// checks what its comment in the README promises. A command this test does not know fails
/// it: the README shows nothing that is not tested.
fn run_the_readme_tour(root: &Path) {
    let tour = readme_tour();
    assert!(tour.len() >= 8, "{tour:?}");
    assert_eq!(tour.last().map(String::as_str), Some("herdctl down"));
    for command in &tour {
        let words: Vec<&str> = command.split_whitespace().collect();
        assert_eq!(
            words[0], "herdctl",
            "the tour shows herdctl commands: {command}"
        );
        let args = &words[1..];
        let run = || {
            let output = herdctl_in(root, &repo(), args);
            assert!(output.status.success(), "{command}: {}", text(&output));
            text(&output)
        };
        match args {
            ["get", "nodes"] => {
                let nodes = run();
                for node in ["ferby", "gerby", "herby"] {
                    assert!(nodes.contains(node), "{command}: {nodes}");
                }
            }
            ["get", "vms", "-w"] => {
                let streamed = watch_for(root, args, Duration::from_secs(3));
                assert!(
                    streamed.contains("NAME") && streamed.contains("busy-1"),
                    "{streamed}"
                );
            }
            ["get", "events"] => assert!(run().contains("RequestHelp"), "{command}"),
            ["describe", "node", name] => {
                let described = run();
                assert!(described.contains("Name:") && described.contains(name));
                // ferby was hot in the demo, so the controller published its points and their history.
                assert!(described.contains("Balancer:"), "{described}");
                assert!(described.contains("Points:"), "{described}");
                assert!(described.contains("History"), "{described}");
            }
            ["describe", "vm", name] => {
                let described = run();
                assert!(described.contains(name), "{described}");
                assert!(described.contains("Events"), "{described}");
            }
            ["get", "vm", name, "-o", "yaml"] => {
                let yaml = run();
                let file = root.join(format!("{name}.yaml"));
                std::fs::write(&file, yaml).unwrap();
                let again = herdctl(root, &["apply", "-f", file.to_str().unwrap()]);
                assert!(
                    text(&again).contains("unchanged"),
                    "get -o yaml round-trips through apply: {}",
                    text(&again)
                );
            }
            ["migrate", vm, "--to", node] => {
                run();
                wait_until(root, &format!("{vm} runs on {node}"), || {
                    let vms = text(&herdctl(root, &["get", "vms"]));
                    vms.lines().any(|l| {
                        l.starts_with(&format!("{vm} ")) && l.contains(&format!(" {node} "))
                    })
                });
            }
            ["drain", node] => {
                run();
                wait_until(root, &format!("{node} drained"), || {
                    let vms = text(&herdctl(root, &["get", "vms"]));
                    !vms.contains(&format!(" {node} "))
                });
                let nodes = text(&herdctl(root, &["get", "node", node, "-o", "yaml"]));
                assert!(
                    nodes.contains("unschedulable: true"),
                    "drain cordons: {nodes}"
                );
            }
            ["uncordon", node] => {
                run();
                let nodes = text(&herdctl(root, &["get", "node", node, "-o", "yaml"]));
                assert!(!nodes.contains("unschedulable: true"), "{nodes}");
            }
            ["apply", "-f", "manifests/examples/gitops/"] => {
                make_fleet_repository();
                assert!(run().contains("gitrepository/fleet created"), "{command}");
            }
            ["gitops", "status"] => wait_until(root, "gitrepository/fleet Ready", || {
                let status = text(&herdctl(root, &["gitops", "status"]));
                status
                    .lines()
                    .any(|l| l.starts_with("fleet ") && l.contains(" True "))
            }),
            ["gitops", "diff", "fleet"] => assert!(run().contains("0 to create"), "{command}"),
            ["gitops", "reconcile", "fleet"] => assert!(run().contains("synced"), "{command}"),
            ["gitops", "suspend", "fleet"] => assert!(run().contains("suspended"), "{command}"),
            ["apply", "-f", folder] => {
                let applied = run();
                assert!(
                    repo().join(folder).is_dir() && applied.lines().count() >= 3,
                    "{command}: {applied}"
                );
            }
            ["down"] => {
                let down = run();
                assert!(down.contains("Stopped the lab"), "{down}");
            }
            _ => panic!("the README's tour shows `{command}`, which this test does not check"),
        }
    }
}

/// The git repository `manifests/examples/gitops/fleet.yaml` names: `/tmp/herd-fleet.git`,
/// made anew with one VM under `vms/`, as `docs/gitops.md` shows.
fn make_fleet_repository() {
    let bare = Path::new("/tmp/herd-fleet.git");
    let _ = std::fs::remove_dir_all(bare);
    let work = tempfile::tempdir().unwrap();
    let git = |dir: &Path, args: &[&str]| {
        let out = std::process::Command::new("git")
            .current_dir(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", text(&out));
    };
    git(
        work.path(),
        &["init", "-q", "--bare", "-b", "main", "/tmp/herd-fleet.git"],
    );
    git(work.path(), &["init", "-q", "-b", "main", "."]);
    std::fs::create_dir(work.path().join("vms")).unwrap();
    let vm = "apiVersion: herd.dev/v1alpha1\nkind: VirtualMachine\nmetadata:\n  name: from-git\nspec:\n  vcpus: 1\n  memoryMiB: 64\n";
    std::fs::write(work.path().join("vms/from-git.yaml"), vm).unwrap();
    git(work.path(), &["add", "-A"]);
    git(
        work.path(),
        &[
            "-c",
            "user.name=lab",
            "-c",
            "user.email=lab@herd.invalid",
            "commit",
            "-qm",
            "from-git",
        ],
    );
    git(work.path(), &["push", "-q", "/tmp/herd-fleet.git", "main"]);
}

/// What a streaming `herdctl` command printed in `period`, after which it is stopped.
fn watch_for(root: &Path, args: &[&str], period: Duration) -> String {
    let mut child = command(root)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("herdctl runs");
    std::thread::sleep(period);
    assert!(
        child.try_wait().unwrap().is_none(),
        "a watch keeps running until stopped"
    );
    child.kill().unwrap();
    text(&child.wait_with_output().unwrap())
}

fn wait_until(root: &Path, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} within 60 s: {}",
            text(&herdctl(root, &["get", "vms"]))
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
