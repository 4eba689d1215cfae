//! The storage role's loop: read the Volumes, act on each, write its status with CAS.
//!
//! A pass lists `<prefix>/volumes/` (one range read) and starts a reconcile for every volume
//! that is not already being worked on, so that an image build of minutes never holds up
//! another volume; passes run every `resync` and at once when the watch on the volumes
//! reports a change or a reconcile ends.
//!
//! **Claims.** A storage agent works only on volumes it claimed: an unclaimed volume gets the
//! annotation `herd.dev/storage-node: <node>` and the finalizer `herd.dev/storage` in one CAS
//! update, so when several storage hosts run, exactly one of them makes each volume (and a
//! person can pick the host by setting the annotation first).
//!
//! **Deletion** runs through the finalizer: the export is stopped and the volume removed, then
//! the finalizer is dropped (and the object and its status deleted when it was the last). A
//! volume this process saw that disappears without its finalizer (removed by hand from etcd) is
//! cleaned up too; one that disappeared while no storage agent ran is left alone and logged,
//! never guessed at.
//!
//! **Failures** are retried with backoff: 5 s doubling to 5 min, and every 5 min for errors that
//! are the spec's fault (a new generation retries at once).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use herd_crds::event::EventType;
use herd_crds::volume::{VolumePhase, VolumeSpec, VolumeStatus};
use herd_crds::{Resource, Volume};
use herd_store::codec::decode_object;
use herd_store::events::about;
use herd_store::keys::name_below;
use herd_store::txn::Precondition;
use herd_store::{EventRecorder, Store};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::reconcile::{self, Outcome, Step};
use super::{StorageEngine, StorageError, StorageSettings};

/// The finalizer that keeps a Volume until its storage is removed.
pub const FINALIZER: &str = "herd.dev/storage";
/// The annotation naming the storage node that owns a Volume.
pub const CLAIM_ANNOTATION: &str = "herd.dev/storage-node";
const FIRST_RETRY: Duration = Duration::from_secs(5);
const LAST_RETRY: Duration = Duration::from_secs(300);

/// When a failed volume may be tried again.
#[derive(Clone, Copy, Debug)]
struct Backoff {
    generation: u64,
    attempts: u32,
    not_before: Instant,
}

/// What the loop shares with its reconcile tasks.
struct Role {
    store: Store,
    engine: StorageEngine,
    node: String,
    recorder: EventRecorder,
    backoff: Mutex<HashMap<String, Backoff>>,
    /// Volumes this process acted on, by name, with their uid.
    seen: Mutex<HashMap<String, String>>,
    /// Volumes that did not decode, reported once.
    reported: Mutex<HashSet<String>>,
    permits: Semaphore,
}

/// Runs the storage role until etcd cannot be reached for good.
pub async fn run(store: Store, settings: StorageSettings) -> Result<(), StorageError> {
    let engine = StorageEngine::new(&settings)?;
    info!(node = %settings.node, dir = %engine.dir().display(), "storage role started");
    let role = Arc::new(Role {
        recorder: EventRecorder::new(&store, &format!("herd-agent/{}/storage", settings.node)),
        store,
        engine,
        node: settings.node.clone(),
        backoff: Mutex::new(HashMap::new()),
        seen: Mutex::new(HashMap::new()),
        reported: Mutex::new(HashSet::new()),
        permits: Semaphore::new(settings.parallel.max(1)),
    });
    let changed = Arc::new(Notify::new());
    let watch = tokio::spawn(watch_volumes(role.store.clone(), changed.clone()));
    let mut tasks: JoinSet<String> = JoinSet::new();
    let mut busy: HashSet<String> = HashSet::new();
    loop {
        if let Err(error) = pass(&role, &mut tasks, &mut busy).await {
            warn!(%error, "storage pass failed; retrying");
        }
        tokio::select! {
            () = tokio::time::sleep(settings.resync) => {}
            () = changed.notified() => {}
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok(name) = done {
                    busy.remove(&name);
                }
            }
        }
        while let Some(done) = tasks.try_join_next() {
            if let Ok(name) = done {
                busy.remove(&name);
            }
        }
        if watch.is_finished() {
            return Err(StorageError::Parse {
                what: "the volume watch".into(),
                message: "ended".into(),
            });
        }
    }
}

/// Wakes the loop whenever a Volume changes.
async fn watch_volumes(store: Store, changed: Arc<Notify>) {
    let prefix = store.keys().objects(Volume::PLURAL);
    let mut watcher = store.watch_prefix(&prefix, None);
    loop {
        watcher.next().await;
        changed.notify_one();
    }
}

/// One pass: start a reconcile for each volume not being worked on; clean up vanished ones.
async fn pass(
    role: &Arc<Role>,
    tasks: &mut JoinSet<String>,
    busy: &mut HashSet<String>,
) -> Result<(), StorageError> {
    let volumes = read_volumes(role).await?;
    let present: HashSet<&str> = volumes.iter().map(|v| v.metadata.name.as_str()).collect();
    let vanished: Vec<String> = {
        let seen = role.seen.lock().expect("seen lock");
        seen.keys()
            .filter(|name| !present.contains(name.as_str()))
            .cloned()
            .collect()
    };
    for name in vanished {
        if busy.insert(name.clone()) {
            let role = role.clone();
            tasks.spawn(async move {
                role.clean_up_vanished(&name).await;
                name
            });
        }
    }
    for volume in volumes {
        let name = volume.metadata.name.clone();
        if !role.may_act_on(&volume) || !busy.insert(name.clone()) {
            continue;
        }
        let role = role.clone();
        tasks.spawn(async move {
            let _permit = role.permits.acquire().await;
            if let Err(error) = role.reconcile(&volume).await {
                warn!(volume = %name, %error, "cannot reconcile the volume; retrying");
            }
            name
        });
    }
    Ok(())
}

/// Every Volume that decodes; one that does not is reported once and skipped.
async fn read_volumes(role: &Role) -> Result<Vec<Volume>, StorageError> {
    let prefix = role.store.keys().objects(Volume::PLURAL);
    let (entries, _) = role.store.list_raw(&prefix, None).await?;
    let mut volumes = Vec::with_capacity(entries.len());
    for (key, value, revision) in entries {
        let Some(name) = name_below(&prefix, &key) else {
            continue;
        };
        match decode_object::<Volume>(&key, &value, revision) {
            Ok(volume) if volume.metadata.name == name => volumes.push(volume),
            Ok(_) => warn!(%key, "a volume whose name does not match its key; skipped"),
            Err(error) => {
                if role
                    .reported
                    .lock()
                    .expect("reported lock")
                    .insert(key.clone())
                {
                    warn!(%key, %error, "a volume that cannot be read; skipped");
                }
            }
        }
    }
    Ok(volumes)
}

impl Role {
    fn claimant<'a>(&self, volume: &'a Volume) -> Option<&'a str> {
        volume
            .metadata
            .annotations
            .get(CLAIM_ANNOTATION)
            .map(String::as_str)
    }

    /// Whether this node may work on `volume`: it claimed it, or nobody did.
    fn may_act_on(&self, volume: &Volume) -> bool {
        self.claimant(volume).is_none_or(|node| node == self.node)
    }

    async fn reconcile(&self, volume: &Volume) -> Result<(), StorageError> {
        let meta = &volume.metadata;
        let ours = self.claimant(volume) == Some(self.node.as_str());
        let finalized = meta.finalizers.iter().any(|f| f == FINALIZER);
        let deleting = meta.deletion_timestamp.is_some();
        if deleting && !ours {
            return Ok(()); // never made here
        }
        if !(deleting || ours && finalized) {
            return self.claim(volume).await;
        }
        let uid = meta.uid.clone().unwrap_or_default();
        self.seen
            .lock()
            .expect("seen lock")
            .insert(meta.name.clone(), uid);
        if !deleting && self.backing_off(volume) {
            return Ok(());
        }
        if !deleting {
            self.announce_creation(volume).await?;
        }
        let outcome = self.engine.reconcile(volume).await;
        self.remember(volume, &outcome);
        if deleting && outcome.error.is_none() {
            return self.finish_deletion(volume).await;
        }
        self.write_status(volume, &outcome).await
    }

    /// Claims `volume` for this node and adds the finalizer (one CAS update).
    async fn claim(&self, volume: &Volume) -> Result<(), StorageError> {
        let mut claimed = volume.clone();
        let meta = &mut claimed.metadata;
        meta.annotations
            .insert(CLAIM_ANNOTATION.into(), self.node.clone());
        if !meta.finalizers.iter().any(|f| f == FINALIZER) {
            meta.finalizers.push(FINALIZER.into());
        }
        match self.store.update(&claimed).await {
            Ok(_) => {
                info!(volume = %volume.metadata.name, node = %self.node, "claimed the volume");
                Ok(())
            }
            // Someone else changed it first (perhaps another storage node claimed it).
            Err(error) if error.is_conflict() => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Whether a failed volume must wait before the next attempt.
    fn backing_off(&self, volume: &Volume) -> bool {
        let backoff = self.backoff.lock().expect("backoff lock");
        backoff.get(&volume.metadata.name).is_some_and(|b| {
            b.generation == volume.metadata.generation && Instant::now() < b.not_before
        })
    }

    /// Records the outcome's failure (or success) for the backoff.
    fn remember(&self, volume: &Volume, outcome: &Outcome) {
        let mut backoff = self.backoff.lock().expect("backoff lock");
        let name = &volume.metadata.name;
        if outcome.error.is_none() {
            backoff.remove(name);
            return;
        }
        let generation = volume.metadata.generation;
        let attempts = backoff
            .get(name)
            .filter(|b| b.generation == generation)
            .map_or(0, |b| b.attempts + 1);
        let delay = if outcome.permanent {
            LAST_RETRY
        } else {
            FIRST_RETRY
                .saturating_mul(1 << attempts.min(6))
                .min(LAST_RETRY)
        };
        backoff.insert(
            name.clone(),
            Backoff {
                generation,
                attempts,
                not_before: Instant::now() + delay,
            },
        );
    }

    /// Writes phase `Creating` before a volume is made (an image build takes minutes).
    async fn announce_creation(&self, volume: &Volume) -> Result<(), StorageError> {
        let observed = self.engine.observe(volume).await?;
        let plan = reconcile::plan(&volume.spec, false, &observed);
        if !plan.steps.contains(&Step::Create) {
            return Ok(());
        }
        let message = match volume
            .spec
            .image
            .as_ref()
            .and_then(|i| i.debootstrap.as_ref())
        {
            Some(d) if d.packages.is_empty() => format!("building a {} image", d.suite),
            Some(d) => format!(
                "building a {} image with {}",
                d.suite,
                d.packages.join(", ")
            ),
            None => "creating the volume".into(),
        };
        let generation = volume.metadata.generation;
        self.put_status(volume, |current| {
            reconcile::creating(current, generation, &message, Utc::now())
        })
        .await
        .map(|_| ())
    }

    async fn write_status(&self, volume: &Volume, outcome: &Outcome) -> Result<(), StorageError> {
        let generation = volume.metadata.generation;
        let (before, after) = self
            .put_status(volume, |current| {
                reconcile::status(current, generation, outcome, Utc::now())
            })
            .await?;
        if before != after.phase {
            self.record_transition(volume, &after).await;
        }
        Ok(())
    }

    /// Read-modify-writes the status with CAS; returns the phase before and the status after.
    async fn put_status(
        &self,
        volume: &Volume,
        next: impl Fn(&VolumeStatus) -> VolumeStatus,
    ) -> Result<(VolumePhase, VolumeStatus), StorageError> {
        let name = &volume.metadata.name;
        let current = self.store.get_status::<VolumeSpec>(name).await?;
        let (base, precondition) = match current {
            Some(versioned) => (versioned.value, Precondition::Revision(versioned.revision)),
            None => (VolumeStatus::default(), Precondition::Absent),
        };
        let status = next(&base);
        if status != base {
            self.store
                .put_status::<VolumeSpec>(name, &status, precondition)
                .await?;
        }
        Ok((base.phase, status))
    }

    async fn record_transition(&self, volume: &Volume, status: &VolumeStatus) {
        let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
        let (type_, reason, message) = match (status.phase, ready) {
            (VolumePhase::Ready, Some(c)) => (EventType::Normal, "VolumeReady", c.message.clone()),
            (VolumePhase::Failed, Some(c)) => {
                (EventType::Warning, c.reason.as_str(), c.message.clone())
            }
            _ => return,
        };
        let object = about(Volume::KIND, &volume.metadata.name);
        if let Err(error) = self.recorder.record(object, type_, reason, &message).await {
            warn!(%error, "cannot record the volume event");
        }
    }

    /// Drops the finalizer; deletes the object and its status when it was the last one.
    async fn finish_deletion(&self, volume: &Volume) -> Result<(), StorageError> {
        let name = &volume.metadata.name;
        let mut finished = volume.clone();
        finished.metadata.finalizers.retain(|f| f != FINALIZER);
        let txn = self.store.transaction();
        let txn = if finished.metadata.finalizers.is_empty() {
            let revision = volume.metadata.revision().unwrap_or(0);
            txn.delete::<Volume>(name, Precondition::Revision(revision))?
                .delete_status::<VolumeSpec>(name)?
        } else {
            txn.update(&finished)?
        };
        match txn.commit().await {
            Ok(_) => {}
            Err(error) if error.is_conflict() => return Ok(()), // changed meanwhile: next pass
            Err(error) => return Err(error.into()),
        }
        self.seen.lock().expect("seen lock").remove(name);
        self.backoff.lock().expect("backoff lock").remove(name);
        info!(volume = %name, "volume removed");
        let object = about(Volume::KIND, name);
        let message = "the export is stopped and the volume removed";
        if let Err(error) = self
            .recorder
            .record(object, EventType::Normal, "VolumeDeleted", message)
            .await
        {
            warn!(%error, "cannot record the volume event");
        }
        Ok(())
    }

    /// A volume this process made vanished without its finalizer: remove its storage.
    async fn clean_up_vanished(&self, name: &str) {
        warn!(volume = %name, "the volume object vanished without its finalizer; removing its storage");
        match self.engine.remove(name).await {
            Ok(()) => {
                self.seen.lock().expect("seen lock").remove(name);
            }
            Err(error) => {
                warn!(volume = %name, %error, "cannot remove a vanished volume; retrying")
            }
        }
    }
}
