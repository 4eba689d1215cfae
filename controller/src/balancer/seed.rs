//! The `seed` policy: an overloaded node sheds one VM through the seed's help protocol (pure).
//!
//! For each overloaded node (points at the trigger and still hot; most demanding first, then
//! by name), within the migration limits:
//!
//! 1. **Which VM.** Of the VMs that pass the VM guards, those whose departure leaves the node
//!    no longer hot come first; among them the one with the least memory (the cheapest to
//!    migrate), then the most recently placed (the seed moved "the one virtual machine that
//!    pushed a physical machine into an overloaded state"), then by name. When no single VM
//!    relieves the node, busy VMs are taken in the same order (each move takes one busy vCPU
//!    off); an idle VM that relieves nothing is never moved.
//! 2. **`RequestHelp`**: the node asks for help with that VM.
//! 3. **`OfferHelp`** from every node that passes the target guards — accepts migrations, fits
//!    by the scheduler's rules, is not hot, and would not become hot by taking the VM, and the
//!    VM did not leave it within the cooldown.
//! 4. **`AcceptHelp`** of the first offer in a deterministic order: least loaded once it took
//!    the VM (projected demand), then by name. The move is planned and the node's points start
//!    again from 0.
//!
//! When nobody offers, `NoOffer` says why (nodes counted by reason) and the next VM in the
//! order is tried; when none can move, the node keeps its points and asks again next sample.

use std::cmp::Ordering;

use super::decision::{EventKind, LoadSummary, MoveReason, Outcome, TargetRefusals};
use super::guards::Refusal;
use super::round::{Fit, MoveNote, Round};

/// What a VM of an overloaded node is ranked by.
#[derive(Clone, Debug, PartialEq)]
pub struct SeedCandidate {
    /// Index into the model's VMs.
    pub vm: usize,
    pub name: String,
    /// Its departure leaves the node no longer hot.
    pub relieves: bool,
    pub memory_mib: u64,
    pub placed_at: f64,
}

/// The seed's order of VMs to shed: relieving first, least memory, most recently placed, name.
pub fn rank(candidates: &mut [SeedCandidate]) {
    candidates.sort_by(|a, b| {
        b.relieves
            .cmp(&a.relieves)
            .then(a.memory_mib.cmp(&b.memory_mib))
            .then(b.placed_at.total_cmp(&a.placed_at))
            .then(a.name.cmp(&b.name))
    });
}

/// The order offers are considered in: least loaded once it took the VM (`after`, the
/// projected target), then by name.
pub fn offer_order(a: (&LoadSummary, &str), b: (&LoadSummary, &str)) -> Ordering {
    a.0.demand_percent
        .total_cmp(&b.0.demand_percent)
        .then(a.1.cmp(b.1))
}

/// Runs the help protocol for each overloaded node, in the order given.
pub(super) fn run(round: &mut Round<'_, '_>, overloaded: &[usize]) {
    for &source in overloaded {
        shed_one(round, source);
    }
}

/// The VMs of `hosts[source]` that may be shed, ranked; the others are reported.
fn candidates(round: &mut Round<'_, '_>, source: usize) -> Vec<SeedCandidate> {
    let threshold = round.model.threshold;
    let host = &round.model.hosts[source];
    let mut ranked = Vec::new();
    let mut refused = Vec::new();
    for &index in &host.vms {
        let vm = round.model.vms[index];
        if let Err(refusal) = round.check_vm(vm) {
            refused.push((vm.name.as_str(), refusal));
            continue;
        }
        let relieves = !host.cpu.summary_without(&vm.name, threshold).hot;
        if !relieves && !host.cpu.is_busy(&vm.name) {
            refused.push((vm.name.as_str(), Refusal::NoRelief));
            continue;
        }
        ranked.push(SeedCandidate {
            vm: index,
            name: vm.name.clone(),
            relieves,
            memory_mib: vm.memory_mib(),
            placed_at: vm.placed_at,
        });
    }
    let node = host.name().to_owned();
    for (vm, refusal) in refused {
        round
            .decision
            .candidate(vm, &node, Outcome::Refused(refusal));
    }
    rank(&mut ranked);
    ranked
}

/// The nodes that offer to take `model.vms[vm]` from `hosts[source]`, in order, and why the
/// others did not.
fn offers(round: &Round<'_, '_>, vm: usize, source: usize) -> (Vec<Fit>, TargetRefusals) {
    let view = round.model.vms[vm];
    let demands = round.model.hosts[source].cpu.reference_demands(&view.name);
    let mut fits = Vec::new();
    let mut refusals = TargetRefusals {
        considered: round.model.hosts.len().saturating_sub(1),
        ..Default::default()
    };
    for target in (0..round.model.hosts.len()).filter(|t| *t != source) {
        match round.check_target(view, &demands, target) {
            Ok(fit) => fits.push(fit),
            Err(refusal) => refusals.add(&refusal),
        }
    }
    let hosts = &round.model.hosts;
    fits.sort_by(|a, b| {
        offer_order(
            (&a.after, hosts[a.host].name()),
            (&b.after, hosts[b.host].name()),
        )
    });
    (fits, refusals)
}

/// The help protocol for one overloaded node.
fn shed_one(round: &mut Round<'_, '_>, source: usize) {
    let node = round.model.hosts[source].name().to_owned();
    let summary = round.model.hosts[source].cpu.summary(round.model.threshold);
    if let Err(refusal) = round.check_limits(source) {
        let message =
            format!("{node} is overloaded ({summary}) but cannot shed a VM now: {refusal}");
        round
            .decision
            .event(EventKind::Deferred, &node, None, message);
        return;
    }
    let ranked = candidates(round, source);
    if ranked.is_empty() {
        let message = format!("{node} is overloaded ({summary}) but none of its VMs may move");
        round
            .decision
            .event(EventKind::Deferred, &node, None, message);
        return;
    }
    for (position, candidate) in ranked.iter().enumerate() {
        let vm = &candidate.name;
        let message = format!(
            "{node} is overloaded ({summary}; points {}) and asks for help with {vm} ({} MiB)",
            trail(round, &node),
            candidate.memory_mib
        );
        round
            .decision
            .event(EventKind::RequestHelp, &node, Some(vm), message);
        let (fits, refusals) = offers(round, candidate.vm, source);
        let Some(first) = fits.first().copied() else {
            round
                .decision
                .no_offer(vm, &node, "nobody offers to take", refusals);
            continue;
        };
        accept(round, source, candidate, &fits, first);
        for later in &ranked[position + 1..] {
            let outcome = Outcome::RankedBelow { chosen: vm.clone() };
            round.decision.candidate(&later.name, &node, outcome);
        }
        return;
    }
}

/// Records the offers and the acceptance of the first, and plans the move.
fn accept(
    round: &mut Round<'_, '_>,
    source: usize,
    candidate: &SeedCandidate,
    fits: &[Fit],
    first: Fit,
) {
    let node = round.model.hosts[source].name().to_owned();
    let vm = candidate.name.as_str();
    let mut offered = Vec::with_capacity(fits.len());
    for fit in fits {
        let offering = round.model.hosts[fit.host].name().to_owned();
        let message = format!(
            "{offering} offers to take {vm} from {node} (it would be at {})",
            fit.after
        );
        round
            .decision
            .event(EventKind::OfferHelp, &offering, Some(vm), message);
        offered.push(offering);
    }
    let target = offered[0].clone();
    let message = format!(
        "{node} accepts {target}'s offer for {vm}, the first of {} offers",
        offered.len()
    );
    round
        .decision
        .event(EventKind::AcceptHelp, &node, Some(vm), message);
    let explanation = explain(round, source, candidate, &offered, &first);
    let note = MoveNote {
        reason: MoveReason::Overloaded,
        offers: offered,
        points_history: round
            .state
            .points(&node)
            .map(|p| p.history().cloned().collect())
            .unwrap_or_default(),
        spread: (None, None),
        explanation,
    };
    round.plan(candidate.vm, source, first, note);
    round.state.reset(&node);
    round
        .decision
        .candidate(vm, &node, Outcome::Chosen { to: target });
}

/// The sentence for the Migration's status.
fn explain(
    round: &Round<'_, '_>,
    source: usize,
    candidate: &SeedCandidate,
    offered: &[String],
    first: &Fit,
) -> String {
    let node = round.model.hosts[source].name();
    let vm = candidate.name.as_str();
    let source_after = round.model.hosts[source]
        .cpu
        .summary_without(vm, round.model.threshold);
    let why = if candidate.relieves {
        "the cheapest move that relieves it, most recently placed first"
    } else {
        "no single move relieves it; the cheapest busy VM, most recently placed first"
    };
    format!(
        "{node} was overloaded (points {}): {vm} ({} MiB, {why}) moves to {}, the first of {} \
         nodes that offered; predicted {node} {source_after}, {} {}",
        trail(round, node),
        candidate.memory_mib,
        offered[0],
        offered.len(),
        offered[0],
        first.after
    )
}

fn trail(round: &Round<'_, '_>, node: &str) -> String {
    round
        .state
        .points(node)
        .map(|p| p.trail())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(name: &str, relieves: bool, memory_mib: u64, placed_at: f64) -> SeedCandidate {
        SeedCandidate {
            vm: 0,
            name: name.into(),
            relieves,
            memory_mib,
            placed_at,
        }
    }

    fn names(list: &[SeedCandidate]) -> Vec<&str> {
        list.iter().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn the_most_recently_placed_of_the_cheapest_relieving_vms_goes_first() {
        let mut list = vec![
            candidate("big-new", true, 4096, 50.0),
            candidate("small-old", true, 1024, 10.0),
            candidate("small-new", true, 1024, 40.0),
            candidate("useless-tiny", false, 256, 60.0),
        ];
        rank(&mut list);
        assert_eq!(
            names(&list),
            ["small-new", "small-old", "big-new", "useless-tiny"]
        );
    }

    #[test]
    fn ties_go_by_name() {
        let mut list = vec![
            candidate("b", true, 1024, 0.0),
            candidate("a", true, 1024, 0.0),
        ];
        rank(&mut list);
        assert_eq!(names(&list), ["a", "b"]);
    }

    #[test]
    fn offers_are_taken_least_loaded_first_then_by_name() {
        let offers = [
            (summary(50.0), "herby"),
            (summary(25.0), "jerby"),
            (summary(25.0), "gerby"),
        ];
        let mut order: Vec<&(LoadSummary, &str)> = offers.iter().collect();
        order.sort_by(|a, b| offer_order((&a.0, a.1), (&b.0, b.1)));
        let names: Vec<&str> = order.iter().map(|(_, name)| *name).collect();
        assert_eq!(names, ["gerby", "jerby", "herby"]);
    }

    fn summary(demand_percent: f64) -> LoadSummary {
        LoadSummary {
            load_percent: demand_percent.min(100.0),
            demand_percent,
            busy_vcpus: 0,
            cpus: 4,
            hot: false,
        }
    }
}
