//! A watch-fed, in-memory copy of one key range, for the controller and the agents.
//!
//! The [`Reflector`] applies [`WatchEvent`]s to a map from name to decoded value; readers
//! ([`ReflectorReader`]) see a consistent snapshot and can wait until the copy has caught up
//! with a given store revision. A value that does not decode is logged and left out (so one
//! bad object never stops the others), exactly as if it were absent.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use tokio::sync::{mpsc, watch};
use tracing::warn;

use crate::keys::name_below;
use crate::watch::{Entry, WatchEvent, Watcher};
use crate::{Revision, StoreError};

/// Turns a stored value into the cached type: `(key, value, mod_revision)`.
pub type Decoder<T> = fn(&str, &[u8], Revision) -> Result<T, StoreError>;

struct Cache<T> {
    items: BTreeMap<String, Arc<T>>,
}

/// Keeps the cache in step with the watch; run it with [`Reflector::run`].
pub struct Reflector<T> {
    watcher: Watcher,
    prefix: String,
    decode: Decoder<T>,
    cache: Arc<RwLock<Cache<T>>>,
    revision: watch::Sender<Revision>,
    notify: Option<mpsc::UnboundedSender<String>>,
}

/// A read-only view of a reflector's cache.
pub struct ReflectorReader<T> {
    cache: Arc<RwLock<Cache<T>>>,
    revision: watch::Receiver<Revision>,
}

impl<T> Clone for ReflectorReader<T> {
    fn clone(&self) -> Self {
        Self {
            cache: self.cache.clone(),
            revision: self.revision.clone(),
        }
    }
}

impl<T: Send + Sync + 'static> Reflector<T> {
    /// A reflector of the names directly below `prefix`, fed by `watcher` (which must watch
    /// that prefix), decoding values with `decode`.
    pub fn new(watcher: Watcher, prefix: &str, decode: Decoder<T>) -> (Self, ReflectorReader<T>) {
        let cache = Arc::new(RwLock::new(Cache {
            items: BTreeMap::new(),
        }));
        let (revision, receiver) = watch::channel(0);
        let reader = ReflectorReader {
            cache: cache.clone(),
            revision: receiver,
        };
        let reflector = Self {
            watcher,
            prefix: prefix.to_owned(),
            decode,
            cache,
            revision,
            notify: None,
        };
        (reflector, reader)
    }

    /// Also sends the name of every entry that changed (all of them on a re-list) to `notify`,
    /// after the cache holds the change.
    pub fn notify(mut self, notify: mpsc::UnboundedSender<String>) -> Self {
        self.notify = Some(notify);
        self
    }

    /// Applies events forever (spawn it; dropping the task stops it).
    pub async fn run(mut self) {
        loop {
            let event = self.watcher.next().await;
            self.apply(event);
        }
    }

    /// Applies one event to the cache.
    pub fn apply(&mut self, event: WatchEvent) {
        let mut changed = Vec::new();
        let revision = match event {
            WatchEvent::Put(entry) => {
                let decoded = self.decode_entry(&entry);
                let mut cache = self.cache.write().expect("cache lock");
                if let Some((name, value)) = decoded {
                    changed.push(name.clone());
                    cache.items.insert(name, Arc::new(value));
                } else if let Some(name) = name_below(&self.prefix, &entry.key) {
                    changed.push(name.to_owned());
                    cache.items.remove(name);
                }
                entry.mod_revision
            }
            WatchEvent::Delete { key, revision } => {
                if let Some(name) = name_below(&self.prefix, &key) {
                    changed.push(name.to_owned());
                    self.cache.write().expect("cache lock").items.remove(name);
                }
                revision
            }
            WatchEvent::Restarted { entries, revision } => {
                let items: BTreeMap<String, Arc<T>> = entries
                    .iter()
                    .filter_map(|entry| self.decode_entry(entry))
                    .map(|(name, value)| (name, Arc::new(value)))
                    .collect();
                let mut cache = self.cache.write().expect("cache lock");
                changed.extend(
                    cache
                        .items
                        .keys()
                        .filter(|k| !items.contains_key(*k))
                        .cloned(),
                );
                changed.extend(items.keys().cloned());
                cache.items = items;
                revision
            }
        };
        self.revision.send_replace(revision);
        if let Some(notify) = &self.notify {
            for name in changed {
                let _ = notify.send(name);
            }
        }
    }

    fn decode_entry(&self, entry: &Entry) -> Option<(String, T)> {
        let name = name_below(&self.prefix, &entry.key)?;
        match (self.decode)(&entry.key, &entry.value, entry.mod_revision) {
            Ok(value) => Some((name.to_owned(), value)),
            Err(error) => {
                warn!(key = %entry.key, %error, "ignoring a value that does not decode");
                None
            }
        }
    }
}

impl<T> ReflectorReader<T> {
    pub fn get(&self, name: &str) -> Option<Arc<T>> {
        self.cache
            .read()
            .expect("cache lock")
            .items
            .get(name)
            .cloned()
    }

    /// Every cached value, sorted by name.
    pub fn list(&self) -> Vec<(String, Arc<T>)> {
        let cache = self.cache.read().expect("cache lock");
        cache
            .items
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.cache.read().expect("cache lock").items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The store revision the cache reflects.
    pub fn revision(&self) -> Revision {
        *self.revision.borrow()
    }

    /// Waits until the cache reflects at least `revision`.
    pub async fn wait_for(&mut self, revision: Revision) {
        // An error means the reflector stopped; then the cache will not move again.
        let _ = self.revision.wait_for(|seen| *seen >= revision).await;
    }

    /// Waits for the next change of the cache.
    pub async fn changed(&mut self) -> bool {
        self.revision.changed().await.is_ok()
    }
}
