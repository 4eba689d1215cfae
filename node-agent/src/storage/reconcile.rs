//! What to do about one Volume, and what its status says (pure).
//!
//! [`plan`] compares the spec with what the storage host has (the backing volume, the running
//! export) and returns the steps that close the gap; [`status`] turns what the steps achieved
//! into the `VolumeStatus` the storage role writes. Nothing here does I/O.
//!
//! The status has two conditions:
//! - `Ready`: the volume can be used — it exists, complete, and is exported if the spec asks for
//!   an export. Only then does the status carry the `endpoint` the controller waits for.
//! - `Reconciled`: everything the spec asks for was done; when `False`, the reason says what was
//!   not (`ShrinkRefused`, `BackendChanged`, or the error of a failed step). A volume can be
//!   `Ready` and not `Reconciled`, such as after a refused shrink.

use chrono::{DateTime, Utc};
use herd_crds::condition::{Condition, ConditionStatus, set_condition};
use herd_crds::volume::{VolumeBackend, VolumePhase, VolumeSpec, VolumeStatus};

use super::backend::Backing;
use super::export::ExportRecord;

/// LVM rounds sizes up to whole extents; a larger LV than asked by less than this is rounding.
const LVM_ROUNDING_MIB: u64 = 128;

/// What the storage host has for one volume.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// The volume in the backend the spec names.
    pub backing: Option<Backing>,
    /// The volume in the other backend (the spec's backend changed after creation).
    pub elsewhere: Option<Backing>,
    /// Its running export.
    pub export: Option<ExportRecord>,
}

impl Observed {
    /// The volume, wherever it is.
    pub fn effective(&self) -> Option<&Backing> {
        self.backing.as_ref().or(self.elsewhere.as_ref())
    }
}

/// One step towards the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Remove an incomplete volume (creation was cut short).
    Discard,
    /// Create the volume and build its content.
    Create,
    Grow {
        to_mib: u64,
    },
    Export,
    Unexport,
    /// Remove the volume from every backend (deletion).
    Remove,
}

/// Something in the spec that is deliberately not done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub reason: &'static str,
    pub message: String,
}

/// The steps for one volume, in order, and what will not be done.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub notes: Vec<Note>,
}

/// The steps that bring `observed` to `spec` (or, when `deleting`, remove it all).
pub fn plan(spec: &VolumeSpec, deleting: bool, observed: &Observed) -> Plan {
    let mut plan = Plan::default();
    if deleting {
        if observed.export.is_some() {
            plan.steps.push(Step::Unexport);
        }
        if observed.backing.is_some() || observed.elsewhere.is_some() {
            plan.steps.push(Step::Remove);
        }
        return plan;
    }
    let Some(backing) = observed.effective().filter(|b| b.complete) else {
        if observed.export.is_some() {
            plan.steps.push(Step::Unexport);
        }
        if observed.effective().is_some() {
            plan.steps.push(Step::Discard);
        }
        plan.steps.push(Step::Create);
        if spec.export.is_some() {
            plan.steps.push(Step::Export);
        }
        return plan;
    };
    note_immutable(spec, backing, &mut plan);
    let grow = spec.size_mib > backing.size_mib();
    if grow {
        if observed.export.is_some() {
            plan.steps.push(Step::Unexport);
        }
        plan.steps.push(Step::Grow {
            to_mib: spec.size_mib,
        });
    } else if shrinks(spec, backing) {
        plan.notes.push(Note {
            reason: "ShrinkRefused",
            message: format!(
                "the volume is {} MiB; shrinking it to {} MiB would destroy data, so it keeps its size",
                backing.size_mib(),
                spec.size_mib
            ),
        });
    }
    let serving = observed
        .export
        .as_ref()
        .is_some_and(|e| e.path == backing.path && e.format == backing.format);
    match (spec.export.is_some(), serving && !grow) {
        (true, false) => plan.steps.push(Step::Export),
        (false, _) if observed.export.is_some() && !grow => plan.steps.push(Step::Unexport),
        _ => {}
    }
    plan
}

fn shrinks(spec: &VolumeSpec, backing: &Backing) -> bool {
    let slack = match backing.backend {
        VolumeBackend::Lvm => LVM_ROUNDING_MIB,
        VolumeBackend::File => 0,
    };
    backing.size_mib() > spec.size_mib + slack
}

/// Notes what cannot change after creation: the backend and the format.
fn note_immutable(spec: &VolumeSpec, backing: &Backing, plan: &mut Plan) {
    let (backend, format) = (backing.backend, backing.format);
    if spec.backend != backend || spec.format != format {
        plan.notes.push(Note {
            reason: "BackendChanged",
            message: format!(
                "the volume was made as {backend:?}/{format:?} and stays so; delete and recreate it \
                 to move it to {:?}/{:?}",
                spec.backend, spec.format
            )
            .to_lowercase(),
        });
    }
}

/// What a reconcile achieved, for [`status`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub observed: Observed,
    pub wants_export: bool,
    pub notes: Vec<Note>,
    /// The failed step's condition reason and message.
    pub error: Option<(&'static str, String)>,
    /// Whether the error is the spec's fault (the same spec would fail again).
    pub permanent: bool,
    pub deleting: bool,
}

impl Outcome {
    /// Whether the volume can be used as the spec says.
    pub fn usable(&self) -> bool {
        let complete = self.observed.effective().is_some_and(|b| b.complete);
        complete && (!self.wants_export || self.observed.export.is_some())
    }
}

/// The status after `outcome`, keeping transition times of conditions that did not change.
pub fn status(
    previous: &VolumeStatus,
    generation: u64,
    outcome: &Outcome,
    now: DateTime<Utc>,
) -> VolumeStatus {
    let mut next = previous.clone();
    let backing = outcome.observed.effective().filter(|b| b.complete);
    next.path = backing.map(|b| b.path.display().to_string());
    next.endpoint = backing
        .and(outcome.observed.export.as_ref())
        .map(ExportRecord::endpoint);
    next.phase = match (outcome.deleting, outcome.usable(), &outcome.error) {
        (true, _, _) => VolumePhase::Deleting,
        (false, true, _) => VolumePhase::Ready,
        (false, false, Some(_)) => VolumePhase::Failed,
        (false, false, None) => VolumePhase::Creating,
    };
    let ready = if outcome.usable() {
        let message = match &next.endpoint {
            Some(endpoint) => format!("exported at {endpoint}"),
            None => format!("local only at {}", next.path.clone().unwrap_or_default()),
        };
        (ConditionStatus::True, "Ready", message)
    } else if let Some((reason, message)) = &outcome.error {
        (ConditionStatus::False, *reason, message.clone())
    } else if outcome.deleting {
        (
            ConditionStatus::False,
            "Deleting",
            "the volume is being removed".into(),
        )
    } else {
        (
            ConditionStatus::False,
            "Creating",
            "the volume is being made".into(),
        )
    };
    let reconciled = match (&outcome.error, outcome.notes.first()) {
        (Some((reason, message)), _) => (ConditionStatus::False, *reason, message.clone()),
        (None, Some(note)) => (ConditionStatus::False, note.reason, note.message.clone()),
        (None, None) => (
            ConditionStatus::True,
            "Reconciled",
            "the spec is applied".into(),
        ),
    };
    for (type_, (state, reason, message)) in [("Ready", ready), ("Reconciled", reconciled)] {
        let mut condition = Condition::new(type_, state, reason, message, now);
        condition.observed_generation = generation;
        set_condition(&mut next.conditions, condition);
    }
    next
}

/// The status while a volume is being made (written before a long image build).
pub fn creating(
    previous: &VolumeStatus,
    generation: u64,
    message: &str,
    now: DateTime<Utc>,
) -> VolumeStatus {
    let mut next = previous.clone();
    next.phase = VolumePhase::Creating;
    next.path = None;
    next.endpoint = None;
    let mut condition = Condition::new("Ready", ConditionStatus::False, "Creating", message, now);
    condition.observed_generation = generation;
    set_condition(&mut next.conditions, condition);
    next
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
