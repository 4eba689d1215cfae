//! What to do next for one VM: a pure function of the desired VM and what is observed.
//!
//! The plan is one step; the shell applies it and reconciles the VM again, until the plan is
//! [`VmAction::Nothing`]. Deletion runs through the `herd.dev/domain` finalizer:
//! 1. the assignment is deleted in one transaction with the annotation
//!    `herd.dev/released-from: <node>` on the VM, whose revision thereby records the moment;
//! 2. the finalizer is removed only when that node's heartbeat reports an observed revision at
//!    or after that moment and no longer lists the domain — the agent confirmed it is gone.

use herd_crds::VirtualMachine;
use herd_crds::assignment::Assignment;
use herd_crds::virtual_machine::RunState;
use herd_store::{Revision, Versioned};

use crate::render::VolumesNotReady;
use crate::scheduler::Placement;

/// The finalizer that keeps a VM until its domain is confirmed gone.
pub const FINALIZER: &str = "herd.dev/domain";
/// Annotation naming the node whose assignment was released for deletion.
pub const RELEASED_FROM: &str = "herd.dev/released-from";

/// One step towards the desired state.
#[derive(Clone, Debug, PartialEq)]
pub enum VmAction {
    Nothing,
    /// Write the first assignment, add the finalizer, set `Scheduled`.
    Place {
        node: String,
        assignment: Assignment,
    },
    /// Replace the assignment (run state or domain changed).
    Update {
        node: String,
        assignment: Assignment,
        revision: Revision,
    },
    /// Delete the assignment of a VM being deleted and record when.
    Release {
        node: String,
        revision: Revision,
    },
    /// Remove the finalizer and, if it was the last, the VM and its status.
    Finish,
    /// Delete the assignment of a VM that no longer exists.
    RemoveOrphan {
        node: String,
        revision: Revision,
    },
    /// Wait, saying why in a condition.
    Hold {
        condition: &'static str,
        reason: &'static str,
        message: String,
    },
}

/// What a node's latest heartbeat says about one VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeReport {
    pub observed_revision: Revision,
    pub runs_vm: bool,
}

/// What is observed of one VM.
pub struct Observed<'a> {
    /// The VM's assignments as (node, assignment); more than one only during a migration.
    pub assignments: &'a [(String, Versioned<Assignment>)],
    /// The heartbeat report of a node, if it is reporting.
    pub report: &'a dyn Fn(&str) -> Option<NodeReport>,
}

/// The next step for `vm` (`None` when it no longer exists).
pub fn plan_vm(
    vm: Option<&VirtualMachine>,
    observed: &Observed<'_>,
    render: impl FnOnce(&VirtualMachine) -> Result<Assignment, VolumesNotReady>,
    place: impl FnOnce(&VirtualMachine) -> Placement,
) -> VmAction {
    let Some(vm) = vm else {
        return match observed.assignments.first() {
            Some((node, assignment)) => VmAction::RemoveOrphan {
                node: node.clone(),
                revision: assignment.revision,
            },
            None => VmAction::Nothing,
        };
    };
    if vm.metadata.deletion_timestamp.is_some() {
        return plan_deletion(vm, observed);
    }
    match observed.assignments {
        [] => plan_placement(vm, render, place),
        [(node, current)] => match render(vm) {
            Ok(assignment)
                if assignment.run_state != current.value.run_state
                    || assignment.domain != current.value.domain =>
            {
                let assignment = Assignment {
                    migration: current.value.migration.clone(),
                    ..assignment
                };
                VmAction::Update {
                    node: node.clone(),
                    assignment,
                    revision: current.revision,
                }
            }
            Ok(_) => VmAction::Nothing,
            Err(VolumesNotReady(missing)) => hold_for_volumes(&missing),
        },
        // Several assignments: a migration is moving the VM; the migration controller owns it.
        _ => VmAction::Nothing,
    }
}

fn plan_placement(
    vm: &VirtualMachine,
    render: impl FnOnce(&VirtualMachine) -> Result<Assignment, VolumesNotReady>,
    place: impl FnOnce(&VirtualMachine) -> Placement,
) -> VmAction {
    if vm.spec.run_state == RunState::Stopped {
        return VmAction::Nothing;
    }
    let assignment = match render(vm) {
        Ok(assignment) => assignment,
        Err(VolumesNotReady(missing)) => return hold_for_volumes(&missing),
    };
    match place(vm) {
        Placement::Node(node) => VmAction::Place { node, assignment },
        Placement::Unschedulable { message } => VmAction::Hold {
            condition: "Scheduled",
            reason: "Unschedulable",
            message,
        },
    }
}

fn hold_for_volumes(missing: &[String]) -> VmAction {
    VmAction::Hold {
        condition: "VolumesReady",
        reason: "VolumesNotReady",
        message: format!("waiting for volumes to be ready: {}", missing.join(", ")),
    }
}

fn plan_deletion(vm: &VirtualMachine, observed: &Observed<'_>) -> VmAction {
    if !vm.metadata.finalizers.iter().any(|f| f == FINALIZER) {
        return VmAction::Nothing;
    }
    if let Some((node, assignment)) = observed.assignments.first() {
        return VmAction::Release {
            node: node.clone(),
            revision: assignment.revision,
        };
    }
    let Some(node) = vm.metadata.annotations.get(RELEASED_FROM) else {
        return VmAction::Finish; // never placed: nothing can be running
    };
    let released_at = vm.metadata.revision().unwrap_or(0);
    match (observed.report)(node) {
        Some(report) if report.observed_revision >= released_at && !report.runs_vm => {
            VmAction::Finish
        }
        Some(_) => VmAction::Hold {
            condition: "Deleting",
            reason: "WaitingForNode",
            message: format!("waiting for node {node} to confirm the domain is gone"),
        },
        None => VmAction::Hold {
            condition: "Deleting",
            reason: "NodeNotReporting",
            message: format!("node {node} is not reporting; the domain may still run there"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::render_assignment;

    fn vm() -> VirtualMachine {
        let mut vm: VirtualMachine = herd_crds::yaml::from_str(
            "apiVersion: herd.dev/v1alpha1\nkind: VirtualMachine\nmetadata: {name: small-1}\nspec: {memoryMiB: 256}",
        )
        .unwrap();
        vm.metadata.uid = Some("u".into());
        vm.metadata.generation = 1;
        vm.metadata.resource_version = Some("10".into());
        vm
    }

    fn render(vm: &VirtualMachine) -> Result<Assignment, VolumesNotReady> {
        render_assignment(vm, |_| None)
    }

    fn on(node: &str) -> impl FnOnce(&VirtualMachine) -> Placement {
        let node = node.to_owned();
        move |_| Placement::Node(node)
    }

    fn plan(
        vm: Option<&VirtualMachine>,
        assignments: &[(String, Versioned<Assignment>)],
        report: Option<NodeReport>,
    ) -> VmAction {
        let report = move |_: &str| report;
        plan_vm(
            vm,
            &Observed {
                assignments,
                report: &report,
            },
            render,
            on("ferby"),
        )
    }

    fn assigned(vm: &VirtualMachine, revision: Revision) -> Vec<(String, Versioned<Assignment>)> {
        vec![(
            "ferby".into(),
            Versioned {
                value: render(vm).unwrap(),
                revision,
            },
        )]
    }

    #[test]
    fn a_new_vm_is_placed_and_then_left_alone() {
        let vm = vm();
        assert!(
            matches!(plan(Some(&vm), &[], None), VmAction::Place { ref node, .. } if node == "ferby")
        );
        assert_eq!(plan(Some(&vm), &assigned(&vm, 11), None), VmAction::Nothing);
    }

    #[test]
    fn a_run_state_change_flows_to_the_assignment() {
        let vm = vm();
        let current = assigned(&vm, 11);
        let mut paused = vm.clone();
        paused.spec.run_state = RunState::Paused;
        match plan(Some(&paused), &current, None) {
            VmAction::Update {
                assignment,
                revision,
                ..
            } => {
                assert_eq!((assignment.run_state, revision), (RunState::Paused, 11));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_stopped_vm_is_not_placed_and_an_unschedulable_one_says_why() {
        let mut stopped = vm();
        stopped.spec.run_state = RunState::Stopped;
        assert_eq!(plan(Some(&stopped), &[], None), VmAction::Nothing);
        let report = |_: &str| None;
        let nowhere = |_: &VirtualMachine| Placement::Unschedulable {
            message: "0/1 nodes".into(),
        };
        let action = plan_vm(
            Some(&vm()),
            &Observed {
                assignments: &[],
                report: &report,
            },
            render,
            nowhere,
        );
        assert!(matches!(
            action,
            VmAction::Hold {
                condition: "Scheduled",
                ..
            }
        ));
    }

    #[test]
    fn deletion_releases_then_waits_for_the_node_to_confirm() {
        let mut deleting = vm();
        deleting.metadata.finalizers.push(FINALIZER.into());
        deleting.metadata.deletion_timestamp = Some(chrono::Utc::now());
        assert_eq!(
            plan(Some(&deleting), &assigned(&deleting, 11), None),
            VmAction::Release {
                node: "ferby".into(),
                revision: 11
            }
        );

        deleting
            .metadata
            .annotations
            .insert(RELEASED_FROM.into(), "ferby".into());
        deleting.metadata.resource_version = Some("20".into());
        let stale = NodeReport {
            observed_revision: 19,
            runs_vm: false,
        };
        let running = NodeReport {
            observed_revision: 25,
            runs_vm: true,
        };
        let gone = NodeReport {
            observed_revision: 20,
            runs_vm: false,
        };
        assert!(matches!(
            plan(Some(&deleting), &[], Some(stale)),
            VmAction::Hold {
                reason: "WaitingForNode",
                ..
            }
        ));
        assert!(matches!(
            plan(Some(&deleting), &[], Some(running)),
            VmAction::Hold {
                reason: "WaitingForNode",
                ..
            }
        ));
        assert!(matches!(
            plan(Some(&deleting), &[], None),
            VmAction::Hold {
                reason: "NodeNotReporting",
                ..
            }
        ));
        assert_eq!(plan(Some(&deleting), &[], Some(gone)), VmAction::Finish);
    }

    #[test]
    fn a_never_placed_vm_finishes_at_once_and_orphans_are_removed() {
        let mut deleting = vm();
        deleting.metadata.finalizers.push(FINALIZER.into());
        deleting.metadata.deletion_timestamp = Some(chrono::Utc::now());
        assert_eq!(plan(Some(&deleting), &[], None), VmAction::Finish);
        let orphan = assigned(&vm(), 7);
        assert_eq!(
            plan(None, &orphan, None),
            VmAction::RemoveOrphan {
                node: "ferby".into(),
                revision: 7
            }
        );
    }
}
