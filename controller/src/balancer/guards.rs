//! Guards: the rules every balancer move must pass, whatever the policy (pure).
//!
//! Learnt from Xen Orchestra's load balancer, Ganeti's `hbal` and Proxmox's CRS:
//!
//! | guard | rule |
//! | --- | --- |
//! | permission | a VM whose `migration.balancer` is `Never` is never moved; nor is a pinned VM (`spec.nodeName`), one with a local disk, one that is not running, or one already migrating |
//! | cooldown | a VM the balancer moved is not moved again for `cooldownSeconds` (600 by default) |
//! | ping-pong | a VM never returns to a node it left (by any move) within `cooldownSeconds` |
//! | stay (`forecast`, `density`) | a VM the balancer moved stays for `minStaySeconds` (an hour), unless its node is in SLA violation (every CPU saturated) |
//! | limits | at most `maxOutboundPerNode` migrations leave a node and `maxInCluster` run at once, counting those under way and those planned in the same round |
//! | acceptMigrations | a node with `acceptMigrations: false` never receives |
//! | placement | a target must pass the scheduler's rules ([`crate::scheduler::misfit`]): ready, not cordoned, selector, affinity, vCPUs and memory |
//! | projection | a target must not be hot now, and must not become hot by taking the VM |
//!
//! Each guard is a function that returns the [`Refusal`] it raises, so a decision can say
//! which rule stopped which move.

use std::fmt;

use herd_crds::cluster_policy::MigrationLimits;
use herd_crds::virtual_machine::BalancerPermission;

use super::decision::LoadSummary;
use super::observe::{PastMove, VmView};
use super::projection::ModelHost;
use crate::scheduler::{Misfit, misfit};

/// Why a move may not happen.
#[derive(Clone, Debug, PartialEq)]
pub enum Refusal {
    /// `migration.balancer: Never`.
    NeverMove,
    /// Pinned with `spec.nodeName`.
    Pinned,
    /// A disk is a path on its node.
    LocalDisks,
    NotRunning,
    /// A migration of it is under way or already planned.
    Migrating,
    /// The balancer moved it too recently.
    Cooldown {
        remaining_seconds: f64,
    },
    /// `forecast`, `density`: it arrived too recently and its node is not in SLA violation.
    Stay {
        remaining_seconds: f64,
    },
    /// Its node already has this many migrations leaving.
    SourceLimit {
        migrations: u32,
        max: u32,
    },
    /// The cluster already has this many migrations.
    ClusterLimit {
        migrations: u32,
        max: u32,
    },
    /// `seed`: moving it would not relieve its node (it is not busy and the node stays hot).
    NoRelief,
    /// The target is the node it is on.
    SameNode,
    /// The target has `acceptMigrations: false`.
    RefusesMigrations,
    /// The target fails a placement rule.
    Misfit(Misfit),
    /// It left the target this long ago, within the cooldown.
    PingPong {
        left_seconds_ago: f64,
    },
    /// The target is hot itself.
    TargetHot {
        load_percent: f64,
    },
    /// The target would become hot by taking it.
    WouldBecomeHot {
        load_percent: f64,
        busy_vcpus: u32,
    },
    /// `forecast`, `density`: the target's predicted peak with it would be above the
    /// threshold.
    PredictedPeak {
        peak_percent: f64,
    },
    /// `density`: the target is empty and would have to be powered on.
    Empty,
}

impl Refusal {
    /// A short plural phrase for counting nodes or VMs by reason: `2 would become hot`.
    pub fn phrase(&self) -> &'static str {
        match self {
            Self::NeverMove => "may never be moved by the balancer",
            Self::Pinned => "are pinned to their node",
            Self::LocalDisks => "have local disks",
            Self::NotRunning => "are not running",
            Self::Migrating => "are migrating",
            Self::Cooldown { .. } => "moved too recently",
            Self::Stay { .. } => "arrived within the last stay",
            Self::SourceLimit { .. } => "reach the node's migration limit",
            Self::ClusterLimit { .. } => "reach the cluster's migration limit",
            Self::NoRelief => "would not relieve the node",
            Self::SameNode => "are its own node",
            Self::RefusesMigrations => "refuse migrations",
            Self::Misfit(misfit) => misfit_phrase(*misfit),
            Self::PingPong { .. } => "were left by it within the cooldown",
            Self::TargetHot { .. } => "are hot",
            Self::WouldBecomeHot { .. } => "would become hot",
            Self::PredictedPeak { .. } => "would be predicted above the threshold",
            Self::Empty => "are empty",
        }
    }
}

/// The scheduler's reasons, worded for a target.
fn misfit_phrase(misfit: Misfit) -> &'static str {
    match misfit {
        Misfit::NotPinned => "are not the pinned node",
        Misfit::NotReady => "are not ready",
        Misfit::Unschedulable => "are unschedulable",
        Misfit::SelectorMismatch => "do not match the node selector",
        Misfit::Affinity => "lack the VMs required by affinity",
        Misfit::AntiAffinity => "run VMs excluded by anti-affinity",
        Misfit::LackCpu => "lack vCPUs",
        Misfit::LackMemory => "lack memory",
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cooldown { remaining_seconds } => {
                write!(
                    f,
                    "moved too recently ({remaining_seconds:.0} s of cooldown left)"
                )
            }
            Self::Stay { remaining_seconds } => write!(
                f,
                "moved within the last stay ({remaining_seconds:.0} s left) and its node is not \
                 in SLA violation"
            ),
            Self::PredictedPeak { peak_percent } => {
                write!(f, "the node's predicted peak would be {peak_percent:.0}%")
            }
            Self::SourceLimit { migrations, max } => {
                write!(
                    f,
                    "{migrations} migrations already leave its node (at most {max})"
                )
            }
            Self::ClusterLimit { migrations, max } => {
                write!(
                    f,
                    "{migrations} migrations already run in the cluster (at most {max})"
                )
            }
            Self::PingPong { left_seconds_ago } => {
                write!(
                    f,
                    "it left that node {left_seconds_ago:.0} s ago, within the cooldown"
                )
            }
            Self::TargetHot { load_percent } => write!(f, "the node is hot ({load_percent:.0}%)"),
            Self::WouldBecomeHot {
                load_percent,
                busy_vcpus,
            } => write!(
                f,
                "the node would become hot ({load_percent:.0}%, {busy_vcpus} busy vCPUs)"
            ),
            other => f.write_str(other.phrase()),
        }
    }
}

/// The VM's own rules: `Never`, pinned, local disks, running, not already migrating.
pub fn check_vm(vm: &VmView, migrating: bool) -> Result<(), Refusal> {
    if vm.permission() == BalancerPermission::Never {
        Err(Refusal::NeverMove)
    } else if vm.spec.node_name.is_some() {
        Err(Refusal::Pinned)
    } else if vm.has_local_disks() {
        Err(Refusal::LocalDisks)
    } else if !vm.running {
        Err(Refusal::NotRunning)
    } else if migrating {
        Err(Refusal::Migrating)
    } else {
        Ok(())
    }
}

/// No balancer move of a VM within `cooldown` seconds of its last balancer move.
pub fn check_cooldown<'m>(
    moves: impl IntoIterator<Item = &'m PastMove>,
    cooldown: f64,
    now: f64,
) -> Result<(), Refusal> {
    let last = moves
        .into_iter()
        .filter(|m| m.by_balancer)
        .map(|m| m.at)
        .fold(f64::NEG_INFINITY, f64::max);
    let remaining = last + cooldown - now;
    if remaining > 0.0 {
        Err(Refusal::Cooldown {
            remaining_seconds: remaining,
        })
    } else {
        Ok(())
    }
}

/// A VM the balancer moved stays `min_stay` seconds where it went, unless its node is in SLA
/// violation (`saturated`: every CPU busy and its VMs want more).
pub fn check_stay<'m>(
    moves: impl IntoIterator<Item = &'m PastMove>,
    min_stay: f64,
    now: f64,
    saturated: bool,
) -> Result<(), Refusal> {
    if saturated {
        return Ok(());
    }
    match check_cooldown(moves, min_stay, now) {
        Err(Refusal::Cooldown { remaining_seconds }) => Err(Refusal::Stay { remaining_seconds }),
        other => other,
    }
}

/// A VM never returns to `target` within `cooldown` seconds of leaving it, by any move.
pub fn check_ping_pong<'m>(
    moves: impl IntoIterator<Item = &'m PastMove>,
    target: &str,
    cooldown: f64,
    now: f64,
) -> Result<(), Refusal> {
    let left = moves
        .into_iter()
        .filter(|m| m.from == target)
        .map(|m| m.at)
        .fold(f64::NEG_INFINITY, f64::max);
    if now - left < cooldown {
        Err(Refusal::PingPong {
            left_seconds_ago: now - left,
        })
    } else {
        Ok(())
    }
}

/// Room under the migration limits for one more migration leaving a node that already has
/// `outbound`, in a cluster that already has `migrations`.
pub fn check_limits(
    outbound: u32,
    migrations: u32,
    limits: &MigrationLimits,
) -> Result<(), Refusal> {
    if migrations >= limits.max_in_cluster {
        Err(Refusal::ClusterLimit {
            migrations,
            max: limits.max_in_cluster,
        })
    } else if outbound >= limits.max_outbound_per_node {
        Err(Refusal::SourceLimit {
            migrations: outbound,
            max: limits.max_outbound_per_node,
        })
    } else {
        Ok(())
    }
}

/// The target's own rules: another node, accepts migrations, passes the scheduler's rules.
pub fn check_target(vm: &VmView, target: &ModelHost<'_>) -> Result<(), Refusal> {
    if target.name() == vm.node {
        return Err(Refusal::SameNode);
    }
    if !target.view.accepts_migrations {
        return Err(Refusal::RefusesMigrations);
    }
    match misfit(&vm.spec, &target.node, target.view.overcommit) {
        Some(reason) => Err(Refusal::Misfit(reason)),
        None => Ok(()),
    }
}

/// Destination projection: the target is not hot now and would not be after the move.
pub fn check_projection(before: &LoadSummary, after: &LoadSummary) -> Result<(), Refusal> {
    if before.hot {
        Err(Refusal::TargetHot {
            load_percent: before.load_percent,
        })
    } else if after.hot {
        Err(Refusal::WouldBecomeHot {
            load_percent: after.load_percent,
            busy_vcpus: after.busy_vcpus,
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::projection::ClusterModel;
    use crate::balancer::testing::{host, vm};
    use herd_crds::virtual_machine::Disk;

    fn moved(from: &str, at: f64, by_balancer: bool) -> PastMove {
        PastMove {
            from: from.into(),
            to: "elsewhere".into(),
            at,
            by_balancer,
        }
    }

    #[test]
    fn never_pinned_local_disks_stopped_and_migrating_vms_stay() {
        let ok = vm("a", "ferby", 0.0);
        assert_eq!(check_vm(&ok, false), Ok(()));
        assert_eq!(check_vm(&ok, true), Err(Refusal::Migrating));
        let mut never = ok.clone();
        std::sync::Arc::make_mut(&mut never.spec).migration.balancer = BalancerPermission::Never;
        assert_eq!(check_vm(&never, false), Err(Refusal::NeverMove));
        let mut pinned = ok.clone();
        std::sync::Arc::make_mut(&mut pinned.spec).node_name = Some("ferby".into());
        assert_eq!(check_vm(&pinned, false), Err(Refusal::Pinned));
        let mut local = ok.clone();
        std::sync::Arc::make_mut(&mut local.spec).disks.push(Disk {
            name: "root".into(),
            volume: None,
            path: Some("/srv/a.img".into()),
            target: None,
            read_only: false,
        });
        assert_eq!(check_vm(&local, false), Err(Refusal::LocalDisks));
        let mut stopped = ok;
        stopped.running = false;
        assert_eq!(check_vm(&stopped, false), Err(Refusal::NotRunning));
    }

    #[test]
    fn cooldown_counts_only_balancer_moves() {
        let moves = [moved("ferby", 100.0, true), moved("gerby", 500.0, false)];
        assert_eq!(
            check_cooldown(&moves, 600.0, 400.0),
            Err(Refusal::Cooldown {
                remaining_seconds: 300.0
            })
        );
        assert_eq!(check_cooldown(&moves, 600.0, 700.0), Ok(()));
        assert_eq!(check_cooldown(&[], 600.0, 0.0), Ok(()));
        assert_eq!(
            check_cooldown(&[moved("ferby", 0.0, false)], 600.0, 1.0),
            Ok(())
        );
    }

    #[test]
    fn a_moved_vm_stays_unless_its_node_is_in_sla_violation() {
        let moves = [moved("ferby", 100.0, true), moved("gerby", 3000.0, false)];
        assert_eq!(
            check_stay(&moves, 3600.0, 1000.0, false),
            Err(Refusal::Stay {
                remaining_seconds: 2700.0
            })
        );
        assert_eq!(check_stay(&moves, 3600.0, 1000.0, true), Ok(()));
        assert_eq!(check_stay(&moves, 3600.0, 3700.0, false), Ok(()));
    }

    #[test]
    fn ping_pong_forbids_returning_to_a_node_left_within_the_cooldown() {
        let moves = [moved("ferby", 100.0, false)];
        assert_eq!(
            check_ping_pong(&moves, "ferby", 600.0, 400.0),
            Err(Refusal::PingPong {
                left_seconds_ago: 300.0
            })
        );
        assert_eq!(check_ping_pong(&moves, "gerby", 600.0, 400.0), Ok(()));
        assert_eq!(check_ping_pong(&moves, "ferby", 600.0, 700.0), Ok(()));
    }

    #[test]
    fn limits_count_per_node_and_per_cluster() {
        let limits = MigrationLimits {
            max_outbound_per_node: 2,
            max_in_cluster: 5,
            ..Default::default()
        };
        assert_eq!(check_limits(1, 4, &limits), Ok(()));
        assert_eq!(
            check_limits(2, 4, &limits),
            Err(Refusal::SourceLimit {
                migrations: 2,
                max: 2
            })
        );
        assert_eq!(
            check_limits(0, 5, &limits),
            Err(Refusal::ClusterLimit {
                migrations: 5,
                max: 5
            })
        );
    }

    #[test]
    fn targets_must_accept_migrations_and_pass_the_schedulers_rules() {
        let mut refusing = host("gerby", 4, &[]);
        refusing.accepts_migrations = false;
        let mut cordoned = host("herby", 4, &[]);
        cordoned.node.unschedulable = true;
        let mut full = host("jerby", 4, &[]);
        full.node.used_memory_mib = full.node.memory_mib;
        let hosts = [
            host("ferby", 4, &[]),
            refusing,
            cordoned,
            full,
            host("kerby", 4, &[]),
        ];
        let model = ClusterModel::build(&hosts, &[], &[], 80.0);
        let a = vm("a", "ferby", 0.0);
        let verdicts: Vec<_> = model.hosts.iter().map(|h| check_target(&a, h)).collect();
        assert_eq!(
            verdicts,
            [
                Err(Refusal::SameNode),
                Err(Refusal::RefusesMigrations),
                Err(Refusal::Misfit(Misfit::Unschedulable)),
                Err(Refusal::Misfit(Misfit::LackMemory)),
                Ok(()),
            ]
        );
    }

    #[test]
    fn projection_never_makes_a_target_hot() {
        let summary = |load_percent, busy_vcpus, hot| LoadSummary {
            load_percent,
            demand_percent: load_percent,
            busy_vcpus,
            cpus: 4,
            hot,
        };
        let cool = summary(75.0, 3, false);
        assert_eq!(check_projection(&cool, &summary(100.0, 4, false)), Ok(()));
        assert_eq!(
            check_projection(&cool, &summary(100.0, 5, true)),
            Err(Refusal::WouldBecomeHot {
                load_percent: 100.0,
                busy_vcpus: 5
            })
        );
        assert_eq!(
            check_projection(&summary(100.0, 5, true), &summary(100.0, 6, true)),
            Err(Refusal::TargetHot {
                load_percent: 100.0
            })
        );
    }
}
