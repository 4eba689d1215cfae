//! The `qemu-system-x86_64` argument vector for a domain: a pure function, no shell, no I/O.
//!
//! Every user value goes into its own argv element. Where QEMU parses an element as a
//! comma-separated option list (`-chardev`, `-blockdev`, `-drive`, `-netdev`, `-name`), commas in
//! values are doubled (`,,`), which is QEMU's escape. Values QEMU takes verbatim (`-kernel`,
//! `-append`, `-pidfile`, `-incoming`) are passed as they are. Control characters are refused
//! everywhere, and so is a comma in `-initrd` (QEMU splits multiboot modules on commas).
//!
//! Disks from a path are opened as `qcow2` when the file name ends with `.qcow2` and as `raw`
//! otherwise. The format is never probed from the file's content: a guest that writes a qcow2
//! header into its raw disk must not make QEMU follow a backing file on the host.
//! NBD disks are opened by QEMU itself (`-drive file=nbd://...,format=raw,cache=none`).
//! Every disk is a `virtio-blk-pci` device in the order of `spec.disks` (so `vda`, `vdb`...).

use std::path::Path;

use herd_crds::assignment::{DiskSource, DomainDisk, DomainSpec};
use herd_crds::virtual_machine::Network;

use super::accel::Accel;

/// Why a domain cannot be turned into a command line.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandLineError {
    #[error("{what} contains a control character")]
    ControlCharacter { what: String },
    #[error("boot.ramdisk {0:?} contains a comma, which QEMU would split; rename the file")]
    CommaInRamdisk(String),
    #[error("{0:?} is not an nbd://HOST[:PORT]/EXPORT address")]
    NbdUri(String),
    #[error(
        "network {name:?} has MAC address {mac:?}; use six hex pairs such as 52:54:00:12:34:56"
    )]
    Mac { name: String, mac: String },
    #[error("{0} must be at least 1")]
    Zero(&'static str),
}

/// The files of a domain's run directory that appear on its command line.
#[derive(Clone, Copy, Debug)]
pub struct RunFiles<'a> {
    pub qmp_socket: &'a Path,
    pub pid_file: &'a Path,
    pub serial_log: &'a Path,
}

/// How to start QEMU for one domain.
#[derive(Clone, Copy, Debug)]
pub struct Launch<'a> {
    pub spec: &'a DomainSpec,
    pub files: RunFiles<'a>,
    pub accel: &'a Accel,
    /// Start with the vCPUs stopped (`-S`).
    pub paused: bool,
    /// Wait for an incoming migration at this address, such as `tcp:127.0.0.1:49152`.
    pub incoming: Option<&'a str>,
}

/// The disk formats the driver opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskFormat {
    Raw,
    Qcow2,
}

impl DiskFormat {
    /// `qcow2` when `path` ends with `.qcow2`, else `raw` (never probed from the content).
    pub fn for_path(path: &str) -> Self {
        if path.ends_with(".qcow2") {
            Self::Qcow2
        } else {
            Self::Raw
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Qcow2 => "qcow2",
        }
    }
}

/// Escapes `value` for a QEMU option list: refuses control characters, doubles commas.
pub fn option_value(value: &str, what: &str) -> Result<String, CommandLineError> {
    plain_value(value, what)?;
    Ok(value.replace(',', ",,"))
}

/// Checks a value QEMU takes verbatim.
fn plain_value(value: &str, what: &str) -> Result<String, CommandLineError> {
    if value.chars().any(char::is_control) {
        return Err(CommandLineError::ControlCharacter {
            what: what.to_string(),
        });
    }
    Ok(value.to_string())
}

fn path_value(path: &Path, what: &str) -> Result<String, CommandLineError> {
    option_value(&path.to_string_lossy(), what)
}

/// The `-chardev` argument of the QMP socket; also how an adopted process is recognised in
/// `/proc/<pid>/cmdline`.
/// The operators' QMP socket, `monitor.sock` beside the agent's `qmp.sock`.
pub fn monitor_chardev(qmp_socket: &Path) -> Result<String, CommandLineError> {
    Ok(format!(
        "socket,id=monitor,path={},server=on,wait=off",
        path_value(
            &qmp_socket.with_file_name("monitor.sock"),
            "the monitor socket path"
        )?
    ))
}

pub fn qmp_chardev(qmp_socket: &Path) -> Result<String, CommandLineError> {
    Ok(format!(
        "socket,id=qmp,path={},server=on,wait=off",
        path_value(qmp_socket, "the QMP socket path")?
    ))
}

/// Builds the arguments (without the program name) that start `launch` as a daemon.
pub fn build(launch: &Launch<'_>) -> Result<Vec<String>, CommandLineError> {
    let spec = launch.spec;
    if spec.vcpus == 0 {
        return Err(CommandLineError::Zero("vcpus"));
    }
    if spec.memory_mib == 0 {
        return Err(CommandLineError::Zero("memoryMiB"));
    }
    let mut args: Vec<String> = Vec::with_capacity(48);
    let mut push = |items: &[&str]| args.extend(items.iter().map(|s| s.to_string()));
    let name = format!(
        "guest={},debug-threads=on",
        option_value(&spec.name, "the domain name")?
    );
    push(&[
        "-name",
        &name,
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-machine",
        "q35",
    ]);
    args.extend(launch.accel.args());
    args.extend([
        "-m".into(),
        spec.memory_mib.to_string(),
        "-smp".into(),
        spec.vcpus.to_string(),
    ]);
    args.extend(daemon_args(launch.files)?);
    args.extend(boot_args(spec)?);
    for (index, disk) in spec.disks.iter().enumerate() {
        let boot =
            spec.boot.kernel.is_none() && spec.boot.disk.as_deref() == Some(disk.name.as_str());
        args.extend(disk_args(index, disk, boot)?);
    }
    for (index, network) in spec.networks.iter().enumerate() {
        args.extend(network_args(index, network, &spec.uid)?);
    }
    if launch.paused {
        args.push("-S".into());
    }
    if let Some(incoming) = launch.incoming {
        args.extend([
            "-incoming".into(),
            plain_value(incoming, "the incoming migration address")?,
        ]);
    }
    Ok(args)
}

/// `-daemonize`, the pid file, the QMP socket and the serial log.
fn daemon_args(files: RunFiles<'_>) -> Result<Vec<String>, CommandLineError> {
    Ok(vec![
        "-daemonize".into(),
        "-pidfile".into(),
        plain_value(&files.pid_file.to_string_lossy(), "the pid file path")?,
        "-chardev".into(),
        qmp_chardev(files.qmp_socket)?,
        "-mon".into(),
        "chardev=qmp,mode=control".into(),
        // A second QMP socket for operators and tests: the agent keeps `qmp.sock` busy.
        "-chardev".into(),
        monitor_chardev(files.qmp_socket)?,
        "-mon".into(),
        "chardev=monitor,mode=control".into(),
        "-chardev".into(),
        format!(
            "file,id=serial0,path={}",
            path_value(files.serial_log, "the serial log path")?
        ),
        "-serial".into(),
        "chardev:serial0".into(),
    ])
}

/// `-kernel`, `-initrd` and `-append` for direct kernel boot (append = `root=ROOT CMDLINE`).
fn boot_args(spec: &DomainSpec) -> Result<Vec<String>, CommandLineError> {
    let boot = &spec.boot;
    let Some(kernel) = &boot.kernel else {
        return Ok(Vec::new());
    };
    let mut args = vec!["-kernel".into(), plain_value(kernel, "boot.kernel")?];
    if let Some(ramdisk) = &boot.ramdisk {
        if ramdisk.contains(',') {
            return Err(CommandLineError::CommaInRamdisk(ramdisk.clone()));
        }
        args.extend(["-initrd".into(), plain_value(ramdisk, "boot.ramdisk")?]);
    }
    let root = boot.root.as_ref().map(|root| format!("root={root}"));
    let append: Vec<&str> = root
        .as_deref()
        .into_iter()
        .chain(boot.cmdline.as_deref())
        .collect();
    if !append.is_empty() {
        args.extend([
            "-append".into(),
            plain_value(&append.join(" "), "the kernel command line")?,
        ]);
    }
    Ok(args)
}

/// A block backend named `disk<index>` and its `virtio-blk-pci` device.
fn disk_args(index: usize, disk: &DomainDisk, boot: bool) -> Result<Vec<String>, CommandLineError> {
    let node = format!("disk{index}");
    let read_only = if disk.read_only { "on" } else { "off" };
    let backend = match &disk.source {
        DiskSource::Path(path) => {
            let format = DiskFormat::for_path(path).as_str();
            let file = option_value(path, &format!("the path of disk {:?}", disk.name))?;
            let blockdev = format!(
                "driver={format},node-name={node},read-only={read_only},file.driver=file,file.filename={file}"
            );
            ["-blockdev".to_string(), blockdev]
        }
        DiskSource::Nbd(uri) => {
            check_nbd_uri(uri)?;
            let file = option_value(uri, &format!("the NBD address of disk {:?}", disk.name))?;
            let drive =
                format!("file={file},format=raw,if=none,id={node},cache=none,readonly={read_only}");
            ["-drive".to_string(), drive]
        }
    };
    let bootindex = if boot { ",bootindex=0" } else { "" };
    let device = format!("virtio-blk-pci,drive={node},id=vd{index}{bootindex}");
    Ok([backend.to_vec(), vec!["-device".into(), device]].concat())
}

/// Accepts `nbd://HOST[:PORT]/EXPORT` with no whitespace or control characters.
fn check_nbd_uri(uri: &str) -> Result<(), CommandLineError> {
    let ok = uri.strip_prefix("nbd://").is_some_and(|rest| {
        !rest.is_empty()
            && !rest.starts_with('/')
            && !rest.chars().any(|c| c.is_whitespace() || c.is_control())
    });
    if ok {
        Ok(())
    } else {
        Err(CommandLineError::NbdUri(uri.to_string()))
    }
}

/// A bridged `virtio-net-pci` NIC (QEMU's bridge helper attaches it; see `/etc/qemu/bridge.conf`).
fn network_args(
    index: usize,
    network: &Network,
    uid: &str,
) -> Result<Vec<String>, CommandLineError> {
    let mac = match &network.mac {
        Some(mac) if is_mac(mac) => mac.to_ascii_lowercase(),
        Some(mac) => {
            return Err(CommandLineError::Mac {
                name: network.name.clone(),
                mac: mac.clone(),
            });
        }
        None => generated_mac(uid, &network.name),
    };
    let bridge = option_value(
        &network.bridge,
        &format!("the bridge of network {:?}", network.name),
    )?;
    Ok(vec![
        "-netdev".into(),
        format!("bridge,id=net{index},br={bridge}"),
        "-device".into(),
        format!("virtio-net-pci,netdev=net{index},mac={mac},id=nic{index}"),
    ])
}

fn is_mac(value: &str) -> bool {
    let parts: Vec<&str> = value.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A stable MAC in QEMU's `52:54:00` range, from the VM's uid and the network's name
/// (FNV-1a, so it is the same on every node and after every restart).
pub fn generated_mac(uid: &str, network: &str) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in uid.bytes().chain([0]).chain(network.bytes()) {
        hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
    }
    let [a, b, c, _] = hash.to_be_bytes();
    format!("52:54:00:{a:02x}:{b:02x}:{c:02x}")
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use herd_crds::virtual_machine::Boot;

    use super::*;

    fn spec() -> DomainSpec {
        DomainSpec {
            name: "small-1".into(),
            uid: "0a-1".into(),
            vcpus: 2,
            memory_mib: 32,
            boot: Boot {
                disk: Some("root".into()),
                ..Boot::default()
            },
            disks: vec![DomainDisk {
                name: "root".into(),
                source: DiskSource::Path("/var/lib/herd/small-1.img".into()),
                target: None,
                read_only: false,
            }],
            networks: Vec::new(),
            migration: Default::default(),
        }
    }

    fn build_with(
        spec: &DomainSpec,
        run: &Path,
        paused: bool,
        incoming: Option<&str>,
    ) -> Result<Vec<String>, CommandLineError> {
        let (qmp, pid, serial) = (
            run.join("qmp.sock"),
            run.join("qemu.pid"),
            run.join("serial.log"),
        );
        let files = RunFiles {
            qmp_socket: &qmp,
            pid_file: &pid,
            serial_log: &serial,
        };
        let accel = Accel::Kvm {
            cpu_model: "host".into(),
        };
        build(&Launch {
            spec,
            files,
            accel: &accel,
            paused,
            incoming,
        })
    }

    /// The value following `flag` (each occurrence).
    fn values<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn a_disk_guest_gets_the_expected_command_line() {
        let args = build_with(&spec(), Path::new("/run/herd/small-1"), false, None).unwrap();
        assert_eq!(values(&args, "-name"), ["guest=small-1,debug-threads=on"]);
        assert_eq!(values(&args, "-accel"), ["kvm"]);
        assert_eq!(values(&args, "-cpu"), ["host"]);
        assert_eq!(values(&args, "-m"), ["32"]);
        assert_eq!(values(&args, "-smp"), ["2"]);
        assert_eq!(values(&args, "-pidfile"), ["/run/herd/small-1/qemu.pid"]);
        assert_eq!(
            values(&args, "-chardev"),
            [
                "socket,id=qmp,path=/run/herd/small-1/qmp.sock,server=on,wait=off",
                "socket,id=monitor,path=/run/herd/small-1/monitor.sock,server=on,wait=off",
                "file,id=serial0,path=/run/herd/small-1/serial.log"
            ]
        );
        assert_eq!(
            values(&args, "-blockdev"),
            [
                "driver=raw,node-name=disk0,read-only=off,file.driver=file,file.filename=/var/lib/herd/small-1.img"
            ]
        );
        assert_eq!(
            values(&args, "-device"),
            ["virtio-blk-pci,drive=disk0,id=vd0,bootindex=0"]
        );
        for flag in ["-daemonize", "-nodefaults", "-no-user-config"] {
            assert!(args.iter().any(|a| a == flag), "{flag}");
        }
        assert!(
            !args
                .iter()
                .any(|a| a == "-S" || a == "-incoming" || a == "-kernel")
        );
    }

    #[test]
    fn paused_incoming_kernel_nbd_and_network_options() {
        let mut spec = spec();
        spec.boot = Boot {
            kernel: Some("/boot/vmlinuz".into()),
            ramdisk: Some("/boot/initrd.img".into()),
            root: Some("/dev/vda1 ro".into()),
            cmdline: Some("console=ttyS0".into()),
            disk: None,
        };
        spec.disks[0].source = DiskSource::Nbd("nbd://10.0.0.1:10809/small-1-disk".into());
        spec.disks[0].read_only = true;
        spec.networks.push(Network {
            name: "eth0".into(),
            bridge: "br0".into(),
            mac: None,
        });
        let args = build_with(&spec, Path::new("/r"), true, Some("tcp:127.0.0.1:49152")).unwrap();
        assert_eq!(values(&args, "-kernel"), ["/boot/vmlinuz"]);
        assert_eq!(values(&args, "-initrd"), ["/boot/initrd.img"]);
        assert_eq!(
            values(&args, "-append"),
            ["root=/dev/vda1 ro console=ttyS0"]
        );
        assert_eq!(
            values(&args, "-drive"),
            [
                "file=nbd://10.0.0.1:10809/small-1-disk,format=raw,if=none,id=disk0,cache=none,readonly=on"
            ]
        );
        let mac = generated_mac("0a-1", "eth0");
        assert_eq!(
            values(&args, "-device"),
            [
                "virtio-blk-pci,drive=disk0,id=vd0".to_string(),
                format!("virtio-net-pci,netdev=net0,mac={mac},id=nic0")
            ]
        );
        assert_eq!(values(&args, "-netdev"), ["bridge,id=net0,br=br0"]);
        assert!(args.iter().any(|a| a == "-S"));
        assert_eq!(values(&args, "-incoming"), ["tcp:127.0.0.1:49152"]);
    }

    #[test]
    fn hostile_values_stay_inside_their_option() {
        let mut spec = spec();
        spec.name = "evil,file=/etc/shadow".into();
        spec.disks[0].source =
            DiskSource::Path("/img/a,driver=host_device,filename=/dev/sda.qcow2".into());
        spec.networks.push(Network {
            name: "n".into(),
            bridge: "br0,script=/tmp/x".into(),
            mac: None,
        });
        spec.boot.cmdline = Some("console=ttyS0; rm -rf / $(reboot)".into());
        let run = PathBuf::from("/state/we,ird");
        let args = build_with(&spec, &run, false, None).unwrap();
        assert_eq!(
            values(&args, "-name"),
            ["guest=evil,,file=/etc/shadow,debug-threads=on"]
        );
        assert_eq!(
            values(&args, "-blockdev"),
            [
                "driver=qcow2,node-name=disk0,read-only=off,file.driver=file,file.filename=/img/a,,driver=host_device,,filename=/dev/sda.qcow2"
            ]
        );
        assert_eq!(
            values(&args, "-netdev"),
            ["bridge,id=net0,br=br0,,script=/tmp/x"]
        );
        assert_eq!(
            values(&args, "-chardev")[0],
            "socket,id=qmp,path=/state/we,,ird/qmp.sock,server=on,wait=off"
        );
        assert_eq!(values(&args, "-pidfile"), ["/state/we,ird/qemu.pid"]);
        // The kernel is not set, so the shell-looking cmdline is not even used; with a kernel it
        // is one argv element that no shell ever sees.
        spec.boot.kernel = Some("/boot/vmlinuz".into());
        spec.boot.disk = None;
        let args = build_with(&spec, &run, false, None).unwrap();
        assert_eq!(
            values(&args, "-append"),
            ["console=ttyS0; rm -rf / $(reboot)"]
        );
    }

    #[test]
    fn values_that_cannot_be_escaped_are_refused() {
        let mut spec = spec();
        spec.name = "a\nb".into();
        assert!(matches!(
            build_with(&spec, Path::new("/r"), false, None),
            Err(CommandLineError::ControlCharacter { .. })
        ));
        let mut spec = self::spec();
        spec.boot = Boot {
            kernel: Some("/k".into()),
            ramdisk: Some("/i,rd".into()),
            ..Boot::default()
        };
        assert!(matches!(
            build_with(&spec, Path::new("/r"), false, None),
            Err(CommandLineError::CommaInRamdisk(_))
        ));
        let mut spec = self::spec();
        spec.disks[0].source = DiskSource::Nbd("nbd://h/x y".into());
        assert!(matches!(
            build_with(&spec, Path::new("/r"), false, None),
            Err(CommandLineError::NbdUri(_))
        ));
        let mut spec = self::spec();
        spec.networks.push(Network {
            name: "n".into(),
            bridge: "br0".into(),
            mac: Some("zz".into()),
        });
        assert!(matches!(
            build_with(&spec, Path::new("/r"), false, None),
            Err(CommandLineError::Mac { .. })
        ));
        assert!(build_with(&self::spec(), Path::new("/r"), false, Some("tcp:h:1\0")).is_err());
    }

    #[test]
    fn formats_follow_the_file_name_and_macs_are_stable() {
        assert_eq!(DiskFormat::for_path("/a/b.qcow2"), DiskFormat::Qcow2);
        assert_eq!(DiskFormat::for_path("/a/b.img"), DiskFormat::Raw);
        assert_eq!(DiskFormat::for_path("/a/qcow2"), DiskFormat::Raw);
        let mac = generated_mac("uid-1", "eth0");
        assert_eq!(mac, generated_mac("uid-1", "eth0"));
        assert_ne!(mac, generated_mac("uid-1", "eth1"));
        assert!(mac.starts_with("52:54:00:") && is_mac(&mac));
    }
}
