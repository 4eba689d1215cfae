//! Renders a domain's `xl.cfg` from a [`DomainSpec`]: a pure function, no I/O.
//!
//! The seed's six parameters (`kernel`, `disk`, `memory`, `name`, `vif` with `bridge=`, `root`)
//! and what a real deployment needs besides: `uuid`, `type`, `vcpus`, `ramdisk`, `extra`, the
//! lifecycle actions and a stable `vif` MAC. Disks use the keyword syntax of
//! `xl-disk-configuration(5)` with `target=` last, as that page requires.
//!
//! Values are never escaped, only refused: a string holding `"`, `\` or a control character,
//! or a disk/vif field holding `,`, `=`, a quote or white space (which would break the
//! `key=value, …` list), is an error and nothing is written. Names must be DNS labels that xl
//! cannot mistake for a domain id.

use herd_crds::assignment::{DiskSource, DomainSpec};
use herd_crds::names::is_dns_label;
use herd_crds::virtual_machine::Network;

use super::parse;

/// Most disks one domain may have here (`xvda` … `xvdz`).
pub const MAX_DISKS: usize = 26;
/// Smallest memory xl is asked to give a guest.
pub const MIN_MEMORY_MIB: u64 = 16;
/// The MAC prefix (OUI) assigned to Xen; libxl uses it for the MACs it makes up.
const XEN_OUI: &str = "00:16:3e";
/// Suffixes `xl migrate` gives a domain while it moves; a herd name must never end in one.
const MIGRATION_SUFFIXES: [&str; 2] = ["--incoming", "--migratedaway"];

/// The kind of Xen guest (`type =` in xl.cfg).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GuestType {
    /// Paravirtualised: the guest kernel is given by the host (the seed's way).
    #[default]
    Pv,
    /// PVH: a PV-style kernel in a hardware-virtualised container.
    Pvh,
    /// Fully virtualised: boots from its disk through emulated firmware.
    Hvm,
}

impl GuestType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pv => "pv",
            Self::Pvh => "pvh",
            Self::Hvm => "hvm",
        }
    }
}

/// What xl does when the guest powers off, reboots or crashes (xl.cfg's `on_*` actions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LifecycleAction {
    Destroy,
    Restart,
    RenameRestart,
    Preserve,
    CoredumpDestroy,
    CoredumpRestart,
    SoftReset,
}

impl LifecycleAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Destroy => "destroy",
            Self::Restart => "restart",
            Self::RenameRestart => "rename-restart",
            Self::Preserve => "preserve",
            Self::CoredumpDestroy => "coredump-destroy",
            Self::CoredumpRestart => "coredump-restart",
            Self::SoftReset => "soft-reset",
        }
    }
}

/// The host-wide choices that shape every rendered config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RenderOptions {
    /// The guest type when a kernel is given (a disk-booted guest is always HVM).
    pub kernel_guest_type: GuestType,
    pub on_poweroff: LifecycleAction,
    pub on_reboot: LifecycleAction,
    pub on_crash: LifecycleAction,
}

impl Default for RenderOptions {
    /// xl's own defaults: destroy on power-off and crash, restart on reboot.
    fn default() -> Self {
        Self {
            kernel_guest_type: GuestType::Pv,
            on_poweroff: LifecycleAction::Destroy,
            on_reboot: LifecycleAction::Restart,
            on_crash: LifecycleAction::Destroy,
        }
    }
}

/// Why a domain cannot be written as an xl.cfg.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("The name {name:?} cannot be used for a Xen domain: {reason}")]
    Name { name: String, reason: &'static str },
    #[error("The uid {0:?} cannot be written into xl.cfg: use 1-64 letters, digits and '-'")]
    Uid(String),
    #[error("{field} {value:?} cannot be written into xl.cfg: it contains {what}")]
    Unsafe {
        field: String,
        value: String,
        what: &'static str,
    },
    #[error("{field} must be between {min} and {max} (got {got})")]
    OutOfRange {
        field: &'static str,
        got: u64,
        min: u64,
        max: u64,
    },
    #[error("There is nothing to boot: give boot.kernel, or a disk to boot from")]
    NothingToBoot,
    #[error("boot.disk {0:?} names no disk of the domain")]
    UnknownBootDisk(String),
    #[error("The guest device {0:?} is used by two disks; give each disk its own target")]
    DuplicateVdev(String),
    #[error("A Xen domain here can have at most {MAX_DISKS} disks (got {0})")]
    TooManyDisks(usize),
    #[error("{field} {value:?} is not a valid {kind}")]
    Invalid {
        field: String,
        value: String,
        kind: &'static str,
    },
    #[error("{targets} disk targets were given for {disks} disks")]
    TargetCount { targets: usize, disks: usize },
}

/// Checks that `name` can name a Xen domain: a DNS label, not all digits (xl would take it for
/// a domain id), and not ending in a suffix `xl migrate` uses.
pub fn check_domain_name(name: &str) -> Result<(), ConfigError> {
    let refuse = |reason| {
        Err(ConfigError::Name {
            name: name.to_string(),
            reason,
        })
    };
    if !is_dns_label(name) {
        return refuse(
            "use at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit",
        );
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return refuse("xl would read an all-digit name as a domain id");
    }
    if MIGRATION_SUFFIXES.iter().any(|s| name.ends_with(s)) {
        return refuse("names ending in --incoming or --migratedaway are used by xl migrate");
    }
    Ok(())
}

/// The line that records the VM uid in a rendered config (read back for adoption).
pub const UID_MARKER: &str = "# herd-uid: ";

/// Renders the xl.cfg of `spec`. `targets[i]` is the host path of `spec.disks[i]` (for an NBD
/// disk, the link the driver keeps to its `/dev/nbdN`).
pub fn render(
    spec: &DomainSpec,
    targets: &[String],
    options: &RenderOptions,
) -> Result<String, ConfigError> {
    check_domain_name(&spec.name)?;
    check_uid(&spec.uid)?;
    check_range(
        "vcpus",
        u64::from(spec.vcpus),
        1,
        u64::from(parse::MAX_CPUS),
    )?;
    check_range(
        "memoryMiB",
        spec.memory_mib,
        MIN_MEMORY_MIB,
        parse::MAX_MEMORY_MIB,
    )?;
    if targets.len() != spec.disks.len() {
        return Err(ConfigError::TargetCount {
            targets: targets.len(),
            disks: spec.disks.len(),
        });
    }
    let mut cfg = Cfg::default();
    cfg.comment(&format!(
        "xl.cfg of VM {}, written by herd-agent (xl driver). Do not edit: herd rewrites it.",
        spec.name
    ));
    cfg.comment(&format!(
        "{}{}",
        UID_MARKER.trim_start_matches("# "),
        spec.uid
    ));
    cfg.string("name", &spec.name)?;
    if parse::is_uuid(&spec.uid) {
        cfg.string("uuid", &spec.uid.to_ascii_lowercase())?;
    }
    let guest_type = boot_lines(&mut cfg, spec, options)?;
    cfg.number("memory", spec.memory_mib);
    cfg.number("vcpus", u64::from(spec.vcpus));
    cfg.list("disk", &disk_specs(spec, targets, guest_type)?);
    cfg.list("vif", &vif_specs(spec)?);
    cfg.string("on_poweroff", options.on_poweroff.as_str())?;
    cfg.string("on_reboot", options.on_reboot.as_str())?;
    cfg.string("on_crash", options.on_crash.as_str())?;
    Ok(cfg.text)
}

/// The guest type and its boot lines: a kernel (PV/PVH/HVM direct boot) or HVM from a disk.
fn boot_lines(
    cfg: &mut Cfg,
    spec: &DomainSpec,
    options: &RenderOptions,
) -> Result<GuestType, ConfigError> {
    let boot = &spec.boot;
    let Some(kernel) = &boot.kernel else {
        if spec.disks.is_empty() {
            return Err(ConfigError::NothingToBoot);
        }
        cfg.string("type", GuestType::Hvm.as_str())?;
        cfg.string("boot", "c")?;
        return Ok(GuestType::Hvm);
    };
    let guest_type = options.kernel_guest_type;
    cfg.string("type", guest_type.as_str())?;
    cfg.path("kernel", kernel)?;
    if let Some(ramdisk) = &boot.ramdisk {
        cfg.path("ramdisk", ramdisk)?;
    }
    if let Some(root) = &boot.root {
        cfg.string("root", root)?;
    }
    if let Some(cmdline) = &boot.cmdline {
        cfg.string("extra", cmdline)?;
    }
    Ok(guest_type)
}

/// One disk spec per disk, the boot disk first for HVM, `target=` last in each.
fn disk_specs(
    spec: &DomainSpec,
    targets: &[String],
    guest_type: GuestType,
) -> Result<Vec<String>, ConfigError> {
    if spec.disks.len() > MAX_DISKS {
        return Err(ConfigError::TooManyDisks(spec.disks.len()));
    }
    let order = disk_order(spec, guest_type)?;
    let vdevs = assign_vdevs(spec, &order)?;
    order
        .iter()
        .zip(vdevs)
        .map(|(&i, vdev)| {
            let disk = &spec.disks[i];
            let field = format!("disks[{i}]");
            let target = spec_field(&format!("{field}.target path"), &targets[i])?;
            if !target.starts_with('/') {
                return Err(ConfigError::Invalid {
                    field,
                    value: target.to_string(),
                    kind: "absolute host path",
                });
            }
            let format = disk_format(&disk.source, target);
            let access = if disk.read_only { "ro" } else { "rw" };
            Ok(format!(
                "format={format}, vdev={vdev}, access={access}, target={target}"
            ))
        })
        .collect()
}

/// Indices of `spec.disks` in the order they are written: for HVM the boot disk comes first.
fn disk_order(spec: &DomainSpec, guest_type: GuestType) -> Result<Vec<usize>, ConfigError> {
    let mut order: Vec<usize> = (0..spec.disks.len()).collect();
    if let Some(boot) = &spec.boot.disk {
        let index = spec
            .disks
            .iter()
            .position(|d| &d.name == boot)
            .ok_or_else(|| ConfigError::UnknownBootDisk(boot.clone()))?;
        if guest_type == GuestType::Hvm {
            order.retain(|i| *i != index);
            order.insert(0, index);
        }
    }
    Ok(order)
}

/// The guest device of each disk in `order`: its own `target`, or the first free `xvdX`.
fn assign_vdevs(spec: &DomainSpec, order: &[usize]) -> Result<Vec<String>, ConfigError> {
    let mut taken: Vec<String> = Vec::new();
    for (i, disk) in spec.disks.iter().enumerate() {
        if let Some(vdev) = &disk.target {
            check_vdev(&format!("disks[{i}].target"), vdev)?;
            if taken.contains(vdev) {
                return Err(ConfigError::DuplicateVdev(vdev.clone()));
            }
            taken.push(vdev.clone());
        }
    }
    let mut free = (b'a'..=b'z')
        .map(|c| format!("xvd{}", c as char))
        .filter(|v| !taken.iter().any(|t| t.starts_with(v.as_str())));
    order
        .iter()
        .map(|&i| match &spec.disks[i].target {
            Some(vdev) => Ok(vdev.clone()),
            None => free
                .next()
                .ok_or(ConfigError::TooManyDisks(spec.disks.len())),
        })
        .collect()
}

/// `xvd`, `sd` or `hd`, then letters, then an optional partition number (`xvda1`, `sdb`).
fn check_vdev(field: &str, vdev: &str) -> Result<(), ConfigError> {
    let rest = ["xvd", "sd", "hd"]
        .iter()
        .find_map(|p| vdev.strip_prefix(p))
        .unwrap_or("");
    let letters = rest.bytes().take_while(u8::is_ascii_lowercase).count();
    let ok =
        vdev.len() <= 16 && letters > 0 && rest.bytes().skip(letters).all(|b| b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            field: field.to_string(),
            value: vdev.to_string(),
            kind: "Xen guest device (xvda, xvda1, sda …)",
        })
    }
}

/// `raw` for NBD devices and plain images; qcow2/qcow/vhd when the file name says so.
fn disk_format(source: &DiskSource, target: &str) -> &'static str {
    if matches!(source, DiskSource::Nbd(_)) {
        return "raw";
    }
    let lower = target.to_ascii_lowercase();
    [(".qcow2", "qcow2"), (".qcow", "qcow"), (".vhd", "vhd")]
        .iter()
        .find(|(ext, _)| lower.ends_with(ext))
        .map_or("raw", |(_, f)| f)
}

/// One vif spec per network: `mac=…, bridge=…`.
fn vif_specs(spec: &DomainSpec) -> Result<Vec<String>, ConfigError> {
    spec.networks
        .iter()
        .enumerate()
        .map(|(i, network)| {
            let mac = vif_mac(i, &spec.uid, network)?;
            let bridge = spec_field(&format!("networks[{i}].bridge"), &network.bridge)?;
            Ok(format!("mac={mac}, bridge={bridge}"))
        })
        .collect()
}

fn vif_mac(index: usize, uid: &str, network: &Network) -> Result<String, ConfigError> {
    let Some(mac) = &network.mac else {
        return Ok(derived_mac(uid, &network.name));
    };
    let octets: Vec<&str> = mac.split(':').collect();
    let shape = octets.len() == 6
        && octets
            .iter()
            .all(|o| o.len() == 2 && o.bytes().all(|b| b.is_ascii_hexdigit()));
    let unicast = shape && u8::from_str_radix(octets[0], 16).is_ok_and(|first| first & 1 == 0);
    if !unicast {
        return Err(ConfigError::Invalid {
            field: format!("networks[{index}].mac"),
            value: mac.clone(),
            kind: "unicast MAC address",
        });
    }
    Ok(mac.to_ascii_lowercase())
}

/// A MAC in Xen's range that stays the same for a VM's network across restarts and migrations:
/// the FNV-1a hash of `uid/network`, with the top bit of the fourth octet clear as libxl does.
pub fn derived_mac(uid: &str, network: &str) -> String {
    let hash = format!("{uid}/{network}")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    let [.., a, b, c] = hash.to_be_bytes();
    format!("{XEN_OUI}:{:02x}:{b:02x}:{c:02x}", a & 0x7f)
}

fn check_uid(uid: &str) -> Result<(), ConfigError> {
    let ok = !uid.is_empty()
        && uid.len() <= 64
        && uid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Uid(uid.to_string()))
    }
}

fn check_range(field: &'static str, got: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&got) {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange {
            field,
            got,
            min,
            max,
        })
    }
}

/// Refuses what would end or escape an xl.cfg double-quoted string.
fn check_string<'a>(field: &str, value: &'a str) -> Result<&'a str, ConfigError> {
    let what = if value.contains('"') {
        "a double quote"
    } else if value.contains('\\') {
        "a backslash"
    } else if value.chars().any(char::is_control) {
        "a control character (newline, tab, NUL …)"
    } else {
        return Ok(value);
    };
    Err(ConfigError::Unsafe {
        field: field.to_string(),
        value: value.to_string(),
        what,
    })
}

/// Refuses what would break a `key=value, …` disk or vif spec.
fn spec_field<'a>(field: &str, value: &'a str) -> Result<&'a str, ConfigError> {
    let value = check_string(field, value)?;
    let what = if value.is_empty() {
        "nothing"
    } else if value.contains(',') {
        "a comma"
    } else if value.contains('=') {
        "an equals sign"
    } else if value.contains('\'') {
        "a single quote"
    } else if value.chars().any(char::is_whitespace) {
        "white space"
    } else {
        return Ok(value);
    };
    Err(ConfigError::Unsafe {
        field: field.to_string(),
        value: value.to_string(),
        what,
    })
}

/// The text being written, one `key = value` line at a time.
#[derive(Default)]
struct Cfg {
    text: String,
}

impl Cfg {
    fn comment(&mut self, text: &str) {
        self.text.push_str("# ");
        self.text.push_str(text);
        self.text.push('\n');
    }

    fn string(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let value = check_string(key, value)?;
        self.text.push_str(&format!("{key} = \"{value}\"\n"));
        Ok(())
    }

    fn path(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        if !value.starts_with('/') {
            return Err(ConfigError::Invalid {
                field: key.to_string(),
                value: value.to_string(),
                kind: "absolute host path",
            });
        }
        self.string(key, value)
    }

    fn number(&mut self, key: &str, value: u64) {
        self.text.push_str(&format!("{key} = {value}\n"));
    }

    /// A list of already-checked spec strings, on one line (no trailing comma).
    fn list(&mut self, key: &str, items: &[String]) {
        if items.is_empty() {
            return;
        }
        let quoted: Vec<String> = items.iter().map(|i| format!("\"{i}\"")).collect();
        self.text
            .push_str(&format!("{key} = [ {} ]\n", quoted.join(", ")));
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
