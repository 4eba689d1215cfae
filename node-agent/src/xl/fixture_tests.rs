//! Every fixture in `tests/fixtures/xl/` parses, into exactly what it says.

use crate::hypervisor::DomainState;

use super::cpu::{self, VcpuTimes};
use super::info::parse_info;
use super::list::parse_list;
use super::list_long::parse_list_long;
use super::observe::{self, Observation};
use super::vcpu_list::{CpuSet, parse_vcpu_list};

const LIST: &str = include_str!("../../tests/fixtures/xl/list.txt");
const LIST_LONG: &str = include_str!("../../tests/fixtures/xl/list-l.json");
const VCPU_LIST: &str = include_str!("../../tests/fixtures/xl/vcpu-list.txt");
const INFO: &str = include_str!("../../tests/fixtures/xl/info.txt");
const NO_SUCH_DOMAIN: &str = include_str!("../../tests/fixtures/xl/no-such-domain.stderr.txt");

#[test]
fn xl_list() {
    let domains = parse_list(LIST).unwrap();
    let summary: Vec<(&str, u32, u64, u32, DomainState)> = domains
        .iter()
        .map(|d| {
            (
                d.name.as_str(),
                d.domid,
                d.memory_mib,
                d.vcpus,
                d.flags.domain_state(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("Domain-0", 0, 4096, 4, DomainState::Running),
            ("web-1", 3, 1024, 2, DomainState::Running),
            ("small-1", 7, 512, 1, DomainState::Running),
            ("batch-2", 12, 2048, 3, DomainState::Paused),
        ]
    );
    assert!((domains[0].cpu_seconds - 10432.7).abs() < 1e-6);
}

#[test]
fn xl_list_long() {
    let configs = parse_list_long(LIST_LONG).unwrap();
    let names: Vec<(Option<u32>, &str, Option<&str>)> = configs
        .iter()
        .map(|c| (c.domid, c.name.as_str(), c.guest_type.as_deref()))
        .collect();
    assert_eq!(
        names,
        [
            (Some(0), "Domain-0", Some("pv")),
            (Some(3), "web-1", Some("hvm")),
            (Some(7), "small-1", Some("pv")),
            (Some(12), "batch-2", Some("pvh"))
        ]
    );
    assert_eq!(configs[0].uuid, None);
    let small = &configs[2];
    assert_eq!(
        small.uuid.as_deref(),
        Some("6f1c2a4e-93b0-4d5e-8a7f-0c1d2e3f4a5b")
    );
    assert_eq!(
        (
            small.max_vcpus,
            small.max_memory_mib,
            small.target_memory_mib
        ),
        (Some(1), Some(512), Some(512))
    );
    assert_eq!(small.cmdline.as_deref(), Some("root=/dev/xvda1 ro"));
    let disks: Vec<(&str, &str)> = small
        .disks
        .iter()
        .map(|d| (d.pdev_path.as_deref().unwrap(), d.vdev.as_deref().unwrap()))
        .collect();
    assert_eq!(
        disks,
        [
            ("/run/herd-agent/xl-disks/small-1/root", "xvda1"),
            ("/run/herd-agent/xl-disks/small-1/swap", "xvda2")
        ]
    );
    assert_eq!(small.nics[0].mac.as_deref(), Some("00:16:3e:4f:b1:57"));
    assert_eq!(
        configs[1].disks[0].pdev_path.as_deref(),
        Some("/dev/vg0/web-1")
    );
}

#[test]
fn xl_vcpu_list() {
    let rows = parse_vcpu_list(VCPU_LIST).unwrap();
    assert_eq!(rows.len(), 11);
    assert_eq!(
        (rows[0].name.as_str(), rows[0].cpu, rows[0].running),
        ("Domain-0", Some(0), true)
    );
    assert_eq!(rows[0].hard_affinity, CpuSet::Ranges(vec![(0, 0)]));
    assert_eq!(rows[4].hard_affinity, CpuSet::Ranges(vec![(4, 7)]));
    let small = rows.iter().find(|r| r.name == "small-1").unwrap();
    assert_eq!(
        (small.domid, small.vcpu, small.cpu, small.blocked),
        (7, 0, Some(4), true)
    );
    let offline = rows.last().unwrap();
    assert_eq!(
        (
            offline.name.as_str(),
            offline.vcpu,
            offline.cpu,
            offline.online
        ),
        ("batch-2", 3, None, false)
    );
}

#[test]
fn xl_info() {
    let info = parse_info(INFO).unwrap();
    assert_eq!(info.host.as_deref(), Some("xen-a"));
    assert_eq!(
        (info.nr_cpus, info.total_memory_mib, info.free_memory_mib),
        (8, 32657, 24690)
    );
    assert_eq!(info.description(), "Xen 4.17.3 (credit2)");
}

#[test]
fn the_fixtures_join_into_domains() {
    let observation = Observation {
        list: parse_list(LIST).unwrap(),
        configs: parse_list_long(LIST_LONG).unwrap(),
        vcpus: parse_vcpu_list(VCPU_LIST).unwrap(),
    };
    let before = VcpuTimes::from_rows(std::time::Duration::from_secs(100), &observation.vcpus);
    let mut later = before.clone();
    later.at = std::time::Duration::from_secs(102);
    *later.seconds.get_mut(&(7, 0)).unwrap() += 1.0;
    let percent = cpu::vcpu_percent(&before, &later);
    let domains = observe::assemble(&observation, &percent, |_| None);
    let names: Vec<&str> = domains.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["web-1", "small-1", "batch-2"]);
    let small = &domains[1];
    assert_eq!(
        (small.id.as_str(), small.state, small.uid.as_deref()),
        (
            "7",
            DomainState::Running,
            Some("6f1c2a4e-93b0-4d5e-8a7f-0c1d2e3f4a5b")
        )
    );
    assert!((small.cpu_percent - 50.0).abs() < 1e-9);
    assert_eq!(domains[2].vcpus.len(), 4);
    let load = cpu::cpu_load(8, &observation.vcpus, &percent);
    assert!((load[4] - 50.0).abs() < 1e-9);
}

#[test]
fn no_such_domain_message() {
    assert!(NO_SUCH_DOMAIN.contains("is an invalid domain identifier"));
}
