//! Unit tests of the xl.cfg renderer: the seed's own example, the other boot styles and every
//! kind of hostile value.

use herd_crds::assignment::{DiskSource, DomainDisk, DomainSpec};
use herd_crds::virtual_machine::{Boot, MigrationPolicy, Network};

use super::*;

const UID: &str = "6f1c2a4e-93b0-4d5e-8a7f-0c1d2e3f4a5b";
const ROOT_LINK: &str = "/run/herd-agent/xl-disks/small-1/root";
const SWAP_IMAGE: &str = "/var/lib/herd/volumes/small-1-swap.img";

fn disk(name: &str, source: DiskSource, target: Option<&str>) -> DomainDisk {
    DomainDisk {
        name: name.into(),
        source,
        target: target.map(Into::into),
        read_only: false,
    }
}

/// The seed's `small-1`: 512 MiB, a root disk (GNBD then, NBD now) on `sda1` and a swap disk
/// on `sda2`, bridge `xenbr0`, booted PV with `root = "/dev/sda1 ro"`.
fn small_1() -> DomainSpec {
    DomainSpec {
        name: "small-1".into(),
        uid: UID.into(),
        vcpus: 1,
        memory_mib: 512,
        boot: Boot {
            kernel: Some("/boot/vmlinuz-6.1.0-amd64".into()),
            root: Some("/dev/sda1 ro".into()),
            ..Boot::default()
        },
        disks: vec![
            disk(
                "root",
                DiskSource::Nbd("nbd://10.0.0.1:10809/small-1-disk".into()),
                Some("sda1"),
            ),
            disk("swap", DiskSource::Path(SWAP_IMAGE.into()), Some("sda2")),
        ],
        networks: vec![Network {
            name: "eth0".into(),
            bridge: "xenbr0".into(),
            mac: None,
        }],
        migration: MigrationPolicy::default(),
    }
}

fn targets() -> Vec<String> {
    vec![ROOT_LINK.into(), SWAP_IMAGE.into()]
}

#[test]
fn renders_the_seeds_small_1() {
    let expected = "\
# xl.cfg of VM small-1, written by herd-agent (xl driver). Do not edit: herd rewrites it.
# herd-uid: 6f1c2a4e-93b0-4d5e-8a7f-0c1d2e3f4a5b
name = \"small-1\"
uuid = \"6f1c2a4e-93b0-4d5e-8a7f-0c1d2e3f4a5b\"
type = \"pv\"
kernel = \"/boot/vmlinuz-6.1.0-amd64\"
root = \"/dev/sda1 ro\"
memory = 512
vcpus = 1
disk = [ \"format=raw, vdev=sda1, access=rw, target=/run/herd-agent/xl-disks/small-1/root\", \"format=raw, vdev=sda2, access=rw, target=/var/lib/herd/volumes/small-1-swap.img\" ]
vif = [ \"mac=00:16:3e:4f:b1:57, bridge=xenbr0\" ]
on_poweroff = \"destroy\"
on_reboot = \"restart\"
on_crash = \"destroy\"
";
    assert_eq!(
        render(&small_1(), &targets(), &RenderOptions::default()).unwrap(),
        expected
    );
}

#[test]
fn derived_macs_are_stable_xen_unicast_addresses() {
    let mac = derived_mac(UID, "eth0");
    assert_eq!(mac, derived_mac(UID, "eth0"));
    assert_ne!(mac, derived_mac(UID, "eth1"));
    assert!(mac.starts_with("00:16:3e:"), "{mac}");
    let fourth = u8::from_str_radix(&mac[9..11], 16).unwrap();
    assert!(fourth < 0x80, "{mac}");
    assert_eq!(mac.len(), 17);
}

#[test]
fn a_given_mac_is_used_lower_case() {
    let mut spec = small_1();
    spec.networks[0].mac = Some("52:54:00:AB:cd:01".into());
    let cfg = render(&spec, &targets(), &RenderOptions::default()).unwrap();
    assert!(
        cfg.contains("vif = [ \"mac=52:54:00:ab:cd:01, bridge=xenbr0\" ]"),
        "{cfg}"
    );
}

#[test]
fn pvh_with_ramdisk_cmdline_read_only_disk_and_lifecycle_options() {
    let mut spec = small_1();
    spec.boot.ramdisk = Some("/boot/initrd.img-6.1.0-amd64".into());
    spec.boot.cmdline = Some("console=hvc0 quiet".into());
    spec.disks[1].read_only = true;
    spec.disks[1].target = None;
    spec.vcpus = 2;
    let options = RenderOptions {
        kernel_guest_type: GuestType::Pvh,
        on_crash: LifecycleAction::Preserve,
        ..RenderOptions::default()
    };
    let cfg = render(&spec, &targets(), &options).unwrap();
    for line in [
        "type = \"pvh\"\n",
        "ramdisk = \"/boot/initrd.img-6.1.0-amd64\"\n",
        "extra = \"console=hvc0 quiet\"\n",
        "vcpus = 2\n",
        "\"format=raw, vdev=xvda, access=ro, target=/var/lib/herd/volumes/small-1-swap.img\"",
        "on_crash = \"preserve\"\n",
    ] {
        assert!(cfg.contains(line), "{line:?} missing from:\n{cfg}");
    }
}

#[test]
fn a_disk_booted_guest_is_hvm_with_its_boot_disk_first() {
    let mut spec = small_1();
    spec.boot = Boot {
        disk: Some("data".into()),
        ..Boot::default()
    };
    spec.disks = vec![
        disk(
            "scratch",
            DiskSource::Path("/srv/scratch.qcow2".into()),
            None,
        ),
        disk("data", DiskSource::Nbd("nbd://10.0.0.1/data".into()), None),
    ];
    let targets = vec![
        "/srv/scratch.qcow2".to_string(),
        "/run/herd-agent/xl-disks/small-1/data".to_string(),
    ];
    let cfg = render(&spec, &targets, &RenderOptions::default()).unwrap();
    assert!(cfg.contains("type = \"hvm\"\nboot = \"c\"\n"), "{cfg}");
    assert!(!cfg.contains("kernel"), "{cfg}");
    assert!(
        cfg.contains(
            "disk = [ \"format=raw, vdev=xvda, access=rw, target=/run/herd-agent/xl-disks/small-1/data\", \
             \"format=qcow2, vdev=xvdb, access=rw, target=/srv/scratch.qcow2\" ]"
        ),
        "{cfg}"
    );
}

#[test]
fn a_uid_that_is_not_a_uuid_is_recorded_but_not_used_as_the_domain_uuid() {
    let mut spec = small_1();
    spec.uid = "0a-1".into();
    let cfg = render(&spec, &targets(), &RenderOptions::default()).unwrap();
    assert!(cfg.contains("# herd-uid: 0a-1\n"));
    assert!(!cfg.contains("uuid ="));
}

#[test]
fn hostile_names_are_refused() {
    for name in [
        "x; rm -rf /",
        "Small-1",
        "",
        "-a",
        "a-",
        "123",
        "0",
        "web--incoming",
        "web--migratedaway",
        &"a".repeat(64),
    ] {
        let mut spec = small_1();
        spec.name = name.to_string();
        assert!(
            matches!(
                render(&spec, &targets(), &RenderOptions::default()),
                Err(ConfigError::Name { .. })
            ),
            "{name:?}"
        );
    }
    assert!(check_domain_name("small-1").is_ok());
    assert!(check_domain_name("1a").is_ok());
}

/// Applies `change` to the seed example and returns the error it renders to.
fn refused(change: impl FnOnce(&mut DomainSpec, &mut Vec<String>)) -> ConfigError {
    let mut spec = small_1();
    let mut targets = targets();
    change(&mut spec, &mut targets);
    render(&spec, &targets, &RenderOptions::default()).expect_err("a hostile value was rendered")
}

#[test]
fn hostile_strings_are_refused_not_escaped() {
    let unsafe_what = |e: ConfigError| match e {
        ConfigError::Unsafe { what, .. } => what,
        other => panic!("expected Unsafe, got {other:?}"),
    };
    assert_eq!(
        unsafe_what(refused(
            |s, _| s.boot.cmdline = Some("quiet\" kernel = \"/evil".into())
        )),
        "a double quote"
    );
    assert_eq!(
        unsafe_what(refused(|s, _| s.boot.cmdline = Some("a\\nb".into()))),
        "a backslash"
    );
    assert_eq!(
        unsafe_what(refused(
            |s, _| s.boot.root = Some("/dev/sda1\nkernel = /evil".into())
        )),
        "a control character (newline, tab, NUL …)"
    );
    assert_eq!(
        unsafe_what(refused(
            |s, _| s.boot.kernel = Some("/boot/vm\u{0}linuz".into())
        )),
        "a control character (newline, tab, NUL …)"
    );
    assert_eq!(
        unsafe_what(refused(|_, t| t[1] = "/img,vdev=xvdz".into())),
        "a comma"
    );
    assert_eq!(
        unsafe_what(refused(|_, t| t[1] = "/img=x".into())),
        "an equals sign"
    );
    assert_eq!(
        unsafe_what(refused(|_, t| t[1] = "/my image.img".into())),
        "white space"
    );
    assert_eq!(
        unsafe_what(refused(|_, t| t[1] = "/it's.img".into())),
        "a single quote"
    );
    assert_eq!(
        unsafe_what(refused(
            |s, _| s.networks[0].bridge = "xenbr0, script=/evil".into()
        )),
        "a comma"
    );
    assert_eq!(
        unsafe_what(refused(|s, _| s.networks[0].bridge = "br=0".into())),
        "an equals sign"
    );
}

#[test]
fn invalid_values_are_refused_with_their_field() {
    assert!(matches!(
        refused(|s, _| s.uid = "uid with spaces".into()),
        ConfigError::Uid(_)
    ));
    assert!(matches!(
        refused(|s, _| s.uid = "x\n".into()),
        ConfigError::Uid(_)
    ));
    assert!(matches!(
        refused(|s, _| s.vcpus = 0),
        ConfigError::OutOfRange { field: "vcpus", .. }
    ));
    assert!(matches!(
        refused(|s, _| s.memory_mib = 8),
        ConfigError::OutOfRange {
            field: "memoryMiB",
            ..
        }
    ));
    assert!(matches!(
        refused(|s, _| s.memory_mib = u64::MAX),
        ConfigError::OutOfRange { .. }
    ));
    assert!(matches!(
        refused(|s, _| s.boot.kernel = Some("vmlinuz".into())),
        ConfigError::Invalid { .. }
    ));
    assert!(matches!(
        refused(|_, t| t[0] = "relative/link".into()),
        ConfigError::Invalid { .. }
    ));
    assert!(matches!(
        refused(|s, _| s.networks[0].mac = Some("01:00:5e:00:00:01".into())),
        ConfigError::Invalid { .. }
    ));
    assert!(matches!(
        refused(|s, _| s.networks[0].mac = Some("zz".into())),
        ConfigError::Invalid { .. }
    ));
    assert!(matches!(
        refused(|s, _| s.disks[0].target = Some("vda".into())),
        ConfigError::Invalid { .. }
    ));
    assert!(matches!(
        refused(|s, _| s.disks[0].target = Some("xvd1".into())),
        ConfigError::Invalid { .. }
    ));
    assert!(matches!(
        refused(|s, _| s.disks[1].target = Some("sda1".into())),
        ConfigError::DuplicateVdev(_)
    ));
    assert!(matches!(
        refused(|_, t| t.truncate(1)),
        ConfigError::TargetCount { .. }
    ));
    assert!(matches!(
        refused(|s, t| {
            s.boot = Boot::default();
            s.disks.clear();
            t.clear();
        }),
        ConfigError::NothingToBoot
    ));
    assert!(matches!(
        refused(|s, _| s.boot.disk = Some("nope".into())),
        ConfigError::UnknownBootDisk(_)
    ));
    assert!(matches!(
        refused(|s, t| {
            s.disks = (0..27)
                .map(|i| disk(&format!("d{i}"), DiskSource::Path(format!("/d{i}")), None))
                .collect();
            *t = (0..27).map(|i| format!("/d{i}")).collect();
        }),
        ConfigError::TooManyDisks(27)
    ));
}

#[test]
fn errors_read_as_sentences() {
    let message = refused(|s, _| s.boot.cmdline = Some("a\"b".into())).to_string();
    assert_eq!(
        message,
        "extra \"a\\\"b\" cannot be written into xl.cfg: it contains a double quote"
    );
}
