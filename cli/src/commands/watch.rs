//! `herdctl get KIND -w`: the listing, then one row per change, until Ctrl-C or SIGTERM
//! (which end it with exit code 0).
//!
//! Changes come from etcd watches on every key range of the kind (spec, status, and for
//! nodes the heartbeats), opened at the revision of the listing so nothing is missed. As
//! kubectl does, the header is printed once and rows follow; a change that leaves the row as
//! it was (apart from its age) is not printed again, so heartbeats do not flood the screen.

use std::collections::BTreeMap;

use herd_store::Store;
use tokio::signal::unix::{SignalKind, signal};

use crate::args::{GetArgs, OutputFormat};
use crate::clock;
use crate::commands::get::{selected, to_json, to_yaml, warn};
use crate::failure::{Failure, object_ref};
use crate::fetch::Live;
use crate::output::{Style, write_out};
use crate::table::{Columns, timeless};
use crate::view::Shown;

/// What happened to a printed object, as `--output-watch-events` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    Added,
    Modified,
    Deleted,
}

impl Change {
    fn label(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

pub async fn run<K: Shown>(store: &Store, args: &GetArgs) -> Result<(), Failure> {
    // Registered before anything is printed, so that an early Ctrl-C also ends with 0.
    let listen =
        |kind| signal(kind).map_err(|e| Failure::new(format!("cannot handle signals: {e}")));
    let (mut interrupt, mut terminate) = (
        listen(SignalKind::interrupt())?,
        listen(SignalKind::terminate())?,
    );
    let mut live = Live::open::<K>(store, args.name.as_deref()).await?;
    let (objects, problems) = live.snapshot().all::<K>();
    warn(&problems);
    let mut printer = Printer::<K>::new(args, &objects);
    for object in objects {
        let name = object.name().to_owned();
        printer.update(&name, Some(object))?;
    }
    loop {
        tokio::select! {
            _ = interrupt.recv() => return Ok(()),
            _ = terminate.recv() => return Ok(()),
            names = live.next() => {
                for name in names {
                    match live.snapshot().get::<K>(&name) {
                        Ok(current) => printer.update(&name, current)?,
                        Err(problem) => warn(&[problem]),
                    }
                }
            }
        }
    }
}

/// Prints rows or documents as objects change, remembering what it printed last.
struct Printer<'a, K: Shown> {
    args: &'a GetArgs,
    columns: Option<Columns>,
    header_printed: bool,
    style: Style,
    /// The last object printed for each name, and what identified the print (to skip repeats).
    shown: BTreeMap<String, (K, String)>,
}

impl<'a, K: Shown> Printer<'a, K> {
    /// A printer whose columns fit the header and the rows of `first`.
    fn new(args: &'a GetArgs, first: &[K]) -> Self {
        let wide = args.output == OutputFormat::Wide;
        let columns = matches!(args.output, OutputFormat::Table | OutputFormat::Wide).then(|| {
            let now = clock::now();
            let rows: Vec<Vec<String>> = first
                .iter()
                .map(|o| with_event(args, Change::Added, o.row(now, wide)))
                .collect();
            let mut headers = K::headers(wide);
            if args.output_watch_events {
                headers.insert(0, "EVENT");
            }
            let mut columns = Columns::new(headers, &rows);
            if args.output_watch_events {
                columns.at_least(0, Change::Modified.label().len());
            }
            columns
        });
        Self {
            args,
            columns,
            header_printed: false,
            style: Style::for_stdout(),
            shown: BTreeMap::new(),
        }
    }

    /// Object `name` is now `current` (`None`: gone or unreadable); prints it if that shows.
    fn update(&mut self, name: &str, current: Option<K>) -> Result<(), Failure> {
        let current = current.filter(|o| selected(self.args.selector.as_ref(), o));
        let previous = self.shown.remove(name);
        let before = previous.as_ref().map(|(_, key)| key.clone());
        let (change, object) = match (current, previous) {
            (Some(object), None) => (Change::Added, object),
            (Some(object), Some(_)) => (Change::Modified, object),
            (None, Some((object, _))) => (Change::Deleted, object),
            (None, None) => return Ok(()),
        };
        let key = self.key(&object)?;
        if change != Change::Modified || before.as_ref() != Some(&key) {
            let text = self.format(change, &object)?;
            write_out(&text)?;
        }
        if change != Change::Deleted {
            self.shown.insert(name.to_owned(), (object, key));
        }
        Ok(())
    }

    /// What a print of `object` shows, apart from its age: equal keys are not printed twice.
    fn key(&self, object: &K) -> Result<String, Failure> {
        Ok(match self.args.output {
            OutputFormat::Table | OutputFormat::Wide => {
                let wide = self.args.output == OutputFormat::Wide;
                timeless(&K::headers(wide), &object.row(clock::now(), wide)).join("\t")
            }
            OutputFormat::Name => object.name().to_owned(),
            OutputFormat::Yaml | OutputFormat::Json => to_json(object)?,
        })
    }

    /// The text printed for `change` of `object`.
    fn format(&mut self, change: Change, object: &K) -> Result<String, Failure> {
        let args = self.args;
        let wrap = |value: serde_json::Value| serde_json::json!({ "type": change.label(), "object": value });
        let value = || serde_json::to_value(object).map_err(|e| Failure::new(e.to_string()));
        Ok(match args.output {
            OutputFormat::Table | OutputFormat::Wide => {
                let wide = args.output == OutputFormat::Wide;
                let row = with_event(args, change, object.row(clock::now(), wide));
                let columns = self.columns.as_mut().expect("tables have columns");
                let mut text = String::new();
                if !self.header_printed {
                    text.push_str(&columns.header());
                    self.header_printed = true;
                }
                text.push_str(&columns.line(&row, self.style));
                text
            }
            OutputFormat::Name => {
                let name = object_ref(K::KIND, object.name());
                match args.output_watch_events {
                    true => format!("{} {name}\n", change.label()),
                    false => format!("{name}\n"),
                }
            }
            OutputFormat::Yaml if args.output_watch_events => {
                format!("---\n{}", to_yaml(&wrap(value()?))?)
            }
            OutputFormat::Yaml => format!("---\n{}", to_yaml(object)?),
            OutputFormat::Json if args.output_watch_events => to_json(&wrap(value()?))?,
            OutputFormat::Json => to_json(object)?,
        })
    }
}

/// `row` with the EVENT column first when `--output-watch-events` asks for it.
fn with_event(args: &GetArgs, change: Change, mut row: Vec<String>) -> Vec<String> {
    if args.output_watch_events {
        row.insert(0, change.label().to_owned());
    }
    row
}
