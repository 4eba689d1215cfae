//! The controller's shell while it leads: feeds the work queue from the caches, runs VM
//! reconciles on workers, and applies their plans as fenced transactions.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use herd_crds::assignment::Assignment;
use herd_crds::cluster_policy::{ClusterPolicySpec, DEFAULT_POLICY_NAME};
use herd_crds::condition::{Condition, ConditionStatus, set_condition};
use herd_crds::event::EventType;
use herd_crds::virtual_machine::VmState;
use herd_crds::{Resource, VirtualMachine, VirtualMachineSpec, VirtualMachineStatus};
use herd_store::events::about;
use herd_store::txn::Precondition;
use herd_store::{EventRecorder, Fence, Store, StoreError, Versioned};
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::{debug, info, warn};

use crate::caches::{Caches, Source};
use crate::ledger::Ledger;
use crate::metrics::{Metrics, ResultLabel};
use crate::queue::WorkQueue;
use crate::render::render_assignment;
use crate::scheduler::{NodeView, Placement, schedule};
use crate::vm_plan::{FINALIZER, NodeReport, Observed, RELEASED_FROM, VmAction, plan_vm};

/// How long a placement waits for the node cache to catch up with the store.
const NODE_CACHE_WAIT: Duration = Duration::from_secs(5);

/// How often every VM is reconciled even without a change (a missed event's safety net).
pub const RESYNC_PERIOD: Duration = Duration::from_secs(30);

/// Everything a worker needs; shared by all of them.
pub struct Controller {
    pub store: Store,
    pub fence: Fence,
    pub caches: Caches,
    pub queue: WorkQueue,
    pub recorder: EventRecorder,
    pub metrics: Metrics,
    pub(crate) ledger: Mutex<Ledger>,
    /// VM name → nodes holding an assignment for it.
    pub(crate) placed_on: Mutex<HashMap<String, BTreeSet<String>>>,
    /// Migration names waiting for a step.
    pub migration_queue: WorkQueue,
    /// Migrations this leader started and has not ended: name → source node. Authoritative
    /// for the concurrency limits (the cache may not show a start yet).
    pub(crate) in_flight: Mutex<HashMap<String, String>>,
    /// Running migrations: bytes last reported sent and when that number last grew.
    pub(crate) progress: Mutex<HashMap<String, (u64, chrono::DateTime<Utc>)>>,
    /// The last unschedulable message per VM, so an Event is written only when it changes.
    last_hold: Mutex<HashMap<String, String>>,
}

impl Controller {
    /// A controller over synced `caches`, leading with `fence`.
    pub fn new(store: Store, fence: Fence, caches: Caches, metrics: Metrics) -> Arc<Self> {
        let mut placed_on: HashMap<String, BTreeSet<String>> = HashMap::new();
        let assignments = caches.assignments.list();
        for (key, _) in &assignments {
            if let Some((node, vm)) = key.split_once('/') {
                placed_on
                    .entry(vm.to_owned())
                    .or_default()
                    .insert(node.to_owned());
            }
        }
        let ledger = Ledger::from_assignments(
            assignments
                .iter()
                .filter_map(|(key, a)| Some((key.split_once('/')?.0, &a.value))),
        );
        let recorder = EventRecorder::new(&store, "herd-controller");
        // Migrations a previous leader left in flight still count against the limits.
        let in_flight = caches
            .migration_statuses
            .list()
            .into_iter()
            .filter(|(_, s)| {
                !s.value.phase.is_final() && s.value.phase != herd_crds::MigrationPhase::Pending
            })
            .map(|(name, s)| (name, s.value.source_node.clone().unwrap_or_default()))
            .collect();
        Arc::new(Self {
            store,
            fence,
            caches,
            queue: WorkQueue::new(),
            migration_queue: WorkQueue::new(),
            in_flight: Mutex::new(in_flight),
            progress: Mutex::new(HashMap::new()),
            recorder,
            metrics,
            ledger: Mutex::new(ledger),
            placed_on: Mutex::new(placed_on),
            last_hold: Mutex::new(HashMap::new()),
        })
    }

    /// Routes cache changes to the queue until the channel closes.
    pub async fn route_changes(self: Arc<Self>, mut changes: UnboundedReceiver<(Source, String)>) {
        while let Some((source, name)) = changes.recv().await {
            debug!(?source, %name, "change");
            match source {
                Source::Vms => self.queue.add(&name),
                Source::Assignments => {
                    if let Some((node, vm)) = name.split_once('/') {
                        self.note_assignment(node, vm);
                        self.queue.add(vm);
                        self.requeue_active_migrations();
                    }
                }
                Source::Heartbeats | Source::Nodes => {
                    self.requeue_waiting();
                    self.requeue_active_migrations();
                }
                Source::Migrations | Source::MigrationStatuses => self.migration_queue.add(&name),
                Source::VmStatuses
                | Source::NodeStatuses
                | Source::VolumeStatuses
                | Source::Policies => {}
            }
            self.metrics.queue_depth.set(self.queue.depth() as i64);
        }
    }

    fn note_assignment(&self, node: &str, vm: &str) {
        let present = self
            .caches
            .assignments
            .get(&format!("{node}/{vm}"))
            .is_some();
        let mut placed = self.placed_on.lock().expect("index lock");
        let nodes = placed.entry(vm.to_owned()).or_default();
        if present {
            nodes.insert(node.to_owned());
        } else {
            nodes.remove(node);
            if nodes.is_empty() {
                placed.remove(vm);
            }
            // Removed by someone else (or by us): the room is free again.
            let mut ledger = self.ledger.lock().expect("ledger lock");
            if ledger.node_of(vm) == Some(node) {
                ledger.release(vm);
            }
        }
    }

    /// Queues VMs that wait on nodes: unscheduled ones and ones being deleted.
    fn requeue_waiting(&self) {
        let waiting: Vec<String> = self
            .last_hold
            .lock()
            .expect("hold lock")
            .keys()
            .cloned()
            .collect();
        for vm in waiting {
            self.queue.add(&vm);
        }
    }

    /// Queues every VM now and every [`RESYNC_PERIOD`].
    pub async fn resync_forever(self: Arc<Self>) {
        loop {
            for (name, _) in self.caches.vms.list() {
                self.queue.add(&name);
            }
            let orphans: Vec<String> = self
                .placed_on
                .lock()
                .expect("index lock")
                .keys()
                .cloned()
                .collect();
            for name in orphans {
                self.queue.add(&name);
            }
            tokio::time::sleep(RESYNC_PERIOD).await;
        }
    }

    /// One worker: takes keys and reconciles them until the task is dropped.
    pub async fn work(self: Arc<Self>) {
        loop {
            let key = self.queue.next().await;
            let started = Instant::now();
            let result = self.reconcile(&key).await;
            self.metrics
                .reconcile_seconds
                .observe(started.elapsed().as_secs_f64());
            match result {
                Ok(again) => {
                    self.metrics
                        .reconciles
                        .get_or_create(&ResultLabel { result: "ok" })
                        .inc();
                    self.queue.forget(&key);
                    if let Some(delay) = again {
                        self.queue.add_after(&key, delay);
                    }
                }
                Err(error) => {
                    let label = if error.is_conflict() {
                        "conflict"
                    } else {
                        "error"
                    };
                    self.metrics
                        .reconciles
                        .get_or_create(&ResultLabel { result: label })
                        .inc();
                    self.metrics.errors.inc();
                    let delay = self.queue.backoff(&key);
                    debug!(vm = %key, %error, ?delay, "reconcile failed; retrying");
                    self.queue.add_after(&key, delay);
                }
            }
            self.queue.done(&key);
            self.metrics.queue_depth.set(self.queue.depth() as i64);
        }
    }

    /// Plans and applies one step for `name`; returns when to look again, if sooner than a change.
    async fn reconcile(&self, name: &str) -> Result<Option<Duration>, StoreError> {
        let vm = self.caches.vms.get(name);
        let nodes: Vec<String> = self
            .placed_on
            .lock()
            .expect("index lock")
            .get(name)
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        let assignments: Vec<(String, Versioned<Assignment>)> = nodes
            .into_iter()
            .filter_map(|node| {
                self.caches
                    .assignments
                    .get(&format!("{node}/{name}"))
                    .map(|a| (node, (*a).clone()))
            })
            .collect();
        if vm.is_some() && assignments.is_empty() && !self.ledger_places(name) {
            self.wait_for_current_nodes().await?;
        }
        let action = {
            let report = |node: &str| self.report(node, name);
            let observed = Observed {
                assignments: &assignments,
                report: &report,
            };
            let volumes = |volume: &str| {
                self.caches
                    .volume_statuses
                    .get(volume)
                    .and_then(|s| s.value.endpoint.clone())
            };
            plan_vm(
                vm.as_deref(),
                &observed,
                |vm| render_assignment(vm, volumes),
                |vm| self.place(vm),
            )
        };
        if action != VmAction::Nothing {
            debug!(vm = %name, ?action, "applying");
        }
        self.apply(name, vm.as_deref(), action).await
    }

    fn ledger_places(&self, vm: &str) -> bool {
        self.ledger
            .lock()
            .expect("ledger lock")
            .node_of(vm)
            .is_some()
    }

    /// Before a VM is placed: waits until the node cache holds every node write in the store.
    /// Each key range has a watch of its own, so without this a VM created just after a node
    /// change (one `herdctl apply` of both) could be placed by the node's old spec.
    async fn wait_for_current_nodes(&self) -> Result<(), StoreError> {
        let newest = self
            .store
            .last_modified(&self.store.keys().objects(herd_crds::Node::PLURAL))
            .await?;
        let mut nodes = self.caches.nodes.clone();
        if tokio::time::timeout(NODE_CACHE_WAIT, nodes.wait_for(newest))
            .await
            .is_err()
        {
            warn!(
                newest,
                cached = nodes.revision(),
                "node cache still behind the store; placing with what it holds"
            );
        }
        Ok(())
    }

    fn report(&self, node: &str, vm: &str) -> Option<NodeReport> {
        let heartbeat = self.caches.heartbeats.get(node)?;
        Some(NodeReport {
            observed_revision: heartbeat.value.observed_revision,
            runs_vm: heartbeat.value.domains.iter().any(|d| d.name == vm),
        })
    }

    pub(crate) fn policy(&self) -> ClusterPolicySpec {
        self.caches
            .policies
            .get(DEFAULT_POLICY_NAME)
            .map(|p| p.spec.clone())
            .unwrap_or_default()
    }

    /// Chooses a node for `vm` and reserves its room in the ledger.
    fn place(&self, vm: &VirtualMachine) -> Placement {
        let overcommit = self.policy().scheduling.cpu_overcommit_ratio;
        let mut ledger = self.ledger.lock().expect("ledger lock");
        if let Some(node) = ledger.node_of(&vm.metadata.name) {
            return Placement::Node(node.to_owned());
        }
        let needs_labels = !vm.spec.affinity.is_empty();
        let views: Vec<NodeView> = self
            .caches
            .nodes
            .list()
            .into_iter()
            .map(|(name, node)| self.node_view(&name, &node, &ledger, needs_labels))
            .collect();
        let placement = schedule(&vm.spec, &views, overcommit);
        if let Placement::Node(node) = &placement {
            ledger.assign(&vm.metadata.name, node, vm.spec.vcpus, vm.spec.memory_mib);
        }
        placement
    }

    pub(crate) fn node_view(
        &self,
        name: &str,
        node: &herd_crds::Node,
        ledger: &Ledger,
        needs_labels: bool,
    ) -> NodeView {
        let heartbeat = self.caches.heartbeats.get(name);
        let capacity = node.spec.capacity.clone().unwrap_or_default();
        let (used_vcpus, used_memory_mib) = ledger.totals(name);
        let vm_labels = if needs_labels {
            ledger
                .vms_on(name)
                .filter_map(|vm| self.caches.vms.get(vm))
                .map(|vm| vm.metadata.labels.clone())
                .collect()
        } else {
            Vec::new()
        };
        NodeView {
            name: name.to_owned(),
            labels: node.metadata.labels.clone(),
            ready: heartbeat.is_some(),
            unschedulable: node.spec.unschedulable,
            cpus: capacity
                .cpus
                .or(heartbeat.as_ref().map(|h| h.value.cpus))
                .unwrap_or(0),
            memory_mib: capacity
                .memory_mib
                .or(heartbeat.as_ref().map(|h| h.value.memory_total_mib))
                .unwrap_or(0),
            used_vcpus,
            used_memory_mib,
            vm_labels,
        }
    }

    async fn apply(
        &self,
        name: &str,
        vm: Option<&VirtualMachine>,
        action: VmAction,
    ) -> Result<Option<Duration>, StoreError> {
        match (action, vm) {
            (VmAction::Nothing, _) => {
                self.last_hold.lock().expect("hold lock").remove(name);
                Ok(None)
            }
            (VmAction::Place { node, assignment }, Some(vm)) => {
                let placed = self.apply_place(vm, &node, &assignment).await;
                // A placement written earlier but not yet seen in the cache fails here (its
                // assignment exists): its room stays reserved, or the next VM would get it.
                if placed.is_err() && !self.assignment_exists(&node, name).await {
                    self.ledger.lock().expect("ledger lock").release(name);
                }
                placed.map(|()| None)
            }
            (
                VmAction::Update {
                    node,
                    assignment,
                    revision,
                },
                _,
            ) => {
                let key = self.store.keys().assignment(&node, name)?;
                let value = encode(&assignment)?;
                self.store
                    .transaction()
                    .fenced(&self.fence)
                    .put_raw(key, value, None, Precondition::Revision(revision))
                    .commit()
                    .await?;
                Ok(None)
            }
            (VmAction::Release { node, revision }, Some(vm)) => {
                let key = self.store.keys().assignment(&node, name)?;
                let mut released = vm.clone();
                released
                    .metadata
                    .annotations
                    .insert(RELEASED_FROM.into(), node.clone());
                self.store
                    .transaction()
                    .fenced(&self.fence)
                    .delete_raw(key, Precondition::Revision(revision))
                    .update(&released)?
                    .commit()
                    .await?;
                self.ledger.lock().expect("ledger lock").release(name);
                info!(vm = %name, %node, "released for deletion");
                Ok(None)
            }
            (VmAction::Finish, Some(vm)) => self.apply_finish(vm).await.map(|()| None),
            (VmAction::RemoveOrphan { node, revision }, _) => {
                let key = self.store.keys().assignment(&node, name)?;
                self.store
                    .transaction()
                    .fenced(&self.fence)
                    .delete_raw(key, Precondition::Revision(revision))
                    .commit()
                    .await?;
                self.ledger.lock().expect("ledger lock").release(name);
                Ok(None)
            }
            (
                VmAction::Hold {
                    condition,
                    reason,
                    message,
                },
                Some(vm),
            ) => self.apply_hold(vm, condition, reason, message).await,
            (_, None) => Ok(None),
        }
    }

    /// Whether the store holds the assignment of `vm` to `node` (false when it cannot tell).
    async fn assignment_exists(&self, node: &str, vm: &str) -> bool {
        let Ok(key) = self.store.keys().assignment(node, vm) else {
            return false;
        };
        match self.store.list_raw(&key, None).await {
            Ok((entries, _)) => entries.iter().any(|(found, _, _)| *found == key),
            Err(_) => false,
        }
    }

    async fn apply_place(
        &self,
        vm: &VirtualMachine,
        node: &str,
        assignment: &Assignment,
    ) -> Result<(), StoreError> {
        let name = &vm.metadata.name;
        let key = self.store.keys().assignment(node, name)?;
        let mut with_finalizer = vm.clone();
        if !with_finalizer
            .metadata
            .finalizers
            .iter()
            .any(|f| f == FINALIZER)
        {
            with_finalizer.metadata.finalizers.push(FINALIZER.into());
        }
        let (mut status, precondition) = self.current_status(name);
        status.node_name = Some(node.to_owned());
        status.state = VmState::Scheduled;
        let now = Utc::now();
        let mut scheduled = Condition::new(
            "Scheduled",
            ConditionStatus::True,
            "Scheduled",
            format!("assigned to {node}"),
            now,
        );
        scheduled.observed_generation = vm.metadata.generation;
        set_condition(&mut status.conditions, scheduled);
        self.store
            .transaction()
            .fenced(&self.fence)
            .put_raw(key, encode(assignment)?, None, Precondition::Absent)
            .update(&with_finalizer)?
            .put_status::<VirtualMachineSpec>(name, &status, precondition)?
            .commit()
            .await?;
        self.metrics.placements.inc();
        self.last_hold
            .lock()
            .expect("hold lock")
            .remove(name.as_str());
        let message = format!("assigned {name} to {node}");
        self.event(
            VirtualMachine::KIND,
            name,
            EventType::Normal,
            "Scheduled",
            &message,
        )
        .await;
        Ok(())
    }

    async fn apply_finish(&self, vm: &VirtualMachine) -> Result<(), StoreError> {
        let name = &vm.metadata.name;
        let mut finished = vm.clone();
        finished.metadata.finalizers.retain(|f| f != FINALIZER);
        let txn = self.store.transaction().fenced(&self.fence);
        let txn = if finished.metadata.finalizers.is_empty() {
            let revision = vm.metadata.revision().unwrap_or(0);
            txn.delete::<VirtualMachine>(name, Precondition::Revision(revision))?
                .delete_status::<VirtualMachineSpec>(name)?
        } else {
            txn.update(&finished)?
        };
        txn.commit().await?;
        self.last_hold
            .lock()
            .expect("hold lock")
            .remove(name.as_str());
        info!(vm = %name, "deleted after its domain was confirmed gone");
        self.delete_owned_volumes(vm).await
    }

    /// Deletes the Volumes the VM owns (`ownerReferences` naming it), now that its domain is
    /// gone; other volumes stay, as in Kubernetes. The storage role's finalizer then removes
    /// the backing storage before the Volume object disappears.
    async fn delete_owned_volumes(&self, vm: &VirtualMachine) -> Result<(), StoreError> {
        let (volumes, _) = self.store.list::<herd_crds::Volume>().await?;
        let owned = volumes.iter().filter(|volume| {
            volume.metadata.owner_references.iter().any(|owner| {
                owner.kind == VirtualMachine::KIND
                    && owner.name == vm.metadata.name
                    && owner
                        .uid
                        .as_ref()
                        .is_none_or(|uid| Some(uid) == vm.metadata.uid.as_ref())
            })
        });
        for volume in owned {
            match self
                .store
                .delete::<herd_crds::Volume>(&volume.metadata.name, Precondition::None)
                .await
            {
                Ok(_) | Err(StoreError::NotFound { .. }) => {
                    info!(vm = %vm.metadata.name, volume = %volume.metadata.name, "deleted a volume the VM owned");
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    async fn apply_hold(
        &self,
        vm: &VirtualMachine,
        condition: &'static str,
        reason: &'static str,
        message: String,
    ) -> Result<Option<Duration>, StoreError> {
        let name = &vm.metadata.name;
        let changed = self
            .last_hold
            .lock()
            .expect("hold lock")
            .insert(name.clone(), message.clone())
            .as_ref()
            != Some(&message);
        if changed {
            let (mut status, precondition) = self.current_status(name);
            let mut held = Condition::new(
                condition,
                ConditionStatus::False,
                reason,
                message.clone(),
                Utc::now(),
            );
            held.observed_generation = vm.metadata.generation;
            set_condition(&mut status.conditions, held);
            self.store
                .transaction()
                .fenced(&self.fence)
                .put_status::<VirtualMachineSpec>(name, &status, precondition)?
                .commit()
                .await?;
            if condition == "Scheduled" {
                self.metrics.unschedulable.inc();
                self.event(
                    VirtualMachine::KIND,
                    name,
                    EventType::Warning,
                    "FailedScheduling",
                    &message,
                )
                .await;
            }
        }
        Ok(Some(Duration::from_secs(5)))
    }

    pub(crate) fn current_status(&self, name: &str) -> (VirtualMachineStatus, Precondition) {
        match self.caches.vm_statuses.get(name) {
            Some(status) => (
                status.value.clone(),
                Precondition::Revision(status.revision),
            ),
            None => (VirtualMachineStatus::default(), Precondition::Absent),
        }
    }

    /// Records an event in the background (a reconcile does not wait for it); a failure to
    /// record is logged, never fatal.
    pub async fn event(
        &self,
        kind: &str,
        name: &str,
        type_: EventType,
        reason: &str,
        message: &str,
    ) {
        let recorder = self.recorder.clone();
        let (kind, name, reason, message) = (
            kind.to_owned(),
            name.to_owned(),
            reason.to_owned(),
            message.to_owned(),
        );
        tokio::spawn(async move {
            if let Err(error) = recorder
                .record(about(&kind, &name), type_, &reason, &message)
                .await
            {
                warn!(%kind, %name, %reason, %error, "cannot record event");
            }
        });
    }

    /// Node names with their VMs per the ledger (for node lifecycle).
    pub fn vms_by_node(&self) -> BTreeMap<String, Vec<String>> {
        let placed = self.placed_on.lock().expect("index lock");
        let mut by_node: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (vm, nodes) in placed.iter() {
            for node in nodes {
                by_node.entry(node.clone()).or_default().push(vm.clone());
            }
        }
        by_node
    }
}

fn encode(assignment: &Assignment) -> Result<String, StoreError> {
    herd_store::codec::encode_value(assignment).map_err(|message| StoreError::Encode {
        kind: "Assignment".into(),
        name: assignment.domain.name.clone(),
        message,
    })
}
