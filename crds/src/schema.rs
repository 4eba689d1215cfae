//! Generated schemas: one Kubernetes `CustomResourceDefinition` per kind, as YAML.
//!
//! The files in `manifests/crds/` are the output of [`crd_files`]; a test fails when they are
//! stale. Regenerate them with `HERD_UPDATE_CRDS=1 cargo test -p herd-crds --test crds`.

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use crate::cluster_policy::ClusterPolicy;
use crate::event::Event;
use crate::git_repository::GitRepository;
use crate::meta::API_VERSION;
use crate::migration::Migration;
use crate::node::Node;
use crate::object::Resource;
use crate::virtual_machine::VirtualMachine;
use crate::volume::Volume;

/// The OpenAPI v3 schema of `T`, with every reference inlined as Kubernetes requires.
pub fn openapi_schema<T: JsonSchema>() -> Value {
    let mut settings = SchemaSettings::openapi3();
    settings.inline_subschemas = true;
    let schema = settings.into_generator().into_root_schema_for::<T>();
    let mut value = schema.to_value();
    if let Some(map) = value.as_object_mut() {
        map.remove("$schema");
        map.remove("title");
        map.remove("definitions");
        map.remove("components");
    }
    value
}

/// Rewrites a JSON schema into a Kubernetes *structural* schema, which the API server
/// requires of a CRD: no `additionalProperties: false` (the server prunes unknown fields
/// instead, and refuses it beside `properties`), and no `type` or `description` inside a
/// `oneOf`, so schemars' one-branch-per-documented-variant enums become one plain `enum`.
fn make_structural(schema: &mut Value) {
    let Some(map) = schema.as_object_mut() else {
        if let Some(items) = schema.as_array_mut() {
            items.iter_mut().for_each(make_structural);
        }
        return;
    };
    if map.get("additionalProperties") == Some(&json!(false)) {
        map.remove("additionalProperties");
    }
    for junctor in ["oneOf", "anyOf"] {
        if let Some(values) = map.get(junctor).and_then(string_enum) {
            map.remove(junctor);
            map.insert("type".into(), json!("string"));
            map.insert("enum".into(), Value::Array(values));
        }
    }
    map.values_mut().for_each(make_structural);
}

/// The values of a `oneOf` whose every branch is a documented string `enum` or `const`.
fn string_enum(branches: &Value) -> Option<Vec<Value>> {
    let mut values = Vec::new();
    for branch in branches.as_array()? {
        let branch = branch.as_object()?;
        let plain = branch.iter().all(|(key, value)| match key.as_str() {
            "type" => value == "string",
            "description" | "enum" | "const" => true,
            _ => false,
        });
        if !plain {
            return None;
        }
        match (branch.get("enum"), branch.get("const")) {
            (Some(Value::Array(items)), None) => values.extend(items.iter().cloned()),
            (None, Some(value)) => values.push(value.clone()),
            _ => return None,
        }
    }
    values.iter().all(Value::is_string).then_some(values)
}

/// The `CustomResourceDefinition` of one kind.
pub fn crd<R: Resource + JsonSchema>(short_names: &[&str]) -> Value {
    let (group, version) = API_VERSION
        .split_once('/')
        .expect("API_VERSION is group/version");
    let mut schema = openapi_schema::<R>();
    make_structural(&mut schema);
    // The API server owns `metadata` and refuses a CRD that describes more of it than this.
    let properties = &mut schema["properties"];
    properties["metadata"] = json!({ "type": "object" });
    let subresources = if properties.get("status").is_some() {
        json!({ "status": {} })
    } else {
        json!({})
    };
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": format!("{}.{group}", R::PLURAL) },
        "spec": {
            "group": group,
            "scope": "Cluster",
            "names": {
                "kind": R::KIND,
                "plural": R::PLURAL,
                "singular": R::KIND.to_lowercase(),
                "shortNames": short_names,
            },
            "versions": [{
                "name": version,
                "served": true,
                "storage": true,
                "subresources": subresources,
                "schema": { "openAPIV3Schema": schema },
            }],
        },
    })
}

/// Every generated file: (file name under `manifests/crds/`, YAML text).
pub fn crd_files() -> Vec<(String, String)> {
    let crds = [
        (
            VirtualMachine::PLURAL,
            crd::<VirtualMachine>(&["vm", "vms"]),
        ),
        (Node::PLURAL, crd::<Node>(&["no"])),
        (Migration::PLURAL, crd::<Migration>(&["mig"])),
        (Volume::PLURAL, crd::<Volume>(&["vol"])),
        (ClusterPolicy::PLURAL, crd::<ClusterPolicy>(&["cp"])),
        (Event::PLURAL, crd::<Event>(&["ev"])),
        (GitRepository::PLURAL, crd::<GitRepository>(&["gitrepo"])),
    ];
    crds.into_iter()
        .map(|(plural, value)| {
            let text = serde_saphyr::to_string(&value).expect("a JSON value always serializes");
            (
                format!("{plural}.yaml"),
                format!("# Generated by herd-crds (crds/src/schema.rs); do not edit.\n{text}"),
            )
        })
        .collect()
}
