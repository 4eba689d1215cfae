//! The migration controller: carries out `Migration` objects with the state machine of
//! [`crate::migration_plan`], as fenced transactions over assignments, within the concurrency
//! limits of the `ClusterPolicy`.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use herd_crds::assignment::{Assignment, MigrationRole};
use herd_crds::event::EventType;
use herd_crds::migration::{MigrationPhase, MigrationSpec, MigrationStatus};
use herd_crds::node::DomainStatus;
use herd_crds::virtual_machine::RunState;
use herd_crds::{Migration, Node, Resource, VirtualMachine, VirtualMachineSpec};
use herd_store::txn::Precondition;
use herd_store::{StoreError, Versioned};
use tracing::{debug, info};

use crate::controller::Controller;
use crate::migration_plan::{
    MigrationStep, MigrationView, completion_timeout, incoming, is_incoming_for, plan_migration,
};
use crate::scheduler::{Misfit, Placement, misfit, schedule};

/// How often active migrations are looked at even without a change (timeouts).
const TICK: Duration = Duration::from_secs(1);

impl Controller {
    /// Queues every migration that has not ended.
    pub(crate) fn requeue_active_migrations(&self) {
        for (name, _) in self.caches.migrations.list() {
            let ended = self
                .caches
                .migration_statuses
                .get(&name)
                .is_some_and(|s| s.value.phase.is_final());
            if !ended {
                self.migration_queue.add(&name);
            }
        }
    }

    /// Re-queues active migrations every [`TICK`] (for their timeouts).
    pub async fn tick_migrations(self: Arc<Self>) {
        loop {
            self.requeue_active_migrations();
            tokio::time::sleep(TICK).await;
        }
    }

    /// One migration worker.
    pub async fn work_migrations(self: Arc<Self>) {
        loop {
            let name = self.migration_queue.next().await;
            match self.reconcile_migration(&name).await {
                Ok(()) => self.migration_queue.forget(&name),
                Err(error) => {
                    let delay = self.migration_queue.backoff(&name);
                    debug!(migration = %name, %error, ?delay, "migration step failed; retrying");
                    self.migration_queue.add_after(&name, delay);
                }
            }
            self.migration_queue.done(&name);
        }
    }

    async fn reconcile_migration(&self, name: &str) -> Result<(), StoreError> {
        let Some(migration) = self.caches.migrations.get(name) else {
            return Ok(());
        };
        let stored = self.caches.migration_statuses.get(name);
        let status = stored.as_ref().map(|s| s.value.clone()).unwrap_or_default();
        let vm = migration.spec.vm.clone();
        let assignments = self.assignments_of(&vm);
        let target = assignments
            .iter()
            .find(|(_, a)| is_incoming_for(&a.value, name));
        let source = assignments
            .iter()
            .find(|(_, a)| !matches!(a.value.migration, Some(MigrationRole::Incoming { .. })));
        let memory = source.map_or(0, |(_, a)| a.value.domain.memory_mib);
        let per_gib = self.policy().migration.completion_timeout_per_gib_seconds;
        let target_node = target
            .map(|(n, _)| n.as_str())
            .or(status.target_node.as_deref());
        let source_report = source.and_then(|(n, _)| self.domain_report(n, &vm));
        let sent = source_report
            .as_ref()
            .and_then(|d| d.as_ref()?.migration.as_ref())
            .filter(|r| r.migration == name)
            .map(|r| r.transferred_bytes);
        let last_progress = self.note_progress(name, status.phase, sent);
        let target_report = target_node.and_then(|n| self.domain_report(n, &vm));
        let view = MigrationView {
            name,
            vm: &vm,
            status: &status,
            source: source.map(|(n, a)| (n.as_str(), a)),
            target: target.map(|(n, a)| (n.as_str(), a)),
            source_report: source_report.as_ref().map(Option::as_ref),
            target_report: target_report.as_ref().map(Option::as_ref),
            completion_timeout: completion_timeout(memory, per_gib),
            progress_timeout: Duration::from_secs(u64::from(
                self.policy().migration.progress_timeout_seconds,
            )),
            last_progress,
            now: Utc::now(),
        };
        let step = plan_migration(&view);
        let precondition = stored
            .as_ref()
            .map_or(Precondition::Absent, |s| Precondition::Revision(s.revision));
        let sides = Sides {
            source: source.cloned(),
            target: target.cloned(),
        };
        self.apply_migration_step(&migration, status, precondition, sides, step)
            .await
    }

    /// Remembers when `name` last sent more bytes; returns that moment (while it runs).
    fn note_progress(
        &self,
        name: &str,
        phase: MigrationPhase,
        sent: Option<u64>,
    ) -> Option<chrono::DateTime<Utc>> {
        let mut progress = self.progress.lock().expect("progress lock");
        if phase != MigrationPhase::Running {
            progress.remove(name);
            return None;
        }
        let now = Utc::now();
        let entry = progress
            .entry(name.to_owned())
            .or_insert((sent.unwrap_or(0), now));
        if sent.is_some_and(|bytes| bytes > entry.0) {
            *entry = (sent.unwrap_or(0), now);
        }
        Some(entry.1)
    }

    /// The node's heartbeat report of `vm`'s domain: `None` when the node is silent,
    /// `Some(None)` when it reports but runs no such domain.
    fn domain_report(&self, node: &str, vm: &str) -> Option<Option<DomainStatus>> {
        let heartbeat = self.caches.heartbeats.get(node)?;
        Some(
            heartbeat
                .value
                .domains
                .iter()
                .find(|d| d.name == vm)
                .cloned(),
        )
    }

    /// The assignments of `vm` as (node, assignment).
    pub(crate) fn assignments_of(
        &self,
        vm: &str,
    ) -> Vec<(String, Versioned<herd_crds::assignment::Assignment>)> {
        let nodes: Vec<String> = self
            .placed_on
            .lock()
            .expect("index lock")
            .get(vm)
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        nodes
            .into_iter()
            .filter_map(|node| {
                self.caches
                    .assignments
                    .get(&format!("{node}/{vm}"))
                    .map(|a| (node, (*a).clone()))
            })
            .collect()
    }

    async fn apply_migration_step(
        &self,
        migration: &Migration,
        mut status: MigrationStatus,
        precondition: Precondition,
        sides: Sides,
        step: MigrationStep,
    ) -> Result<(), StoreError> {
        let name = migration.metadata.name.as_str();
        match step {
            MigrationStep::Wait => Ok(()),
            MigrationStep::Start => {
                self.start_migration(migration, status, precondition, sides)
                    .await
            }
            MigrationStep::Send { endpoint } => {
                let (Some((source, current)), Some((target, _))) = (sides.source, sides.target)
                else {
                    return Ok(());
                };
                let bandwidth =
                    current.value.domain.migration.bandwidth_mibps.or_else(|| {
                        Some(self.policy().migration.bandwidth_mibps).filter(|b| *b > 0.0)
                    });
                let role = MigrationRole::Outgoing {
                    migration: name.to_owned(),
                    endpoint,
                    target_node: target.clone(),
                    bandwidth_mibps: bandwidth,
                };
                let outgoing = Assignment {
                    migration: Some(role),
                    ..current.value.clone()
                };
                status.phase = MigrationPhase::Running;
                status.message = format!("sending from {source} to {target}");
                self.store
                    .transaction()
                    .fenced(&self.fence)
                    .put_raw(
                        self.store.keys().assignment(&source, &migration.spec.vm)?,
                        encode(&outgoing)?,
                        None,
                        Precondition::Revision(current.revision),
                    )
                    .put_status::<MigrationSpec>(name, &status, precondition)?
                    .commit()
                    .await?;
                Ok(())
            }
            MigrationStep::Switch {
                transferred,
                total_ms,
                downtime_ms,
            } => {
                self.switch_migration(
                    migration,
                    status,
                    precondition,
                    sides,
                    (transferred, total_ms, downtime_ms),
                )
                .await
            }
            MigrationStep::Abort { phase, message } => {
                self.abort_migration(migration, status, precondition, sides, phase, message)
                    .await
            }
        }
    }

    async fn start_migration(
        &self,
        migration: &Migration,
        mut status: MigrationStatus,
        precondition: Precondition,
        sides: Sides,
    ) -> Result<(), StoreError> {
        let name = migration.metadata.name.as_str();
        let vm_name = migration.spec.vm.as_str();
        let checked = self.check_start(migration, &sides);
        let (source, current, target) = match checked {
            Ok(ready) => ready,
            Err(Refusal::Started) => {
                self.migration_queue
                    .add_after(name, Duration::from_millis(100));
                return Ok(());
            }
            Err(Refusal::Wait(message)) => {
                if status.message != message {
                    status.message = message;
                    self.store
                        .put_status::<MigrationSpec>(name, &status, precondition)
                        .await?;
                }
                self.migration_queue.add_after(name, Duration::from_secs(1));
                return Ok(());
            }
            Err(Refusal::Fail(message)) => {
                status.phase = MigrationPhase::Failed;
                status.source_node = sides.source.as_ref().map(|(n, _)| n.clone());
                status.message = message.clone();
                status.end_time = Some(Utc::now());
                self.store
                    .transaction()
                    .fenced(&self.fence)
                    .put_status::<MigrationSpec>(name, &status, precondition)?
                    .commit()
                    .await?;
                self.migration_events(
                    migration,
                    None,
                    None,
                    EventType::Warning,
                    "MigrationFailed",
                    &message,
                )
                .await;
                return Ok(());
            }
        };
        let domain = &current.value.domain;
        self.ledger.lock().expect("ledger lock").reserve_incoming(
            vm_name,
            &target,
            domain.vcpus,
            domain.memory_mib,
        );
        status.phase = MigrationPhase::PreparingTarget;
        status.source_node = Some(source.clone());
        status.target_node = Some(target.clone());
        status.start_time = Some(Utc::now());
        status.message = format!("preparing {target} to receive {vm_name}");
        let written = self
            .store
            .transaction()
            .fenced(&self.fence)
            .put_raw(
                self.store.keys().assignment(&target, vm_name)?,
                encode(&incoming(&current.value, name))?,
                None,
                Precondition::Absent,
            )
            .put_status::<MigrationSpec>(name, &status, precondition)?
            .commit()
            .await;
        if let Err(error) = written {
            self.ledger
                .lock()
                .expect("ledger lock")
                .drop_incoming(vm_name);
            self.ended(name);
            return Err(error);
        }
        info!(migration = %name, vm = %vm_name, %source, %target, "migration started");
        let message =
            format!("live migration {name} of {vm_name} from {source} to {target} started");
        self.migration_events(
            migration,
            Some(&source),
            Some(&target),
            EventType::Normal,
            "MigrationStarted",
            &message,
        )
        .await;
        Ok(())
    }

    /// Checks a pending migration and picks its target: (source, source assignment, target).
    fn check_start(
        &self,
        migration: &Migration,
        sides: &Sides,
    ) -> Result<(String, Versioned<Assignment>, String), Refusal> {
        let vm_name = &migration.spec.vm;
        let vm = self
            .caches
            .vms
            .get(vm_name)
            .ok_or_else(|| Refusal::Fail(format!("VM {vm_name} does not exist")))?;
        let Some((source, current)) = sides.source.clone() else {
            return Err(Refusal::Fail(format!(
                "VM {vm_name} is not placed on any node"
            )));
        };
        if vm.spec.run_state == RunState::Stopped || vm.metadata.deletion_timestamp.is_some() {
            return Err(Refusal::Fail(format!(
                "VM {vm_name} is stopped or being deleted"
            )));
        }
        let local: Vec<&str> = current
            .value
            .domain
            .disks
            .iter()
            .filter(|d| !d.source.is_shared())
            .map(|d| d.name.as_str())
            .collect();
        if !local.is_empty() {
            return Err(Refusal::Fail(format!(
                "VM {vm_name} has local-only disk(s) {}: live migration needs every disk on shared storage (a Volume exported over NBD)",
                local.join(", ")
            )));
        }
        if let Some((target, _)) = &sides.target {
            // The start was written; the cache has not shown its status yet. Starting again
            // would count it twice against the limits.
            let _ = target;
            return Err(Refusal::Started);
        }
        if self.is_counted(&migration.metadata.name) {
            // Counted already: an earlier pass started it, and the cache still shows it
            // Pending. Trying again would fail its compare-and-swap, and the clean-up of that
            // failure would uncount a migration that is under way (seen: 3 out of a node whose
            // limit is 2).
            return Err(Refusal::Started);
        }
        self.within_limits(&migration.metadata.name, &source)?;
        let target = self
            .choose_target(&vm, &source, migration.spec.target_node.as_deref())
            .inspect_err(|_| self.ended(&migration.metadata.name))?;
        Ok((source, current, target))
    }

    /// Counts `name` as in flight from `source` unless the source or the cluster already has
    /// its maximum in flight; then it stays Pending.
    fn within_limits(&self, name: &str, source: &str) -> Result<(), Refusal> {
        let limits = self.policy().migration;
        let mut in_flight = self.in_flight.lock().expect("in-flight lock");
        let from_source = in_flight
            .iter()
            .filter(|(other, from)| other.as_str() != name && from.as_str() == source)
            .count();
        if from_source >= limits.max_outbound_per_node as usize {
            return Err(Refusal::Wait(format!(
                "waiting: {from_source} migrations already leave {source} (limit {})",
                limits.max_outbound_per_node
            )));
        }
        let total = in_flight
            .keys()
            .filter(|other| other.as_str() != name)
            .count();
        if total >= limits.max_in_cluster as usize {
            return Err(Refusal::Wait(format!(
                "waiting: {total} migrations in flight in the cluster (limit {})",
                limits.max_in_cluster
            )));
        }
        in_flight.insert(name.to_owned(), source.to_owned());
        Ok(())
    }

    /// Whether `name` counts against the limits (it was started and has not ended).
    fn is_counted(&self, name: &str) -> bool {
        self.in_flight
            .lock()
            .expect("in-flight lock")
            .contains_key(name)
    }

    /// `name` no longer counts against the limits.
    fn ended(&self, name: &str) {
        self.in_flight.lock().expect("in-flight lock").remove(name);
    }

    /// The named target if it may receive the VM, else the scheduler's choice among the nodes
    /// that accept migrations.
    fn choose_target(
        &self,
        vm: &VirtualMachine,
        source: &str,
        wanted: Option<&str>,
    ) -> Result<String, Refusal> {
        let overcommit = self.policy().scheduling.cpu_overcommit_ratio;
        let ledger = self.ledger.lock().expect("ledger lock");
        let mut spec = vm.spec.clone();
        spec.node_name = None; // a pin names where it runs now, not where it may go
        let views: Vec<_> = self
            .caches
            .nodes
            .list()
            .into_iter()
            .filter(|(name, node)| name != source && node.spec.accept_migrations)
            .map(|(name, node)| self.node_view(&name, &node, &ledger, !spec.affinity.is_empty()))
            .collect();
        if let Some(target) = wanted {
            let node: Option<std::sync::Arc<Node>> = self.caches.nodes.get(target);
            let Some(node) = node else {
                return Err(Refusal::Fail(format!(
                    "target node {target} does not exist"
                )));
            };
            if target == source {
                return Err(Refusal::Fail(format!(
                    "VM {} already runs on {target}",
                    vm.metadata.name
                )));
            }
            if !node.spec.accept_migrations {
                return Err(Refusal::Fail(format!(
                    "target node {target} does not accept migrations (acceptMigrations: false)"
                )));
            }
            let view = views
                .iter()
                .find(|v| v.name == target)
                .expect("accepting nodes are in the views");
            return match misfit(&spec, view, overcommit) {
                None => Ok(target.to_owned()),
                Some(reason) => Err(Refusal::Fail(format!(
                    "target node {target} cannot take the VM: {}",
                    describe(reason)
                ))),
            };
        }
        match schedule(&spec, &views, overcommit) {
            Placement::Node(node) => Ok(node),
            Placement::Unschedulable { message } => Err(Refusal::Fail(format!(
                "no node can receive the VM ({message}, not counting the source and nodes refusing migrations)"
            ))),
        }
    }

    async fn switch_migration(
        &self,
        migration: &Migration,
        mut status: MigrationStatus,
        precondition: Precondition,
        sides: Sides,
        (transferred, total_ms, downtime_ms): (u64, Option<u64>, Option<u64>),
    ) -> Result<(), StoreError> {
        let (Some((source, old)), Some((target, new))) = (sides.source, sides.target) else {
            return Ok(());
        };
        let name = migration.metadata.name.as_str();
        let vm = migration.spec.vm.as_str();
        let landed = Assignment {
            migration: None,
            ..new.value.clone()
        };
        let now = Utc::now();
        status.phase = MigrationPhase::Completed;
        status.end_time = Some(now);
        status.bytes_transferred = transferred;
        status.downtime_ms = downtime_ms;
        status.total_time_ms = total_ms.or_else(|| {
            status
                .start_time
                .map(|s| (now - s).num_milliseconds().max(0) as u64)
        });
        status.message = format!("{vm} runs on {target}");
        let (mut vm_status, vm_precondition) = self.current_status(vm);
        vm_status.node_name = Some(target.clone());
        self.store
            .transaction()
            .fenced(&self.fence)
            .delete_raw(
                self.store.keys().assignment(&source, vm)?,
                Precondition::Revision(old.revision),
            )
            .put_raw(
                self.store.keys().assignment(&target, vm)?,
                encode(&landed)?,
                None,
                Precondition::Revision(new.revision),
            )
            .put_status::<MigrationSpec>(name, &status, precondition)?
            .put_status::<VirtualMachineSpec>(vm, &vm_status, vm_precondition)?
            .commit()
            .await?;
        self.ledger
            .lock()
            .expect("ledger lock")
            .complete_incoming(vm);
        self.ended(name);
        info!(migration = %name, %vm, %source, %target, ?total_ms, ?downtime_ms, "migration completed");
        let message = format!(
            "{vm} moved from {source} to {target} in {} ms (downtime {} ms, {transferred} bytes)",
            status.total_time_ms.unwrap_or(0),
            downtime_ms.unwrap_or(0)
        );
        self.migration_events(
            migration,
            Some(&source),
            Some(&target),
            EventType::Normal,
            "MigrationCompleted",
            &message,
        )
        .await;
        Ok(())
    }

    async fn abort_migration(
        &self,
        migration: &Migration,
        mut status: MigrationStatus,
        precondition: Precondition,
        sides: Sides,
        phase: MigrationPhase,
        message: String,
    ) -> Result<(), StoreError> {
        let name = migration.metadata.name.as_str();
        let vm = migration.spec.vm.as_str();
        let mut txn = self.store.transaction().fenced(&self.fence);
        if let Some((target, incoming)) = &sides.target {
            txn = txn.delete_raw(
                self.store.keys().assignment(target, vm)?,
                Precondition::Revision(incoming.revision),
            );
        }
        if let Some((source, current)) = &sides.source
            && current.value.migration.is_some()
        {
            let cleared = Assignment {
                migration: None,
                ..current.value.clone()
            };
            txn = txn.put_raw(
                self.store.keys().assignment(source, vm)?,
                encode(&cleared)?,
                None,
                Precondition::Revision(current.revision),
            );
        }
        status.phase = phase;
        status.end_time = Some(Utc::now());
        status.message = format!(
            "{message}; {vm} stays on {}",
            status.source_node.clone().unwrap_or_default()
        );
        txn.put_status::<MigrationSpec>(name, &status, precondition)?
            .commit()
            .await?;
        self.ledger.lock().expect("ledger lock").drop_incoming(vm);
        self.ended(name);
        info!(migration = %name, %vm, %message, "migration cancelled");
        let (source, target) = (status.source_node.clone(), status.target_node.clone());
        self.migration_events(
            migration,
            source.as_deref(),
            target.as_deref(),
            EventType::Warning,
            "MigrationFailed",
            &status.message,
        )
        .await;
        Ok(())
    }

    /// Records an event on the VM, the migration and both nodes.
    async fn migration_events(
        &self,
        migration: &Migration,
        source: Option<&str>,
        target: Option<&str>,
        type_: EventType,
        reason: &str,
        message: &str,
    ) {
        self.event(
            Migration::KIND,
            &migration.metadata.name,
            type_,
            reason,
            message,
        )
        .await;
        self.event(
            VirtualMachine::KIND,
            &migration.spec.vm,
            type_,
            reason,
            message,
        )
        .await;
        for node in [source, target].into_iter().flatten() {
            self.event(Node::KIND, node, type_, reason, message).await;
        }
    }
}

/// The two assignments of a migrating VM, as (node, assignment).
struct Sides {
    source: Option<(String, Versioned<Assignment>)>,
    target: Option<(String, Versioned<Assignment>)>,
}

/// Why a pending migration does not start now.
enum Refusal {
    /// It has started already (its target assignment exists); its status is on its way.
    Started,
    /// Not now (limits): stays Pending.
    Wait(String),
    /// Never: the migration fails.
    Fail(String),
}

fn describe(reason: Misfit) -> &'static str {
    match reason {
        Misfit::NotPinned => "the VM is pinned elsewhere",
        Misfit::NotReady => "it is not ready",
        Misfit::Unschedulable => "it is cordoned",
        Misfit::SelectorMismatch => "it does not match the VM's node selector",
        Misfit::Affinity => "it lacks the VMs the VM's affinity requires",
        Misfit::AntiAffinity => "it runs VMs the VM's anti-affinity excludes",
        Misfit::LackCpu => "not enough vCPU room",
        Misfit::LackMemory => "not enough memory",
    }
}

fn encode(assignment: &Assignment) -> Result<String, StoreError> {
    herd_store::codec::encode_value(assignment).map_err(|message| StoreError::Encode {
        kind: "Assignment".into(),
        name: assignment.domain.name.clone(),
        message,
    })
}
