//! Projection: what hosts would look like once VMs move (pure).
//!
//! [`CpuModel`] models one host's CPU from what it reports: the estimated demand of each vCPU
//! ([`super::contention`]) plus a constant *background* — the load the host reports beyond its
//! vCPUs' use (the host's own work, dom0) — on `cpus` physical CPUs. The host's scheduler is
//! taken as work-conserving: each vCPU gets up to one whole CPU (`min(100, demand)`), and the
//! host delivers up to all of its CPUs:
//!
//! - `load = min(100, (background + Σ min(100, demand)) / cpus)` — what `cpu_load` would report;
//! - `demand = (background + Σ min(100, demand)) / cpus` — the same uncapped: above 100 when the
//!   vCPUs want more than the host has;
//! - busy vCPUs and contention (more busy vCPUs than CPUs, or `demand > 100`) as
//!   [`super::contention`] defines them;
//! - hot: `load > threshold` and contention.
//!
//! Demand moves between hosts in *reference* percent (local percent × the host's
//! [`HostView::cpu_speed`]), so a VM that wants 80% of a slow CPU wants less of a fast one.
//!
//! [`ClusterModel`] is the working copy of the cluster for one sample: migrations under way are
//! applied first (the VM's demand counts on its target), and every move the balancer plans is
//! applied as it is planned, so the next decision of the same round sees it.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};

use super::contention;
use super::decision::LoadSummary;
use super::observe::{HostView, InFlight, VmView};
use super::outlook::{Outlook, VmForecast};
use crate::scheduler::NodeView;

/// One host's CPU: vCPU demands by VM, in percent of one of its CPUs.
#[derive(Clone, Debug, PartialEq)]
pub struct CpuModel<'a> {
    cpus: u32,
    speed: f64,
    background: f64,
    vms: Vec<(&'a str, Vec<f64>)>,
    capped: f64,
    busy: u32,
}

impl<'a> CpuModel<'a> {
    /// The model of what `view` reports.
    pub fn from_view(view: &'a HostView) -> Self {
        let demands = contention::estimate_demands(&view.cpu_load, &view.vcpus);
        let mut vms: Vec<(&'a str, Vec<f64>)> = Vec::new();
        for (vcpu, demand) in view.vcpus.iter().zip(demands) {
            match vms.iter_mut().find(|(name, _)| *name == vcpu.vm) {
                Some((_, list)) => list.push(demand),
                None => vms.push((vcpu.vm.as_str(), vec![demand])),
            }
        }
        let used: f64 = view.vcpus.iter().map(|v| v.percent).sum();
        let reported: f64 = view.cpu_load.iter().sum();
        let mut model = Self {
            cpus: view.pcpus().max(1),
            speed: if view.cpu_speed > 0.0 {
                view.cpu_speed
            } else {
                1.0
            },
            background: if view.cpu_load.is_empty() {
                0.0
            } else {
                (reported - used).max(0.0)
            },
            vms,
            capped: 0.0,
            busy: 0,
        };
        model.refresh();
        model
    }

    fn refresh(&mut self) {
        let all = self.vms.iter().flat_map(|(_, list)| list.iter());
        self.capped = all.clone().map(|d| d.min(100.0)).sum();
        self.busy = contention::busy_vcpus(all);
    }

    fn summarise(&self, capped: f64, busy: u32, threshold: f64) -> LoadSummary {
        let demand_percent = (self.background + capped) / f64::from(self.cpus);
        let load_percent = demand_percent.min(100.0);
        LoadSummary {
            load_percent,
            demand_percent,
            busy_vcpus: busy,
            cpus: self.cpus,
            hot: load_percent > threshold
                && contention::is_contended(busy, self.cpus, demand_percent),
        }
    }

    /// The host as it stands.
    pub fn summary(&self, threshold: f64) -> LoadSummary {
        self.summarise(self.capped, self.busy, threshold)
    }

    /// The host with one more VM of these reference demands.
    pub fn summary_with(&self, reference: &[f64], threshold: f64) -> LoadSummary {
        let local = reference.iter().map(|d| d / self.speed);
        let capped: f64 = local.clone().map(|d| d.min(100.0)).sum();
        let busy = local.filter(|d| contention::is_busy(*d)).count() as u32;
        self.summarise(self.capped + capped, self.busy + busy, threshold)
    }

    /// The host without `vm`.
    pub fn summary_without(&self, vm: &str, threshold: f64) -> LoadSummary {
        let Some((_, list)) = self.vms.iter().find(|(name, _)| *name == vm) else {
            return self.summary(threshold);
        };
        let capped: f64 = list.iter().map(|d| d.min(100.0)).sum();
        let busy = contention::busy_vcpus(list);
        self.summarise(
            self.capped - capped,
            self.busy.saturating_sub(busy),
            threshold,
        )
    }

    /// `vm`'s vCPU demands in reference percent (empty when the host reports none).
    pub fn reference_demands(&self, vm: &str) -> Vec<f64> {
        self.vms
            .iter()
            .find(|(name, _)| *name == vm)
            .map(|(_, list)| list.iter().map(|d| d * self.speed).collect())
            .unwrap_or_default()
    }

    /// Whether `vm` has a busy vCPU here.
    pub fn is_busy(&self, vm: &str) -> bool {
        self.vms
            .iter()
            .any(|(name, list)| *name == vm && contention::busy_vcpus(list) > 0)
    }

    /// The host's predicted demand: its background, and each VM here as `forecasts` predicts
    /// it, or at its current demand when it has no forecast yet.
    pub fn outlook(&self, forecasts: &BTreeMap<String, VmForecast>) -> Outlook {
        let empty = Outlook::empty(self.cpus, self.speed, self.background);
        self.vms
            .iter()
            .fold(empty, |outlook, (name, local)| match forecasts.get(*name) {
                Some(forecast) => outlook.with(forecast),
                None => {
                    let reference: Vec<f64> = local.iter().map(|d| d * self.speed).collect();
                    outlook.with(&VmForecast::current(&reference))
                }
            })
    }

    /// Whether no VM's demand counts here.
    pub fn is_empty(&self) -> bool {
        self.vms.is_empty()
    }

    /// Replaces the demands of the VMs here that have an entry in `demands` (reference
    /// percent).
    pub fn replace(&mut self, demands: &BTreeMap<String, Vec<f64>>) {
        let speed = self.speed;
        for (name, list) in &mut self.vms {
            if let Some(reference) = demands.get(*name) {
                *list = reference.iter().map(|d| d / speed).collect();
            }
        }
        self.refresh();
    }

    /// Removes `vm`; returns its demands in reference percent.
    pub fn take(&mut self, vm: &str) -> Vec<f64> {
        let demands = self.reference_demands(vm);
        self.vms.retain(|(name, _)| *name != vm);
        self.refresh();
        demands
    }

    /// Adds `vm` with these demands in reference percent.
    pub fn put(&mut self, vm: &'a str, reference: &[f64]) {
        let local = reference.iter().map(|d| d / self.speed).collect();
        self.vms.push((vm, local));
        self.refresh();
    }
}

/// One host in the working copy.
#[derive(Clone, Debug)]
pub struct ModelHost<'a> {
    pub view: &'a HostView,
    /// The scheduler's view, grown by the moves planned onto it.
    pub node: Cow<'a, NodeView>,
    pub cpu: CpuModel<'a>,
    /// Migrations leaving it: under way and planned.
    pub outbound: u32,
    /// Memory of the VMs leaving it (still counted in `node.used_memory_mib` until they land).
    pub leaving_memory_mib: u64,
    /// The VMs assigned here (indices into [`ClusterModel::vms`]), including planned arrivals.
    pub vms: Vec<usize>,
}

impl ModelHost<'_> {
    pub fn name(&self) -> &str {
        &self.node.name
    }

    /// Memory in use once the VMs leaving it have left, percent of its memory.
    pub fn memory_percent(&self) -> f64 {
        if self.node.memory_mib == 0 {
            return 0.0;
        }
        let used = self
            .node
            .used_memory_mib
            .saturating_sub(self.leaving_memory_mib);
        used as f64 * 100.0 / self.node.memory_mib as f64
    }
}

/// The working copy of the cluster for one sample.
#[derive(Clone, Debug)]
pub struct ClusterModel<'a> {
    /// Sorted by name.
    pub hosts: Vec<ModelHost<'a>>,
    /// Sorted by name.
    pub vms: Vec<&'a VmView>,
    pub threshold: f64,
    by_name: HashMap<&'a str, usize>,
    moving: HashSet<&'a str>,
    /// Migrations in the cluster: under way and planned.
    pub migrations: u32,
}

impl<'a> ClusterModel<'a> {
    /// The cluster as observed, with the migrations under way applied.
    pub fn build(
        hosts: &'a [HostView],
        vms: &'a [VmView],
        in_flight: &'a [InFlight],
        threshold: f64,
    ) -> Self {
        let mut views: Vec<&HostView> = hosts.iter().collect();
        views.sort_by(|a, b| a.name().cmp(b.name()));
        let mut sorted_vms: Vec<&VmView> = vms.iter().collect();
        sorted_vms.sort_by(|a, b| a.name.cmp(&b.name));
        let mut model = Self {
            hosts: views
                .into_iter()
                .map(|view| ModelHost {
                    view,
                    node: Cow::Borrowed(&view.node),
                    cpu: CpuModel::from_view(view),
                    outbound: 0,
                    leaving_memory_mib: 0,
                    vms: Vec::new(),
                })
                .collect(),
            vms: sorted_vms,
            threshold,
            by_name: HashMap::new(),
            moving: HashSet::new(),
            migrations: 0,
        };
        model.by_name = model
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h.view.name(), i))
            .collect();
        for (index, vm) in model.vms.iter().enumerate() {
            if let Some(host) = model.by_name.get(vm.node.as_str()) {
                model.hosts[*host].vms.push(index);
            }
        }
        for flight in in_flight {
            model.apply_in_flight(flight);
        }
        model
    }

    fn apply_in_flight(&mut self, flight: &'a InFlight) {
        self.moving.insert(flight.vm.as_str());
        self.migrations += 1;
        let (Some(from), Some(to)) = (self.host_index(&flight.from), self.host_index(&flight.to))
        else {
            return;
        };
        let memory = self.vm(&flight.vm).map_or(0, |vm| vm.memory_mib());
        let demands = self.hosts[from].cpu.take(&flight.vm);
        self.hosts[to].cpu.put(flight.vm.as_str(), &demands);
        self.hosts[from].outbound += 1;
        self.hosts[from].leaving_memory_mib += memory;
    }

    pub fn host_index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    pub fn vm(&self, name: &str) -> Option<&'a VmView> {
        self.vms
            .binary_search_by(|vm| vm.name.as_str().cmp(name))
            .ok()
            .map(|index| self.vms[index])
    }

    /// Whether `vm` is migrating now (under way or planned in this round).
    pub fn is_moving(&self, vm: &str) -> bool {
        self.moving.contains(vm)
    }

    /// Every VM's vCPU demands where it runs in the model: `(vm, local percent, speed)`;
    /// local × speed is reference percent.
    pub fn vm_demands(&self) -> impl Iterator<Item = (&'a str, &[f64], f64)> + '_ {
        self.hosts.iter().flat_map(|host| {
            let speed = host.cpu.speed;
            host.cpu
                .vms
                .iter()
                .map(move |(name, list)| (*name, list.as_slice(), speed))
        })
    }

    /// Replaces each VM's demands by these (reference percent), for VMs that have an entry.
    pub fn smooth(&mut self, demands: &BTreeMap<String, Vec<f64>>) {
        for host in &mut self.hosts {
            host.cpu.replace(demands);
        }
    }

    /// Applies a planned move of `vms[vm]` from `hosts[from]` to `hosts[to]`.
    pub fn apply_move(&mut self, vm: usize, from: usize, to: usize) {
        let view = self.vms[vm];
        self.moving.insert(view.name.as_str());
        self.migrations += 1;
        let demands = self.hosts[from].cpu.take(&view.name);
        let source = &mut self.hosts[from];
        source.outbound += 1;
        source.leaving_memory_mib += view.memory_mib();
        source.vms.retain(|index| *index != vm);
        let target = &mut self.hosts[to];
        target.cpu.put(view.name.as_str(), &demands);
        let node = target.node.to_mut();
        node.used_vcpus += u64::from(view.spec.vcpus);
        node.used_memory_mib += view.memory_mib();
        node.vm_labels.push(view.labels.clone());
        target.vms.push(vm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::testing::host;

    #[test]
    fn five_busy_vms_on_four_cpus_are_hot_and_four_are_not() {
        let five = host(
            "ferby",
            4,
            &[
                ("a", 0, 50.0),
                ("e", 0, 50.0),
                ("b", 1, 100.0),
                ("c", 2, 100.0),
                ("d", 3, 100.0),
            ],
        );
        let model = CpuModel::from_view(&five);
        let now = model.summary(80.0);
        assert!(now.hot);
        assert_eq!(
            (now.busy_vcpus, now.load_percent, now.demand_percent),
            (5, 100.0, 125.0)
        );
        let after = model.summary_without("e", 80.0);
        assert!(!after.hot, "four busy vCPUs on four CPUs: no contention");
        assert_eq!(after.load_percent, 100.0);
    }

    #[test]
    fn a_target_is_projected_with_the_vm_added() {
        let four = host(
            "gerby",
            4,
            &[
                ("a", 0, 100.0),
                ("b", 1, 100.0),
                ("c", 2, 100.0),
                ("d", 3, 100.0),
            ],
        );
        let model = CpuModel::from_view(&four);
        assert!(!model.summary(80.0).hot);
        assert!(model.summary_with(&[100.0], 80.0).hot);
        let three = host(
            "herby",
            4,
            &[("a", 0, 100.0), ("b", 1, 100.0), ("c", 2, 100.0)],
        );
        let projected = CpuModel::from_view(&three).summary_with(&[100.0], 80.0);
        assert_eq!((projected.hot, projected.load_percent), (false, 100.0));
    }

    #[test]
    fn demand_moves_in_reference_units_between_cpus_of_different_speed() {
        let mut slow = host("slow", 2, &[("a", 0, 80.0)]);
        slow.cpu_speed = 1.0;
        let mut fast = host("fast", 2, &[]);
        fast.cpu_speed = 2.0;
        let mut from = CpuModel::from_view(&slow);
        let mut to = CpuModel::from_view(&fast);
        let demands = from.take("a");
        assert_eq!(demands, [80.0]);
        to.put("a", &demands);
        assert_eq!(
            to.summary(80.0).load_percent,
            20.0,
            "40% of one of two CPUs"
        );
        assert_eq!(from.summary(80.0).load_percent, 0.0);
    }

    #[test]
    fn the_hosts_own_work_stays_as_background() {
        let mut view = host("ferby", 2, &[("a", 0, 50.0)]);
        view.cpu_load = vec![70.0, 30.0];
        let model = CpuModel::from_view(&view);
        assert_eq!(model.summary(80.0).load_percent, 50.0);
        assert_eq!(model.summary_without("a", 80.0).load_percent, 25.0);
    }

    #[test]
    fn migrations_under_way_count_on_their_target() {
        let hosts = [
            host(
                "ferby",
                4,
                &[
                    ("a", 0, 50.0),
                    ("e", 0, 50.0),
                    ("b", 1, 100.0),
                    ("c", 2, 100.0),
                    ("d", 3, 100.0),
                ],
            ),
            host("gerby", 4, &[]),
        ];
        let flying = [InFlight {
            vm: "e".into(),
            from: "ferby".into(),
            to: "gerby".into(),
            started_at: 0.0,
        }];
        let model = ClusterModel::build(&hosts, &[], &flying, 80.0);
        assert!(!model.hosts[0].cpu.summary(80.0).hot);
        assert_eq!(model.hosts[1].cpu.summary(80.0).load_percent, 25.0);
        assert_eq!((model.hosts[0].outbound, model.migrations), (1, 1));
        assert!(model.is_moving("e"));
    }
}
