//! The kind names people type (`vm`, `vms`, `virtualmachine`, …) and what they mean.

use std::fmt;
use std::str::FromStr;

/// A kind herdctl can show or change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    VirtualMachine,
    Node,
    Migration,
    Volume,
    ClusterPolicy,
    Event,
}

impl Kind {
    /// The lower-case singular used in output such as `virtualmachine/small-1`.
    pub fn singular(self) -> &'static str {
        match self {
            Self::VirtualMachine => "virtualmachine",
            Self::Node => "node",
            Self::Migration => "migration",
            Self::Volume => "volume",
            Self::ClusterPolicy => "clusterpolicy",
            Self::Event => "event",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.singular())
    }
}

impl FromStr for Kind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Ok(match text.to_ascii_lowercase().as_str() {
            "vm" | "vms" | "virtualmachine" | "virtualmachines" => Self::VirtualMachine,
            "no" | "node" | "nodes" => Self::Node,
            "mig" | "migration" | "migrations" => Self::Migration,
            "vol" | "volume" | "volumes" => Self::Volume,
            "cp" | "clusterpolicy" | "clusterpolicies" => Self::ClusterPolicy,
            "ev" | "event" | "events" => Self::Event,
            _ => {
                return Err(format!(
                    "unknown kind {text:?}; use one of vms, nodes, migrations, volumes, clusterpolicies, events"
                ));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Kind; 6] = [
        Kind::VirtualMachine,
        Kind::Node,
        Kind::Migration,
        Kind::Volume,
        Kind::ClusterPolicy,
        Kind::Event,
    ];

    #[test]
    fn every_spelling_resolves_and_round_trips() {
        for kind in ALL {
            assert_eq!(kind.singular().parse::<Kind>(), Ok(kind));
        }
        assert_eq!("VMs".parse::<Kind>(), Ok(Kind::VirtualMachine));
        assert!("pods".parse::<Kind>().unwrap_err().contains("unknown kind"));
    }
}
