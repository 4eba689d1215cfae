//! `herd-agent` binary: flags, logging, the chosen driver, then the agent loop; with
//! `--storage` also the storage role (`--storage-only`: the storage role alone).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use herd_agent::agent::{self, AgentConfig};
use herd_agent::qemu::{QemuConfig, QemuDriver};
use herd_agent::sim::SimFabric;
use herd_agent::storage::{self, StorageSettings};
use herd_agent::xl::{XlDriver, XlSettings};
use herd_store::Store;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Driver {
    /// QEMU/KVM (KVM when /dev/kvm works, else TCG).
    Qemu,
    /// Xen through the xl toolstack (needs dom0).
    Xl,
    /// Simulated hosts with modelled CPU load (always reported as `driver: sim`).
    Sim,
}

#[derive(Parser)]
#[command(name = "herd-agent", version, about = "herd's node agent")]
struct Flags {
    /// This node's name (default: the host name).
    #[arg(long)]
    node: Option<String>,
    /// etcd endpoints, comma-separated.
    #[arg(
        long,
        env = "HERD_ETCD_ENDPOINTS",
        default_value = "http://127.0.0.1:2379",
        value_delimiter = ','
    )]
    etcd: Vec<String>,
    /// Key prefix in etcd.
    #[arg(long, env = "HERD_PREFIX", default_value = "/herd")]
    prefix: String,
    #[arg(long, value_enum, default_value = "qemu")]
    driver: Driver,
    /// Where the driver keeps its per-VM state (default /var/lib/herd/<driver>).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// This node's address: migrations listen on it and other nodes reach it there.
    #[arg(long, default_value = "127.0.0.1")]
    address: IpAddr,
    /// Seconds without a heartbeat after which the node is NotReady.
    #[arg(long, default_value_t = 10)]
    lease_ttl: u64,
    /// Seconds a guest has to power down before it is destroyed.
    #[arg(long, default_value_t = 60)]
    shutdown_timeout: u64,
    /// With --driver sim: the simulated hosts this process runs, each a node with its own
    /// lease, watch and heartbeat (default: just --node).
    #[arg(long, value_delimiter = ',')]
    sim_hosts: Vec<String>,
    /// With --driver sim: physical CPUs of each simulated host.
    #[arg(long, default_value_t = 4)]
    sim_cpus: u32,
    /// With --driver sim: memory of each simulated host, in MiB.
    #[arg(long, default_value_t = 16384)]
    sim_memory_mib: u64,
    /// Also run the storage role: make the Volumes and export them over NBD (this host holds
    /// the disks).
    #[arg(long)]
    storage: bool,
    /// Run only the storage role: no hypervisor, no VMs.
    #[arg(long)]
    storage_only: bool,
    /// Where the storage role keeps volumes, base images and export records.
    #[arg(long, default_value = "/var/lib/herd/storage")]
    storage_dir: PathBuf,
    /// The LVM volume group of `backend: lvm` volumes (none: lvm volumes fail).
    #[arg(long)]
    storage_backend_vg: Option<String>,
    /// The address NBD exports listen on and their endpoints name (default: --address).
    #[arg(long)]
    nbd_address: Option<IpAddr>,
    /// The Debian mirror debootstrap uses (default: the host's apt sources).
    #[arg(long)]
    debian_mirror: Option<String>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("herd-agent: {error:#}");
            std::process::ExitCode::from(1)
        }
    }
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let flags = Flags::parse();
    let node = match &flags.node {
        Some(node) => node.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")?
            .trim()
            .to_owned(),
    };
    if !herd_crds::names::is_dns_label(&node) {
        anyhow::bail!(
            "node name {node:?} is not a DNS label; pass --node with lower-case letters, digits and '-'"
        );
    }
    let store = Store::connect(&flags.etcd, &flags.prefix)
        .await
        .context("cannot reach etcd")?;
    let storage = storage_settings(&flags, &node);
    if flags.storage_only {
        return run_storage(store, storage).await;
    }
    let config = AgentConfig {
        node,
        address: Some(flags.address.to_string()),
        lease_ttl: Duration::from_secs(flags.lease_ttl.max(2)),
        shutdown_timeout: Duration::from_secs(flags.shutdown_timeout),
    };
    if flags.storage {
        let vms = run_vms(store.clone(), config, &flags);
        tokio::try_join!(vms, run_storage(store, storage))?;
        return Ok(());
    }
    run_vms(store, config, &flags).await
}

/// The storage role's settings from the flags.
fn storage_settings(flags: &Flags, node: &str) -> StorageSettings {
    let address = flags.nbd_address.unwrap_or(flags.address);
    let mut settings = StorageSettings::new(node, &flags.storage_dir, address);
    settings.volume_group = flags.storage_backend_vg.clone();
    settings.debian_mirror = flags.debian_mirror.clone();
    settings
}

async fn run_storage(store: Store, settings: StorageSettings) -> anyhow::Result<()> {
    storage::run(store, settings)
        .await
        .context("the storage role stopped")
}

/// Runs the VM agent with the chosen driver.
async fn run_vms(store: Store, config: AgentConfig, flags: &Flags) -> anyhow::Result<()> {
    let state_dir = |driver: &str| {
        flags
            .state_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/var/lib/herd").join(driver))
    };
    match flags.driver {
        Driver::Qemu => {
            let driver = QemuDriver::new(QemuConfig::new(state_dir("qemu"), flags.address)).await?;
            agent::run(store, driver, config).await?;
        }
        Driver::Xl => {
            let settings = XlSettings {
                state_dir: state_dir("xl"),
                migration_host: Some(flags.address.to_string()),
                ..XlSettings::default()
            };
            let driver = XlDriver::probe(settings)?;
            agent::run(store, driver, config).await?;
        }
        Driver::Sim => run_simulated(store, config, flags).await?,
    }
    Ok(())
}

/// Runs one agent loop per simulated host, all on one fabric (so migrations between them work).
async fn run_simulated(store: Store, config: AgentConfig, flags: &Flags) -> anyhow::Result<()> {
    let hosts = if flags.sim_hosts.is_empty() {
        vec![config.node.clone()]
    } else {
        flags.sim_hosts.clone()
    };
    let fabric = SimFabric::new();
    let mut agents = tokio::task::JoinSet::new();
    for host in hosts {
        if !herd_crds::names::is_dns_label(&host) {
            anyhow::bail!("simulated host name {host:?} is not a DNS label");
        }
        let driver = fabric.host(&host, flags.sim_cpus, flags.sim_memory_mib)?;
        let (store, config) = (
            store.clone(),
            AgentConfig {
                node: host.clone(),
                ..config.clone()
            },
        );
        agents.spawn(async move { (host, agent::run(store, driver, config).await) });
    }
    while let Some(finished) = agents.join_next().await {
        let (host, result) = finished?;
        result.with_context(|| format!("simulated host {host}"))?;
    }
    Ok(())
}
