//! A set of manifest files read together: every document of every file, each object once.
//!
//! `herdctl apply` hands it files read from disk, the GitOps sync blobs read from a commit;
//! both get the same answer: all documents, or every problem of every file (file, line,
//! document, field) and nothing else.

use std::collections::BTreeMap;

use crate::manifest::{ManifestError, ParsedDocument, parse_manifests};

/// One document read from a file.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded {
    pub source: String,
    pub document: ParsedDocument,
}

/// Parses and validates every `(source, bytes)` file; returns all documents or all problems.
/// Two documents naming the same object are a problem too (they would race each other).
pub fn parse_sources(
    files: impl IntoIterator<Item = (String, Vec<u8>)>,
) -> Result<Vec<Loaded>, Vec<ManifestError>> {
    let mut loaded = Vec::new();
    let mut errors = Vec::new();
    for (source, bytes) in files {
        match parse_manifests(&source, &bytes) {
            Ok(documents) => loaded.extend(documents.into_iter().map(|document| Loaded {
                source: source.clone(),
                document,
            })),
            Err(problems) => errors.extend(problems),
        }
    }
    if let Some(duplicate) = first_duplicate(&loaded) {
        errors.push(duplicate);
    }
    if errors.is_empty() {
        Ok(loaded)
    } else {
        Err(errors)
    }
}

/// The first document that names an object an earlier document already named.
fn first_duplicate(loaded: &[Loaded]) -> Option<ManifestError> {
    let mut seen = BTreeMap::new();
    for item in loaded {
        let object = &item.document.object;
        let id = (object.kind(), object.name().to_owned());
        if let Some(first) = seen.insert(id, (&item.source, item.document.document)) {
            return Some(ManifestError {
                source: item.source.clone(),
                document: Some(item.document.document),
                line: Some(item.document.line),
                field: Some("metadata.name".into()),
                message: format!(
                    "{}/{} is also defined in {} (document {}); keep one",
                    object.kind().to_lowercase(),
                    object.name(),
                    first.0,
                    first.1
                ),
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const VM: &str = "apiVersion: herd.dev/v1alpha1\nkind: VirtualMachine\nmetadata:\n  name: a\nspec:\n  memoryMiB: 64\n";

    #[test]
    fn the_same_object_in_two_files_is_refused() {
        let errors = parse_sources([("x.yaml".into(), VM.into()), ("y.yaml".into(), VM.into())])
            .unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].to_string().starts_with(
                "y.yaml:1 (document 1): metadata.name: virtualmachine/a is also defined in x.yaml"
            ),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn problems_of_every_file_are_kept() {
        let bad = VM.replace("64", "lots");
        let errors = parse_sources([
            ("x.yaml".into(), bad.clone().into()),
            ("y.yaml".into(), bad.into()),
        ])
        .unwrap_err();
        assert_eq!(errors.len(), 2);
    }
}
