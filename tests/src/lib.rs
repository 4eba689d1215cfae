//! Test harness shared by herd's integration tests and benchmarks.
//!
//! [`EtcdServer`] runs a real etcd (`/usr/bin/etcd` from Debian's `etcd-server`, or `etcd`
//! on `PATH`) on free loopback ports with a temporary data directory, and stops it when
//! dropped. [`unique_prefix`] gives every test its own key prefix. [`hollow`] nodes speak the
//! agent's protocol without a hypervisor, for controller tests and scale benchmarks. [`git`]
//! makes real git repositories and serves them over smart HTTP (`git http-backend`).

pub mod binaries;
pub mod controller;
pub mod etcd;
pub mod git;
pub mod gitops_lab;
pub mod hollow;
pub mod http;
pub mod nbd;
pub mod poll;
pub mod stats;
pub mod volumes;

pub use binaries::binary;
pub use controller::{ControllerProcess, free_listen};
pub use etcd::{EtcdServer, etcdctl, unique_prefix};
pub use http::http_post;
pub use nbd::{serve_nbd, serve_nbd_on};
pub use poll::eventually;
pub use volumes::ready_volume;
