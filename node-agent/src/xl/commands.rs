//! Every command line the driver runs, built in one place as argv (pure, unit-tested).
//!
//! Domain names reaching here have passed [`check_domain_name`](super::config::check_domain_name)
//! (a DNS label, so never an option such as `-a`, and never all digits, which xl would read as
//! a domain id); hosts have passed [`check_host`](super::migration::check_host).

use std::path::Path;

use super::nbd::NbdExport;
use super::runner::CommandLine;

/// The Xen toolstack.
pub const XL: &str = "xl";
/// The NBD client that attaches exports to `/dev/nbdN`.
pub const NBD_CLIENT: &str = "nbd-client";
/// Xen's `top` (`tools/xentop`, in xen-utils), read only by the optional cross-check.
pub const XENTOP: &str = "xentop";

fn xl<const N: usize>(args: [&str; N]) -> CommandLine {
    CommandLine::new(XL, args)
}

/// `xl list`: the state table.
pub fn list() -> CommandLine {
    xl(["list"])
}

/// `xl list -l`: every domain's configuration as JSON.
pub fn list_long() -> CommandLine {
    xl(["list", "-l"])
}

/// `xl vcpu-list`: every vCPU's placement and CPU time.
pub fn vcpu_list() -> CommandLine {
    xl(["vcpu-list"])
}

/// `xl info`: the host.
pub fn info() -> CommandLine {
    xl(["info"])
}

/// `xentop -b -f -i 2 -d 1`: two tables a second apart, in batch mode (plain text, no curses),
/// with full domain names (`-f`; otherwise cut to 10 characters). The second table's CPU(%) is
/// measured over that second. Takes about one second.
pub fn xentop() -> CommandLine {
    CommandLine::new(XENTOP, ["-b", "-f", "-i", "2", "-d", "1"])
}

/// `xl create [-p] CFG`: starts a domain from its config file, paused when asked.
pub fn create(cfg: &Path, paused: bool) -> CommandLine {
    let cfg = cfg.to_string_lossy();
    if paused {
        xl(["create", "-p", &cfg])
    } else {
        xl(["create", &cfg])
    }
}

pub fn pause(name: &str) -> CommandLine {
    xl(["pause", name])
}

pub fn unpause(name: &str) -> CommandLine {
    xl(["unpause", name])
}

/// `xl shutdown -w -F NAME`: asks the guest to power off and waits until it has; `-F` falls
/// back to an ACPI power button for HVM guests without PV drivers.
pub fn shutdown_wait(name: &str) -> CommandLine {
    xl(["shutdown", "-w", "-F", name])
}

pub fn destroy(name: &str) -> CommandLine {
    xl(["destroy", name])
}

/// `xl migrate -s TRANSPORT NAME HOST`: live-migrates; xl runs
/// `sh -c "exec TRANSPORT HOST xl migrate-receive"` to reach the receiving side.
pub fn migrate(transport: &str, name: &str, host: &str) -> CommandLine {
    xl(["migrate", "-s", transport, name, host])
}

/// `nbd-client HOST PORT DEVICE [-N EXPORT]`: attaches an export to a device.
pub fn nbd_attach(export: &NbdExport, device: &Path) -> CommandLine {
    let port = export.port.to_string();
    let device = device.to_string_lossy();
    let mut args = vec![export.host.as_str(), port.as_str(), device.as_ref()];
    if !export.name.is_empty() {
        args.extend(["-N", export.name.as_str()]);
    }
    CommandLine::new(NBD_CLIENT, args)
}

/// `nbd-client -d DEVICE`: detaches a device.
pub fn nbd_detach(device: &Path) -> CommandLine {
    CommandLine::new(
        NBD_CLIENT,
        ["-d".to_string(), device.to_string_lossy().into_owned()],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(command: CommandLine) -> String {
        command.to_string()
    }

    #[test]
    fn every_xl_command_line() {
        assert_eq!(line(list()), "xl list");
        assert_eq!(line(list_long()), "xl list -l");
        assert_eq!(line(vcpu_list()), "xl vcpu-list");
        assert_eq!(line(info()), "xl info");
        assert_eq!(line(xentop()), "xentop -b -f -i 2 -d 1");
        assert_eq!(xentop().program, XENTOP);
        let cfg = Path::new("/run/herd-agent/xl/small-1.cfg");
        assert_eq!(
            line(create(cfg, false)),
            "xl create /run/herd-agent/xl/small-1.cfg"
        );
        assert_eq!(
            line(create(cfg, true)),
            "xl create -p /run/herd-agent/xl/small-1.cfg"
        );
        assert_eq!(line(pause("small-1")), "xl pause small-1");
        assert_eq!(line(unpause("small-1")), "xl unpause small-1");
        assert_eq!(line(shutdown_wait("small-1")), "xl shutdown -w -F small-1");
        assert_eq!(line(destroy("small-1")), "xl destroy small-1");
        assert_eq!(
            line(migrate("ssh", "small-1", "10.0.0.2")),
            "xl migrate -s ssh small-1 10.0.0.2"
        );
        assert_eq!(
            line(migrate(
                "ssh -i /etc/herd/migrate_key -l root",
                "small-1",
                "xen-b"
            )),
            "xl migrate -s 'ssh -i /etc/herd/migrate_key -l root' small-1 xen-b"
        );
    }

    #[test]
    fn arguments_stay_single_argv_entries() {
        let command = migrate("ssh -l root", "small-1", "xen-b");
        assert_eq!(command.program, "xl");
        assert_eq!(
            command.args,
            ["migrate", "-s", "ssh -l root", "small-1", "xen-b"]
        );
    }

    #[test]
    fn every_nbd_command_line() {
        let export = NbdExport {
            host: "10.0.0.1".into(),
            port: 10809,
            name: "small-1-disk".into(),
        };
        let device = Path::new("/dev/nbd3");
        assert_eq!(
            line(nbd_attach(&export, device)),
            "nbd-client 10.0.0.1 10809 /dev/nbd3 -N small-1-disk"
        );
        let default_export = NbdExport {
            name: String::new(),
            ..export
        };
        assert_eq!(
            line(nbd_attach(&default_export, device)),
            "nbd-client 10.0.0.1 10809 /dev/nbd3"
        );
        assert_eq!(line(nbd_detach(device)), "nbd-client -d /dev/nbd3");
    }
}
