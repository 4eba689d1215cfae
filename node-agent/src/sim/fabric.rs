//! [`FabricModel`]: every simulated host of a process, and live migrations between them.
//!
//! Pure and driven by an explicit clock, like [`super::host`]. A migration is modelled as a
//! copy of the domain's memory at a fixed bandwidth (`total = memory / bandwidth`) followed by
//! a switch-over of [`SimConfig::downtime`] (never more than the caller's `max_downtime`: the
//! simulated guest always converges). It completes at `started_at + total`, whenever the
//! fabric is next looked at ([`FabricModel::advance`], which every operation calls first), so
//! the outcome never depends on how often anyone polls:
//!
//! - the waiting domain on the target takes over the load model and the guest clock (as it
//!   stood at completion), and runs (or stays paused, if the source was paused);
//! - the source is left paused and cannot be unpaused (QEMU's `postmigrate`), until destroyed.
//!
//! If by then the target no longer waits for the domain, the migration fails and the source
//! carries on. A VM therefore runs on exactly one host at every instant.

use std::collections::BTreeMap;
use std::time::Duration;

use super::domain::{GuestClock, MigrationStatus, OutgoingMigration, SimState};
use super::host::{HostModel, SimError, migration_refusal, refused};
use super::load::LoadModel;
use crate::hypervisor::{HypervisorError, MigrationParams, MigrationProgress};

/// The scheme of simulated migration endpoints: `sim://<host>/<vm>`.
pub const ENDPOINT_SCHEME: &str = "sim://";

/// One GiB per second: the default migration bandwidth.
pub const DEFAULT_BANDWIDTH: u64 = 1024 * 1024 * 1024;

/// How migrations behave in a fabric.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimConfig {
    /// Bytes per second when the caller sets no cap.
    pub bandwidth: u64,
    /// The pause at switch-over.
    pub downtime: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            bandwidth: DEFAULT_BANDWIDTH,
            downtime: Duration::from_millis(20),
        }
    }
}

/// Every simulated host of a process.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FabricModel {
    config: SimConfig,
    hosts: BTreeMap<String, HostModel>,
}

/// `sim://<host>/<vm>`.
pub fn endpoint_uri(host: &str, vm: &str) -> String {
    format!("{ENDPOINT_SCHEME}{host}/{vm}")
}

/// The host and VM of a `sim://<host>/<vm>` endpoint.
pub fn parse_endpoint(uri: &str) -> Result<(&str, &str), String> {
    uri.strip_prefix(ENDPOINT_SCHEME)
        .and_then(|rest| rest.split_once('/'))
        .filter(|(host, vm)| !host.is_empty() && !vm.is_empty() && !vm.contains('/'))
        .ok_or_else(|| format!("{uri:?} is not a sim://HOST/VM migration address"))
}

impl FabricModel {
    pub fn new(config: SimConfig) -> Self {
        Self {
            config,
            hosts: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Adds a host; adding one of the same name and shape again is a no-op.
    pub fn add_host(&mut self, name: &str, cpus: u32, memory_mib: u64) -> Result<(), SimError> {
        let new = HostModel::new(name, cpus, memory_mib)?;
        match self.hosts.get(name) {
            None => {
                self.hosts.insert(name.to_owned(), new);
                Ok(())
            }
            Some(old) if old.cpus() == cpus && old.memory_mib() == memory_mib => Ok(()),
            Some(old) => Err(SimError::Conflict {
                name: name.to_owned(),
                cpus: old.cpus(),
                memory_mib: old.memory_mib(),
            }),
        }
    }

    pub fn host(&self, name: &str) -> Option<&HostModel> {
        self.hosts.get(name)
    }

    pub fn host_mut(&mut self, name: &str) -> Option<&mut HostModel> {
        self.hosts.get_mut(name)
    }

    /// Every host, sorted by name.
    pub fn hosts(&self) -> impl Iterator<Item = &HostModel> {
        self.hosts.values()
    }

    /// Completes every migration due by `now`.
    pub fn advance(&mut self, now: f64) {
        let due: Vec<(String, String)> = self
            .hosts
            .values()
            .flat_map(|host| {
                host.domains()
                    .filter(|domain| {
                        domain.migration.as_ref().is_some_and(|m| {
                            m.status == MigrationStatus::Active && m.completes_at() <= now
                        })
                    })
                    .map(|domain| (host.name().to_owned(), domain.spec.name.clone()))
            })
            .collect();
        for (host, name) in due {
            self.complete(&host, &name);
        }
    }

    /// Switches `name` over from `source` to its target, or fails the migration.
    fn complete(&mut self, source: &str, name: &str) {
        let Some((handover, target)) = self.handover(source, name) else {
            return;
        };
        let outcome = self
            .hosts
            .get_mut(&target)
            .and_then(|host| host.domain_mut(name))
            .filter(|domain| domain.state == SimState::Incoming && domain.spec.uid == handover.uid)
            .map(|domain| {
                domain.state = handover.state;
                domain.load = handover.load;
                domain.clock = handover.clock;
            });
        let status = match outcome {
            Some(()) => MigrationStatus::Completed,
            None => {
                MigrationStatus::Failed(format!("host {target:?} no longer waits for the domain"))
            }
        };
        let Some(domain) = self.hosts.get_mut(source).and_then(|h| h.domain_mut(name)) else {
            return;
        };
        if status == MigrationStatus::Completed {
            domain.state = SimState::Paused;
            domain.clock.stop(handover.at);
        }
        if let Some(migration) = domain.migration.as_mut() {
            migration.status = status;
        }
    }

    /// What the target takes over from the source at completion, and the target's name.
    fn handover(&self, source: &str, name: &str) -> Option<(Handover, String)> {
        let domain = self.hosts.get(source)?.domain(name)?;
        let migration = domain.migration.as_ref()?;
        let at = migration.completes_at();
        let running = domain.state == SimState::Running;
        let handover = Handover {
            uid: domain.spec.uid.clone(),
            state: if running {
                SimState::Running
            } else {
                SimState::Paused
            },
            load: domain.load.clone(),
            clock: GuestClock::new(domain.clock.at(at), running, at),
            at,
        };
        Some((handover, migration.target_host.clone()))
    }

    /// Starts sending `name` from `source` to the domain waiting at `endpoint`. Idempotent:
    /// a migration to the same endpoint that is under way or done is not started again.
    pub fn migrate(
        &mut self,
        source: &str,
        name: &str,
        endpoint: &str,
        params: &MigrationParams,
        now: f64,
    ) -> Result<(), HypervisorError> {
        const OPERATION: &str = "migrate";
        let refuse = |reason: String| refused(name, OPERATION, reason);
        let (target_host, vm) = parse_endpoint(endpoint).map_err(refuse)?;
        let domain = self
            .hosts
            .get(source)
            .and_then(|host| host.domain(name))
            .ok_or_else(|| HypervisorError::NotFound(name.to_owned()))?;
        if let Some(started) = &domain.migration
            && matches!(
                started.status,
                MigrationStatus::Active | MigrationStatus::Completed
            )
        {
            if started.endpoint == endpoint {
                return Ok(());
            }
            return Err(refuse(format!(
                "a migration to {:?} is under way or done",
                started.endpoint
            )));
        }
        if !domain.state.has_vcpus() {
            return Err(refuse("it is not running".into()));
        }
        if let Some(reason) = migration_refusal(&domain.spec) {
            return Err(refuse(reason));
        }
        if vm != name {
            return Err(refuse(format!(
                "{endpoint:?} waits for {vm:?}, not for this domain"
            )));
        }
        if target_host == source {
            return Err(refuse("the target is this host".into()));
        }
        let waiting = self
            .hosts
            .get(target_host)
            .and_then(|host| host.domain(vm))
            .filter(|d| d.state == SimState::Incoming && d.spec.uid == domain.spec.uid);
        if waiting.is_none() {
            return Err(refuse(format!(
                "no domain with uid {:?} waits at {endpoint:?}; prepare the target first",
                domain.spec.uid
            )));
        }
        let bandwidth = params.bandwidth.unwrap_or(self.config.bandwidth);
        if bandwidth == 0 {
            return Err(refuse("the bandwidth cap is 0 bytes per second".into()));
        }
        let migration = self.plan(
            domain.spec.memory_mib,
            bandwidth,
            endpoint,
            target_host,
            params,
            now,
        );
        if let Some(domain) = self.hosts.get_mut(source).and_then(|h| h.domain_mut(name)) {
            domain.migration = Some(migration);
        }
        Ok(())
    }

    /// The timings of a migration of `memory_mib` at `bandwidth` bytes per second from `now`.
    fn plan(
        &self,
        memory_mib: u64,
        bandwidth: u64,
        endpoint: &str,
        target_host: &str,
        params: &MigrationParams,
        now: f64,
    ) -> OutgoingMigration {
        let bytes = memory_mib.saturating_mul(1024 * 1024);
        OutgoingMigration {
            endpoint: endpoint.to_owned(),
            target_host: target_host.to_owned(),
            started_at: now,
            total_secs: bytes as f64 / bandwidth.max(1) as f64,
            downtime: self.config.downtime.min(params.max_downtime),
            bytes,
            status: MigrationStatus::Active,
        }
    }

    /// How the outgoing migration of `name` from `source` stands at `now` (call
    /// [`Self::advance`] first).
    pub fn progress(
        &self,
        source: &str,
        name: &str,
        now: f64,
    ) -> Result<MigrationProgress, HypervisorError> {
        let domain = self
            .hosts
            .get(source)
            .and_then(|host| host.domain(name))
            .ok_or_else(|| HypervisorError::NotFound(name.to_owned()))?;
        let migration = domain.migration.as_ref().ok_or_else(|| {
            refused(
                name,
                "report migration progress",
                "no migration was started",
            )
        })?;
        Ok(match &migration.status {
            MigrationStatus::Active => {
                let transferred_bytes = migration.transferred_at(now).min(migration.bytes);
                MigrationProgress::Active {
                    transferred_bytes,
                    remaining_bytes: migration.bytes - transferred_bytes,
                }
            }
            MigrationStatus::Completed => MigrationProgress::Completed {
                total: Duration::from_secs_f64(migration.total_secs),
                downtime: migration.downtime,
                transferred_bytes: migration.bytes,
            },
            MigrationStatus::Failed(message) => MigrationProgress::Failed {
                message: message.clone(),
            },
            MigrationStatus::Cancelled => MigrationProgress::Cancelled,
        })
    }

    /// Cancels the outgoing migration of `name` (call [`Self::advance`] first): the domain
    /// carries on here. Nothing to cancel is fine; a completed migration cannot be undone.
    pub fn cancel(&mut self, source: &str, name: &str) -> Result<(), HypervisorError> {
        let domain = self
            .hosts
            .get_mut(source)
            .and_then(|host| host.domain_mut(name))
            .ok_or_else(|| HypervisorError::NotFound(name.to_owned()))?;
        let Some(migration) = domain.migration.as_mut() else {
            return Ok(());
        };
        match migration.status {
            MigrationStatus::Active => {
                migration.status = MigrationStatus::Cancelled;
                Ok(())
            }
            MigrationStatus::Completed => Err(refused(
                name,
                "cancel its migration",
                format!(
                    "the migration to host {:?} already completed; the domain runs there",
                    migration.target_host
                ),
            )),
            MigrationStatus::Failed(_) | MigrationStatus::Cancelled => Ok(()),
        }
    }
}

/// What moves with a migrating domain.
struct Handover {
    uid: String,
    state: SimState,
    load: LoadModel,
    clock: GuestClock,
    /// When the switch-over happens, on the fabric clock.
    at: f64,
}

#[cfg(test)]
mod tests {
    use herd_crds::assignment::DomainSpec;

    use super::*;

    const GIB: u64 = 1024 * 1024 * 1024;

    fn spec(name: &str, memory_mib: u64) -> DomainSpec {
        DomainSpec {
            name: name.into(),
            uid: format!("uid-{name}"),
            vcpus: 1,
            memory_mib,
            boot: Default::default(),
            disks: Vec::new(),
            networks: Vec::new(),
            migration: Default::default(),
        }
    }

    fn params() -> MigrationParams {
        MigrationParams {
            max_downtime: Duration::from_millis(300),
            bandwidth: None,
        }
    }

    /// Two 1-CPU hosts, `vm` (2 GiB, constant 70%) running on `a` and waiting on `b`.
    fn fabric() -> FabricModel {
        let mut fabric = FabricModel::new(SimConfig::default());
        fabric.add_host("a", 1, 8192).unwrap();
        fabric.add_host("b", 1, 8192).unwrap();
        let load = LoadModel::Step {
            before: 70.0,
            after: 20.0,
            at_secs: 10.0,
        };
        let a = fabric.host_mut("a").unwrap();
        a.create(&spec("vm", 2048), load, false, 0.0).unwrap();
        fabric
            .host_mut("b")
            .unwrap()
            .prepare_incoming(&spec("vm", 2048), 0.0)
            .unwrap();
        fabric
    }

    fn granted(fabric: &FabricModel, host: &str, now: f64) -> f64 {
        fabric.host(host).unwrap().account(now).load_percent()
    }

    #[test]
    fn endpoints_round_trip() {
        assert_eq!(endpoint_uri("ferby", "vm-1"), "sim://ferby/vm-1");
        assert_eq!(parse_endpoint("sim://ferby/vm-1"), Ok(("ferby", "vm-1")));
        for bad in ["tcp:1.2.3.4:5", "sim://ferby", "sim:///vm", "sim://a/b/c"] {
            assert!(parse_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_migration_moves_load_and_guest_time_after_memory_over_bandwidth() {
        let mut fabric = fabric();
        fabric
            .migrate("a", "vm", "sim://b/vm", &params(), 5.0)
            .unwrap();
        fabric.advance(6.0);
        assert_eq!(
            fabric.progress("a", "vm", 6.0).unwrap(),
            MigrationProgress::Active {
                transferred_bytes: GIB,
                remaining_bytes: GIB
            }
        );
        assert_eq!(granted(&fabric, "a", 6.0), 70.0);
        assert_eq!(granted(&fabric, "b", 6.0), 0.0);
        // 2 GiB at 1 GiB/s: completes at 7 s, whenever it is looked at.
        fabric.advance(8.0);
        assert_eq!(
            fabric.progress("a", "vm", 8.0).unwrap(),
            MigrationProgress::Completed {
                total: Duration::from_secs(2),
                downtime: Duration::from_millis(20),
                transferred_bytes: 2 * GIB
            }
        );
        assert_eq!(granted(&fabric, "a", 8.0), 0.0);
        assert_eq!(granted(&fabric, "b", 8.0), 70.0);
        // The guest clock came along (7 s at switch-over), so the step at 10 s of guest time
        // happens on the target at 10 s, as if the guest had never moved.
        assert_eq!(granted(&fabric, "b", 9.9), 70.0);
        assert_eq!(granted(&fabric, "b", 10.0), 20.0);
        let source = fabric.host("a").unwrap().domain("vm").unwrap();
        assert_eq!(source.state, SimState::Paused);
        assert!(fabric.host_mut("a").unwrap().unpause("vm", 12.0).is_err());
        assert!(fabric.cancel("a", "vm").is_err());
        // Idempotent: the same migration again is a no-op.
        fabric
            .migrate("a", "vm", "sim://b/vm", &params(), 13.0)
            .unwrap();
    }

    #[test]
    fn a_cancelled_migration_leaves_the_domain_where_it_was() {
        let mut fabric = fabric();
        fabric
            .migrate("a", "vm", "sim://b/vm", &params(), 0.0)
            .unwrap();
        fabric.cancel("a", "vm").unwrap();
        fabric.cancel("a", "vm").unwrap();
        fabric.advance(100.0);
        assert_eq!(
            fabric.progress("a", "vm", 100.0).unwrap(),
            MigrationProgress::Cancelled
        );
        assert_eq!(granted(&fabric, "a", 100.0), 20.0);
        let target = fabric.host("b").unwrap().domain("vm").unwrap();
        assert_eq!(target.state, SimState::Incoming);
    }

    #[test]
    fn a_target_that_stopped_waiting_fails_the_migration() {
        let mut fabric = fabric();
        let capped = MigrationParams {
            max_downtime: Duration::from_millis(5),
            bandwidth: Some(GIB / 2),
        };
        fabric
            .migrate("a", "vm", "sim://b/vm", &capped, 0.0)
            .unwrap();
        fabric.host_mut("b").unwrap().destroy("vm");
        fabric.advance(4.0);
        let MigrationProgress::Failed { message } = fabric.progress("a", "vm", 4.0).unwrap() else {
            panic!("the migration should have failed");
        };
        assert!(message.contains("no longer waits"), "{message}");
        assert_eq!(
            fabric.host("a").unwrap().domain("vm").unwrap().state,
            SimState::Running
        );
    }

    #[test]
    fn migrations_are_refused_with_reasons() {
        let mut fabric = fabric();
        let mut refusal = |endpoint: &str| {
            fabric
                .migrate("a", "vm", endpoint, &params(), 0.0)
                .unwrap_err()
                .to_string()
        };
        assert!(refusal("tcp:1.2.3.4:5").contains("not a sim://HOST/VM"));
        assert!(refusal("sim://b/other").contains("waits for \"other\""));
        assert!(refusal("sim://c/vm").contains("prepare the target first"));
        assert!(refusal("sim://a/vm").contains("the target is this host"));
        let stalled = MigrationParams {
            max_downtime: Duration::from_millis(300),
            bandwidth: Some(0),
        };
        let error = fabric
            .migrate("a", "vm", "sim://b/vm", &stalled, 0.0)
            .unwrap_err();
        assert!(error.to_string().contains("bandwidth cap is 0"), "{error}");
        assert!(matches!(
            fabric.migrate("a", "nope", "sim://b/nope", &params(), 0.0),
            Err(HypervisorError::NotFound(_))
        ));
        assert!(
            fabric
                .progress("a", "vm", 0.0)
                .unwrap_err()
                .to_string()
                .contains("no migration")
        );
    }

    #[test]
    fn hosts_are_added_once_per_shape() {
        let mut fabric = fabric();
        fabric.add_host("a", 1, 8192).unwrap();
        assert!(matches!(
            fabric.add_host("a", 2, 8192),
            Err(SimError::Conflict { .. })
        ));
        assert_eq!(fabric.hosts().count(), 2);
    }
}
