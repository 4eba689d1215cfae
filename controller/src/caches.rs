//! The controller's watch-fed view of the cluster: one reflector per key range.

use herd_crds::assignment::Assignment;
use herd_crds::cluster_policy::ClusterPolicy;
use herd_crds::node::NodeStatus;
use herd_crds::volume::VolumeStatus;
use herd_crds::{Migration, MigrationStatus, Node, Resource, VirtualMachine, VirtualMachineStatus};
use herd_store::codec::{decode_object, decode_versioned};
use herd_store::reflector::Decoder;
use herd_store::{Reflector, ReflectorReader, Store, Versioned};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;

/// Which cache reported a change (the name that changed travels with it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Vms,
    VmStatuses,
    Nodes,
    NodeStatuses,
    Heartbeats,
    Assignments,
    VolumeStatuses,
    Policies,
    Migrations,
    MigrationStatuses,
}

/// Readers of every cache the controller uses.
#[derive(Clone)]
pub struct Caches {
    pub vms: ReflectorReader<VirtualMachine>,
    pub vm_statuses: ReflectorReader<Versioned<VirtualMachineStatus>>,
    pub nodes: ReflectorReader<Node>,
    /// Node status written by the controller (readiness transitions).
    pub node_statuses: ReflectorReader<Versioned<NodeStatus>>,
    /// Node status written by the agents, on their leases.
    pub heartbeats: ReflectorReader<Versioned<NodeStatus>>,
    /// Keyed `node/vm`.
    pub assignments: ReflectorReader<Versioned<Assignment>>,
    pub volume_statuses: ReflectorReader<Versioned<VolumeStatus>>,
    pub policies: ReflectorReader<ClusterPolicy>,
    pub migrations: ReflectorReader<Migration>,
    pub migration_statuses: ReflectorReader<Versioned<MigrationStatus>>,
}

impl Caches {
    /// Starts every reflector in `tasks`; changes are sent to `changes` as (source, name).
    pub fn start(
        store: &Store,
        tasks: &mut JoinSet<()>,
        changes: UnboundedSender<(Source, String)>,
    ) -> Self {
        let keys = store.keys();
        Self {
            vms: reflect(
                store,
                tasks,
                &changes,
                Source::Vms,
                &keys.objects(VirtualMachine::PLURAL),
                decode_object,
            ),
            vm_statuses: reflect(
                store,
                tasks,
                &changes,
                Source::VmStatuses,
                &keys.statuses(VirtualMachine::PLURAL),
                decode_versioned,
            ),
            nodes: reflect(
                store,
                tasks,
                &changes,
                Source::Nodes,
                &keys.objects(Node::PLURAL),
                decode_object,
            ),
            node_statuses: reflect(
                store,
                tasks,
                &changes,
                Source::NodeStatuses,
                &keys.statuses(Node::PLURAL),
                decode_versioned,
            ),
            heartbeats: reflect(
                store,
                tasks,
                &changes,
                Source::Heartbeats,
                &keys.heartbeats(),
                decode_versioned,
            ),
            assignments: reflect(
                store,
                tasks,
                &changes,
                Source::Assignments,
                &keys.assignments(),
                decode_versioned,
            ),
            volume_statuses: reflect(
                store,
                tasks,
                &changes,
                Source::VolumeStatuses,
                &keys.statuses("volumes"),
                decode_versioned,
            ),
            policies: reflect(
                store,
                tasks,
                &changes,
                Source::Policies,
                &keys.objects(ClusterPolicy::PLURAL),
                decode_object,
            ),
            migrations: reflect(
                store,
                tasks,
                &changes,
                Source::Migrations,
                &keys.objects(Migration::PLURAL),
                decode_object,
            ),
            migration_statuses: reflect(
                store,
                tasks,
                &changes,
                Source::MigrationStatuses,
                &keys.statuses(Migration::PLURAL),
                decode_versioned,
            ),
        }
    }

    /// Waits until every cache reflects the store as of `revision` (each reflector's first
    /// listing is made after `revision` was read, so each reaches it).
    pub async fn wait_synced(&self, revision: herd_store::Revision) {
        self.vms.clone().wait_for(revision).await;
        self.vm_statuses.clone().wait_for(revision).await;
        self.nodes.clone().wait_for(revision).await;
        self.node_statuses.clone().wait_for(revision).await;
        self.heartbeats.clone().wait_for(revision).await;
        self.assignments.clone().wait_for(revision).await;
        self.volume_statuses.clone().wait_for(revision).await;
        self.policies.clone().wait_for(revision).await;
        self.migrations.clone().wait_for(revision).await;
        self.migration_statuses.clone().wait_for(revision).await;
    }
}

fn reflect<T: Send + Sync + 'static>(
    store: &Store,
    tasks: &mut JoinSet<()>,
    changes: &UnboundedSender<(Source, String)>,
    source: Source,
    prefix: &str,
    decode: Decoder<T>,
) -> ReflectorReader<T> {
    let (names, mut named) = tokio::sync::mpsc::unbounded_channel();
    let (reflector, reader) = Reflector::new(store.watch_prefix(prefix, None), prefix, decode);
    tasks.spawn(reflector.notify(names).run());
    let changes = changes.clone();
    tasks.spawn(async move {
        while let Some(name) = named.recv().await {
            if changes.send((source, name)).is_err() {
                return;
            }
        }
    });
    reader
}
