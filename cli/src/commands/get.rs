//! `herdctl get KIND [NAME] [-l SELECTOR] [-o table|wide|yaml|json|name] [-w]`.
//!
//! Reads the kind at one store revision (an object with its status; a node with its
//! heartbeat) and prints it. `-o yaml` and `-o json` print whole objects that `apply`
//! accepts back unchanged. With `-w` the listing is followed by every change (see `watch`).

use chrono::{DateTime, Utc};
use herd_crds::yaml;
use herd_store::{Store, StoreError};

use crate::args::{GetArgs, OutputFormat};
use crate::clock;
use crate::commands::{Target, watch};
use crate::failure::{Failure, object_ref};
use crate::fetch;
use crate::output::{Style, write_out};
use crate::selector::Selector;
use crate::table::Table;
use crate::view::{Shown, with_kind};

pub async fn run(target: &Target, args: GetArgs) -> Result<(), Failure> {
    let store = target.connect().await?;
    with_kind!(args.kind, K => {
        if args.watch {
            watch::run::<K>(&store, &args).await
        } else {
            list::<K>(&store, &args).await
        }
    })
}

/// Whether `object` passes the `-l` selector (every object when there is none).
pub fn selected<K: Shown>(selector: Option<&Selector>, object: &K) -> bool {
    selector.is_none_or(|s| s.matches(&object.metadata().labels))
}

/// Reports objects that could not be decoded on standard error; the others are shown.
pub fn warn(problems: &[StoreError]) {
    for problem in problems {
        eprintln!("warning: {problem}; it is left out");
    }
}

async fn list<K: Shown>(store: &Store, args: &GetArgs) -> Result<(), Failure> {
    let (_, snapshot) = fetch::read::<K>(store, args.name.as_deref()).await?;
    let (mut objects, problems) = snapshot.all::<K>();
    if let (Some(_), Some(problem)) = (&args.name, problems.first()) {
        return Err(Failure::new(problem.to_string()));
    }
    warn(&problems);
    objects.retain(|o| selected(args.selector.as_ref(), o));
    if let Some(name) = &args.name
        && objects.is_empty()
    {
        return Err(Failure::new(format!(
            "{} {name:?} not found",
            K::CLI_KIND.singular()
        )));
    }
    if objects.is_empty() && matches!(args.output, OutputFormat::Table | OutputFormat::Wide) {
        eprintln!("No resources found.");
        return Ok(());
    }
    let single = args.name.is_some();
    write_out(&render(
        &objects,
        single,
        args.output,
        clock::now(),
        Style::for_stdout(),
    )?)
}

/// `objects` in `format`: a table, names, YAML documents, or JSON (one object, or a `List`).
pub fn render<K: Shown>(
    objects: &[K],
    single: bool,
    format: OutputFormat,
    now: DateTime<Utc>,
    style: Style,
) -> Result<String, Failure> {
    Ok(match format {
        OutputFormat::Table | OutputFormat::Wide => {
            let wide = format == OutputFormat::Wide;
            let mut table = Table::new(K::headers(wide));
            objects.iter().for_each(|o| table.push(o.row(now, wide)));
            table.render_styled(style)
        }
        OutputFormat::Name => objects
            .iter()
            .map(|o| format!("{}\n", object_ref(K::KIND, o.name())))
            .collect(),
        OutputFormat::Yaml => {
            let docs: Result<Vec<String>, Failure> = objects.iter().map(to_yaml).collect();
            docs?.join("---\n")
        }
        OutputFormat::Json if single && objects.len() == 1 => to_json(&objects[0])?,
        OutputFormat::Json => to_json(&serde_json::json!({ "kind": "List", "items": objects }))?,
    })
}

pub fn to_yaml<T: serde::Serialize>(value: &T) -> Result<String, Failure> {
    yaml::to_string(value).map_err(|e| Failure::new(format!("cannot print YAML: {e}")))
}

pub fn to_json<T: serde::Serialize>(value: &T) -> Result<String, Failure> {
    serde_json::to_string_pretty(value)
        .map(|text| text + "\n")
        .map_err(|e| Failure::new(format!("cannot print JSON: {e}")))
}
