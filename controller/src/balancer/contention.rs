//! Contention: are more vCPUs busy than the host has physical CPUs? (pure)
//!
//! The seed called a node hot when its CPUs were above 80% *and* at least one CPU carried
//! several busy virtual machines; once every busy VM had a CPU to itself it moved nothing more,
//! even at 100% load. Here a node is **contended** when either
//!
//! - **more busy vCPUs than physical CPUs**: a vCPU is busy when it *wants* at least
//!   [`BUSY_VCPU_PERCENT`] of one physical CPU, so two busy vCPUs cannot share a CPU without
//!   one of them waiting; or
//! - **demand above capacity**: its vCPUs (each capped at one CPU) and the host's own work
//!   want more than all its CPUs together — some vCPUs wait even though none is busy on its
//!   own (many light VMs), which is the seed's "every CPU above 80% with several VMs on it".
//!
//! Both read zero when every busy VM has a CPU to itself, even at 100% load.
//!
//! What a vCPU wants (its demand) is not what it gets when CPUs are shared, so it is estimated
//! from what the hypervisor reports, best source first:
//!
//! 1. **Wait time reported** (`wait_percent > 0`: run-queue delay from `/proc/<tid>/schedstat`
//!    on KVM, the "runnable" runstate on Xen, or the sim's unmet demand): demand = use + wait.
//!    This is exact.
//! 2. **Shared saturated CPU** (no wait time, but the vCPU's physical CPU is at least
//!    [`SATURATED_CPU_PERCENT`] busy and carries `k ≥ 2` active vCPUs): the CPU is shared, each
//!    vCPU gets its share, and a vCPU that got `use` of it may want up to `k × use` (under
//!    proportional sharing, a vCPU that wants `d` of a CPU shared by `k` gets at least `d / k`).
//!    The estimate is `min(100, k × use)` — conservative: it may overstate a light vCPU that
//!    shares a CPU with a heavy one, so a target is never under-estimated.
//! 3. **Otherwise** the CPU is not saturated, so nobody waits: demand = use.
//!
//! Demands are in percent of one physical CPU of the host that reports them.

use super::observe::VcpuUse;

/// A vCPU that wants at least this share of one physical CPU is busy: two of them cannot share
/// one CPU without one waiting.
pub const BUSY_VCPU_PERCENT: f64 = 50.0;

/// A physical CPU at least this busy is saturated: its vCPUs may be waiting.
pub const SATURATED_CPU_PERCENT: f64 = 95.0;

/// A vCPU using less than this of a CPU does not count as sharing it (idle housekeeping).
pub const ACTIVE_VCPU_PERCENT: f64 = 1.0;

/// The estimated demand of each vCPU, in the order given, in percent of one physical CPU.
///
/// `cpu_load` is the load of each physical CPU as reported; where a vCPU's CPU is not in it,
/// the sum of the use of the vCPUs reported on that CPU stands in.
pub fn estimate_demands(cpu_load: &[f64], vcpus: &[VcpuUse]) -> Vec<f64> {
    vcpus
        .iter()
        .map(|vcpu| {
            if vcpu.wait_percent > 0.0 {
                return vcpu.percent + vcpu.wait_percent;
            }
            let Some(pcpu) = vcpu.pcpu else {
                return vcpu.percent;
            };
            let sharing = vcpus
                .iter()
                .filter(|v| v.pcpu == Some(pcpu) && v.percent >= ACTIVE_VCPU_PERCENT)
                .count();
            let load = cpu_load.get(pcpu as usize).copied().unwrap_or_else(|| {
                vcpus
                    .iter()
                    .filter(|v| v.pcpu == Some(pcpu))
                    .map(|v| v.percent)
                    .sum()
            });
            if sharing >= 2 && load >= SATURATED_CPU_PERCENT {
                (vcpu.percent * sharing as f64).clamp(vcpu.percent, 100.0)
            } else {
                vcpu.percent
            }
        })
        .collect()
}

/// Whether a vCPU wanting `demand` percent of a CPU is busy.
pub fn is_busy(demand: f64) -> bool {
    demand >= BUSY_VCPU_PERCENT
}

/// How many of these vCPU demands are busy.
pub fn busy_vcpus<'a>(demands: impl IntoIterator<Item = &'a f64>) -> u32 {
    demands.into_iter().filter(|d| is_busy(**d)).count() as u32
}

/// Demand at most this far above capacity still counts as fitting (float sums of shares).
const CAPACITY_TOLERANCE_PERCENT: f64 = 1e-6;

/// Contention: more busy vCPUs than physical CPUs, or demand above capacity
/// (`demand_percent`: what the vCPUs, each capped at one CPU, and the host's own work want, in
/// percent of all its CPUs).
pub fn is_contended(busy_vcpus: u32, pcpus: u32, demand_percent: f64) -> bool {
    busy_vcpus > pcpus || demand_percent > 100.0 + CAPACITY_TOLERANCE_PERCENT
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vcpu(vm: &str, pcpu: u32, percent: f64) -> VcpuUse {
        VcpuUse {
            vm: vm.into(),
            vcpu: 0,
            pcpu: Some(pcpu),
            percent,
            wait_percent: 0.0,
        }
    }

    #[test]
    fn reported_wait_time_gives_the_exact_demand() {
        let mut waiting = vcpu("a", 0, 50.0);
        waiting.wait_percent = 50.0;
        assert_eq!(estimate_demands(&[100.0], &[waiting]), [100.0]);
    }

    #[test]
    fn vcpus_sharing_a_saturated_cpu_are_counted_as_wanting_all_of_it() {
        // Five busy 1-vCPU VMs on four CPUs, as the sim places them: two share CPU 0.
        let vcpus = [
            vcpu("a", 0, 50.0),
            vcpu("b", 0, 50.0),
            vcpu("c", 1, 100.0),
            vcpu("d", 2, 100.0),
            vcpu("e", 3, 100.0),
        ];
        let demands = estimate_demands(&[100.0; 4], &vcpus);
        assert_eq!(demands, [100.0; 5]);
        assert_eq!(busy_vcpus(&demands), 5);
        assert!(is_contended(5, 4, 125.0));
        // Sixteen on four: 25% each, four per CPU.
        let crowded: Vec<VcpuUse> = (0..16).map(|i| vcpu("x", i % 4, 25.0)).collect();
        assert_eq!(busy_vcpus(&estimate_demands(&[100.0; 4], &crowded)), 16);
    }

    #[test]
    fn a_cpu_that_is_not_saturated_makes_nobody_wait() {
        let vcpus = [vcpu("a", 0, 30.0), vcpu("b", 0, 40.0)];
        assert_eq!(estimate_demands(&[70.0], &vcpus), [30.0, 40.0]);
        // Without a reported CPU load, the vCPUs' own use stands in.
        assert_eq!(estimate_demands(&[], &vcpus), [30.0, 40.0]);
    }

    #[test]
    fn idle_vcpus_do_not_count_as_sharing() {
        let vcpus = [vcpu("busy", 0, 99.5), vcpu("idle", 0, 0.5)];
        assert_eq!(estimate_demands(&[100.0], &vcpus), [99.5, 0.5]);
    }

    #[test]
    fn one_busy_vcpu_per_cpu_is_not_contention_even_at_full_load() {
        let vcpus: Vec<VcpuUse> = (0..4).map(|i| vcpu("x", i, 100.0)).collect();
        let demands = estimate_demands(&[100.0; 4], &vcpus);
        assert_eq!(busy_vcpus(&demands), 4);
        assert!(!is_contended(4, 4, 100.0));
    }

    #[test]
    fn many_light_vcpus_wanting_more_than_the_host_has_are_contention() {
        // Two CPUs, four vCPUs at 45-90%: one busy, but 225% wanted of 200%.
        assert!(is_contended(1, 2, 112.5));
        assert!(
            !is_contended(1, 2, 100.0),
            "exactly full is not above capacity"
        );
    }

    #[test]
    fn busy_starts_at_half_a_cpu() {
        assert!(is_busy(50.0));
        assert!(!is_busy(49.9));
        assert_eq!(busy_vcpus(&[10.0, 60.0, 100.0]), 2);
    }
}
