//! The table row of each kind, for `get` and `get -w` (pure functions of the object and "now").

use std::time::Duration;

use chrono::{DateTime, Utc};
use herd_crds::condition::find_condition;
use herd_crds::{ClusterPolicy, Event, Migration, Node, ObjectMeta, VirtualMachine, Volume};

use crate::duration::format_duration;
use crate::table::age;

const NONE: &str = "<none>";

/// `AGE` of an object.
pub fn age_of(meta: &ObjectMeta, now: DateTime<Utc>) -> String {
    meta.creation_timestamp
        .map_or_else(|| "<unknown>".to_owned(), |t| age((now - t).num_seconds()))
}

fn or_none(value: Option<&String>) -> String {
    value.cloned().unwrap_or_else(|| NONE.to_owned())
}

fn with_wide(
    mut headers: Vec<&'static str>,
    wide: bool,
    extra: &[&'static str],
) -> Vec<&'static str> {
    if wide {
        headers.extend_from_slice(extra);
    }
    headers
}

pub fn vm_headers(wide: bool) -> Vec<&'static str> {
    let base = vec!["NAME", "STATE", "NODE", "VCPUS", "MEMORY", "CPU%", "AGE"];
    with_wide(base, wide, &["RUNSTATE", "DOMAIN-ID", "VCPUS-PLACEMENT"])
}

/// A VM: its observed state (`Terminating` once deletion was asked for), where it runs, its
/// size and load; wide adds the desired run state, the domain and where each vCPU ran.
pub fn vm_row(vm: &VirtualMachine, now: DateTime<Utc>, wide: bool) -> Vec<String> {
    let status = vm.status.clone().unwrap_or_default();
    let state = if vm.metadata.deletion_timestamp.is_some() {
        "Terminating".to_owned()
    } else {
        format!("{:?}", status.state)
    };
    let mut row = vec![
        vm.metadata.name.clone(),
        state,
        or_none(status.node_name.as_ref()),
        vm.spec.vcpus.to_string(),
        format!("{}Mi", vm.spec.memory_mib),
        format!("{:.0}", status.cpu_percent),
        age_of(&vm.metadata, now),
    ];
    if wide {
        let placement: Vec<String> = status
            .vcpus
            .iter()
            .map(|v| match v.cpu {
                Some(cpu) => format!("{}:{cpu}", v.vcpu),
                None => format!("{}:-", v.vcpu),
            })
            .collect();
        row.push(format!("{:?}", vm.spec.run_state));
        row.push(or_none(status.domain_id.as_ref()));
        row.push(if placement.is_empty() {
            NONE.to_owned()
        } else {
            placement.join(",")
        });
    }
    row
}

pub fn node_headers(wide: bool) -> Vec<&'static str> {
    let base = vec!["NAME", "READY", "ACCEPTS-MIGRATIONS", "CPU%", "VMS", "AGE"];
    with_wide(base, wide, &["CPUS", "MEMORY", "DRIVER", "POINTS"])
}

/// A node, with the merged status of [`crate::view::merge_node_status`]: READY is the
/// controller's `Ready` condition (True, False or Unknown) when it wrote one, else whether a
/// heartbeat exists; CPU% is the mean load of its CPUs; VMS the domains it reports; POINTS
/// (wide) the balancer's points and trigger.
pub fn node_row(node: &Node, now: DateTime<Utc>, wide: bool) -> Vec<String> {
    let status = node.status.clone().unwrap_or_default();
    let load = if status.cpu_load.is_empty() {
        0.0
    } else {
        status.cpu_load.iter().sum::<f64>() / status.cpu_load.len() as f64
    };
    let mut ready = match find_condition(&status.conditions, "Ready") {
        Some(condition) => format!("{:?}", condition.status),
        None if status.ready => "True".to_owned(),
        None => "False".to_owned(),
    };
    if node.spec.unschedulable {
        ready.push_str(",SchedulingDisabled");
    }
    let mut row = vec![
        node.metadata.name.clone(),
        ready,
        node.spec.accept_migrations.to_string(),
        format!("{load:.0}"),
        status.domains.len().to_string(),
        age_of(&node.metadata, now),
    ];
    if wide {
        row.push(status.cpus.to_string());
        row.push(format!("{}Mi", status.memory_total_mib));
        row.push(if status.driver.is_empty() {
            NONE.to_owned()
        } else {
            status.driver.clone()
        });
        row.push(
            status
                .balancer
                .as_ref()
                .map_or_else(|| NONE.to_owned(), crate::points::cell),
        );
    }
    row
}

pub fn migration_headers(wide: bool) -> Vec<&'static str> {
    let base = vec!["NAME", "VM", "SOURCE", "TARGET", "PHASE", "AGE"];
    with_wide(base, wide, &["REASON", "DURATION", "DOWNTIME"])
}

pub fn migration_row(migration: &Migration, now: DateTime<Utc>, wide: bool) -> Vec<String> {
    let status = migration.status.clone().unwrap_or_default();
    let target = status
        .target_node
        .as_ref()
        .or(migration.spec.target_node.as_ref());
    let mut row = vec![
        migration.metadata.name.clone(),
        migration.spec.vm.clone(),
        or_none(status.source_node.as_ref()),
        or_none(target),
        format!("{:?}", status.phase),
        age_of(&migration.metadata, now),
    ];
    if wide {
        let millis = |ms: Option<u64>| {
            ms.map_or_else(
                || NONE.to_owned(),
                |ms| format_duration(Duration::from_millis(ms)),
            )
        };
        row.push(format!("{:?}", migration.spec.reason));
        row.push(millis(status.total_time_ms));
        row.push(millis(status.downtime_ms));
    }
    row
}

pub fn volume_headers(wide: bool) -> Vec<&'static str> {
    let base = vec!["NAME", "SIZE", "BACKEND", "PHASE", "ENDPOINT", "AGE"];
    with_wide(base, wide, &["FORMAT", "PATH"])
}

pub fn volume_row(volume: &Volume, now: DateTime<Utc>, wide: bool) -> Vec<String> {
    let status = volume.status.clone().unwrap_or_default();
    let mut row = vec![
        volume.metadata.name.clone(),
        format!("{}Mi", volume.spec.size_mib),
        format!("{:?}", volume.spec.backend).to_lowercase(),
        format!("{:?}", status.phase),
        or_none(status.endpoint.as_ref()),
        age_of(&volume.metadata, now),
    ];
    if wide {
        row.push(format!("{:?}", volume.spec.format).to_lowercase());
        row.push(or_none(status.path.as_ref()));
    }
    row
}

pub fn policy_headers(wide: bool) -> Vec<&'static str> {
    let base = vec!["NAME", "BALANCER", "THRESHOLD", "AGE"];
    with_wide(base, wide, &["POINTS", "SAMPLE", "OVERCOMMIT"])
}

pub fn policy_row(policy: &ClusterPolicy, now: DateTime<Utc>, wide: bool) -> Vec<String> {
    let balancer = &policy.spec.balancer;
    let kind = if balancer.enabled {
        format!("{:?}", balancer.policy).to_lowercase()
    } else {
        "off".to_owned()
    };
    let mut row = vec![
        policy.metadata.name.clone(),
        kind,
        format!("{}%", balancer.threshold_percent),
        age_of(&policy.metadata, now),
    ];
    if wide {
        row.push(balancer.points_to_trigger.to_string());
        row.push(format!("{}s", balancer.sample_interval_seconds));
        row.push(policy.spec.scheduling.cpu_overcommit_ratio.to_string());
    }
    row
}

pub fn event_headers(wide: bool) -> Vec<&'static str> {
    let base = vec!["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"];
    with_wide(base, wide, &["SOURCE", "COUNT", "FIRST SEEN"])
}

pub fn event_row(event: &Event, now: DateTime<Utc>, wide: bool) -> Vec<String> {
    let object = &event.involved_object;
    let mut row = vec![
        age((now - event.last_timestamp).num_seconds()),
        format!("{:?}", event.type_),
        event.reason.clone(),
        format!("{}/{}", object.kind.to_lowercase(), object.name),
        event.message.clone(),
    ];
    if wide {
        row.push(event.source.clone());
        row.push(event.count.to_string());
        row.push(age((now - event.first_timestamp).num_seconds()));
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use herd_crds::node::NodeSpec;
    use herd_crds::virtual_machine::{VcpuStatus, VmState};
    use herd_crds::{Condition, ConditionStatus, NodeStatus, Object, VirtualMachineStatus};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 1, 0, 0).unwrap()
    }

    fn vm() -> VirtualMachine {
        let mut vm: VirtualMachine = Object::new(
            "small-1",
            herd_crds::yaml::from_str("memoryMiB: 512").unwrap(),
        );
        vm.metadata.creation_timestamp = Some(Utc.with_ymd_and_hms(2026, 1, 1, 0, 55, 0).unwrap());
        vm
    }

    #[test]
    fn a_vm_row_shows_state_node_size_and_age() {
        let mut vm = vm();
        vm.status = Some(VirtualMachineStatus {
            node_name: Some("ferby".into()),
            state: VmState::Running,
            cpu_percent: 12.6,
            domain_id: Some("7".into()),
            vcpus: vec![
                VcpuStatus {
                    vcpu: 0,
                    cpu: Some(2),
                    percent: 1.0,
                    wait_percent: 0.0,
                },
                VcpuStatus {
                    vcpu: 1,
                    cpu: None,
                    percent: 1.0,
                    wait_percent: 0.0,
                },
            ],
            ..VirtualMachineStatus::default()
        });
        assert_eq!(
            vm_row(&vm, now(), true),
            [
                "small-1", "Running", "ferby", "1", "512Mi", "13", "5m", "Running", "7", "0:2,1:-"
            ]
        );
        assert_eq!(vm_headers(true).len(), vm_row(&vm, now(), true).len());
        vm.metadata.deletion_timestamp = Some(now());
        assert_eq!(vm_row(&vm, now(), false)[1], "Terminating");
    }

    #[test]
    fn a_vm_never_observed_shows_none() {
        assert_eq!(
            vm_row(&vm(), now(), false),
            ["small-1", "Pending", "<none>", "1", "512Mi", "0", "5m"]
        );
    }

    #[test]
    fn a_node_row_reads_the_merged_status() {
        let mut node: Node = Object::new("ferby", NodeSpec::default());
        node.spec.unschedulable = true;
        node.status = Some(NodeStatus {
            ready: true,
            cpus: 2,
            cpu_load: vec![10.0, 30.0],
            memory_total_mib: 4096,
            driver: "qemu".into(),
            ..NodeStatus::default()
        });
        assert_eq!(
            node_row(&node, now(), true),
            [
                "ferby",
                "True,SchedulingDisabled",
                "true",
                "20",
                "0",
                "<unknown>",
                "2",
                "4096Mi",
                "qemu",
                "<none>"
            ]
        );
        let status = node.status.as_mut().unwrap();
        status.conditions.push(Condition::new(
            "Ready",
            ConditionStatus::Unknown,
            "Lost",
            "",
            now(),
        ));
        assert_eq!(
            node_row(&node, now(), false)[1],
            "Unknown,SchedulingDisabled"
        );
        assert_eq!(node_headers(true).len(), 10);
        node.status.as_mut().unwrap().balancer = Some(herd_crds::balancing::NodeBalancerStatus {
            points: 2,
            points_to_trigger: 5,
            ..Default::default()
        });
        assert_eq!(node_row(&node, now(), true)[9], "2/5");
    }
}
