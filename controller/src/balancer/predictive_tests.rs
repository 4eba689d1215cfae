//! Tests of [`super::balance`] under the `forecast` and `density` policies: predicted overload,
//! the stay guard, consolidation and power-off candidates.

use herd_crds::cluster_policy::{BalancerKind, BalancerPolicy, MigrationLimits};

use super::testing::{host, vm};
use super::*;

/// One VM's placement and CPU use: `(vm, node, percent of one CPU)`.
type Placed<'a> = (&'a str, &'a str, f64);

/// Views of `nodes` (`(name, cpus)`) running `placed`, vCPUs dealt over each node's CPUs.
fn views(nodes: &[(&str, u32)], placed: &[Placed<'_>]) -> (Vec<HostView>, Vec<VmView>) {
    let hosts = nodes
        .iter()
        .map(|(name, cpus)| {
            let here: Vec<(&str, u32, f64)> = placed
                .iter()
                .filter(|(_, node, _)| node == name)
                .enumerate()
                .map(|(i, (vm, _, percent))| (*vm, i as u32 % cpus, *percent))
                .collect();
            host(name, *cpus, &here)
        })
        .collect();
    let vms = placed
        .iter()
        .map(|(name, node, _)| vm(name, node, 0.0))
        .collect();
    (hosts, vms)
}

fn policy(kind: BalancerKind) -> BalancerPolicy {
    BalancerPolicy {
        policy: kind,
        ..BalancerPolicy::default()
    }
}

/// Runs one sample at `now`.
fn sample(
    policy: &BalancerPolicy,
    state: &mut BalancerState,
    placed: &[Placed<'_>],
    nodes: &[(&str, u32)],
    now: f64,
) -> Decision {
    let (hosts, vms) = views(nodes, placed);
    balance(
        policy,
        &MigrationLimits::default(),
        state,
        &hosts,
        &vms,
        &[],
        now,
    )
}

/// Moves the planned VMs in `placed` (as if their migrations completed).
fn land(placed: &mut [Placed<'_>], decision: &Decision, nodes: &[(&'static str, u32)]) {
    for planned in &decision.moves {
        let to = nodes
            .iter()
            .map(|(name, _)| *name)
            .find(|name| *name == planned.to)
            .expect("a known node");
        for entry in placed.iter_mut().filter(|p| p.0 == planned.vm) {
            entry.1 = to;
        }
    }
}

const FOUR: [(&str, u32); 3] = [("ferby", 4), ("gerby", 4), ("herby", 4)];

#[test]
fn forecast_sheds_a_crowded_node_at_once_and_then_holds_still() {
    let policy = policy(BalancerKind::Forecast);
    let mut state = BalancerState::new();
    let mut placed: Vec<Placed<'_>> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|vm| (*vm, "ferby", 90.0))
        .collect();
    let first = sample(&policy, &mut state, &placed, &FOUR, 2.0);
    assert_eq!(first.moves.len(), 1, "{:?}", first.events);
    let planned = &first.moves[0];
    assert_eq!(
        (planned.from.as_str(), planned.reason),
        ("ferby", MoveReason::PredictedOverload)
    );
    assert_eq!(first.events_of(EventKind::PredictedOverload).count(), 1);
    land(&mut placed, &first, &FOUR);
    for i in 2..=100 {
        let later = sample(&policy, &mut state, &placed, &FOUR, f64::from(i) * 2.0);
        assert!(later.moves.is_empty(), "sample {i}: {:?}", later.moves);
    }
}

#[test]
fn forecast_ignores_one_busy_sample_of_a_calm_node_but_not_sustained_load() {
    let policy = policy(BalancerKind::Forecast);
    let mut state = BalancerState::new();
    let at = |percent: f64| -> Vec<Placed<'static>> {
        ["a", "b", "c", "d", "e"]
            .iter()
            .map(|vm| (*vm, "ferby", percent))
            .collect()
    };
    for i in 1..=11 {
        let calm = sample(&policy, &mut state, &at(10.0), &FOUR, f64::from(i) * 2.0);
        assert!(calm.moves.is_empty());
    }
    // Five busy VMs on four CPUs: hot now, but an hour of calm says it is a burst.
    let spike = sample(&policy, &mut state, &at(90.0), &FOUR, 24.0);
    assert!(spike.moves.is_empty(), "{:?}", spike.events);
    let moved_after = (2..=8).find(|busy| {
        let now = 24.0 + f64::from(*busy - 1) * 2.0;
        !sample(&policy, &mut state, &at(90.0), &FOUR, now)
            .moves
            .is_empty()
    });
    assert!(moved_after.is_some(), "sustained load is shed");
}

#[test]
fn density_empties_the_least_loaded_node_and_marks_it_for_power_off() {
    let policy = policy(BalancerKind::Density);
    let mut state = BalancerState::new();
    let mut placed: Vec<Placed<'_>> = vec![
        ("a", "ferby", 5.0),
        ("b", "gerby", 20.0),
        ("c", "gerby", 20.0),
        ("d", "herby", 10.0),
        ("e", "herby", 10.0),
    ];
    let first = sample(&policy, &mut state, &placed, &FOUR, 2.0);
    assert_eq!(first.moves.len(), 1, "{:?}", first.events);
    let planned = &first.moves[0];
    assert_eq!(
        (planned.vm.as_str(), planned.from.as_str(), planned.reason),
        ("a", "ferby", MoveReason::Consolidate)
    );
    assert_eq!(planned.to, "gerby", "best fit: the busiest node that fits");
    assert_eq!(state.draining(), Some("ferby"));
    land(&mut placed, &first, &FOUR);
    let second = sample(&policy, &mut state, &placed, &FOUR, 4.0);
    let marked: Vec<&str> = second
        .events_of(EventKind::PowerOffCandidate)
        .map(|e| e.node.as_str())
        .collect();
    assert_eq!(marked, ["ferby"]);
    assert!(state.is_power_off_candidate("ferby"));
    // Ferby, empty, is never a target of consolidation.
    assert!(second.moves.iter().all(|m| m.to != "ferby"));
    // A VM placed on ferby again clears the mark.
    placed.push(("f", "ferby", 5.0));
    sample(&policy, &mut state, &placed, &FOUR, 6.0);
    assert!(!state.is_power_off_candidate("ferby"));
}

#[test]
fn density_never_packs_a_node_beyond_its_predicted_peak() {
    let policy = policy(BalancerKind::Density);
    let nodes = [("ferby", 2), ("gerby", 2)];
    let mut state = BalancerState::new();
    // Together they would want 150% of 2 CPUs at their mean: nothing moves.
    let placed: Vec<Placed<'_>> = vec![
        ("a", "ferby", 75.0),
        ("b", "ferby", 75.0),
        ("c", "gerby", 75.0),
        ("d", "gerby", 75.0),
    ];
    for i in 1..=20 {
        let decision = sample(&policy, &mut state, &placed, &nodes, f64::from(i) * 2.0);
        assert!(decision.moves.is_empty(), "{:?}", decision.moves);
    }
    assert_eq!(state.draining(), None);
}
