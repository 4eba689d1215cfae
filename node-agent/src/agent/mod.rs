//! The agent proper: registration, heartbeat, and reconciling the hypervisor to this node's
//! assignments. [`plan`] and [`report`] are pure; [`runner`] is the loop around them.

pub mod migration;
pub mod plan;
pub mod report;
pub mod runner;

pub use runner::{AgentConfig, AgentError, run};
