//! [`XlDriver`]: the [`Hypervisor`] trait on Xen, by running `xl` and `nbd-client`.
//!
//! Each operation validates and renders everything it needs before running any command, so a
//! hostile spec is refused with nothing done. State lives on the host, not in the driver: the
//! domains in `xl list`, the rendered configs in the state directory (which also record each
//! VM's uid), the NBD links in the disk link directory. Only outgoing migrations and the last
//! CPU reading are held in memory.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use herd_crds::Validate;
use herd_crds::assignment::{DiskSource, DomainSpec};

use crate::hypervisor::{
    DomainInfo, DomainState, HostInfo, HostSample, Hypervisor, HypervisorError, IncomingEndpoint,
    MigrationParams, MigrationProgress,
};

use super::commands;
use super::config::{self, check_domain_name};
use super::cpu::{self, VcpuKey, VcpuTimes};
use super::info::{XenInfo, parse_info};
use super::list::{ListedDomain, parse_list};
use super::list_long::{DomainConfig, parse_list_long};
use super::migration::{self, JobHandle, JobState, MigrationJobs};
use super::nbd::{NbdAttacher, NbdExport, parse_nbd_uri};
use super::observe::{self, Observation, base_name};
use super::probe;
use super::runner::{CommandLine, CommandOutput, RunError, Runner};
use super::settings::XlSettings;
use super::vcpu_list::parse_vcpu_list;
use super::xentop::{XentopRow, parse_xentop};

/// What xl prints when a name matches no domain (`find_domain` in `tools/xl/xl_utils.c`).
const NO_SUCH_DOMAIN: &str = "is an invalid domain identifier";

/// The Xen driver. Cheap to clone; clones share their state.
#[derive(Clone)]
pub struct XlDriver {
    inner: Arc<Inner>,
}

struct Inner {
    settings: XlSettings,
    runner: Runner,
    nbd: NbdAttacher,
    jobs: MigrationJobs,
    /// Domains xl does not list but herd's migration protocol needs to see, by VM name:
    /// - `Incoming`: prepared to receive a migration. `xl migrate` creates the receiving domain
    ///   only when the source connects; the agent hangs the target's endpoint on this entry.
    /// - `Paused`: migrated away. `xl migrate` destroys the sending copy when it succeeds; the
    ///   agent reports the completed migration on this entry, as on QEMU's paused source.
    ///
    /// An entry goes when xl lists a domain of that name, or when the VM is destroyed here.
    stand_ins: Mutex<BTreeMap<String, DomainState>>,
    /// The vCPU times of the last sample, the baseline of the next.
    last_sample: Mutex<Option<VcpuTimes>>,
    clock: Instant,
}

/// What `create` and `prepare_incoming` work out before running anything.
struct Plan {
    cfg: String,
    nbd: Vec<(String, NbdExport)>,
}

impl XlDriver {
    /// Checks that this host runs Xen with `xl` (see [`probe::probe`]) and returns the driver;
    /// [`HypervisorError::Unavailable`] with the reason otherwise.
    pub fn probe(settings: XlSettings) -> Result<Self, HypervisorError> {
        let runner = probe::probe(&settings)?;
        let nbd = NbdAttacher::new(
            runner.clone(),
            settings.nbd_paths(),
            settings.command_timeout,
        );
        let inner = Inner {
            settings,
            runner,
            nbd,
            jobs: MigrationJobs::default(),
            stand_ins: Mutex::new(BTreeMap::new()),
            last_sample: Mutex::new(None),
            clock: Instant::now(),
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    pub fn settings(&self) -> &XlSettings {
        &self.inner.settings
    }

    /// What `xentop` reports for every domain, Domain-0 included: the rows of the second table
    /// of `xentop -b -f -i 2 -d 1`, whose CPU(%) is measured over that one second. An optional
    /// cross-check of the CPU use `sample` computes from `xl vcpu-list`; the driver itself never
    /// calls it. Takes about a second, and fails with `Unavailable` where `xentop` is not
    /// installed.
    pub async fn xentop(&self) -> Result<Vec<XentopRow>, HypervisorError> {
        let output = self.inner.xl(commands::xentop()).await?;
        Ok(parse_xentop(&output.stdout)?.measured_rows()?)
    }
}

fn refused(name: &str, operation: &'static str, reason: impl Display) -> HypervisorError {
    HypervisorError::Refused {
        name: name.to_string(),
        operation,
        reason: reason.to_string(),
    }
}

fn is_no_such_domain(error: &RunError) -> bool {
    error.stderr().is_some_and(|s| s.contains(NO_SUCH_DOMAIN))
}

/// The name of a copy `xl migrate` keeps of domain `name` (`NAME--incoming` or
/// `NAME--migratedaway`), if one is listed.
fn migration_copy<'a>(listed: &'a [ListedDomain], name: &str) -> Option<&'a str> {
    listed
        .iter()
        .map(|d| d.name.as_str())
        .find(|listed| *listed != name && base_name(listed).0 == name)
}

/// A failed xl command on domain `name`: `NotFound` when xl says there is no such domain.
fn domain_error(name: &str, error: RunError) -> HypervisorError {
    if is_no_such_domain(&error) {
        HypervisorError::NotFound(name.to_string())
    } else {
        error.into()
    }
}

impl Inner {
    async fn xl(&self, command: CommandLine) -> Result<CommandOutput, RunError> {
        self.runner
            .run(&command, self.settings.command_timeout)
            .await
    }

    async fn listed(&self) -> Result<Vec<ListedDomain>, HypervisorError> {
        Ok(parse_list(&self.xl(commands::list()).await?.stdout)?)
    }

    async fn configs(&self) -> Result<Vec<DomainConfig>, HypervisorError> {
        Ok(parse_list_long(
            &self.xl(commands::list_long()).await?.stdout,
        )?)
    }

    async fn xen_info(&self) -> Result<XenInfo, HypervisorError> {
        Ok(parse_info(&self.xl(commands::info()).await?.stdout)?)
    }

    async fn observe(&self) -> Result<Observation, HypervisorError> {
        let list = self.listed().await?;
        let configs = self.configs().await?;
        let vcpus = parse_vcpu_list(&self.xl(commands::vcpu_list()).await?.stdout)?;
        Ok(Observation {
            list,
            configs,
            vcpus,
        })
    }

    /// The domains of `observation`, with vCPU use since the last sample. `keep` makes this
    /// reading the baseline of the next (the first reading always is).
    fn domains(
        &self,
        observation: &Observation,
        keep: bool,
    ) -> (Vec<DomainInfo>, BTreeMap<VcpuKey, f64>) {
        let now = VcpuTimes::from_rows(self.clock.elapsed(), &observation.vcpus);
        let percent = {
            let mut last = self
                .last_sample
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let percent = last
                .as_ref()
                .map(|before| cpu::vcpu_percent(before, &now))
                .unwrap_or_default();
            if keep || last.is_none() {
                *last = Some(now);
            }
            percent
        };
        let mut domains = observe::assemble(observation, &percent, |name| self.recorded_uid(name));
        let mut stand_ins = self
            .stand_ins
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        stand_ins.retain(|name, _| !domains.iter().any(|d| &d.name == name));
        domains.extend(
            stand_ins
                .iter()
                .map(|(name, state)| observe::stand_in(name, self.recorded_uid(name), *state)),
        );
        (domains, percent)
    }

    /// The uid recorded in the config this driver wrote for `name`, if any.
    fn recorded_uid(&self, name: &str) -> Option<String> {
        check_domain_name(name).ok()?;
        let file = std::fs::File::open(self.settings.config_path(name)).ok()?;
        let mut head = String::new();
        file.take(4096).read_to_string(&mut head).ok()?;
        observe::recorded_uid(&head)
    }

    /// Validates `spec` and renders its config; refuses before anything runs.
    fn plan(&self, spec: &DomainSpec, operation: &'static str) -> Result<Plan, HypervisorError> {
        let errors: Vec<String> = spec.validate().iter().map(ToString::to_string).collect();
        if !errors.is_empty() {
            return Err(refused(&spec.name, operation, errors.join("; ")));
        }
        let paths = self.nbd.paths();
        let mut targets = Vec::with_capacity(spec.disks.len());
        let mut nbd = Vec::new();
        for disk in &spec.disks {
            match &disk.source {
                DiskSource::Path(path) => targets.push(path.clone()),
                DiskSource::Nbd(uri) => {
                    let export =
                        parse_nbd_uri(uri).map_err(|e| refused(&spec.name, operation, e))?;
                    targets.push(
                        paths
                            .link(&spec.name, &disk.name)
                            .to_string_lossy()
                            .into_owned(),
                    );
                    nbd.push((disk.name.clone(), export));
                }
            }
        }
        let cfg = config::render(spec, &targets, &self.settings.render)
            .map_err(|e| refused(&spec.name, operation, e))?;
        Ok(Plan { cfg, nbd })
    }

    /// Attaches the plan's NBD disks and writes its config; undoes the attachments on failure.
    async fn install(&self, name: &str, plan: &Plan) -> Result<PathBuf, HypervisorError> {
        let mut result = Ok(());
        for (disk, export) in &plan.nbd {
            result = self.nbd.attach(name, disk, export).await.map(drop);
            if result.is_err() {
                break;
            }
        }
        let result = result
            .map_err(HypervisorError::from)
            .and_then(|()| self.write_config(name, &plan.cfg));
        if result.is_err() {
            self.forget_quietly(name).await;
        }
        result
    }

    fn write_config(&self, name: &str, cfg: &str) -> Result<PathBuf, HypervisorError> {
        std::fs::create_dir_all(&self.settings.state_dir)?;
        let path = self.settings.config_path(name);
        let temporary = path.with_extension("cfg.new");
        std::fs::write(&temporary, cfg)?;
        std::fs::rename(&temporary, &path)?;
        Ok(path)
    }

    /// Detaches `name`'s NBD disks and removes its config: after it is gone from this host.
    async fn forget(&self, name: &str) -> Result<(), HypervisorError> {
        self.stand_ins
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
        self.nbd.detach_all(name).await?;
        match std::fs::remove_file(self.settings.config_path(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn forget_quietly(&self, name: &str) {
        if let Err(error) = self.forget(name).await {
            tracing::warn!(domain = name, %error, "cleaning up after a failed start failed");
        }
    }

    /// The domain `name` as it runs now.
    async fn find(&self, name: &str) -> Result<DomainInfo, HypervisorError> {
        let observation = self.observe().await?;
        let (domains, _) = self.domains(&observation, false);
        let exact = |d: &&ListedDomain| d.name == name;
        let domid = observation
            .list
            .iter()
            .find(exact)
            .map(|d| d.domid.to_string());
        domains
            .into_iter()
            .find(|d| Some(&d.id) == domid.as_ref())
            .ok_or_else(|| HypervisorError::NotFound(name.to_string()))
    }

    /// `create` of a domain whose name already runs: itself if the uid matches.
    async fn existing(&self, spec: &DomainSpec) -> Result<DomainInfo, HypervisorError> {
        let found = self.find(&spec.name).await?;
        if found
            .uid
            .as_deref()
            .is_some_and(|uid| uid.eq_ignore_ascii_case(&spec.uid))
        {
            return Ok(found);
        }
        let reason = format!(
            "a domain of this name from another VM (uid {:?}) runs here; destroy it first",
            found.uid
        );
        Err(refused(&spec.name, "create", reason))
    }

    async fn create(&self, spec: &DomainSpec, paused: bool) -> Result<DomainInfo, HypervisorError> {
        let plan = self.plan(spec, "create")?;
        let listed = self.listed().await?;
        if listed.iter().any(|d| d.name == spec.name) {
            return self.existing(spec).await;
        }
        if let Some(copy) = migration_copy(&listed, &spec.name) {
            let reason =
                format!("xl migrate's copy {copy:?} is here; wait for the migration to end");
            return Err(refused(&spec.name, "create", reason));
        }
        let cfg = self.install(&spec.name, &plan).await?;
        let started = self
            .runner
            .run(
                &commands::create(&cfg, paused),
                self.settings.create_timeout,
            )
            .await;
        if let Err(error) = started {
            self.forget_quietly(&spec.name).await;
            return Err(error.into());
        }
        self.find(&spec.name).await
    }

    async fn on_domain(
        &self,
        name: &str,
        operation: &'static str,
        command: CommandLine,
    ) -> Result<(), HypervisorError> {
        check_domain_name(name).map_err(|e| refused(name, operation, e))?;
        self.xl(command)
            .await
            .map(drop)
            .map_err(|e| domain_error(name, e))
    }

    async fn shutdown(&self, name: &str, timeout: Duration) -> Result<(), HypervisorError> {
        check_domain_name(name).map_err(|e| refused(name, "shut down", e))?;
        match self
            .runner
            .run(&commands::shutdown_wait(name), timeout)
            .await
        {
            Err(RunError::Timeout { .. }) => {
                tracing::warn!(
                    domain = name,
                    ?timeout,
                    "the guest did not power off in time; destroying it"
                );
                return self.destroy(name).await;
            }
            Err(error) if !is_no_such_domain(&error) => return Err(error.into()),
            _ => {}
        }
        self.forget(name).await
    }

    async fn destroy(&self, name: &str) -> Result<(), HypervisorError> {
        check_domain_name(name).map_err(|e| refused(name, "destroy", e))?;
        let listed = self.listed().await?;
        if listed.iter().any(|d| d.name == name) {
            match self.xl(commands::destroy(name)).await {
                Err(error) if !is_no_such_domain(&error) => {
                    // A guest that has just powered off is torn down by its own `xl create`
                    // monitor (on_poweroff = destroy); an `xl destroy` racing that teardown
                    // fails ("Unable to destroy guest") although the domain goes away. Seen on
                    // a real Xen 4.17 host: the domain is destroyed when it is no longer listed.
                    if self.listed().await?.iter().any(|d| d.name == name) {
                        return Err(error.into());
                    }
                    tracing::info!(
                        domain = name,
                        "xl destroy failed while the domain was going away; it is gone"
                    );
                }
                _ => {}
            }
        }
        if let Some(copy) = migration_copy(&listed, name) {
            let reason = format!(
                "its disks stay attached because xl migrate's copy {:?} is still here; \
                 check the other node, then destroy that copy with xl destroy",
                copy
            );
            return Err(refused(name, "destroy", reason));
        }
        self.forget(name).await
    }

    /// This node's address for migration targets: the setting, or `xl info`'s host name.
    async fn migration_host(&self) -> Result<String, HypervisorError> {
        let host = match &self.settings.migration_host {
            Some(host) => host.clone(),
            None => self.xen_info().await?.host.unwrap_or_default(),
        };
        migration::check_host(&host).map_err(|e| HypervisorError::Unavailable {
            driver: "xl",
            reason: e.to_string(),
        })?;
        Ok(host)
    }

    async fn prepare_incoming(
        &self,
        spec: &DomainSpec,
    ) -> Result<IncomingEndpoint, HypervisorError> {
        let operation = "receive a migration";
        let plan = self.plan(spec, operation)?;
        let host = self.migration_host().await?;
        if self
            .listed()
            .await?
            .iter()
            .any(|d| base_name(&d.name).0 == spec.name)
        {
            return Err(refused(
                &spec.name,
                operation,
                "a domain of this name already runs here",
            ));
        }
        let endpoint = migration::endpoint(&host).map_err(|e| refused(&spec.name, operation, e))?;
        self.install(&spec.name, &plan).await?;
        self.stand_ins
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(spec.name.clone(), DomainState::Incoming);
        Ok(endpoint)
    }

    /// Refuses to move a domain whose disks are not NBD links of ours (a local disk would be
    /// opened by path on the target, where it is a different disk or none).
    fn check_movable(&self, name: &str, config: &DomainConfig) -> Result<(), HypervisorError> {
        let links = self.settings.disk_link_dir.join(name);
        let local = config
            .disks
            .iter()
            .filter_map(|d| d.pdev_path.as_deref())
            .find(|p| !std::path::Path::new(p).starts_with(&links));
        match local {
            Some(path) => Err(refused(
                name,
                "migrate",
                format!("its disk {path:?} is local to this host; only NBD disks can move"),
            )),
            None => Ok(()),
        }
    }

    async fn migrate_out(
        self: &Arc<Self>,
        name: &str,
        endpoint: &IncomingEndpoint,
        params: &MigrationParams,
    ) -> Result<(), HypervisorError> {
        check_domain_name(name).map_err(|e| refused(name, "migrate", e))?;
        let host = migration::endpoint_host(endpoint).map_err(|e| refused(name, "migrate", e))?;
        migration::check_transport(&self.settings.migration_transport)
            .map_err(|e| refused(name, "migrate", e))?;
        let configs = self.configs().await?;
        let config = configs
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| HypervisorError::NotFound(name.to_string()))?;
        self.check_movable(name, config)?;
        let handle = self.jobs.begin(name)?;
        tracing::info!(
            domain = name,
            host,
            ?params,
            "xl migrate has no downtime or bandwidth limits; they are not applied"
        );
        tokio::spawn(Arc::clone(self).run_migration(name.to_string(), host, handle));
        Ok(())
    }

    /// The background half of `migrate_out`: runs `xl migrate` to its end.
    /// Whether the domain moved although `xl migrate` exited with an error. xl destroys the
    /// sending copy only after the target has reported that the domain started there, so when
    /// no copy of `name` is left here the domain runs on the target, whatever the exit status.
    /// Then this host is cleaned up as after a success and reports the `Paused` stand-in.
    async fn moved_despite(&self, name: &str, error: &RunError) -> bool {
        let left_here = match self.listed().await {
            Ok(listed) => listed.iter().any(|d| base_name(&d.name).0 == name),
            Err(_) => true,
        };
        if left_here {
            return false;
        }
        tracing::warn!(domain = name, %error, "xl migrate failed, but the domain has left this host for the target");
        if let Err(error) = self.forget(name).await {
            tracing::warn!(domain = name, %error, "the domain moved, but detaching its disks here failed");
        }
        self.stand_ins
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_string(), DomainState::Paused);
        true
    }

    async fn run_migration(self: Arc<Self>, name: String, host: String, mut handle: JobHandle) {
        let command = commands::migrate(&self.settings.migration_transport, &name, &host);
        let result = self
            .runner
            .run_until(&command, self.settings.migrate_timeout, handle.cancelled())
            .await;
        let state = match result {
            Ok(_) => {
                if let Err(error) = self.forget(&name).await {
                    tracing::warn!(domain = name, %error, "the domain moved, but detaching its disks here failed");
                }
                self.stand_ins
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(name.clone(), DomainState::Paused);
                JobState::Completed {
                    total: handle.elapsed(),
                }
            }
            Err(RunError::Cancelled { .. }) => JobState::Cancelled,
            Err(error) => {
                if self.moved_despite(&name, &error).await {
                    JobState::Completed {
                        total: handle.elapsed(),
                    }
                } else {
                    JobState::Failed {
                        message: error.to_string(),
                    }
                }
            }
        };
        tracing::info!(domain = name, ?state, "xl migrate ended");
        handle.finish(state);
    }

    async fn cancel_migration(&self, name: &str) -> Result<(), HypervisorError> {
        let state = self
            .jobs
            .cancel(name, self.settings.cancel_wait)
            .await
            .ok_or_else(|| HypervisorError::NotFound(name.to_string()))?;
        match state {
            JobState::Running => Err(HypervisorError::Timeout {
                operation: format!("cancelling the migration of {name}"),
                after: self.settings.cancel_wait,
            }),
            JobState::Completed { .. } => Err(refused(
                name,
                "cancel its migration",
                "the migration had completed; the domain runs on the target",
            )),
            JobState::Cancelled | JobState::Failed { .. }
                if self.listed().await?.iter().any(|d| d.name == name) =>
            {
                Ok(())
            }
            JobState::Cancelled | JobState::Failed { .. } => Err(refused(
                name,
                "cancel its migration",
                "xl migrate was stopped, but the domain is no longer here under its name: xl may have passed its \
                 point of no return; look for it as NAME--migratedaway here and as NAME on the target before acting",
            )),
        }
    }
}

impl Hypervisor for XlDriver {
    fn driver(&self) -> &'static str {
        "xl"
    }

    async fn host_info(&self) -> Result<HostInfo, HypervisorError> {
        let info = self.inner.xen_info().await?;
        Ok(HostInfo {
            cpus: info.nr_cpus,
            memory_total_mib: info.total_memory_mib,
            memory_free_mib: info.free_memory_mib,
            description: info.description(),
        })
    }

    async fn list(&self) -> Result<Vec<DomainInfo>, HypervisorError> {
        let observation = self.inner.observe().await?;
        Ok(self.inner.domains(&observation, false).0)
    }

    async fn sample(&self) -> Result<HostSample, HypervisorError> {
        let observation = self.inner.observe().await?;
        let info = self.inner.xen_info().await?;
        let (domains, percent) = self.inner.domains(&observation, true);
        Ok(HostSample {
            cpu_load: cpu::cpu_load(info.nr_cpus, &observation.vcpus, &percent),
            memory_free_mib: info.free_memory_mib,
            domains,
        })
    }

    async fn create(&self, spec: &DomainSpec, paused: bool) -> Result<DomainInfo, HypervisorError> {
        self.inner.create(spec, paused).await
    }

    async fn pause(&self, name: &str) -> Result<(), HypervisorError> {
        self.inner
            .on_domain(name, "pause", commands::pause(name))
            .await
    }

    async fn unpause(&self, name: &str) -> Result<(), HypervisorError> {
        self.inner
            .on_domain(name, "unpause", commands::unpause(name))
            .await
    }

    async fn shutdown(&self, name: &str, timeout: Duration) -> Result<(), HypervisorError> {
        self.inner.shutdown(name, timeout).await
    }

    async fn destroy(&self, name: &str) -> Result<(), HypervisorError> {
        self.inner.destroy(name).await
    }

    async fn prepare_incoming(
        &self,
        spec: &DomainSpec,
    ) -> Result<IncomingEndpoint, HypervisorError> {
        self.inner.prepare_incoming(spec).await
    }

    async fn migrate_out(
        &self,
        name: &str,
        endpoint: &IncomingEndpoint,
        params: &MigrationParams,
    ) -> Result<(), HypervisorError> {
        self.inner.migrate_out(name, endpoint, params).await
    }

    async fn migration_progress(&self, name: &str) -> Result<MigrationProgress, HypervisorError> {
        self.inner
            .jobs
            .state(name)
            .map(|s| s.progress())
            .ok_or_else(|| HypervisorError::NotFound(name.to_string()))
    }

    async fn cancel_migration(&self, name: &str) -> Result<(), HypervisorError> {
        self.inner.cancel_migration(name).await
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use super::*;

    /// A driver on a fake dom0 under `root`, with the executables `bin` (name, script).
    fn fake_dom0(root: &Path, bin: &[(&str, String)]) -> XlDriver {
        std::fs::create_dir_all(root.join("proc-xen")).unwrap();
        std::fs::write(root.join("proc-xen/capabilities"), "control_d\n").unwrap();
        std::fs::create_dir_all(root.join("bin")).unwrap();
        for (name, script) in bin {
            let path = root.join("bin").join(name);
            std::fs::write(&path, script).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        XlDriver::probe(XlSettings {
            search_path: Some(vec![root.join("bin")]),
            proc_xen: root.join("proc-xen"),
            state_dir: root.join("state"),
            disk_link_dir: root.join("disks"),
            ..XlSettings::default()
        })
        .unwrap()
    }

    #[tokio::test]
    async fn xentop_runs_batch_mode_and_reads_its_second_table() {
        let root = tempfile::tempdir().unwrap();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/xl/xentop-b.txt");
        let log = root.path().join("xentop.log");
        let xentop = format!(
            "#!/bin/sh\necho \"$*\" > '{}'\ncat '{}'\n",
            log.display(),
            fixture.display()
        );
        let driver = fake_dom0(
            root.path(),
            &[("xl", "#!/bin/sh\n".into()), ("xentop", xentop)],
        );
        let rows = driver.xentop().await.unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "-b -f -i 2 -d 1\n");
        let summary: Vec<(&str, u64, f64)> = rows
            .iter()
            .map(|r| (r.name.as_str(), r.cpu_seconds, r.cpu_percent))
            .collect();
        assert_eq!(
            summary,
            [
                ("Domain-0", 10432, 3.0),
                ("small-1", 42, 0.1),
                ("web-1", 735, 120.0)
            ]
        );
    }

    #[tokio::test]
    async fn xentop_without_xentop_or_with_one_table_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        let driver = fake_dom0(root.path(), &[("xl", "#!/bin/sh\n".into())]);
        match driver.xentop().await {
            Err(HypervisorError::Unavailable { reason, .. }) => {
                assert!(reason.contains("xentop was not found"), "{reason}")
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        let one_table = "#!/bin/sh\nprintf '%10s %s\\n' NAME 'STATE CPU(sec) CPU(%) MEM(k) MEM(%) \
            MAXMEM(k) MAXMEM(%) VCPUS NETS NETTX(k) NETRX(k) VBDS VBD_OO VBD_RD VBD_WR VBD_RSECT \
            VBD_WSECT SSID'\necho 'Domain-0 -----r 1 0.0 1 0.0 no limit n/a 1 0 0 0 0 0 0 0 0 0 0'\n";
        let driver = fake_dom0(
            root.path(),
            &[("xl", "#!/bin/sh\n".into()), ("xentop", one_table.into())],
        );
        match driver.xentop().await {
            Err(HypervisorError::Parse { what, message }) => {
                assert_eq!(what, "xentop -b");
                assert!(message.contains("1 iteration"), "{message}");
            }
            other => panic!("expected a parse error, got {other:?}"),
        }
    }
}
