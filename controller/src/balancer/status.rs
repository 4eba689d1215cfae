//! What the balancer publishes in the API (pure): a node's points as `NodeStatus.balancer`,
//! and the decision behind a move as `MigrationStatus.decision`.
//!
//! A node's section changes only when its points, its hotness, whether it was overloaded, or
//! the knobs it was judged by change; [`node_status`] returns `None` otherwise, so the shell
//! writes nothing for a node whose state holds still (the load of every sample is in the
//! heartbeat already). Its history is those changes, the last [`NODE_HISTORY_LEN`].

use chrono::{DateTime, Utc};
use herd_crds::balancing::{
    BalancerCandidate, BalancerDecision, BalancerMoveReason, BalancerSample, CandidateOutcome,
    DECISION_CANDIDATES_LEN, LoadSnapshot, NODE_HISTORY_LEN, NodeBalancerStatus, PredictedEffect,
};
use herd_crds::cluster_policy::BalancerPolicy;

use super::decision::{CandidateReport, Decision, LoadSummary, MoveReason, Outcome, PlannedMove};
use super::points::{NodePoints, PointSample};

/// The node's section after its latest sample, or `None` when it would not change;
/// `power_off_candidate`: `density` emptied it and it is still empty.
pub fn node_status(
    previous: Option<&NodeBalancerStatus>,
    points: &NodePoints,
    policy: &BalancerPolicy,
    power_off_candidate: bool,
) -> Option<NodeBalancerStatus> {
    let latest = points.history().last()?;
    let trigger = policy.points_to_trigger.max(1);
    let overloaded = latest.hot && latest.points >= trigger;
    let unchanged = previous.is_some_and(|p| {
        p.points == points.points()
            && p.hot == latest.hot
            && p.overloaded == overloaded
            && p.points_to_trigger == trigger
            && p.threshold_percent == policy.threshold_percent
            && p.power_off_candidate == power_off_candidate
    });
    if unchanged {
        return None;
    }
    let sample = sample(latest);
    let mut history = previous.map(|p| p.history.clone()).unwrap_or_default();
    // A reset after a move changes the points without a new sample: replace, not repeat.
    if history.last().is_some_and(|last| last.time == sample.time) {
        history.pop();
    }
    history.push(sample);
    let skip = history.len().saturating_sub(NODE_HISTORY_LEN);
    history.drain(..skip);
    Some(NodeBalancerStatus {
        points: points.points(),
        points_to_trigger: trigger,
        threshold_percent: policy.threshold_percent,
        hot: latest.hot,
        overloaded,
        power_off_candidate,
        history,
    })
}

/// The decision behind `planned`, for its Migration's status.
pub fn decision(decision: &Decision, planned: &PlannedMove) -> BalancerDecision {
    let about_source: Vec<&CandidateReport> = decision
        .candidates
        .iter()
        .filter(|c| c.node == planned.from)
        .collect();
    // The moved VM first, then the others in the order they were considered.
    let mut ordered: Vec<&CandidateReport> = about_source
        .iter()
        .copied()
        .filter(|c| c.vm == planned.vm)
        .collect();
    ordered.extend(about_source.iter().copied().filter(|c| c.vm != planned.vm));
    let omitted = ordered.len().saturating_sub(DECISION_CANDIDATES_LEN);
    ordered.truncate(DECISION_CANDIDATES_LEN);
    let p = &planned.predicted;
    BalancerDecision {
        policy: decision.policy,
        reason: match planned.reason {
            MoveReason::Overloaded => BalancerMoveReason::Overloaded,
            MoveReason::Spread => BalancerMoveReason::Spread,
            MoveReason::PredictedOverload => BalancerMoveReason::PredictedOverload,
            MoveReason::Consolidate => BalancerMoveReason::Consolidate,
        },
        decided_at: time(decision.at),
        explanation: planned.explanation.clone(),
        points_history: planned.points_history.iter().map(sample).collect(),
        offers: planned.offers.clone(),
        predicted: PredictedEffect {
            source_before: snapshot(&p.source_before),
            source_after: snapshot(&p.source_after),
            target_before: snapshot(&p.target_before),
            target_after: snapshot(&p.target_after),
            spread_before: p.spread_before.map(tenth),
            spread_after: p.spread_after.map(tenth),
        },
        candidates: ordered.into_iter().map(candidate).collect(),
        candidates_omitted: u32::try_from(omitted).unwrap_or(u32::MAX),
    }
}

fn candidate(report: &CandidateReport) -> BalancerCandidate {
    let (outcome, message) = match &report.outcome {
        Outcome::Chosen { to } => (CandidateOutcome::Chosen, format!("moves to {to}")),
        Outcome::Refused(refusal) => (CandidateOutcome::Refused, refusal.to_string()),
        Outcome::NoTarget(refusals) => (CandidateOutcome::NoTarget, refusals.to_string()),
        Outcome::RankedBelow { chosen } => (
            CandidateOutcome::RankedBelow,
            format!("{chosen} ranked first"),
        ),
        Outcome::BelowMinGain { to, gain, min } => (
            CandidateOutcome::BelowMinGain,
            format!("its best move, to {to}, gains {gain:.1} (at least {min:.1} needed)"),
        ),
    };
    BalancerCandidate {
        vm: report.vm.clone(),
        outcome,
        message,
    }
}

fn sample(point: &PointSample) -> BalancerSample {
    BalancerSample {
        time: time(point.at),
        points: point.points,
        hot: point.hot,
        load_percent: tenth(point.load_percent),
        demand_percent: tenth(point.demand_percent),
        busy_vcpus: point.busy_vcpus,
        cpus: point.cpus,
    }
}

fn snapshot(summary: &LoadSummary) -> LoadSnapshot {
    LoadSnapshot {
        load_percent: tenth(summary.load_percent),
        demand_percent: tenth(summary.demand_percent),
        busy_vcpus: summary.busy_vcpus,
        cpus: summary.cpus,
        hot: summary.hot,
    }
}

/// Seconds since the Unix epoch (the controller's `now`) as a time, to the microsecond.
fn time(seconds: f64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros((seconds * 1e6).round() as i64).unwrap_or_default()
}

/// Rounded to a tenth, so the stored YAML stays readable.
fn tenth(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::decision::TargetRefusals;
    use crate::balancer::guards::Refusal;
    use crate::balancer::{Decision, Prediction};
    use herd_crds::cluster_policy::BalancerKind;

    fn point(at: f64, hot: bool) -> PointSample {
        PointSample {
            at,
            load_percent: if hot { 97.26 } else { 20.0 },
            demand_percent: if hot { 125.04 } else { 20.0 },
            busy_vcpus: if hot { 5 } else { 1 },
            cpus: 4,
            hot,
            points: 0,
        }
    }

    /// Feeds `pattern` to a node's points, publishing after each sample as the shell does;
    /// returns how many writes it took and the last section written.
    fn publish(pattern: &[bool]) -> (usize, Option<NodeBalancerStatus>) {
        let policy = BalancerPolicy::default();
        let mut points = NodePoints::default();
        let mut stored: Option<NodeBalancerStatus> = None;
        let mut writes = 0;
        for (i, hot) in pattern.iter().enumerate() {
            points.record(point(1_000.0 + 2.0 * i as f64, *hot), 5);
            if let Some(next) = node_status(stored.as_ref(), &points, &policy, false) {
                stored = Some(next);
                writes += 1;
            }
        }
        (writes, stored)
    }

    #[test]
    fn a_quiet_node_is_written_once() {
        let (writes, stored) = publish(&[false; 30]);
        assert_eq!(writes, 1);
        let stored = stored.unwrap();
        assert_eq!(
            (stored.points, stored.hot, stored.overloaded),
            (0, false, false)
        );
        assert_eq!(stored.history.len(), 1);
        assert_eq!(stored.points_to_trigger, 5);
        assert_eq!(stored.threshold_percent, 80.0);
    }

    #[test]
    fn each_change_is_written_and_kept_in_a_bounded_history() {
        let (writes, stored) = publish(&[true; 8]);
        assert_eq!(writes, 5, "1 2 3 4 5, then nothing changes at the trigger");
        let stored = stored.unwrap();
        assert_eq!(
            (stored.points, stored.hot, stored.overloaded),
            (5, true, true)
        );
        let trail: Vec<u32> = stored.history.iter().map(|s| s.points).collect();
        assert_eq!(trail, [1, 2, 3, 4, 5]);
        let last = stored.history.last().unwrap();
        assert_eq!((last.load_percent, last.demand_percent), (97.3, 125.0));
        assert_eq!((last.busy_vcpus, last.cpus), (5, 4));
        assert_eq!(last.time.timestamp(), 1_008);

        let flapping: Vec<bool> = (0..40).map(|i| i % 2 == 0).collect();
        let (writes, stored) = publish(&flapping);
        assert_eq!(writes, 40);
        assert_eq!(stored.unwrap().history.len(), NODE_HISTORY_LEN);
    }

    #[test]
    fn a_reset_replaces_the_last_sample_instead_of_repeating_it() {
        let policy = BalancerPolicy::default();
        let mut points = NodePoints::default();
        let mut stored = None;
        for i in 0..5 {
            points.record(point(f64::from(i), true), 5);
            stored = node_status(stored.as_ref(), &points, &policy, false).or(stored);
        }
        points.reset();
        let after = node_status(stored.as_ref(), &points, &policy, false).expect("points changed");
        assert_eq!(after.points, 0);
        assert!(after.overloaded, "it was overloaded at its latest sample");
        assert_eq!(after.history.len(), 5);
        assert_eq!(after.history.last().map(|s| s.points), Some(5));
        let mut changed = policy.clone();
        changed.threshold_percent = 90.0;
        assert!(node_status(Some(&after), &points, &policy, false).is_none());
        assert!(node_status(Some(&after), &points, &changed, false).is_some());
        assert!(node_status(None, &NodePoints::default(), &policy, false).is_none());
    }

    #[test]
    fn a_power_off_candidate_is_published_when_it_changes() {
        let policy = BalancerPolicy::default();
        let mut points = NodePoints::default();
        points.record(point(0.0, false), 5);
        let quiet = node_status(None, &points, &policy, false).expect("first write");
        assert!(!quiet.power_off_candidate);
        let emptied = node_status(Some(&quiet), &points, &policy, true).expect("marked");
        assert!(emptied.power_off_candidate);
        assert!(node_status(Some(&emptied), &points, &policy, true).is_none());
        let used = node_status(Some(&emptied), &points, &policy, false).expect("cleared");
        assert!(!used.power_off_candidate);
    }

    fn summary(load: f64, hot: bool) -> LoadSummary {
        LoadSummary {
            load_percent: load,
            demand_percent: load,
            busy_vcpus: 2,
            cpus: 4,
            hot,
        }
    }

    #[test]
    fn a_decision_keeps_points_offers_prediction_and_the_sources_candidates() {
        let mut made = Decision::new(1_000.5, BalancerKind::Seed);
        let others = (0..20).map(|i| CandidateReport {
            vm: format!("other-{i}"),
            node: "ferby".into(),
            outcome: Outcome::Refused(Refusal::Pinned),
        });
        made.candidates.extend(others);
        made.candidates.push(CandidateReport {
            vm: "far".into(),
            node: "gerby".into(),
            outcome: Outcome::NoTarget(TargetRefusals::default()),
        });
        made.candidates.push(CandidateReport {
            vm: "e".into(),
            node: "ferby".into(),
            outcome: Outcome::Chosen { to: "herby".into() },
        });
        let planned = PlannedMove {
            vm: "e".into(),
            from: "ferby".into(),
            to: "herby".into(),
            reason: MoveReason::Overloaded,
            memory_mib: 1024,
            predicted: Prediction {
                source_before: summary(100.0, true),
                source_after: summary(75.0, false),
                target_before: summary(25.0, false),
                target_after: summary(50.0, false),
                spread_before: None,
                spread_after: None,
            },
            offers: vec!["herby".into(), "gerby".into()],
            points_history: vec![point(998.5, true), point(1_000.5, true)],
            explanation: "ferby was overloaded".into(),
        };
        let kept = decision(&made, &planned);
        assert_eq!(kept.reason, BalancerMoveReason::Overloaded);
        assert_eq!(kept.decided_at.timestamp_millis(), 1_000_500);
        assert_eq!(kept.points_history.len(), 2);
        assert_eq!(kept.offers, ["herby", "gerby"]);
        assert_eq!(kept.predicted.source_after.load_percent, 75.0);
        assert_eq!(kept.candidates.len(), DECISION_CANDIDATES_LEN);
        assert_eq!(kept.candidates_omitted, 5);
        assert_eq!(kept.candidates[0].vm, "e", "the moved VM comes first");
        assert_eq!(kept.candidates[0].outcome, CandidateOutcome::Chosen);
        assert_eq!(kept.candidates[0].message, "moves to herby");
        assert_eq!(kept.candidates[1].outcome, CandidateOutcome::Refused);
        assert!(kept.candidates.iter().all(|c| c.vm != "far"));
        assert_eq!(kept.explanation, "ferby was overloaded");
    }
}
