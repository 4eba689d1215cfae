//! The output of a real Xen 4.17.5 host (`tests/fixtures/xl/real/`, captured in the Xen lab,
//! `tests/xen-lab/`) parses, and joins into the domains herd reports.

use crate::hypervisor::DomainState;

use super::info::parse_info;
use super::list::parse_list;
use super::list_long::parse_list_long;
use super::observe::{self, Observation};
use super::vcpu_list::{CpuSet, parse_vcpu_list};
use super::xentop::parse_xentop;

const LIST: &str = include_str!("../../tests/fixtures/xl/real/list.txt");
const LIST_PAUSED: &str = include_str!("../../tests/fixtures/xl/real/list-paused.txt");
const LIST_LONG: &str = include_str!("../../tests/fixtures/xl/real/list-l.json");
const VCPU_LIST: &str = include_str!("../../tests/fixtures/xl/real/vcpu-list.txt");
const INFO: &str = include_str!("../../tests/fixtures/xl/real/info.txt");
const XENTOP: &str = include_str!("../../tests/fixtures/xl/real/xentop-b.txt");
const NO_SUCH_DOMAIN: &str = include_str!("../../tests/fixtures/xl/real/no-such-domain.stderr.txt");
const SOURCE: &str = include_str!("../../tests/fixtures/xl/real/list-migrating-source.txt");
const TARGET: &str = include_str!("../../tests/fixtures/xl/real/list-migrating-target.txt");
const TARGET_LONG: &str = include_str!("../../tests/fixtures/xl/real/list-l-migrating-target.json");

fn states(text: &str) -> Vec<(String, u32, u64, u32, DomainState)> {
    parse_list(text)
        .unwrap()
        .iter()
        .map(|d| {
            (
                d.name.clone(),
                d.domid,
                d.memory_mib,
                d.vcpus,
                d.flags.domain_state(),
            )
        })
        .collect()
}

#[test]
fn real_xl_list_running_and_paused() {
    assert_eq!(
        states(LIST),
        [
            ("Domain-0".into(), 0, 1024, 2, DomainState::Running),
            ("t1".into(), 5, 128, 1, DomainState::Running),
        ]
    );
    assert_eq!(states(LIST_PAUSED)[1].4, DomainState::Paused);
}

#[test]
fn real_xl_list_during_a_migration() {
    // The source's copy is renamed, paused and shut down for suspend (`--pss-`); the
    // receiving copy is paused until the sender gives it permission to start.
    assert_eq!(
        states(SOURCE)[1],
        (
            "lab-guest-1--migratedaway".into(),
            9,
            128,
            1,
            DomainState::Shutdown
        )
    );
    assert_eq!(
        states(TARGET)[1],
        (
            "lab-guest-1--incoming".into(),
            3,
            128,
            1,
            DomainState::Paused
        )
    );
    // Until the stream is in, `xl list -l` on the target has no entry for the incoming copy.
    let configs = parse_list_long(TARGET_LONG).unwrap();
    assert_eq!(configs.len(), 1);
    let observation = Observation {
        list: parse_list(TARGET).unwrap(),
        configs,
        vcpus: Vec::new(),
    };
    let domains = observe::assemble(&observation, &Default::default(), |_| {
        Some("2973dfbc-a8af-48bf-b172-a5122a9fcf94".into())
    });
    assert_eq!(domains.len(), 1);
    assert_eq!(
        (
            domains[0].name.as_str(),
            domains[0].state,
            domains[0].uid.as_deref()
        ),
        (
            "lab-guest-1",
            DomainState::Incoming,
            Some("2973dfbc-a8af-48bf-b172-a5122a9fcf94")
        )
    );
}

#[test]
fn real_xl_list_long() {
    let configs = parse_list_long(LIST_LONG).unwrap();
    assert_eq!(configs.len(), 2);
    // Domain-0 as xen-init-dom0 stored it: no max_vcpus, a target one KiB below the maximum.
    let dom0 = &configs[0];
    assert_eq!(
        (dom0.domid, dom0.name.as_str(), dom0.max_vcpus),
        (Some(0), "Domain-0", None)
    );
    let guest = &configs[1];
    assert_eq!(
        (
            guest.domid,
            guest.name.as_str(),
            guest.uuid.as_deref(),
            guest.guest_type.as_deref(),
            guest.max_vcpus,
            guest.max_memory_mib,
            guest.target_memory_mib,
            guest.kernel.as_deref(),
        ),
        (
            Some(5),
            "t1",
            Some("1dc3e60c-054b-498a-9d5d-f9d323cdb530"),
            Some("pv"),
            Some(1),
            Some(128),
            Some(128),
            Some("/var/lib/herd-lab/guest-vmlinuz"),
        )
    );
    assert_eq!(guest.nics.len(), 1);
}

#[test]
fn real_xl_vcpu_list() {
    let rows = parse_vcpu_list(VCPU_LIST).unwrap();
    assert_eq!(rows.len(), 3);
    let guest = &rows[2];
    assert_eq!(
        (guest.name.as_str(), guest.domid, guest.vcpu, guest.cpu),
        ("t1", 5, 0, Some(1))
    );
    assert!(guest.blocked && guest.online);
    assert_eq!(guest.hard_affinity, CpuSet::All);
    assert!(rows[1].running);
}

#[test]
fn real_xl_info() {
    let info = parse_info(INFO).unwrap();
    assert_eq!(info.host.as_deref(), Some("xen-a"));
    assert_eq!(
        (info.nr_cpus, info.total_memory_mib, info.free_memory_mib),
        (2, 2047, 872)
    );
    assert_eq!(info.description(), "Xen 4.17.5 (credit2)");
}

#[test]
fn real_xentop_with_a_dom0_memory_limit() {
    // dom0 booted with `dom0_mem=1024M,max:1024M` has a number, not `no limit`.
    let rows = parse_xentop(XENTOP).unwrap().measured_rows().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["Domain-0", "t1"]);
    assert_eq!(
        (rows[0].mem_kib, rows[0].max_mem_kib),
        (1048576, Some(1048576))
    );
    assert_eq!(
        (rows[1].mem_kib, rows[1].max_mem_kib, rows[1].nets),
        (131072, Some(132096), 1)
    );
    assert!((rows[1].cpu_percent - 8.1).abs() < 1e-9);
}

#[test]
fn real_no_such_domain_message() {
    assert_eq!(
        NO_SUCH_DOMAIN.trim(),
        "nosuch is an invalid domain identifier (rc=-6)"
    );
}

#[test]
fn real_list_long_of_a_domain_herd_created() {
    const HERD: &str = include_str!("../../tests/fixtures/xl/real/list-l-herd.json");
    const CFG: &str = include_str!("../../tests/fixtures/xl/real/lab-guest-1.cfg");
    let configs = parse_list_long(HERD).unwrap();
    let guest = configs.iter().find(|c| c.name == "lab-guest-1").unwrap();
    // The UUID herd wrote into the config is the VM's uid, and xl keeps it.
    assert_eq!(guest.uuid, observe::recorded_uid(CFG));
    assert_eq!(
        (
            guest.domid,
            guest.max_memory_mib,
            guest.nics[0].bridge.as_deref()
        ),
        (Some(10), Some(128), Some("xenbr0"))
    );
}
