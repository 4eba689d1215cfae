//! LR-MMT, the published baseline (Beloglazov & Buyya 2012, "Optimal online deterministic
//! algorithms and adaptive heuristics for energy and performance efficient dynamic
//! consolidation of virtual machines in cloud data centers"), re-implemented inside herd's
//! replay harness — not CloudSim, and not herd's balancer: it decides on the replay's own
//! data and ignores herd's migration limits, as the paper's simulations had none.
//!
//! At every step (one per trace sample):
//!
//! 1. **Overload detection, LR.** A host's utilisation history is the sum of its VMs' demand
//!    histories over its capacity (as CloudSim's `PowerHostUtilizationHistory`). With at least
//!    [`LR_SAMPLES`] samples, a loess line ([`super::loess`]) through the last ten predicts the
//!    utilisation one migration time ahead (`⌈longest migration / step⌉` steps); the host is
//!    overloaded when [`SAFETY`] × that prediction ≥ 1. With fewer samples the paper's fallback
//!    applies: utilisation above [`FALLBACK_THRESHOLD`].
//! 2. **VM selection, MMT.** From each overloaded host, the VM with the least memory
//!    (memory ÷ bandwidth, the same bandwidth for all) is taken off, again until the host is
//!    no longer overloaded.
//! 3. **Placement, PABFD.** Those VMs, by current demand decreasing, each go to the host whose
//!    power draw rises least by taking it (the linear model of [`super::energy`]; ties to the
//!    first host), among hosts that are not overloaded, can hold it (herd's scheduler rules —
//!    memory, vCPUs × overcommit — as for every run, and its demand fits the host's free CPU
//!    and one of its CPUs) and, when they run VMs, would not be overloaded with it by the LR
//!    test. A VM that fits nowhere stays.
//! 4. **Underload.** Repeatedly, the least utilised host that runs VMs, is not overloaded and
//!    is not a target of this step tries to send *all* its VMs elsewhere by PABFD (never onto
//!    an empty host nor one being emptied); if one VM fits nowhere, none moves. Each host is
//!    tried once per step.

use std::collections::VecDeque;

use crate::scheduler::{NodeView, misfit};

use super::energy::PowerModel;
use super::fleet::{Fleet, node_view};
use super::loess;

/// The paper's safety parameter of LR.
pub const SAFETY: f64 = 1.2;
/// Samples the regression looks at.
pub const LR_SAMPLES: usize = 10;
/// Static threshold until a host has [`LR_SAMPLES`] samples (the paper's fallback, THR 0.7).
pub const FALLBACK_THRESHOLD: f64 = 0.7;

/// A migration LR-MMT decided: `(vm, from, to)`, by index into the fleet.
pub type LrMove = (usize, usize, usize);

/// What LR-MMT sees at one step.
pub struct Snapshot<'a> {
    pub fleet: &'a Fleet,
    /// Where each VM runs.
    pub host_of: &'a [Option<usize>],
    /// What each VM wants now, in units.
    pub demand_units: &'a [f64],
    pub overcommit: f64,
    /// Seconds per step.
    pub step_seconds: f64,
    /// Migration bandwidth, MiB/s.
    pub bandwidth_mib_per_s: f64,
}

/// LR-MMT's memory: each VM's demand over the last [`LR_SAMPLES`] steps, newest first.
#[derive(Clone, Debug, Default)]
pub struct LrMmt {
    histories: Vec<VecDeque<f64>>,
}

impl LrMmt {
    /// One optimisation: records this step's demands and returns the migrations to start.
    pub fn decide(&mut self, snapshot: &Snapshot<'_>) -> Vec<LrMove> {
        self.record(snapshot.demand_units);
        let mut work = Work::new(snapshot, &self.histories);
        let hosts = snapshot.fleet.hosts.len();
        let overloaded: Vec<bool> = (0..hosts)
            .map(|h| !work.residents[h].is_empty() && work.overloaded(h))
            .collect();
        let mut selected: Vec<(usize, usize)> = Vec::new();
        for host in (0..hosts).filter(|h| overloaded[*h]) {
            selected.extend(work.select_mmt(host).into_iter().map(|vm| (vm, host)));
        }
        selected.sort_by(|a, b| work.demand(b.0).total_cmp(&work.demand(a.0)));
        let mut moves = Vec::new();
        for (vm, from) in selected {
            match work.find_host(vm, &overloaded) {
                Some(to) => {
                    work.add(vm, to);
                    moves.push((vm, from, to));
                }
                None => work.add(vm, from),
            }
        }
        work.underload(&overloaded, &mut moves);
        moves
    }

    fn record(&mut self, demands: &[f64]) {
        self.histories.resize_with(demands.len(), VecDeque::new);
        for (history, demand) in self.histories.iter_mut().zip(demands) {
            history.push_front(*demand);
            history.truncate(LR_SAMPLES);
        }
    }
}

/// The allocation being planned during one step.
struct Work<'a> {
    snapshot: &'a Snapshot<'a>,
    histories: &'a [VecDeque<f64>],
    residents: Vec<Vec<usize>>,
    nodes: Vec<NodeView>,
    /// Current demand per host, units.
    load: Vec<f64>,
    /// Sum of the residents' histories, newest first, units.
    history: Vec<[f64; LR_SAMPLES]>,
    /// Samples every history holds (all VMs start together).
    samples: usize,
}

impl<'a> Work<'a> {
    fn new(snapshot: &'a Snapshot<'a>, histories: &'a [VecDeque<f64>]) -> Self {
        let fleet = snapshot.fleet;
        let mut work = Self {
            snapshot,
            histories,
            residents: vec![Vec::new(); fleet.hosts.len()],
            nodes: fleet.hosts.iter().map(node_view).collect(),
            load: vec![0.0; fleet.hosts.len()],
            history: vec![[0.0; LR_SAMPLES]; fleet.hosts.len()],
            samples: histories.iter().map(VecDeque::len).max().unwrap_or(0),
        };
        for (vm, host) in snapshot.host_of.iter().enumerate() {
            if let Some(host) = host {
                work.add(vm, *host);
            }
        }
        work
    }

    fn demand(&self, vm: usize) -> f64 {
        self.snapshot.demand_units[vm]
    }

    fn capacity(&self, host: usize) -> f64 {
        let host = &self.snapshot.fleet.hosts[host];
        f64::from(host.cpus) * host.cpu_units
    }

    fn utilisation(&self, host: usize) -> f64 {
        self.load[host] / self.capacity(host)
    }

    fn shift(&mut self, vm: usize, host: usize, sign: f64) {
        let spec = &self.snapshot.fleet.vms[vm].spec;
        let node = &mut self.nodes[host];
        if sign > 0.0 {
            node.used_vcpus += u64::from(spec.vcpus);
            node.used_memory_mib += spec.memory_mib;
            self.residents[host].push(vm);
        } else {
            node.used_vcpus -= u64::from(spec.vcpus);
            node.used_memory_mib -= spec.memory_mib;
            self.residents[host].retain(|v| *v != vm);
        }
        self.load[host] += sign * self.demand(vm);
        for (sum, value) in self.history[host].iter_mut().zip(&self.histories[vm]) {
            *sum += sign * value;
        }
    }

    fn add(&mut self, vm: usize, host: usize) {
        self.shift(vm, host, 1.0);
    }

    fn remove(&mut self, vm: usize, host: usize) {
        self.shift(vm, host, -1.0);
    }

    /// Steps a migration off `host` takes: its largest VM's memory over the bandwidth.
    fn migration_steps(&self, host: usize) -> f64 {
        let largest = self.residents[host]
            .iter()
            .map(|vm| self.snapshot.fleet.vms[*vm].spec.memory_mib)
            .max()
            .unwrap_or(0) as f64;
        (largest / self.snapshot.bandwidth_mib_per_s / self.snapshot.step_seconds).ceil()
    }

    /// The LR test (or its fallback) on the host as planned so far.
    fn overloaded(&self, host: usize) -> bool {
        if self.samples < LR_SAMPLES {
            return self.utilisation(host) > FALLBACK_THRESHOLD;
        }
        let capacity = self.capacity(host);
        let series: Vec<f64> = self.history[host]
            .iter()
            .rev()
            .map(|units| units / capacity)
            .collect();
        let Some(line) = loess::fit(&series) else {
            return false;
        };
        let ahead = LR_SAMPLES as f64 + self.migration_steps(host);
        SAFETY * line.at(ahead) >= 1.0
    }

    /// MMT: takes the least-memory VM off `host` until it is no longer overloaded.
    fn select_mmt(&mut self, host: usize) -> Vec<usize> {
        let mut selected = Vec::new();
        while self.overloaded(host) {
            let fleet = self.snapshot.fleet;
            let cheapest = self.residents[host]
                .iter()
                .copied()
                .min_by_key(|vm| (fleet.vms[*vm].spec.memory_mib, *vm));
            let Some(vm) = cheapest else {
                break;
            };
            self.remove(vm, host);
            selected.push(vm);
        }
        selected
    }

    /// Whether `host` can hold `vm`: herd's scheduler rules, and its CPU demand fits.
    fn suitable(&self, vm: usize, host: usize) -> bool {
        let shape = &self.snapshot.fleet.hosts[host];
        let demand = self.demand(vm);
        let spec = &self.snapshot.fleet.vms[vm].spec;
        misfit(spec, &self.nodes[host], self.snapshot.overcommit).is_none()
            && demand <= shape.cpu_units
            && self.load[host] + demand <= self.capacity(host)
    }

    /// PABFD: the host whose power rises least by taking `vm`, among those not `excluded`.
    fn find_host(&mut self, vm: usize, excluded: &[bool]) -> Option<usize> {
        let mut best: Option<(usize, f64)> = None;
        for (host, excluded) in excluded.iter().enumerate() {
            if *excluded || !self.suitable(vm, host) {
                continue;
            }
            if !self.residents[host].is_empty() && self.overloaded_with(vm, host) {
                continue;
            }
            let power: PowerModel = self.snapshot.fleet.hosts[host].power;
            let before = self.utilisation(host);
            let after = before + self.demand(vm) / self.capacity(host);
            let rise = power.watts(after) - power.watts(before);
            if best.is_none_or(|(_, least)| rise < least - 1e-9) {
                best = Some((host, rise));
            }
        }
        best.map(|(host, _)| host)
    }

    fn overloaded_with(&mut self, vm: usize, host: usize) -> bool {
        self.add(vm, host);
        let overloaded = self.overloaded(host);
        self.remove(vm, host);
        overloaded
    }

    /// The underload phase: empties the least utilised hosts whose VMs all fit elsewhere.
    fn underload(&mut self, overloaded: &[bool], moves: &mut Vec<LrMove>) {
        let hosts = self.residents.len();
        let off: Vec<bool> = (0..hosts).map(|h| self.residents[h].is_empty()).collect();
        let mut no_source: Vec<bool> = (0..hosts).map(|h| overloaded[h] || off[h]).collect();
        for (_, _, to) in moves.iter() {
            no_source[*to] = true;
        }
        let mut no_target: Vec<bool> = (0..hosts).map(|h| overloaded[h] || off[h]).collect();
        loop {
            let source = (0..hosts)
                .filter(|h| !no_source[*h] && !self.residents[*h].is_empty())
                .min_by(|a, b| self.utilisation(*a).total_cmp(&self.utilisation(*b)));
            let Some(source) = source else {
                break;
            };
            no_source[source] = true;
            no_target[source] = true;
            if let Some(placed) = self.evacuate(source, &no_target) {
                for (vm, to) in placed {
                    no_source[to] = true;
                    moves.push((vm, source, to));
                }
            }
        }
    }

    /// Places every VM of `source` elsewhere, by demand decreasing; undoes all and returns
    /// `None` when one fits nowhere.
    fn evacuate(&mut self, source: usize, excluded: &[bool]) -> Option<Vec<(usize, usize)>> {
        let mut vms = self.residents[source].clone();
        vms.sort_by(|a, b| self.demand(*b).total_cmp(&self.demand(*a)));
        let mut placed = Vec::with_capacity(vms.len());
        for vm in vms {
            self.remove(vm, source);
            match self.find_host(vm, excluded) {
                Some(to) => {
                    self.add(vm, to);
                    placed.push((vm, to));
                }
                None => {
                    self.add(vm, source);
                    for (vm, to) in placed {
                        self.remove(vm, to);
                        self.add(vm, source);
                    }
                    return None;
                }
            }
        }
        Some(placed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backtest::traces::Trace;
    use crate::backtest::{BacktestConfig, InitialPlacement};

    /// Four hosts, VMs of 1000 units (two on host 0, one on hosts 1 and 2, host 3 empty).
    fn fleet(vms: usize) -> Fleet {
        let mut config = BacktestConfig::cloudsim("/nowhere");
        config.hosts = 4;
        config.placement = InitialPlacement::RoundRobin;
        for shape in &mut config.host_shapes {
            shape.memory_mib = 16384;
        }
        let traces: Vec<Trace> = (0..vms)
            .map(|i| Trace {
                name: format!("t{i}"),
                samples: vec![10],
            })
            .collect();
        let mut fleet = Fleet::build(&config, &traces).unwrap();
        for vm in &mut fleet.vms {
            vm.units = 1000.0;
        }
        fleet
    }

    fn decide(
        lr: &mut LrMmt,
        fleet: &Fleet,
        host_of: &[Option<usize>],
        demand: &[f64],
    ) -> Vec<LrMove> {
        lr.decide(&Snapshot {
            fleet,
            host_of,
            demand_units: demand,
            overcommit: 4.0,
            step_seconds: 300.0,
            bandwidth_mib_per_s: 62.5,
        })
    }

    #[test]
    fn the_least_utilised_hosts_are_emptied_onto_the_others() {
        let fleet = fleet(4);
        let host_of = [Some(0), Some(1), Some(2), Some(0)];
        let mut lr = LrMmt::default();
        let moves = decide(&mut lr, &fleet, &host_of, &[400.0, 300.0, 200.0, 400.0]);
        // Host 2 (G4, 200 of 3720 units) is the least utilised: its VM goes where power
        // rises least, the G5 host 1. Host 1, now a target, is not emptied; host 0 (800 of
        // 3720) is next and sends both VMs, largest first, to host 1 as well. Host 3 is
        // empty (off) and never a target of an evacuation.
        assert_eq!(moves, [(2, 2, 1), (0, 0, 1), (3, 0, 1)]);
    }

    #[test]
    fn an_overloaded_host_sheds_its_least_memory_vm_first() {
        let fleet = fleet(4);
        // Host 0 (G4, 3720 units) with three VMs at 1000 units: 81% > 70% (fallback).
        let host_of = [Some(0), Some(0), Some(0), Some(1)];
        let mut lr = LrMmt::default();
        let moves = decide(&mut lr, &fleet, &host_of, &[1000.0, 1000.0, 1000.0, 100.0]);
        // VM 3 (613 MiB) is on host 1; on host 0 the least memory is VM 0 (870 MiB).
        assert_eq!(moves.first().map(|m| (m.0, m.1)), Some((0, 0)));
    }

    /// Whether host 1 (G5, 5320 units) is overloaded after a history of utilisations,
    /// carried by two VMs.
    fn judged(utilisations: &[f64]) -> bool {
        let fleet = fleet(2);
        let host_of = [Some(1), Some(1)];
        let mut lr = LrMmt::default();
        for u in utilisations {
            lr.record(&[u * 2660.0, u * 2660.0]);
        }
        let demands = lr.histories.iter().map(|h| h[0]).collect::<Vec<_>>();
        let snapshot = Snapshot {
            fleet: &fleet,
            host_of: &host_of,
            demand_units: &demands,
            overcommit: 4.0,
            step_seconds: 300.0,
            bandwidth_mib_per_s: 62.5,
        };
        Work::new(&snapshot, &lr.histories).overloaded(1)
    }

    #[test]
    fn local_regression_judges_the_trend_not_the_level() {
        // Flat at 75%: above the fallback's 70%, but 1.2 × 0.75 < 1.
        assert!(
            judged(&[0.75; 9]),
            "fewer than 10 samples: the 70% fallback"
        );
        assert!(!judged(&[0.75; 10]));
        // Rising 5 points a step to 80%: 1.2 × 0.85 ≥ 1.
        let rising: Vec<f64> = (0..10).map(|i| 0.35 + 0.05 * f64::from(i)).collect();
        assert!(judged(&rising));
    }
}
