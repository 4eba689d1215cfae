//! `herdctl apply`: read manifests, validate all of them, then write them all.
//!
//! Nothing is written unless every document of every file is valid. Only what a person owns
//! is taken from a manifest — labels, annotations and the spec; status and the fields the
//! store manages (uid, generation, resourceVersion, timestamps) are ignored. Writes go to etcd
//! in transactions whose every update is a compare-and-swap on the revision just read.

use std::path::{Path, PathBuf};

use herd_crds::manifest::AnyObject;
use herd_crds::{ManifestError, ParsedDocument, Resource, parse_manifests};
use herd_store::objects::next_version;
use herd_store::{Store, StoreError, Transaction};

/// Largest number of objects written in one etcd transaction (etcd allows 128 operations).
pub const OBJECTS_PER_TRANSACTION: usize = 100;

/// One document read from a file.
pub struct Loaded {
    pub source: String,
    pub document: ParsedDocument,
}

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

/// Files named by `-f`: a file, `-` for standard input, or a directory's `*.yaml`/`*.yml`
/// (its subdirectories too with `recursive`), in name order.
pub fn manifest_files(paths: &[PathBuf], recursive: bool) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" || path.is_file() {
            files.push(path.clone());
        } else if path.is_dir() {
            collect_dir(path, recursive, &mut files)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        } else {
            return Err(format!("{}: no such file or directory", path.display()));
        }
    }
    Ok(files)
}

fn collect_dir(dir: &Path, recursive: bool, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            if recursive {
                collect_dir(&entry, recursive, files)?;
            }
        } else if entry
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml")
        {
            files.push(entry);
        }
    }
    Ok(())
}

/// Reads and validates every file; returns all documents or all problems.
pub fn load(files: &[PathBuf]) -> Result<Vec<Loaded>, Vec<ManifestError>> {
    let mut loaded = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        let source = file.display().to_string();
        let bytes = if source == "-" {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes).map(|_| bytes)
        } else {
            std::fs::read(file)
        };
        let bytes = match bytes {
            Ok(bytes) => bytes,
            Err(error) => {
                errors.push(ManifestError {
                    source,
                    document: None,
                    line: None,
                    field: None,
                    message: error.to_string(),
                });
                continue;
            }
        };
        match parse_manifests(&source, &bytes) {
            Ok(documents) => loaded.extend(documents.into_iter().map(|document| Loaded {
                source: source.clone(),
                document,
            })),
            Err(problems) => errors.extend(problems),
        }
    }
    if let Some(duplicate) = first_duplicate(&loaded) {
        errors.push(duplicate);
    }
    if errors.is_empty() {
        Ok(loaded)
    } else {
        Err(errors)
    }
}

/// Two documents naming the same object would race each other: refuse.
fn first_duplicate(loaded: &[Loaded]) -> Option<ManifestError> {
    let mut seen = std::collections::BTreeMap::new();
    for item in loaded {
        let object = &item.document.object;
        let id = (object.kind(), object.name().to_owned());
        if let Some(first) = seen.insert(id, (&item.source, item.document.document)) {
            return Some(ManifestError {
                source: item.source.clone(),
                document: Some(item.document.document),
                line: Some(item.document.line),
                field: Some("metadata.name".into()),
                message: format!(
                    "{}/{} is also defined in {} (document {}); keep one",
                    object.kind().to_lowercase(),
                    object.name(),
                    first.0,
                    first.1
                ),
            });
        }
    }
    None
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

/// Runs `$body` with `$object` bound to the typed object inside an `AnyObject`.
macro_rules! with_object {
    ($any:expr, $object:ident => $body:expr) => {
        match $any {
            herd_crds::AnyObject::VirtualMachine($object) => $body,
            herd_crds::AnyObject::Node($object) => $body,
            herd_crds::AnyObject::Migration($object) => $body,
            herd_crds::AnyObject::Volume($object) => $body,
            herd_crds::AnyObject::ClusterPolicy($object) => $body,
            herd_crds::AnyObject::Event($object) => $body,
        }
    };
}
pub(crate) use with_object;

/// Reads the stored copy of `desired`, plans, and adds the write to `txn`.
async fn plan_into<R: Resource>(
    store: &Store,
    desired: R,
    txn: Transaction,
) -> Result<(Change, Transaction), StoreError> {
    let current: Option<R> = store.get(desired.name()).await?;
    let (change, write) = plan(desired, current.as_ref());
    let txn = match (&change, write) {
        (Change::Created, Some(object)) => txn.create(&object)?,
        (Change::Configured, Some(object)) => txn.update(&object)?,
        _ => txn,
    };
    Ok((change, txn))
}

/// Test-only: milliseconds `apply` waits between reading the stored objects and writing, so
/// that a test can make two applies read the same version and then both write (a race).
pub const PAUSE_VARIABLE: &str = "HERD_TEST_PAUSE_BEFORE_WRITE_MS";

fn pause_before_write() -> Option<std::time::Duration> {
    let millis = std::env::var(PAUSE_VARIABLE).ok()?.parse().ok()?;
    Some(std::time::Duration::from_millis(millis))
}

/// An apply that failed part-way: what was written before, and why it stopped.
#[derive(Debug)]
pub struct ApplyError {
    pub written: Vec<(AnyObject, Change)>,
    pub error: StoreError,
}

/// Writes every object (already validated) and returns what happened to each, in order.
/// With `dry_run`, plans against the store but writes nothing.
///
/// Objects go in transactions of [`OBJECTS_PER_TRANSACTION`]; each transaction is all or
/// nothing and compares every object with the revision read for it, so a concurrent change
/// fails it with a conflict instead of being overwritten.
pub async fn apply(
    store: &Store,
    objects: Vec<AnyObject>,
    dry_run: bool,
) -> Result<Vec<(AnyObject, Change)>, ApplyError> {
    let mut results = Vec::new();
    let mut objects = objects;
    objects.sort_by_key(|object| kind_order(object.kind()));
    for chunk in objects.chunks(OBJECTS_PER_TRANSACTION) {
        match apply_chunk(store, chunk, dry_run).await {
            Ok(changes) => results.extend(changes),
            Err(error) => {
                return Err(ApplyError {
                    written: results,
                    error,
                });
            }
        }
    }
    Ok(results)
}

async fn apply_chunk(
    store: &Store,
    chunk: &[AnyObject],
    dry_run: bool,
) -> Result<Vec<(AnyObject, Change)>, StoreError> {
    let mut txn = store.transaction();
    let mut changes = Vec::new();
    for object in chunk {
        let (change, next) = with_object!(object.clone(), o => plan_into(store, o, txn).await?);
        txn = next;
        changes.push((object.clone(), change));
    }
    let writes = changes
        .iter()
        .any(|(_, change)| *change != Change::Unchanged);
    if !dry_run && writes {
        if let Some(pause) = pause_before_write() {
            tokio::time::sleep(pause).await;
        }
        txn.commit().await?;
    }
    Ok(changes)
}

/// Where objects of `kind` come in the order apply writes them (policies and nodes first).
pub fn kind_order(kind: &str) -> usize {
    herd_crds::manifest::KINDS
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(usize::MAX)
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
