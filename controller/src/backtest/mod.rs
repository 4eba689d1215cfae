//! Policy backtest: replays PlanetLab CPU traces through the production balancer on simulated
//! hosts and measures what each policy would have done.
//!
//! The balancing decisions are made by [`crate::balancer::balance`] — the function the
//! controller calls, with the same inputs built the same way — so the backtest tests the real
//! policy, not a re-implementation. What is simulated is around it: the fleet
//! ([`fleet`]: CloudSim's hosts and VM sizes, placed by the controller's scheduler), the CPU
//! accounting ([`accounting`], the sim driver's model in CloudSim's units) and time ([`replay`]:
//! trace steps, migrations that take `memory / bandwidth`).
//!
//! **Time.** A trace has one sample per [`BacktestConfig::step_seconds`] (300 s). By default the
//! balancer samples once per trace step ([`Sampling::TraceStep`]): each trace sample is one
//! balancer sample, so the seed's 5 points take 25 minutes of sustained overload (not 10 s),
//! and the 600 s cooldown is two samples. [`Sampling::Policy`] samples at the policy's
//! interval instead (2 s: 150 identical samples per trace step), which is what the controller
//! would do on these traces but makes the points react within 10 s to any hot 5-minute step.
//!
//! **Baseline.** Besides herd's policies, a run can replay LR-MMT ([`lrmmt`]), the published
//! consolidation algorithm of Beloglazov & Buyya, re-implemented here on the same fleet and
//! traces; every run is also measured by a linear energy model ([`energy`]).
//!
//! `herdctl balance simulate` and the `balance-replay` benchmark call [`run_backtest`].

pub mod accounting;
pub mod energy;
pub mod fleet;
pub mod loess;
pub mod lrmmt;
pub mod metrics;
pub mod replay;
pub mod report;
pub mod traces;

use std::path::PathBuf;
use std::time::Instant;

use herd_crds::ClusterPolicySpec;
use herd_crds::cluster_policy::{BalancerKind, BalancerPolicy};

pub use energy::PowerModel;
pub use fleet::Fleet;
pub use metrics::Metrics;
pub use report::{BacktestReport, RunReport};

/// A host shape: CPUs of `cpu_units` each (MIPS in CloudSim), memory, and power draw.
#[derive(Clone, Debug, PartialEq)]
pub struct HostShape {
    pub cpus: u32,
    pub cpu_units: f64,
    pub memory_mib: u64,
    pub power: PowerModel,
}

/// A VM shape: one vCPU of `units` at 100%, and memory.
#[derive(Clone, Debug, PartialEq)]
pub struct VmShape {
    pub units: f64,
    pub memory_mib: u64,
}

/// How VMs are placed before the replay starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InitialPlacement {
    /// The controller's scheduler, VM by VM in trace order.
    #[default]
    Scheduler,
    /// VM `i` on host `i mod hosts`, without checks.
    RoundRobin,
    /// CloudSim's start for its consolidation experiments: VM by VM in trace order, on the
    /// host whose power rises least by taking it at the first sample (ties to the first),
    /// among those the scheduler's rules allow and whose CPU can serve it then — so the fleet
    /// starts consolidated instead of spread.
    Packed,
}

/// How often the balancer samples.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Sampling {
    /// Once per trace step.
    #[default]
    TraceStep,
    /// At the policy's `sampleIntervalSeconds`.
    Policy,
    /// Every so many seconds.
    Every(f64),
}

/// The policies replayed side by side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunKind {
    /// No balancing (the balancer runs disabled: points are counted, nothing moves).
    None,
    Seed,
    Score,
    Forecast,
    Density,
    /// The published LR-MMT baseline ([`lrmmt`]), not herd's balancer.
    LrMmt,
}

impl RunKind {
    pub fn label(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Seed => "seed",
            Self::Score => "score",
            Self::Forecast => "forecast",
            Self::Density => "density",
            Self::LrMmt => "lr-mmt",
        }
    }

    /// Every run, in the table's order.
    pub const ALL: [RunKind; 6] = [
        Self::None,
        Self::Seed,
        Self::Score,
        Self::Forecast,
        Self::Density,
        Self::LrMmt,
    ];
}

/// What to replay and how.
#[derive(Clone, Debug, PartialEq)]
pub struct BacktestConfig {
    /// A folder of trace files (one per VM).
    pub traces: PathBuf,
    /// Use at most this many traces (in name order).
    pub max_vms: Option<usize>,
    pub hosts: usize,
    /// Assigned in turn to hosts.
    pub host_shapes: Vec<HostShape>,
    /// Assigned in turn to VMs.
    pub vm_shapes: Vec<VmShape>,
    pub placement: InitialPlacement,
    /// Knobs of the balancer, migration limits and overcommit; `balancer.policy` and
    /// `balancer.enabled` are set by each run.
    pub policy: ClusterPolicySpec,
    pub runs: Vec<RunKind>,
    /// Seconds per trace sample.
    pub step_seconds: f64,
    pub sampling: Sampling,
    /// Migration bandwidth, MiB/s.
    pub bandwidth_mib_per_s: f64,
}

impl BacktestConfig {
    /// Beloglazov & Buyya's CloudSim setup: 800 hosts, half HP ProLiant ML110 G4 (2 × 1860
    /// MIPS) and half G5 (2 × 2660), 4 GiB each; VMs of 2500/2000/1000/500 MIPS with
    /// 870/1740/1740/613 MiB in turn; 5-minute steps; migrations at half of a 1 Gbit/s link
    /// (62.5 MB/s, as CloudSim); the default cluster policy; every run ([`RunKind::ALL`]).
    pub fn cloudsim(traces: impl Into<PathBuf>) -> Self {
        let host = |cpu_units, power| HostShape {
            cpus: 2,
            cpu_units,
            memory_mib: 4096,
            power,
        };
        let vm = |units, memory_mib| VmShape { units, memory_mib };
        Self {
            traces: traces.into(),
            max_vms: None,
            hosts: 800,
            host_shapes: vec![
                host(1860.0, energy::ML110_G4),
                host(2660.0, energy::ML110_G5),
            ],
            vm_shapes: vec![
                vm(2500.0, 870),
                vm(2000.0, 1740),
                vm(1000.0, 1740),
                vm(500.0, 613),
            ],
            placement: InitialPlacement::Scheduler,
            policy: ClusterPolicySpec::default(),
            runs: RunKind::ALL.to_vec(),
            step_seconds: 300.0,
            sampling: Sampling::TraceStep,
            bandwidth_mib_per_s: 62.5,
        }
    }

    /// The balancer policy of one run.
    pub fn policy_for(&self, kind: RunKind) -> BalancerPolicy {
        let mut policy = self.policy.balancer.clone();
        policy.enabled = !matches!(kind, RunKind::None | RunKind::LrMmt);
        policy.policy = match kind {
            RunKind::Score => BalancerKind::Score,
            RunKind::Forecast => BalancerKind::Forecast,
            RunKind::Density => BalancerKind::Density,
            RunKind::None | RunKind::Seed | RunKind::LrMmt => BalancerKind::Seed,
        };
        policy
    }

    /// Seconds between balancer samples under `policy`.
    pub fn sample_seconds(&self, policy: &BalancerPolicy) -> f64 {
        match self.sampling {
            Sampling::TraceStep => self.step_seconds,
            Sampling::Policy => f64::from(policy.sample_interval_seconds.max(1)),
            Sampling::Every(seconds) => seconds,
        }
    }

    pub fn overcommit(&self) -> f64 {
        self.policy.scheduling.cpu_overcommit_ratio
    }

    fn check(&self) -> Result<(), BacktestError> {
        let interval = self.sample_seconds(&self.policy.balancer);
        let problem = if !above_zero(self.step_seconds) {
            Some(format!(
                "the trace step must be above 0 s (got {})",
                self.step_seconds
            ))
        } else if !above_zero(interval) {
            Some(format!(
                "the sample interval must be above 0 s (got {interval})"
            ))
        } else if !above_zero(self.bandwidth_mib_per_s) {
            Some(format!(
                "the migration bandwidth must be above 0 MiB/s (got {})",
                self.bandwidth_mib_per_s
            ))
        } else {
            None
        };
        problem.map_or(Ok(()), |p| Err(BacktestError::Config(p)))
    }
}

/// Whether `value` is a number above zero (NaN is not).
fn above_zero(value: f64) -> bool {
    value > 0.0
}

/// Why a backtest cannot run.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    #[error("cannot read trace folder {}: {source}", path.display())]
    ReadDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read trace file {}: {source}", path.display())]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("trace file {}, line {line}: {problem}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error("trace file {} holds no samples; it needs one integer CPU percentage (0-100) per line", path.display())]
    EmptyTrace { path: PathBuf },
    #[error("trace folder {} holds no trace files; it needs one file per VM", path.display())]
    NoTraces { path: PathBuf },
    #[error("The backtest needs at least one host, one host shape and one VM shape.")]
    EmptyFleet,
    #[error("Invalid backtest setting: {0}.")]
    Config(String),
}

/// Reads the traces, builds the fleet, and replays each run of `config` in turn.
pub fn run_backtest(config: &BacktestConfig) -> Result<BacktestReport, BacktestError> {
    config.check()?;
    let started = Instant::now();
    let traces = traces::read_dir(&config.traces, config.max_vms)?;
    let fleet = Fleet::build(config, &traces)?;
    let setup = started.elapsed();
    let runs = config
        .runs
        .iter()
        .map(|kind| {
            let started = Instant::now();
            let metrics = replay::run(&fleet, &traces, config, *kind);
            RunReport {
                kind: *kind,
                metrics,
                wall: started.elapsed(),
            }
        })
        .collect();
    Ok(BacktestReport {
        traces: config.traces.clone(),
        hosts: fleet.hosts.len(),
        vms: fleet.vms.len(),
        unplaced: fleet.initial.iter().filter(|h| h.is_none()).count(),
        samples: traces.iter().map(|t| t.samples.len()).max().unwrap_or(0),
        step_seconds: config.step_seconds,
        sample_seconds: config.sample_seconds(&config.policy.balancer),
        threshold_percent: config.policy.balancer.threshold_percent,
        setup,
        runs,
    })
}

#[cfg(test)]
mod tests;
