//! The text of `herdctl describe`: metadata, spec, status, conditions and events, laid out
//! like `kubectl describe` (pure: a function of the object, its events and "now").
//!
//! Spec and status are rendered from their serialized form, so a field added to an object
//! shows up without touching this file: keys become titles (`memoryMiB` → `Memory MiB`),
//! nested mappings are indented, lists of mappings are items marked with `-`.

use chrono::{DateTime, Utc};
use herd_crds::{Condition, Event, ObjectMeta};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::table::{Table, age};

/// Everything `describe` shows of one object.
pub struct Described<'a> {
    pub kind: &'static str,
    pub metadata: &'a ObjectMeta,
    pub spec: Value,
    /// The status without its conditions (those get their own table).
    pub status: Option<Value>,
    pub conditions: Vec<Condition>,
    /// Events about the object, oldest first.
    pub events: Vec<Event>,
    /// Sections of their own, after the status (such as a node's `Balancer:`).
    pub sections: Vec<String>,
}

impl<'a> Described<'a> {
    /// Splits `object`'s serialized form into spec and status.
    pub fn new<R: Serialize>(
        kind: &'static str,
        metadata: &'a ObjectMeta,
        object: &R,
        conditions: Vec<Condition>,
        events: Vec<Event>,
    ) -> Result<Self, serde_json::Error> {
        let mut value = serde_json::to_value(object)?;
        let spec = value
            .get_mut("spec")
            .map(Value::take)
            .unwrap_or(Value::Null);
        let status = value.get_mut("status").map(Value::take).map(|mut status| {
            if let Value::Object(map) = &mut status {
                map.remove("conditions");
            }
            status
        });
        Ok(Self {
            kind,
            metadata,
            spec,
            status,
            conditions,
            events,
            sections: Vec::new(),
        })
    }

    /// Shows the status field `key` as a section of its own, `text`, instead of in the status.
    pub fn with_section(mut self, key: &str, text: String) -> Self {
        if let Some(Value::Object(map)) = &mut self.status {
            map.remove(key);
        }
        self.sections.push(text);
        self
    }

    /// The whole description.
    pub fn render(&self, now: DateTime<Utc>) -> String {
        let mut out = header(self.kind, self.metadata, now);
        out.push_str("Spec:\n");
        render_value(&mut out, &self.spec, 2);
        out.push_str("Status:");
        match &self.status {
            Some(status) if !is_empty(status) => {
                out.push('\n');
                render_value(&mut out, status, 2);
            }
            _ => out.push_str("  <none>\n"),
        }
        for section in &self.sections {
            out.push_str(section);
        }
        out.push_str(&conditions(&self.conditions, now));
        out.push_str(&events(&self.events, now));
        out.lines()
            .map(|line| format!("{}\n", line.trim_end()))
            .collect()
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Null => true,
        _ => false,
    }
}

/// Name, kind, labels, annotations and the store's bookkeeping.
fn header(kind: &str, meta: &ObjectMeta, now: DateTime<Utc>) -> String {
    let when = |time: DateTime<Utc>| {
        let ago = age((now - time).num_seconds());
        format!(
            "{} ({ago} ago)",
            time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    };
    let pairs = |map: &std::collections::BTreeMap<String, String>| -> Vec<String> {
        map.iter().map(|(k, v)| format!("{k}={v}")).collect()
    };
    let mut fields: Vec<(&str, Vec<String>)> = vec![
        ("Name", vec![meta.name.clone()]),
        ("Kind", vec![kind.to_owned()]),
        ("Labels", pairs(&meta.labels)),
        ("Annotations", pairs(&meta.annotations)),
        ("UID", meta.uid.iter().cloned().collect()),
        ("Generation", vec![meta.generation.to_string()]),
        (
            "Resource Version",
            meta.resource_version.iter().cloned().collect(),
        ),
        (
            "Created",
            meta.creation_timestamp.map(when).into_iter().collect(),
        ),
    ];
    if let Some(time) = meta.deletion_timestamp {
        fields.push(("Deletion Requested", vec![when(time)]));
    }
    if !meta.finalizers.is_empty() {
        fields.push(("Finalizers", meta.finalizers.clone()));
    }
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 3;
    let mut out = String::new();
    for (key, values) in fields {
        let label = format!("{key}:");
        let mut values = values.into_iter();
        let first = values.next().unwrap_or_else(|| "<none>".to_owned());
        out.push_str(&format!("{label:width$}{first}\n"));
        for value in values {
            out.push_str(&format!("{:width$}{value}\n", ""));
        }
    }
    out
}

/// A field name as a title: `memoryMiB` → `Memory MiB`, `nodeName` → `Node Name`.
pub fn title(key: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    let chars: Vec<char> = key.chars().collect();
    for (index, &c) in chars.iter().enumerate() {
        let previous = index.checked_sub(1).map(|i| chars[i]);
        let starts_word = match previous {
            None => true,
            Some(p) => c.is_uppercase() && (p.is_lowercase() || p.is_ascii_digit()),
        };
        if starts_word {
            words.push(String::new());
        }
        words.last_mut().expect("pushed above").push(c);
    }
    // Units spelled in mixed case stay one word: `Mi` + `B` → `MiB`, `Mi` + `Bps` → `MiBps`.
    let mut merged: Vec<String> = Vec::new();
    for word in words {
        match merged.last_mut() {
            Some(last) if last == "Mi" && word.starts_with('B') => last.push_str(&word),
            _ => merged.push(word),
        }
    }
    merged
        .iter()
        .map(|word| match word.to_lowercase().as_str() {
            "cpu" => "CPU".to_owned(),
            "cpus" => "CPUs".to_owned(),
            "vcpu" => "vCPU".to_owned(),
            "vcpus" => "vCPUs".to_owned(),
            "id" => "ID".to_owned(),
            "vm" => "VM".to_owned(),
            "ms" => "(ms)".to_owned(),
            _ => capitalised(word),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        Value::Null => Some("<none>".to_owned()),
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            let items: Vec<String> = items.iter().filter_map(scalar).collect();
            Some(if items.is_empty() {
                "<none>".to_owned()
            } else {
                items.join(", ")
            })
        }
        _ => None,
    }
}

/// Renders a mapping (or any value) with `indent` spaces before each line.
pub fn render_value(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) => render_map(out, map, indent),
        other => {
            let text = scalar(other).unwrap_or_default();
            out.push_str(&format!("{:indent$}{text}\n", ""));
        }
    }
}

fn render_map(out: &mut String, map: &Map<String, Value>, indent: usize) {
    let titles: Vec<(String, &Value)> = map.iter().map(|(k, v)| (title(k), v)).collect();
    let width = titles
        .iter()
        .filter(|(_, v)| scalar(v).is_some())
        .map(|(t, _)| t.len() + 1)
        .max()
        .unwrap_or(0);
    for (title, value) in titles {
        if let Some(text) = scalar(value) {
            let label = format!("{title}:");
            out.push_str(&format!("{:indent$}{label:width$}  {text}\n", ""));
            continue;
        }
        out.push_str(&format!("{:indent$}{title}:\n", ""));
        match value {
            Value::Array(items) => render_items(out, items, indent + 2),
            nested => render_value(out, nested, indent + 2),
        }
    }
}

/// A list of mappings: each item's lines, the first marked with `- `.
fn render_items(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        let mut text = String::new();
        render_value(&mut text, item, indent + 2);
        let mut lines = text.lines();
        if let Some(first) = lines.next() {
            out.push_str(&format!("{:indent$}- {}\n", "", first.trim_start()));
        }
        for line in lines {
            out.push_str(line);
            out.push('\n');
        }
    }
}

fn conditions(conditions: &[Condition], now: DateTime<Utc>) -> String {
    if conditions.is_empty() {
        return "Conditions:  <none>\n".to_owned();
    }
    let mut table = Table::new(vec!["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"]);
    for c in conditions {
        table.push(vec![
            c.type_.clone(),
            format!("{:?}", c.status),
            c.reason.clone(),
            age((now - c.last_transition_time).num_seconds()),
            c.message.clone(),
        ]);
    }
    format!("Conditions:\n{}", indented(&table.render()))
}

fn events(events: &[Event], now: DateTime<Utc>) -> String {
    if events.is_empty() {
        return "Events:  <none>\n".to_owned();
    }
    let mut table = Table::new(vec!["LAST SEEN", "TYPE", "REASON", "FROM", "MESSAGE"]);
    for e in events {
        let seen = age((now - e.last_timestamp).num_seconds());
        let seen = if e.count > 1 {
            format!("{seen} (x{})", e.count)
        } else {
            seen
        };
        table.push(vec![
            seen,
            format!("{:?}", e.type_),
            e.reason.clone(),
            e.source.clone(),
            e.message.clone(),
        ]);
    }
    format!("Events:\n{}", indented(&table.render()))
}

fn indented(text: &str) -> String {
    text.lines()
        .map(|line| format!("  {}\n", line.trim_end()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use herd_crds::ConditionStatus;
    use serde_json::json;

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, minute, 0).unwrap()
    }

    #[test]
    fn field_names_become_titles() {
        let cases = [
            ("memoryMiB", "Memory MiB"),
            ("nodeName", "Node Name"),
            ("bandwidthMiBps", "Bandwidth MiBps"),
            ("vcpus", "vCPUs"),
            ("cpuLoad", "CPU Load"),
            ("domainId", "Domain ID"),
            ("maxDowntimeMs", "Max Downtime (ms)"),
            ("runState", "Run State"),
            ("vm", "VM"),
        ];
        for (key, expected) in cases {
            assert_eq!(title(key), expected);
        }
    }

    #[test]
    fn mappings_align_and_nest() {
        let mut out = String::new();
        let value = json!({
            "runState": "Running",
            "vcpus": 2,
            "boot": {"kernel": "/boot/vmlinuz"},
            "disks": [{"name": "root", "volume": "v1"}, {"name": "swap", "volume": "v2"}],
            "tags": ["a", "b"],
        });
        render_value(&mut out, &value, 2);
        assert_eq!(
            out,
            "  Boot:\n    Kernel:  /boot/vmlinuz\n  Disks:\n    - Name:    root\n      Volume:  v1\n    - Name:    swap\n      Volume:  v2\n  Run State:  Running\n  Tags:       a, b\n  vCPUs:      2\n"
        );
    }

    #[test]
    fn a_description_has_every_section() {
        let mut meta = ObjectMeta::named("small-1");
        meta.creation_timestamp = Some(at(0));
        meta.labels.insert("app".into(), "web".into());
        let object =
            json!({"spec": {"vcpus": 1}, "status": {"state": "Running", "conditions": []}});
        let condition = Condition::new("Running", ConditionStatus::True, "Started", "ok", at(1));
        let described =
            Described::new("VirtualMachine", &meta, &object, vec![condition], vec![]).unwrap();
        let text = described.render(at(5));
        assert!(text.starts_with("Name:              small-1\nKind:              VirtualMachine\nLabels:            app=web\nAnnotations:       <none>\n"), "{text}");
        assert!(
            text.contains("Created:           2026-01-01T00:00:00Z (5m ago)\n"),
            "{text}"
        );
        assert!(
            text.contains("Spec:\n  vCPUs:  1\nStatus:\n  State:  Running\n"),
            "{text}"
        );
        assert!(text.contains("Conditions:\n  TYPE      STATUS   REASON    AGE   MESSAGE\n  Running   True     Started   4m    ok\n"), "{text}");
        assert!(text.ends_with("Events:  <none>\n"), "{text}");
    }
}
