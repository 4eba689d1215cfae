//! The lab's record on disk (`<lab>/lab.yaml`): what was started, so `down` can stop it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::network::LabNetwork;
use super::plan::{LabDriver, Ports};

/// What `herdctl up` started.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabState {
    pub driver: LabDriver,
    pub nodes: Vec<String>,
    pub ports: Ports,
    /// (process name, pid) of everything started, etcd first.
    pub processes: Vec<(String, u32)>,
    /// The namespaces and bridge of `--netns`, to remove on `down`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<LabNetwork>,
}

impl LabState {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("lab.yaml")
    }

    /// The recorded lab, if there is one.
    pub fn load(dir: &Path) -> Result<Option<Self>, String> {
        let path = Self::path(dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => herd_crds::yaml::from_str(&text)
                .map(Some)
                .map_err(|e| format!("{}: {e}", path.display())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(format!("{}: {error}", path.display())),
        }
    }

    pub fn save(&self, dir: &Path) -> Result<(), String> {
        let text = herd_crds::yaml::to_string(self).map_err(|e| e.to_string())?;
        std::fs::write(Self::path(dir), text)
            .map_err(|e| format!("{}: {e}", Self::path(dir).display()))
    }
}

/// Whether `pid` is alive (a zombie counts as gone).
pub fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(") ")
                .map(|(_, rest)| !rest.starts_with('Z'))
        })
        .unwrap_or(false)
}
