//! Shared by the lab tests (`lab.rs`, `lab_netns.rs`): the real `herdctl` pointed at a lab
//! directory and context file of the test's own, and the processes left running.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of this module"
)]

use std::path::Path;
use std::process::{Command, Output};

/// `herdctl` with the lab directory (`<root>/lab`) and context file of this test only.
pub fn command(root: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herdctl"));
    command
        .env("HERD_LAB", root.join("lab"))
        .env("HERD_CONTEXT", root.join("context.yaml"))
        .env_remove("HERD_ETCD_ENDPOINTS")
        .env_remove("HERD_PREFIX");
    command
}

/// Runs `herdctl args…` against the test's lab.
pub fn herdctl(root: &Path, args: &[&str]) -> Output {
    command(root).args(args).output().expect("herdctl runs")
}

/// Runs `herdctl args…` from `dir`, as a reader of the README runs it from the repository.
pub fn herdctl_in(root: &Path, dir: &Path, args: &[&str]) -> Output {
    command(root)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("herdctl runs")
}

/// Standard output then standard error.
pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Live processes (zombies count as gone: this container's init does not reap) other than
/// this test, with their command lines, whose command line contains every one of `needles`.
pub fn processes_with(needles: &[&str]) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'));
        let cmdline = String::from_utf8_lossy(
            &std::fs::read(entry.path().join("cmdline")).unwrap_or_default(),
        )
        .replace('\0', " ");
        if !zombie
            && pid != std::process::id()
            && !cmdline.is_empty()
            && needles.iter().all(|needle| cmdline.contains(needle))
        {
            found.push((pid, cmdline));
        }
    }
    found
}

/// Stops the lab even when the test fails.
pub struct Down<'a>(pub &'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        herdctl(self.0, &["down"]);
    }
}
