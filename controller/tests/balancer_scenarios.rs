//! The seed's scenarios on simulated hosts: `balance()` driven by the sim driver's pure
//! `FabricModel` (modelled CPU contention and live migration), 4 hosts × 4 CPUs, a sample
//! every 2 s.
//!
//! The hosts report what a real agent reports today — per-CPU load and each vCPU's CPU and
//! *granted* share, no wait time — so the balancer must infer contention from shared
//! saturated CPUs. The checks use the sim's own exact demand, independently of the balancer.
//! Nothing here is a real machine: the sim models load, it measures nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use herd_agent::hypervisor::{MigrationParams, MigrationProgress};
use herd_agent::sim::domain::SimState;
use herd_agent::sim::fabric::endpoint_uri;
use herd_agent::sim::{FabricModel, HostLoad, LoadModel, SimConfig};
use herd_controller::balancer::contention::BUSY_VCPU_PERCENT;
use herd_controller::balancer::{
    BalancerState, Decision, EventKind, HostView, InFlight, PastMove, VcpuUse, VmView, balance,
};
use herd_controller::scheduler::NodeView;
use herd_crds::VirtualMachineSpec;
use herd_crds::assignment::{DiskSource, DomainDisk, DomainSpec};
use herd_crds::cluster_policy::{BalancerKind, BalancerPolicy, MigrationLimits};

const HOSTS: [&str; 4] = ["ferby", "gerby", "herby", "jerby"];
const CPUS: u32 = 4;
const MEMORY_MIB: u64 = 32 * 1024;
const SAMPLE: f64 = 2.0;

/// One VM of the lab.
struct LabVm {
    spec: Arc<VirtualMachineSpec>,
    domain: DomainSpec,
    node: String,
    placed_at: f64,
    moves: Vec<PastMove>,
}

/// A move as it happened.
#[derive(Debug)]
struct Moved {
    vm: String,
    from: String,
    to: String,
    planned_at: f64,
    completed_at: Option<f64>,
    offered: Vec<String>,
}

/// Four simulated hosts, the balancer, and the shell between them.
struct Lab {
    fabric: FabricModel,
    vms: BTreeMap<String, LabVm>,
    flying: Vec<InFlight>,
    state: BalancerState,
    policy: BalancerPolicy,
    moved: Vec<Moved>,
    decisions: Vec<Decision>,
}

fn domain_spec(name: &str) -> DomainSpec {
    DomainSpec {
        name: name.into(),
        uid: format!("uid-{name}"),
        vcpus: 1,
        memory_mib: 1024,
        boot: herd_crds::virtual_machine::Boot {
            kernel: Some("/boot/vmlinuz".into()),
            ..Default::default()
        },
        disks: vec![DomainDisk {
            name: "root".into(),
            source: DiskSource::Nbd(format!("nbd://10.0.0.1:10809/{name}")),
            target: None,
            read_only: false,
        }],
        networks: Vec::new(),
        migration: Default::default(),
    }
}

impl Lab {
    fn new(policy: BalancerPolicy) -> Self {
        let mut fabric = FabricModel::new(SimConfig::default());
        for host in HOSTS {
            fabric.add_host(host, CPUS, MEMORY_MIB).expect("a sim host");
        }
        Self {
            fabric,
            vms: BTreeMap::new(),
            flying: Vec::new(),
            state: BalancerState::new(),
            policy,
            moved: Vec::new(),
            decisions: Vec::new(),
        }
    }

    /// Starts a 1-vCPU VM that wants a whole CPU, on `node`.
    fn start_busy(&mut self, name: &str, node: &str, now: f64) {
        let domain = domain_spec(name);
        let busy = LoadModel::Constant { percent: 100.0 };
        let host = self.fabric.host_mut(node).expect("the host");
        host.create(&domain, busy, false, now)
            .expect("the domain starts");
        let spec: VirtualMachineSpec =
            herd_crds::yaml::from_str("memoryMiB: 1024").expect("a VM spec");
        let vm = LabVm {
            spec: Arc::new(spec),
            domain,
            node: node.into(),
            placed_at: now,
            moves: Vec::new(),
        };
        self.vms.insert(name.into(), vm);
    }

    /// What each host reports, as an agent would: granted shares only.
    fn host_views(&self, now: f64) -> Vec<HostView> {
        HOSTS
            .iter()
            .map(|name| {
                let load = self.fabric.host(name).expect("the host").account(now);
                let assigned: Vec<&LabVm> = self.vms.values().filter(|v| v.node == *name).collect();
                let incoming = self.flying.iter().filter(|f| f.to == *name).count() as u64;
                let vcpus = load
                    .domains
                    .iter()
                    .filter(|d| d.state == SimState::Running)
                    .flat_map(|d| {
                        d.vcpus.iter().map(|v| VcpuUse {
                            vm: d.name.clone(),
                            vcpu: v.vcpu,
                            pcpu: v.cpu,
                            percent: v.granted,
                            wait_percent: 0.0,
                        })
                    })
                    .collect();
                HostView {
                    node: NodeView {
                        name: (*name).into(),
                        labels: BTreeMap::new(),
                        ready: true,
                        unschedulable: false,
                        cpus: CPUS,
                        memory_mib: MEMORY_MIB,
                        used_vcpus: assigned.len() as u64 + incoming,
                        used_memory_mib: (assigned.len() as u64 + incoming) * 1024,
                        vm_labels: Vec::new(),
                    },
                    accepts_migrations: true,
                    overcommit: 4.0,
                    cpu_speed: 1.0,
                    cpu_load: load.cpus.iter().map(|c| c.granted).collect(),
                    vcpus,
                }
            })
            .collect()
    }

    fn vm_views(&self) -> Vec<VmView> {
        self.vms
            .iter()
            .map(|(name, vm)| VmView {
                name: name.clone(),
                node: vm.node.clone(),
                spec: vm.spec.clone(),
                labels: BTreeMap::new(),
                running: true,
                placed_at: vm.placed_at,
                moves: vm.moves.clone(),
            })
            .collect()
    }

    /// Completes the migrations due, as the controller would: the VM now runs on its target.
    fn land(&mut self, now: f64) {
        self.fabric.advance(now);
        let mut still = Vec::new();
        for flight in std::mem::take(&mut self.flying) {
            match self.fabric.progress(&flight.from, &flight.vm, now) {
                Ok(MigrationProgress::Completed { .. }) => {
                    self.fabric
                        .host_mut(&flight.from)
                        .expect("source")
                        .destroy(&flight.vm);
                    let vm = self.vms.get_mut(&flight.vm).expect("the VM");
                    vm.node = flight.to.clone();
                    vm.placed_at = now;
                    vm.moves.push(PastMove {
                        from: flight.from.clone(),
                        to: flight.to.clone(),
                        at: now,
                        by_balancer: true,
                    });
                    let record = self.moved.iter_mut().rev().find(|m| m.vm == flight.vm);
                    record.expect("a planned move").completed_at = Some(now);
                }
                Ok(MigrationProgress::Active { .. }) => still.push(flight),
                other => panic!("migration of {} went wrong: {other:?}", flight.vm),
            }
        }
        self.flying = still;
    }

    /// Starts the moves a decision planned.
    fn start_moves(&mut self, decision: &Decision, now: f64) {
        let params = MigrationParams {
            max_downtime: Duration::from_millis(300),
            bandwidth: None,
        };
        for planned in &decision.moves {
            let domain = &self.vms[&planned.vm].domain;
            let target = self.fabric.host_mut(&planned.to).expect("target");
            target
                .prepare_incoming(domain, now)
                .expect("the target prepares");
            let endpoint = endpoint_uri(&planned.to, &planned.vm);
            self.fabric
                .migrate(&planned.from, &planned.vm, &endpoint, &params, now)
                .expect("the migration starts");
            self.flying.push(InFlight {
                vm: planned.vm.clone(),
                from: planned.from.clone(),
                to: planned.to.clone(),
                started_at: now,
            });
            self.moved.push(Moved {
                vm: planned.vm.clone(),
                from: planned.from.clone(),
                to: planned.to.clone(),
                planned_at: now,
                completed_at: None,
                offered: decision
                    .events_of(EventKind::OfferHelp)
                    .filter(|e| e.vm.as_deref() == Some(planned.vm.as_str()))
                    .map(|e| e.node.clone())
                    .collect(),
            });
        }
    }

    /// One sample: land what is due, look, decide, act.
    fn sample(&mut self, now: f64) {
        self.land(now);
        let hosts = self.host_views(now);
        let vms = self.vm_views();
        let limits = MigrationLimits::default();
        let decision = balance(
            &self.policy,
            &limits,
            &mut self.state,
            &hosts,
            &vms,
            &self.flying,
            now,
        );
        self.start_moves(&decision, now);
        self.decisions.push(decision);
    }

    /// Hosts that are hot by the sim's exact demand (not the balancer's estimate).
    fn hot_hosts(&self, now: f64) -> Vec<String> {
        HOSTS
            .iter()
            .filter(|name| {
                let load: HostLoad = self.fabric.host(name).expect("host").account(now);
                load.load_percent() > self.policy.threshold_percent
                    && load.busy_vcpus(BUSY_VCPU_PERCENT) > CPUS as usize
            })
            .map(|name| (*name).to_owned())
            .collect()
    }

    /// Running VMs per host.
    fn counts(&self) -> Vec<usize> {
        HOSTS
            .iter()
            .map(|name| self.vms.values().filter(|v| v.node == *name).count())
            .collect()
    }

    /// Samples every 2 s from `from` to `to`, checking after each that no host that received
    /// a VM is hot.
    fn run(&mut self, from: f64, to: f64) {
        let mut now = from;
        while now <= to + 1e-9 {
            self.sample(now);
            let hot = self.hot_hosts(now);
            let receivers: Vec<&str> = self.moved.iter().map(|m| m.to.as_str()).collect();
            assert!(
                hot.iter().all(|h| !receivers.contains(&h.as_str())),
                "at {now} s a host that received a VM is hot: {hot:?}"
            );
            now += SAMPLE;
        }
    }
}

#[test]
fn five_busy_vms_on_ferby_move_exactly_one_about_ten_seconds_later() {
    let mut lab = Lab::new(BalancerPolicy::default());
    for (i, name) in ["vm-1", "vm-2", "vm-3", "vm-4", "vm-5"].iter().enumerate() {
        lab.start_busy(name, "ferby", i as f64 * 0.01);
    }
    assert_eq!(lab.hot_hosts(1.0), ["ferby"]);
    lab.run(SAMPLE, 120.0);

    assert_eq!(lab.moved.len(), 1, "exactly one migration: {:?}", lab.moved);
    let moved = &lab.moved[0];
    assert_eq!(moved.planned_at, 10.0, "5 points at one sample per 2 s");
    assert_eq!(moved.vm, "vm-5", "the VM that pushed ferby over");
    assert_eq!(moved.from, "ferby");
    assert!(moved.offered.contains(&moved.to), "{moved:?}");
    assert_eq!(moved.offered, ["gerby", "herby", "jerby"]);
    let completed = moved.completed_at.expect("the migration completed");
    assert!(
        completed <= 12.0,
        "1 GiB at 1 GiB/s lands by the next sample"
    );
    assert!(lab.hot_hosts(120.0).is_empty());
    assert_eq!(lab.counts(), [4, 1, 0, 0]);
    let requests = lab
        .decisions
        .iter()
        .flat_map(|d| d.events_of(EventKind::RequestHelp))
        .count();
    assert_eq!(requests, 1);
}

fn sixteen_busy_on_ferby(policy: BalancerPolicy) -> Lab {
    let mut lab = Lab::new(policy);
    for i in 0..16 {
        lab.start_busy(&format!("vm-{i:02}"), "ferby", f64::from(i) * 0.01);
    }
    lab.run(SAMPLE, 600.0);
    lab
}

fn assert_spread_evenly_by_twelve_single_moves(lab: &Lab) {
    assert_eq!(lab.counts(), [4, 4, 4, 4]);
    assert_eq!(lab.moved.len(), 12, "the minimum number of migrations");
    let mut vms: Vec<&str> = lab.moved.iter().map(|m| m.vm.as_str()).collect();
    vms.sort();
    vms.dedup();
    assert_eq!(vms.len(), 12, "no VM moved twice");
    assert!(lab.moved.iter().all(|m| m.from == "ferby"));
    assert!(lab.moved.iter().all(|m| m.completed_at.is_some()));
    assert!(lab.hot_hosts(600.0).is_empty());
}

#[test]
fn sixteen_busy_vms_on_one_host_end_four_per_host_with_twelve_moves() {
    let lab = sixteen_busy_on_ferby(BalancerPolicy::default());
    assert_spread_evenly_by_twelve_single_moves(&lab);
    // One VM per overload: a move, then a fresh run of five hot samples.
    let times: Vec<f64> = lab.moved.iter().map(|m| m.planned_at).collect();
    assert!(times.windows(2).all(|w| w[1] - w[0] >= 10.0), "{times:?}");
    assert!(lab.moved.iter().all(|m| m.offered.contains(&m.to)));
}

#[test]
fn the_score_policy_spreads_sixteen_the_same_way_faster() {
    let policy = BalancerPolicy {
        policy: BalancerKind::Score,
        ..Default::default()
    };
    let lab = sixteen_busy_on_ferby(policy);
    assert_spread_evenly_by_twelve_single_moves(&lab);
    let last = lab.moved.iter().map(|m| m.planned_at).fold(0.0, f64::max);
    assert!(last <= 60.0, "two per round, a round every 10 s: {last}");
}
