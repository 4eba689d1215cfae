//! Node lifecycle: records readiness transitions in each node's status, with an Event; marks
//! the VMs of a node that stopped reporting `Unknown`. Restarting them elsewhere needs fencing
//! first (a later issue), so nothing is started twice.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use herd_crds::condition::{Condition, ConditionStatus, find_condition, set_condition};
use herd_crds::event::EventType;
use herd_crds::node::{NodeSpec, NodeStatus};
use herd_crds::virtual_machine::VmState;
use herd_crds::{Node, Resource, VirtualMachineSpec};
use herd_store::StoreError;
use herd_store::txn::Precondition;
use tracing::{info, warn};

use crate::controller::Controller;
use crate::node_plan::{NodeTransition, node_transition};

/// How often readiness is checked (heartbeat changes also trigger a check).
pub const CHECK_PERIOD: Duration = Duration::from_secs(1);

/// Checks every node each [`CHECK_PERIOD`] until the task is dropped.
pub async fn run(controller: Arc<Controller>) {
    loop {
        for (name, _) in controller.caches.nodes.list() {
            if let Err(error) = check(&controller, &name).await {
                warn!(node = %name, %error, "cannot record node readiness; will retry");
            }
        }
        tokio::time::sleep(CHECK_PERIOD).await;
    }
}

async fn check(controller: &Controller, node: &str) -> Result<(), StoreError> {
    let recorded = controller.caches.node_statuses.get(node);
    let recorded_ready = recorded.as_ref().and_then(|s| {
        find_condition(&s.value.conditions, "Ready").map(|c| c.status == ConditionStatus::True)
    });
    let heartbeat = controller.caches.heartbeats.get(node);
    let transition = node_transition(recorded_ready, heartbeat.is_some());
    if transition == NodeTransition::Unchanged {
        return Ok(());
    }
    let now = Utc::now();
    let mut status: NodeStatus = heartbeat
        .as_ref()
        .map(|h| h.value.clone())
        .unwrap_or_else(|| {
            recorded
                .as_ref()
                .map(|r| r.value.clone())
                .unwrap_or_default()
        });
    status.conditions = recorded
        .as_ref()
        .map(|r| r.value.conditions.clone())
        .unwrap_or_default();
    // The balancer's section is the balancing loop's to write; carry it over.
    status.balancer = recorded.as_ref().and_then(|r| r.value.balancer.clone());
    let ready = transition == NodeTransition::BecameReady;
    status.ready = ready;
    let (state, reason, message) = if ready {
        (
            ConditionStatus::True,
            "HeartbeatReceived",
            "the node agent is reporting".to_owned(),
        )
    } else {
        (
            ConditionStatus::Unknown,
            "HeartbeatLost",
            "the node agent stopped reporting (its lease expired)".to_owned(),
        )
    };
    set_condition(
        &mut status.conditions,
        Condition::new("Ready", state, reason, message.clone(), now),
    );
    let precondition = recorded
        .as_ref()
        .map_or(Precondition::Absent, |r| Precondition::Revision(r.revision));
    controller
        .store
        .transaction()
        .fenced(&controller.fence)
        .put_status::<NodeSpec>(node, &status, precondition)?
        .commit()
        .await?;
    let (event_type, event_reason) = if ready {
        (EventType::Normal, "NodeReady")
    } else {
        (EventType::Warning, "NodeNotReady")
    };
    controller
        .event(Node::KIND, node, event_type, event_reason, &message)
        .await;
    info!(%node, ready, "node readiness changed");
    if !ready {
        mark_vms_unknown(controller, node).await;
    }
    Ok(())
}

/// Marks every VM assigned to `node` as `Unknown`: it may still run there, or not.
async fn mark_vms_unknown(controller: &Controller, node: &str) {
    let vms = controller.vms_by_node().remove(node).unwrap_or_default();
    for vm in vms {
        let Some(current) = controller.caches.vm_statuses.get(&vm) else {
            continue;
        };
        let mut status = current.value.clone();
        status.state = VmState::Unknown;
        let message = format!(
            "node {node} stopped reporting; the VM is not restarted elsewhere until the node is fenced"
        );
        set_condition(
            &mut status.conditions,
            Condition::new(
                "Ready",
                ConditionStatus::Unknown,
                "NodeNotReady",
                message,
                Utc::now(),
            ),
        );
        let written = controller
            .store
            .transaction()
            .fenced(&controller.fence)
            .put_status::<VirtualMachineSpec>(
                &vm,
                &status,
                Precondition::Revision(current.revision),
            );
        if let Err(error) = async { written?.commit().await }.await {
            warn!(%vm, %error, "cannot mark VM unknown");
        }
    }
}
