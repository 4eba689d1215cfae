//! One running QEMU as the driver knows it: its run directory, pid, QMP connection and CPU use.
//!
//! A `Domain` exists only for a process that was checked to be the QEMU of its run directory.
//! The QMP connection is opened lazily and re-opened when it drops, so a domain adopted after an
//! agent restart, or one whose connection broke, keeps working.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::cpu::{self, VcpuReading, VcpuSampler};
use super::process;
use super::qmp::{Command, QueryCpusFast, QueryStatus, RunStatus};
use super::qmp_client::{QmpClient, QmpError};
use super::run_dir::{Metadata, RunDir};
use crate::hypervisor::{DomainInfo, DomainState, HypervisorError, VcpuPlacement};

/// CPU use measured at the last sample.
#[derive(Clone, Debug, Default)]
struct Usage {
    percent: f64,
    vcpus: Vec<VcpuPlacement>,
}

/// A QEMU process of this driver.
pub(crate) struct Domain {
    pub run: RunDir,
    pub pid: u32,
    /// The QMP `-chardev` argument that identifies this process in `/proc/<pid>/cmdline`.
    pub qmp_arg: String,
    pub metadata: Metadata,
    qmp_timeout: Duration,
    qmp: tokio::sync::Mutex<Option<Arc<QmpClient>>>,
    sampler: Mutex<VcpuSampler>,
    usage: Mutex<Usage>,
}

impl Domain {
    pub fn new(
        run: RunDir,
        pid: u32,
        qmp_arg: String,
        metadata: Metadata,
        qmp_timeout: Duration,
        ticks: u64,
    ) -> Self {
        Self {
            run,
            pid,
            qmp_arg,
            metadata,
            qmp_timeout,
            qmp: tokio::sync::Mutex::new(None),
            sampler: Mutex::new(VcpuSampler::new(ticks)),
            usage: Mutex::new(Usage::default()),
        }
    }

    pub fn name(&self) -> &str {
        self.run.name()
    }

    /// Whether the process still runs and is still this domain's QEMU.
    pub fn is_running(&self) -> bool {
        process::is_our_qemu(self.pid, &self.qmp_arg)
    }

    /// The QMP connection, opened (again) if needed.
    pub async fn qmp(&self) -> Result<Arc<QmpClient>, HypervisorError> {
        let mut slot = self.qmp.lock().await;
        if let Some(client) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(client));
        }
        *slot = None;
        if !self.is_running() {
            return Err(HypervisorError::NotFound(self.name().to_string()));
        }
        let client = Arc::new(QmpClient::connect(&self.run.qmp_socket(), self.qmp_timeout).await?);
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }

    /// Drops the QMP connection (QEMU then accepts another client).
    pub async fn disconnect(&self) {
        self.qmp.lock().await.take();
    }

    /// Runs one QMP command.
    pub async fn execute<C: Command>(&self, command: &C) -> Result<C::Reply, HypervisorError> {
        Ok(self.qmp().await?.execute(command).await?)
    }

    /// QEMU's run state.
    pub async fn status(&self) -> Result<RunStatus, HypervisorError> {
        Ok(self.execute(&QueryStatus).await?.status)
    }

    /// The state as the trait models it (`Shutdown` once the process is gone).
    pub async fn state(&self) -> DomainState {
        match self.status().await {
            Ok(status) => domain_state(status),
            Err(_) if !self.is_running() => DomainState::Shutdown,
            Err(e) => {
                tracing::warn!(domain = self.name(), "cannot read the QEMU status: {e}");
                DomainState::Other
            }
        }
    }

    /// Reads the vCPU threads' CPU time and updates the use reported by [`Self::info`].
    pub async fn sample_cpu(&self) -> Result<(), HypervisorError> {
        let cpus = self.execute(&QueryCpusFast).await?;
        let at = Instant::now();
        let mut readings = Vec::with_capacity(cpus.len());
        for cpu in cpus {
            let (Ok(vcpu), Ok(thread_id)) =
                (u32::try_from(cpu.cpu_index), u32::try_from(cpu.thread_id))
            else {
                continue;
            };
            let path = format!("/proc/{}/task/{thread_id}/stat", self.pid);
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let stat = cpu::parse_thread_stat(&text).map_err(|e| HypervisorError::Parse {
                what: path,
                message: e.to_string(),
            })?;
            let schedstat = format!("/proc/{}/task/{thread_id}/schedstat", self.pid);
            let wait_ns = std::fs::read_to_string(&schedstat)
                .ok()
                .and_then(|text| cpu::parse_schedstat(&text).ok());
            readings.push(VcpuReading {
                vcpu,
                thread_id,
                stat,
                wait_ns,
            });
        }
        let vcpus = self
            .sampler
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .sample(at, &readings);
        let percent = vcpus.iter().map(|v| v.percent).sum();
        *self.usage.lock().unwrap_or_else(|e| e.into_inner()) = Usage { percent, vcpus };
        Ok(())
    }

    /// What `list` and `sample` report for this domain.
    pub async fn info(&self) -> DomainInfo {
        let state = self.state().await;
        let usage = self.usage.lock().unwrap_or_else(|e| e.into_inner()).clone();
        DomainInfo {
            name: self.name().to_string(),
            uid: Some(self.metadata.uid.clone()),
            id: self.pid.to_string(),
            state,
            cpu_percent: usage.percent,
            vcpus: usage.vcpus,
        }
    }
}

/// QEMU's run state in the trait's terms. `postmigrate` (a source after a completed migration),
/// `prelaunch` (started with `-S`) and `suspended` (guest S3) are `Paused`.
pub fn domain_state(status: RunStatus) -> DomainState {
    match status {
        RunStatus::Running => DomainState::Running,
        RunStatus::Paused
        | RunStatus::Postmigrate
        | RunStatus::Prelaunch
        | RunStatus::FinishMigrate
        | RunStatus::SaveVm
        | RunStatus::RestoreVm
        | RunStatus::Suspended
        | RunStatus::Debug => DomainState::Paused,
        RunStatus::Inmigrate => DomainState::Incoming,
        RunStatus::Shutdown => DomainState::Shutdown,
        RunStatus::GuestPanicked | RunStatus::InternalError | RunStatus::IoError => {
            DomainState::Crashed
        }
        RunStatus::Watchdog | RunStatus::Colo | RunStatus::Unknown => DomainState::Other,
    }
}

impl From<QmpError> for HypervisorError {
    fn from(error: QmpError) -> Self {
        match error {
            QmpError::Timeout { command, after } => Self::Timeout {
                operation: format!("QMP {command}"),
                after,
            },
            QmpError::Io(e) => Self::Io(e),
            QmpError::Protocol(message) => Self::Parse {
                what: "QMP message".into(),
                message,
            },
            QmpError::Reply { command, message } => Self::Parse {
                what: format!("the reply to QMP {command}"),
                message,
            },
            QmpError::Command { command, desc, .. } => Self::Command {
                command: format!("QMP {command}"),
                message: desc,
            },
            other => Self::Command {
                command: "QMP".into(),
                message: other.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_states_map_to_domain_states() {
        assert_eq!(domain_state(RunStatus::Running), DomainState::Running);
        assert_eq!(domain_state(RunStatus::Postmigrate), DomainState::Paused);
        assert_eq!(domain_state(RunStatus::Prelaunch), DomainState::Paused);
        assert_eq!(domain_state(RunStatus::Inmigrate), DomainState::Incoming);
        assert_eq!(domain_state(RunStatus::GuestPanicked), DomainState::Crashed);
        assert_eq!(domain_state(RunStatus::Unknown), DomainState::Other);
    }

    #[test]
    fn qmp_errors_become_operator_sentences() {
        let error: HypervisorError = QmpError::Command {
            command: "cont",
            class: "GenericError".into(),
            desc: "no".into(),
        }
        .into();
        assert_eq!(error.to_string(), "QMP cont failed: no");
        let error: HypervisorError = QmpError::Disconnected.into();
        assert_eq!(
            error.to_string(),
            "QMP failed: QEMU closed the QMP connection"
        );
    }
}
