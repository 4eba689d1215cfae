//! YAML in and out, with the strict options every herd reader uses.
//!
//! Duplicate keys are errors, aliases and nesting are bounded (no "billion laughs"), and a
//! deserialization error carries the field path and the line where it happened.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_saphyr::budget::BudgetBreach;
use serde_saphyr::granit_parser::ErrorKind;
use serde_saphyr::{
    Budget, DuplicateKeyPolicy, Error, ExternalMessageSource, MessageFormatter, Options,
    UserMessageFormatter,
};

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
    result.map_err(|error| from_saphyr(text, &error, failed_at.filter(|path| path != ".")))
}

fn from_saphyr(text: &str, error: &serde_saphyr::Error, path: Option<String>) -> YamlError {
    let error = original(error);
    let line = error
        .location()
        .map(|l| l.line())
        .filter(|line| *line > 0)
        .map(|line| line as usize);
    // serde_path_to_error spells a key it had not finished reading `?`.
    let parent = path.map(|path| match path.strip_suffix('?') {
        Some(parent) => parent.trim_end_matches('.').to_owned(),
        None => path,
    });
    let child = |name: &str| match parent.as_deref() {
        Some("") | None => name.to_owned(),
        Some(parent) => format!("{parent}.{name}"),
    };
    let path = match error {
        Error::DuplicateMappingKey { key: Some(key), .. } => Some(child(key)),
        Error::SerdeMissingField { field, .. } => Some(child(field)),
        _ => parent.filter(|path| !path.is_empty()),
    };
    YamlError {
        path,
        line,
        message: describe(text, error),
    }
}

/// The error itself, without the alias or snippet wrappers serde-saphyr puts around it.
fn original(mut error: &Error) -> &Error {
    while let Error::AliasError { error: inner, .. } | Error::WithSnippet { error: inner, .. } =
        error
    {
        error = inner;
    }
    error
}

const TOO_DEEP: &str = "is nested too deeply; herd objects need only a few levels";

/// A sentence for a person: what is wrong and what to do, without serde-saphyr's internals
/// (option names, counters) and without the location, which is reported on its own.
fn describe(text: &str, error: &Error) -> String {
    match error {
        Error::InvalidScalar { ty, location } => {
            let got = scalar_at(text, location)
                .map(|value| format!(" (got {value})"))
                .unwrap_or_default();
            format!("{}{got}", expected_scalar(ty))
        }
        Error::DuplicateMappingKey { .. } => "is given twice (duplicate key); keep only one".into(),
        Error::SerdeMissingField { .. } => {
            "is missing; it has no default, so give it a value".into()
        }
        Error::Unexpected { expected, .. } => match *expected {
            "string scalar" | "scalar" => "must be a single value, not a list or a mapping".into(),
            "sequence start" => "must be a list".into(),
            "mapping start" => "must be a mapping of keys to values".into(),
            _ => UserMessageFormatter.format_message(error).into_owned(),
        },
        Error::AliasReplayLimitExceeded { .. }
        | Error::AliasExpansionLimitExceeded { .. }
        | Error::AliasReplayStackDepthExceeded { .. }
        | Error::AliasReplayCounterOverflow { .. }
        | Error::Budget {
            breach: BudgetBreach::Aliases { .. } | BudgetBreach::Anchors { .. },
            ..
        } => "uses YAML aliases (*name) that expand too far, as in a \"billion laughs\" \
              attack; write the values out instead"
            .into(),
        Error::Budget {
            breach: BudgetBreach::Depth { .. },
            ..
        } => TOO_DEEP.into(),
        Error::Budget { .. } => {
            "is too large or too complex; split it into smaller documents".into()
        }
        Error::ExternalMessage { source, .. }
            if matches!(&**source, ExternalMessageSource::Parser(scan)
                if matches!(scan.kind(), ErrorKind::RecursionLimitExceeded)) =>
        {
            TOO_DEEP.into()
        }
        other => UserMessageFormatter.format_message(other).into_owned(),
    }
}

/// What a scalar of Rust type `ty` must look like, in words.
fn expected_scalar(ty: &str) -> String {
    match ty {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => {
            "must be a whole number, 0 or more".into()
        }
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "must be a whole number".into(),
        "f32" | "f64" => "must be a number".into(),
        "bool" => "must be true or false".into(),
        other => format!("is not a valid {other}"),
    }
}

/// The source text of the scalar at `location`, when it is short enough to quote.
fn scalar_at(text: &str, location: &serde_saphyr::Location) -> Option<String> {
    let span = location.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let len = usize::try_from(span.byte_len()?).ok()?;
    let value = text.get(start..start.checked_add(len)?)?.trim();
    let quotable = !value.is_empty() && value.len() <= 40 && !value.chars().any(char::is_control);
    quotable.then(|| value.to_owned())
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
    fn errors_name_the_field_and_say_what_it_must_be() {
        let missing = from_str::<Outer>("spec: {}\n").unwrap_err();
        assert_eq!(missing.path.as_deref(), Some("spec.memoryMib"), "{missing}");
        assert!(missing.message.starts_with("is missing"), "{missing}");
        let negative = from_str::<Outer>("spec:\n  memoryMib: -5\n").unwrap_err();
        assert_eq!(
            negative.message,
            "must be a whole number, 0 or more (got -5)"
        );
        let list = from_str::<Outer>("spec:\n  memoryMib: [1]\n").unwrap_err();
        assert_eq!(
            list.message,
            "must be a single value, not a list or a mapping"
        );
        // Past the budget's depth, and past the parser's own nesting limit.
        for depth in [100, 10_000] {
            let deep = format!("{}{}\n", "[".repeat(depth), "]".repeat(depth));
            let error = from_str::<serde_json::Value>(&deep).unwrap_err();
            assert_eq!(error.message, TOO_DEEP, "depth {depth}");
        }
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let error = from_str::<BTreeMap<String, u32>>("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert!(
            error.message.to_lowercase().contains("duplicate"),
            "{error}"
        );
        assert_eq!(error.path.as_deref(), Some("a"), "{error}");
        assert_eq!(error.line, Some(3), "{error}");
    }
}
