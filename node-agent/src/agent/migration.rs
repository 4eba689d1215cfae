//! The agent's part in live migrations: prepares incoming domains, sends outgoing ones, follows
//! their progress and cancels them when the controller withdraws the role.
//!
//! The controller talks through assignment roles (`Incoming` on the target, `Outgoing` on the
//! source); the agent answers in its heartbeat: the target's `incomingEndpoint`, the source's
//! `migration` report. Progress is trusted only for migrations this agent started (or found
//! active after a restart), so an old cancelled migration of the same VM never reads as news.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use herd_crds::assignment::{Assignment, MigrationRole};
use herd_crds::node::{MigrationReport, MigrationReportState, NodeStatus};
use tracing::{info, warn};

use crate::hypervisor::{
    DomainInfo, DomainState, Hypervisor, IncomingEndpoint, MigrationParams, MigrationProgress,
};

/// What this agent knows of the migrations touching its domains.
#[derive(Debug, Default)]
pub struct MigrationTracker {
    /// VM → (migration, endpoint) of domains prepared here for an incoming migration.
    incoming: HashMap<String, (String, String)>,
    /// VM → the last report of the outgoing migration this agent runs.
    outgoing: HashMap<String, MigrationReport>,
}

/// A problem to report as an Event: (VM, reason, message).
pub type Problem = (String, &'static str, String);

impl MigrationTracker {
    /// Whether a migration is under way here (the agent then passes more often).
    pub fn busy(&self) -> bool {
        !self.incoming.is_empty()
            || self
                .outgoing
                .values()
                .any(|r| r.state == MigrationReportState::Active)
    }

    /// Acts on every migration role in `assignments`; returns problems to report.
    pub async fn step<H: Hypervisor>(
        &mut self,
        hypervisor: &H,
        assignments: &BTreeMap<String, Assignment>,
        domains: &[DomainInfo],
    ) -> Vec<Problem> {
        let mut problems = Vec::new();
        self.forget_withdrawn(hypervisor, assignments).await;
        for (vm, assignment) in assignments {
            let result = match &assignment.migration {
                Some(MigrationRole::Incoming { migration }) => {
                    self.prepare(hypervisor, vm, assignment, migration, domains)
                        .await
                }
                Some(MigrationRole::Outgoing {
                    migration,
                    endpoint,
                    bandwidth_mibps,
                    ..
                }) => {
                    let params = MigrationParams {
                        max_downtime: Duration::from_millis(u64::from(
                            assignment.domain.migration.max_downtime_ms,
                        )),
                        bandwidth: bandwidth_mibps
                            .map(|mib| (mib * 1024.0 * 1024.0).max(1.0) as u64),
                    };
                    self.send(hypervisor, vm, (migration, endpoint), &params, domains)
                        .await
                }
                None => Ok(()),
            };
            if let Err(message) = result {
                problems.push((vm.clone(), "MigrationFailed", message));
            }
        }
        problems
    }

    /// Forgets roles the controller withdrew; cancels an outgoing migration still running.
    async fn forget_withdrawn<H: Hypervisor>(
        &mut self,
        hypervisor: &H,
        assignments: &BTreeMap<String, Assignment>,
    ) {
        let role = |vm: &str| assignments.get(vm).and_then(|a| a.migration.clone());
        self.incoming.retain(|vm, (migration, _)| matches!(role(vm), Some(MigrationRole::Incoming { migration: m }) if &m == migration));
        let withdrawn: Vec<(String, MigrationReport)> = self
            .outgoing
            .iter()
            .filter(|(vm, report)| !matches!(role(vm), Some(MigrationRole::Outgoing { migration: m, .. }) if m == report.migration))
            .map(|(vm, report)| (vm.clone(), report.clone()))
            .collect();
        for (vm, report) in withdrawn {
            if report.state == MigrationReportState::Active {
                info!(%vm, migration = %report.migration, "migration withdrawn; cancelling it");
                if let Err(error) = hypervisor.cancel_migration(&vm).await {
                    warn!(%vm, %error, "cannot cancel the migration");
                }
            }
            self.outgoing.remove(&vm);
        }
    }

    async fn prepare<H: Hypervisor>(
        &mut self,
        hypervisor: &H,
        vm: &str,
        assignment: &Assignment,
        migration: &str,
        domains: &[DomainInfo],
    ) -> Result<(), String> {
        if self.incoming.contains_key(vm) || domains.iter().any(|d| d.name == vm) {
            return Ok(()); // prepared already (or, after a restart, its endpoint is unknown)
        }
        let IncomingEndpoint { uri } = hypervisor
            .prepare_incoming(&assignment.domain)
            .await
            .map_err(|e| e.to_string())?;
        info!(%vm, %migration, endpoint = %uri, "prepared for an incoming migration");
        self.incoming
            .insert(vm.to_owned(), (migration.to_owned(), uri));
        Ok(())
    }

    async fn send<H: Hypervisor>(
        &mut self,
        hypervisor: &H,
        vm: &str,
        (migration, endpoint): (&str, &str),
        params: &MigrationParams,
        domains: &[DomainInfo],
    ) -> Result<(), String> {
        let ours = self
            .outgoing
            .get(vm)
            .is_some_and(|r| r.migration == migration);
        let progress = hypervisor.migration_progress(vm).await;
        // After an agent restart: a migration in flight, or one that completed here (the source
        // is left paused), is this one. A completed status on a running domain is the incoming
        // migration that brought it here, not news.
        let paused = domains
            .iter()
            .any(|d| d.name == vm && d.state == DomainState::Paused);
        let adopt = match &progress {
            Ok(MigrationProgress::Active { .. }) => true,
            Ok(MigrationProgress::Completed { .. }) => paused,
            _ => false,
        };
        if !ours && !adopt {
            info!(%vm, %migration, %endpoint, "sending the domain");
            let target = IncomingEndpoint {
                uri: endpoint.to_owned(),
            };
            hypervisor
                .migrate_out(vm, &target, params)
                .await
                .map_err(|e| e.to_string())?;
            self.outgoing.insert(
                vm.to_owned(),
                report(
                    migration,
                    &MigrationProgress::Active {
                        transferred_bytes: 0,
                        remaining_bytes: 0,
                    },
                ),
            );
            return Ok(());
        }
        if let Ok(progress) = progress {
            self.outgoing
                .insert(vm.to_owned(), report(migration, &progress));
        }
        Ok(())
    }

    /// Puts endpoints and migration reports into the heartbeat's domains.
    pub fn annotate(&self, status: &mut NodeStatus) {
        for domain in &mut status.domains {
            domain.incoming_endpoint = self
                .incoming
                .get(&domain.name)
                .map(|(_, endpoint)| endpoint.clone());
            domain.migration = self.outgoing.get(&domain.name).cloned();
        }
    }
}

/// The heartbeat report of `progress`.
fn report(migration: &str, progress: &MigrationProgress) -> MigrationReport {
    let base = MigrationReport {
        migration: migration.to_owned(),
        ..MigrationReport::default()
    };
    match progress {
        MigrationProgress::Active {
            transferred_bytes,
            remaining_bytes,
        } => MigrationReport {
            state: MigrationReportState::Active,
            transferred_bytes: *transferred_bytes,
            remaining_bytes: *remaining_bytes,
            ..base
        },
        MigrationProgress::Completed {
            total,
            downtime,
            transferred_bytes,
        } => MigrationReport {
            state: MigrationReportState::Completed,
            transferred_bytes: *transferred_bytes,
            total_time_ms: Some(total.as_millis() as u64),
            downtime_ms: Some(downtime.as_millis() as u64),
            ..base
        },
        MigrationProgress::Failed { message } => MigrationReport {
            state: MigrationReportState::Failed,
            message: message.clone(),
            ..base
        },
        MigrationProgress::Cancelled => MigrationReport {
            state: MigrationReportState::Cancelled,
            ..base
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_becomes_a_report() {
        let done = report(
            "m",
            &MigrationProgress::Completed {
                total: Duration::from_millis(812),
                downtime: Duration::from_millis(7),
                transferred_bytes: 42,
            },
        );
        assert_eq!(
            (
                done.state,
                done.total_time_ms,
                done.downtime_ms,
                done.transferred_bytes
            ),
            (MigrationReportState::Completed, Some(812), Some(7), 42)
        );
        let failed = report(
            "m",
            &MigrationProgress::Failed {
                message: "x".into(),
            },
        );
        assert_eq!(
            (failed.state, failed.message.as_str()),
            (MigrationReportState::Failed, "x")
        );
    }
}
