//! Leading: campaign, and while leader run the caches, workers, node lifecycle, resync and the
//! GitOps sync loop;
//! when leadership is lost stop all of it at once and campaign again.

use std::time::Duration;

use herd_store::{Elector, Leadership, Store, StoreError};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::caches::Caches;
use crate::controller::Controller;
use crate::metrics::Metrics;
use crate::node_lifecycle;

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct Settings {
    pub identity: String,
    pub lease_ttl: Duration,
    pub workers: usize,
    /// Where the GitOps sync loop keeps its bare repository caches; `None`: no GitOps loop.
    pub gitops_cache: Option<std::path::PathBuf>,
}

/// Campaigns and leads, forever.
pub async fn run(store: Store, settings: Settings, metrics: Metrics) -> Result<(), StoreError> {
    let elector = Elector::new(&store, "controller", &settings.identity, settings.lease_ttl)?;
    loop {
        info!(identity = %settings.identity, "campaigning for leadership");
        let leadership = elector.campaign().await?;
        info!(identity = %settings.identity, "became leader");
        metrics.is_leader.set(1);
        let mut tasks = JoinSet::new();
        if let Err(error) = start(&store, &leadership, &settings, &metrics, &mut tasks).await {
            error!(%error, "cannot start leading");
        }
        watch_leadership(&leadership, settings.lease_ttl).await;
        tasks.shutdown().await;
        metrics.is_leader.set(0);
        warn!(identity = %settings.identity, "lost leadership; stopped acting");
    }
}

async fn start(
    store: &Store,
    leadership: &Leadership,
    settings: &Settings,
    metrics: &Metrics,
    tasks: &mut JoinSet<()>,
) -> Result<(), StoreError> {
    let revision = store.current_revision().await?;
    let (changes, routed) = tokio::sync::mpsc::unbounded_channel();
    let caches = Caches::start(store, tasks, changes);
    caches.wait_synced(revision).await;
    let controller = Controller::new(
        store.clone(),
        leadership.fence().clone(),
        caches,
        metrics.clone(),
    );
    tasks.spawn(controller.clone().route_changes(routed));
    tasks.spawn(controller.clone().resync_forever());
    tasks.spawn(node_lifecycle::run(controller.clone()));
    for _ in 0..settings.workers {
        tasks.spawn(controller.clone().work());
    }
    tasks.spawn(controller.clone().tick_migrations());
    tasks.spawn(controller.clone().balance_forever());
    for _ in 0..4 {
        tasks.spawn(controller.clone().work_migrations());
    }
    if let Some(cache_dir) = &settings.gitops_cache {
        let syncer = herd_gitops::Syncer {
            store: store.clone(),
            fence: Some(leadership.fence().clone()),
            cache_dir: cache_dir.clone(),
            limits: Default::default(),
        };
        herd_gitops::runner::start(syncer, tasks);
    }
    info!(workers = settings.workers, "caches synced; reconciling");
    Ok(())
}

/// Returns when leadership is lost: the lease expired or the election key is gone.
async fn watch_leadership(leadership: &Leadership, ttl: Duration) {
    let period = (ttl / 5).max(Duration::from_millis(200));
    loop {
        tokio::time::sleep(period).await;
        if leadership.is_lost() {
            return;
        }
        match leadership.is_held().await {
            Ok(true) => {}
            Ok(false) => return,
            Err(error) => warn!(%error, "cannot check leadership; the fence still protects writes"),
        }
    }
}
