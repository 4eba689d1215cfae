//! The domains of one driver: finding them in their run directories (adopting QEMU processes
//! after an agent restart), starting QEMU, ending it, and reporting what is there.
//!
//! Only a process whose `/proc/<pid>/cmdline` holds its run directory's QMP socket argument is
//! adopted or signalled. Starting refuses to run over a live QEMU, so a restarted agent never
//! starts a second copy of a VM.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use herd_crds::assignment::DomainSpec;

use super::command_line::{self, Launch, RunFiles};
use super::domain::Domain;
use super::driver::{DEFAULT_BINARY, QemuDriver, refused};
use super::process::{self, LaunchError};
use super::qmp::Quit;
use super::run_dir::{self, Metadata, RunDir, RunDirError};
use crate::hypervisor::{DomainInfo, DomainState, HypervisorError};

impl QemuDriver {
    /// The running domain `name`, adopting it from its run directory if needed.
    pub(super) fn find(&self, name: &str) -> Result<Option<Arc<Domain>>, HypervisorError> {
        let cached = self
            .domains
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned();
        if let Some(domain) = cached {
            if domain.is_running() {
                return Ok(Some(domain));
            }
            self.forget(name);
        }
        self.adopt(name)
    }

    fn forget(&self, name: &str) -> Option<Arc<Domain>> {
        self.domains
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
    }

    /// Takes over a QEMU found in the run directory of `name` (after an agent restart).
    fn adopt(&self, name: &str) -> Result<Option<Arc<Domain>>, HypervisorError> {
        let run = self.run_dir(name)?;
        let Some(metadata) = run.metadata().map_err(|e| run_dir_error(name, e))? else {
            return Ok(None);
        };
        let Some(pid) = run.pid()? else {
            return Ok(None);
        };
        let qmp_arg = qmp_arg(&run, name)?;
        if !process::is_our_qemu(pid, &qmp_arg) {
            return Ok(None);
        }
        tracing::info!(domain = name, pid, "adopting a running QEMU");
        let domain = Arc::new(Domain::new(
            run,
            pid,
            qmp_arg,
            metadata,
            self.config.qmp_timeout,
            self.ticks_per_second,
        ));
        self.domains
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), Arc::clone(&domain));
        Ok(Some(domain))
    }

    /// The running domain `name`, or `NotFound`.
    pub(super) fn require(&self, name: &str) -> Result<Arc<Domain>, HypervisorError> {
        self.find(name)?
            .ok_or_else(|| HypervisorError::NotFound(name.to_string()))
    }

    /// Starts QEMU for `spec` (the caller holds the name's lock and found no running domain).
    pub(super) async fn start(
        &self,
        spec: &DomainSpec,
        paused: bool,
        incoming: Option<String>,
    ) -> Result<Arc<Domain>, HypervisorError> {
        let run = self.run_dir(&spec.name)?;
        let qmp_arg = qmp_arg(&run, &spec.name)?;
        let args = self.arguments(&run, spec, paused, incoming.as_deref())?;
        if let Some(pid) = run
            .pid()?
            .filter(|&pid| process::is_our_qemu(pid, &qmp_arg))
        {
            let reason = format!(
                "QEMU pid {pid} still runs in {} without readable metadata; destroy it first",
                run.path().display()
            );
            return Err(refused(&spec.name, "start", reason));
        }
        let metadata = Metadata {
            uid: spec.uid.clone(),
            spec: spec.clone(),
            incoming,
        };
        run.prepare(&metadata)
            .map_err(|e| run_dir_error(&spec.name, e))?;
        if let Err(error) = process::launch(&self.binary, &args, self.config.start_timeout).await {
            self.cleanup_failed_start(&run, &qmp_arg);
            return Err(launch_error(&spec.name, error));
        }
        let Some(pid) = run.pid()? else {
            return Err(command_error(
                &spec.name,
                "QEMU started but wrote no pid file".into(),
            ));
        };
        let timeout = self.config.qmp_timeout;
        let domain = Arc::new(Domain::new(
            run,
            pid,
            qmp_arg,
            metadata,
            timeout,
            self.ticks_per_second,
        ));
        if let Err(error) = domain.qmp().await {
            self.end(&domain).await?;
            return Err(error);
        }
        tracing::info!(domain = spec.name, pid, "started QEMU");
        let mut domains = self.domains.lock().unwrap_or_else(|e| e.into_inner());
        domains.insert(spec.name.clone(), Arc::clone(&domain));
        Ok(domain)
    }

    /// The QEMU arguments for `spec` in `run`, after checking its bridges exist.
    fn arguments(
        &self,
        run: &RunDir,
        spec: &DomainSpec,
        paused: bool,
        incoming: Option<&str>,
    ) -> Result<Vec<String>, HypervisorError> {
        check_bridges(spec)?;
        let (qmp, pid_file, serial) = (run.qmp_socket(), run.pid_file(), run.serial_log());
        let files = RunFiles {
            qmp_socket: &qmp,
            pid_file: &pid_file,
            serial_log: &serial,
        };
        let launch = Launch {
            spec,
            files,
            accel: &self.accel,
            paused,
            incoming,
        };
        command_line::build(&launch).map_err(|e| refused(&spec.name, "start", e))
    }

    /// Kills whatever a failed start left behind and removes the run directory.
    fn cleanup_failed_start(&self, run: &RunDir, qmp_arg: &str) {
        if let Ok(Some(pid)) = run.pid() {
            let _ = process::kill_if_ours(pid, qmp_arg);
        }
        if let Err(e) = run.remove() {
            tracing::warn!(dir = %run.path().display(), "cannot remove the run directory: {e}");
        }
    }

    /// Ends a domain's QEMU (QMP `quit`, then SIGKILL) and removes its run directory.
    pub(super) async fn end(&self, domain: &Domain) -> Result<(), HypervisorError> {
        self.forget(domain.name());
        if domain.is_running() {
            // QEMU may close the connection before it answers `quit`; the wait below decides.
            if let Ok(Err(e)) =
                tokio::time::timeout(Duration::from_secs(2), domain.execute(&Quit)).await
            {
                tracing::debug!(domain = domain.name(), "QMP quit failed: {e}");
            }
            domain.disconnect().await;
            if !process::wait_gone(domain.pid, Duration::from_secs(3)).await {
                process::kill_if_ours(domain.pid, &domain.qmp_arg)?;
                if !process::wait_gone(domain.pid, Duration::from_secs(5)).await {
                    let operation = format!("killing QEMU pid {} of {}", domain.pid, domain.name());
                    return Err(HypervisorError::Timeout {
                        operation,
                        after: Duration::from_secs(8),
                    });
                }
            }
        }
        domain.run.remove()?;
        Ok(())
    }

    /// Reaps the run directory of `name` whose QEMU is gone (or kills one that could not be
    /// adopted, e.g. with unreadable metadata).
    pub(super) fn reap(&self, name: &str) -> Result<(), HypervisorError> {
        let run = self.run_dir(name)?;
        if let Some(pid) = run.pid()? {
            process::kill_if_ours(pid, &qmp_arg(&run, name)?)?;
        }
        run.remove()?;
        Ok(())
    }

    /// The domains under the state directory; with `sample`, their CPU use is measured first.
    pub(super) async fn domain_infos(
        &self,
        sample: bool,
    ) -> Result<Vec<DomainInfo>, HypervisorError> {
        let names = run_dir::scan(&self.config.state_dir)?;
        self.domains
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|name, _| names.contains(name));
        let mut infos = Vec::with_capacity(names.len());
        for name in names {
            let lock = self.lock(&name);
            let busy = lock.try_lock().is_err();
            let domain = match self.find(&name) {
                Ok(domain) => domain,
                Err(e) => {
                    tracing::warn!(domain = name, "cannot read the run directory: {e}");
                    None
                }
            };
            match domain {
                Some(domain) => {
                    if sample && let Err(e) = domain.sample_cpu().await {
                        tracing::debug!(domain = name, "cannot sample CPU use: {e}");
                    }
                    infos.push(domain.info().await);
                }
                // A domain being created or destroyed right now is left out until it settles.
                None if busy => {}
                None => infos.push(self.stale_info(&name)),
            }
        }
        Ok(infos)
    }

    /// A run directory without a running QEMU: `Shutdown`, or `Other` if an unadoptable QEMU
    /// still runs there.
    fn stale_info(&self, name: &str) -> DomainInfo {
        let run = self.run_dir(name).ok();
        let uid = run
            .as_ref()
            .and_then(|run| run.metadata().ok().flatten())
            .map(|m| m.uid);
        let pid = run.as_ref().and_then(|run| run.pid().ok().flatten());
        let alive = pid.is_some_and(process::is_alive);
        DomainInfo {
            name: name.to_string(),
            uid,
            id: pid.map(|p| p.to_string()).unwrap_or_default(),
            state: if alive {
                DomainState::Other
            } else {
                DomainState::Shutdown
            },
            cpu_percent: 0.0,
            vcpus: Vec::new(),
        }
    }
}

/// The QMP `-chardev` argument of `run` (identifies its QEMU in `/proc`).
fn qmp_arg(run: &RunDir, name: &str) -> Result<String, HypervisorError> {
    command_line::qmp_chardev(&run.qmp_socket()).map_err(|e| refused(name, "start", e))
}

/// Refuses a network whose bridge does not exist on this host.
fn check_bridges(spec: &DomainSpec) -> Result<(), HypervisorError> {
    for network in &spec.networks {
        let bridge = &network.bridge;
        let safe = !bridge.is_empty() && !bridge.contains('/') && !bridge.starts_with('.');
        if !safe
            || !Path::new("/sys/class/net")
                .join(bridge)
                .join("bridge")
                .is_dir()
        {
            let reason = format!(
                "network {:?} needs bridge {bridge:?}, which does not exist on this host; create the bridge \
                 (and allow it in /etc/qemu/bridge.conf) or remove the network",
                network.name
            );
            return Err(refused(&spec.name, "start", reason));
        }
    }
    Ok(())
}

fn command_error(name: &str, message: String) -> HypervisorError {
    HypervisorError::Command {
        command: format!("{DEFAULT_BINARY} (starting {name})"),
        message,
    }
}

fn launch_error(name: &str, error: LaunchError) -> HypervisorError {
    match error {
        LaunchError::Spawn { source, .. } => HypervisorError::Io(source),
        LaunchError::Timeout(after) => HypervisorError::Timeout {
            operation: format!("starting QEMU for {name}"),
            after,
        },
        LaunchError::Failed { .. } => command_error(name, error.to_string()),
    }
}

pub(super) fn run_dir_error(name: &str, error: RunDirError) -> HypervisorError {
    match error {
        RunDirError::Io(e) => HypervisorError::Io(e),
        RunDirError::Metadata { path, message } => HypervisorError::Parse {
            what: path,
            message,
        },
        other => refused(name, "use a run directory", other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_bridges_are_refused_by_name() {
        let mut spec: DomainSpec =
            herd_crds::yaml::from_str("name: vm\nuid: u\nvcpus: 1\nmemoryMiB: 32\n").unwrap();
        assert!(check_bridges(&spec).is_ok());
        spec.networks.push(herd_crds::virtual_machine::Network {
            name: "eth0".into(),
            bridge: "herd-nobr0".into(),
            mac: None,
        });
        let error = check_bridges(&spec).unwrap_err();
        assert!(matches!(error, HypervisorError::Refused { .. }));
        assert!(error.to_string().contains("herd-nobr0"), "{error}");
    }
}
