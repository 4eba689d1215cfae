//! The pure plan of an apply: what to write for a desired object given the stored one.
//!
//! Shared by `herdctl apply` and the GitOps sync loop, so both decide "created, configured or
//! unchanged" the same way: only what a person owns (labels, annotations, spec) is compared,
//! status and store-managed metadata never are, and herd's own `herd.dev/` annotations survive
//! a manifest that leaves them out.

use herd_crds::Resource;
use herd_crds::manifest::AnyObject;

use crate::objects::next_version;

/// Annotations with this prefix are kept when a manifest leaves them out.
pub const SYSTEM_ANNOTATION_PREFIX: &str = "herd.dev/";

/// What apply does to one object.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Created,
    Configured,
    Unchanged,
}

impl Change {
    pub fn verb(&self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Configured => "configured",
            Self::Unchanged => "unchanged",
        }
    }
}

/// Keeps only what a person owns of `object`: drops status and store-managed metadata.
pub fn desired_only<R: Resource>(mut object: R) -> R {
    object.clear_status();
    let meta = object.metadata_mut();
    meta.uid = None;
    meta.generation = 0;
    meta.resource_version = None;
    meta.creation_timestamp = None;
    meta.deletion_timestamp = None;
    object
}

/// What to write for `desired` given what is stored (pure).
pub fn plan<R: Resource>(desired: R, current: Option<&R>) -> (Change, Option<R>) {
    let desired = desired_only(desired);
    let Some(current) = current else {
        return (Change::Created, Some(desired));
    };
    let mut merged = desired;
    {
        let (meta, old) = (merged.metadata_mut(), current.metadata());
        meta.finalizers.clone_from(&old.finalizers);
        meta.owner_references.clone_from(&old.owner_references);
        meta.resource_version.clone_from(&old.resource_version);
        // Annotations under `herd.dev/` belong to herd's components (the controller's
        // `released-from`, herdctl's `stop-mode`): a manifest that does not set them keeps them.
        for (key, value) in &old.annotations {
            if key.starts_with(SYSTEM_ANNOTATION_PREFIX) {
                meta.annotations
                    .entry(key.clone())
                    .or_insert_with(|| value.clone());
            }
        }
    }
    let same_meta = merged.metadata().labels == current.metadata().labels
        && merged.metadata().annotations == current.metadata().annotations;
    if same_meta && !current.desired_state_differs(&merged) {
        return (Change::Unchanged, None);
    }
    (Change::Configured, Some(next_version(current, &merged)))
}

/// Largest number of objects written in one etcd transaction (etcd allows 128 operations).
pub const OBJECTS_PER_TRANSACTION: usize = 100;

/// Where objects of `kind` come in the order apply writes them (policies and nodes first).
pub fn kind_order(kind: &str) -> usize {
    herd_crds::manifest::KINDS
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(usize::MAX)
}

/// [`plan`] for an object of any kind; `current` is used only when it is of the same kind.
pub fn plan_any(desired: AnyObject, current: Option<&AnyObject>) -> (Change, Option<AnyObject>) {
    macro_rules! by_kind {
        ($($kind:ident),*) => {
            match desired {
                $(AnyObject::$kind(desired) => {
                    let current = match current {
                        Some(AnyObject::$kind(current)) => Some(current),
                        _ => None,
                    };
                    let (change, write) = plan(desired, current);
                    (change, write.map(AnyObject::$kind))
                })*
            }
        };
    }
    by_kind!(
        VirtualMachine,
        Node,
        Migration,
        Volume,
        ClusterPolicy,
        Event,
        GitRepository
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_crds::node::NodeSpec;
    use herd_crds::{Node, Object};

    fn stored(node: &Node) -> Node {
        let mut stored = node.clone();
        stored.metadata.uid = Some("u-1".into());
        stored.metadata.generation = 3;
        stored.metadata.resource_version = Some("42".into());
        stored.metadata.finalizers.push("herd.dev/keep".into());
        stored
    }

    #[test]
    fn a_new_object_is_created_without_store_fields() {
        let mut node: Node = Object::new("ferby", NodeSpec::default());
        node.metadata.uid = Some("forged".into());
        node.status = Some(Default::default());
        let (change, write) = plan(node, None);
        assert_eq!(change, Change::Created);
        let write = write.unwrap();
        assert_eq!((write.metadata.uid, write.status), (None, None));
    }

    #[test]
    fn the_same_manifest_again_is_unchanged_even_with_a_status() {
        let node: Node = Object::new("ferby", NodeSpec::default());
        let current = stored(&node);
        let mut again = node.clone();
        again.status = Some(herd_crds::NodeStatus {
            cpus: 9,
            ..Default::default()
        });
        assert_eq!(plan(again, Some(&current)), (Change::Unchanged, None));
    }

    #[test]
    fn a_spec_change_configures_and_bumps_generation_keeping_identity() {
        let node: Node = Object::new("ferby", NodeSpec::default());
        let current = stored(&node);
        let mut changed = node.clone();
        changed.spec.unschedulable = true;
        let (change, write) = plan(changed, Some(&current));
        let write = write.unwrap();
        assert_eq!(change, Change::Configured);
        assert_eq!(write.metadata.generation, 4);
        assert_eq!(write.metadata.uid.as_deref(), Some("u-1"));
        assert_eq!(
            write.metadata.resource_version.as_deref(),
            Some("42"),
            "the CAS precondition"
        );
        assert_eq!(
            write.metadata.finalizers,
            ["herd.dev/keep"],
            "controllers' finalizers survive"
        );
    }

    #[test]
    fn herd_annotations_survive_a_manifest_that_leaves_them_out() {
        let node: Node = Object::new("ferby", NodeSpec::default());
        let mut current = stored(&node);
        current
            .metadata
            .annotations
            .insert("herd.dev/released-from".into(), "gerby".into());
        current
            .metadata
            .annotations
            .insert("owner".into(), "ops".into());
        let (change, write) = plan(node.clone(), Some(&current));
        assert_eq!(
            change,
            Change::Configured,
            "the person's own annotation was removed"
        );
        let kept = write.unwrap().metadata.annotations;
        assert_eq!(
            kept.get("herd.dev/released-from").map(String::as_str),
            Some("gerby")
        );
        assert!(!kept.contains_key("owner"));
    }

    #[test]
    fn a_label_change_configures_without_a_new_generation() {
        let node: Node = Object::new("ferby", NodeSpec::default());
        let current = stored(&node);
        let mut labelled = node.clone();
        labelled.metadata.labels.insert("rack".into(), "r1".into());
        let (change, write) = plan(labelled, Some(&current));
        assert_eq!(change, Change::Configured);
        assert_eq!(write.unwrap().metadata.generation, 3);
    }
}
