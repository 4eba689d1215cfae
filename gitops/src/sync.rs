//! One sync run of one GitRepository: fetch, read, validate, plan, write, report.
//!
//! The order is what makes a run all or nothing: everything that can be wrong with a commit
//! (fetch, paths, sizes, every manifest, kinds, ownership, the empty-commit guard) is found
//! before the first write. Only then is the plan written (see [`crate::write`]) with the new
//! status. A run that finds nothing to change writes nothing at all.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::Utc;
use herd_crds::git_repository::{
    GitRepository, GitRepositorySpec, GitRepositoryStatus, InventoryEntry,
};
use herd_crds::manifest::AnyObject;
use herd_crds::manifest_set::{Loaded, parse_sources};
use herd_crds::{ClusterPolicy, Node, Resource, VirtualMachine, Volume};
use herd_store::txn::Precondition;
use herd_store::{Fence, Store, StoreError, Versioned};
use tracing::{info, warn};

use crate::error::SyncError;
use crate::fetch::{cache_path, fetch};
use crate::plan::{ObjectKey, PlanOptions, SyncPlan, key_of, plan_sync};
use crate::schedule::requested_at;
use crate::status::{Outcome, RunContext, next_status};
use crate::tree::{Limits, manifest_files};
use crate::write::{StatusTarget, write_plan};

/// What a sync needs besides the repository object.
#[derive(Clone)]
pub struct Syncer {
    pub store: Store,
    /// The leader's fence; every write checks it.
    pub fence: Option<Fence>,
    /// Where the bare caches of the repositories live.
    pub cache_dir: PathBuf,
    pub limits: Limits,
}

/// The commit read and validated, ready to plan.
pub struct Checkout {
    pub commit: String,
    pub documents: Vec<Loaded>,
}

/// A checkout that failed, with the commit it got to (when the fetch succeeded).
#[derive(Debug)]
pub struct CheckoutFailed {
    pub commit: Option<String>,
    pub error: SyncError,
}

impl CheckoutFailed {
    fn at(commit: Option<&str>) -> impl FnOnce(SyncError) -> Self {
        let commit = commit.map(str::to_owned);
        move |error| Self { commit, error }
    }
}

/// What a run did, for logs, the CLI and the benchmark.
#[derive(Debug)]
pub struct RunReport {
    pub commit: Option<String>,
    pub result: Result<SyncPlan, SyncError>,
    /// Transactions written (0 when nothing changed).
    pub transactions: usize,
}

impl Syncer {
    /// Fetches the commit `spec` names and reads and validates its manifests.
    pub async fn checkout(
        &self,
        name: &str,
        spec: &GitRepositorySpec,
    ) -> Result<Checkout, CheckoutFailed> {
        let cache = cache_path(&self.cache_dir, name);
        let (spec, limits) = (spec.clone(), self.limits);
        let (commit, files) = tokio::task::spawn_blocking(move || {
            let (repo, commit) = fetch(&cache, &spec).map_err(CheckoutFailed::at(None))?;
            let files = manifest_files(&repo, &commit, &spec.path, limits)
                .map_err(CheckoutFailed::at(Some(&commit)))?;
            Ok((commit, files))
        })
        .await
        .map_err(|e| SyncError::Fetch(format!("the fetch task failed: {e}")))
        .map_err(CheckoutFailed::at(None))??;
        let documents = parse_sources(files.into_iter().map(|f| (f.path, f.bytes)))
            .map_err(|errors| CheckoutFailed::at(Some(&commit))(SyncError::Invalid(errors)))?;
        Ok(Checkout { commit, documents })
    }

    /// Plans `checkout` against the store for `repo` without writing (for `herdctl gitops diff`).
    pub async fn plan(
        &self,
        repo: &GitRepository,
        checkout: Checkout,
        inventory: &[InventoryEntry],
    ) -> Result<SyncPlan, SyncError> {
        let current = self.current().await?;
        let options = PlanOptions {
            prune: repo.spec.prune,
            allow_empty: repo.spec.allow_empty,
            now: Utc::now(),
        };
        plan_sync(
            repo.name(),
            checkout.documents,
            inventory,
            &current,
            options,
            || uuid::Uuid::new_v4().to_string(),
        )
    }

    /// Runs one sync of `repo` and writes its status (when it changed).
    pub async fn run(&self, repo: &GitRepository) -> RunReport {
        let stored = match self
            .store
            .get_status::<GitRepositorySpec>(repo.name())
            .await
        {
            Ok(stored) => stored,
            Err(error) => {
                return RunReport {
                    commit: None,
                    result: Err(error.into()),
                    transactions: 0,
                };
            }
        };
        let previous = stored.as_ref().map(|s| s.value.clone()).unwrap_or_default();
        let precondition = stored
            .as_ref()
            .map_or(Precondition::Absent, |s: &Versioned<_>| {
                Precondition::Revision(s.revision)
            });
        let context = RunContext {
            generation: repo.metadata.generation,
            requested_at: requested_at(repo),
            now: Utc::now(),
        };
        let (commit, result) = match self.checkout(repo.name(), &repo.spec).await {
            Ok(checkout) => {
                let commit = checkout.commit.clone();
                (
                    Some(commit),
                    self.plan(repo, checkout, &previous.inventory).await,
                )
            }
            Err(CheckoutFailed { commit, error }) => (commit, Err(error)),
        };
        let target = StatusTarget {
            name: repo.name(),
            precondition,
        };
        let report = match result {
            Ok(plan) => match self
                .write(
                    &previous,
                    &context,
                    commit.as_deref().unwrap_or_default(),
                    &plan,
                    &target,
                )
                .await
            {
                Ok(transactions) => RunReport {
                    commit,
                    result: Ok(plan),
                    transactions,
                },
                Err(error) => {
                    self.report_failure(&previous, &context, commit, error.into(), &target)
                        .await
                }
            },
            Err(error) => {
                self.report_failure(&previous, &context, commit, error, &target)
                    .await
            }
        };
        log(repo.name(), &report);
        report
    }

    /// Writes a plan and its status; returns the number of transactions (0: nothing changed).
    async fn write(
        &self,
        previous: &GitRepositoryStatus,
        context: &RunContext,
        commit: &str,
        plan: &SyncPlan,
        target: &StatusTarget<'_>,
    ) -> Result<usize, StoreError> {
        let status = next_status(previous, context, &Outcome::Applied { commit, plan });
        if plan.is_empty() && status == *previous {
            return Ok(0);
        }
        let intent = intent_status(previous, plan);
        write_plan(
            &self.store,
            self.fence.as_ref(),
            plan,
            target,
            &intent,
            &status,
        )
        .await
    }

    /// Records a failed run in the status (when that changes it).
    async fn report_failure(
        &self,
        previous: &GitRepositoryStatus,
        context: &RunContext,
        commit: Option<String>,
        error: SyncError,
        target: &StatusTarget<'_>,
    ) -> RunReport {
        let status = next_status(
            previous,
            context,
            &Outcome::Failed {
                commit: commit.as_deref(),
                error: &error,
            },
        );
        let mut transactions = 0;
        if status != *previous {
            let mut txn = self.store.transaction();
            if let Some(fence) = &self.fence {
                txn = txn.fenced(fence);
            }
            let written = match txn.put_status::<GitRepositorySpec>(
                target.name,
                &status,
                target.precondition,
            ) {
                Ok(txn) => txn.commit().await.map(|_| 1),
                Err(error) => Err(error),
            };
            match written {
                Ok(n) => transactions = n,
                Err(write_error) => {
                    warn!(repository = target.name, error = %write_error, "cannot write the status")
                }
            }
        }
        RunReport {
            commit,
            result: Err(error),
            transactions,
        }
    }

    /// The stored objects of every synced kind.
    pub async fn current(&self) -> Result<BTreeMap<ObjectKey, AnyObject>, StoreError> {
        let mut current = BTreeMap::new();
        list_into::<ClusterPolicy>(&self.store, AnyObject::ClusterPolicy, &mut current).await?;
        list_into::<Node>(&self.store, AnyObject::Node, &mut current).await?;
        list_into::<Volume>(&self.store, AnyObject::Volume, &mut current).await?;
        list_into::<VirtualMachine>(&self.store, AnyObject::VirtualMachine, &mut current).await?;
        Ok(current)
    }
}

async fn list_into<R: Resource>(
    store: &Store,
    wrap: fn(R) -> AnyObject,
    into: &mut BTreeMap<ObjectKey, AnyObject>,
) -> Result<(), StoreError> {
    let (objects, _) = store.list::<R>().await?;
    into.extend(objects.into_iter().map(wrap).map(|o| (key_of(&o), o)));
    Ok(())
}

/// The status written before a plan too large for one transaction: the old inventory plus
/// everything the plan will own, so nothing created part-way is ever unowned.
fn intent_status(previous: &GitRepositoryStatus, plan: &SyncPlan) -> GitRepositoryStatus {
    let mut intent = previous.clone();
    intent.inventory.extend(plan.inventory.iter().cloned());
    intent.inventory.sort();
    intent.inventory.dedup();
    intent
}

fn log(name: &str, report: &RunReport) {
    let commit = report.commit.as_deref().unwrap_or("-");
    match &report.result {
        Ok(plan) if report.transactions > 0 => info!(
            repository = name,
            commit,
            writes = plan.writes.len(),
            transactions = report.transactions,
            "synced"
        ),
        Ok(_) => {}
        Err(error) => warn!(repository = name, commit, %error, "sync failed"),
    }
}
