//! The run directory of a domain, `<state_dir>/<name>/`: everything needed to find a running
//! QEMU again after the agent restarts.
//!
//! | file          | written by | holds                                                   |
//! | ------------- | ---------- | ------------------------------------------------------- |
//! | `domain.json` | the driver | [`Metadata`]: the VM uid, the domain spec, the endpoint |
//! | `qemu.pid`    | QEMU       | the pid of the daemonized QEMU (`-pidfile`)             |
//! | `qmp.sock`    | QEMU       | the QMP socket                                          |
//! | `serial.log`  | QEMU       | the guest's serial console                              |
//!
//! The metadata is written (atomically, by rename) before QEMU starts, so a QEMU that runs always
//! has it beside it.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use herd_crds::assignment::DomainSpec;
use serde::{Deserialize, Serialize};

use super::process;

/// Longest QMP socket path a unix socket address can hold.
const MAX_SOCKET_PATH: usize = 107;
const METADATA: &str = "domain.json";
const MAX_METADATA: u64 = 1 << 20;

/// Why a run directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    #[error(
        "{0:?} cannot be a directory name (use letters, digits, '-', '_' or '.', not starting with '.')"
    )]
    Name(String),
    #[error(
        "the QMP socket path {0} is longer than {MAX_SOCKET_PATH} bytes; use a shorter state directory"
    )]
    SocketPathTooLong(String),
    #[error("cannot parse {path}: {message}")]
    Metadata { path: String, message: String },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// What the driver records about a domain it started.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub uid: String,
    pub spec: DomainSpec,
    /// Set when QEMU was started to receive a migration: the endpoint it listens on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incoming: Option<String>,
}

/// The run directory of one domain.
#[derive(Clone, Debug)]
pub struct RunDir {
    name: String,
    dir: PathBuf,
}

impl RunDir {
    /// The run directory of domain `name` under `state_dir` (which should be absolute).
    pub fn new(state_dir: &Path, name: &str) -> Result<Self, RunDirError> {
        if !is_safe_name(name) {
            return Err(RunDirError::Name(name.to_string()));
        }
        let run = Self {
            name: name.to_string(),
            dir: state_dir.join(name),
        };
        let socket = run.qmp_socket();
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(RunDirError::SocketPathTooLong(socket.display().to_string()));
        }
        Ok(run)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn qmp_socket(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }

    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("qemu.pid")
    }

    pub fn serial_log(&self) -> PathBuf {
        self.dir.join("serial.log")
    }

    pub fn exists(&self) -> bool {
        self.dir.join(METADATA).exists()
    }

    /// The pid QEMU wrote, if any.
    pub fn pid(&self) -> io::Result<Option<u32>> {
        process::read_pid_file(&self.pid_file())
    }

    /// The recorded metadata; `None` when the directory or file is absent.
    pub fn metadata(&self) -> Result<Option<Metadata>, RunDirError> {
        let path = self.dir.join(METADATA);
        let mut text = Vec::new();
        match std::fs::File::open(&path) {
            Ok(file) => file.take(MAX_METADATA).read_to_end(&mut text)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|e| RunDirError::Metadata {
                path: path.display().to_string(),
                message: e.to_string(),
            })
    }

    /// Empties (or creates) the directory and records `metadata`, ready for a new QEMU.
    /// The caller has made sure no QEMU runs here.
    pub fn prepare(&self, metadata: &Metadata) -> Result<(), RunDirError> {
        self.remove()?;
        std::fs::create_dir_all(&self.dir)?;
        let text = serde_json::to_vec_pretty(metadata).map_err(|e| RunDirError::Metadata {
            path: self.dir.display().to_string(),
            message: e.to_string(),
        })?;
        let temporary = self.dir.join(format!("{METADATA}.tmp"));
        std::fs::write(&temporary, text)?;
        std::fs::rename(&temporary, self.dir.join(METADATA))?;
        Ok(())
    }

    /// Removes the directory and everything in it; succeeds if it is already gone.
    pub fn remove(&self) -> io::Result<()> {
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Names of the run directories under `state_dir` (those holding a metadata file).
pub fn scan(state_dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(state_dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if is_safe_name(&name) && entry.path().join(METADATA).is_file() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// A single path component that is not hidden, `.` or `..`, and has no separators or controls.
fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| !c.is_control() && c != '/' && c != '\\')
}

#[cfg(test)]
mod tests {
    use herd_crds::virtual_machine::Boot;

    use super::*;

    fn metadata() -> Metadata {
        let spec = DomainSpec {
            name: "vm-1".into(),
            uid: "u-1".into(),
            vcpus: 1,
            memory_mib: 32,
            boot: Boot::default(),
            disks: Vec::new(),
            networks: Vec::new(),
            migration: Default::default(),
        };
        Metadata {
            uid: "u-1".into(),
            spec,
            incoming: Some("tcp:127.0.0.1:4000".into()),
        }
    }

    #[test]
    fn names_that_escape_the_state_dir_are_refused() {
        let state = Path::new("/var/lib/herd/qemu");
        for bad in [
            "",
            ".",
            "..",
            "../etc",
            "a/b",
            ".hidden",
            "a\nb",
            &"x".repeat(65),
        ] {
            assert!(
                matches!(RunDir::new(state, bad), Err(RunDirError::Name(_))),
                "{bad:?}"
            );
        }
        let run = RunDir::new(state, "we,ird-name").unwrap();
        assert_eq!(
            run.qmp_socket(),
            Path::new("/var/lib/herd/qemu/we,ird-name/qmp.sock")
        );
        let deep = PathBuf::from(format!("/{}", "d".repeat(100)));
        assert!(matches!(
            RunDir::new(&deep, "vm"),
            Err(RunDirError::SocketPathTooLong(_))
        ));
    }

    #[test]
    fn metadata_round_trips_and_scan_finds_it() {
        let state = tempfile::tempdir().unwrap();
        let run = RunDir::new(state.path(), "vm-1").unwrap();
        assert!(run.metadata().unwrap().is_none());
        run.prepare(&metadata()).unwrap();
        assert_eq!(run.metadata().unwrap(), Some(metadata()));
        std::fs::create_dir(state.path().join("not-a-run-dir")).unwrap();
        assert_eq!(scan(state.path()).unwrap(), ["vm-1"]);
        std::fs::write(run.path().join(METADATA), b"{ garbage").unwrap();
        assert!(matches!(run.metadata(), Err(RunDirError::Metadata { .. })));
        run.remove().unwrap();
        run.remove().unwrap();
        assert!(scan(state.path()).unwrap().is_empty());
    }
}
