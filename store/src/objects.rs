//! Typed reads and writes of single objects and their statuses.
//!
//! Every update is a compare-and-swap on `resourceVersion`; deletion of an object that still
//! has finalizers only marks it (`deletionTimestamp`), as in Kubernetes.

use chrono::Utc;
use etcd_client::{GetOptions, Txn, TxnOp, TxnOpResponse};
use herd_crds::{Object, Resource, Spec};

use crate::codec::{decode_object, decode_versioned};
use crate::keys::name_below;
use crate::txn::Precondition;
use crate::{Revision, Store, StoreError, Versioned};

/// What a delete did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// The object and its status are gone.
    Deleted,
    /// The object has finalizers: it is marked for deletion and stays until they are removed.
    Marked,
}

impl Store {
    /// The object `name` of kind `R`, without its status.
    pub async fn get<R: Resource>(&self, name: &str) -> Result<Option<R>, StoreError> {
        let key = self.keys().object(R::PLURAL, name)?;
        let response = self.client().get(key.clone(), None).await?;
        response
            .kvs()
            .first()
            .map(|kv| decode_object(&key, kv.value(), kv.mod_revision()))
            .transpose()
    }

    /// Like [`Store::get`] but fails with `NotFound` when absent.
    pub async fn get_existing<R: Resource>(&self, name: &str) -> Result<R, StoreError> {
        self.get(name).await?.ok_or_else(|| StoreError::NotFound {
            kind: R::KIND.to_owned(),
            name: name.to_owned(),
        })
    }

    /// The object `name` with its status, read at one revision.
    pub async fn get_with_status<S: Spec>(
        &self,
        name: &str,
    ) -> Result<Option<Object<S>>, StoreError> {
        let key = self.keys().object(S::PLURAL, name)?;
        let status_key = self.keys().status(S::PLURAL, name)?;
        let txn = Txn::new().and_then([
            TxnOp::get(key.clone(), None),
            TxnOp::get(status_key.clone(), None),
        ]);
        let responses = self.client().txn(txn).await?.op_responses();
        let first = |index: usize| match responses.get(index) {
            Some(TxnOpResponse::Get(get)) => get.kvs().first().cloned(),
            _ => None,
        };
        let Some(kv) = first(0) else { return Ok(None) };
        let mut object: Object<S> = decode_object(&key, kv.value(), kv.mod_revision())?;
        if let Some(status) = first(1) {
            object.status =
                Some(decode_versioned::<S::Status>(&status_key, status.value(), 0)?.value);
        }
        Ok(Some(object))
    }

    /// Every object of kind `R` (without status), sorted by name, and the revision read at.
    pub async fn list<R: Resource>(&self) -> Result<(Vec<R>, Revision), StoreError> {
        let prefix = self.keys().objects(R::PLURAL);
        let (entries, revision) = self.list_raw(&prefix, None).await?;
        let objects = entries
            .into_iter()
            .filter(|(key, _, _)| name_below(&prefix, key).is_some())
            .map(|(key, value, mod_revision)| decode_object(&key, &value, mod_revision))
            .collect::<Result<_, _>>()?;
        Ok((objects, revision))
    }

    /// Every object of kind `S` with its status, read at one revision.
    pub async fn list_with_status<S: Spec>(&self) -> Result<Vec<Object<S>>, StoreError> {
        let (mut objects, revision) = self.list::<Object<S>>().await?;
        let prefix = self.keys().statuses(S::PLURAL);
        let (statuses, _) = self.list_raw(&prefix, Some(revision)).await?;
        let mut by_name = std::collections::BTreeMap::new();
        for (key, value, _) in statuses {
            if let Some(name) = name_below(&prefix, &key) {
                by_name.insert(
                    name.to_owned(),
                    decode_versioned::<S::Status>(&key, &value, 0)?.value,
                );
            }
        }
        for object in &mut objects {
            object.status = by_name.remove(&object.metadata.name);
        }
        Ok(objects)
    }

    /// Every (key, value, mod_revision) under `prefix`, at `revision` or the latest.
    pub async fn list_raw(
        &self,
        prefix: &str,
        revision: Option<Revision>,
    ) -> Result<(Vec<(String, Vec<u8>, Revision)>, Revision), StoreError> {
        let mut options = GetOptions::new().with_prefix();
        if let Some(revision) = revision {
            options = options.with_revision(revision);
        }
        let response = self.client().get(prefix, Some(options)).await?;
        let revision = response.header().map_or(0, |h| h.revision());
        let entries = response
            .kvs()
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    kv.value().to_vec(),
                    kv.mod_revision(),
                )
            })
            .collect();
        Ok((entries, revision))
    }

    /// Creates `object`; returns it as stored (uid, generation 1, resourceVersion set).
    pub async fn create<R: Resource>(&self, object: &R) -> Result<R, StoreError> {
        let mut stored = crate::txn::prepare_new(object);
        let revision = self.transaction().create(&stored)?.commit().await?;
        stored.clear_status();
        stored.metadata_mut().resource_version = Some(revision.to_string());
        Ok(stored)
    }

    /// Replaces `object` if nobody changed it since it was read (its resourceVersion).
    ///
    /// The store keeps `uid` and `creationTimestamp` and bumps `generation` when the desired
    /// state changed. Fails with `Conflict` when the object changed meanwhile.
    pub async fn update<R: Resource>(&self, object: &R) -> Result<R, StoreError> {
        let current: R = self.get_existing(object.name()).await?;
        let expected = crate::txn::revision_of(object)?;
        let found = current.metadata().revision().unwrap_or(0);
        if expected != found {
            return Err(StoreError::Conflict {
                kind: R::KIND.to_owned(),
                name: object.name().to_owned(),
                expected,
                found,
            });
        }
        let next = next_version(&current, object);
        let revision = self.transaction().update(&next)?.commit().await?;
        let mut stored = next;
        stored.clear_status();
        stored.metadata_mut().resource_version = Some(revision.to_string());
        Ok(stored)
    }

    /// Deletes object `name` of kind `R` and its status, or marks it when finalizers remain.
    /// `precondition` may pin the revision the caller saw.
    pub async fn delete<R: Resource>(
        &self,
        name: &str,
        precondition: Precondition,
    ) -> Result<DeleteOutcome, StoreError> {
        let current: R = self.get_existing(name).await?;
        let revision = current.metadata().revision().unwrap_or(0);
        if let Precondition::Revision(expected) = precondition
            && expected != revision
        {
            return Err(StoreError::Conflict {
                kind: R::KIND.to_owned(),
                name: name.to_owned(),
                expected,
                found: revision,
            });
        }
        if !current.metadata().finalizers.is_empty() {
            if current.metadata().deletion_timestamp.is_none() {
                let mut marked = current.clone();
                marked.metadata_mut().deletion_timestamp = Some(Utc::now());
                self.transaction().update(&marked)?.commit().await?;
            }
            return Ok(DeleteOutcome::Marked);
        }
        let status_key = self.keys().status(R::PLURAL, name)?;
        self.transaction()
            .delete::<R>(name, Precondition::Revision(revision))?
            .delete_raw(status_key, Precondition::None)
            .commit()
            .await?;
        Ok(DeleteOutcome::Deleted)
    }

    /// The status of object `name` of kind `S` and the revision it was written at.
    pub async fn get_status<S: Spec>(
        &self,
        name: &str,
    ) -> Result<Option<Versioned<S::Status>>, StoreError> {
        let key = self.keys().status(S::PLURAL, name)?;
        let response = self.client().get(key.clone(), None).await?;
        response
            .kvs()
            .first()
            .map(|kv| decode_versioned(&key, kv.value(), kv.mod_revision()))
            .transpose()
    }

    /// Writes the status of object `name` of kind `S` under `precondition`.
    pub async fn put_status<S: Spec>(
        &self,
        name: &str,
        status: &S::Status,
        precondition: Precondition,
    ) -> Result<Revision, StoreError> {
        self.transaction()
            .put_status::<S>(name, status, precondition)?
            .commit()
            .await
    }
}

/// `desired` as it should be stored over `current`: identity kept, generation bumped on change
/// of the desired state. Used by [`Store::update`] and by callers building transactions.
pub fn next_version<R: Resource>(current: &R, desired: &R) -> R {
    let mut next = desired.clone();
    let changed = current.desired_state_differs(desired);
    let (old, new) = (current.metadata(), next.metadata_mut());
    new.uid.clone_from(&old.uid);
    new.creation_timestamp = old.creation_timestamp;
    new.generation = if changed {
        old.generation + 1
    } else {
        old.generation
    };
    new.deletion_timestamp = old.deletion_timestamp.or(new.deletion_timestamp);
    next
}
