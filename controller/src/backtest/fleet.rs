//! The simulated fleet of a backtest: hosts and VMs of the CloudSim shapes, assigned in turn,
//! and their initial placement (pure).
//!
//! Host `j` has shape `j mod shapes` (so with two shapes, half of each); VM `i` replays trace
//! `i` and has VM shape `i mod shapes` (2500, 2000, 1000, 500 units in turn). CPU is counted in
//! *units* (MIPS in CloudSim); the balancer's reference CPU is [`REFERENCE_UNITS`] units, so a
//! host CPU of 1860 units has speed 1.86 and a VM of 2500 units at 60% wants 150% of a
//! reference CPU.
//!
//! Initial placement is the controller's scheduler ([`crate::scheduler::schedule`]: vCPUs
//! against CPUs × the overcommit ratio, memory against capacity, most free memory first), VM by
//! VM in trace order, or round-robin.

use std::collections::BTreeMap;
use std::sync::Arc;

use herd_crds::VirtualMachineSpec;

use super::energy::PowerModel;
use super::traces::Trace;
use super::{BacktestConfig, BacktestError, InitialPlacement};
use crate::scheduler::{NodeView, Placement, misfit, schedule};

/// Units of CPU of the balancer's reference CPU (speed 1.0).
pub const REFERENCE_UNITS: f64 = 1000.0;

/// One simulated host.
#[derive(Clone, Debug, PartialEq)]
pub struct SimHost {
    pub name: String,
    pub cpus: u32,
    /// Units of one CPU.
    pub cpu_units: f64,
    pub memory_mib: u64,
    pub power: PowerModel,
}

/// One simulated VM.
#[derive(Clone, Debug, PartialEq)]
pub struct SimVm {
    pub name: String,
    /// Index of its trace.
    pub trace: usize,
    /// Units of its (one) vCPU at 100%.
    pub units: f64,
    pub spec: Arc<VirtualMachineSpec>,
}

impl SimVm {
    /// What its vCPU wants at `percent` of its size, in units.
    pub fn demand_units(&self, percent: u8) -> f64 {
        self.units * f64::from(percent) / 100.0
    }
}

/// Hosts and VMs, and where each VM starts (`None`: it fits nowhere).
#[derive(Clone, Debug, PartialEq)]
pub struct Fleet {
    pub hosts: Vec<SimHost>,
    pub vms: Vec<SimVm>,
    pub initial: Vec<Option<usize>>,
}

impl Fleet {
    /// The fleet `config` describes, replaying `traces`.
    pub fn build(config: &BacktestConfig, traces: &[Trace]) -> Result<Self, BacktestError> {
        if config.hosts == 0 || config.host_shapes.is_empty() || config.vm_shapes.is_empty() {
            return Err(BacktestError::EmptyFleet);
        }
        let hosts: Vec<SimHost> = (0..config.hosts)
            .map(|j| {
                let shape = &config.host_shapes[j % config.host_shapes.len()];
                SimHost {
                    name: format!("host-{j:04}"),
                    cpus: shape.cpus,
                    cpu_units: shape.cpu_units,
                    memory_mib: shape.memory_mib,
                    power: shape.power,
                }
            })
            .collect();
        let vms: Vec<SimVm> = (0..traces.len())
            .map(|i| {
                let shape = &config.vm_shapes[i % config.vm_shapes.len()];
                let mut spec: VirtualMachineSpec =
                    herd_crds::yaml::from_str(&format!("memoryMiB: {}", shape.memory_mib))
                        .map_err(|e| BacktestError::Config(e.to_string()))?;
                spec.vcpus = 1;
                Ok(SimVm {
                    name: format!("vm-{i:04}"),
                    trace: i,
                    units: shape.units,
                    spec: Arc::new(spec),
                })
            })
            .collect::<Result<_, BacktestError>>()?;
        let initial = match config.placement {
            InitialPlacement::Scheduler => by_scheduler(&hosts, &vms, config.overcommit()),
            InitialPlacement::RoundRobin => (0..vms.len()).map(|i| Some(i % hosts.len())).collect(),
            InitialPlacement::Packed => packed(&hosts, &vms, traces, config.overcommit()),
        };
        Ok(Self {
            hosts,
            vms,
            initial,
        })
    }
}

/// An empty host as the scheduler sees it.
pub fn node_view(host: &SimHost) -> NodeView {
    NodeView {
        name: host.name.clone(),
        labels: BTreeMap::new(),
        ready: true,
        unschedulable: false,
        cpus: host.cpus,
        memory_mib: host.memory_mib,
        used_vcpus: 0,
        used_memory_mib: 0,
        vm_labels: Vec::new(),
    }
}

/// Places each VM in turn with the controller's scheduler.
fn by_scheduler(hosts: &[SimHost], vms: &[SimVm], overcommit: f64) -> Vec<Option<usize>> {
    let mut nodes: Vec<NodeView> = hosts.iter().map(node_view).collect();
    let index: BTreeMap<String, usize> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (h.name.clone(), i))
        .collect();
    vms.iter()
        .map(|vm| match schedule(&vm.spec, &nodes, overcommit) {
            Placement::Node(name) => {
                let host = index[&name];
                nodes[host].used_vcpus += u64::from(vm.spec.vcpus);
                nodes[host].used_memory_mib += vm.spec.memory_mib;
                Some(host)
            }
            Placement::Unschedulable { .. } => None,
        })
        .collect()
}

/// Places each VM in turn where power rises least at its first sample (CloudSim's PABFD at
/// the start; ties to the first host).
fn packed(
    hosts: &[SimHost],
    vms: &[SimVm],
    traces: &[Trace],
    overcommit: f64,
) -> Vec<Option<usize>> {
    let mut nodes: Vec<NodeView> = hosts.iter().map(node_view).collect();
    let mut load = vec![0.0_f64; hosts.len()];
    vms.iter()
        .map(|vm| {
            let demand = vm.demand_units(traces[vm.trace].at(0));
            let mut best: Option<(usize, f64)> = None;
            for (index, host) in hosts.iter().enumerate() {
                let capacity = f64::from(host.cpus) * host.cpu_units;
                let fits = misfit(&vm.spec, &nodes[index], overcommit).is_none()
                    && demand <= host.cpu_units
                    && load[index] + demand <= capacity;
                if !fits {
                    continue;
                }
                let before = load[index] / capacity;
                let rise = host.power.watts(before + demand / capacity) - host.power.watts(before);
                if best.is_none_or(|(_, least)| rise < least - 1e-9) {
                    best = Some((index, rise));
                }
            }
            let (host, _) = best?;
            nodes[host].used_vcpus += u64::from(vm.spec.vcpus);
            nodes[host].used_memory_mib += vm.spec.memory_mib;
            load[host] += demand;
            Some(host)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traces(count: usize) -> Vec<Trace> {
        (0..count)
            .map(|i| Trace {
                name: format!("t{i}"),
                samples: vec![50],
            })
            .collect()
    }

    #[test]
    fn shapes_are_assigned_in_turn() {
        let mut config = BacktestConfig::cloudsim("/nowhere");
        config.hosts = 4;
        let fleet = Fleet::build(&config, &traces(6)).unwrap();
        let host_units: Vec<f64> = fleet.hosts.iter().map(|h| h.cpu_units).collect();
        assert_eq!(host_units, [1860.0, 2660.0, 1860.0, 2660.0]);
        let vm_units: Vec<f64> = fleet.vms.iter().map(|v| v.units).collect();
        assert_eq!(vm_units, [2500.0, 2000.0, 1000.0, 500.0, 2500.0, 2000.0]);
        assert_eq!(fleet.vms[1].spec.memory_mib, 1740);
        assert_eq!(fleet.vms[0].demand_units(60), 1500.0);
    }

    #[test]
    fn the_scheduler_spreads_by_free_memory_and_leaves_out_what_does_not_fit() {
        let mut config = BacktestConfig::cloudsim("/nowhere");
        config.hosts = 2;
        let fleet = Fleet::build(&config, &traces(7)).unwrap();
        // 870 → host 0, 1740 → host 1, 1740 → host 0 (3226 free > 2356), 613 → host 1, ...
        assert_eq!(&fleet.initial[..4], [Some(0), Some(1), Some(0), Some(1)]);
        assert!(
            fleet.initial.contains(&None),
            "4 GiB hosts run out of memory"
        );
        config.placement = InitialPlacement::RoundRobin;
        let robin = Fleet::build(&config, &traces(3)).unwrap();
        assert_eq!(robin.initial, [Some(0), Some(1), Some(0)]);
    }

    #[test]
    fn packed_placement_fills_the_host_where_power_rises_least_first() {
        let mut config = BacktestConfig::cloudsim("/nowhere");
        config.hosts = 4;
        config.placement = InitialPlacement::Packed;
        let fleet = Fleet::build(&config, &traces(4)).unwrap();
        // The G5 hosts (1 and 3) draw less per unit of work: host 1 takes VMs while its 4 GiB
        // hold them (870 + 1740 MiB, then 613), and the third (1740 MiB) goes to host 3.
        assert_eq!(fleet.initial, [Some(1), Some(1), Some(3), Some(1)]);
    }
}
