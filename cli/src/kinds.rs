//! The kind names people type (`vm`, `vms`, `virtualmachine`, …) and what they mean, and
//! the object references of `describe`, `delete` and `wait` (`vm small-1`, `vm/small-1`).

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

/// One object named on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectRef {
    pub kind: Kind,
    pub name: String,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// Reads object references as kubectl does: `KIND NAME [NAME…]`, or `KIND/NAME [KIND/NAME…]`.
pub fn parse_refs(args: &[String]) -> Result<Vec<ObjectRef>, String> {
    let usage = "name objects as KIND NAME or KIND/NAME, such as vm small-1 or vm/small-1";
    let Some(first) = args.first() else {
        return Err(format!("no object given; {usage}"));
    };
    if !first.contains('/') {
        let kind: Kind = first.parse()?;
        if args.len() < 2 {
            return Err(format!("no name given after {first:?}; {usage}"));
        }
        return args[1..]
            .iter()
            .map(|name| match name.contains('/') {
                true => Err(format!("{name:?} mixes KIND/NAME with KIND NAME; {usage}")),
                false => Ok(ObjectRef {
                    kind,
                    name: name.clone(),
                }),
            })
            .collect();
    }
    args.iter()
        .map(|arg| {
            let (kind, name) = arg
                .split_once('/')
                .ok_or_else(|| format!("{arg:?} is not KIND/NAME; {usage}"))?;
            if name.is_empty() {
                return Err(format!("{arg:?} has no name; {usage}"));
            }
            Ok(ObjectRef {
                kind: kind.parse()?,
                name: name.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn objects_are_named_either_way() {
        let vm = |name: &str| ObjectRef {
            kind: Kind::VirtualMachine,
            name: name.into(),
        };
        assert_eq!(
            parse_refs(&strings(&["vm", "a", "b"])),
            Ok(vec![vm("a"), vm("b")])
        );
        assert_eq!(parse_refs(&strings(&["vms/a"])), Ok(vec![vm("a")]));
        assert_eq!(vm("a").to_string(), "virtualmachine/a");
        for bad in [&["vm"][..], &[], &["vm/"], &["vm", "x/y"], &["pods/a"]] {
            assert!(parse_refs(&strings(bad)).is_err(), "{bad:?}");
        }
    }

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
