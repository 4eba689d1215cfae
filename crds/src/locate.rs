//! Finds the line of a field in a YAML document, so that a validation problem found after
//! parsing (`spec.memoryMiB: must be at least 16`) points at the line a person must edit.
//!
//! The document is read a second time as raw YAML events into a tree of keys, indices and
//! lines; a field path as [`crate::validation::FieldPath`] spells it is then followed down that
//! tree as far as it goes. A path to a field the person left out (a default) lands on the
//! nearest enclosing key that is written.

use serde_saphyr::granit_parser::{Event, Parser};

/// Where a key or list element of a document sits.
#[derive(Debug)]
struct Node {
    line: usize,
    children: Vec<(Segment, Node)>,
}

#[derive(Debug)]
enum Segment {
    Key(String),
    Index(usize),
}

/// A collection being read: its node, and for a mapping the key waiting for its value.
struct Open {
    node: Node,
    mapping: bool,
    key: Option<(String, usize)>,
}

/// The lines of one YAML document's keys and elements.
#[derive(Debug)]
pub(crate) struct Lines {
    root: Node,
}

impl Lines {
    /// Reads `text`; `None` when it is not YAML (its parse error is reported on its own).
    ///
    /// Only called on documents that already parsed within the nesting budget, so the tree
    /// is shallow; it is built without recursion all the same.
    pub(crate) fn new(text: &str) -> Option<Self> {
        let mut open: Vec<Open> = Vec::new();
        let mut root = None;
        for event in Parser::new_from_str(text) {
            let (event, span) = event.ok()?;
            let line = span.start.line();
            let done = match event {
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    let mapping = matches!(event, Event::MappingStart(..));
                    let node = Node {
                        line,
                        children: Vec::new(),
                    };
                    open.push(Open {
                        node,
                        mapping,
                        key: None,
                    });
                    continue;
                }
                Event::MappingEnd | Event::SequenceEnd => (open.pop()?.node, None),
                Event::Scalar(value, ..) => (leaf(line), Some(value.into_owned())),
                Event::Alias(_) => (leaf(line), None),
                _ => continue,
            };
            let (node, scalar) = done;
            match open.last_mut() {
                None => {
                    root.get_or_insert(node);
                }
                Some(parent) => parent.attach(node, scalar),
            }
        }
        root.map(|root| Self { root })
    }

    /// The line of the deepest written node on `path`, such as `spec.disks[0].volume`.
    pub(crate) fn line_of(&self, path: &str) -> usize {
        let (mut node, mut rest, mut top) = (&self.root, path, true);
        'down: loop {
            for (segment, child) in &node.children {
                let spellings = match segment {
                    Segment::Key(key) if top => [key.clone(), format!("[{key:?}]")],
                    Segment::Key(key) => [format!(".{key}"), format!("[{key:?}]")],
                    Segment::Index(index) => [format!("[{index}]"), format!("[{index}]")],
                };
                for spelling in spellings {
                    if let Some(after) = rest.strip_prefix(spelling.as_str())
                        && (after.is_empty() || after.starts_with(['.', '[']))
                    {
                        (node, rest, top) = (child, after, false);
                        continue 'down;
                    }
                }
            }
            return node.line;
        }
    }
}

fn leaf(line: usize) -> Node {
    Node {
        line,
        children: Vec::new(),
    }
}

impl Open {
    /// Adds a finished node: a key, a key's value, or a list element.
    fn attach(&mut self, node: Node, scalar: Option<String>) {
        if !self.mapping {
            let index = self.node.children.len();
            self.node.children.push((Segment::Index(index), node));
            return;
        }
        match self.key.take() {
            // A value: it is found at its key's line (`boot:`), not its first child's.
            Some((key, line)) => self.node.children.push((
                Segment::Key(key),
                Node {
                    line,
                    children: node.children,
                },
            )),
            // A key; a complex key (a mapping or list) can name no field and gets no name.
            None => self.key = Some((scalar.unwrap_or_default(), node.line)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
# comment
apiVersion: herd.dev/v1alpha1
metadata:
  name: small-1
  labels:
    \"my app\": web
    herd.dev/role: x
spec:
  memoryMiB: 8
  boot:
    kernel: /boot/vmlinuz
  disks:
    - name: root
      volume: a
    - {name: swap, volume: b}
";

    #[test]
    fn paths_lead_to_their_lines() {
        let lines = Lines::new(DOC).unwrap();
        for (path, line) in [
            ("apiVersion", 2),
            ("metadata.name", 4),
            ("metadata.labels[\"my app\"]", 6),
            ("metadata.labels[\"herd.dev/role\"]", 7),
            ("spec.memoryMiB", 9),
            ("spec.boot", 10),
            ("spec.boot.kernel", 11),
            ("spec.disks[0]", 13),
            ("spec.disks[0].volume", 14),
            ("spec.disks[1].volume", 15),
        ] {
            assert_eq!(lines.line_of(path), line, "{path}");
        }
    }

    #[test]
    fn a_field_left_out_lands_on_its_nearest_written_parent() {
        let lines = Lines::new(DOC).unwrap();
        assert_eq!(lines.line_of("spec.vcpus"), 8);
        assert_eq!(lines.line_of("spec.boot.ramdisk"), 10);
        assert_eq!(lines.line_of("spec.disks[7].name"), 12);
        assert_eq!(lines.line_of("status"), 2);
        // A key that merely starts like another is not taken for it.
        assert_eq!(lines.line_of("spec.memory"), 8);
    }

    #[test]
    fn text_that_is_not_yaml_has_no_lines() {
        assert!(Lines::new("a: [1, 2").is_none());
    }
}
