//! Joins what `xl list`, `xl list -l` and `xl vcpu-list` say into herd's [`DomainInfo`]s:
//! pure functions over parsed output.
//!
//! `xl list` gives the state, `xl list -l` the UUID (herd's VM uid, for adoption after an agent
//! restart), `xl vcpu-list` the vCPU placement. Domain-0 is the host itself and is left out.
//! While `xl migrate` runs, xl renames the receiving copy `NAME--incoming` and, at the end, the
//! sending copy `NAME--migratedaway`; both are reported under `NAME`, as `Incoming` and `Other`.

use std::collections::BTreeMap;

use crate::hypervisor::{DomainInfo, DomainState, VcpuPlacement};

use super::config::UID_MARKER;
use super::cpu::VcpuKey;
use super::list::ListedDomain;
use super::list_long::DomainConfig;
use super::parse;
use super::vcpu_list::VcpuRow;

/// The name `xl list` prints for a domain that has none (yet).
pub const UNNAMED: &str = "(null)";

/// One reading of the host's domains.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observation {
    pub list: Vec<ListedDomain>,
    pub configs: Vec<DomainConfig>,
    pub vcpus: Vec<VcpuRow>,
}

/// The name herd knows a domain by, and the state xl's migration renaming implies.
pub fn base_name(xl_name: &str) -> (&str, Option<DomainState>) {
    if let Some(name) = xl_name.strip_suffix("--incoming") {
        return (name, Some(DomainState::Incoming));
    }
    if let Some(name) = xl_name.strip_suffix("--migratedaway") {
        return (name, Some(DomainState::Other));
    }
    (xl_name, None)
}

/// The VM uid of a domain: the uid herd recorded in its config when that uid could not be the
/// domain's UUID, otherwise the UUID xl reports (herd sets it to the uid), and the recorded one
/// when xl reports none. A real 4.17 host has no `xl list -l` entry for a `NAME--incoming`
/// copy until `xl migrate-receive` has the whole stream.
pub fn recover_uid(xl_uuid: Option<&str>, recorded: Option<&str>) -> Option<String> {
    match (recorded, xl_uuid) {
        (Some(uid), _) if !parse::is_uuid(uid) => Some(uid.to_string()),
        (_, Some(uuid)) => Some(uuid.to_string()),
        (recorded, None) => recorded.map(str::to_string),
    }
}

/// The uid recorded in a rendered config (its `# herd-uid:` line).
pub fn recorded_uid(cfg_text: &str) -> Option<String> {
    cfg_text
        .lines()
        .take(8)
        .find_map(|line| line.strip_prefix(UID_MARKER))
        .map(str::trim)
        .filter(|uid| {
            !uid.is_empty()
                && uid.len() <= 64
                && uid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        .map(str::to_string)
}

/// Every guest domain as herd sees it. `percent` is each vCPU's use over the last sample;
/// `recorded` gives the uid recorded for a VM name, if any.
pub fn assemble(
    observation: &Observation,
    percent: &BTreeMap<VcpuKey, f64>,
    recorded: impl Fn(&str) -> Option<String>,
) -> Vec<DomainInfo> {
    let configs: BTreeMap<u32, &DomainConfig> = observation
        .configs
        .iter()
        .filter_map(|c| c.domid.map(|id| (id, c)))
        .collect();
    observation
        .list
        .iter()
        // Domain-0 is the host. A domain xl lists as `(null)` is being built or torn down and
        // has no name yet (seen on a real 4.17 host while `xl create` runs): not one of ours
        // to report, and never one to destroy by name.
        .filter(|d| d.domid != 0 && d.name != UNNAMED)
        .map(|listed| {
            let (name, renamed) = base_name(&listed.name);
            let uuid = configs.get(&listed.domid).and_then(|c| c.uuid.as_deref());
            let vcpus = placements(&observation.vcpus, listed.domid, percent);
            DomainInfo {
                name: name.to_string(),
                uid: recover_uid(uuid, recorded(name).as_deref()),
                id: listed.domid.to_string(),
                state: renamed.unwrap_or_else(|| listed.flags.domain_state()),
                cpu_percent: vcpus.iter().map(|v| v.percent).sum(),
                vcpus,
            }
        })
        .collect()
}

/// A domain the driver reports although xl lists none (see `XlDriver`'s stand-ins): a VM
/// prepared to receive a migration (`Incoming`), or one that migrated away (`Paused`), like
/// QEMU's waiting `-incoming` process and its paused source. It has no domid: its id is `-`.
pub fn stand_in(name: &str, uid: Option<String>, state: DomainState) -> DomainInfo {
    DomainInfo {
        name: name.to_string(),
        uid,
        id: STAND_IN_ID.to_string(),
        state,
        cpu_percent: 0.0,
        vcpus: Vec::new(),
    }
}

/// The id of a stand-in: it has no domid.
pub const STAND_IN_ID: &str = "-";

fn placements(
    rows: &[VcpuRow],
    domid: u32,
    percent: &BTreeMap<VcpuKey, f64>,
) -> Vec<VcpuPlacement> {
    rows.iter()
        .filter(|r| r.domid == domid)
        .map(|r| VcpuPlacement {
            vcpu: r.vcpu,
            cpu: r.cpu,
            percent: percent.get(&(r.domid, r.vcpu)).copied().unwrap_or(0.0),
            // xentop and vcpu-list do not report runnable time.
            wait_percent: 0.0,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xl::list::StateFlags;
    use crate::xl::vcpu_list::CpuSet;

    const UUID: &str = "6f1c2a4e-93b0-4d5e-8a7f-0c1d2e3f4a5b";

    fn listed(name: &str, domid: u32, state: &str) -> ListedDomain {
        ListedDomain {
            name: name.into(),
            domid,
            memory_mib: 512,
            vcpus: 1,
            flags: StateFlags::parse(state).unwrap(),
            cpu_seconds: 1.0,
        }
    }

    fn config(name: &str, domid: u32, uuid: &str) -> DomainConfig {
        DomainConfig {
            domid: Some(domid),
            name: name.into(),
            uuid: Some(uuid.into()),
            guest_type: None,
            max_vcpus: None,
            max_memory_mib: None,
            target_memory_mib: None,
            kernel: None,
            cmdline: None,
            disks: vec![],
            nics: vec![],
        }
    }

    fn vcpu(domid: u32, vcpu: u32, cpu: u32) -> VcpuRow {
        VcpuRow {
            name: String::new(),
            domid,
            vcpu,
            cpu: Some(cpu),
            running: true,
            blocked: false,
            online: true,
            cpu_seconds: 1.0,
            hard_affinity: CpuSet::All,
            soft_affinity: CpuSet::All,
        }
    }

    #[test]
    fn joins_state_uid_and_vcpus_and_skips_domain_0() {
        let observation = Observation {
            list: vec![
                listed("Domain-0", 0, "r-----"),
                listed("small-1", 7, "--p---"),
                listed("web-1--incoming", 9, "--p---"),
            ],
            configs: vec![config("small-1", 7, UUID)],
            vcpus: vec![vcpu(0, 0, 0), vcpu(7, 0, 2), vcpu(7, 1, 3)],
        };
        let percent = BTreeMap::from([((7, 0), 40.0), ((7, 1), 10.0)]);
        let domains = assemble(&observation, &percent, |_| None);
        assert_eq!(domains.len(), 2);
        let small = &domains[0];
        assert_eq!(
            (small.name.as_str(), small.id.as_str(), small.state),
            ("small-1", "7", DomainState::Paused)
        );
        assert_eq!(small.uid.as_deref(), Some(UUID));
        assert_eq!(
            small.vcpus,
            vec![
                VcpuPlacement {
                    vcpu: 0,
                    cpu: Some(2),
                    percent: 40.0,
                    wait_percent: 0.0
                },
                VcpuPlacement {
                    vcpu: 1,
                    cpu: Some(3),
                    percent: 10.0,
                    wait_percent: 0.0
                },
            ]
        );
        assert!((small.cpu_percent - 50.0).abs() < 1e-9);
        assert_eq!(
            (
                domains[1].name.as_str(),
                domains[1].state,
                domains[1].uid.clone()
            ),
            ("web-1", DomainState::Incoming, None)
        );
    }

    #[test]
    fn a_recorded_non_uuid_uid_wins_over_the_random_uuid() {
        assert_eq!(
            recover_uid(Some(UUID), Some("0a-1")).as_deref(),
            Some("0a-1")
        );
        assert_eq!(recover_uid(Some(UUID), Some(UUID)).as_deref(), Some(UUID));
        assert_eq!(recover_uid(Some(UUID), None).as_deref(), Some(UUID));
        assert_eq!(recover_uid(None, None), None);
    }

    #[test]
    fn the_recorded_uid_is_read_from_the_config_header() {
        assert_eq!(
            recorded_uid("# xl.cfg of VM a\n# herd-uid: 0a-1\nname = \"a\"\n").as_deref(),
            Some("0a-1")
        );
        assert_eq!(recorded_uid("name = \"a\"\n"), None);
        assert_eq!(recorded_uid("# herd-uid: bad uid\n"), None);
    }

    #[test]
    fn migration_names_map_back() {
        assert_eq!(
            base_name("small-1--migratedaway"),
            ("small-1", Some(DomainState::Other))
        );
        assert_eq!(base_name("small-1"), ("small-1", None));
    }

    #[test]
    fn a_domain_without_a_name_yet_is_not_reported() {
        // `xl list` on a real 4.17 host while `xl create` builds a domain.
        let observation = Observation {
            list: vec![
                listed("Domain-0", 0, "r-----"),
                listed("(null)", 2, "--p---"),
            ],
            configs: Vec::new(),
            vcpus: Vec::new(),
        };
        assert!(assemble(&observation, &BTreeMap::new(), |_| None).is_empty());
    }

    #[test]
    fn a_stand_in_has_no_domid() {
        let stand_in = stand_in("small-1", Some("u1".into()), DomainState::Incoming);
        assert_eq!(
            (
                stand_in.id.as_str(),
                stand_in.state,
                stand_in.uid.as_deref()
            ),
            (STAND_IN_ID, DomainState::Incoming, Some("u1"))
        );
    }

    #[test]
    fn the_recorded_uid_stands_in_when_xl_has_no_uuid() {
        let uuid = "6f1c2a4e-93b0-4d5e-8a7f-0c1d2e3f4a5b";
        assert_eq!(recover_uid(None, Some(uuid)).as_deref(), Some(uuid));
        assert_eq!(recover_uid(Some(uuid), None).as_deref(), Some(uuid));
        assert_eq!(recover_uid(None, None), None);
    }
}
