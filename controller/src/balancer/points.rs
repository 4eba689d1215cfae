//! The seed's points: how long a node has been hot (pure).
//!
//! At every sample a node gains a point when it is hot and loses one when it is not, never
//! going under 0. At [`BalancerPolicy::points_to_trigger`] points (5 by default) a node that is
//! still hot is **overloaded** and sheds one VM. Two details the seed left open:
//!
//! - Points never exceed the trigger: a node that stayed hot for an hour is not held
//!   overloaded for an hour after it cools (it leaves the overloaded state one sample after it
//!   stops being hot, as the counter falls under the trigger).
//! - Once a VM is moved off an overloaded node its points start again from 0: one VM per
//!   overload, and the next one only if the node is hot for another full run of samples, now
//!   that the move is under way. When no node offers help, the points stay at the trigger and
//!   the node asks again at the next sample.
//!
//! Every sample is kept (the last [`HISTORY_LEN`]) so a decision can show why a node was
//! judged overloaded, and `herdctl describe node` can show the points.
//!
//! [`BalancerPolicy::points_to_trigger`]: herd_crds::cluster_policy::BalancerPolicy

use std::collections::VecDeque;

/// Samples kept per node for explanation.
pub const HISTORY_LEN: usize = 20;

/// The points after one more sample.
pub fn next_points(points: u32, hot: bool, trigger: u32) -> u32 {
    if hot {
        points.saturating_add(1).min(trigger.max(1))
    } else {
        points.saturating_sub(1)
    }
}

/// Whether a node with `points` that is `hot` now is overloaded.
pub fn is_overloaded(points: u32, hot: bool, trigger: u32) -> bool {
    hot && points >= trigger.max(1)
}

/// One sample of one node, as it was judged.
#[derive(Clone, Debug, PartialEq)]
pub struct PointSample {
    pub at: f64,
    /// CPU load, percent of the node's CPUs (0–100).
    pub load_percent: f64,
    /// What its vCPUs want, percent of its CPUs (above 100 when overcommitted).
    pub demand_percent: f64,
    pub busy_vcpus: u32,
    pub cpus: u32,
    pub hot: bool,
    /// Points after this sample.
    pub points: u32,
}

/// A node's points and their recent history.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodePoints {
    points: u32,
    history: VecDeque<PointSample>,
}

impl NodePoints {
    /// Current points.
    pub fn points(&self) -> u32 {
        self.points
    }

    /// The latest samples, oldest first.
    pub fn history(&self) -> impl ExactSizeIterator<Item = &PointSample> {
        self.history.iter()
    }

    /// Counts one sample; returns whether the node is now overloaded.
    pub fn record(&mut self, mut sample: PointSample, trigger: u32) -> bool {
        self.points = next_points(self.points, sample.hot, trigger);
        sample.points = self.points;
        let overloaded = is_overloaded(self.points, sample.hot, trigger);
        if self.history.len() == HISTORY_LEN {
            self.history.pop_front();
        }
        self.history.push_back(sample);
        overloaded
    }

    /// Starts counting again after a VM was moved off the node.
    pub fn reset(&mut self) {
        self.points = 0;
    }

    /// `3 4 5` — the points of the kept samples, for messages.
    pub fn trail(&self) -> String {
        self.history
            .iter()
            .map(|s| s.points.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(hot: bool) -> PointSample {
        PointSample {
            at: 0.0,
            load_percent: if hot { 100.0 } else { 10.0 },
            demand_percent: if hot { 125.0 } else { 10.0 },
            busy_vcpus: 5,
            cpus: 4,
            hot,
            points: 0,
        }
    }

    #[test]
    fn hot_adds_a_point_cool_removes_one_never_under_zero() {
        assert_eq!(next_points(0, true, 5), 1);
        assert_eq!(next_points(3, true, 5), 4);
        assert_eq!(next_points(3, false, 5), 2);
        assert_eq!(next_points(0, false, 5), 0);
    }

    #[test]
    fn points_stop_at_the_trigger() {
        assert_eq!(next_points(5, true, 5), 5);
        assert_eq!(next_points(5, false, 5), 4);
        assert_eq!(next_points(0, true, 0), 1, "a trigger of 0 acts as 1");
    }

    #[test]
    fn overloaded_at_the_trigger_only_while_hot() {
        assert!(is_overloaded(5, true, 5));
        assert!(!is_overloaded(4, true, 5));
        assert!(!is_overloaded(5, false, 5));
    }

    #[test]
    fn five_hot_samples_in_a_row_overload_a_node() {
        let mut node = NodePoints::default();
        let verdicts: Vec<bool> = (0..5).map(|_| node.record(sample(true), 5)).collect();
        assert_eq!(verdicts, [false, false, false, false, true]);
        assert_eq!(node.trail(), "1 2 3 4 5");
    }

    #[test]
    fn a_cool_sample_in_between_delays_overload() {
        let mut node = NodePoints::default();
        let pattern = [true, true, true, false, true, true, true];
        let verdicts: Vec<bool> = pattern.iter().map(|h| node.record(sample(*h), 5)).collect();
        assert_eq!(node.trail(), "1 2 3 2 3 4 5");
        assert_eq!(verdicts.last(), Some(&true));
        assert_eq!(verdicts.iter().filter(|v| **v).count(), 1);
    }

    #[test]
    fn reset_starts_again_and_history_is_bounded() {
        let mut node = NodePoints::default();
        for _ in 0..(HISTORY_LEN + 7) {
            node.record(sample(true), 5);
        }
        assert_eq!(node.history().len(), HISTORY_LEN);
        node.reset();
        assert_eq!(node.points(), 0);
        assert!(!node.record(sample(true), 5));
        assert_eq!(node.points(), 1);
    }
}
