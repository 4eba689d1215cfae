//! The balancer in the controller: every sample interval it builds the balancer's view from the
//! caches, calls the pure [`crate::balancer::balance`], records its explanation as Events,
//! publishes each node's points in its status (`NodeStatus.balancer`, only when they change),
//! and starts each planned move as a `Migration` (reason `Balancer`) whose status carries the
//! decision (`MigrationStatus.decision`: points, candidates, predicted effect). The migration
//! controller then carries the moves out, within the limits.
//!
//! The node status key has another writer, the node lifecycle (readiness transitions). Both
//! read-modify-write the whole value with a compare-and-swap on its revision and keep the
//! other's fields; a lost race is re-read and retried.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use herd_crds::cluster_policy::BalancerPolicy;
use herd_crds::event::EventType;
use herd_crds::migration::{MigrationReason, MigrationSpec, MigrationStatus};
use herd_crds::node::{NodeSpec, NodeStatus};
use herd_crds::virtual_machine::VmState;
use herd_crds::{Migration, Node, Object, Resource};
use herd_store::txn::Precondition;
use herd_store::{StoreError, Versioned};
use tracing::{info, warn};

use crate::balancer::observe::{epoch_seconds, host_view, in_flight, past_move, vm_view};
use crate::balancer::{
    BalancerState, Decision, HostView, InFlight, NodePoints, PlannedMove, VmView, balance, status,
};
use crate::controller::Controller;

/// Compare-and-swap attempts to publish one node's points before waiting for the next sample.
const POINTS_WRITE_ATTEMPTS: usize = 3;

impl Controller {
    /// Runs the balancer until the task is dropped.
    pub async fn balance_forever(self: Arc<Self>) {
        let mut state = BalancerState::new();
        loop {
            // One sample per interval: building the view costs a pass over every node and VM.
            let interval = self.policy().balancer.sample_interval_seconds.max(1);
            tokio::time::sleep(Duration::from_secs(u64::from(interval))).await;
            // Disabled, the balancer still counts points (and publishes them); it moves nothing.
            let policy = self.policy();
            let now = epoch_seconds(Utc::now());
            let (hosts, vms, moving) = self.balancer_inputs(now);
            let decision = balance(
                &policy.balancer,
                &policy.migration,
                &mut state,
                &hosts,
                &vms,
                &moving,
                now,
            );
            if decision.sampled {
                self.record(&decision).await;
                self.publish_points(&state, &policy.balancer).await;
            }
        }
    }

    /// Migrations with their statuses, from the caches.
    fn migrations_with_status(&self) -> Vec<Migration> {
        self.caches
            .migrations
            .list()
            .into_iter()
            .map(|(name, migration)| {
                let mut merged = (*migration).clone();
                merged.status = self
                    .caches
                    .migration_statuses
                    .get(&name)
                    .map(|s| s.value.clone());
                merged
            })
            .collect()
    }

    /// The balancer's view: every ready node, every placed VM, every migration under way.
    fn balancer_inputs(&self, now: f64) -> (Vec<HostView>, Vec<VmView>, Vec<InFlight>) {
        let overcommit = self.policy().scheduling.cpu_overcommit_ratio;
        let migrations = self.migrations_with_status();
        let hosts = {
            let ledger = self.ledger.lock().expect("ledger lock");
            self.caches
                .nodes
                .list()
                .into_iter()
                .filter_map(|(name, node)| {
                    let heartbeat = self.caches.heartbeats.get(&name)?;
                    let view = self.node_view(&name, &node, &ledger, false);
                    Some(host_view(view, &node.spec, &heartbeat.value, overcommit))
                })
                .collect()
        };
        let mut moves: BTreeMap<String, Vec<_>> = BTreeMap::new();
        for migration in &migrations {
            if let Some(done) = past_move(migration) {
                moves
                    .entry(migration.spec.vm.clone())
                    .or_default()
                    .push(done);
            }
        }
        let placed: Vec<(String, String)> = {
            let index = self.placed_on.lock().expect("index lock");
            index
                .iter()
                .filter(|(_, nodes)| nodes.len() == 1)
                .filter_map(|(vm, nodes)| Some((vm.clone(), nodes.first()?.clone())))
                .collect()
        };
        let vms = placed
            .into_iter()
            .filter_map(|(name, node)| {
                let vm = self.caches.vms.get(&name)?;
                let status = self
                    .caches
                    .vm_statuses
                    .get(&name)
                    .map(|s| s.value.clone())
                    .unwrap_or_default();
                let vm_moves = moves.remove(&name).unwrap_or_default();
                let arrived = vm_moves
                    .iter()
                    .map(|m| m.at)
                    .fold(status.started_at.map_or(0.0, epoch_seconds), f64::max);
                let state = if status.node_name.as_deref() == Some(node.as_str()) {
                    status.state
                } else {
                    VmState::Pending
                };
                Some(vm_view(
                    &name,
                    &node,
                    Arc::new(vm.spec.clone()),
                    vm.metadata.labels.clone(),
                    state,
                    arrived,
                    vm_moves,
                ))
            })
            .collect();
        let moving = migrations
            .iter()
            .filter_map(|m| in_flight(m, now))
            .collect();
        (hosts, vms, moving)
    }

    /// Writes the decision's Events and starts its moves.
    async fn record(&self, decision: &Decision) {
        for event in &decision.events {
            let type_ = if event.kind.is_warning() {
                EventType::Warning
            } else {
                EventType::Normal
            };
            self.event(
                Node::KIND,
                &event.node,
                type_,
                event.kind.reason(),
                &event.message,
            )
            .await;
        }
        for planned in &decision.moves {
            if let Err(error) = self.start_move(decision, planned).await {
                warn!(vm = %planned.vm, %error, "cannot start the balancer's move");
            }
        }
    }

    /// Creates the `Migration` of one planned move, its status holding the decision.
    async fn start_move(
        &self,
        decision: &Decision,
        planned: &PlannedMove,
    ) -> Result<(), StoreError> {
        let suffix = format!("{:x}", Utc::now().timestamp_micros() & 0xffffff);
        let base: String = planned
            .vm
            .chars()
            .take(herd_crds::names::MAX_NAME_LEN - 12)
            .collect();
        let name = format!("{}-bal-{suffix}", base.trim_end_matches('-'));
        let spec = MigrationSpec {
            vm: planned.vm.clone(),
            target_node: Some(planned.to.clone()),
            reason: MigrationReason::Balancer,
        };
        let mut migration: Migration = Object::new(name.clone(), spec);
        migration.metadata.annotations.insert(
            "herd.dev/balancer-explanation".into(),
            planned.explanation.clone(),
        );
        let status = MigrationStatus {
            source_node: Some(planned.from.clone()),
            message: planned.explanation.clone(),
            decision: Some(status::decision(decision, planned)),
            ..MigrationStatus::default()
        };
        self.store
            .transaction()
            .fenced(&self.fence)
            .create(&migration)?
            .put_status::<MigrationSpec>(&name, &status, Precondition::Absent)?
            .commit()
            .await?;
        info!(migration = %name, vm = %planned.vm, from = %planned.from, to = %planned.to, "balancer started a move");
        self.event(
            Migration::KIND,
            &name,
            EventType::Normal,
            "BalancerMove",
            &planned.explanation,
        )
        .await;
        Ok(())
    }

    /// Writes the points of every node whose section changed.
    async fn publish_points(&self, state: &BalancerState, policy: &BalancerPolicy) {
        for (node, points) in state.nodes() {
            // The node lifecycle writes the first status when the node turns ready; until
            // then there is nothing to add to (the next change is published).
            let Some(recorded) = self.caches.node_statuses.get(node) else {
                continue;
            };
            let recorded_points = recorded.value.balancer.as_ref();
            let power_off = state.is_power_off_candidate(node);
            if status::node_status(recorded_points, points, policy, power_off).is_none() {
                continue; // the common case: nothing changed, nothing copied or written
            }
            if let Err(error) = self
                .write_points(node, (*recorded).clone(), (points, power_off), policy)
                .await
            {
                warn!(%node, %error, "cannot publish the node's balancer points");
            }
        }
    }

    /// Sets `status.balancer` of `node`, starting from `current`: a fenced compare-and-swap,
    /// re-read from the store and retried when another writer came first.
    async fn write_points(
        &self,
        node: &str,
        mut current: Versioned<NodeStatus>,
        (points, power_off): (&NodePoints, bool),
        policy: &BalancerPolicy,
    ) -> Result<(), StoreError> {
        for _ in 0..POINTS_WRITE_ATTEMPTS {
            let recorded = current.value.balancer.as_ref();
            let Some(next) = status::node_status(recorded, points, policy, power_off) else {
                return Ok(());
            };
            let mut value = current.value.clone();
            value.balancer = Some(next);
            let written = self
                .store
                .transaction()
                .fenced(&self.fence)
                .put_status::<NodeSpec>(node, &value, Precondition::Revision(current.revision))?
                .commit()
                .await;
            match written {
                Err(StoreError::Conflict { .. }) => {
                    match self.store.get_status::<NodeSpec>(node).await? {
                        Some(fresh) => current = fresh,
                        None => return Ok(()),
                    }
                }
                other => return other.map(|_| ()),
            }
        }
        Ok(())
    }
}
