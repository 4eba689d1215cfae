//! What `get`, `describe` and `wait` show of each kind: how an object is put together from
//! its keys, its table row, its conditions and its state.
//!
//! An object of most kinds is two keys: the spec (`<prefix>/<plural>/<name>`) and the status
//! (`<prefix>/status/<plural>/<name>`). A node is three: its live status is the agent's
//! heartbeat (`<prefix>/heartbeats/<name>`, a `NodeStatus` on the agent's lease), merged with
//! the controller's record (`<prefix>/status/nodes/<name>`, which holds the `Ready`
//! condition and the balancer's points) by [`merge_node_status`].

use chrono::{DateTime, Utc};
use herd_crds::condition::find_condition;
use herd_crds::{
    ClusterPolicy, Condition, ConditionStatus, Event, Migration, Node, NodeStatus, Object,
    Resource, Spec, VirtualMachine, Volume,
};
use herd_store::codec::{decode_object, decode_value};
use herd_store::{Keys, Revision, StoreError};

use crate::kinds::Kind;
use crate::rows;

/// One of the key ranges an object is read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Object,
    Status,
    Heartbeat,
}

impl Source {
    /// The key prefix of this source for the kind `plural`.
    pub fn prefix(self, keys: &Keys, plural: &str) -> String {
        match self {
            Self::Object => keys.objects(plural),
            Self::Status => keys.statuses(plural),
            Self::Heartbeat => keys.heartbeats(),
        }
    }
}

/// A value as read from etcd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Raw {
    pub key: String,
    pub value: Vec<u8>,
    pub revision: Revision,
}

/// The stored values that make up one object, by source.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parts {
    pub object: Option<Raw>,
    pub status: Option<Raw>,
    pub heartbeat: Option<Raw>,
}

impl Parts {
    pub fn slot(&mut self, source: Source) -> &mut Option<Raw> {
        match source {
            Source::Object => &mut self.object,
            Source::Status => &mut self.status,
            Source::Heartbeat => &mut self.heartbeat,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.object.is_none() && self.status.is_none() && self.heartbeat.is_none()
    }
}

/// A kind as herdctl shows it.
pub trait Shown: Resource {
    /// The kind as typed on the command line.
    const CLI_KIND: Kind;
    /// The key ranges one object is read from.
    const SOURCES: &'static [Source] = &[Source::Object, Source::Status];

    /// The object from its stored parts; `None` when its spec key is absent.
    fn assemble(parts: &Parts) -> Result<Option<Self>, StoreError>;
    /// Column headers, with the extra columns of `-o wide` when `wide`.
    fn headers(wide: bool) -> Vec<&'static str>;
    /// The table row, matching [`Shown::headers`].
    fn row(&self, now: DateTime<Utc>, wide: bool) -> Vec<String>;
    /// The observed conditions.
    fn conditions(&self) -> Vec<Condition> {
        Vec::new()
    }
    /// The observed state or phase, such as `Running` or `Completed`.
    fn state(&self) -> Option<String> {
        None
    }
    /// Puts a listing in display order (by name unless a kind says otherwise).
    fn sort(_items: &mut [Self]) {}
    /// Status fields that `describe` shows as sections of their own: (field, text).
    fn sections(&self, _now: DateTime<Utc>) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}

/// Decodes the spec part and, when present, the status part of an `Object<S>`.
fn with_status<S: Spec>(parts: &Parts) -> Result<Option<Object<S>>, StoreError> {
    let Some(raw) = &parts.object else {
        return Ok(None);
    };
    let mut object: Object<S> = decode_object(&raw.key, &raw.value, raw.revision)?;
    object.status = decode_part::<S::Status>(parts.status.as_ref())?;
    Ok(Some(object))
}

fn decode_part<T: serde::de::DeserializeOwned>(raw: Option<&Raw>) -> Result<Option<T>, StoreError> {
    raw.map(|raw| decode_value(&raw.key, &raw.value))
        .transpose()
}

/// A node's status as shown: the heartbeat's observations (or, when the heartbeat is gone,
/// the last ones the controller recorded), with the controller's conditions. `ready` is the
/// controller's `Ready` condition when it wrote one, else whether a heartbeat exists. A
/// `Ready` condition in the heartbeat itself is ignored: readiness is the controller's call.
/// The balancer's points (`balancer`) are the controller's record too.
pub fn merge_node_status(
    recorded: Option<NodeStatus>,
    heartbeat: Option<NodeStatus>,
) -> Option<NodeStatus> {
    let beating = heartbeat.is_some();
    let recorded_conditions = recorded
        .as_ref()
        .map(|r| r.conditions.clone())
        .unwrap_or_default();
    let balancer = recorded.as_ref().and_then(|r| r.balancer.clone());
    let mut status = heartbeat.or(recorded)?;
    status.balancer = balancer;
    let mut conditions = recorded_conditions;
    if beating {
        for condition in std::mem::take(&mut status.conditions) {
            if condition.type_ != "Ready" && find_condition(&conditions, &condition.type_).is_none()
            {
                conditions.push(condition);
            }
        }
    }
    status.ready =
        find_condition(&conditions, "Ready").map_or(beating, |c| c.status == ConditionStatus::True);
    status.conditions = conditions;
    Some(status)
}

impl Shown for VirtualMachine {
    const CLI_KIND: Kind = Kind::VirtualMachine;

    fn assemble(parts: &Parts) -> Result<Option<Self>, StoreError> {
        with_status(parts)
    }
    fn headers(wide: bool) -> Vec<&'static str> {
        rows::vm_headers(wide)
    }
    fn row(&self, now: DateTime<Utc>, wide: bool) -> Vec<String> {
        rows::vm_row(self, now, wide)
    }
    fn conditions(&self) -> Vec<Condition> {
        self.status
            .as_ref()
            .map(|s| s.conditions.clone())
            .unwrap_or_default()
    }
    fn state(&self) -> Option<String> {
        self.status.as_ref().map(|s| format!("{:?}", s.state))
    }
}

impl Shown for Node {
    const CLI_KIND: Kind = Kind::Node;
    const SOURCES: &'static [Source] = &[Source::Object, Source::Status, Source::Heartbeat];

    fn assemble(parts: &Parts) -> Result<Option<Self>, StoreError> {
        let Some(raw) = &parts.object else {
            return Ok(None);
        };
        let mut node: Node = decode_object(&raw.key, &raw.value, raw.revision)?;
        let recorded = decode_part::<NodeStatus>(parts.status.as_ref())?;
        let heartbeat = decode_part::<NodeStatus>(parts.heartbeat.as_ref())?;
        node.status = merge_node_status(recorded, heartbeat);
        Ok(Some(node))
    }
    fn headers(wide: bool) -> Vec<&'static str> {
        rows::node_headers(wide)
    }
    fn row(&self, now: DateTime<Utc>, wide: bool) -> Vec<String> {
        rows::node_row(self, now, wide)
    }
    fn conditions(&self) -> Vec<Condition> {
        self.status
            .as_ref()
            .map(|s| s.conditions.clone())
            .unwrap_or_default()
    }
    fn state(&self) -> Option<String> {
        let ready = self.status.as_ref().is_some_and(|s| s.ready);
        Some(if ready { "Ready" } else { "NotReady" }.to_owned())
    }
    fn sections(&self, now: DateTime<Utc>) -> Vec<(&'static str, String)> {
        let balancer = self.status.as_ref().and_then(|s| s.balancer.as_ref());
        balancer
            .map(|b| ("balancer", crate::points::section(b, now)))
            .into_iter()
            .collect()
    }
}

impl Shown for Migration {
    const CLI_KIND: Kind = Kind::Migration;

    fn assemble(parts: &Parts) -> Result<Option<Self>, StoreError> {
        with_status(parts)
    }
    fn headers(wide: bool) -> Vec<&'static str> {
        rows::migration_headers(wide)
    }
    fn row(&self, now: DateTime<Utc>, wide: bool) -> Vec<String> {
        rows::migration_row(self, now, wide)
    }
    fn conditions(&self) -> Vec<Condition> {
        self.status
            .as_ref()
            .map(|s| s.conditions.clone())
            .unwrap_or_default()
    }
    fn state(&self) -> Option<String> {
        self.status.as_ref().map(|s| format!("{:?}", s.phase))
    }
}

impl Shown for Volume {
    const CLI_KIND: Kind = Kind::Volume;

    fn assemble(parts: &Parts) -> Result<Option<Self>, StoreError> {
        with_status(parts)
    }
    fn headers(wide: bool) -> Vec<&'static str> {
        rows::volume_headers(wide)
    }
    fn row(&self, now: DateTime<Utc>, wide: bool) -> Vec<String> {
        rows::volume_row(self, now, wide)
    }
    fn conditions(&self) -> Vec<Condition> {
        self.status
            .as_ref()
            .map(|s| s.conditions.clone())
            .unwrap_or_default()
    }
    fn state(&self) -> Option<String> {
        self.status.as_ref().map(|s| format!("{:?}", s.phase))
    }
}

impl Shown for ClusterPolicy {
    const CLI_KIND: Kind = Kind::ClusterPolicy;

    fn assemble(parts: &Parts) -> Result<Option<Self>, StoreError> {
        with_status(parts)
    }
    fn headers(wide: bool) -> Vec<&'static str> {
        rows::policy_headers(wide)
    }
    fn row(&self, now: DateTime<Utc>, wide: bool) -> Vec<String> {
        rows::policy_row(self, now, wide)
    }
}

impl Shown for Event {
    const CLI_KIND: Kind = Kind::Event;
    const SOURCES: &'static [Source] = &[Source::Object];

    fn assemble(parts: &Parts) -> Result<Option<Self>, StoreError> {
        parts
            .object
            .as_ref()
            .map(|raw| decode_object(&raw.key, &raw.value, raw.revision))
            .transpose()
    }
    fn headers(wide: bool) -> Vec<&'static str> {
        rows::event_headers(wide)
    }
    fn row(&self, now: DateTime<Utc>, wide: bool) -> Vec<String> {
        rows::event_row(self, now, wide)
    }
    /// Oldest first, newest last, as `kubectl get events`.
    fn sort(items: &mut [Self]) {
        items.sort_by(|a, b| {
            (a.last_timestamp, &a.metadata.name).cmp(&(b.last_timestamp, &b.metadata.name))
        });
    }
}

/// Runs `$body` with `$T` standing for the type of `$kind`.
macro_rules! with_kind {
    ($kind:expr, $T:ident => $body:expr) => {
        match $kind {
            $crate::kinds::Kind::VirtualMachine => {
                type $T = herd_crds::VirtualMachine;
                $body
            }
            $crate::kinds::Kind::Node => {
                type $T = herd_crds::Node;
                $body
            }
            $crate::kinds::Kind::Migration => {
                type $T = herd_crds::Migration;
                $body
            }
            $crate::kinds::Kind::Volume => {
                type $T = herd_crds::Volume;
                $body
            }
            $crate::kinds::Kind::ClusterPolicy => {
                type $T = herd_crds::ClusterPolicy;
                $body
            }
            $crate::kinds::Kind::Event => {
                type $T = herd_crds::Event;
                $body
            }
        }
    };
}
pub(crate) use with_kind;

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, minute, 0).unwrap()
    }

    fn status(cpus: u32, conditions: Vec<Condition>) -> NodeStatus {
        NodeStatus {
            cpus,
            conditions,
            ..NodeStatus::default()
        }
    }

    fn ready(status: ConditionStatus) -> Condition {
        Condition::new("Ready", status, "R", "", at(0))
    }

    #[test]
    fn a_heartbeat_alone_makes_a_node_ready() {
        let merged = merge_node_status(None, Some(status(4, vec![]))).unwrap();
        assert!(merged.ready);
        assert_eq!(merged.cpus, 4);
        assert_eq!(merge_node_status(None, None), None);
    }

    #[test]
    fn the_controllers_ready_condition_wins_over_the_heartbeat() {
        let recorded = status(2, vec![ready(ConditionStatus::Unknown)]);
        let heartbeat = status(
            8,
            vec![
                ready(ConditionStatus::True),
                Condition::new("DiskPressure", ConditionStatus::False, "Ok", "", at(1)),
            ],
        );
        let merged = merge_node_status(Some(recorded), Some(heartbeat)).unwrap();
        assert!(!merged.ready);
        assert_eq!(merged.cpus, 8, "observations come from the heartbeat");
        let types: Vec<&str> = merged.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Ready", "DiskPressure"]);
        assert_eq!(merged.conditions[0].status, ConditionStatus::Unknown);
    }

    #[test]
    fn without_a_heartbeat_the_last_record_is_shown_not_ready() {
        let recorded = status(2, vec![]);
        let merged = merge_node_status(Some(recorded), None).unwrap();
        assert!(!merged.ready);
        assert_eq!(merged.cpus, 2);
    }

    #[test]
    fn the_balancer_points_come_from_the_controllers_record() {
        let points = herd_crds::balancing::NodeBalancerStatus {
            points: 3,
            points_to_trigger: 5,
            ..Default::default()
        };
        let mut recorded = status(2, vec![]);
        recorded.balancer = Some(points.clone());
        let mut heartbeat = status(4, vec![]);
        heartbeat.balancer = Some(Default::default());
        let merged = merge_node_status(Some(recorded), Some(heartbeat)).unwrap();
        assert_eq!(merged.balancer, Some(points));
        let merged = merge_node_status(None, Some(status(4, vec![]))).unwrap();
        assert_eq!(merged.balancer, None);
    }
}
