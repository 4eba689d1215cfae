//! The sync loop: watches GitRepository objects and runs each one when it is due.
//!
//! It runs inside the controller while it leads (so every write carries the leader's fence)
//! and is stopped with the controller's other tasks when leadership is lost. Repositories are
//! synced one at a time; a change to any GitRepository object (a new spec, the requested-at
//! annotation written by `herdctl gitops reconcile` or the webhook) wakes the loop at once.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use herd_crds::GitRepository;
use herd_crds::Resource;
use herd_store::codec::decode_object;
use herd_store::{Reflector, ReflectorReader};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::info;

use crate::schedule::{LastRun, after_run, due};
use crate::sync::Syncer;

/// How often the loop looks for due repositories when nothing wakes it.
pub const TICK: Duration = Duration::from_secs(1);

/// Starts the loop's tasks (the watch of GitRepository objects and the loop) in `tasks`.
pub fn start(syncer: Syncer, tasks: &mut JoinSet<()>) {
    let prefix = syncer.store.keys().objects(GitRepository::PLURAL);
    let (reflector, reader) = Reflector::new(
        syncer.store.watch_prefix(&prefix, None),
        &prefix,
        decode_object::<GitRepository>,
    );
    let (changed, wake) = mpsc::unbounded_channel();
    tasks.spawn(reflector.notify(changed).run());
    tasks.spawn(run(syncer, reader, wake));
}

/// Runs due repositories forever.
async fn run(
    syncer: Syncer,
    reader: ReflectorReader<GitRepository>,
    mut wake: mpsc::UnboundedReceiver<String>,
) {
    let mut last: HashMap<String, LastRun> = HashMap::new();
    let random = RandomState::new();
    loop {
        let repositories = reader.list();
        last.retain(|name, _| repositories.iter().any(|(n, _)| n == name));
        for (name, repo) in repositories {
            let Some(why) = due(&repo, last.get(&name), Instant::now()) else {
                continue;
            };
            info!(repository = %name, reason = ?why, "syncing");
            syncer.run(&repo).await;
            let sample = random.hash_one((&name, Instant::now()));
            last.insert(name, after_run(&repo, Instant::now(), sample));
        }
        tokio::select! {
            woken = wake.recv() => if woken.is_none() { return },
            () = tokio::time::sleep(TICK) => {}
        }
        while wake.try_recv().is_ok() {}
    }
}
