//! What a backtest run measures (pure).
//!
//! Host-time counts only *active* hosts — those running at least one VM at the sample, as
//! CloudSim's SLATAH does (an empty host can be neither overloaded nor saturated, it would only
//! dilute the percentages). Each sample stands for the time until the next one.

use std::collections::BTreeMap;

/// The totals of one run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics {
    /// Live migrations started.
    pub migrations: usize,
    /// Seconds × hosts with at least one VM.
    pub active_host_seconds: f64,
    /// Of which with CPU load above the threshold.
    pub over_threshold_seconds: f64,
    /// Of which with CPU load at 100% (every CPU saturated): the SLA violation.
    pub saturated_seconds: f64,
    /// VMs that moved more than once within some hour.
    pub vms_moved_twice_in_an_hour: usize,
    /// VMs that moved at all.
    pub vms_moved: usize,
    /// Energy of the powered hosts by the linear model ([`super::energy`]), joules.
    pub energy_joules: f64,
}

impl Metrics {
    /// Percent of active host-time above the threshold.
    pub fn over_threshold_percent(&self) -> f64 {
        percent(self.over_threshold_seconds, self.active_host_seconds)
    }

    /// Percent of active host-time at 100%.
    pub fn saturated_percent(&self) -> f64 {
        percent(self.saturated_seconds, self.active_host_seconds)
    }

    /// Energy, kWh.
    pub fn energy_kwh(&self) -> f64 {
        self.energy_joules / super::energy::JOULES_PER_KWH
    }
}

fn percent(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part * 100.0 / whole
    } else {
        0.0
    }
}

/// A load of at least this is 100% (float sums of shares).
const SATURATED: f64 = 100.0 - 1e-6;

/// Accumulates samples and moves.
#[derive(Clone, Debug, Default)]
pub struct Recorder {
    metrics: Metrics,
    moves: BTreeMap<usize, Vec<f64>>,
}

impl Recorder {
    /// Counts one host over `seconds` at `load_percent`, if it runs a VM.
    pub fn host(&mut self, vms: usize, load_percent: f64, threshold: f64, seconds: f64) {
        if vms == 0 {
            return;
        }
        self.metrics.active_host_seconds += seconds;
        if load_percent > threshold {
            self.metrics.over_threshold_seconds += seconds;
        }
        if load_percent >= SATURATED {
            self.metrics.saturated_seconds += seconds;
        }
    }

    /// Counts a powered host drawing `watts` over `seconds`.
    pub fn power(&mut self, watts: f64, seconds: f64) {
        self.metrics.energy_joules += watts * seconds;
    }

    /// Counts a migration of VM `vm` started at `at`.
    pub fn migration(&mut self, vm: usize, at: f64) {
        self.metrics.migrations += 1;
        self.moves.entry(vm).or_default().push(at);
    }

    /// The totals.
    pub fn finish(mut self) -> Metrics {
        self.metrics.vms_moved = self.moves.len();
        self.metrics.vms_moved_twice_in_an_hour = self
            .moves
            .values()
            .filter(|times| times.windows(2).any(|w| w[1] - w[0] < 3600.0))
            .count();
        self.metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_time_counts_active_hosts_only() {
        let mut recorder = Recorder::default();
        recorder.host(0, 100.0, 80.0, 300.0);
        recorder.host(2, 100.0, 80.0, 300.0);
        recorder.host(1, 90.0, 80.0, 300.0);
        recorder.host(1, 50.0, 80.0, 300.0);
        recorder.host(1, 80.0, 80.0, 300.0);
        let metrics = recorder.finish();
        assert_eq!(metrics.active_host_seconds, 1200.0);
        assert_eq!(metrics.over_threshold_percent(), 50.0);
        assert_eq!(metrics.saturated_percent(), 25.0);
    }

    #[test]
    fn energy_adds_up_in_kilowatt_hours() {
        let mut recorder = Recorder::default();
        recorder.power(100.0, 1800.0);
        recorder.power(100.0, 1800.0);
        assert_eq!(recorder.finish().energy_kwh(), 0.1);
    }

    #[test]
    fn a_vm_moved_twice_within_an_hour_is_counted_once() {
        let mut recorder = Recorder::default();
        for (vm, at) in [
            (1, 0.0),
            (1, 3000.0),
            (1, 3300.0),
            (2, 0.0),
            (2, 3600.0),
            (3, 10.0),
        ] {
            recorder.migration(vm, at);
        }
        let metrics = recorder.finish();
        assert_eq!(metrics.migrations, 6);
        assert_eq!(metrics.vms_moved, 3);
        assert_eq!(metrics.vms_moved_twice_in_an_hour, 1);
        assert_eq!(Metrics::default().over_threshold_percent(), 0.0);
    }
}
