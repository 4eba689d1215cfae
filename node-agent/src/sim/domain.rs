//! One simulated domain: its spec, run state, load model, guest clock and outgoing migration.
//!
//! Times are seconds on the fabric's clock (`now`), passed in by the caller. The guest clock
//! counts the seconds the domain has *run*: it stops while the domain is paused or shut down,
//! so a `step:10,90,60` guest switches after 60 s of running, however long it was paused. The
//! load model is a function of that guest time, which is what a live migration carries over.

use std::time::Duration;

use herd_crds::assignment::DomainSpec;

use super::load::LoadModel;
use crate::hypervisor::DomainState;

/// What a simulated domain is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimState {
    Running,
    Paused,
    /// Powered off; listed until destroyed, holds no memory.
    Shutdown,
    /// Waiting for an incoming migration; holds its memory, runs nothing.
    Incoming,
}

impl SimState {
    /// The state as the [`crate::hypervisor::Hypervisor`] trait reports it.
    pub fn as_domain_state(self) -> DomainState {
        match self {
            Self::Running => DomainState::Running,
            Self::Paused => DomainState::Paused,
            Self::Shutdown => DomainState::Shutdown,
            Self::Incoming => DomainState::Incoming,
        }
    }

    /// Whether the domain holds memory on its host.
    pub fn holds_memory(self) -> bool {
        !matches!(self, Self::Shutdown)
    }

    /// Whether its vCPUs exist and are placed on physical CPUs (paused ones demand nothing).
    pub fn has_vcpus(self) -> bool {
        matches!(self, Self::Running | Self::Paused)
    }
}

/// Seconds the guest has run: accumulated, plus the current run if it is running.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GuestClock {
    elapsed: f64,
    running_since: Option<f64>,
}

impl GuestClock {
    /// A clock that has run `elapsed` seconds and runs from `now` if `running`.
    pub fn new(elapsed: f64, running: bool, now: f64) -> Self {
        Self {
            elapsed: elapsed.max(0.0),
            running_since: running.then_some(now),
        }
    }

    /// Guest seconds at `now` (never less than what was accumulated).
    pub fn at(&self, now: f64) -> f64 {
        self.elapsed
            + self
                .running_since
                .map_or(0.0, |since| (now - since).max(0.0))
    }

    /// Starts counting at `now`; no change if already counting.
    pub fn start(&mut self, now: f64) {
        self.running_since.get_or_insert(now);
    }

    /// Stops counting at `now`, keeping what was run.
    pub fn stop(&mut self, now: f64) {
        self.elapsed = self.at(now);
        self.running_since = None;
    }
}

/// Where an outgoing migration stands.
#[derive(Clone, Debug, PartialEq)]
pub enum MigrationStatus {
    Active,
    Completed,
    Failed(String),
    Cancelled,
}

/// An outgoing live migration of a domain to a domain waiting on another simulated host.
#[derive(Clone, Debug, PartialEq)]
pub struct OutgoingMigration {
    /// The endpoint it was started with, `sim://<host>/<vm>`.
    pub endpoint: String,
    pub target_host: String,
    pub started_at: f64,
    /// Memory / bandwidth, in seconds.
    pub total_secs: f64,
    pub downtime: Duration,
    /// The domain's memory, which is what moves (disks are shared).
    pub bytes: u64,
    pub status: MigrationStatus,
}

impl OutgoingMigration {
    /// When the copy ends and the domain switches over, on the fabric clock.
    pub fn completes_at(&self) -> f64 {
        self.started_at + self.total_secs
    }

    /// Bytes copied by `now`, growing evenly over the migration.
    pub fn transferred_at(&self, now: f64) -> u64 {
        if self.total_secs <= 0.0 {
            return self.bytes;
        }
        let fraction = ((now - self.started_at) / self.total_secs).clamp(0.0, 1.0);
        // Rounded down, so an active migration never claims every byte.
        ((self.bytes as f64) * fraction) as u64
    }
}

/// A domain on a simulated host.
#[derive(Clone, Debug, PartialEq)]
pub struct SimDomain {
    pub spec: DomainSpec,
    /// Unique on its host, like a Xen domid; a new one each time the domain boots.
    pub id: u64,
    pub state: SimState,
    pub load: LoadModel,
    pub clock: GuestClock,
    pub migration: Option<OutgoingMigration>,
}

impl SimDomain {
    /// Demand of each vCPU at `now`, in percent of one CPU: 0 unless running.
    pub fn demand(&self, now: f64) -> f64 {
        match self.state {
            SimState::Running => self.load.demand(self.clock.at(now)),
            _ => 0.0,
        }
    }

    /// Whether this domain migrated away (its copy runs on the target now).
    pub fn migrated_away(&self) -> bool {
        self.migration
            .as_ref()
            .is_some_and(|m| m.status == MigrationStatus::Completed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_clock_stops_while_paused() {
        let mut clock = GuestClock::new(0.0, true, 10.0);
        assert_eq!(clock.at(15.0), 5.0);
        clock.stop(15.0);
        assert_eq!(clock.at(100.0), 5.0);
        clock.start(100.0);
        clock.start(200.0);
        assert_eq!(clock.at(103.0), 8.0);
        // A clock read before it started never runs backwards.
        assert_eq!(clock.at(50.0), 5.0);
    }

    #[test]
    fn transferred_bytes_grow_evenly() {
        let migration = OutgoingMigration {
            endpoint: "sim://b/vm".into(),
            target_host: "b".into(),
            started_at: 10.0,
            total_secs: 4.0,
            downtime: Duration::from_millis(20),
            bytes: 1000,
            status: MigrationStatus::Active,
        };
        assert_eq!(migration.completes_at(), 14.0);
        assert_eq!(migration.transferred_at(9.0), 0);
        assert_eq!(migration.transferred_at(11.0), 250);
        assert_eq!(migration.transferred_at(99.0), 1000);
    }
}
