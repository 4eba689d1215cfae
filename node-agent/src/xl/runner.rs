//! The one way the xl driver runs an external program (`xl`, `nbd-client`).
//!
//! A command is an argv, never a shell string: no user value is ever interpolated into a shell.
//! Programs are looked up by bare name in the runner's own search path (so tests point it at a
//! directory of fakes without touching the process-wide `PATH`). Every call has a timeout and
//! the child — with every process it started — is killed when it expires or the call is
//! cancelled. Output is captured with a size
//! cap, and a failure carries the tail of what the program wrote to stderr.

use std::ffi::OsString;
use std::fmt;
use std::future::Future;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::hypervisor::HypervisorError;

/// Most stdout kept from one call; more is an error (no xl output is legitimately this big).
pub const STDOUT_LIMIT: usize = 16 * 1024 * 1024;
/// Most stderr kept from one call; the rest is read and dropped.
pub const STDERR_LIMIT: usize = 64 * 1024;
/// How much of stderr an error message quotes.
pub const ERROR_TAIL: usize = 2000;
/// How long to wait for the pipes to close once the child has exited (a daemonised grandchild
/// that kept them open must not hang the caller).
const PIPE_GRACE: Duration = Duration::from_secs(2);
/// Where programs are looked for when the environment has no `PATH`.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A program and its arguments, run without a shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandLine {
    /// A bare program name, looked up in the runner's search path.
    pub program: String,
    pub args: Vec<String>,
}

impl CommandLine {
    pub fn new<I, S>(program: &str, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            program: program.to_string(),
            args: args.into_iter().map(Into::into).collect(),
        }
    }
}

/// Shows the command as a person would type it, quoting what a shell would split.
impl fmt::Display for CommandLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.program)?;
        for arg in &self.args {
            let plain = !arg.is_empty()
                && arg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,+%".contains(&b));
            if plain {
                write!(f, " {arg}")?;
            } else {
                write!(f, " '{}'", arg.replace('\'', r"'\''"))?;
            }
        }
        Ok(())
    }
}

/// What a successful command printed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandOutput {
    pub stdout: String,
    pub stderr: String,
}

/// Why running a command failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{program} was not found in {search_path} (is it installed?)")]
    NotFound {
        program: String,
        search_path: String,
    },
    #[error("Cannot start {command}: {source}")]
    Spawn { command: String, source: io::Error },
    #[error("{command} exited with {status}: {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("{command} timed out after {after:?} and was killed")]
    Timeout { command: String, after: Duration },
    #[error("{command} was cancelled and killed")]
    Cancelled { command: String },
    #[error("{command} printed more than {limit} bytes; refusing to parse it")]
    TooMuchOutput { command: String, limit: usize },
    #[error("Waiting for {command} failed: {source}")]
    Wait { command: String, source: io::Error },
}

impl RunError {
    /// What the program wrote to stderr, when it ran and failed.
    pub fn stderr(&self) -> Option<&str> {
        match self {
            Self::Failed { stderr, .. } => Some(stderr),
            _ => None,
        }
    }
}

impl From<RunError> for HypervisorError {
    fn from(error: RunError) -> Self {
        match error {
            RunError::NotFound { .. } => HypervisorError::Unavailable {
                driver: "xl",
                reason: error.to_string(),
            },
            RunError::Timeout { command, after } => HypervisorError::Timeout {
                operation: command,
                after,
            },
            RunError::Failed {
                command,
                status,
                stderr,
            } => HypervisorError::Command {
                command,
                message: format!("exited with {status}: {stderr}"),
            },
            RunError::Spawn { ref command, .. }
            | RunError::Cancelled { ref command }
            | RunError::TooMuchOutput { ref command, .. }
            | RunError::Wait { ref command, .. } => HypervisorError::Command {
                command: command.clone(),
                message: error.to_string(),
            },
        }
    }
}

/// Runs programs found in its search path, with timeouts and capped output.
#[derive(Clone, Debug)]
pub struct Runner {
    search_path: Vec<PathBuf>,
}

impl Runner {
    /// A runner that looks programs up in this process's `PATH`.
    pub fn from_env() -> Self {
        let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from(DEFAULT_PATH));
        Self::with_search_path(std::env::split_paths(&path).collect())
    }

    /// A runner that looks programs up only in `dirs`, in order.
    pub fn with_search_path(dirs: Vec<PathBuf>) -> Self {
        Self { search_path: dirs }
    }

    pub fn search_path(&self) -> &[PathBuf] {
        &self.search_path
    }

    /// The executable file `program` names in the search path.
    pub fn resolve(&self, program: &str) -> Result<PathBuf, RunError> {
        let bare =
            !program.is_empty() && !program.contains('/') && program != "." && program != "..";
        bare.then(|| {
            self.search_path
                .iter()
                .map(|dir| dir.join(program))
                .find(|p| is_executable(p))
        })
        .flatten()
        .ok_or_else(|| RunError::NotFound {
            program: program.to_string(),
            search_path: self
                .search_path
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(":"),
        })
    }

    /// Runs `command`, killing it after `limit`; fails unless it exits with status 0.
    pub async fn run(
        &self,
        command: &CommandLine,
        limit: Duration,
    ) -> Result<CommandOutput, RunError> {
        self.run_until(command, limit, std::future::pending()).await
    }

    /// Like [`Runner::run`], and also kills the command when `cancel` completes first.
    pub async fn run_until(
        &self,
        command: &CommandLine,
        limit: Duration,
        cancel: impl Future<Output = ()>,
    ) -> Result<CommandOutput, RunError> {
        let shown = command.to_string();
        tracing::debug!(command = %shown, "running");
        let program = self.resolve(&command.program)?;
        let mut child = Command::new(program)
            .args(&command.args)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0)
            .spawn()
            .map_err(|source| RunError::Spawn {
                command: shown.clone(),
                source,
            })?;
        let stdout = PipeReader::spawn(child.stdout.take(), STDOUT_LIMIT);
        let stderr = PipeReader::spawn(child.stderr.take(), STDERR_LIMIT);
        tokio::pin!(cancel);
        let ended = tokio::select! {
            waited = tokio::time::timeout(limit, child.wait()) => match waited {
                Ok(status) => Ended::Exited(status),
                Err(_) => Ended::TimedOut,
            },
            () = &mut cancel => Ended::Cancelled,
        };
        let status = match ended {
            Ended::Exited(status) => status.map_err(|source| RunError::Wait {
                command: shown.clone(),
                source,
            })?,
            Ended::TimedOut | Ended::Cancelled => {
                // Best effort: the child may have exited between the deadline and the kill.
                kill_group(&child);
                let _ = child.kill().await;
                stdout.abort();
                stderr.abort();
                return Err(match ended {
                    Ended::Cancelled => RunError::Cancelled { command: shown },
                    _ => RunError::Timeout {
                        command: shown,
                        after: limit,
                    },
                });
            }
        };
        finish(
            shown,
            status,
            stdout.collect().await,
            stderr.collect().await,
        )
    }
}

/// How the wait for a child ended.
enum Ended {
    Exited(io::Result<ExitStatus>),
    TimedOut,
    Cancelled,
}

/// Kills the process group the child leads (it was started with `process_group(0)`), so its
/// own children die with it: `xl migrate`'s transport and libxl's save helper, for instance.
fn kill_group(child: &Child) {
    if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
        // SAFETY: kill(2) only sends a signal. The child has not been reaped yet, so its pid
        // still names the process group it leads and no other.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// What a reader has collected so far: the kept bytes and whether more were dropped.
type Captured = (Vec<u8>, bool);

/// A pipe being read in the background into a buffer the caller can take at any time.
struct PipeReader {
    task: JoinHandle<()>,
    captured: Arc<Mutex<Captured>>,
}

impl PipeReader {
    fn spawn<R>(reader: Option<R>, limit: usize) -> Self
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        let captured = Arc::new(Mutex::new((Vec::new(), false)));
        let sink = Arc::clone(&captured);
        let task = tokio::spawn(async move {
            if let Some(reader) = reader {
                // A read error ends the capture; what was read so far is kept.
                let _ = read_capped(reader, limit, &sink).await;
            }
        });
        Self { task, captured }
    }

    fn abort(&self) {
        self.task.abort();
    }

    /// Waits a little for the pipe to close (a daemonised grandchild may hold it open), then
    /// takes what was read.
    async fn collect(self) -> Captured {
        let _ = tokio::time::timeout(PIPE_GRACE, self.task).await;
        std::mem::take(&mut *self.captured.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Reads `reader` to its end into `sink`, keeping at most `limit` bytes (and reading on, so the
/// writer never blocks on a full pipe).
async fn read_capped<R: AsyncRead + Unpin>(
    mut reader: R,
    limit: usize,
    sink: &Mutex<Captured>,
) -> io::Result<()> {
    let mut buf = vec![0u8; 8192];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        let mut captured = sink.lock().unwrap_or_else(PoisonError::into_inner);
        let room = limit.saturating_sub(captured.0.len());
        captured.1 |= n > room;
        captured.0.extend_from_slice(&buf[..n.min(room)]);
    }
}

fn finish(
    command: String,
    status: ExitStatus,
    stdout: Captured,
    stderr: Captured,
) -> Result<CommandOutput, RunError> {
    let (stdout, stdout_overflow) = stdout;
    let stderr = String::from_utf8_lossy(&stderr.0).into_owned();
    if !status.success() {
        let text = if stderr.trim().is_empty() {
            String::from_utf8_lossy(&stdout).into_owned()
        } else {
            stderr
        };
        return Err(RunError::Failed {
            command,
            status: describe(status),
            stderr: tail(&text, ERROR_TAIL),
        });
    }
    if stdout_overflow {
        return Err(RunError::TooMuchOutput {
            command,
            limit: STDOUT_LIMIT,
        });
    }
    Ok(CommandOutput {
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr,
    })
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("status {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => "an unknown status".to_string(),
    }
}

/// The last `max` bytes of `text` (on a character boundary), trimmed, marked when cut.
pub fn tail(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn system() -> Runner {
        Runner::with_search_path(vec![PathBuf::from("/usr/bin"), PathBuf::from("/bin")])
    }

    fn sh(script: &str) -> CommandLine {
        CommandLine::new("sh", ["-c", script])
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test]
    async fn captures_stdout_and_stderr() {
        let output = system()
            .run(&sh("echo out; echo err >&2"), 5 * SECOND)
            .await
            .unwrap();
        assert_eq!(
            (output.stdout.as_str(), output.stderr.as_str()),
            ("out\n", "err\n")
        );
    }

    #[tokio::test]
    async fn a_failure_carries_its_status_and_stderr() {
        let error = system()
            .run(&sh("echo boom >&2; exit 3"), 5 * SECOND)
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "sh -c 'echo boom >&2; exit 3' exited with status 3: boom"
        );
        assert_eq!(error.stderr(), Some("boom"));
    }

    #[tokio::test]
    async fn a_command_past_its_time_is_killed() {
        let started = std::time::Instant::now();
        let error = system()
            .run(
                &CommandLine::new("sleep", ["30"]),
                Duration::from_millis(100),
            )
            .await
            .unwrap_err();
        assert!(matches!(error, RunError::Timeout { .. }), "{error}");
        assert!(started.elapsed() < 5 * SECOND);
    }

    #[tokio::test]
    async fn a_cancelled_command_is_killed() {
        let cancel = tokio::time::sleep(Duration::from_millis(50));
        let error = system()
            .run_until(&CommandLine::new("sleep", ["30"]), 60 * SECOND, cancel)
            .await
            .unwrap_err();
        assert!(matches!(error, RunError::Cancelled { .. }), "{error}");
    }

    #[tokio::test]
    async fn a_killed_command_takes_its_children_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
        let error = system()
            .run(&sh(&script), Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(error, RunError::Timeout { .. }), "{error}");
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let stat = PathBuf::from(format!("/proc/{}/stat", pid.trim()));
        let gone = || std::fs::read_to_string(&stat).map_or(true, |s| s.contains(") Z "));
        let deadline = std::time::Instant::now() + 5 * SECOND;
        while !gone() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(gone(), "the grandchild sleep survived");
    }

    #[tokio::test]
    async fn output_kept_open_by_a_grandchild_is_not_lost() {
        let started = std::time::Instant::now();
        let output = system()
            .run(&sh("sleep 4 & echo hi"), 10 * SECOND)
            .await
            .unwrap();
        assert_eq!(output.stdout, "hi\n");
        assert!(started.elapsed() < 10 * SECOND);
    }

    #[tokio::test]
    async fn absurd_output_is_refused() {
        let huge = format!("head -c {} /dev/zero", STDOUT_LIMIT + 1);
        let error = system().run(&sh(&huge), 30 * SECOND).await.unwrap_err();
        assert!(matches!(error, RunError::TooMuchOutput { .. }), "{error}");
    }

    #[test]
    fn programs_are_bare_names_in_the_search_path() {
        assert!(system().resolve("sh").is_ok());
        for bad in ["", "/bin/sh", "../sh", ".", "no-such-program-here"] {
            assert!(
                matches!(system().resolve(bad), Err(RunError::NotFound { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn command_lines_show_as_typed() {
        let command = CommandLine::new("xl", ["migrate", "-s", "ssh -l root", "small-1", "it's"]);
        assert_eq!(
            command.to_string(),
            "xl migrate -s 'ssh -l root' small-1 'it'\\''s'"
        );
    }

    #[test]
    fn long_errors_keep_their_end() {
        let text = format!("{}END", "x".repeat(5000));
        let short = tail(&text, 100);
        assert!(short.starts_with('…') && short.ends_with("END") && short.len() < 110);
        assert_eq!(tail("  short  ", 100), "short");
    }
}
