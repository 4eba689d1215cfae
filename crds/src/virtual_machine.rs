//! `VirtualMachine`: a guest that should run somewhere in the fleet.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::names;
use crate::object::{Object, Spec};
use crate::selector::LabelSelector;
use crate::validation::{FieldErrors, FieldPath, Validate};

/// A virtual machine object.
pub type VirtualMachine = Object<VirtualMachineSpec>;

/// Smallest memory a guest may be given.
pub const MIN_MEMORY_MIB: u64 = 16;
/// Largest vCPU count (QEMU's limit for the q35 machine without x2APIC tricks).
pub const MAX_VCPUS: u32 = 288;

/// What a person wants of a VM.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualMachineSpec {
    /// Running, Paused or Stopped; defaults to Running.
    #[serde(default)]
    pub run_state: RunState,
    /// Number of virtual CPUs; defaults to 1.
    #[serde(default = "default_vcpus")]
    pub vcpus: u32,
    /// Guest memory in MiB (at least 16).
    #[serde(rename = "memoryMiB")]
    pub memory_mib: u64,
    #[serde(default)]
    pub boot: Boot,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<Disk>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<Network>,
    /// Pins the VM to this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// The VM runs only on nodes whose labels include all of these.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Affinity::is_empty")]
    pub affinity: Affinity,
    /// Higher runs first when capacity is short.
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub migration: MigrationPolicy,
}

fn default_vcpus() -> u32 {
    1
}

/// The power state a person asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RunState {
    #[default]
    Running,
    Paused,
    Stopped,
}

/// How the guest boots: a kernel given directly (Xen PV style, or QEMU `-kernel`), or a disk.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Boot {
    /// Absolute path, on the node, of the kernel to boot directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// Absolute path, on the node, of the initial ramdisk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramdisk: Option<String>,
    /// The root device passed to the kernel, such as `/dev/xvda1 ro` (the seed's `root`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// Extra kernel command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    /// Name of the disk (in `disks`) to boot from when no kernel is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<String>,
}

/// A disk of the guest: a `Volume` (shared, so the VM can migrate) or a path on the node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Disk {
    /// Name of this disk within the VM.
    pub name: String,
    /// Name of the `Volume` object that backs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    /// Absolute path of an image or device on the node (local only: the VM cannot migrate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Device name in the guest, such as `xvda` or `vda`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default)]
    pub read_only: bool,
}

/// A network interface of the guest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Network {
    pub name: String,
    /// Host bridge to attach to, such as `xenbr0`.
    pub bridge: String,
    /// MAC address; generated from the VM's uid when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// Placement rules relative to other VMs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Affinity {
    /// Run on a node that already runs VMs matching each of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vm_affinity: Vec<LabelSelector>,
    /// Never share a node with VMs matching any of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vm_anti_affinity: Vec<LabelSelector>,
}

impl Affinity {
    pub fn is_empty(&self) -> bool {
        self.vm_affinity.is_empty() && self.vm_anti_affinity.is_empty()
    }
}

/// Whether and how this VM may be live-migrated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MigrationPolicy {
    /// `Allowed` (default): the balancer may move it. `Never`: only a person may.
    #[serde(default)]
    pub balancer: BalancerPermission,
    /// Longest pause the guest accepts at switch-over, in milliseconds (QEMU's default: 300).
    #[serde(default = "default_max_downtime_ms", rename = "maxDowntimeMs")]
    pub max_downtime_ms: u32,
    /// Bandwidth cap in MiB/s; absent means the cluster policy's.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "bandwidthMiBps"
    )]
    pub bandwidth_mibps: Option<f64>,
}

fn default_max_downtime_ms() -> u32 {
    300
}

impl Default for MigrationPolicy {
    fn default() -> Self {
        Self {
            balancer: BalancerPermission::default(),
            max_downtime_ms: default_max_downtime_ms(),
            bandwidth_mibps: None,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BalancerPermission {
    #[default]
    Allowed,
    Never,
}

/// What is observed of a VM.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualMachineStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_id: Option<String>,
    #[serde(default)]
    pub state: VmState,
    /// CPU use of the whole VM, in percent of one physical CPU.
    #[serde(default)]
    pub cpu_percent: f64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vcpus: Vec<VcpuStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub observed_generation: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The observed state of a VM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum VmState {
    #[default]
    Pending,
    Scheduled,
    Starting,
    Running,
    Paused,
    ShuttingDown,
    Stopped,
    Migrating,
    Failed,
    Unknown,
}

/// One virtual CPU: where it runs and how busy it is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VcpuStatus {
    pub vcpu: u32,
    /// Physical CPU it ran on last, when the hypervisor says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u32>,
    pub percent: f64,
    /// Share of one CPU it spent runnable but waiting for a CPU (run-queue delay), in percent;
    /// absent when the hypervisor does not measure it. Use plus wait is what the vCPU wanted.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub wait_percent: f64,
}

fn is_zero(value: &f64) -> bool {
    *value == 0.0
}

impl Spec for VirtualMachineSpec {
    const KIND: &'static str = "VirtualMachine";
    const PLURAL: &'static str = "virtualmachines";
    type Status = VirtualMachineStatus;
}

/// Pushes an error unless `value` is an absolute path without control characters.
pub(crate) fn check_host_path(value: &str, path: FieldPath, errors: &mut FieldErrors) {
    if !value.starts_with('/') || value.chars().any(char::is_control) || value.contains("/../") {
        errors.push(
            path,
            format!("{value:?} must be an absolute path without control characters or '..'"),
        );
    }
}

/// Pushes an error if `value` holds control characters (they would break config files).
pub(crate) fn check_text(value: &str, path: FieldPath, errors: &mut FieldErrors) {
    if value.chars().any(char::is_control) {
        errors.push(
            path,
            "must not contain control characters (newlines, tabs, NUL)",
        );
    }
}

impl Validate for VirtualMachineSpec {
    fn validate_into(&self, path: &FieldPath, errors: &mut FieldErrors) {
        errors.at_least(self.vcpus, 1, path.child("vcpus"));
        errors.at_most(self.vcpus, MAX_VCPUS, path.child("vcpus"));
        errors.at_least(self.memory_mib, MIN_MEMORY_MIB, path.child("memoryMiB"));
        errors.at_most(self.memory_mib, 16 * 1024 * 1024, path.child("memoryMiB"));
        self.validate_boot(&path.child("boot"), errors);
        self.validate_disks(&path.child("disks"), errors);
        validate_networks(&self.networks, &path.child("networks"), errors);
        if let Some(node) = &self.node_name {
            names::check_reference(node, &path.child("nodeName"), errors);
        }
        for (key, value) in &self.node_selector {
            let at = path.child("nodeSelector").key(key);
            names::check_label_key(key, &at, errors);
            names::check_label_value(value, &at, errors);
        }
        let affinity = path.child("affinity");
        for (i, s) in self.affinity.vm_affinity.iter().enumerate() {
            s.validate(&affinity.child("vmAffinity").index(i), errors);
        }
        for (i, s) in self.affinity.vm_anti_affinity.iter().enumerate() {
            s.validate(&affinity.child("vmAntiAffinity").index(i), errors);
        }
        errors.at_most(
            self.migration.max_downtime_ms,
            60_000,
            path.child("migration").child("maxDowntimeMs"),
        );
        if let Some(bandwidth) = self.migration.bandwidth_mibps {
            errors.check(
                bandwidth.is_finite() && bandwidth > 0.0,
                path.child("migration").child("bandwidthMiBps"),
                format!(
                    "must be a positive number of MiB/s (got {bandwidth}); leave it out for no cap"
                ),
            );
        }
    }
}

impl VirtualMachineSpec {
    fn validate_boot(&self, path: &FieldPath, errors: &mut FieldErrors) {
        let boot = &self.boot;
        if let Some(kernel) = &boot.kernel {
            check_host_path(kernel, path.child("kernel"), errors);
        }
        if let Some(ramdisk) = &boot.ramdisk {
            check_host_path(ramdisk, path.child("ramdisk"), errors);
            errors.check(
                boot.kernel.is_some(),
                path.child("ramdisk"),
                "needs boot.kernel",
            );
        }
        for (field, value) in [("root", &boot.root), ("cmdline", &boot.cmdline)] {
            if let Some(value) = value {
                check_text(value, path.child(field), errors);
            }
        }
        match (&boot.kernel, &boot.disk) {
            (Some(_), Some(_)) => errors.push(
                path.child("disk"),
                "give either boot.kernel or boot.disk, not both",
            ),
            (None, Some(disk)) if !self.disks.iter().any(|d| &d.name == disk) => errors.push(
                path.child("disk"),
                format!("names no disk in spec.disks (got {disk:?})"),
            ),
            _ => {}
        }
    }

    fn validate_disks(&self, path: &FieldPath, errors: &mut FieldErrors) {
        let mut seen = std::collections::BTreeSet::new();
        for (index, disk) in self.disks.iter().enumerate() {
            let at = path.index(index);
            names::check_object_name(&disk.name, &at.child("name"), errors);
            if !seen.insert(disk.name.as_str()) {
                errors.push(at.child("name"), format!("{:?} is used twice", disk.name));
            }
            match (&disk.volume, &disk.path) {
                (Some(volume), None) => names::check_reference(volume, &at.child("volume"), errors),
                (None, Some(host)) => check_host_path(host, at.child("path"), errors),
                _ => errors.push(at.clone(), "give exactly one of volume or path"),
            }
            if let Some(target) = &disk.target {
                let ok = !target.is_empty()
                    && target.len() <= 16
                    && target
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
                errors.check(
                    ok,
                    at.child("target"),
                    "must be a device name such as xvda or vda",
                );
            }
        }
    }
}

fn validate_networks(networks: &[Network], path: &FieldPath, errors: &mut FieldErrors) {
    for (index, network) in networks.iter().enumerate() {
        let at = path.index(index);
        names::check_object_name(&network.name, &at.child("name"), errors);
        let bridge_ok = !network.bridge.is_empty()
            && network.bridge.len() <= 15
            && network
                .bridge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        errors.check(
            bridge_ok,
            at.child("bridge"),
            "must be a Linux interface name: 1-15 letters, digits, '-', '_' or '.'",
        );
        if let Some(mac) = &network.mac {
            errors.check(
                is_mac(mac),
                at.child("mac"),
                "must look like 52:54:00:12:34:56",
            );
        }
    }
}

fn is_mac(value: &str) -> bool {
    let parts: Vec<&str> = value.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> VirtualMachineSpec {
        crate::yaml::from_str("memoryMiB: 512").unwrap()
    }

    #[test]
    fn defaults_fill_what_a_person_leaves_out() {
        let spec = spec();
        assert_eq!(spec.run_state, RunState::Running);
        assert_eq!(spec.vcpus, 1);
        assert_eq!(spec.migration.max_downtime_ms, 300);
        assert_eq!(spec.migration.balancer, BalancerPermission::Allowed);
        assert!(spec.validate().is_empty());
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let mut spec = spec();
        spec.memory_mib = 8;
        spec.vcpus = 0;
        spec.disks.push(Disk {
            name: "Root".into(),
            volume: Some("v".into()),
            path: Some("/x".into()),
            target: None,
            read_only: false,
        });
        spec.boot.disk = Some("nope".into());
        let text: Vec<String> = spec.validate().iter().map(ToString::to_string).collect();
        assert!(
            text.contains(&"vcpus: must be at least 1 (got 0)".to_string()),
            "{text:?}"
        );
        assert!(text.contains(&"memoryMiB: must be at least 16 (got 8)".to_string()));
        assert!(text.iter().any(|t| t.starts_with("disks[0].name:")));
        assert!(text.contains(&"disks[0]: give exactly one of volume or path".to_string()));
        assert!(
            text.iter()
                .any(|t| t.starts_with("boot.disk: names no disk"))
        );
    }

    #[test]
    fn hostile_paths_and_text_are_refused() {
        let mut spec = spec();
        spec.boot.kernel = Some("relative/vmlinuz".into());
        spec.boot.cmdline = Some("console=ttyS0\nextra=1".into());
        spec.networks.push(Network {
            name: "eth0".into(),
            bridge: "br0; rm -rf /".into(),
            mac: Some("zz".into()),
        });
        let paths: Vec<String> = spec.validate().into_iter().map(|e| e.path).collect();
        assert_eq!(
            paths,
            [
                "boot.kernel",
                "boot.cmdline",
                "networks[0].bridge",
                "networks[0].mac"
            ]
        );
    }
}
