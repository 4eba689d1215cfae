//! All-or-nothing writes of several objects, each with its precondition, optionally fenced.
//!
//! A [`Transaction`] becomes one etcd transaction: every precondition (and the leadership
//! [`Fence`], when given) is a compare; if any fails nothing is written, and the store reads
//! the keys back in the same round trip to say which precondition failed and why.

use chrono::Utc;
use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use herd_crds::{Resource, Spec};
use uuid::Uuid;

use crate::codec::{encode_object, encode_value};
use crate::election::Fence;
use crate::{Revision, Store, StoreError};

/// What must hold of a key for a write to happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Nothing: write whatever is there.
    None,
    /// The key must not exist.
    Absent,
    /// The key must exist with this `mod_revision`.
    Revision(Revision),
}

#[derive(Clone, Debug)]
enum Action {
    Put { value: String, lease: Option<i64> },
    Delete,
}

#[derive(Clone, Debug)]
struct Op {
    key: String,
    kind: String,
    name: String,
    precondition: Precondition,
    action: Action,
}

/// A set of writes applied together or not at all.
pub struct Transaction {
    store: Store,
    ops: Vec<Op>,
    fence: Option<Fence>,
}

impl Store {
    /// Starts an empty transaction.
    pub fn transaction(&self) -> Transaction {
        Transaction {
            store: self.clone(),
            ops: Vec::new(),
            fence: None,
        }
    }
}

/// Fills in what the store sets on a new object: uid, generation 1, creation time.
pub fn prepare_new<R: Resource>(object: &R) -> R {
    let mut new = object.clone();
    let meta = new.metadata_mut();
    meta.uid.get_or_insert_with(|| Uuid::new_v4().to_string());
    meta.generation = meta.generation.max(1);
    meta.creation_timestamp.get_or_insert_with(Utc::now);
    meta.resource_version = None;
    new
}

/// The revision `object` was read at (its resourceVersion); an update needs it.
pub fn revision_of<R: Resource>(object: &R) -> Result<Revision, StoreError> {
    object
        .metadata()
        .revision()
        .ok_or_else(|| StoreError::MissingRevision {
            kind: R::KIND.to_owned(),
            name: object.name().to_owned(),
        })
}

impl Transaction {
    /// Only applies while `fence` still holds (the writer is still the leader).
    pub fn fenced(mut self, fence: &Fence) -> Self {
        self.fence = Some(fence.clone());
        self
    }

    /// Creates `object`; fails with `AlreadyExists` if it exists.
    pub fn create<R: Resource>(mut self, object: &R) -> Result<Self, StoreError> {
        let key = self.store.keys().object(R::PLURAL, object.name())?;
        let value = encode_object(&prepare_new(object))?;
        self.push::<R>(
            key,
            object.name(),
            Precondition::Absent,
            Action::Put { value, lease: None },
        );
        Ok(self)
    }

    /// Replaces `object` if its stored revision is still `object`'s resourceVersion.
    /// The caller is responsible for `metadata.generation` (see [`Store::update`]).
    pub fn update<R: Resource>(mut self, object: &R) -> Result<Self, StoreError> {
        let revision = revision_of(object)?;
        let key = self.store.keys().object(R::PLURAL, object.name())?;
        let value = encode_object(object)?;
        self.push::<R>(
            key,
            object.name(),
            Precondition::Revision(revision),
            Action::Put { value, lease: None },
        );
        Ok(self)
    }

    /// Deletes an object (not its status) under `precondition`.
    pub fn delete<R: Resource>(
        mut self,
        name: &str,
        precondition: Precondition,
    ) -> Result<Self, StoreError> {
        let key = self.store.keys().object(R::PLURAL, name)?;
        self.push::<R>(key, name, precondition, Action::Delete);
        Ok(self)
    }

    /// Writes the status of object `name` of kind `S` under `precondition` (on the status key).
    pub fn put_status<S: Spec>(
        mut self,
        name: &str,
        status: &S::Status,
        precondition: Precondition,
    ) -> Result<Self, StoreError> {
        let key = self.store.keys().status(S::PLURAL, name)?;
        let value = encode_value(status).map_err(|message| StoreError::Encode {
            kind: S::KIND.to_owned(),
            name: name.to_owned(),
            message,
        })?;
        self.ops.push(Op {
            key,
            kind: format!("{} status", S::KIND),
            name: name.to_owned(),
            precondition,
            action: Action::Put { value, lease: None },
        });
        Ok(self)
    }

    /// Deletes the status of object `name` of kind `S`, whatever it is.
    pub fn delete_status<S: Spec>(mut self, name: &str) -> Result<Self, StoreError> {
        let key = self.store.keys().status(S::PLURAL, name)?;
        self.ops.push(Op {
            key,
            kind: format!("{} status", S::KIND),
            name: name.to_owned(),
            precondition: Precondition::None,
            action: Action::Delete,
        });
        Ok(self)
    }

    /// Writes `value` under a raw `key`, optionally bound to a lease.
    pub fn put_raw(
        mut self,
        key: String,
        value: String,
        lease: Option<i64>,
        precondition: Precondition,
    ) -> Self {
        let name = key.clone();
        self.ops.push(Op {
            key,
            kind: "key".into(),
            name,
            precondition,
            action: Action::Put { value, lease },
        });
        self
    }

    /// Deletes a raw `key` under `precondition`.
    pub fn delete_raw(mut self, key: String, precondition: Precondition) -> Self {
        let name = key.clone();
        self.ops.push(Op {
            key,
            kind: "key".into(),
            name,
            precondition,
            action: Action::Delete,
        });
        self
    }

    fn push<R: Resource>(
        &mut self,
        key: String,
        name: &str,
        precondition: Precondition,
        action: Action,
    ) {
        self.ops.push(Op {
            key,
            kind: R::KIND.to_owned(),
            name: name.to_owned(),
            precondition,
            action,
        });
    }

    /// Applies every write, or none; returns the revision of the write.
    pub async fn commit(self) -> Result<Revision, StoreError> {
        let mut compares = Vec::new();
        if let Some(fence) = &self.fence {
            compares.push(fence.compare());
        }
        let mut checks = Vec::new();
        let mut writes = Vec::new();
        for op in &self.ops {
            match op.precondition {
                Precondition::None => {}
                Precondition::Absent => {
                    compares.push(Compare::version(op.key.clone(), CompareOp::Equal, 0))
                }
                Precondition::Revision(revision) => {
                    compares.push(Compare::mod_revision(
                        op.key.clone(),
                        CompareOp::Equal,
                        revision,
                    ));
                }
            }
            if op.precondition != Precondition::None {
                checks.push(TxnOp::get(op.key.clone(), None));
            }
            writes.push(match &op.action {
                Action::Put { value, lease } => {
                    let options = lease.map(|id| PutOptions::new().with_lease(id));
                    TxnOp::put(op.key.clone(), value.clone(), options)
                }
                Action::Delete => TxnOp::delete(op.key.clone(), None),
            });
        }
        if let Some(fence) = &self.fence {
            checks.push(TxnOp::get(fence.key().to_vec(), None));
        }
        let txn = Txn::new().when(compares).and_then(writes).or_else(checks);
        let response = self.store.client().txn(txn).await?;
        let revision = response.header().map_or(0, |h| h.revision());
        if response.succeeded() {
            return Ok(revision);
        }
        Err(self.explain_failure(&response.op_responses()))
    }

    /// Turns the keys read back after a failed compare into the error that caused it.
    fn explain_failure(&self, responses: &[TxnOpResponse]) -> StoreError {
        let found: Vec<(i64, i64)> = responses
            .iter()
            .map(|response| match response {
                TxnOpResponse::Get(get) => get
                    .kvs()
                    .first()
                    .map_or((0, 0), |kv| (kv.mod_revision(), kv.create_revision())),
                _ => (0, 0),
            })
            .collect();
        if let Some(fence) = &self.fence {
            let (_, created) = found.last().copied().unwrap_or((0, 0));
            if created != fence.revision() {
                return StoreError::FenceLost;
            }
        }
        let checked = self
            .ops
            .iter()
            .filter(|op| op.precondition != Precondition::None);
        for (op, (revision, _)) in checked.zip(found.iter().copied()) {
            let (kind, name) = (op.kind.clone(), op.name.clone());
            match op.precondition {
                Precondition::Absent if revision != 0 => {
                    return StoreError::AlreadyExists { kind, name };
                }
                Precondition::Revision(_) if revision == 0 => {
                    return StoreError::NotFound { kind, name };
                }
                Precondition::Revision(expected) if revision != expected => {
                    return StoreError::Conflict {
                        kind,
                        name,
                        expected,
                        found: revision,
                    };
                }
                _ => {}
            }
        }
        // Every key reads as expected now: it changed and changed back between the two reads.
        StoreError::Conflict {
            kind: "transaction".into(),
            name: String::new(),
            expected: 0,
            found: 0,
        }
    }
}
