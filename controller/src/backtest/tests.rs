//! A small replay end to end: one host of four starts with three busy VMs on two CPUs.

use std::path::{Path, PathBuf};

use super::*;

/// A temporary trace folder, removed on drop.
struct Folder(PathBuf);

impl Folder {
    /// Nine VMs over 20 samples; VMs 0, 4 and 8 (which round-robin puts on host 0) want 70%.
    fn hot_first_host(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("herd-backtest-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary folder");
        for vm in 0..9 {
            let percent = if vm % 4 == 0 { 70 } else { 0 };
            let text = format!("{percent}\n").repeat(20);
            std::fs::write(dir.join(format!("t{vm}")), text).expect("a trace file");
        }
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(traces: &Path) -> BacktestConfig {
    let mut config = BacktestConfig::cloudsim(traces);
    config.hosts = 4;
    config.host_shapes = vec![HostShape {
        cpus: 2,
        cpu_units: 1000.0,
        memory_mib: 8192,
        power: crate::backtest::energy::ML110_G4,
    }];
    config.vm_shapes = vec![VmShape {
        units: 1000.0,
        memory_mib: 512,
    }];
    config.placement = InitialPlacement::RoundRobin;
    config
}

#[test]
fn the_seed_moves_one_vm_after_five_samples_and_cuts_overload() {
    let folder = Folder::hot_first_host("seed");
    let report = run_backtest(&config(folder.path())).expect("the replay runs");
    assert_eq!((report.hosts, report.vms, report.samples), (4, 9, 20));
    let none = &report.run(RunKind::None).expect("none").metrics;
    let seed = &report.run(RunKind::Seed).expect("seed").metrics;
    let score = &report.run(RunKind::Score).expect("score").metrics;
    assert_eq!(none.migrations, 0);
    assert_eq!(none.over_threshold_percent(), 25.0, "host 0 of 4, all day");
    assert_eq!(none.saturated_percent(), 25.0);
    assert_eq!(
        seed.migrations, 1,
        "one VM per overload, then it is no longer hot"
    );
    assert_eq!(
        seed.over_threshold_percent(),
        25.0 * 5.0 / 20.0,
        "hot for 5 samples"
    );
    assert!(score.migrations >= 1);
    assert!(score.over_threshold_percent() < none.over_threshold_percent());
    assert_eq!(score.vms_moved_twice_in_an_hour, 0);
}

#[test]
fn the_table_puts_the_policies_side_by_side() {
    let folder = Folder::hot_first_host("table");
    let table = run_backtest(&config(folder.path()))
        .expect("the replay runs")
        .to_string();
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].contains("9 VMs (0 unplaced) on 4 hosts, 20 samples x 300 s"),
        "{table}"
    );
    assert!(lines[1].trim_start().starts_with("none"), "{table}");
    for run in ["seed", "score", "forecast", "density", "lr-mmt"] {
        assert!(lines[1].contains(run), "{table}");
    }
    assert!(lines[2].starts_with("migrations"));
    assert!(lines[3].starts_with("host-time over 80% (%)"));
    assert!(lines[4].starts_with("host-time at 100%, SLA violation (%)"));
    assert!(lines[5].starts_with("VMs moved more than once in an hour"));
    assert!(lines[6].starts_with("energy, linear model (kWh)"));
    assert!(lines[7].starts_with("replay wall time (s)"));
}

#[test]
fn sampling_at_the_policy_interval_reacts_within_a_trace_step() {
    let folder = Folder::hot_first_host("policy");
    let mut config = config(folder.path());
    config.runs = vec![RunKind::Seed];
    config.sampling = Sampling::Every(30.0);
    let report = run_backtest(&config).expect("the replay runs");
    let seed = &report.run(RunKind::Seed).expect("seed").metrics;
    assert_eq!(seed.migrations, 1);
    assert!(
        seed.over_threshold_percent() < 25.0 * 1.0 / 20.0,
        "5 samples of 30 s"
    );
}

#[test]
fn bad_settings_and_missing_traces_are_explained() {
    let mut config = BacktestConfig::cloudsim("/nonexistent/traces");
    let error = run_backtest(&config).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("cannot read trace folder /nonexistent/traces")
    );
    config.bandwidth_mib_per_s = 0.0;
    assert_eq!(
        run_backtest(&config).unwrap_err().to_string(),
        "Invalid backtest setting: the migration bandwidth must be above 0 MiB/s (got 0)."
    );
}
