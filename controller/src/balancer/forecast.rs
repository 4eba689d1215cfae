//! The `forecast` policy: shed *predicted* overload, with moves that last (pure).
//!
//! Every sample, each VM's demand is predicted from its recent history ([`super::outlook`]):
//! the mean and variance of its last samples. A node whose predicted peak is above the
//! threshold, with contention, is **predicted overloaded** — a node of bursty VMs is relieved
//! before its bursts meet, and a single busy sample of a calm node is not taken for overload.
//! For each such node (highest predicted peak first), within the migration limits:
//!
//! 1. **Which VM.** Of its VMs that pass the VM guards and the **stay** guard (a VM the
//!    balancer moved stays `minStaySeconds`, an hour, unless its node is in SLA violation),
//!    those whose departure brings the node's predicted peak back to the threshold come
//!    first, the least memory first (the cheapest migration); when no single VM does, the one
//!    whose departure lowers the predicted peak most. A VM that lowers nothing never moves.
//! 2. **Where.** To a node that passes every target guard and that would not be predicted
//!    overloaded *with* the VM — judged on the VMs' recent history, not only the current load —
//!    so the move still holds when the VM's usual bursts come. [`Packing::Spread`] (`forecast`) takes the lowest such
//!    peak; [`Packing::Dense`] (`density`) the highest among nodes that run VMs, and wakes an
//!    empty node only when no running node fits.
//! 3. Repeat on the node until it is no longer predicted overloaded or the limits stop it.
//!
//! Each move is a `PredictedOverload` Event on the source; a VM no node can take is
//! `NoOffer`, a node whose VMs may not move `BalancingDeferred`.

use std::collections::BTreeMap;

use super::decision::{EventKind, MoveReason, Outcome, TargetRefusals};
use super::guards::Refusal;
use super::outlook::{Outlook, VmForecast};
use super::projection::ClusterModel;
use super::round::{Fit, MoveNote, Round};

/// Where a VM goes among the nodes that fit it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Packing {
    /// The lowest predicted peak (`forecast`).
    Spread,
    /// The highest predicted peak among nodes that run VMs, else an empty node (`density`).
    Dense,
    /// As `Dense`, never an empty node, and with the wider margin of
    /// [`Outlook::fits_lastingly`] (`density` emptying a node).
    Drain,
}

/// Every VM's forecast and every node's outlook (by the model's host index), kept up to date
/// as moves are planned.
#[derive(Clone, Debug)]
pub(super) struct Predicted {
    pub vms: BTreeMap<String, VmForecast>,
    pub hosts: Vec<Outlook>,
}

impl Predicted {
    pub fn build(round: &Round<'_, '_>) -> Self {
        let vms = round.state.forecasts();
        let hosts = round
            .model
            .hosts
            .iter()
            .map(|h| h.cpu.outlook(&vms))
            .collect();
        Self { vms, hosts }
    }

    /// `vm`'s forecast, or its current demand on `hosts[source]` when it has none yet.
    pub fn vm(&self, model: &ClusterModel<'_>, vm: &str, source: usize) -> VmForecast {
        self.vms
            .get(vm)
            .cloned()
            .unwrap_or_else(|| VmForecast::current(&model.hosts[source].cpu.reference_demands(vm)))
    }

    /// Moves `forecast` from `hosts[from]` to `hosts[to]`.
    pub fn shift(&mut self, forecast: &VmForecast, from: usize, to: usize) {
        self.hosts[from] = self.hosts[from].without(forecast);
        self.hosts[to] = self.hosts[to].with(forecast);
    }
}

/// A VM of a predicted-overloaded node that may move.
struct Candidate {
    vm: usize,
    name: String,
    memory_mib: u64,
    /// Its departure brings the node's predicted peak to the threshold or under.
    relieves: bool,
    /// How much its departure lowers the node's predicted peak, percent.
    relief: f64,
}

/// Sheds the predicted overload of every node.
pub(super) fn run(round: &mut Round<'_, '_>, packing: Packing) {
    let mut predicted = Predicted::build(round);
    let threshold = round.model.threshold;
    let mut overloaded: Vec<usize> = (0..round.model.hosts.len())
        .filter(|h| round.model.hosts[*h].node.ready && predicted.hosts[*h].overloaded(threshold))
        .collect();
    let peak = |h: usize| predicted.hosts[h].peak_percent();
    overloaded.sort_by(|a, b| peak(*b).total_cmp(&peak(*a)).then(a.cmp(b)));
    let draining = round
        .state
        .draining()
        .and_then(|d| round.model.host_index(d));
    for source in overloaded {
        shed(round, &mut predicted, source, packing, draining);
    }
}

/// Moves VMs off `hosts[source]` until it is no longer predicted overloaded or none can move.
fn shed(
    round: &mut Round<'_, '_>,
    predicted: &mut Predicted,
    source: usize,
    packing: Packing,
    exclude: Option<usize>,
) {
    let threshold = round.model.threshold;
    while predicted.hosts[source].overloaded(threshold) {
        let node = round.model.hosts[source].name().to_owned();
        let peak = predicted.hosts[source].peak_percent();
        let stuck = match round.check_limits(source) {
            Err(refusal) => Some(refusal.to_string()),
            Ok(()) => None,
        };
        let ranked = candidates(round, predicted, source);
        let stuck = stuck.or_else(|| ranked.is_empty().then(|| "none of its VMs may move".into()));
        if let Some(why) = stuck {
            let message = format!(
                "{node} is predicted overloaded (peak {peak:.0}%) but cannot shed a VM now: {why}"
            );
            round
                .decision
                .event(EventKind::Deferred, &node, None, message);
            return;
        }
        if !shed_one(round, predicted, source, &ranked, packing, exclude) {
            return;
        }
    }
}

/// Moves the first ranked VM that some node can take; returns whether one moved.
fn shed_one(
    round: &mut Round<'_, '_>,
    predicted: &mut Predicted,
    source: usize,
    ranked: &[Candidate],
    packing: Packing,
    exclude: Option<usize>,
) -> bool {
    let node = round.model.hosts[source].name().to_owned();
    for (position, candidate) in ranked.iter().enumerate() {
        let fit = match best_target(round, predicted, candidate.vm, source, packing, exclude) {
            Ok(fit) => fit,
            Err(refusals) => {
                let vm = candidate.name.as_str();
                round
                    .decision
                    .no_offer(vm, &node, "nobody can take", refusals);
                continue;
            }
        };
        let before = predicted.hosts[source];
        let threshold = round.model.threshold;
        let why = if candidate.relieves {
            "the cheapest move that brings it back under the threshold"
        } else {
            "no single move brings it back; the one that lowers it most"
        };
        let explanation = |after: &Outlook, target: &Outlook, to: &str| {
            format!(
                "{node} is predicted overloaded: peak {:.0}% (mean {:.0}%) over its VMs' last \
                 samples, above {:.0}%; {} ({} MiB, {why}) moves to {to}, predicted peak there \
                 {:.0}%; {node} after: {:.0}%",
                before.peak_percent(),
                before.mean_percent(),
                threshold,
                candidate.name,
                candidate.memory_mib,
                target.peak_percent(),
                after.peak_percent(),
            )
        };
        let step = Step {
            vm: candidate.vm,
            source,
            fit,
            kind: EventKind::PredictedOverload,
            reason: MoveReason::PredictedOverload,
        };
        plan_move(round, predicted, step, explanation);
        for later in &ranked[position + 1..] {
            let outcome = Outcome::RankedBelow {
                chosen: candidate.name.clone(),
            };
            round.decision.candidate(&later.name, &node, outcome);
        }
        return true;
    }
    false
}

/// The VMs of `hosts[source]` that may move, ranked; the others are reported.
fn candidates(round: &mut Round<'_, '_>, predicted: &Predicted, source: usize) -> Vec<Candidate> {
    let threshold = round.model.threshold;
    let node = round.model.hosts[source].name().to_owned();
    let before = predicted.hosts[source];
    let mut ranked = Vec::new();
    let mut refused = Vec::new();
    for &index in &round.model.hosts[source].vms {
        let vm = round.model.vms[index];
        let checked = round
            .check_vm(vm)
            .and_then(|()| round.check_stay(vm, source));
        if let Err(refusal) = checked {
            refused.push((vm.name.clone(), refusal));
            continue;
        }
        let after = before.without(&predicted.vm(&round.model, &vm.name, source));
        let relief = before.peak_percent() - after.peak_percent();
        if relief <= 0.0 {
            refused.push((vm.name.clone(), Refusal::NoRelief));
            continue;
        }
        ranked.push(Candidate {
            vm: index,
            name: vm.name.clone(),
            memory_mib: vm.memory_mib(),
            relieves: after.fits(threshold),
            relief,
        });
    }
    for (vm, refusal) in refused {
        round
            .decision
            .candidate(&vm, &node, Outcome::Refused(refusal));
    }
    ranked.sort_by(|a, b| {
        b.relieves.cmp(&a.relieves).then_with(|| {
            if a.relieves {
                a.memory_mib.cmp(&b.memory_mib)
            } else {
                b.relief.total_cmp(&a.relief)
            }
            .then(a.name.cmp(&b.name))
        })
    });
    ranked
}

/// The node that takes `model.vms[vm]` from `hosts[source]` by `packing`, or why none can:
/// every target guard, and not predicted overloaded with the VM (emptying a node: its
/// predicted peak with [`super::outlook::DRAIN_SIGMAS`] at or under the threshold).
pub(super) fn best_target(
    round: &Round<'_, '_>,
    predicted: &Predicted,
    vm: usize,
    source: usize,
    packing: Packing,
    exclude: Option<usize>,
) -> Result<Fit, TargetRefusals> {
    let model = &round.model;
    let view = model.vms[vm];
    let forecast = predicted.vm(model, &view.name, source);
    let demands = model.hosts[source].cpu.reference_demands(&view.name);
    let mut refusals = TargetRefusals::default();
    let mut best: Option<(Fit, (bool, f64))> = None;
    for target in (0..model.hosts.len()).filter(|t| *t != source && Some(*t) != exclude) {
        refusals.considered += 1;
        let checked = round
            .check_target(view, &demands, target)
            .and_then(|fit| fits(round, predicted, &forecast, fit, packing));
        let (fit, key) = match checked {
            Ok(found) => found,
            Err(refusal) => {
                refusals.add(&refusal);
                continue;
            }
        };
        if best
            .as_ref()
            .is_none_or(|(_, best_key)| prefer(key, *best_key))
        {
            best = Some((fit, key));
        }
    }
    best.map(|(fit, _)| fit).ok_or(refusals)
}

/// Whether `fit.host` can take a VM forecast as `forecast` by its predicted peak; its sort
/// key: (empty, peak as `packing` ranks it, lower first).
fn fits(
    round: &Round<'_, '_>,
    predicted: &Predicted,
    forecast: &VmForecast,
    fit: Fit,
    packing: Packing,
) -> Result<(Fit, (bool, f64)), Refusal> {
    let after = predicted.hosts[fit.host].with(forecast);
    let threshold = round.model.threshold;
    let fits = match packing {
        Packing::Drain => after.fits_lastingly(threshold),
        Packing::Spread | Packing::Dense => !after.overloaded(threshold),
    };
    if !fits {
        return Err(Refusal::PredictedPeak {
            peak_percent: after.peak_percent(),
        });
    }
    let host = &round.model.hosts[fit.host];
    let empty = host.vms.is_empty() && host.cpu.is_empty();
    let peak = after.peak_percent();
    match packing {
        Packing::Spread => Ok((fit, (false, peak))),
        Packing::Drain if empty => Err(Refusal::Empty),
        Packing::Dense | Packing::Drain => Ok((fit, (empty, if empty { peak } else { -peak }))),
    }
}

/// Whether sort key `a` ranks before `b`.
fn prefer(a: (bool, f64), b: (bool, f64)) -> bool {
    (!a.0 && b.0) || (a.0 == b.0 && a.1 < b.1)
}

/// One planned move of a predictive policy.
pub(super) struct Step {
    pub vm: usize,
    pub source: usize,
    pub fit: Fit,
    pub kind: EventKind,
    pub reason: MoveReason,
}

/// Plans `step`: the outlooks follow the VM, an Event of `step.kind` on the source says why
/// (`explain(source after, target after, target name)`), and the move is remembered.
pub(super) fn plan_move(
    round: &mut Round<'_, '_>,
    predicted: &mut Predicted,
    step: Step,
    explain: impl FnOnce(&Outlook, &Outlook, &str) -> String,
) {
    let vm = round.model.vms[step.vm].name.clone();
    let from = round.model.hosts[step.source].name().to_owned();
    let to = round.model.hosts[step.fit.host].name().to_owned();
    let forecast = predicted.vm(&round.model, &vm, step.source);
    predicted.shift(&forecast, step.source, step.fit.host);
    let explanation = explain(
        &predicted.hosts[step.source],
        &predicted.hosts[step.fit.host],
        &to,
    );
    round
        .decision
        .event(step.kind, &from, Some(&vm), explanation.clone());
    let note = MoveNote {
        reason: step.reason,
        offers: Vec::new(),
        points_history: Vec::new(),
        spread: (None, None),
        explanation,
    };
    round.plan(step.vm, step.source, step.fit, note);
    round.decision.candidate(&vm, &from, Outcome::Chosen { to });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_nodes_rank_before_empty_ones_then_by_key() {
        assert!(prefer((false, 50.0), (false, 60.0)));
        assert!(!prefer((false, 60.0), (false, 50.0)));
        assert!(prefer((false, 90.0), (true, 10.0)), "a running node first");
        assert!(!prefer((true, 10.0), (false, 90.0)));
        assert!(prefer((true, 10.0), (true, 20.0)));
    }
}
