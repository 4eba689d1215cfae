//! The balancer: decides which VMs to live-migrate off overloaded nodes (pure).
//!
//! [`balance`] is called once per sample interval with what the cluster looks like and
//! returns a [`Decision`]: the moves to start and the Events that explain them. It does no I/O,
//! reads no clock and spawns nothing; its only memory is the [`BalancerState`] it is handed
//! (each node's points, the moves it planned). The same function drives the controller and the
//! trace-replay backtest ([`crate::backtest`]).
//!
//! ```text
//!  hosts, vms, in_flight ──► projection::ClusterModel (migrations under way applied)
//!                                   │
//!      points, per node, every sample: hot → +1, else −1 (floor 0); overloaded at N
//!                                   │ enabled?
//!               ┌───────────────────┴────────────────────┐
//!       seed: every sample                  score: every N samples, mean demand
//!   overloaded node: RequestHelp →          greedy moves that narrow the spread
//!   OfferHelp → AcceptHelp, one VM          by at least minGainPercent
//!       forecast / density: every sample, each VM's history → predicted peak per node;
//!       shed predicted overload; density also empties the least loaded node
//!               └───────────────────┬────────────────────┘
//!                 guards (VM, limits, target, projection)
//!                                   ▼
//!                 Decision { moves, events, candidates }
//! ```
//!
//! | module | concept |
//! | --- | --- |
//! | [`observe`] | the inputs: [`HostView`], [`VmView`], [`InFlight`], and builders from API objects |
//! | [`contention`] | busy vCPUs vs physical CPUs, demand estimated from use and wait time |
//! | [`projection`] | a host's CPU model, and the cluster as it will be after moves |
//! | [`points`] | the seed's points state machine |
//! | [`guards`] | the rules every move must pass |
//! | [`seed`] | the seed policy and its help protocol |
//! | [`score`] | the spread-minimising policy |
//! | [`outlook`] | each VM's demand predicted from its history; a host's predicted peak |
//! | [`forecast`] | the `forecast` policy: shed predicted overload with moves that last |
//! | [`density`] | the `density` policy: `forecast`, and empty nodes to power them off |
//! | [`decision`] | the output, plain data |
//! | [`state`] | what is remembered between samples |
//! | [`status`] | what is published: a node's points, a move's decision, as API status |

pub mod contention;
pub mod decision;
pub mod density;
pub mod forecast;
pub mod guards;
pub mod observe;
pub mod outlook;
pub mod points;
pub mod projection;
pub mod score;
pub mod seed;
pub mod state;
pub mod status;

mod round;
#[cfg(test)]
pub(crate) mod testing;

use std::collections::BTreeSet;

use herd_crds::cluster_policy::{BalancerKind, BalancerPolicy, MigrationLimits};

pub use decision::{
    CandidateReport, Decision, DecisionEvent, EventKind, LoadSummary, MoveReason, Outcome,
    PlannedMove, Prediction,
};
pub use guards::Refusal;
pub use observe::{HostView, InFlight, PastMove, VcpuUse, VmView};
pub use points::{NodePoints, PointSample};
pub use state::BalancerState;

use forecast::Packing;
use projection::ClusterModel;
use round::Round;

/// One sample of the balancer at `now` (seconds).
///
/// - `hosts`: every node, ready or not (only ready ones are judged or receive VMs);
/// - `vms`: every VM assigned to a node;
/// - `in_flight`: every migration under way (from `Migration` objects not yet final),
///   including those planned by earlier decisions;
/// - `state`: the same value at every call, kept by the caller.
///
/// A call that comes before `sampleIntervalSeconds` has passed since the last sample counts
/// nothing and returns a decision with `sampled: false`.
pub fn balance(
    policy: &BalancerPolicy,
    limits: &MigrationLimits,
    state: &mut BalancerState,
    hosts: &[HostView],
    vms: &[VmView],
    in_flight: &[InFlight],
    now: f64,
) -> Decision {
    let mut decision = Decision::new(now, policy.policy);
    if !state.take_sample(now, f64::from(policy.sample_interval_seconds)) {
        decision.sampled = false;
        return decision;
    }
    let present: BTreeSet<&str> = hosts.iter().map(HostView::name).collect();
    let memory = policy.cooldown_seconds.max(policy.min_stay_seconds);
    state.prune(now - f64::from(memory), &present);
    let mut model = ClusterModel::build(hosts, vms, in_flight, policy.threshold_percent);
    let overloaded = judge(state, &model, policy, now);
    let predictive = matches!(
        policy.policy,
        BalancerKind::Forecast | BalancerKind::Density
    );
    if predictive {
        state.observe(model.vm_demands());
    }
    let mut score_round = false;
    if policy.policy == BalancerKind::Score {
        for (vm, local, speed) in model.vm_demands() {
            state.accumulate(vm, local, speed);
        }
        score_round = state.take_round(policy.points_to_trigger);
        if score_round {
            model.smooth(&state.take_means());
        }
    }
    if !policy.enabled {
        return decision;
    }
    let mut round = Round {
        policy,
        limits,
        state,
        model,
        now,
        decision,
    };
    match policy.policy {
        BalancerKind::Seed => seed::run(&mut round, &overloaded),
        BalancerKind::Score if score_round => score::run(&mut round),
        BalancerKind::Score => {}
        BalancerKind::Forecast => forecast::run(&mut round, Packing::Spread),
        BalancerKind::Density => {
            forecast::run(&mut round, Packing::Dense);
            density::run(&mut round);
        }
    }
    round.decision
}

/// Counts one sample of every ready node; returns the overloaded ones, most demanding first.
fn judge(
    state: &mut BalancerState,
    model: &ClusterModel<'_>,
    policy: &BalancerPolicy,
    now: f64,
) -> Vec<usize> {
    let mut overloaded = Vec::new();
    for (index, host) in model.hosts.iter().enumerate() {
        if !host.node.ready {
            continue;
        }
        let summary = host.cpu.summary(model.threshold);
        let sample = PointSample {
            at: now,
            load_percent: summary.load_percent,
            demand_percent: summary.demand_percent,
            busy_vcpus: summary.busy_vcpus,
            cpus: summary.cpus,
            hot: summary.hot,
            points: 0,
        };
        if state.record(host.name(), sample, policy.points_to_trigger) {
            overloaded.push((index, summary.demand_percent));
        }
    }
    overloaded.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    overloaded.into_iter().map(|(index, _)| index).collect()
}

#[cfg(test)]
mod predictive_tests;
#[cfg(test)]
mod tests;
