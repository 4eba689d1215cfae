//! The live-migration state machine (pure): what to do next for one `Migration`.
//!
//! ```text
//! Pending ──(checks pass, room within limits)──► PreparingTarget ──(target reports endpoint)──►
//! Running ──(source reports Completed, target runs)──► Completed
//!    any phase ──(refused, agent gone, timeout, VM gone)──► Failed / Aborted
//! ```
//! Every step is written by the shell as one fenced transaction over the assignments:
//! `Start` adds the target's assignment with an `Incoming` role; `Send` gives the source's
//! assignment an `Outgoing` role with the target's endpoint; `Switch` deletes the source's
//! assignment and makes the target's a plain one (the VM now lives there); `Abort` deletes the
//! target's assignment and clears the source's role, so the VM keeps running on the source.

use std::time::Duration;

use chrono::{DateTime, Utc};
use herd_crds::assignment::{Assignment, MigrationRole};
use herd_crds::migration::{MigrationPhase, MigrationStatus};
use herd_crds::node::{DomainStatus, MigrationReportState};
use herd_crds::virtual_machine::VmState;
use herd_store::{Revision, Versioned};

/// What is observed of one migration.
#[derive(Clone, Debug)]
pub struct MigrationView<'a> {
    pub name: &'a str,
    pub vm: &'a str,
    pub status: &'a MigrationStatus,
    /// The VM's assignment that is not the incoming one: (node, assignment).
    pub source: Option<(&'a str, &'a Versioned<Assignment>)>,
    /// The VM's assignment on the target with this migration's `Incoming` role.
    pub target: Option<(&'a str, &'a Versioned<Assignment>)>,
    /// The source node's heartbeat report of the VM's domain; `None` if the node is silent.
    pub source_report: Option<Option<&'a DomainStatus>>,
    pub target_report: Option<Option<&'a DomainStatus>>,
    /// How long the migration may run before it is aborted.
    pub completion_timeout: Duration,
    /// How long the source may report no new bytes sent before the migration is aborted.
    pub progress_timeout: Duration,
    /// When the source last reported more bytes sent (the shell remembers it).
    pub last_progress: Option<DateTime<Utc>>,
    pub now: DateTime<Utc>,
}

/// The next step of one migration.
#[derive(Clone, Debug, PartialEq)]
pub enum MigrationStep {
    /// Nothing to do until something changes (or the timeout check).
    Wait,
    /// Check the VM and choose a target, then add the target's incoming assignment.
    Start,
    /// Give the source its outgoing role towards `endpoint`.
    Send { endpoint: String },
    /// The VM runs on the target: move the assignment there.
    Switch {
        transferred: u64,
        total_ms: Option<u64>,
        downtime_ms: Option<u64>,
    },
    /// Undo, leaving the VM on its source, and end in `phase` with `message`.
    Abort {
        phase: MigrationPhase,
        message: String,
    },
}

/// The step for `view`.
pub fn plan_migration(view: &MigrationView<'_>) -> MigrationStep {
    let status = view.status;
    if status.phase.is_final() {
        return MigrationStep::Wait;
    }
    if status.phase == MigrationPhase::Pending {
        return MigrationStep::Start;
    }
    if let Some(abort) = check_health(view) {
        return abort;
    }
    match status.phase {
        MigrationPhase::PreparingTarget => match view
            .target_report
            .flatten()
            .and_then(|d| d.incoming_endpoint.clone())
        {
            Some(endpoint) => MigrationStep::Send { endpoint },
            None => MigrationStep::Wait,
        },
        MigrationPhase::Running => plan_running(view),
        _ => MigrationStep::Wait,
    }
}

/// Aborts when a party vanished or time ran out. A missing assignment is waited for (the
/// cache may not show a write of this controller yet); the timeout ends a wait that lasts.
fn check_health(view: &MigrationView<'_>) -> Option<MigrationStep> {
    let fail = |message: String| {
        Some(MigrationStep::Abort {
            phase: MigrationPhase::Failed,
            message,
        })
    };
    let source = view
        .source
        .map(|(node, _)| node)
        .or(view.status.source_node.as_deref())
        .unwrap_or_default();
    let target = view
        .target
        .map(|(node, _)| node)
        .or(view.status.target_node.as_deref())
        .unwrap_or_default();
    if view.source_report.is_none() {
        return fail(format!("source node {source} stopped reporting"));
    }
    if view.target_report.is_none() {
        return fail(format!("target node {target} stopped reporting"));
    }
    let started = view.status.start_time.unwrap_or(view.now);
    let elapsed = (view.now - started).to_std().unwrap_or_default();
    if elapsed > view.completion_timeout {
        return Some(MigrationStep::Abort {
            phase: MigrationPhase::Aborted,
            message: format!(
                "did not complete within {:?}; cancelled",
                view.completion_timeout
            ),
        });
    }
    let stalled = view
        .last_progress
        .map(|at| (view.now - at).to_std().unwrap_or_default());
    if view.status.phase == MigrationPhase::Running
        && stalled.is_some_and(|s| s > view.progress_timeout)
    {
        return Some(MigrationStep::Abort {
            phase: MigrationPhase::Aborted,
            message: format!(
                "made no progress for {:?}; cancelled",
                view.progress_timeout
            ),
        });
    }
    if view.source.is_none() || view.target.is_none() {
        return Some(MigrationStep::Wait);
    }
    None
}

fn plan_running(view: &MigrationView<'_>) -> MigrationStep {
    let report = view
        .source_report
        .flatten()
        .and_then(|d| d.migration.as_ref())
        .filter(|r| r.migration == view.name);
    let Some(report) = report else {
        return MigrationStep::Wait;
    };
    match report.state {
        MigrationReportState::Active => MigrationStep::Wait,
        MigrationReportState::Completed => {
            // The source QEMU ends only after the target runs.
            let target_runs = view
                .target_report
                .flatten()
                .is_some_and(|d| d.state == VmState::Running);
            if target_runs {
                MigrationStep::Switch {
                    transferred: report.transferred_bytes,
                    total_ms: report.total_time_ms,
                    downtime_ms: report.downtime_ms,
                }
            } else {
                MigrationStep::Wait
            }
        }
        MigrationReportState::Failed | MigrationReportState::Cancelled => MigrationStep::Abort {
            phase: MigrationPhase::Failed,
            message: format!(
                "the hypervisor reported the migration {:?}: {}",
                report.state, report.message
            ),
        },
    }
}

/// Shortest completion timeout, whatever the guest's size (setting up both ends takes time).
pub const MIN_COMPLETION_TIMEOUT: Duration = Duration::from_secs(10);

/// The migration's completion timeout: `per_gib` seconds per GiB of guest memory, at least
/// [`MIN_COMPLETION_TIMEOUT`].
pub fn completion_timeout(memory_mib: u64, per_gib_seconds: u32) -> Duration {
    let seconds = (memory_mib as f64 / 1024.0) * f64::from(per_gib_seconds);
    Duration::from_secs_f64(seconds).max(MIN_COMPLETION_TIMEOUT)
}

/// The assignment of the target: the VM's domain with an `Incoming` role.
pub fn incoming(source: &Assignment, migration: &str) -> Assignment {
    Assignment {
        migration: Some(MigrationRole::Incoming {
            migration: migration.to_owned(),
        }),
        ..source.clone()
    }
}

/// Whether `assignment` is the incoming side of `migration`.
pub fn is_incoming_for(assignment: &Assignment, migration: &str) -> bool {
    matches!(&assignment.migration, Some(MigrationRole::Incoming { migration: m }) if m == migration)
}

/// The revision precondition for an assignment, for the shell.
pub fn revision_of(assignment: Option<(&str, &Versioned<Assignment>)>) -> Option<Revision> {
    assignment.map(|(_, a)| a.revision)
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_crds::node::MigrationReport;

    fn assignment(role: Option<MigrationRole>) -> Versioned<Assignment> {
        let mut value: Assignment =
            herd_crds::yaml::from_str("generation: 1\nrunState: Running\ndomain: {name: vm, uid: u, vcpus: 1, memoryMiB: 256}\n").unwrap();
        value.migration = role;
        Versioned { value, revision: 5 }
    }

    fn domain(state: VmState) -> DomainStatus {
        DomainStatus {
            name: "vm".into(),
            state,
            ..Default::default()
        }
    }

    struct Fixture {
        status: MigrationStatus,
        source: Versioned<Assignment>,
        target: Versioned<Assignment>,
        source_domain: DomainStatus,
        target_domain: DomainStatus,
    }

    impl Fixture {
        fn new(phase: MigrationPhase) -> Self {
            let now = Utc::now();
            Self {
                status: MigrationStatus {
                    phase,
                    start_time: Some(now),
                    ..Default::default()
                },
                source: assignment(None),
                target: assignment(Some(MigrationRole::Incoming {
                    migration: "m".into(),
                })),
                source_domain: domain(VmState::Running),
                target_domain: domain(VmState::Migrating),
            }
        }

        fn view(&self) -> MigrationView<'_> {
            MigrationView {
                name: "m",
                vm: "vm",
                status: &self.status,
                source: Some(("ferby", &self.source)),
                target: Some(("herby", &self.target)),
                source_report: Some(Some(&self.source_domain)),
                target_report: Some(Some(&self.target_domain)),
                completion_timeout: Duration::from_secs(60),
                progress_timeout: Duration::from_secs(30),
                last_progress: None,
                now: Utc::now(),
            }
        }
    }

    #[test]
    fn the_happy_path_goes_start_send_switch() {
        assert_eq!(
            plan_migration(&Fixture::new(MigrationPhase::Pending).view()),
            MigrationStep::Start
        );
        let mut preparing = Fixture::new(MigrationPhase::PreparingTarget);
        assert_eq!(plan_migration(&preparing.view()), MigrationStep::Wait);
        preparing.target_domain.incoming_endpoint = Some("tcp:127.0.0.1:4444".into());
        assert_eq!(
            plan_migration(&preparing.view()),
            MigrationStep::Send {
                endpoint: "tcp:127.0.0.1:4444".into()
            }
        );

        let mut running = Fixture::new(MigrationPhase::Running);
        let report = |state| MigrationReport {
            migration: "m".into(),
            state,
            transferred_bytes: 9,
            total_time_ms: Some(80),
            downtime_ms: Some(4),
            ..Default::default()
        };
        running.source_domain.migration = Some(report(MigrationReportState::Active));
        assert_eq!(plan_migration(&running.view()), MigrationStep::Wait);
        running.source_domain.migration = Some(report(MigrationReportState::Completed));
        assert_eq!(
            plan_migration(&running.view()),
            MigrationStep::Wait,
            "not before the target runs"
        );
        running.target_domain.state = VmState::Running;
        assert_eq!(
            plan_migration(&running.view()),
            MigrationStep::Switch {
                transferred: 9,
                total_ms: Some(80),
                downtime_ms: Some(4)
            }
        );
    }

    #[test]
    fn a_silent_party_a_failure_or_a_timeout_aborts() {
        let fixture = Fixture::new(MigrationPhase::Running);
        let mut view = fixture.view();
        view.target_report = None;
        assert!(
            matches!(plan_migration(&view), MigrationStep::Abort { phase: MigrationPhase::Failed, message } if message.contains("herby"))
        );
        let mut view = fixture.view();
        view.target = None;
        assert_eq!(
            plan_migration(&view),
            MigrationStep::Wait,
            "an assignment not yet seen is waited for"
        );
        let mut view = fixture.view();
        view.source_report = None;
        assert!(
            matches!(plan_migration(&view), MigrationStep::Abort { message, .. } if message.contains("ferby"))
        );
        let mut view = fixture.view();
        view.last_progress = Some(Utc::now() - chrono::Duration::seconds(31));
        assert!(
            matches!(plan_migration(&view), MigrationStep::Abort { phase: MigrationPhase::Aborted, message } if message.contains("no progress"))
        );
        let mut view = fixture.view();
        view.now = Utc::now() + chrono::Duration::seconds(120);
        assert!(matches!(
            plan_migration(&view),
            MigrationStep::Abort {
                phase: MigrationPhase::Aborted,
                ..
            }
        ));

        let mut failed = Fixture::new(MigrationPhase::Running);
        failed.source_domain.migration = Some(MigrationReport {
            migration: "m".into(),
            state: MigrationReportState::Failed,
            message: "boom".into(),
            ..Default::default()
        });
        assert!(
            matches!(plan_migration(&failed.view()), MigrationStep::Abort { message, .. } if message.contains("boom"))
        );
    }

    #[test]
    fn final_phases_rest_and_timeouts_scale_with_memory() {
        assert_eq!(
            plan_migration(&Fixture::new(MigrationPhase::Completed).view()),
            MigrationStep::Wait
        );
        assert_eq!(completion_timeout(2048, 800), Duration::from_secs(1600));
        assert_eq!(completion_timeout(32, 800), Duration::from_secs(25));
        assert_eq!(
            completion_timeout(32, 100),
            MIN_COMPLETION_TIMEOUT,
            "a floor for tiny guests"
        );
    }
}
