//! The `score` policy: narrow the spread of load across nodes, one worthwhile move at a time
//! (pure).
//!
//! **Spread** is the standard deviation of the nodes' CPU demand (percent of each node's
//! CPUs, uncapped, so an overcommitted node counts for what its VMs want) plus
//! [`MEMORY_WEIGHT`] × the standard deviation of their memory use (percent), over the ready
//! nodes. It is what a round reports before and after.
//!
//! **Gain of a move.** A move changes two nodes. Its gain is how much it narrows the spread of
//! those two around the cluster's mean — `pair(a, b) = √(((a − μ)² + (b − μ)²) / 2)` before
//! minus after, CPU plus [`MEMORY_WEIGHT`] × memory — so a positive gain always lowers the
//! cluster's standard deviation, and the same move gains the same whether the cluster has 4
//! nodes or 800 (a whole-cluster deviation would make every single move negligible in a large
//! cluster). A move is made only when its gain is at least `minGainPercent` (5 by default).
//!
//! **A round** runs every `pointsToTrigger` samples (the seed's reaction time, 10 s by
//! default) on each VM's *mean* demand over those samples (so it follows sustained load, not
//! one sample's noise; the balancer keeps the window in its state), and plans the best move,
//! applies it to the model, and repeats, while the best move gains enough and the migration
//! limits allow. Every guard applies. The search looks
//! at the [`SEARCH_WIDTH`] most loaded nodes above the mean as sources and the
//! [`SEARCH_WIDTH`] least loaded as targets, which keeps a round cheap on large clusters.

use super::decision::{EventKind, MoveReason, Outcome, TargetRefusals};
use super::projection::ClusterModel;
use super::round::{Fit, MoveNote, Round};

/// Weight of the memory term of the spread.
pub const MEMORY_WEIGHT: f64 = 0.25;

/// Sources and targets looked at per search.
pub const SEARCH_WIDTH: usize = 32;

/// Means of CPU demand and memory use over the ready nodes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Means {
    pub cpu: f64,
    pub memory: f64,
}

/// `√(((a − μ)² + (b − μ)²) / 2)`: the spread of two nodes around the cluster's mean.
pub fn pair_spread(a: f64, b: f64, mean: f64) -> f64 {
    (((a - mean).powi(2) + (b - mean).powi(2)) / 2.0).sqrt()
}

/// How much moving a VM narrows the spread of its two nodes: CPU `(source, target)` before and
/// after, memory the same.
pub fn gain(cpu: [(f64, f64); 2], memory: [(f64, f64); 2], means: Means) -> f64 {
    let [(cs, ct), (cs2, ct2)] = cpu;
    let [(ms, mt), (ms2, mt2)] = memory;
    let cpu_gain = pair_spread(cs, ct, means.cpu) - pair_spread(cs2, ct2, means.cpu);
    let memory_gain = pair_spread(ms, mt, means.memory) - pair_spread(ms2, mt2, means.memory);
    cpu_gain + MEMORY_WEIGHT * memory_gain
}

/// Whether a move gaining `gain` is worth making.
pub fn worth_it(gain: f64, min_gain: f64) -> bool {
    gain > 0.0 && gain >= min_gain
}

fn std_dev(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64).sqrt()
}

/// The ready nodes' (CPU demand, memory use), percent.
fn loads(model: &ClusterModel<'_>) -> Vec<(usize, f64, f64)> {
    let threshold = model.threshold;
    model
        .hosts
        .iter()
        .enumerate()
        .filter(|(_, h)| h.node.ready)
        .map(|(i, h)| {
            (
                i,
                h.cpu.summary(threshold).demand_percent,
                h.memory_percent(),
            )
        })
        .collect()
}

/// The cluster's spread: σ(CPU demand) + [`MEMORY_WEIGHT`] × σ(memory use).
pub fn spread(model: &ClusterModel<'_>) -> f64 {
    let loads = loads(model);
    let cpu: Vec<f64> = loads.iter().map(|l| l.1).collect();
    let memory: Vec<f64> = loads.iter().map(|l| l.2).collect();
    std_dev(&cpu) + MEMORY_WEIGHT * std_dev(&memory)
}

/// The best move found by one search.
struct Best {
    vm: usize,
    source: usize,
    fit: Fit,
    gain: f64,
}

/// Plans moves while the best one gains enough and the limits allow.
pub(super) fn run(round: &mut Round<'_, '_>) {
    let before = spread(&round.model);
    loop {
        let (best, reports) = search(round);
        let Some(best) = best.filter(|b| worth_it(b.gain, round.policy.min_gain_percent)) else {
            for (vm, node, outcome) in reports {
                round.decision.candidate(&vm, &node, outcome);
            }
            break;
        };
        plan(round, best);
    }
    round.decision.spread = Some((before, spread(&round.model)));
}

fn plan(round: &mut Round<'_, '_>, best: Best) {
    let spread_before = spread(&round.model);
    let vm = round.model.vms[best.vm].name.clone();
    let from = round.model.hosts[best.source].name().to_owned();
    let to = round.model.hosts[best.fit.host].name().to_owned();
    let mut after = round.model.clone();
    after.apply_move(best.vm, best.source, best.fit.host);
    let spread_after = spread(&after);
    let explanation = format!(
        "moving {vm} from {from} to {to} narrows the spread of load from {spread_before:.1} to \
         {spread_after:.1} (gain {:.1}, at least {:.1} needed); {to} would be at {}",
        best.gain, round.policy.min_gain_percent, best.fit.after
    );
    round
        .decision
        .event(EventKind::Rebalance, &from, Some(&vm), explanation.clone());
    let note = MoveNote {
        reason: MoveReason::Spread,
        offers: Vec::new(),
        points_history: Vec::new(),
        spread: (Some(spread_before), Some(spread_after)),
        explanation,
    };
    round.plan(best.vm, best.source, best.fit, note);
    round.decision.candidate(&vm, &from, Outcome::Chosen { to });
}

/// Sources (most loaded above the mean) and targets (least loaded), by index.
fn shortlist(round: &Round<'_, '_>) -> (Vec<usize>, Vec<usize>, Means) {
    let mut loads = loads(&round.model);
    let count = loads.len().max(1) as f64;
    let means = Means {
        cpu: loads.iter().map(|l| l.1).sum::<f64>() / count,
        memory: loads.iter().map(|l| l.2).sum::<f64>() / count,
    };
    loads.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let sources = loads
        .iter()
        .filter(|l| l.1 > means.cpu)
        .take(SEARCH_WIDTH)
        .map(|l| l.0)
        .collect();
    loads.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    let targets = loads.iter().take(SEARCH_WIDTH).map(|l| l.0).collect();
    (sources, targets, means)
}

type Report = (String, String, Outcome);

/// The best move among the shortlisted nodes, and what became of each VM looked at.
fn search(round: &Round<'_, '_>) -> (Option<Best>, Vec<Report>) {
    let (sources, targets, means) = shortlist(round);
    let mut best: Option<Best> = None;
    let mut reports = Vec::new();
    for source in sources {
        let host = &round.model.hosts[source];
        for &vm in &host.vms {
            let view = round.model.vms[vm];
            let checked = round
                .check_vm(view)
                .and_then(|()| round.check_limits(source));
            if let Err(refusal) = checked {
                reports.push((
                    view.name.clone(),
                    host.name().to_owned(),
                    Outcome::Refused(refusal),
                ));
                continue;
            }
            let (found, refusals) = best_target(round, vm, source, &targets, means);
            let outcome = match &found {
                None => Outcome::NoTarget(refusals),
                Some(b) => Outcome::BelowMinGain {
                    to: round.model.hosts[b.fit.host].name().to_owned(),
                    gain: b.gain,
                    min: round.policy.min_gain_percent,
                },
            };
            reports.push((view.name.clone(), host.name().to_owned(), outcome));
            if let Some(found) = found
                && best.as_ref().is_none_or(|b| found.gain > b.gain)
            {
                best = Some(found);
            }
        }
    }
    (best, reports)
}

/// The target among `targets` where moving `vms[vm]` gains most.
fn best_target(
    round: &Round<'_, '_>,
    vm: usize,
    source: usize,
    targets: &[usize],
    means: Means,
) -> (Option<Best>, TargetRefusals) {
    let model = &round.model;
    let view = model.vms[vm];
    let from = &model.hosts[source];
    let demands = from.cpu.reference_demands(&view.name);
    let source_cpu = (
        from.cpu.summary(model.threshold).demand_percent,
        from.cpu
            .summary_without(&view.name, model.threshold)
            .demand_percent,
    );
    let memory_share = |host: &super::projection::ModelHost<'_>| {
        view.memory_mib() as f64 * 100.0 / host.node.memory_mib.max(1) as f64
    };
    let source_memory = (
        from.memory_percent(),
        from.memory_percent() - memory_share(from),
    );
    let mut refusals = TargetRefusals::default();
    let mut best: Option<Best> = None;
    for &target in targets.iter().filter(|t| **t != source) {
        refusals.considered += 1;
        let fit = match round.check_target(view, &demands, target) {
            Ok(fit) => fit,
            Err(refusal) => {
                refusals.add(&refusal);
                continue;
            }
        };
        let to = &model.hosts[target];
        let cpu = [
            (source_cpu.0, fit.before.demand_percent),
            (source_cpu.1, fit.after.demand_percent),
        ];
        let target_memory = to.memory_percent();
        let memory = [
            (source_memory.0, target_memory),
            (source_memory.1, target_memory + memory_share(to)),
        ];
        let gain = gain(cpu, memory, means);
        if best.as_ref().is_none_or(|b| gain > b.gain) {
            best = Some(Best {
                vm,
                source,
                fit,
                gain,
            });
        }
    }
    (best, refusals)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAT: Means = Means {
        cpu: 100.0,
        memory: 50.0,
    };

    #[test]
    fn pair_spread_is_the_deviation_of_two_nodes_around_the_mean() {
        assert_eq!(pair_spread(100.0, 100.0, 100.0), 0.0);
        assert_eq!(pair_spread(150.0, 50.0, 100.0), 50.0);
    }

    #[test]
    fn moving_load_from_a_busy_node_to_an_idle_one_gains() {
        // 400% and 0% around a mean of 100%: one busy VM (25% of the node) moves.
        let cpu = [(400.0, 0.0), (375.0, 25.0)];
        let memory = [(50.0, 50.0), (50.0, 50.0)];
        let gained = gain(cpu, memory, FLAT);
        assert!((gained - 22.0).abs() < 0.1, "{gained}");
        assert!(worth_it(gained, 5.0));
    }

    #[test]
    fn a_move_that_only_swaps_the_imbalance_gains_nothing() {
        let cpu = [(150.0, 50.0), (50.0, 150.0)];
        let memory = [(50.0, 50.0), (50.0, 50.0)];
        assert_eq!(gain(cpu, memory, FLAT), 0.0);
        assert!(
            !worth_it(0.0, 0.0),
            "a zero gain is never worth a migration"
        );
    }

    #[test]
    fn the_minimum_gain_is_a_threshold() {
        assert!(worth_it(5.0, 5.0));
        assert!(!worth_it(4.99, 5.0));
        assert!(worth_it(0.5, 0.0));
    }

    #[test]
    fn memory_counts_as_a_second_term() {
        let cpu = [(100.0, 100.0), (100.0, 100.0)];
        let memory = [(100.0, 0.0), (50.0, 50.0)];
        assert_eq!(gain(cpu, memory, FLAT), MEMORY_WEIGHT * 50.0);
    }
}
