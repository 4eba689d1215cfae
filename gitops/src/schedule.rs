//! When a repository is due for a sync (pure).
//!
//! A run is due when the loop has not run it since it started leading, when its spec changed
//! (a new generation), when someone asked for a run (the requested-at annotation changed:
//! `herdctl gitops reconcile` or the webhook), or when its jittered interval has passed.
//! A suspended repository is never due.

use std::time::{Duration, Instant};

use herd_crds::git_repository::{GitRepository, REQUESTED_AT_ANNOTATION};

/// What the loop remembers of a repository's last run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastRun {
    pub generation: u64,
    pub requested_at: Option<String>,
    pub next_due: Instant,
}

/// The reason a run is due, for the logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    FirstRun,
    SpecChanged,
    Requested,
    Interval,
}

/// Whether `repo` should be synced now.
pub fn due(repo: &GitRepository, last: Option<&LastRun>, now: Instant) -> Option<Due> {
    if repo.spec.suspend {
        return None;
    }
    let Some(last) = last else {
        return Some(Due::FirstRun);
    };
    if last.generation != repo.metadata.generation {
        Some(Due::SpecChanged)
    } else if last.requested_at != requested_at(repo) {
        Some(Due::Requested)
    } else if now >= last.next_due {
        Some(Due::Interval)
    } else {
        None
    }
}

/// What to remember after running `repo` at `now`; `sample` is any random number (it spreads
/// the next run by up to ±10% of the interval, so repositories do not sync in lockstep).
pub fn after_run(repo: &GitRepository, now: Instant, sample: u64) -> LastRun {
    LastRun {
        generation: repo.metadata.generation,
        requested_at: requested_at(repo),
        next_due: now + jittered(Duration::from_secs(repo.spec.interval_seconds), sample),
    }
}

/// The value of the requested-at annotation (a run is asked for when it changes).
pub fn requested_at(repo: &GitRepository) -> Option<String> {
    repo.metadata
        .annotations
        .get(REQUESTED_AT_ANNOTATION)
        .cloned()
}

/// `interval` moved by a fraction in [−10%, +10%] chosen by `sample`.
pub fn jittered(interval: Duration, sample: u64) -> Duration {
    let per_mille = (sample % 201) as i64 - 100; // −100..=100 ‰ of the interval
    let millis = interval.as_millis() as i64;
    Duration::from_millis((millis + millis * per_mille / 1000).max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_crds::Object;

    fn repo() -> GitRepository {
        let mut repo: GitRepository = Object::new(
            "fleet",
            herd_crds::yaml::from_str("url: /srv/fleet.git").unwrap(),
        );
        repo.metadata.generation = 1;
        repo
    }

    #[test]
    fn triggers_in_order() {
        let now = Instant::now();
        let mut repo = repo();
        assert_eq!(due(&repo, None, now), Some(Due::FirstRun));
        let last = after_run(&repo, now, 100);
        assert_eq!(due(&repo, Some(&last), now), None);
        assert_eq!(
            due(&repo, Some(&last), now + Duration::from_secs(601)),
            Some(Due::Interval)
        );
        repo.metadata
            .annotations
            .insert(REQUESTED_AT_ANNOTATION.into(), "t1".into());
        assert_eq!(due(&repo, Some(&last), now), Some(Due::Requested));
        repo.metadata.generation = 2;
        assert_eq!(due(&repo, Some(&last), now), Some(Due::SpecChanged));
        repo.spec.suspend = true;
        assert_eq!(due(&repo, Some(&last), now), None, "suspended: never");
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let interval = Duration::from_secs(600);
        let all: Vec<Duration> = (0..1000).map(|s| jittered(interval, s)).collect();
        assert_eq!(all.iter().min(), Some(&Duration::from_secs(540)));
        assert_eq!(all.iter().max(), Some(&Duration::from_secs(660)));
    }
}
