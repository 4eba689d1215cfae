//! `herdctl balance simulate`: the real binary replays a small trace folder written by the
//! test through the controller's balancer, offline (no etcd).

use std::path::Path;
use std::process::{Command, Output};

/// Eight VMs busy all day and four idle, 20 samples each; on 5 CloudSim hosts the scheduler's
/// placement leaves one host with more busy vCPUs than CPUs, and the seed moves one VM.
fn write_day(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for vm in 0..12 {
        let percent = if vm < 8 { 100 } else { 0 };
        std::fs::write(
            dir.join(format!("vm{vm}")),
            format!("{percent}\n").repeat(20),
        )
        .unwrap();
    }
}

fn herdctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herdctl"))
        .args(args)
        .env_remove("HERD_ETCD_ENDPOINTS")
        .env("HERD_CONTEXT", "/nonexistent/herd-context.yaml")
        .env("NO_COLOR", "1")
        .output()
        .expect("herdctl runs")
}

/// `herdctl balance simulate --traces TRACES more…`.
fn simulate(traces: &str, more: &[&str]) -> Output {
    let mut args = vec!["balance", "simulate", "--traces", traces];
    args.extend_from_slice(more);
    herdctl(&args)
}

/// A ClusterPolicy manifest `name` in `dir` whose `spec.balancer` holds `balancer` (YAML
/// lines, indented four spaces); returns its path.
fn policy_file(dir: &Path, name: &str, balancer: &str) -> String {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "apiVersion: herd.dev/v1alpha1\nkind: ClusterPolicy\nmetadata:\n  name: default\n\
             spec:\n  balancer:\n{balancer}"
        ),
    )
    .unwrap();
    path.display().to_string()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The values of the table row that starts with `label`.
fn row<'a>(table: &'a str, label: &str) -> Vec<&'a str> {
    let line = table
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no row {label:?} in:\n{table}"));
    line[label.len()..].split_whitespace().collect()
}

#[test]
fn simulate_prints_none_seed_and_score_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    write_day(dir.path());
    let traces = dir.path().to_str().unwrap();
    // etcd is never contacted: the flag points nowhere.
    let output = herdctl(&[
        "--etcd",
        "http://127.0.0.1:1",
        "balance",
        "simulate",
        "--traces",
        traces,
        "--hosts",
        "5",
    ]);
    let table = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        table.starts_with("Policy (defaults): threshold 80%, 5 points to trigger"),
        "{table}"
    );
    assert!(
        table.contains("12 VMs (0 unplaced) on 5 hosts, 20 samples x 300 s"),
        "{table}"
    );
    let header: Vec<&str> = table
        .lines()
        .find(|l| l.trim_start().starts_with("none"))
        .expect("a header")
        .split_whitespace()
        .collect();
    assert_eq!(header, ["none", "seed", "score"]);
    let migrations = row(&table, "migrations");
    assert_eq!(migrations[0], "0", "no balancing moves nothing");
    assert_eq!(migrations[1], "1", "the seed moves one VM off the hot host");
    for label in [
        "host-time over 80% (%)",
        "host-time at 100%, SLA violation (%)",
    ] {
        for value in row(&table, label) {
            let percent: f64 = value.parse().unwrap();
            assert!((0.0..=100.0).contains(&percent), "{label}: {value}");
        }
    }
    assert_eq!(
        row(&table, "VMs moved more than once in an hour"),
        ["0", "0", "0"]
    );
    assert_eq!(row(&table, "replay wall time (s)").len(), 3);
}

#[test]
fn simulate_replays_each_day_of_a_folder_of_days_and_prints_json() {
    let root = tempfile::tempdir().unwrap();
    write_day(&root.path().join("day-1"));
    write_day(&root.path().join("day-2"));
    std::fs::write(root.path().join("README.md"), "not a trace").unwrap();
    let traces = root.path().to_str().unwrap();
    let output = simulate(
        traces,
        &["--hosts", "5", "--runs", "none,seed", "-o", "json"],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let days = json["days"].as_array().unwrap();
    assert_eq!(days.len(), 2);
    assert!(days[0]["traces"].as_str().unwrap().ends_with("day-1"));
    let runs = days[1]["runs"].as_array().unwrap();
    let policies: Vec<&str> = runs.iter().map(|r| r["policy"].as_str().unwrap()).collect();
    assert_eq!(policies, ["none", "seed"]);
    assert_eq!(runs[0]["migrations"], 0);
    assert_eq!(json["policy"]["balancer"]["thresholdPercent"], 80.0);

    let only_first = simulate(traces, &["--days", "1"]);
    assert!(only_first.status.success(), "{}", text(&only_first.stderr));
    assert_eq!(
        text(&only_first.stdout).matches("PlanetLab replay").count(),
        1
    );
}

#[test]
fn simulate_uses_the_policy_file_and_names_its_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    write_day(&dir.path().join("traces"));
    let traces = dir.path().join("traces");
    let traces = traces.to_str().unwrap();

    let good = policy_file(dir.path(), "policy.yaml", "    thresholdPercent: 95\n");
    let output = simulate(traces, &["--hosts", "5", "--policy", &good]);
    let table = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(table.contains("threshold 95%"), "{table}");
    assert!(table.contains("host-time over 95% (%)"), "{table}");

    let bad = policy_file(
        dir.path(),
        "bad.yaml",
        "    thresholdPercent: 95\n    pointsToTriger: 3\n",
    );
    let output = simulate(traces, &["--policy", &bad]);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty(), "nothing is replayed");
    let error = text(&output.stderr);
    assert!(
        error.starts_with("error: the policy file is not valid:"),
        "{error}"
    );
    assert!(
        error.contains(&format!("{bad}:8 (document 1)")),
        "names the file and line: {error}"
    );
    assert!(error.contains("pointsToTriger"), "names the field: {error}");

    let missing = simulate("/nonexistent/traces", &[]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing.stderr)
            .starts_with("error: cannot simulate: cannot read trace folder /nonexistent/traces"),
        "{}",
        text(&missing.stderr)
    );
}
