//! `herd-agent`: the node agent, one per host (the seed's server agent).
//!
//! It keeps the host's lease and heartbeat, watches only its own assignments, and drives a
//! [`hypervisor::Hypervisor`] until what runs matches what was assigned.

pub mod agent;
pub mod hypervisor;
pub mod qemu;
pub mod sim;
pub mod storage;
pub mod test_guests;
pub mod xl;
