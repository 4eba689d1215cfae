//! Unit tests of the sync plan.

use super::*;
use herd_crds::manifest_set::parse_sources;

fn vm_yaml(name: &str, memory: u64) -> String {
    format!(
        "apiVersion: herd.dev/v1alpha1\nkind: VirtualMachine\nmetadata:\n  name: {name}\n  labels:\n    app: web\nspec:\n  memoryMiB: {memory}\n"
    )
}

fn desired(files: &[(&str, String)]) -> Vec<Loaded> {
    parse_sources(
        files
            .iter()
            .map(|(p, t)| (p.to_string(), t.clone().into_bytes())),
    )
    .unwrap()
}

fn options() -> PlanOptions {
    PlanOptions {
        prune: true,
        allow_empty: false,
        now: Utc::now(),
    }
}

fn uids() -> impl FnMut() -> String {
    let mut n = 0;
    move || {
        n += 1;
        format!("uid-{n}")
    }
}

/// The stored copy of what a plan created (resourceVersion set as a read would).
fn stored(write: &Write) -> AnyObject {
    let (Write::Create(o) | Write::Update(o) | Write::Delete(o) | Write::MarkDeleted(o)) = write;
    let mut o = o.clone();
    o.metadata_mut().resource_version = Some("7".into());
    o.metadata_mut().generation = o.metadata().generation.max(1);
    o
}

fn store_of(objects: impl IntoIterator<Item = AnyObject>) -> BTreeMap<ObjectKey, AnyObject> {
    objects.into_iter().map(|o| (key_of(&o), o)).collect()
}

/// Plans a run of repository `fleet`.
fn sync(
    desired: Vec<Loaded>,
    inventory: &[InventoryEntry],
    current: &BTreeMap<ObjectKey, AnyObject>,
    options: PlanOptions,
) -> Result<SyncPlan, SyncError> {
    plan_sync("fleet", desired, inventory, current, options, uids())
}

/// The plan of a first sync of `files` and what the store holds after it.
fn first_sync(files: &[(&str, String)]) -> (SyncPlan, BTreeMap<ObjectKey, AnyObject>) {
    let one = sync(desired(files), &[], &BTreeMap::new(), options()).unwrap();
    let current = store_of(one.writes.iter().map(stored));
    (one, current)
}

/// Runs the plan for `files` over the result of a first sync of `first`.
fn second_run(
    first: &[(&str, String)],
    files: &[(&str, String)],
) -> (SyncPlan, BTreeMap<ObjectKey, AnyObject>) {
    let (one, current) = first_sync(first);
    let two = sync(desired(files), &one.inventory, &current, options()).unwrap();
    (two, current)
}

#[test]
fn a_new_object_is_created_owned_and_inventoried() {
    let plan = sync(
        desired(&[("a.yaml", vm_yaml("a", 64))]),
        &[],
        &BTreeMap::new(),
        options(),
    )
    .unwrap();
    let [Write::Create(created)] = plan.writes.as_slice() else {
        panic!("{plan:?}")
    };
    assert_eq!(owner_of(created), Some("fleet"));
    assert_eq!(created.metadata().uid.as_deref(), Some("uid-1"));
    assert_eq!(
        plan.inventory,
        [InventoryEntry {
            kind: "VirtualMachine".into(),
            name: "a".into(),
            uid: "uid-1".into()
        }]
    );
}

#[test]
fn the_same_commit_again_writes_nothing() {
    let files = [("a.yaml", vm_yaml("a", 64)), ("b.yaml", vm_yaml("b", 64))];
    let (plan, _) = second_run(&files, &files);
    assert!(plan.is_empty(), "{plan:?}");
    assert_eq!(plan.count(Action::Unchanged), 2);
    assert_eq!(plan.inventory.len(), 2);
}

#[test]
fn a_changed_spec_is_configured() {
    let (plan, _) = second_run(
        &[("a.yaml", vm_yaml("a", 64))],
        &[("a.yaml", vm_yaml("a", 128))],
    );
    assert!(
        matches!(plan.writes.as_slice(), [Write::Update(_)]),
        "{plan:?}"
    );
}

#[test]
fn drift_of_an_owned_object_is_corrected() {
    let files = [("a.yaml", vm_yaml("a", 64))];
    let (one, mut current) = first_sync(&files);
    if let Some(AnyObject::VirtualMachine(vm)) = current.values_mut().next() {
        vm.spec.memory_mib = 999;
    }
    let two = sync(desired(&files), &one.inventory, &current, options()).unwrap();
    let [Write::Update(AnyObject::VirtualMachine(fixed))] = two.writes.as_slice() else {
        panic!("{two:?}")
    };
    assert_eq!(fixed.spec.memory_mib, 64);
}

#[test]
fn a_removed_object_is_pruned_but_a_look_alike_is_not() {
    let first = [("a.yaml", vm_yaml("a", 64)), ("b.yaml", vm_yaml("b", 64))];
    let (one, mut current) = first_sync(&first);
    // Same labels, created by herdctl apply: no annotation, not in the inventory.
    let by_hand = desired(&[("x.yaml", vm_yaml("by-hand", 64))])
        .remove(0)
        .document
        .object;
    // A copy of an owned object's YAML, annotation and all, under another name and uid.
    let mut copy = stored(&one.writes[0]);
    copy.metadata_mut().name = "copy".into();
    copy.metadata_mut().uid = Some("other".into());
    current.extend(store_of([by_hand, copy]));
    let two = sync(desired(&first[..1]), &one.inventory, &current, options()).unwrap();
    let [Write::Delete(pruned)] = two.writes.as_slice() else {
        panic!("{two:?}")
    };
    assert_eq!(pruned.name(), "b");
    assert_eq!(two.inventory.len(), 1);
}

#[test]
fn an_object_recreated_by_someone_else_is_not_pruned() {
    let first = [("a.yaml", vm_yaml("a", 64)), ("b.yaml", vm_yaml("b", 64))];
    let (one, mut current) = first_sync(&first);
    for object in current.values_mut() {
        object.metadata_mut().uid = Some("recreated".into());
    }
    let two = sync(desired(&first[..1]), &one.inventory, &current, options()).unwrap();
    assert!(
        two.writes.iter().all(|w| !matches!(w, Write::Delete(_))),
        "{two:?}"
    );
}

#[test]
fn an_object_with_finalizers_is_marked_and_stays_owned() {
    let first = [("a.yaml", vm_yaml("a", 64))];
    let (one, mut current) = first_sync(&first);
    for object in current.values_mut() {
        object
            .metadata_mut()
            .finalizers
            .push("herd.dev/domain".into());
    }
    let mut allow = options();
    allow.allow_empty = true;
    let two = sync(vec![], &one.inventory, &current, allow).unwrap();
    let [Write::MarkDeleted(marked)] = two.writes.as_slice() else {
        panic!("{two:?}")
    };
    assert!(marked.metadata().deletion_timestamp.is_some());
    assert_eq!(two.inventory.len(), 1, "owned until it is gone");
}

#[test]
fn an_empty_commit_does_not_prune_everything_unless_allowed() {
    let first = [("a.yaml", vm_yaml("a", 64))];
    let (one, current) = first_sync(&first);
    let refused = sync(vec![], &one.inventory, &current, options()).unwrap_err();
    assert!(refused.to_string().contains("spec.allowEmpty"), "{refused}");
    let mut no_prune = options();
    no_prune.prune = false;
    let kept = sync(vec![], &one.inventory, &current, no_prune).unwrap();
    assert!(kept.is_empty() && kept.inventory.is_empty());
}

#[test]
fn an_object_of_another_repository_is_refused_with_its_file() {
    let files = [("vms/a.yaml", vm_yaml("a", 64))];
    let other = plan_sync(
        "other",
        desired(&files),
        &[],
        &BTreeMap::new(),
        options(),
        uids(),
    )
    .unwrap();
    let current = store_of(other.writes.iter().map(stored));
    let error = sync(desired(&files), &[], &current, options()).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("vms/a.yaml:1 (document 1): metadata.name: virtualmachine/a belongs to gitrepository other"), "{text}");
}

#[test]
fn imperative_kinds_are_refused() {
    let migration =
        "apiVersion: herd.dev/v1alpha1\nkind: Migration\nmetadata:\n  name: m\nspec:\n  vm: a\n";
    let error = sync(
        desired(&[("m.yaml", migration.into())]),
        &[],
        &BTreeMap::new(),
        options(),
    )
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("m.yaml:1 (document 1): kind: Migration is not synced"),
        "{error}"
    );
}
