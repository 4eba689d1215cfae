//! The one door to etcd.
//!
//! Everything herd keeps lives in etcd under one prefix (default `/herd`, see [`Keys`]).
//! This crate is the only code that talks to etcd: typed reads and writes of API objects, where
//! every update is a compare-and-swap on `resourceVersion` (the etcd `mod_revision`);
//! all-or-nothing transactions over several objects; leases; leader election whose [`Fence`]
//! can guard any write; a [`Watcher`] that never loses an event; and a [`Reflector`] that
//! keeps a watch-fed in-memory copy of a key range.

pub mod apply_plan;
pub mod codec;
pub mod election;
pub mod error;
pub mod events;
pub mod keys;
pub mod lease;
pub mod objects;
pub mod reflector;
pub mod store;
pub mod txn;
pub mod watch;

pub use election::{Elector, Fence, Leadership};
pub use error::StoreError;
pub use events::EventRecorder;
pub use keys::Keys;
pub use lease::Lease;
pub use reflector::{Reflector, ReflectorReader};
pub use store::Store;
pub use txn::Transaction;
pub use watch::{Entry, WatchEvent, Watcher};

/// An etcd revision (`mod_revision`, `create_revision` or a store-wide revision).
pub type Revision = i64;

/// A value read from the store with the revision at which it was last written.
#[derive(Clone, Debug, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub revision: Revision,
}
