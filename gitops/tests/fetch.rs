//! Fetching and reading real repositories made with `git`: local paths, `file://` URLs and
//! smart HTTP; branches, tags and pinned commits; force-pushes; hostile trees.

use anyhow::Result;
use herd_crds::git_repository::GitRepositorySpec;
use herd_gitops::SyncError;
use herd_gitops::fetch::fetch;
use herd_gitops::tree::{Limits, manifest_files};
use herd_tests::git::{GitHttpServer, GitRepo};

fn spec(url: &str, reference: &str) -> Result<GitRepositorySpec> {
    Ok(herd_crds::yaml::from_str(&format!(
        "url: {url}\npath: vms\nref: {reference}\n"
    ))?)
}

/// Fetches `spec` into `cache` and returns the commit and the paths of its manifests.
fn read(
    cache: &std::path::Path,
    spec: &GitRepositorySpec,
) -> Result<(String, Vec<String>), SyncError> {
    let (repo, commit) = fetch(cache, spec)?;
    let files = manifest_files(&repo, &commit, &spec.path, Limits::default())?;
    Ok((commit, files.into_iter().map(|f| f.path).collect()))
}

#[test]
fn local_paths_file_urls_tags_and_pinned_commits() -> Result<()> {
    let repo = GitRepo::new("fleet")?;
    repo.write("vms/a.yaml", "a")?;
    repo.write("README.md", "not a manifest")?;
    let first = repo.commit("a")?;
    repo.write("vms/deep/b.yml", "b")?;
    let second = repo.commit("b")?;
    let cache = tempfile::tempdir()?;
    let bare = repo.bare().to_str().unwrap().to_owned();

    let (commit, files) = read(&cache.path().join("path"), &spec(&bare, "{branch: main}")?)?;
    assert_eq!(
        (commit, files),
        (
            second.clone(),
            vec!["vms/a.yaml".into(), "vms/deep/b.yml".into()]
        )
    );

    let url = format!("file://{bare}");
    let (commit, files) = read(
        &cache.path().join("pinned"),
        &spec(&url, &format!("{{commit: {first}}}"))?,
    )?;
    assert_eq!(
        (commit, files),
        (first.clone(), vec!["vms/a.yaml".to_owned()])
    );

    std::process::Command::new("git")
        .args(["-C", &bare, "tag", "-a", "v1", "-m", "v1", &first])
        .status()?;
    let (commit, _) = read(&cache.path().join("tag"), &spec(&bare, "{tag: v1}")?)?;
    assert_eq!(commit, first, "an annotated tag is peeled to its commit");

    let missing = read(
        &cache.path().join("missing"),
        &spec(&bare, "{branch: nope}")?,
    )
    .unwrap_err();
    assert!(missing.to_string().contains("refs/heads/nope"), "{missing}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smart_http_follows_a_force_push() -> Result<()> {
    let repo = GitRepo::new("fleet")?;
    repo.write("vms/a.yaml", "a")?;
    let first = repo.commit("a")?;
    repo.write("vms/b.yaml", "b")?;
    repo.commit("b")?;
    let http = GitHttpServer::start(repo.root()).await?;
    let cache = tempfile::tempdir()?.keep().join("http");
    let spec = spec(&http.url("fleet"), "{branch: main}")?;
    let (cache2, spec2) = (cache.clone(), spec.clone());
    let (_, files) = tokio::task::spawn_blocking(move || read(&cache2, &spec2)).await??;
    assert_eq!(files.len(), 2);
    repo.reset_to(&first)?;
    repo.write("vms/c.yaml", "c")?;
    let rewritten = repo.commit("c instead of b")?;
    let (commit, files) = tokio::task::spawn_blocking(move || read(&cache, &spec)).await??;
    assert_eq!(commit, rewritten);
    assert_eq!(files, ["vms/a.yaml", "vms/c.yaml"]);
    Ok(())
}

#[test]
fn a_missing_path_and_an_oversized_file_are_refused() -> Result<()> {
    let repo = GitRepo::new("fleet")?;
    repo.write("vms/big.yaml", &"x".repeat(2048))?;
    repo.commit("big")?;
    let cache = tempfile::tempdir()?;
    let bare = repo.bare().to_str().unwrap().to_owned();
    let (git, commit) = fetch(cache.path(), &spec(&bare, "{branch: main}")?)?;
    let small = Limits {
        file_bytes: 1024,
        ..Limits::default()
    };
    let error = manifest_files(&git, &commit, "vms", small).unwrap_err();
    assert!(
        error.to_string().contains("vms/big.yaml is 2048 bytes"),
        "{error}"
    );
    let error = manifest_files(&git, &commit, "nope", Limits::default()).unwrap_err();
    assert!(matches!(error, SyncError::PathNotFound(_)), "{error}");
    Ok(())
}
