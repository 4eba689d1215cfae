//! What one sample of the balancer decided, and why: plain data (pure).
//!
//! The shell turns a [`Decision`] into effects: a `Migration` (reason `Balancer`, target set)
//! per [`PlannedMove`], with [`PlannedMove::explanation`] as its status message; an Event per
//! [`DecisionEvent`] (`reason` = [`EventKind::reason`], on the node it names). Nothing here
//! needs the shell to understand balancing.

use std::fmt;

use herd_crds::cluster_policy::BalancerKind;

use super::guards::Refusal;
use super::points::PointSample;

/// A host's CPU as judged or projected.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoadSummary {
    /// CPU load, percent of the host's CPUs (0–100).
    pub load_percent: f64,
    /// What its vCPUs want, percent of its CPUs (above 100 when they want more than it has).
    pub demand_percent: f64,
    pub busy_vcpus: u32,
    pub cpus: u32,
    /// Above the threshold with contention (more busy vCPUs than CPUs, or demand above
    /// capacity).
    pub hot: bool,
}

impl fmt::Display for LoadSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |n: u32| if n == 1 { "" } else { "s" };
        write!(
            f,
            "load {:.0}%, {} busy vCPU{} on {} CPU{}{}",
            self.load_percent,
            self.busy_vcpus,
            plural(self.busy_vcpus),
            self.cpus,
            plural(self.cpus),
            if self.hot { ", hot" } else { "" }
        )
    }
}

/// The predicted effect of a move on both hosts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prediction {
    pub source_before: LoadSummary,
    pub source_after: LoadSummary,
    pub target_before: LoadSummary,
    pub target_after: LoadSummary,
    /// The `score` policy's cluster spread before and after (`None` for `seed`).
    pub spread_before: Option<f64>,
    pub spread_after: Option<f64>,
}

/// Why a move was planned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MoveReason {
    /// `seed`: the source was overloaded (points at the trigger, still hot).
    Overloaded,
    /// `score`: the move narrows the spread of load by at least the minimum gain.
    Spread,
    /// `forecast`, `density`: the source's predicted peak was above the threshold.
    PredictedOverload,
    /// `density`: the source is being emptied.
    Consolidate,
}

/// One live migration to start.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedMove {
    pub vm: String,
    pub from: String,
    pub to: String,
    pub reason: MoveReason,
    pub memory_mib: u64,
    pub predicted: Prediction,
    /// `seed`: the nodes that offered help, in the order they were considered (the first
    /// was accepted). Empty for `score`.
    pub offers: Vec<String>,
    /// `seed`: the source's points samples that led to the move. Empty for `score`.
    pub points_history: Vec<PointSample>,
    /// One sentence for the Migration's status message.
    pub explanation: String,
}

/// The kind of a recorded step; also the Event's `reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    /// An overloaded node asks for help with one of its VMs.
    RequestHelp,
    /// A node could take the VM without becoming hot.
    OfferHelp,
    /// The overloaded node accepted this offer: the VM moves there.
    AcceptHelp,
    /// No node could take the VM.
    NoOffer,
    /// An overloaded node could not shed a VM now (migration limits, or no movable VM).
    Deferred,
    /// The `score` policy moves a VM to narrow the spread.
    Rebalance,
    /// `forecast`, `density`: a node's predicted peak is above the threshold; one VM moves.
    PredictedOverload,
    /// `density`: a VM moves off the node being emptied.
    Consolidate,
    /// `density`: the node it emptied may be powered off (herd does not power it off).
    PowerOffCandidate,
}

impl EventKind {
    /// The Event `reason`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::RequestHelp => "RequestHelp",
            Self::OfferHelp => "OfferHelp",
            Self::AcceptHelp => "AcceptHelp",
            Self::NoOffer => "NoOffer",
            Self::Deferred => "BalancingDeferred",
            Self::Rebalance => "Rebalance",
            Self::PredictedOverload => "PredictedOverload",
            Self::Consolidate => "Consolidate",
            Self::PowerOffCandidate => "PowerOffCandidate",
        }
    }

    /// Whether the Event is a warning rather than normal.
    pub fn is_warning(self) -> bool {
        matches!(self, Self::NoOffer | Self::Deferred)
    }
}

/// One recorded step of the decision.
#[derive(Clone, Debug, PartialEq)]
pub struct DecisionEvent {
    pub kind: EventKind,
    /// The node the Event is about (the overloaded node, or the offering node).
    pub node: String,
    pub vm: Option<String>,
    pub message: String,
}

/// What became of one VM that was considered.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// It moves to this node.
    Chosen { to: String },
    /// It may not move (the guard that said no).
    Refused(Refusal),
    /// It may move but no node may take it: how many nodes refused, by reason.
    NoTarget(TargetRefusals),
    /// It could move, but another VM ranked first.
    RankedBelow { chosen: String },
    /// `score`: its best move does not gain enough.
    BelowMinGain { to: String, gain: f64, min: f64 },
}

/// Nodes that refused a VM, counted by reason, as kube-scheduler explains a failed placement.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TargetRefusals {
    pub considered: usize,
    pub counts: Vec<(&'static str, usize)>,
}

impl TargetRefusals {
    /// Counts one refusal.
    pub fn add(&mut self, refusal: &Refusal) {
        let phrase = refusal.phrase();
        match self.counts.iter_mut().find(|(p, _)| *p == phrase) {
            Some((_, count)) => *count += 1,
            None => self.counts.push((phrase, 1)),
        }
    }
}

impl fmt::Display for TargetRefusals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut counts = self.counts.clone();
        counts.sort();
        let parts: Vec<String> = counts.iter().map(|(p, n)| format!("{n} {p}")).collect();
        write!(f, "0/{} nodes can take it", self.considered)?;
        if !parts.is_empty() {
            write!(f, ": {}", parts.join(", "))?;
        }
        Ok(())
    }
}

/// A VM that was considered, and what became of it.
#[derive(Clone, Debug, PartialEq)]
pub struct CandidateReport {
    pub vm: String,
    pub node: String,
    pub outcome: Outcome,
}

/// Everything one sample decided.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub at: f64,
    pub policy: BalancerKind,
    /// False when the call came before the sample interval was up: nothing was counted.
    pub sampled: bool,
    /// Live migrations to start, in order.
    pub moves: Vec<PlannedMove>,
    /// Steps to record as Events, in order.
    pub events: Vec<DecisionEvent>,
    /// Every VM considered and why it was or was not moved.
    pub candidates: Vec<CandidateReport>,
    /// `score`: the spread when the round began and after its moves.
    pub spread: Option<(f64, f64)>,
}

impl Decision {
    pub fn new(at: f64, policy: BalancerKind) -> Self {
        Self {
            at,
            policy,
            sampled: true,
            moves: Vec::new(),
            events: Vec::new(),
            candidates: Vec::new(),
            spread: None,
        }
    }

    pub(super) fn event(&mut self, kind: EventKind, node: &str, vm: Option<&str>, message: String) {
        self.events.push(DecisionEvent {
            kind,
            node: node.to_owned(),
            vm: vm.map(str::to_owned),
            message,
        });
    }

    /// No node can take `vm` from `node`: a `NoOffer` Event saying why and its candidate
    /// report.
    pub(super) fn no_offer(&mut self, vm: &str, node: &str, why: &str, refusals: TargetRefusals) {
        let message = format!("{why} {vm} from {node}: {refusals}");
        self.event(EventKind::NoOffer, node, Some(vm), message);
        self.candidate(vm, node, Outcome::NoTarget(refusals));
    }

    pub(super) fn candidate(&mut self, vm: &str, node: &str, outcome: Outcome) {
        self.candidates.push(CandidateReport {
            vm: vm.to_owned(),
            node: node.to_owned(),
            outcome,
        });
    }

    /// The events of one kind.
    pub fn events_of(&self, kind: EventKind) -> impl Iterator<Item = &DecisionEvent> {
        self.events.iter().filter(move |e| e.kind == kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_refusals_read_like_the_scheduler() {
        let mut refusals = TargetRefusals {
            considered: 3,
            ..Default::default()
        };
        refusals.add(&Refusal::RefusesMigrations);
        refusals.add(&Refusal::WouldBecomeHot {
            load_percent: 100.0,
            busy_vcpus: 5,
        });
        refusals.add(&Refusal::WouldBecomeHot {
            load_percent: 90.0,
            busy_vcpus: 6,
        });
        assert_eq!(
            refusals.to_string(),
            "0/3 nodes can take it: 1 refuse migrations, 2 would become hot"
        );
    }

    #[test]
    fn event_reasons_are_the_seeds_names() {
        assert_eq!(EventKind::RequestHelp.reason(), "RequestHelp");
        assert_eq!(EventKind::OfferHelp.reason(), "OfferHelp");
        assert_eq!(EventKind::AcceptHelp.reason(), "AcceptHelp");
        assert!(EventKind::NoOffer.is_warning());
    }
}
