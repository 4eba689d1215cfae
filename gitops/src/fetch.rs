//! Fetching a repository with gitoxide into a bare cache, and resolving the synced commit.
//!
//! Each GitRepository has its own bare repository under the cache directory; a fetch brings
//! only the refs the spec names, with force refspecs (`+`), so a force-pushed branch or a moved
//! tag is followed like any other change. No work tree is ever written: the commit's tree is
//! read from the object database (see [`crate::tree`]). Everything here blocks; the sync loop
//! calls it on a blocking thread.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use herd_crds::git_repository::{GitRef, GitRepositorySpec};

use crate::error::SyncError;

/// Where a repository's bare cache lives: `<cache>/<name>`, started again when the URL changes.
pub fn cache_path(cache_dir: &Path, name: &str) -> PathBuf {
    cache_dir.join(format!("{name}.git"))
}

/// Fetches the reference of `spec` into the bare repository at `cache` and returns it with the
/// commit id (40 hex digits) it resolves to.
pub fn fetch(
    cache: &Path,
    spec: &GitRepositorySpec,
) -> Result<(gix::Repository, String), SyncError> {
    install_tls_provider();
    let repo = open_cache(cache, &spec.url)?;
    let reference = spec.reference.resolve();
    let remote = repo
        .remote_at(spec.url.as_str())
        .and_then(|remote| {
            remote.with_refspecs(
                refspecs(&reference).iter().map(String::as_str),
                gix::remote::Direction::Fetch,
            )
        })
        .map_err(fetch_error)?
        .with_fetch_tags(gix::remote::fetch::Tags::None);
    remote
        .connect(gix::remote::Direction::Fetch)
        .and_then(|connection| connection.prepare_fetch(gix::progress::Discard, Default::default()))
        .and_then(|prepared| prepared.receive(gix::progress::Discard, &AtomicBool::new(false)))
        .map_err(fetch_error)?;
    let commit = resolve(&repo, &reference)?;
    Ok((repo, commit))
}

/// Opens the cache, or starts it anew when it is missing, unreadable or was made for another
/// URL (the URL is kept in a file beside the objects).
fn open_cache(cache: &Path, url: &str) -> Result<gix::Repository, SyncError> {
    let marker = cache.join("herd-url");
    let same_url = std::fs::read_to_string(&marker).is_ok_and(|stored| stored == url);
    if same_url && let Ok(repo) = gix::open(cache) {
        return Ok(repo);
    }
    if cache.exists() {
        std::fs::remove_dir_all(cache).map_err(|e| cache_error(cache, &e))?;
    }
    std::fs::create_dir_all(cache).map_err(|e| cache_error(cache, &e))?;
    let repo = gix::init_bare(cache).map_err(|e| SyncError::Cache {
        path: cache.display().to_string(),
        message: e.to_string(),
    })?;
    std::fs::write(&marker, url).map_err(|e| cache_error(cache, &e))?;
    Ok(repo)
}

/// The refspecs that bring `reference` (and nothing else a commit pin does not need).
fn refspecs(reference: &GitRef) -> Vec<String> {
    match reference {
        GitRef::Branch(branch) => {
            vec![format!("+refs/heads/{branch}:refs/remotes/origin/{branch}")]
        }
        GitRef::Tag(tag) => vec![format!("+refs/tags/{tag}:refs/tags/{tag}")],
        GitRef::Commit(_) => vec![
            "+refs/heads/*:refs/remotes/origin/*".into(),
            "+refs/tags/*:refs/tags/*".into(),
        ],
    }
}

/// The commit `reference` names in the fetched cache.
fn resolve(repo: &gix::Repository, reference: &GitRef) -> Result<String, SyncError> {
    let not_found = || SyncError::RefNotFound(reference.to_string());
    let id = match reference {
        GitRef::Branch(branch) => peel(repo, &format!("refs/remotes/origin/{branch}")),
        GitRef::Tag(tag) => peel(repo, &format!("refs/tags/{tag}")),
        GitRef::Commit(id) => gix::ObjectId::from_hex(id.as_bytes())
            .ok()
            .filter(|id| repo.find_commit(*id).is_ok()),
    };
    id.map(|id| id.to_string()).ok_or_else(not_found)
}

/// The commit a reference points to, through annotated tags.
fn peel(repo: &gix::Repository, name: &str) -> Option<gix::ObjectId> {
    let mut reference = repo.try_find_reference(name).ok()??;
    let id = reference.peel_to_id().ok()?.detach();
    let commit = repo.find_object(id).ok()?.peel_to_commit().ok()?;
    Some(commit.id)
}

fn fetch_error(error: impl std::fmt::Display) -> SyncError {
    SyncError::Fetch(error.to_string())
}

fn cache_error(cache: &Path, error: &std::io::Error) -> SyncError {
    SyncError::Cache {
        path: cache.display().to_string(),
        message: error.to_string(),
    }
}

/// reqwest is built without a TLS crypto provider of its own (see docs/decisions.md); rustls'
/// ring provider is installed once, before the first https fetch.
fn install_tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
