//! Status conditions, following the Kubernetes API conventions.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Whether a condition holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// One observed aspect of an object (`Scheduled`, `Running`, `Ready`, …).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    /// CamelCase name of the aspect, such as `Scheduled`.
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    /// CamelCase machine-readable cause of the last transition.
    #[serde(default)]
    pub reason: String,
    /// Human-readable details.
    #[serde(default)]
    pub message: String,
    pub last_transition_time: DateTime<Utc>,
    /// The `metadata.generation` this condition was computed from.
    #[serde(default)]
    pub observed_generation: u64,
}

impl Condition {
    pub fn new(
        type_: impl Into<String>,
        status: ConditionStatus,
        reason: impl Into<String>,
        message: impl Into<String>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            type_: type_.into(),
            status,
            reason: reason.into(),
            message: message.into(),
            last_transition_time: now,
            observed_generation: 0,
        }
    }
}

/// Sets `condition` in `conditions`, keeping the old transition time when the status did not
/// change (as Kubernetes' `meta.SetStatusCondition` does).
pub fn set_condition(conditions: &mut Vec<Condition>, condition: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == condition.type_) {
        Some(existing) => {
            let keep_time = existing.status == condition.status;
            let time = existing.last_transition_time;
            *existing = condition;
            if keep_time {
                existing.last_transition_time = time;
            }
        }
        None => conditions.push(condition),
    }
}

/// The condition of type `type_`, if present.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn transition_time_moves_only_on_a_status_change() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let t1 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 1, 0).unwrap();
        let mut conditions = vec![];
        set_condition(
            &mut conditions,
            Condition::new("Ready", ConditionStatus::True, "Up", "", t0),
        );
        set_condition(
            &mut conditions,
            Condition::new("Ready", ConditionStatus::True, "Up", "x", t1),
        );
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, t0);
        assert_eq!(conditions[0].message, "x");
        set_condition(
            &mut conditions,
            Condition::new("Ready", ConditionStatus::False, "Down", "", t1),
        );
        assert_eq!(
            find_condition(&conditions, "Ready")
                .unwrap()
                .last_transition_time,
            t1
        );
    }
}
