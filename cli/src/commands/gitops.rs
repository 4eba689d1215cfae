//! `herdctl gitops status|reconcile|suspend|resume|diff`: the git repositories herd syncs.
//!
//! `status` reads the GitRepository objects and their statuses; `reconcile` sets the
//! requested-at annotation (CAS) and waits until the sync loop has answered it; `suspend` and
//! `resume` set `spec.suspend`; `diff` fetches the repository itself (into a temporary cache),
//! validates and plans exactly as the loop would, and prints the plan without writing.

use std::time::Duration;

use chrono::Utc;
use herd_crds::Resource;
use herd_crds::condition::{ConditionStatus, find_condition};
use herd_crds::git_repository::{GitRepository, GitRepositorySpec, GitRepositoryStatus};
use herd_gitops::status::short;
use herd_gitops::{Action, SyncPlan, Syncer};
use herd_store::{Store, StoreError};

use crate::args::{GitopsName, GitopsReconcileArgs, GitopsStatusArgs};
use crate::commands::Target;
use crate::failure::Failure;
use crate::output::line;
use crate::table::{Table, age};

/// `herdctl gitops status [NAME]`.
pub async fn status(target: &Target, args: GitopsStatusArgs) -> Result<(), Failure> {
    let store = target.connect().await?;
    let Some(name) = args.name else {
        let repos = store.list_with_status::<GitRepositorySpec>().await?;
        let mut table = Table::new(vec![
            "NAME",
            "URL",
            "REF",
            "APPLIED",
            "READY",
            "STALLED",
            "SUSPENDED",
            "OBJECTS",
            "AGE",
        ]);
        for repo in &repos {
            table.push(summary_row(repo));
        }
        return write_block(&table.render());
    };
    let repo = with_status(&store, &name).await?;
    write_block(&detail(&repo))
}

async fn with_status(store: &Store, name: &str) -> Result<GitRepository, Failure> {
    store
        .get_with_status::<GitRepositorySpec>(name)
        .await?
        .ok_or_else(|| {
            Failure::new(format!(
                "gitrepository/{name} not found; create it with herdctl apply"
            ))
        })
}

fn write_block(text: &str) -> Result<(), Failure> {
    line(text.trim_end())
}

/// One row of the status table.
fn summary_row(repo: &GitRepository) -> Vec<String> {
    let status = repo.status.clone().unwrap_or_default();
    let condition = |type_: &str| {
        find_condition(&status.conditions, type_)
            .map_or("Unknown".to_owned(), |c| format!("{:?}", c.status))
    };
    let created = repo
        .metadata
        .creation_timestamp
        .map_or(0, |t| (Utc::now() - t).num_seconds());
    vec![
        repo.name().to_owned(),
        repo.spec.url.clone(),
        repo.spec.reference.resolve().to_string(),
        status
            .last_applied_commit
            .as_deref()
            .map_or("-".into(), |c| short(c).to_owned()),
        condition("Ready"),
        condition("Stalled"),
        repo.spec.suspend.to_string(),
        status.inventory.len().to_string(),
        age(created),
    ]
}

/// One repository in detail: spec, commits, conditions, the last runs.
fn detail(repo: &GitRepository) -> String {
    let status: GitRepositoryStatus = repo.status.clone().unwrap_or_default();
    let mut out = format!(
        "Name:       {}\nURL:        {}\nRef:        {}\nPath:       {}\nInterval:   {}s\nPrune:      {}\nSuspended:  {}\nFetched:    {}\nApplied:    {}\nObjects:    {}\nConditions:\n",
        repo.name(),
        repo.spec.url,
        repo.spec.reference.resolve(),
        if repo.spec.path.is_empty() {
            "/"
        } else {
            &repo.spec.path
        },
        repo.spec.interval_seconds,
        repo.spec.prune,
        repo.spec.suspend,
        status.last_fetched_commit.as_deref().unwrap_or("-"),
        status.last_applied_commit.as_deref().unwrap_or("-"),
        status.inventory.len(),
    );
    for condition in &status.conditions {
        let message = condition.message.replace('\n', "\n      ");
        out.push_str(&format!(
            "  {} {:?} {}: {message}\n",
            condition.type_, condition.status, condition.reason
        ));
    }
    let mut history = Table::new(vec![
        "TIME",
        "COMMIT",
        "RESULT",
        "CREATED",
        "CONFIGURED",
        "PRUNED",
    ]);
    for run in &status.history {
        history.push(vec![
            run.time.format("%Y-%m-%d %H:%M:%S").to_string(),
            run.commit
                .as_deref()
                .map_or("-".into(), |c| short(c).to_owned()),
            format!("{:?}", run.result),
            run.created.to_string(),
            run.configured.to_string(),
            run.pruned.to_string(),
        ]);
    }
    out.push_str("Last runs:\n");
    out.push_str(&history.render());
    out
}

/// `herdctl gitops reconcile NAME`: asks for a run and waits for its result.
pub async fn reconcile(target: &Target, args: GitopsReconcileArgs) -> Result<(), Failure> {
    let store = target.connect().await?;
    let stamp = herd_gitops::control::request_sync(&store, &args.name)
        .await
        .map_err(|e| not_found(&args.name, e))?;
    line(format!("gitrepository/{} sync requested", args.name))?;
    if args.timeout.is_zero() {
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + args.timeout;
    loop {
        let repo = with_status(&store, &args.name).await?;
        let status = repo.status.unwrap_or_default();
        if status.last_handled_requested_at.as_deref() == Some(stamp.as_str()) {
            return outcome(&args.name, &status);
        }
        if repo.spec.suspend {
            return Err(Failure::new(format!(
                "gitrepository/{} is suspended; herdctl gitops resume {} first",
                args.name, args.name
            )));
        }
        if tokio::time::Instant::now() > deadline {
            return Err(Failure::new(format!(
                "gitrepository/{} was not synced within {:?}; is herd-controller running (without --no-gitops)?",
                args.name, args.timeout
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The result of the run that answered a request, as a line or a failure.
fn outcome(name: &str, status: &GitRepositoryStatus) -> Result<(), Failure> {
    let ready = find_condition(&status.conditions, "Ready");
    match ready {
        Some(ready) if ready.status == ConditionStatus::True => {
            line(format!("gitrepository/{name} synced: {}", ready.message))
        }
        Some(ready) => Err(Failure::new(format!(
            "gitrepository/{name}: {}: {}",
            ready.reason, ready.message
        ))),
        None => Err(Failure::new(format!(
            "gitrepository/{name} has no Ready condition yet"
        ))),
    }
}

fn not_found(name: &str, error: StoreError) -> Failure {
    match error {
        StoreError::NotFound { .. } => Failure::new(format!(
            "gitrepository/{name} not found; create it with herdctl apply"
        )),
        other => Failure::from(other),
    }
}

/// `herdctl gitops suspend|resume NAME`.
pub async fn suspend(target: &Target, args: GitopsName, suspend: bool) -> Result<(), Failure> {
    let store = target.connect().await?;
    herd_gitops::control::set_suspended(&store, &args.name, suspend)
        .await
        .map_err(|e| not_found(&args.name, e))?;
    line(format!(
        "gitrepository/{} {}",
        args.name,
        if suspend { "suspended" } else { "resumed" }
    ))
}

/// `herdctl gitops diff NAME`: whether a sync would change anything.
pub async fn diff(target: &Target, args: GitopsName) -> Result<bool, Failure> {
    let store = target.connect().await?;
    let repo: GitRepository = with_status(&store, &args.name).await?;
    let cache = std::env::temp_dir().join(format!(
        "herdctl-gitops-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4()
    ));
    let syncer = Syncer {
        store: store.clone(),
        fence: None,
        cache_dir: cache.clone(),
        limits: Default::default(),
    };
    let planned = plan_now(&syncer, &repo).await;
    let _ = std::fs::remove_dir_all(&cache);
    let (commit, plan) = planned?;
    for text in diff_lines(&plan) {
        line(text)?;
    }
    line(format!(
        "commit {}: {} to create, {} to configure, {} to prune",
        short(&commit),
        plan.count(Action::Create),
        plan.count(Action::Configure),
        plan.count(Action::Prune)
    ))?;
    Ok(!plan.is_empty())
}

async fn plan_now(syncer: &Syncer, repo: &GitRepository) -> Result<(String, SyncPlan), Failure> {
    let inventory = repo.status.clone().unwrap_or_default().inventory;
    let checkout = syncer
        .checkout(repo.name(), &repo.spec)
        .await
        .map_err(|failed| Failure::new(failed.error.to_string()))?;
    let commit = checkout.commit.clone();
    let plan = syncer
        .plan(repo, checkout, &inventory)
        .await
        .map_err(|e| Failure::new(e.to_string()))?;
    Ok((commit, plan))
}

/// `+ kind/name` to create, `~` to configure, `-` to prune; unchanged objects are not shown.
fn diff_lines(plan: &SyncPlan) -> Vec<String> {
    plan.actions
        .iter()
        .filter_map(|((kind, name), action)| {
            let sign = match action {
                Action::Create => "+",
                Action::Configure => "~",
                Action::Prune => "-",
                Action::Unchanged => return None,
            };
            Some(format!("{sign} {}/{name}", kind.to_lowercase()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_shows_only_changes_with_their_sign() {
        let key = |name: &str| ("VirtualMachine".to_owned(), name.to_owned());
        let plan = SyncPlan {
            actions: vec![
                (key("a"), Action::Create),
                (key("b"), Action::Unchanged),
                (key("c"), Action::Configure),
                (key("d"), Action::Prune),
            ],
            ..SyncPlan::default()
        };
        assert_eq!(
            diff_lines(&plan),
            [
                "+ virtualmachine/a",
                "~ virtualmachine/c",
                "- virtualmachine/d"
            ]
        );
    }
}
