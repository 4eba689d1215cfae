//! What the balancer sees: hosts, VMs and migrations under way, as plain data (pure).
//!
//! The shell builds these from its caches at every sample: [`host_view`] from a node's
//! scheduler view, spec and heartbeat; [`vm_view`] from a VM's spec and status;
//! [`past_move`] and [`in_flight`] from `Migration` objects. Tests and the backtest build them
//! directly. The balancer never reads anything else, and never reads a clock: time is the
//! `now` it is given, in seconds on any clock, as long as every time here is on the same one
//! (the controller uses seconds since the Unix epoch).
//!
//! A VM's CPU demand is not stored on the VM: it comes from the vCPUs its host reports, so that
//! one report is the single source (see [`super::contention`] for how use becomes demand).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use herd_crds::virtual_machine::{BalancerPermission, VmState};
use herd_crds::{Migration, MigrationPhase, NodeSpec, NodeStatus, VirtualMachineSpec};

use crate::scheduler::NodeView;

/// One vCPU as the hypervisor reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct VcpuUse {
    /// The VM (domain) it belongs to.
    pub vm: String,
    pub vcpu: u32,
    /// The physical CPU it ran on last, when the hypervisor says.
    pub pcpu: Option<u32>,
    /// Share of one physical CPU it ran, in percent (0–100).
    pub percent: f64,
    /// Share of one physical CPU it spent runnable but waiting for a CPU, in percent; 0 when
    /// the hypervisor does not tell.
    pub wait_percent: f64,
}

/// One node: the scheduler's view of it plus its measured CPU.
#[derive(Clone, Debug, PartialEq)]
pub struct HostView {
    /// Name, readiness, cordon, CPUs, memory, and what is assigned to it — incoming
    /// migrations included, as [`crate::ledger::Ledger::totals`] counts them — exactly as the
    /// scheduler sees the node. A target must pass [`crate::scheduler::misfit`].
    pub node: NodeView,
    /// The node's `spec.acceptMigrations`: may VMs be moved onto it.
    pub accepts_migrations: bool,
    /// The cluster's `scheduling.cpuOvercommitRatio`, as the scheduler applies it here.
    pub overcommit: f64,
    /// Speed of one physical CPU relative to the reference CPU in which VM demand is carried
    /// between hosts. 1.0 when all CPUs count the same (herd measures no speeds); the backtest
    /// uses it for hosts of different MIPS.
    pub cpu_speed: f64,
    /// Load of each physical CPU, in percent, as reported.
    pub cpu_load: Vec<f64>,
    /// Every vCPU of the running domains.
    pub vcpus: Vec<VcpuUse>,
}

impl HostView {
    pub fn name(&self) -> &str {
        &self.node.name
    }

    /// Physical CPUs: as many as have a reported load, else the node's CPU count.
    pub fn pcpus(&self) -> u32 {
        if self.cpu_load.is_empty() {
            self.node.cpus
        } else {
            self.cpu_load.len() as u32
        }
    }
}

/// One completed move of a VM, by anyone.
#[derive(Clone, Debug, PartialEq)]
pub struct PastMove {
    pub from: String,
    pub to: String,
    /// When it completed.
    pub at: f64,
    /// Whether the balancer asked for it (only those start a cooldown).
    pub by_balancer: bool,
}

/// One VM placed on a node.
#[derive(Clone, Debug, PartialEq)]
pub struct VmView {
    pub name: String,
    /// The node it is assigned to.
    pub node: String,
    /// Its spec: vCPUs, memory, `migration.balancer`, disks, and the placement rules (pin,
    /// selector, affinity) a target must satisfy. Shared, so a sample copies no spec.
    pub spec: Arc<VirtualMachineSpec>,
    /// Its labels, for the affinity rules of other VMs.
    pub labels: BTreeMap<String, String>,
    /// Whether it runs (only running VMs are moved).
    pub running: bool,
    /// When it arrived on its node (started there or migrated there): the most recently
    /// placed VM is the one that tipped a node over, as the seed saw it.
    pub placed_at: f64,
    /// Its completed moves that the shell knows of (from `Migration` objects); the balancer
    /// also remembers the moves it planned itself.
    pub moves: Vec<PastMove>,
}

impl VmView {
    pub fn memory_mib(&self) -> u64 {
        self.spec.memory_mib
    }

    pub fn permission(&self) -> BalancerPermission {
        self.spec.migration.balancer
    }

    /// Whether a disk is a path on its node, which a target cannot open.
    pub fn has_local_disks(&self) -> bool {
        self.spec.disks.iter().any(|disk| disk.path.is_some())
    }
}

/// A migration under way: the VM still runs on `from` and `to` holds room for it.
#[derive(Clone, Debug, PartialEq)]
pub struct InFlight {
    pub vm: String,
    pub from: String,
    pub to: String,
    pub started_at: f64,
}

/// A node as the balancer sees it: `node` is the scheduler's view (built as for placement),
/// `spec` the Node object's spec, `heartbeat` the agent's latest report.
///
/// A node that declares fewer CPUs (`spec.capacity.cpus`) than its machine reports is a
/// **share** of that machine — several lab nodes on one computer, or a host kept partly for
/// other work. The machine's per-CPU load then belongs to everyone on it, so the node is seen
/// as its declared CPUs loaded by its own vCPUs only ([`declared_share`]).
pub fn host_view(
    node: NodeView,
    spec: &NodeSpec,
    heartbeat: &NodeStatus,
    overcommit: f64,
) -> HostView {
    let vcpus: Vec<VcpuUse> = heartbeat
        .domains
        .iter()
        .filter(|domain| matches!(domain.state, VmState::Running | VmState::Migrating))
        .flat_map(|domain| {
            domain.vcpus.iter().map(|vcpu| VcpuUse {
                vm: domain.name.clone(),
                vcpu: vcpu.vcpu,
                pcpu: vcpu.cpu,
                percent: vcpu.percent,
                wait_percent: vcpu.wait_percent,
            })
        })
        .collect();
    let declared = spec.capacity.as_ref().and_then(|capacity| capacity.cpus);
    let (cpu_load, vcpus) = match declared {
        Some(cpus) if (cpus as usize) < heartbeat.cpu_load.len() => declared_share(cpus, vcpus),
        _ => (heartbeat.cpu_load.clone(), vcpus),
    };
    HostView {
        node,
        accepts_migrations: spec.accept_migrations,
        overcommit,
        cpu_speed: 1.0,
        cpu_load,
        vcpus,
    }
}

/// A node of `cpus` declared CPUs on a bigger machine: each of its CPUs carries an even part
/// of what its own vCPUs use (capped at 100%), and the machine's CPU numbers are dropped from
/// the vCPUs (they name CPUs the node does not have), so a vCPU's demand is its use.
fn declared_share(cpus: u32, vcpus: Vec<VcpuUse>) -> (Vec<f64>, Vec<VcpuUse>) {
    let used: f64 = vcpus.iter().map(|vcpu| vcpu.percent).sum();
    let per_cpu = (used / f64::from(cpus.max(1))).min(100.0);
    let vcpus = vcpus
        .into_iter()
        .map(|vcpu| VcpuUse { pcpu: None, ..vcpu })
        .collect();
    (vec![per_cpu; cpus.max(1) as usize], vcpus)
}

/// A VM as the balancer sees it. `placed_at` is when it arrived on `node`: its status'
/// `startedAt` or the end of its latest completed migration, whichever is later.
pub fn vm_view(
    name: &str,
    node: &str,
    spec: Arc<VirtualMachineSpec>,
    labels: BTreeMap<String, String>,
    state: VmState,
    placed_at: f64,
    moves: Vec<PastMove>,
) -> VmView {
    VmView {
        name: name.to_owned(),
        node: node.to_owned(),
        spec,
        labels,
        running: state == VmState::Running,
        placed_at,
        moves,
    }
}

/// Seconds since the Unix epoch, the clock the controller passes as `now`.
pub fn epoch_seconds(time: DateTime<Utc>) -> f64 {
    time.timestamp_micros() as f64 / 1e6
}

/// The completed move a `Migration` records, if it completed.
pub fn past_move(migration: &Migration) -> Option<PastMove> {
    let status = migration.status.as_ref()?;
    if status.phase != MigrationPhase::Completed {
        return None;
    }
    Some(PastMove {
        from: status.source_node.clone()?,
        to: status.target_node.clone()?,
        at: epoch_seconds(status.end_time.or(status.start_time)?),
        by_balancer: migration.spec.reason == herd_crds::migration::MigrationReason::Balancer,
    })
}

/// The migration under way a `Migration` records, if it has not ended and its nodes are known.
pub fn in_flight(migration: &Migration, now: f64) -> Option<InFlight> {
    let status = migration.status.as_ref()?;
    if status.phase.is_final() {
        return None;
    }
    let to = status
        .target_node
        .clone()
        .or_else(|| migration.spec.target_node.clone())?;
    Some(InFlight {
        vm: migration.spec.vm.clone(),
        from: status.source_node.clone()?,
        to,
        started_at: status.start_time.map_or(now, epoch_seconds),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_crds::migration::{MigrationReason, MigrationSpec, MigrationStatus};
    use herd_crds::node::DomainStatus;
    use herd_crds::virtual_machine::VcpuStatus;

    fn node_view(name: &str) -> NodeView {
        NodeView {
            name: name.into(),
            labels: BTreeMap::new(),
            ready: true,
            unschedulable: false,
            cpus: 4,
            memory_mib: 8192,
            used_vcpus: 0,
            used_memory_mib: 0,
            vm_labels: Vec::new(),
        }
    }

    #[test]
    fn a_heartbeat_becomes_a_host_view_of_running_vcpus() {
        let domain = |name: &str, state| DomainStatus {
            name: name.into(),
            state,
            vcpus: vec![VcpuStatus {
                vcpu: 0,
                cpu: Some(1),
                percent: 42.0,
                wait_percent: 0.0,
            }],
            ..Default::default()
        };
        let heartbeat = NodeStatus {
            cpus: 4,
            cpu_load: vec![0.0, 42.0, 0.0, 0.0],
            domains: vec![
                domain("web", VmState::Running),
                domain("old", VmState::Paused),
            ],
            ..Default::default()
        };
        let spec = NodeSpec {
            accept_migrations: false,
            ..Default::default()
        };
        let host = host_view(node_view("ferby"), &spec, &heartbeat, 4.0);
        assert_eq!(host.name(), "ferby");
        assert!(!host.accepts_migrations);
        assert_eq!(host.pcpus(), 4);
        assert_eq!(host.vcpus.len(), 1);
        assert_eq!(
            (host.vcpus[0].vm.as_str(), host.vcpus[0].pcpu),
            ("web", Some(1))
        );
    }

    #[test]
    fn a_node_declaring_fewer_cpus_than_its_machine_is_loaded_by_its_own_vcpus_only() {
        let spin = |name: &str, cpu| DomainStatus {
            name: name.into(),
            state: VmState::Running,
            vcpus: vec![VcpuStatus {
                vcpu: 0,
                cpu: Some(cpu),
                percent: 66.0,
                wait_percent: 0.0,
            }],
            ..Default::default()
        };
        // Three spinning guests on a 2-CPU machine that other nodes' guests also load.
        let heartbeat = NodeStatus {
            cpus: 2,
            cpu_load: vec![100.0, 100.0],
            domains: vec![spin("a", 0), spin("b", 1), spin("c", 1)],
            ..Default::default()
        };
        let declared = |cpus| NodeSpec {
            capacity: Some(herd_crds::node::Capacity {
                cpus: Some(cpus),
                memory_mib: None,
            }),
            ..Default::default()
        };
        let share = host_view(node_view("ferby"), &declared(1), &heartbeat, 4.0);
        assert_eq!(share.pcpus(), 1);
        assert_eq!(
            share.cpu_load,
            [100.0],
            "198% of use on one declared CPU, capped"
        );
        assert!(share.vcpus.iter().all(|v| v.pcpu.is_none()));
        let idle = NodeStatus {
            domains: vec![],
            ..heartbeat.clone()
        };
        let empty = host_view(node_view("gerby"), &declared(1), &idle, 4.0);
        assert_eq!(
            empty.cpu_load,
            [0.0],
            "the machine's load is not this node's"
        );
        // Declaring as many CPUs as the machine has changes nothing.
        let whole = host_view(node_view("ferby"), &declared(2), &heartbeat, 4.0);
        assert_eq!(whole.cpu_load, [100.0, 100.0]);
        assert_eq!(whole.vcpus[1].pcpu, Some(1));
    }

    #[test]
    fn migrations_become_history_or_moves_under_way() {
        let at = |s: i64| DateTime::from_timestamp(s, 0).unwrap();
        let mut migration = Migration::new(
            "m1",
            MigrationSpec {
                vm: "web".into(),
                target_node: None,
                reason: MigrationReason::Balancer,
            },
        );
        migration.status = Some(MigrationStatus {
            phase: MigrationPhase::Running,
            source_node: Some("ferby".into()),
            target_node: Some("gerby".into()),
            start_time: Some(at(100)),
            ..Default::default()
        });
        assert_eq!(past_move(&migration), None);
        let flying = in_flight(&migration, 150.0).unwrap();
        assert_eq!(
            (flying.from.as_str(), flying.to.as_str()),
            ("ferby", "gerby")
        );
        assert_eq!(flying.started_at, 100.0);
        let status = migration.status.as_mut().unwrap();
        status.phase = MigrationPhase::Completed;
        status.end_time = Some(at(130));
        assert_eq!(in_flight(&migration, 150.0), None);
        let done = past_move(&migration).unwrap();
        assert_eq!((done.at, done.by_balancer), (130.0, true));
    }
}
