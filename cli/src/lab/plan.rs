//! What a lab is made of (pure): node names, the driver, and each process's command line.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::network::LabNetwork;

/// The seed's hosts first, then more in the same style.
const NODE_NAMES: [&str; 14] = [
    "ferby", "gerby", "herby", "jerby", "kerby", "lerby", "merby", "nerby", "perby", "rerby",
    "serby", "terby", "verby", "werby",
];

/// The hypervisor the lab's agents drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LabDriver {
    /// Real QEMU guests (KVM when /dev/kvm works, else TCG).
    Qemu,
    /// Simulated hosts with modelled CPU load, all in one agent process.
    Sim,
}

/// The names of `count` lab nodes.
pub fn node_names(count: usize) -> Result<Vec<String>, String> {
    if count == 0 || count > NODE_NAMES.len() {
        return Err(format!(
            "--nodes must be between 1 and {} (got {count})",
            NODE_NAMES.len()
        ));
    }
    Ok(NODE_NAMES[..count].iter().map(|n| n.to_string()).collect())
}

/// The driver to use: the one asked for, else qemu when QEMU is installed, else sim.
pub fn choose_driver(asked: Option<LabDriver>, qemu_installed: bool) -> (LabDriver, &'static str) {
    match asked {
        Some(driver) => (driver, "as asked"),
        None if qemu_installed => (LabDriver::Qemu, "qemu-system-x86_64 is installed"),
        None => (LabDriver::Sim, "qemu-system-x86_64 is not installed"),
    }
}

/// Ports and addresses of a lab.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ports {
    pub etcd_client: u16,
    pub etcd_peer: u16,
    pub metrics: u16,
}

impl Ports {
    /// etcd's client URL on loopback (the controller and herdctl use it).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.etcd_client)
    }

    /// etcd's client URL as agents reach it: across the lab network when there is one.
    pub fn agent_endpoint(&self, network: Option<&LabNetwork>) -> String {
        match network {
            Some(network) => format!("http://{}:{}", network.host_address, self.etcd_client),
            None => self.endpoint(),
        }
    }
}

/// One process of the lab: a name for its pid and log files, and its command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabProcess {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
}

/// etcd with its data under `dir`, listening on loopback and on the lab network if any.
pub fn etcd(etcd: &Path, dir: &Path, ports: &Ports, network: Option<&LabNetwork>) -> LabProcess {
    let client = ports.endpoint();
    let listen = match network {
        Some(_) => format!("{client},{}", ports.agent_endpoint(network)),
        None => client.clone(),
    };
    let peer = format!("http://127.0.0.1:{}", ports.etcd_peer);
    LabProcess {
        name: "etcd".into(),
        program: etcd.to_owned(),
        args: vec![
            "--name=herd-lab".into(),
            format!("--data-dir={}", dir.join("etcd").display()),
            format!("--listen-client-urls={listen}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster=herd-lab={peer}"),
        ],
    }
}

/// The controller.
pub fn controller(binary: &Path, ports: &Ports) -> LabProcess {
    LabProcess {
        name: "controller".into(),
        program: binary.to_owned(),
        args: vec![
            format!("--etcd={}", ports.endpoint()),
            format!("--listen=127.0.0.1:{}", ports.metrics),
            "--identity=lab-controller".into(),
        ],
    }
}

/// The `ip` program that runs agents inside their namespaces.
const IP: &str = "ip";

/// Where the lab's storage role keeps volumes, exports and its image library.
pub fn storage_dir(dir: &Path) -> PathBuf {
    dir.join("storage")
}

/// The storage host's image library (`image.library` of a Volume names files here).
pub fn library_dir(dir: &Path) -> PathBuf {
    storage_dir(dir).join("library")
}

/// The agents: one per node with QEMU, one for all nodes with the simulator. With a lab
/// network (QEMU only) each agent runs inside its node's namespace, reaches etcd across its
/// link and offers migrations on its own address. With QEMU the first node's agent is also
/// the storage host (`--storage`): it makes the Volumes and exports them over NBD on its own
/// address, which every node reaches.
pub fn agents(
    binary: &Path,
    dir: &Path,
    ports: &Ports,
    driver: LabDriver,
    nodes: &[String],
    network: Option<&LabNetwork>,
) -> Vec<LabProcess> {
    let common = |node: &str| {
        vec![
            format!("--etcd={}", ports.agent_endpoint(network)),
            format!("--node={node}"),
        ]
    };
    match driver {
        LabDriver::Qemu => nodes
            .iter()
            .enumerate()
            .map(|(index, node)| {
                let mut args = common(node);
                args.extend([
                    "--driver=qemu".into(),
                    format!("--state-dir={}", dir.join("nodes").join(node).display()),
                ]);
                if index == 0 {
                    args.extend([
                        "--storage".into(),
                        format!("--storage-dir={}", storage_dir(dir).display()),
                    ]);
                }
                let link = network.and_then(|network| network.link(node));
                if let Some(link) = link {
                    args.push(format!("--address={}", link.address));
                }
                let (program, args) = match network.and_then(|n| n.wrap(node, binary, &args)) {
                    Some(wrapped) => (PathBuf::from(IP), wrapped),
                    None => (binary.to_owned(), args),
                };
                LabProcess {
                    name: format!("agent-{node}"),
                    program,
                    args,
                }
            })
            .collect(),
        LabDriver::Sim => {
            let mut args = common(&nodes[0]);
            args.extend([
                "--driver=sim".into(),
                format!("--sim-hosts={}", nodes.join(",")),
            ]);
            vec![LabProcess {
                name: "agent-sim".into(),
                program: binary.to_owned(),
                args,
            }]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PORTS: Ports = Ports {
        etcd_client: 2379,
        etcd_peer: 2380,
        metrics: 3,
    };

    /// The agents of a lab in `/lab` with the agent binary at `/bin/herd-agent`.
    fn planned(
        driver: LabDriver,
        nodes: &[String],
        network: Option<&LabNetwork>,
    ) -> Vec<LabProcess> {
        let binary = Path::new("/bin/herd-agent");
        agents(binary, Path::new("/lab"), &PORTS, driver, nodes, network)
    }

    #[test]
    fn nodes_are_named_like_the_seeds_hosts() {
        assert_eq!(node_names(3).unwrap(), ["ferby", "gerby", "herby"]);
        assert!(node_names(0).unwrap_err().contains("--nodes"));
        assert!(node_names(99).is_err());
    }

    #[test]
    fn the_driver_defaults_to_qemu_when_installed() {
        assert_eq!(choose_driver(None, true).0, LabDriver::Qemu);
        assert_eq!(choose_driver(None, false).0, LabDriver::Sim);
        assert_eq!(choose_driver(Some(LabDriver::Sim), true).0, LabDriver::Sim);
    }

    #[test]
    fn one_qemu_agent_per_node_or_one_simulator_for_all() {
        let nodes = node_names(3).unwrap();
        let qemu = planned(LabDriver::Qemu, &nodes, None);
        assert_eq!(qemu.len(), 3);
        assert!(
            qemu[1]
                .args
                .contains(&"--state-dir=/lab/nodes/gerby".to_string())
        );
        let storage = "--storage-dir=/lab/storage".to_string();
        assert!(qemu[0].args.contains(&"--storage".to_string()) && qemu[0].args.contains(&storage));
        assert!(
            qemu[1..]
                .iter()
                .all(|agent| !agent.args.iter().any(|a| a.starts_with("--storage"))),
            "one storage host: ferby"
        );
        let sim = planned(LabDriver::Sim, &nodes, None);
        assert_eq!(sim.len(), 1);
        assert!(
            sim[0]
                .args
                .contains(&"--sim-hosts=ferby,gerby,herby".to_string())
        );
    }

    #[test]
    fn with_a_network_agents_run_in_their_namespace_and_reach_etcd_across_it() {
        let nodes = node_names(2).unwrap();
        let network = super::super::network::plan(Path::new("/lab"), &nodes);
        let agents = planned(LabDriver::Qemu, &nodes, Some(&network));
        let gerby = &agents[1];
        assert_eq!(gerby.program, PathBuf::from("ip"));
        assert_eq!(
            gerby.args[..3],
            ["netns", "exec", network.links[1].namespace.as_str()]
        );
        let host = network.host_address;
        assert!(gerby.args.contains(&format!("--etcd=http://{host}:2379")));
        assert!(
            gerby
                .args
                .contains(&format!("--address={}", network.links[1].address))
        );
        let etcd = etcd(
            Path::new("/bin/etcd"),
            Path::new("/lab"),
            &PORTS,
            Some(&network),
        );
        assert!(etcd.args.contains(&format!(
            "--listen-client-urls=http://127.0.0.1:2379,http://{host}:2379"
        )));
    }
}
