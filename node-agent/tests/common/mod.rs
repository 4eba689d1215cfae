//! What the end-to-end tests of the agent share: real processes (controller, agents), polling
//! with a deadline, QEMU process checks, `qemu-nbd` exports and a minimal QMP client for the
//! operators' `monitor.sock`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};
use herd_crds::virtual_machine::VmState;
use herd_crds::{NodeStatus, VirtualMachineSpec, VirtualMachineStatus};
use herd_store::Store;
use herd_store::codec::decode_value;
use herd_tests::{EtcdServer, binary};
#[allow(
    unused_imports,
    reason = "each test binary uses a different part of this module"
)]
pub use herd_tests::{eventually, serve_nbd};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// A child process killed with SIGKILL when dropped.
pub struct Process(pub Child);

impl Process {
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

fn log_level() -> String {
    std::env::var("HERD_TEST_LOG").unwrap_or_else(|_| "warn".into())
}

pub fn start_agent(etcd: &EtcdServer, prefix: &str, node: &str, state: &Path) -> Result<Process> {
    let child = Command::new(env!("CARGO_BIN_EXE_herd-agent"))
        .args([
            "--node",
            node,
            "--etcd",
            &etcd.endpoint(),
            "--prefix",
            prefix,
            "--driver",
            "qemu",
        ])
        .args(["--lease-ttl", "4", "--shutdown-timeout", "3"])
        .arg("--state-dir")
        .arg(state)
        .env("RUST_LOG", log_level())
        .stdin(Stdio::null())
        .spawn()?;
    Ok(Process(child))
}

pub fn start_controller(etcd: &EtcdServer, prefix: &str) -> Result<Process> {
    let child = Command::new(binary("herd-controller")?)
        .args([
            "--etcd",
            &etcd.endpoint(),
            "--prefix",
            prefix,
            "--lease-ttl",
            "3",
            "--listen",
            "",
        ])
        .env("RUST_LOG", log_level())
        .stdin(Stdio::null())
        .spawn()?;
    Ok(Process(child))
}

/// Kills every process whose command line mentions `dir` (QEMU, qemu-nbd), even on failure.
pub struct Reaper(pub PathBuf);

impl Drop for Reaper {
    fn drop(&mut self) {
        let needle = self.0.display().to_string();
        for pid in pids_mentioning(&needle, "") {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

/// Live processes whose command line contains both `needle` and `program`.
pub fn pids_mentioning(needle: &str, program: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.contains(program) && cmdline.contains(needle) && is_alive(pid) {
            pids.push(pid);
        }
    }
    pids
}

/// QEMU processes of `vm` under state dir `state`.
pub fn qemu_of(state: &Path, vm: &str) -> Vec<u32> {
    pids_mentioning(&format!("{}/{vm}/", state.display()), "qemu-system")
}

/// Alive and not a zombie (this container's init does not reap orphans).
pub fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(") ")
                .map(|(_, rest)| !rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

pub async fn status_in(
    store: &Store,
    vm: &str,
    state: VmState,
    seconds: u64,
) -> Result<VirtualMachineStatus> {
    eventually(seconds, &format!("{vm} {state:?}"), || async {
        let status = store.get_status::<VirtualMachineSpec>(vm).await?;
        Ok(status.map(|s| s.value).filter(|s| s.state == state))
    })
    .await
}

pub async fn heartbeat(store: &Store, node: &str) -> Result<Option<NodeStatus>> {
    let key = store.keys().heartbeat(node)?;
    let (entries, _) = store.list_raw(&key, None).await?;
    Ok(entries
        .into_iter()
        .find(|(k, _, _)| *k == key)
        .map(|(k, v, _)| decode_value::<NodeStatus>(&k, &v))
        .transpose()?)
}

pub async fn wait_heartbeats(store: &Store, nodes: &[&str]) -> Result<()> {
    for node in nodes {
        eventually(60, &format!("{node} heartbeat"), || async {
            heartbeat(store, node).await
        })
        .await?;
    }
    Ok(())
}

pub fn pid_of(status: &VirtualMachineStatus) -> Result<u32> {
    status
        .domain_id
        .as_deref()
        .context("no domain id")?
        .parse()
        .context("domain id is a pid")
}

/// Reads the 32-bit word at guest physical `address` through the operators' QMP socket
/// (`monitor.sock` in the VM's run directory).
pub async fn read_guest_u32(state: &Path, vm: &str, address: u64) -> Result<u32> {
    let socket = state.join(vm).join("monitor.sock");
    let stream = tokio::net::UnixStream::connect(&socket)
        .await
        .with_context(|| format!("connect {}", socket.display()))?;
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    lines.next_line().await?; // the greeting
    write
        .write_all(b"{\"execute\":\"qmp_capabilities\"}\n")
        .await?;
    next_return(&mut lines).await?;
    let command = format!(
        "{{\"execute\":\"human-monitor-command\",\"arguments\":{{\"command-line\":\"xp /1wx {address:#x}\"}}}}\n"
    );
    write.write_all(command.as_bytes()).await?;
    let text = next_return(&mut lines).await?;
    // "0000000000000500: 0x0000abcd\r\n"
    let hex = text
        .rsplit("0x")
        .next()
        .context("no value in the xp output")?
        .trim();
    u32::from_str_radix(hex, 16).with_context(|| format!("xp output {text:?}"))
}

async fn next_return(
    lines: &mut tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
) -> Result<String> {
    loop {
        let line = lines.next_line().await?.context("QMP closed")?;
        let value: serde_json::Value = serde_json::from_str(&line)?;
        if let Some(result) = value.get("return") {
            return Ok(result.as_str().unwrap_or_default().to_owned());
        }
        if let Some(error) = value.get("error") {
            bail!("QMP error: {error}");
        }
    }
}
