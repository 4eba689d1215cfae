//! The `Hypervisor` trait: what the agent needs of QEMU/KVM, Xen `xl` and the simulator.
//!
//! Every method is idempotent where the operation allows: creating a domain that already runs
//! with the same uid, or destroying one that is gone, is not an error. Drivers treat what the
//! hypervisor prints as hostile input and parse it into these types at the edge.

use std::future::Future;
use std::time::Duration;

use herd_crds::assignment::DomainSpec;

/// What the hypervisor can run on this host.
#[derive(Clone, Debug, PartialEq)]
pub struct HostInfo {
    /// Physical CPUs available to guests.
    pub cpus: u32,
    pub memory_total_mib: u64,
    pub memory_free_mib: u64,
    /// Free text shown to operators, such as `KVM` or `TCG` or `Xen 4.17`.
    pub description: String,
}

/// The state of one domain as the hypervisor reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainState {
    Running,
    Paused,
    /// Shut down but not yet reaped.
    Shutdown,
    Crashed,
    /// Waiting for an incoming migration.
    Incoming,
    /// Present but in a state the driver does not model.
    Other,
}

/// One virtual CPU: where it last ran and how busy it was.
#[derive(Clone, Debug, PartialEq)]
pub struct VcpuPlacement {
    pub vcpu: u32,
    /// The physical CPU it last ran on, when the hypervisor says.
    pub cpu: Option<u32>,
    /// Use of this vCPU over the last sample, in percent of one CPU.
    pub percent: f64,
    /// Time it was runnable but waited for a CPU over the last sample, in percent of one CPU
    /// (0 when the driver does not measure it).
    pub wait_percent: f64,
}

/// A domain found on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct DomainInfo {
    pub name: String,
    /// The VM uid the domain was created for, when the driver can tell (adoption after restart).
    pub uid: Option<String>,
    /// Hypervisor-specific id: a pid for QEMU, a domid for Xen.
    pub id: String,
    pub state: DomainState,
    /// CPU use of the whole domain over the last sample, in percent of one CPU.
    pub cpu_percent: f64,
    pub vcpus: Vec<VcpuPlacement>,
}

/// A sample of the host: per-CPU load and every domain.
#[derive(Clone, Debug, PartialEq)]
pub struct HostSample {
    /// Load of each physical CPU over the last sample, in percent.
    pub cpu_load: Vec<f64>,
    pub memory_free_mib: u64,
    pub domains: Vec<DomainInfo>,
}

/// Where a prepared target waits for a migrating domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncomingEndpoint {
    /// Driver-specific address, such as `tcp:10.0.0.2:49152` for QEMU.
    pub uri: String,
}

/// Limits of one outgoing live migration.
#[derive(Clone, Debug, PartialEq)]
pub struct MigrationParams {
    pub max_downtime: Duration,
    /// Bytes per second; `None` for no cap.
    pub bandwidth: Option<u64>,
}

/// Progress of an outgoing migration.
#[derive(Clone, Debug, PartialEq)]
pub enum MigrationProgress {
    Active {
        transferred_bytes: u64,
        remaining_bytes: u64,
    },
    Completed {
        total: Duration,
        downtime: Duration,
        transferred_bytes: u64,
    },
    Failed {
        message: String,
    },
    Cancelled,
}

/// Why a hypervisor operation failed, in words an operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum HypervisorError {
    #[error("the {driver} driver cannot run here: {reason}")]
    Unavailable {
        driver: &'static str,
        reason: String,
    },
    #[error("domain {0:?} not found")]
    NotFound(String),
    #[error("domain {name:?} cannot {operation}: {reason}")]
    Refused {
        name: String,
        operation: &'static str,
        reason: String,
    },
    #[error("{command} failed: {message}")]
    Command { command: String, message: String },
    #[error("cannot parse {what}: {message}")]
    Parse { what: String, message: String },
    #[error("{operation} timed out after {after:?}")]
    Timeout { operation: String, after: Duration },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A hypervisor on one host. Implemented by the `qemu`, `xl` and `sim` drivers.
pub trait Hypervisor: Send + Sync + 'static {
    /// `qemu`, `xl` or `sim`: reported in the node status.
    fn driver(&self) -> &'static str;

    /// What the host offers.
    fn host_info(&self) -> impl Future<Output = Result<HostInfo, HypervisorError>> + Send;

    /// Every domain this driver manages on the host (including ones started before a restart).
    fn list(&self) -> impl Future<Output = Result<Vec<DomainInfo>, HypervisorError>> + Send;

    /// Per-CPU load and per-domain use since the previous sample.
    fn sample(&self) -> impl Future<Output = Result<HostSample, HypervisorError>> + Send;

    /// Starts a domain; `paused` starts it with its vCPUs stopped. A domain of the same name
    /// and uid already running is returned as it is.
    fn create(
        &self,
        spec: &DomainSpec,
        paused: bool,
    ) -> impl Future<Output = Result<DomainInfo, HypervisorError>> + Send;

    fn pause(&self, name: &str) -> impl Future<Output = Result<(), HypervisorError>> + Send;

    fn unpause(&self, name: &str) -> impl Future<Output = Result<(), HypervisorError>> + Send;

    /// Asks the guest to power down (ACPI); destroys it if it is still there after `timeout`.
    fn shutdown(
        &self,
        name: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), HypervisorError>> + Send;

    /// Ends the domain at once. Succeeds if it is already gone.
    fn destroy(&self, name: &str) -> impl Future<Output = Result<(), HypervisorError>> + Send;

    /// Starts a domain that waits for an incoming live migration; returns where to send it.
    fn prepare_incoming(
        &self,
        spec: &DomainSpec,
    ) -> impl Future<Output = Result<IncomingEndpoint, HypervisorError>> + Send;

    /// Starts sending domain `name` to `endpoint`.
    fn migrate_out(
        &self,
        name: &str,
        endpoint: &IncomingEndpoint,
        params: &MigrationParams,
    ) -> impl Future<Output = Result<(), HypervisorError>> + Send;

    /// How the outgoing migration of `name` is going.
    fn migration_progress(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<MigrationProgress, HypervisorError>> + Send;

    /// Cancels the outgoing migration of `name`; the domain keeps running here.
    fn cancel_migration(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<(), HypervisorError>> + Send;
}
