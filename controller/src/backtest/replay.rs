//! One replay of the traces under one policy: the simulation loop around [`balance`].
//!
//! At every sample time `t` (from 0, every `sample_seconds`, over the length of the longest
//! trace × the trace step):
//!
//! 1. migrations due by `t` land (the VM now runs on its target);
//! 2. each VM wants `trace[t / step] × its units` of CPU; each host is accounted
//!    ([`super::accounting`]) and counted in the metrics for the time until the next sample;
//! 3. the hosts report as an agent would — per-CPU load, each vCPU's CPU, granted share and
//!    wait (the demand its CPU could not serve, as KVM's schedstat run-queue delay) — and
//!    [`balance`] decides, exactly as in the controller (the LR-MMT run instead hands each
//!    VM's demand to [`LrMmt`]); each host that runs a VM or takes part in a migration is
//!    powered and its energy counted ([`super::energy`]);
//! 4. each planned move starts and lands `memory / bandwidth` seconds later; until then the VM
//!    runs on its source and its memory is held on both nodes, as the controller's ledger
//!    counts it.

use std::collections::HashMap;

use herd_crds::cluster_policy::{BalancerPolicy, MigrationLimits};

use super::accounting::{self, HostShare};
use super::fleet::{Fleet, REFERENCE_UNITS, node_view};
use super::lrmmt::{LrMmt, Snapshot};
use super::metrics::{Metrics, Recorder};
use super::traces::Trace;
use super::{BacktestConfig, RunKind};
use crate::balancer::{
    BalancerState, Decision, HostView, InFlight, PastMove, VcpuUse, VmView, balance,
};

/// A migration under way.
struct Flight {
    vm: usize,
    from: usize,
    to: usize,
    started_at: f64,
    lands_at: f64,
}

/// The state of one replay.
struct Replay<'a> {
    fleet: &'a Fleet,
    traces: &'a [Trace],
    config: &'a BacktestConfig,
    policy: BalancerPolicy,
    /// `Some` for the LR-MMT run, which does not call the balancer.
    lrmmt: Option<LrMmt>,
    limits: MigrationLimits,
    host_of: Vec<Option<usize>>,
    placed_at: Vec<f64>,
    history: Vec<Vec<PastMove>>,
    flights: Vec<Flight>,
    state: BalancerState,
    recorder: Recorder,
    vm_index: HashMap<&'a str, usize>,
    host_index: HashMap<&'a str, usize>,
}

/// Replays the traces under the run `kind`; returns what was measured.
pub(super) fn run(
    fleet: &Fleet,
    traces: &[Trace],
    config: &BacktestConfig,
    kind: RunKind,
) -> Metrics {
    let samples = traces.iter().map(|t| t.samples.len()).max().unwrap_or(0);
    let duration = config.step_seconds * samples as f64;
    let policy = config.policy_for(kind);
    let interval = if kind == RunKind::LrMmt {
        config.step_seconds
    } else {
        config.sample_seconds(&policy)
    };
    let mut replay = Replay::new(fleet, traces, config, policy);
    if kind == RunKind::LrMmt {
        replay.lrmmt = Some(LrMmt::default());
    }
    let mut tick: u64 = 0;
    loop {
        let now = tick as f64 * interval;
        if now >= duration - 1e-9 {
            break;
        }
        let seconds = interval.min(duration - now);
        replay.sample(now, seconds);
        tick += 1;
    }
    replay.recorder.finish()
}

impl<'a> Replay<'a> {
    fn new(
        fleet: &'a Fleet,
        traces: &'a [Trace],
        config: &'a BacktestConfig,
        policy: BalancerPolicy,
    ) -> Self {
        Self {
            fleet,
            traces,
            config,
            policy,
            lrmmt: None,
            limits: config.policy.migration.clone(),
            host_of: fleet.initial.clone(),
            placed_at: vec![0.0; fleet.vms.len()],
            history: vec![Vec::new(); fleet.vms.len()],
            flights: Vec::new(),
            state: BalancerState::new(),
            recorder: Recorder::default(),
            vm_index: fleet
                .vms
                .iter()
                .enumerate()
                .map(|(i, v)| (v.name.as_str(), i))
                .collect(),
            host_index: fleet
                .hosts
                .iter()
                .enumerate()
                .map(|(i, h)| (h.name.as_str(), i))
                .collect(),
        }
    }

    fn sample(&mut self, now: f64, seconds: f64) {
        self.land(now);
        let step = ((now + 1e-9) / self.config.step_seconds).floor() as usize;
        let residents = self.residents();
        let shares: Vec<HostShare> = residents
            .iter()
            .enumerate()
            .map(|(host, vms)| self.account(host, vms, step))
            .collect();
        self.measure(&residents, &shares, seconds);
        let moves = if self.lrmmt.is_some() {
            self.decide_lrmmt(step)
        } else {
            let hosts = self.host_views(&residents, &shares);
            let vms = self.vm_views();
            let in_flight = self.in_flight();
            let decision = balance(
                &self.policy,
                &self.limits,
                &mut self.state,
                &hosts,
                &vms,
                &in_flight,
                now,
            );
            self.moves_of(&decision)
        };
        self.start(&moves, now);
    }

    /// Counts each host's load and, when it is powered, its energy over `seconds`.
    fn measure(&mut self, residents: &[Vec<usize>], shares: &[HostShare], seconds: f64) {
        let threshold = self.policy.threshold_percent;
        let mut migrating = vec![false; residents.len()];
        for flight in &self.flights {
            migrating[flight.from] = true;
            migrating[flight.to] = true;
        }
        for (host, (vms, share)) in residents.iter().zip(shares).enumerate() {
            let load = share.load_percent();
            self.recorder.host(vms.len(), load, threshold, seconds);
            if !vms.is_empty() || migrating[host] {
                let watts = self.fleet.hosts[host].power.watts(load / 100.0);
                self.recorder.power(watts, seconds);
            }
        }
    }

    /// LR-MMT's migrations at trace step `step`.
    fn decide_lrmmt(&mut self, step: usize) -> Vec<(usize, usize, usize, u64)> {
        let demands: Vec<f64> = self
            .fleet
            .vms
            .iter()
            .map(|vm| vm.demand_units(self.traces[vm.trace].at(step)))
            .collect();
        let snapshot = Snapshot {
            fleet: self.fleet,
            host_of: &self.host_of,
            demand_units: &demands,
            overcommit: self.config.overcommit(),
            step_seconds: self.config.step_seconds,
            bandwidth_mib_per_s: self.config.bandwidth_mib_per_s,
        };
        let lrmmt = self.lrmmt.as_mut().expect("the LR-MMT run");
        lrmmt
            .decide(&snapshot)
            .into_iter()
            .map(|(vm, from, to)| (vm, from, to, self.fleet.vms[vm].spec.memory_mib))
            .collect()
    }

    /// The balancer's planned moves as `(vm, from, to, memory)` indices.
    fn moves_of(&self, decision: &Decision) -> Vec<(usize, usize, usize, u64)> {
        decision
            .moves
            .iter()
            .filter_map(|planned| {
                Some((
                    *self.vm_index.get(planned.vm.as_str())?,
                    *self.host_index.get(planned.from.as_str())?,
                    *self.host_index.get(planned.to.as_str())?,
                    planned.memory_mib,
                ))
            })
            .collect()
    }

    /// Lands the migrations due by `now`.
    fn land(&mut self, now: f64) {
        let (due, flying): (Vec<Flight>, Vec<Flight>) = std::mem::take(&mut self.flights)
            .into_iter()
            .partition(|f| f.lands_at <= now);
        self.flights = flying;
        for flight in due {
            self.host_of[flight.vm] = Some(flight.to);
            self.placed_at[flight.vm] = flight.lands_at;
            self.history[flight.vm].push(PastMove {
                from: self.fleet.hosts[flight.from].name.clone(),
                to: self.fleet.hosts[flight.to].name.clone(),
                at: flight.lands_at,
                by_balancer: true,
            });
        }
    }

    /// The VMs running on each host.
    fn residents(&self) -> Vec<Vec<usize>> {
        let mut residents = vec![Vec::new(); self.fleet.hosts.len()];
        for (vm, host) in self.host_of.iter().enumerate() {
            if let Some(host) = host {
                residents[*host].push(vm);
            }
        }
        residents
    }

    fn account(&self, host: usize, vms: &[usize], step: usize) -> HostShare {
        let host = &self.fleet.hosts[host];
        let demands: Vec<f64> = vms
            .iter()
            .map(|vm| {
                let vm = &self.fleet.vms[*vm];
                let percent = self.traces[vm.trace].at(step);
                vm.demand_units(percent) * 100.0 / host.cpu_units
            })
            .collect();
        accounting::account(host.cpus, &demands)
    }

    fn host_views(&self, residents: &[Vec<usize>], shares: &[HostShare]) -> Vec<HostView> {
        let mut incoming = vec![(0_u64, 0_u64); self.fleet.hosts.len()];
        for flight in &self.flights {
            let spec = &self.fleet.vms[flight.vm].spec;
            incoming[flight.to].0 += u64::from(spec.vcpus);
            incoming[flight.to].1 += spec.memory_mib;
        }
        let overcommit = self.config.overcommit();
        self.fleet
            .hosts
            .iter()
            .enumerate()
            .map(|(index, host)| {
                let mut node = node_view(host);
                let vms = &residents[index];
                let share = &shares[index];
                node.used_vcpus = incoming[index].0;
                node.used_memory_mib = incoming[index].1;
                for vm in vms {
                    node.used_vcpus += u64::from(self.fleet.vms[*vm].spec.vcpus);
                    node.used_memory_mib += self.fleet.vms[*vm].spec.memory_mib;
                }
                let vcpus = vms
                    .iter()
                    .zip(&share.vcpus)
                    .map(|(vm, vcpu)| VcpuUse {
                        vm: self.fleet.vms[*vm].name.clone(),
                        vcpu: 0,
                        pcpu: Some(vcpu.pcpu),
                        percent: vcpu.granted,
                        wait_percent: (vcpu.demand - vcpu.granted).max(0.0),
                    })
                    .collect();
                HostView {
                    node,
                    accepts_migrations: true,
                    overcommit,
                    cpu_speed: host.cpu_units / REFERENCE_UNITS,
                    cpu_load: share.cpu_load.clone(),
                    vcpus,
                }
            })
            .collect()
    }

    fn vm_views(&self) -> Vec<VmView> {
        self.fleet
            .vms
            .iter()
            .enumerate()
            .filter_map(|(index, vm)| {
                let host = self.host_of[index]?;
                Some(VmView {
                    name: vm.name.clone(),
                    node: self.fleet.hosts[host].name.clone(),
                    spec: vm.spec.clone(),
                    labels: Default::default(),
                    running: true,
                    placed_at: self.placed_at[index],
                    moves: self.history[index].clone(),
                })
            })
            .collect()
    }

    fn in_flight(&self) -> Vec<InFlight> {
        self.flights
            .iter()
            .map(|f| InFlight {
                vm: self.fleet.vms[f.vm].name.clone(),
                from: self.fleet.hosts[f.from].name.clone(),
                to: self.fleet.hosts[f.to].name.clone(),
                started_at: f.started_at,
            })
            .collect()
    }

    /// Starts `(vm, from, to, memory)` moves.
    fn start(&mut self, moves: &[(usize, usize, usize, u64)], now: f64) {
        for &(vm, from, to, memory_mib) in moves {
            let seconds = memory_mib as f64 / self.config.bandwidth_mib_per_s;
            self.recorder.migration(vm, now);
            self.flights.push(Flight {
                vm,
                from,
                to,
                started_at: now,
                lands_at: now + seconds,
            });
        }
    }
}
