//! `herdctl up --netns`: a QEMU lab whose agents each run in a network namespace of their own.
//! The guest's disk is made by the lab's storage role (ferby) from the `counter` test guest in
//! its library and exported on ferby's namespace address. A live migration between the nodes
//! must go to the target's address — which exists only inside the target's namespace — so the
//! guest's memory crosses the lab's veth links and bridge; afterwards exactly one QEMU runs, in
//! the target's namespace, and `herdctl down` removes every process (NBD servers included),
//! namespace and the bridge.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod lab_common;

use lab_common::{Down, herdctl, processes_with, text};

/// One node as `up` printed it: name, address, namespace.
#[derive(Debug)]
struct Link {
    node: String,
    address: IpAddr,
    namespace: String,
}

/// The `  ferby  10.x.y.10  ip netns exec herd-…-ferby` lines of `up`.
fn links(up: &str) -> Vec<Link> {
    up.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [node, address, "ip", "netns", "exec", namespace] => Some(Link {
                    node: node.to_string(),
                    address: address.parse().ok()?,
                    namespace: namespace.to_string(),
                }),
                _ => None,
            }
        })
        .collect()
}

/// The host's address on the lab bridge: `.1` of the nodes' /24.
fn host_address(links: &[Link]) -> IpAddr {
    let IpAddr::V4(node) = links[0].address else {
        panic!("IPv4 lab addresses")
    };
    let [a, b, c, _] = node.octets();
    IpAddr::from([a, b, c, 1])
}

/// The network namespace of a process or of a named namespace, as `(device, inode)`.
fn namespace_of(path: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.dev(), meta.ino())
}

/// Live QEMU processes whose command line names `needle`, with their command lines.
fn qemus(needle: &str) -> Vec<(u32, String)> {
    processes_with(&["qemu-system", needle])
}

fn wait_for(what: &str, seconds: u64, mut check: impl FnMut() -> Option<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < deadline, "{what} within {seconds} s");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The guest and its disk: a Volume copied from the `counter` test guest in the storage host's
/// library and exported over NBD (every node reaches ferby's address through the bridge).
const COUNTER: &str = "apiVersion: herd.dev/v1alpha1\nkind: Volume\nmetadata: {name: counter-disk}\n\
spec:\n  sizeMiB: 1\n  format: raw\n  image: {library: {name: counter.img}}\n  export: {protocol: nbd}\n\
---\napiVersion: herd.dev/v1alpha1\nkind: VirtualMachine\nmetadata: {name: counter}\nspec:\n  \
memoryMiB: 32\n  boot: {disk: root}\n  disks:\n  - {name: root, volume: counter-disk}\n";

#[tokio::test(flavor = "multi_thread")]
async fn with_netns_a_migration_crosses_the_link_to_the_targets_namespace() {
    // SAFETY: geteuid(2) has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test builds network namespaces: run it as root (CI does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let _down = Down(root);
    let up = herdctl(root, &["up", "--driver", "qemu", "--nodes", "2", "--netns"]);
    assert!(up.status.success(), "{}", text(&up));
    let links = links(&text(&up));
    assert_eq!(
        links.len(),
        2,
        "up lists both nodes' addresses: {}",
        text(&up)
    );
    let (ferby, gerby) = (&links[0], &links[1]);
    assert_eq!(
        (ferby.node.as_str(), gerby.node.as_str()),
        ("ferby", "gerby")
    );
    let host = host_address(&links);

    // Each node's address exists only inside its own namespace.
    let ip = |args: &[&str]| text(&Command::new("ip").args(args).output().unwrap());
    let inside_gerby = ip(&["-n", &gerby.namespace, "-br", "addr"]);
    assert!(
        inside_gerby.contains(&gerby.address.to_string()),
        "{inside_gerby}"
    );
    let inside_ferby = ip(&["-n", &ferby.namespace, "-br", "addr"]);
    assert!(
        !inside_ferby.contains(&gerby.address.to_string()),
        "{inside_ferby}"
    );
    assert!(!ip(&["-br", "addr"]).contains(&gerby.address.to_string()));

    let manifest = root.join("counter.yaml");
    std::fs::write(&manifest, COUNTER).unwrap();
    let apply = herdctl(root, &["apply", "-f", manifest.to_str().unwrap()]);
    assert!(apply.status.success(), "{}", text(&apply));
    let lab = root.join("lab");
    let exported = wait_for("the disk exported by ferby", 60, || {
        let volume = text(&herdctl(
            root,
            &["get", "volume", "counter-disk", "-o", "yaml"],
        ));
        volume.contains("endpoint:").then_some(volume)
    });
    assert!(
        exported.contains(&format!("nbd://{}:", ferby.address)),
        "the storage role exports on ferby's namespace address: {exported}"
    );
    let needle = format!("{}/nodes/", lab.display());
    let vms = wait_for("counter running", 90, || {
        let vms = text(&herdctl(root, &["get", "vms"]));
        vms.contains("Running").then_some(vms)
    });
    let (source, target) = if vms.contains("ferby") {
        (ferby, gerby)
    } else {
        (gerby, ferby)
    };
    let before = qemus(&needle);
    assert_eq!(before.len(), 1, "{before:#?}");
    assert_eq!(
        namespace_of(&PathBuf::from(format!("/proc/{}/ns/net", before[0].0))),
        namespace_of(&PathBuf::from(format!("/run/netns/{}", source.namespace))),
        "the guest runs in {}'s namespace",
        source.node
    );

    let migrate = herdctl(root, &["migrate", "counter", "--to", &target.node]);
    assert!(migrate.status.success(), "{}", text(&migrate));
    let migrations = wait_for("the migration to complete", 120, || {
        let got = text(&herdctl(root, &["get", "migrations"]));
        assert!(!got.contains("Failed"), "{got}");
        got.contains("Completed").then_some(got)
    });

    let after = wait_for("one QEMU left", 30, || {
        let found = qemus(&needle);
        (found.len() == 1).then(|| format!("{}\n{}", found[0].0, found[0].1))
    });
    let (pid, cmdline) = after.split_once('\n').unwrap();
    assert_eq!(
        namespace_of(&PathBuf::from(format!("/proc/{pid}/ns/net"))),
        namespace_of(&PathBuf::from(format!("/run/netns/{}", target.namespace))),
        "the guest now runs in {}'s namespace: {migrations}",
        target.node
    );
    assert!(
        cmdline.contains(&format!("-incoming tcp:{}:", target.address)),
        "the migration came in on {}'s own address: {cmdline}",
        target.node
    );
    let vms = text(&herdctl(root, &["get", "vms"]));
    assert!(
        vms.lines()
            .any(|l| l.contains("counter") && l.contains(&target.node) && l.contains("Running")),
        "{vms}"
    );

    let down = herdctl(root, &["down"]);
    assert!(down.status.success(), "{}", text(&down));
    std::thread::sleep(Duration::from_millis(500));
    assert!(qemus(&needle).is_empty(), "no guest is left");
    let storage = format!("{}/storage/", lab.display());
    assert!(
        processes_with(&["qemu-nbd", &storage]).is_empty(),
        "no NBD server is left"
    );
    let namespaces = ip(&["netns", "list"]);
    for link in &links {
        assert!(
            !namespaces.contains(&link.namespace),
            "down removes {}: {namespaces}",
            link.namespace
        );
    }
    assert!(
        !ip(&["-br", "addr"]).contains(&host.to_string()),
        "down removes the bridge"
    );
}
