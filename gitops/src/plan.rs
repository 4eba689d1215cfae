//! The sync plan (pure): given the commit's objects, the repository's inventory and what the
//! store holds, what to create, configure and prune.
//!
//! Ownership is never guessed from labels. An object is this repository's when its uid is in
//! the inventory *and* it carries the owner annotation naming the repository; only such
//! objects are pruned. A copy of an owned object (another name, so another uid) or an object
//! created by `herdctl apply` with the same labels is never touched. An object the commit
//! declares that another repository owns is refused, and nothing is written.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use herd_crds::git_repository::{InventoryEntry, OWNER_ANNOTATION};
use herd_crds::manifest::AnyObject;
use herd_crds::manifest_set::Loaded;
use herd_crds::{ClusterPolicy, ManifestError, Node, Resource, VirtualMachine, Volume};
use herd_store::apply_plan::{Change, kind_order, plan_any};

use crate::error::SyncError;

/// The kinds a repository may hold: the declarative ones. Migrations and Events are
/// imperative records, and a GitRepository syncing GitRepositories is not supported.
pub const SYNCED_KINDS: [&str; 4] = [
    ClusterPolicy::KIND,
    Node::KIND,
    Volume::KIND,
    VirtualMachine::KIND,
];

/// Identifies an object across kinds.
pub type ObjectKey = (String, String);

/// The key of `object`.
pub fn key_of(object: &AnyObject) -> ObjectKey {
    (object.kind().to_owned(), object.name().to_owned())
}

/// How the plan is made.
#[derive(Clone, Copy, Debug)]
pub struct PlanOptions {
    pub prune: bool,
    pub allow_empty: bool,
    pub now: DateTime<Utc>,
}

/// One write of the plan.
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// A new object (uid already chosen, so the inventory can name it).
    Create(AnyObject),
    /// A compare-and-swap update over the stored revision.
    Update(AnyObject),
    /// Pruning an object without finalizers: deleted at the revision read.
    Delete(AnyObject),
    /// Pruning an object with finalizers: `deletionTimestamp` set (CAS); its owner finishes.
    MarkDeleted(AnyObject),
}

/// What happens to one object, for `herdctl gitops diff` and the run's counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    Create,
    Configure,
    Prune,
    Unchanged,
}

/// The plan of one sync run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SyncPlan {
    pub writes: Vec<Write>,
    /// Every object the run looked at, with what happens to it, in apply order.
    pub actions: Vec<(ObjectKey, Action)>,
    /// The inventory once the writes are made.
    pub inventory: Vec<InventoryEntry>,
}

impl SyncPlan {
    /// How many objects get `action`.
    pub fn count(&self, action: Action) -> usize {
        self.actions.iter().filter(|(_, a)| *a == action).count()
    }

    /// Whether the run writes nothing.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }
}

/// Plans a run of repository `repo`. `current` holds the stored objects of [`SYNCED_KINDS`]
/// (with their resourceVersion); `new_uid` names each object to create.
pub fn plan_sync(
    repo: &str,
    desired: Vec<Loaded>,
    inventory: &[InventoryEntry],
    current: &BTreeMap<ObjectKey, AnyObject>,
    options: PlanOptions,
    mut new_uid: impl FnMut() -> String,
) -> Result<SyncPlan, SyncError> {
    check_kinds_and_owners(repo, &desired, current)?;
    if desired.is_empty() && options.prune && !inventory.is_empty() && !options.allow_empty {
        return Err(SyncError::Refused(format!(
            "The commit holds no manifests, which would prune all {} objects the repository \
             owns; nothing was written. Set spec.allowEmpty: true if that is what you want",
            inventory.len()
        )));
    }
    let mut plan = SyncPlan::default();
    let mut desired: Vec<AnyObject> = desired.into_iter().map(|l| l.document.object).collect();
    desired.sort_by_key(|o| (kind_order(o.kind()), o.name().to_owned()));
    let declared: BTreeSet<ObjectKey> = desired.iter().map(key_of).collect();
    for object in desired {
        apply_one(repo, object, current, &mut new_uid, &mut plan);
    }
    for entry in inventory {
        let key = (entry.kind.clone(), entry.name.clone());
        if !declared.contains(&key) && options.prune {
            prune_one(repo, entry, current.get(&key), options.now, &mut plan);
        }
    }
    plan.inventory.sort();
    Ok(plan)
}

/// Refuses kinds the sync does not handle and objects another repository owns, naming the
/// file, line and field of each.
fn check_kinds_and_owners(
    repo: &str,
    desired: &[Loaded],
    current: &BTreeMap<ObjectKey, AnyObject>,
) -> Result<(), SyncError> {
    let problem = |item: &Loaded, field: &str, message: String| ManifestError {
        source: item.source.clone(),
        document: Some(item.document.document),
        line: Some(item.document.line),
        field: Some(field.into()),
        message,
    };
    let mut errors = Vec::new();
    for item in desired {
        let object = &item.document.object;
        if !SYNCED_KINDS.contains(&object.kind()) {
            errors.push(problem(
                item,
                "kind",
                format!(
                    "{} is not synced from git (only {}); create it with herdctl",
                    object.kind(),
                    SYNCED_KINDS.join(", ")
                ),
            ));
        } else if let Some(owner) = current.get(&key_of(object)).and_then(owner_of)
            && owner != repo
        {
            errors.push(problem(
                item,
                "metadata.name",
                format!(
                    "{}/{} belongs to gitrepository {owner}; remove it from one of the two repositories",
                    object.kind().to_lowercase(),
                    object.name()
                ),
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(SyncError::Invalid(errors))
    }
}

/// The repository named by an object's owner annotation.
pub fn owner_of(object: &AnyObject) -> Option<&str> {
    object
        .metadata()
        .annotations
        .get(OWNER_ANNOTATION)
        .map(String::as_str)
}

/// Plans one declared object: create, configure (drift or a new commit) or leave.
fn apply_one(
    repo: &str,
    mut object: AnyObject,
    current: &BTreeMap<ObjectKey, AnyObject>,
    new_uid: &mut impl FnMut() -> String,
    plan: &mut SyncPlan,
) {
    let key = key_of(&object);
    object
        .metadata_mut()
        .annotations
        .insert(OWNER_ANNOTATION.into(), repo.into());
    let stored = current.get(&key);
    let (change, write) = plan_any(object, stored);
    let uid = match (stored, &write) {
        (Some(stored), _) => stored.metadata().uid.clone().unwrap_or_default(),
        (None, _) => new_uid(),
    };
    let action = match (change, write) {
        (Change::Created, Some(mut write)) => {
            write.metadata_mut().uid = Some(uid.clone());
            plan.writes.push(Write::Create(write));
            Action::Create
        }
        (Change::Configured, Some(write)) => {
            plan.writes.push(Write::Update(write));
            Action::Configure
        }
        _ => Action::Unchanged,
    };
    plan.inventory.push(InventoryEntry {
        kind: key.0.clone(),
        name: key.1.clone(),
        uid,
    });
    plan.actions.push((key, action));
}

/// Plans the prune of an inventory entry the commit no longer declares. Only an object that
/// is still the one the inventory recorded (same uid) and still carries this repository's
/// annotation is pruned; anything else is left alone and forgotten.
fn prune_one(
    repo: &str,
    entry: &InventoryEntry,
    stored: Option<&AnyObject>,
    now: DateTime<Utc>,
    plan: &mut SyncPlan,
) {
    let Some(stored) = stored else { return };
    let ours = stored.metadata().uid.as_deref() == Some(entry.uid.as_str())
        && owner_of(stored) == Some(repo);
    if !ours {
        return;
    }
    let key = key_of(stored);
    let meta = stored.metadata();
    if meta.deletion_timestamp.is_some() {
        // Already being deleted: keep it owned until it is gone.
        plan.inventory.push(entry.clone());
        return;
    }
    if meta.finalizers.is_empty() {
        plan.writes.push(Write::Delete(stored.clone()));
    } else {
        let mut marked = stored.clone();
        marked.metadata_mut().deletion_timestamp = Some(now);
        plan.writes.push(Write::MarkDeleted(marked));
        plan.inventory.push(entry.clone());
    }
    plan.actions.push((key, Action::Prune));
}

#[cfg(test)]
mod tests;
