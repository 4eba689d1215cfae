//! Object metadata shared by every kind, as in Kubernetes' `ObjectMeta`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::names;
use crate::validation::{FieldErrors, FieldPath};

/// The one API version of every herd object.
pub const API_VERSION: &str = "herd.dev/v1alpha1";

/// Identity, labels and bookkeeping of an object.
///
/// `name`, `labels` and `annotations` come from people; the rest is set by the store
/// (`uid`, `generation`, `resourceVersion`, `creationTimestamp`) or by controllers
/// (`finalizers`, `deletionTimestamp`, `ownerReferences`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    /// Unique name within the kind: a DNS-1123 label (lower-case letters, digits, `-`).
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Set by the store when the object is created; never changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Incremented by the store each time the spec changes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u64,
    /// The etcd `mod_revision` of the stored object; the precondition of every update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<DateTime<Utc>>,
    /// Set when deletion was asked for while finalizers remain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owner_references: Vec<OwnerReference>,
}

/// Names the object that owns this one: deleting the owner deletes the owned object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OwnerReference {
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

impl ObjectMeta {
    /// Metadata with only a name, as a person would write it.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// The stored revision, parsed; `None` for an object that was never stored.
    pub fn revision(&self) -> Option<i64> {
        self.resource_version.as_deref()?.parse().ok()
    }

    /// Checks name, labels, annotations and finalizers.
    pub fn validate(&self, path: &FieldPath, errors: &mut FieldErrors) {
        names::check_object_name(&self.name, &path.child("name"), errors);
        for (key, value) in &self.labels {
            let at = path.child("labels").key(key);
            names::check_label_key(key, &at, errors);
            names::check_label_value(value, &at, errors);
        }
        for key in self.annotations.keys() {
            names::check_label_key(key, &path.child("annotations").key(key), errors);
        }
        if let Some(version) = &self.resource_version
            && version.parse::<i64>().map_or(true, |v| v <= 0)
        {
            errors.push(
                path.child("resourceVersion"),
                "must be a positive integer as returned by the store; remove it from the manifest",
            );
        }
        for (index, finalizer) in self.finalizers.iter().enumerate() {
            names::check_label_key(finalizer, &path.child("finalizers").index(index), errors);
        }
    }
}
