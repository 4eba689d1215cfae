//! herd's API objects.
//!
//! Every object is Kubernetes-shaped (`apiVersion: herd.dev/v1alpha1`, `kind`, `metadata`,
//! `spec`, `status`). This crate holds the serde types, their defaults, validation that reports
//! every problem with its field path, the YAML manifest reader, and the schema generator behind
//! `manifests/crds/`. It does no I/O beyond what a caller hands it: no tokio, no etcd.

pub mod assignment;
pub mod balancing;
pub mod cluster_policy;
pub mod condition;
pub mod event;
pub mod git_repository;
mod locate;
pub mod manifest;
pub mod manifest_set;
pub mod meta;
pub mod migration;
pub mod names;
pub mod node;
pub mod object;
pub mod schema;
pub mod selector;
pub mod validation;
pub mod virtual_machine;
pub mod volume;
pub mod yaml;

pub use cluster_policy::{ClusterPolicy, ClusterPolicySpec};
pub use condition::{Condition, ConditionStatus};
pub use event::{Event, EventType, InvolvedObject};
pub use git_repository::{GitRepository, GitRepositorySpec, GitRepositoryStatus};
pub use manifest::{AnyObject, ManifestError, ParsedDocument, parse_manifests};
pub use meta::{API_VERSION, ObjectMeta, OwnerReference};
pub use migration::{Migration, MigrationPhase, MigrationSpec, MigrationStatus};
pub use node::{Node, NodeSpec, NodeStatus};
pub use object::{Object, Resource, Spec};
pub use validation::{FieldError, Validate};
pub use virtual_machine::{RunState, VirtualMachine, VirtualMachineSpec, VirtualMachineStatus};
pub use volume::{Volume, VolumeSpec, VolumeStatus};
