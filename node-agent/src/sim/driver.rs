//! [`SimFabric`] and [`SimDriver`]: the [`Hypervisor`] trait over simulated hosts.
//!
//! A process holds one [`SimFabric`] (behind an `Arc`) with any number of hosts; each
//! [`SimFabric::host`] call gives a driver for one host. All drivers of a fabric share its
//! state, so a live migration from one driver to another really moves the domain.
//!
//! The clock is [`tokio::time::Instant`], counted from the fabric's creation: a test with
//! `#[tokio::test(start_paused = true)]` moves time with `tokio::time::advance`, and a scale
//! test can compress a day of trace with `herd.sim.step`. Everything is computed when asked
//! (there is no background task): `sample` reports the load at the instant it is called.
//!
//! Trace files are read once per path and kept for the life of the fabric, so a thousand
//! domains replaying the same file share one copy (and an edited file is not read again).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use herd_crds::assignment::DomainSpec;
use tokio::time::Instant;

use super::fabric::{FabricModel, SimConfig, endpoint_uri};
use super::host::{DomainLoad, HostLoad, HostModel, SimError, refused, validate};
use super::load::parse_cmdline;
use super::trace::{Trace, TraceError};
use crate::hypervisor::{
    DomainInfo, HostInfo, HostSample, Hypervisor, HypervisorError, IncomingEndpoint,
    MigrationParams, MigrationProgress, VcpuPlacement,
};

/// Every simulated host of a process, with the clock they share.
#[derive(Debug)]
pub struct SimFabric {
    epoch: Instant,
    model: Mutex<FabricModel>,
    traces: Mutex<HashMap<PathBuf, Trace>>,
}

/// The simulated hypervisor of one host of a [`SimFabric`].
#[derive(Clone, Debug)]
pub struct SimDriver {
    fabric: Arc<SimFabric>,
    host: String,
}

impl SimFabric {
    /// A fabric with the default migration model (1 GiB/s, 20 ms downtime).
    pub fn new() -> Arc<Self> {
        Self::with_config(SimConfig::default())
    }

    pub fn with_config(config: SimConfig) -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            model: Mutex::new(FabricModel::new(config)),
            traces: Mutex::new(HashMap::new()),
        })
    }

    /// A driver for host `name` with `cpus` physical CPUs and `memory_mib` of memory, added to
    /// the fabric if new. Asking again for the same name and shape gives another driver for the
    /// same host (like an agent restarting); another shape is refused.
    pub fn host(
        self: &Arc<Self>,
        name: &str,
        cpus: u32,
        memory_mib: u64,
    ) -> Result<SimDriver, SimError> {
        lock(&self.model).add_host(name, cpus, memory_mib)?;
        Ok(SimDriver {
            fabric: Arc::clone(self),
            host: name.to_owned(),
        })
    }

    /// Seconds since the fabric was created, on tokio's clock.
    pub fn now(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }

    /// Runs `f` on the whole fabric at the current instant, after completing due migrations.
    pub fn with_model<R>(&self, f: impl FnOnce(&mut FabricModel, f64) -> R) -> R {
        let now = self.now();
        let mut model = lock(&self.model);
        model.advance(now);
        f(&mut model, now)
    }

    /// Demand and granted load of host `name` now, for balancing experiments.
    pub fn host_load(&self, name: &str) -> Option<HostLoad> {
        self.with_model(|model, now| model.host(name).map(|host| host.account(now)))
    }

    /// The trace at `path`, read on first use.
    fn trace(&self, path: &Path) -> Result<Trace, TraceError> {
        if let Some(trace) = lock(&self.traces).get(path) {
            return Ok(trace.clone());
        }
        // Read without holding the lock; two first readers of one file both read it, harmlessly.
        let trace = Trace::read(path)?;
        lock(&self.traces).insert(path.to_path_buf(), trace.clone());
        Ok(trace)
    }
}

/// Locks `mutex`, carrying on after a panic elsewhere (the models stay consistent: every
/// operation checks before it changes anything).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SimDriver {
    /// The simulated host's name.
    pub fn host_name(&self) -> &str {
        &self.host
    }

    pub fn fabric(&self) -> &Arc<SimFabric> {
        &self.fabric
    }

    /// Demand and granted load of this host now: more than the trait's `sample` tells.
    pub fn load(&self) -> Result<HostLoad, HypervisorError> {
        self.with_host(|host, now| Ok(host.account(now)))
    }

    /// Runs `f` on this host at the current instant.
    fn with_host<R>(
        &self,
        f: impl FnOnce(&mut HostModel, f64) -> Result<R, HypervisorError>,
    ) -> Result<R, HypervisorError> {
        self.fabric
            .with_model(|model, now| match model.host_mut(&self.host) {
                Some(host) => f(host, now),
                None => Err(HypervisorError::Unavailable {
                    driver: "sim",
                    reason: format!("the fabric has no host {:?}", self.host),
                }),
            })
    }

    /// The domain `name` of `host`, as the trait reports it, at `now`.
    fn info(host: &HostModel, name: &str, now: f64) -> Result<DomainInfo, HypervisorError> {
        host.account(now)
            .domain(name)
            .map(domain_info)
            .ok_or_else(|| HypervisorError::NotFound(name.to_owned()))
    }
}

fn domain_info(load: &DomainLoad) -> DomainInfo {
    DomainInfo {
        name: load.name.clone(),
        uid: Some(load.uid.clone()),
        id: load.id.to_string(),
        state: load.state.as_domain_state(),
        cpu_percent: load.granted,
        vcpus: load
            .vcpus
            .iter()
            .map(|vcpu| VcpuPlacement {
                vcpu: vcpu.vcpu,
                cpu: vcpu.cpu,
                percent: vcpu.granted,
                wait_percent: (vcpu.demand.min(100.0) - vcpu.granted).max(0.0),
            })
            .collect(),
    }
}

impl Hypervisor for SimDriver {
    fn driver(&self) -> &'static str {
        "sim"
    }

    async fn host_info(&self) -> Result<HostInfo, HypervisorError> {
        self.with_host(|host, _| {
            Ok(HostInfo {
                cpus: host.cpus(),
                memory_total_mib: host.memory_mib(),
                memory_free_mib: host.memory_free_mib(),
                description: format!(
                    "simulated host (herd sim driver, modelled load; not a real machine): \
                     {} CPUs, {} MiB",
                    host.cpus(),
                    host.memory_mib()
                ),
            })
        })
    }

    async fn list(&self) -> Result<Vec<DomainInfo>, HypervisorError> {
        let load = self.load()?;
        Ok(load.domains.iter().map(domain_info).collect())
    }

    async fn sample(&self) -> Result<HostSample, HypervisorError> {
        let load = self.load()?;
        Ok(HostSample {
            cpu_load: load.cpus.iter().map(|cpu| cpu.granted).collect(),
            memory_free_mib: load.memory_free_mib,
            domains: load.domains.iter().map(domain_info).collect(),
        })
    }

    async fn create(&self, spec: &DomainSpec, paused: bool) -> Result<DomainInfo, HypervisorError> {
        validate(spec, "start")?;
        let existing = self.with_host(|host, now| match host.existing(spec)? {
            Some(_) => Self::info(host, &spec.name, now).map(Some),
            None => Ok(None),
        })?;
        if let Some(info) = existing {
            return Ok(info);
        }
        // The trace (if any) is read outside the fabric's lock.
        let load = parse_cmdline(spec.boot.cmdline.as_deref())
            .and_then(|load| load.resolve(|path| self.fabric.trace(path)))
            .map_err(|error| refused(&spec.name, "start", error.to_string()))?;
        self.with_host(|host, now| {
            host.create(spec, load, paused, now)?;
            Self::info(host, &spec.name, now)
        })
    }

    async fn pause(&self, name: &str) -> Result<(), HypervisorError> {
        self.with_host(|host, now| host.pause(name, now))
    }

    async fn unpause(&self, name: &str) -> Result<(), HypervisorError> {
        self.with_host(|host, now| host.unpause(name, now))
    }

    /// Immediate: a simulated guest always honours the power button, so `timeout` never runs.
    async fn shutdown(&self, name: &str, _timeout: Duration) -> Result<(), HypervisorError> {
        self.with_host(|host, now| host.shutdown(name, now))
    }

    async fn destroy(&self, name: &str) -> Result<(), HypervisorError> {
        self.with_host(|host, _| {
            host.destroy(name);
            Ok(())
        })
    }

    async fn prepare_incoming(
        &self,
        spec: &DomainSpec,
    ) -> Result<IncomingEndpoint, HypervisorError> {
        self.with_host(|host, now| host.prepare_incoming(spec, now))?;
        Ok(IncomingEndpoint {
            uri: endpoint_uri(&self.host, &spec.name),
        })
    }

    async fn migrate_out(
        &self,
        name: &str,
        endpoint: &IncomingEndpoint,
        params: &MigrationParams,
    ) -> Result<(), HypervisorError> {
        self.fabric
            .with_model(|model, now| model.migrate(&self.host, name, &endpoint.uri, params, now))
    }

    async fn migration_progress(&self, name: &str) -> Result<MigrationProgress, HypervisorError> {
        self.fabric
            .with_model(|model, now| model.progress(&self.host, name, now))
    }

    async fn cancel_migration(&self, name: &str) -> Result<(), HypervisorError> {
        self.fabric
            .with_model(|model, _| model.cancel(&self.host, name))
    }
}
