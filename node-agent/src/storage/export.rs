//! NBD exports: one `qemu-nbd` per volume, on the storage host's address, the maintained
//! successor of the seed's GNBD.
//!
//! `qemu-nbd --fork --persistent --shared=8` serves one volume under its name until it is
//! stopped: it outlives the storage agent, survives clients coming and going, and lets several
//! clients in at once — the source and the target of a live migration both open the disk.
//! The endpoint is `nbd://ADDRESS:PORT/NAME`; every volume has its own port from a range
//! (default 10809–11808), and keeps it across restarts of the export.
//!
//! The exporter keeps a record per export in its state directory (`<name>.json`: pid, port,
//! path, format). A restarted storage agent reads the records and *adopts* the servers that
//! still run — a pid counts only if `/proc/<pid>/cmdline` is that very `qemu-nbd` command, so a
//! reused pid is never mistaken for one — instead of starting duplicates.

use std::net::{IpAddr, TcpListener};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use herd_crds::volume::VolumeFormat;
use serde::{Deserialize, Serialize};

use super::error::StorageError;
use super::file::format_name;
use crate::xl::runner::{CommandLine, RunError, Runner};

/// The ports exports use unless configured: NBD's own, and the thousand after it.
pub const DEFAULT_PORTS: RangeInclusive<u16> = 10809..=11808;
/// How many clients may have one export open at once.
pub const SHARED_CLIENTS: u32 = 8;
/// How long `qemu-nbd` may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopped `qemu-nbd` has to exit before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Ports tried when others turn out to be taken.
const MAX_TRIES: usize = 32;

/// A running export, as recorded in the state directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRecord {
    pub name: String,
    pub pid: u32,
    pub address: IpAddr,
    pub port: u16,
    pub path: PathBuf,
    pub format: VolumeFormat,
}

impl ExportRecord {
    /// `nbd://ADDRESS:PORT/NAME`.
    pub fn endpoint(&self) -> String {
        endpoint(self.address, self.port, &self.name)
    }
}

/// `nbd://ADDRESS:PORT/NAME` (an IPv6 address in brackets).
pub fn endpoint(address: IpAddr, port: u16, name: &str) -> String {
    match address {
        IpAddr::V4(v4) => format!("nbd://{v4}:{port}/{name}"),
        IpAddr::V6(v6) => format!("nbd://[{v6}]:{port}/{name}"),
    }
}

/// The `qemu-nbd` command line of `record` (its pid is not known yet).
pub fn qemu_nbd(record: &ExportRecord, pid_file: &Path) -> CommandLine {
    CommandLine::new(
        "qemu-nbd",
        [
            "--fork".to_owned(),
            "--persistent".to_owned(),
            format!("--shared={SHARED_CLIENTS}"),
            format!("--bind={}", record.address),
            format!("--port={}", record.port),
            format!("--export-name={}", record.name),
            format!("--format={}", format_name(record.format)),
            "--cache=writeback".to_owned(),
            "--discard=unmap".to_owned(),
            format!("--pid-file={}", pid_file.display()),
            record.path.display().to_string(),
        ],
    )
}

/// Whether `argv` (from `/proc/<pid>/cmdline`) is the `qemu-nbd` that serves `record`.
pub fn is_server_of(argv: &[String], record: &ExportRecord) -> bool {
    let program_ok = argv
        .first()
        .and_then(|program| Path::new(program).file_name())
        .is_some_and(|name| name == "qemu-nbd");
    let has = |wanted: String| argv.contains(&wanted);
    program_ok
        && has(format!("--export-name={}", record.name))
        && has(format!("--port={}", record.port))
        && argv.last().map(String::as_str) == Some(&*record.path.to_string_lossy())
}

/// The command line of process `pid`, if it runs (a zombie does not).
fn process_argv(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
    if matches!(state, 'Z' | 'X') {
        return None;
    }
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|arg| !arg.is_empty())
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect(),
    )
}

/// Starts, adopts and stops `qemu-nbd` servers.
#[derive(Debug)]
pub struct Exporter {
    dir: PathBuf,
    address: IpAddr,
    ports: RangeInclusive<u16>,
    runner: Runner,
    /// Starts one server at a time, so two never pick the same free port.
    starting: tokio::sync::Mutex<()>,
}

impl Exporter {
    /// Exports on `address`, with records in `dir` (created if missing).
    pub fn new(
        dir: impl Into<PathBuf>,
        address: IpAddr,
        ports: RangeInclusive<u16>,
        runner: Runner,
    ) -> Result<Self, StorageError> {
        let dir = dir.into();
        if address.is_unspecified() {
            return Err(StorageError::BackendUnavailable {
                backend: "nbd",
                why: format!("{address} names no host for clients to reach; pass --nbd-address"),
            });
        }
        std::fs::create_dir_all(&dir).map_err(|e| StorageError::io(&dir, e))?;
        let dir = std::path::absolute(&dir).map_err(|e| StorageError::io(&dir, e))?;
        Ok(Self {
            dir,
            address,
            ports,
            runner,
            starting: tokio::sync::Mutex::new(()),
        })
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    fn pid_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pid"))
    }

    /// The record of `name`, whether or not its server still runs.
    fn record(&self, name: &str) -> Option<ExportRecord> {
        let text = std::fs::read_to_string(self.record_path(name)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The export of `name` if its server runs (adopting one a previous agent started).
    pub fn running(&self, name: &str) -> Option<ExportRecord> {
        self.record(name).filter(|record| {
            process_argv(record.pid).is_some_and(|argv| is_server_of(&argv, record))
        })
    }

    /// The names of every recorded export, running or not.
    pub fn names(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".json")
                    .map(str::to_owned)
            })
            .collect();
        names.sort();
        names
    }

    /// Exports `path` (of `format`) as `name`: the running server if it serves exactly that,
    /// else a new one (stopping a server of an older path or format first).
    pub async fn ensure(
        &self,
        name: &str,
        path: &Path,
        format: VolumeFormat,
    ) -> Result<ExportRecord, StorageError> {
        if let Some(running) = self.running(name) {
            if running.path == path && running.format == format && running.address == self.address {
                return Ok(running);
            }
            self.stop(name).await?;
        }
        let _one_at_a_time = self.starting.lock().await;
        self.start(name, path, format).await
    }

    async fn start(
        &self,
        name: &str,
        path: &Path,
        format: VolumeFormat,
    ) -> Result<ExportRecord, StorageError> {
        let preferred = self
            .record(name)
            .map(|r| r.port)
            .filter(|p| self.ports.contains(p));
        let taken: Vec<u16> = self
            .names()
            .iter()
            .filter(|other| *other != name)
            .filter_map(|other| self.running(other).map(|r| r.port))
            .collect();
        let address = self.address;
        let candidates = preferred
            .into_iter()
            .chain(self.ports.clone())
            .filter(|port| !taken.contains(port))
            .filter(|port| TcpListener::bind((address, *port)).is_ok())
            .take(MAX_TRIES);
        let mut last = String::from("no free port in the range");
        for port in candidates {
            let mut record = ExportRecord {
                name: name.to_owned(),
                pid: 0,
                address,
                port,
                path: path.to_owned(),
                format,
            };
            match self.spawn(&record).await {
                Ok(pid) => {
                    record.pid = pid;
                    self.write_record(&record)?;
                    tracing::info!(volume = %name, endpoint = %record.endpoint(), pid, "exported over NBD");
                    return Ok(record);
                }
                Err(error) if port_taken(&error) => last = error.to_string(),
                Err(error) => return Err(export_error(name, error)),
            }
        }
        Err(StorageError::Export {
            name: name.to_owned(),
            message: format!("no usable port in {:?}: {last}", self.ports),
        })
    }

    /// Runs `qemu-nbd --fork` and returns the server's pid.
    async fn spawn(&self, record: &ExportRecord) -> Result<u32, RunError> {
        let pid_file = self.pid_path(&record.name);
        let _ = std::fs::remove_file(&pid_file);
        self.runner
            .run(&qemu_nbd(record, &pid_file), START_TIMEOUT)
            .await?;
        let pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|text| text.trim().parse().ok());
        pid.ok_or_else(|| RunError::Failed {
            command: "qemu-nbd".into(),
            status: "status 0".into(),
            stderr: format!("no pid in {}", pid_file.display()),
        })
    }

    fn write_record(&self, record: &ExportRecord) -> Result<(), StorageError> {
        let path = self.record_path(&record.name);
        let temporary = path.with_extension("json.new");
        let json = serde_json::to_string_pretty(record).expect("a record serializes");
        std::fs::write(&temporary, json).map_err(|e| StorageError::io(&temporary, e))?;
        std::fs::rename(&temporary, &path).map_err(|e| StorageError::io(&path, e))
    }

    /// Stops the export of `name` (SIGTERM, then SIGKILL after a grace period) and forgets it.
    pub async fn stop(&self, name: &str) -> Result<(), StorageError> {
        if let Some(record) = self.running(name) {
            tracing::info!(volume = %name, pid = record.pid, "stopping the NBD export");
            signal_until_gone(&record, libc::SIGTERM, STOP_GRACE).await;
            if self.running(name).is_some() {
                signal_until_gone(&record, libc::SIGKILL, STOP_GRACE).await;
            }
            if self.running(name).is_some() {
                return Err(StorageError::Export {
                    name: name.to_owned(),
                    message: format!("qemu-nbd (pid {}) does not exit", record.pid),
                });
            }
        }
        for path in [self.record_path(name), self.pid_path(name)] {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(StorageError::io(&path, e));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Sends `signal` to the server of `record` and waits up to `grace` for it to be gone.
async fn signal_until_gone(record: &ExportRecord, signal: i32, grace: Duration) {
    let Ok(pid) = i32::try_from(record.pid) else {
        return;
    };
    // SAFETY: kill(2) only sends a signal; the pid was just checked to be this qemu-nbd.
    unsafe { libc::kill(pid, signal) };
    let started = Instant::now();
    while started.elapsed() < grace {
        if !process_argv(record.pid).is_some_and(|argv| is_server_of(&argv, record)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn port_taken(error: &RunError) -> bool {
    error
        .stderr()
        .is_some_and(|e| e.contains("Address already in use") || e.contains("available port"))
}

fn export_error(name: &str, error: RunError) -> StorageError {
    StorageError::Export {
        name: name.to_owned(),
        message: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn record() -> ExportRecord {
        ExportRecord {
            name: "small-1-disk".into(),
            pid: 4242,
            address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            port: 10809,
            path: PathBuf::from("/var/lib/herd/storage/volumes/small-1-disk.qcow2"),
            format: VolumeFormat::Qcow2,
        }
    }

    #[test]
    fn endpoints_are_nbd_uris() {
        assert_eq!(record().endpoint(), "nbd://10.0.0.1:10809/small-1-disk");
        assert_eq!(
            endpoint(IpAddr::V6(Ipv6Addr::LOCALHOST), 10810, "a"),
            "nbd://[::1]:10810/a"
        );
    }

    #[test]
    fn the_command_line_is_persistent_shared_and_forking() {
        let command = qemu_nbd(&record(), Path::new("/s/exports/small-1-disk.pid"));
        assert_eq!(
            command.to_string(),
            "qemu-nbd --fork --persistent --shared=8 --bind=10.0.0.1 --port=10809 \
             --export-name=small-1-disk --format=qcow2 --cache=writeback --discard=unmap \
             --pid-file=/s/exports/small-1-disk.pid /var/lib/herd/storage/volumes/small-1-disk.qcow2"
        );
        let argv: Vec<String> = std::iter::once("/usr/bin/qemu-nbd".to_owned())
            .chain(command.args.clone())
            .collect();
        assert!(is_server_of(&argv, &record()));
    }

    #[test]
    fn a_reused_pid_is_not_adopted() {
        let record = record();
        let other_port: Vec<String> = ["qemu-nbd", "--port=10810", "--export-name=small-1-disk"]
            .iter()
            .map(|s| s.to_string())
            .chain([record.path.display().to_string()])
            .collect();
        assert!(!is_server_of(&other_port, &record));
        let not_nbd: Vec<String> = ["bash", "--port=10809", "--export-name=small-1-disk"]
            .iter()
            .map(|s| s.to_string())
            .chain([record.path.display().to_string()])
            .collect();
        assert!(!is_server_of(&not_nbd, &record));
        assert!(!is_server_of(&[], &record));
    }

    #[test]
    fn an_unspecified_address_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let error = Exporter::new(dir.path(), any, DEFAULT_PORTS, Runner::from_env()).unwrap_err();
        assert!(error.to_string().contains("--nbd-address"), "{error}");
    }
}
