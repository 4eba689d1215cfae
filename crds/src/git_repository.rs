//! `GitRepository`: a git repository of manifests that herd keeps the cluster in step with.
//!
//! The spec says where the manifests are (URL, one of branch/tag/commit, a path inside the
//! repository) and how to sync them (interval, prune, suspend, allowEmpty). The status, written
//! only by the sync loop, says what was fetched and applied, which objects the repository owns
//! (its inventory — the only objects it may ever prune) and how the last runs went.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::object::{Object, Spec};
use crate::validation::{FieldErrors, FieldPath, Validate};

/// A GitRepository object.
pub type GitRepository = Object<GitRepositorySpec>;

/// The annotation that marks an object as created and owned by a GitRepository (its name).
/// Ownership also needs the object's uid in that repository's inventory, so a copied
/// annotation never makes an object prunable.
pub const OWNER_ANNOTATION: &str = "herd.dev/gitrepository";
/// Setting this annotation to a new value (any text; herdctl writes the time) asks for a sync
/// now, as Flux's `reconcile.fluxcd.io/requestedAt`.
pub const REQUESTED_AT_ANNOTATION: &str = "herd.dev/reconcile-requested-at";
/// Default seconds between two syncs.
pub const DEFAULT_INTERVAL_SECONDS: u64 = 600;
/// Shortest interval accepted.
pub const MIN_INTERVAL_SECONDS: u64 = 60;
/// Runs kept in `status.history`.
pub const HISTORY_LENGTH: usize = 5;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitRepositorySpec {
    /// Where the repository is: a local path, `file://…`, `http://…` or `https://…`.
    pub url: String,
    /// Which commit to sync: one of branch, tag or commit (default: branch `main`).
    #[serde(default, rename = "ref")]
    pub reference: GitReference,
    /// Directory inside the repository whose `*.yaml`/`*.yml` files (and subdirectories')
    /// are synced; empty means the whole repository.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Seconds between syncs (jittered by up to ±10%); at least 60.
    #[serde(default = "default_interval")]
    pub interval_seconds: u64,
    /// Delete the objects this repository created once they leave it.
    #[serde(default = "yes")]
    pub prune: bool,
    /// Stop syncing (nothing is fetched or written) until set back to false.
    #[serde(default)]
    pub suspend: bool,
    /// Allow a commit without any manifest to prune everything the repository owns.
    #[serde(default)]
    pub allow_empty: bool,
}

fn default_interval() -> u64 {
    DEFAULT_INTERVAL_SECONDS
}

fn yes() -> bool {
    true
}

/// Which commit of the repository to sync.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// A full 40-hex-digit commit id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// The one reference a `GitReference` names, once validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GitRef {
    Branch(String),
    Tag(String),
    Commit(String),
}

impl GitReference {
    /// The reference named (branch `main` when none is).
    pub fn resolve(&self) -> GitRef {
        match (&self.branch, &self.tag, &self.commit) {
            (_, _, Some(commit)) => GitRef::Commit(commit.clone()),
            (_, Some(tag), None) => GitRef::Tag(tag.clone()),
            (Some(branch), None, None) => GitRef::Branch(branch.clone()),
            (None, None, None) => GitRef::Branch("main".into()),
        }
    }
}

impl std::fmt::Display for GitRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Branch(name) => write!(f, "branch {name}"),
            Self::Tag(name) => write!(f, "tag {name}"),
            Self::Commit(id) => write!(f, "commit {id}"),
        }
    }
}

/// What the sync loop observed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitRepositoryStatus {
    /// `Ready`, `Reconciling` and `Stalled`, each with a reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation of the spec the last run worked from.
    #[serde(default)]
    pub observed_generation: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fetched_commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_commit: Option<String>,
    /// The value of the requested-at annotation the last run answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_requested_at: Option<String>,
    /// The objects this repository created and owns, with their uids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inventory: Vec<InventoryEntry>,
    /// The last runs, newest first (at most 5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<SyncRun>,
}

/// One object owned by a repository.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InventoryEntry {
    pub kind: String,
    pub name: String,
    pub uid: String,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SyncResult {
    /// Everything in the commit is applied.
    Succeeded,
    /// The commit holds an invalid manifest or a refused change: nothing was written.
    Invalid,
    /// The repository could not be fetched or read.
    FetchFailed,
    /// Writing to the store failed (a conflict, lost leadership): retried next run.
    WriteFailed,
}

/// One run of the sync loop.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncRun {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    pub time: DateTime<Utc>,
    pub result: SyncResult,
    #[serde(default)]
    pub created: usize,
    #[serde(default)]
    pub configured: usize,
    #[serde(default)]
    pub pruned: usize,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl Spec for GitRepositorySpec {
    const KIND: &'static str = "GitRepository";
    const PLURAL: &'static str = "gitrepositories";
    type Status = GitRepositoryStatus;
}

impl Validate for GitRepositorySpec {
    fn validate_into(&self, path: &FieldPath, errors: &mut FieldErrors) {
        check_url(&self.url, &path.child("url"), errors);
        check_reference(&self.reference, &path.child("ref"), errors);
        check_repo_path(&self.path, &path.child("path"), errors);
        errors.at_least(
            self.interval_seconds,
            MIN_INTERVAL_SECONDS,
            path.child("intervalSeconds"),
        );
    }
}

fn check_url(url: &str, path: &FieldPath, errors: &mut FieldErrors) {
    let allowed = ["/", "file://", "http://", "https://"];
    errors.check(
        allowed.iter().any(|start| url.starts_with(start)),
        path.clone(),
        "must be an absolute path, file://PATH, http://HOST/… or https://HOST/…",
    );
    errors.check(
        !url.chars().any(char::is_control) && !url.contains(' '),
        path.clone(),
        "must not contain spaces or control characters",
    );
}

fn check_reference(reference: &GitReference, path: &FieldPath, errors: &mut FieldErrors) {
    let named = [&reference.branch, &reference.tag, &reference.commit]
        .iter()
        .filter(|r| r.is_some())
        .count();
    errors.check(
        named <= 1,
        path.clone(),
        "names more than one of branch, tag and commit; keep one",
    );
    for (field, name) in [("branch", &reference.branch), ("tag", &reference.tag)] {
        if let Some(name) = name {
            errors.check(
                is_ref_name(name),
                path.child(field),
                "is not a valid git ref name (letters, digits, '/', '.', '_', '-'; no '..')",
            );
        }
    }
    if let Some(commit) = &reference.commit {
        errors.check(
            commit.len() == 40 && commit.chars().all(|c| c.is_ascii_hexdigit()),
            path.child("commit"),
            "must be a full commit id of 40 hex digits",
        );
    }
}

fn is_ref_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.contains("..")
        && !name.starts_with(['/', '-', '.'])
        && !name.ends_with(['/', '.'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
}

/// A path inside the repository: relative, `/`-separated, no `.` or `..` segment.
fn check_repo_path(repo_path: &str, path: &FieldPath, errors: &mut FieldErrors) {
    if repo_path.is_empty() {
        return;
    }
    let ok = !repo_path.starts_with('/')
        && repo_path
            .trim_end_matches('/')
            .split('/')
            .all(|segment| !segment.is_empty() && segment != "." && segment != "..");
    errors.check(
        ok,
        path.clone(),
        "must be a relative directory inside the repository such as clusters/prod (no '.', '..' or leading '/')",
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml;

    fn spec(url: &str) -> GitRepositorySpec {
        yaml::from_str(&format!("url: {url}")).unwrap()
    }

    #[test]
    fn defaults_follow_flux() {
        let spec = spec("https://git.example/fleet.git");
        assert_eq!(spec.interval_seconds, 600);
        assert!(spec.prune && !spec.suspend && !spec.allow_empty);
        assert_eq!(spec.reference.resolve(), GitRef::Branch("main".into()));
        assert!(spec.validate().is_empty());
    }

    #[test]
    fn bad_fields_are_named() {
        let mut bad = spec("ftp://x");
        bad.interval_seconds = 5;
        bad.path = "../etc".into();
        bad.reference.branch = Some("a..b".into());
        bad.reference.tag = Some("v1".into());
        let paths: Vec<String> = bad.validate().into_iter().map(|e| e.path).collect();
        for field in ["url", "ref", "ref.branch", "path", "intervalSeconds"] {
            assert!(paths.iter().any(|p| p == field), "{field} in {paths:?}");
        }
    }

    #[test]
    fn a_commit_must_be_a_full_id() {
        let mut pinned = spec("/srv/fleet.git");
        pinned.reference.commit = Some("abc".into());
        assert_eq!(pinned.validate()[0].path, "ref.commit");
        pinned.reference.commit = Some("a".repeat(40));
        assert!(pinned.validate().is_empty());
    }
}
