//! `herdctl balance simulate`: the policy backtest. It replays CPU traces through the
//! controller's own balancer on simulated hosts (`herd_controller::backtest`, the code behind
//! the `balance-replay` benchmark) and prints what no balancing, `seed` and `score` would have
//! done, side by side. It runs offline: no etcd is read or written.
//!
//! `--traces` is one folder of traces (one file per VM) or a folder of such folders, one per
//! day (as `../shared/traces/planetlab/`); each day is replayed on its own and gets its table.

use std::path::{Path, PathBuf};

use herd_controller::backtest::traces::day_folders;
use herd_controller::backtest::{
    BacktestConfig, BacktestError, BacktestReport, InitialPlacement, RunKind, Sampling,
    run_backtest,
};
use herd_crds::{AnyObject, ClusterPolicySpec};
use serde_json::{Value, json};

use crate::apply::load;
use crate::args::{SimulateArgs, SimulateOutput, SimulatePlacement, SimulateRun};
use crate::failure::Failure;
use crate::output::{line, write_out};

/// Runs `herdctl balance simulate`.
pub fn simulate(args: SimulateArgs) -> Result<(), Failure> {
    let policy = match &args.policy {
        Some(path) => read_policy(path)?,
        None => ClusterPolicySpec::default(),
    };
    let mut days = day_folders(&args.traces).map_err(backtest_failure)?;
    days.truncate(args.days.unwrap_or(usize::MAX));
    let source = args
        .policy
        .as_ref()
        .map_or_else(|| "defaults".to_owned(), |p| p.display().to_string());
    if args.output == SimulateOutput::Table {
        line(format!("Policy ({source}): {}", knobs(&policy)))?;
    }
    let mut reports = Vec::new();
    for day in days {
        let config = config(&args, &policy, day);
        let report = run_backtest(&config).map_err(backtest_failure)?;
        match args.output {
            SimulateOutput::Table => line(format!("\n{report}"))?,
            SimulateOutput::Json => reports.push(report),
        }
    }
    if args.output == SimulateOutput::Json {
        let document = json!({
            "policySource": source,
            "policy": policy,
            "days": reports.iter().map(report_json).collect::<Vec<_>>(),
        });
        let text = serde_json::to_string_pretty(&document)
            .map_err(|e| Failure::new(format!("cannot write JSON: {e}")))?;
        write_out(&format!("{text}\n"))?;
    }
    Ok(())
}

/// The backtest of one day: CloudSim's fleet, with the flags' changes.
fn config(args: &SimulateArgs, policy: &ClusterPolicySpec, day: PathBuf) -> BacktestConfig {
    let mut config = BacktestConfig::cloudsim(day);
    config.hosts = args.hosts;
    for shape in &mut config.host_shapes {
        shape.memory_mib = args.host_memory_mib;
    }
    config.max_vms = args.max_vms;
    config.placement = match args.placement {
        SimulatePlacement::Scheduler => InitialPlacement::Scheduler,
        SimulatePlacement::Packed => InitialPlacement::Packed,
    };
    config.policy = policy.clone();
    config.runs = args.runs.iter().map(|r| run_kind(*r)).collect();
    config.runs.dedup();
    if args.policy_interval {
        config.sampling = Sampling::Policy;
    }
    config
}

fn run_kind(run: SimulateRun) -> RunKind {
    match run {
        SimulateRun::None => RunKind::None,
        SimulateRun::Seed => RunKind::Seed,
        SimulateRun::Score => RunKind::Score,
        SimulateRun::Forecast => RunKind::Forecast,
        SimulateRun::Density => RunKind::Density,
        SimulateRun::LrMmt => RunKind::LrMmt,
    }
}

fn backtest_failure(error: BacktestError) -> Failure {
    Failure::new(format!("cannot simulate: {error}"))
}

/// The `ClusterPolicy` of a manifest file: its one document, parsed and validated by the
/// manifest reader, so a problem names the file, line and field.
pub fn read_policy(path: &Path) -> Result<ClusterPolicySpec, Failure> {
    let shown = path.display();
    let loaded = load(&[path.to_path_buf()]).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        Failure::new(format!(
            "the policy file is not valid:\n  {}",
            lines.join("\n  ")
        ))
    })?;
    let mut policies = Vec::new();
    for document in loaded {
        match document.document.object {
            AnyObject::ClusterPolicy(policy) => policies.push(policy.spec),
            other => {
                return Err(Failure::new(format!(
                    "{shown}:{} (document {}): is a {}; --policy takes a file with one \
                     ClusterPolicy",
                    document.document.line,
                    document.document.document,
                    other.kind()
                )));
            }
        }
    }
    match policies.len() {
        1 => Ok(policies.remove(0)),
        n => Err(Failure::new(format!(
            "{shown}: holds {n} ClusterPolicy documents; --policy takes a file with one"
        ))),
    }
}

/// The knobs a backtest uses, in one line.
fn knobs(policy: &ClusterPolicySpec) -> String {
    let b = &policy.balancer;
    let m = &policy.migration;
    format!(
        "threshold {}%, {} points to trigger, cooldown {} s, min gain {}%, at most {} \
         migrations per node and {} in the cluster, overcommit {}",
        b.threshold_percent,
        b.points_to_trigger,
        b.cooldown_seconds,
        b.min_gain_percent,
        m.max_outbound_per_node,
        m.max_in_cluster,
        policy.scheduling.cpu_overcommit_ratio
    )
}

/// One day's report as JSON: the setup and, per run, the metrics of the table.
fn report_json(report: &BacktestReport) -> Value {
    let runs: Vec<Value> = report
        .runs
        .iter()
        .map(|run| {
            json!({
                "policy": run.kind.label(),
                "migrations": run.metrics.migrations,
                "overThresholdPercent": run.metrics.over_threshold_percent(),
                "saturatedPercent": run.metrics.saturated_percent(),
                "vmsMovedTwiceInAnHour": run.metrics.vms_moved_twice_in_an_hour,
                "vmsMoved": run.metrics.vms_moved,
                "energyKWh": run.metrics.energy_kwh(),
                "wallSeconds": run.wall.as_secs_f64(),
            })
        })
        .collect();
    json!({
        "traces": report.traces.display().to_string(),
        "vms": report.vms,
        "unplaced": report.unplaced,
        "hosts": report.hosts,
        "samples": report.samples,
        "stepSeconds": report.step_seconds,
        "sampleSeconds": report.sample_seconds,
        "thresholdPercent": report.threshold_percent,
        "setupSeconds": report.setup.as_secs_f64(),
        "runs": runs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy_file(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    const HEADER: &str =
        "apiVersion: herd.dev/v1alpha1\nkind: ClusterPolicy\nmetadata:\n  name: default\n";

    #[test]
    fn a_policy_file_gives_its_knobs() {
        let file = policy_file(&format!(
            "{HEADER}spec:\n  balancer:\n    thresholdPercent: 70\n    pointsToTrigger: 3\n"
        ));
        let policy = read_policy(file.path()).unwrap();
        assert_eq!(policy.balancer.threshold_percent, 70.0);
        assert_eq!(policy.balancer.points_to_trigger, 3);
        assert!(knobs(&policy).starts_with("threshold 70%, 3 points to trigger"));
    }

    #[test]
    fn a_bad_policy_file_names_file_line_and_field() {
        let file = policy_file(&format!("{HEADER}spec:\n  balancer:\n    treshold: 70\n"));
        let failure = read_policy(file.path()).unwrap_err();
        let shown = file.path().display().to_string();
        assert!(
            failure.message.contains(&format!("{shown}:7")),
            "{}",
            failure.message
        );
        assert!(failure.message.contains("treshold"), "{}", failure.message);

        let file = policy_file(
            "apiVersion: herd.dev/v1alpha1\nkind: Node\nmetadata:\n  name: ferby\nspec: {}\n",
        );
        let failure = read_policy(file.path()).unwrap_err();
        assert!(failure.message.contains("is a Node"), "{}", failure.message);
    }
}
