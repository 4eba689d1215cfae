//! Recording `Event`s: each stored under `<prefix>/events/<name>` on an expiring lease.
//!
//! Leases are shared by the events of one minute, so a burst of events costs one lease grant;
//! an event lives between `ttl - 1 min` and `ttl`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use herd_crds::event::{Event, EventType, InvolvedObject};
use tokio::sync::Mutex;

use crate::codec::encode_value;
use crate::txn::Precondition;
use crate::{Store, StoreError};

/// How long events are kept (Kubernetes keeps them one hour).
pub const DEFAULT_EVENT_TTL: Duration = Duration::from_secs(3600);

const LEASE_REUSE: Duration = Duration::from_secs(60);

/// Writes events for one component, such as `herd-controller` or `herd-agent/ferby`.
#[derive(Clone)]
pub struct EventRecorder {
    store: Store,
    source: String,
    ttl: Duration,
    lease: Arc<Mutex<Option<(i64, Instant)>>>,
}

impl EventRecorder {
    pub fn new(store: &Store, source: &str) -> Self {
        Self::with_ttl(store, source, DEFAULT_EVENT_TTL)
    }

    pub fn with_ttl(store: &Store, source: &str, ttl: Duration) -> Self {
        Self {
            store: store.clone(),
            source: source.to_owned(),
            ttl,
            lease: Arc::new(Mutex::new(None)),
        }
    }

    /// Records that `reason` happened to `object`.
    pub async fn record(
        &self,
        object: InvolvedObject,
        type_: EventType,
        reason: &str,
        message: &str,
    ) -> Result<Event, StoreError> {
        let now = Utc::now();
        let name = format!("{}-{}", object.name, uuid::Uuid::new_v4().simple());
        let name: String = name.chars().take(herd_crds::names::MAX_NAME_LEN).collect();
        let name = name.trim_end_matches('-').to_owned();
        let event = Event::new(
            name.clone(),
            object,
            type_,
            reason,
            message,
            self.source.clone(),
            now,
        );
        let key = format!("{}{name}", self.store.keys().events());
        let value = encode_value(&event).map_err(|message| StoreError::Encode {
            kind: "Event".into(),
            name: name.clone(),
            message,
        })?;
        let lease = self.lease().await?;
        self.store
            .transaction()
            .put_raw(key, value, Some(lease), Precondition::Absent)
            .commit()
            .await?;
        Ok(event)
    }

    async fn lease(&self) -> Result<i64, StoreError> {
        let mut current = self.lease.lock().await;
        if let Some((id, granted)) = *current
            && granted.elapsed() < LEASE_REUSE
        {
            return Ok(id);
        }
        let id = self.store.grant_expiring_lease(self.ttl).await?;
        *current = Some((id, Instant::now()));
        Ok(id)
    }
}

/// The object an event is about, from its kind and name.
pub fn about(kind: &str, name: &str) -> InvolvedObject {
    InvolvedObject {
        kind: kind.to_owned(),
        name: name.to_owned(),
        uid: None,
    }
}
