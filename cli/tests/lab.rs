//! The quickstart end to end: `herdctl up --driver sim` starts a lab of separate processes,
//! the seed's demo makes ferby ask for help and one VM move to herby, and `herdctl down`
//! leaves no process of the lab running.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// `herdctl` with the lab directory and context file of this test only.
fn herdctl(lab: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_herdctl"))
        .args(args)
        .env("HERD_LAB", lab.join("lab"))
        .env("HERD_CONTEXT", lab.join("context.yaml"))
        .env_remove("HERD_ETCD_ENDPOINTS")
        .env_remove("HERD_PREFIX")
        .output()
        .expect("herdctl runs")
}

fn text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Live processes whose command line names `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'));
        let cmdline = String::from_utf8_lossy(
            &std::fs::read(entry.path().join("cmdline")).unwrap_or_default(),
        )
        .replace('\0', " ");
        if !zombie && pid != std::process::id() && cmdline.contains(needle) {
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    found
}

/// Stops the lab even when the test fails.
struct Down<'a>(&'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        herdctl(self.0, &["down"]);
    }
}

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

    let down = herdctl(root, &["down"]);
    assert!(down.status.success(), "{}", text(&down));
    std::thread::sleep(Duration::from_millis(500));
    let left = processes_mentioning(&root.display().to_string());
    assert!(left.is_empty(), "processes of the lab still run: {left:#?}");
}
