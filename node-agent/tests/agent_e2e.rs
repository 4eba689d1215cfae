//! End to end with real processes: etcd, the controller, and two agents driving real QEMU.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use herd_agent::test_guests::TestGuest;
use herd_crds::event::Event;
use herd_crds::node::NodeSpec;
use herd_crds::virtual_machine::VmState;
use herd_crds::{NodeStatus, RunState, VirtualMachine, VirtualMachineSpec};
use herd_store::txn::Precondition;
use herd_store::{Store, Versioned};
use herd_tests::{EtcdServer, unique_prefix};

mod common;

use common::{is_alive, pid_of, start_agent, start_controller};

/// Kills every QEMU whose command line mentions `dir` (the test's state), even on failure.
struct QemuReaper(std::path::PathBuf);

impl Drop for QemuReaper {
    fn drop(&mut self) {
        drop(common::Reaper(self.0.clone()));
    }
}

fn qemu_pids_under(needle: &str) -> Vec<u32> {
    common::pids_mentioning(needle, "qemu-system")
}

fn vm(name: &str, node: &str, image: &Path) -> Result<VirtualMachine> {
    let text = format!(
        "apiVersion: herd.dev/v1alpha1\nkind: VirtualMachine\nmetadata: {{name: {name}}}\nspec:\n  memoryMiB: 32\n  nodeName: {node}\n  \
         boot: {{disk: root}}\n  disks:\n  - {{name: root, path: {}}}\n",
        image.display()
    );
    Ok(herd_crds::yaml::from_str(&text)?)
}

use common::{eventually, heartbeat, status_in};

async fn set_run_state(store: &Store, name: &str, state: RunState) -> Result<()> {
    let mut vm: VirtualMachine = store.get_existing(name).await?;
    vm.spec.run_state = state;
    store.update(&vm).await?;
    Ok(())
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
            (Some(spin), Some(idle)) if spin > 50.0 && idle < 20.0 => Some(()),
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
