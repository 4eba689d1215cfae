//! Hollow nodes: stand-ins for node agents that run no hypervisor at all.
//!
//! A hollow node keeps a lease, registers its `Node`, and every interval reads its assignments
//! and publishes a heartbeat that lists them as running domains with the revision it read at —
//! so a controller sees the same protocol as with real agents. It also acknowledges each new
//! assignment by writing the VM's status (`Running` on this node). They exist for controller
//! tests and the scale benchmark; they are never presented as real hosts (`driver: hollow`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use herd_crds::assignment::Assignment;
use herd_crds::node::{DomainStatus, NodeSpec, NodeStatus};
use herd_crds::virtual_machine::VmState;
use herd_crds::{Node, Object, VirtualMachineSpec};
use herd_store::codec::decode_value;
use herd_store::txn::Precondition;
use herd_store::{Store, StoreError, WatchEvent};
use tokio::task::JoinSet;

/// One simulated host's identity and size.
#[derive(Clone, Debug)]
pub struct HollowNode {
    pub name: String,
    pub cpus: u32,
    pub memory_mib: u64,
}

impl HollowNode {
    pub fn new(name: &str, cpus: u32, memory_mib: u64) -> Self {
        Self {
            name: name.to_owned(),
            cpus,
            memory_mib,
        }
    }

    /// Creates the node's `Node` object unless it exists (never overwrites the spec).
    pub async fn register(&self, store: &Store) -> Result<(), StoreError> {
        match store
            .create::<Node>(&Object::new(self.name.clone(), NodeSpec::default()))
            .await
        {
            Ok(_) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Reads the node's assignments and publishes a heartbeat on lease `lease` reflecting them.
    pub async fn heartbeat(&self, store: &Store, lease: i64) -> Result<(), StoreError> {
        let prefix = store.keys().node_assignments(&self.name)?;
        let (entries, revision) = store.list_raw(&prefix, None).await?;
        let domains = entries
            .iter()
            .filter_map(|(key, _, _)| key.strip_prefix(&prefix))
            .map(|vm| DomainStatus {
                name: vm.to_owned(),
                state: VmState::Running,
                ..DomainStatus::default()
            })
            .collect();
        let status = NodeStatus {
            ready: true,
            cpus: self.cpus,
            memory_total_mib: self.memory_mib,
            memory_free_mib: self.memory_mib,
            domains,
            driver: "hollow".into(),
            agent_version: env!("CARGO_PKG_VERSION").into(),
            accepts_migrations: true,
            last_heartbeat: Some(Utc::now()),
            observed_revision: revision,
            ..NodeStatus::default()
        };
        let value =
            herd_store::codec::encode_value(&status).map_err(|message| StoreError::Encode {
                kind: "heartbeat".into(),
                name: self.name.clone(),
                message,
            })?;
        let key = store.keys().heartbeat(&self.name)?;
        store
            .transaction()
            .put_raw(key, value, Some(lease), Precondition::None)
            .commit()
            .await?;
        Ok(())
    }

    /// Registers, then heartbeats every `interval` on lease `lease` until the task is dropped.
    pub async fn run(
        self,
        store: Store,
        interval: Duration,
        lease: i64,
        stats: Arc<FleetStats>,
    ) -> Result<(), StoreError> {
        self.register(&store).await?;
        loop {
            match self.heartbeat(&store, lease).await {
                Ok(()) => {
                    stats.heartbeats.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => tracing::warn!(node = %self.name, %error, "hollow heartbeat failed"),
            }
            tokio::time::sleep(interval).await;
        }
    }
}

/// What a fleet wrote, so a benchmark can tell its writes from the controller's.
#[derive(Debug, Default)]
pub struct FleetStats {
    pub heartbeats: AtomicU64,
    pub acks: AtomicU64,
}

/// Acknowledges every new assignment under the store's prefix by marking the VM `Running` on
/// its node — one shared watch for all hollow nodes of a process. Runs until dropped.
pub async fn acknowledge_assignments(store: Store, stats: Arc<FleetStats>) {
    let prefix = store.keys().assignments();
    let mut watcher = store.watch_prefix(&prefix, None);
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut acks = JoinSet::new();
    loop {
        let entries = match watcher.next().await {
            WatchEvent::Put(entry) => vec![entry],
            WatchEvent::Restarted { entries, .. } => entries,
            WatchEvent::Delete { key, .. } => {
                seen.remove(&key);
                continue;
            }
        };
        for entry in entries {
            let Some((node, vm)) = entry
                .key
                .strip_prefix(&prefix)
                .and_then(|rest| rest.split_once('/'))
            else {
                continue;
            };
            if !seen.insert(entry.key.clone()) {
                continue;
            }
            let Ok(assignment) = decode_value::<Assignment>(&entry.key, &entry.value) else {
                continue;
            };
            let (store, node, vm, stats) =
                (store.clone(), node.to_owned(), vm.to_owned(), stats.clone());
            acks.spawn(async move {
                if acknowledge(&store, &node, &vm, assignment.generation).await {
                    stats.acks.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        while acks.try_join_next().is_some() {}
    }
}

/// Marks `vm` running on `node`, retrying on write conflicts; whether it was written.
async fn acknowledge(store: &Store, node: &str, vm: &str, generation: u64) -> bool {
    for _ in 0..20 {
        let current = store.get_status::<VirtualMachineSpec>(vm).await;
        let Ok(current) = current else { return false };
        let (mut status, precondition) = match current {
            Some(versioned) => (versioned.value, Precondition::Revision(versioned.revision)),
            None => (Default::default(), Precondition::Absent),
        };
        status.node_name = Some(node.to_owned());
        status.state = VmState::Running;
        status.observed_generation = generation;
        match store
            .put_status::<VirtualMachineSpec>(vm, &status, precondition)
            .await
        {
            Ok(_) => return true,
            Err(error)
                if error.is_conflict() || matches!(error, StoreError::AlreadyExists { .. }) =>
            {
                continue;
            }
            Err(_) => return false,
        }
    }
    false
}

/// Starts `nodes` hollow nodes, each heartbeating on lease `lease`, plus the shared
/// acknowledger, in `tasks`; returns what they write.
pub fn start_fleet(
    store: &Store,
    nodes: Vec<HollowNode>,
    interval: Duration,
    lease: i64,
    tasks: &mut JoinSet<()>,
) -> Arc<FleetStats> {
    let stats = Arc::new(FleetStats::default());
    for node in nodes {
        let (store, stats) = (store.clone(), stats.clone());
        tasks.spawn(async move {
            if let Err(error) = node.run(store, interval, lease, stats).await {
                tracing::warn!(%error, "hollow node stopped");
            }
        });
    }
    tasks.spawn(acknowledge_assignments(store.clone(), stats.clone()));
    stats
}

/// [`start_fleet`] on `lease`, which the fleet's tasks then hold (and keep renewed): aborting
/// `tasks` stops the renewal too, so the nodes' heartbeats expire as a dead agent's would.
pub fn start_leased_fleet(
    store: &Store,
    nodes: Vec<HollowNode>,
    interval: Duration,
    lease: herd_store::Lease,
    tasks: &mut JoinSet<()>,
) -> Arc<FleetStats> {
    let stats = start_fleet(store, nodes, interval, lease.id(), tasks);
    tasks.spawn(async move {
        let _held = lease;
        std::future::pending::<()>().await
    });
    stats
}
