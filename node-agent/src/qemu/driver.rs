//! [`QemuDriver`]: the [`Hypervisor`] trait over one daemonized `qemu-system-x86_64` per VM.
//!
//! The driver keeps no state that matters outside its state directory: every domain has a run
//! directory ([`super::run_dir`]), and any operation on a name first looks there, so a restarted
//! agent adopts the QEMU processes it finds (same pids) instead of starting second copies, and
//! never kills a running VM by mistake. Operations on one name are serialised; different names
//! proceed in parallel.
//!
//! A QEMU whose process has exited but whose run directory remains (the guest powered itself
//! off, or crashed) is listed as `Shutdown` until `destroy` (or a new `create`) reaps it.
//! `shutdown` presses the ACPI button, waits for QMP's `SHUTDOWN` event or QEMU's exit, and
//! destroys the domain when the timeout passes first.
//!
//! After a completed outgoing migration the source QEMU stays paused (`postmigrate`, listed as
//! `Paused`): the caller destroys it only once the target runs.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herd_crds::Validate;
use herd_crds::assignment::DomainSpec;
use tokio::sync::broadcast::error::RecvError;

use super::accel::{self, Accel, AccelChoice};
use super::cpu::{self, CpuTimes};
use super::domain::Domain;
use super::domains::run_dir_error;
use super::migration;
use super::process;
use super::qmp::{
    CapabilityState, Cont, EventKind, HumanMonitorCommand, Migrate, MigrateCancel,
    MigrateSetCapabilities, MigrationStatus, QueryKvm, QueryMigrate, RunStatus, Stop,
    SystemPowerdown,
};
use super::run_dir::RunDir;
use crate::hypervisor::{
    DomainInfo, HostInfo, HostSample, Hypervisor, HypervisorError, IncomingEndpoint,
    MigrationParams, MigrationProgress,
};

/// The program the driver runs unless configured otherwise.
pub const DEFAULT_BINARY: &str = "qemu-system-x86_64";

/// How long QEMU may take to exit after the guest powered off.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// How long `migrate_out` waits for a previous migration's `cancelling` to end.
const CANCELLING_WAIT: Duration = Duration::from_secs(5);

/// How the driver is set up on one node.
#[derive(Clone, Debug)]
pub struct QemuConfig {
    /// Where run directories live, such as `/var/lib/herd/qemu` (created if missing).
    pub state_dir: PathBuf,
    /// The node's address that incoming migrations listen on.
    pub listen_address: IpAddr,
    /// The QEMU program: a path, or a name looked up in `PATH`.
    pub binary: PathBuf,
    pub accel: AccelChoice,
    /// How long a QMP command may take.
    pub qmp_timeout: Duration,
    /// How long QEMU may take to start (until it daemonizes).
    pub start_timeout: Duration,
}

impl QemuConfig {
    pub fn new(state_dir: impl Into<PathBuf>, listen_address: IpAddr) -> Self {
        Self {
            state_dir: state_dir.into(),
            listen_address,
            binary: PathBuf::from(DEFAULT_BINARY),
            accel: AccelChoice::Auto,
            qmp_timeout: Duration::from_secs(10),
            start_timeout: Duration::from_secs(60),
        }
    }
}

/// The QEMU/KVM driver of one node.
pub struct QemuDriver {
    pub(super) config: QemuConfig,
    pub(super) binary: PathBuf,
    version: String,
    pub(super) accel: Accel,
    pub(super) ticks_per_second: u64,
    pub(super) domains: Mutex<HashMap<String, Arc<Domain>>>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    host_cpu: Mutex<Vec<CpuTimes>>,
}

impl QemuDriver {
    /// Finds QEMU, picks KVM or TCG and prepares the state directory. Fails with
    /// `Unavailable` when QEMU is not installed.
    pub async fn new(mut config: QemuConfig) -> Result<Self, HypervisorError> {
        let binary = find_binary(&config.binary).ok_or_else(|| HypervisorError::Unavailable {
            driver: "qemu",
            reason: format!(
                "{} is not installed or not executable (install it with `apt-get install qemu-system-x86`)",
                config.binary.display()
            ),
        })?;
        let version = qemu_version(&binary).await?;
        std::fs::create_dir_all(&config.state_dir)?;
        // QEMU changes to `/` when it daemonizes: every path it is given must be absolute.
        config.state_dir = std::fs::canonicalize(&config.state_dir)?;
        let accel = accel::detect(&binary, config.accel).await;
        tracing::info!(binary = %binary.display(), %version, accel = %accel.description(), "QEMU driver ready");
        Ok(Self {
            config,
            binary,
            version,
            accel,
            ticks_per_second: process::clock_ticks_per_second(),
            domains: Mutex::new(HashMap::new()),
            locks: Mutex::new(HashMap::new()),
            host_cpu: Mutex::new(Vec::new()),
        })
    }

    /// The accelerator guests use.
    pub fn accel(&self) -> &Accel {
        &self.accel
    }

    /// The (absolute) state directory.
    pub fn state_dir(&self) -> &Path {
        &self.config.state_dir
    }

    /// The serial console log of domain `name`.
    pub fn serial_log(&self, name: &str) -> Result<PathBuf, HypervisorError> {
        Ok(self.run_dir(name)?.serial_log())
    }

    /// QEMU's own run state of `name` (finer than [`crate::hypervisor::DomainState`]:
    /// tells `postmigrate` from `paused`).
    pub async fn qemu_status(&self, name: &str) -> Result<RunStatus, HypervisorError> {
        self.require(name)?.status().await
    }

    /// Whether the QEMU of `name` runs its guest with KVM (QMP `query-kvm`).
    pub async fn kvm_enabled(&self, name: &str) -> Result<bool, HypervisorError> {
        Ok(self.require(name)?.execute(&QueryKvm).await?.enabled)
    }

    /// Reads the 32-bit word at guest physical `address` (HMP `xp /1wx`).
    pub async fn read_guest_u32(&self, name: &str, address: u64) -> Result<u32, HypervisorError> {
        let command = HumanMonitorCommand {
            command_line: format!("xp /1wx {address:#x}"),
        };
        let reply = self.require(name)?.execute(&command).await?;
        super::qmp::parse_xp_word(&reply).ok_or_else(|| HypervisorError::Parse {
            what: format!("the guest memory of {name} at {address:#x}"),
            message: reply.chars().take(200).collect(),
        })
    }

    pub(super) fn run_dir(&self, name: &str) -> Result<RunDir, HypervisorError> {
        RunDir::new(&self.config.state_dir, name).map_err(|e| run_dir_error(name, e))
    }

    /// The lock that serialises operations on `name`.
    pub(super) fn lock(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(locks.entry(name.to_string()).or_default())
    }

    /// What the host offers.
    fn host_info_now(&self) -> Result<HostInfo, HypervisorError> {
        let cpus = cpu::parse_proc_stat(&read_proc("/proc/stat")?).map_err(parse_error)?;
        let memory = cpu::parse_meminfo(&read_proc("/proc/meminfo")?).map_err(parse_error)?;
        Ok(HostInfo {
            cpus: u32::try_from(cpus.len()).unwrap_or(u32::MAX),
            memory_total_mib: memory.total_kib / 1024,
            memory_free_mib: memory.available_kib / 1024,
            description: format!("QEMU {} with {}", self.version, self.accel.description()),
        })
    }

    /// Per-CPU load since the previous call (since boot on the first), and free memory.
    fn host_sample_now(&self) -> Result<(Vec<f64>, u64), HypervisorError> {
        let now = cpu::parse_proc_stat(&read_proc("/proc/stat")?).map_err(parse_error)?;
        let memory = cpu::parse_meminfo(&read_proc("/proc/meminfo")?).map_err(parse_error)?;
        let mut previous = self.host_cpu.lock().unwrap_or_else(|e| e.into_inner());
        let load = cpu::cpu_load(&previous, &now);
        *previous = now;
        Ok((load, memory.available_kib / 1024))
    }

    /// Refuses specs that the API would refuse (the driver treats its input as hostile too).
    fn validate(spec: &DomainSpec, operation: &'static str) -> Result<(), HypervisorError> {
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
            format!("invalid domain: {reason}"),
        ))
    }

    /// Presses the ACPI button and waits for the guest to power off (or for `timeout`).
    async fn power_down(&self, domain: &Domain, timeout: Duration) {
        let Ok(client) = domain.qmp().await else {
            return;
        };
        let mut events = client.subscribe();
        if let Err(e) = client.execute(&SystemPowerdown).await {
            tracing::debug!(domain = domain.name(), "system_powerdown failed: {e}");
            return;
        }
        let shut_down = async {
            loop {
                match events.recv().await {
                    Ok(event) if matches!(event.kind(), EventKind::Shutdown { .. }) => break,
                    Ok(_) | Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => break,
                }
            }
        };
        tokio::select! {
            () = shut_down => {}
            () = client.closed() => {}
            () = tokio::time::sleep(timeout) => {
                tracing::info!(domain = domain.name(), "no power-off within {timeout:?}; destroying");
                return;
            }
        }
        process::wait_gone(domain.pid, EXIT_GRACE).await;
    }

    /// Starts QEMU waiting for a migration on a free port of the listen address.
    async fn start_incoming(&self, spec: &DomainSpec) -> Result<IncomingEndpoint, HypervisorError> {
        let address = self.config.listen_address;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let uri = migration::endpoint_uri(address, migration::free_port(address)?);
            match self.start(spec, false, Some(uri.clone())).await {
                Ok(_) => return Ok(IncomingEndpoint { uri }),
                // Another process took the port between our probe and QEMU's bind.
                Err(HypervisorError::Command { message, .. })
                    if attempt < 3 && message.contains("in use") => {}
                Err(error) => return Err(error),
            }
        }
    }
}

/// The endpoint of a domain that already waits for this VM's migration.
fn existing_endpoint(
    domain: &Domain,
    spec: &DomainSpec,
) -> Result<IncomingEndpoint, HypervisorError> {
    const OPERATION: &str = "receive a migration";
    if domain.metadata.uid != spec.uid {
        let reason = format!(
            "a domain of that name with uid {:?} runs here",
            domain.metadata.uid
        );
        return Err(refused(&spec.name, OPERATION, reason));
    }
    match &domain.metadata.incoming {
        Some(uri) => Ok(IncomingEndpoint { uri: uri.clone() }),
        None => Err(refused(
            &spec.name,
            OPERATION,
            "it already runs on this node",
        )),
    }
}

impl Hypervisor for QemuDriver {
    fn driver(&self) -> &'static str {
        "qemu"
    }

    async fn host_info(&self) -> Result<HostInfo, HypervisorError> {
        self.host_info_now()
    }

    async fn list(&self) -> Result<Vec<DomainInfo>, HypervisorError> {
        self.domain_infos(false).await
    }

    async fn sample(&self) -> Result<HostSample, HypervisorError> {
        let (cpu_load, memory_free_mib) = self.host_sample_now()?;
        let domains = self.domain_infos(true).await?;
        Ok(HostSample {
            cpu_load,
            memory_free_mib,
            domains,
        })
    }

    async fn create(&self, spec: &DomainSpec, paused: bool) -> Result<DomainInfo, HypervisorError> {
        Self::validate(spec, "start")?;
        let lock = self.lock(&spec.name);
        let _guard = lock.lock().await;
        if let Some(domain) = self.find(&spec.name)? {
            if domain.metadata.uid == spec.uid {
                return Ok(domain.info().await);
            }
            let reason = format!(
                "a domain of that name with uid {:?} runs here; destroy it first",
                domain.metadata.uid
            );
            return Err(refused(&spec.name, "start", reason));
        }
        Ok(self.start(spec, paused, None).await?.info().await)
    }

    async fn pause(&self, name: &str) -> Result<(), HypervisorError> {
        self.require(name)?.execute(&Stop).await?;
        Ok(())
    }

    async fn unpause(&self, name: &str) -> Result<(), HypervisorError> {
        self.require(name)?.execute(&Cont).await?;
        Ok(())
    }

    async fn shutdown(&self, name: &str, timeout: Duration) -> Result<(), HypervisorError> {
        let lock = self.lock(name);
        let _guard = lock.lock().await;
        let Some(domain) = self.find(name)? else {
            return self.reap(name);
        };
        self.power_down(&domain, timeout).await;
        self.end(&domain).await
    }

    async fn destroy(&self, name: &str) -> Result<(), HypervisorError> {
        let lock = self.lock(name);
        let _guard = lock.lock().await;
        match self.find(name)? {
            Some(domain) => self.end(&domain).await,
            None => self.reap(name),
        }
    }

    async fn prepare_incoming(
        &self,
        spec: &DomainSpec,
    ) -> Result<IncomingEndpoint, HypervisorError> {
        Self::validate(spec, "receive a migration")?;
        if let Some(reason) = migration::refusal(spec) {
            return Err(refused(&spec.name, "receive a migration", reason));
        }
        let lock = self.lock(&spec.name);
        let _guard = lock.lock().await;
        match self.find(&spec.name)? {
            Some(domain) => existing_endpoint(&domain, spec),
            None => self.start_incoming(spec).await,
        }
    }

    async fn migrate_out(
        &self,
        name: &str,
        endpoint: &IncomingEndpoint,
        params: &MigrationParams,
    ) -> Result<(), HypervisorError> {
        let domain = self.require(name)?;
        if let Some(reason) = migration::refusal(&domain.metadata.spec) {
            return Err(refused(name, "migrate", reason));
        }
        migration::check_endpoint(&endpoint.uri)
            .map_err(|reason| refused(name, "migrate", reason))?;
        // A migration cancelled a moment ago may still be `cancelling`: it is not this one, and
        // `migrate` would be refused until it ends.
        let mut status = domain.execute(&QueryMigrate).await?.status;
        let deadline = Instant::now() + CANCELLING_WAIT;
        while status == Some(MigrationStatus::Cancelling) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            status = domain.execute(&QueryMigrate).await?.status;
        }
        if status == Some(MigrationStatus::Cancelling) {
            return Err(refused(
                name,
                "migrate",
                "the previous migration is still being cancelled; the next pass tries again",
            ));
        }
        // Idempotent: a migration already under way (or done) is not started twice.
        if migration::is_started(status) {
            return Ok(());
        }
        let events = CapabilityState {
            capability: "events".into(),
            state: true,
        };
        domain
            .execute(&MigrateSetCapabilities {
                capabilities: vec![events],
            })
            .await?;
        domain.execute(&migration::parameters(params)).await?;
        domain
            .execute(&Migrate {
                uri: endpoint.uri.clone(),
            })
            .await?;
        Ok(())
    }

    async fn migration_progress(&self, name: &str) -> Result<MigrationProgress, HypervisorError> {
        let info = self.require(name)?.execute(&QueryMigrate).await?;
        migration::progress(&info).ok_or_else(|| {
            refused(
                name,
                "report migration progress",
                "no migration was started",
            )
        })
    }

    async fn cancel_migration(&self, name: &str) -> Result<(), HypervisorError> {
        self.require(name)?.execute(&MigrateCancel).await?;
        Ok(())
    }
}

fn find_binary(binary: &Path) -> Option<PathBuf> {
    let executable = |path: &Path| {
        use std::os::unix::fs::PermissionsExt;
        path.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if binary.components().count() > 1 {
        return executable(binary).then(|| binary.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(binary))
        .find(|candidate| executable(candidate))
}

/// `7.2.22` from `QEMU emulator version 7.2.22 (Debian ...)`.
async fn qemu_version(binary: &Path) -> Result<String, HypervisorError> {
    let output = tokio::process::Command::new(binary)
        .arg("--version")
        .output()
        .await?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text
        .lines()
        .next()
        .and_then(|line| line.split("version ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .filter(|v| v.len() <= 32 && v.bytes().all(|b| b.is_ascii_digit() || b == b'.'));
    match version {
        Some(version) if output.status.success() => Ok(version.to_string()),
        _ => Err(HypervisorError::Unavailable {
            driver: "qemu",
            reason: format!(
                "{} --version did not print a QEMU version",
                binary.display()
            ),
        }),
    }
}

fn read_proc(path: &str) -> Result<String, HypervisorError> {
    Ok(std::fs::read_to_string(path)?)
}

fn parse_error(error: cpu::ProcParseError) -> HypervisorError {
    HypervisorError::Parse {
        what: error.file.to_string(),
        message: error.message,
    }
}

pub(super) fn refused(
    name: &str,
    operation: &'static str,
    reason: impl ToString,
) -> HypervisorError {
    HypervisorError::Refused {
        name: name.to_string(),
        operation,
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binaries_are_found_in_path_or_refused() {
        assert!(find_binary(Path::new("sh")).is_some());
        assert!(find_binary(Path::new("/bin/sh")).is_some());
        assert!(find_binary(Path::new("herd-no-such-qemu")).is_none());
        assert!(find_binary(Path::new("/etc/passwd")).is_none());
    }
}
