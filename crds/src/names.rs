//! Rules for names, label keys and label values (the Kubernetes rules).
//!
//! Object names become etcd keys, file names, QEMU and Xen domain names and LVM volume names,
//! so they are held to the strictest of those: a DNS-1123 label.

use crate::validation::{FieldErrors, FieldPath};

/// Longest object name: a DNS-1123 label.
pub const MAX_NAME_LEN: usize = 63;

/// Whether `name` is a DNS-1123 label: 1–63 of `a-z`, `0-9`, `-`, starting and ending
/// with a letter or digit.
pub fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// Pushes an error when `name` is not a valid object name.
pub fn check_object_name(name: &str, path: &FieldPath, errors: &mut FieldErrors) {
    if name.is_empty() {
        errors.push(path.clone(), "must not be empty; give the object a name");
    } else if !is_dns_label(name) {
        errors.push(
            path.clone(),
            format!(
                "{name:?} is not a valid name: use at most {MAX_NAME_LEN} lower-case letters, \
                 digits and '-', starting and ending with a letter or digit"
            ),
        );
    }
}

/// Pushes an error when `name`, a reference to another object, is not a valid object name.
pub fn check_reference(name: &str, path: &FieldPath, errors: &mut FieldErrors) {
    check_object_name(name, path, errors);
}

fn is_label_segment(segment: &str, max: usize) -> bool {
    let bytes = segment.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= max
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

fn is_dns_subdomain(prefix: &str) -> bool {
    prefix.len() <= 253 && prefix.split('.').all(is_dns_label)
}

/// Pushes an error when `key` is not a label key: an optional DNS subdomain prefix and `/`,
/// then a name of at most 63 characters.
pub fn check_label_key(key: &str, path: &FieldPath, errors: &mut FieldErrors) {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(is_dns_subdomain);
    if !prefix_ok || !is_label_segment(name, 63) {
        errors.push(
            path.clone(),
            format!(
                "key {key:?} is not valid: use an optional DNS prefix and '/', then at most 63 \
                 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
            ),
        );
    }
}

/// Pushes an error when `value` is not a label value (empty, or a label segment).
pub fn check_label_value(value: &str, path: &FieldPath, errors: &mut FieldErrors) {
    if !value.is_empty() && !is_label_segment(value, 63) {
        errors.push(
            path.clone(),
            format!(
                "value {value:?} is not valid: use at most 63 letters, digits, '-', '_' or '.', \
                 starting and ending with a letter or digit"
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for good in ["small-1", "a", "ferby", "vm0", &"a".repeat(63)] {
            assert!(is_dns_label(good), "{good}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "Small",
            "a_b",
            "a.b",
            "a/b",
            "../x",
            &"a".repeat(64),
            "é",
        ] {
            assert!(!is_dns_label(bad), "{bad}");
        }
    }

    #[test]
    fn label_keys_and_values() {
        let mut errors = FieldErrors::default();
        let path = FieldPath::root();
        check_label_key("app", &path, &mut errors);
        check_label_key("herd.dev/role", &path, &mut errors);
        check_label_value("", &path, &mut errors);
        check_label_value("web_1.a", &path, &mut errors);
        assert!(errors.into_vec().is_empty());

        let mut errors = FieldErrors::default();
        check_label_key("Bad Key", &path, &mut errors);
        check_label_key("UPPER.dev/x", &path, &mut errors);
        check_label_value("-x", &path, &mut errors);
        assert_eq!(errors.into_vec().len(), 3);
    }
}
