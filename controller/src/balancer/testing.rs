//! Builders of hosts and VMs for the balancer's unit tests.

use std::collections::BTreeMap;
use std::sync::Arc;

use herd_crds::VirtualMachineSpec;

use super::observe::{HostView, VcpuUse, VmView};
use crate::scheduler::NodeView;

/// A ready host of `cpus` CPUs and 16 GiB running 1-vCPU VMs of 1 GiB: `(vm, pcpu, percent)`.
pub(crate) fn host(name: &str, cpus: u32, busy: &[(&str, u32, f64)]) -> HostView {
    let mut load = vec![0.0; cpus as usize];
    let vcpus = busy
        .iter()
        .map(|(vm, pcpu, percent)| {
            load[*pcpu as usize] += percent;
            VcpuUse {
                vm: (*vm).into(),
                vcpu: 0,
                pcpu: Some(*pcpu),
                percent: *percent,
                wait_percent: 0.0,
            }
        })
        .collect();
    HostView {
        node: NodeView {
            name: name.into(),
            labels: BTreeMap::new(),
            ready: true,
            unschedulable: false,
            cpus,
            memory_mib: 16384,
            used_vcpus: busy.len() as u64,
            used_memory_mib: busy.len() as u64 * 1024,
            vm_labels: Vec::new(),
        },
        accepts_migrations: true,
        overcommit: 4.0,
        cpu_speed: 1.0,
        cpu_load: load,
        vcpus,
    }
}

/// A running 1-vCPU VM of 1 GiB on `node`, placed at `placed_at`.
pub(crate) fn vm(name: &str, node: &str, placed_at: f64) -> VmView {
    sized_vm(name, node, placed_at, 1024)
}

/// A running 1-vCPU VM of `memory_mib` on `node`, placed at `placed_at`.
pub(crate) fn sized_vm(name: &str, node: &str, placed_at: f64, memory_mib: u64) -> VmView {
    let spec: VirtualMachineSpec =
        herd_crds::yaml::from_str(&format!("memoryMiB: {memory_mib}")).expect("a VM spec");
    VmView {
        name: name.into(),
        node: node.into(),
        spec: Arc::new(spec),
        labels: BTreeMap::new(),
        running: true,
        placed_at,
        moves: Vec::new(),
    }
}
