//! `herd-controller` binary: flags, logging, metrics endpoint, then lead.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use herd_controller::leader::{self, Settings};
use herd_controller::metrics::Metrics;
use herd_store::Store;
use prometheus_client::registry::Registry;

#[derive(Parser)]
#[command(name = "herd-controller", version, about = "herd's central controller")]
struct Flags {
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
    /// This controller's name in the election (default: host name and pid).
    #[arg(long)]
    identity: Option<String>,
    /// Seconds after which a silent leader loses leadership.
    #[arg(long, default_value_t = 15)]
    lease_ttl: u64,
    /// Concurrent reconciles.
    #[arg(long, default_value_t = 64)]
    workers: usize,
    /// Address of /metrics and /healthz; empty to disable.
    #[arg(long, default_value = "127.0.0.1:9090")]
    listen: String,
    /// Directory of the GitOps loop's bare repository caches (default: herd-gitops in the
    /// system's temporary directory).
    #[arg(long)]
    gitops_cache: Option<PathBuf>,
    /// Do not run the GitOps sync loop.
    #[arg(long)]
    no_gitops: bool,
    /// File holding the GitOps webhook's HMAC secret; without it the webhook is off.
    #[arg(long, env = "HERD_GITOPS_WEBHOOK_SECRET_FILE")]
    gitops_webhook_secret_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("herd-controller: {error:#}");
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
    let identity = flags.identity.clone().unwrap_or_else(default_identity);
    let store = Store::connect(&flags.etcd, &flags.prefix).await?;
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    if !flags.listen.is_empty() {
        let address: SocketAddr = flags.listen.parse()?;
        let registry = Arc::new(registry);
        let webhook = webhook_routes(&flags, &store)?;
        tokio::spawn(async move {
            if let Err(error) = herd_controller::http::serve(address, registry, webhook).await {
                tracing::error!(%error, "metrics endpoint stopped");
            }
        });
    }
    let settings = Settings {
        identity,
        lease_ttl: Duration::from_secs(flags.lease_ttl.max(1)),
        workers: flags.workers.max(1),
        gitops_cache: (!flags.no_gitops).then(|| {
            flags
                .gitops_cache
                .clone()
                .unwrap_or_else(|| std::env::temp_dir().join("herd-gitops"))
        }),
    };
    leader::run(store, settings, metrics).await?;
    Ok(())
}

/// The GitOps webhook's routes when a secret file is given (an empty secret is refused).
fn webhook_routes(flags: &Flags, store: &Store) -> anyhow::Result<axum::Router> {
    let Some(path) = &flags.gitops_webhook_secret_file else {
        return Ok(axum::Router::new());
    };
    let secret = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("cannot read the webhook secret {}: {e}", path.display()))?;
    let secret = secret.trim_ascii().to_vec();
    anyhow::ensure!(
        !secret.is_empty(),
        "the webhook secret file {} is empty; write a long random secret into it",
        path.display()
    );
    Ok(herd_gitops::webhook::router(store.clone(), secret))
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}-{}", host.trim(), std::process::id())
}
