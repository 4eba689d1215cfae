//! CPU accounting of one simulated host in the backtest (pure).
//!
//! CloudSim's model, in its units: a host's CPUs are one pool shared by its VMs (a
//! work-conserving scheduler that moves vCPUs between CPUs), and a vCPU never gets more than
//! one CPU. So a host's load is `min(100, Σ min(100, demand) / cpus)` — the sum of demands over
//! the capacity — and when the vCPUs want more than the host has, each gets its share in
//! proportion to what it wants. A 2500-unit VM at full load on a 1860-unit CPU gets 1860 and
//! waits for the rest (CloudSim caps a VM's processing element at its host's the same way).
//!
//! This is the balancer's own projection model ([`crate::balancer::projection`]); the sim
//! driver instead places vCPUs on CPUs at each instant (no migration between CPUs), which
//! matters for the seed's scenarios but not at 5-minute steps. The controller does not depend
//! on the agent, so the few lines are here.
//!
//! All values are percent of one physical CPU of this host.

/// One vCPU.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VcpuShare {
    /// The CPU it is reported on: vCPUs are dealt over the CPUs in turn, most demanding first
    /// (nominal: the pool model does not pin them).
    pub pcpu: u32,
    pub demand: f64,
    pub granted: f64,
}

/// One host at one instant.
#[derive(Clone, Debug, PartialEq)]
pub struct HostShare {
    /// Load of each physical CPU (0–100): the pool's load on every CPU.
    pub cpu_load: Vec<f64>,
    /// The vCPUs, in the order of the demands given.
    pub vcpus: Vec<VcpuShare>,
}

impl HostShare {
    /// Mean load over the CPUs: the host's CPU load, percent (0–100).
    pub fn load_percent(&self) -> f64 {
        if self.cpu_load.is_empty() {
            return 0.0;
        }
        self.cpu_load.iter().sum::<f64>() / self.cpu_load.len() as f64
    }
}

/// Shares `cpus` physical CPUs among vCPUs wanting `demands`.
pub fn account(cpus: u32, demands: &[f64]) -> HostShare {
    let cpus = cpus.max(1);
    let capacity = f64::from(cpus) * 100.0;
    let wanted: f64 = demands.iter().map(|d| d.min(100.0)).sum();
    let scale = if wanted > capacity {
        capacity / wanted
    } else {
        1.0
    };
    let mut order: Vec<usize> = (0..demands.len()).collect();
    order.sort_by(|a, b| demands[*b].total_cmp(&demands[*a]));
    let mut pcpu = vec![0_u32; demands.len()];
    for (turn, index) in order.into_iter().enumerate() {
        pcpu[index] = (turn as u32) % cpus;
    }
    let vcpus = demands
        .iter()
        .zip(pcpu)
        .map(|(demand, pcpu)| VcpuShare {
            pcpu,
            demand: *demand,
            granted: demand.min(100.0) * scale,
        })
        .collect();
    let load = (wanted / f64::from(cpus)).min(100.0);
    HostShare {
        cpu_load: vec![load; cpus as usize],
        vcpus,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vcpu_gets_at_most_one_cpu() {
        let share = account(2, &[134.4]);
        assert_eq!(share.vcpus[0].granted, 100.0);
        assert_eq!(share.load_percent(), 50.0);
    }

    #[test]
    fn the_host_is_one_pool_shared_in_proportion_when_short() {
        let share = account(2, &[70.0, 70.0, 70.0]);
        assert_eq!(share.load_percent(), 100.0);
        let granted: f64 = share.vcpus.iter().map(|v| v.granted).sum();
        assert!((granted - 200.0).abs() < 1e-9);
        assert!((share.vcpus[0].granted - 200.0 / 3.0).abs() < 1e-9);
        let cpus: Vec<u32> = share.vcpus.iter().map(|v| v.pcpu).collect();
        assert_eq!(cpus, [0, 1, 0]);
        let light = account(2, &[30.0, 20.0]);
        assert_eq!(light.load_percent(), 25.0);
        assert_eq!(light.vcpus[1].granted, 20.0);
    }

    #[test]
    fn an_idle_host_reports_nothing() {
        assert_eq!(account(2, &[]).load_percent(), 0.0);
    }
}
