//! The `density` policy's consolidation: empty nodes so that they can be powered off (pure).
//!
//! `density` first sheds predicted overload as `forecast` does, packing densely
//! ([`Packing::Dense`]). Then, every sample:
//!
//! 1. **Which node.** When no node is being emptied, the running nodes whose VMs may all move
//!    (VM guards and the stay guard) are tried, least predicted load first (at most
//!    [`DRAIN_TRIALS`] per sample): a node is chosen when *all* its VMs, largest predicted
//!    demand first, fit on other running nodes by best fit — every target guard, and each
//!    target's predicted peak with them at or under the threshold. Nothing is moved unless the
//!    whole node can be emptied, so no migration is spent on a node that stays on.
//! 2. **Emptying.** Its VMs move by that plan within the migration limits, over as many
//!    samples as the limits need (each sample plans again from what is left; the node takes
//!    no VM meanwhile). When the plan no longer holds, the node is given up (`BalancingDeferred`).
//! 3. **Power-off candidate.** Once it runs nothing, a `PowerOffCandidate` Event says it may be
//!    powered off, and its published status says so (`NodeStatus.balancer.powerOffCandidate`)
//!    until a VM is placed on it again. herd does not power nodes off.
//!
//! Only running nodes are packed: an emptied node is woken (taken as a target) only when
//! shedding a predicted overload finds no running node that fits.

use super::decision::{EventKind, MoveReason};
use super::forecast::{Packing, Predicted, Step, best_target, plan_move};
use super::round::Round;

/// Nodes tried as the next to empty, per sample.
pub const DRAIN_TRIALS: usize = 4;

/// Consolidates: continues or starts emptying a node, and marks emptied ones.
pub(super) fn run(round: &mut Round<'_, '_>) {
    let mut predicted = Predicted::build(round);
    release_used(round);
    let draining = round
        .state
        .draining()
        .and_then(|d| round.model.host_index(d));
    let source = match draining {
        Some(source) => source,
        None => match choose(round, &predicted) {
            Some(source) => {
                let node = round.model.hosts[source].name().to_owned();
                round.state.set_draining(Some(node));
                source
            }
            None => return,
        },
    };
    drain(round, &mut predicted, source);
}

/// Whether `hosts[host]` runs nothing and receives nothing.
fn vacant(round: &Round<'_, '_>, host: usize) -> bool {
    let host = &round.model.hosts[host];
    host.vms.is_empty() && host.cpu.is_empty()
}

/// Clears the mark of emptied nodes that run VMs again.
fn release_used(round: &mut Round<'_, '_>) {
    for node in round.state.emptied() {
        let used = round
            .model
            .host_index(&node)
            .is_some_and(|h| !vacant(round, h));
        if used {
            round.state.set_emptied(&node, false);
        }
    }
}

/// The next node to empty: the least loaded running node whose VMs all fit elsewhere.
fn choose(round: &mut Round<'_, '_>, predicted: &Predicted) -> Option<usize> {
    let mut running: Vec<usize> = (0..round.model.hosts.len())
        .filter(|h| round.model.hosts[*h].node.ready && !vacant(round, *h))
        .filter(|h| movable(round, *h))
        .collect();
    let mean = |h: usize| predicted.hosts[h].mean_percent();
    running.sort_by(|a, b| mean(*a).total_cmp(&mean(*b)).then(a.cmp(b)));
    running
        .into_iter()
        .take(DRAIN_TRIALS)
        .find(|h| trial(round, predicted, *h).is_some())
}

/// Whether every VM of `hosts[host]` passes the VM guards and the stay guard.
fn movable(round: &Round<'_, '_>, host: usize) -> bool {
    round.model.hosts[host].vms.iter().all(|&vm| {
        let view = round.model.vms[vm];
        round
            .check_vm(view)
            .and_then(|()| round.check_stay(view, host))
            .is_ok()
    })
}

/// Where each VM of `hosts[source]` still there would go, largest predicted demand first, by
/// best fit on running nodes; `None` when one fits nowhere. The model is left as it was.
fn trial(
    round: &mut Round<'_, '_>,
    predicted: &Predicted,
    source: usize,
) -> Option<Vec<(usize, usize)>> {
    let mut staying: Vec<(usize, f64)> = round.model.hosts[source]
        .vms
        .iter()
        .filter(|vm| !round.model.is_moving(&round.model.vms[**vm].name))
        .map(|&vm| {
            let name = &round.model.vms[vm].name;
            (vm, predicted.vm(&round.model, name, source).total_mean())
        })
        .collect();
    staying.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let saved = round.model.clone();
    let mut looks = predicted.clone();
    let mut plan = Vec::with_capacity(staying.len());
    for (vm, _) in staying {
        let placed = best_target(round, &looks, vm, source, Packing::Drain, None);
        let Ok(fit) = placed else {
            round.model = saved;
            return None;
        };
        let forecast = looks.vm(&round.model, &round.model.vms[vm].name, source);
        looks.shift(&forecast, source, fit.host);
        round.model.apply_move(vm, source, fit.host);
        plan.push((vm, fit.host));
    }
    round.model = saved;
    Some(plan)
}

/// Moves the VMs of `hosts[source]` by plan within the limits, or marks it emptied.
fn drain(round: &mut Round<'_, '_>, predicted: &mut Predicted, source: usize) {
    let node = round.model.hosts[source].name().to_owned();
    if vacant(round, source) {
        round.state.set_draining(None);
        if round.state.set_emptied(&node, true) {
            let message =
                format!("{node} runs no VM after the balancer emptied it: it may be powered off");
            round
                .decision
                .event(EventKind::PowerOffCandidate, &node, None, message);
        }
        return;
    }
    let Some(plan) = trial(round, predicted, source) else {
        round.state.set_draining(None);
        let message =
            format!("{node} is no longer emptied: some of its VMs fit on no other running node");
        round
            .decision
            .event(EventKind::Deferred, &node, None, message);
        return;
    };
    let remaining = plan.len();
    // The trial applied the same moves in the same order, so each finds the same target.
    for (vm, _) in plan {
        if round.check_limits(source).is_err() {
            return;
        }
        let Ok(fit) = best_target(round, predicted, vm, source, Packing::Drain, None) else {
            return;
        };
        let step = Step {
            vm,
            source,
            fit,
            kind: EventKind::Consolidate,
            reason: MoveReason::Consolidate,
        };
        let vm_name = round.model.vms[vm].name.clone();
        plan_move(round, predicted, step, |after, target, to| {
            format!(
                "emptying {node} to power it off ({remaining} VMs to move): {vm_name} moves \
                 to {to}, predicted peak there {:.0}%; {node} after: mean {:.0}%",
                target.peak_percent(),
                after.mean_percent()
            )
        });
    }
}
