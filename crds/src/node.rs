//! `Node`: a physical host that runs VMs, with its agent's observations.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::balancing::NodeBalancerStatus;
use crate::condition::Condition;
use crate::object::{Object, Spec};
use crate::validation::{FieldErrors, FieldPath, Validate};
use crate::virtual_machine::{VcpuStatus, VmState};

/// A node object.
pub type Node = Object<NodeSpec>;

/// What an operator wants of a host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSpec {
    /// The seed's accept/refuse flag: may VMs be live-migrated onto this node.
    #[serde(default = "default_true")]
    pub accept_migrations: bool,
    /// Cordon: no new VMs are placed here.
    #[serde(default)]
    pub unschedulable: bool,
    /// How often the agent publishes its heartbeat (the seed let the GUI change it).
    #[serde(default = "default_heartbeat_interval")]
    pub heartbeat_interval_seconds: u32,
    /// Overrides of what the agent detects, for reserving room or for labs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Capacity>,
}

fn default_true() -> bool {
    true
}

fn default_heartbeat_interval() -> u32 {
    2
}

impl Default for NodeSpec {
    fn default() -> Self {
        Self {
            accept_migrations: true,
            unschedulable: false,
            heartbeat_interval_seconds: default_heartbeat_interval(),
            capacity: None,
        }
    }
}

/// Capacity that the scheduler uses instead of the detected one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Capacity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "memoryMiB")]
    pub memory_mib: Option<u64>,
}

/// What the agent observes of its host.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeStatus {
    #[serde(default)]
    pub ready: bool,
    /// Address other nodes use to reach this one (migration traffic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default)]
    pub cpus: u32,
    /// Load of each physical CPU, in percent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cpu_load: Vec<f64>,
    #[serde(default, rename = "memoryTotalMiB")]
    pub memory_total_mib: u64,
    #[serde(default, rename = "memoryFreeMiB")]
    pub memory_free_mib: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<DomainStatus>,
    /// `qemu`, `xl` or `sim`.
    #[serde(default)]
    pub driver: String,
    #[serde(default)]
    pub agent_version: String,
    #[serde(default)]
    pub accepts_migrations: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// The store revision of the agent's latest full read of its assignments, after it acted
    /// on them: every assignment change up to this revision is reflected in `domains`.
    #[serde(default)]
    pub observed_revision: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The balancer's points for this node. Written by the controller (never by the agent)
    /// in `<prefix>/status/nodes/<node>`, only when they change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balancer: Option<NodeBalancerStatus>,
}

/// One domain running on the host.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DomainStatus {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub state: VmState,
    #[serde(default)]
    pub cpu_percent: f64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vcpus: Vec<VcpuStatus>,
    /// Where a domain prepared for an incoming live migration waits for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incoming_endpoint: Option<String>,
    /// How the outgoing live migration of this domain is going.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<MigrationReport>,
}

/// The source agent's report of one outgoing live migration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MigrationReport {
    /// The `Migration` object this is about.
    pub migration: String,
    pub state: MigrationReportState,
    #[serde(default)]
    pub transferred_bytes: u64,
    #[serde(default)]
    pub remaining_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_time_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downtime_ms: Option<u64>,
    #[serde(default)]
    pub message: String,
}

/// Where an outgoing migration is, as the hypervisor says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MigrationReportState {
    #[default]
    Active,
    Completed,
    Failed,
    Cancelled,
}

impl Spec for NodeSpec {
    const KIND: &'static str = "Node";
    const PLURAL: &'static str = "nodes";
    type Status = NodeStatus;
}

impl Validate for NodeSpec {
    fn validate_into(&self, path: &FieldPath, errors: &mut FieldErrors) {
        let interval = path.child("heartbeatIntervalSeconds");
        errors.at_least(self.heartbeat_interval_seconds, 1, interval.clone());
        errors.at_most(self.heartbeat_interval_seconds, 300, interval);
        if let Some(capacity) = &self.capacity {
            let at = path.child("capacity");
            if let Some(cpus) = capacity.cpus {
                errors.at_least(cpus, 1, at.child("cpus"));
            }
            if let Some(memory) = capacity.memory_mib {
                errors.at_least(memory, 64, at.child("memoryMiB"));
            }
        }
    }
}
