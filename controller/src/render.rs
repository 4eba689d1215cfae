//! Renders a `VirtualMachine` into the `Assignment` its node runs (pure).
//!
//! Every reference is resolved here so that the agent needs nothing else: a disk that names a
//! `Volume` becomes that volume's NBD endpoint, which must be ready.

use herd_crds::VirtualMachine;
use herd_crds::assignment::{Assignment, DiskSource, DomainDisk, DomainSpec};

/// Why a VM cannot be rendered yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumesNotReady(pub Vec<String>);

/// Renders `vm` for its node; `volume_endpoint` gives the export of a ready volume.
pub fn render_assignment(
    vm: &VirtualMachine,
    volume_endpoint: impl Fn(&str) -> Option<String>,
) -> Result<Assignment, VolumesNotReady> {
    let mut missing = Vec::new();
    let mut disks = Vec::new();
    for disk in &vm.spec.disks {
        let source = match (&disk.volume, &disk.path) {
            (Some(volume), _) => match volume_endpoint(volume) {
                Some(endpoint) => DiskSource::Nbd(endpoint),
                None => {
                    missing.push(volume.clone());
                    continue;
                }
            },
            (None, Some(path)) => DiskSource::Path(path.clone()),
            (None, None) => continue,
        };
        disks.push(DomainDisk {
            name: disk.name.clone(),
            source,
            target: disk.target.clone(),
            read_only: disk.read_only,
        });
    }
    if !missing.is_empty() {
        return Err(VolumesNotReady(missing));
    }
    Ok(Assignment {
        generation: vm.metadata.generation,
        run_state: vm.spec.run_state,
        domain: DomainSpec {
            name: vm.metadata.name.clone(),
            uid: vm.metadata.uid.clone().unwrap_or_default(),
            vcpus: vm.spec.vcpus,
            memory_mib: vm.spec.memory_mib,
            boot: vm.spec.boot.clone(),
            disks,
            networks: vm.spec.networks.clone(),
            migration: vm.spec.migration.clone(),
        },
        migration: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_crds::Validate;

    fn vm(yaml: &str) -> VirtualMachine {
        let mut vm: VirtualMachine = herd_crds::yaml::from_str(yaml).unwrap();
        vm.metadata.uid = Some("u-1".into());
        vm.metadata.generation = 4;
        vm
    }

    const SMALL: &str = "apiVersion: herd.dev/v1alpha1\nkind: VirtualMachine\nmetadata: {name: small-1}\nspec:\n  memoryMiB: 512\n  runState: Paused\n  disks:\n  - {name: root, volume: small-1-disk}\n  - {name: scratch, path: /var/lib/herd/scratch.img}\n";

    #[test]
    fn volumes_become_endpoints_and_everything_else_is_copied() {
        let endpoint = |name: &str| {
            (name == "small-1-disk").then(|| "nbd://10.0.0.1:10809/small-1-disk".to_owned())
        };
        let assignment = render_assignment(&vm(SMALL), endpoint).unwrap();
        assert_eq!(assignment.generation, 4);
        assert_eq!(assignment.run_state, herd_crds::RunState::Paused);
        assert_eq!(assignment.domain.uid, "u-1");
        assert_eq!(
            assignment.domain.disks[0].source,
            DiskSource::Nbd("nbd://10.0.0.1:10809/small-1-disk".into())
        );
        assert_eq!(
            assignment.domain.disks[1].source,
            DiskSource::Path("/var/lib/herd/scratch.img".into())
        );
        assert!(assignment.validate().is_empty());
    }

    #[test]
    fn a_volume_without_endpoint_holds_the_vm() {
        assert_eq!(
            render_assignment(&vm(SMALL), |_| None),
            Err(VolumesNotReady(vec!["small-1-disk".into()]))
        );
    }
}

#[cfg(test)]
mod stored_tests {
    use super::*;

    #[test]
    fn an_assignment_survives_the_store_codec() {
        let vm: VirtualMachine = herd_crds::yaml::from_str(
            "apiVersion: herd.dev/v1alpha1\nkind: VirtualMachine\nmetadata: {name: a}\nspec: {memoryMiB: 64}",
        )
        .unwrap();
        let assignment = render_assignment(&vm, |_| None).unwrap();
        let text = herd_store::codec::encode_value(&assignment).unwrap();
        let back: Assignment = herd_store::codec::decode_value("k", text.as_bytes())
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back, assignment);
    }
}
