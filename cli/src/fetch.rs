//! Reading a kind at one store revision, and keeping that reading up to date from etcd
//! watches (for `get -w`, `wait` and `delete`'s wait).
//!
//! [`read`] lists every key range of a kind (see [`Source`]) at the same revision, so an
//! object and its status belong together. [`Live`] then opens one watch per range from the
//! revision after that reading, so no change in between is missed, and applies each event to
//! its [`Snapshot`]. A watch whose revision was compacted re-lists its range (the store's
//! `Watcher` does it) and the snapshot replaces that range's contents.

use std::collections::{BTreeMap, BTreeSet};

use herd_crds::names::is_dns_label;
use herd_store::keys::name_below;
use herd_store::{Revision, Store, StoreError, WatchEvent};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::view::{Parts, Raw, Shown, Source};

/// The key ranges of one kind, optionally narrowed to one name.
#[derive(Clone, Debug)]
pub struct Ranges {
    /// Each source and the prefix of its keys (`…/virtualmachines/`).
    prefixes: Vec<(Source, String)>,
    name: Option<String>,
}

impl Ranges {
    /// The ranges of kind `K` under `store`'s prefix.
    pub fn of<K: Shown>(store: &Store, name: Option<&str>) -> Result<Self, StoreError> {
        if let Some(name) = name
            && !is_dns_label(name)
        {
            return Err(StoreError::InvalidName(name.to_owned()));
        }
        let prefixes = K::SOURCES
            .iter()
            .map(|source| (*source, source.prefix(store.keys(), K::PLURAL)))
            .collect();
        Ok(Self {
            prefixes,
            name: name.map(str::to_owned),
        })
    }

    /// The prefix to list or watch for source number `index` (the key itself for one name:
    /// a key prefix, so longer names must be filtered out by [`Ranges::route`]).
    fn range(&self, index: usize) -> String {
        let prefix = &self.prefixes[index].1;
        match &self.name {
            Some(name) => format!("{prefix}{name}"),
            None => prefix.clone(),
        }
    }

    /// The object name a key of source `index` belongs to, if it is one of ours.
    pub fn route<'k>(&self, index: usize, key: &'k str) -> Option<&'k str> {
        let name = name_below(&self.prefixes[index].1, key)?;
        let wanted = self.name.as_deref().is_none_or(|wanted| wanted == name);
        (wanted && is_dns_label(name)).then_some(name)
    }
}

/// Every part of every object of a kind as of one revision.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub parts: BTreeMap<String, Parts>,
    pub revision: Revision,
}

impl Snapshot {
    /// Object `name`, assembled; `None` when it does not exist.
    pub fn get<K: Shown>(&self, name: &str) -> Result<Option<K>, StoreError> {
        match self.parts.get(name) {
            Some(parts) => K::assemble(parts),
            None => Ok(None),
        }
    }

    /// Every object in display order, and the problems of those that could not be decoded.
    pub fn all<K: Shown>(&self) -> (Vec<K>, Vec<StoreError>) {
        let (mut objects, mut problems) = (Vec::new(), Vec::new());
        for parts in self.parts.values() {
            match K::assemble(parts) {
                Ok(Some(object)) => objects.push(object),
                Ok(None) => {}
                Err(problem) => problems.push(problem),
            }
        }
        K::sort(&mut objects);
        (objects, problems)
    }

    /// Applies one watch event of source `index`; returns the names it changed.
    pub fn apply(&mut self, ranges: &Ranges, index: usize, event: WatchEvent) -> BTreeSet<String> {
        let source = ranges.prefixes[index].0;
        let mut changed = BTreeSet::new();
        match event {
            WatchEvent::Put(entry) => {
                if let Some(name) = ranges.route(index, &entry.key) {
                    let raw = Raw {
                        key: entry.key.clone(),
                        value: entry.value,
                        revision: entry.mod_revision,
                    };
                    self.set(name, source, Some(raw));
                    changed.insert(name.to_owned());
                }
                self.revision = self.revision.max(entry.mod_revision);
            }
            WatchEvent::Delete { key, revision } => {
                if let Some(name) = ranges.route(index, &key) {
                    self.set(name, source, None);
                    changed.insert(name.to_owned());
                }
                self.revision = self.revision.max(revision);
            }
            WatchEvent::Restarted { entries, revision } => {
                changed = self.replace(ranges, index, entries);
                self.revision = self.revision.max(revision);
            }
        }
        changed
    }

    fn set(&mut self, name: &str, source: Source, raw: Option<Raw>) {
        let parts = self.parts.entry(name.to_owned()).or_default();
        *parts.slot(source) = raw;
        if parts.is_empty() {
            self.parts.remove(name);
        }
    }

    /// Replaces everything of source `index` with `entries`; returns the names touched.
    fn replace(
        &mut self,
        ranges: &Ranges,
        index: usize,
        entries: Vec<herd_store::Entry>,
    ) -> BTreeSet<String> {
        let source = ranges.prefixes[index].0;
        let mut changed: BTreeSet<String> = self
            .parts
            .iter_mut()
            .filter_map(|(name, parts)| parts.slot(source).take().map(|_| name.clone()))
            .collect();
        self.parts.retain(|_, parts| !parts.is_empty());
        for entry in entries {
            if let Some(name) = ranges.route(index, &entry.key) {
                let raw = Raw {
                    key: entry.key.clone(),
                    value: entry.value,
                    revision: entry.mod_revision,
                };
                self.set(name, source, Some(raw));
                changed.insert(name.to_owned());
            }
        }
        changed
    }
}

/// Reads every range of kind `K` (or of its object `name`) at one revision.
pub async fn read<K: Shown>(
    store: &Store,
    name: Option<&str>,
) -> Result<(Ranges, Snapshot), StoreError> {
    let ranges = Ranges::of::<K>(store, name)?;
    let mut snapshot = Snapshot::default();
    for index in 0..ranges.prefixes.len() {
        let at = (index > 0).then_some(snapshot.revision);
        let (entries, revision) = store.list_raw(&ranges.range(index), at).await?;
        if index == 0 {
            snapshot.revision = revision;
        }
        let entries = entries
            .into_iter()
            .map(|(key, value, mod_revision)| herd_store::Entry {
                key,
                value,
                mod_revision,
            })
            .collect();
        snapshot.replace(&ranges, index, entries);
    }
    Ok((ranges, snapshot))
}

/// A snapshot kept current by watches.
pub struct Live {
    ranges: Ranges,
    snapshot: Snapshot,
    events: mpsc::Receiver<(usize, WatchEvent)>,
    _watches: JoinSet<()>,
}

impl Live {
    /// Reads kind `K` (or its object `name`) and watches every change after that reading.
    pub async fn open<K: Shown>(store: &Store, name: Option<&str>) -> Result<Self, StoreError> {
        let (ranges, snapshot) = read::<K>(store, name).await?;
        let (sender, events) = mpsc::channel(256);
        let mut watches = JoinSet::new();
        for index in 0..ranges.prefixes.len() {
            let mut watcher = store.watch_prefix(&ranges.range(index), Some(snapshot.revision + 1));
            let sender = sender.clone();
            watches.spawn(async move {
                loop {
                    let event = watcher.next().await;
                    if sender.send((index, event)).await.is_err() {
                        return;
                    }
                }
            });
        }
        Ok(Self {
            ranges,
            snapshot,
            events,
            _watches: watches,
        })
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Waits for the next watch event and applies it; returns the names it changed (often
    /// none: a key of another name that shares our name as a prefix).
    pub async fn next(&mut self) -> BTreeSet<String> {
        match self.events.recv().await {
            Some((index, event)) => self.snapshot.apply(&self.ranges, index, event),
            // The watch tasks never end on their own; if they did, wait forever like them.
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_store::{Entry, Keys};

    fn ranges(name: Option<&str>) -> Ranges {
        let keys = Keys::new("/herd");
        Ranges {
            prefixes: vec![
                (Source::Object, keys.objects("nodes")),
                (Source::Status, keys.statuses("nodes")),
                (Source::Heartbeat, keys.heartbeats()),
            ],
            name: name.map(str::to_owned),
        }
    }

    fn put(key: &str, revision: Revision) -> WatchEvent {
        WatchEvent::Put(Entry {
            key: key.into(),
            value: b"x".to_vec(),
            mod_revision: revision,
        })
    }

    #[test]
    fn keys_route_to_their_object_and_one_name_ignores_longer_ones() {
        let all = ranges(None);
        assert_eq!(all.route(0, "/herd/nodes/ferby"), Some("ferby"));
        assert_eq!(all.route(2, "/herd/heartbeats/ferby"), Some("ferby"));
        assert_eq!(all.route(0, "/herd/nodesx"), None);
        let one = ranges(Some("ferby"));
        assert_eq!(one.range(1), "/herd/status/nodes/ferby");
        assert_eq!(one.route(0, "/herd/nodes/ferby-2"), None);
    }

    #[test]
    fn events_fill_and_empty_the_parts_of_an_object() {
        let ranges = ranges(None);
        let mut snapshot = Snapshot::default();
        snapshot.apply(&ranges, 0, put("/herd/nodes/ferby", 5));
        let changed = snapshot.apply(&ranges, 2, put("/herd/heartbeats/ferby", 6));
        assert_eq!(changed, BTreeSet::from(["ferby".to_owned()]));
        let parts = &snapshot.parts["ferby"];
        assert!(parts.object.is_some() && parts.heartbeat.is_some() && parts.status.is_none());
        assert_eq!(snapshot.revision, 6);
        let delete = |key: &str| WatchEvent::Delete {
            key: key.into(),
            revision: 7,
        };
        snapshot.apply(&ranges, 0, delete("/herd/nodes/ferby"));
        snapshot.apply(&ranges, 2, delete("/herd/heartbeats/ferby"));
        assert!(snapshot.parts.is_empty());
    }

    #[test]
    fn a_relist_replaces_one_source_and_reports_what_it_touched() {
        let ranges = ranges(None);
        let mut snapshot = Snapshot::default();
        snapshot.apply(&ranges, 0, put("/herd/nodes/a", 1));
        snapshot.apply(&ranges, 2, put("/herd/heartbeats/a", 2));
        let restarted = WatchEvent::Restarted {
            entries: vec![Entry {
                key: "/herd/heartbeats/b".into(),
                value: vec![],
                mod_revision: 9,
            }],
            revision: 10,
        };
        let changed = snapshot.apply(&ranges, 2, restarted);
        assert_eq!(changed, BTreeSet::from(["a".to_owned(), "b".to_owned()]));
        assert!(snapshot.parts["a"].heartbeat.is_none() && snapshot.parts["a"].object.is_some());
        assert!(snapshot.parts["b"].heartbeat.is_some());
        assert_eq!(snapshot.revision, 10);
    }
}
