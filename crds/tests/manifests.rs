//! The example manifests in `manifests/examples/` are what operators copy, so every one must
//! parse and validate, and every object must survive a trip through `AnyObject::to_yaml()`.
//!
//! The folder is walked recursively: examples added later in subfolders are covered too.

use std::fs;
use std::path::{Path, PathBuf};

use herd_crds::{AnyObject, ParsedDocument, parse_manifests};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/examples")
}

/// Every `*.yaml` file under `dir`, in a stable order.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        let entries =
            fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|ext| ext == "yaml") {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(dir, &mut found);
    found.sort();
    found
}

/// Every example file, parsed; panics with every problem of every file that does not parse.
fn parsed_examples() -> Vec<(String, Vec<ParsedDocument>)> {
    let dir = examples_dir();
    let files = yaml_files(&dir);
    assert!(
        !files.is_empty(),
        "{} holds no *.yaml example manifests",
        dir.display()
    );
    let mut parsed = Vec::new();
    let mut problems = Vec::new();
    for path in files {
        let name = path
            .strip_prefix(&dir)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let bytes = fs::read(&path).unwrap_or_else(|e| panic!("cannot read {name}: {e}"));
        match parse_manifests(&name, &bytes) {
            Ok(documents) if documents.is_empty() => problems.push(format!("{name}: no objects")),
            Ok(documents) => parsed.push((name, documents)),
            Err(errors) => problems.extend(errors.iter().map(ToString::to_string)),
        }
    }
    assert!(
        problems.is_empty(),
        "example manifests must parse and validate:\n{}",
        problems.join("\n")
    );
    parsed
}

#[test]
fn every_example_parses_and_validates() {
    let parsed = parsed_examples();
    for (name, documents) in &parsed {
        for document in documents {
            assert!(
                document.object.validate().is_empty(),
                "{name} (document {}) was returned although it is invalid",
                document.document
            );
        }
    }
    // The files named in the design are there (a rename would silently drop coverage).
    for expected in [
        "small-1.yaml",
        "nodes.yaml",
        "cluster-policy.yaml",
        "web-pair.yaml",
        "migration.yaml",
    ] {
        assert!(
            parsed.iter().any(|(name, _)| name == expected),
            "manifests/examples/{expected} is missing"
        );
    }
}

#[test]
fn the_seed_example_is_what_the_seed_described() {
    let parsed = parsed_examples();
    let (_, documents) = parsed
        .iter()
        .find(|(name, _)| name == "small-1.yaml")
        .expect("small-1.yaml");
    let kinds: Vec<(&str, &str)> = documents
        .iter()
        .map(|d| (d.object.kind(), d.object.name()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("Volume", "small-1-disk"),
            ("Volume", "small-1-swap"),
            ("VirtualMachine", "small-1")
        ]
    );
    let AnyObject::VirtualMachine(vm) = &documents[2].object else {
        unreachable!()
    };
    assert_eq!(vm.spec.memory_mib, 512);
    assert_eq!(
        vm.spec.boot.kernel.as_deref(),
        Some("/boot/vmlinuz-6.1.0-amd64")
    );
    assert_eq!(vm.spec.boot.root.as_deref(), Some("/dev/xvda1 ro"));
    let volumes: Vec<_> = vm.spec.disks.iter().map(|d| d.volume.as_deref()).collect();
    assert_eq!(volumes, [Some("small-1-disk"), Some("small-1-swap")]);
    assert_eq!(vm.spec.networks[0].bridge, "xenbr0");
}

#[test]
fn every_example_object_survives_a_yaml_round_trip() {
    let mut objects = 0;
    for (name, documents) in parsed_examples() {
        for document in documents {
            let original = &document.object;
            let where_ = format!("{name} (document {})", document.document);
            let yaml = original
                .to_yaml()
                .unwrap_or_else(|e| panic!("{where_}: cannot serialize: {e}"));
            let reparsed =
                parse_manifests("round-trip.yaml", yaml.as_bytes()).unwrap_or_else(|errors| {
                    let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
                    panic!(
                        "{where_}: its YAML does not parse:\n{yaml}\n{}",
                        errors.join("\n")
                    )
                });
            assert_eq!(
                reparsed.len(),
                1,
                "{where_}: one object becomes one document"
            );
            assert_eq!(
                &reparsed[0].object, original,
                "{where_}: changed by:\n{yaml}"
            );
            // Writing the re-read object gives the same text: nothing drifts on each save.
            assert_eq!(reparsed[0].object.to_yaml().unwrap(), yaml, "{where_}");
            objects += 1;
        }
    }
    assert!(objects > 0);
}

/// A VM as the store holds it: status written by its owner, metadata set by the store.
const OBSERVED_VM: &str = "\
apiVersion: herd.dev/v1alpha1
kind: VirtualMachine
metadata:
  name: small-1
  uid: 6a1f7c3e-3b5d-4c8e-9f00-1d2e3f4a5b6c
  generation: 3
  resourceVersion: \"4711\"
  creationTimestamp: 2026-01-02T03:04:05Z
  finalizers:
    - herd.dev/volumes
spec:
  memoryMiB: 512
status:
  nodeName: herby
  domainId: \"7\"
  state: Running
  cpuPercent: 12.5
  vcpus:
    - vcpu: 0
      cpu: 3
      percent: 12.5
  startedAt: 2026-01-02T03:04:09Z
  observedGeneration: 3
  conditions:
    - type: Ready
      status: \"True\"
      reason: GuestUp
      message: the guest answered
      lastTransitionTime: 2026-01-02T03:04:10Z
      observedGeneration: 3
";

#[test]
fn an_object_with_status_and_store_metadata_parses_and_round_trips() {
    let documents = parse_manifests("observed.yaml", OBSERVED_VM.as_bytes())
        .unwrap_or_else(|errors| panic!("{errors:?}"));
    let AnyObject::VirtualMachine(vm) = &documents[0].object else {
        panic!("not a VM: {:?}", documents[0].object)
    };
    let status = vm.status.as_ref().expect("status is kept");
    assert_eq!(status.node_name.as_deref(), Some("herby"));
    assert_eq!(status.vcpus[0].cpu, Some(3));
    assert_eq!(status.conditions[0].type_, "Ready");
    assert_eq!(vm.metadata.revision(), Some(4711));

    let yaml = documents[0].object.to_yaml().unwrap();
    let again = parse_manifests("observed.yaml", yaml.as_bytes()).unwrap();
    let AnyObject::VirtualMachine(again) = &again[0].object else {
        unreachable!()
    };
    assert_eq!(again, vm);
}
