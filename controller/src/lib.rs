//! `herd-controller`: the central brain.
//!
//! Pure logic — [`scheduler`], [`vm_plan`], [`node_plan`], [`render`], [`ledger`] — is apart
//! from the shell that feeds it ([`caches`], [`queue`], [`controller`], [`node_lifecycle`],
//! [`leader`]) and the HTTP endpoints ([`http`], [`metrics`]).

pub mod backtest;
pub mod balancer;
pub mod balancing;
pub mod caches;
pub mod controller;
pub mod http;
pub mod leader;
pub mod ledger;
pub mod metrics;
pub mod migration_plan;
pub mod migrations;
pub mod node_lifecycle;
pub mod node_plan;
pub mod queue;
pub mod render;
pub mod scheduler;
pub mod vm_plan;
