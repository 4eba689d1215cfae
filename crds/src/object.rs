//! The Kubernetes-shaped envelope shared by the kinds that have a spec and a status.

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::meta::{API_VERSION, ObjectMeta};
use crate::validation::{FieldErrors, FieldPath, Validate};

/// What the store and the tools need to know of any kind of object.
pub trait Resource:
    Clone + std::fmt::Debug + Serialize + DeserializeOwned + Validate + Send + Sync + 'static
{
    /// The `kind` field, such as `VirtualMachine`.
    const KIND: &'static str;
    /// The lower-case plural used in etcd keys and the CLI, such as `virtualmachines`.
    const PLURAL: &'static str;

    fn metadata(&self) -> &ObjectMeta;
    fn metadata_mut(&mut self) -> &mut ObjectMeta;

    fn name(&self) -> &str {
        &self.metadata().name
    }

    /// Drops the observed state, which is stored apart from the object (see DESIGN.md).
    fn clear_status(&mut self) {}

    /// Whether what a person asked for differs between `self` and `other`; the store bumps
    /// `metadata.generation` when it does.
    fn desired_state_differs(&self, other: &Self) -> bool;
}

/// The desired state of a kind: ties a spec type to its kind, plural and status type.
pub trait Spec:
    Clone
    + std::fmt::Debug
    + PartialEq
    + Serialize
    + DeserializeOwned
    + JsonSchema
    + Validate
    + Send
    + Sync
    + 'static
{
    const KIND: &'static str;
    const PLURAL: &'static str;
    /// What the owner observes; written only by the owner, under its own key.
    type Status: Clone
        + std::fmt::Debug
        + Default
        + PartialEq
        + Serialize
        + DeserializeOwned
        + JsonSchema
        + Send
        + Sync
        + 'static;
}

/// An object: `apiVersion`, `kind`, `metadata`, `spec` and, when observed, `status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, bound = "")]
#[schemars(bound = "S: JsonSchema")]
pub struct Object<S: Spec> {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: S,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<S::Status>,
}

impl<S: Spec> Object<S> {
    /// A new object of this kind with the given name and spec and no status.
    pub fn new(name: impl Into<String>, spec: S) -> Self {
        Self {
            api_version: API_VERSION.to_owned(),
            kind: S::KIND.to_owned(),
            metadata: ObjectMeta::named(name),
            spec,
            status: None,
        }
    }
}

/// Pushes errors when `apiVersion` or `kind` are not what this kind expects.
pub fn check_type(api_version: &str, kind: &str, expected_kind: &str, errors: &mut FieldErrors) {
    if api_version != API_VERSION {
        errors.push(
            FieldPath::root().child("apiVersion"),
            format!("must be {API_VERSION:?} (got {api_version:?})"),
        );
    }
    if kind != expected_kind {
        errors.push(
            FieldPath::root().child("kind"),
            format!("must be {expected_kind:?} (got {kind:?})"),
        );
    }
}

impl<S: Spec> Validate for Object<S> {
    fn validate_into(&self, path: &FieldPath, errors: &mut FieldErrors) {
        check_type(&self.api_version, &self.kind, S::KIND, errors);
        self.metadata.validate(&path.child("metadata"), errors);
        self.spec.validate_into(&path.child("spec"), errors);
    }
}

impl<S: Spec> Resource for Object<S> {
    const KIND: &'static str = S::KIND;
    const PLURAL: &'static str = S::PLURAL;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }

    fn clear_status(&mut self) {
        self.status = None;
    }

    fn desired_state_differs(&self, other: &Self) -> bool {
        self.spec != other.spec
    }
}
