//! `ClusterPolicy`: the cluster-wide knobs of the scheduler, the balancer and migrations.
//!
//! The controller reads the one named `default`; when it is absent the defaults below apply.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::object::{Object, Spec};
use crate::validation::{FieldErrors, FieldPath, Validate};

/// A cluster policy object.
pub type ClusterPolicy = Object<ClusterPolicySpec>;

/// Name of the policy the controller obeys.
pub const DEFAULT_POLICY_NAME: &str = "default";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterPolicySpec {
    #[serde(default)]
    pub scheduling: SchedulingPolicy,
    #[serde(default)]
    pub balancer: BalancerPolicy,
    #[serde(default)]
    pub migration: MigrationLimits,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SchedulingPolicy {
    /// vCPUs placed per physical CPU at most.
    #[serde(default = "default_overcommit")]
    pub cpu_overcommit_ratio: f64,
}

fn default_overcommit() -> f64 {
    4.0
}

impl Default for SchedulingPolicy {
    fn default() -> Self {
        Self {
            cpu_overcommit_ratio: default_overcommit(),
        }
    }
}

/// Which balancing policy runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BalancerKind {
    /// The seed's points heuristic.
    #[default]
    Seed,
    /// Minimise the spread of load.
    Score,
    /// Shed load before it saturates: each VM's demand predicted from its recent history,
    /// moves that last, and no VM moved twice within `minStaySeconds`.
    Forecast,
    /// `forecast`, and consolidate onto fewer nodes: empty the least loaded node when the
    /// others can take its VMs without predicted overload, and mark it a power-off candidate.
    Density,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BalancerPolicy {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default)]
    pub policy: BalancerKind,
    /// A node is hot above this CPU load, in percent.
    #[serde(default = "default_threshold")]
    pub threshold_percent: f64,
    /// Points at which a hot node is overloaded and sheds a VM.
    #[serde(default = "default_points")]
    pub points_to_trigger: u32,
    #[serde(default = "default_sample_interval")]
    pub sample_interval_seconds: u32,
    /// A VM moved by the balancer is not moved again for this long.
    #[serde(default = "default_cooldown")]
    pub cooldown_seconds: u32,
    /// The `score` policy moves a VM only when the spread falls by at least this much.
    #[serde(default = "default_min_gain")]
    pub min_gain_percent: f64,
    /// `forecast` and `density`: a VM the balancer moved stays where it went for this long,
    /// unless its node is in SLA violation (every CPU saturated).
    #[serde(default = "default_min_stay")]
    pub min_stay_seconds: u32,
}

fn default_true() -> bool {
    true
}
fn default_threshold() -> f64 {
    80.0
}
fn default_points() -> u32 {
    5
}
fn default_sample_interval() -> u32 {
    2
}
fn default_cooldown() -> u32 {
    600
}
fn default_min_gain() -> f64 {
    5.0
}
fn default_min_stay() -> u32 {
    3600
}

impl Default for BalancerPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            policy: BalancerKind::default(),
            threshold_percent: default_threshold(),
            points_to_trigger: default_points(),
            sample_interval_seconds: default_sample_interval(),
            cooldown_seconds: default_cooldown(),
            min_gain_percent: default_min_gain(),
            min_stay_seconds: default_min_stay(),
        }
    }
}

/// Concurrency and time limits of live migration (defaults as KubeVirt's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MigrationLimits {
    #[serde(default = "default_per_node")]
    pub max_outbound_per_node: u32,
    #[serde(default = "default_per_cluster")]
    pub max_in_cluster: u32,
    /// Abort when no progress was made for this long.
    #[serde(default = "default_progress_timeout")]
    pub progress_timeout_seconds: u32,
    /// Abort after this many seconds per GiB of guest memory.
    #[serde(default = "default_completion_per_gib")]
    pub completion_timeout_per_gib_seconds: u32,
    /// Bandwidth cap in MiB/s; 0 means no cap.
    #[serde(default, rename = "bandwidthMiBps")]
    pub bandwidth_mibps: f64,
}

fn default_per_node() -> u32 {
    2
}
fn default_per_cluster() -> u32 {
    5
}
fn default_progress_timeout() -> u32 {
    150
}
fn default_completion_per_gib() -> u32 {
    800
}

impl Default for MigrationLimits {
    fn default() -> Self {
        Self {
            max_outbound_per_node: default_per_node(),
            max_in_cluster: default_per_cluster(),
            progress_timeout_seconds: default_progress_timeout(),
            completion_timeout_per_gib_seconds: default_completion_per_gib(),
            bandwidth_mibps: 0.0,
        }
    }
}

/// A cluster policy has no observed state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterPolicyStatus {}

impl Spec for ClusterPolicySpec {
    const KIND: &'static str = "ClusterPolicy";
    const PLURAL: &'static str = "clusterpolicies";
    type Status = ClusterPolicyStatus;
}

impl Validate for ClusterPolicySpec {
    fn validate_into(&self, path: &FieldPath, errors: &mut FieldErrors) {
        let ratio = self.scheduling.cpu_overcommit_ratio;
        errors.check(
            ratio.is_finite() && (0.1..=64.0).contains(&ratio),
            path.child("scheduling").child("cpuOvercommitRatio"),
            format!("must be between 0.1 and 64 (got {ratio})"),
        );
        let balancer = path.child("balancer");
        let threshold = self.balancer.threshold_percent;
        errors.check(
            threshold.is_finite() && threshold > 0.0 && threshold <= 100.0,
            balancer.child("thresholdPercent"),
            format!("must be above 0 and at most 100 (got {threshold})"),
        );
        errors.at_least(
            self.balancer.points_to_trigger,
            1,
            balancer.child("pointsToTrigger"),
        );
        errors.at_least(
            self.balancer.sample_interval_seconds,
            1,
            balancer.child("sampleIntervalSeconds"),
        );
        let gain = self.balancer.min_gain_percent;
        errors.check(
            gain.is_finite() && gain >= 0.0,
            balancer.child("minGainPercent"),
            format!("must be zero or more (got {gain})"),
        );
        let migration = path.child("migration");
        let bandwidth = self.migration.bandwidth_mibps;
        errors.check(
            bandwidth.is_finite() && bandwidth >= 0.0,
            migration.child("bandwidthMiBps"),
            format!("must be 0 (no cap) or a positive number of MiB/s (got {bandwidth})"),
        );
        errors.at_least(
            self.migration.max_outbound_per_node,
            1,
            migration.child("maxOutboundPerNode"),
        );
        errors.at_least(
            self.migration.max_in_cluster,
            1,
            migration.child("maxInCluster"),
        );
        errors.at_least(
            self.migration.progress_timeout_seconds,
            1,
            migration.child("progressTimeoutSeconds"),
        );
        errors.at_least(
            self.migration.completion_timeout_per_gib_seconds,
            1,
            migration.child("completionTimeoutPerGibSeconds"),
        );
    }
}
