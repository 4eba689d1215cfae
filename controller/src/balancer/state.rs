//! What the balancer remembers between samples (pure): each node's points, the moves it
//! planned (for the cooldown and ping-pong guards, even before the shell reports them back as
//! completed migrations), when it last sampled, (for `score`) each VM's demand summed since
//! the last round, (for `forecast` and `density`) each VM's recent demand, and (for
//! `density`) the node being emptied and the nodes it emptied.
//!
//! It lives in the leader's memory. After a failover the new leader starts with no points
//! (a hot node needs a full run of samples again) and relies on the history the shell derives
//! from `Migration` objects ([`super::observe::past_move`]) for the guards.

use std::collections::{BTreeMap, BTreeSet};

use super::observe::PastMove;
use super::outlook::{DemandHistory, VmForecast};
use super::points::{NodePoints, PointSample};

/// A sample that comes this much earlier than the interval is still taken (clock jitter).
const EARLY_TOLERANCE: f64 = 0.1;

/// The balancer's memory.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BalancerState {
    nodes: BTreeMap<String, NodePoints>,
    planned: BTreeMap<String, Vec<PastMove>>,
    last_sample: Option<f64>,
    samples_since_round: u32,
    /// Per VM: the sum of each vCPU's demand (reference percent) since the last score round,
    /// and how many samples it holds.
    window: BTreeMap<String, (Vec<f64>, u32)>,
    /// Per VM: its demand at the last samples (`forecast`, `density`).
    histories: BTreeMap<String, DemandHistory>,
    /// `density`: the node being emptied.
    draining: Option<String>,
    /// `density`: the nodes it emptied that are still empty (power-off candidates).
    emptied: BTreeSet<String>,
}

impl BalancerState {
    pub fn new() -> Self {
        Self::default()
    }

    /// A node's points and their history (for `herdctl describe node`).
    pub fn points(&self, node: &str) -> Option<&NodePoints> {
        self.nodes.get(node)
    }

    /// Every node's points, by name.
    pub fn nodes(&self) -> impl Iterator<Item = (&str, &NodePoints)> {
        self.nodes
            .iter()
            .map(|(name, points)| (name.as_str(), points))
    }

    /// The moves this balancer planned for `vm` within the last cooldown.
    pub fn planned_moves(&self, vm: &str) -> &[PastMove] {
        self.planned.get(vm).map_or(&[], Vec::as_slice)
    }

    /// Whether a sample is due at `now` (and if so, takes it).
    pub(super) fn take_sample(&mut self, now: f64, interval: f64) -> bool {
        let due = self
            .last_sample
            .is_none_or(|last| now - last >= interval * (1.0 - EARLY_TOLERANCE));
        if due {
            self.last_sample = Some(now);
            self.samples_since_round = self.samples_since_round.saturating_add(1);
        }
        due
    }

    /// Whether a `score` round is due: one every `every` samples.
    pub(super) fn take_round(&mut self, every: u32) -> bool {
        let due = self.samples_since_round >= every.max(1);
        if due {
            self.samples_since_round = 0;
        }
        due
    }

    /// Adds one sample of a VM's demands — `local` percent × `speed` is reference percent —
    /// to the round's window.
    pub(super) fn accumulate(&mut self, vm: &str, local: &[f64], speed: f64) {
        match self.window.get_mut(vm) {
            Some((sums, count)) if sums.len() == local.len() => {
                sums.iter_mut()
                    .zip(local)
                    .for_each(|(s, d)| *s += d * speed);
                *count += 1;
            }
            _ => {
                let sample = local.iter().map(|d| d * speed).collect();
                self.window.insert(vm.to_owned(), (sample, 1));
            }
        }
    }

    /// Each VM's mean demands over the window, which starts again.
    pub(super) fn take_means(&mut self) -> BTreeMap<String, Vec<f64>> {
        std::mem::take(&mut self.window)
            .into_iter()
            .map(|(vm, (sums, count))| {
                let count = f64::from(count.max(1));
                (vm, sums.into_iter().map(|s| s / count).collect())
            })
            .collect()
    }

    /// Adds one sample of every VM's demands (`local` percent × `speed` is reference
    /// percent) to its history; VMs not in this sample are forgotten.
    pub(super) fn observe<'v>(&mut self, demands: impl Iterator<Item = (&'v str, &'v [f64], f64)>) {
        let mut histories = BTreeMap::new();
        for (vm, local, speed) in demands {
            let mut history = self.histories.remove(vm).unwrap_or_default();
            history.push(local.iter().map(|d| d * speed).collect());
            histories.insert(vm.to_owned(), history);
        }
        self.histories = histories;
    }

    /// Each VM's forecast from its history.
    pub(super) fn forecasts(&self) -> BTreeMap<String, VmForecast> {
        self.histories
            .iter()
            .filter_map(|(vm, history)| Some((vm.clone(), history.forecast()?)))
            .collect()
    }

    /// `density`: the node being emptied.
    pub fn draining(&self) -> Option<&str> {
        self.draining.as_deref()
    }

    pub(super) fn set_draining(&mut self, node: Option<String>) {
        self.draining = node;
    }

    /// Whether `density` emptied `node` and it is still empty: it may be powered off.
    pub fn is_power_off_candidate(&self, node: &str) -> bool {
        self.emptied.contains(node)
    }

    /// Marks `node` emptied (`true`) or in use again (`false`); returns whether that changed.
    pub(super) fn set_emptied(&mut self, node: &str, emptied: bool) -> bool {
        if emptied {
            self.emptied.insert(node.to_owned())
        } else {
            self.emptied.remove(node)
        }
    }

    /// The nodes marked emptied.
    pub(super) fn emptied(&self) -> Vec<String> {
        self.emptied.iter().cloned().collect()
    }

    /// Counts a sample of `node`; returns whether it is overloaded.
    pub(super) fn record(&mut self, node: &str, sample: PointSample, trigger: u32) -> bool {
        if let Some(points) = self.nodes.get_mut(node) {
            return points.record(sample, trigger);
        }
        let mut points = NodePoints::default();
        let overloaded = points.record(sample, trigger);
        self.nodes.insert(node.to_owned(), points);
        overloaded
    }

    /// A VM was moved off `node`: its points start again.
    pub(super) fn reset(&mut self, node: &str) {
        if let Some(points) = self.nodes.get_mut(node) {
            points.reset();
        }
    }

    /// Remembers a planned move.
    pub(super) fn remember(&mut self, vm: &str, from: &str, to: &str, at: f64) {
        self.planned
            .entry(vm.to_owned())
            .or_default()
            .push(PastMove {
                from: from.to_owned(),
                to: to.to_owned(),
                at,
                by_balancer: true,
            });
    }

    /// Forgets planned moves older than `cutoff` and nodes not in `present`.
    pub(super) fn prune(&mut self, cutoff: f64, present: &BTreeSet<&str>) {
        self.planned.retain(|_, moves| {
            moves.retain(|m| m.at >= cutoff);
            !moves.is_empty()
        });
        self.nodes.retain(|name, _| present.contains(name.as_str()));
        self.emptied.retain(|name| present.contains(name.as_str()));
        if self
            .draining
            .as_deref()
            .is_some_and(|d| !present.contains(d))
        {
            self.draining = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_come_at_the_interval_with_a_little_tolerance() {
        let mut state = BalancerState::new();
        assert!(state.take_sample(0.0, 2.0));
        assert!(!state.take_sample(1.0, 2.0));
        assert!(state.take_sample(1.9, 2.0));
        assert!(state.take_sample(4.0, 2.0));
    }

    #[test]
    fn a_round_every_n_samples() {
        let mut state = BalancerState::new();
        let rounds: Vec<bool> = (0..10)
            .map(|i| {
                state.take_sample(f64::from(i) * 2.0, 2.0);
                state.take_round(5)
            })
            .collect();
        assert_eq!(rounds.iter().filter(|r| **r).count(), 2);
        assert!(rounds[4] && rounds[9]);
    }

    #[test]
    fn the_window_averages_each_vcpu_and_starts_again() {
        let mut state = BalancerState::new();
        state.accumulate("a", &[100.0, 0.0], 1.0);
        state.accumulate("b", &[5.0], 2.0);
        state.accumulate("a", &[50.0, 20.0], 1.0);
        let means = state.take_means();
        assert_eq!(means["a"], [75.0, 10.0]);
        assert_eq!(means["b"], [10.0]);
        assert!(state.take_means().is_empty());
    }

    #[test]
    fn histories_follow_the_vms_of_each_sample() {
        let mut state = BalancerState::new();
        let a = [50.0];
        let b = [10.0];
        state.observe([("a", &a[..], 2.0), ("b", &b[..], 1.0)].into_iter());
        let c = [30.0];
        state.observe([("a", &c[..], 2.0)].into_iter());
        let forecasts = state.forecasts();
        assert_eq!(
            forecasts["a"].mean,
            [80.0],
            "(100 + 60) / 2, reference percent"
        );
        assert!(!forecasts.contains_key("b"), "gone VMs are forgotten");
    }

    #[test]
    fn planned_moves_are_forgotten_after_the_cooldown_and_gone_nodes_dropped() {
        let mut state = BalancerState::new();
        state.remember("a", "ferby", "gerby", 10.0);
        state.remember("a", "gerby", "herby", 700.0);
        let sample = PointSample {
            at: 0.0,
            load_percent: 100.0,
            demand_percent: 125.0,
            busy_vcpus: 5,
            cpus: 4,
            hot: true,
            points: 0,
        };
        state.record("ferby", sample.clone(), 5);
        state.record("gone", sample, 5);
        state.prune(100.0, &BTreeSet::from(["ferby"]));
        assert_eq!(state.planned_moves("a").len(), 1);
        assert_eq!(state.planned_moves("a")[0].from, "gerby");
        assert!(state.points("gone").is_none());
        assert_eq!(state.points("ferby").map(NodePoints::points), Some(1));
    }
}
