//! The result of a backtest and its side-by-side table.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::RunKind;
use super::metrics::Metrics;

/// One policy's replay.
#[derive(Clone, Debug, PartialEq)]
pub struct RunReport {
    pub kind: RunKind,
    pub metrics: Metrics,
    /// Wall time of the replay (traces already read).
    pub wall: Duration,
}

/// Every run of one backtest.
#[derive(Clone, Debug, PartialEq)]
pub struct BacktestReport {
    pub traces: PathBuf,
    pub hosts: usize,
    pub vms: usize,
    /// VMs the initial placement found no room for (left out of the replay).
    pub unplaced: usize,
    pub samples: usize,
    pub step_seconds: f64,
    pub sample_seconds: f64,
    pub threshold_percent: f64,
    /// Wall time to read the traces and build the fleet.
    pub setup: Duration,
    pub runs: Vec<RunReport>,
}

impl BacktestReport {
    /// The run of one policy.
    pub fn run(&self, kind: RunKind) -> Option<&RunReport> {
        self.runs.iter().find(|r| r.kind == kind)
    }
}

impl BacktestReport {
    /// The table's rows: a label and one value per run.
    fn rows(&self) -> Vec<(String, Vec<String>)> {
        let row = |label: String, value: &dyn Fn(&RunReport) -> String| {
            (label, self.runs.iter().map(value).collect())
        };
        vec![
            row("migrations".into(), &|r| r.metrics.migrations.to_string()),
            row(
                format!("host-time over {:.0}% (%)", self.threshold_percent),
                &|r| format!("{:.2}", r.metrics.over_threshold_percent()),
            ),
            row("host-time at 100%, SLA violation (%)".into(), &|r| {
                format!("{:.2}", r.metrics.saturated_percent())
            }),
            row("VMs moved more than once in an hour".into(), &|r| {
                r.metrics.vms_moved_twice_in_an_hour.to_string()
            }),
            row("energy, linear model (kWh)".into(), &|r| {
                format!("{:.1}", r.metrics.energy_kwh())
            }),
            row("replay wall time (s)".into(), &|r| {
                format!("{:.2}", r.wall.as_secs_f64())
            }),
        ]
    }
}

const LABEL_WIDTH: usize = 40;
const COLUMN_WIDTH: usize = 10;

impl fmt::Display for BacktestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let day = self.traces.file_name().map_or_else(
            || self.traces.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        writeln!(
            f,
            "PlanetLab replay {day}: {} VMs ({} unplaced) on {} hosts, {} samples x {:.0} s, \
             balancer sampled every {:.0} s",
            self.vms,
            self.unplaced,
            self.hosts,
            self.samples,
            self.step_seconds,
            self.sample_seconds
        )?;
        write!(f, "{:<LABEL_WIDTH$}", "")?;
        for run in &self.runs {
            write!(f, "{:>COLUMN_WIDTH$}", run.kind.label())?;
        }
        writeln!(f)?;
        for (label, values) in self.rows() {
            write!(f, "{label:<LABEL_WIDTH$}")?;
            for value in values {
                write!(f, "{value:>COLUMN_WIDTH$}")?;
            }
            writeln!(f)?;
        }
        write!(
            f,
            "(reading the traces and placing the VMs: {:.2} s)",
            self.setup.as_secs_f64()
        )
    }
}
