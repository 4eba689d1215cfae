//! What the agent must do to its hypervisor (pure): assignments against running domains.
//!
//! Per assigned VM: absent → create (paused when `runState: Paused`; nothing when `Stopped`);
//! present with another VM's uid (an older VM of the same name) → destroy first; running but
//! `Paused` wanted → pause, and back; `Stopped` wanted → graceful shutdown; shut down or crashed
//! but `Running` wanted → destroy, so the next pass starts it again. A domain with no
//! assignment was unassigned (the VM was deleted or moved) → destroy.

use std::collections::BTreeMap;

use herd_crds::assignment::{Assignment, DomainSpec};
use herd_crds::virtual_machine::RunState;

use crate::hypervisor::{DomainInfo, DomainState};

/// One operation on the hypervisor.
#[derive(Clone, Debug, PartialEq)]
pub enum DomainAction {
    Create { spec: Box<DomainSpec>, paused: bool },
    Pause(String),
    Unpause(String),
    Shutdown(String),
    Destroy(String),
}

/// The actions that bring `domains` to `assignments` (VM name → assignment), in name order.
pub fn plan_domains(
    assignments: &BTreeMap<String, Assignment>,
    domains: &[DomainInfo],
) -> Vec<DomainAction> {
    let by_name: BTreeMap<&str, &DomainInfo> =
        domains.iter().map(|d| (d.name.as_str(), d)).collect();
    let mut actions = Vec::new();
    for (name, assignment) in assignments {
        if assignment.migration.is_some() {
            continue; // live migration drives these domains (the migration issue)
        }
        if let Some(action) = plan_one(name, assignment, by_name.get(name.as_str()).copied()) {
            actions.push(action);
        }
    }
    for domain in domains {
        if !assignments.contains_key(&domain.name) {
            actions.push(DomainAction::Destroy(domain.name.clone()));
        }
    }
    actions
}

fn plan_one(
    name: &str,
    assignment: &Assignment,
    domain: Option<&DomainInfo>,
) -> Option<DomainAction> {
    let wanted = assignment.run_state;
    let Some(domain) = domain else {
        return match wanted {
            RunState::Stopped => None,
            RunState::Running | RunState::Paused => Some(DomainAction::Create {
                spec: Box::new(assignment.domain.clone()),
                paused: wanted == RunState::Paused,
            }),
        };
    };
    if domain
        .uid
        .as_deref()
        .is_some_and(|uid| uid != assignment.domain.uid)
    {
        return Some(DomainAction::Destroy(name.to_owned()));
    }
    let name = name.to_owned();
    match (wanted, domain.state) {
        (RunState::Running, DomainState::Paused) => Some(DomainAction::Unpause(name)),
        (RunState::Paused, DomainState::Running) => Some(DomainAction::Pause(name)),
        (RunState::Stopped, DomainState::Running | DomainState::Paused) => {
            Some(DomainAction::Shutdown(name))
        }
        (RunState::Stopped, DomainState::Shutdown | DomainState::Crashed) => {
            Some(DomainAction::Destroy(name))
        }
        (RunState::Running | RunState::Paused, DomainState::Shutdown | DomainState::Crashed) => {
            Some(DomainAction::Destroy(name))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_crds::assignment::MigrationRole;

    fn assignment(name: &str, uid: &str, run_state: RunState) -> Assignment {
        let text = format!(
            "generation: 1\nrunState: {run_state:?}\ndomain: {{name: {name}, uid: {uid}, vcpus: 1, memoryMiB: 32}}\n"
        );
        herd_crds::yaml::from_str(&text).unwrap()
    }

    fn domain(name: &str, uid: &str, state: DomainState) -> DomainInfo {
        DomainInfo {
            name: name.into(),
            uid: Some(uid.into()),
            id: "1".into(),
            state,
            cpu_percent: 0.0,
            vcpus: vec![],
        }
    }

    fn plan(
        assigned: &[(&str, &str, RunState)],
        running: &[(&str, &str, DomainState)],
    ) -> Vec<DomainAction> {
        let assignments = assigned
            .iter()
            .map(|(n, u, s)| (n.to_string(), assignment(n, u, *s)))
            .collect();
        let domains: Vec<DomainInfo> = running.iter().map(|(n, u, s)| domain(n, u, *s)).collect();
        plan_domains(&assignments, &domains)
    }

    #[test]
    fn absent_domains_are_created_as_asked() {
        let actions = plan(
            &[
                ("a", "u", RunState::Running),
                ("b", "u", RunState::Paused),
                ("c", "u", RunState::Stopped),
            ],
            &[],
        );
        assert!(
            matches!(&actions[0], DomainAction::Create { spec, paused: false } if spec.name == "a")
        );
        assert!(
            matches!(&actions[1], DomainAction::Create { spec, paused: true } if spec.name == "b")
        );
        assert_eq!(actions.len(), 2);
    }

    #[test]
    fn run_state_changes_map_to_operations() {
        use DomainState::*;
        let cases = [
            (
                RunState::Running,
                Paused,
                Some(DomainAction::Unpause("a".into())),
            ),
            (
                RunState::Paused,
                Running,
                Some(DomainAction::Pause("a".into())),
            ),
            (
                RunState::Stopped,
                Running,
                Some(DomainAction::Shutdown("a".into())),
            ),
            (
                RunState::Running,
                Crashed,
                Some(DomainAction::Destroy("a".into())),
            ),
            (RunState::Running, Running, None),
            (RunState::Paused, Paused, None),
        ];
        for (wanted, state, expected) in cases {
            assert_eq!(
                plan(&[("a", "u", wanted)], &[("a", "u", state)])
                    .into_iter()
                    .next(),
                expected,
                "{wanted:?} {state:?}"
            );
        }
    }

    #[test]
    fn unassigned_and_foreign_domains_are_destroyed() {
        assert_eq!(
            plan(&[], &[("gone", "u", DomainState::Running)]),
            [DomainAction::Destroy("gone".into())]
        );
        assert_eq!(
            plan(
                &[("a", "new", RunState::Running)],
                &[("a", "old", DomainState::Running)]
            ),
            [DomainAction::Destroy("a".into())]
        );
    }

    #[test]
    fn migrating_domains_are_left_to_the_migration() {
        let mut moving = assignment("a", "u", RunState::Running);
        moving.migration = Some(MigrationRole::Incoming {
            migration: "m".into(),
        });
        let assignments = [("a".to_string(), moving)].into_iter().collect();
        assert!(plan_domains(&assignments, &[]).is_empty());
    }
}
