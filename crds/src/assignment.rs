//! `Assignment`: what the controller tells one node to run (`<prefix>/assignments/<node>/<vm>`).
//!
//! It is the VM rendered for a node: every reference resolved (volumes to NBD endpoints or
//! paths), nothing left for the agent to look up. The agent reconciles its hypervisor to the
//! assignments under its own node and nothing else; it validates each one as hostile input.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::names;
use crate::validation::{FieldErrors, FieldPath, Validate};
use crate::virtual_machine::{
    Boot, MigrationPolicy, Network, RunState, check_host_path, check_text,
};

/// A VM as one node must run it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Assignment {
    /// The VM's `metadata.generation` this was rendered from.
    pub generation: u64,
    pub run_state: RunState,
    pub domain: DomainSpec,
    /// Set while a live migration moves the VM onto or off this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<MigrationRole>,
}

/// The hypervisor-neutral description of a domain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DomainSpec {
    /// The VM's name, which is also the domain's name.
    pub name: String,
    /// The VM's uid: tells a domain of this VM from one of an earlier VM of the same name.
    pub uid: String,
    pub vcpus: u32,
    #[serde(rename = "memoryMiB")]
    pub memory_mib: u64,
    #[serde(default)]
    pub boot: Boot,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<DomainDisk>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<Network>,
    #[serde(default)]
    pub migration: MigrationPolicy,
}

/// A disk with its source resolved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DomainDisk {
    pub name: String,
    pub source: DiskSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default)]
    pub read_only: bool,
}

/// Where a disk's bytes are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum DiskSource {
    /// A file or device on this node: the VM cannot migrate.
    Path(String),
    /// An NBD export reachable from every node, such as `nbd://10.0.0.1:10809/small-1-disk`.
    Nbd(String),
}

impl DiskSource {
    /// Whether every node can open this disk (so the VM may migrate).
    pub fn is_shared(&self) -> bool {
        matches!(self, Self::Nbd(_))
    }
}

/// This node's part in a live migration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum MigrationRole {
    /// Prepare to receive the VM (the agent reports its endpoint in the VM's status).
    Incoming { migration: String },
    /// Send the VM to `endpoint`, prepared by the target.
    Outgoing {
        migration: String,
        endpoint: String,
        target_node: String,
        /// Bandwidth cap in MiB/s; absent for none.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            rename = "bandwidthMiBps"
        )]
        bandwidth_mibps: Option<f64>,
    },
}

/// Checks that `uri` is `nbd://host[:port]/export` with nothing that could break a command line.
fn check_nbd_uri(uri: &str, path: FieldPath, errors: &mut FieldErrors) {
    let ok = uri.strip_prefix("nbd://").is_some_and(|rest| {
        let (authority, export) = rest.split_once('/').unwrap_or((rest, ""));
        !authority.is_empty()
            && authority
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
            && export
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    });
    errors.check(
        ok,
        path,
        format!("{uri:?} must be nbd://HOST[:PORT]/EXPORT"),
    );
}

impl Validate for Assignment {
    fn validate_into(&self, path: &FieldPath, errors: &mut FieldErrors) {
        self.domain.validate_into(&path.child("domain"), errors);
        if let Some(MigrationRole::Outgoing {
            endpoint,
            target_node,
            ..
        }) = &self.migration
        {
            let at = path.child("migration");
            check_text(endpoint, at.child("endpoint"), errors);
            names::check_reference(target_node, &at.child("targetNode"), errors);
        }
    }
}

impl Validate for DomainSpec {
    fn validate_into(&self, path: &FieldPath, errors: &mut FieldErrors) {
        names::check_object_name(&self.name, &path.child("name"), errors);
        let uid_ok = !self.uid.is_empty()
            && self.uid.len() <= 64
            && self
                .uid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        errors.check(
            uid_ok,
            path.child("uid"),
            "must be a uid (letters, digits, '-')",
        );
        // The VM rules apply unchanged to what was rendered from it.
        let as_vm = crate::virtual_machine::VirtualMachineSpec {
            run_state: RunState::Running,
            vcpus: self.vcpus,
            memory_mib: self.memory_mib,
            // A boot disk is checked against the resolved disks below, not the VM's.
            boot: Boot {
                disk: None,
                ..self.boot.clone()
            },
            disks: Vec::new(),
            networks: self.networks.clone(),
            node_name: None,
            node_selector: Default::default(),
            affinity: Default::default(),
            priority: 0,
            migration: self.migration.clone(),
        };
        as_vm.validate_into(path, errors);
        for (index, disk) in self.disks.iter().enumerate() {
            let at = path.child("disks").index(index);
            names::check_object_name(&disk.name, &at.child("name"), errors);
            match &disk.source {
                DiskSource::Path(host) => {
                    check_host_path(host, at.child("source").child("path"), errors)
                }
                DiskSource::Nbd(uri) => check_nbd_uri(uri, at.child("source").child("nbd"), errors),
            }
        }
        if let Some(disk) = &self.boot.disk {
            let known = self.disks.iter().any(|d| &d.name == disk);
            errors.check(
                known,
                path.child("boot").child("disk"),
                format!("names no disk (got {disk:?})"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment() -> Assignment {
        crate::yaml::from_str(
            "generation: 1\nrunState: Running\ndomain:\n  name: small-1\n  uid: 0a-1\n  vcpus: 1\n  memoryMiB: 256\n  \
             disks:\n  - name: root\n    source: {nbd: 'nbd://10.0.0.1:10809/small-1-disk'}\n",
        )
        .unwrap()
    }

    #[test]
    fn a_rendered_assignment_validates() {
        let assignment = assignment();
        assert!(
            assignment.validate().is_empty(),
            "{:?}",
            assignment.validate()
        );
        assert!(assignment.domain.disks[0].source.is_shared());
    }

    #[test]
    fn hostile_assignments_are_refused_with_paths() {
        let mut assignment = assignment();
        assignment.domain.name = "x; rm -rf /".into();
        assignment.domain.memory_mib = 1;
        assignment.domain.disks[0].source = DiskSource::Nbd("nbd://h/x y,file=/etc/shadow".into());
        let paths: Vec<String> = assignment.validate().into_iter().map(|e| e.path).collect();
        assert_eq!(
            paths,
            [
                "domain.name",
                "domain.memoryMiB",
                "domain.disks[0].source.nbd"
            ]
        );
    }
}
