//! `herdctl get`: objects as a table, YAML, JSON or names.

use chrono::{DateTime, Utc};
use herd_crds::cluster_policy::ClusterPolicy;
use herd_crds::object::Spec;
use herd_crds::{Event, Migration, Node, Resource, VirtualMachine, Volume};
use herd_crds::{Object, yaml};
use herd_store::{Store, StoreError};
use serde::Serialize;

use crate::kinds::Kind;
use crate::table::{Table, age};

/// How `get` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Wide,
    Yaml,
    Json,
    Name,
}

/// Prints objects of `kind` (one, when `name` is given) in `format`.
pub async fn get(
    store: &Store,
    kind: Kind,
    name: Option<&str>,
    format: OutputFormat,
) -> Result<String, GetError> {
    let now = Utc::now();
    match kind {
        Kind::VirtualMachine => {
            render(store, kind, name, format, |o| vm_row(o, now), VM_HEADERS).await
        }
        Kind::Node => {
            render(
                store,
                kind,
                name,
                format,
                |o| node_row(o, now),
                NODE_HEADERS,
            )
            .await
        }
        Kind::Migration => {
            render(
                store,
                kind,
                name,
                format,
                |o| migration_row(o, now),
                MIGRATION_HEADERS,
            )
            .await
        }
        Kind::Volume => {
            render(
                store,
                kind,
                name,
                format,
                |o| volume_row(o, now),
                VOLUME_HEADERS,
            )
            .await
        }
        Kind::ClusterPolicy => {
            render(
                store,
                kind,
                name,
                format,
                |o| policy_row(o, now),
                POLICY_HEADERS,
            )
            .await
        }
        Kind::Event => render_events(store, name, format, now).await,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error("{kind} {name:?} not found")]
    NotFound { kind: Kind, name: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot print: {0}")]
    Print(String),
}

const VM_HEADERS: &[&str] = &["NAME", "STATE", "NODE", "VCPUS", "MEMORY", "CPU%", "AGE"];
const NODE_HEADERS: &[&str] = &["NAME", "READY", "ACCEPTS-MIGRATIONS", "CPU%", "VMS", "AGE"];
const MIGRATION_HEADERS: &[&str] = &["NAME", "VM", "SOURCE", "TARGET", "PHASE", "AGE"];
const VOLUME_HEADERS: &[&str] = &["NAME", "SIZE", "BACKEND", "PHASE", "ENDPOINT", "AGE"];
const POLICY_HEADERS: &[&str] = &["NAME", "BALANCER", "THRESHOLD", "AGE"];

async fn render<S: Spec>(
    store: &Store,
    kind: Kind,
    name: Option<&str>,
    format: OutputFormat,
    row: impl Fn(&Object<S>) -> Vec<String>,
    headers: &[&'static str],
) -> Result<String, GetError> {
    let objects = match name {
        Some(name) => {
            vec![
                store
                    .get_with_status::<S>(name)
                    .await?
                    .ok_or_else(|| GetError::NotFound {
                        kind,
                        name: name.to_owned(),
                    })?,
            ]
        }
        None => store.list_with_status::<S>().await?,
    };
    print(kind, &objects, name.is_some(), format, |objects| {
        let mut table = Table::new(headers.to_vec());
        objects.iter().for_each(|o| table.push(row(o)));
        table.render()
    })
}

fn print<R: Resource + Serialize>(
    kind: Kind,
    objects: &[R],
    single: bool,
    format: OutputFormat,
    table: impl Fn(&[R]) -> String,
) -> Result<String, GetError> {
    let fail = |e: String| GetError::Print(e);
    Ok(match format {
        OutputFormat::Table | OutputFormat::Wide => {
            if objects.is_empty() {
                "No resources found.\n".to_owned()
            } else {
                table(objects)
            }
        }
        OutputFormat::Name => objects
            .iter()
            .map(|o| format!("{kind}/{}\n", o.name()))
            .collect(),
        OutputFormat::Yaml => {
            let docs: Result<Vec<String>, String> = objects
                .iter()
                .map(|o| yaml::to_string(o).map_err(|e| e.to_string()))
                .collect();
            docs.map_err(fail)?.join("---\n")
        }
        OutputFormat::Json if single => {
            serde_json::to_string_pretty(&objects[0]).map_err(|e| fail(e.to_string()))? + "\n"
        }
        OutputFormat::Json => {
            let list = serde_json::json!({ "kind": "List", "items": objects });
            serde_json::to_string_pretty(&list).map_err(|e| fail(e.to_string()))? + "\n"
        }
    })
}

fn age_of(meta: &herd_crds::ObjectMeta, now: DateTime<Utc>) -> String {
    meta.creation_timestamp
        .map_or_else(|| "<unknown>".to_owned(), |t| age((now - t).num_seconds()))
}

fn or_none(value: Option<&String>) -> String {
    value.cloned().unwrap_or_else(|| "<none>".to_owned())
}

fn vm_row(vm: &VirtualMachine, now: DateTime<Utc>) -> Vec<String> {
    let status = vm.status.clone().unwrap_or_default();
    vec![
        vm.metadata.name.clone(),
        format!("{:?}", status.state),
        or_none(status.node_name.as_ref()),
        vm.spec.vcpus.to_string(),
        format!("{}Mi", vm.spec.memory_mib),
        format!("{:.0}", status.cpu_percent),
        age_of(&vm.metadata, now),
    ]
}

fn node_row(node: &Node, now: DateTime<Utc>) -> Vec<String> {
    let status = node.status.clone().unwrap_or_default();
    let load = if status.cpu_load.is_empty() {
        0.0
    } else {
        status.cpu_load.iter().sum::<f64>() / status.cpu_load.len() as f64
    };
    let ready = if status.ready { "True" } else { "False" };
    let ready = if node.spec.unschedulable {
        format!("{ready},SchedulingDisabled")
    } else {
        ready.to_owned()
    };
    vec![
        node.metadata.name.clone(),
        ready,
        node.spec.accept_migrations.to_string(),
        format!("{load:.0}"),
        status.domains.len().to_string(),
        age_of(&node.metadata, now),
    ]
}

fn migration_row(migration: &Migration, now: DateTime<Utc>) -> Vec<String> {
    let status = migration.status.clone().unwrap_or_default();
    vec![
        migration.metadata.name.clone(),
        migration.spec.vm.clone(),
        or_none(status.source_node.as_ref()),
        or_none(
            status
                .target_node
                .as_ref()
                .or(migration.spec.target_node.as_ref()),
        ),
        format!("{:?}", status.phase),
        age_of(&migration.metadata, now),
    ]
}

fn volume_row(volume: &Volume, now: DateTime<Utc>) -> Vec<String> {
    let status = volume.status.clone().unwrap_or_default();
    vec![
        volume.metadata.name.clone(),
        format!("{}Mi", volume.spec.size_mib),
        format!("{:?}", volume.spec.backend).to_lowercase(),
        format!("{:?}", status.phase),
        or_none(status.endpoint.as_ref()),
        age_of(&volume.metadata, now),
    ]
}

fn policy_row(policy: &ClusterPolicy, now: DateTime<Utc>) -> Vec<String> {
    let balancer = &policy.spec.balancer;
    let kind = if balancer.enabled {
        format!("{:?}", balancer.policy).to_lowercase()
    } else {
        "off".to_owned()
    };
    vec![
        policy.metadata.name.clone(),
        kind,
        format!("{}%", balancer.threshold_percent),
        age_of(&policy.metadata, now),
    ]
}

async fn render_events(
    store: &Store,
    name: Option<&str>,
    format: OutputFormat,
    now: DateTime<Utc>,
) -> Result<String, GetError> {
    let (mut events, _) = store.list::<Event>().await?;
    if let Some(name) = name {
        events.retain(|e| e.metadata.name == name);
        if events.is_empty() {
            return Err(GetError::NotFound {
                kind: Kind::Event,
                name: name.to_owned(),
            });
        }
    }
    events.sort_by_key(|e| e.last_timestamp);
    print(Kind::Event, &events, name.is_some(), format, |events| {
        let mut table = Table::new(vec!["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]);
        for e in events {
            table.push(vec![
                age((now - e.last_timestamp).num_seconds()),
                format!("{:?}", e.type_),
                e.reason.clone(),
                format!(
                    "{}/{}",
                    e.involved_object.kind.to_lowercase(),
                    e.involved_object.name
                ),
                e.message.clone(),
            ]);
        }
        table.render()
    })
}
