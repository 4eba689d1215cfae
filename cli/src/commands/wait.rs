//! `herdctl wait KIND/NAME --for=condition=NAME[=STATUS]|delete [--timeout=30s]`.
//!
//! The object is read once and the watches open at the revision of that read, so a change
//! made between the read and the watch is not missed; each change is checked against what
//! is awaited (see [`crate::wait_for`]). Exit 0 when it is met, 1 with a message saying what
//! the object shows when the timeout passes.

use std::time::Duration;

use herd_store::Store;
use tokio::time::Instant;

use crate::args::WaitArgs;
use crate::commands::Target;
use crate::duration::format_duration;
use crate::failure::Failure;
use crate::fetch::Live;
use crate::kinds::{ObjectRef, parse_refs};
use crate::output::line;
use crate::view::{Shown, with_kind};
use crate::wait_for::{WaitFor, condition_met, current};

/// How a wait ended.
pub enum Waited<K> {
    Met,
    /// The deadline passed; the object as it was then (`None` if it did not exist).
    TimedOut(Option<K>),
}

pub async fn run(target: &Target, args: WaitArgs) -> Result<(), Failure> {
    let refs = parse_refs(&args.objects).map_err(|e| Failure::new(e).with_code(2))?;
    let store = target.connect().await?;
    let deadline = Instant::now() + args.timeout;
    for object in &refs {
        with_kind!(object.kind, K => wait_one::<K>(&store, object, &args.condition, deadline, args.timeout).await?);
    }
    Ok(())
}

async fn wait_one<K: Shown>(
    store: &Store,
    object: &ObjectRef,
    what: &WaitFor,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), Failure> {
    match until::<K>(store, &object.name, what, deadline).await? {
        Waited::Met if *what == WaitFor::Delete => line(format!("{object} deleted")),
        Waited::Met => line(format!("{object} condition met")),
        Waited::TimedOut(now) => {
            let shows = match (what, &now) {
                (WaitFor::Delete, Some(o)) => still_there(o),
                (_, Some(o)) => format!(
                    "it shows {}",
                    current(&o.conditions(), o.state().as_deref())
                ),
                (_, None) => "it does not exist".to_owned(),
            };
            Err(Failure::new(format!(
                "timed out after {} waiting for {} of {object}; {shows}",
                format_duration(timeout),
                what.describe()
            )))
        }
    }
}

/// Why an object is not gone yet, for messages.
pub fn still_there<K: Shown>(object: &K) -> String {
    let meta = object.metadata();
    match (meta.deletion_timestamp, meta.finalizers.is_empty()) {
        (None, _) => "it exists and its deletion was not asked for".to_owned(),
        (Some(_), true) => "it is marked for deletion".to_owned(),
        (Some(_), false) => format!(
            "it is marked for deletion and waits for its finalizers ({}) to be removed by the \
             controller, which for a VM happens once its node agent confirmed the domain is \
             gone; check that herd-controller and the node's agent run",
            meta.finalizers.join(", ")
        ),
    }
}

/// Waits until object `name` of kind `K` is as `what` asks, or `deadline` passes.
///
/// For `delete`, an object re-created under the same name (another uid) counts as deleted.
/// Waiting for a condition of an object that does not exist fails at once, as with kubectl.
pub async fn until<K: Shown>(
    store: &Store,
    name: &str,
    what: &WaitFor,
    deadline: Instant,
) -> Result<Waited<K>, Failure> {
    let mut live = Live::open::<K>(store, Some(name)).await?;
    let mut uid: Option<Option<String>> = None;
    loop {
        let object = live.snapshot().get::<K>(name)?;
        let met = match (what, &object) {
            (WaitFor::Delete, None) => true,
            (WaitFor::Delete, Some(o)) => {
                let first = uid.get_or_insert_with(|| o.metadata().uid.clone());
                *first != o.metadata().uid
            }
            (WaitFor::Condition { .. }, None) => {
                let verb = if uid.is_some() {
                    "was deleted"
                } else {
                    "does not exist"
                };
                return Err(Failure::new(format!(
                    "{}/{name} {verb}; nothing to wait for",
                    K::CLI_KIND
                )));
            }
            (WaitFor::Condition { type_, status }, Some(o)) => {
                uid.get_or_insert_with(|| o.metadata().uid.clone());
                condition_met(type_, *status, &o.conditions(), o.state().as_deref())
            }
        };
        if met {
            return Ok(Waited::Met);
        }
        if tokio::time::timeout_at(deadline, live.next())
            .await
            .is_err()
        {
            return Ok(Waited::TimedOut(object));
        }
    }
}
