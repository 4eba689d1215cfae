//! Live migration with `xl migrate`: the endpoint a target hands out, and the outgoing
//! migrations the source runs in the background.
//!
//! `xl migrate -s TRANSPORT NAME HOST` is synchronous and reaches the target itself: it runs
//! `sh -c "exec TRANSPORT HOST xl migrate-receive"` and streams the domain over that command's
//! stdin/stdout. So a target needs no listening socket; "preparing" it means making sure the
//! domain's disks resolve there, and its endpoint is just `xl:HOST`, the address the source's
//! transport (ssh by default) connects to. Because xl pastes HOST and TRANSPORT into a shell
//! command line, both are checked strictly here.
//!
//! xl reports no progress and has no cancel: a migration is `Active` until the process exits,
//! and cancelling kills it (see `docs/xen.md` for what that can leave behind).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use crate::hypervisor::{HypervisorError, IncomingEndpoint, MigrationProgress};

/// The prefix of an xl endpoint: `xl:HOST`.
pub const ENDPOINT_PREFIX: &str = "xl:";

/// Why a migration request was refused before anything ran.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MigrationError {
    #[error("{0:?} is not an xl migration endpoint (expected xl:HOST)")]
    Endpoint(String),
    #[error("{0:?} is not a host name or IP address that can be handed to xl migrate")]
    Host(String),
    #[error(
        "The migration transport {0:?} is not usable: give a command such as `ssh -l root` \
         without shell metacharacters (put complex options in an ssh config file)"
    )]
    Transport(String),
}

/// Checks a target host: a DNS name, IPv4 or IPv6 address, never an option (`-o…`).
pub fn check_host(host: &str) -> Result<(), MigrationError> {
    let ok = !host.is_empty()
        && host.len() <= 253
        && !host.starts_with('-')
        && !host.starts_with('.')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'));
    if ok {
        Ok(())
    } else {
        Err(MigrationError::Host(host.to_string()))
    }
}

/// Checks the operator's transport command (xl runs it through `sh -c`; an empty one would make
/// xl run HOST itself as the command).
pub fn check_transport(transport: &str) -> Result<(), MigrationError> {
    let ok = !transport.trim().is_empty()
        && transport.len() <= 1024
        && !transport
            .chars()
            .any(|c| c.is_control() || ";&|`$<>(){}\\\"'*?!#~".contains(c));
    if ok {
        Ok(())
    } else {
        Err(MigrationError::Transport(transport.to_string()))
    }
}

/// The endpoint a target at `host` hands out.
pub fn endpoint(host: &str) -> Result<IncomingEndpoint, MigrationError> {
    check_host(host)?;
    Ok(IncomingEndpoint {
        uri: format!("{ENDPOINT_PREFIX}{host}"),
    })
}

/// The host an endpoint names.
pub fn endpoint_host(endpoint: &IncomingEndpoint) -> Result<String, MigrationError> {
    let host = endpoint
        .uri
        .strip_prefix(ENDPOINT_PREFIX)
        .ok_or_else(|| MigrationError::Endpoint(endpoint.uri.clone()))?;
    check_host(host)?;
    Ok(host.to_string())
}

/// How one outgoing migration stands.
#[derive(Clone, Debug, PartialEq)]
pub enum JobState {
    Running,
    Completed { total: Duration },
    Failed { message: String },
    Cancelled,
}

impl JobState {
    /// The trait's view. xl reports neither bytes nor downtime, so those are zero.
    pub fn progress(&self) -> MigrationProgress {
        match self {
            Self::Running => MigrationProgress::Active {
                transferred_bytes: 0,
                remaining_bytes: 0,
            },
            Self::Completed { total } => MigrationProgress::Completed {
                total: *total,
                downtime: Duration::ZERO,
                transferred_bytes: 0,
            },
            Self::Failed { message } => MigrationProgress::Failed {
                message: message.clone(),
            },
            Self::Cancelled => MigrationProgress::Cancelled,
        }
    }
}

struct Job {
    state: watch::Receiver<JobState>,
    cancel: Mutex<Option<oneshot::Sender<()>>>,
}

/// The background task's side of a job: it reports the end and listens for a cancel.
pub struct JobHandle {
    state: watch::Sender<JobState>,
    cancel: oneshot::Receiver<()>,
    started: Instant,
}

impl JobHandle {
    /// Completes when the job is cancelled (never, if its record is dropped instead).
    pub async fn cancelled(&mut self) {
        if (&mut self.cancel).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn finish(self, state: JobState) {
        // Nobody listening is fine: the record may have been replaced.
        let _ = self.state.send(state);
    }
}

/// The outgoing migrations of this host, by domain name (the latest one per domain).
#[derive(Default)]
pub struct MigrationJobs {
    jobs: Mutex<HashMap<String, Arc<Job>>>,
}

impl MigrationJobs {
    /// Records a new running migration of `name`; refused while one is still running.
    pub fn begin(&self, name: &str) -> Result<JobHandle, HypervisorError> {
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        if jobs
            .get(name)
            .is_some_and(|job| *job.state.borrow() == JobState::Running)
        {
            return Err(HypervisorError::Refused {
                name: name.to_string(),
                operation: "migrate",
                reason: "a migration of this domain is already running".into(),
            });
        }
        let (state_tx, state_rx) = watch::channel(JobState::Running);
        let (cancel_tx, cancel_rx) = oneshot::channel();
        jobs.insert(
            name.to_string(),
            Arc::new(Job {
                state: state_rx,
                cancel: Mutex::new(Some(cancel_tx)),
            }),
        );
        Ok(JobHandle {
            state: state_tx,
            cancel: cancel_rx,
            started: Instant::now(),
        })
    }

    /// How the latest migration of `name` stands.
    pub fn state(&self, name: &str) -> Option<JobState> {
        let jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        jobs.get(name).map(|job| job.state.borrow().clone())
    }

    /// Asks the running migration of `name` to stop and waits up to `wait` for it to end;
    /// returns how it ended (`None` when there is no migration of `name`).
    pub async fn cancel(&self, name: &str, wait: Duration) -> Option<JobState> {
        let job = self
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()?;
        if let Some(cancel) = job
            .cancel
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = cancel.send(());
        }
        let mut state = job.state.clone();
        let ended = tokio::time::timeout(wait, state.wait_for(|s| *s != JobState::Running)).await;
        Some(match ended {
            Ok(Ok(state)) => state.clone(),
            _ => job.state.borrow().clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_name_a_checked_host() {
        assert_eq!(endpoint("10.0.0.2").unwrap().uri, "xl:10.0.0.2");
        assert_eq!(
            endpoint_host(&endpoint("xen-b.lab").unwrap()).unwrap(),
            "xen-b.lab"
        );
        assert_eq!(
            endpoint_host(&IncomingEndpoint {
                uri: "xl:fd00::2".into()
            })
            .unwrap(),
            "fd00::2"
        );
        for bad in [
            "tcp:10.0.0.2:4444",
            "xl:",
            "xl:-oProxyCommand=sh",
            "xl:a b",
            "xl:a;reboot",
            "xl:$(id)",
            "xl:a/b",
            "xl:.hidden",
        ] {
            assert!(
                endpoint_host(&IncomingEndpoint { uri: bad.into() }).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn transports_without_shell_metacharacters() {
        for good in [
            "ssh",
            "ssh -l root -i /etc/herd/xen_migrate_key",
            "ssh -o BatchMode=yes",
        ] {
            assert!(check_transport(good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            "  ",
            "ssh; reboot",
            "ssh $(id)",
            "ssh `id`",
            "ssh\n",
            "ssh | tee",
            "ssh -o 'A B'",
        ] {
            assert!(check_transport(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_job_runs_once_at_a_time_and_can_be_cancelled() {
        let jobs = MigrationJobs::default();
        let mut handle = jobs.begin("small-1").unwrap();
        assert!(matches!(
            jobs.begin("small-1"),
            Err(HypervisorError::Refused { .. })
        ));
        assert_eq!(jobs.state("small-1"), Some(JobState::Running));
        assert_eq!(jobs.state("other"), None);
        let task = tokio::spawn(async move {
            handle.cancelled().await;
            handle.finish(JobState::Cancelled);
        });
        assert_eq!(
            jobs.cancel("small-1", Duration::from_secs(5)).await,
            Some(JobState::Cancelled)
        );
        task.await.unwrap();
        assert_eq!(
            jobs.state("small-1").map(|s| s.progress()),
            Some(MigrationProgress::Cancelled)
        );
        let again = jobs.begin("small-1").unwrap();
        again.finish(JobState::Completed {
            total: Duration::from_secs(3),
        });
        assert!(matches!(
            jobs.state("small-1").unwrap().progress(),
            MigrationProgress::Completed { .. }
        ));
        assert_eq!(
            jobs.cancel("nothing", Duration::from_millis(10)).await,
            None
        );
    }
}
