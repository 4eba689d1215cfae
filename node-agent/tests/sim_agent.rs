//! The agent with the `sim` driver: one process, several simulated hosts, each a node with its
//! own lease and heartbeat, placed on by the real controller against a real etcd.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Result, bail};
use herd_crds::virtual_machine::VmState;
use herd_crds::{NodeSpec, NodeStatus, VirtualMachine, VirtualMachineSpec};
use herd_store::Store;
use herd_store::codec::decode_value;
use herd_tests::{EtcdServer, binary, eventually, unique_prefix};

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn heartbeats(store: &Store) -> Result<Vec<NodeStatus>> {
    let (entries, _) = store.list_raw(&store.keys().heartbeats(), None).await?;
    Ok(entries
        .iter()
        .map(|(k, v, _)| decode_value::<NodeStatus>(k, v))
        .collect::<Result<_, _>>()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_hosts_register_run_vms_and_report_modelled_load() -> Result<()> {
    let etcd = EtcdServer::start()?;
    let prefix = unique_prefix();
    let store = Store::connect(&etcd.endpoints(), &prefix).await?;
    let _agent = Process(
        Command::new(env!("CARGO_BIN_EXE_herd-agent"))
            .args([
                "--driver",
                "sim",
                "--sim-hosts",
                "ferby,gerby,herby",
                "--sim-cpus",
                "2",
                "--node",
                "sim",
            ])
            .args([
                "--etcd",
                &etcd.endpoint(),
                "--prefix",
                &prefix,
                "--lease-ttl",
                "4",
            ])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .spawn()?,
    );
    let _controller = Process(
        Command::new(binary("herd-controller")?)
            .args([
                "--etcd",
                &etcd.endpoint(),
                "--prefix",
                &prefix,
                "--listen",
                "",
            ])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .spawn()?,
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while heartbeats(&store).await?.len() < 3 {
        if tokio::time::Instant::now() > deadline {
            bail!("the three simulated hosts did not all report");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The controller sees nodes through its own watch: wait until it has recorded all three
    // Ready (a fixed pause once let a loaded machine place two VMs on one host).
    for node in ["ferby", "gerby", "herby"] {
        let what = format!("the controller records {node} Ready");
        eventually(30, &what, || async {
            let status = store.get_status::<NodeSpec>(node).await?;
            Ok(status.filter(|s| s.value.ready).map(|_| ()))
        })
        .await?;
    }
    for i in 0..3 {
        let text = format!(
            "apiVersion: herd.dev/v1alpha1\nkind: VirtualMachine\nmetadata: {{name: busy-{i}}}\nspec:\n  memoryMiB: 512\n  \
             boot: {{cmdline: 'herd.sim.load=constant:100'}}\n"
        );
        store
            .create(&herd_crds::yaml::from_str::<VirtualMachine>(&text)?)
            .await?;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let beats = heartbeats(&store).await?;
        let busy_hosts = beats
            .iter()
            .filter(|b| b.cpu_load.iter().sum::<f64>() >= 99.0)
            .count();
        if beats.len() == 3 && busy_hosts == 3 {
            assert!(beats.iter().all(|b| b.driver == "sim" && b.cpus == 2));
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("expected three simulated hosts, each running one busy VM: {beats:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for i in 0..3 {
        let status = store
            .get_status::<VirtualMachineSpec>(&format!("busy-{i}"))
            .await?
            .expect("status");
        assert_eq!(status.value.state, VmState::Running);
    }
    Ok(())
}
