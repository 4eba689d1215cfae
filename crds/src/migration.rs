//! `Migration`: one live move of a VM from its node to another.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::balancing::BalancerDecision;
use crate::condition::Condition;
use crate::names;
use crate::object::{Object, Spec};
use crate::validation::{FieldErrors, FieldPath, Validate};

/// A migration object.
pub type Migration = Object<MigrationSpec>;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MigrationSpec {
    /// Name of the VM to move.
    pub vm: String,
    /// Where to; chosen by the scheduler rules when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_node: Option<String>,
    #[serde(default)]
    pub reason: MigrationReason,
}

/// Who asked for the move.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MigrationReason {
    #[default]
    Manual,
    Balancer,
    Drain,
}

/// Where a migration is in its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MigrationPhase {
    #[default]
    Pending,
    PreparingTarget,
    Running,
    Completed,
    Failed,
    Aborted,
}

impl MigrationPhase {
    /// Whether the migration has ended, one way or the other.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Aborted)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MigrationStatus {
    #[serde(default)]
    pub phase: MigrationPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_time_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downtime_ms: Option<u64>,
    #[serde(default)]
    pub bytes_transferred: u64,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// For a `Balancer` migration: the decision that started it (points, candidates,
    /// predicted effect). Written once, when the balancer creates the migration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<BalancerDecision>,
}

impl Spec for MigrationSpec {
    const KIND: &'static str = "Migration";
    const PLURAL: &'static str = "migrations";
    type Status = MigrationStatus;
}

impl Validate for MigrationSpec {
    fn validate_into(&self, path: &FieldPath, errors: &mut FieldErrors) {
        names::check_reference(&self.vm, &path.child("vm"), errors);
        if let Some(target) = &self.target_node {
            names::check_reference(target, &path.child("targetNode"), errors);
        }
    }
}
