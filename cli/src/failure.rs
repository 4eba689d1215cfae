//! What a command reports when it fails: a sentence for the user and the exit code.
//!
//! Exit codes: 0 success, 1 error, 2 usage error (clap's own, and `herdctl diff`'s errors, whose
//! 1 means "differences found"). A failure with an empty message ends the program quietly, as
//! when standard output was closed by the reader (`herdctl get vms -w | head`).

use herd_store::StoreError;

/// An error to print on standard error, and the exit code to end with.
#[derive(Debug, PartialEq, Eq)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    /// An ordinary error: exit code 1.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            code: 1,
            message: message.into(),
        }
    }

    /// Ends with `code` and prints nothing.
    pub fn quiet(code: u8) -> Self {
        Self {
            code,
            message: String::new(),
        }
    }

    /// The same failure with another exit code.
    pub fn with_code(self, code: u8) -> Self {
        Self { code, ..self }
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Self::new(store_message(&error))
    }
}

impl Failure {
    /// The sentence for a store error, without taking it.
    pub fn from_store(error: &StoreError) -> String {
        store_message(error)
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

/// A store error as the user should read it.
fn store_message(error: &StoreError) -> String {
    match error {
        StoreError::Etcd(_) => format!(
            "etcd request failed: {}; check that etcd is up",
            crate::context::reason(error)
        ),
        StoreError::NotFound { kind, name } => {
            format!("{} {name:?} not found", kind.to_lowercase())
        }
        other => other.to_string(),
    }
}

/// The `kind/name` spelling used in every line herdctl prints, from a store kind (`VirtualMachine`).
pub fn object_ref(kind: &str, name: &str) -> String {
    format!("{}/{name}", kind.to_lowercase())
}

/// Explains a write that lost a race (compare-and-swap failed), or `None` for other errors.
pub fn race_message(error: &StoreError) -> Option<String> {
    let what = match error {
        StoreError::Conflict { kind, .. } if kind == "transaction" => {
            "an object was changed by someone else between herdctl's read and its write".to_owned()
        }
        StoreError::Conflict {
            kind,
            name,
            expected,
            found,
        } => format!(
            "{} was changed by someone else between herdctl's read and its write \
             (revision {expected}, now {found})",
            object_ref(kind, name)
        ),
        StoreError::AlreadyExists { kind, name } => format!(
            "{} was created by someone else between herdctl's read and its write",
            object_ref(kind, name)
        ),
        StoreError::NotFound { kind, name } => format!(
            "{} was deleted by someone else between herdctl's read and its write",
            object_ref(kind, name)
        ),
        _ => return None,
    };
    Some(what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn races_are_explained_and_other_errors_are_not() {
        let conflict = StoreError::Conflict {
            kind: "VirtualMachine".into(),
            name: "small-1".into(),
            expected: 5,
            found: 7,
        };
        let text = race_message(&conflict).unwrap();
        assert!(
            text.starts_with("virtualmachine/small-1 was changed by someone else"),
            "{text}"
        );
        assert!(race_message(&StoreError::FenceLost).is_none());
    }

    #[test]
    fn not_found_reads_in_the_cli_spelling() {
        let error = StoreError::NotFound {
            kind: "Node".into(),
            name: "ferby".into(),
        };
        assert_eq!(Failure::from(error).message, "node \"ferby\" not found");
    }
}
