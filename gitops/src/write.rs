//! Writing a sync plan to the store: all or nothing where etcd allows it.
//!
//! etcd refuses a transaction of more than 128 operations (`--max-txn-ops`). A plan of up to
//! [`OBJECTS_PER_TRANSACTION`] − 1 writes goes in one transaction together with the new status
//! (its inventory): atomic. A larger plan — only the first sync of a big repository or a
//! commit that changes more than 99 objects — is written in steps: first the status with the
//! union of the old and the new inventory (so whatever gets created is already owned, and a
//! crash part-way leaves nothing unowned), then the writes in transactions of
//! `OBJECTS_PER_TRANSACTION`, then the final status. Every write is fenced and a CAS, so a
//! concurrent change or a lost leadership stops the run; the next run starts over from what
//! is stored and converges. Validation always comes first: an invalid commit writes nothing.

use herd_crds::Resource;
use herd_crds::git_repository::{GitRepositorySpec, GitRepositoryStatus};
use herd_crds::with_object;
use herd_store::apply_plan::OBJECTS_PER_TRANSACTION;
use herd_store::txn::{Precondition, revision_of};
use herd_store::{Fence, Revision, Store, StoreError, Transaction};

use crate::plan::{SyncPlan, Write};

/// Where the status is written and what must hold of it.
pub struct StatusTarget<'a> {
    pub name: &'a str,
    pub precondition: Precondition,
}

/// Writes `plan` and then `status`; returns how many transactions it took.
pub async fn write_plan(
    store: &Store,
    fence: Option<&Fence>,
    plan: &SyncPlan,
    target: &StatusTarget<'_>,
    intent: &GitRepositoryStatus,
    status: &GitRepositoryStatus,
) -> Result<usize, StoreError> {
    let start = |store: &Store| match fence {
        Some(fence) => store.transaction().fenced(fence),
        None => store.transaction(),
    };
    if plan.writes.len() < OBJECTS_PER_TRANSACTION {
        let mut txn = start(store);
        for write in &plan.writes {
            txn = add_write(store, txn, write)?;
        }
        txn.put_status::<GitRepositorySpec>(target.name, status, target.precondition)?
            .commit()
            .await?;
        return Ok(1);
    }
    let revision: Revision = start(store)
        .put_status::<GitRepositorySpec>(target.name, intent, target.precondition)?
        .commit()
        .await?;
    let mut transactions = 1;
    for chunk in plan.writes.chunks(OBJECTS_PER_TRANSACTION) {
        let mut txn = start(store);
        for write in chunk {
            txn = add_write(store, txn, write)?;
        }
        txn.commit().await?;
        transactions += 1;
    }
    start(store)
        .put_status::<GitRepositorySpec>(target.name, status, Precondition::Revision(revision))?
        .commit()
        .await?;
    Ok(transactions + 1)
}

/// Adds one write of the plan to `txn`.
fn add_write(store: &Store, txn: Transaction, write: &Write) -> Result<Transaction, StoreError> {
    match write {
        Write::Create(object) => with_object!(object, object => txn.create(object)),
        Write::Update(object) | Write::MarkDeleted(object) => {
            with_object!(object, object => txn.update(object))
        }
        Write::Delete(object) => with_object!(object, object => delete(store, txn, object)),
    }
}

/// Deletes `object` at the revision read, and its status with it (as `Store::delete` does).
fn delete<R: Resource>(
    store: &Store,
    txn: Transaction,
    object: &R,
) -> Result<Transaction, StoreError> {
    let revision = revision_of(object)?;
    let status = store.keys().status(R::PLURAL, object.name())?;
    Ok(txn
        .delete::<R>(object.name(), Precondition::Revision(revision))?
        .delete_raw(status, Precondition::None))
}
