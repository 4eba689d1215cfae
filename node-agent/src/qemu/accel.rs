//! KVM or TCG: finds out, once at start-up, whether guests can use KVM on this host.
//!
//! KVM is used only when all of these hold: `/dev/kvm` opens read-write, the
//! `KVM_GET_API_VERSION` ioctl answers 12, `KVM_CREATE_VM` succeeds, and a throw-away QEMU
//! started with `-accel kvm -cpu MODEL -S` reports `query-kvm` enabled and exits cleanly.
//! The last step matters: under nested virtualisation `-cpu host` can abort at vCPU reset
//! (QEMU 7.2 fails to set MSR 0x10a, `IA32_ARCH_CAPABILITIES`), so `host,-arch-capabilities`
//! is tried next. Both keep the host CPU model, which live migration between nested hosts needs.
//! Anything else falls back to TCG, and the reason is kept for `HostInfo.description`.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::qmp::{self, QmpMessage};

/// CPU models tried with KVM, best first.
const KVM_CPU_MODELS: [&str; 2] = ["host", "host,-arch-capabilities"];

/// How long the probing QEMU may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// The accelerator every guest of this driver uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation with this `-cpu` model.
    Kvm { cpu_model: String },
    /// QEMU's emulator; `reason` says why KVM is not used.
    Tcg { reason: String },
}

/// Which accelerator the operator allows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccelChoice {
    /// KVM when it works, else TCG.
    #[default]
    Auto,
    /// Always TCG.
    Tcg,
}

impl Accel {
    /// The QEMU arguments selecting this accelerator.
    pub fn args(&self) -> Vec<String> {
        match self {
            Self::Kvm { cpu_model } => vec![
                "-accel".into(),
                "kvm".into(),
                "-cpu".into(),
                cpu_model.clone(),
            ],
            Self::Tcg { .. } => vec!["-accel".into(), "tcg".into()],
        }
    }

    /// `KVM (-cpu host)` or `TCG (no usable /dev/kvm: ...)`.
    pub fn description(&self) -> String {
        match self {
            Self::Kvm { cpu_model } => format!("KVM (-cpu {cpu_model})"),
            Self::Tcg { reason } => format!("TCG ({reason})"),
        }
    }

    pub fn is_kvm(&self) -> bool {
        matches!(self, Self::Kvm { .. })
    }
}

/// Picks the accelerator for `binary` on this host.
pub async fn detect(binary: &Path, choice: AccelChoice) -> Accel {
    if choice == AccelChoice::Tcg {
        return Accel::Tcg {
            reason: "chosen by configuration".into(),
        };
    }
    if let Err(reason) = kvm_device_works(Path::new("/dev/kvm")) {
        return Accel::Tcg { reason };
    }
    let mut failures = Vec::new();
    for model in KVM_CPU_MODELS {
        match probe_qemu(binary, model).await {
            Ok(()) => {
                return Accel::Kvm {
                    cpu_model: model.to_string(),
                };
            }
            Err(reason) => failures.push(format!("-cpu {model}: {reason}")),
        }
    }
    Accel::Tcg {
        reason: format!("QEMU cannot start a KVM guest: {}", failures.join("; ")),
    }
}

const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
const KVM_CREATE_VM: libc::c_ulong = 0xAE01;
/// The only KVM API version Linux has ever shipped.
const KVM_API_VERSION: libc::c_int = 12;

/// Whether `device` is a KVM device this process can create a VM with.
pub fn kvm_device_works(device: &Path) -> Result<(), String> {
    let kvm = OpenOptions::new()
        .read(true)
        .write(true)
        .open(device)
        .map_err(|e| format!("cannot open {}: {e}", device.display()))?;
    // SAFETY: plain ioctls on a file descriptor we own, without pointer arguments.
    let version = unsafe { libc::ioctl(kvm.as_raw_fd(), KVM_GET_API_VERSION as _, 0) };
    if version != KVM_API_VERSION {
        return Err(format!(
            "{} answers KVM API version {version}, not {KVM_API_VERSION}",
            device.display()
        ));
    }
    // SAFETY: as above; the returned descriptor is closed right away.
    let vm = unsafe { libc::ioctl(kvm.as_raw_fd(), KVM_CREATE_VM as _, 0) };
    if vm < 0 {
        return Err(format!(
            "KVM cannot create a VM: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: `vm` is a descriptor the kernel just gave us and nothing else holds.
    unsafe { libc::close(vm) };
    Ok(())
}

/// Starts QEMU with `-cpu model` and KVM, stopped, and asks it over QMP whether KVM is on.
async fn probe_qemu(binary: &Path, model: &str) -> Result<(), String> {
    let mut child = tokio::process::Command::new(binary)
        .args([
            "-machine", "q35", "-accel", "kvm", "-cpu", model, "-m", "16", "-S",
        ])
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-qmp",
            "stdio",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    let script = "{\"execute\":\"qmp_capabilities\"}\n{\"execute\":\"query-kvm\",\"id\":1}\n{\"execute\":\"quit\"}\n";
    if let Some(mut stdin) = child.stdin.take() {
        // A QEMU that aborts early closes the pipe; its exit status says why.
        let _ = stdin.write_all(script.as_bytes()).await;
    }
    let output = tokio::time::timeout(PROBE_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| format!("no answer within {PROBE_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() || !kvm_enabled_in(&stdout) {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("KVM not enabled");
        return Err(format!("{} ({})", first.trim(), output.status));
    }
    Ok(())
}

/// Whether a QMP transcript holds the reply `{"enabled": true}` to `query-kvm` (id 1).
fn kvm_enabled_in(transcript: &str) -> bool {
    transcript
        .lines()
        .any(|line| match qmp::parse_message(line.as_bytes()) {
            Ok(QmpMessage::Return { id: Some(1), value }) => {
                qmp::decode_reply::<qmp::QueryKvm>(value).is_ok_and(|kvm| kvm.enabled)
            }
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcripts_say_whether_kvm_was_enabled() {
        let enabled = "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, \"package\": \"\"}, \"capabilities\": [\"oob\"]}}\n\
                       {\"return\": {}}\n{\"return\": {\"enabled\": true, \"present\": true}, \"id\": 1}\n";
        assert!(kvm_enabled_in(enabled));
        assert!(!kvm_enabled_in(
            "{\"return\": {\"enabled\": false, \"present\": true}, \"id\": 1}\n"
        ));
        assert!(!kvm_enabled_in(
            "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\n"
        ));
    }

    #[test]
    fn a_missing_or_wrong_device_is_reported() {
        let reason = kvm_device_works(Path::new("/nonexistent/kvm")).unwrap_err();
        assert!(reason.contains("cannot open /nonexistent/kvm"), "{reason}");
        let reason = kvm_device_works(Path::new("/dev/null")).unwrap_err();
        assert!(reason.contains("API version"), "{reason}");
    }

    #[test]
    fn arguments_and_descriptions() {
        let kvm = Accel::Kvm {
            cpu_model: "host".into(),
        };
        assert_eq!(kvm.args(), ["-accel", "kvm", "-cpu", "host"]);
        assert_eq!(kvm.description(), "KVM (-cpu host)");
        let tcg = Accel::Tcg {
            reason: "cannot open /dev/kvm".into(),
        };
        assert_eq!(tcg.args(), ["-accel", "tcg"]);
        assert!(tcg.description().starts_with("TCG"));
    }
}
