//! A watch over a key range that never loses an event.
//!
//! The [`Watcher`] remembers the revision after the last event it delivered. When the stream
//! breaks (etcd restarted, network cut) it opens a new one from that revision, so nothing in
//! between is missed. When that revision was compacted away, etcd can no longer replay it:
//! the watcher re-lists the range and delivers [`WatchEvent::Restarted`] with the complete
//! current state, so a cache that replaces its contents with it misses no delete.

use std::collections::VecDeque;
use std::time::Duration;

use etcd_client::{EventType, GetOptions, WatchOptions, WatchStream};
use tracing::{debug, warn};

use crate::keys::range_end;
use crate::{Revision, Store, StoreError};

/// One key and its value as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: Vec<u8>,
    pub mod_revision: Revision,
}

/// What happened in the watched range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// A key was created or changed.
    Put(Entry),
    /// A key was deleted at `revision`.
    Delete { key: String, revision: Revision },
    /// The complete contents of the range at `revision`: replace everything known before.
    Restarted {
        entries: Vec<Entry>,
        revision: Revision,
    },
}

/// A resumable watch over every key that starts with a prefix.
pub struct Watcher {
    store: Store,
    prefix: String,
    /// The first revision not yet delivered; `None` until the first listing.
    next_revision: Option<Revision>,
    stream: Option<WatchStream>,
    pending: VecDeque<WatchEvent>,
    backoff: Duration,
}

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

impl Store {
    /// Watches every key under `prefix`. Without `from`, the watcher starts by listing the
    /// range (a [`WatchEvent::Restarted`]); with `from`, it delivers every change made at or
    /// after that revision.
    pub fn watch_prefix(&self, prefix: &str, from: Option<Revision>) -> Watcher {
        Watcher {
            store: self.clone(),
            prefix: prefix.to_owned(),
            next_revision: from,
            stream: None,
            pending: VecDeque::new(),
            backoff: MIN_BACKOFF,
        }
    }
}

impl Watcher {
    /// The first revision that has not been delivered yet.
    pub fn next_revision(&self) -> Option<Revision> {
        self.next_revision
    }

    /// The next event. Never fails: etcd being away is waited out with backoff.
    pub async fn next(&mut self) -> WatchEvent {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return event;
            }
            if let Err(error) = self.fill().await {
                warn!(prefix = %self.prefix, %error, "watch interrupted; resuming");
                self.stream = None;
                tokio::time::sleep(self.backoff).await;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    /// Reads from etcd until at least one event is pending.
    async fn fill(&mut self) -> Result<(), StoreError> {
        let Some(from) = self.next_revision else {
            return self.relist().await;
        };
        if self.stream.is_none() {
            let options = WatchOptions::new()
                .with_range(range_end(&self.prefix))
                .with_start_revision(from)
                .with_progress_notify();
            self.stream = Some(
                self.store
                    .client()
                    .watch(self.prefix.clone(), Some(options))
                    .await?,
            );
            debug!(prefix = %self.prefix, from, "watch opened");
        }
        let stream = self.stream.as_mut().expect("opened above");
        let Some(response) = stream.message().await? else {
            return Err(StoreError::Etcd(etcd_client::Error::WatchError(
                "watch stream ended".into(),
            )));
        };
        self.backoff = MIN_BACKOFF;
        if response.compact_revision() > 0 {
            warn!(prefix = %self.prefix, from, compacted = response.compact_revision(), "watch revision compacted; re-listing");
            self.stream = None;
            return self.relist().await;
        }
        if response.canceled() {
            return Err(StoreError::Etcd(etcd_client::Error::WatchError(format!(
                "watch canceled: {}",
                response.cancel_reason()
            ))));
        }
        let mut last = None;
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            last = Some(kv.mod_revision());
            self.pending.push_back(match event.event_type() {
                EventType::Put => WatchEvent::Put(Entry {
                    key,
                    value: kv.value().to_vec(),
                    mod_revision: kv.mod_revision(),
                }),
                EventType::Delete => WatchEvent::Delete {
                    key,
                    revision: kv.mod_revision(),
                },
            });
        }
        if let Some(last) = last {
            self.next_revision = Some(last + 1);
        } else if !response.created()
            && let Some(header) = response.header()
        {
            // A progress notification: every event up to this revision was delivered.
            self.next_revision = Some(from.max(header.revision() + 1));
        }
        Ok(())
    }

    /// Lists the range and queues a `Restarted` with all of it; the watch resumes after it.
    async fn relist(&mut self) -> Result<(), StoreError> {
        let options = GetOptions::new().with_range(range_end(&self.prefix));
        let response = self
            .store
            .client()
            .get(self.prefix.clone(), Some(options))
            .await?;
        let revision = response.header().map_or(0, |h| h.revision());
        let entries = response
            .kvs()
            .iter()
            .map(|kv| Entry {
                key: String::from_utf8_lossy(kv.key()).into_owned(),
                value: kv.value().to_vec(),
                mod_revision: kv.mod_revision(),
            })
            .collect();
        self.pending
            .push_back(WatchEvent::Restarted { entries, revision });
        self.next_revision = Some(revision + 1);
        self.stream = None;
        Ok(())
    }
}
