//! GitOps end to end: a real git repository made by the test (`git init`, commits, a force
//! push) served over real smart HTTP (`git http-backend` behind a loopback server), the real
//! controller process syncing it, hollow nodes running the VMs, real `herdctl`.

use std::time::Duration;

use anyhow::Result;
use herd_crds::condition::{ConditionStatus, find_condition};
use herd_crds::git_repository::{OWNER_ANNOTATION, SyncResult};
use herd_tests::gitops_lab::{GitOpsLab, path_text, vm_manifest};
use herd_tests::{eventually, http_post};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_add_change_and_prune_vms_and_a_bad_commit_changes_nothing() -> Result<()> {
    let lab = GitOpsLab::start().await?;
    lab.create_repository("fleet", 600).await?;

    // A commit adding a VM → it runs.
    lab.repo
        .write("vms/web-1.yaml", &vm_manifest("web-1", 256))?;
    let added = lab.repo.commit("add web-1")?;
    lab.push_hook("fleet").await?;
    let web1 = lab.running("web-1").await?;
    assert_eq!(
        web1.metadata
            .annotations
            .get(OWNER_ANNOTATION)
            .map(String::as_str),
        Some("fleet")
    );
    let status = lab.synced("fleet", &added).await?;
    assert_eq!(status.inventory.len(), 1);
    assert_eq!(
        find_condition(&status.conditions, "Ready").map(|c| c.status),
        Some(ConditionStatus::True)
    );

    // The same labels, created by herdctl apply: not the repository's.
    let by_hand = lab.dir.path().join("by-hand.yaml");
    std::fs::write(&by_hand, vm_manifest("by-hand", 128))?;
    let applied = lab.herdctl(&["apply", "-f", path_text(&by_hand)?])?;
    assert!(applied.status.success(), "{applied:?}");
    let by_hand_before = lab.running("by-hand").await?;

    // A commit changing it → updated.
    lab.repo
        .write("vms/web-1.yaml", &vm_manifest("web-1", 512))?;
    let changed = lab.repo.commit("grow web-1")?;
    lab.push_hook("fleet").await?;
    let status = lab.synced("fleet", &changed).await?;
    assert_eq!(
        (status.history[0].configured, status.history[0].created),
        (1, 0)
    );
    assert_eq!(
        lab.vm("web-1").await?.map(|vm| vm.spec.memory_mib),
        Some(512)
    );

    // A bad commit → nothing applied, the previous state kept, Stalled naming file and field.
    lab.repo
        .write("vms/web-2.yaml", &vm_manifest("web-2", 256))?;
    lab.repo.write(
        "vms/bad.yaml",
        &vm_manifest("bad", 256).replace("memoryMiB: 256", "memoryMiB: lots"),
    )?;
    let bad = lab.repo.commit("a typo")?;
    lab.push_hook("fleet").await?;
    let status = eventually(30, "Stalled", || async {
        let status = lab.status("fleet").await?;
        Ok((status.last_fetched_commit.as_deref() == Some(bad.as_str())).then_some(status))
    })
    .await?;
    let stalled = find_condition(&status.conditions, "Stalled").expect("a Stalled condition");
    assert_eq!(
        (stalled.status, stalled.reason.as_str()),
        (ConditionStatus::True, "ValidationFailed")
    );
    assert!(
        stalled.message.contains("vms/bad.yaml:") && stalled.message.contains("spec.memoryMiB"),
        "{}",
        stalled.message
    );
    assert_eq!(
        status.last_applied_commit.as_deref(),
        Some(changed.as_str())
    );
    assert_eq!(status.history[0].result, SyncResult::Invalid);
    assert!(
        lab.vm("web-2").await?.is_none(),
        "nothing of the bad commit is applied"
    );

    // A fix that also removes web-1 → web-2 runs, web-1 is pruned, by-hand is untouched.
    lab.repo.remove("vms/bad.yaml")?;
    lab.repo.remove("vms/web-1.yaml")?;
    let fixed = lab.repo.commit("fix, drop web-1")?;
    lab.push_hook("fleet").await?;
    lab.synced("fleet", &fixed).await?;
    lab.running("web-2").await?;
    lab.gone("web-1").await?;
    let by_hand_after = lab.vm("by-hand").await?.expect("by-hand is kept");
    assert_eq!(
        by_hand_after.metadata.resource_version,
        by_hand_before.metadata.resource_version
    );
    let status = lab.status("fleet").await?;
    // web-1 stays listed (it had a finalizer) until the run after it is gone; by-hand never is.
    assert!(
        status.inventory.iter().any(|e| e.name == "web-2"),
        "{:?}",
        status.inventory
    );
    assert!(
        status.inventory.iter().all(|e| e.name != "by-hand"),
        "{:?}",
        status.inventory
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_stops_everything_and_a_force_push_is_followed() -> Result<()> {
    let lab = GitOpsLab::start().await?;
    lab.repo
        .write("vms/web-1.yaml", &vm_manifest("web-1", 256))?;
    let first = lab.repo.commit("add web-1")?;
    lab.repo
        .write("vms/web-2.yaml", &vm_manifest("web-2", 256))?;
    lab.repo.commit("add web-2")?;
    lab.create_repository("fleet", 600).await?;
    lab.running("web-2").await?;

    // Suspended: a new commit and a webhook call change nothing.
    let suspended = lab.herdctl(&["gitops", "suspend", "fleet"])?;
    assert!(suspended.status.success(), "{suspended:?}");
    let before = lab.status("fleet").await?;
    lab.repo
        .write("vms/web-3.yaml", &vm_manifest("web-3", 256))?;
    lab.repo.commit("add web-3")?;
    lab.push_hook("fleet").await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        lab.vm("web-3").await?.is_none(),
        "suspended: nothing is applied"
    );
    assert_eq!(
        lab.status("fleet").await?,
        before,
        "suspended: not even the status changes"
    );

    // Resumed, but history rewritten first: main now holds web-1 and a new web-9 only.
    lab.repo.reset_to(&first)?;
    lab.repo
        .write("vms/web-9.yaml", &vm_manifest("web-9", 256))?;
    let rewritten = lab
        .repo
        .commit("rewrite: web-9 instead of web-2 and web-3")?;
    let resumed = lab.herdctl(&["gitops", "resume", "fleet"])?;
    assert!(resumed.status.success(), "{resumed:?}");
    let reconciled = lab.herdctl(&["gitops", "reconcile", "fleet"])?;
    assert!(reconciled.status.success(), "{reconciled:?}");
    lab.synced("fleet", &rewritten).await?;
    lab.running("web-9").await?;
    lab.gone("web-2").await?;
    assert!(lab.vm("web-3").await?.is_none());
    assert!(lab.vm("web-1").await?.is_some());

    // diff: nothing to change now (exit 0); after a commit, the change (exit 1).
    let same = lab.herdctl(&["gitops", "diff", "fleet"])?;
    assert_eq!(same.status.code(), Some(0), "{same:?}");
    lab.repo
        .write("vms/web-1.yaml", &vm_manifest("web-1", 1024))?;
    lab.repo.commit("grow web-1")?;
    let differs = lab.herdctl(&["gitops", "diff", "fleet"])?;
    assert_eq!(differs.status.code(), Some(1), "{differs:?}");
    assert!(
        String::from_utf8_lossy(&differs.stdout).contains("~ virtualmachine/web-1"),
        "{differs:?}"
    );
    let status = lab.herdctl(&["gitops", "status", "fleet"])?;
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("Ready True"),
        "{status:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_call_with_a_bad_signature_is_refused() -> Result<()> {
    let lab = GitOpsLab::start().await?;
    lab.create_repository("fleet", 600).await?;
    let body = b"{}";
    let forged = herd_gitops::webhook::sign(b"guessed", body);
    let (code, _) = http_post(
        &lab.listen,
        "/gitops/webhook/fleet",
        &[("X-Hub-Signature-256", &forged)],
        body,
    )
    .await?;
    assert_eq!(code, 401);
    let (code, _) = http_post(&lab.listen, "/gitops/webhook/fleet", &[], body).await?;
    assert_eq!(code, 401);
    Ok(())
}
