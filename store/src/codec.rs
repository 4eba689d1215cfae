//! How objects are written to and read from etcd values: YAML text, so that
//! `etcdctl get` shows what a person wrote.
//!
//! The stored object carries neither its status (stored under its own key) nor its
//! `resourceVersion` (that is the key's `mod_revision`, filled in on read).

use herd_crds::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Revision, StoreError, Versioned};

/// The YAML stored for `object`: without status and without resourceVersion.
pub fn encode_object<R: Resource>(object: &R) -> Result<String, StoreError> {
    let mut stored = object.clone();
    stored.clear_status();
    stored.metadata_mut().resource_version = None;
    encode_value(&stored).map_err(|message| StoreError::Encode {
        kind: R::KIND.to_owned(),
        name: object.name().to_owned(),
        message,
    })
}

/// Reads an object stored under `key` at `revision`; sets its resourceVersion.
pub fn decode_object<R: Resource>(
    key: &str,
    bytes: &[u8],
    revision: Revision,
) -> Result<R, StoreError> {
    let mut object: R = decode_value(key, bytes)?;
    object.metadata_mut().resource_version = Some(revision.to_string());
    Ok(object)
}

/// Reads any value stored under `key` together with its revision.
pub fn decode_versioned<T: DeserializeOwned>(
    key: &str,
    bytes: &[u8],
    revision: Revision,
) -> Result<Versioned<T>, StoreError> {
    Ok(Versioned {
        value: decode_value(key, bytes)?,
        revision,
    })
}

/// YAML text of any value.
pub fn encode_value<T: Serialize>(value: &T) -> Result<String, String> {
    herd_crds::yaml::to_string(value).map_err(|e| e.to_string())
}

/// Reads any value stored under `key`, with the same strict reader as manifests.
pub fn decode_value<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    let decode_error = |message: String| StoreError::Decode {
        key: key.to_owned(),
        message,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| decode_error(e.to_string()))?;
    herd_crds::yaml::from_str(text).map_err(|e| decode_error(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_crds::node::{NodeSpec, NodeStatus};
    use herd_crds::{Node, Object};

    #[test]
    fn status_and_revision_stay_out_of_the_stored_text() {
        let mut node: Node = Object::new("ferby", NodeSpec::default());
        node.status = Some(NodeStatus {
            cpus: 4,
            ..NodeStatus::default()
        });
        node.metadata.resource_version = Some("7".into());
        let text = encode_object(&node).unwrap();
        assert!(
            !text.contains("status") && !text.contains("resourceVersion"),
            "{text}"
        );
        let back: Node = decode_object("/herd/nodes/ferby", text.as_bytes(), 9).unwrap();
        assert_eq!(back.metadata.resource_version.as_deref(), Some("9"));
        assert_eq!(back.spec, node.spec);
        assert_eq!(back.status, None);
    }

    #[test]
    fn garbage_in_the_store_is_a_decode_error_naming_the_key() {
        let error = decode_object::<Node>("/herd/nodes/x", b"spec: [", 1).unwrap_err();
        assert!(
            error.to_string().starts_with("cannot decode /herd/nodes/x"),
            "{error}"
        );
    }
}
