//! Changing a GitRepository on a person's behalf: ask for a run now, suspend, resume.
//!
//! Each is a read-modify-write with compare-and-swap, retried on a conflict, so it never
//! overwrites a concurrent change. Used by `herdctl gitops` and the webhook.

use chrono::Utc;
use herd_crds::GitRepository;
use herd_crds::git_repository::REQUESTED_AT_ANNOTATION;
use herd_store::{Store, StoreError};

/// Applies `change` to the stored repository `name` (CAS, up to 5 tries on conflicts).
pub async fn modify(
    store: &Store,
    name: &str,
    change: impl Fn(&mut GitRepository),
) -> Result<GitRepository, StoreError> {
    let mut tries = 0;
    loop {
        let mut repo: GitRepository = store.get_existing(name).await?;
        change(&mut repo);
        match store.update(&repo).await {
            Err(error) if error.is_conflict() && tries < 4 => tries += 1,
            other => return other,
        }
    }
}

/// Asks for a sync now: sets the requested-at annotation to the current time.
pub async fn request_sync(store: &Store, name: &str) -> Result<String, StoreError> {
    let stamp = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    modify(store, name, |repo| {
        repo.metadata
            .annotations
            .insert(REQUESTED_AT_ANNOTATION.into(), stamp.clone());
    })
    .await?;
    Ok(stamp)
}

/// Sets `spec.suspend`.
pub async fn set_suspended(
    store: &Store,
    name: &str,
    suspend: bool,
) -> Result<GitRepository, StoreError> {
    modify(store, name, |repo| repo.spec.suspend = suspend).await
}
