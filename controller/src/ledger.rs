//! The ledger: which VM is assigned to which node and what each node has left.
//!
//! Built from the assignment cache when leadership is won, then kept by the controller itself
//! as it places and releases VMs (it is the only writer of assignments), so the scheduler sees
//! its own placements at once, before the watch reports them back.

use std::collections::{BTreeSet, HashMap};

use herd_crds::assignment::Assignment;

/// Resources assigned to one node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub vcpus: u64,
    pub memory_mib: u64,
    pub vms: BTreeSet<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    node: String,
    vcpus: u64,
    memory_mib: u64,
}

/// Assignments by VM and usage by node.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    by_vm: HashMap<String, Entry>,
    by_node: HashMap<String, Usage>,
    /// Room held on the target of a live migration (the VM also still counts on its source).
    incoming: HashMap<String, Entry>,
}

impl Ledger {
    /// A ledger of `(node, assignment)` pairs.
    pub fn from_assignments<'a>(
        assignments: impl IntoIterator<Item = (&'a str, &'a Assignment)>,
    ) -> Self {
        let mut ledger = Self::default();
        for (node, assignment) in assignments {
            ledger.assign(
                &assignment.domain.name,
                node,
                assignment.domain.vcpus,
                assignment.domain.memory_mib,
            );
        }
        ledger
    }

    /// Records `vm` on `node` (moving it if it was elsewhere).
    pub fn assign(&mut self, vm: &str, node: &str, vcpus: u32, memory_mib: u64) {
        self.release(vm);
        let entry = Entry {
            node: node.to_owned(),
            vcpus: u64::from(vcpus),
            memory_mib,
        };
        let usage = self.by_node.entry(node.to_owned()).or_default();
        usage.vcpus += entry.vcpus;
        usage.memory_mib += entry.memory_mib;
        usage.vms.insert(vm.to_owned());
        self.by_vm.insert(vm.to_owned(), entry);
    }

    /// Forgets `vm`; returns the node it was on.
    pub fn release(&mut self, vm: &str) -> Option<String> {
        let entry = self.by_vm.remove(vm)?;
        if let Some(usage) = self.by_node.get_mut(&entry.node) {
            usage.vcpus -= entry.vcpus;
            usage.memory_mib -= entry.memory_mib;
            usage.vms.remove(vm);
        }
        Some(entry.node)
    }

    /// vCPUs and memory assigned to `node`, incoming migrations included (without copying its
    /// VM list).
    pub fn totals(&self, node: &str) -> (u64, u64) {
        let (mut vcpus, mut memory) = self
            .by_node
            .get(node)
            .map_or((0, 0), |u| (u.vcpus, u.memory_mib));
        for entry in self.incoming.values().filter(|e| e.node == node) {
            vcpus += entry.vcpus;
            memory += entry.memory_mib;
        }
        (vcpus, memory)
    }

    /// Holds room for `vm` on `node`, the target of its live migration.
    pub fn reserve_incoming(&mut self, vm: &str, node: &str, vcpus: u32, memory_mib: u64) {
        let entry = Entry {
            node: node.to_owned(),
            vcpus: u64::from(vcpus),
            memory_mib,
        };
        self.incoming.insert(vm.to_owned(), entry);
    }

    /// Drops the room held for `vm`'s migration (it was aborted or has completed).
    pub fn drop_incoming(&mut self, vm: &str) {
        self.incoming.remove(vm);
    }

    /// The migration of `vm` completed: it now counts on its target only.
    pub fn complete_incoming(&mut self, vm: &str) {
        if let Some(entry) = self.incoming.remove(vm) {
            let node = entry.node.clone();
            self.assign(vm, &node, entry.vcpus as u32, entry.memory_mib);
        }
    }

    pub fn usage(&self, node: &str) -> Usage {
        self.by_node.get(node).cloned().unwrap_or_default()
    }

    pub fn node_of(&self, vm: &str) -> Option<&str> {
        self.by_vm.get(vm).map(|e| e.node.as_str())
    }

    /// VMs recorded on `node`.
    pub fn vms_on(&self, node: &str) -> impl Iterator<Item = &String> {
        self.by_node
            .get(node)
            .into_iter()
            .flat_map(|u| u.vms.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assigning_moving_and_releasing_keep_usage_exact() {
        let mut ledger = Ledger::default();
        ledger.assign("a", "ferby", 2, 512);
        ledger.assign("b", "ferby", 1, 256);
        assert_eq!(
            (
                ledger.usage("ferby").vcpus,
                ledger.usage("ferby").memory_mib
            ),
            (3, 768)
        );
        ledger.assign("a", "gerby", 2, 512);
        assert_eq!(ledger.usage("ferby").memory_mib, 256);
        assert_eq!(ledger.node_of("a"), Some("gerby"));
        assert_eq!(ledger.release("b").as_deref(), Some("ferby"));
        assert_eq!(ledger.usage("ferby"), Usage::default());
        assert_eq!(ledger.release("b"), None);
    }

    #[test]
    fn a_migrating_vm_counts_on_both_nodes_until_it_lands() {
        let mut ledger = Ledger::default();
        ledger.assign("a", "ferby", 2, 512);
        ledger.reserve_incoming("a", "herby", 2, 512);
        assert_eq!(
            (ledger.totals("ferby"), ledger.totals("herby")),
            ((2, 512), (2, 512))
        );
        ledger.complete_incoming("a");
        assert_eq!(
            (ledger.totals("ferby"), ledger.totals("herby")),
            ((0, 0), (2, 512))
        );
        assert_eq!(ledger.node_of("a"), Some("herby"));
        ledger.reserve_incoming("a", "gerby", 2, 512);
        ledger.drop_incoming("a");
        assert_eq!(ledger.totals("gerby"), (0, 0));
    }
}
