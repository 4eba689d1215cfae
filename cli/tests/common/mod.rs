//! Shared by herdctl's integration tests: a real etcd with a prefix of its own, the real
//! `herdctl` binary pointed at it, and a store handle for preparing and checking state.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of this module"
)]

use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Output};

use herd_store::Store;
use herd_tests::{EtcdServer, unique_prefix};

/// A real etcd, a prefix, and a directory for manifests.
pub struct Cluster {
    pub etcd: EtcdServer,
    pub prefix: String,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    pub fn start() -> Self {
        Self {
            etcd: EtcdServer::start().expect("etcd starts"),
            prefix: unique_prefix(),
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    /// `herdctl --etcd … --prefix …`, isolated from the user's environment and context file.
    pub fn herdctl(&self) -> assert_cmd::Command {
        assert_cmd::Command::from_std(self.std_herdctl())
    }

    /// The same as a `std::process::Command`, for commands that run in the background.
    pub fn std_herdctl(&self) -> StdCommand {
        let mut command = StdCommand::new(env!("CARGO_BIN_EXE_herdctl"));
        command
            .arg("--etcd")
            .arg(self.etcd.endpoint())
            .arg("--prefix")
            .arg(&self.prefix)
            .env_remove("HERD_ETCD_ENDPOINTS")
            .env_remove("HERD_PREFIX")
            .env_remove("HERD_TEST_PAUSE_BEFORE_WRITE_MS")
            .env_remove("HERD_NOW")
            .env("HERD_CONTEXT", self.dir.path().join("no-context.yaml"))
            .env("NO_COLOR", "1");
        command
    }

    /// Runs herdctl with `args`; returns its output whatever the exit code.
    pub fn run(&self, args: &[&str]) -> Output {
        self.std_herdctl()
            .args(args)
            .output()
            .expect("herdctl runs")
    }

    /// Writes a manifest into the test's directory (creating subdirectories); returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(&path, text).expect("write manifest");
        path
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub async fn store(&self) -> Store {
        Store::connect(&self.etcd.endpoints(), &self.prefix)
            .await
            .expect("store connects")
    }
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A VM manifest.
pub fn vm_yaml(name: &str, memory_mib: u64, labels: &str) -> String {
    format!(
        "apiVersion: herd.dev/v1alpha1\nkind: VirtualMachine\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\nspec:\n  vcpus: 1\n  memoryMiB: {memory_mib}\n"
    )
}

/// A node manifest.
pub fn node_yaml(name: &str) -> String {
    format!("apiVersion: herd.dev/v1alpha1\nkind: Node\nmetadata:\n  name: {name}\nspec: {{}}\n")
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}
