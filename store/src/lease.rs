//! Leases: keys that vanish when their holder stops renewing (heartbeats, events, leadership).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::warn;

use crate::{Store, StoreError};

/// A granted lease, renewed in the background until dropped, revoked or abandoned.
pub struct Lease {
    id: i64,
    ttl: Duration,
    renewer: JoinHandle<()>,
    lost: Arc<AtomicBool>,
    store: Store,
}

impl Store {
    /// Grants a lease of `ttl` (whole seconds, at least 1) and starts renewing it.
    pub async fn grant_lease(&self, ttl: Duration) -> Result<Lease, StoreError> {
        let seconds = ttl.as_secs().max(1) as i64;
        let response = self.client().lease_grant(seconds, None).await?;
        let id = response.id();
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = tokio::spawn(renew(
            self.clone(),
            id,
            Duration::from_secs(seconds as u64),
            lost.clone(),
        ));
        Ok(Lease {
            id,
            ttl: Duration::from_secs(seconds as u64),
            renewer,
            lost,
            store: self.clone(),
        })
    }

    /// Grants a lease that is never renewed: it ends after `ttl` (events use this).
    pub async fn grant_expiring_lease(&self, ttl: Duration) -> Result<i64, StoreError> {
        let seconds = ttl.as_secs().max(1) as i64;
        Ok(self.client().lease_grant(seconds, None).await?.id())
    }
}

/// Renews lease `id` every third of its TTL; marks it lost when etcd says it expired.
async fn renew(store: Store, id: i64, ttl: Duration, lost: Arc<AtomicBool>) {
    let period = ttl / 3;
    loop {
        let expired = async {
            let (mut keeper, mut responses) = store.client().lease_keep_alive(id).await?;
            loop {
                keeper.keep_alive().await?;
                match responses.message().await? {
                    Some(response) if response.ttl() > 0 => tokio::time::sleep(period).await,
                    _ => return Ok::<(), etcd_client::Error>(()),
                }
            }
        }
        .await;
        match expired {
            Ok(()) => {
                warn!(lease = id, "lease expired");
                lost.store(true, Ordering::SeqCst);
                return;
            }
            Err(error) => {
                warn!(lease = id, %error, "renewing lease failed; retrying");
                tokio::time::sleep(period.min(Duration::from_secs(1))).await;
            }
        }
    }
}

impl Lease {
    pub fn id(&self) -> i64 {
        self.id
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Whether etcd reported the lease expired (its keys are gone).
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Stops renewing without revoking: the lease ends after its TTL, as if the holder died.
    pub fn abandon(self) {
        self.renewer.abort();
    }

    /// Ends the lease now; its keys are deleted at once.
    pub async fn revoke(self) -> Result<(), StoreError> {
        self.renewer.abort();
        self.store.client().lease_revoke(self.id).await?;
        Ok(())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}
