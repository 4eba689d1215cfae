//! Validation that reports every problem at once, each with its field path.
//!
//! A problem reads `spec.memoryMiB: must be at least 16`: the path in the manifest's own
//! (camelCase) spelling, then what is wrong and, where it helps, how to fix it.

use std::fmt;

/// A path into an object, such as `spec.disks[1].volume` or `metadata.labels["app"]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldPath(String);

impl FieldPath {
    /// The path of the object's root.
    pub fn root() -> Self {
        Self(String::new())
    }

    /// The path of a named field below this one.
    pub fn child(&self, field: &str) -> Self {
        if self.0.is_empty() {
            Self(field.to_owned())
        } else {
            Self(format!("{}.{field}", self.0))
        }
    }

    /// The path of a list element below this one.
    pub fn index(&self, index: usize) -> Self {
        Self(format!("{}[{index}]", self.0))
    }

    /// The path of a map entry below this one.
    pub fn key(&self, key: &str) -> Self {
        Self(format!("{}[{key:?}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One problem found in one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The problems found so far; validation pushes into it and never stops at the first.
#[derive(Debug, Default)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    pub fn push(&mut self, path: FieldPath, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.0,
            message: message.into(),
        });
    }

    /// Pushes `message` when `ok` is false.
    pub fn check(&mut self, ok: bool, path: FieldPath, message: impl Into<String>) {
        if !ok {
            self.push(path, message);
        }
    }

    /// Checks that `value` is at least `min`.
    pub fn at_least<T: PartialOrd + fmt::Display>(&mut self, value: T, min: T, path: FieldPath) {
        if value < min {
            self.push(path, format!("must be at least {min} (got {value})"));
        }
    }

    /// Checks that `value` is at most `max`.
    pub fn at_most<T: PartialOrd + fmt::Display>(&mut self, value: T, max: T, path: FieldPath) {
        if value > max {
            self.push(path, format!("must be at most {max} (got {value})"));
        }
    }

    pub fn into_vec(self) -> Vec<FieldError> {
        self.0
    }
}

/// An object that can check itself.
pub trait Validate {
    /// Pushes every problem of `self`, whose path is `path`, into `errors`.
    fn validate_into(&self, path: &FieldPath, errors: &mut FieldErrors);

    /// Every problem of `self`; empty when it is valid.
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = FieldErrors::default();
        self.validate_into(&FieldPath::root(), &mut errors);
        errors.into_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_read_like_the_manifest() {
        let path = FieldPath::root()
            .child("spec")
            .child("disks")
            .index(1)
            .child("volume");
        assert_eq!(path.to_string(), "spec.disks[1].volume");
        let label = FieldPath::root()
            .child("metadata")
            .child("labels")
            .key("app");
        assert_eq!(label.to_string(), "metadata.labels[\"app\"]");
    }

    #[test]
    fn bounds_name_the_limit_and_the_value() {
        let mut errors = FieldErrors::default();
        errors.at_least(8u64, 16, FieldPath::root().child("spec").child("memoryMiB"));
        errors.at_most(3u32, 2, FieldPath::root().child("x"));
        errors.at_least(16u64, 16, FieldPath::root().child("fine"));
        let text: Vec<String> = errors.into_vec().iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "spec.memoryMiB: must be at least 16 (got 8)",
                "x: must be at most 2 (got 3)"
            ]
        );
    }
}
