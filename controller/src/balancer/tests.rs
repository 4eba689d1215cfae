//! Tests of [`super::balance`] as a whole: the help protocol, its order, guards in action,
//! the score round.

use herd_crds::cluster_policy::{BalancerKind, BalancerPolicy, MigrationLimits};
use herd_crds::virtual_machine::BalancerPermission;

use super::testing::{host, vm};
use super::*;

/// ferby with five busy 1-vCPU VMs on four CPUs (a–e, e placed last), three idle nodes.
fn crowded() -> (Vec<HostView>, Vec<VmView>) {
    let hosts = vec![
        host(
            "ferby",
            4,
            &[
                ("a", 0, 50.0),
                ("e", 0, 50.0),
                ("b", 1, 100.0),
                ("c", 2, 100.0),
                ("d", 3, 100.0),
            ],
        ),
        host("gerby", 4, &[]),
        host("herby", 4, &[]),
        host("jerby", 4, &[]),
    ];
    let vms = ["a", "b", "c", "d", "e"]
        .iter()
        .enumerate()
        .map(|(i, name)| vm(name, "ferby", i as f64))
        .collect();
    (hosts, vms)
}

/// Samples every 2 s from t = 2 until a decision plans a move (or `samples` run out).
fn run_until_move(
    policy: &BalancerPolicy,
    hosts: &[HostView],
    vms: &[VmView],
    samples: u32,
) -> (Decision, f64) {
    let mut state = BalancerState::new();
    let limits = MigrationLimits::default();
    let mut last = None;
    for i in 1..=samples {
        let now = f64::from(i) * 2.0;
        let decision = balance(policy, &limits, &mut state, hosts, vms, &[], now);
        if !decision.moves.is_empty() {
            return (decision, now);
        }
        last = Some((decision, now));
    }
    last.expect("at least one sample")
}

fn kinds(decision: &Decision) -> Vec<(EventKind, &str)> {
    decision
        .events
        .iter()
        .map(|e| (e.kind, e.node.as_str()))
        .collect()
}

#[test]
fn five_samples_then_request_offers_and_accept_the_first() {
    let (hosts, vms) = crowded();
    let (decision, at) = run_until_move(&BalancerPolicy::default(), &hosts, &vms, 10);
    assert_eq!(at, 10.0, "5 points at 2 s per sample");
    assert_eq!(decision.moves.len(), 1);
    let planned = &decision.moves[0];
    assert_eq!(
        (
            planned.vm.as_str(),
            planned.from.as_str(),
            planned.to.as_str()
        ),
        ("e", "ferby", "gerby")
    );
    assert_eq!(planned.offers, ["gerby", "herby", "jerby"]);
    assert_eq!(
        planned
            .points_history
            .iter()
            .map(|s| s.points)
            .collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(
        planned.explanation,
        "ferby was overloaded (points 1 2 3 4 5): e (1024 MiB, the cheapest move that relieves \
         it, most recently placed first) moves to gerby, the first of 3 nodes that offered; \
         predicted ferby load 100%, 4 busy vCPUs on 4 CPUs, gerby load 25%, 1 busy vCPU on 4 CPUs"
    );
    assert!(!planned.predicted.source_after.hot);
    assert_eq!(planned.predicted.target_after.load_percent, 25.0);
    assert_eq!(
        kinds(&decision),
        [
            (EventKind::RequestHelp, "ferby"),
            (EventKind::OfferHelp, "gerby"),
            (EventKind::OfferHelp, "herby"),
            (EventKind::OfferHelp, "jerby"),
            (EventKind::AcceptHelp, "ferby"),
        ]
    );
    let ranked_below = decision
        .candidates
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::RankedBelow { .. }))
        .count();
    assert_eq!(ranked_below, 4, "the other four were not needed");
}

#[test]
fn offers_come_least_loaded_first_and_refusing_or_hot_nodes_do_not_offer() {
    let (mut hosts, vms) = crowded();
    hosts[1] = host("gerby", 4, &[("x", 0, 100.0), ("y", 1, 100.0)]);
    hosts[2].accepts_migrations = false;
    hosts.push(host("kerby", 1, &[("p", 0, 50.0), ("q", 0, 50.0)]));
    let (decision, _) = run_until_move(&BalancerPolicy::default(), &hosts, &vms, 10);
    assert_eq!(decision.moves[0].offers, ["jerby", "gerby"]);
    assert_eq!(decision.moves[0].to, "jerby");
}

#[test]
fn vms_marked_never_are_not_moved() {
    let (hosts, mut vms) = crowded();
    for vm in &mut vms {
        std::sync::Arc::make_mut(&mut vm.spec).migration.balancer = BalancerPermission::Never;
    }
    let (decision, _) = run_until_move(&BalancerPolicy::default(), &hosts, &vms, 10);
    assert!(decision.moves.is_empty());
    assert_eq!(kinds(&decision), [(EventKind::Deferred, "ferby")]);
    assert!(
        decision
            .candidates
            .iter()
            .all(|c| c.outcome == Outcome::Refused(Refusal::NeverMove))
    );
}

#[test]
fn no_offer_when_every_node_would_become_hot() {
    let (mut hosts, vms) = crowded();
    for (i, name) in ["gerby", "herby", "jerby"].iter().enumerate() {
        let full: Vec<(String, u32, f64)> = (0..4)
            .map(|c| (format!("{name}-{c}-{i}"), c, 100.0))
            .collect();
        let refs: Vec<(&str, u32, f64)> =
            full.iter().map(|(n, c, p)| (n.as_str(), *c, *p)).collect();
        hosts[i + 1] = host(name, 4, &refs);
    }
    let (decision, _) = run_until_move(&BalancerPolicy::default(), &hosts, &vms, 5);
    assert!(decision.moves.is_empty());
    let no_offer: Vec<&DecisionEvent> = decision.events_of(EventKind::NoOffer).collect();
    assert_eq!(no_offer.len(), 5, "every candidate was tried");
    assert!(
        no_offer[0]
            .message
            .contains("0/3 nodes can take it: 3 would become hot"),
        "{}",
        no_offer[0].message
    );
}

#[test]
fn migration_limits_defer_an_overloaded_node() {
    let (hosts, vms) = crowded();
    let mut state = BalancerState::new();
    let limits = MigrationLimits {
        max_in_cluster: 1,
        ..Default::default()
    };
    let elsewhere = [InFlight {
        vm: "z".into(),
        from: "herby".into(),
        to: "jerby".into(),
        started_at: 0.0,
    }];
    let policy = BalancerPolicy::default();
    let mut last = Decision::new(0.0, BalancerKind::Seed);
    for i in 1..=5 {
        last = balance(
            &policy,
            &limits,
            &mut state,
            &hosts,
            &vms,
            &elsewhere,
            f64::from(i) * 2.0,
        );
    }
    assert!(last.moves.is_empty());
    assert_eq!(kinds(&last), [(EventKind::Deferred, "ferby")]);
    assert!(
        last.events[0]
            .message
            .contains("1 migrations already run in the cluster")
    );
    assert_eq!(
        state.points("ferby").map(NodePoints::points),
        Some(5),
        "it asks again next sample"
    );
}

#[test]
fn a_disabled_balancer_counts_points_but_moves_nothing() {
    let (hosts, vms) = crowded();
    let policy = BalancerPolicy {
        enabled: false,
        ..Default::default()
    };
    let mut state = BalancerState::new();
    for i in 1..=8 {
        let decision = balance(
            &policy,
            &MigrationLimits::default(),
            &mut state,
            &hosts,
            &vms,
            &[],
            f64::from(i) * 2.0,
        );
        assert!(decision.moves.is_empty() && decision.events.is_empty());
    }
    assert_eq!(state.points("ferby").map(NodePoints::points), Some(5));
}

#[test]
fn an_early_call_counts_nothing() {
    let (hosts, vms) = crowded();
    let mut state = BalancerState::new();
    let policy = BalancerPolicy::default();
    let limits = MigrationLimits::default();
    assert!(balance(&policy, &limits, &mut state, &hosts, &vms, &[], 2.0).sampled);
    let early = balance(&policy, &limits, &mut state, &hosts, &vms, &[], 2.5);
    assert!(!early.sampled);
    assert_eq!(state.points("ferby").map(NodePoints::points), Some(1));
}

#[test]
fn a_move_under_way_is_counted_as_done() {
    let (hosts, vms) = crowded();
    let flying = [InFlight {
        vm: "e".into(),
        from: "ferby".into(),
        to: "gerby".into(),
        started_at: 0.0,
    }];
    let mut state = BalancerState::new();
    let policy = BalancerPolicy::default();
    for i in 1..=10 {
        let decision = balance(
            &policy,
            &MigrationLimits::default(),
            &mut state,
            &hosts,
            &vms,
            &flying,
            f64::from(i) * 2.0,
        );
        assert!(
            decision.moves.is_empty(),
            "ferby is not hot once e has left"
        );
    }
}

fn sixteen_on_ferby() -> (Vec<HostView>, Vec<VmView>) {
    let names: Vec<String> = (0..16).map(|i| format!("vm-{i:02}")).collect();
    let busy: Vec<(&str, u32, f64)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), (i % 4) as u32, 25.0))
        .collect();
    let hosts = vec![
        host("ferby", 4, &busy),
        host("gerby", 4, &[]),
        host("herby", 4, &[]),
        host("jerby", 4, &[]),
    ];
    let vms = names
        .iter()
        .enumerate()
        .map(|(i, n)| vm(n, "ferby", i as f64))
        .collect();
    (hosts, vms)
}

#[test]
fn a_score_round_plans_several_moves_within_the_limits() {
    let (hosts, vms) = sixteen_on_ferby();
    let policy = BalancerPolicy {
        policy: BalancerKind::Score,
        ..Default::default()
    };
    let (decision, at) = run_until_move(&policy, &hosts, &vms, 10);
    assert_eq!(at, 10.0, "a round every 5 samples");
    assert_eq!(
        decision.moves.len(),
        2,
        "at most 2 migrations leave one node"
    );
    assert!(
        decision
            .moves
            .iter()
            .all(|m| m.reason == MoveReason::Spread && m.from == "ferby")
    );
    let targets: Vec<&str> = decision.moves.iter().map(|m| m.to.as_str()).collect();
    assert_eq!(targets, ["gerby", "herby"]);
    let (before, after) = decision.spread.expect("a score round reports the spread");
    assert!(after < before);
    assert!(decision.candidates.iter().any(|c| c.outcome
        == Outcome::Refused(Refusal::SourceLimit {
            migrations: 2,
            max: 2
        })));
}

#[test]
fn the_score_policy_moves_nothing_below_the_minimum_gain() {
    let (hosts, vms) = sixteen_on_ferby();
    let policy = BalancerPolicy {
        policy: BalancerKind::Score,
        min_gain_percent: 1000.0,
        ..Default::default()
    };
    let (decision, _) = run_until_move(&policy, &hosts, &vms, 5);
    assert!(decision.moves.is_empty());
    assert!(
        decision
            .candidates
            .iter()
            .any(|c| matches!(c.outcome, Outcome::BelowMinGain { min, .. } if min == 1000.0))
    );
}

#[test]
fn a_score_round_acts_on_the_mean_demand_not_the_last_sample() {
    let names = ["a", "b", "c", "d"];
    let ferby = |percent: f64| {
        let busy: Vec<(&str, u32, f64)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (*n, i as u32, percent))
            .collect();
        vec![host("ferby", 4, &busy), host("gerby", 4, &[])]
    };
    let vms: Vec<VmView> = names.iter().map(|n| vm(n, "ferby", 0.0)).collect();
    let policy = BalancerPolicy {
        policy: BalancerKind::Score,
        min_gain_percent: 20.0,
        ..Default::default()
    };
    let limits = MigrationLimits::default();
    let moves_after = |loads: [f64; 5]| {
        let mut state = BalancerState::new();
        let mut moves = 0;
        for (i, percent) in loads.iter().enumerate() {
            let hosts = ferby(*percent);
            let now = (i + 1) as f64 * 2.0;
            moves += balance(&policy, &limits, &mut state, &hosts, &vms, &[], now)
                .moves
                .len();
        }
        moves
    };
    assert_eq!(
        moves_after([100.0; 5]),
        2,
        "sustained load is spread: 2 and 2"
    );
    assert_eq!(
        moves_after([0.0, 0.0, 0.0, 0.0, 100.0]),
        0,
        "one busy sample is not"
    );
}
