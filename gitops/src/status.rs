//! The next status of a GitRepository after a run (pure).
//!
//! Conditions follow Flux: `Ready` (the last commit is applied), `Reconciling` (work is under
//! way or will be retried), `Stalled` (the commit itself is at fault: retrying cannot help
//! until someone pushes a fix). A run that changes nothing — same commit, same result, no
//! write — leaves the status exactly as it was, so an idle repository costs no etcd write.

use chrono::{DateTime, Utc};
use herd_crds::condition::{Condition, ConditionStatus, set_condition};
use herd_crds::git_repository::{GitRepositoryStatus, HISTORY_LENGTH, SyncResult, SyncRun};

use crate::error::SyncError;
use crate::plan::{Action, SyncPlan};

/// How a run ended, as the status needs it.
pub enum Outcome<'a> {
    /// `commit` is applied; `plan` is what was written.
    Applied { commit: &'a str, plan: &'a SyncPlan },
    /// The run stopped; `commit` is what was fetched, when it got that far.
    Failed {
        commit: Option<&'a str>,
        error: &'a SyncError,
    },
}

/// What the run knew of the object it synced.
pub struct RunContext {
    pub generation: u64,
    pub requested_at: Option<String>,
    pub now: DateTime<Utc>,
}

/// `previous` updated with the outcome of a run.
pub fn next_status(
    previous: &GitRepositoryStatus,
    context: &RunContext,
    outcome: &Outcome<'_>,
) -> GitRepositoryStatus {
    let mut status = previous.clone();
    status.observed_generation = context.generation;
    status
        .last_handled_requested_at
        .clone_from(&context.requested_at);
    let run = match outcome {
        Outcome::Applied { commit, plan } => applied(&mut status, context, commit, plan),
        Outcome::Failed { commit, error } => failed(&mut status, context, *commit, error),
    };
    let notable = status.history.first().is_none_or(|last| {
        last.commit != run.commit || last.result != run.result || last.message != run.message
    }) || run.created + run.configured + run.pruned > 0;
    if notable {
        status.history.insert(0, run);
        status.history.truncate(HISTORY_LENGTH);
    }
    status
}

fn applied(
    status: &mut GitRepositoryStatus,
    context: &RunContext,
    commit: &str,
    plan: &SyncPlan,
) -> SyncRun {
    status.last_fetched_commit = Some(commit.to_owned());
    status.last_applied_commit = Some(commit.to_owned());
    status.inventory.clone_from(&plan.inventory);
    let (created, configured, pruned) = (
        plan.count(Action::Create),
        plan.count(Action::Configure),
        plan.count(Action::Prune),
    );
    let message = format!(
        "Applied commit {}: {} objects",
        short(commit),
        plan.inventory.len()
    );
    set(
        status,
        context,
        "Ready",
        ConditionStatus::True,
        "Succeeded",
        &message,
    );
    set(
        status,
        context,
        "Reconciling",
        ConditionStatus::False,
        "Succeeded",
        "",
    );
    set(
        status,
        context,
        "Stalled",
        ConditionStatus::False,
        "Succeeded",
        "",
    );
    SyncRun {
        commit: Some(commit.to_owned()),
        time: context.now,
        result: SyncResult::Succeeded,
        created,
        configured,
        pruned,
        message: String::new(),
    }
}

fn failed(
    status: &mut GitRepositoryStatus,
    context: &RunContext,
    commit: Option<&str>,
    error: &SyncError,
) -> SyncRun {
    if let Some(commit) = commit {
        status.last_fetched_commit = Some(commit.to_owned());
    }
    let message = error.to_string();
    let reason = error.reason();
    set(
        status,
        context,
        "Ready",
        ConditionStatus::False,
        reason,
        &message,
    );
    if error.is_stalled() {
        set(
            status,
            context,
            "Stalled",
            ConditionStatus::True,
            reason,
            &message,
        );
        set(
            status,
            context,
            "Reconciling",
            ConditionStatus::False,
            reason,
            "Waiting for a new commit",
        );
    } else {
        set(
            status,
            context,
            "Stalled",
            ConditionStatus::False,
            reason,
            "",
        );
        set(
            status,
            context,
            "Reconciling",
            ConditionStatus::True,
            "ProgressingWithRetry",
            "Retrying at the next interval",
        );
    }
    let result = match error {
        SyncError::Fetch(_) | SyncError::Cache { .. } | SyncError::RefNotFound(_) => {
            SyncResult::FetchFailed
        }
        SyncError::Store(_) => SyncResult::WriteFailed,
        _ => SyncResult::Invalid,
    };
    SyncRun {
        commit: commit.map(str::to_owned),
        time: context.now,
        result,
        created: 0,
        configured: 0,
        pruned: 0,
        message,
    }
}

fn set(
    status: &mut GitRepositoryStatus,
    context: &RunContext,
    type_: &str,
    value: ConditionStatus,
    reason: &str,
    message: &str,
) {
    let mut condition = Condition::new(type_, value, reason, message, context.now);
    condition.observed_generation = context.generation;
    set_condition(&mut status.conditions, condition);
}

/// The first 12 digits of a commit id, as people read them.
pub fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_crds::condition::find_condition;

    fn context() -> RunContext {
        RunContext {
            generation: 2,
            requested_at: None,
            now: Utc::now(),
        }
    }

    #[test]
    fn the_same_successful_run_twice_leaves_the_status_alone() {
        let plan = SyncPlan::default();
        let outcome = Outcome::Applied {
            commit: "abc",
            plan: &plan,
        };
        let once = next_status(&GitRepositoryStatus::default(), &context(), &outcome);
        let twice = next_status(&once, &context(), &outcome);
        assert_eq!(once, twice);
        assert_eq!(once.history.len(), 1);
    }

    #[test]
    fn an_invalid_commit_stalls_and_keeps_the_applied_commit() {
        let plan = SyncPlan::default();
        let ok = next_status(
            &GitRepositoryStatus::default(),
            &context(),
            &Outcome::Applied {
                commit: "good",
                plan: &plan,
            },
        );
        let error = SyncError::Refused("bad".into());
        let bad = next_status(
            &ok,
            &context(),
            &Outcome::Failed {
                commit: Some("bad"),
                error: &error,
            },
        );
        assert_eq!(bad.last_applied_commit.as_deref(), Some("good"));
        assert_eq!(bad.last_fetched_commit.as_deref(), Some("bad"));
        let stalled = find_condition(&bad.conditions, "Stalled").unwrap();
        assert_eq!(
            (stalled.status, stalled.reason.as_str()),
            (ConditionStatus::True, "Refused")
        );
        assert_eq!(bad.history[0].result, SyncResult::Invalid);
    }

    #[test]
    fn history_keeps_the_last_five_runs() {
        let mut status = GitRepositoryStatus::default();
        let plan = SyncPlan::default();
        for commit in ["a", "b", "c", "d", "e", "f", "g"] {
            status = next_status(
                &status,
                &context(),
                &Outcome::Applied {
                    commit,
                    plan: &plan,
                },
            );
        }
        let commits: Vec<_> = status
            .history
            .iter()
            .map(|r| r.commit.clone().unwrap())
            .collect();
        assert_eq!(commits, ["g", "f", "e", "d", "c"]);
    }
}
