//! `Event`: something that happened to an object, for people to read (`herdctl get events`).
//!
//! Shaped like Kubernetes' core `Event`: no spec or status, the facts sit at the top level.
//! The store keeps each on an expiring lease (1 h by default).

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::{API_VERSION, ObjectMeta};
use crate::names;
use crate::object::{Resource, check_type};
use crate::validation::{FieldErrors, FieldPath, Validate};
use crate::virtual_machine::check_text;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Event {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub involved_object: InvolvedObject,
    #[serde(rename = "type")]
    pub type_: EventType,
    /// CamelCase cause, such as `FailedScheduling` or `RequestHelp`.
    pub reason: String,
    pub message: String,
    /// The component that reported it, such as `herd-controller` or `herd-agent/ferby`.
    #[serde(default)]
    pub source: String,
    #[serde(default = "one")]
    pub count: u32,
    pub first_timestamp: DateTime<Utc>,
    pub last_timestamp: DateTime<Utc>,
}

fn one() -> u32 {
    1
}

/// The object an event is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InvolvedObject {
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum EventType {
    #[default]
    Normal,
    Warning,
}

impl Event {
    /// A new event about `object`, first seen `now`.
    pub fn new(
        name: impl Into<String>,
        object: InvolvedObject,
        type_: EventType,
        reason: impl Into<String>,
        message: impl Into<String>,
        source: impl Into<String>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            api_version: API_VERSION.to_owned(),
            kind: Self::KIND.to_owned(),
            metadata: ObjectMeta::named(name),
            involved_object: object,
            type_,
            reason: reason.into(),
            message: message.into(),
            source: source.into(),
            count: 1,
            first_timestamp: now,
            last_timestamp: now,
        }
    }
}

impl Validate for Event {
    fn validate_into(&self, path: &FieldPath, errors: &mut FieldErrors) {
        check_type(&self.api_version, &self.kind, Self::KIND, errors);
        self.metadata.validate(&path.child("metadata"), errors);
        let at = path.child("involvedObject");
        names::check_reference(&self.involved_object.name, &at.child("name"), errors);
        let reason_ok =
            !self.reason.is_empty() && self.reason.bytes().all(|b| b.is_ascii_alphanumeric());
        errors.check(
            reason_ok,
            path.child("reason"),
            "must be a CamelCase word such as FailedScheduling",
        );
        check_text(&self.source, path.child("source"), errors);
        errors.at_least(self.count, 1, path.child("count"));
    }
}

impl Resource for Event {
    const KIND: &'static str = "Event";
    const PLURAL: &'static str = "events";

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }

    fn desired_state_differs(&self, other: &Self) -> bool {
        let facts = |e: &Self| {
            (
                e.involved_object.clone(),
                e.type_,
                e.reason.clone(),
                e.message.clone(),
                e.count,
            )
        };
        facts(self) != facts(other)
    }
}
