//! YAML in and out, with the strict options every herd reader uses.
//!
//! Duplicate keys are errors, aliases and nesting are bounded (no "billion laughs"), and a
//! deserialization error carries the field path and the line where it happened.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_saphyr::{Budget, DuplicateKeyPolicy, Options};

/// Largest YAML text accepted in one call (a manifest file or a stored object).
pub const MAX_INPUT_BYTES: usize = 4 * 1024 * 1024;

/// Why a YAML text could not become a value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct YamlError {
    /// Field path such as `spec.memoryMiB`, when the error sits in a field.
    pub path: Option<String>,
    /// 1-based line within the text, when known.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if let Some(path) = &self.path {
            write!(f, "{path}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// The reader options: duplicate keys rejected, a budget against alias and nesting bombs.
pub fn strict_options() -> Options {
    let mut budget = Budget::default();
    budget.max_events = 200_000;
    budget.max_aliases = 100;
    budget.max_anchors = 100;
    budget.max_depth = 64;
    let mut options = Options::default();
    options.duplicate_keys = DuplicateKeyPolicy::Error;
    options.budget = Some(budget);
    options.alias_limits.max_total_replayed_events = 10_000;
    options.with_snippet = false;
    options
}

/// Reads one YAML document into `T`, naming the failing field.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    if text.len() > MAX_INPUT_BYTES {
        return Err(YamlError {
            path: None,
            line: None,
            message: format!("is larger than {MAX_INPUT_BYTES} bytes; split it into smaller files"),
        });
    }
    let mut failed_at = None;
    let result =
        serde_saphyr::with_deserializer_from_str_with_options(text, strict_options(), |de| {
            serde_path_to_error::deserialize::<_, T>(de).map_err(|error| {
                failed_at = Some(error.path().to_string());
                error.into_inner()
            })
        });
    result.map_err(|error| from_saphyr(&error, failed_at.filter(|path| path != ".")))
}

fn from_saphyr(error: &serde_saphyr::Error, path: Option<String>) -> YamlError {
    let line = error
        .location()
        .map(|l| l.line())
        .filter(|line| *line > 0)
        .map(|line| line as usize);
    let message = error.without_snippet().to_string();
    YamlError {
        path,
        line,
        message: strip_location(&message),
    }
}

/// serde-saphyr appends " at line N column M"; the line is reported separately.
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

/// Writes `value` as YAML.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, serde_saphyr::SerializeError> {
    serde_saphyr::to_string(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        memory_mib: u64,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        spec: Inner,
    }

    #[test]
    fn wrong_type_names_the_field_and_line() {
        let error = from_str::<Outer>("spec:\n  memoryMib: lots\n").unwrap_err();
        assert_eq!(error.path.as_deref(), Some("spec.memoryMib"), "{error}");
        assert_eq!(error.line, Some(2), "{error}");
    }

    #[test]
    fn unknown_field_is_named() {
        let error = from_str::<Outer>("spec:\n  memoryMib: 1\n  colour: red\n").unwrap_err();
        assert!(error.to_string().contains("colour"), "{error}");
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let error = from_str::<BTreeMap<String, u32>>("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert!(
            error.message.to_lowercase().contains("duplicate"),
            "{error}"
        );
    }
}
