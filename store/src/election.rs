//! Leader election over etcd's election service, and the [`Fence`] that guards writes.
//!
//! A candidate campaigns with a lease; the winner's election key carries that lease. While the
//! lease lives the key exists with the `create_revision` it was won at. A [`Fence`] is that
//! (key, revision) pair: added to a [`crate::Transaction`] it makes etcd refuse the write once
//! the key is gone or was re-created by another leader — so a paused old leader cannot write.

use std::time::Duration;

use etcd_client::{Compare, CompareOp, LeaderKey};

use crate::lease::Lease;
use crate::{Revision, Store, StoreError};

/// Proof of leadership checked inside a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    key: Vec<u8>,
    revision: Revision,
}

impl Fence {
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The `create_revision` of the leader's election key.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// The compare that holds only while this leadership lasts.
    pub(crate) fn compare(&self) -> Compare {
        Compare::create_revision(self.key.clone(), CompareOp::Equal, self.revision)
    }
}

/// A candidate in one election.
pub struct Elector {
    store: Store,
    election: String,
    identity: String,
    ttl: Duration,
}

/// Leadership won: the lease that holds it and the fence that proves it.
pub struct Leadership {
    lease: Lease,
    leader_key: LeaderKey,
    fence: Fence,
    store: Store,
}

impl Elector {
    /// A candidate named `identity` in the election `name` (such as `controller`), whose
    /// leadership ends `ttl` after it stops renewing (Kubernetes uses 15 s).
    pub fn new(
        store: &Store,
        name: &str,
        identity: &str,
        ttl: Duration,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            election: store.keys().election(name)?,
            store: store.clone(),
            identity: identity.to_owned(),
            ttl,
        })
    }

    /// Waits until this candidate leads; returns its leadership.
    pub async fn campaign(&self) -> Result<Leadership, StoreError> {
        let lease = self.store.grant_lease(self.ttl).await?;
        let response = self
            .store
            .client()
            .campaign(self.election.clone(), self.identity.clone(), lease.id())
            .await?;
        let leader_key = response
            .leader()
            .cloned()
            .ok_or_else(|| StoreError::Decode {
                key: self.election.clone(),
                message: "campaign returned no leader key".into(),
            })?;
        let fence = Fence {
            key: leader_key.key().to_vec(),
            revision: leader_key.rev(),
        };
        Ok(Leadership {
            lease,
            leader_key,
            fence,
            store: self.store.clone(),
        })
    }

    /// The identity of the current leader, if any.
    pub async fn leader(&self) -> Result<Option<String>, StoreError> {
        match self.store.client().leader(self.election.clone()).await {
            Ok(response) => Ok(response
                .kv()
                .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())),
            Err(etcd_client::Error::GRpcStatus(status))
                if status.message().contains("no leader") =>
            {
                Ok(None)
            }
            Err(error) => Err(error.into()),
        }
    }
}

impl Leadership {
    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// Whether the lease behind this leadership is known to have expired.
    pub fn is_lost(&self) -> bool {
        self.lease.is_lost()
    }

    /// Whether etcd still shows this leadership (the election key with the same revision).
    pub async fn is_held(&self) -> Result<bool, StoreError> {
        let response = self
            .store
            .client()
            .get(self.fence.key.clone(), None)
            .await?;
        Ok(response
            .kvs()
            .first()
            .is_some_and(|kv| kv.create_revision() == self.fence.revision))
    }

    /// Stops renewing without resigning, as a crashed or paused leader would.
    pub fn abandon(self) {
        self.lease.abandon();
    }

    /// Gives leadership up at once so another candidate can win.
    pub async fn resign(self) -> Result<(), StoreError> {
        let options = etcd_client::ResignOptions::new().with_leader(self.leader_key.clone());
        self.store.client().resign(Some(options)).await?;
        self.lease.revoke().await
    }
}
