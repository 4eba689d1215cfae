//! `herdctl apply`: read manifests, validate all of them, then write them all.
//!
//! Nothing is written unless every document of every file is valid. Only what a person owns
//! is taken from a manifest — labels, annotations and the spec; status and the fields the
//! store manages (uid, generation, resourceVersion, timestamps) are ignored. Writes go to etcd
//! in transactions whose every update is a compare-and-swap on the revision just read.

use std::path::{Path, PathBuf};

use herd_crds::ManifestError;
use herd_crds::Resource;
use herd_crds::manifest::AnyObject;
pub use herd_crds::manifest_set::{Loaded, parse_sources};
pub use herd_store::apply_plan::{Change, OBJECTS_PER_TRANSACTION, desired_only, kind_order, plan};
use herd_store::{Store, StoreError, Transaction};

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
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        let source = file.display().to_string();
        let bytes = if source == "-" {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes).map(|_| bytes)
        } else {
            std::fs::read(file)
        };
        match bytes {
            Ok(bytes) => sources.push((source, bytes)),
            Err(error) => errors.push(ManifestError {
                source,
                document: None,
                line: None,
                field: None,
                message: error.to_string(),
            }),
        }
    }
    match parse_sources(sources) {
        Ok(loaded) if errors.is_empty() => Ok(loaded),
        Ok(_) => Err(errors),
        Err(problems) => {
            errors.extend(problems);
            Err(errors)
        }
    }
}

pub(crate) use herd_crds::with_object;

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
