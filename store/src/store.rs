//! [`Store`]: a connection to etcd and the key layout it writes under.

use std::time::Duration;

use etcd_client::{Client, ConnectOptions};

use crate::keys::Keys;
use crate::{Revision, StoreError};

/// A handle on etcd; cheap to clone, safe to share between tasks.
#[derive(Clone)]
pub struct Store {
    client: Client,
    keys: Keys,
}

impl Store {
    /// Connects to the etcd `endpoints` (such as `http://127.0.0.1:2379`) and uses `prefix`.
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<Self, StoreError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        let client = Client::connect(endpoints, Some(options)).await?;
        Ok(Self {
            client,
            keys: Keys::new(prefix),
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The raw etcd client, for the modules of this crate.
    pub(crate) fn client(&self) -> Client {
        self.client.clone()
    }

    /// The store's current revision.
    pub async fn current_revision(&self) -> Result<Revision, StoreError> {
        let response = self
            .client()
            .get(
                self.keys.prefix().as_bytes().to_vec(),
                Some(etcd_client::GetOptions::new().with_count_only()),
            )
            .await?;
        Ok(response.header().map_or(0, |h| h.revision()))
    }

    /// The revision of the newest write to a key still under `prefix` (0 when it holds none).
    /// A cache of the range that reflects this revision holds every value stored there now —
    /// the barrier to pass before acting on one cache because of a change seen in another.
    pub async fn last_modified(&self, prefix: &str) -> Result<Revision, StoreError> {
        let options = etcd_client::GetOptions::new()
            .with_range(crate::keys::range_end(prefix))
            .with_keys_only()
            .with_sort(
                etcd_client::SortTarget::Mod,
                etcd_client::SortOrder::Descend,
            )
            .with_limit(1);
        let response = self.client().get(prefix, Some(options)).await?;
        Ok(response.kvs().first().map_or(0, |kv| kv.mod_revision()))
    }
}
