//! The scheduler: picks a node for a VM (pure).
//!
//! A node fits when it is ready, not cordoned, matches the VM's pin and node selector, honours
//! VM affinity and anti-affinity, and has room: vCPUs against its CPUs × the overcommit ratio,
//! memory against its capacity less what is already assigned to it. Among the fitting nodes the
//! one with the most free memory (then vCPU room, then name) wins, which spreads load.
//! When no node fits, the reasons are counted per node, as kube-scheduler does:
//! `0/4 nodes are available: 2 unschedulable, 2 lack memory`.

use std::collections::BTreeMap;

use herd_crds::VirtualMachineSpec;

/// What the scheduler knows of one node.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeView {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub ready: bool,
    pub unschedulable: bool,
    pub cpus: u32,
    pub memory_mib: u64,
    /// vCPUs and memory of the VMs already assigned here.
    pub used_vcpus: u64,
    pub used_memory_mib: u64,
    /// Labels of each VM assigned here (for affinity).
    pub vm_labels: Vec<BTreeMap<String, String>>,
}

/// Why a node does not fit; the order is the order of the checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Misfit {
    NotPinned,
    NotReady,
    Unschedulable,
    SelectorMismatch,
    Affinity,
    AntiAffinity,
    LackCpu,
    LackMemory,
}

impl Misfit {
    fn phrase(self) -> &'static str {
        match self {
            Self::NotPinned => "not the pinned node",
            Self::NotReady => "not ready",
            Self::Unschedulable => "unschedulable",
            Self::SelectorMismatch => "do not match the node selector",
            Self::Affinity => "lack the VMs required by affinity",
            Self::AntiAffinity => "run VMs excluded by anti-affinity",
            Self::LackCpu => "lack vCPUs",
            Self::LackMemory => "lack memory",
        }
    }
}

/// The outcome of scheduling one VM.
#[derive(Clone, Debug, PartialEq)]
pub enum Placement {
    Node(String),
    Unschedulable { message: String },
}

/// Checks one node for `vm`; `None` when it fits.
pub fn misfit(vm: &VirtualMachineSpec, node: &NodeView, overcommit: f64) -> Option<Misfit> {
    let has_label = |key: &String, value: &String| node.labels.get(key) == Some(value);
    let matches_vm = |selector: &herd_crds::selector::LabelSelector| {
        node.vm_labels.iter().any(|l| selector.matches(l))
    };
    if vm.node_name.as_ref().is_some_and(|pin| pin != &node.name) {
        Some(Misfit::NotPinned)
    } else if !node.ready {
        Some(Misfit::NotReady)
    } else if node.unschedulable {
        Some(Misfit::Unschedulable)
    } else if !vm.node_selector.iter().all(|(k, v)| has_label(k, v)) {
        Some(Misfit::SelectorMismatch)
    } else if !vm.affinity.vm_affinity.iter().all(matches_vm) {
        Some(Misfit::Affinity)
    } else if vm.affinity.vm_anti_affinity.iter().any(matches_vm) {
        Some(Misfit::AntiAffinity)
    } else if (node.used_vcpus + u64::from(vm.vcpus)) as f64 > f64::from(node.cpus) * overcommit {
        Some(Misfit::LackCpu)
    } else if node.used_memory_mib + vm.memory_mib > node.memory_mib {
        Some(Misfit::LackMemory)
    } else {
        None
    }
}

/// Chooses a node for `vm` among `nodes`.
pub fn schedule(vm: &VirtualMachineSpec, nodes: &[NodeView], overcommit: f64) -> Placement {
    let mut reasons: BTreeMap<Misfit, usize> = BTreeMap::new();
    let mut best: Option<(&NodeView, (u64, u64))> = None;
    for node in nodes {
        match misfit(vm, node, overcommit) {
            Some(reason) => *reasons.entry(reason).or_default() += 1,
            None => {
                let free = (
                    node.memory_mib - node.used_memory_mib - vm.memory_mib,
                    (f64::from(node.cpus) * overcommit) as u64
                        - node
                            .used_vcpus
                            .min((f64::from(node.cpus) * overcommit) as u64),
                );
                let better =
                    best.is_none_or(|(b, bf)| free > bf || (free == bf && node.name < b.name));
                if better {
                    best = Some((node, free));
                }
            }
        }
    }
    match best {
        Some((node, _)) => Placement::Node(node.name.clone()),
        None => Placement::Unschedulable {
            message: explain(nodes.len(), &reasons),
        },
    }
}

/// `0/4 nodes are available: 2 unschedulable, 2 lack memory`.
fn explain(total: usize, reasons: &BTreeMap<Misfit, usize>) -> String {
    if total == 0 {
        return "0/0 nodes are available: no node has registered".to_owned();
    }
    let parts: Vec<String> = reasons
        .iter()
        .map(|(reason, count)| format!("{count} {}", reason.phrase()))
        .collect();
    format!("0/{total} nodes are available: {}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_crds::selector::LabelSelector;

    fn node(name: &str, cpus: u32, memory: u64) -> NodeView {
        NodeView {
            name: name.into(),
            labels: BTreeMap::new(),
            ready: true,
            unschedulable: false,
            cpus,
            memory_mib: memory,
            used_vcpus: 0,
            used_memory_mib: 0,
            vm_labels: Vec::new(),
        }
    }

    fn vm(vcpus: u32, memory: u64) -> VirtualMachineSpec {
        let mut spec: VirtualMachineSpec =
            herd_crds::yaml::from_str(&format!("memoryMiB: {memory}")).unwrap();
        spec.vcpus = vcpus;
        spec
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_node_with_most_free_memory_wins_and_ties_go_by_name() {
        let mut busy = node("ferby", 4, 4096);
        busy.used_memory_mib = 2048;
        let nodes = [busy, node("herby", 4, 4096), node("gerby", 4, 4096)];
        assert_eq!(
            schedule(&vm(1, 512), &nodes, 1.0),
            Placement::Node("gerby".into())
        );
    }

    #[test]
    fn capacity_counts_vcpus_with_overcommit_and_memory() {
        let mut full = node("ferby", 2, 1024);
        full.used_vcpus = 2;
        assert_eq!(misfit(&vm(1, 128), &full, 1.0), Some(Misfit::LackCpu));
        assert_eq!(
            misfit(&vm(1, 128), &full, 2.0),
            None,
            "2 CPUs x 2 = 4 vCPUs"
        );
        assert_eq!(
            misfit(&vm(1, 2048), &node("x", 2, 1024), 1.0),
            Some(Misfit::LackMemory)
        );
    }

    #[test]
    fn cordon_readiness_pin_and_selector_exclude() {
        let mut cordoned = node("a", 4, 4096);
        cordoned.unschedulable = true;
        let mut down = node("b", 4, 4096);
        down.ready = false;
        let mut pinned = vm(1, 128);
        pinned.node_name = Some("c".into());
        assert_eq!(
            misfit(&vm(1, 128), &cordoned, 1.0),
            Some(Misfit::Unschedulable)
        );
        assert_eq!(misfit(&vm(1, 128), &down, 1.0), Some(Misfit::NotReady));
        assert_eq!(
            misfit(&pinned, &node("a", 4, 4096), 1.0),
            Some(Misfit::NotPinned)
        );
        assert_eq!(misfit(&pinned, &node("c", 4, 4096), 1.0), None);
        let mut selective = vm(1, 128);
        selective.node_selector = labels(&[("disk", "ssd")]);
        let mut ssd = node("d", 4, 4096);
        ssd.labels = labels(&[("disk", "ssd")]);
        assert_eq!(
            misfit(&selective, &node("a", 4, 4096), 1.0),
            Some(Misfit::SelectorMismatch)
        );
        assert_eq!(misfit(&selective, &ssd, 1.0), None);
    }

    #[test]
    fn affinity_and_anti_affinity_look_at_the_vms_already_there() {
        let web = LabelSelector {
            match_labels: labels(&[("app", "web")]),
            ..Default::default()
        };
        let mut with_web = node("a", 4, 4096);
        with_web.vm_labels.push(labels(&[("app", "web")]));
        let mut avoid = vm(1, 128);
        avoid.affinity.vm_anti_affinity.push(web.clone());
        let mut join = vm(1, 128);
        join.affinity.vm_affinity.push(web);
        assert_eq!(misfit(&avoid, &with_web, 1.0), Some(Misfit::AntiAffinity));
        assert_eq!(misfit(&avoid, &node("b", 4, 4096), 1.0), None);
        assert_eq!(misfit(&join, &with_web, 1.0), None);
        assert_eq!(
            misfit(&join, &node("b", 4, 4096), 1.0),
            Some(Misfit::Affinity)
        );
    }

    #[test]
    fn failure_explains_every_node() {
        let mut cordoned = node("a", 4, 4096);
        cordoned.unschedulable = true;
        let mut also = node("b", 4, 4096);
        also.unschedulable = true;
        let nodes = [cordoned, also, node("c", 4, 256), node("d", 4, 256)];
        assert_eq!(
            schedule(&vm(1, 512), &nodes, 1.0),
            Placement::Unschedulable {
                message: "0/4 nodes are available: 2 unschedulable, 2 lack memory".into()
            }
        );
        assert!(
            matches!(schedule(&vm(1, 512), &[], 1.0), Placement::Unschedulable { message } if message.contains("0/0"))
        );
    }
}
