//! Where things live in etcd (see DESIGN.md, "Keys in etcd").
//!
//! ```text
//! <prefix>/<plural>/<name>             spec + metadata
//! <prefix>/status/<plural>/<name>      status, written only by its owner
//! <prefix>/assignments/<node>/<vm>     the controller's placement
//! <prefix>/heartbeats/<node>           node status on the agent's lease
//! <prefix>/events/<name>               events, each on an expiring lease
//! <prefix>/election/controller         leader election
//! ```

use herd_crds::names::is_dns_label;

use crate::StoreError;

/// The key layout under one prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Default for Keys {
    fn default() -> Self {
        Self::new("/herd")
    }
}

impl Keys {
    /// Keys under `prefix` (a trailing `/` is ignored).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.trim_end_matches('/').to_owned(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>/<plural>/` — every object of a kind.
    pub fn objects(&self, plural: &str) -> String {
        format!("{}/{plural}/", self.prefix)
    }

    pub fn object(&self, plural: &str, name: &str) -> Result<String, StoreError> {
        Ok(format!("{}{}", self.objects(plural), checked(name)?))
    }

    /// `<prefix>/status/<plural>/` — every status of a kind.
    pub fn statuses(&self, plural: &str) -> String {
        format!("{}/status/{plural}/", self.prefix)
    }

    pub fn status(&self, plural: &str, name: &str) -> Result<String, StoreError> {
        Ok(format!("{}{}", self.statuses(plural), checked(name)?))
    }

    /// `<prefix>/assignments/<node>/` — what one node must run.
    pub fn node_assignments(&self, node: &str) -> Result<String, StoreError> {
        Ok(format!("{}/assignments/{}/", self.prefix, checked(node)?))
    }

    /// `<prefix>/assignments/` — every assignment of every node.
    pub fn assignments(&self) -> String {
        format!("{}/assignments/", self.prefix)
    }

    pub fn assignment(&self, node: &str, vm: &str) -> Result<String, StoreError> {
        Ok(format!("{}{}", self.node_assignments(node)?, checked(vm)?))
    }

    pub fn heartbeats(&self) -> String {
        format!("{}/heartbeats/", self.prefix)
    }

    pub fn heartbeat(&self, node: &str) -> Result<String, StoreError> {
        Ok(format!("{}{}", self.heartbeats(), checked(node)?))
    }

    pub fn events(&self) -> String {
        format!("{}/events/", self.prefix)
    }

    /// The election a controller campaigns in.
    pub fn election(&self, name: &str) -> Result<String, StoreError> {
        Ok(format!("{}/election/{}", self.prefix, checked(name)?))
    }
}

/// Object names become key segments: only DNS labels, so no `/`, `..` or empty segment.
fn checked(name: &str) -> Result<&str, StoreError> {
    if is_dns_label(name) {
        Ok(name)
    } else {
        Err(StoreError::InvalidName(name.to_owned()))
    }
}

/// What follows `prefix` in `key`: a name, or `node/vm` under the assignments prefix.
pub fn name_below<'a>(prefix: &str, key: &'a str) -> Option<&'a str> {
    key.strip_prefix(prefix).filter(|rest| !rest.is_empty())
}

/// The end of the key range holding every key that starts with `prefix` (etcd's `prefix + 1`).
pub fn range_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_design() {
        let keys = Keys::new("/herd/");
        assert_eq!(
            keys.object("virtualmachines", "small-1").unwrap(),
            "/herd/virtualmachines/small-1"
        );
        assert_eq!(
            keys.status("nodes", "ferby").unwrap(),
            "/herd/status/nodes/ferby"
        );
        assert_eq!(
            keys.assignment("ferby", "small-1").unwrap(),
            "/herd/assignments/ferby/small-1"
        );
        assert_eq!(keys.heartbeat("ferby").unwrap(), "/herd/heartbeats/ferby");
        assert_eq!(
            keys.election("controller").unwrap(),
            "/herd/election/controller"
        );
        assert_eq!(keys.events(), "/herd/events/");
    }

    #[test]
    fn names_that_would_escape_their_folder_are_refused() {
        let keys = Keys::default();
        for bad in ["", "../x", "a/b", "A"] {
            assert!(keys.object("nodes", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges_and_names() {
        assert_eq!(range_end("/herd/nodes/"), b"/herd/nodes0".to_vec());
        assert_eq!(
            name_below("/herd/nodes/", "/herd/nodes/ferby"),
            Some("ferby")
        );
        assert_eq!(
            name_below("/herd/assignments/", "/herd/assignments/a/b"),
            Some("a/b")
        );
        assert_eq!(name_below("/herd/nodes/", "/herd/nodesx"), None);
    }
}
