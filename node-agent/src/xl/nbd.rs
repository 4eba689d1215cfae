//! NBD disks on Xen: `nbd-client` attaches each export to a free `/dev/nbdN`, and the driver
//! keeps a symlink `<link dir>/<vm>/<disk>` to that device.
//!
//! The domain's xl.cfg names the link, not the device, so the config is the same on every host:
//! when `xl migrate` recreates the domain on another node from the sender's config, the link
//! there points at whatever `/dev/nbdM` that node attached the same export to (Xen's `block`
//! hotplug script resolves symlinks before checking the device). The links are also the
//! driver's durable record of what it attached, so a restarted agent can detach them.
//!
//! A device is free when `/sys/block/nbdN` exists and has no `pid` file (the kernel creates it
//! while a client holds the device) and no link of ours points at it.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use herd_crds::names::is_dns_label;

use super::commands;
use super::runner::{RunError, Runner};
use crate::hypervisor::HypervisorError;

/// The NBD port when the address gives none.
pub const DEFAULT_PORT: u16 = 10809;
/// Most `/dev/nbdN` devices looked at.
const MAX_DEVICES: u32 = 4096;

/// An NBD export: where it is served and its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NbdExport {
    /// A host name or an IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// The export name; empty for the server's default export.
    pub name: String,
}

/// Why an NBD disk could not be attached or detached.
#[derive(Debug, thiserror::Error)]
pub enum NbdError {
    #[error(
        "{uri:?} is not an NBD address the xl driver can attach (nbd://HOST[:PORT]/EXPORT): {reason}"
    )]
    Uri { uri: String, reason: &'static str },
    #[error("{0:?} cannot name a disk link: use a DNS label")]
    Name(String),
    #[error("No free NBD device: {0}")]
    NoFreeDevice(String),
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error(transparent)]
    Run(#[from] RunError),
}

impl From<NbdError> for HypervisorError {
    fn from(error: NbdError) -> Self {
        match error {
            NbdError::Run(run) => run.into(),
            NbdError::Io { path, source } => {
                HypervisorError::Io(io::Error::new(source.kind(), format!("{path}: {source}")))
            }
            NbdError::NoFreeDevice(_) => HypervisorError::Unavailable {
                driver: "xl",
                reason: error.to_string(),
            },
            NbdError::Uri { .. } | NbdError::Name(_) => HypervisorError::Parse {
                what: "NBD disk".into(),
                message: error.to_string(),
            },
        }
    }
}

/// Parses `nbd://HOST[:PORT]/EXPORT` (IPv6 as `[addr]`), refusing anything that could be read
/// as an option or break a command line.
pub fn parse_nbd_uri(uri: &str) -> Result<NbdExport, NbdError> {
    let refuse = |reason| NbdError::Uri {
        uri: uri.to_string(),
        reason,
    };
    let rest = uri
        .strip_prefix("nbd://")
        .ok_or_else(|| refuse("it must start with nbd://"))?;
    let (authority, name) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) =
        split_authority(authority).ok_or_else(|| refuse("the host or port is not valid"))?;
    let name_ok = name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if !name_ok || name.starts_with('-') {
        return Err(refuse(
            "the export name may hold only letters, digits, '.', '-' and '_'",
        ));
    }
    Ok(NbdExport {
        host,
        port,
        name: name.to_string(),
    })
}

fn split_authority(authority: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'));
        let port = match after {
            "" => None,
            after => Some(after.strip_prefix(':')?),
        };
        (ok.then_some(host)?, port)
    } else {
        let (host, port) = authority
            .split_once(':')
            .map_or((authority, None), |(h, p)| (h, Some(p)));
        let ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'));
        (ok.then_some(host)?, port)
    };
    if host.starts_with('-') || host.len() > 253 {
        return None;
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            p.parse().ok().filter(|p| *p > 0)?
        }
        Some(_) => return None,
    };
    Some((host.to_string(), port))
}

/// Where NBD devices and the driver's links live (injectable for tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NbdPaths {
    /// `/sys/block`.
    pub sys_block: PathBuf,
    /// `/dev`.
    pub dev_dir: PathBuf,
    /// The directory of per-VM link directories; the same path on every Xen node.
    pub link_dir: PathBuf,
}

impl NbdPaths {
    /// The link xl.cfg names for disk `disk` of VM `vm`.
    pub fn link(&self, vm: &str, disk: &str) -> PathBuf {
        self.link_dir.join(vm).join(disk)
    }

    pub fn device(&self, number: u32) -> PathBuf {
        self.dev_dir.join(format!("nbd{number}"))
    }

    /// The `N` of `<dev dir>/nbdN`, and nothing else.
    pub fn device_number(&self, device: &Path) -> Option<u32> {
        let name = device
            .strip_prefix(&self.dev_dir)
            .ok()?
            .to_str()?
            .strip_prefix("nbd")?;
        let digits =
            !name.is_empty() && name.len() <= 4 && name.bytes().all(|b| b.is_ascii_digit());
        digits.then(|| name.parse().ok()).flatten()
    }

    fn exists(&self, number: u32) -> bool {
        self.sys_block.join(format!("nbd{number}")).is_dir()
    }

    /// Whether a client holds `/dev/nbdN` (the kernel shows its pid).
    pub fn is_connected(&self, number: u32) -> bool {
        self.sys_block
            .join(format!("nbd{number}"))
            .join("pid")
            .exists()
    }

    /// The device number a link points at, if it is one of ours.
    fn linked_number(&self, link: &Path) -> Option<u32> {
        std::fs::read_link(link)
            .ok()
            .and_then(|target| self.device_number(&target))
    }

    /// Every device some link of ours points at.
    fn linked_numbers(&self) -> BTreeSet<u32> {
        let dirs = std::fs::read_dir(&self.link_dir)
            .into_iter()
            .flatten()
            .flatten();
        dirs.flat_map(|vm| std::fs::read_dir(vm.path()).into_iter().flatten().flatten())
            .filter_map(|link| self.linked_number(&link.path()))
            .collect()
    }

    /// The lowest device that exists, is not connected, and is not linked.
    pub fn free_device(&self) -> Result<u32, NbdError> {
        let linked = self.linked_numbers();
        let mut count = 0;
        while count < MAX_DEVICES && self.exists(count) {
            if !self.is_connected(count) && !linked.contains(&count) {
                return Ok(count);
            }
            count += 1;
        }
        Err(NbdError::NoFreeDevice(if count == 0 {
            format!(
                "{} has no nbd devices; load the nbd module (modprobe nbd nbds_max=64)",
                self.sys_block.display()
            )
        } else {
            format!(
                "all {count} nbd devices are in use; load the nbd module with a larger nbds_max"
            )
        }))
    }
}

/// Attaches and detaches NBD exports, one at a time.
#[derive(Debug)]
pub struct NbdAttacher {
    runner: Runner,
    paths: NbdPaths,
    timeout: Duration,
    lock: tokio::sync::Mutex<()>,
}

impl NbdAttacher {
    pub fn new(runner: Runner, paths: NbdPaths, timeout: Duration) -> Self {
        Self {
            runner,
            paths,
            timeout,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    pub fn paths(&self) -> &NbdPaths {
        &self.paths
    }

    /// Makes `<link dir>/<vm>/<disk>` point at a device attached to `export`; returns the link.
    /// A link whose device is still connected is kept as it is (repeating is harmless).
    pub async fn attach(
        &self,
        vm: &str,
        disk: &str,
        export: &NbdExport,
    ) -> Result<PathBuf, NbdError> {
        for name in [vm, disk] {
            if !is_dns_label(name) {
                return Err(NbdError::Name(name.to_string()));
            }
        }
        let _one_at_a_time = self.lock.lock().await;
        let link = self.paths.link(vm, disk);
        if self
            .paths
            .linked_number(&link)
            .is_some_and(|n| self.paths.is_connected(n))
        {
            return Ok(link);
        }
        remove_if_present(&link)?;
        let device = self.paths.device(self.paths.free_device()?);
        self.runner
            .run(&commands::nbd_attach(export, &device), self.timeout)
            .await?;
        place_link(&device, &link)?;
        Ok(link)
    }

    /// Detaches every device linked for `vm` and removes the links. Nothing linked is fine.
    pub async fn detach_all(&self, vm: &str) -> Result<(), NbdError> {
        if !is_dns_label(vm) {
            return Err(NbdError::Name(vm.to_string()));
        }
        let _one_at_a_time = self.lock.lock().await;
        let dir = self.paths.link_dir.join(vm);
        let mut links: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(NbdError::Io {
                    path: dir.display().to_string(),
                    source,
                });
            }
        };
        links.sort();
        for link in links {
            if let Some(number) = self
                .paths
                .linked_number(&link)
                .filter(|n| self.paths.is_connected(*n))
            {
                self.runner
                    .run(
                        &commands::nbd_detach(&self.paths.device(number)),
                        self.timeout,
                    )
                    .await?;
            }
            remove_if_present(&link)?;
        }
        // Best effort: another attach may have created a link since.
        let _ = std::fs::remove_dir(&dir);
        Ok(())
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> NbdError + '_ {
    move |source| NbdError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn remove_if_present(path: &Path) -> Result<(), NbdError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error(path)(e)),
        _ => Ok(()),
    }
}

/// Creates `link` → `device` atomically (a temporary link renamed into place).
fn place_link(device: &Path, link: &Path) -> Result<(), NbdError> {
    let dir = link
        .parent()
        .ok_or_else(|| io_error(link)(io::Error::other("a link needs a directory")))?;
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let temporary = link.with_extension("new");
    remove_if_present(&temporary)?;
    std::os::unix::fs::symlink(device, &temporary).map_err(io_error(&temporary))?;
    std::fs::rename(&temporary, link).map_err(io_error(link))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nbd_addresses() {
        let export = parse_nbd_uri("nbd://10.0.0.1:10809/small-1-disk").unwrap();
        assert_eq!(
            export,
            NbdExport {
                host: "10.0.0.1".into(),
                port: 10809,
                name: "small-1-disk".into()
            }
        );
        assert_eq!(
            parse_nbd_uri("nbd://storage.lab/x").unwrap().port,
            DEFAULT_PORT
        );
        assert_eq!(
            parse_nbd_uri("nbd://[fd00::1]:10810/x").unwrap().host,
            "fd00::1"
        );
        assert_eq!(
            parse_nbd_uri("nbd://[fd00::1]/x").unwrap().port,
            DEFAULT_PORT
        );
        assert_eq!(parse_nbd_uri("nbd://h").unwrap().name, "");
    }

    #[test]
    fn refuses_hostile_nbd_addresses() {
        for bad in [
            "http://h/x",
            "nbd:///x",
            "nbd://-oProxyCommand=x/e",
            "nbd://h:0/x",
            "nbd://h:65536/x",
            "nbd://h:/x",
            "nbd://h:1a/x",
            "nbd://h/x y",
            "nbd://h/x,file=/etc/shadow",
            "nbd://h/-N",
            "nbd://h;reboot/x",
            "nbd://[fd00::1/x",
            "nbd://[]/x",
            "nbd://[fd00::1]junk/x",
            "nbd://h/x/y",
        ] {
            assert!(parse_nbd_uri(bad).is_err(), "{bad:?}");
        }
    }

    fn paths(root: &Path) -> NbdPaths {
        NbdPaths {
            sys_block: root.join("sys"),
            dev_dir: root.join("dev"),
            link_dir: root.join("links"),
        }
    }

    #[test]
    fn device_numbers_come_only_from_our_dev_dir() {
        let paths = paths(Path::new("/t"));
        assert_eq!(paths.device_number(Path::new("/t/dev/nbd12")), Some(12));
        for other in [
            "/t/dev/nbd",
            "/t/dev/nbd1p1",
            "/t/dev/sda",
            "/dev/nbd1",
            "/t/dev/nbd99999",
            "/t/dev/../dev/nbd1",
        ] {
            assert_eq!(paths.device_number(Path::new(other)), None, "{other}");
        }
    }

    #[test]
    fn the_free_device_skips_connected_and_linked_ones() {
        let root = tempfile::tempdir().unwrap();
        let paths = paths(root.path());
        assert!(
            matches!(paths.free_device(), Err(NbdError::NoFreeDevice(m)) if m.contains("modprobe nbd"))
        );
        for n in 0..3 {
            std::fs::create_dir_all(paths.sys_block.join(format!("nbd{n}"))).unwrap();
        }
        std::fs::write(paths.sys_block.join("nbd0/pid"), "42").unwrap();
        place_link(&paths.device(1), &paths.link("small-1", "root")).unwrap();
        assert_eq!(paths.free_device().unwrap(), 2);
        std::fs::write(paths.sys_block.join("nbd2/pid"), "43").unwrap();
        assert!(
            matches!(paths.free_device(), Err(NbdError::NoFreeDevice(m)) if m.contains("all 3"))
        );
    }
}
