//! [`HostModel`]: one simulated host — CPUs, memory, domains — and its CPU accounting.
//!
//! Pure and driven by an explicit clock: every operation takes `now`, seconds on the fabric's
//! clock. Operations follow the [`crate::hypervisor::Hypervisor`] contract (idempotent where
//! the operation allows, a domain of the same name but another uid is refused) and return its
//! [`HypervisorError`], so the driver only adds locking and a clock.
//!
//! [`HostModel::account`] gives a [`HostLoad`]: per-CPU and per-vCPU demand *and* granted
//! share, plus helpers for the questions a balancer asks ("is the host above 80%?", "are more
//! vCPUs busy than there are CPUs?"). The `sample` of the trait reports only the granted side.

use std::collections::BTreeMap;

use herd_crds::Validate;
use herd_crds::assignment::DomainSpec;
use herd_crds::names::is_dns_label;

use super::cpu::{self, CpuLoad, VcpuDemand, VcpuLoad};
use super::domain::{GuestClock, MigrationStatus, SimDomain, SimState};
use super::load::LoadModel;
use crate::hypervisor::HypervisorError;

/// Why a simulated host cannot be set up.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    #[error(
        "{0:?} is not a host name: use at most 63 lower-case letters, digits and '-', \
         starting and ending with a letter or digit"
    )]
    BadName(String),
    #[error("simulated host {name:?} needs at least one CPU and 1 MiB of memory")]
    Empty { name: String },
    #[error(
        "simulated host {name:?} already exists with {cpus} CPUs and {memory_mib} MiB; \
         use the same shape or another name"
    )]
    Conflict {
        name: String,
        cpus: u32,
        memory_mib: u64,
    },
}

/// One simulated host.
#[derive(Clone, Debug, PartialEq)]
pub struct HostModel {
    name: String,
    cpus: u32,
    memory_mib: u64,
    next_id: u64,
    domains: BTreeMap<String, SimDomain>,
}

/// The load of a host at one instant.
#[derive(Clone, Debug, PartialEq)]
pub struct HostLoad {
    /// One entry per physical CPU, in order.
    pub cpus: Vec<CpuLoad>,
    /// Every domain, sorted by name.
    pub domains: Vec<DomainLoad>,
    pub memory_free_mib: u64,
}

/// The load of one domain at one instant.
#[derive(Clone, Debug, PartialEq)]
pub struct DomainLoad {
    pub name: String,
    pub uid: String,
    pub id: u64,
    pub state: SimState,
    /// Sum over its vCPUs, in percent of one CPU.
    pub demand: f64,
    /// Sum over its vCPUs, in percent of one CPU.
    pub granted: f64,
    pub vcpus: Vec<VcpuLoad>,
}

impl HostLoad {
    /// Mean granted load over the CPUs, in percent (0–100): the host's CPU load.
    pub fn load_percent(&self) -> f64 {
        mean(self.cpus.iter().map(|cpu| cpu.granted))
    }

    /// Mean demand over the CPUs, in percent: above 100 when the host is overcommitted.
    pub fn demand_percent(&self) -> f64 {
        mean(self.cpus.iter().map(|cpu| cpu.demand))
    }

    /// How many vCPUs demand at least `threshold` percent of a CPU.
    pub fn busy_vcpus(&self, threshold: f64) -> usize {
        self.domains
            .iter()
            .flat_map(|domain| &domain.vcpus)
            .filter(|vcpu| vcpu.demand >= threshold)
            .count()
    }

    /// The domain called `name`.
    pub fn domain(&self, name: &str) -> Option<&DomainLoad> {
        self.domains.iter().find(|domain| domain.name == name)
    }
}

fn mean(values: impl ExactSizeIterator<Item = f64>) -> f64 {
    let count = values.len();
    if count == 0 {
        return 0.0;
    }
    values.sum::<f64>() / count as f64
}

/// A [`HypervisorError::Refused`].
pub(super) fn refused(
    name: &str,
    operation: &'static str,
    reason: impl Into<String>,
) -> HypervisorError {
    HypervisorError::Refused {
        name: name.to_owned(),
        operation,
        reason: reason.into(),
    }
}

/// Refuses a spec that does not validate, with every problem and its field path.
pub(super) fn validate(spec: &DomainSpec, operation: &'static str) -> Result<(), HypervisorError> {
    let errors = spec.validate();
    if errors.is_empty() {
        return Ok(());
    }
    let reason = errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    Err(refused(
        &spec.name,
        operation,
        format!("invalid spec: {reason}"),
    ))
}

impl HostModel {
    /// An empty host called `name` with `cpus` physical CPUs and `memory_mib` of memory.
    pub fn new(name: &str, cpus: u32, memory_mib: u64) -> Result<Self, SimError> {
        if !is_dns_label(name) {
            return Err(SimError::BadName(name.to_owned()));
        }
        if cpus == 0 || memory_mib == 0 {
            return Err(SimError::Empty {
                name: name.to_owned(),
            });
        }
        Ok(Self {
            name: name.to_owned(),
            cpus,
            memory_mib,
            next_id: 1,
            domains: BTreeMap::new(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn cpus(&self) -> u32 {
        self.cpus
    }

    pub fn memory_mib(&self) -> u64 {
        self.memory_mib
    }

    /// Memory not held by a running, paused or incoming domain.
    pub fn memory_free_mib(&self) -> u64 {
        let used: u64 = self
            .domains
            .values()
            .filter(|domain| domain.state.holds_memory())
            .map(|domain| domain.spec.memory_mib)
            .sum();
        self.memory_mib.saturating_sub(used)
    }

    pub fn domain(&self, name: &str) -> Option<&SimDomain> {
        self.domains.get(name)
    }

    pub(super) fn domain_mut(&mut self, name: &str) -> Option<&mut SimDomain> {
        self.domains.get_mut(name)
    }

    /// Every domain, sorted by name.
    pub fn domains(&self) -> impl Iterator<Item = &SimDomain> {
        self.domains.values()
    }

    /// The domain `create(spec)` would return without starting anything: one of the same
    /// name and uid that is running or paused. `None` when a domain must be started (there is
    /// none, or it shut down); refused when the name is taken by another uid or an incoming
    /// domain.
    pub fn existing(&self, spec: &DomainSpec) -> Result<Option<&SimDomain>, HypervisorError> {
        let Some(domain) = self.domains.get(&spec.name) else {
            return Ok(None);
        };
        if domain.spec.uid != spec.uid {
            let reason = format!(
                "a domain of that name with uid {:?} runs here; destroy it first",
                domain.spec.uid
            );
            return Err(refused(&spec.name, "start", reason));
        }
        match domain.state {
            SimState::Running | SimState::Paused => Ok(Some(domain)),
            SimState::Shutdown => Ok(None),
            SimState::Incoming => Err(refused(
                &spec.name,
                "start",
                "it waits for an incoming migration here; destroy it first",
            )),
        }
    }

    /// Starts a domain running `load` (paused if asked), or returns the one already there.
    /// A shut-down domain of the same uid boots again, with a fresh guest clock.
    pub fn create(
        &mut self,
        spec: &DomainSpec,
        load: LoadModel,
        paused: bool,
        now: f64,
    ) -> Result<&SimDomain, HypervisorError> {
        validate(spec, "start")?;
        if self.existing(spec)?.is_none() {
            self.domains.remove(&spec.name);
            let state = if paused {
                SimState::Paused
            } else {
                SimState::Running
            };
            self.insert(spec, state, load, now, "start")?;
        }
        self.domains
            .get(&spec.name)
            .ok_or_else(|| HypervisorError::NotFound(spec.name.clone()))
    }

    /// Adds a domain that waits for an incoming migration (it gets its load from the source).
    /// Idempotent for the same uid while it waits.
    pub fn prepare_incoming(&mut self, spec: &DomainSpec, now: f64) -> Result<(), HypervisorError> {
        const OPERATION: &str = "receive a migration";
        validate(spec, OPERATION)?;
        if let Some(reason) = migration_refusal(spec) {
            return Err(refused(&spec.name, OPERATION, reason));
        }
        match self.domains.get(&spec.name) {
            None => self.insert(spec, SimState::Incoming, LoadModel::Idle, now, OPERATION),
            Some(domain) if domain.spec.uid != spec.uid => {
                let reason = format!(
                    "a domain of that name with uid {:?} runs here",
                    domain.spec.uid
                );
                Err(refused(&spec.name, OPERATION, reason))
            }
            Some(domain) if domain.state == SimState::Incoming => Ok(()),
            Some(_) => Err(refused(
                &spec.name,
                OPERATION,
                "it already runs on this host",
            )),
        }
    }

    fn insert(
        &mut self,
        spec: &DomainSpec,
        state: SimState,
        load: LoadModel,
        now: f64,
        operation: &'static str,
    ) -> Result<(), HypervisorError> {
        let free = self.memory_free_mib();
        if spec.memory_mib > free {
            let reason = format!(
                "it needs {} MiB but only {free} MiB of the host's {} MiB are free",
                spec.memory_mib, self.memory_mib
            );
            return Err(refused(&spec.name, operation, reason));
        }
        let domain = SimDomain {
            spec: spec.clone(),
            id: self.next_id,
            state,
            load,
            clock: GuestClock::new(0.0, state == SimState::Running, now),
            migration: None,
        };
        self.next_id += 1;
        self.domains.insert(spec.name.clone(), domain);
        Ok(())
    }

    /// Stops the vCPUs of `name` (idempotent); its guest clock stops too.
    pub fn pause(&mut self, name: &str, now: f64) -> Result<(), HypervisorError> {
        let domain = self.require(name)?;
        match domain.state {
            SimState::Running | SimState::Paused => {
                domain.state = SimState::Paused;
                domain.clock.stop(now);
                Ok(())
            }
            state => Err(refused(name, "pause", not_running(state))),
        }
    }

    /// Restarts the vCPUs of `name` (idempotent). A domain that migrated away stays paused:
    /// its copy on the target is the one that runs.
    pub fn unpause(&mut self, name: &str, now: f64) -> Result<(), HypervisorError> {
        let domain = self.require(name)?;
        if let Some(migration) = domain.migration.as_ref().filter(|_| domain.migrated_away()) {
            let reason = format!(
                "it migrated to host {:?}, where it runs now; destroy it here",
                migration.target_host
            );
            return Err(refused(name, "unpause", reason));
        }
        match domain.state {
            SimState::Running | SimState::Paused => {
                domain.state = SimState::Running;
                domain.clock.start(now);
                Ok(())
            }
            state => Err(refused(name, "unpause", not_running(state))),
        }
    }

    /// Powers `name` off at once (a simulated guest never ignores ACPI). It stays listed as
    /// shut down until destroyed; an incoming domain, which has no guest yet, just goes away.
    /// An outgoing migration under way fails.
    pub fn shutdown(&mut self, name: &str, now: f64) -> Result<(), HypervisorError> {
        let Some(domain) = self.domains.get_mut(name) else {
            return Ok(());
        };
        match domain.state {
            SimState::Incoming => {
                self.domains.remove(name);
            }
            SimState::Shutdown => {}
            SimState::Running | SimState::Paused => {
                domain.state = SimState::Shutdown;
                domain.clock.stop(now);
                if let Some(migration) = domain
                    .migration
                    .as_mut()
                    .filter(|m| m.status == MigrationStatus::Active)
                {
                    migration.status =
                        MigrationStatus::Failed("the domain shut down during the migration".into());
                }
            }
        }
        Ok(())
    }

    /// Ends `name` at once; succeeds if it is already gone.
    pub fn destroy(&mut self, name: &str) {
        self.domains.remove(name);
    }

    fn require(&mut self, name: &str) -> Result<&mut SimDomain, HypervisorError> {
        self.domains
            .get_mut(name)
            .ok_or_else(|| HypervisorError::NotFound(name.to_owned()))
    }

    /// Placement, demand and granted share of every vCPU and CPU at `now`.
    pub fn account(&self, now: f64) -> HostLoad {
        let demands: Vec<VcpuDemand> = self
            .domains
            .values()
            .filter(|domain| domain.state.has_vcpus())
            .flat_map(|domain| {
                let demand = domain.demand(now);
                (0..domain.spec.vcpus).map(move |vcpu| VcpuDemand { vcpu, demand })
            })
            .collect();
        let accounting = cpu::account(self.cpus, &demands);
        let mut placed = accounting.vcpus.into_iter();
        let domains = self
            .domains
            .values()
            .map(|domain| {
                let vcpus: Vec<VcpuLoad> = if domain.state.has_vcpus() {
                    placed.by_ref().take(domain.spec.vcpus as usize).collect()
                } else {
                    (0..domain.spec.vcpus).map(unplaced).collect()
                };
                domain_load(domain, vcpus)
            })
            .collect();
        HostLoad {
            cpus: accounting.cpus,
            domains,
            memory_free_mib: self.memory_free_mib(),
        }
    }
}

fn unplaced(vcpu: u32) -> VcpuLoad {
    VcpuLoad {
        vcpu,
        cpu: None,
        demand: 0.0,
        granted: 0.0,
    }
}

fn domain_load(domain: &SimDomain, vcpus: Vec<VcpuLoad>) -> DomainLoad {
    DomainLoad {
        name: domain.spec.name.clone(),
        uid: domain.spec.uid.clone(),
        id: domain.id,
        state: domain.state,
        demand: vcpus.iter().map(|v| v.demand).sum(),
        granted: vcpus.iter().map(|v| v.granted).sum(),
        vcpus,
    }
}

fn not_running(state: SimState) -> &'static str {
    match state {
        SimState::Shutdown => "it is shut down; create it again to boot it",
        SimState::Incoming => "it waits for an incoming migration",
        SimState::Running | SimState::Paused => "it is not running",
    }
}

/// Why `spec` cannot migrate, if it cannot: like QEMU, a disk that is a path on one host
/// cannot be opened by another (only shared NBD volumes migrate).
pub(super) fn migration_refusal(spec: &DomainSpec) -> Option<String> {
    let local: Vec<&str> = spec
        .disks
        .iter()
        .filter(|disk| !disk.source.is_shared())
        .map(|disk| disk.name.as_str())
        .collect();
    (!local.is_empty()).then(|| {
        format!(
            "disk(s) {} are local paths on this host, which the target cannot open; \
             use shared (NBD) volumes to make the VM migratable",
            local.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, vcpus: u32) -> DomainSpec {
        DomainSpec {
            name: name.into(),
            uid: format!("uid-{name}"),
            vcpus,
            memory_mib: 256,
            boot: Default::default(),
            disks: Vec::new(),
            networks: Vec::new(),
            migration: Default::default(),
        }
    }

    fn busy(percent: f64) -> LoadModel {
        LoadModel::Constant { percent }
    }

    fn host(cpus: u32) -> HostModel {
        HostModel::new("ferby", cpus, 4096).unwrap()
    }

    #[test]
    fn hosts_need_a_name_cpus_and_memory() {
        assert_eq!(
            HostModel::new("Ferby", 1, 1).unwrap_err(),
            SimError::BadName("Ferby".into())
        );
        assert!(matches!(
            HostModel::new("ferby", 0, 1),
            Err(SimError::Empty { .. })
        ));
        assert!(matches!(
            HostModel::new("ferby", 1, 0),
            Err(SimError::Empty { .. })
        ));
    }

    #[test]
    fn contention_on_one_cpu_halves_two_busy_domains() {
        let mut host = host(1);
        host.create(&spec("a", 1), busy(100.0), false, 0.0).unwrap();
        host.create(&spec("b", 1), busy(100.0), false, 0.0).unwrap();
        let load = host.account(1.0);
        assert_eq!(load.cpus[0].granted, 100.0);
        assert_eq!(load.domain("a").unwrap().granted, 50.0);
        assert_eq!(load.domain("b").unwrap().granted, 50.0);
        assert_eq!(load.domain("b").unwrap().demand, 100.0);
        assert_eq!(load.load_percent(), 100.0);
        assert_eq!(load.demand_percent(), 200.0);
        assert_eq!(load.busy_vcpus(80.0), 2);
    }

    #[test]
    fn a_paused_domain_gets_nothing_and_its_clock_stops() {
        let mut host = host(2);
        let step = LoadModel::Step {
            before: 10.0,
            after: 90.0,
            at_secs: 60.0,
        };
        host.create(&spec("a", 2), step, false, 0.0).unwrap();
        host.pause("a", 30.0).unwrap();
        host.pause("a", 31.0).unwrap();
        let paused = host.account(100.0);
        assert_eq!(paused.domain("a").unwrap().granted, 0.0);
        assert!(
            paused
                .domain("a")
                .unwrap()
                .vcpus
                .iter()
                .all(|v| v.cpu.is_some())
        );
        host.unpause("a", 200.0).unwrap();
        assert_eq!(host.account(229.0).domain("a").unwrap().granted, 20.0);
        assert_eq!(host.account(230.0).domain("a").unwrap().granted, 180.0);
    }

    #[test]
    fn create_is_idempotent_per_uid() {
        let mut host = host(1);
        let id = host
            .create(&spec("a", 1), busy(5.0), false, 0.0)
            .unwrap()
            .id;
        assert_eq!(
            host.create(&spec("a", 1), busy(90.0), false, 9.0)
                .unwrap()
                .id,
            id
        );
        assert_eq!(host.domain("a").unwrap().load, busy(5.0));
        let mut other = spec("a", 1);
        other.uid = "uid-other".into();
        let error = host
            .create(&other, busy(5.0), false, 0.0)
            .unwrap_err()
            .to_string();
        assert!(error.contains("uid \"uid-a\" runs here"), "{error}");
    }

    #[test]
    fn a_shut_down_domain_is_listed_until_destroyed_and_boots_again() {
        let mut host = host(1);
        let id = host
            .create(&spec("a", 1), busy(50.0), false, 0.0)
            .unwrap()
            .id;
        host.shutdown("a", 5.0).unwrap();
        let load = host.account(6.0);
        assert_eq!(load.domain("a").unwrap().state, SimState::Shutdown);
        assert_eq!(load.domain("a").unwrap().vcpus[0].cpu, None);
        assert_eq!(load.memory_free_mib, 4096);
        assert!(host.pause("a", 6.0).is_err());
        let again = host.create(&spec("a", 1), busy(50.0), false, 7.0).unwrap();
        assert_ne!(again.id, id);
        host.destroy("a");
        host.destroy("a");
        assert!(host.domain("a").is_none());
        assert!(host.shutdown("a", 8.0).is_ok());
        assert!(matches!(
            host.pause("a", 8.0),
            Err(HypervisorError::NotFound(_))
        ));
    }

    #[test]
    fn memory_is_a_hard_limit() {
        let mut host = HostModel::new("ferby", 4, 600).unwrap();
        host.create(&spec("a", 1), busy(5.0), false, 0.0).unwrap();
        host.prepare_incoming(&spec("b", 1), 0.0).unwrap();
        let error = host
            .create(&spec("c", 1), busy(5.0), false, 0.0)
            .unwrap_err()
            .to_string();
        assert!(error.contains("needs 256 MiB but only 88 MiB"), "{error}");
    }

    #[test]
    fn incoming_domains_wait_without_load() {
        let mut host = host(1);
        host.prepare_incoming(&spec("a", 2), 0.0).unwrap();
        host.prepare_incoming(&spec("a", 2), 1.0).unwrap();
        let load = host.account(2.0);
        let domain = load.domain("a").unwrap();
        assert_eq!(domain.state, SimState::Incoming);
        assert_eq!(domain.vcpus.len(), 2);
        assert!(domain.vcpus.iter().all(|v| v.cpu.is_none()));
        assert!(host.create(&spec("a", 2), busy(5.0), false, 0.0).is_err());
        assert!(host.unpause("a", 3.0).is_err());
        host.create(&spec("b", 1), busy(5.0), false, 0.0).unwrap();
        let error = host
            .prepare_incoming(&spec("b", 1), 0.0)
            .unwrap_err()
            .to_string();
        assert!(error.contains("already runs"), "{error}");
    }

    #[test]
    fn invalid_specs_are_refused_with_field_paths() {
        let mut host = host(1);
        let mut bad = spec("a", 0);
        bad.memory_mib = 1;
        let error = host
            .create(&bad, busy(5.0), false, 0.0)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("vcpus") && error.contains("memoryMiB"),
            "{error}"
        );
    }
}
