//! Live migration with QEMU: endpoints, parameters and progress, as pure translations.
//!
//! The target runs the same command line plus `-incoming tcp:HOST:PORT` and waits; the source
//! gets `migrate-set-parameters` (downtime limit, bandwidth) and `migrate`. Progress comes from
//! `query-migrate`. When a migration completes QEMU leaves the source paused in `postmigrate`;
//! the caller destroys it only after the target runs, so that a VM runs on exactly one host.
//! Disks must be shared (NBD): a domain with a local `Path` disk is refused, on both ends.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::time::Duration;

use herd_crds::assignment::{DiskSource, DomainSpec};

use super::qmp::{MigrateSetParameters, MigrationInfo, MigrationStatus};
use crate::hypervisor::{MigrationParams, MigrationProgress};

/// The bandwidth cap used for "no cap": QEMU has no "unlimited" value, so this is the largest
/// it accepts on every version (`i64::MAX` bytes per second).
const UNCAPPED: u64 = i64::MAX as u64;

/// `tcp:HOST:PORT`, with brackets around an IPv6 host.
pub fn endpoint_uri(address: IpAddr, port: u16) -> String {
    format!("tcp:{}", SocketAddr::new(address, port))
}

/// Checks that `uri` is `tcp:HOST:PORT` with a plain host name or address.
pub fn check_endpoint(uri: &str) -> Result<(), String> {
    let invalid = || format!("{uri:?} is not a tcp:HOST:PORT migration address");
    let rest = uri.strip_prefix("tcp:").ok_or_else(invalid)?;
    let (host, port) = rest.rsplit_once(':').ok_or_else(invalid)?;
    let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
    let host_ok = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if port_ok && host_ok {
        Ok(())
    } else {
        Err(invalid())
    }
}

/// A TCP port on `address` that is free right now (QEMU binds it a moment later; the caller
/// retries with another port if it lost the race).
pub fn free_port(address: IpAddr) -> io::Result<u16> {
    Ok(TcpListener::bind(SocketAddr::new(address, 0))?
        .local_addr()?
        .port())
}

/// The names of the disks that only this node can open.
pub fn local_disks(spec: &DomainSpec) -> Vec<&str> {
    spec.disks
        .iter()
        .filter(|disk| matches!(disk.source, DiskSource::Path(_)))
        .map(|disk| disk.name.as_str())
        .collect()
}

/// Why `spec` cannot migrate, if it cannot.
pub fn refusal(spec: &DomainSpec) -> Option<String> {
    let local = local_disks(spec);
    (!local.is_empty()).then(|| {
        format!(
            "disk(s) {} are local paths on this node, which the target cannot open; \
             use shared (NBD) volumes to make the VM migratable",
            local.join(", ")
        )
    })
}

/// The `migrate-set-parameters` arguments for `params`.
pub fn parameters(params: &MigrationParams) -> MigrateSetParameters {
    let downtime_ms = u64::try_from(params.max_downtime.as_millis()).unwrap_or(u64::MAX);
    MigrateSetParameters {
        downtime_limit: Some(downtime_ms.max(1)),
        max_bandwidth: Some(params.bandwidth.unwrap_or(UNCAPPED).min(UNCAPPED)),
    }
}

/// Whether a migration is under way (so `migrate` must not be sent again). A `completed`
/// status does not count: a domain that arrived by migration reports its incoming migration as
/// completed, and must still be able to leave again.
pub fn is_started(status: Option<MigrationStatus>) -> bool {
    !matches!(
        status,
        None | Some(
            MigrationStatus::None
                | MigrationStatus::Completed
                | MigrationStatus::Failed
                | MigrationStatus::Cancelled
        )
    )
}

/// The progress `query-migrate` reports; `None` when no migration was ever started.
pub fn progress(info: &MigrationInfo) -> Option<MigrationProgress> {
    let ram = info.ram.unwrap_or_default();
    let millis = |value: Option<u64>| Duration::from_millis(value.unwrap_or(0));
    Some(match info.status? {
        MigrationStatus::None => return None,
        MigrationStatus::Completed => MigrationProgress::Completed {
            total: millis(info.total_time),
            downtime: millis(info.downtime),
            transferred_bytes: ram.transferred,
        },
        MigrationStatus::Failed => MigrationProgress::Failed {
            message: info
                .error_desc
                .clone()
                .unwrap_or_else(|| "QEMU did not say why".into()),
        },
        MigrationStatus::Cancelled => MigrationProgress::Cancelled,
        // Setting up, copying, switching over, cancelling, postcopy, or a status this driver
        // does not know yet: still under way.
        _ => MigrationProgress::Active {
            transferred_bytes: ram.transferred,
            remaining_bytes: ram.remaining,
        },
    })
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use herd_crds::assignment::DomainDisk;
    use herd_crds::virtual_machine::Boot;

    use super::*;
    use crate::qemu::qmp::RamStats;

    #[test]
    fn endpoints_are_formatted_and_checked() {
        assert_eq!(
            endpoint_uri(IpAddr::V4(Ipv4Addr::LOCALHOST), 49152),
            "tcp:127.0.0.1:49152"
        );
        assert_eq!(
            endpoint_uri(IpAddr::V6(Ipv6Addr::LOCALHOST), 4),
            "tcp:[::1]:4"
        );
        for good in ["tcp:127.0.0.1:49152", "tcp:[::1]:4", "tcp:node-2.lab:5000"] {
            assert!(check_endpoint(good).is_ok(), "{good}");
        }
        for bad in [
            "unix:/tmp/x",
            "tcp:h",
            "tcp::1",
            "tcp:h:0",
            "tcp:h:70000",
            "tcp:h,x=y:1",
            "exec:rm -rf /",
            "tcp:a b:1",
        ] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn local_disks_make_a_domain_unmigratable() {
        let disk = |name: &str, source| DomainDisk {
            name: name.into(),
            source,
            target: None,
            read_only: false,
        };
        let mut spec = DomainSpec {
            name: "vm".into(),
            uid: "u".into(),
            vcpus: 1,
            memory_mib: 32,
            boot: Boot::default(),
            disks: vec![disk("root", DiskSource::Nbd("nbd://10.0.0.1/vm".into()))],
            networks: Vec::new(),
            migration: Default::default(),
        };
        assert_eq!(refusal(&spec), None);
        spec.disks
            .push(disk("scratch", DiskSource::Path("/var/tmp/s.img".into())));
        assert!(refusal(&spec).unwrap().contains("scratch"));
    }

    #[test]
    fn parameters_follow_the_policy() {
        let params = MigrationParams {
            max_downtime: Duration::from_millis(300),
            bandwidth: Some(64 << 20),
        };
        let set = parameters(&params);
        assert_eq!(
            (set.downtime_limit, set.max_bandwidth),
            (Some(300), Some(64 << 20))
        );
        let uncapped = parameters(&MigrationParams {
            max_downtime: Duration::ZERO,
            bandwidth: None,
        });
        assert_eq!(
            (uncapped.downtime_limit, uncapped.max_bandwidth),
            (Some(1), Some(UNCAPPED))
        );
    }

    #[test]
    fn query_migrate_becomes_progress() {
        let ram = Some(RamStats {
            transferred: 10,
            remaining: 20,
            total: 30,
        });
        let info = |status| MigrationInfo {
            status: Some(status),
            ram,
            total_time: Some(604),
            downtime: Some(2),
            error_desc: None,
        };
        assert_eq!(progress(&MigrationInfo::default()), None);
        assert_eq!(progress(&info(MigrationStatus::None)), None);
        assert_eq!(
            progress(&info(MigrationStatus::Active)),
            Some(MigrationProgress::Active {
                transferred_bytes: 10,
                remaining_bytes: 20
            })
        );
        assert_eq!(
            progress(&info(MigrationStatus::Completed)),
            Some(MigrationProgress::Completed {
                total: Duration::from_millis(604),
                downtime: Duration::from_millis(2),
                transferred_bytes: 10
            })
        );
        let failed = MigrationInfo {
            error_desc: Some("Connection refused".into()),
            ..info(MigrationStatus::Failed)
        };
        assert_eq!(
            progress(&failed),
            Some(MigrationProgress::Failed {
                message: "Connection refused".into()
            })
        );
        assert_eq!(
            progress(&info(MigrationStatus::Cancelled)),
            Some(MigrationProgress::Cancelled)
        );
        assert!(
            is_started(Some(MigrationStatus::Setup)) && is_started(Some(MigrationStatus::Active))
        );
        assert!(
            !is_started(Some(MigrationStatus::Completed)),
            "an arrived domain may leave again"
        );
        assert!(!is_started(None) && !is_started(Some(MigrationStatus::Failed)));
    }
}
