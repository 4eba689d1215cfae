//! What the agent reports (pure): the node's heartbeat and each VM's status, from a sample.

use chrono::{DateTime, Utc};
use herd_crds::VirtualMachineStatus;
use herd_crds::assignment::Assignment;
use herd_crds::condition::{Condition, ConditionStatus, set_condition};
use herd_crds::node::{DomainStatus, NodeStatus};
use herd_crds::virtual_machine::{VcpuStatus, VmState};

use crate::hypervisor::{DomainInfo, DomainState, HostInfo, HostSample};

/// Facts about the node that do not come from the hypervisor.
#[derive(Clone, Debug)]
pub struct NodeFacts {
    pub address: Option<String>,
    pub driver: &'static str,
    pub accepts_migrations: bool,
    /// Capacity override from the Node spec.
    pub cpus: Option<u32>,
    pub memory_mib: Option<u64>,
}

/// The VM state a domain state stands for.
pub fn vm_state(state: DomainState) -> VmState {
    match state {
        DomainState::Running => VmState::Running,
        DomainState::Paused => VmState::Paused,
        DomainState::Shutdown => VmState::Stopped,
        DomainState::Crashed => VmState::Failed,
        DomainState::Incoming => VmState::Migrating,
        DomainState::Other => VmState::Unknown,
    }
}

fn vcpus(domain: &DomainInfo) -> Vec<VcpuStatus> {
    domain
        .vcpus
        .iter()
        .map(|v| VcpuStatus {
            vcpu: v.vcpu,
            cpu: v.cpu,
            percent: round(v.percent),
            wait_percent: round(v.wait_percent),
        })
        .collect()
}

/// One decimal is what people read; it also keeps heartbeats from changing on noise.
fn round(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

/// The heartbeat: host, load, domains, and the revision of the assignments acted on.
pub fn heartbeat(
    host: &HostInfo,
    sample: &HostSample,
    facts: &NodeFacts,
    observed_revision: i64,
    now: DateTime<Utc>,
) -> NodeStatus {
    let domains = sample
        .domains
        .iter()
        .map(|d| DomainStatus {
            name: d.name.clone(),
            id: Some(d.id.clone()),
            state: vm_state(d.state),
            cpu_percent: round(d.cpu_percent),
            vcpus: vcpus(d),
            ..DomainStatus::default()
        })
        .collect();
    NodeStatus {
        ready: true,
        address: facts.address.clone(),
        cpus: facts.cpus.unwrap_or(host.cpus),
        cpu_load: sample.cpu_load.iter().copied().map(round).collect(),
        memory_total_mib: facts.memory_mib.unwrap_or(host.memory_total_mib),
        memory_free_mib: sample.memory_free_mib,
        domains,
        driver: facts.driver.to_owned(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        accepts_migrations: facts.accepts_migrations,
        last_heartbeat: Some(now),
        observed_revision,
        conditions: Vec::new(),
        balancer: None,
    }
}

/// The VM status the agent owns, updated from `domain` (absent: not running here).
pub fn vm_status(
    current: &VirtualMachineStatus,
    node: &str,
    assignment: &Assignment,
    domain: Option<&DomainInfo>,
    now: DateTime<Utc>,
) -> VirtualMachineStatus {
    let mut status = current.clone();
    status.node_name = Some(node.to_owned());
    status.observed_generation = assignment.generation;
    let (state, running) = match domain {
        Some(domain) => (vm_state(domain.state), domain.state == DomainState::Running),
        None => (VmState::Stopped, false),
    };
    if state == VmState::Running && status.state != VmState::Running {
        status.started_at = Some(now);
    }
    status.state = state;
    status.domain_id = domain.map(|d| d.id.clone());
    status.cpu_percent = domain.map_or(0.0, |d| round(d.cpu_percent));
    status.vcpus = domain.map(vcpus).unwrap_or_default();
    let (flag, reason, message) = match (running, domain) {
        (true, Some(d)) => (
            ConditionStatus::True,
            "DomainRunning",
            format!("domain {} runs on {node}", d.id),
        ),
        (false, Some(d)) => (
            ConditionStatus::False,
            "DomainNotRunning",
            format!("domain {} is {:?} on {node}", d.id, d.state),
        ),
        (false, None) => (
            ConditionStatus::False,
            "NoDomain",
            format!("no domain on {node}"),
        ),
        (true, None) => unreachable!("running implies a domain"),
    };
    let mut condition = Condition::new("Running", flag, reason, message, now);
    condition.observed_generation = assignment.generation;
    set_condition(&mut status.conditions, condition);
    status
}

/// Whether two statuses differ in what people act on (not in CPU noise).
pub fn materially_differs(a: &VirtualMachineStatus, b: &VirtualMachineStatus) -> bool {
    a.state != b.state
        || a.node_name != b.node_name
        || a.domain_id != b.domain_id
        || a.observed_generation != b.observed_generation
        || (a.cpu_percent - b.cpu_percent).abs() >= 10.0
        || a.conditions
            .iter()
            .map(|c| (&c.type_, c.status))
            .ne(b.conditions.iter().map(|c| (&c.type_, c.status)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment() -> Assignment {
        herd_crds::yaml::from_str("generation: 3\nrunState: Running\ndomain: {name: a, uid: u, vcpus: 1, memoryMiB: 32}\n").unwrap()
    }

    fn domain(state: DomainState, cpu: f64) -> DomainInfo {
        DomainInfo {
            name: "a".into(),
            uid: Some("u".into()),
            id: "4242".into(),
            state,
            cpu_percent: cpu,
            vcpus: vec![],
        }
    }

    #[test]
    fn a_running_domain_makes_a_running_vm() {
        let now = Utc::now();
        let status = vm_status(
            &Default::default(),
            "ferby",
            &assignment(),
            Some(&domain(DomainState::Running, 99.04)),
            now,
        );
        assert_eq!(
            (
                status.state,
                status.domain_id.as_deref(),
                status.observed_generation
            ),
            (VmState::Running, Some("4242"), 3)
        );
        assert_eq!(status.cpu_percent, 99.0);
        assert_eq!(status.started_at, Some(now));
        assert_eq!(status.conditions[0].status, ConditionStatus::True);
        let gone = vm_status(&status, "ferby", &assignment(), None, now);
        assert_eq!(
            (gone.state, gone.conditions[0].status),
            (VmState::Stopped, ConditionStatus::False)
        );
    }

    #[test]
    fn cpu_noise_is_not_a_change_but_state_is() {
        let now = Utc::now();
        let a = vm_status(
            &Default::default(),
            "n",
            &assignment(),
            Some(&domain(DomainState::Running, 50.0)),
            now,
        );
        let b = vm_status(
            &a,
            "n",
            &assignment(),
            Some(&domain(DomainState::Running, 53.0)),
            now,
        );
        let c = vm_status(
            &a,
            "n",
            &assignment(),
            Some(&domain(DomainState::Paused, 0.0)),
            now,
        );
        assert!(!materially_differs(&a, &b));
        assert!(materially_differs(&a, &c));
    }
}
