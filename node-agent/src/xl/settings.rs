//! The xl driver's configuration: where things are on the host, the rendering choices, the
//! migration transport and the timeouts. Every path is injectable so tests can run the driver
//! against a directory of fakes.

use std::path::PathBuf;
use std::time::Duration;

use super::config::{GuestType, LifecycleAction, RenderOptions};
use super::nbd::NbdPaths;

/// Everything the xl driver needs to know about its host.
#[derive(Clone, Debug, PartialEq)]
pub struct XlSettings {
    /// Where `xl` and `nbd-client` are looked up; `None` for this process's `PATH`.
    pub search_path: Option<Vec<PathBuf>>,
    /// Present only on a Xen host (xenfs); the driver refuses to start without it.
    pub proc_xen: PathBuf,
    /// Where the rendered `<vm>.cfg` files are kept.
    pub state_dir: PathBuf,
    /// Where the per-VM links to NBD devices are kept. Must be the same path on every Xen node:
    /// the configs name these links and travel with a migrating domain.
    pub disk_link_dir: PathBuf,
    /// `/sys/block`, to find free NBD devices.
    pub sys_block: PathBuf,
    /// `/dev`, where NBD devices are.
    pub dev_dir: PathBuf,
    pub render: RenderOptions,
    /// The command xl runs to reach a migration target (`xl migrate -s`).
    pub migration_transport: String,
    /// This node's address as other nodes' transports reach it; `None` uses `xl info`'s host name.
    pub migration_host: Option<String>,
    /// Limit of quick commands (`list`, `pause`, `destroy`, `nbd-client` …).
    pub command_timeout: Duration,
    /// Limit of `xl create` (it builds the domain and runs hotplug scripts).
    pub create_timeout: Duration,
    /// Limit of one `xl migrate`.
    pub migrate_timeout: Duration,
    /// How long a cancel waits for a killed `xl migrate` to be reaped.
    pub cancel_wait: Duration,
}

impl Default for XlSettings {
    fn default() -> Self {
        Self {
            search_path: None,
            proc_xen: PathBuf::from("/proc/xen"),
            state_dir: PathBuf::from("/run/herd-agent/xl"),
            disk_link_dir: PathBuf::from("/run/herd-agent/xl-disks"),
            sys_block: PathBuf::from("/sys/block"),
            dev_dir: PathBuf::from("/dev"),
            render: RenderOptions {
                kernel_guest_type: GuestType::Pv,
                on_poweroff: LifecycleAction::Destroy,
                on_reboot: LifecycleAction::Restart,
                on_crash: LifecycleAction::Destroy,
            },
            migration_transport: "ssh".to_string(),
            migration_host: None,
            command_timeout: Duration::from_secs(30),
            create_timeout: Duration::from_secs(120),
            migrate_timeout: Duration::from_secs(3600),
            cancel_wait: Duration::from_secs(30),
        }
    }
}

impl XlSettings {
    pub fn nbd_paths(&self) -> NbdPaths {
        NbdPaths {
            sys_block: self.sys_block.clone(),
            dev_dir: self.dev_dir.clone(),
            link_dir: self.disk_link_dir.clone(),
        }
    }

    /// The rendered config of VM `name`.
    pub fn config_path(&self, name: &str) -> PathBuf {
        self.state_dir.join(format!("{name}.cfg"))
    }
}
