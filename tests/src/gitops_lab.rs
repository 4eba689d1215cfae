//! A GitOps lab for tests and benchmarks: etcd, two hollow nodes, a real git repository
//! served over smart HTTP, and the real controller with the GitOps loop and its webhook on.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use herd_crds::git_repository::{GitRepository, GitRepositorySpec, GitRepositoryStatus};
use herd_crds::virtual_machine::VmState;
use herd_crds::{Object, VirtualMachine, VirtualMachineSpec};
use herd_store::Store;
use tokio::task::JoinSet;

use crate::git::{GitHttpServer, GitRepo};
use crate::hollow::{HollowNode, start_leased_fleet};
use crate::{
    ControllerProcess, EtcdServer, binary, eventually, free_listen, http_post, unique_prefix,
};

/// The webhook secret the lab's controller checks.
pub const SECRET: &str = "test-webhook-secret";

/// Everything one GitOps test runs.
pub struct GitOpsLab {
    pub etcd: EtcdServer,
    pub prefix: String,
    pub store: Store,
    /// Repository `fleet`, one commit with a README to start with.
    pub repo: GitRepo,
    pub http: GitHttpServer,
    /// The controller's HTTP address (webhook, metrics).
    pub listen: String,
    pub dir: tempfile::TempDir,
    _controller: ControllerProcess,
    _fleet: JoinSet<()>,
}

/// A VM manifest with label `app: web`.
pub fn vm_manifest(name: &str, memory: u64) -> String {
    format!(
        "apiVersion: herd.dev/v1alpha1\nkind: VirtualMachine\nmetadata:\n  name: {name}\n  labels:\n    app: web\nspec:\n  vcpus: 1\n  memoryMiB: {memory}\n"
    )
}

/// A path as the text a command line takes.
pub fn path_text(path: &Path) -> Result<&str> {
    path.to_str().context("paths are UTF-8")
}

impl GitOpsLab {
    /// Starts etcd, the fleet, the repository and its HTTP server, then the controller.
    pub async fn start() -> Result<Self> {
        let etcd = EtcdServer::start()?;
        let prefix = unique_prefix();
        let store = Store::connect(&etcd.endpoints(), &prefix).await?;
        let mut fleet = JoinSet::new();
        let lease = store.grant_lease(Duration::from_secs(6)).await?;
        let nodes = vec![
            HollowNode::new("ferby", 64, 262_144),
            HollowNode::new("gerby", 64, 262_144),
        ];
        start_leased_fleet(&store, nodes, Duration::from_millis(300), lease, &mut fleet);
        let repo = GitRepo::new("fleet")?;
        repo.write("README.md", "herd fleet\n")?;
        repo.commit("start")?;
        let http = GitHttpServer::start(repo.root()).await?;
        let dir = tempfile::tempdir()?;
        let secret = dir.path().join("secret");
        std::fs::write(&secret, SECRET)?;
        let cache = dir.path().join("cache");
        let listen = free_listen();
        let flags = [
            "--gitops-cache",
            path_text(&cache)?,
            "--gitops-webhook-secret-file",
            path_text(&secret)?,
        ];
        let controller = ControllerProcess::start_with(&etcd, &prefix, "c1", &listen, &flags)?;
        eventually(10, "the controller's HTTP server", || async {
            Ok(tokio::net::TcpStream::connect(&listen)
                .await
                .ok()
                .map(|_| ()))
        })
        .await?;
        Ok(Self {
            etcd,
            prefix,
            store,
            repo,
            http,
            listen,
            dir,
            _controller: controller,
            _fleet: fleet,
        })
    }

    /// Creates GitRepository `name` for the HTTP URL of repository `fleet`, path `vms`.
    pub async fn create_repository(&self, name: &str, interval_seconds: u64) -> Result<()> {
        let text = format!(
            "url: {}\npath: vms\nintervalSeconds: {interval_seconds}\n",
            self.http.url("fleet")
        );
        let spec: GitRepositorySpec = herd_crds::yaml::from_str(&text)?;
        self.store
            .create::<GitRepository>(&Object::new(name, spec))
            .await?;
        Ok(())
    }

    /// Calls the webhook of repository `name` as a git host would after a push.
    pub async fn push_hook(&self, name: &str) -> Result<()> {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let signature = herd_gitops::webhook::sign(SECRET.as_bytes(), body);
        let path = format!("/gitops/webhook/{name}");
        let (code, text) = http_post(
            &self.listen,
            &path,
            &[("X-Hub-Signature-256", &signature)],
            body,
        )
        .await?;
        if code != 202 {
            bail!("webhook answered {code}: {text}");
        }
        Ok(())
    }

    /// The status of repository `name` (empty before its first run).
    pub async fn status(&self, name: &str) -> Result<GitRepositoryStatus> {
        let stored = self.store.get_status::<GitRepositorySpec>(name).await?;
        Ok(stored.map(|s| s.value).unwrap_or_default())
    }

    /// Waits until repository `name` has applied `commit`.
    pub async fn synced(&self, name: &str, commit: &str) -> Result<GitRepositoryStatus> {
        eventually(90, &format!("commit {commit} applied"), || async {
            let status = self.status(name).await?;
            Ok((status.last_applied_commit.as_deref() == Some(commit)).then_some(status))
        })
        .await
    }

    /// VM `name` with its status.
    pub async fn vm(&self, name: &str) -> Result<Option<VirtualMachine>> {
        Ok(self
            .store
            .get_with_status::<VirtualMachineSpec>(name)
            .await?)
    }

    /// Waits until VM `name` runs.
    pub async fn running(&self, name: &str) -> Result<VirtualMachine> {
        eventually(90, &format!("{name} Running"), || async {
            let vm = self.vm(name).await?;
            Ok(vm.filter(|vm| {
                vm.status
                    .as_ref()
                    .is_some_and(|s| s.state == VmState::Running)
            }))
        })
        .await
    }

    /// Waits until VM `name` is deleted.
    pub async fn gone(&self, name: &str) -> Result<()> {
        eventually(30, &format!("{name} deleted"), || async {
            Ok(self.vm(name).await?.is_none().then_some(()))
        })
        .await
    }

    /// Runs `herdctl ARGS` against the lab.
    pub fn herdctl(&self, args: &[&str]) -> Result<Output> {
        Ok(Command::new(binary("herdctl")?)
            .args(["--etcd", &self.etcd.endpoint(), "--prefix", &self.prefix])
            .args(args)
            .output()?)
    }
}
