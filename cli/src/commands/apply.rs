//! `herdctl apply -f FILE|DIR|- [-R] [--dry-run=client|server]`.
//!
//! Every document of every file is read and validated first; if anything is wrong nothing is
//! written and every problem is listed (file, line, document, field, what to do). Then each
//! object is compared with its stored version and written with a compare-and-swap: a change
//! made by someone else between the read and the write fails the transaction with an error
//! that says to re-run, and nothing is overwritten.

use herd_store::StoreError;

use crate::apply::{self, ApplyError, Change};
use crate::args::{ApplyArgs, DryRun};
use crate::commands::{Target, read_manifests};
use crate::failure::{Failure, object_ref, race_message};
use crate::output::line;

pub async fn run(target: &Target, args: ApplyArgs) -> Result<(), Failure> {
    let loaded = read_manifests(&args.files, "nothing was applied")?;
    let objects: Vec<_> = loaded.into_iter().map(|l| l.document.object).collect();
    if args.dry_run == DryRun::Client {
        for object in &objects {
            line(format!(
                "{} valid (dry run)",
                object_ref(object.kind(), object.name())
            ))?;
        }
        return Ok(());
    }
    let store = target.connect().await?;
    let server = args.dry_run == DryRun::Server;
    let suffix = if server { " (server dry run)" } else { "" };
    let print = |results: &[(herd_crds::AnyObject, Change)]| -> Result<(), Failure> {
        for (object, change) in results {
            let what = object_ref(object.kind(), object.name());
            line(format!("{what} {}{suffix}", change.verb()))?;
        }
        Ok(())
    };
    match apply::apply(&store, objects, server).await {
        Ok(results) => print(&results),
        Err(ApplyError { written, error }) => {
            print(&written)?;
            Err(failure(&error, !written.is_empty()))
        }
    }
}

/// The error of an apply that stopped, saying what was written and what to do.
fn failure(error: &StoreError, some_written: bool) -> Failure {
    let rest = if some_written {
        "the objects listed above were written, none after them"
    } else {
        "nothing was written"
    };
    match race_message(error) {
        Some(race) => Failure::new(format!(
            "{race}; {rest}. Re-run herdctl apply: it reads the new version and applies your \
             files over it (herdctl diff shows what would change)"
        )),
        None => Failure::new(format!("{}; {rest}", Failure::from_store(error))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_race_tells_the_user_to_re_run() {
        let conflict = StoreError::Conflict {
            kind: "VirtualMachine".into(),
            name: "small-1".into(),
            expected: 5,
            found: 9,
        };
        let message = failure(&conflict, false).message;
        assert!(
            message.contains("virtualmachine/small-1 was changed by someone else"),
            "{message}"
        );
        assert!(
            message.contains("nothing was written. Re-run herdctl apply"),
            "{message}"
        );
    }
}
