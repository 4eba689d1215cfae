//! End to end with real processes: etcd, the controller, and two agents driving real QEMU.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use herd_agent::test_guests::TestGuest;
use herd_crds::event::Event;
use herd_crds::node::NodeSpec;
use herd_crds::virtual_machine::VmState;
use herd_crds::{NodeStatus, RunState, VirtualMachine, VirtualMachineSpec, VirtualMachineStatus};
use herd_store::codec::decode_value;
use herd_store::txn::Precondition;
use herd_store::{Store, Versioned};
use herd_tests::{EtcdServer, binary, unique_prefix};

/// A child process killed with SIGKILL when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn log_level() -> String {
    std::env::var("HERD_TEST_LOG").unwrap_or_else(|_| "warn".into())
}

fn start_agent(etcd: &EtcdServer, prefix: &str, node: &str, state: &Path) -> Result<Process> {
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

fn start_controller(etcd: &EtcdServer, prefix: &str) -> Result<Process> {
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

/// Kills every QEMU whose command line mentions `dir` (the test's state), even on failure.
struct QemuReaper(std::path::PathBuf);

impl Drop for QemuReaper {
    fn drop(&mut self) {
        let needle = self.0.display().to_string();
        for pid in qemu_pids_under(&needle) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

fn qemu_pids_under(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.contains("qemu-system") && cmdline.contains(needle) && is_alive(pid) {
            pids.push(pid);
        }
    }
    pids
}

/// Alive and not a zombie (this container's init does not reap orphans).
fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(") ")
                .map(|(_, rest)| !rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

fn vm(name: &str, node: &str, image: &Path) -> Result<VirtualMachine> {
    let text = format!(
        "apiVersion: herd.dev/v1alpha1\nkind: VirtualMachine\nmetadata: {{name: {name}}}\nspec:\n  memoryMiB: 32\n  nodeName: {node}\n  \
         boot: {{disk: root}}\n  disks:\n  - {{name: root, path: {}}}\n",
        image.display()
    );
    Ok(herd_crds::yaml::from_str(&text)?)
}

async fn eventually<T, F, Fut>(seconds: u64, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out after {seconds} s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn status_in(
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

async fn heartbeat(store: &Store, node: &str) -> Result<Option<NodeStatus>> {
    let key = store.keys().heartbeat(node)?;
    let (entries, _) = store.list_raw(&key, None).await?;
    Ok(entries
        .into_iter()
        .find(|(k, _, _)| *k == key)
        .map(|(k, v, _)| decode_value::<NodeStatus>(&k, &v))
        .transpose()?)
}

async fn set_run_state(store: &Store, name: &str, state: RunState) -> Result<()> {
    let mut vm: VirtualMachine = store.get_existing(name).await?;
    vm.spec.run_state = state;
    store.update(&vm).await?;
    Ok(())
}

fn pid_of(status: &VirtualMachineStatus) -> Result<u32> {
    status
        .domain_id
        .as_deref()
        .context("no domain id")?
        .parse()
        .context("domain id is a pid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vms_run_pause_survive_an_agent_crash_and_go_away_on_delete() -> Result<()> {
    let etcd = EtcdServer::start()?;
    let prefix = unique_prefix();
    let store = Store::connect(&etcd.endpoints(), &prefix).await?;
    let work = tempfile::tempdir()?;
    let _reaper = QemuReaper(work.path().to_owned());
    let spin = TestGuest::Spin.write_image(work.path())?;
    let idle = TestGuest::Idle.write_image(work.path())?;
    let (ferby_state, gerby_state) = (work.path().join("ferby"), work.path().join("gerby"));

    let _controller = start_controller(&etcd, &prefix)?;
    let mut ferby = start_agent(&etcd, &prefix, "ferby", &ferby_state)?;
    let _gerby = start_agent(&etcd, &prefix, "gerby", &gerby_state)?;
    for node in ["ferby", "gerby"] {
        eventually(60, &format!("{node} heartbeat"), || async {
            heartbeat(&store, node).await
        })
        .await?;
    }
    store.create(&vm("spin-1", "ferby", &spin)?).await?;
    store.create(&vm("idle-1", "ferby", &idle)?).await?;

    let spinning = status_in(&store, "spin-1", VmState::Running, 90).await?;
    let idling = status_in(&store, "idle-1", VmState::Running, 90).await?;
    let (spin_pid, idle_pid) = (pid_of(&spinning)?, pid_of(&idling)?);
    assert!(
        is_alive(spin_pid) && is_alive(idle_pid),
        "the QEMU processes run"
    );
    assert_eq!(qemu_pids_under(&ferby_state.display().to_string()).len(), 2);
    assert!(
        qemu_pids_under(&gerby_state.display().to_string()).is_empty(),
        "pinned to ferby"
    );

    // The heartbeat shows the spinning guest busy and the idle one not, once the BIOS (busy in
    // both) has handed over to the boot sector.
    eventually(90, "spin busy and idle idle in the heartbeat", || async {
        let Some(beat) = heartbeat(&store, "ferby").await? else {
            return Ok(None);
        };
        let cpu = |name: &str| {
            beat.domains
                .iter()
                .find(|d| d.name == name)
                .map(|d| d.cpu_percent)
        };
        Ok(match (cpu("spin-1"), cpu("idle-1")) {
            (Some(spin), Some(idle)) if spin > 60.0 && idle < 20.0 => Some(()),
            _ => None,
        })
    })
    .await?;

    // Pause and unpause through the spec.
    set_run_state(&store, "spin-1", RunState::Paused).await?;
    status_in(&store, "spin-1", VmState::Paused, 30).await?;
    set_run_state(&store, "spin-1", RunState::Running).await?;
    status_in(&store, "spin-1", VmState::Running, 30).await?;

    // Kill the agent; a new one adopts the same QEMU processes.
    let _ = ferby.0.kill();
    let _ = ferby.0.wait();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        is_alive(spin_pid) && is_alive(idle_pid),
        "guests outlive their agent"
    );
    let _ferby = start_agent(&etcd, &prefix, "ferby", &ferby_state)?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = status_in(&store, "spin-1", VmState::Running, 30).await?;
    assert_eq!(pid_of(&after)?, spin_pid, "adopted, not restarted");
    assert_eq!(
        qemu_pids_under(&ferby_state.display().to_string()).len(),
        2,
        "no second copy"
    );

    // A malformed assignment is reported and the others keep being served.
    let bogus = store.keys().assignment("ferby", "bogus")?;
    store
        .transaction()
        .put_raw(
            bogus,
            "domain: [not an assignment".into(),
            None,
            Precondition::None,
        )
        .commit()
        .await?;
    eventually(30, "an InvalidAssignment event", || async {
        let (events, _) = store.list::<Event>().await?;
        Ok(events
            .into_iter()
            .find(|e| e.reason == "InvalidAssignment" && e.involved_object.name == "bogus"))
    })
    .await?;
    set_run_state(&store, "idle-1", RunState::Paused).await?;
    status_in(&store, "idle-1", VmState::Paused, 30).await?;

    // Delete: processes, assignments and statuses go, then the objects.
    for name in ["spin-1", "idle-1"] {
        store
            .delete::<VirtualMachine>(name, Precondition::None)
            .await?;
    }
    eventually(60, "both VMs gone", || async {
        let spin_gone = store.get::<VirtualMachine>("spin-1").await?.is_none();
        let idle_gone = store.get::<VirtualMachine>("idle-1").await?.is_none();
        Ok((spin_gone && idle_gone).then_some(()))
    })
    .await?;
    assert!(
        !is_alive(spin_pid) && !is_alive(idle_pid),
        "the QEMU processes are gone"
    );
    let (left, _) = store
        .list_raw(&store.keys().node_assignments("ferby")?, None)
        .await?;
    assert!(
        left.iter().all(|(key, _, _)| key.ends_with("/bogus")),
        "only the bogus key is left: {left:?}"
    );
    assert!(
        store
            .get_status::<VirtualMachineSpec>("spin-1")
            .await?
            .is_none()
    );
    let node: Versioned<NodeStatus> = store
        .get_status::<NodeSpec>("ferby")
        .await?
        .context("node status")?;
    assert!(node.value.ready);
    Ok(())
}
