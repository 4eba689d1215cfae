//! Manifest files: multi-document YAML holding objects of any kind.
//!
//! A file is read whole, split into its documents, and every document is parsed into the
//! object its `kind` names and validated. Every problem of every document is reported, each
//! naming the file, the document, the line where known, the field and what to do.

use std::fmt;

use serde::Deserialize;

use crate::cluster_policy::ClusterPolicy;
use crate::event::Event;
use crate::git_repository::GitRepository;
use crate::locate::Lines;
use crate::meta::{API_VERSION, ObjectMeta};
use crate::migration::Migration;
use crate::node::Node;
use crate::object::Resource;
use crate::validation::Validate;
use crate::virtual_machine::VirtualMachine;
use crate::volume::Volume;
use crate::yaml::{self, MAX_INPUT_BYTES, YamlError};

/// An object of any herd kind.
#[derive(Clone, Debug, PartialEq)]
#[allow(
    clippy::large_enum_variant,
    reason = "objects are handled a few at a time; boxing would burden every match on them"
)]
pub enum AnyObject {
    VirtualMachine(VirtualMachine),
    Node(Node),
    Migration(Migration),
    Volume(Volume),
    ClusterPolicy(ClusterPolicy),
    Event(Event),
    GitRepository(GitRepository),
}

/// The kinds a manifest may hold, in the order `herdctl apply` writes them.
pub const KINDS: [&str; 7] = [
    ClusterPolicy::KIND,
    Node::KIND,
    Volume::KIND,
    VirtualMachine::KIND,
    Migration::KIND,
    Event::KIND,
    GitRepository::KIND,
];

/// Runs `$body` with `$object` bound to the typed object inside an [`AnyObject`].
#[macro_export]
macro_rules! with_object {
    ($any:expr, $object:ident => $body:expr) => {
        match $any {
            $crate::manifest::AnyObject::VirtualMachine($object) => $body,
            $crate::manifest::AnyObject::Node($object) => $body,
            $crate::manifest::AnyObject::Migration($object) => $body,
            $crate::manifest::AnyObject::Volume($object) => $body,
            $crate::manifest::AnyObject::ClusterPolicy($object) => $body,
            $crate::manifest::AnyObject::Event($object) => $body,
            $crate::manifest::AnyObject::GitRepository($object) => $body,
        }
    };
}

impl AnyObject {
    pub fn kind(&self) -> &'static str {
        fn kind_of<R: Resource>(_: &R) -> &'static str {
            R::KIND
        }
        crate::with_object!(self, object => kind_of(object))
    }

    pub fn plural(&self) -> &'static str {
        fn plural_of<R: Resource>(_: &R) -> &'static str {
            R::PLURAL
        }
        crate::with_object!(self, object => plural_of(object))
    }

    pub fn metadata(&self) -> &ObjectMeta {
        crate::with_object!(self, object => object.metadata())
    }

    pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
        crate::with_object!(self, object => object.metadata_mut())
    }

    pub fn name(&self) -> &str {
        &self.metadata().name
    }

    /// Every validation problem of the object.
    pub fn validate(&self) -> Vec<crate::FieldError> {
        crate::with_object!(self, object => object.validate())
    }

    /// The object as YAML.
    pub fn to_yaml(&self) -> Result<String, serde_saphyr::SerializeError> {
        crate::with_object!(self, object => yaml::to_string(object))
    }

    /// Parses one YAML document whose `kind` is `kind`.
    fn parse(kind: &str, text: &str) -> Result<Self, YamlError> {
        Ok(match kind {
            "VirtualMachine" => Self::VirtualMachine(yaml::from_str(text)?),
            "Node" => Self::Node(yaml::from_str(text)?),
            "Migration" => Self::Migration(yaml::from_str(text)?),
            "Volume" => Self::Volume(yaml::from_str(text)?),
            "ClusterPolicy" => Self::ClusterPolicy(yaml::from_str(text)?),
            "Event" => Self::Event(yaml::from_str(text)?),
            "GitRepository" => Self::GitRepository(yaml::from_str(text)?),
            other => {
                return Err(YamlError {
                    path: Some("kind".into()),
                    line: None,
                    message: format!("unknown kind {other:?}; use one of {}", KINDS.join(", ")),
                });
            }
        })
    }
}

/// One object read from a manifest, with where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedDocument {
    /// 1-based index of the document in its file.
    pub document: usize,
    /// 1-based line where the document starts.
    pub line: usize,
    pub object: AnyObject,
}

/// One problem in a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestError {
    /// The file (or `-` for standard input).
    pub source: String,
    /// 1-based document index, when the problem sits in one document.
    pub document: Option<usize>,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// Field path such as `spec.memoryMiB`, when the problem sits in a field.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.source)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(document) = self.document {
            write!(f, " (document {document})")?;
        }
        f.write_str(": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ManifestError {}

/// The two fields read first, to learn which type the document is.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
}

/// A document's text and the line of the file it starts on.
struct DocumentText<'a> {
    text: String,
    first_line: usize,
    _source: std::marker::PhantomData<&'a ()>,
}

/// Splits a YAML stream at its `---` and `...` markers (which YAML only allows at column 0).
/// Each piece is padded with blank lines so that line numbers stay those of the file.
fn split_documents(text: &str) -> Vec<DocumentText<'_>> {
    let mut documents = Vec::new();
    let mut current = String::new();
    let mut first_line = 1;
    for (index, line) in text.lines().enumerate() {
        let is_start = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        let is_end = line == "..." || line.starts_with("... ");
        if is_start || is_end {
            documents.push(DocumentText {
                text: std::mem::take(&mut current),
                first_line,
                _source: Default::default(),
            });
            first_line = index + 2;
            current = "\n".repeat(index + 1);
            if is_start && line.len() > 3 {
                // Content after `--- ` belongs to the new document, on this line.
                current.pop();
                current.push_str(&line[4..]);
                current.push('\n');
                first_line = index + 1;
            }
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    documents.push(DocumentText {
        text: current,
        first_line,
        _source: Default::default(),
    });
    documents.retain(|d| !is_blank(&d.text));
    documents
}

/// Whether a document holds nothing but blank lines and comments.
fn is_blank(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .all(|line| line.is_empty() || line.starts_with('#') || line.starts_with('%'))
}

/// Parses and validates every object of a manifest file.
///
/// `source` names the file in errors. Either every document is valid and all are returned,
/// or every problem found is returned and nothing else.
pub fn parse_manifests(
    source: &str,
    bytes: &[u8],
) -> Result<Vec<ParsedDocument>, Vec<ManifestError>> {
    let whole = |message: String| {
        vec![ManifestError {
            source: source.to_owned(),
            document: None,
            line: None,
            field: None,
            message,
        }]
    };
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(whole(format!(
            "is larger than {MAX_INPUT_BYTES} bytes; split it into smaller files"
        )));
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => {
            let line = bytes[..error.valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count()
                + 1;
            return Err(vec![ManifestError {
                source: source.to_owned(),
                document: None,
                line: Some(line),
                field: None,
                message: format!(
                    "is not valid UTF-8 (bad byte at offset {}); save the file as UTF-8",
                    error.valid_up_to()
                ),
            }]);
        }
    };
    let mut parsed = Vec::new();
    let mut errors = Vec::new();
    for (index, document) in split_documents(text).into_iter().enumerate() {
        match parse_document(&document.text) {
            Ok(object) => parsed.push(ParsedDocument {
                document: index + 1,
                line: document.first_line,
                object,
            }),
            Err(problems) => {
                // Problems found after parsing know their field but not its line.
                let lines = problems
                    .iter()
                    .any(|p| p.line.is_none() && p.path.is_some())
                    .then(|| Lines::new(&document.text))
                    .flatten();
                errors.extend(problems.into_iter().map(|p| {
                    ManifestError {
                        source: source.to_owned(),
                        document: Some(index + 1),
                        line: p
                            .line
                            .or_else(|| Some(lines.as_ref()?.line_of(p.path.as_deref()?)))
                            .or(Some(document.first_line)),
                        field: p.path,
                        message: p.message,
                    }
                }))
            }
        }
    }
    if parsed.is_empty() && errors.is_empty() {
        errors.extend(whole(
            "holds no objects; a manifest needs at least one document with apiVersion and kind"
                .into(),
        ));
    }
    if errors.is_empty() {
        Ok(parsed)
    } else {
        Err(errors)
    }
}

/// Parses and validates one document; returns all its problems.
fn parse_document(text: &str) -> Result<AnyObject, Vec<YamlError>> {
    let type_meta: TypeMeta = yaml::from_str(text).map_err(|error| vec![error])?;
    let missing = |field: &str, fix: &str| YamlError {
        path: Some(field.to_owned()),
        line: None,
        message: format!("is missing; {fix}"),
    };
    let kind = type_meta
        .kind
        .ok_or_else(|| vec![missing("kind", &format!("use one of {}", KINDS.join(", ")))])?;
    match type_meta.api_version.as_deref() {
        None => {
            return Err(vec![missing(
                "apiVersion",
                &format!("set it to {API_VERSION}"),
            )]);
        }
        Some(API_VERSION) => {}
        Some(other) => {
            return Err(vec![YamlError {
                path: Some("apiVersion".into()),
                line: None,
                message: format!("must be {API_VERSION:?} (got {other:?})"),
            }]);
        }
    }
    let object = AnyObject::parse(&kind, text).map_err(|error| vec![error])?;
    let problems = object.validate();
    if problems.is_empty() {
        Ok(object)
    } else {
        Err(problems
            .into_iter()
            .map(|p| YamlError {
                path: Some(p.path),
                line: None,
                message: p.message,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = "\
apiVersion: herd.dev/v1alpha1
kind: Node
metadata:
  name: ferby
spec: {}
---
# a VM
apiVersion: herd.dev/v1alpha1
kind: VirtualMachine
metadata:
  name: small-1
spec:
  memoryMiB: 512
";

    #[test]
    fn reads_every_document_with_its_start_line() {
        let docs = parse_manifests("two.yaml", TWO.as_bytes()).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].object.kind(), "Node");
        assert_eq!(docs[1].object.name(), "small-1");
        assert_eq!((docs[1].document, docs[1].line), (2, 7));
    }

    #[test]
    fn errors_carry_file_document_line_and_field() {
        let bad = TWO.replace("memoryMiB: 512", "memoryMiB: big");
        let errors = parse_manifests("two.yaml", bad.as_bytes()).unwrap_err();
        assert_eq!(errors.len(), 1);
        let error = &errors[0];
        assert_eq!(error.document, Some(2));
        assert_eq!(error.line, Some(13));
        assert_eq!(error.field.as_deref(), Some("spec.memoryMiB"));
        assert!(
            error
                .to_string()
                .starts_with("two.yaml:13 (document 2): spec.memoryMiB: "),
            "{error}"
        );
    }

    #[test]
    fn validation_problems_of_all_documents_are_reported() {
        let bad = TWO
            .replace("name: ferby", "name: Ferby")
            .replace("memoryMiB: 512", "memoryMiB: 4");
        let errors = parse_manifests("two.yaml", bad.as_bytes()).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.clone().unwrap()).collect();
        assert_eq!(fields, ["metadata.name", "spec.memoryMiB"]);
    }

    #[test]
    fn a_document_marker_with_content_keeps_its_line() {
        let docs = split_documents("a: 1\n--- b: 2\n");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].first_line, 2);
        assert_eq!(docs[1].text, "\nb: 2\n");
    }
}
