//! The balancer in the controller: every sample interval it builds the balancer's view from the
//! caches, calls the pure [`crate::balancer::balance`], records its explanation as Events, and
//! starts each planned move as a `Migration` (reason `Balancer`) whose status message carries
//! the explanation. The migration controller then carries the moves out, within the limits.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use herd_crds::event::EventType;
use herd_crds::migration::{MigrationReason, MigrationSpec, MigrationStatus};
use herd_crds::virtual_machine::VmState;
use herd_crds::{Migration, Node, Object, Resource};
use herd_store::StoreError;
use herd_store::txn::Precondition;
use tracing::{info, warn};

use crate::balancer::observe::{epoch_seconds, host_view, in_flight, past_move, vm_view};
use crate::balancer::{BalancerState, Decision, HostView, InFlight, PlannedMove, VmView, balance};
use crate::controller::Controller;

impl Controller {
    /// Runs the balancer until the task is dropped.
    pub async fn balance_forever(self: Arc<Self>) {
        let mut state = BalancerState::new();
        loop {
            // One sample per interval: building the view costs a pass over every node and VM.
            let interval = self.policy().balancer.sample_interval_seconds.max(1);
            tokio::time::sleep(Duration::from_secs(u64::from(interval))).await;
            let policy = self.policy();
            if !policy.balancer.enabled {
                continue;
            }
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
            if let Err(error) = self.start_move(planned).await {
                warn!(vm = %planned.vm, %error, "cannot start the balancer's move");
            }
        }
    }

    /// Creates the `Migration` of one planned move, its status holding the explanation.
    async fn start_move(&self, planned: &PlannedMove) -> Result<(), StoreError> {
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
}
