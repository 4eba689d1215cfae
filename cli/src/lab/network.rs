//! The lab's network with `--netns` (pure): one network namespace per node, joined to this
//! machine by a bridge.
//!
//! Each node's agent (and the QEMU guests it starts) runs in its own namespace `herd-<id>-<node>`
//! whose only interface, `eth0`, is one end of a veth pair; the other end is enslaved to the
//! bridge `hlab<id>` in the root namespace, which holds the host address `10.<a>.<b>.1/24`.
//! Node `i` gets `10.<a>.<b>.<10+i>`, an address that exists only inside its namespace. etcd
//! listens on the host address too, so agents reach it across their link; a live migration from
//! one node to another goes out of one namespace, over the bridge, and into the other — a real
//! network path, not loopback.
//!
//! `<id>` is derived from the lab directory, so two labs in different directories get
//! different names and subnets (barring a hash collision, which setup reports as "exists").
//! This module only plans: the names, the addresses, and the `ip` command lines that build and
//! remove it all; `herdctl up` and `down` (the parent module) run them.

use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The first host number given to nodes in the lab's subnet.
const FIRST_NODE_HOST: u8 = 10;

/// One node's namespace and link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeLink {
    pub node: String,
    /// The network namespace (`ip netns` name).
    pub namespace: String,
    /// The root-namespace end of the veth pair, on the bridge.
    pub veth: String,
    /// The node's address, on `eth0` inside its namespace.
    pub address: Ipv4Addr,
}

/// The whole lab network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabNetwork {
    pub bridge: String,
    /// This machine's address on the bridge: etcd and test NBD exports listen here.
    pub host_address: Ipv4Addr,
    pub links: Vec<NodeLink>,
}

/// A short id of the lab directory (FNV-1a of its path, 16 bits).
fn lab_id(dir: &Path) -> u16 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in dir.as_os_str().as_encoded_bytes() {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    (hash ^ (hash >> 16)) as u16
}

/// The network of a lab in `dir` with these nodes (at most 200 of them).
pub fn plan(dir: &Path, nodes: &[String]) -> LabNetwork {
    let id = lab_id(dir);
    let [high, low] = id.to_be_bytes();
    // 10.64.0.0 – 10.127.255.0: away from the 10.0.x.x of QEMU's user networking and
    // the usual 10.0/10.1 of container and VPN networks.
    let subnet = |host: u8| Ipv4Addr::new(10, 64 + (high & 0x3f), low, host);
    LabNetwork {
        bridge: format!("hlab{id:04x}"),
        host_address: subnet(1),
        links: nodes
            .iter()
            .enumerate()
            .map(|(index, node)| NodeLink {
                node: node.clone(),
                namespace: format!("herd-{id:04x}-{node}"),
                veth: format!("h{id:04x}n{index}"),
                address: subnet(FIRST_NODE_HOST + index as u8),
            })
            .collect(),
    }
}

impl LabNetwork {
    /// The link of `node`.
    pub fn link(&self, node: &str) -> Option<&NodeLink> {
        self.links.iter().find(|link| link.node == node)
    }

    /// The `ip` commands (arguments after `ip`) that build the network, in order.
    pub fn setup_commands(&self) -> Vec<Vec<String>> {
        let host = format!("{}/24", self.host_address);
        let mut commands = vec![
            args(&["link", "add", &self.bridge, "type", "bridge"]),
            args(&["addr", "add", &host, "dev", &self.bridge]),
            args(&["link", "set", &self.bridge, "up"]),
        ];
        for link in &self.links {
            let ns = link.namespace.as_str();
            let address = format!("{}/24", link.address);
            commands.extend([
                args(&["netns", "add", ns]),
                args(&[
                    "link", "add", &link.veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
                ]),
                args(&["link", "set", &link.veth, "master", &self.bridge, "up"]),
                args(&["-n", ns, "addr", "add", &address, "dev", "eth0"]),
                args(&["-n", ns, "link", "set", "eth0", "up"]),
                args(&["-n", ns, "link", "set", "lo", "up"]),
            ]);
        }
        commands
    }

    /// The `ip` commands that remove it. Deleting a namespace deletes its `eth0` and so the
    /// veth's other end; each may fail harmlessly when already gone.
    pub fn teardown_commands(&self) -> Vec<Vec<String>> {
        let mut commands: Vec<Vec<String>> = self
            .links
            .iter()
            .map(|link| args(&["netns", "delete", &link.namespace]))
            .collect();
        commands.push(args(&["link", "delete", &self.bridge]));
        commands
    }

    /// The command line that runs `program args…` inside `node`'s namespace.
    pub fn wrap(&self, node: &str, program: &Path, program_args: &[String]) -> Option<Vec<String>> {
        let link = self.link(node)?;
        let mut line = args(&["netns", "exec", &link.namespace]);
        line.push(program.display().to_string());
        line.extend(program_args.iter().cloned());
        Some(line)
    }
}

fn args(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|part| part.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes() -> Vec<String> {
        ["ferby", "gerby", "herby"].map(String::from).to_vec()
    }

    #[test]
    fn each_node_gets_its_own_namespace_and_address_on_one_subnet() {
        let network = plan(Path::new("/root/.lab"), &nodes());
        let host = network.host_address.octets();
        assert_eq!((host[0], host[3]), (10, 1));
        assert!((64..128).contains(&host[1]), "{host:?}");
        let addresses: Vec<[u8; 4]> = network.links.iter().map(|l| l.address.octets()).collect();
        for (index, address) in addresses.iter().enumerate() {
            assert_eq!(address[..3], host[..3], "same /24 as the bridge");
            assert_eq!(address[3], 10 + index as u8);
        }
        assert_eq!(network.link("gerby").unwrap().address.octets()[3], 11);
        assert!(network.link("nobody").is_none());
    }

    #[test]
    fn names_fit_linux_interface_names_and_differ_between_labs() {
        let one = plan(Path::new("/tmp/a/lab"), &nodes());
        let other = plan(Path::new("/tmp/b/lab"), &nodes());
        assert_ne!(one.bridge, other.bridge);
        assert_ne!(one.links[0].namespace, other.links[0].namespace);
        for link in &one.links {
            assert!(link.veth.len() <= 15, "{}", link.veth);
            assert!(link.namespace.contains(&link.node));
        }
        assert!(one.bridge.len() <= 15);
        assert_eq!(
            one,
            plan(Path::new("/tmp/a/lab"), &nodes()),
            "deterministic"
        );
    }

    #[test]
    fn setup_builds_the_bridge_first_and_every_link_teardown_removes_them() {
        let network = plan(Path::new("/lab"), &nodes());
        let setup = network.setup_commands();
        assert_eq!(setup[0][..2], ["link", "add"]);
        assert_eq!(setup.len(), 3 + 6 * 3);
        let veth = &network.links[2].veth;
        assert!(
            setup
                .iter()
                .any(|c| c.contains(veth) && c.contains(&"master".to_string()))
        );
        let teardown = network.teardown_commands();
        assert_eq!(teardown.len(), 4);
        assert_eq!(
            teardown.last().unwrap(),
            &args(&["link", "delete", &network.bridge])
        );
    }

    #[test]
    fn agents_are_wrapped_in_their_namespace() {
        let network = plan(Path::new("/lab"), &nodes());
        let line = network
            .wrap(
                "herby",
                Path::new("/bin/herd-agent"),
                &["--node=herby".into()],
            )
            .unwrap();
        assert_eq!(
            line,
            [
                "netns",
                "exec",
                network.links[2].namespace.as_str(),
                "/bin/herd-agent",
                "--node=herby"
            ]
        );
    }
}
