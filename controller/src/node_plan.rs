//! Node readiness (pure): a node is ready while its heartbeat key exists, that is while its
//! agent keeps the lease the heartbeat is attached to.

/// What to record about a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeTransition {
    BecameReady,
    BecameNotReady,
    Unchanged,
}

/// The transition from the recorded readiness (`None`: never recorded) given whether the
/// heartbeat is present now.
pub fn node_transition(recorded_ready: Option<bool>, heartbeat_present: bool) -> NodeTransition {
    match (recorded_ready, heartbeat_present) {
        (Some(true), true) | (Some(false), false) => NodeTransition::Unchanged,
        (_, true) => NodeTransition::BecameReady,
        (Some(true), false) => NodeTransition::BecameNotReady,
        (None, false) => NodeTransition::Unchanged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_the_heartbeat() {
        assert_eq!(node_transition(None, true), NodeTransition::BecameReady);
        assert_eq!(
            node_transition(Some(false), true),
            NodeTransition::BecameReady
        );
        assert_eq!(
            node_transition(Some(true), false),
            NodeTransition::BecameNotReady
        );
        assert_eq!(node_transition(Some(true), true), NodeTransition::Unchanged);
        assert_eq!(
            node_transition(None, false),
            NodeTransition::Unchanged,
            "a node that never reported stays unknown"
        );
    }
}
