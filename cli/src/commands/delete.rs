//! `herdctl delete KIND NAME… | -f FILE [--wait=false] [--timeout=2m] [--ignore-not-found]`.
//!
//! Deleting an object with finalizers only marks it (`deletionTimestamp`); its controller
//! removes the finalizers when it is safe — for a VM, once the node agent confirmed its
//! domain is gone — and the object disappears. By default herdctl waits for that, watching
//! the object (no polling); `--wait=false` returns once the deletion is recorded.

use herd_crds::AnyObject;
use herd_store::txn::Precondition;
use herd_store::{Store, StoreError};
use tokio::time::Instant;

use crate::apply::kind_order;
use crate::args::{DeleteArgs, FilesArgs};
use crate::commands::wait::{Waited, still_there, until};
use crate::commands::{Target, read_manifests};
use crate::duration::format_duration;
use crate::failure::Failure;
use crate::kinds::{Kind, ObjectRef, parse_refs};
use crate::output::line;
use crate::view::{Shown, with_kind};
use crate::wait_for::WaitFor;

/// What asking for a deletion did.
enum Requested {
    Deleted,
    /// Marked for deletion; finalizers remain.
    Marked(Vec<String>),
    NotFound,
}

pub async fn run(target: &Target, args: DeleteArgs) -> Result<(), Failure> {
    let refs = if args.files.is_empty() {
        parse_refs(&args.objects).map_err(|e| Failure::new(e).with_code(2))?
    } else {
        manifest_refs(&args)?
    };
    let store = target.connect().await?;
    let deadline = Instant::now() + args.timeout;
    let mut problems = Vec::new();
    let mut pending = Vec::new();
    for object in refs {
        match with_kind!(object.kind, K => request::<K>(&store, &object.name).await) {
            Ok(Requested::Deleted) => line(format!("{object} deleted"))?,
            Ok(Requested::NotFound) if args.ignore_not_found => {}
            Ok(Requested::NotFound) => problems.push(format!("{object} not found")),
            Ok(Requested::Marked(finalizers)) if !args.wait => line(format!(
                "{object} marked for deletion (finalizers pending: {})",
                finalizers.join(", ")
            ))?,
            Ok(Requested::Marked(_)) => pending.push(object),
            Err(error) => problems.push(format!("{object}: {}", Failure::from_store(&error))),
        }
    }
    for object in pending {
        match with_kind!(object.kind, K => gone::<K>(&store, &object, deadline, &args).await) {
            Ok(()) => line(format!("{object} deleted"))?,
            Err(problem) => problems.push(problem.message),
        }
    }
    match problems.is_empty() {
        true => Ok(()),
        false => Err(Failure::new(problems.join("\n"))),
    }
}

/// The objects of the manifests of `-f`, in the reverse of the order apply writes them.
fn manifest_refs(args: &DeleteArgs) -> Result<Vec<ObjectRef>, Failure> {
    let files = FilesArgs {
        files: args.files.clone(),
        recursive: args.recursive,
    };
    let mut objects: Vec<AnyObject> = read_manifests(&files, "nothing was deleted")?
        .into_iter()
        .map(|l| l.document.object)
        .collect();
    objects.sort_by_key(|o| std::cmp::Reverse(kind_order(o.kind())));
    objects
        .iter()
        .map(|o| {
            Ok(ObjectRef {
                kind: o.plural().parse::<Kind>()?,
                name: o.name().to_owned(),
            })
        })
        .collect::<Result<_, String>>()
        .map_err(Failure::new)
}

async fn request<K: Shown>(store: &Store, name: &str) -> Result<Requested, StoreError> {
    let Some(current) = store.get::<K>(name).await? else {
        return Ok(Requested::NotFound);
    };
    match store.delete::<K>(name, Precondition::None).await {
        Ok(herd_store::objects::DeleteOutcome::Deleted) => Ok(Requested::Deleted),
        Ok(herd_store::objects::DeleteOutcome::Marked) => {
            Ok(Requested::Marked(current.metadata().finalizers.clone()))
        }
        Err(StoreError::NotFound { .. }) => Ok(Requested::NotFound),
        Err(error) => Err(error),
    }
}

async fn gone<K: Shown>(
    store: &Store,
    object: &ObjectRef,
    deadline: Instant,
    args: &DeleteArgs,
) -> Result<(), Failure> {
    match until::<K>(store, &object.name, &WaitFor::Delete, deadline).await? {
        Waited::Met => Ok(()),
        Waited::TimedOut(now) => {
            let why = now
                .as_ref()
                .map_or_else(|| "it is gone now".to_owned(), still_there);
            Err(Failure::new(format!(
                "timed out after {} waiting for {object} to be deleted: {why}. Its deletion \
                 stays requested; herdctl wait {object} --for=delete waits again",
                format_duration(args.timeout)
            )))
        }
    }
}
