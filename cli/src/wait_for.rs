//! What `herdctl wait --for` waits for, and whether an object has reached it (pure).
//!
//! `--for=condition=NAME` is met when the object has a condition `NAME` with status True, or
//! when its state (a VM's `status.state`, a migration's or a volume's `phase`, a node's
//! readiness `Ready`) is `NAME` — so `--for=condition=Running` waits until a VM runs whether
//! the agent reported it through its state or through a `Running` condition.
//! `--for=condition=NAME=False` (or `Unknown`) needs the condition itself with that status.
//! `--for=delete` is met once the object is gone.

use herd_crds::{Condition, ConditionStatus};

/// What to wait for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaitFor {
    Condition {
        type_: String,
        status: ConditionStatus,
    },
    Delete,
}

impl WaitFor {
    /// Reads `condition=NAME`, `condition=NAME=STATUS` or `delete`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid = |why: &str| {
            format!(
                "{why}; use condition=NAME (such as condition=Running), condition=NAME=False, \
                 or delete"
            )
        };
        if text == "delete" {
            return Ok(Self::Delete);
        }
        let Some(rest) = text.strip_prefix("condition=") else {
            return Err(invalid(&format!("{text:?} is not something to wait for")));
        };
        let (type_, status) = match rest.split_once('=') {
            Some((type_, status)) => (type_, status),
            None => (rest, "True"),
        };
        if type_.is_empty() || !type_.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(invalid(&format!("{type_:?} is not a condition name")));
        }
        let status = match status.to_ascii_lowercase().as_str() {
            "true" => ConditionStatus::True,
            "false" => ConditionStatus::False,
            "unknown" => ConditionStatus::Unknown,
            _ => {
                return Err(invalid(&format!(
                    "{status:?} is not True, False or Unknown"
                )));
            }
        };
        Ok(Self::Condition {
            type_: type_.to_owned(),
            status,
        })
    }

    /// As the user would read it: `condition Running=True`, `deletion`.
    pub fn describe(&self) -> String {
        match self {
            Self::Condition { type_, status } => format!("condition {type_}={status:?}"),
            Self::Delete => "deletion".to_owned(),
        }
    }
}

/// Whether an object with `conditions` and `state` has condition `type_` at `status`.
pub fn condition_met(
    type_: &str,
    status: ConditionStatus,
    conditions: &[Condition],
    state: Option<&str>,
) -> bool {
    let by_condition = conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == status);
    let by_state = status == ConditionStatus::True && state == Some(type_);
    by_condition || by_state
}

/// What the object shows now, for a timeout message: `state Starting; conditions Scheduled=True`.
pub fn current(conditions: &[Condition], state: Option<&str>) -> String {
    let conditions: Vec<String> = conditions
        .iter()
        .map(|c| format!("{}={:?}", c.type_, c.status))
        .collect();
    let conditions = match conditions.is_empty() {
        true => "no conditions".to_owned(),
        false => format!("conditions {}", conditions.join(", ")),
    };
    match state {
        Some(state) => format!("state {state}; {conditions}"),
        None => format!("no status yet; {conditions}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn condition(type_: &str, status: ConditionStatus) -> Condition {
        Condition::new(type_, status, "R", "", Utc::now())
    }

    #[test]
    fn for_is_parsed_into_what_to_wait_for() {
        assert_eq!(WaitFor::parse("delete"), Ok(WaitFor::Delete));
        assert_eq!(
            WaitFor::parse("condition=Running"),
            Ok(WaitFor::Condition {
                type_: "Running".into(),
                status: ConditionStatus::True
            })
        );
        assert_eq!(
            WaitFor::parse("condition=Ready=false"),
            Ok(WaitFor::Condition {
                type_: "Ready".into(),
                status: ConditionStatus::False
            })
        );
        for bad in [
            "running",
            "condition=",
            "condition=Ready=maybe",
            "condition=a b",
        ] {
            let error = WaitFor::parse(bad).unwrap_err();
            assert!(
                error.contains("such as condition=Running"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn running_is_met_by_the_state_or_by_a_condition() {
        let t = ConditionStatus::True;
        assert!(condition_met("Running", t, &[], Some("Running")));
        assert!(condition_met(
            "Running",
            t,
            &[condition("Running", t)],
            Some("Starting")
        ));
        assert!(!condition_met(
            "Running",
            t,
            &[condition("Scheduled", t)],
            Some("Starting")
        ));
        let f = ConditionStatus::False;
        assert!(
            !condition_met("Running", f, &[], Some("Stopped")),
            "False needs the condition"
        );
        assert!(condition_met("Ready", f, &[condition("Ready", f)], None));
    }

    #[test]
    fn the_current_state_reads_as_a_sentence() {
        let t = ConditionStatus::True;
        assert_eq!(
            current(&[condition("Scheduled", t)], Some("Starting")),
            "state Starting; conditions Scheduled=True"
        );
        assert_eq!(current(&[], None), "no status yet; no conditions");
    }
}
