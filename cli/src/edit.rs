//! Read-modify-write of one object for the imperative verbs (`start`, `cordon`, …): read it,
//! change it, validate it, and write it with a compare-and-swap on the revision read. When
//! someone else wrote in between, read again and retry, a few times.

use std::time::Duration;

use herd_crds::Resource;
use herd_store::Store;

use crate::failure::{Failure, object_ref};

/// How many times a lost compare-and-swap is retried.
pub const ATTEMPTS: u32 = 5;

/// Whether an edit wrote anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edited {
    Changed,
    Unchanged,
}

/// Applies `change` to object `name` of kind `R` and writes it if it changed.
/// `change` may refuse with a sentence, which becomes the error.
pub async fn edit<R, F>(store: &Store, name: &str, mut change: F) -> Result<(R, Edited), Failure>
where
    R: Resource + PartialEq,
    F: FnMut(&mut R) -> Result<(), String>,
{
    let what = object_ref(R::KIND, name);
    for attempt in 1..=ATTEMPTS {
        let current: R = store.get_existing(name).await?;
        let mut next = current.clone();
        change(&mut next).map_err(|why| Failure::new(format!("{what} {why}")))?;
        if next == current {
            return Ok((current, Edited::Unchanged));
        }
        let problems = next.validate();
        if !problems.is_empty() {
            let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
            return Err(Failure::new(format!(
                "{what} would be invalid: {}",
                problems.join("; ")
            )));
        }
        match store.update(&next).await {
            Ok(stored) => return Ok((stored, Edited::Changed)),
            Err(error) if error.is_conflict() && attempt < ATTEMPTS => {
                tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
            }
            Err(error) if error.is_conflict() => break,
            Err(error) => return Err(error.into()),
        }
    }
    Err(Failure::new(format!(
        "{what} kept changing while herdctl tried to update it ({ATTEMPTS} attempts); try again"
    )))
}
