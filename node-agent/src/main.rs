//! `herd-agent` binary: flags, logging, the chosen driver, then the agent loop.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use herd_agent::agent::{self, AgentConfig};
use herd_agent::qemu::{QemuConfig, QemuDriver};
use herd_agent::xl::{XlDriver, XlSettings};
use herd_store::Store;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Driver {
    /// QEMU/KVM (KVM when /dev/kvm works, else TCG).
    Qemu,
    /// Xen through the xl toolstack (needs dom0).
    Xl,
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
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
    let config = AgentConfig {
        node,
        address: Some(flags.address.to_string()),
        lease_ttl: Duration::from_secs(flags.lease_ttl.max(2)),
        shutdown_timeout: Duration::from_secs(flags.shutdown_timeout),
    };
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
    }
    Ok(())
}
