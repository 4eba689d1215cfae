//! `herdctl diff -f FILE|DIR|- [-R]`: what `apply` would change, as a unified diff of the
//! stored object and the file's, limited to what apply writes (labels, annotations, spec).
//! Exit code 0: no difference; 1: differences; 2: error (as `kubectl diff`).

use herd_crds::Resource;
use herd_store::Store;

use crate::apply::{desired_only, kind_order, with_object};
use crate::args::FilesArgs;
use crate::commands::get::to_yaml;
use crate::commands::{Target, read_manifests};
use crate::diff::unified;
use crate::failure::{Failure, object_ref};
use crate::output::{Colour, Style, write_out};

/// Prints the differences; returns whether there were any.
pub async fn run(target: &Target, args: FilesArgs) -> Result<bool, Failure> {
    let mut loaded = read_manifests(&args, "cannot diff")?;
    loaded.sort_by_key(|l| kind_order(l.document.object.kind()));
    let store = target.connect().await?;
    let style = Style::for_stdout();
    let mut differs = false;
    for item in loaded {
        let source = item.source;
        let text =
            with_object!(item.document.object, object => diff_one(&store, object, &source).await?);
        if let Some(text) = text {
            differs = true;
            write_out(&coloured(&text, style))?;
        }
    }
    Ok(differs)
}

async fn diff_one<R: Resource>(
    store: &Store,
    desired: R,
    source: &str,
) -> Result<Option<String>, Failure> {
    let stored: Option<R> = store.get(desired.name()).await?;
    let old = match stored {
        Some(stored) => to_yaml(&comparable(stored))?,
        None => String::new(),
    };
    let new = to_yaml(&comparable(desired.clone()))?;
    let what = object_ref(R::KIND, desired.name());
    let (old_label, new_label) = (format!("{what} (stored)"), format!("{what} ({source})"));
    Ok(unified(&old, &new, &old_label, &new_label))
}

/// `object` as apply sees it: without status and without what the store and controllers
/// manage (uid, generation, resourceVersion, timestamps, finalizers, owners).
pub fn comparable<R: Resource>(object: R) -> R {
    let mut object = desired_only(object);
    let meta = object.metadata_mut();
    meta.finalizers.clear();
    meta.owner_references.clear();
    object
}

/// Removed lines red, added lines green, when colouring.
fn coloured(diff: &str, style: Style) -> String {
    diff.lines()
        .map(|line| {
            let colour = match line.as_bytes().first() {
                _ if line.starts_with("---") || line.starts_with("+++") => None,
                Some(b'-') => Some(Colour::Red),
                Some(b'+') => Some(Colour::Green),
                _ => None,
            };
            style.paint(line, colour) + "\n"
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use herd_crds::node::NodeSpec;
    use herd_crds::{Node, NodeStatus, Object};

    #[test]
    fn only_what_apply_writes_is_compared() {
        let mut stored: Node = Object::new("ferby", NodeSpec::default());
        stored.metadata.uid = Some("u".into());
        stored.metadata.generation = 4;
        stored.metadata.resource_version = Some("17".into());
        stored.metadata.creation_timestamp = Some(Utc::now());
        stored.metadata.finalizers.push("herd.dev/x".into());
        stored.status = Some(NodeStatus::default());
        let file: Node = Object::new("ferby", NodeSpec::default());
        assert_eq!(comparable(stored), comparable(file));
    }

    #[test]
    fn diff_lines_are_coloured_but_headers_are_not() {
        let text = coloured("--- a\n+++ b\n-x\n+y\n z\n", Style { colour: true });
        assert_eq!(
            text,
            "--- a\n+++ b\n\x1b[31m-x\x1b[0m\n\x1b[32m+y\x1b[0m\n z\n"
        );
    }
}
