//! What the balancer publishes about its judgement: a node's points (`NodeStatus.balancer`)
//! and the decision behind a `Balancer` migration (`MigrationStatus.decision`).
//!
//! Both are written by the controller only; agents never set them. A node's section is
//! rewritten only when its points, hotness or the policy knobs it was judged by change, so a
//! quiet cluster costs no writes; its history is those changes, not every sample.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cluster_policy::BalancerKind;

/// Changes kept in [`NodeBalancerStatus::history`].
pub const NODE_HISTORY_LEN: usize = 10;

/// Candidates kept in [`BalancerDecision::candidates`].
pub const DECISION_CANDIDATES_LEN: usize = 16;

/// One sample of a node as the balancer judged it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BalancerSample {
    pub time: DateTime<Utc>,
    /// Points after this sample.
    pub points: u32,
    pub hot: bool,
    /// CPU load, percent of the node's CPUs (0–100).
    pub load_percent: f64,
    /// What its vCPUs want, percent of its CPUs (above 100 when they want more than it has).
    pub demand_percent: f64,
    /// vCPUs that want at least half of a CPU.
    pub busy_vcpus: u32,
    pub cpus: u32,
}

/// A node's points: how long it has been hot (the seed's arithmetic, see `docs/balancer.md`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeBalancerStatus {
    /// +1 per hot sample, −1 per cool one, never under 0 nor above the trigger.
    pub points: u32,
    /// The policy's `pointsToTrigger` when this was written.
    pub points_to_trigger: u32,
    /// The policy's `thresholdPercent` when this was written.
    pub threshold_percent: f64,
    /// Above the threshold and contended at the latest change.
    pub hot: bool,
    /// Hot with the points at the trigger: the balancer sheds one of its VMs.
    pub overloaded: bool,
    /// `density`: the balancer emptied this node; it may be powered off (herd does not).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub power_off_candidate: bool,
    /// The samples at which the points or hotness changed, oldest first; the last one is
    /// the current state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<BalancerSample>,
}

/// Why the balancer moved a VM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BalancerMoveReason {
    /// `seed`: the source was overloaded (points at the trigger, still hot).
    #[default]
    Overloaded,
    /// `score`: the move narrows the spread of load by at least the minimum gain.
    Spread,
    /// `forecast`, `density`: the source's predicted demand (from its VMs' recent history)
    /// was above the threshold.
    PredictedOverload,
    /// `density`: the source is being emptied so that it can be powered off.
    Consolidate,
}

/// A host's CPU as judged now or as predicted after a move.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadSnapshot {
    pub load_percent: f64,
    pub demand_percent: f64,
    pub busy_vcpus: u32,
    pub cpus: u32,
    pub hot: bool,
}

/// The predicted effect of a move on both nodes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PredictedEffect {
    pub source_before: LoadSnapshot,
    pub source_after: LoadSnapshot,
    pub target_before: LoadSnapshot,
    pub target_after: LoadSnapshot,
    /// `score`: the cluster's spread before and after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread_before: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread_after: Option<f64>,
}

/// What became of one VM the balancer considered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CandidateOutcome {
    /// It is the one that moves.
    #[default]
    Chosen,
    /// A guard refused to move it.
    Refused,
    /// No node could take it.
    NoTarget,
    /// Another VM ranked first.
    RankedBelow,
    /// `score`: its best move gains too little.
    BelowMinGain,
}

/// One VM the balancer considered, and why it was or was not moved.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BalancerCandidate {
    pub vm: String,
    pub outcome: CandidateOutcome,
    pub message: String,
}

/// The decision that started a `Balancer` migration, kept for explanation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BalancerDecision {
    pub policy: BalancerKind,
    pub reason: BalancerMoveReason,
    pub decided_at: DateTime<Utc>,
    /// The sentence that explains the move.
    pub explanation: String,
    /// `seed`: the source's samples that led to the move, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub points_history: Vec<BalancerSample>,
    /// `seed`: the nodes that offered to take the VM, in the order considered (the first
    /// was accepted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offers: Vec<String>,
    pub predicted: PredictedEffect,
    /// The VMs of the source that were considered (at most [`DECISION_CANDIDATES_LEN`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<BalancerCandidate>,
    /// Candidates left out of the list above.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub candidates_omitted: u32,
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}
