//! GitOps benchmark: how fast a pushed commit becomes a running VM, and what a sync of a big
//! repository costs when nothing changed.
//!
//! Build with `cargo build --release -p herd-controller -p herdctl -p herd-bench` (the
//! controller is found next to this binary). Two parts, both on a real etcd on free loopback
//! ports with a real git repository served over smart HTTP (`git http-backend`):
//! 1. sync cost: a repository of N VM manifests (one file each) synced by the library's
//!    `Syncer` in this process, with no controller or node writing meanwhile, so the etcd
//!    revision counts exactly the sync's own writes: the first sync, several syncs of the same
//!    commit (target: 0 writes), and a commit that changes one VM;
//! 2. latency: the real controller and two hollow nodes; each sample commits one new VM,
//!    pushes, and measures until the VM's status says Running — woken by the webhook, and by
//!    polling alone (interval 60 s, the minimum: expect about half of it on average).

use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Parser;
use herd_crds::GitRepository;
use herd_crds::virtual_machine::VmState;
use herd_gitops::tree::Limits;
use herd_gitops::{RunReport, Syncer};
use herd_store::Store;
use herd_tests::git::{GitHttpServer, GitRepo};
use herd_tests::gitops_lab::{GitOpsLab, vm_manifest};
use herd_tests::stats::quantile_ms;
use herd_tests::{EtcdServer, unique_prefix};

#[derive(Parser)]
struct Flags {
    /// VM manifests in the big repository.
    #[arg(long, default_value_t = 5_000)]
    vms: usize,
    /// Syncs of the unchanged big repository.
    #[arg(long, default_value_t = 5)]
    idle_syncs: usize,
    /// Commit-to-Running samples woken by the webhook.
    #[arg(long, default_value_t = 30)]
    webhook_samples: usize,
    /// Commit-to-Running samples found by polling (each takes up to 66 s).
    #[arg(long, default_value_t = 5)]
    poll_samples: usize,
}

#[tokio::main]
async fn main() -> Result<()> {
    let flags = Flags::parse();
    sync_cost(&flags).await?;
    latency(&flags).await
}

/// Part 1: the cost of syncing a repository of `flags.vms` VMs.
async fn sync_cost(flags: &Flags) -> Result<()> {
    let etcd = EtcdServer::start()?;
    let store = Store::connect(&etcd.endpoints(), &unique_prefix()).await?;
    let repo = GitRepo::new("big")?;
    for i in 0..flags.vms {
        repo.write(
            &format!("vms/vm-{i:05}.yaml"),
            &vm_manifest(&format!("vm-{i:05}"), 256),
        )?;
    }
    repo.commit("5000 VMs")?;
    let http = GitHttpServer::start(repo.root()).await?;
    let spec = herd_crds::yaml::from_str(&format!("url: {}\npath: vms\n", http.url("big")))?;
    let object = store
        .create::<GitRepository>(&herd_crds::Object::new("big", spec))
        .await?;
    let cache = tempfile::tempdir()?;
    let syncer = Syncer {
        store: store.clone(),
        fence: None,
        cache_dir: cache.path().to_path_buf(),
        limits: Limits::default(),
    };
    let (first, _) = measured(&syncer, &store, &object, "first sync").await?;
    let mut idle = Vec::new();
    for _ in 0..flags.idle_syncs {
        let (time, writes) = measured(&syncer, &store, &object, "idle sync").await?;
        anyhow::ensure!(writes == 0, "an idle sync wrote {writes} revisions");
        idle.push(time);
    }
    println!(
        "sync of {} unchanged VMs: median {:.0} ms, max {:.0} ms, 0 etcd writes ({} runs); first sync {:.0} ms",
        flags.vms,
        quantile_ms(&mut idle, 0.5),
        quantile_ms(&mut idle, 1.0),
        idle.len(),
        first.as_secs_f64() * 1000.0
    );
    repo.write("vms/vm-00000.yaml", &vm_manifest("vm-00000", 512))?;
    repo.commit("grow vm-00000")?;
    measured(&syncer, &store, &object, "one VM changed").await?;
    Ok(())
}

/// Runs one sync; prints and returns its time and the etcd revisions it wrote.
async fn measured(
    syncer: &Syncer,
    store: &Store,
    repo: &GitRepository,
    what: &str,
) -> Result<(Duration, i64)> {
    let before = store.current_revision().await?;
    let started = Instant::now();
    let report: RunReport = syncer.run(repo).await;
    let time = started.elapsed();
    let writes = store.current_revision().await? - before;
    let plan = report.result.map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
    println!(
        "{what}: {:.0} ms, {} object writes in {} transactions, {writes} etcd revisions",
        time.as_secs_f64() * 1000.0,
        plan.writes.len(),
        report.transactions
    );
    Ok((time, writes))
}

/// Part 2: commit pushed → VM Running, with the webhook and by polling.
async fn latency(flags: &Flags) -> Result<()> {
    let lab = GitOpsLab::start().await?;
    lab.create_repository("fleet", 60).await?;
    lab.repo.write("vms/README.md", "one VM a file\n")?;
    let first = lab.repo.commit("empty")?;
    lab.synced("fleet", &first).await?;
    let mut hooked = Vec::new();
    for i in 0..flags.webhook_samples {
        hooked.push(sample(&lab, &format!("hook-{i}"), true).await?);
    }
    report("webhook", &mut hooked);
    let mut polled = Vec::new();
    for i in 0..flags.poll_samples {
        polled.push(sample(&lab, &format!("poll-{i}"), false).await?);
    }
    report("polling (interval 60 s)", &mut polled);
    Ok(())
}

/// Commits VM `name`, optionally calls the webhook, and times until the VM runs.
async fn sample(lab: &GitOpsLab, name: &str, hook: bool) -> Result<Duration> {
    lab.repo
        .write(&format!("vms/{name}.yaml"), &vm_manifest(name, 64))?;
    let started = Instant::now();
    lab.repo.commit(name)?;
    if hook {
        lab.push_hook("fleet").await?;
    }
    let deadline = started + Duration::from_secs(90);
    while Instant::now() < deadline {
        let vm = lab.vm(name).await?;
        if vm
            .and_then(|vm| vm.status)
            .is_some_and(|s| s.state == VmState::Running)
        {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    anyhow::bail!("{name} did not run within 90 s")
}

fn report(what: &str, samples: &mut [Duration]) {
    println!(
        "commit pushed -> VM Running, {what}: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} samples)",
        quantile_ms(samples, 0.5),
        quantile_ms(samples, 0.99),
        quantile_ms(samples, 1.0),
        samples.len()
    );
}
