//! QEMU processes: starting them as daemons, recognising them in `/proc`, and ending them.
//!
//! QEMU is started with `-daemonize`: the launcher process exits once the guest is set up
//! (with QEMU's error on stderr if it is not), and the QEMU that remains is in its own session,
//! re-parented away from the agent, so it outlives the agent. The agent then knows it only by
//! the pid in its pid file, and checks `/proc/<pid>/cmdline` holds the run directory's QMP
//! socket argument before trusting or signalling that pid. A zombie counts as gone: nobody may
//! reap a daemonized QEMU on hosts whose init does not.

use std::io::{self, Read};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// Longest stderr kept from a failed start.
const MAX_STDERR: usize = 4096;

/// Why QEMU did not start.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("Cannot run {binary}: {source}")]
    Spawn { binary: String, source: io::Error },
    #[error("QEMU exited with {status}: {stderr}")]
    Failed { status: String, stderr: String },
    #[error("QEMU did not finish starting within {0:?}")]
    Timeout(Duration),
}

/// Runs `binary args...` (which must include `-daemonize`) and waits for the launcher to exit.
pub async fn launch(binary: &Path, args: &[String], timeout: Duration) -> Result<(), LaunchError> {
    let child = tokio::process::Command::new(binary)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group: a Ctrl-C meant for the agent does not reach QEMU.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| LaunchError::Spawn {
            binary: binary.display().to_string(),
            source,
        })?;
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| LaunchError::Timeout(timeout))?
        .map_err(|source| LaunchError::Spawn {
            binary: binary.display().to_string(),
            source,
        })?;
    let stderr = &output.stderr[..output.stderr.len().min(MAX_STDERR)];
    if output.status.success() {
        if !stderr.is_empty() {
            tracing::warn!(
                "QEMU started with warnings: {}",
                String::from_utf8_lossy(stderr).trim()
            );
        }
        return Ok(());
    }
    Err(LaunchError::Failed {
        status: output.status.to_string(),
        stderr: String::from_utf8_lossy(stderr).trim().to_string(),
    })
}

/// Reads a pid file: a decimal pid, maybe followed by a newline. `None` if absent or garbage.
pub fn read_pid_file(path: &Path) -> io::Result<Option<u32>> {
    match std::fs::read(path) {
        Ok(bytes) if bytes.len() <= 32 => Ok(parse_pid(&bytes)),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn parse_pid(bytes: &[u8]) -> Option<u32> {
    std::str::from_utf8(bytes)
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|&pid| pid > 1)
}

/// The state letter of `/proc/<pid>/stat` (`R`, `S`, `Z`...), if the process exists.
pub fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    state_from_stat(&stat)
}

fn state_from_stat(stat: &str) -> Option<char> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.trim_start().chars().next()
}

/// Whether `pid` is a live process (not a zombie).
pub fn is_alive(pid: u32) -> bool {
    process_state(pid).is_some_and(|state| !matches!(state, 'Z' | 'X' | 'x'))
}

/// The arguments of `pid` (at most 1 MiB of them).
pub fn cmdline(pid: u32) -> io::Result<Vec<String>> {
    let mut bytes = Vec::new();
    std::fs::File::open(format!("/proc/{pid}/cmdline"))?
        .take(1 << 20)
        .read_to_end(&mut bytes)?;
    Ok(split_cmdline(&bytes))
}

fn split_cmdline(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|&b| b == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

/// Whether `pid` is alive and is the QEMU started with `qmp_arg` (its QMP `-chardev` argument).
pub fn is_our_qemu(pid: u32, qmp_arg: &str) -> bool {
    is_alive(pid) && cmdline(pid).is_ok_and(|args| args.iter().any(|a| a == qmp_arg))
}

/// Sends SIGKILL to `pid` if it is still the QEMU started with `qmp_arg`.
pub fn kill_if_ours(pid: u32, qmp_arg: &str) -> io::Result<()> {
    if !is_our_qemu(pid, qmp_arg) {
        return Ok(());
    }
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: kill(2) with a checked positive pid has no memory-safety preconditions.
    if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::ESRCH) {
        Ok(())
    } else {
        Err(error)
    }
}

/// Waits until `pid` is gone (or a zombie); `false` if it still runs after `timeout`.
pub async fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if !is_alive(pid) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Clock ticks per second of `/proc` CPU times (`USER_HZ`, 100 on Linux).
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_files_and_stat_states_parse() {
        assert_eq!(parse_pid(b"19340\n"), Some(19340));
        assert_eq!(parse_pid(b"1"), None);
        assert_eq!(parse_pid(b"-4"), None);
        assert_eq!(parse_pid(b"12ab"), None);
        assert_eq!(parse_pid(b"\xff"), None);
        let stat = "19343 (CPU 0/KVM) R 1 19338 19338 0 -1 138412225 48 0 0 0 0 6 0 0 20 0 7 0";
        assert_eq!(state_from_stat(stat), Some('R'));
        assert_eq!(
            state_from_stat("22696 (qemu-system-x86) Z 1 22694"),
            Some('Z')
        );
        assert_eq!(state_from_stat("1 (a) b) S 0"), Some('S'));
        assert_eq!(state_from_stat("garbage"), None);
    }

    #[test]
    fn cmdlines_split_on_nul() {
        let raw =
            b"qemu-system-x86_64\0-chardev\0socket,id=qmp,path=/r/qmp.sock,server=on,wait=off\0";
        assert_eq!(
            split_cmdline(raw),
            [
                "qemu-system-x86_64",
                "-chardev",
                "socket,id=qmp,path=/r/qmp.sock,server=on,wait=off"
            ]
        );
    }

    #[test]
    fn this_process_is_alive_and_not_a_qemu() {
        let me = std::process::id();
        assert!(is_alive(me));
        assert!(!is_our_qemu(
            me,
            "socket,id=qmp,path=/nowhere,server=on,wait=off"
        ));
        assert!(kill_if_ours(me, "socket,id=qmp,path=/nowhere,server=on,wait=off").is_ok());
        assert!(!is_alive(u32::MAX));
        assert!(clock_ticks_per_second() > 0);
    }
}
