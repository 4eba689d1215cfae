//! `herd-gitops`: herd keeps the cluster in step with a git repository of manifests.
//!
//! A `GitRepository` object names a repository, a reference and a path. The sync loop
//! ([`runner`], run by the controller while it leads) fetches the commit with gitoxide
//! ([`fetch`]), reads its manifests from the object database without a work tree ([`tree`]),
//! validates all of them with the reader `herdctl apply` uses, plans what to create, configure
//! and prune ([`plan`], pure), writes all or nothing ([`write`]) and reports in the
//! repository's status ([`status`], pure). [`schedule`] says when a repository is due,
//! [`control`] asks for a run or suspends, [`webhook`] lets a git host ask. See
//! `docs/gitops.md`.

pub mod control;
pub mod error;
pub mod fetch;
pub mod plan;
pub mod runner;
pub mod schedule;
pub mod status;
pub mod sync;
pub mod tree;
pub mod webhook;
pub mod write;

pub use error::SyncError;
pub use plan::{Action, SyncPlan};
pub use sync::{RunReport, Syncer};
