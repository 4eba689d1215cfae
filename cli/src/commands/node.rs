//! The node verbs: `cordon`, `uncordon`, `drain`, and `node NAME --accept-migrations=…
//! --heartbeat-interval=…`. Each edits the node's spec with a compare-and-swap, retried on
//! conflict.
//!
//! `drain` cordons the node, then creates one `Migration` (reason `Drain`, no target: the
//! controller picks one) for every VM whose status places it on the node — except VMs being
//! deleted and VMs that already have a migration in progress — and prints them. It does not
//! wait for the migrations; `herdctl get migrations -w` follows them.

use std::collections::BTreeMap;

use herd_crds::migration::MigrationReason;
use herd_crds::{Migration, Node, VirtualMachine};
use herd_store::Store;

use crate::args::{NodeArg, NodeArgs};
use crate::commands::Target;
use crate::commands::get::warn;
use crate::commands::vm::create_migration;
use crate::edit::{Edited, edit};
use crate::failure::Failure;
use crate::fetch;
use crate::output::line;

/// Cordons (`unschedulable: true`) or uncordons the node; prints what it did.
pub async fn cordon(target: &Target, args: NodeArg, unschedulable: bool) -> Result<(), Failure> {
    let store = target.connect().await?;
    set_unschedulable(&store, &args.node, unschedulable).await
}

async fn set_unschedulable(store: &Store, node: &str, unschedulable: bool) -> Result<(), Failure> {
    let (_, edited) = edit::<Node, _>(store, node, |n| {
        n.spec.unschedulable = unschedulable;
        Ok(())
    })
    .await?;
    let verb = if unschedulable {
        "cordoned"
    } else {
        "uncordoned"
    };
    match edited {
        Edited::Changed => line(format!("node/{node} {verb}")),
        Edited::Unchanged => line(format!("node/{node} already {verb}")),
    }
}

pub async fn drain(target: &Target, args: NodeArg) -> Result<(), Failure> {
    let store = target.connect().await?;
    set_unschedulable(&store, &args.node, true).await?;
    let (_, vms) = fetch::read::<VirtualMachine>(&store, None).await?;
    let (vms, problems) = vms.all::<VirtualMachine>();
    warn(&problems);
    let (_, migrations) = fetch::read::<Migration>(&store, None).await?;
    let (migrations, problems) = migrations.all::<Migration>();
    warn(&problems);
    let active = active_migrations(&migrations);
    for vm in placed_on(&vms, &args.node) {
        match active.get(vm) {
            Some(existing) => line(format!(
                "migration/{existing} already in progress for virtualmachine/{vm}"
            ))?,
            None => {
                let name = create_migration(&store, vm, None, MigrationReason::Drain).await?;
                line(format!("migration/{name} created"))?;
            }
        }
    }
    Ok(())
}

/// The VMs whose status places them on `node`, not being deleted, by name.
pub fn placed_on<'a>(vms: &'a [VirtualMachine], node: &str) -> Vec<&'a str> {
    vms.iter()
        .filter(|vm| vm.metadata.deletion_timestamp.is_none())
        .filter(|vm| {
            vm.status
                .as_ref()
                .is_some_and(|s| s.node_name.as_deref() == Some(node))
        })
        .map(|vm| vm.metadata.name.as_str())
        .collect()
}

/// VM name → the migration of it that has not ended yet.
pub fn active_migrations(migrations: &[Migration]) -> BTreeMap<&str, &str> {
    migrations
        .iter()
        .filter(|m| !m.status.as_ref().is_some_and(|s| s.phase.is_final()))
        .map(|m| (m.spec.vm.as_str(), m.metadata.name.as_str()))
        .collect()
}

pub async fn settings(target: &Target, args: NodeArgs) -> Result<(), Failure> {
    let store = target.connect().await?;
    let (_, edited) = edit::<Node, _>(&store, &args.node, |node| {
        if let Some(accept) = args.accept_migrations {
            node.spec.accept_migrations = accept;
        }
        if let Some(seconds) = args.heartbeat_interval {
            node.spec.heartbeat_interval_seconds = seconds;
        }
        Ok(())
    })
    .await?;
    let verb = match edited {
        Edited::Changed => "configured",
        Edited::Unchanged => "unchanged",
    };
    line(format!("node/{} {verb}", args.node))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use herd_crds::migration::{MigrationPhase, MigrationSpec, MigrationStatus};
    use herd_crds::{Object, VirtualMachineStatus};

    fn vm(name: &str, node: Option<&str>) -> VirtualMachine {
        let mut vm: VirtualMachine =
            Object::new(name, herd_crds::yaml::from_str("memoryMiB: 64").unwrap());
        vm.status = node.map(|n| VirtualMachineStatus {
            node_name: Some(n.into()),
            ..VirtualMachineStatus::default()
        });
        vm
    }

    fn migration(name: &str, vm: &str, phase: Option<MigrationPhase>) -> Migration {
        let spec = MigrationSpec {
            vm: vm.into(),
            target_node: None,
            reason: MigrationReason::Manual,
        };
        let mut migration: Migration = Object::new(name, spec);
        migration.status = phase.map(|phase| MigrationStatus {
            phase,
            ..MigrationStatus::default()
        });
        migration
    }

    #[test]
    fn drain_moves_the_vms_placed_on_the_node_and_not_being_deleted() {
        let mut leaving = vm("c", Some("ferby"));
        leaving.metadata.deletion_timestamp = Some(Utc::now());
        let vms = [
            vm("a", Some("ferby")),
            vm("b", Some("gerby")),
            leaving,
            vm("d", None),
        ];
        assert_eq!(placed_on(&vms, "ferby"), ["a"]);
    }

    #[test]
    fn ended_migrations_are_not_in_progress() {
        let migrations = [
            migration("a-1", "a", Some(MigrationPhase::Completed)),
            migration("a-2", "a", Some(MigrationPhase::Running)),
            migration("b-1", "b", None),
            migration("c-1", "c", Some(MigrationPhase::Failed)),
        ];
        let active = active_migrations(&migrations);
        assert_eq!(active, BTreeMap::from([("a", "a-2"), ("b", "b-1")]));
    }
}
