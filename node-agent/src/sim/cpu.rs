//! CPU accounting of a simulated host: where vCPUs run and what share of a CPU each one gets.
//!
//! The model of the host's scheduler, applied afresh at every instant:
//!
//! 1. **Placement.** vCPUs are placed one by one, the most demanding first (ties: in the order
//!    given, which the host keeps sorted by domain name and vCPU number), each on the physical
//!    CPU with the least demand placed so far (ties: the one with fewer vCPUs, then the lowest
//!    number). The same demands always give the same placement, whatever order the domains were
//!    created in, and idle vCPUs spread over the CPUs instead of piling onto CPU 0.
//! 2. **Contention.** A CPU whose vCPUs demand more than 100% in total is shared in proportion
//!    to demand: two vCPUs demanding 100% each on one CPU get 50% each. A CPU never reports more
//!    than 100%.
//!
//! Demand is what a vCPU wants; granted is what it gets. Both are kept, so that a balancer can
//! tell a busy host (granted near 100%) from an overloaded one (demand above what it grants).

/// One vCPU asking for CPU time, in percent of one CPU.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VcpuDemand {
    pub vcpu: u32,
    pub demand: f64,
}

/// One physical CPU over the accounted instant.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuLoad {
    /// Sum of the demand of the vCPUs placed here; may exceed 100.
    pub demand: f64,
    /// What the CPU delivers: `min(demand, 100)`.
    pub granted: f64,
    /// How many vCPUs are placed here.
    pub vcpus: u32,
}

/// One vCPU, placed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VcpuLoad {
    pub vcpu: u32,
    /// The physical CPU it runs on; `None` while its domain has no running vCPUs (shut down, or
    /// waiting for an incoming migration).
    pub cpu: Option<u32>,
    pub demand: f64,
    pub granted: f64,
}

/// Placement and shares for a whole host: the input's vCPUs, in the input's order.
#[derive(Clone, Debug, PartialEq)]
pub struct Accounting {
    pub cpus: Vec<CpuLoad>,
    pub vcpus: Vec<VcpuLoad>,
}

/// Places `vcpus` on `cpus` physical CPUs and shares each CPU by demand.
///
/// With no CPUs (which a simulated host refuses) nothing is placed and nothing granted.
pub fn account(cpus: u32, vcpus: &[VcpuDemand]) -> Accounting {
    let mut loads = vec![CpuLoad::default(); cpus as usize];
    let placement = place(&mut loads, vcpus);
    for load in &mut loads {
        load.granted = load.demand.min(100.0);
    }
    let vcpus = vcpus
        .iter()
        .zip(placement)
        .map(|(vcpu, cpu)| {
            let granted = cpu
                .and_then(|cpu| loads.get(cpu as usize))
                .map_or(0.0, |load| share(vcpu.demand, load.demand));
            VcpuLoad {
                vcpu: vcpu.vcpu,
                cpu,
                demand: vcpu.demand,
                granted,
            }
        })
        .collect();
    Accounting { cpus: loads, vcpus }
}

/// The CPU of each vCPU (by input position), most demanding first, least loaded CPU first.
fn place(loads: &mut [CpuLoad], vcpus: &[VcpuDemand]) -> Vec<Option<u32>> {
    let mut order: Vec<usize> = (0..vcpus.len()).collect();
    // Stable: equal demands keep the input order.
    order.sort_by(|a, b| vcpus[*b].demand.total_cmp(&vcpus[*a].demand));
    let mut placement = vec![None; vcpus.len()];
    for index in order {
        let Some(cpu) = least_loaded(loads) else {
            break;
        };
        loads[cpu].demand += vcpus[index].demand;
        loads[cpu].vcpus += 1;
        placement[index] = u32::try_from(cpu).ok();
    }
    placement
}

/// The CPU with the least demand, then the fewest vCPUs, then the lowest number.
fn least_loaded(loads: &[CpuLoad]) -> Option<usize> {
    loads
        .iter()
        .enumerate()
        .min_by(|(_, a), (_, b)| a.demand.total_cmp(&b.demand).then(a.vcpus.cmp(&b.vcpus)))
        .map(|(index, _)| index)
}

/// What a vCPU demanding `demand` gets on a CPU whose vCPUs demand `total`.
fn share(demand: f64, total: f64) -> f64 {
    if total > 100.0 {
        demand * 100.0 / total
    } else {
        demand
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demands(values: &[f64]) -> Vec<VcpuDemand> {
        values
            .iter()
            .map(|demand| VcpuDemand {
                vcpu: 0,
                demand: *demand,
            })
            .collect()
    }

    fn granted(accounting: &Accounting) -> Vec<f64> {
        accounting.vcpus.iter().map(|v| v.granted).collect()
    }

    fn cpus_of(accounting: &Accounting) -> Vec<Option<u32>> {
        accounting.vcpus.iter().map(|v| v.cpu).collect()
    }

    #[test]
    fn two_busy_vcpus_share_one_cpu_equally() {
        let accounting = account(1, &demands(&[100.0, 100.0]));
        assert_eq!(granted(&accounting), [50.0, 50.0]);
        assert_eq!(accounting.cpus[0].demand, 200.0);
        assert_eq!(accounting.cpus[0].granted, 100.0);
    }

    #[test]
    fn two_busy_vcpus_on_two_cpus_get_all_they_ask() {
        let accounting = account(2, &demands(&[100.0, 100.0]));
        assert_eq!(granted(&accounting), [100.0, 100.0]);
        assert_eq!(cpus_of(&accounting), [Some(0), Some(1)]);
    }

    #[test]
    fn shares_are_proportional_to_demand() {
        let accounting = account(1, &demands(&[90.0, 30.0]));
        assert_eq!(granted(&accounting), [75.0, 25.0]);
        let light = account(1, &demands(&[40.0, 30.0]));
        assert_eq!(granted(&light), [40.0, 30.0]);
        assert_eq!(light.cpus[0].granted, 70.0);
    }

    #[test]
    fn the_busiest_vcpus_are_placed_first_on_the_least_loaded_cpu() {
        let accounting = account(2, &demands(&[10.0, 90.0, 80.0, 20.0]));
        // 90 → CPU 0, 80 → CPU 1, 20 → CPU 1 (80 < 90), 10 → CPU 0 (90 < 100).
        assert_eq!(cpus_of(&accounting), [Some(0), Some(0), Some(1), Some(1)]);
        assert_eq!(accounting.cpus[0].demand, 100.0);
        assert_eq!(accounting.cpus[1].demand, 100.0);
    }

    #[test]
    fn idle_vcpus_spread_over_the_cpus() {
        let accounting = account(3, &demands(&[0.0; 5]));
        assert_eq!(
            cpus_of(&accounting),
            [Some(0), Some(1), Some(2), Some(0), Some(1)]
        );
    }

    #[test]
    fn no_cpus_grant_nothing() {
        let accounting = account(0, &demands(&[50.0]));
        assert_eq!(cpus_of(&accounting), [None]);
        assert_eq!(granted(&accounting), [0.0]);
    }
}
